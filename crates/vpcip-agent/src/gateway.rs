//! The gateway agent's reconciler. On the gateway node (its own namespace,
//! or the one it is told to work on), per VPC:
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
//! Each pass reads what is there and changes only what differs; what it
//! did not make (other namespaces, links, routes of other protocols,
//! tables) it leaves alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::kernel::netns_inode;
use ipnet::Ipv4Net;
use vpcip_dataplane::isolation::gateway_guard;
use vpcip_dataplane::nat::{NatMap, plan_nat, snat_of};
use vpcip_model::desired::{
    GatewayState, NatEntry, ROUTER_IFPREFIX, RouterSubnet, VpcRouter, router_ifname, router_link,
    router_links_block,
};
use vpcip_sys::SysError;
use vpcip_sys::alg::AlgSets;
use vpcip_sys::guard::{GuardRole, ipv6_off};
use vpcip_sys::link::{
    FwRule, MAIN_TABLE, Net, RTPROT_VPCIP, Route, RouteKind, VXLAN_OVERHEAD, ipv4_sysctl,
};
use vpcip_sys::netns::{create_named, delete_named, in_netns, list_named, named};
use vpcip_sys::nft::{NatTable, UPLINK};
use vpcip_sys::qos::EipIs;
use vpcip_sys::shaper::{ClassChange, class_id};

#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Kernel objects (links, addresses, routes, FDB and map entries) added
    /// or removed.
    pub changed: usize,
    /// Something desired could not be made yet (a port whose link does not
    /// exist): reconcile again soon.
    pub pending: bool,
}

pub struct GatewayReconciler {
    prefix: String,
    node: PathBuf,
    underlay: Ipv4Addr,
    underlay_mtu: u32,
    /// Each router's NAT and class maps as of our last pass, by namespace.
    nat_seen: HashMap<String, Seen<RouterNft>>,
    /// The node's steering map and counted EIPs as of our last pass.
    node_seen: Option<Seen<NodeNft>>,
    /// Where what was seen is kept across restarts (see [`Self::remember_in`]).
    memory: Option<PathBuf>,
    remembered: bool,
}

/// What the reconciler saw, as kept on disk.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Memory {
    nat: HashMap<String, Seen<RouterNft>>,
    node: Option<Seen<NodeNft>>,
}

/// EIP → bandwidth class id (`1:<class>` as a priority).
type ClassMap = BTreeMap<Ipv4Addr, u32>;

/// A router's DNAT and SNAT maps, its class map (by source) and ALG sets.
type RouterNft = (NatMap, NatMap, ClassMap, AlgSets);

/// The ALG sets a router's EIPs give: each EIP with helpers, and the
/// private address it maps to, in the sets of its helpers.
fn alg_sets(router: &VpcRouter) -> AlgSets {
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

/// The node's steering map (EIP → router number), counted EIPs and class
/// map (by destination).
/// The gateway node's own nftables maps and sets.
#[derive(Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct NodeNft {
    /// EIP → its router's number.
    steer: BTreeMap<Ipv4Addr, u32>,
    /// The EIPs counted.
    counted: BTreeSet<Ipv4Addr>,
    classes: ClassMap,
    /// Router link address → the gateway's default SNAT address.
    default_snat: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

/// Bytes per second of a limit in Mbit/s.
fn rate_bytes(mbps: u32) -> u64 {
    u64::from(mbps) * 125_000
}

/// The class map a router's limits give.
fn class_map<'a>(entries: impl Iterator<Item = &'a NatEntry>) -> ClassMap {
    entries
        .filter_map(|e| e.shaping.map(|s| (e.eip, class_id(s.class))))
        .collect()
}

