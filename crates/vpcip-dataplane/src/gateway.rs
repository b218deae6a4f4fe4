//! The gateway node's plan: from its desired state and what the node and
//! its routers' namespaces hold, the changes that make one the other.
//!
//! ```text
//!  node ns                                 router ns <prefix>vpcr-<vpc id>
//!  phy (underlay) ── vr<vpc> 169.254.a.b/31 ═══ up0 169.254.a.b+1/31
//!  nft vpcip_gw: EIP → mark N (a map),          vx<vni> per subnet: the subnet's
//!    counters, default SNAT (2nd stage)           gateway address, flooding to
//!  fwmark N → table 10000+N: default via up0      the subnet's VTEPs
//!  EIP segments: unreachable (proto 240)        nft vpcip_nat: EIP NAT maps
//!  nft vpcip_qos: EIP (dst) → class             nft vpcip_qos: EIP (src) → class
//!  htb on vr<vpc>: the VPC's EIPs, inbound      htb on up0: its EIPs, outbound
//! ```
//!
//! The plan comes in groups (the node, its guard, each router, the node's
//! routing, its maps, stale routers) so that one router's failure does not
//! hold back the others. What vpcip did not make (other namespaces,
//! links, routes of other protocols, tables) is left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use vpcip_model::desired::{GatewayState, NatEntry, VpcRouter, router_ifname, router_link};

use crate::isolation::{InfraGuard, gateway_guard};
use crate::links::{
    LinkChange, LinkState, LinkWant, Links, VXLAN_OVERHEAD, converge_link, vxlan_ifname,
};
use crate::nat::{NatMap, plan_nat};
use crate::routing::{ClassChange, FwRule, Htb, MAIN_TABLE, RouteSpec, RouteType, diff, plan_htb};

/// The router's uplink (towards the gateway node).
pub const UPLINK: &str = "up0";
/// Router N's routing table on the node is `ROUTER_TABLES + N`.
pub const ROUTER_TABLES: u32 = 10000;
/// The priority of the node's steering rules (before `main` at 32766).
pub const RULE_PRIORITY: u32 = 1000;

/// EIP → bandwidth class id (`1:<class>` as a priority).
pub type ClassMap = BTreeMap<Ipv4Addr, u32>;
/// ALG (helper) name → the addresses in its set.
pub type AlgSets = BTreeMap<String, BTreeSet<Ipv4Addr>>;

/// The `skb->priority` that selects an EIP's HTB class `1:<minor>`.
pub fn class_id(minor: u16) -> u32 {
    (1 << 16) | u32::from(minor)
}

/// Bytes per second of a limit in Mbit/s.
pub fn rate_bytes(mbps: u32) -> u64 {
    u64::from(mbps) * 125_000
}

/// A namespace of the gateway: the node's or a router's (by VPC ID).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ns {
    Node,
    Router(String),
}

/// What a namespace holds, as far as vpcip is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NsObserved {
    pub links: Links,
    /// vpcip's routes (protocol 240), of every table.
    pub routes: BTreeSet<RouteSpec>,
    /// The HTB of each link that vpcip shapes.
    pub htb: BTreeMap<String, Htb>,
    pub forwarding: bool,
}

/// The gateway node's own maps.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeMaps {
    /// EIP → its router's number (the packet's mark).
    pub steer: BTreeMap<Ipv4Addr, u32>,
    /// The EIPs counted.
    pub counted: BTreeSet<Ipv4Addr>,
    /// EIP (as destination) → class id.
    pub classes: ClassMap,
    /// Router link address → the gateway's default SNAT address.
    pub default_snat: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

/// A router's maps.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RouterMaps {
    pub dnat: NatMap,
    pub snat: NatMap,
    /// EIP (as source) → class id.
    pub classes: ClassMap,
    pub algs: AlgSets,
}

/// A router's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterObserved {
    pub ns: NsObserved,
    /// Its nftables tables are all there (a missing one holds nothing).
    pub tables: bool,
    pub maps: RouterMaps,
    /// Links that take gratuitous ARP at once (`arp_accept` 1,
    /// `locktime` 0).
    pub arp_ready: BTreeSet<String>,
}

