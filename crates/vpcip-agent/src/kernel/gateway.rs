//! The gateway kernel over netlink: the node's namespace and one namespace
//! per VPC router (`<prefix>vpcr-<vpc id>`).
//!
//! The maps (NAT, steering, classes, helpers) can hold 100,000 elements; a
//! namespace's are not read again while its nftables generation is the one
//! recorded after our last read or write there (nobody touched nftables
//! since). What was seen can be kept on disk, so a restarted agent skips
//! the reads too ([`SysGateway::remember_in`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use vpcip_dataplane::gateway::{
    GatewayChange, GatewayObserved, NodeMaps, Ns, NsObserved, RouterMaps, RouterObserved, UPLINK,
    forget,
};
use vpcip_dataplane::isolation::InfraGuard;
use vpcip_dataplane::links::vxlan_ifname;
use vpcip_dataplane::nat::plan_nat;
use vpcip_dataplane::routing::{ClassChange, RouteSpec, RouteType};
use vpcip_model::desired::{ROUTER_IFPREFIX, router_ifname, router_links_block};
use vpcip_sys::guard::GuardRole;
use vpcip_sys::link::{Link, Net, RTPROT_VPCIP, Route, RouteKind, ipv4_sysctl, ipv4_sysctl_is};
use vpcip_sys::netns::{create_named, delete_named, list_named, named};
use vpcip_sys::nft::NatTable;
use vpcip_sys::qos::EipIs;

use super::{GatewayKernel, KernelError, NsLinks, apply_link, in_ns, netns_inode, observe_links};

/// The namespace of a VPC's router.
pub fn router_netns(prefix: &str, vpc_id: &str) -> String {
    format!("{prefix}vpcr-{vpc_id}")
}

const GUARD: GuardRole = GuardRole::Gateway {
    router_ifprefix: ROUTER_IFPREFIX,
};

/// The node's tables as last read or written, with the generation then.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct NodeSeen {
    generation: u32,
    netns: u64,
    tables: bool,
    maps: NodeMaps,
    /// The guard (None: not known; Some(None): no guard table).
    #[serde(skip)]
    guard: Option<Option<InfraGuard>>,
}

/// A router's tables likewise.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct RouterSeen {
    generation: u32,
    netns: u64,
    tables: bool,
    maps: RouterMaps,
}

/// What is kept on disk.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Memory {
    node: Option<NodeSeen>,
    routers: HashMap<String, RouterSeen>,
}

/// The gateway node over netlink.
pub struct SysGateway {
    prefix: String,
    node: PathBuf,
    node_seen: Option<NodeSeen>,
    routers_seen: HashMap<String, RouterSeen>,
    memory: Option<PathBuf>,
    /// Something was written since the memory was last kept.
    dirty: bool,
}

impl SysGateway {
    /// `node`: the gateway node's namespace; `prefix`: what the routers'
    /// namespaces are named after.
    pub fn new(prefix: &str, node: &Path) -> Self {
        SysGateway {
            prefix: prefix.to_string(),
            node: node.to_path_buf(),
            node_seen: None,
            routers_seen: HashMap::new(),
            memory: None,
            dirty: true,
        }
    }

    /// Keeps what was seen in `dir` across restarts (only trusted while a
    /// namespace's nftables generation is the one recorded with it).
    pub fn remember_in(mut self, dir: &Path) -> Self {
        let file = dir.join("gateway-memory.json");
        if let Ok(text) = std::fs::read(&file) {
            match serde_json::from_slice::<Memory>(&text) {
                Ok(m) => {
                    self.node_seen = m.node;
                    self.routers_seen = m.routers;
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "ignoring unreadable agent memory")
                }
            }
        }
        self.memory = Some(file);
        self
    }

    fn router_path(&self, vpc: &str) -> PathBuf {
        named(&router_netns(&self.prefix, vpc))
    }
}

fn open_net() -> Result<Net, KernelError> {
    Net::open().map_err(KernelError::sys("open", "rtnetlink"))
}

fn open_nft() -> Result<NatTable, KernelError> {
    NatTable::open().map_err(KernelError::sys("open", "nftables"))
}

/// vpcip's routes of the current namespace (protocol 240), every table.
fn observe_routes(
    net: &Net,
    names: &BTreeMap<u32, String>,
) -> Result<BTreeSet<RouteSpec>, KernelError> {
    Ok(net
        .routes()
        .map_err(KernelError::sys("list", "routes"))?
        .into_iter()
        .filter(|r| r.protocol == RTPROT_VPCIP)
        .map(|r| RouteSpec {
            table: r.table,
            dst: r.dst,
            via: r.gateway,
            dev: r.oif.and_then(|i| names.get(&i).cloned()),
            kind: match r.kind {
                RouteKind::Unicast => RouteType::Unicast,
                RouteKind::Unreachable => RouteType::Unreachable,
                RouteKind::Other(n) => RouteType::Other(n),
            },
        })
        .collect())
}

