//! A whole small cloud in namespaces: the physical network, a real
//! controller and real agents as processes, and VMs plugged the way a
//! hypervisor would.
//!
//! ```text
//!  client 198.51.100.10 ── phy (physical router) ── underlay 192.0.2.0/24 (bridge in phy)
//!                          198.51.100.1 / 192.0.2.1     ├── gw  192.0.2.2  (gateway agent)
//!                          static route:                ├── h1  192.0.2.11 (host agent)
//!                          EIP segment → 192.0.2.2      └── h2  192.0.2.12 (host agent)
//! ```
//!
//! Nothing is in the root namespace: the controller listens on loopback and
//! the agents (root-namespace processes) work on their node's namespace
//! through netlink sockets opened there.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::World;

pub const PHYSICAL_ROUTER: &str = "phy";
pub const CLIENT: &str = "client";
pub const GATEWAY: &str = "gw";
pub const HOSTS: [&str; 2] = ["h1", "h2"];
/// The underlay, registered as host network `underlay` (agents register
/// only with an address of a host network).
pub const UNDERLAY: &str = "192.0.2.0/24";
pub const GATEWAY_UNDERLAY: &str = "192.0.2.2";
pub const HOST_UNDERLAY: [&str; 2] = ["192.0.2.11", "192.0.2.12"];
/// The cloud's agents: (role, node, underlay address).
pub const AGENTS: [(&str, &str, &str); 3] = [
    ("gateway", GATEWAY, GATEWAY_UNDERLAY),
    ("host", HOSTS[0], HOST_UNDERLAY[0]),
    ("host", HOSTS[1], HOST_UNDERLAY[1]),
];

/// The MTU of a VM's NIC: the underlay's 1500 less VXLAN's 50.
pub const VM_MTU: &str = "1450";

/// A gateway cluster's nodes and their underlay addresses.
pub const CLUSTER_GATEWAYS: [(&str, &str); 2] = [("gw1", "192.0.2.21"), ("gw2", "192.0.2.22")];
/// The cluster's agents: (role, node, underlay address).
pub const CLUSTER_AGENTS: [(&str, &str, &str); 4] = [
    ("gateway", CLUSTER_GATEWAYS[0].0, CLUSTER_GATEWAYS[0].1),
    ("gateway", CLUSTER_GATEWAYS[1].0, CLUSTER_GATEWAYS[1].1),
    ("host", HOSTS[0], HOST_UNDERLAY[0]),
    ("host", HOSTS[1], HOST_UNDERLAY[1]),
];
/// The physical router's AS and the gateways' (BGP).
pub const PHYSICAL_AS: u32 = 64512;
pub const GATEWAY_AS: u32 = 64513;
/// The physical router's address on the underlay: the gateways' BGP peer.
pub const PHYSICAL_UNDERLAY: &str = "192.0.2.1";

/// A gateway's BGP in the lab: the physical router as its one peer, BFD on
/// (`vpcip gateway update GW --bgp-peer 192.0.2.1 --peer-as 64512
/// --local-as 64513`).
pub fn gateway_bgp() -> vpcip_model::BgpConfig {
    vpcip_model::BgpConfig {
        local_as: GATEWAY_AS,
        peers: vec![vpcip_model::BgpPeer {
            ip: Ipv4Addr::new(192, 0, 2, 1),
            peer_as: PHYSICAL_AS,
        }],
        bfd: true,
    }
}

/// Builds the physical network: the outside client, the physical router with
/// the static route for each EIP segment, the gateway node and the hosts on
/// the underlay.
pub fn physical(w: &mut World, eip_segments: &[&str]) {
    underlay(w, &AGENTS);
    for seg in eip_segments {
        w.exec(
            PHYSICAL_ROUTER,
            &["ip", "route", "add", seg, "via", GATEWAY_UNDERLAY],
        );
    }
}

