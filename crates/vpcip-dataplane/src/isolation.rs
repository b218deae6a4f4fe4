//! Isolation: what the guards of hosts and gateway nodes must hold, from
//! the desired state, and the changes that get them there.
//!
//! - On every host and gateway node, which VTEP may send which VNI: VXLAN
//!   from anyone else, or for another segment, is dropped on arrival.
//! - On a host, every VM port's MAC (a port sends only from it, in frames
//!   and in ARP), the tenant links (VM ports and VXLAN devices: the host
//!   neither sends into them nor takes anything from them), and the
//!   anti-spoofing of addresses for ports whose source/destination check is
//!   on.
//! - On a gateway node, the infrastructure its routers must not reach (the
//!   host networks and the router links), as merged intervals, and the
//!   operator's exceptions.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use vpcip_model::desired::{GatewayState, HostState, InfraService, router_links_block};

/// Which VTEP may send which VNI.
pub type VtepVnis = BTreeSet<(Ipv4Addr, u32)>;

/// The (VTEP, VNI) pairs a host accepts: each of its L2 domains' VTEPs.
pub fn host_vteps(state: &HostState) -> VtepVnis {
    state
        .domains
        .iter()
        .flat_map(|d| d.vteps.iter().map(move |v| (*v, d.vni)))
        .collect()
}

/// The (VTEP, VNI) pairs a gateway node accepts: its routers' subnets'.
pub fn gateway_vteps(state: &GatewayState) -> VtepVnis {
    state
        .routers
        .iter()
        .flat_map(|r| r.subnets.iter())
        .flat_map(|s| s.l2.vteps.iter().map(move |v| (*v, s.l2.vni)))
        .collect()
}

/// What a gateway's routers must not reach: the host networks and the
/// router links (the node's and the other VPCs' routers' addresses).
pub fn infrastructure(state: &GatewayState) -> Vec<Ipv4Net> {
    let mut out = state.infrastructure.clone();
    out.push(router_links_block());
    out
}

/// A half-open interval of IPv4 addresses: `start` up to, not including,
/// `end` (None: to the top of the address space).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub start: Ipv4Addr,
    pub end: Option<Ipv4Addr>,
}

/// Networks merged into sorted, disjoint, non-adjacent intervals (what an
/// interval set accepts: overlapping elements are refused).
pub fn merge(nets: &[Ipv4Net]) -> Vec<Interval> {
    let mut ranges: Vec<(u64, u64)> = nets
        .iter()
        .map(|n| {
            let start = u64::from(u32::from(n.network()));
            (start, u64::from(u32::from(n.broadcast())) + 1)
        })
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
        .into_iter()
        .map(|(s, e)| Interval {
            start: Ipv4Addr::from(u32::try_from(s).unwrap_or(u32::MAX)),
            end: u32::try_from(e).ok().map(Ipv4Addr::from),
        })
        .collect()
}

/// The elements of an nftables interval set holding `intervals`, as nft
/// writes them: (address, ends an interval). An interval-end at 0.0.0.0
/// comes first unless the first interval starts there.
pub fn interval_elements(intervals: &[Interval]) -> Vec<(Ipv4Addr, bool)> {
    let mut out = Vec::new();
    if intervals
        .first()
        .is_some_and(|i| i.start != Ipv4Addr::UNSPECIFIED)
    {
        out.push((Ipv4Addr::UNSPECIFIED, true));
    }
    for i in intervals {
        out.push((i.start, false));
        if let Some(e) = i.end {
            out.push((e, true));
        }
    }
    out
}

