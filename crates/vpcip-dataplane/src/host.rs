//! The host's plan: from its desired state and what its namespace holds,
//! the changes that make one the other.
//!
//! Per L2 domain with a port here: a bridge `br<vni>` with the domain's
//! VXLAN device `vx<vni>` as a port, flooding to the domain's other VTEPs;
//! each VM port (the link the hypervisor made for a NIC) joined to its
//! domain's bridge, its MTU at most the overlay's. Bridges and VXLAN
//! devices of domains no longer here go; links vpcip did not name are left
//! alone. Tenant links carry no IPv6 of the host's. The guards come first,
//! so a port is guarded before it is plugged: the port guards (each port
//! sends only from its NIC's MAC and, with its source/destination check on,
//! only from its addresses) and the infrastructure guard (VXLAN only from
//! each segment's VTEPs). The established-flow fast path comes last, over
//! the links as the plan leaves them (`fastpath.rs`).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use vpcip_model::desired::HostState;

use crate::fastpath::{FastPathSeen, FastPathWant, fastpath_for};
use crate::filter::{FilterSeen, FilterWant, PortPolicy, filter_for, narrowed};
use crate::isolation::parse_mac;
use crate::isolation::{InfraGuard, PortGuards, host_guard, port_guards};
use crate::links::{
    LinkChange, LinkState, LinkWant, Links, VXLAN_OVERHEAD, bridge_ifname, converge_link, vni_of,
    vxlan_ifname,
};

/// What a host's namespace holds, as far as vpcip is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostObserved {
    pub links: Links,
    /// The MTU of the link that holds the host's underlay address.
    pub underlay_mtu: u32,
    /// The port guards' table; None when it is missing or of an older
    /// shape.
    pub port_guards: Option<PortGuards>,
    /// The infrastructure guard's table; None likewise.
    pub infra_guard: Option<InfraGuard>,
    /// The security-group filter's tables; None when missing or of an
    /// older shape.
    pub filter: Option<FilterSeen>,
    /// The established-flow fast path.
    pub fastpath: FastPathSeen,
}

/// One change to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostChange {
    /// Make the port guards' table anew, holding this from the start.
    MakePortGuards(PortGuards),
    /// Change the port guards' sets' elements from `have` to `want`.
    PortGuards {
        have: PortGuards,
        want: PortGuards,
    },
    MakeInfraGuard(InfraGuard),
    InfraGuard {
        have: InfraGuard,
        want: InfraGuard,
    },
    /// Make the security-group filter anew, holding this from the start.
    MakeFilter(FilterWant),
    /// Change the filter from `have` to `want`.
    Filter {
        have: FilterSeen,
        want: FilterWant,
    },
    /// Forget the tracked connections these ports' rules no longer allow.
    CutFlows(Vec<PortPolicy>),
    /// Make the fast path hold this (loading it first when missing).
    FastPath(FastPathWant),
    Link(LinkChange),
}

impl HostChange {
    /// What the change does to `host`: the kernel's effect, for fake
    /// kernels and for checking that a plan converges.
    pub fn simulate(&self, host: &mut HostObserved) {
        match self {
            HostChange::MakePortGuards(want) | HostChange::PortGuards { want, .. } => {
                host.port_guards = Some(want.clone());
            }
            HostChange::MakeInfraGuard(want) | HostChange::InfraGuard { want, .. } => {
                host.infra_guard = Some(want.clone());
            }
            HostChange::MakeFilter(want) | HostChange::Filter { want, .. } => {
                host.filter = Some(want.seen());
            }
            HostChange::CutFlows(_) => {}
            HostChange::FastPath(want) => host.fastpath = FastPathSeen::Have(want.clone()),
            HostChange::Link(c) => c.simulate(&mut host.links),
        }
    }
}

/// The changes, in the order they are to be made, and the ports whose
/// link the hypervisor has not made yet (plan again soon).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostPlan {
    pub changes: Vec<HostChange>,
    pub waiting: Vec<String>,
}