/// What the gateway node and its routers hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatewayObserved {
    pub node: NsObserved,
    /// vpcip's policy rules.
    pub rules: BTreeSet<FwRule>,
    /// The MTU of the link that holds the node's underlay address.
    pub underlay_mtu: u32,
    /// The node's nftables tables are all there.
    pub node_tables: bool,
    pub node_maps: NodeMaps,
    /// The infrastructure guard; None when missing or of an older shape.
    pub guard: Option<InfraGuard>,
    /// Every router namespace there is, by VPC ID.
    pub routers: BTreeMap<String, RouterObserved>,
}

/// One change to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayChange {
    /// IPv4 forwarding on.
    Forwarding(Ns),
    /// The node's tables (`vpcip_gw`, `vpcip_qos`) made where missing.
    MakeNodeTables,
    NodeMaps {
        have: NodeMaps,
        want: NodeMaps,
    },
    MakeGuard(InfraGuard),
    Guard {
        have: InfraGuard,
        want: InfraGuard,
    },
    /// The router's namespace.
    MakeRouter {
        vpc: String,
    },
    /// A router that is no longer desired goes, with its namespace.
    DelRouter {
        vpc: String,
    },
    /// The router's link: `vr<vpc>` on the node, its peer moved into the
    /// router as `up0` (what is left of an earlier pair goes first).
    AddRouterLink {
        vpc: String,
    },
    /// A subnet's VXLAN device, made on the node (its socket lives there)
    /// and moved into the router.
    AddRouterVxlan {
        vpc: String,
        vni: u32,
        local: Ipv4Addr,
        mtu: u32,
    },
    Link {
        ns: Ns,
        change: LinkChange,
    },
    /// A router's link takes gratuitous ARP at once (a VIP changing hands
    /// updates the router's entry).
    ArpReady {
        vpc: String,
        link: String,
    },
    Route {
        ns: Ns,
        add: bool,
        route: RouteSpec,
    },
    Rule {
        add: bool,
        rule: FwRule,
    },
    AddHtb {
        ns: Ns,
        link: String,
    },
    HtbClass {
        ns: Ns,
        link: String,
        change: ClassChange,
    },
    /// The router's tables (`vpcip_nat`, `vpcip_qos`, `vpcip_alg`) made
    /// where missing.
    MakeRouterTables {
        vpc: String,
    },
    /// The router's maps from `have` to `want`; then the connections of
    /// `forget` (EIPs whose mapping or helpers changed) are forgotten, so
    /// that the change holds for them too.
    RouterMaps {
        vpc: String,
        have: RouterMaps,
        want: RouterMaps,
        forget: BTreeSet<Ipv4Addr>,
    },
}

impl GatewayChange {
    /// The node's link (a router's `vr` end) the change needs, if any:
    /// when that router's group failed, the change waits for the next
    /// pass.
    pub fn needs_link(&self) -> Option<&str> {
        match self {
            GatewayChange::Route {
                ns: Ns::Node,
                route: RouteSpec { dev: Some(dev), .. },
                ..
            } => Some(dev),
            _ => None,
        }
    }

