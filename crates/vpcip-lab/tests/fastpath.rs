//! The established-flow fast path (vpcip-sys `fastpath`, a tc/BPF program
//! at the VM ports and tunnels) with real packets, on two hosts over
//! VXLAN programmed as the host agent programs them (port guards, filter,
//! pinned ports, fast path): an allowed connection's packets go around the
//! bridge on both hosts; a hostile VM that forges packets of that
//! connection (its victim's address with its own MAC, or the victim's MAC
//! too) or of a connection nobody opened gets nothing taken around the
//! bridge and nothing delivered; a VM of another VPC with the same
//! addresses that sends the packets of VPC 1's connection gets nothing
//! taken either (conntrack zones); a connection cut by a rule's removal is
//! cut for the fast path too.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use vpcip_dataplane::fastpath::fastpath_for;
use vpcip_dataplane::filter::{FilterSeen, filter_for, narrowed};
use vpcip_dataplane::isolation::port_guards;
use vpcip_dataplane::links::vxlan_ifname;
use vpcip_lab::{Conn, World, echo_server};
use vpcip_model::desired::{HostPort, HostState, L2Domain};
use vpcip_model::filter::{FilterElement, GroupFilter, PROTO_TCP};
use vpcip_sys::fastpath::{FastPath, links_of};
use vpcip_sys::frames::FrameSender;
use vpcip_sys::link::{Net, parse_mac};
use vpcip_sys::netns::{in_netns, named};
use vpcip_sys::nft::NatTable;

const A: &str = "10.0.0.2";
const B: &str = "10.0.0.3";
const M: &str = "10.0.0.4";

/// VM `vm`'s MAC.
fn mac(vm: &str) -> String {
    format!("02:00:00:00:00:{:02x}", vm.as_bytes()[0])
}

/// A VM's port in VPC 1 (VNI 10, zone 1) or VPC 2 (VNI 20, zone 2).
fn port(vm: &str, ip: &str, vpc: u16, group: &str) -> HostPort {
    HostPort {
        nic_id: format!("nic-{vm}"),
        ifname: format!("t{vm}"),
        vni: u32::from(vpc) * 10,
        mac: mac(vm),
        ips: vec![ip.parse().unwrap()],
        source_dest_check: true,
        security_groups: vec![group.into()],
        vrrp_peers: vec![],
        zone: vpc,
        dhcp: None,
    }
}

/// VPC 1 — h1: a and the hostile m (group "open"); h2: b (group "web":
/// tcp 8080, and 8081 when `web_8081`, from the VPC's block). VPC 2, the
/// same addresses — h1: c (as a, "open"); h2: d (as b, "closed": nothing
/// in).
fn host(h: &str, web_8081: bool) -> HostState {
    let all = FilterElement::new((0, 255), (0, 65535), "0.0.0.0/0".parse().unwrap());
    let mut web = vec![FilterElement::new(
        (PROTO_TCP, PROTO_TCP),
        (8080, 8080),
        "10.0.0.0/24".parse().unwrap(),
    )];
    if web_8081 {
        web.push(FilterElement::new(
            (PROTO_TCP, PROTO_TCP),
            (8081, 8081),
            "10.0.0.0/24".parse().unwrap(),
        ));
    }
    let ports = if h == "h1" {
        vec![
            port("a", A, 1, "sg-open"),
            port("m", M, 1, "sg-open"),
            port("c", A, 2, "sg-open"),
        ]
    } else {
        vec![port("b", B, 1, "sg-web"), port("d", B, 2, "sg-closed")]
    };
    HostState {
        domains: [10, 20]
            .map(|vni| L2Domain {
                subnet_id: format!("subnet-{vni}"),
                vni,
                vteps: vec![],
            })
            .into(),
        ports,
        groups: vec![
            GroupFilter {
                id: "sg-open".into(),
                ingress: vec![all],
                egress: vec![all],
            },
            GroupFilter {
                id: "sg-web".into(),
                ingress: web,
                egress: vec![all],
            },
            GroupFilter {
                id: "sg-closed".into(),
                ingress: vec![],
                egress: vec![all],
            },
        ],
    }
}

