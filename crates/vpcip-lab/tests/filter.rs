//! The security-group filter (vpcip-sys) with real packets: a host with
//! two VPCs' bridges whose VMs have the same addresses, programmed over
//! netlink only from a planned filter; allowed and refused traffic,
//! replies, a live rule removal that cuts what it allowed, two VPCs'
//! identical connections kept apart by conntrack zones, broadcast judged by
//! each receiving port, and no unknown unicast out of a VM port.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use vpcip_dataplane::filter::{filter_for, narrowed};
use vpcip_lab::{Conn, World, ask_once, echo_server};
use vpcip_model::desired::{HostPort, HostState};
use vpcip_model::filter::{FilterElement, GroupFilter, PROTO_ICMP, PROTO_TCP};
use vpcip_sys::link::{Net, parse_mac, pinned_of};
use vpcip_sys::netns::{in_netns, named};
use vpcip_sys::nft::NatTable;

const A: &str = "10.0.0.2";
const B: &str = "10.0.0.3";

fn at(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(s.parse().unwrap(), port)
}

fn element(proto: u8, ports: (u16, u16), remote: &str) -> FilterElement {
    FilterElement::new((proto, proto), ports, remote.parse().unwrap())
}

/// VM `vm`'s MAC.
fn mac(vm: &str) -> String {
    format!("02:00:00:00:00:{:02x}", vm.as_bytes()[0])
}

fn port(ifname: &str, ip: &str, vni: u32, zone: u16, group: &str) -> HostPort {
    HostPort {
        nic_id: format!("nic-{ifname}"),
        ifname: ifname.into(),
        vni,
        mac: mac(&ifname[1..]),
        ips: vec![ip.parse().unwrap()],
        source_dest_check: true,
        security_groups: vec![group.into()],
        vrrp_peers: vec![],
        zone,
        dhcp: None,
    }
}

/// VPC 1 (zone 1, bridge br10): a (group "open": everything in) and b
/// (group "web": tcp 8080 and 8081 from VPC 1's block, nothing else);
/// VPC 2 (zone 2, br20): c and d with a's and b's addresses, both "open".
fn host(web_8081: bool) -> HostState {
    let all = FilterElement::new((0, 255), (0, 65535), "0.0.0.0/0".parse().unwrap());
    let mut web = vec![element(PROTO_TCP, (8080, 8080), "10.0.0.0/24")];
    if web_8081 {
        web.push(element(PROTO_TCP, (8081, 8081), "10.0.0.0/24"));
    }
    HostState {
        domains: vec![],
        ports: vec![
            port("ta", A, 10, 1, "sg-open"),
            port("tb", B, 10, 1, "sg-web"),
            port("tc", A, 20, 2, "sg-open"),
            port("td", B, 20, 2, "sg-open"),
        ],
        groups: vec![
            GroupFilter {
                id: "sg-open".into(),
                ingress: vec![all],
                egress: vec![all],
            },
            GroupFilter {
                id: "sg-web".into(),
                ingress: web,
                // What the model would give: no overlapping elements.
                egress: vpcip_model::filter::disjoint(
                    [all, element(PROTO_ICMP, (0, 65535), "10.0.0.0/8")].into(),
                ),
            },
        ],
    }
}