    /// What the change does to `gw`: the kernel's effect, for fake
    /// kernels and for checking that a plan converges.
    pub fn simulate(&self, gw: &mut GatewayObserved) {
        let fresh = |kind: &str| LinkState {
            kind: Some(kind.into()),
            mtu: Some(1500),
            ipv6: true,
            ..Default::default()
        };
        match self {
            GatewayChange::Forwarding(ns) => {
                if let Some(n) = ns_of(gw, ns) {
                    n.forwarding = true;
                }
            }
            GatewayChange::MakeNodeTables => gw.node_tables = true,
            GatewayChange::NodeMaps { want, .. } => gw.node_maps = want.clone(),
            GatewayChange::MakeGuard(want) | GatewayChange::Guard { want, .. } => {
                gw.guard = Some(want.clone());
            }
            GatewayChange::MakeRouter { vpc } => {
                let mut r = RouterObserved::default();
                r.ns.links.insert("lo".into(), fresh("loopback"));
                gw.routers.insert(vpc.clone(), r);
            }
            GatewayChange::DelRouter { vpc } => {
                gw.routers.remove(vpc);
                let vr = router_ifname(vpc);
                gw.node.links.remove(&vr);
                gw.node.htb.remove(&vr);
                gw.node
                    .routes
                    .retain(|r| r.dev.as_deref() != Some(vr.as_str()));
            }
            GatewayChange::AddRouterLink { vpc } => {
                let vr = router_ifname(vpc);
                gw.node.links.insert(vr.clone(), fresh("veth"));
                gw.node.htb.remove(&vr);
                gw.node
                    .routes
                    .retain(|r| r.dev.as_deref() != Some(vr.as_str()));
                if let Some(r) = gw.routers.get_mut(vpc) {
                    r.ns.links.insert(UPLINK.into(), fresh("veth"));
                    r.ns.htb.remove(UPLINK);
                }
            }
            GatewayChange::AddRouterVxlan { vpc, vni, mtu, .. } => {
                if let Some(r) = gw.routers.get_mut(vpc) {
                    let mut l = fresh("vxlan");
                    l.mtu = Some(*mtu);
                    r.ns.links.insert(vxlan_ifname(*vni), l);
                }
            }
            GatewayChange::Link { ns, change } => {
                if let Some(n) = ns_of(gw, ns) {
                    change.simulate(&mut n.links);
                    if let LinkChange::DelLink { name } = change {
                        n.htb.remove(name);
                        n.routes.retain(|r| r.dev.as_deref() != Some(name.as_str()));
                    }
                }
            }
            GatewayChange::ArpReady { vpc, link } => {
                if let Some(r) = gw.routers.get_mut(vpc) {
                    r.arp_ready.insert(link.clone());
                }
            }
            GatewayChange::Route { ns, add, route } => {
                if let Some(n) = ns_of(gw, ns) {
                    if *add {
                        n.routes.insert(route.clone());
                    } else {
                        n.routes.remove(route);
                    }
                }
            }
            GatewayChange::Rule { add, rule } => {
                if *add {
                    gw.rules.insert(*rule);
                } else {
                    gw.rules.remove(rule);
                }
            }
            GatewayChange::AddHtb { ns, link } => {
                if let Some(n) = ns_of(gw, ns) {
                    n.htb.insert(link.clone(), Some(BTreeMap::new()));
                }
            }
            GatewayChange::HtbClass { ns, link, change } => {
                if let Some(Some(classes)) = ns_of(gw, ns).and_then(|n| n.htb.get_mut(link)) {
                    match change {
                        ClassChange::Set { minor, rate } => {
                            classes.insert(*minor, *rate);
                        }
                        ClassChange::Remove { minor } => {
                            classes.remove(minor);
                        }
                    }
                }
            }
            GatewayChange::MakeRouterTables { vpc } => {
                if let Some(r) = gw.routers.get_mut(vpc) {
                    r.tables = true;
                }
            }
            GatewayChange::RouterMaps { vpc, want, .. } => {
                if let Some(r) = gw.routers.get_mut(vpc) {
                    r.maps = want.clone();
                }
            }
        }
    }
}

fn ns_of<'a>(gw: &'a mut GatewayObserved, ns: &Ns) -> Option<&'a mut NsObserved> {
    match ns {
        Ns::Node => Some(&mut gw.node),
        Ns::Router(vpc) => gw.routers.get_mut(vpc).map(|r| &mut r.ns),
    }
}

/// The plan: groups of changes, each applied in order, a failing group
/// not stopping the next.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatewayPlan {
    pub groups: Vec<(String, Vec<GatewayChange>)>,
}