fn world() -> World {
    let mut w = World::new("vfp");
    for n in ["h1", "h2", "a", "b", "m", "c", "d"] {
        w.add_node(n);
        w.exec(
            n,
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
    }
    w.link("h1", "phy0", "192.0.2.1/24", "h2", "phy0", "192.0.2.2/24");
    for (h, local, other) in [
        ("h1", "192.0.2.1", "192.0.2.2"),
        ("h2", "192.0.2.2", "192.0.2.1"),
    ] {
        for vni in ["10", "20"] {
            let (vx, br) = (format!("vx{vni}"), format!("br{vni}"));
            w.exec(
                h,
                &[
                    "ip",
                    "link",
                    "add",
                    &vx,
                    "type",
                    "vxlan",
                    "id",
                    vni,
                    "local",
                    local,
                    "dstport",
                    "4789",
                    "nolearning",
                ],
            );
            w.exec(
                h,
                &[
                    "bridge",
                    "fdb",
                    "append",
                    "00:00:00:00:00:00",
                    "dev",
                    &vx,
                    "dst",
                    other,
                ],
            );
            w.exec(h, &["ip", "link", "add", &br, "type", "bridge"]);
            w.exec(h, &["ip", "link", "set", &vx, "master", &br, "up"]);
            w.exec(h, &["ip", "link", "set", &br, "up"]);
        }
        w.exec(
            h,
            &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
        );
    }
    for (h, vm, ip, br) in [
        ("h1", "a", A, "br10"),
        ("h1", "m", M, "br10"),
        ("h1", "c", A, "br20"),
        ("h2", "b", B, "br10"),
        ("h2", "d", B, "br20"),
    ] {
        let port = format!("t{vm}");
        let ns = w.ns(vm);
        w.exec(
            h,
            &[
                "ip", "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        );
        w.exec(h, &["ip", "link", "set", &port, "master", br, "up"]);
        w.exec(vm, &["ip", "link", "set", "eth0", "address", &mac(vm)]);
        w.exec(vm, &["ip", "link", "set", "eth0", "mtu", "1450"]);
        w.exec(
            vm,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        );
        w.exec(vm, &["ip", "link", "set", "eth0", "up"]);
    }
    // No ARP during the attacks: every VM knows the others for good.
    for (vm, peers) in [
        ("a", vec![(B, "b"), (M, "m")]),
        ("m", vec![(A, "a"), (B, "b")]),
        ("b", vec![(A, "a"), (M, "m")]),
        ("c", vec![(B, "d")]),
        ("d", vec![(A, "c")]),
    ] {
        for (ip, who) in peers {
            w.exec(
                vm,
                &[
                    "ip",
                    "neigh",
                    "replace",
                    ip,
                    "lladdr",
                    &mac(who),
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ],
            );
        }
    }
    w
}

/// Programs host `h` as the host agent does; the filter as read back, and
/// the loaded fast path.
fn program(w: &World, h: &str) -> (FilterSeen, FastPath) {
    let state = host(h, true);
    in_netns(&named(&w.ns(h)), move || {
        let net = Net::open().unwrap();
        for p in &state.ports {
            let index = net.link(&p.ifname).unwrap().unwrap().index;
            net.unicast_flood_off(index).unwrap();
            net.pin_mac(index, parse_mac(&p.mac).unwrap()).unwrap();
        }
        let guards = port_guards(&state, vxlan_ifname);
        let mut nft = NatTable::open().unwrap();
        nft.ensure_spoof(&guards).unwrap();
        nft.apply_spoof(&guards).unwrap();
        nft.make_filter(&filter_for(&state, None)).unwrap();
        let links = net.links().unwrap();
        let (seen, index) = links_of(&links);
        let want = fastpath_for(&state, &seen, &guards);
        // Each VM port and each bridge's tunnel.
        assert_eq!(want.ports.len(), state.ports.len() + 2, "{want:?}");
        let mut fast = FastPath::load().unwrap();
        fast.apply(&net, &want, &index).unwrap();
        // Applied again: nothing to do.
        assert_eq!(fast.apply(&net, &want, &index).unwrap(), 0);
        // A new agent finds it on the tunnels and reads back what it holds.
        let names: BTreeMap<u32, String> =
            links.iter().map(|l| (l.index, l.name.clone())).collect();
        let tunnels = [index["vx10"], index["vx20"]];
        let found = FastPath::adopt(&net, &tunnels, &names).unwrap().unwrap();
        assert_eq!(found.seen(&names), want, "read back");
        assert!(
            FastPath::adopt(&net, &[index["br10"]], &names)
                .unwrap()
                .is_none()
        );
        (nft.read_filter().unwrap().unwrap(), fast)
    })
    .unwrap()
}

/// Frames the host `h` sent out of a port so far.
fn sent_out_of(w: &World, h: &str, port: &str) -> u64 {
    w.exec(
        h,
        &[
            "cat",
            &format!("/sys/class/net/{port}/statistics/tx_packets"),
        ],
    )
    .trim()
    .parse()
    .unwrap()
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for pair in data.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = u32::from(pair.get(1).copied().unwrap_or(0));
        acc += hi | lo;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !u16::try_from(acc).unwrap()
}

/// An Ethernet frame carrying a TCP ACK with `payload`, checksums right,
/// as a hostile VM would make it.
fn tcp_frame(
    src_mac: &str,
    dst_mac: &str,
    from: SocketAddr,
    to: SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
        panic!("IPv4")
    };
    let mut f = Vec::new();
    f.extend_from_slice(&parse_mac(dst_mac).unwrap());
    f.extend_from_slice(&parse_mac(src_mac).unwrap());
    f.extend_from_slice(&[0x08, 0x00]);
    let total = u16::try_from(20 + 20 + payload.len()).unwrap();
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, 6, 0, 0]);
    ip.extend_from_slice(&from.ip().octets());
    ip.extend_from_slice(&to.ip().octets());
    let c = fold(sum16(&ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&from.port().to_be_bytes());
    tcp.extend_from_slice(&to.port().to_be_bytes());
    tcp.extend_from_slice(&1_000_000u32.to_be_bytes()); // seq
    tcp.extend_from_slice(&1_000_000u32.to_be_bytes()); // ack
    tcp.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]); // PSH|ACK
    tcp.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&from.ip().octets());
    pseudo.extend_from_slice(&to.ip().octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&u16::try_from(tcp.len()).unwrap().to_be_bytes());
    let c = fold(sum16(&tcp, sum16(&pseudo, 0)));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f
}