/// The intervals an nftables interval set holds, from its elements as
/// [`interval_elements`] writes them (the inverse of that).
pub fn intervals_of(elements: &[(Ipv4Addr, bool)]) -> Vec<Interval> {
    let mut sorted = elements.to_vec();
    sorted.sort();
    let mut out: Vec<Interval> = Vec::new();
    let mut open: Option<Ipv4Addr> = None;
    for (addr, end) in sorted {
        match (end, open.take()) {
            (false, None) => open = Some(addr),
            (false, Some(start)) => {
                // A start with no end before the next start: the kernel
                // holds it as an interval to the top.
                out.push(Interval { start, end: None });
                open = Some(addr);
            }
            (true, Some(start)) => out.push(Interval {
                start,
                end: Some(addr),
            }),
            // The leading end at 0.0.0.0 closes nothing.
            (true, None) => {}
        }
    }
    if let Some(start) = open {
        out.push(Interval { start, end: None });
    }
    out
}

/// A MAC address written `fa:16:0a:00:01:04`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// What a host's port guards hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortGuards {
    /// The VM ports (those of [`Self::macs`]).
    pub ports: BTreeSet<String>,
    /// Every VM port and the one MAC it may send from.
    pub macs: BTreeSet<(String, [u8; 6])>,
    /// The tenant links (VM ports, VXLAN devices): nothing of the host's
    /// own goes out on them, nothing from them reaches the host.
    pub links: BTreeSet<String>,
    /// Ports whose source/destination check is on.
    pub guarded: BTreeSet<String>,
    /// What each guarded port may send from (its IP, its VIPs).
    pub allowed: BTreeSet<(String, Ipv4Addr)>,
    /// Ports whose DHCP requests the host agent answers (copied to it).
    pub answered: BTreeSet<String>,
}

/// A host's port guards; `vxlan_ifname` names a VNI's VXLAN device. A port
/// whose MAC does not parse is left out of `macs`, so its frames are not
/// pinned but it is still a tenant link (and the controller only hands out
/// MACs it made).
pub fn port_guards(state: &HostState, vxlan_ifname: impl Fn(u32) -> String) -> PortGuards {
    let checked = || state.ports.iter().filter(|p| p.source_dest_check);
    let macs: BTreeSet<(String, [u8; 6])> = state
        .ports
        .iter()
        .filter_map(|p| Some((p.ifname.clone(), parse_mac(&p.mac)?)))
        .collect();
    PortGuards {
        ports: macs.iter().map(|(p, _)| p.clone()).collect(),
        macs,
        links: state
            .ports
            .iter()
            .map(|p| p.ifname.clone())
            .chain(state.domains.iter().map(|d| vxlan_ifname(d.vni)))
            .collect(),
        guarded: checked().map(|p| p.ifname.clone()).collect(),
        allowed: checked()
            .flat_map(|p| p.ips.iter().map(|ip| (p.ifname.clone(), *ip)))
            .collect(),
        answered: state
            .ports
            .iter()
            .filter(|p| p.dhcp.is_some())
            .map(|p| p.ifname.clone())
            .collect(),
    }
}

/// What a node's infrastructure guard holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfraGuard {
    pub vteps: VtepVnis,
    /// Gateway nodes only: what the routers must not reach, and the
    /// exceptions.
    pub infra: Vec<Interval>,
    pub allow: BTreeSet<InfraService>,
}

/// A host's infrastructure guard (VTEPs only: its VMs reach nothing of it
/// at all; see [`PortGuards::links`]).
pub fn host_guard(state: &HostState) -> InfraGuard {
    InfraGuard {
        vteps: host_vteps(state),
        ..Default::default()
    }
}

/// A gateway node's infrastructure guard.
pub fn gateway_guard(state: &GatewayState) -> InfraGuard {
    InfraGuard {
        vteps: gateway_vteps(state),
        infra: merge(&infrastructure(state)),
        allow: state.infra_allow.iter().copied().collect(),
    }
}

/// Elements to add to and remove from one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPlan<K> {
    pub add: Vec<K>,
    pub remove: Vec<K>,
}

impl<K> SetPlan<K> {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    pub fn len(&self) -> usize {
        self.add.len() + self.remove.len()
    }
}

