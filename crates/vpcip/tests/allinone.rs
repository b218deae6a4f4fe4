//! `vpcip allinone` on one node (a namespace standing for the machine): the
//! controller with SQLite, the gateway agent and the host agent in one
//! process. Driven with the CLI as an operator would: a VPC, a server, an
//! EIP; a VM plugged in the host namespace answers the outside client
//! through the EIP. Started with `ip netns exec` (a mount namespace of its
//! own), its namespaces are the system's; stopped with SIGTERM, forwarding
//! goes on; started again, it takes over.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use vpcip_lab::cloud::{VmNic, plug_vm};
use vpcip_lab::{World, ask_once, echo_server, eventually};

const TOKEN: &str = "allinone-test-operator";

struct Node {
    ns: String,
    url: String,
}

impl Node {
    /// `vpcip -o json ARGS` run on the node; the parsed answer.
    fn cli(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                env!("CARGO_BIN_EXE_vpcip"),
                "-o",
                "json",
            ])
            .args(args)
            .env("VPCIP_URL", &self.url)
            .env("VPCIP_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vpcip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }
}

/// Whether the node's API answers `host list` with `host` in it.
fn node_answers(w: &World, url: &str, host: &str) -> bool {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &w.ns("node"),
            env!("CARGO_BIN_EXE_vpcip"),
            "-o",
            "json",
            "host",
            "list",
        ])
        .env("VPCIP_URL", url)
        .env("VPCIP_TOKEN", TOKEN)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(host)
}

#[test]
fn allinone_serves_an_eip_from_one_node_and_survives_its_stop() {
    let mut w = World::new("vai");
    w.add_node("node");
    w.add_node("client");
    w.link(
        "client",
        "eth0",
        "192.0.2.100/24",
        "node",
        "phy0",
        "192.0.2.2/24",
    );
    // The physical network's static route for the EIP segment.
    w.exec(
        "client",
        &["ip", "route", "add", "203.0.113.0/24", "via", "192.0.2.2"],
    );
    let dir = std::env::temp_dir().join(format!("{}state", w.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let port = 19000 + (std::process::id() % 1000) as u16;
    // As an operator starts it by hand: `ip netns exec`, which gives it a
    // mount namespace of its own. The namespaces it makes must still be
    // the system's (seen by `ip netns` outside, outliving it).
    let start = |w: &mut World| -> usize {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("allinone.log"))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &w.ns("node")])
            .args([env!("CARGO_BIN_EXE_vpcip"), "allinone"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--db")
            .arg(format!("sqlite://{}/vpcip.db", dir.display()))
            .args([
                "--underlay-ip",
                "192.0.2.2",
                "--name",
                "aio",
                "--resync",
                "1",
            ])
            .args(["--netns-prefix", &w.prefix])
            .arg("--state-dir")
            .arg(&dir)
            .env("VPCIP_OPERATOR_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        w.adopt(child)
    };
    let first = start(&mut w);
    let node = Node {
        ns: w.ns("node"),
        url: format!("http://127.0.0.1:{port}"),
    };
    // Both agents register: the gateway and the host.
    assert!(
        eventually(Duration::from_secs(10), || node_answers(
            &w, &node.url, "aio-host"
        )),
        "the allinone agents did not register (see {})",
        dir.display()
    );
    let gateways = node.cli(&["gateway", "list"]);
    assert!(gateways.to_string().contains("192.0.2.2"), "{gateways}");

    node.cli(&["zone", "create", "z1"]);
    node.cli(&[
        "subnet",
        "create",
        "seg",
        "--type",
        "eip",
        "--cidr",
        "203.0.113.0/24",
    ]);
    node.cli(&[
        "vpc",
        "create",
        "v1",
        "--cidr",
        "10.0.0.0/16",
        "--tenant",
        "acme",
    ]);
    // The default group lets in only its members: the client needs a rule.
    node.cli(&[
        "sg",
        "rule",
        "add",
        "v1-default",
        "ingress:tcp:8080:0.0.0.0/0",
    ]);
    let sw = node.cli(&[
        "subnet",
        "create",
        "sw1",
        "--vpc",
        "v1",
        "--zone",
        "z1",
        "--cidr",
        "10.0.1.0/24",
    ]);
    let server = node.cli(&["vm", "create", "web", "--subnet", "sw1"]);
    assert_eq!(server["host"], "aio-host", "{server}");
    let nic_id = server["nic_ids"][0].as_str().unwrap().to_string();
    let nic = node.cli(&["nic", "show", &nic_id]);
    let eip = node.cli(&["eip", "create", "--bandwidth", "10", "--server", "web"]);
    let eip_ip = eip["ip"].as_str().unwrap().to_string();

    // The hypervisor: the VM's port in the host namespace.
    let subnet = sw.get("subnet").unwrap_or(&sw);
    let gw = subnet["gateway"].as_str().unwrap().parse().unwrap();
    plug_vm(
        &mut w,
        "vm",
        "host",
        &VmNic {
            nic_id: &nic_id,
            mac: nic["mac"].as_str().unwrap(),
            ip: nic["ip"].as_str().unwrap().parse().unwrap(),
            prefix_len: 24,
            gateway: Some(gw),
        },
    );
    echo_server(&w.ns("vm"), 8080, Duration::from_secs(60));
    let to = SocketAddr::new(eip_ip.parse().unwrap(), 8080);
    assert!(
        eventually(Duration::from_secs(15), || ask_once(
            &w.ns("client"),
            to,
            "aio"
        ) == Some(
            "192.0.2.100 aio".into()
        )),
        "the EIP of the allinone node did not answer (see {})",
        dir.display()
    );
    // Its namespaces are seen outside its mount namespace.
    let host_ns = format!("{}host", w.prefix);
    let listed = || vpcip_lab::run("ip", &["netns", "list"]);
    assert!(listed().contains(&host_ns), "{}", listed());

    // SIGTERM, as systemd stops it: forwarding goes on untouched (the VM's
    // port, the router and the NAT are where they were).
    let pid = nix::unistd::Pid::from_raw(w.pid(first).unwrap().cast_signed());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    w.kill(first); // reaps it (it has ended)
    assert!(listed().contains(&host_ns), "{}", listed());
    assert_eq!(
        ask_once(&w.ns("client"), to, "stopped"),
        Some("192.0.2.100 stopped".into()),
        "forwarding stopped with allinone"
    );
    // Started again (another mount namespace): it takes the data plane over
    // and goes on serving.
    start(&mut w);
    assert!(
        eventually(Duration::from_secs(15), || node_answers(
            &w, &node.url, "aio-host"
        )),
        "allinone did not come back (see {})",
        dir.display()
    );
    let again = node.cli(&["vm", "create", "web2", "--subnet", "sw1"]);
    assert_eq!(again["host"], "aio-host", "{again}");
    assert_eq!(
        ask_once(&w.ns("client"), to, "again"),
        Some("192.0.2.100 again".into())
    );
    drop(node);
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}
