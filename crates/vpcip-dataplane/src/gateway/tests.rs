use super::*;
use crate::links::LinkState;
use proptest::prelude::*;
use vpcip_model::Alg;
use vpcip_model::desired::{L2Domain, RouterSubnet, Shaping};
use vpcip_model::desired::{NatEntry, VpcRouter};

/// Routers by number: their subnets' VNIs and EIPs (last octet, limit).
type Routers = BTreeMap<u32, (BTreeSet<u32>, Vec<(u8, Option<u32>)>)>;

const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn router(vpc: &str, index: u32, vnis: &[u32], eips: &[(&str, &str, Option<u32>)]) -> VpcRouter {
    VpcRouter {
        slot: 0,
        vpc_id: vpc.into(),
        index,
        subnets: vnis
            .iter()
            .map(|v| RouterSubnet {
                l2: L2Domain {
                    subnet_id: format!("subnet-{v}"),
                    vni: *v,
                    vteps: vec![ip("192.0.2.11")],
                },
                cidr: format!("10.{}.{}.0/24", v / 256, v % 256).parse().unwrap(),
                gateway: Some(format!("10.{}.{}.1", v / 256, v % 256).parse().unwrap()),
            })
            .collect(),
        nat: eips
            .iter()
            .enumerate()
            .map(|(i, (e, p, mbps))| NatEntry {
                eip: ip(e),
                private_ip: ip(p),
                eip_id: format!("eip-{i}"),
                shaping: mbps.map(|mbps| Shaping {
                    class: u16::try_from(i + 1).unwrap(),
                    mbps,
                }),
                algs: vec![],
            })
            .collect(),
        visible: vec![],
        vips: vec![],
    }
}

fn state(routers: Vec<VpcRouter>) -> GatewayState {
    GatewayState {
        routers,
        eip_segments: vec!["203.0.113.0/24".parse().unwrap()],
        infrastructure: vec!["192.0.2.0/24".parse().unwrap()],
        infra_allow: vec![],
        snat_ip: Some(ip("203.0.113.254")),
        cluster: Default::default(),
    }
}

/// A node as it boots: its underlay link, someone else's route and
/// namespace-less.
fn bare_node() -> GatewayObserved {
    let mut gw = GatewayObserved {
        underlay_mtu: 1500,
        ..Default::default()
    };
    gw.node.links.insert(
        "eth0".into(),
        LinkState {
            kind: None,
            up: true,
            mtu: Some(1500),
            addrs: ["192.0.2.2/24".parse().unwrap()].into(),
            ..Default::default()
        },
    );
    gw
}

fn converge(want: &GatewayState, gw: &mut GatewayObserved) -> GatewayPlan {
    let plan = plan_gateway(want, gw, ME);
    for (_, g) in &plan.groups {
        for c in g {
            c.simulate(gw);
        }
    }
    plan
}

#[test]
fn a_bare_node_gets_everything_and_a_second_pass_nothing() {
    let want = state(vec![
        router(
            "vpc-a",
            1,
            &[10, 11],
            &[("203.0.113.5", "10.0.10.5", Some(10))],
        ),
        router("vpc-b", 2, &[12], &[]),
    ]);
    let mut gw = bare_node();
    let plan = converge(&want, &mut gw);
    let labels: Vec<&str> = plan.groups.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        [
            "gateway node",
            "gateway guard",
            "VPC vpc-a",
            "VPC vpc-b",
            "gateway routes",
            "gateway steering and counters"
        ]
    );
    let a = &gw.routers["vpc-a"];
    assert_eq!(a.ns.links["vx10"].flood, [ip("192.0.2.11")].into());
    assert_eq!(a.ns.links["vx10"].mtu, Some(1450));
    assert!(a.ns.links["up0"].up && !a.ns.links["up0"].ipv6);
    assert_eq!(a.maps.dnat[&ip("203.0.113.5")], ip("10.0.10.5"));
    assert_eq!(a.ns.htb["up0"], Some([(1, 1_250_000)].into()));
    assert_eq!(
        gw.node.htb[&router_ifname("vpc-a")],
        Some([(1, 1_250_000)].into())
    );
    assert_eq!(gw.node_maps.steer[&ip("203.0.113.5")], 1);
    assert_eq!(gw.node_maps.default_snat.len(), 2, "one per router");
    assert_eq!(gw.rules.len(), 2);
    assert_eq!(gw.node.links["eth0"], bare_node().node.links["eth0"]);
    assert_eq!(plan_gateway(&want, &gw, ME), GatewayPlan::default());
}

