//! The whole small cloud the end-to-end tests share: a physical router
//! with the static route for the EIP segment, an outside client, a gateway
//! node and two hosts as namespaces; a real `vpcip controller` and real `vpcip
//! agent`s (gateway, two hosts) as processes; VMs as namespaces plugged into
//! the hosts.

#![allow(dead_code)] // each test binary uses its part
#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use vpcip_client::Client;
use vpcip_lab::cloud::{self, VmNic};
use vpcip_lab::{World, eventually};
use vpcip_model::*;

pub const OPERATOR: &str = "cloud-test-operator";
pub const CLIENT: &str = vpcip_lab::OUTSIDE_CLIENT;
pub const SEGMENT: &str = "203.0.113.0/24";

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vpcip"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Lab {
    pub w: World,
    pub op: Client,
    pub url: String,
    pub gateway_agent: usize,
    /// The agents' processes, in the order of `cloud::AGENTS` (gateway,
    /// h1, h2) as started, or of `cloud::CLUSTER_AGENTS`.
    pub agents: Vec<usize>,
    /// A cluster's BIRDs: gw1's, gw2's, phy's.
    pub birds: Vec<usize>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The logs and database stay for a failed test to be looked into.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(cloud::state_dir(&self.w));
        }
    }
}

impl Lab {
    /// The physical world, the controller, the three agents, a zone and the
    /// EIP segment.
    pub async fn up(tag: &str) -> Lab {
        Lab::up_with(tag, "").await
    }

    /// [`Lab::up`] with `config` as the server's configuration file.
    pub async fn up_with(tag: &str, config: &str) -> Lab {
        let mut w = World::new(tag);
        cloud::physical(&mut w, &[SEGMENT]);
        Lab::start(w, config, &cloud::AGENTS, vec![]).await
    }

    /// A gateway cluster (`cloud::cluster`): gw1 and gw2, BGP to phy's
    /// BIRD configured on both, two hosts, a zone and the EIP segment.
    pub async fn up_cluster(tag: &str) -> Lab {
        let mut w = World::new(tag);
        let birds = cloud::cluster(&mut w);
        let lab = Lab::start(w, "", &cloud::CLUSTER_AGENTS, birds).await;
        for (gw, _) in cloud::CLUSTER_GATEWAYS {
            let out = cli(
                &lab,
                &[
                    "gateway",
                    "update",
                    gw,
                    "--bgp-peer",
                    cloud::PHYSICAL_UNDERLAY,
                    "--peer-as",
                    &cloud::PHYSICAL_AS.to_string(),
                    "--local-as",
                    &cloud::GATEWAY_AS.to_string(),
                ],
            );
            assert!(out.status.success(), "{out:?}");
        }
        lab
    }