/// The physical network of a gateway cluster: as [`physical`] with the
/// two gateway nodes of [`CLUSTER_GATEWAYS`] and no static route: the
/// physical router runs BIRD and learns the EIPs from the gateways by BGP
/// (with BFD, 100 ms × 3); each gateway node runs a BIRD its agent
/// configures ([`bird_paths`]).
/// Returns the BIRDs' indexes among the world's processes: the gateways'
/// in order, then the physical router's.
pub fn cluster(w: &mut World) -> Vec<usize> {
    underlay(w, &CLUSTER_AGENTS);
    let mut phy = format!(
        "router id {PHYSICAL_UNDERLAY};\n\
         protocol device {{}}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n\
         protocol bfd {{ interface \"*\" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }}; }}\n\
         template bgp gateways {{ local {PHYSICAL_UNDERLAY} as {PHYSICAL_AS}; bfd on; graceful restart on; connect delay time 1; error wait time 1, 5; error forget time 10; ipv4 {{ import all; export none; }}; }}\n"
    );
    let mut birds = Vec::new();
    for (node, ip) in CLUSTER_GATEWAYS {
        // (`gw` is a keyword of BIRD's: the protocols are node_<name>.)
        phy.push_str(&format!(
            "protocol bgp node_{node} from gateways {{ neighbor {ip} as {GATEWAY_AS}; }}\n"
        ));
        birds.push(start_bird(
            w,
            node,
            &format!("router id {ip};\nprotocol device {{}}\n"),
        ));
    }
    birds.push(start_bird(w, PHYSICAL_ROUTER, &phy));
    birds
}

/// Where node `node`'s BIRD keeps its configuration and control socket.
pub fn bird_paths(w: &World, node: &str) -> (PathBuf, PathBuf) {
    let dir = state_dir(w);
    (
        dir.join(format!("bird-{node}.conf")),
        dir.join(format!("bird-{node}.sock")),
    )
}

