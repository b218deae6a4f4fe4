//! What the gateway's maps must hold: the routers' NAT, class and helper
//! maps, the node's steering, counters, classes and default SNAT.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use vpcip_model::desired::{GatewayState, NatEntry, VpcRouter, router_link};

use super::{AlgSets, ClassMap, NodeMaps, RouterMaps};
use crate::nat::{NatMap, plan_nat};

/// The `skb->priority` that selects an EIP's HTB class `1:<minor>`.
pub fn class_id(minor: u16) -> u32 {
    (1 << 16) | u32::from(minor)
}

/// Bytes per second of a limit in Mbit/s.
pub fn rate_bytes(mbps: u32) -> u64 {
    u64::from(mbps) * 125_000
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
        // From what the maps have (see `nat_capacity`): set by the plan.
        capacity: 0,
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
        // Made by the packets, not by the plan (see `plan_gateway`).
        counted: BTreeSet::new(),
        steer,
        classes: class_map(state.routers.iter().flat_map(|r| r.nat.iter())),
        // Each router leaves from its slot's address (the same whichever
        // gateway carries it), or this gateway's own outside a cluster.
        default_snat: state
            .routers
            .iter()
            .filter_map(|r| {
                let to = match state.cluster.slot(r.slot) {
                    Some(s) => s.snat_ip,
                    None => state.snat_ip,
                };
                Some((router_link(r.index).1, to?))
            })
            .collect(),
    }
}