/// The HTB (vpcip's qdisc and its classes' rates) of each link `shaped`
/// picks.
fn observe_htb(
    net: &Net,
    names: &BTreeMap<u32, String>,
    shaped: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, vpcip_dataplane::routing::Htb>, KernelError> {
    let mut out = BTreeMap::new();
    for (index, name) in names.iter().filter(|(_, n)| shaped(n)) {
        let htb = if net
            .has_htb(*index)
            .map_err(KernelError::sys("read qdisc of", name))?
        {
            Some(
                net.htb_classes(*index)
                    .map_err(KernelError::sys("read HTB classes of", name))?
                    .into_iter()
                    .map(|(minor, c)| (minor, c.rate))
                    .collect(),
            )
        } else {
            None
        };
        out.insert(name.clone(), htb);
    }
    Ok(out)
}

fn forwarding() -> Result<bool, KernelError> {
    ipv4_sysctl_is("ip_forward", "1").map_err(KernelError::sys("read", "ip_forward"))
}

/// The node's maps, each table's only if it is there (a missing one holds
/// nothing); whether all are there.
fn read_node_maps(nft: &mut NatTable) -> Result<(bool, NodeMaps), KernelError> {
    let e = |what: &'static str| KernelError::sys("read", what);
    let gw = nft.has_gateway_table().map_err(e("ip vpcip_gw"))?;
    let qos = nft.has_qos().map_err(e("ip vpcip_qos"))?;
    let mut maps = NodeMaps::default();
    if gw {
        maps.steer = nft.read_steering().map_err(e("map eip_router"))?;
        maps.counted = nft
            .read_counters()
            .map_err(e("sets eip_in, eip_out"))?
            .into_keys()
            .collect();
        maps.default_snat = nft.read_default_snat().map_err(e("map default_snat"))?;
    }
    if qos {
        maps.classes = nft.read_classes().map_err(e("map eip_class"))?;
    }
    Ok((gw && qos, maps))
}

/// A router's maps likewise.
fn read_router_maps(nft: &mut NatTable) -> Result<(bool, RouterMaps), KernelError> {
    let e = |what: &'static str| KernelError::sys("read", what);
    let nat = nft.has_nat().map_err(e("ip vpcip_nat"))?;
    let qos = nft.has_qos().map_err(e("ip vpcip_qos"))?;
    let alg = nft.has_alg().map_err(e("ip vpcip_alg"))?;
    let mut maps = RouterMaps::default();
    if nat {
        (maps.dnat, maps.snat) = nft.read().map_err(e("maps eip_dnat, eip_snat"))?;
    }
    if qos {
        maps.classes = nft.read_classes().map_err(e("map eip_class"))?;
    }
    if alg {
        maps.algs = nft.read_algs().map_err(e("ALG sets"))?;
    }
    Ok((nat && qos && alg, maps))
}

/// One router namespace as observed; `seen` its maps as last recorded.
fn observe_router(seen: Option<RouterSeen>) -> Result<(RouterObserved, RouterSeen), KernelError> {
    let net = open_net()?;
    let NsLinks { links, names, .. } = observe_links(&net, Ipv4Addr::UNSPECIFIED)?;
    let routes = observe_routes(&net, &names)?;
    let htb = observe_htb(&net, &names, |n| n == UPLINK)?;
    let mut arp_ready = BTreeSet::new();
    for (name, l) in &links {
        if l.kind.as_deref() == Some("vxlan") {
            let e = KernelError::sys("read ARP settings of", name);
            let accept = ipv4_sysctl_is(&format!("conf/{name}/arp_accept"), "1");
            let lock = ipv4_sysctl_is(&format!("neigh/{name}/locktime"), "0");
            if accept.map_err(e)? && lock.map_err(KernelError::sys("read locktime of", name))? {
                arp_ready.insert(name.clone());
            }
        }
    }
    let mut nft = open_nft()?;
    let generation = nft
        .generation()
        .map_err(KernelError::sys("read", "nftables generation"))?;
    let netns = netns_inode().map_err(KernelError::sys("stat", "namespace"))?;
    let (tables, maps) = match seen {
        Some(s) if s.generation == generation && s.netns == netns => (s.tables, s.maps),
        _ => read_router_maps(&mut nft)?,
    };
    let observed = RouterObserved {
        ns: NsObserved {
            links,
            routes,
            htb,
            forwarding: forwarding()?,
        },
        tables,
        maps: maps.clone(),
        arp_ready,
    };
    Ok((
        observed,
        RouterSeen {
            generation,
            netns,
            tables,
            maps,
        },
    ))
}

impl GatewayKernel for SysGateway {
    fn observe(&mut self, underlay: Ipv4Addr) -> Result<GatewayObserved, KernelError> {
        let seen = self.node_seen.take();
        let (mut gw, node_seen) = in_ns(&self.node, move || {
            let net = open_net()?;
            let NsLinks {
                links,
                underlay_mtu,
                names,
            } = observe_links(&net, underlay)?;
            let routes = observe_routes(&net, &names)?;
            let htb = observe_htb(&net, &names, |n| n.starts_with(ROUTER_IFPREFIX))?;
            let rules = net
                .fw_rules()
                .map_err(KernelError::sys("list", "policy rules"))?
                .into_iter()
                .collect();
            let mut nft = open_nft()?;
            let generation = nft
                .generation()
                .map_err(KernelError::sys("read", "nftables generation"))?;
            let netns = netns_inode().map_err(KernelError::sys("stat", "namespace"))?;
            let seen = seen.filter(|s| s.generation == generation && s.netns == netns);
            let (tables, maps) = match &seen {
                Some(s) => (s.tables, s.maps.clone()),
                None => read_node_maps(&mut nft)?,
            };
            let guard = match seen.and_then(|s| s.guard) {
                Some(g) => g,
                None => nft
                    .read_guard(GUARD)
                    .map_err(KernelError::sys("read", "ip vpcip_guard"))?,
            };
            let gw = GatewayObserved {
                node: NsObserved {
                    links,
                    routes,
                    htb,
                    forwarding: forwarding()?,
                },
                rules,
                underlay_mtu,
                node_tables: tables,
                node_maps: maps.clone(),
                guard: guard.clone(),
                routers: BTreeMap::new(),
            };
            let seen = NodeSeen {
                generation,
                netns,
                tables,
                maps,
                guard: Some(guard),
            };
            Ok((gw, seen))
        })?;
        self.node_seen = Some(node_seen);
        let own = router_netns(&self.prefix, "");
        let mut still = HashMap::new();
        for ns in list_named(&own) {
            let Some(vpc) = ns.strip_prefix(&own).map(str::to_string) else {
                continue;
            };
            let seen = self.routers_seen.remove(&vpc);
            let (observed, seen) = in_ns(&named(&ns), move || observe_router(seen))?;
            gw.routers.insert(vpc.clone(), observed);
            still.insert(vpc, seen);
        }
        self.routers_seen = still;
        Ok(gw)
    }

    fn apply(&mut self, changes: &[GatewayChange]) -> Result<(), KernelError> {
        let mut rest = changes;
        while let Some(first) = rest.first() {
            let here = place(first);
            let n = match here {
                Place::Outside => 1,
                _ => rest.iter().take_while(|c| place(c) == here).count(),
            };
            let (run, next) = rest.split_at(n);
            rest = next;
            self.dirty = true;
            match here {
                Place::Outside => self.apply_outside(first)?,
                Place::Node => {
                    let seen = self.node_seen.take();
                    let paths: HashMap<String, PathBuf> = run
                        .iter()
                        .filter_map(|c| match c {
                            GatewayChange::AddRouterVxlan { vpc, .. } => {
                                Some((vpc.clone(), self.router_path(vpc)))
                            }
                            _ => None,
                        })
                        .collect();
                    self.node_seen =
                        in_ns(&self.node.clone(), move || apply_in_node(run, seen, &paths))?;
                }
                Place::Router(vpc) => {
                    let seen = self.routers_seen.remove(&vpc);
                    let path = self.router_path(&vpc);
                    if let Some(s) = in_ns(&path, move || apply_in_router(run, seen))? {
                        self.routers_seen.insert(vpc, s);
                    }
                }
            }
        }
        Ok(())
    }

    fn pass_done(&mut self) {
        if !self.dirty {
            return;
        }
        let Some(file) = &self.memory else { return };
        let m = Memory {
            node: self.node_seen.clone(),
            routers: self.routers_seen.clone(),
        };
        let tmp = file.with_extension("tmp");
        let written = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, serde_json::to_vec(&m).unwrap_or_default()))
            .and_then(|()| std::fs::rename(&tmp, file));
        match written {
            Ok(()) => self.dirty = false,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot keep the agent's memory")
            }
        }
    }
}