/// vpcip's HTB qdisc on link `ifname` with exactly the classes `want`
/// (class → bytes per second); a missing link is left for the next pass.
fn converge_htb(net: &Net, ifname: &str, want: &BTreeMap<u16, u64>) -> Result<usize, SysError> {
    let Some(l) = net.link(ifname)? else {
        return Ok(0);
    };
    let mut n = 0;
    if !net.has_htb(l.index)? {
        net.add_htb(l.index)?;
        n += 1;
    }
    let have = net.htb_classes(l.index)?;
    let mut changes: Vec<ClassChange> = have
        .keys()
        .filter(|c| !want.contains_key(c))
        .map(|&minor| ClassChange::Remove { minor })
        .collect();
    changes.extend(
        want.iter()
            .filter(|(c, rate)| have.get(c).map(|h| h.rate) != Some(**rate))
            .map(|(&minor, &rate)| ClassChange::Set { minor, rate }),
    );
    net.htb_apply(l.index, &changes)?;
    Ok(n + changes.len())
}

/// What a namespace's nftables held after our last pass, with the
/// generation it had then. While the generation is unchanged nobody has
/// touched nftables there, and the (quadratic, for large sets) dumps are
/// skipped; any change, ours or anyone's, makes the next pass read all.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Seen<T> {
    generation: u32,
    /// The namespace's inode: a namespace made again starts its
    /// generations afresh.
    netns: u64,
    state: T,
}

/// Router N's routing table on the node is `ROUTER_TABLES + N`.
pub const ROUTER_TABLES: u32 = 10000;
/// The priority of the node's steering rules (before `main` at 32766).
pub const RULE_PRIORITY: u32 = 1000;

/// The namespace of a VPC's router.
pub fn router_netns(prefix: &str, vpc_id: &str) -> String {
    format!("{prefix}vpcr-{vpc_id}")
}

pub use vpcip_dataplane::links::vxlan_ifname;

/// Runs `f` with an rtnetlink connection in the namespace at `ns`.
pub(crate) fn on<T: Send>(
    ns: &Path,
    f: impl FnOnce(&Net) -> Result<T, SysError> + Send,
) -> Result<T, String> {
    in_netns(ns, || f(&Net::open()?))
        .and_then(|r| r)
        .map_err(|e| e.to_string())
}

/// Makes the link-up state, addresses and flood list of an L2 domain's
/// VXLAN device (already in this namespace) what they must be.
pub(crate) fn converge_vxlan(
    net: &Net,
    index: u32,
    addrs: &[Ipv4Net],
    vteps: &[Ipv4Addr],
) -> Result<usize, SysError> {
    let mut n = 0;
    let have = net.addrs(index)?;
    for a in addrs {
        if !have.contains(a) {
            net.add_addr(index, *a)?;
            n += 1;
        }
    }
    for a in &have {
        if !addrs.contains(a) {
            net.del_addr(index, *a)?;
            n += 1;
        }
    }
    let flood = net.flood_list(index)?;
    for v in vteps {
        if !flood.contains(v) {
            net.flood_add(index, *v)?;
            n += 1;
        }
    }
    for v in &flood {
        if !vteps.contains(v) {
            net.flood_del(index, *v)?;
            n += 1;
        }
    }
    Ok(n)
}

impl GatewayReconciler {
    /// `node`: the gateway node's namespace (`/proc/self/ns/net` for the
    /// agent's own); `underlay`: the node's tunnel endpoint address.
    pub fn new(prefix: &str, node: &Path, underlay: Ipv4Addr) -> Self {
        GatewayReconciler {
            prefix: prefix.to_string(),
            node: node.to_path_buf(),
            underlay,
            underlay_mtu: 1500,
            nat_seen: HashMap::new(),
            node_seen: None,
            memory: None,
            remembered: false,
        }
    }

