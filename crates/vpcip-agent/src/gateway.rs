//! The gateway agent's reconciler: observe the node and its routers'
//! namespaces, plan (`vpcip_dataplane::gateway`, which says what a gateway
//! holds), apply. Each pass is level-triggered: whatever drifted is
//! repaired, an idle pass changes nothing, and what vpcip did not make
//! (other namespaces, links, routes of other protocols, tables) is left
//! alone. A router that fails does not hold back the others: its error is
//! reported with theirs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use vpcip_dataplane::gateway::{GatewayChange, Roles, plan_gateway_with};
use vpcip_model::desired::{GatewayState, router_ifname};
use vpcip_sys::SysError;
use vpcip_sys::link::Net;
use vpcip_sys::netns::in_netns;
use vpcip_sys::nft::{NatTable, UPLINK};

use crate::kernel::GatewayKernel;
use crate::kernel::gateway::SysGateway;

pub use crate::kernel::gateway::router_netns;
pub use vpcip_dataplane::gateway::{ROUTER_TABLES, RULE_PRIORITY};
pub use vpcip_dataplane::links::vxlan_ifname;

#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Kernel objects (links, addresses, routes, FDB and map entries)
    /// changed.
    pub changed: usize,
    /// Something desired could not be made yet (a port whose link does not
    /// exist): reconcile again soon.
    pub pending: bool,
    /// Host agents: the NICs whose port is not there yet.
    pub missing_ports: Vec<String>,
}

pub struct GatewayReconciler<K: GatewayKernel = SysGateway> {
    kernel: K,
    underlay: Ipv4Addr,
}

impl GatewayReconciler<SysGateway> {
    /// `node`: the gateway node's namespace (`/proc/self/ns/net` for the
    /// agent's own); `underlay`: the node's tunnel endpoint address;
    /// `prefix`: what the routers' namespaces are named after.
    pub fn new(prefix: &str, node: &Path, underlay: Ipv4Addr) -> Self {
        GatewayReconciler::with_kernel(SysGateway::new(prefix, node), underlay)
    }

    /// Keeps what each pass saw in `dir`, so that a restarted agent whose
    /// namespaces' nftables did not change meanwhile skips reading large
    /// maps again.
    pub fn remember_in(self, dir: &Path) -> Self {
        GatewayReconciler {
            kernel: self.kernel.remember_in(dir),
            underlay: self.underlay,
        }
    }
}

impl<K: GatewayKernel> GatewayReconciler<K> {
    pub fn with_kernel(kernel: K, underlay: Ipv4Addr) -> Self {
        GatewayReconciler { kernel, underlay }
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// Brings the gateway to the desired state. Every group of the plan
    /// (the node, its guard, each router, …) is tried; the errors are
    /// reported together.
    pub fn reconcile(&mut self, state: &GatewayState) -> Result<Summary, String> {
        self.reconcile_with(state, None)
    }

    /// [`GatewayReconciler::reconcile`] knowing who carries what in the
    /// cluster (None: the elections have not settled; what depends on them
    /// stays as it is).
    pub fn reconcile_with(
        &mut self,
        state: &GatewayState,
        roles: Option<&Roles>,
    ) -> Result<Summary, String> {
        let observed = self
            .kernel
            .observe(self.underlay)
            .map_err(|e| format!("observe: {e}"))?;
        let plan = plan_gateway_with(state, &observed, self.underlay, roles);
        for (label, changes) in &plan.groups {
            for c in changes {
                tracing::debug!(group = %label, change = ?c, "gateway change");
            }
        }
        let mut summary = Summary::default();
        let mut errors = Vec::new();
        // The node's ends of routers that failed: what needs them waits.
        let mut failed: BTreeSet<String> = BTreeSet::new();
        for (label, changes) in &plan.groups {
            let changes: Vec<GatewayChange> = changes
                .iter()
                .filter(|c| c.needs_link().is_none_or(|l| !failed.contains(l)))
                .cloned()
                .collect();
            match self.kernel.apply(&changes) {
                Ok(()) => summary.changed += changes.len(),
                Err(e) => {
                    errors.push(format!("{label}: {e}"));
                    if let Some(vpc) = label.strip_prefix("VPC ") {
                        failed.insert(router_ifname(vpc));
                    }
                }
            }
        }
        self.kernel.pass_done();
        if errors.is_empty() {
            Ok(summary)
        } else {
            Err(errors.join("; "))
        }
    }
}

#[cfg(test)]
mod tests;

/// Runs `f` with an rtnetlink connection in the namespace at `ns`.
fn on<T: Send>(ns: &Path, f: impl FnOnce(&Net) -> Result<T, SysError> + Send) -> Result<T, String> {
    in_netns(ns, || f(&Net::open()?))
        .and_then(|r| r)
        .map_err(|e| e.to_string())
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

/// What the counter reader keeps between readings: the EIPs the node
/// steers (those programmed here) with the node's nftables generation when
/// they were read (read again only when it moved), and each EIP's counts
/// and limiter drops as last read.
#[derive(Debug, Default)]
pub struct CounterReading {
    generation: Option<u32>,
    pub steered: Vec<Ipv4Addr>,
    last: BTreeMap<Ipv4Addr, vpcip_sys::counters::Count>,
    drops: BTreeMap<Ipv4Addr, (u64, u64)>,
}

/// The node's per-EIP counters (of the EIPs that have seen a packet), with
/// the packets each EIP's bandwidth limit dropped (its HTB class's drops on
/// the router link's two ends); `reading` brought up to date.
///
/// A limiter drops only what passes the node, so a router's classes are
/// read again only when the counters of one of its limited EIPs moved (a
/// gateway with 10,000 idle limited EIPs reads no class).
pub fn read_counters(
    node: &Path,
    routers: &[crate::RouterView],
    reading: &mut CounterReading,
) -> Result<Vec<vpcip_model::desired::EipTraffic>, String> {
    let counts = in_netns(node, || -> Result<_, SysError> {
        let mut t = NatTable::open()?;
        let generation = t.generation()?;
        if reading.generation != Some(generation) {
            reading.steered = t.read_steering()?.into_keys().collect();
            reading.generation = Some(generation);
        }
        t.read_counters()
    })
    .and_then(|r| r)
    .map_err(|e| e.to_string())?;
    let mut drops: BTreeMap<Ipv4Addr, (u64, u64)> = BTreeMap::new();
    for r in routers
        .iter()
        .filter(|r| !r.classes.is_empty() && r.netns.exists())
    {
        let moved = r
            .classes
            .iter()
            .any(|(_, eip)| counts.get(eip) != reading.last.get(eip));
        if !moved {
            for (_, eip) in &r.classes {
                if let Some(d) = reading.drops.get(eip) {
                    drops.insert(*eip, *d);
                }
            }
            continue;
        }
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
    let traffic = counts
        .iter()
        .map(|(&eip, c)| {
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
        .collect();
    // Kept for the next reading, as they are (no copy).
    reading.last = counts;
    reading.drops = drops;
    Ok(traffic)
}