/// The host's plan; `underlay` is its VXLAN endpoint address.
pub fn plan_host(want: &HostState, have: &HostObserved, underlay: Ipv4Addr) -> HostPlan {
    let mut plan = HostPlan::default();
    let changes = &mut plan.changes;
    let guards = port_guards(want, vxlan_ifname);
    let fast_guards = guards.clone();
    match &have.port_guards {
        None => changes.push(HostChange::MakePortGuards(guards)),
        Some(h) if *h != guards => changes.push(HostChange::PortGuards {
            have: h.clone(),
            want: guards,
        }),
        Some(_) => {}
    }
    let infra = host_guard(want);
    match &have.infra_guard {
        None => changes.push(HostChange::MakeInfraGuard(infra)),
        Some(h) if *h != infra => changes.push(HostChange::InfraGuard {
            have: h.clone(),
            want: infra,
        }),
        Some(_) => {}
    }
    let filter = filter_for(want, have.filter.as_ref());
    match &have.filter {
        None => changes.push(HostChange::MakeFilter(filter)),
        Some(h) if *h != filter.seen() => {
            let cut = narrowed(want, h, &filter);
            changes.push(HostChange::Filter {
                have: h.clone(),
                want: filter,
            });
            if !cut.is_empty() {
                changes.push(HostChange::CutFlows(cut));
            }
        }
        Some(_) => {}
    }
    let vx_mtu = have.underlay_mtu.saturating_sub(VXLAN_OVERHEAD);
    let link = |name: &str| have.links.get(name);
    let no_addrs = BTreeSet::new();
    for d in &want.domains {
        let (br, vx) = (bridge_ifname(d.vni), vxlan_ifname(d.vni));
        if link(&br).is_none() {
            changes.push(HostChange::Link(LinkChange::AddBridge { name: br.clone() }));
        }
        if link(&vx).is_none() {
            changes.push(HostChange::Link(LinkChange::AddVxlan {
                name: vx.clone(),
                vni: d.vni,
                local: underlay,
                mtu: vx_mtu,
            }));
        }
        let flood: BTreeSet<Ipv4Addr> = d.vteps.iter().copied().collect();
        let vx_want = LinkWant {
            master: Some(&br),
            addrs: Some(&no_addrs),
            flood: Some(&flood),
            max_mtu: None,
            mac: None,
            pin: None,
        };
        changes.extend(
            converge_link(&br, link(&br), LinkWant::default())
                .into_iter()
                .chain(converge_link(&vx, link(&vx), vx_want))
                .map(HostChange::Link),
        );
    }
    let domains: BTreeSet<u32> = want.domains.iter().map(|d| d.vni).collect();
    for p in &want.ports {
        let Some(l) = link(&p.ifname) else {
            plan.waiting.push(p.ifname.clone());
            continue;
        };
        if !domains.contains(&p.vni) {
            continue;
        }
        let br = bridge_ifname(p.vni);
        // The port's MAC pinned, no unknown unicast: a unicast frame leaves
        // the port only when addressed to its MAC, which the filter's
        // ingress map is keyed by. A MAC that does not parse pins the
        // all-zero one: the port then takes no unicast at all.
        let port = LinkWant {
            master: Some(&br),
            max_mtu: Some(vx_mtu),
            pin: Some(parse_mac(&p.mac).unwrap_or([0; 6])),
            ..Default::default()
        };
        changes.extend(
            converge_link(&p.ifname, Some(l), port)
                .into_iter()
                .map(HostChange::Link),
        );
    }
    // Domains no longer here.
    for (name, l) in &have.links {
        if stale_domain_link(name, l, &domains) {
            changes.push(HostChange::Link(LinkChange::DelLink { name: name.clone() }));
        }
    }
    // The fast path last, over the links as this plan leaves them.
    if have.fastpath != FastPathSeen::Unavailable {
        let mut after = have.links.clone();
        for c in changes.iter() {
            if let HostChange::Link(l) = c {
                l.simulate(&mut after);
            }
        }
        let fast = fastpath_for(want, &after, &fast_guards);
        if have.fastpath != FastPathSeen::Have(fast.clone()) {
            changes.push(HostChange::FastPath(fast));
        }
    }
    plan
}