/// Starts BIRD in `node` with `config`, in the foreground as one of the
/// world's processes; returns its index among them.
pub fn start_bird(w: &mut World, node: &str, config: &str) -> usize {
    let _ = std::fs::create_dir_all(state_dir(w));
    let (conf, sock) = bird_paths(w, node);
    std::fs::write(&conf, config).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
    let log = std::fs::File::create(state_dir(w).join(format!("bird-{node}.log"))).ok();
    let child = Command::new("ip")
        .args(["netns", "exec", &w.ns(node), "bird", "-f", "-c"])
        .arg(&conf)
        .arg("-s")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(log.map(Stdio::from).unwrap_or(Stdio::null()))
        .spawn()
        .unwrap_or_else(|e| panic!("start bird in {node}: {e} (is bird2 installed?)"));
    let i = w.adopt(child);
    let up = crate::eventually(std::time::Duration::from_secs(5), || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    assert!(
        up,
        "BIRD did not start in {node} (see {})",
        state_dir(w).display()
    );
    i
}

/// The nodes of the physical network and the underlay between them: the
/// client, the physical router, and `agents`' nodes on the underlay bridge.
fn underlay(w: &mut World, agents: &[(&str, &str, &str)]) {
    for n in [PHYSICAL_ROUTER, CLIENT] {
        w.add_node(n);
    }
    for (_, node, _) in agents {
        w.add_node(node);
    }
    w.link(
        CLIENT,
        "eth0",
        &format!("{}/24", crate::OUTSIDE_CLIENT),
        PHYSICAL_ROUTER,
        "cl0",
        "198.51.100.1/24",
    );
    w.exec(
        CLIENT,
        &["ip", "route", "add", "default", "via", "198.51.100.1"],
    );
    let phy = PHYSICAL_ROUTER;
    w.exec(phy, &["ip", "link", "add", "ul", "type", "bridge"]);
    w.exec(phy, &["ip", "addr", "add", "192.0.2.1/24", "dev", "ul"]);
    w.exec(phy, &["ip", "link", "set", "ul", "up"]);
    w.exec(phy, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (role, node, ip) in agents {
        let port = format!("u-{node}");
        let (nn, np) = (w.ns(node), w.ns(phy));
        crate::run(
            "ip",
            &[
                "-n", &np, "link", "add", &port, "type", "veth", "peer", "name", "phy0", "netns",
                &nn,
            ],
        );
        w.exec(phy, &["ip", "link", "set", &port, "master", "ul", "up"]);
        w.exec(
            node,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "phy0"],
        );
        w.exec(node, &["ip", "link", "set", "phy0", "up"]);
        if *role == "gateway" {
            w.exec(
                node,
                &["ip", "route", "add", "default", "via", PHYSICAL_UNDERLAY],
            );
        }
    }
}

/// Where a cloud's processes log and keep their database.
pub fn state_dir(w: &World) -> PathBuf {
    std::env::temp_dir().join(format!("{}state", w.prefix))
}

/// Starts `vpcip controller` on loopback `port` with a SQLite database in the
/// world's state directory; returns its URL once it answers.
pub fn start_controller(w: &mut World, bin: &Path, port: u16, token: &str) -> String {
    start_controller_with(w, bin, port, token, "")
}

/// [`start_controller`] with `config` as the server's configuration file.
pub fn start_controller_with(
    w: &mut World,
    bin: &Path,
    port: u16,
    token: &str,
    config: &str,
) -> String {
    let dir = state_dir(w);
    let _ = std::fs::create_dir_all(&dir);
    let log = std::fs::File::create(dir.join("server.log")).ok();
    let config_file = dir.join("server.toml");
    std::fs::write(&config_file, config)
        .unwrap_or_else(|e| panic!("write {}: {e}", config_file.display()));
    let child = Command::new(bin)
        .arg("controller")
        .arg("--config")
        .arg(&config_file)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(format!("sqlite://{}/vpcip.db", dir.display()))
        .env("VPCIP_OPERATOR_TOKEN", token)
        // Its web console too, on a loopback port it picks (see
        // [`console_url`]).
        .env("VPCIP_CONSOLE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(log.map(Stdio::from).unwrap_or(Stdio::null()))
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    w.adopt(child);
    let url = format!("http://127.0.0.1:{port}");
    let up = crate::eventually(std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "the controller did not start (see {})", dir.display());
    url
}

/// Where the world's controller serves its web console (read from its log,
/// which says the port it got).
pub fn console_url(w: &World) -> Option<String> {
    console_url_in(&std::fs::read_to_string(state_dir(w).join("server.log")).ok()?)
}

/// The console's URL as a controller's log says it (`web console at /ui
/// listen=ADDR`).
pub fn console_url_in(log: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("web console at /ui"))
        .find_map(|l| l.split("listen=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .map(|a| format!("http://{a}"))
}

/// Starts `vpcip agent` for `node` (role `gateway` or `host`), working on
/// the node's namespace; returns its index among the world's processes.
#[allow(clippy::too_many_arguments)]
pub fn start_agent(
    w: &mut World,
    bin: &Path,
    url: &str,
    token: &str,
    role: &str,
    node: &str,
    underlay: &str,
    resync_secs: u64,
) -> usize {
    let dir = state_dir(w);
    let _ = std::fs::create_dir_all(&dir);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("agent-{node}.log")))
        .ok();
    // Its metrics on a loopback port it picks itself and writes down in
    // its state directory (see [`agent_metrics_url`]); one picked here
    // could be taken by another process before the agent binds it.
    let _ = std::fs::remove_file(agent_metrics_file(w, node));
    let child = Command::new(bin)
        .args(agent_args(w, role, node, underlay, resync_secs, &dir))
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("VPCIP_URL", url)
        .env("VPCIP_TOKEN", token)
        // (VPCIP_LAB_LOG=debug shows each change a pass makes.)
        .env(
            "RUST_LOG",
            std::env::var("VPCIP_LAB_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::null())
        .stderr(log.map(Stdio::from).unwrap_or(Stdio::null()))
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let index = w.adopt(child);
    // Started once it listens (bounded: a failed agent says why in its log).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while agent_metrics_url(w, node).is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    index
}

/// What agent `node` names its namespaces after: the world's prefix, and
/// a cluster's gateway its own name too (each holds every VPC router).
pub fn netns_prefix(w: &World, node: &str) -> String {
    if CLUSTER_GATEWAYS.iter().any(|(n, _)| *n == node) {
        format!("{}{node}-", w.prefix)
    } else {
        w.prefix.clone()
    }
}

/// `vpcip agent …` for node `node` of the world (its namespace, the names
/// of the namespaces it makes, its BIRD when it runs one, its state in
/// `dir`/agent-NODE): what the tests start and what `vpcip lab up` starts.
pub fn agent_args(
    w: &World,
    role: &str,
    node: &str,
    underlay: &str,
    resync_secs: u64,
    dir: &Path,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "agent",
        "--role",
        role,
        "--name",
        node,
        "--underlay-ip",
        underlay,
        "--netns",
        &w.ns(node),
        "--netns-prefix",
        &netns_prefix(w, node),
        "--resync",
        &resync_secs.to_string(),
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.extend(bird_args(w, role, node));
    args.push("--state-dir".into());
    args.push(dir.join(format!("agent-{node}")).into());
    args
}

/// A gateway agent's BIRD, when its node runs one ([`cluster`]).
fn bird_args(w: &World, role: &str, node: &str) -> Vec<std::ffi::OsString> {
    let (conf, sock) = bird_paths(w, node);
    if role != "gateway" || !conf.exists() {
        return vec![];
    }
    vec![
        "--bird-socket".into(),
        sock.into(),
        "--bird-config".into(),
        conf.into(),
    ]
}

/// What agent `node` of the world has logged so far (for a test's
/// failure message).
pub fn agent_log(w: &World, node: &str) -> String {
    std::fs::read_to_string(state_dir(w).join(format!("agent-{node}.log")))
        .unwrap_or_else(|e| format!("(no log: {e})"))
}

/// Where agent `node` of the world serves its metrics.
pub fn agent_metrics_url(w: &World, node: &str) -> Option<String> {
    std::fs::read_to_string(agent_metrics_file(w, node))
        .ok()
        .map(|a| format!("http://{}/metrics", a.trim()))
}

fn agent_metrics_file(w: &World, node: &str) -> PathBuf {
    state_dir(w)
        .join(format!("agent-{node}"))
        .join("metrics-listen")
}

/// Starts the three [`AGENTS`]; returns their indexes among the world's
/// processes, in that order.
pub fn start_agents(
    w: &mut World,
    bin: &Path,
    url: &str,
    token: &str,
    resync_secs: u64,
) -> Vec<usize> {
    start_agents_of(w, bin, url, token, resync_secs, &AGENTS)
}

/// Starts `agents` (e.g. [`CLUSTER_AGENTS`]); returns their indexes among
/// the world's processes, in that order.
pub fn start_agents_of(
    w: &mut World,
    bin: &Path,
    url: &str,
    token: &str,
    resync_secs: u64,
    agents: &[(&str, &str, &str)],
) -> Vec<usize> {
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(bin);
        let out = cmd
            .args(args)
            .env("VPCIP_URL", url)
            .env("VPCIP_TOKEN", token);
        out.output().is_ok_and(|o| o.status.success())
    };
    if !cli(&["host-network", "show", "underlay"]) {
        let made = cli(&["host-network", "create", "underlay", UNDERLAY]);
        assert!(made, "cannot register host network {UNDERLAY} at {url}");
    }
    agents
        .iter()
        .map(|(role, node, ip)| start_agent(w, bin, url, token, role, node, ip, resync_secs))
        .collect()
}

/// A VM's NIC as the lab plugs it.
pub struct VmNic<'a> {
    pub nic_id: &'a str,
    pub mac: &'a str,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// Starts VM `vm` on `host` with its primary NIC as `eth0` (see
/// [`plug_nic`]) and its default route through the subnet's gateway.
pub fn plug_vm(w: &mut World, vm: &str, host: &str, nic: &VmNic<'_>) {
    w.add_node(vm);
    plug_nic(w, vm, host, "eth0", nic);
    if let Some(gw) = nic.gateway {
        w.exec(
            vm,
            &["ip", "route", "add", "default", "via", &gw.to_string()],
        );
    }
}

/// Plugs a NIC into VM `vm` as `ifname`: one end of a veth pair in the VM,
/// the other on the host named as the host agent expects (`port_ifname`),
/// left for the agent to plug. The guest side is set up the way the guest
/// would from its metadata: MAC, address, MTU.
pub fn plug_nic(w: &mut World, vm: &str, host: &str, ifname: &str, nic: &VmNic<'_>) {
    attach_nic(w, vm, host, ifname, nic.nic_id, nic.mac);
    w.exec(
        vm,
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/{}", nic.ip, nic.prefix_len),
            "dev",
            ifname,
        ],
    );
    w.exec(vm, &["ip", "link", "set", ifname, "up"]);
}

/// The hypervisor's half of [`plug_nic`]: the NIC appears in the guest as
/// `ifname` with its MAC and MTU, down and without an address, for the
/// guest to configure (as `vpcip nic guest-config` says).
pub fn attach_nic(w: &mut World, vm: &str, host: &str, ifname: &str, nic_id: &str, mac: &str) {
    let port = vpcip_model::desired::port_ifname(nic_id);
    let (nh, nv) = (w.ns(host), w.ns(vm));
    crate::run(
        "ip",
        &[
            "-n", &nh, "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns", &nv,
        ],
    );
    w.exec(
        vm,
        &["ip", "link", "set", ifname, "address", mac, "mtu", VM_MTU],
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_gateways_peer_is_the_physical_router() {
        let bgp = super::gateway_bgp();
        assert_eq!(bgp.peers[0].ip.to_string(), super::PHYSICAL_UNDERLAY);
    }
}