/// Where a change is made.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Node,
    Router(String),
    /// Namespaces themselves, or more than one.
    Outside,
}

fn place(c: &GatewayChange) -> Place {
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
        | GatewayChange::MakeRouterTables { vpc }
        | GatewayChange::RouterMaps { vpc, .. } => Place::Router(vpc.clone()),
    }
}

impl SysGateway {
    fn apply_outside(&mut self, c: &GatewayChange) -> Result<(), KernelError> {
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

/// Applies a run of changes in the node's namespace.
fn apply_in_node(
    run: &[GatewayChange],
    seen: Option<NodeSeen>,
    router_paths: &HashMap<String, PathBuf>,
) -> Result<Option<NodeSeen>, KernelError> {
    let net = open_net()?;
    let mut links = net.links().map_err(KernelError::sys("list", "links"))?;
    let mut nft: Option<NatTable> = None;
    let mut seen = seen;
    let mut i = 0;
    while let Some(c) = run.get(i) {
        let (n, batch) = htb_batch(&run[i..]);
        i += n;
        if apply_common(&net, &mut links, c, &batch)? {
            continue;
        }
        let t = match &mut nft {
            Some(t) => t,
            None => nft.insert(open_nft()?),
        };
        match c {
            GatewayChange::MakeNodeTables => {
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
                t.apply_steering(&have.steer, &want.steer)
                    .map_err(KernelError::sys("change", "map eip_router"))?;
                let add: Vec<Ipv4Addr> = want.counted.difference(&have.counted).copied().collect();
                let remove: Vec<Ipv4Addr> =
                    have.counted.difference(&want.counted).copied().collect();
                t.apply_counted(&add, &remove)
                    .map_err(KernelError::sys("change", "sets eip_in, eip_out"))?;
                t.apply_classes(&have.classes, &want.classes)
                    .map_err(KernelError::sys("change", "map eip_class"))?;
                t.apply_default_snat(&have.default_snat, &want.default_snat)
                    .map_err(KernelError::sys("change", "map default_snat"))?;
                if let Some(s) = seen.as_mut() {
                    s.maps = want.clone();
                }
            }
            GatewayChange::MakeGuard(want) | GatewayChange::Guard { want, .. } => {
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
                    net.add_fw_rule(rule)
                        .map_err(KernelError::sys("add rule", what))?;
                } else {
                    net.del_fw_rule(rule)
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
                if let Ok(i) = index_of(&links, &name, "") {
                    // Left behind by an interrupted pass.
                    net.del_link(i)
                        .map_err(KernelError::sys("delete link", name.as_str()))?;
                }
                net.add_vxlan(&name, *vni, *local, *mtu)
                    .map_err(KernelError::sys("add VXLAN device", name.as_str()))?;
                links = net.links().map_err(KernelError::sys("list", "links"))?;
                let i = index_of(&links, &name, "move")?;
                let path = router_paths.get(vpc).ok_or_else(|| KernelError::NoLink {
                    op: "move into the router",
                    object: name.clone(),
                })?;
                net.move_to(i, path, &name)
                    .map_err(KernelError::sys("move into the router", name.as_str()))?;
                links = net.links().map_err(KernelError::sys("list", "links"))?;
            }
            _ => {}
        }
    }
    if let (Some(t), Some(s)) = (nft.as_mut(), seen.as_mut()) {
        s.generation = t
            .generation()
            .map_err(KernelError::sys("read", "nftables generation"))?;
    }
    Ok(seen)
}

/// Applies a run of changes in a router's namespace.
fn apply_in_router(
    run: &[GatewayChange],
    seen: Option<RouterSeen>,
) -> Result<Option<RouterSeen>, KernelError> {
    let net = open_net()?;
    let mut links = net.links().map_err(KernelError::sys("list", "links"))?;
    let mut nft: Option<NatTable> = None;
    let mut seen = seen;
    let mut i = 0;
    while let Some(c) = run.get(i) {
        let (n, batch) = htb_batch(&run[i..]);
        i += n;
        if apply_common(&net, &mut links, c, &batch)? {
            continue;
        }
        let t = match &mut nft {
            Some(t) => t,
            None => nft.insert(open_nft()?),
        };
        match c {
            GatewayChange::ArpReady { link, .. } => {
                // Gratuitous ARP (a VIP changing hands) creates and updates
                // the router's entries at once.
                ipv4_sysctl(&format!("conf/{link}/arp_accept"), "1")
                    .map_err(KernelError::sys("set arp_accept of", link))?;
                ipv4_sysctl(&format!("neigh/{link}/locktime"), "0")
                    .map_err(KernelError::sys("set locktime of", link))?;
            }
            GatewayChange::MakeRouterTables { .. } => {
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
                let mut plan = plan_nat(&want.dnat, &have.dnat, &have.snat);
                let mut gone = planned.clone();
                if !plan.is_empty() {
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
    }
    if let (Some(t), Some(s)) = (nft.as_mut(), seen.as_mut()) {
        s.generation = t
            .generation()
            .map_err(KernelError::sys("read", "nftables generation"))?;
    }
    Ok(seen)
}