/// What turns `have` into `want`.
pub fn plan_set<K: Ord + Clone>(have: &BTreeSet<K>, want: &BTreeSet<K>) -> SetPlan<K> {
    SetPlan {
        add: want.difference(have).cloned().collect(),
        remove: have.difference(want).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn networks_merge_into_disjoint_intervals_as_nft_writes_them() {
        let m = merge(&[
            net("192.0.2.0/24"),
            net("169.254.0.0/16"),
            net("192.0.2.128/25"), // inside the first
            net("192.0.3.0/24"),   // adjacent: merged
        ]);
        assert_eq!(
            m,
            vec![
                Interval {
                    start: "169.254.0.0".parse().unwrap(),
                    end: Some("169.255.0.0".parse().unwrap())
                },
                Interval {
                    start: "192.0.2.0".parse().unwrap(),
                    end: Some("192.0.4.0".parse().unwrap())
                },
            ]
        );
        let e = interval_elements(&m);
        assert_eq!(e[0], (Ipv4Addr::UNSPECIFIED, true), "nft's leading end");
        assert_eq!(e.len(), 5);
        // The top of the address space has no end element.
        let top = merge(&[net("255.255.255.0/24")]);
        assert_eq!(top[0].end, None);
        assert_eq!(interval_elements(&top).len(), 2);
        // Starting at 0: no leading end.
        assert_eq!(interval_elements(&merge(&[net("0.0.0.0/8")])).len(), 2);
        assert!(interval_elements(&[]).is_empty());
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(
            parse_mac("fa:16:0a:00:01:04"),
            Some([0xfa, 0x16, 0x0a, 0, 1, 4])
        );
        for bad in [
            "fa:16:0a:00:01",
            "fa:16:0a:00:01:04:05",
            "fa:16:0a:00:1:04",
            "zz:16:0a:00:01:04",
            "",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    proptest! {
        /// An address is in the merged intervals exactly when it is in one
        /// of the networks; the intervals are sorted, disjoint and not
        /// adjacent.
        #[test]
        fn merging_keeps_membership(
            nets in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..12),
            probes in proptest::collection::vec(any::<u32>(), 0..50),
        ) {
            let nets: Vec<Ipv4Net> = nets
                .into_iter()
                .map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
                .collect();
            let m = merge(&nets);
            for w in m.windows(2) {
                let end = u64::from(u32::from(w[0].end.unwrap()));
                prop_assert!(end < u64::from(u32::from(w[1].start)));
            }
            let probes = probes.into_iter().chain(nets.iter().flat_map(|n| {
                [u32::from(n.network()), u32::from(n.broadcast()), u32::from(n.broadcast()).wrapping_add(1)]
            }));
            for p in probes {
                let ip = Ipv4Addr::from(p);
                let inside = nets.iter().any(|n| n.contains(&ip));
                let merged = m.iter().any(|i| {
                    ip >= i.start && i.end.is_none_or(|e| ip < e)
                });
                prop_assert_eq!(inside, merged, "{}", ip);
            }
        }

        /// What an interval set holds reads back as the intervals written.
        #[test]
        fn interval_elements_read_back(
            nets in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..12),
        ) {
            let nets: Vec<Ipv4Net> = nets
                .into_iter()
                .map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
                .collect();
            let m = merge(&nets);
            prop_assert_eq!(intervals_of(&interval_elements(&m)), m);
        }

        #[test]
        fn set_plans_reach_the_wanted_set(
            have in proptest::collection::btree_set(0u16..64, 0..40),
            want in proptest::collection::btree_set(0u16..64, 0..40),
        ) {
            let p = plan_set(&have, &want);
            let mut now = have.clone();
            for k in &p.remove { prop_assert!(now.remove(k)); }
            for k in &p.add { prop_assert!(now.insert(*k)); }
            prop_assert_eq!(now, want);
        }
    }
}
