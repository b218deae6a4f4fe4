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
    GatewayChange, GatewayObserved, NodeMaps, NsObserved, RouterMaps, RouterObserved, UPLINK,
};
use vpcip_dataplane::isolation::InfraGuard;
use vpcip_dataplane::routing::{RouteSpec, RouteType};
use vpcip_model::desired::ROUTER_IFPREFIX;
use vpcip_sys::guard::GuardRole;
use vpcip_sys::link::{Net, RTPROT_VPCIP, RouteKind, ipv4_sysctl_is, net_sysctl_is};
use vpcip_sys::netns::{list_named, named};
use vpcip_sys::nft::NatTable;

use super::{GatewayKernel, KernelError, NsLinks, in_ns, netns_inode, observe_links};

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

/// Forwarding on, and conntrack liberal with TCP windows: a connection
/// that passed through another gateway for a while comes back with
/// sequence numbers this one has not seen, and must still be translated.
fn forwarding() -> Result<bool, KernelError> {
    Ok(
        ipv4_sysctl_is("ip_forward", "1").map_err(KernelError::sys("read", "ip_forward"))?
            && net_sysctl_is(TCP_LIBERAL, "1")
                .map_err(KernelError::sys("read", "nf_conntrack_tcp_be_liberal"))?,
    )
}

pub(super) const TCP_LIBERAL: &str = "netfilter/nf_conntrack_tcp_be_liberal";

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
        maps.capacity = nft.capacity().map_err(e("map eip_dnat"))?;
    }
    if qos {
        maps.classes = nft.read_classes().map_err(e("map eip_class"))?;
    }
    if alg {
        maps.algs = nft.read_algs().map_err(e("ALG sets"))?;
        // A helper without addresses is no entry, as in the plan.
        maps.algs.retain(|_, set| !set.is_empty());
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
    let mut arp_silent = BTreeSet::new();
    for (name, l) in &links {
        if l.kind.as_deref() == Some("vxlan") {
            if ipv4_sysctl_is(&format!("conf/{name}/arp_ignore"), "8")
                .map_err(KernelError::sys("read arp_ignore of", name))?
            {
                arp_silent.insert(name.clone());
            }
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
        arp_silent,
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
        let node = self.node.clone();
        let observe_node = move || {
            in_ns(&node, move || {
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
            })
        };
        let own = router_netns(&self.prefix, "");
        let routers: Vec<(String, Option<RouterSeen>)> = list_named(&own)
            .into_iter()
            .filter_map(|ns| ns.strip_prefix(&own).map(str::to_string))
            .map(|vpc| {
                let seen = self.routers_seen.remove(&vpc);
                (vpc, seen)
            })
            .collect();
        // The node and the routers are read side by side (a restart
        // without memory reads every map: 100,000 bindings are five dumps
        // of 100,000 elements, the node's three beside the router's two).
        let (node, routers) = std::thread::scope(|s| {
            let node = s.spawn(observe_node);
            let routers: Vec<_> = routers
                .into_iter()
                .map(|(vpc, seen)| {
                    let ns = named(&router_netns(&self.prefix, &vpc));
                    in_ns(&ns, move || observe_router(seen)).map(|r| (vpc, r))
                })
                .collect();
            (node.join(), routers)
        });
        let (mut gw, node_seen) = node.unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        self.node_seen = Some(node_seen);
        let mut still = HashMap::new();
        for r in routers {
            let (vpc, (observed, seen)) = r?;
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

mod apply;
use apply::{Place, apply_in_node, apply_in_router, place};
