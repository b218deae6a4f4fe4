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
use vpcip_model::desired::{GatewayState, router_ifname, router_link};

use crate::isolation::{InfraGuard, gateway_guard};
use crate::links::{LinkChange, Links, VXLAN_OVERHEAD};
use crate::nat::NatMap;
use crate::routing::{ClassChange, FwRule, Htb, MAIN_TABLE, RouteSpec, RouteType, diff};

/// The router's uplink (towards the gateway node).
pub const UPLINK: &str = "up0";
/// Router N's routing table on the node is `ROUTER_TABLES + N`.
pub const ROUTER_TABLES: u32 = 10000;
/// The priority of the node's steering rules (before `main` at 32766).
pub const RULE_PRIORITY: u32 = 1000;
/// The node's table of what it announces by BGP (never looked up: the
/// BGP daemon learns it and announces each route with the node as next
/// hop).
pub const EXPORT_TABLE: u32 = 9999;

/// Which slots this gateway wins the election of now (it carries their
/// VPCs) and which another gateway wins (`backup`); a slot in neither has
/// no election running yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Roles {
    pub master: BTreeSet<u8>,
    pub backup: BTreeSet<u8>,
}

/// EIP → bandwidth class id (`1:<class>` as a priority).
pub type ClassMap = BTreeMap<Ipv4Addr, u32>;
/// ALG (helper) name → the addresses in its set.
pub type AlgSets = BTreeMap<String, BTreeSet<Ipv4Addr>>;

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
    /// The EIPs counted: those whose packets made a counter element (the
    /// kernel does; the plan only removes those no longer bound here).
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
    /// How many bindings the NAT maps hold at most (0: no limit, as a
    /// table of an older shape has); see [`nat_capacity`].
    #[serde(default)]
    pub capacity: u32,
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
    /// Links that answer no ARP request (`arp_ignore` 8): the subnets of a
    /// VPC another gateway carries, so that the hosts keep sending to
    /// that one.
    pub arp_silent: BTreeSet<String>,
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
    /// A router's subnet link answers ARP (`silent` false: this gateway
    /// carries the VPC) or not.
    ArpSilent {
        vpc: String,
        link: String,
        silent: bool,
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
    /// The router's maps from `have` to `want` (the NAT table made anew,
    /// filled, when their capacities differ); then the connections of
    /// `forget` (EIPs whose mapping or helpers changed) are forgotten, so
    /// that the change holds for them too.
    RouterMaps {
        vpc: String,
        have: RouterMaps,
        want: RouterMaps,
        forget: BTreeSet<Ipv4Addr>,
    },
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

/// The gateway's plan; `underlay` is the node's VXLAN endpoint address.
/// What depends on the cluster's elections (ARP answers, announcements)
/// is left as it is.
pub fn plan_gateway(
    want: &GatewayState,
    have: &GatewayObserved,
    underlay: Ipv4Addr,
) -> GatewayPlan {
    plan_gateway_with(want, have, underlay, None)
}

/// [`plan_gateway`] knowing the elections' outcome: `roles` None while
/// they have not settled (what depends on them stays as it is).
pub fn plan_gateway_with(
    want: &GatewayState,
    have: &GatewayObserved,
    underlay: Ipv4Addr,
    roles: Option<&Roles>,
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
        let g = plan_router(r, have, underlay, vx_mtu, roles);
        if g.contains(&GatewayChange::AddRouterLink {
            vpc: r.vpc_id.clone(),
        }) {
            remade.insert(router_ifname(&r.vpc_id));
        }
        groups.push((format!("VPC {}", r.vpc_id), g));
    }
    groups.push((
        "gateway routes".to_string(),
        plan_node_routing(want, have, &remade, roles),
    ));
    let mut maps = node_maps(want);
    // The packets make the counters: what is counted stays counted while
    // its EIP is bound here, and nothing is added.
    maps.counted = have
        .node_maps
        .counted
        .iter()
        .filter(|ip| maps.steer.contains_key(ip))
        .copied()
        .collect();
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

/// The node's routing: one rule and one table per router (the steering
/// map marks each EIP's packets with its router's number); the EIP
/// segments unreachable otherwise.
fn plan_node_routing(
    want: &GatewayState,
    have: &GatewayObserved,
    remade: &BTreeSet<String>,
    roles: Option<&Roles>,
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
    match roles {
        Some(roles) => routes.extend(announced(want, roles)),
        None => routes.extend(
            have.node
                .routes
                .iter()
                .filter(|r| r.table == EXPORT_TABLE)
                .cloned(),
        ),
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

/// What the gateway announces by BGP (routes of [`EXPORT_TABLE`]): none
/// without BGP; the EIP segments unless drained (while it carries
/// nothing); the EIPs and default SNAT addresses of the slots it carries,
/// as /32s, which draw their traffic to it.
pub fn announced(want: &GatewayState, roles: &Roles) -> BTreeSet<RouteSpec> {
    let c = &want.cluster;
    if c.bgp.is_none() {
        return BTreeSet::new();
    }
    let route = |dst: Ipv4Net| RouteSpec {
        table: EXPORT_TABLE,
        dst,
        via: None,
        dev: None,
        kind: RouteType::Unreachable,
    };
    let mut out = BTreeSet::new();
    if !c.drained || !roles.master.is_empty() {
        out.extend(want.eip_segments.iter().copied().map(route));
    }
    let carried = |slot: u8| roles.master.contains(&slot);
    out.extend(
        want.routers
            .iter()
            .filter(|r| carried(r.slot))
            .flat_map(|r| r.nat.iter().map(|e| route(Ipv4Net::from(e.eip)))),
    );
    out.extend(
        c.slots
            .iter()
            .filter(|s| carried(s.vrid))
            .filter_map(|s| s.snat_ip)
            .map(|ip| route(Ipv4Net::from(ip))),
    );
    out
}

mod maps;
mod router;
mod simulate;

pub use maps::{alg_sets, class_id, class_map, forget, node_maps, rate_bytes, router_maps};
use router::plan_router;

#[cfg(test)]
mod tests;

/// The fewest bindings a router's NAT maps are made for.
pub const NAT_CAPACITY_MIN: u32 = 1024;

/// The capacity a router's NAT maps need for `n` bindings, given that they
/// have `have`: kept while it suffices, else twice `n` (a power of two),
/// so that a router growing by one binding at a time is remade only when it
/// doubles.
pub fn nat_capacity(have: u32, n: usize) -> u32 {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    if have > 0 && n <= have {
        return have;
    }
    n.saturating_mul(2)
        .max(NAT_CAPACITY_MIN)
        .checked_next_power_of_two()
        .unwrap_or(u32::MAX)
}