impl GatewayPlan {
    pub fn len(&self) -> usize {
        self.groups.iter().map(|(_, g)| g.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The ALG sets a router's EIPs give: each EIP with helpers, and the
/// private address it maps to, in the sets of its helpers.
pub fn alg_sets(router: &VpcRouter) -> AlgSets {
    let mut out = AlgSets::new();
    for e in &router.nat {
        for a in &e.algs {
            let set = out.entry(a.as_str().to_string()).or_default();
            set.insert(e.eip);
            set.insert(e.private_ip);
        }
    }
    out
}

/// The class map a router's limits give.
pub fn class_map<'a>(entries: impl Iterator<Item = &'a NatEntry>) -> ClassMap {
    entries
        .filter_map(|e| e.shaping.map(|s| (e.eip, class_id(s.class))))
        .collect()
}

/// What a router's maps must hold.
pub fn router_maps(router: &VpcRouter) -> RouterMaps {
    let dnat: NatMap = router.nat.iter().map(|e| (e.eip, e.private_ip)).collect();
    RouterMaps {
        snat: crate::nat::snat_of(&dnat),
        dnat,
        classes: class_map(router.nat.iter()),
        algs: alg_sets(router),
    }
}

/// The EIPs whose connections must be forgotten when a router's maps go
/// from `have` to `want`: those whose mapping changed or went, and those
/// whose helpers changed (their tracking starts afresh so the helpers apply
/// to flows in progress too; TCP connections carry on).
pub fn forget(have: &RouterMaps, want: &RouterMaps) -> BTreeSet<Ipv4Addr> {
    let plan = plan_nat(&want.dnat, &have.dnat, &have.snat);
    let mut out: BTreeSet<Ipv4Addr> = plan.dnat.remove.iter().map(|(eip, _)| *eip).collect();
    fn helpers_of(sets: &AlgSets, ip: Ipv4Addr) -> Vec<&String> {
        sets.iter()
            .filter(|(_, s)| s.contains(&ip))
            .map(|(a, _)| a)
            .collect()
    }
    out.extend(
        want.dnat
            .keys()
            .copied()
            .chain(have.algs.values().flatten().copied())
            .filter(|ip| helpers_of(&have.algs, *ip) != helpers_of(&want.algs, *ip)),
    );
    out
}

/// What the node's maps must hold.
pub fn node_maps(state: &GatewayState) -> NodeMaps {
    let steer: BTreeMap<Ipv4Addr, u32> = state
        .routers
        .iter()
        .flat_map(|r| r.nat.iter().map(move |e| (e.eip, r.index)))
        .collect();
    NodeMaps {
        counted: steer.keys().copied().collect(),
        steer,
        classes: class_map(state.routers.iter().flat_map(|r| r.nat.iter())),
        default_snat: state
            .snat_ip
            .map(|to| {
                state
                    .routers
                    .iter()
                    .map(|r| (router_link(r.index).1, to))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The gateway's plan; `underlay` is the node's VXLAN endpoint address.
pub fn plan_gateway(
    want: &GatewayState,
    have: &GatewayObserved,
    underlay: Ipv4Addr,
) -> GatewayPlan {
    let mut groups = Vec::new();
    let mut node = Vec::new();
    if !have.node.forwarding {
        node.push(GatewayChange::Forwarding(Ns::Node));
    }
    if !have.node_tables {
        node.push(GatewayChange::MakeNodeTables);
    }
    groups.push(("gateway node".to_string(), node));
    // The guard before any router: a new router is never unguarded.
    let guard = gateway_guard(want);
    let g = match &have.guard {
        None => vec![GatewayChange::MakeGuard(guard)],
        Some(h) if *h != guard => vec![GatewayChange::Guard {
            have: h.clone(),
            want: guard,
        }],
        Some(_) => vec![],
    };
    groups.push(("gateway guard".to_string(), g));
    let vx_mtu = have.underlay_mtu.saturating_sub(VXLAN_OVERHEAD);
    // Router links made anew this pass: the routes through their old
    // selves went with them.
    let mut remade = BTreeSet::new();
    for r in &want.routers {
        let g = plan_router(r, have, underlay, vx_mtu);
        if g.contains(&GatewayChange::AddRouterLink {
            vpc: r.vpc_id.clone(),
        }) {
            remade.insert(router_ifname(&r.vpc_id));
        }
        groups.push((format!("VPC {}", r.vpc_id), g));
    }
    groups.push((
        "gateway routes".to_string(),
        plan_node_routing(want, have, &remade),
    ));
    let maps = node_maps(want);
    let m = if maps != have.node_maps {
        vec![GatewayChange::NodeMaps {
            have: have.node_maps.clone(),
            want: maps,
        }]
    } else {
        vec![]
    };
    groups.push(("gateway steering and counters".to_string(), m));
    let desired: BTreeSet<&str> = want.routers.iter().map(|r| r.vpc_id.as_str()).collect();
    groups.push((
        "stale routers".to_string(),
        have.routers
            .keys()
            .filter(|v| !desired.contains(v.as_str()))
            .map(|v| GatewayChange::DelRouter { vpc: v.clone() })
            .collect(),
    ));
    groups.retain(|(_, g)| !g.is_empty());
    GatewayPlan { groups }
}

/// One router: its namespace and link, its subnets' VXLAN devices, its
/// addresses, default route, maps and bandwidth limits.
fn plan_router(
    r: &VpcRouter,
    have: &GatewayObserved,
    underlay: Ipv4Addr,
    vx_mtu: u32,
) -> Vec<GatewayChange> {
    let vpc = || r.vpc_id.clone();
    let in_router = || Ns::Router(r.vpc_id.clone());
    let empty = RouterObserved::default();
    let (exists, router) = match have.routers.get(&r.vpc_id) {
        Some(o) => (true, o),
        None => (false, &empty),
    };
    let mut out = Vec::new();
    if !exists {
        out.push(GatewayChange::MakeRouter { vpc: vpc() });
    }
    let (gw_side, router_side) = router_link(r.index);
    let vr = router_ifname(&r.vpc_id);
    let rlink = |name: &str| router.ns.links.get(name);
    // The pair is whole with both ends; else it is made anew (what is
    // left of it goes first), down, with neither address.
    let fresh = rlink(UPLINK).is_none() || !have.node.links.contains_key(&vr);
    if fresh {
        out.push(GatewayChange::AddRouterLink { vpc: vpc() });
    }
    let node_end: Option<&LinkState> = if fresh {
        None
    } else {
        have.node.links.get(&vr)
    };
    let one = |a: Ipv4Addr| -> BTreeSet<Ipv4Net> { Ipv4Net::new(a, 31).into_iter().collect() };
    let (gw_addrs, router_addrs) = (one(gw_side), one(router_side));
    let with_addrs = |addrs| LinkWant {
        addrs: Some(addrs),
        ..Default::default()
    };
    out.extend(
        converge_link(&vr, node_end, with_addrs(&gw_addrs))
            .into_iter()
            .map(|change| GatewayChange::Link {
                ns: Ns::Node,
                change,
            }),
    );
    for s in &r.subnets {
        if rlink(&vxlan_ifname(s.l2.vni)).is_none() {
            out.push(GatewayChange::AddRouterVxlan {
                vpc: vpc(),
                vni: s.l2.vni,
                local: underlay,
                mtu: vx_mtu,
            });
        }
    }
    // Inside the router.
    if !router.ns.forwarding {
        out.push(GatewayChange::Forwarding(in_router()));
    }
    let link = |change| GatewayChange::Link {
        ns: in_router(),
        change,
    };
    // A namespace made anew has its loopback down.
    if !exists || rlink("lo").is_some_and(|l| !l.up) {
        out.push(link(LinkChange::SetUp { name: "lo".into() }));
    }
    out.extend(
        converge_link(
            UPLINK,
            rlink(UPLINK).filter(|_| !fresh),
            with_addrs(&router_addrs),
        )
        .into_iter()
        .map(link),
    );
    let subnets: BTreeSet<String> = r.subnets.iter().map(|s| vxlan_ifname(s.l2.vni)).collect();
    for (name, l) in &router.ns.links {
        if l.kind.as_deref() == Some("vxlan") && !subnets.contains(name) {
            out.push(link(LinkChange::DelLink { name: name.clone() }));
        }
    }
    for s in &r.subnets {
        let name = vxlan_ifname(s.l2.vni);
        let addrs: BTreeSet<Ipv4Net> = s
            .gateway
            .and_then(|g| Ipv4Net::new(g, s.cidr.prefix_len()).ok())
            .into_iter()
            .collect();
        let flood: BTreeSet<Ipv4Addr> = s.l2.vteps.iter().copied().collect();
        let vx = LinkWant {
            addrs: Some(&addrs),
            flood: Some(&flood),
            ..Default::default()
        };
        out.extend(converge_link(&name, rlink(&name), vx).into_iter().map(link));
        if !router.arp_ready.contains(&name) {
            out.push(GatewayChange::ArpReady {
                vpc: vpc(),
                link: name,
            });
        }
    }
    let default = RouteSpec {
        table: MAIN_TABLE,
        dst: Ipv4Net::default(),
        via: Some(gw_side),
        dev: Some(UPLINK.into()),
        kind: RouteType::Unicast,
    };
    let d = diff(&router.ns.routes, &[default].into());
    out.extend(d.remove.into_iter().map(|route| GatewayChange::Route {
        ns: in_router(),
        add: false,
        route,
    }));
    out.extend(d.add.into_iter().map(|route| GatewayChange::Route {
        ns: in_router(),
        add: true,
        route,
    }));
    // Maps.
    if !router.tables {
        out.push(GatewayChange::MakeRouterTables { vpc: vpc() });
    }
    let maps = router_maps(r);
    if maps != router.maps {
        out.push(GatewayChange::RouterMaps {
            vpc: vpc(),
            forget: forget(&router.maps, &maps),
            have: router.maps.clone(),
            want: maps,
        });
    }
    // Bandwidth limits: one HTB class per limited EIP on both ends of the
    // router's link — the node's end shapes what goes into the router (to
    // the EIP), the router's end what comes out (from it).
    let classes: BTreeMap<u16, u64> = r
        .nat
        .iter()
        .filter_map(|e| e.shaping)
        .map(|s| (s.class, rate_bytes(s.mbps)))
        .collect();
    let none: Htb = None;
    for (ns, l, htb) in [
        (
            Ns::Node,
            vr.clone(),
            have.node.htb.get(&vr).filter(|_| !fresh),
        ),
        (
            in_router(),
            UPLINK.to_string(),
            router.ns.htb.get(UPLINK).filter(|_| !fresh),
        ),
    ] {
        let (make, changes) = plan_htb(htb.unwrap_or(&none), &classes);
        if make {
            out.push(GatewayChange::AddHtb {
                ns: ns.clone(),
                link: l.clone(),
            });
        }
        out.extend(changes.into_iter().map(|change| GatewayChange::HtbClass {
            ns: ns.clone(),
            link: l.clone(),
            change,
        }));
    }
    out
}

/// The node's routing: one rule and one table per router (the steering
/// map marks each EIP's packets with its router's number); the EIP
/// segments unreachable otherwise.
fn plan_node_routing(
    want: &GatewayState,
    have: &GatewayObserved,
    remade: &BTreeSet<String>,
) -> Vec<GatewayChange> {
    let mut rules = BTreeSet::new();
    let mut routes = BTreeSet::new();
    for r in &want.routers {
        let (_, router_side) = router_link(r.index);
        rules.insert(FwRule {
            mark: r.index,
            table: ROUTER_TABLES + r.index,
            priority: RULE_PRIORITY,
        });
        routes.insert(RouteSpec {
            table: ROUTER_TABLES + r.index,
            dst: Ipv4Net::default(),
            via: Some(router_side),
            dev: Some(router_ifname(&r.vpc_id)),
            kind: RouteType::Unicast,
        });
    }
    for seg in &want.eip_segments {
        routes.insert(RouteSpec {
            table: MAIN_TABLE,
            dst: *seg,
            via: None,
            dev: None,
            kind: RouteType::Unreachable,
        });
    }
    let mut out = Vec::new();
    let mut observed = have.node.routes.clone();
    observed.retain(|r| r.dev.as_ref().is_none_or(|d| !remade.contains(d)));
    let d = diff(&observed, &routes);
    out.extend(d.remove.into_iter().map(|route| GatewayChange::Route {
        ns: Ns::Node,
        add: false,
        route,
    }));
    out.extend(d.add.into_iter().map(|route| GatewayChange::Route {
        ns: Ns::Node,
        add: true,
        route,
    }));
    let d = diff(&have.rules, &rules);
    out.extend(
        d.remove
            .into_iter()
            .map(|rule| GatewayChange::Rule { add: false, rule }),
    );
    out.extend(
        d.add
            .into_iter()
            .map(|rule| GatewayChange::Rule { add: true, rule }),
    );
    out
}

#[cfg(test)]
mod tests;