/// A bridge or VXLAN device vpcip named for a domain not in `domains`.
fn stale_domain_link(name: &str, l: &LinkState, domains: &BTreeSet<u32>) -> bool {
    let vni = match l.kind.as_deref() {
        Some("bridge") => vni_of(name, "br"),
        Some("vxlan") => vni_of(name, "vx"),
        _ => None,
    };
    vni.is_some_and(|v| !domains.contains(&v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vpcip_model::desired::{HostPort, L2Domain};

    const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);

    fn port(nic: u32, vni: u32, check: bool) -> HostPort {
        HostPort {
            nic_id: format!("nic-{nic}"),
            ifname: format!("t{nic}"),
            vni,
            mac: format!("fa:16:3e:00:00:{nic:02x}"),
            ips: vec![Ipv4Addr::new(10, 0, 0, u8::try_from(nic).unwrap_or(1))],
            source_dest_check: check,
            security_groups: vec![],
            vrrp_peers: vec![],
            zone: 0,
            dhcp: None,
        }
    }

    fn domain(vni: u32, vteps: &[u8]) -> L2Domain {
        L2Domain {
            subnet_id: format!("subnet-{vni}"),
            vni,
            vteps: vteps.iter().map(|t| Ipv4Addr::new(192, 0, 2, *t)).collect(),
        }
    }

    /// A hypervisor's VM link, down, IPv6 on, MTU 1500.
    fn vm_link() -> LinkState {
        LinkState {
            kind: Some("tun".into()),
            mtu: Some(1500),
            ipv6: true,
            ..Default::default()
        }
    }

    fn converge(want: &HostState, have: &mut HostObserved) -> HostPlan {
        let plan = plan_host(want, have, ME);
        for c in &plan.changes {
            c.simulate(have);
        }
        plan
    }

    fn fresh_host(ports: &[&HostPort]) -> HostObserved {
        let mut h = HostObserved {
            underlay_mtu: 1500,
            ..Default::default()
        };
        for p in ports {
            h.links.insert(p.ifname.clone(), vm_link());
        }
        // Someone else's: never touched.
        h.links.insert(
            "eth0".into(),
            LinkState {
                kind: None,
                up: true,
                ipv6: true,
                mtu: Some(1500),
                ..Default::default()
            },
        );
        h.links.insert(
            "br-lan".into(),
            LinkState {
                kind: Some("bridge".into()),
                ipv6: true,
                ..Default::default()
            },
        );
        h
    }

    #[test]
    fn a_first_pass_guards_then_plugs_and_the_second_does_nothing() {
        let (p1, p2) = (port(1, 10, true), port(2, 11, false));
        let want = HostState {
            domains: vec![domain(10, &[2, 12]), domain(11, &[2])],
            ports: vec![p1.clone(), p2.clone()],
            groups: vec![],
        };
        let mut host = fresh_host(&[&p1, &p2]);
        let before = host.clone();
        let plan = converge(&want, &mut host);
        assert!(matches!(plan.changes[0], HostChange::MakePortGuards(_)));
        assert!(matches!(plan.changes[1], HostChange::MakeInfraGuard(_)));
        let plugged = plan
            .changes
            .iter()
            .position(|c| matches!(c, HostChange::Link(LinkChange::SetMaster { name, .. }) if name == "t1"))
            .unwrap();
        let ipv6_off = plan
            .changes
            .iter()
            .position(
                |c| matches!(c, HostChange::Link(LinkChange::Ipv6Off { name }) if name == "t1"),
            )
            .unwrap();
        assert!(ipv6_off < plugged, "IPv6 off before the port joins");
        assert_eq!(host.links["t1"].master.as_deref(), Some("br10"));
        assert_eq!(host.links["t1"].mtu, Some(1450));
        assert_eq!(host.links["vx10"].mtu, Some(1450));
        assert_eq!(host.links["vx10"].flood.len(), 2);
        assert_eq!(host.links["vx10"].master.as_deref(), Some("br10"));
        assert_eq!(host.links["eth0"], before.links["eth0"], "not ours");
        assert_eq!(host.links["br-lan"], before.links["br-lan"], "not ours");
        let again = plan_host(&want, &host, ME);
        assert_eq!(again, HostPlan::default(), "an idle pass changes nothing");
    }

    #[test]
    fn drift_is_repaired_and_stale_domains_go() {
        let p1 = port(1, 10, true);
        let want = HostState {
            domains: vec![domain(10, &[2])],
            ports: vec![p1.clone()],
            groups: vec![],
        };
        let mut host = fresh_host(&[&p1]);
        converge(&want, &mut host);
        // Someone unplugs the port, adds a VTEP, brings the VXLAN device
        // down and takes a MAC out of the guards; a domain of before lingers.
        host.links.get_mut("t1").unwrap().master = None;
        let vx = host.links.get_mut("vx10").unwrap();
        vx.flood.insert(Ipv4Addr::new(198, 51, 100, 66));
        vx.up = false;
        host.port_guards.as_mut().unwrap().macs.clear();
        LinkChange::AddVxlan {
            name: "vx99".into(),
            vni: 99,
            local: ME,
            mtu: 1450,
        }
        .simulate(&mut host.links);
        let plan = converge(&want, &mut host);
        assert!(
            plan.changes
                .iter()
                .any(|c| matches!(c, HostChange::PortGuards { .. }))
        );
        assert!(
            plan.changes
                .contains(&HostChange::Link(LinkChange::DelLink {
                    name: "vx99".into()
                }))
        );
        assert_eq!(plan_host(&want, &host, ME), HostPlan::default());
        assert_eq!(host.links["t1"].master.as_deref(), Some("br10"));
    }

    #[test]
    fn a_port_not_made_yet_waits() {
        let p1 = port(1, 10, true);
        let want = HostState {
            domains: vec![domain(10, &[])],
            ports: vec![p1],
            groups: vec![],
        };
        let mut host = fresh_host(&[]);
        let plan = converge(&want, &mut host);
        assert_eq!(plan.waiting, vec!["t1".to_string()]);
        // Its guards are in place before it exists.
        assert!(host.port_guards.unwrap().guarded.contains("t1"));
    }

    proptest! {
        /// Whatever the host holds, one pass converges it, leaves links
        /// vpcip did not name alone, and the next pass plans nothing.
        #[test]
        fn one_pass_converges(
            domains in proptest::collection::btree_map(1u32..6, proptest::collection::vec(1u8..6, 0..3), 0..4),
            ports in proptest::collection::vec((1u32..8, 1u32..6, any::<bool>()), 0..6),
            made in proptest::collection::vec(any::<bool>(), 8),
            stale in proptest::collection::vec(1u32..9, 0..4),
            drift in proptest::collection::vec((0usize..8, 0u8..5), 0..8),
        ) {
            let mut seen = BTreeSet::new();
            let ports: Vec<HostPort> = ports
                .into_iter()
                .filter(|(n, _, _)| seen.insert(*n))
                .map(|(n, v, c)| port(n, v, c))
                .collect();
            let want = HostState {
                domains: domains.iter().map(|(v, t)| domain(*v, t)).collect(),
                ports: ports.clone(),
                groups: vec![],
            };
            let made: Vec<&HostPort> = ports
                .iter()
                .zip(&made)
                .filter(|(_, m)| **m)
                .map(|(p, _)| p)
                .collect();
            let mut host = fresh_host(&made);
            for v in stale {
                LinkChange::AddBridge { name: bridge_ifname(v) }.simulate(&mut host.links);
            }
            converge(&want, &mut host);
            // Drift: random properties of random links undone.
            let names: Vec<String> = host.links.keys().cloned().collect();
            for (i, what) in drift {
                let Some(l) = names.get(i % names.len().max(1)).and_then(|n| host.links.get_mut(n)) else {
                    continue;
                };
                match what {
                    0 => l.up = false,
                    1 => l.ipv6 = true,
                    2 => l.master = None,
                    3 => { l.flood.insert(Ipv4Addr::new(203, 0, 113, 9)); }
                    _ => l.mtu = Some(9000),
                }
            }
            let foreign = (host.links["eth0"].clone(), host.links["br-lan"].clone());
            let plan = converge(&want, &mut host);
            for c in &plan.changes {
                if let HostChange::Link(l) = c {
                    prop_assert!(l.link() != "eth0" && l.link() != "br-lan", "{c:?}");
                }
            }
            prop_assert_eq!(&(host.links["eth0"].clone(), host.links["br-lan"].clone()), &foreign);
            let again = plan_host(&want, &host, ME);
            prop_assert!(again.changes.is_empty(), "{:?}", again.changes);
        }
    }
}
