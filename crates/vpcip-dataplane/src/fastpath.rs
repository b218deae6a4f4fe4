//! The established-flow fast path of a host: what its tc/BPF program
//! (`vpcip-sys/bpf/fastpath.bpf.c`) is to know, by link name.
//!
//! Packets of connections conntrack holds as established in both
//! directions go from a VM port or a tunnel straight to the port or tunnel
//! of their destination MAC, around the bridge and br_netfilter. The
//! security groups still judge every new connection (the nftables filter
//! is unchanged); what the bridge and the port guards would check of the
//! packets taken is checked by the program against what is here: the VM
//! port's MAC, the addresses a guarded port may send from, the local ports
//! by MAC.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use vpcip_model::desired::HostState;

use crate::isolation::{PortGuards, parse_mac};
use crate::links::{Links, bridge_ifname, vxlan_ifname};

/// One link the program is attached to (at its tc ingress).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FastPort {
    /// The VXLAN device of its bridge: where frames to MACs of no local
    /// port go, and the key of the bridge's local ports.
    pub tunnel: String,
    /// Its VPC's conntrack zone (the filter's, for its bridge).
    pub zone: u16,
    /// A VM port (its MAC, and whether its source/destination check is
    /// on), or None for the tunnel itself.
    pub vm: Option<([u8; 6], bool)>,
}

/// What the fast path is to hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastPathWant {
    /// VM ports and tunnels, by name.
    pub ports: BTreeMap<String, FastPort>,
    /// What each guarded VM port may send from (the port guards' own).
    pub allowed: BTreeSet<(String, Ipv4Addr)>,
    /// By tunnel and MAC: the local VM port with that MAC, or None for a
    /// MAC whose frames must take the bridge (the bridge's own).
    pub dests: BTreeMap<(String, [u8; 6]), Option<String>>,
}

/// The fast path as the host agent found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FastPathSeen {
    /// Not loaded yet: the next change loads it.
    #[default]
    Missing,
    /// This kernel cannot run it (no BPF, no conntrack kfuncs, no BTF):
    /// the filter alone judges every packet.
    Unavailable,
    /// Loaded and attached, holding this.
    Have(FastPathWant),
}

/// The fast path for `want`, over the links the host has (`links`): ports
/// not plugged yet, and domains whose bridge or tunnel is missing, are
/// left out until they are there. `guards` are the port guards planned for
/// the same state.
pub fn fastpath_for(want: &HostState, links: &Links, guards: &PortGuards) -> FastPathWant {
    let mut out = FastPathWant::default();
    let domains: BTreeSet<u32> = want
        .domains
        .iter()
        .map(|d| d.vni)
        .filter(|v| links.contains_key(&bridge_ifname(*v)) && links.contains_key(&vxlan_ifname(*v)))
        .collect();
    for p in &want.ports {
        let Some(mac) = parse_mac(&p.mac) else {
            continue;
        };
        if !domains.contains(&p.vni) || !links.contains_key(&p.ifname) {
            continue;
        }
        let tunnel = vxlan_ifname(p.vni);
        out.ports.insert(
            p.ifname.clone(),
            FastPort {
                tunnel: tunnel.clone(),
                zone: p.zone,
                vm: Some((mac, guards.guarded.contains(&p.ifname))),
            },
        );
        // The tunnel is in its VPC's zone: every port of a bridge has it.
        out.ports.entry(tunnel.clone()).or_insert(FastPort {
            tunnel: tunnel.clone(),
            zone: p.zone,
            vm: None,
        });
        out.dests.insert((tunnel, mac), Some(p.ifname.clone()));
    }
    for v in &domains {
        let tunnel = vxlan_ifname(*v);
        if !out.ports.contains_key(&tunnel) {
            continue;
        }
        if let Some(mac) = links.get(&bridge_ifname(*v)).and_then(|l| l.mac) {
            out.dests.insert((tunnel, mac), None);
        }
    }
    out.allowed = guards
        .allowed
        .iter()
        .filter(|(port, _)| out.ports.contains_key(port))
        .cloned()
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::port_guards;
    use crate::links::LinkState;
    use vpcip_model::desired::{HostPort, L2Domain};

    fn port(nic: u8, vni: u32, check: bool) -> HostPort {
        HostPort {
            nic_id: format!("nic-{nic}"),
            ifname: format!("t{nic}"),
            vni,
            mac: format!("fa:16:3e:00:00:{nic:02x}"),
            ips: vec![Ipv4Addr::new(10, 0, 0, nic)],
            source_dest_check: check,
            security_groups: vec![],
            vrrp_peers: vec![],
            zone: 7,
            dhcp: None,
        }
    }

    #[test]
    fn ports_tunnels_addresses_and_local_macs_of_the_plugged_ports_only() {
        let want = HostState {
            domains: vec![L2Domain {
                subnet_id: "s".into(),
                vni: 10,
                vteps: vec![],
            }],
            ports: vec![port(1, 10, true), port(2, 10, false), port(3, 10, true)],
            groups: vec![],
        };
        let mut links = Links::new();
        for n in ["t1", "t2", "vx10"] {
            links.insert(n.into(), LinkState::default());
        }
        links.insert(
            "br10".into(),
            LinkState {
                mac: Some([2, 0, 0, 0, 0, 1]),
                ..Default::default()
            },
        );
        let guards = port_guards(&want, vxlan_ifname);
        let f = fastpath_for(&want, &links, &guards);
        // t3 is not plugged yet.
        assert_eq!(
            f.ports.keys().cloned().collect::<Vec<_>>(),
            vec!["t1", "t2", "vx10"]
        );
        assert_eq!(f.ports["t1"].vm, Some(([0xfa, 0x16, 0x3e, 0, 0, 1], true)));
        assert_eq!(f.ports["t2"].vm, Some(([0xfa, 0x16, 0x3e, 0, 0, 2], false)));
        assert_eq!(f.ports["vx10"].vm, None);
        assert!(f.ports.values().all(|p| p.zone == 7 && p.tunnel == "vx10"));
        assert_eq!(
            f.allowed,
            BTreeSet::from([("t1".to_string(), Ipv4Addr::new(10, 0, 0, 1))])
        );
        assert_eq!(
            f.dests
                .get(&("vx10".to_string(), [0xfa, 0x16, 0x3e, 0, 0, 2])),
            Some(&Some("t2".to_string()))
        );
        // The bridge's own MAC takes the bridge.
        assert_eq!(
            f.dests.get(&("vx10".to_string(), [2, 0, 0, 0, 0, 1])),
            Some(&None)
        );
        // Without its tunnel, a domain has no fast path.
        links.remove("vx10");
        assert_eq!(
            fastpath_for(&want, &links, &guards),
            FastPathWant::default()
        );
    }
}