#[test]
fn rebinding_forgets_the_old_mapping_and_stale_routers_go() {
    let mut want = state(vec![
        router("vpc-a", 1, &[10], &[("203.0.113.5", "10.0.10.5", None)]),
        router("vpc-b", 2, &[12], &[]),
    ]);
    let mut gw = bare_node();
    converge(&want, &mut gw);
    // The EIP moves to another VM; VPC b is deleted.
    want.routers = vec![router(
        "vpc-a",
        1,
        &[10],
        &[("203.0.113.5", "10.0.10.6", None)],
    )];
    let plan = converge(&want, &mut gw);
    let all: Vec<&GatewayChange> = plan.groups.iter().flat_map(|(_, g)| g).collect();
    assert!(all.iter().any(|c| matches!(c,
        GatewayChange::RouterMaps { forget, .. } if *forget == [ip("203.0.113.5")].into())));
    assert!(all.contains(&&GatewayChange::DelRouter {
        vpc: "vpc-b".into()
    }));
    assert!(
        all.iter()
            .any(|c| matches!(c, GatewayChange::Rule { add: false, .. }))
    );
    assert!(!gw.routers.contains_key("vpc-b"));
    assert_eq!(plan_gateway(&want, &gw, ME), GatewayPlan::default());
}

#[test]
fn a_helper_added_forgets_its_eip_only() {
    let mut r = router(
        "vpc-a",
        1,
        &[10],
        &[
            ("203.0.113.5", "10.0.10.5", None),
            ("203.0.113.6", "10.0.10.6", None),
        ],
    );
    let before = router_maps(&r);
    r.nat[0].algs = vec![Alg::Ftp];
    let after = router_maps(&r);
    assert_eq!(forget(&before, &after), [ip("203.0.113.5")].into());
    assert_eq!(forget(&after, &after), BTreeSet::new());
}

#[test]
fn without_a_default_snat_address_the_map_is_empty() {
    let mut want = state(vec![router("vpc-a", 1, &[10], &[])]);
    want.snat_ip = None;
    assert!(node_maps(&want).default_snat.is_empty());
}

proptest! {
    /// Whatever drifted, one pass converges the gateway and the next plans
    /// nothing; someone else's link is never touched (only vpcip's routes,
    /// protocol 240, are observed at all).
    #[test]
    fn one_pass_converges(
        routers in proptest::collection::btree_map(1u32..6, (proptest::collection::btree_set(1u32..8, 0..3), proptest::collection::vec((1u8..30, proptest::option::of(1u32..100)), 0..4)), 0..4),
        first in proptest::collection::btree_map(1u32..6, proptest::collection::btree_set(1u32..8, 0..3), 0..4),
        drift in proptest::collection::vec((0usize..40, 0u8..6), 0..10),
    ) {
        let build = |m: &Routers| {
            state(m.iter().map(|(i, (vnis, eips))| {
                let eips: Vec<(String, String, Option<u32>)> = eips.iter().map(|(e, mbps)| {
                    (format!("203.0.113.{}", u32::from(*e) + 10 * i), format!("10.0.0.{e}"), *mbps)
                }).collect();
                let refs: Vec<(&str, &str, Option<u32>)> = eips.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), *c)).collect();
                let vnis: Vec<u32> = vnis.iter().map(|v| v + 100 * i).collect();
                router(&format!("vpc-{i}"), *i, &vnis, &refs)
            }).collect())
        };
        let before: Routers =
            first.into_iter().map(|(i, v)| (i, (v, vec![(1, Some(5))]))).collect();
        let mut gw = bare_node();
        converge(&build(&before), &mut gw);
        let want = build(&routers);
        // Drift: properties of random links of the node and routers undone.
        for (i, what) in drift {
            let mut all: Vec<(Ns, String)> = gw.node.links.keys().map(|l| (Ns::Node, l.clone())).collect();
            for (v, r) in &gw.routers {
                all.extend(r.ns.links.keys().map(|l| (Ns::Router(v.clone()), l.clone())));
            }
            let Some((ns, name)) = all.get(i % all.len().max(1)).cloned() else { continue };
            if name == "eth0" { continue }
            let n = match &ns {
                Ns::Node => &mut gw.node,
                Ns::Router(v) => &mut gw.routers.get_mut(v).unwrap().ns,
            };
            match what {
                0 => n.links.get_mut(&name).unwrap().up = false,
                1 => { n.links.get_mut(&name).unwrap().addrs.clear(); }
                2 => {
                    // Its routes go with it, as in the kernel.
                    n.links.remove(&name);
                    n.htb.remove(&name);
                    n.routes.retain(|r| r.dev.as_deref() != Some(name.as_str()));
                }
                3 => { n.htb.insert(name.clone(), Some([(9, 1)].into())); }
                4 => { n.routes.clear(); }
                _ => { gw.node_maps.steer.clear(); }
            }
        }
        let eth0 = gw.node.links["eth0"].clone();
        converge(&want, &mut gw);
        prop_assert_eq!(&gw.node.links["eth0"], &eth0);
        let again = plan_gateway(&want, &gw, ME);
        prop_assert!(again.is_empty(), "{:?}", again);
    }
}

