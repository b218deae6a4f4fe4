//! The EIP NAT maps with real packets: three network namespaces made for
//! this test (an outside client, a gateway, a VM), the gateway programmed
//! over netlink only, TCP and ICMP checked end to end. Needs root; without
//! it the test fails and says so.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use vpcip_dataplane::nat::{NatMap, plan_nat, snat_of};
use vpcip_sys::netns::{in_netns, named};
use vpcip_sys::nft::NatTable;

const CLIENT_IP: &str = "198.51.100.10";
const EIP: &str = "203.0.113.100";
const EIP2: &str = "203.0.113.101";
const VM_IP: &str = "10.0.0.2";

/// Namespaces of one test run, removed on drop (also on failure).
struct Lab {
    prefix: String,
}

impl Lab {
    fn ns(&self, node: &str) -> String {
        format!("{}{node}", self.prefix)
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn exec(&self, node: &str, args: &[&str]) -> String {
        let ns = self.ns(node);
        let out = Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "{args:?} in {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// client — gw — vm: 198.51.100.0/24 outside, 10.0.0.0/24 inside.
    fn build() -> Lab {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test builds network namespaces and must run as root (scripts/test does)"
        );
        let lab = Lab {
            prefix: format!("vpt{}x{:04x}-", std::process::id(), rand_u16()),
        };
        for n in ["client", "gw", "vm"] {
            lab.ip(&["netns", "add", &lab.ns(n)]);
            lab.exec(n, &["ip", "link", "set", "lo", "up"]);
        }
        let (c, g, v) = (lab.ns("client"), lab.ns("gw"), lab.ns("vm"));
        lab.ip(&[
            "-n", &c, "link", "add", "eth0", "type", "veth", "peer", "name", "out0", "netns", &g,
        ]);
        lab.ip(&[
            "-n", &v, "link", "add", "eth0", "type", "veth", "peer", "name", "in0", "netns", &g,
        ]);
        lab.exec(
            "client",
            &[
                "ip",
                "addr",
                "add",
                &format!("{CLIENT_IP}/24"),
                "dev",
                "eth0",
            ],
        );
        lab.exec("client", &["ip", "link", "set", "eth0", "up"]);
        lab.exec(
            "client",
            &[
                "ip",
                "route",
                "add",
                "203.0.113.0/24",
                "via",
                "198.51.100.1",
            ],
        );
        lab.exec(
            "gw",
            &["ip", "addr", "add", "198.51.100.1/24", "dev", "out0"],
        );
        lab.exec("gw", &["ip", "addr", "add", "10.0.0.1/24", "dev", "in0"]);
        lab.exec("gw", &["ip", "link", "set", "out0", "up"]);
        lab.exec("gw", &["ip", "link", "set", "in0", "up"]);
        lab.exec("gw", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        lab.exec(
            "vm",
            &["ip", "addr", "add", &format!("{VM_IP}/24"), "dev", "eth0"],
        );
        lab.exec("vm", &["ip", "link", "set", "eth0", "up"]);
        lab.exec("vm", &["ip", "route", "add", "default", "via", "10.0.0.1"]);
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in ["client", "gw", "vm"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .status();
        }
    }
}

fn rand_u16() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (t.subsec_nanos() >> 8) as u16
}

/// A TCP server in a namespace that answers each connection with the peer
/// address it saw; serves until `count` connections or `limit` elapse.
fn serve_peer_address(
    ns: &str,
    port: u16,
    count: usize,
    limit: Duration,
) -> std::thread::JoinHandle<Vec<String>> {
    let path = named(ns);
    let ready = std::sync::Arc::new(std::sync::Barrier::new(2));
    let r = ready.clone();
    let h = std::thread::spawn(move || {
        let f = std::fs::File::open(path).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
        l.set_nonblocking(true).unwrap();
        r.wait();
        let deadline = Instant::now() + limit;
        let mut seen = vec![];
        while seen.len() < count && Instant::now() < deadline {
            match l.accept() {
                Ok((mut s, peer)) => {
                    let _ = s.write_all(peer.ip().to_string().as_bytes());
                    seen.push(peer.ip().to_string());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        seen
    });
    ready.wait();
    h
}

/// Connects from a namespace and returns what the server said, or None.
fn ask(ns: &str, to: &str, port: u16) -> Option<String> {
    let addr = SocketAddr::new(to.parse().unwrap(), port);
    in_netns(&named(ns), move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(800)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
    .unwrap()
}

fn gateway_table(lab: &Lab) -> NatTable {
    in_netns(&named(&lab.ns("gw")), NatTable::open)
        .unwrap()
        .unwrap()
}

#[test]
fn eip_nat_maps_carry_real_traffic() {
    let lab = Lab::build();
    let mut nat = gateway_table(&lab);
    assert!(nat.ensure().unwrap(), "a fresh gateway gets the table");
    assert!(!nat.ensure().unwrap(), "ensure is idempotent");
    // The ruleset is the two map rules, as nft shows them.
    let ruleset = lab.exec("gw", &["nft", "list", "table", "ip", "vpcip_nat"]);
    assert!(
        ruleset.contains("dnat to ip daddr map @eip_dnat"),
        "{ruleset}"
    );
    assert!(
        ruleset.contains("snat to ip saddr map @eip_snat"),
        "{ruleset}"
    );

    // Nothing bound: the EIP does not answer.
    let server = serve_peer_address(&lab.ns("vm"), 8080, 2, Duration::from_secs(10));
    assert_eq!(ask(&lab.ns("client"), EIP, 8080), None);

    // Bind: the outside reaches the VM, which sees the client's real address.
    let desired: NatMap = [(EIP.parse().unwrap(), VM_IP.parse().unwrap())].into();
    let (d, sn) = nat.read().unwrap();
    let change = plan_nat(&desired, &d, &sn);
    assert_eq!((change.dnat.add.len(), change.snat.add.len()), (1, 1));
    nat.apply(&change).unwrap();
    assert_eq!(nat.read().unwrap(), (desired.clone(), snat_of(&desired)));
    assert_eq!(
        ask(&lab.ns("client"), EIP, 8080).as_deref(),
        Some(CLIENT_IP)
    );
    let ping = lab.exec("client", &["ping", "-c", "2", "-W", "1", EIP]);
    assert!(ping.contains("2 received"), "{ping}");

    // The VM's own outbound traffic leaves with the EIP as its source.
    let outside = serve_peer_address(&lab.ns("client"), 9090, 1, Duration::from_secs(10));
    assert_eq!(ask(&lab.ns("vm"), CLIENT_IP, 9090).as_deref(), Some(EIP));
    assert_eq!(outside.join().unwrap(), vec![EIP.to_string()]);

    // Drift: an element deleted by hand is found and put back, and nothing
    // else is touched.
    lab.exec(
        "gw",
        &[
            "nft",
            "delete",
            "element",
            "ip",
            "vpcip_nat",
            "eip_dnat",
            &format!("{{ {EIP} }}"),
        ],
    );
    let (d, sn) = nat.read().unwrap();
    assert!(d.is_empty());
    assert_eq!(sn.len(), 1, "the SNAT half is untouched");
    let repair = plan_nat(&desired, &d, &sn);
    assert_eq!(repair.dnat.add.len(), 1);
    assert!(
        repair.dnat.remove.is_empty() && repair.snat.is_empty(),
        "nothing right is touched"
    );
    nat.apply(&repair).unwrap();
    assert_eq!(nat.read().unwrap(), (desired.clone(), snat_of(&desired)));
    assert_eq!(
        ask(&lab.ns("client"), EIP, 8080).as_deref(),
        Some(CLIENT_IP)
    );
    assert_eq!(
        server.join().unwrap(),
        vec![CLIENT_IP.to_string(), CLIENT_IP.to_string()]
    );

    // Rebind the EIP elsewhere and add a second one in one transaction.
    let moved: NatMap = [
        (EIP.parse().unwrap(), "10.0.0.3".parse().unwrap()),
        (EIP2.parse().unwrap(), VM_IP.parse().unwrap()),
    ]
    .into();
    let (d, sn) = nat.read().unwrap();
    let change = plan_nat(&moved, &d, &sn);
    assert_eq!((change.dnat.remove.len(), change.dnat.add.len()), (1, 2));
    nat.apply(&change).unwrap();
    let (d, sn) = nat.read().unwrap();
    assert_eq!(d, moved);
    let want: NatMap = [
        (
            "10.0.0.3".parse::<Ipv4Addr>().unwrap(),
            EIP.parse().unwrap(),
        ),
        (VM_IP.parse().unwrap(), EIP2.parse().unwrap()),
    ]
    .into();
    assert_eq!(sn, want);
    let server = serve_peer_address(&lab.ns("vm"), 8080, 1, Duration::from_secs(10));
    assert_eq!(
        ask(&lab.ns("client"), EIP2, 8080).as_deref(),
        Some(CLIENT_IP)
    );
    server.join().unwrap();

    // Unbind everything: the EIPs stop answering.
    let (d, sn) = nat.read().unwrap();
    nat.apply(&plan_nat(&NatMap::new(), &d, &sn)).unwrap();
    assert_eq!(nat.read().unwrap(), (NatMap::new(), NatMap::new()));
    let _server = serve_peer_address(&lab.ns("vm"), 8080, 1, Duration::from_secs(3));
    assert_eq!(ask(&lab.ns("client"), EIP2, 8080), None);

    // A kernel refusal is an error, and applies nothing: a second value for
    // a key that has one, beside a valid addition, in one transaction.
    nat.apply(&plan_nat(&moved, &NatMap::new(), &NatMap::new()))
        .unwrap();
    let conflicting = vpcip_dataplane::nat::NatPlan {
        dnat: vpcip_dataplane::nat::MapChange {
            remove: vec![],
            add: vec![
                (
                    "203.0.113.102".parse().unwrap(),
                    "10.0.0.7".parse().unwrap(),
                ),
                (EIP.parse().unwrap(), "10.0.0.9".parse().unwrap()),
            ],
        },
        snat: Default::default(),
    };
    let err = nat.apply(&conflicting).unwrap_err();
    assert_eq!(err.errno(), Some(17), "EEXIST: {err}");
    assert_eq!(nat.read().unwrap(), (moved.clone(), snat_of(&moved)));
}