fn world() -> World {
    let mut w = World::new("vft");
    for n in ["host", "a", "b", "c", "d"] {
        w.add_node(n);
        // No IPv6 chatter (the port guards, not here, drop it): the
        // ports' frame counters count what the tests send.
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
    for (br, vms) in [("br10", ["a", "b"]), ("br20", ["c", "d"])] {
        w.exec("host", &["ip", "link", "add", br, "type", "bridge"]);
        w.exec("host", &["ip", "link", "set", br, "up"]);
        for (vm, ip) in vms.iter().zip([A, B]) {
            let port = format!("t{vm}");
            let ns = w.ns(vm);
            w.exec(
                "host",
                &[
                    "ip", "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                    &ns,
                ],
            );
            w.exec("host", &["ip", "link", "set", &port, "master", br, "up"]);
            w.exec(vm, &["ip", "link", "set", "eth0", "address", &mac(vm)]);
            w.exec(
                vm,
                &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            );
            w.exec(vm, &["ip", "link", "set", "eth0", "up"]);
        }
    }
    w.exec(
        "host",
        &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
    );
    // Each VM port as the host agent makes it: its MAC pinned, no
    // unknown unicast out of it.
    in_netns(&named(&w.ns("host")), || {
        let net = Net::open().unwrap();
        for vm in ["a", "b", "c", "d"] {
            let index = net.link(&format!("t{vm}")).unwrap().unwrap().index;
            net.unicast_flood_off(index).unwrap();
            net.pin_mac(index, parse_mac(&mac(vm)).unwrap()).unwrap();
        }
        let fdb = net.fdb().unwrap();
        let tb = net.link("tb").unwrap().unwrap();
        assert_eq!(tb.unicast_flood, Some(false));
        assert_eq!(
            pinned_of(&fdb, tb.index),
            vec![parse_mac(&mac("b")).unwrap()]
        );
    })
    .unwrap();
    w
}

/// Frames the host sent out of a VM port so far.
fn sent_out_of(w: &World, port: &str) -> u64 {
    w.exec(
        "host",
        &[
            "cat",
            &format!("/sys/class/net/{port}/statistics/tx_packets"),
        ],
    )
    .trim()
    .parse()
    .unwrap()
}

fn ping(w: &World, from: &str, to: &str) -> bool {
    w.try_exec(from, &["ping", "-c1", "-W1", to]).is_some()
}

#[test]
fn security_groups_filter_real_traffic_statefully_per_vpc() {
    let w = world();
    let mut nft = in_netns(&named(&w.ns("host")), NatTable::open)
        .unwrap()
        .unwrap();
    let want = filter_for(&host(true), None);
    nft.make_filter(&want).unwrap();
    let seen = nft.read_filter().unwrap().unwrap();
    assert_eq!(seen, want.seen(), "what was written reads back");
    assert_eq!(
        filter_for(&host(true), Some(&seen)),
        want,
        "idle: nothing to do"
    );
    // A filter of an older layout (planted by `plant`) reads as no filter,
    // and is made anew in the current one.
    let mut remade_after = |plant: &str| {
        w.exec("host", &["nft", plant]);
        assert_eq!(nft.read_filter().unwrap(), None, "an older layout is kept");
        nft.make_filter(&want).unwrap();
        assert_eq!(nft.read_filter().unwrap(), Some(want.seen()));
    };
    // The ip table's fixed part with an empty prerouting chain `pre`.
    remade_after("add chain ip vpcip_sg pre { type filter hook prerouting priority 0; }");
    assert!(
        !w.exec("host", &["nft", "list", "table", "ip", "vpcip_sg"])
            .contains("chain pre ")
    );
    // A bridge table whose chain is `ports`, which numbered every frame
    // (now only multicast and broadcast are numbered, by the port they go
    // to; unicast finds its ports by bridge and MAC).
    remade_after(
        "flush chain bridge vpcip_sgmark multicast; \
         delete chain bridge vpcip_sgmark multicast; \
         add chain bridge vpcip_sgmark ports { type filter hook forward priority -350; }",
    );
    let bridge = w.exec("host", &["nft", "list", "table", "bridge", "vpcip_sgmark"]);
    assert!(!bridge.contains("chain ports "), "{bridge}");
    assert!(bridge.contains("* : "), "catch-all element: {bridge}");

    let _servers: Vec<_> = ["b", "d"]
        .iter()
        .flat_map(|vm| {
            [8080, 8081, 8082].map(|p| echo_server(&w.ns(vm), p, Duration::from_secs(30)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (a, c) = (w.ns("a"), w.ns("c"));
    assert!(ask_once(&a, at(B, 8080), "x").is_some());
    assert!(ask_once(&a, at(B, 8081), "x").is_some());
    assert_eq!(ask_once(&a, at(B, 8082), "x"), None, "no rule for 8082");
    assert!(!ping(&w, "a", B), "no rule lets ICMP into b");

    // A hostile VM gives its packets the priority that is the number of a
    // port whose ingress lets everything in (its own): b's ingress still
    // judges what goes to b (the bridge chain sets both numbers of every
    // frame, whatever it carries).
    let forged = format!("0:{:x}", want.marks["ta"]);
    w.exec(
        "a",
        &[
            "nft",
            &format!(
                "add table ip hostile; \
                 add chain ip hostile out {{ type filter hook output priority 0; }}; \
                 add rule ip hostile out meta priority set {forged}"
            ),
        ],
    );
    assert_eq!(ask_once(&a, at(B, 8082), "x"), None, "a forged priority");
    assert!(!ping(&w, "a", B), "a forged priority (ICMP)");
    assert!(ask_once(&a, at(B, 8080), "x").is_some(), "allowed still");
    w.exec("a", &["nft", "delete table ip hostile"]);

    // a sends to b's address with a MAC no port has: the bridge floods it
    // to the tunnel's side only, never out of a VM port, where no port's
    // chain would judge it (b refuses ICMP from a).
    let before = sent_out_of(&w, "tb");
    w.exec(
        "a",
        &[
            "ip",
            "neigh",
            "replace",
            B,
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "eth0",
        ],
    );
    assert!(!ping(&w, "a", B));
    assert!(!ping(&w, "a", B));
    w.exec("a", &["ip", "neigh", "del", B, "dev", "eth0"]);
    assert_eq!(
        sent_out_of(&w, "tb"),
        before,
        "unknown unicast out of b's port"
    );

    // Broadcast goes to each port through that port's ingress: b's
    // refuses ICMP from a, d's (VPC 2, "open") lets c's in.
    let drops_before = nft.read_filter_drops().unwrap()[&want.marks["tb"]].packets_in;
    let (tb_before, td_before) = (sent_out_of(&w, "tb"), sent_out_of(&w, "td"));
    for vm in ["a", "c"] {
        let _ = w.try_exec(vm, &["ping", "-b", "-c3", "-i0.2", "-W1", "10.0.0.255"]);
    }
    assert!(sent_out_of(&w, "tb") < tb_before + 3, "broadcast into b");
    assert!(sent_out_of(&w, "td") >= td_before + 3, "broadcast into d");
    let drops_after = nft.read_filter_drops().unwrap()[&want.marks["tb"]].packets_in;
    assert!(drops_after >= drops_before + 3, "b's ingress counted them");
    assert!(ping(&w, "b", A), "b's egress allows ICMP; the reply passes");
    // VPC 2: same addresses, its own groups (everything open).
    assert!(ask_once(&c, at(B, 8082), "x").is_some());
    assert!(ping(&w, "c", B));

    // Connections to 8080 and 8081 open in VPC 1 and VPC 2 (the same
    // addresses and ports), then 8081 is removed from "web".
    let mut keep = Conn::open(&a, at(B, 8080), Duration::from_secs(1)).unwrap();
    let mut cut = Conn::open(&a, at(B, 8081), Duration::from_secs(1)).unwrap();
    let mut other_vpc = Conn::open(&c, at(B, 8081), Duration::from_secs(1)).unwrap();
    for conn in [&mut keep, &mut cut, &mut other_vpc] {
        assert!(conn.ask("1").is_some());
    }
    let after = host(false);
    let want2 = filter_for(&after, Some(&seen));
    let judged = narrowed(&after, &seen, &want2);
    assert_eq!(judged.len(), 1, "only b lost a rule");
    nft.change_filter(&seen, &want2).unwrap();
    let gone = in_netns(&named(&w.ns("host")), || {
        vpcip_sys::conntrack::forget_flows(|f| judged.iter().any(|p| p.refuses(f)))
    })
    .unwrap()
    .unwrap();
    assert_eq!(
        gone.deleted, 2,
        "VPC 1's connections to 8081: the open one, and the first (closed, still tracked)"
    );
    assert_eq!(nft.read_filter().unwrap().unwrap(), want2.seen());
    assert!(keep.ask("2").is_some(), "8080 is still allowed");
    assert_eq!(
        cut.ask("2"),
        None,
        "8081 was cut: the client's next packet is judged anew"
    );
    assert!(
        other_vpc.ask("2").is_some(),
        "VPC 2's connection with the same addresses is another zone's"
    );
    assert_eq!(ask_once(&a, at(B, 8081), "x"), None);

    // Counted: what b's ingress dropped.
    let drops = nft.read_filter_drops().unwrap();
    let b_mark = want2.marks["tb"];
    assert!(drops[&b_mark].packets_in > 0, "{drops:?}");
    let _ = Ipv4Addr::LOCALHOST;
}