#[test]
fn established_connections_go_around_the_bridge_and_forgeries_do_not() {
    let w = world();
    let (_seen1, fast1) = program(&w, "h1");
    let (seen2, fast2) = program(&w, "h2");
    let _servers: Vec<_> = [("b", 8080), ("b", 8081), ("b", 8082), ("d", 8080)]
        .iter()
        .map(|(vm, p)| echo_server(&w.ns(vm), *p, Duration::from_secs(60)))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let to = |p: u16| SocketAddr::new(B.parse().unwrap(), p);

    // An allowed connection: after its handshake (judged by the filter),
    // its packets go around the bridge on both hosts.
    let mut conn = Conn::open(&w.ns("a"), to(8080), Duration::from_secs(2)).unwrap();
    let mut cut = Conn::open(&w.ns("a"), to(8081), Duration::from_secs(2)).unwrap();
    for i in 0..20 {
        // (the server answers with the client's address and the line)
        assert_eq!(conn.ask(&format!("{i}")), Some(format!("{A} {i}")));
    }
    assert!(cut.ask("x").is_some());
    let (t1, t2) = (fast1.taken().unwrap(), fast2.taken().unwrap());
    assert!(
        t1 >= 20 && t2 >= 20,
        "taken around the bridge: h1 {t1}, h2 {t2}"
    );
    // A connection no rule allows is refused all the same (its SYN is the
    // filter's).
    assert!(Conn::open(&w.ns("a"), to(8082), Duration::from_millis(800)).is_none());

    // m forges packets of a's connection: a's address with m's own MAC,
    // then with a's MAC too. Neither is taken around the bridge (not m's
    // address; not m's MAC), and the port guards drop both.
    let a_end = conn.local().unwrap();
    let mut m_eth = FrameSender::open(&named(&w.ns("m")), "eth0").unwrap();
    let (taken, out_b) = (fast1.taken().unwrap(), sent_out_of(&w, "h2", "tb"));
    for src_mac in [mac("m"), mac("a")] {
        for _ in 0..5 {
            m_eth
                .send(&tcp_frame(
                    &src_mac,
                    &mac("b"),
                    a_end,
                    to(8080),
                    b"forged\n",
                ))
                .unwrap();
        }
    }
    // m's own address towards b's port 8082, as if a connection were open
    // (no SYN): conntrack holds none, so nothing is taken, and the filter
    // judges it new (no rule lets 8082 in).
    let m_end = SocketAddr::new(M.parse().unwrap(), 40000);
    for _ in 0..5 {
        m_eth
            .send(&tcp_frame(
                &mac("m"),
                &mac("b"),
                m_end,
                to(8082),
                b"forged\n",
            ))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fast1.taken().unwrap(),
        taken,
        "forgeries taken around the bridge"
    );
    assert_eq!(
        sent_out_of(&w, "h2", "tb"),
        out_b,
        "forgeries delivered to b"
    );

    // c, in VPC 2 with a's address, sends the packets of a's connection
    // (its own address and MAC) to d, which has b's address and lets
    // nothing in: VPC 1's connection is not VPC 2's (zones), so nothing is
    // taken and d's ingress refuses it.
    assert!(
        Conn::open(&w.ns("c"), to(8080), Duration::from_millis(800)).is_none(),
        "d lets nothing in"
    );
    let (taken, out_d) = (fast1.taken().unwrap(), sent_out_of(&w, "h2", "td"));
    let mut c_eth = FrameSender::open(&named(&w.ns("c")), "eth0").unwrap();
    for _ in 0..5 {
        c_eth
            .send(&tcp_frame(
                &mac("c"),
                &mac("d"),
                a_end,
                to(8080),
                b"other vpc\n",
            ))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fast1.taken().unwrap(),
        taken,
        "VPC 1's connection taken for VPC 2"
    );
    assert_eq!(
        sent_out_of(&w, "h2", "td"),
        out_d,
        "VPC 1's connection delivered in VPC 2"
    );
    assert_eq!(
        conn.ask("still"),
        Some(format!("{A} still")),
        "a's connection unharmed"
    );

    // A rule removed: the connections it allowed are cut (conntrack
    // forgets them), so their packets are no longer taken but judged anew,
    // and refused.
    let after = host("h2", false);
    let want2 = filter_for(&after, Some(&seen2));
    let judged = narrowed(&after, &seen2, &want2);
    let mut nft = in_netns(&named(&w.ns("h2")), NatTable::open)
        .unwrap()
        .unwrap();
    nft.change_filter(&seen2, &want2).unwrap();
    let gone = in_netns(&named(&w.ns("h2")), || {
        vpcip_sys::conntrack::forget_flows(|f| judged.iter().any(|p| p.refuses(f)))
    })
    .unwrap()
    .unwrap();
    assert!(gone.deleted >= 1);
    let taken2 = fast2.taken().unwrap();
    assert_eq!(cut.ask("y"), None, "8081 was cut");
    assert_eq!(
        fast2.taken().unwrap(),
        taken2,
        "the cut connection taken on h2"
    );
    assert_eq!(conn.ask("z"), Some(format!("{A} z")), "8080 still allowed");
    let _ = Ipv4Addr::LOCALHOST;
}