    /// Keeps what each pass saw in `dir`, so that a restarted agent whose
    /// namespaces' nftables did not change meanwhile skips reading large
    /// sets again. (What is kept is only trusted while a namespace's
    /// nftables generation is the one recorded with it.)
    pub fn remember_in(mut self, dir: &Path) -> Self {
        let file = dir.join("gateway-seen.json");
        if let Ok(text) = std::fs::read(&file) {
            match serde_json::from_slice::<Memory>(&text) {
                Ok(m) => {
                    self.nat_seen = m.nat;
                    self.node_seen = m.node;
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "ignoring unreadable agent memory")
                }
            }
        }
        self.memory = Some(file);
        self
    }

    fn save_memory(&mut self) {
        let Some(file) = &self.memory else { return };
        let m = Memory {
            nat: self.nat_seen.clone(),
            node: self.node_seen.clone(),
        };
        let tmp = file.with_extension("tmp");
        let written = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, serde_json::to_vec(&m).unwrap_or_default()))
            .and_then(|()| std::fs::rename(&tmp, file));
        match written {
            Ok(()) => self.remembered = true,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot keep the agent's memory")
            }
        }
    }

    /// Brings the gateway node to the desired state. Every router is
    /// tried; the errors are reported together.
    pub fn reconcile(&mut self, state: &GatewayState) -> Result<Summary, String> {
        let mut summary = Summary::default();
        let mut errors = Vec::new();
        match self.node_base() {
            Ok(n) => summary.changed += n,
            Err(e) => errors.push(format!("gateway node: {e}")),
        }
        // The guard before any router: a new router is never unguarded.
        match self.guard(state) {
            Ok(n) => summary.changed += n,
            Err(e) => errors.push(format!("gateway guard: {e}")),
        }
        for router in &state.routers {
            match self.router(router) {
                Ok(n) => summary.changed += n,
                Err(e) => errors.push(format!("VPC {}: {e}", router.vpc_id)),
            }
        }
        match self.routes(state) {
            Ok(n) => summary.changed += n,
            Err(e) => errors.push(format!("gateway routes: {e}")),
        }
        match self.node_nft(state) {
            Ok(n) => summary.changed += n,
            Err(e) => errors.push(format!("gateway steering and counters: {e}")),
        }
        match self.remove_stale(state) {
            Ok(n) => summary.changed += n,
            Err(e) => errors.push(format!("stale routers: {e}")),
        }
        if summary.changed > 0 || !self.remembered {
            self.save_memory();
        }
        if errors.is_empty() {
            Ok(summary)
        } else {
            Err(errors.join("; "))
        }
    }

    /// Forwarding on, and the second stage of the default SNAT.
    fn node_base(&mut self) -> Result<usize, String> {
        let block = router_links_block();
        let (made, mtu) = in_netns(&self.node, || -> Result<(bool, u32), SysError> {
            ipv4_sysctl("ip_forward", "1")?;
            let made = NatTable::open()?.ensure_gateway(
                block.addr(),
                block.prefix_len(),
                ROUTER_IFPREFIX,
            )?;
            // The underlay's MTU: the link that holds the node's address.
            let net = Net::open()?;
            let mut mtu = 1500;
            for l in net.links()? {
                if net
                    .addrs(l.index)?
                    .iter()
                    .any(|a| a.addr() == self.underlay)
                {
                    mtu = l.mtu.unwrap_or(1500);
                }
            }
            Ok((made, mtu))
        })
        .and_then(|r| r)
        .map_err(|e| e.to_string())?;
        self.underlay_mtu = mtu;
        Ok(usize::from(made))
    }

    /// The node's infrastructure guard: VXLAN only from each segment's
    /// VTEPs; the routers reach neither the node nor the host networks
    /// (see `vpcip_sys::guard`).
    fn guard(&self, state: &GatewayState) -> Result<usize, String> {
        let want = gateway_guard(state);
        let role = GuardRole::Gateway {
            router_ifprefix: ROUTER_IFPREFIX,
        };
        in_netns(&self.node, || -> Result<usize, SysError> {
            let mut nft = NatTable::open()?;
            let made = nft.ensure_guard(role, &want)?;
            Ok(usize::from(made) + nft.apply_guard(role, &want)?)
        })
        .and_then(|r| r)
        .map_err(|e| e.to_string())
    }

    fn router(&mut self, router: &VpcRouter) -> Result<usize, String> {
        let mut n = 0;
        let ns_name = router_netns(&self.prefix, &router.vpc_id);
        let existed = named(&ns_name).exists();
        let ns = create_named(&ns_name).map_err(|e| e.to_string())?;
        n += usize::from(!existed);
        let (gw_side, router_side) = router_link(router.index);
        let vr = router_ifname(&router.vpc_id);
        let vx_mtu = self.underlay_mtu - VXLAN_OVERHEAD;

        // The link, and each subnet's VXLAN device, are made on the node
        // (their tunnel sockets live there) and moved into the router.
        let router_links = on(&ns, |net| net.links())?;
        let missing: Vec<&RouterSubnet> = router
            .subnets
            .iter()
            .filter(|s| {
                !router_links
                    .iter()
                    .any(|l| l.name == vxlan_ifname(s.l2.vni))
            })
            .collect();
        let has_uplink = router_links.iter().any(|l| l.name == UPLINK);
        let underlay = self.underlay;
        n += on(&self.node, |net| {
            let mut n = 0;
            let links = net.links()?;
            let find = |name: &str| links.iter().find(|l| l.name == name).map(|l| l.index);
            if !has_uplink {
                // A half-made pair from an earlier pass goes first.
                if let Some(i) = find(&vr) {
                    net.del_link(i)?;
                }
                let peer = format!("vp{}", &vr[2..]);
                if let Some(i) = find(&peer) {
                    net.del_link(i)?;
                }
                net.add_veth(&vr, &peer)?;
                let p = net
                    .link(&peer)?
                    .ok_or(SysError::Parse("the new veth peer is missing"))?;
                net.move_to(p.index, &ns, UPLINK)?;
                n += 1;
            }
            let v = net
                .link(&vr)?
                .ok_or(SysError::Parse("the router link is missing"))?;
            let want = Ipv4Net::new(gw_side, 31).map_err(|_| SysError::Parse("router link"))?;
            n += converge_addr(net, v.index, want)?;
            if !v.up {
                net.set_up(v.index)?;
                n += 1;
            }
            for s in &missing {
                let name = vxlan_ifname(s.l2.vni);
                if let Some(i) = find(&name) {
                    net.del_link(i)?; // left behind by an interrupted pass
                }
                net.add_vxlan(&name, s.l2.vni, underlay, vx_mtu)?;
                let l = net
                    .link(&name)?
                    .ok_or(SysError::Parse("the new vxlan device is missing"))?;
                net.move_to(l.index, &ns, &name)?;
                n += 1;
            }
            Ok(n)
        })?;

        // Inside the router.
        let desired_vx: BTreeSet<String> = router
            .subnets
            .iter()
            .map(|s| vxlan_ifname(s.l2.vni))
            .collect();
        n += on(&ns, |net| {
            let mut n = 0;
            ipv4_sysctl("ip_forward", "1")?;
            for l in net.links()? {
                if l.name == "lo" && !l.up {
                    net.set_up(l.index)?;
                }
                if l.name == UPLINK {
                    let want = Ipv4Net::new(router_side, 31)
                        .map_err(|_| SysError::Parse("router link"))?;
                    n += converge_addr(net, l.index, want)?;
                    if !l.up {
                        net.set_up(l.index)?;
                        n += 1;
                    }
                }
                if l.kind.as_deref() == Some("vxlan") && !desired_vx.contains(&l.name) {
                    net.del_link(l.index)?;
                    n += 1;
                }
            }
            for s in &router.subnets {
                let Some(l) = net.link(&vxlan_ifname(s.l2.vni))? else {
                    continue;
                };
                let addrs: Vec<Ipv4Net> = s
                    .gateway
                    .and_then(|g| Ipv4Net::new(g, s.cidr.prefix_len()).ok())
                    .into_iter()
                    .collect();
                n += converge_vxlan(net, l.index, &addrs, &s.l2.vteps)?;
                // The router has no IPv6 of its own in the segment.
                n += usize::from(ipv6_off(&l.name)?);
                // Gratuitous ARP (a VIP changing hands) creates and updates
                // the router's entries at once.
                ipv4_sysctl(&format!("conf/{}/arp_accept", l.name), "1")?;
                ipv4_sysctl(&format!("neigh/{}/locktime", l.name), "0")?;
                if !l.up {
                    net.set_up(l.index)?;
                    n += 1;
                }
            }
            let uplink = net
                .link(UPLINK)?
                .ok_or(SysError::Parse("the router's uplink is missing"))?;
            let default = Route {
                table: MAIN_TABLE,
                dst: Ipv4Net::default(),
                gateway: Some(gw_side),
                oif: Some(uplink.index),
                kind: RouteKind::Unicast,
                protocol: RTPROT_VPCIP,
            };
            n += converge_routes(net, &[default])?;
            Ok(n)
        })?;

        n += self.nat(&ns_name, &ns, router)?;
        n += self.shape(&ns, router)?;
        Ok(n)
    }

    /// The VPC's bandwidth limits: one HTB class per limited EIP on both
    /// ends of the router's link — the node's end shapes what goes into
    /// the router (to the EIP), the router's end what comes out (from it).
    fn shape(&mut self, ns: &Path, router: &VpcRouter) -> Result<usize, String> {
        let want: BTreeMap<u16, u64> = router
            .nat
            .iter()
            .filter_map(|e| e.shaping)
            .map(|s| (s.class, rate_bytes(s.mbps)))
            .collect();
        let vr = router_ifname(&router.vpc_id);
        let mut n = on(&self.node, |net| converge_htb(net, &vr, &want))?;
        n += on(ns, |net| converge_htb(net, UPLINK, &want))?;
        Ok(n)
    }

    /// The router's NAT maps; connections of EIPs whose mapping changed are
    /// forgotten, so the change holds for them too.
    fn nat(&mut self, ns_name: &str, ns: &Path, router: &VpcRouter) -> Result<usize, String> {
        let desired: NatMap = router.nat.iter().map(|e| (e.eip, e.private_ip)).collect();
        let classes = class_map(router.nat.iter());
        let algs = alg_sets(router);
        let seen = self.nat_seen.remove(ns_name);
        let (n, now) = in_netns(ns, || -> Result<_, SysError> {
            let mut table = NatTable::open()?;
            let generation = table.generation()?;
            let netns = netns_inode()?;
            let (dnat, snat, have_classes, have_algs) = match seen {
                Some(s) if s.generation == generation && s.netns == netns => s.state,
                _ => {
                    table.ensure()?;
                    table.ensure_qos(EipIs::Source)?;
                    table.ensure_alg()?;
                    let (dnat, snat) = table.read()?;
                    (dnat, snat, table.read_classes()?, table.read_algs()?)
                }
            };
            let mut plan = plan_nat(&desired, &dnat, &snat);
            if !plan.is_empty() {
                // Something to change: make sure the read was not a
                // partial dump (see NatTable::read).
                let (dnat, snat) = table.read_settled()?;
                plan = plan_nat(&desired, &dnat, &snat);
            }
            let n = plan.dnat.add.len()
                + plan.dnat.remove.len()
                + plan.snat.add.len()
                + plan.snat.remove.len();
            table.apply(&plan)?;
            let n = n
                + table.apply_classes(&have_classes, &classes)?
                + table.apply_algs(&have_algs, &algs)?;
            let mut changed: BTreeSet<_> = plan.dnat.remove.iter().map(|(eip, _)| *eip).collect();
            // An EIP whose helpers changed starts its tracking afresh, so
            // the helpers apply to its flows in progress too (a SIP phone
            // keeps its UDP flow); TCP connections carry on.
            let helpers_of = |sets: &AlgSets, ip: Ipv4Addr| -> Vec<String> {
                sets.iter()
                    .filter(|(_, s)| s.contains(&ip))
                    .map(|(a, _)| a.clone())
                    .collect()
            };
            changed.extend(
                router
                    .nat
                    .iter()
                    .map(|e| e.eip)
                    .chain(have_algs.values().flatten().copied())
                    .filter(|ip| helpers_of(&have_algs, *ip) != helpers_of(&algs, *ip)),
            );
            if !changed.is_empty() {
                let f = vpcip_sys::conntrack::forget(&changed)?;
                tracing::info!(vpc = %router.vpc_id, seen = f.seen, deleted = f.deleted, "forgot the connections of changed EIPs");
            }
            let seen = Seen {
                generation: table.generation()?,
                netns,
                state: (desired.clone(), snat_of(&desired), classes.clone(), algs.clone()),
            };
            Ok((n, seen))
        })
        .and_then(|r| r)
        .map_err(|e| e.to_string())?;
        self.nat_seen.insert(ns_name.to_string(), now);
        Ok(n)
    }

    /// The node's nftables: each bound EIP marked with its router's number
    /// (the steering map) and counted in both directions.
    fn node_nft(&mut self, state: &GatewayState) -> Result<usize, String> {
        let steer: BTreeMap<Ipv4Addr, u32> = state
            .routers
            .iter()
            .flat_map(|r| r.nat.iter().map(move |e| (e.eip, r.index)))
            .collect();
        let want = NodeNft {
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
        };
        let seen = self.node_seen.take();
        let (n, now) = in_netns(&self.node, || -> Result<_, SysError> {
            let mut nft = NatTable::open()?;
            let generation = nft.generation()?;
            let netns = netns_inode()?;
            let have = match seen {
                Some(s) if s.generation == generation && s.netns == netns => s.state,
                _ => {
                    nft.ensure_qos(EipIs::Destination)?;
                    NodeNft {
                        steer: nft.read_steering()?,
                        counted: nft.read_counters()?.into_keys().collect(),
                        classes: nft.read_classes()?,
                        default_snat: nft.read_default_snat()?,
                    }
                }
            };
            let mut n = nft.apply_steering(&have.steer, &want.steer)?;
            let add: Vec<Ipv4Addr> = want.counted.difference(&have.counted).copied().collect();
            let remove: Vec<Ipv4Addr> = have.counted.difference(&want.counted).copied().collect();
            nft.apply_counted(&add, &remove)?;
            n += add.len() + remove.len();
            n += nft.apply_classes(&have.classes, &want.classes)?;
            n += nft.apply_default_snat(&have.default_snat, &want.default_snat)?;
            let seen = Seen {
                generation: nft.generation()?,
                netns,
                state: want,
            };
            Ok((n, seen))
        })
        .and_then(|r| r)
        .map_err(|e| e.to_string())?;
        self.node_seen = Some(now);
        Ok(n)
    }

    /// The node's routing: one rule and one table per router (the steering
    /// map, [`Self::node_nft`], marks each EIP's packets with its router's
    /// number); the EIP segments unreachable otherwise.
    fn routes(&self, state: &GatewayState) -> Result<usize, String> {
        on(&self.node, |net| {
            let links = net.links()?;
            let mut rules = Vec::new();
            let mut want = Vec::new();
            for r in &state.routers {
                let Some(vr) = links.iter().find(|l| l.name == router_ifname(&r.vpc_id)) else {
                    continue;
                };
                let (_, router_side) = router_link(r.index);
                rules.push(FwRule {
                    mark: r.index,
                    table: ROUTER_TABLES + r.index,
                    priority: RULE_PRIORITY,
                });
                want.push(Route {
                    table: ROUTER_TABLES + r.index,
                    dst: Ipv4Net::default(),
                    gateway: Some(router_side),
                    oif: Some(vr.index),
                    kind: RouteKind::Unicast,
                    protocol: RTPROT_VPCIP,
                });
            }
            for seg in &state.eip_segments {
                want.push(Route {
                    table: MAIN_TABLE,
                    dst: *seg,
                    gateway: None,
                    oif: None,
                    kind: RouteKind::Unreachable,
                    protocol: RTPROT_VPCIP,
                });
            }
            let mut n = converge_routes(net, &want)?;
            let have = net.fw_rules()?;
            for r in &have {
                if !rules.contains(r) {
                    net.del_fw_rule(r)?;
                    n += 1;
                }
            }
            for r in &rules {
                if !have.contains(r) {
                    net.add_fw_rule(r)?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    /// Routers of VPCs that are gone: their namespaces (and with them their
    /// links) are removed.
    fn remove_stale(&mut self, state: &GatewayState) -> Result<usize, String> {
        let want: BTreeSet<String> = state
            .routers
            .iter()
            .map(|r| router_netns(&self.prefix, &r.vpc_id))
            .collect();
        self.nat_seen.retain(|ns, _| want.contains(ns));
        let mut n = 0;
        for ns in list_named(&router_netns(&self.prefix, "")) {
            if !want.contains(&ns) {
                delete_named(&ns).map_err(|e| e.to_string())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Which MAC each router resolves its VPC's VIPs to: (router namespace,
/// VPC, VIPs) in, holders out.
pub fn read_vip_holders(routers: &[crate::RouterView]) -> Vec<vpcip_model::desired::VipHolder> {
    let mut out = Vec::new();
    for r in routers {
        if r.vips.is_empty() || !r.netns.exists() {
            continue;
        }
        if let Ok(neigh) = on(&r.netns, |net| net.neighbours()) {
            for (ip, mac) in neigh {
                if r.vips.contains(&ip) {
                    out.push(vpcip_model::desired::VipHolder {
                        vpc_id: r.vpc_id.clone(),
                        ip,
                        mac,
                    });
                }
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.vpc_id == b.vpc_id && a.ip == b.ip);
    out
}

/// The node's per-EIP counters, with the packets each EIP's bandwidth
/// limit dropped (its HTB class's drops on the router link's two ends).
pub fn read_counters(
    node: &Path,
    routers: &[crate::RouterView],
) -> Result<Vec<vpcip_model::desired::EipTraffic>, String> {
    let counts = in_netns(node, || -> Result<_, SysError> {
        NatTable::open()?.read_counters()
    })
    .and_then(|r| r)
    .map_err(|e| e.to_string())?;
    let mut drops: BTreeMap<Ipv4Addr, (u64, u64)> = BTreeMap::new();
    for r in routers
        .iter()
        .filter(|r| !r.classes.is_empty() && r.netns.exists())
    {
        let vr = router_ifname(&r.vpc_id);
        let class_drops = |ns: &Path, ifname: &str| {
            on(ns, |net| match net.link(ifname)? {
                Some(l) => net.htb_classes(l.index),
                None => Ok(BTreeMap::new()),
            })
            .unwrap_or_default()
        };
        let inbound = class_drops(node, &vr);
        let outbound = class_drops(&r.netns, UPLINK);
        for (class, eip) in &r.classes {
            let d = drops.entry(*eip).or_default();
            d.0 = inbound.get(class).map_or(0, |c| c.drops);
            d.1 = outbound.get(class).map_or(0, |c| c.drops);
        }
    }
    Ok(counts
        .into_iter()
        .map(|(eip, c)| {
            let (drops_in, drops_out) = drops.get(&eip).copied().unwrap_or_default();
            vpcip_model::desired::EipTraffic {
                eip,
                packets_in: c.packets_in,
                bytes_in: c.bytes_in,
                packets_out: c.packets_out,
                bytes_out: c.bytes_out,
                drops_in,
                drops_out,
            }
        })
        .collect())
}

/// Makes `want` the only IPv4 address of a link.
pub(crate) fn converge_addr(net: &Net, index: u32, want: Ipv4Net) -> Result<usize, SysError> {
    let mut n = 0;
    let have = net.addrs(index)?;
    if !have.contains(&want) {
        net.add_addr(index, want)?;
        n += 1;
    }
    for a in have.into_iter().filter(|a| *a != want) {
        net.del_addr(index, a)?;
        n += 1;
    }
    Ok(n)
}

/// Makes vpcip's routes (protocol [`RTPROT_VPCIP`]) of the main table
/// exactly `want`; other routes are not touched.
pub(crate) fn converge_routes(net: &Net, want: &[Route]) -> Result<usize, SysError> {
    let have: Vec<Route> = net
        .routes()?
        .into_iter()
        .filter(|r| r.protocol == RTPROT_VPCIP)
        .collect();
    let mut n = 0;
    for r in &have {
        if !want.contains(r) {
            net.del_route(r)?;
            n += 1;
        }
    }
    for r in want {
        if !have.contains(r) {
            net.add_route(r)?;
            n += 1;
        }
    }
    Ok(n)
}
