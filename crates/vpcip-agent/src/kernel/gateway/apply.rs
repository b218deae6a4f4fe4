//! Applying the gateway's changes: runs of changes in one namespace, each
//! entered once.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use vpcip_dataplane::gateway::{GatewayChange, Ns, RouterMaps, UPLINK, forget};
use vpcip_dataplane::links::vxlan_ifname;
use vpcip_dataplane::nat::{NatPlan, plan_nat};
use vpcip_dataplane::routing::{ClassChange, RouteSpec, RouteType};
use vpcip_model::desired::{ROUTER_IFPREFIX, router_ifname, router_links_block};
use vpcip_sys::link::{Link, Net, RTPROT_VPCIP, Route, RouteKind, ipv4_sysctl, net_sysctl};
use vpcip_sys::netns::{create_named, delete_named};
use vpcip_sys::nft::NatTable;
use vpcip_sys::qos::EipIs;

use super::{GUARD, NodeSeen, RouterSeen, SysGateway, open_net, open_nft, router_netns};
use crate::kernel::{KernelError, apply_link, in_ns, netns_inode};

/// Where a change is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Place {
    Node,
    Router(String),
    /// Namespaces themselves, or more than one.
    Outside,
}

pub(super) fn place(c: &GatewayChange) -> Place {
    let of = |ns: &Ns| match ns {
        Ns::Node => Place::Node,
        Ns::Router(v) => Place::Router(v.clone()),
    };
    match c {
        GatewayChange::MakeRouter { .. }
        | GatewayChange::DelRouter { .. }
        | GatewayChange::AddRouterLink { .. } => Place::Outside,
        GatewayChange::MakeNodeTables
        | GatewayChange::NodeMaps { .. }
        | GatewayChange::MakeGuard(_)
        | GatewayChange::Guard { .. }
        | GatewayChange::AddRouterVxlan { .. }
        | GatewayChange::Rule { .. } => Place::Node,
        GatewayChange::Forwarding(ns)
        | GatewayChange::Link { ns, .. }
        | GatewayChange::Route { ns, .. }
        | GatewayChange::AddHtb { ns, .. }
        | GatewayChange::HtbClass { ns, .. } => of(ns),
        GatewayChange::ArpReady { vpc, .. }
        | GatewayChange::ArpSilent { vpc, .. }
        | GatewayChange::MakeRouterTables { vpc }
        | GatewayChange::RouterMaps { vpc, .. } => Place::Router(vpc.clone()),
    }
}

