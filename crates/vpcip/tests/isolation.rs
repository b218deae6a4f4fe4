//! Red team: a tenant's VM attacks the cloud it runs in, with real packets
//! in the lab (physical router, gateway node, two hosts, a real controller
//! and real agents). Each attack is sent, and the test asserts that it does
//! not arrive and that nothing learned from it (FDB, neighbour tables).
//! Each attack got through before the isolation guards; each test also
//! shows, with the same packet sent where it is allowed, that the attack
//! itself is well formed (a negative result means something).

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use vpcip_lab::eventually;
use vpcip_model::*;
use vpcip_sys::netns::{in_netns, named};

use common::*;

const PHY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const H1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const H2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);
const ATTACKER_MAC: [u8; 6] = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];

fn mac(s: &str) -> [u8; 6] {
    vpcip_dataplane::isolation::parse_mac(s).unwrap()
}

fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Registers the lab's underlay as a host network (once).
async fn host_network(lab: &Lab) {
    let have: Vec<HostNetwork> = lab.op.list(None).await.unwrap();
    if !have.iter().any(|h| h.cidr.to_string() == "192.0.2.0/24") {
        let _: HostNetwork = lab
            .op
            .post(
                paths::HOST_NETWORKS,
                &CreateHostNetwork {
                    name: "underlay".into(),
                    cidr: "192.0.2.0/24".parse().unwrap(),
                },
            )
            .await
            .unwrap();
    }
}

/// A TCP listener in node `ns` on `ip:port`, accepting until it is
/// stopped (at most 60 s); counts what it accepted.
struct Listener {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u32>,
}

impl Listener {
    fn start(ns: &str, ip: Ipv4Addr, port: u16) -> Listener {
        let listener = in_netns(&named(ns), move || TcpListener::bind((ip, port)))
            .unwrap()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let end = std::time::Instant::now() + Duration::from_secs(60);
            let mut n = 0;
            while std::time::Instant::now() < end
                && !stopped.load(std::sync::atomic::Ordering::Relaxed)
            {
                match listener.accept() {
                    Ok(_) => n += 1,
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            n
        });
        Listener { stop, thread }
    }

    /// Stops it; what it accepted.
    fn accepted(self) -> u32 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Whether a TCP connection from `ns` to `to` opens within a second.
fn connects(ns: &str, to: SocketAddr) -> bool {
    in_netns(&named(ns), move || {
        std::net::TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok()
    })
    .unwrap()
}

/// A UDP datagram from `ns` to `to`.
fn send_udp(ns: &str, to: SocketAddr, payload: &[u8]) {
    let payload = payload.to_vec();
    in_netns(&named(ns), move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(&payload, to).unwrap();
    })
    .unwrap();
}

/// Raw Ethernet frames sent on `ifname` in `ns`.
fn send_frames(ns: &str, ifname: &str, frames: &[Vec<u8>]) {
    let frames = frames.to_vec();
    let ifname = ifname.to_string();
    in_netns(&named(ns), move || {
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == ifname)
            .unwrap();
        let pnet_datalink::Channel::Ethernet(mut tx, _) =
            pnet_datalink::channel(&iface, Default::default()).unwrap()
        else {
            panic!("not an Ethernet channel")
        };
        for f in &frames {
            tx.send_to(f, None).unwrap().unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    })
    .unwrap();
}

/// The frames received on `ifname` in `ns` (not sent by it) within
/// `limit`.
fn capture(ns: &str, ifname: &str, limit: Duration) -> Vec<Vec<u8>> {
    let ifname = ifname.to_string();
    in_netns(&named(ns), move || {
        let iface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == ifname)
            .unwrap();
        let own = iface.mac.map(|m| m.octets());
        let config = pnet_datalink::Config {
            read_timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        let pnet_datalink::Channel::Ethernet(_, mut rx) =
            pnet_datalink::channel(&iface, config).unwrap()
        else {
            panic!("not an Ethernet channel")
        };
        let end = std::time::Instant::now() + limit;
        let mut out = Vec::new();
        while std::time::Instant::now() < end {
            if let Ok(f) = rx.next()
                && f.len() >= 14
                && Some(<[u8; 6]>::try_from(&f[6..12]).unwrap()) != own
            {
                out.push(f.to_vec());
            }
        }
        out
    })
    .unwrap()
}

/// An Ethernet frame.
fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 ICMP echo request (checksums right: a receiver answers it).
fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    fn sum(b: &[u8]) -> u16 {
        let mut s: u32 = b
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !u16::try_from(s).unwrap()
    }
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(b"vpcip red team");
    let c = sum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let len = u16::try_from(20 + icmp.len()).unwrap();
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&len.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = sum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    ip
}

