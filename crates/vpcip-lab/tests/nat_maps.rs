//! The EIP NAT maps (vpcip-sys) with real packets: an outside client, a
//! router and a VM in namespaces made for this test; the router programmed
//! over netlink only; TCP and ICMP checked end to end.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use vpcip_dataplane::nat::{MapChange, NatMap, NatPlan, plan_nat, snat_of};
use vpcip_lab::{World, ask_once, echo_server};
use vpcip_sys::netns::{in_netns, named};
use vpcip_sys::nft::NatTable;

const CLIENT: &str = vpcip_lab::OUTSIDE_CLIENT;
const EIP: &str = "203.0.113.100";
const EIP2: &str = "203.0.113.101";
const VM: &str = "10.0.0.2";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn at(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(s.parse().unwrap(), port)
}

fn world() -> World {
    let mut w = World::new("vpt");
    vpcip_lab::client_router_vm(&mut w, "router", "203.0.113.0/24");
    w
}

#[test]
fn eip_nat_maps_carry_real_traffic() {
    let w = world();
    let (client, vm) = (w.ns("client"), w.ns("vm"));
    let mut nat = in_netns(&named(&w.ns("router")), NatTable::open)
        .unwrap()
        .unwrap();
    assert!(nat.ensure().unwrap(), "a fresh router gets the table");
    assert!(!nat.ensure().unwrap(), "ensure is idempotent");
    let ruleset = w.exec("router", &["nft", "list", "table", "ip", "vpcip_nat"]);
    assert!(
        ruleset.contains("dnat to ip daddr map @eip_dnat"),
        "{ruleset}"
    );
    // In this order: hairpin (map, then masquerade), outbound (map, then the
    // default SNAT).
    let postrouting: Vec<&str> = ruleset
        .lines()
        .map(str::trim)
        .filter(|l| {
            (l.contains("snat") || l.contains("masquerade"))
                && !l.contains("hook")
                && !l.starts_with("map ")
        })
        .collect();
    assert_eq!(
        postrouting,
        [
            "iifname != \"up0\" oifname != \"up0\" ct status dnat snat to ip saddr map @eip_snat",
            "iifname != \"up0\" oifname != \"up0\" ct status dnat masquerade",
            "oifname \"up0\" snat to ip saddr map @eip_snat",
            "oifname \"up0\" masquerade",
        ],
        "{ruleset}"
    );

    let _vm_server = echo_server(&vm, 8080, Duration::from_secs(20));
    assert_eq!(
        ask_once(&client, at(EIP, 8080), "x"),
        None,
        "nothing bound: no answer"
    );

    // Bind: the outside reaches the VM, which sees the client's real address.
    let desired: NatMap = [(ip(EIP), ip(VM))].into();
    let (d, s) = nat.read().unwrap();
    let plan = plan_nat(&desired, &d, &s);
    assert_eq!((plan.dnat.add.len(), plan.snat.add.len()), (1, 1));
    nat.apply(&plan).unwrap();
    assert_eq!(nat.read().unwrap(), (desired.clone(), snat_of(&desired)));
    assert_eq!(
        ask_once(&client, at(EIP, 8080), "hi").as_deref(),
        Some(format!("{CLIENT} hi").as_str())
    );
    let ping = w.exec("client", &["ping", "-c", "2", "-W", "1", EIP]);
    assert!(ping.contains("2 received"), "{ping}");

    // The VM's own outbound traffic leaves with the EIP as its source.
    let _outside = echo_server(&client, 9090, Duration::from_secs(20));
    assert_eq!(
        ask_once(&vm, at(CLIENT, 9090), "out").as_deref(),
        Some(format!("{EIP} out").as_str())
    );

    // Hairpin: the VM reaches its own EIP, and sees it as the source.
    assert_eq!(
        ask_once(&vm, at(EIP, 8080), "hairpin").as_deref(),
        Some(format!("{EIP} hairpin").as_str())
    );

    // Drift: an element deleted by hand is found and put back; the SNAT
    // half, still right, is not touched.
    w.exec(
        "router",
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
    let (d, s) = nat.read().unwrap();
    assert!(d.is_empty());
    let repair = plan_nat(&desired, &d, &s);
    assert_eq!(repair.dnat.add.len(), 1);
    assert!(
        repair.dnat.remove.is_empty() && repair.snat.is_empty(),
        "nothing right is touched"
    );
    nat.apply(&repair).unwrap();
    assert_eq!(
        ask_once(&client, at(EIP, 8080), "again").as_deref(),
        Some(format!("{CLIENT} again").as_str())
    );

    // Rebind the EIP elsewhere and add a second one, in one transaction.
    let moved: NatMap = [(ip(EIP), ip("10.0.0.3")), (ip(EIP2), ip(VM))].into();
    let (d, s) = nat.read().unwrap();
    let plan = plan_nat(&moved, &d, &s);
    assert_eq!((plan.dnat.remove.len(), plan.dnat.add.len()), (1, 2));
    nat.apply(&plan).unwrap();
    assert_eq!(nat.read().unwrap(), (moved.clone(), snat_of(&moved)));
    assert_eq!(
        ask_once(&client, at(EIP2, 8080), "two").as_deref(),
        Some(format!("{CLIENT} two").as_str())
    );

    // A kernel refusal (a second value for a key) fails the whole
    // transaction: the valid addition beside it is not applied either.
    let conflicting = NatPlan {
        dnat: MapChange {
            remove: vec![],
            add: vec![
                (ip("203.0.113.102"), ip("10.0.0.7")),
                (ip(EIP), ip("10.0.0.9")),
            ],
        },
        snat: MapChange::default(),
    };
    let err = nat.apply(&conflicting).unwrap_err();
    assert_eq!(err.errno(), Some(17), "EEXIST: {err}");
    assert_eq!(nat.read().unwrap(), (moved.clone(), snat_of(&moved)));

    // Unbind everything: the EIPs stop answering. An established connection
    // keeps its mapping until its conntrack entry is forgotten.
    let mut established =
        vpcip_lab::Conn::open(&client, at(EIP2, 8080), Duration::from_secs(1)).unwrap();
    assert_eq!(
        established.ask("a").as_deref(),
        Some(format!("{CLIENT} a").as_str())
    );
    let (d, s) = nat.read().unwrap();
    nat.apply(&plan_nat(&NatMap::new(), &d, &s)).unwrap();
    assert_eq!(nat.read().unwrap(), (NatMap::new(), NatMap::new()));
    assert_eq!(ask_once(&client, at(EIP2, 8080), "gone"), None);
    assert_eq!(
        established.ask("b").as_deref(),
        Some(format!("{CLIENT} b").as_str()),
        "conntrack keeps the old mapping"
    );
    let forgotten = in_netns(&named(&w.ns("router")), || {
        vpcip_sys::conntrack::forget(&[ip(EIP2)].into())
    })
    .unwrap()
    .unwrap();
    assert!(
        forgotten.deleted >= 1,
        "the established connection's entry: {forgotten:?}"
    );
    assert!(
        forgotten.seen > forgotten.deleted,
        "entries of other addresses stay: {forgotten:?}"
    );
    assert_eq!(
        established.ask("c"),
        None,
        "forgotten: the old mapping no longer holds"
    );

    // Without an EIP the VM still reaches the outside, through the router's
    // default SNAT (the uplink's address).
    assert_eq!(
        ask_once(&vm, at(CLIENT, 9090), "default").as_deref(),
        Some("198.51.100.1 default")
    );
}
