//! One router's plan.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use vpcip_model::desired::{VpcRouter, router_ifname, router_link};

use super::{
    GatewayChange, GatewayObserved, Ns, Roles, RouterObserved, UPLINK, forget, rate_bytes,
    router_maps,
};
use crate::links::{LinkChange, LinkState, LinkWant, converge_link, router_mac, vxlan_ifname};
use crate::routing::{Htb, MAIN_TABLE, RouteSpec, RouteType, diff, plan_htb};

/// One router: its namespace and link, its subnets' VXLAN devices, its
/// addresses, default route, maps and bandwidth limits.
pub(super) fn plan_router(
    r: &VpcRouter,
    have: &GatewayObserved,
    underlay: Ipv4Addr,
    vx_mtu: u32,
    roles: Option<&Roles>,
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
            mac: Some(router_mac(s.l2.vni)),
            ..Default::default()
        };
        out.extend(converge_link(&name, rlink(&name), vx).into_iter().map(link));
        if !router.arp_ready.contains(&name) {
            out.push(GatewayChange::ArpReady {
                vpc: vpc(),
                link: name.clone(),
            });
        }
        // Another gateway carries the VPC: its subnets' hosts must keep
        // resolving the router to that one.
        if let Some(roles) = roles {
            let silent = roles.backup.contains(&r.slot);
            if router.arp_silent.contains(&name) != silent {
                out.push(GatewayChange::ArpSilent {
                    vpc: vpc(),
                    link: name,
                    silent,
                });
            }
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
    let mut maps = router_maps(r);
    maps.capacity = super::nat_capacity(router.maps.capacity, maps.dnat.len());
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