/// `want` with two slots (this gateway owns 1, vpc-a is placed on 2) and
/// BGP.
fn clustered(mut want: GatewayState) -> GatewayState {
    use vpcip_model::desired::{Cluster, Slot};
    for r in &mut want.routers {
        r.slot = 2;
    }
    let slot = |vrid, owner: &str, priority, snat| Slot {
        vrid,
        owner: owner.into(),
        priority,
        snat_ip: Some(ip(snat)),
    };
    want.cluster = Cluster {
        slot: 1,
        drained: false,
        advert_cs: 5,
        peers: vec![ip("192.0.2.3")],
        slots: vec![
            slot(1, "gw1", 250, "203.0.113.251"),
            slot(2, "gw2", 200, "203.0.113.252"),
        ],
        bgp: Some(vpcip_model::BgpConfig {
            local_as: 64513,
            peers: vec![vpcip_model::BgpPeer {
                ip: ip("192.0.2.1"),
                peer_as: 64512,
            }],
            bfd: true,
        }),
    };
    want
}

fn converge_with(want: &GatewayState, gw: &mut GatewayObserved, roles: Option<&Roles>) {
    let plan = plan_gateway_with(want, gw, ME, roles);
    for (_, g) in &plan.groups {
        for c in g {
            c.simulate(gw);
        }
    }
    assert_eq!(
        plan_gateway_with(want, gw, ME, roles),
        GatewayPlan::default(),
        "a second pass changes nothing"
    );
}

fn exported(gw: &GatewayObserved) -> BTreeSet<Ipv4Net> {
    gw.node
        .routes
        .iter()
        .filter(|r| r.table == EXPORT_TABLE)
        .map(|r| r.dst)
        .collect()
}

#[test]
fn the_winner_of_a_slot_announces_its_eips_and_answers_arp_the_others_keep_quiet() {
    let want = clustered(state(vec![router(
        "vpc-a",
        1,
        &[10],
        &[("203.0.113.5", "10.0.10.5", None)],
    )]));
    let mut gw = bare_node();
    // Before the elections settle: the routers are built, the same MAC
    // on every gateway, and nothing announced or silenced.
    converge_with(&want, &mut gw, None);
    assert_eq!(
        gw.routers["vpc-a"].ns.links["vx10"].mac,
        Some([0x02, 0x76, 0x70, 0, 0, 10])
    );
    assert!(exported(&gw).is_empty());
    assert!(gw.routers["vpc-a"].arp_silent.is_empty());
    // Another gateway carries slot 2: only the segment is announced, and
    // vpc-a's router answers no ARP.
    let standby = Roles {
        master: [1].into(),
        backup: [2].into(),
    };
    converge_with(&want, &mut gw, Some(&standby));
    assert_eq!(
        exported(&gw),
        [
            "203.0.113.0/24".parse().unwrap(),
            "203.0.113.251/32".parse().unwrap()
        ]
        .into()
    );
    assert_eq!(gw.routers["vpc-a"].arp_silent, ["vx10".to_string()].into());
    // It wins slot 2: the EIP and the slot's default SNAT address too,
    // and the router answers ARP again.
    let carrier = Roles {
        master: [1, 2].into(),
        backup: BTreeSet::new(),
    };
    converge_with(&want, &mut gw, Some(&carrier));
    assert!(exported(&gw).contains(&"203.0.113.5/32".parse().unwrap()));
    assert!(exported(&gw).contains(&"203.0.113.252/32".parse().unwrap()));
    assert!(gw.routers["vpc-a"].arp_silent.is_empty());
    // The default SNAT leaves from the slot owner's address.
    let link = vpcip_model::desired::router_link(1).1;
    assert_eq!(gw.node_maps.default_snat[&link], ip("203.0.113.252"));
    // Drained and carrying nothing: nothing announced at all.
    let mut drained = want.clone();
    drained.cluster.drained = true;
    let none = Roles {
        master: BTreeSet::new(),
        backup: [1, 2].into(),
    };
    converge_with(&drained, &mut gw, Some(&none));
    assert!(exported(&gw).is_empty());
    // Without BGP nothing is announced either.
    let mut no_bgp = want.clone();
    no_bgp.cluster.bgp = None;
    converge_with(&no_bgp, &mut gw, Some(&carrier));
    assert!(exported(&gw).is_empty());
}

#[test]
fn nat_maps_are_sized_and_grow_by_doubling() {
    use super::{NAT_CAPACITY_MIN, nat_capacity};
    // A new router's maps: room for twice its bindings, at least the
    // minimum, a power of two.
    assert_eq!(nat_capacity(0, 0), NAT_CAPACITY_MIN);
    assert_eq!(nat_capacity(0, 100_000), 262_144);
    // Kept while the bindings fit, even when they shrink.
    assert_eq!(nat_capacity(262_144, 262_144), 262_144);
    assert_eq!(nat_capacity(262_144, 3), 262_144);
    // One more than fits: twice as many.
    assert_eq!(nat_capacity(1024, 1025), 4096);
    // An older, unsized table (0) is sized.
    assert_eq!(nat_capacity(0, 10), NAT_CAPACITY_MIN);
}