impl SysGateway {
    pub(super) fn apply_outside(&mut self, c: &GatewayChange) -> Result<(), KernelError> {
        match c {
            GatewayChange::MakeRouter { vpc } => {
                let ns = router_netns(&self.prefix, vpc);
                create_named(&ns).map_err(KernelError::sys("make namespace", ns))?;
            }
            GatewayChange::DelRouter { vpc } => {
                let ns = router_netns(&self.prefix, vpc);
                delete_named(&ns).map_err(KernelError::sys("delete namespace", ns))?;
                self.routers_seen.remove(vpc);
            }
            GatewayChange::AddRouterLink { vpc } => {
                // What is left of an earlier pair goes: the router's end…
                let path = self.router_path(vpc);
                in_ns(&path, || {
                    let net = open_net()?;
                    if let Some(l) = net.link(UPLINK).map_err(KernelError::sys("find", UPLINK))? {
                        net.del_link(l.index)
                            .map_err(KernelError::sys("delete link", UPLINK))?;
                    }
                    Ok(())
                })?;
                // …and the node's; then a new pair, one end moved in.
                let vr = router_ifname(vpc);
                in_ns(&self.node.clone(), move || {
                    let net = open_net()?;
                    let peer = format!("vp{}", vr.get(2..).unwrap_or_default());
                    for n in [&vr, &peer] {
                        if let Some(l) =
                            net.link(n).map_err(KernelError::sys("find", n.as_str()))?
                        {
                            net.del_link(l.index)
                                .map_err(KernelError::sys("delete link", n.as_str()))?;
                        }
                    }
                    net.add_veth(&vr, &peer)
                        .map_err(KernelError::sys("add veth", vr.as_str()))?;
                    let p = net
                        .link(&peer)
                        .map_err(KernelError::sys("find", peer.as_str()))?
                        .ok_or_else(|| KernelError::NoLink {
                            op: "move",
                            object: peer.clone(),
                        })?;
                    net.move_to(p.index, &path, UPLINK)
                        .map_err(KernelError::sys("move into the router", peer.as_str()))
                })?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The link's index, by name.
fn index_of(links: &[Link], name: &str, op: &'static str) -> Result<u32, KernelError> {
    links
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.index)
        .ok_or_else(|| KernelError::NoLink {
            op,
            object: name.to_string(),
        })
}

/// A planned route as netlink takes it.
fn route_of(r: &RouteSpec, links: &[Link]) -> Result<Route, KernelError> {
    Ok(Route {
        table: r.table,
        dst: r.dst,
        gateway: r.via,
        oif: match &r.dev {
            Some(d) => Some(index_of(links, d, "route via")?),
            None => None,
        },
        kind: match r.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Unreachable => RouteKind::Unreachable,
            RouteType::Other(n) => RouteKind::Other(n),
        },
        protocol: RTPROT_VPCIP,
    })
}

/// The changes every namespace takes the same way: links, routes, HTB,
/// forwarding. False when `c` is not one of them.
fn apply_common(
    net: &Net,
    links: &mut Vec<Link>,
    c: &GatewayChange,
    htb_batch: &[ClassChange],
) -> Result<bool, KernelError> {
    match c {
        GatewayChange::Forwarding(_) => {
            ipv4_sysctl("ip_forward", "1").map_err(KernelError::sys("turn on", "ip_forward"))?;
            net_sysctl(super::TCP_LIBERAL, "1")
                .map_err(KernelError::sys("turn on", "nf_conntrack_tcp_be_liberal"))?;
        }
        GatewayChange::Link { change, .. } => apply_link(net, links, change)?,
        GatewayChange::Route { add, route, .. } => {
            let r = route_of(route, links)?;
            let what = format!("{:?} {}", route.kind, route.dst);
            if *add {
                net.add_route(&r)
                    .map_err(KernelError::sys("add route", what))?;
            } else {
                net.del_route(&r)
                    .map_err(KernelError::sys("delete route", what))?;
            }
        }
        GatewayChange::AddHtb { link, .. } => {
            let i = index_of(links, link, "add HTB to")?;
            net.add_htb(i)
                .map_err(KernelError::sys("add HTB to", link))?;
        }
        GatewayChange::HtbClass { link, .. } => {
            let i = index_of(links, link, "change HTB classes of")?;
            net.htb_apply(i, htb_batch)
                .map_err(KernelError::sys("change HTB classes of", link))?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The HTB class changes of the same link that follow `run[0]`, with it.
fn htb_batch(run: &[GatewayChange]) -> (usize, Vec<ClassChange>) {
    let Some(GatewayChange::HtbClass { ns, link, .. }) = run.first() else {
        return (1, vec![]);
    };
    let batch: Vec<ClassChange> = run
        .iter()
        .map_while(|c| match c {
            GatewayChange::HtbClass {
                ns: n,
                link: l,
                change,
            } if n == ns && l == link => Some(*change),
            _ => None,
        })
        .collect();
    (batch.len(), batch)
}

/// A namespace while a run of changes is applied in it: rtnetlink, the
/// links as they stand, and nftables once a change needs it.
struct Session {
    net: Net,
    links: Vec<Link>,
    nft: Option<NatTable>,
}

impl Session {
    fn open() -> Result<Self, KernelError> {
        let net = open_net()?;
        let links = net.links().map_err(KernelError::sys("list", "links"))?;
        Ok(Session {
            net,
            links,
            nft: None,
        })
    }

    fn nft(&mut self) -> Result<&mut NatTable, KernelError> {
        let t = match self.nft.take() {
            Some(t) => t,
            None => open_nft()?,
        };
        Ok(self.nft.insert(t))
    }

    /// Applies `run` in order: what every namespace takes the same way
    /// here ([`apply_common`]), the rest by `own`. Returns the nftables
    /// generation after, when a change used nftables.
    fn apply(
        mut self,
        run: &[GatewayChange],
        mut own: impl FnMut(&mut Session, &GatewayChange) -> Result<(), KernelError>,
    ) -> Result<Option<u32>, KernelError> {
        let mut i = 0;
        while let Some(c) = run.get(i) {
            let (n, batch) = htb_batch(&run[i..]);
            i += n;
            if !apply_common(&self.net, &mut self.links, c, &batch)? {
                own(&mut self, c)?;
            }
        }
        self.nft
            .as_mut()
            .map(|t| {
                t.generation()
                    .map_err(KernelError::sys("read", "nftables generation"))
            })
            .transpose()
    }
}

/// Applies a run of changes in the node's namespace.
pub(super) fn apply_in_node(
    run: &[GatewayChange],
    seen: Option<NodeSeen>,
    router_paths: &HashMap<String, PathBuf>,
) -> Result<Option<NodeSeen>, KernelError> {
    let mut seen = seen;
    let generation = Session::open()?.apply(run, |ss, c| {
        match c {
            GatewayChange::MakeNodeTables => {
                let t = ss.nft()?;
                let block = router_links_block();
                t.ensure_gateway(block.addr(), block.prefix_len(), ROUTER_IFPREFIX)
                    .map_err(KernelError::sys("make", "ip vpcip_gw"))?;
                t.ensure_qos(EipIs::Destination)
                    .map_err(KernelError::sys("make", "ip vpcip_qos"))?;
                if let Some(s) = seen.as_mut() {
                    s.tables = true;
                }
            }
            GatewayChange::NodeMaps { have, want } => {
                let t = ss.nft()?;
                t.apply_steering(&have.steer, &want.steer)
                    .map_err(KernelError::sys("change", "map eip_router"))?;
                // The counters of EIPs no longer bound here go: those known
                // and those packets made since they were last read.
                let remove: Vec<Ipv4Addr> = have
                    .counted
                    .difference(&want.counted)
                    .chain(have.steer.keys().filter(|ip| !want.steer.contains_key(ip)))
                    .copied()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                t.apply_counted(&remove)
                    .map_err(KernelError::sys("remove from", "sets eip_in, eip_out"))?;
                t.apply_classes(&have.classes, &want.classes)
                    .map_err(KernelError::sys("change", "map eip_class"))?;
                t.apply_default_snat(&have.default_snat, &want.default_snat)
                    .map_err(KernelError::sys("change", "map default_snat"))?;
                if let Some(s) = seen.as_mut() {
                    s.maps = want.clone();
                }
            }
            GatewayChange::MakeGuard(want) | GatewayChange::Guard { want, .. } => {
                let t = ss.nft()?;
                if matches!(c, GatewayChange::MakeGuard(_)) {
                    t.ensure_guard(GUARD, want)
                        .map_err(KernelError::sys("make", "ip vpcip_guard"))?;
                }
                t.apply_guard(GUARD, want)
                    .map_err(KernelError::sys("change", "ip vpcip_guard"))?;
                if let Some(s) = seen.as_mut() {
                    s.guard = Some(Some(want.clone()));
                }
            }
            GatewayChange::Rule { add, rule } => {
                let what = format!("fwmark {}", rule.mark);
                if *add {
                    ss.net
                        .add_fw_rule(rule)
                        .map_err(KernelError::sys("add rule", what))?;
                } else {
                    ss.net
                        .del_fw_rule(rule)
                        .map_err(KernelError::sys("delete rule", what))?;
                }
            }
            GatewayChange::AddRouterVxlan {
                vpc,
                vni,
                local,
                mtu,
            } => {
                let name = vxlan_ifname(*vni);
                let net = &ss.net;
                if let Ok(i) = index_of(&ss.links, &name, "") {
                    // Left behind by an interrupted pass.
                    net.del_link(i)
                        .map_err(KernelError::sys("delete link", name.as_str()))?;
                }
                net.add_vxlan(&name, *vni, *local, *mtu)
                    .map_err(KernelError::sys("add VXLAN device", name.as_str()))?;
                ss.links = net.links().map_err(KernelError::sys("list", "links"))?;
                let i = index_of(&ss.links, &name, "move")?;
                let path = router_paths.get(vpc).ok_or_else(|| KernelError::NoLink {
                    op: "move into the router",
                    object: name.clone(),
                })?;
                net.move_to(i, path, &name)
                    .map_err(KernelError::sys("move into the router", name.as_str()))?;
                ss.links = net.links().map_err(KernelError::sys("list", "links"))?;
            }
            _ => {}
        }
        Ok(())
    })?;
    if let (Some(g), Some(s)) = (generation, seen.as_mut()) {
        s.generation = g;
    }
    Ok(seen)
}

/// Applies a run of changes in a router's namespace.
pub(super) fn apply_in_router(
    run: &[GatewayChange],
    seen: Option<RouterSeen>,
) -> Result<Option<RouterSeen>, KernelError> {
    // A router made this pass was not observed: what it holds is what this
    // run makes of it, from nothing.
    let mut seen = match seen {
        Some(s) => Some(s),
        None => Some(RouterSeen {
            generation: 0,
            netns: netns_inode().map_err(KernelError::sys("stat", "namespace"))?,
            tables: false,
            maps: RouterMaps::default(),
        }),
    };
    let generation = Session::open()?.apply(run, |ss, c| {
        match c {
            GatewayChange::ArpReady { link, .. } => {
                // Gratuitous ARP (a VIP changing hands) creates and updates
                // the router's entries at once.
                ipv4_sysctl(&format!("conf/{link}/arp_accept"), "1")
                    .map_err(KernelError::sys("set arp_accept of", link))?;
                ipv4_sysctl(&format!("neigh/{link}/locktime"), "0")
                    .map_err(KernelError::sys("set locktime of", link))?;
            }
            GatewayChange::ArpSilent { link, silent, .. } => {
                // 8: answer no request; 0: the kernel's default.
                let v = if *silent { "8" } else { "0" };
                ipv4_sysctl(&format!("conf/{link}/arp_ignore"), v)
                    .map_err(KernelError::sys("set arp_ignore of", link))?;
            }
            GatewayChange::MakeRouterTables { .. } => {
                let t = ss.nft()?;
                t.ensure()
                    .map_err(KernelError::sys("make", "ip vpcip_nat"))?;
                t.ensure_qos(EipIs::Source)
                    .map_err(KernelError::sys("make", "ip vpcip_qos"))?;
                t.ensure_alg()
                    .map_err(KernelError::sys("make", "ip vpcip_alg"))?;
                if let Some(s) = seen.as_mut() {
                    s.tables = true;
                }
            }
            GatewayChange::RouterMaps {
                vpc,
                have,
                want,
                forget: planned,
            } => {
                let t = ss.nft()?;
                let mut plan = plan_nat(&want.dnat, &have.dnat, &have.snat);
                let mut gone = planned.clone();
                if want.capacity != have.capacity {
                    // Made anew for more bindings, filled in the same
                    // transaction.
                    t.remake(want.capacity, &want.dnat)
                        .map_err(KernelError::sys("make anew", "ip vpcip_nat"))?;
                    plan = NatPlan::default();
                } else if !plan.is_empty() {
                    // Something to change: make sure the read was not a
                    // partial dump (see NatTable::read).
                    let (dnat, snat) = t
                        .read_settled()
                        .map_err(KernelError::sys("read", "maps eip_dnat, eip_snat"))?;
                    if dnat != have.dnat || snat != have.snat {
                        let now = RouterMaps {
                            dnat,
                            snat,
                            ..have.clone()
                        };
                        plan = plan_nat(&want.dnat, &now.dnat, &now.snat);
                        gone = forget(&now, want);
                    }
                }
                t.apply(&plan)
                    .map_err(KernelError::sys("change", "maps eip_dnat, eip_snat"))?;
                t.apply_classes(&have.classes, &want.classes)
                    .map_err(KernelError::sys("change", "map eip_class"))?;
                t.apply_algs(&have.algs, &want.algs)
                    .map_err(KernelError::sys("change", "ALG sets"))?;
                if !gone.is_empty() {
                    let f = vpcip_sys::conntrack::forget(&gone).map_err(KernelError::sys(
                        "forget the connections of",
                        "changed EIPs",
                    ))?;
                    tracing::info!(vpc = %vpc, seen = f.seen, deleted = f.deleted, "forgot the connections of changed EIPs");
                }
                if let Some(s) = seen.as_mut() {
                    s.maps = want.clone();
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    if let (Some(g), Some(s)) = (generation, seen.as_mut()) {
        s.generation = g;
    }
    Ok(seen)
}