    async fn start(
        mut w: World,
        config: &str,
        agents_of: &[(&str, &str, &str)],
        birds: Vec<usize>,
    ) -> Lab {
        let url = cloud::start_controller_with(&mut w, bin(), free_port(), OPERATOR, config);
        let agents = cloud::start_agents_of(&mut w, bin(), &url, OPERATOR, 1, agents_of);
        let gateway_agent = agents[0];
        let op = Client::new(&url, Some(OPERATOR));
        let registered = op
            .wait_for_agents(agents_of.len(), Duration::from_secs(20))
            .await;
        if registered != agents_of.len() {
            let logs: Vec<String> = agents_of
                .iter()
                .map(|(_, node, _)| format!("--- {node}:\n{}", cloud::agent_log(&w, node)))
                .collect();
            panic!(
                "{registered} of {} agents registered in 20 s; their logs:\n{}",
                agents_of.len(),
                logs.join("\n")
            );
        }
        let _: Zone = op
            .post(paths::ZONES, &CreateZone { name: "z1".into() })
            .await
            .unwrap();
        op.create_subnet(&CreateSubnet {
            name: "seg".into(),
            kind: SubnetKind::Eip,
            cidr: Some(SEGMENT.parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
        Lab {
            w,
            op,
            url,
            gateway_agent,
            agents,
            birds,
        }
    }

    /// A VPC whose default group lets the outside world in on ICMP and
    /// every TCP and UDP port: the services of these tests listen on many
    /// (the rules a user would add for them; security groups themselves
    /// are tested in `security_groups.rs`).
    pub async fn vpc(&self, name: &str, cidr: &str) -> Vpc {
        let vpc = self.closed_vpc(name, cidr).await;
        let sg = self.op.default_sg(&vpc).await.unwrap();
        let rules: Vec<SgRule> = [
            "ingress:icmp:0.0.0.0/0",
            "ingress:tcp:1-65535:0.0.0.0/0",
            "ingress:udp:1-65535:0.0.0.0/0",
        ]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
        self.op.add_sg_rules(&sg.id, &rules).await.unwrap();
        vpc
    }

    /// A VPC of tenant acme whose default group is as made: its members
    /// reach each other, nothing else comes in.
    pub async fn closed_vpc(&self, name: &str, cidr: &str) -> Vpc {
        self.op
            .post(
                paths::VPCS,
                &CreateVpc {
                    name: name.into(),
                    cidr: cidr.parse().unwrap(),
                    tenant: Some("acme".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }

    pub async fn subnet(&self, vpc: &Vpc, name: &str, cidr: &str) -> Subnet {
        self.op
            .create_subnet(&CreateSubnet {
                name: name.into(),
                vpc: Some(vpc.id.clone()),
                zone: Some("z1".into()),
                cidr: Some(cidr.parse().unwrap()),
                ..Default::default()
            })
            .await
            .unwrap()
            .subnet
    }

    /// A server through the API on `host`, and its VM plugged there.
    pub async fn vm(&mut self, name: &str, subnet: &Subnet, host: &str) -> (Server, Nic) {
        let server: Server = self
            .op
            .post(
                paths::SERVERS,
                &CreateServer {
                    name: name.into(),
                    subnet: subnet.id.clone(),
                    host: Some(host.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(server.host.as_deref(), Some(host));
        let nic: Nic = self.op.show(&server.nic_ids[0]).await.unwrap();
        cloud::plug_vm(
            &mut self.w,
            name,
            host,
            &VmNic {
                nic_id: &nic.id,
                mac: &nic.mac,
                ip: nic.ip,
                prefix_len: subnet.cidr.prefix_len(),
                gateway: subnet.gateway,
            },
        );
        (server, nic)
    }

    /// The gateway's default SNAT address, as the API shows it (`vpcip
    /// gateway list`): where VMs without an EIP come from outside.
    pub async fn snat_ip(&self) -> Ipv4Addr {
        let gws: Vec<Gateway> = self.op.list(None).await.unwrap();
        let gw = gws.iter().find(|g| g.name == cloud::GATEWAY).unwrap();
        gw.snat_ip
            .unwrap_or_else(|| panic!("gateway {} has no default SNAT address", gw.name))
    }

    /// The vendor manuals' "EIP visible on the NIC" recipe in one call for
    /// `server` (5 Mbit/s): secondary CIDR, subnet, an ENI whose address is
    /// the EIP, bound in visible mode and attached.
    pub async fn visible_eip_for(&self, server: &Server) -> VisibleEip {
        self.op
            .post(
                paths::EIPS_VISIBLE,
                &CreateVisibleEip {
                    bandwidth_mbps: 5,
                    server: server.id.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }

    pub async fn eip_for(&self, server: &Server) -> Eip {
        self.op.eip_for_server(&server.id, 10).await.unwrap()
    }

    /// VIP 10.0.1.100 of `subnet`, bound to `nics` in that order, with an
    /// EIP bound to it (NAT mode); the VIP as read back after the binds.
    pub async fn vip_with_eip(&self, name: &str, subnet: &Subnet, nics: &[&Nic]) -> (Vip, Eip) {
        let vip: Vip = self
            .op
            .post(
                paths::VIPS,
                &CreateVip {
                    name: name.into(),
                    subnet: subnet.id.clone(),
                    ip: Some("10.0.1.100".parse().unwrap()),
                    client_token: None,
                },
            )
            .await
            .unwrap();
        let ids: Vec<&str> = nics.iter().map(|n| n.id.as_str()).collect();
        let vip = self.op.bind_vip_to(&vip.id, &ids).await.unwrap();
        let eip = self.op.eip_for_vip(&vip.id, 10).await.unwrap();
        (vip, eip)
    }

    /// A secondary ENI `name` in `subnet` (in `groups`, or the VPC's
    /// default group), attached to `server` through the API (the guest's
    /// side is plugged by the test).
    pub async fn attached_eni(
        &self,
        name: &str,
        subnet: &Subnet,
        server: &Server,
        groups: &[String],
    ) -> Nic {
        let eni: Nic = self
            .op
            .post(
                paths::NICS,
                &CreateNic {
                    name: name.into(),
                    subnet: subnet.id.clone(),
                    security_groups: groups.to_vec(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        self.op
            .action(
                paths::NIC_ATTACH,
                &eni.id,
                &AttachNic {
                    server: server.id.clone(),
                },
            )
            .await
            .unwrap()
    }

    /// The lab's web server in VM `vm` on port 80 (it answers with the VM's
    /// namespace).
    pub fn httpd(&mut self, vm: &str) {
        let child = std::process::Command::new(bin())
            .args(["lab", "httpd", "--netns", &self.ns(vm), "--port", "80"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.w.adopt(child);
    }

    /// VPC `vpc`'s topology as the web console draws it, read as the
    /// operator through the console's own sign-in.
    pub async fn console_topology(&self, vpc: &str) -> String {
        let ui = cloud::console_url(&self.w).expect("the lab controller's console");
        let console = vpcip_client::console::ConsoleSession::sign_in(&ui, OPERATOR)
            .await
            .unwrap();
        let (status, svg) = console
            .get(&format!("/ui/vpcs/{vpc}/topology.svg"))
            .await
            .unwrap();
        assert_eq!(status, 200, "{svg}");
        svg
    }

    pub fn pings(&self, node: &str, to: Ipv4Addr) -> bool {
        self.w
            .try_exec(node, &["ping", "-c", "1", "-W", "1", &to.to_string()])
            .is_some()
    }

    pub fn ns(&self, node: &str) -> String {
        self.w.ns(node)
    }

    /// Whether an answer of the lab web server came from VM `vm` (it says
    /// who it is).
    pub fn answered_by(&self, answer: &Option<String>, vm: &str) -> bool {
        let want = format!("hello from {}{vm}", self.w.prefix);
        answer.as_deref().is_some_and(|s| s.starts_with(&want))
    }

    /// Waits at most `limit` for VM `vm` to answer the outside client's
    /// `GET /` at `to`; the last answer when it never does.
    pub fn wait_served_by(
        &self,
        to: SocketAddr,
        vm: &str,
        limit: Duration,
    ) -> Result<(), Option<String>> {
        let client = self.ns("client");
        let mut last = None;
        let served = eventually(limit, || {
            last = http_get(&client, to);
            self.answered_by(&last, vm)
        });
        if served { Ok(()) } else { Err(last) }
    }
}

pub fn at(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

#[allow(unused_imports)] // each test binary uses its part
pub use vpcip_lab::{http_get, scrape};

/// The CLI against the lab's controller, as the operator; its output.
pub fn cli(lab: &Lab, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin())
        .args(args)
        .env("VPCIP_URL", &lab.url)
        .env("VPCIP_TOKEN", OPERATOR)
        .output()
        .unwrap()
}

/// The value of one sample on a metrics page: the line that starts with
/// `name{` and holds every label given.
pub fn sample(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// keepalived in VM `vm` with the configuration `vpcip vip guest-config
/// --keepalived` renders for its NIC (checked first by keepalived's own
/// config test); returns its index among the world's processes.
pub fn keepalived(lab: &mut Lab, vm: &str, run: u32, vip: &str, nic: &str) -> usize {
    let dir = cloud::state_dir(&lab.w).join(format!("keepalived-{vm}-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("keepalived.conf");
    let rendered = cli(
        lab,
        &["vip", "guest-config", vip, "--nic", nic, "--keepalived"],
    );
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    std::fs::write(&conf, &rendered.stdout).unwrap();
    // (In the guest: keepalived checks that the interface exists.)
    let test = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns(vm), "keepalived", "-t", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "keepalived -t refuses the rendered configuration:\n{}{}",
        String::from_utf8_lossy(&rendered.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    let child = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(vm),
            "keepalived",
            "-n",
            "-l",
            "-P",
            "-f",
        ])
        .arg(&conf)
        .arg("-p")
        .arg(dir.join("keepalived.pid"))
        .arg("-r")
        .arg(dir.join("vrrp.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("keepalived.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap();
    lab.w.adopt(child)
}

/// Runs in VM `vm`, line by line, the Linux commands (`ip`, `sysctl`)
/// `vpcip <args> --os linux` renders (the guest tooling, for real).
pub fn guest_config(lab: &Lab, vm: &str, args: &[&str]) {
    let mut all = args.to_vec();
    all.extend(["--os", "linux"]);
    let out = cli(lab, &all);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !text.is_empty(),
        "vpcip {all:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(["ip", "sysctl"].contains(&words[0]), "{text}");
        lab.w.exec(vm, &words);
    }
}

/// iperf3 from the outside client to `to` (the EIP) for `secs` seconds:
/// TCP, or UDP offered at 20 Mbit/s; `reverse` sends from the VM instead.
/// Returns iperf3's JSON report.
pub fn iperf3(
    lab: &Lab,
    to: Ipv4Addr,
    port: u16,
    udp: bool,
    reverse: bool,
    secs: u32,
) -> serde_json::Value {
    let mut args = vec![
        "iperf3".to_string(),
        "-c".into(),
        to.to_string(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        secs.to_string(),
        "-i".into(),
        "1".into(),
        "-J".into(),
        "--connect-timeout".into(),
        "3000".into(),
    ];
    if udp {
        args.extend(["-u", "-b", "20M", "-l", "1200"].map(String::from));
    }
    if reverse {
        args.push("-R".into());
    }
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    // The server takes one test at a time and may still be ending the
    // last one (at 1 Mbit/s its queued data drains for a while): a busy
    // server is asked again, at most 20 times over about 10 s. It says so
    // on the control connection and closes it, and when it closes before
    // the client has read that, the client sees the close as a reset of
    // its first control message instead (seen once in CI, session 18).
    for _ in 0..20 {
        let out = lab.w.exec("client", &words);
        let report: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("iperf3 said {out}: {e}"));
        let busy = report["error"].as_str().is_some_and(|e| {
            e.contains("server is busy")
                || (e.contains("unable to receive control message") && e.contains("reset by peer"))
        });
        if !busy {
            return report;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("the iperf3 server at {to}:{port} stayed busy for 10 s")
}

/// Mbit/s the receiving end measured over the whole run.
pub fn received_mbps(report: &serde_json::Value) -> f64 {
    let end = &report["end"];
    let bps = end["sum_received"]["bits_per_second"]
        .as_f64()
        .or_else(|| end["sum"]["bits_per_second"].as_f64())
        .unwrap_or_else(|| panic!("no receiver rate: iperf3 said {}", report["error"]));
    bps / 1e6
}

#[derive(Clone, Copy, Debug)]
pub enum Speaker {
    Keepalived,
    Vpcip,
}

/// The VRRP speaker of VM `vm` for the VIP: keepalived with the rendered
/// configuration, or `vpcip vrrp` as rendered (VRID from the VIP, priority
/// 150 for the first NIC bound and 140 for the next, 1 s).
pub fn speaker(lab: &mut Lab, kind: Speaker, vm: &str, run: u32, vip: &Vip, nic: &Nic) -> usize {
    match kind {
        Speaker::Keepalived => keepalived(lab, vm, run, &vip.id, &nic.id),
        Speaker::Vpcip => vpcip_vrrp(lab, vm, run, vip, nic, &[]),
    }
}

/// `vpcip vrrp` in VM `vm`: the command `vpcip vip guest-config --vrrp`
/// renders for the NIC, with `extra` arguments (tracking, hooks); its
/// output under the state directory (`vrrp-<vm>-<run>/`).
pub fn vpcip_vrrp(
    lab: &mut Lab,
    vm: &str,
    run: u32,
    vip: &Vip,
    nic: &Nic,
    extra: &[String],
) -> usize {
    let dir = cloud::state_dir(&lab.w).join(format!("vrrp-{vm}-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    let rendered = cli(
        lab,
        &["vip", "guest-config", &vip.id, "--nic", &nic.id, "--vrrp"],
    );
    assert!(rendered.status.success());
    let line = String::from_utf8_lossy(&rendered.stdout).into_owned();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..2], ["vpcip", "vrrp"], "{line}");
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns(vm)])
        .arg(bin())
        .args(&words[1..])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(dir.join("vrrp.out")).unwrap())
        .stderr(std::fs::File::create(dir.join("vrrp.log")).unwrap())
        .spawn()
        .unwrap();
    lab.w.adopt(child)
}

/// Ends VM `vm`'s speaker with SIGKILL, as a crash would.
pub fn kill_speaker(lab: &mut Lab, kind: Speaker, vm: &str, run: u32, index: usize) {
    if let Speaker::Keepalived = kind {
        // keepalived's VRRP child, by the PID file it wrote.
        let pid = std::fs::read_to_string(
            cloud::state_dir(&lab.w)
                .join(format!("keepalived-{vm}-{run}"))
                .join("vrrp.pid"),
        )
        .unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid.trim().parse().unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    lab.w.kill(index);
}