/// An ARP reply: `sha`/`spa` claimed to `tha`/`tpa`.
fn arp_reply(sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 2];
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    a
}

/// A VXLAN packet's UDP payload for `vni` around `frame`.
fn vxlan(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut p = vec![0x08, 0, 0, 0];
    p.extend_from_slice(&vni.to_be_bytes()[1..]);
    p.push(0);
    p.extend_from_slice(frame);
    p
}

/// Whether node `ns`'s forwarding database holds `mac` anywhere.
fn fdb_has(lab: &Lab, node: &str, m: &[u8; 6]) -> bool {
    lab.w
        .exec(node, &["bridge", "fdb", "show"])
        .contains(&mac_text(m))
}

/// The router namespace of `vpc` (a node name for `lab.w`).
fn router(lab: &Lab, vpc: &Vpc) -> String {
    let full = vpcip_agent::gateway::router_netns(&lab.w.prefix, &vpc.id);
    full.strip_prefix(&lab.w.prefix).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_reaches_the_outside_world_and_nothing_of_the_infrastructure() {
    // The operator lets VMs reach one service on the underlay, and only it.
    let mut lab = Lab::up_with("rti", "[isolation]\nallow = [\"tcp 192.0.2.1 7001\"]\n").await;
    host_network(&lab).await;
    let v1 = lab.vpc("v1", "10.0.0.0/16").await;
    let sw1 = lab.subnet(&v1, "sw1", "10.0.1.0/24").await;
    let sw2 = lab.subnet(&v1, "sw2", "10.0.2.0/24").await;
    let (web, _) = lab.vm("web-1", &sw1, "h1").await;
    let (_, app) = lab.vm("app-1", &sw2, "h2").await;
    let eip = lab.eip_for(&web).await;
    // A second tenant's VPC: its router is one more thing to reach.
    let v2 = lab.vpc("v2", "10.0.0.0/16").await;
    let other = lab.subnet(&v2, "other", "10.0.1.0/24").await;
    let _ = lab.vm("other-1", &other, "h2").await;

    // Allowed: the outside world, from a VM without an EIP (the default
    // SNAT) and from one with.
    for vm in ["app-1", "web-1"] {
        assert!(
            eventually(Duration::from_secs(20), || lab.pings(vm, CLIENT_IP)),
            "{vm} does not reach the outside world"
        );
    }
    // Tenant traffic never leaves with a VTEP's address: the outside sees
    // the VM without an EIP at the gateway's default SNAT address, one of
    // the EIP segment, and the one with at its EIP.
    let snat = lab.snat_ip().await;
    assert_ne!(snat, GW);
    let _echo = vpcip_lab::echo_server(&lab.ns("client"), 7003, Duration::from_secs(60));
    let seen = |vm: &str| vpcip_lab::ask_once(&lab.ns(vm), at(CLIENT_IP, 7003), vm);
    assert_eq!(seen("app-1"), Some(format!("{snat} app-1")));
    assert_eq!(seen("web-1"), Some(format!("{} web-1", eip.ip)));
    // Services on the underlay, one of them on the allow-list; the
    // gateway node's stands for a controller there (`vpcip allinone`).
    let phy_allowed = Listener::start(&lab.ns("phy"), PHY, 7001);
    let phy_other = Listener::start(&lab.ns("phy"), PHY, 7002);
    let gw_api = Listener::start(&lab.ns("gw"), GW, 9696);
    let h1_ssh = Listener::start(&lab.ns("h1"), H1, 2222);
    assert!(
        eventually(Duration::from_secs(10), || connects(
            &lab.ns("app-1"),
            at(PHY, 7001)
        )),
        "the allow-listed service is not reachable"
    );

    for vm in ["app-1", "web-1"] {
        for ip in [PHY, GW, H1, H2] {
            assert!(!lab.pings(vm, ip), "{vm} pings {ip} on the underlay");
        }
        for to in [at(PHY, 7002), at(GW, 9696), at(H1, 2222)] {
            assert!(!connects(&lab.ns(vm), to), "{vm} connects to {to}");
        }
        // The router links: the node's end of its own, and the other
        // VPC's router.
        let (own_gw_side, _) = vpcip_model::desired::router_link(1);
        let (_, other_router) = vpcip_model::desired::router_link(2);
        for ip in [own_gw_side, other_router] {
            assert!(!lab.pings(vm, ip), "{vm} pings router link {ip}");
        }
    }
    assert_eq!(phy_other.accepted(), 0);
    assert_eq!(gw_api.accepted(), 0);
    assert_eq!(h1_ssh.accepted(), 0);
    assert!(phy_allowed.accepted() >= 1);

    // The infrastructure may still open connections to an EIP: the
    // answers come back.
    assert!(
        lab.pings("phy", eip.ip),
        "the physical router (on the underlay) no longer reaches an EIP"
    );
    assert!(
        lab.pings("client", eip.ip),
        "the outside client lost the EIP"
    );
    let table = lab
        .w
        .exec("gw", &["nft", "list", "table", "ip", "vpcip_guard"]);
    assert!(table.contains("192.0.2.0/24"), "{table}");
    assert!(table.contains("169.254.0.0/16"), "{table}");
    let _ = app;
}

/// With no EIP segment the gateway has no default SNAT address: a VM
/// without an EIP then reaches nothing outside, and nothing of it leaves
/// the gateway, neither from the node's own (VTEP) address nor
/// untranslated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_default_snat_address_nothing_leaves() {
    let mut lab = Lab::up("rts").await;
    host_network(&lab).await;
    let v1 = lab.vpc("v1", "10.0.0.0/16").await;
    let sw1 = lab.subnet(&v1, "sw1", "10.0.1.0/24").await;
    let _ = lab.vm("app-1", &sw1, "h1").await;
    assert!(
        eventually(Duration::from_secs(20), || lab.pings("app-1", CLIENT_IP)),
        "app-1 does not reach the outside with a default SNAT address"
    );
    lab.op.delete("/v1/subnets/seg").await.unwrap();
    let gws: Vec<Gateway> = lab.op.list(None).await.unwrap();
    assert_eq!(gws[0].snat_ip, None, "the segment took its address along");
    assert!(
        eventually(Duration::from_secs(10), || !lab.pings("app-1", CLIENT_IP)),
        "app-1 still reaches the outside"
    );
    // What reaches the client meanwhile: no IPv4 at all.
    let ns = lab.ns("client");
    let watch = std::thread::spawn(move || capture(&ns, "eth0", Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        assert!(!lab.pings("app-1", CLIENT_IP));
        let _ = vpcip_lab::ask_once(&lab.ns("app-1"), at(CLIENT_IP, 7003), "x");
    }
    let ipv4: Vec<Vec<u8>> = watch
        .join()
        .unwrap()
        .into_iter()
        .filter(|f| f[12..14] == [0x08, 0x00])
        .collect();
    assert!(ipv4.is_empty(), "IPv4 reached the client: {ipv4:02x?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_is_taken_only_from_the_vteps_of_its_segment() {
    let mut lab = Lab::up("rtv").await;
    host_network(&lab).await;
    let v1 = lab.vpc("v1", "10.0.0.0/16").await;
    let sw1 = lab.subnet(&v1, "sw1", "10.0.1.0/24").await;
    let sw2 = lab.subnet(&v1, "sw2", "10.0.2.0/24").await;
    let (_, web) = lab.vm("web-1", &sw1, "h1").await;
    let (_, app) = lab.vm("app-1", &sw2, "h2").await;
    assert!(
        eventually(Duration::from_secs(20), || lab.pings("app-1", web.ip)),
        "app-1 does not reach web-1"
    );
    // The frame every attack carries: an echo to web-1 from a made-up MAC.
    let frame = ether(
        mac(&web.mac),
        ATTACKER_MAC,
        0x0800,
        &icmp_echo("10.0.1.99".parse().unwrap(), web.ip),
    );
    let packet = vxlan(sw1.vni, &frame);
    let to_h1 = SocketAddr::new(H1.into(), 4789);

    // From a VM, through its default SNAT (which leaves from an EIP
    // segment address, not a VTEP's).
    send_udp(&lab.ns("app-1"), to_h1, &packet);
    // From the physical router: on the underlay, not a VTEP.
    send_udp(&lab.ns("phy"), to_h1, &packet);
    // From h2: a VTEP, but not of sw1 (it has no port there).
    send_udp(&lab.ns("h2"), to_h1, &packet);
    // Aimed at the gateway node, from a VM and from the underlay.
    let to_gw = SocketAddr::new(GW.into(), 4789);
    send_udp(&lab.ns("app-1"), to_gw, &packet);
    send_udp(&lab.ns("phy"), to_gw, &packet);
    std::thread::sleep(Duration::from_millis(500));
    for node in ["h1", "h2", "gw"] {
        assert!(
            !fdb_has(&lab, node, &ATTACKER_MAC),
            "{node} learned the attacker's MAC: {}",
            lab.w.exec(node, &["bridge", "fdb", "show"])
        );
    }
    let r = router(&lab, &v1);
    assert!(!fdb_has(&lab, &r, &ATTACKER_MAC), "the router learned it");

    // The same packet from sw1's own VTEP (the gateway node) is taken: the
    // attack was well formed, only its senders were wrong.
    send_udp(&lab.ns("gw"), to_h1, &packet);
    assert!(
        eventually(Duration::from_secs(2), || fdb_has(
            &lab,
            "h1",
            &ATTACKER_MAC
        )),
        "the well-formed packet from a listed VTEP did not arrive"
    );
    let table = lab
        .w
        .exec("h1", &["nft", "list", "table", "ip", "vpcip_guard"]);
    assert!(table.contains("vteps"), "{table}");
    let _ = app;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_sends_only_from_its_own_mac() {
    let mut lab = Lab::up("rtm").await;
    let v1 = lab.vpc("v1", "10.0.0.0/16").await;
    let sw1 = lab.subnet(&v1, "sw1", "10.0.1.0/24").await;
    let (_, web) = lab.vm("web-1", &sw1, "h1").await;
    let (_, victim) = lab.vm("vip-b", &sw1, "h2").await;
    assert!(
        eventually(Duration::from_secs(20), || lab.pings("web-1", victim.ip)),
        "web-1 does not reach vip-b"
    );
    let r = router(&lab, &v1);
    // The gateway learns h2's VTEP for the subnet in its own pass, which
    // may come after the hosts'.
    assert!(
        eventually(Duration::from_secs(20), || lab.pings(&r, victim.ip)),
        "the router does not reach vip-b"
    );
    let router_mac = |lab: &Lab, ip: Ipv4Addr| {
        lab.w
            .exec(&r, &["ip", "neigh", "show", &ip.to_string()])
            .to_lowercase()
    };
    let (web_mac, victim_mac) = (mac(&web.mac), mac(&victim.mac));
    let bcast = [0xff; 6];
    let port = vpcip_model::desired::port_ifname(&web.id);

    // `claims`: also claim the victim's address (only a port whose
    // source/destination check is on is kept from that).
    let attacks = |lab: &Lab, claims: bool| {
        // 1. Frames with the victim's MAC as source (its own IP inside),
        //    every 20 ms for a second.
        let steal: Vec<Vec<u8>> = (0..50)
            .map(|_| ether(bcast, victim_mac, 0x0800, &icmp_echo(web.ip, victim.ip)))
            .collect();
        send_frames(&lab.ns("web-1"), "eth0", &steal);
        // 2. ARP replies for the victim's address, from web-1's own MAC.
        let claim: Vec<Vec<u8>> = (0..5)
            .map(|_| {
                ether(
                    bcast,
                    web_mac,
                    0x0806,
                    &arp_reply(web_mac, victim.ip, bcast, victim.ip),
                )
            })
            .collect();
        if claims {
            send_frames(&lab.ns("web-1"), "eth0", &claim);
        }
        // 3. ARP whose sender hardware address is the victim's.
        let sha: Vec<Vec<u8>> = (0..5)
            .map(|_| {
                ether(
                    bcast,
                    web_mac,
                    0x0806,
                    &arp_reply(victim_mac, web.ip, bcast, web.ip),
                )
            })
            .collect();
        send_frames(&lab.ns("web-1"), "eth0", &sha);
        // 4. A flood of random source MACs.
        let flood: Vec<Vec<u8>> = (0u32..300)
            .map(|i| {
                let b = i.to_be_bytes();
                let src = [0x02, 0x77, b[0], b[1], b[2], b[3]];
                ether(bcast, src, 0x0800, &icmp_echo(web.ip, victim.ip))
            })
            .collect();
        send_frames(&lab.ns("web-1"), "eth0", &flood);
        std::thread::sleep(Duration::from_millis(300));
    };
    let assert_nothing_learned = |lab: &Lab, when: &str| {
        let fdb = lab.w.exec("h1", &["bridge", "fdb", "show"]);
        let on_port = |m: &[u8; 6]| {
            fdb.lines()
                .any(|l| l.contains(&mac_text(m)) && l.contains(&format!("dev {port} ")))
        };
        assert!(
            !on_port(&victim_mac),
            "{when}: h1 put vip-b's MAC on web-1's port:\n{fdb}"
        );
        let flooded = fdb.lines().filter(|l| l.contains("02:77:")).count();
        assert_eq!(flooded, 0, "{when}: h1 learned flooded MACs:\n{fdb}");
        let rfdb = lab.w.exec(&r, &["bridge", "fdb", "show"]);
        assert!(
            !rfdb
                .lines()
                .any(|l| l.contains(&mac_text(&victim_mac)) && l.contains("192.0.2.11")),
            "{when}: the router points vip-b's MAC at h1:\n{rfdb}"
        );
        assert!(
            router_mac(lab, victim.ip).contains(&mac_text(&victim_mac)),
            "{when}: the router resolves vip-b to {}",
            router_mac(lab, victim.ip)
        );
        assert!(
            !router_mac(lab, web.ip).contains(&mac_text(&victim_mac)),
            "{when}: the router resolves web-1 to vip-b's MAC"
        );
    };
    attacks(&lab, true);
    assert_nothing_learned(&lab, "check on");
    // The victim still answers the router.
    assert!(lab.pings(&r, victim.ip));

    // With the source/destination check off (a router VM) the MAC stays
    // pinned.
    let _: Nic = lab
        .op
        .patch(
            &paths::at(paths::NIC, &[&web.id]),
            &UpdateNic {
                source_dest_check: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let stolen: Ipv4Addr = "10.0.1.200".parse().unwrap();
    // (The check is off once web-1 may send from another address.)
    let from_other = |lab: &Lab| {
        let echo = ether(
            mac(&victim.mac),
            web_mac,
            0x0800,
            &icmp_echo(stolen, victim.ip),
        );
        send_frames(&lab.ns("web-1"), "eth0", &[echo]);
        std::thread::sleep(Duration::from_millis(200));
        lab.w
            .exec("vip-b", &["ip", "neigh", "show", &stolen.to_string()])
            .contains(&stolen.to_string())
    };
    assert!(
        eventually(Duration::from_secs(10), || from_other(&lab)),
        "the check is off, yet web-1's other source is dropped"
    );
    attacks(&lab, false);
    assert_nothing_learned(&lab, "check off");
    let table = lab
        .w
        .exec("h1", &["nft", "list", "table", "bridge", "vpcip_spoof"]);
    assert!(table.contains(&web.mac.to_lowercase()), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_add_nothing_to_tenant_segments() {
    let mut lab = Lab::up("rth").await;
    let v1 = lab.vpc("v1", "10.0.0.0/16").await;
    let sw1 = lab.subnet(&v1, "sw1", "10.0.1.0/24").await;
    let (_, a) = lab.vm("vip-a", &sw1, "h1").await;
    let (_, b) = lab.vm("vip-b", &sw1, "h2").await;
    assert!(
        eventually(Duration::from_secs(20), || lab.pings("vip-a", b.ip)),
        "vip-a does not reach vip-b"
    );
    let br = format!("br{}", sw1.vni);
    let vx = format!("vx{}", sw1.vni);
    let port = vpcip_model::desired::port_ifname(&a.id);
    for dev in [&br, &vx, &port] {
        let v = lab.w.exec(
            "h1",
            &[
                "cat",
                &format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"),
            ],
        );
        assert_eq!(v.trim(), "1", "IPv6 is on on h1's {dev}");
        assert!(
            lab.w
                .exec("h1", &["ip", "-6", "addr", "show", "dev", dev])
                .trim()
                .is_empty(),
            "h1's {dev} has an IPv6 address"
        );
    }
    // The host's links flap (a restart, an operator): with IPv6 on, each
    // would send router solicitations and MLD reports into the segment.
    let listen = {
        let ns = lab.ns("vip-a");
        std::thread::spawn(move || capture(&ns, "eth0", Duration::from_secs(4)))
    };
    std::thread::sleep(Duration::from_millis(300));
    for dev in [&br, &vx] {
        lab.w.exec("h1", &["ip", "link", "set", dev, "down"]);
        lab.w.exec("h1", &["ip", "link", "set", dev, "up"]);
    }
    // An address put on the bridge by hand (a mistake): the host still
    // cannot talk into the segment, nor a VM to it.
    lab.w
        .exec("h1", &["ip", "addr", "add", "10.0.1.250/24", "dev", &br]);
    assert!(!lab.pings("h1", a.ip), "h1 reaches vip-a over its bridge");
    assert!(
        !lab.pings("vip-a", "10.0.1.250".parse().unwrap()),
        "vip-a reaches h1"
    );
    let frames = listen.join().unwrap();
    let from_host: Vec<String> = frames
        .iter()
        .filter(|f| f[12..14] == [0x86, 0xdd] || f[0] & 1 == 1 && f[12..14] != [0x08, 0x06])
        .map(|f| format!("{:02x?}", &f[..f.len().min(34)]))
        .collect();
    assert!(
        from_host.is_empty(),
        "vip-a received from the host: {from_host:?}"
    );
    assert!(lab.pings("vip-a", b.ip), "the segment itself broke");
}
