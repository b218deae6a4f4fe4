//! What each change does to the observed state: the kernel's effect, for
//! fake kernels and for checking that a plan converges.

use std::collections::BTreeMap;

use vpcip_model::desired::router_ifname;

use super::{GatewayChange, GatewayObserved, Ns, NsObserved, RouterObserved, UPLINK};
use crate::links::{LinkChange, LinkState, vxlan_ifname};
use crate::routing::{ClassChange, RouteSpec};

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
            GatewayChange::ArpSilent { vpc, link, silent } => {
                if let Some(r) = gw.routers.get_mut(vpc) {
                    if *silent {
                        r.arp_silent.insert(link.clone());
                    } else {
                        r.arp_silent.remove(link);
                    }
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
