//! Links as the agents see and change them: what is observed of one link,
//! the typed changes a planner asks for, and the names vpcip gives.
//!
//! Changes name links, never kernel indexes: a plan made before a link
//! exists can still say what to do with it, and the kernel side resolves
//! names when it applies.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// VXLAN adds 50 bytes to a frame on an IPv4 underlay.
pub const VXLAN_OVERHEAD: u32 = 50;

/// The name of an L2 domain's VXLAN device.
pub fn vxlan_ifname(vni: u32) -> String {
    format!("vx{vni}")
}

/// The MAC of a subnet's router (its gateway address) on every gateway
/// node: the same everywhere, so that a VM's ARP entry stays right
/// whichever gateway carries its VPC (locally administered, the VNI in the
/// low 24 bits).
pub fn router_mac(vni: u32) -> [u8; 6] {
    let [_, a, b, c] = vni.to_be_bytes();
    [0x02, 0x76, 0x70, a, b, c]
}

/// The name of an L2 domain's bridge on a host.
pub fn bridge_ifname(vni: u32) -> String {
    format!("br{vni}")
}

/// The VNI of a link vpcip names `<prefix><digits>` (`br12`, `vx12`).
pub fn vni_of(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
}

/// One link as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkState {
    /// `bridge`, `vxlan`, `veth`…; None for devices without a kind.
    pub kind: Option<String>,
    /// The name of the bridge it is a port of.
    pub master: Option<String>,
    pub up: bool,
    pub mtu: Option<u32>,
    /// Its MAC address.
    pub mac: Option<[u8; 6]>,
    /// IPv6 is on (the node could send its own router solicitations and
    /// neighbour discovery on it).
    pub ipv6: bool,
    pub addrs: BTreeSet<Ipv4Net>,
    /// A VXLAN device's flood list: the VTEPs every unknown frame goes to.
    pub flood: BTreeSet<Ipv4Addr>,
    /// A bridge port's unicast flooding (None: not a bridge port): whether
    /// frames to MACs the bridge has not learned go out of it.
    pub unicast_flood: Option<bool>,
    /// The MACs pinned to it as a bridge port: static, sticky FDB entries.
    pub pinned: BTreeSet<[u8; 6]>,
}

/// The links of a namespace, by name.
pub type Links = BTreeMap<String, LinkState>;

/// One change to one link.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkChange {
    AddBridge {
        name: String,
    },
    AddVxlan {
        name: String,
        vni: u32,
        local: Ipv4Addr,
        mtu: u32,
    },
    SetMaster {
        name: String,
        master: String,
    },
    SetMtu {
        name: String,
        mtu: u32,
    },
    SetMac {
        name: String,
        mac: [u8; 6],
    },
    Ipv6Off {
        name: String,
    },
    SetUp {
        name: String,
    },
    AddAddr {
        name: String,
        addr: Ipv4Net,
    },
    DelAddr {
        name: String,
        addr: Ipv4Net,
    },
    FloodAdd {
        name: String,
        vtep: Ipv4Addr,
    },
    FloodDel {
        name: String,
        vtep: Ipv4Addr,
    },
    /// A VM port takes no unknown unicast (`bridge link set dev NAME flood
    /// off`) and its MAC is pinned to it (`bridge fdb replace MAC dev NAME
    /// master static sticky`): the bridge sends a unicast frame out of it
    /// only when the frame is addressed to that MAC.
    PinMac {
        name: String,
        mac: [u8; 6],
    },
    /// A MAC pinned to the port that is not its MAC any more.
    UnpinMac {
        name: String,
        mac: [u8; 6],
    },
    DelLink {
        name: String,
    },
}

impl LinkChange {
    /// The link it changes.
    pub fn link(&self) -> &str {
        match self {
            LinkChange::AddBridge { name }
            | LinkChange::AddVxlan { name, .. }
            | LinkChange::SetMaster { name, .. }
            | LinkChange::SetMtu { name, .. }
            | LinkChange::SetMac { name, .. }
            | LinkChange::Ipv6Off { name }
            | LinkChange::SetUp { name }
            | LinkChange::AddAddr { name, .. }
            | LinkChange::DelAddr { name, .. }
            | LinkChange::FloodAdd { name, .. }
            | LinkChange::FloodDel { name, .. }
            | LinkChange::PinMac { name, .. }
            | LinkChange::UnpinMac { name, .. }
            | LinkChange::DelLink { name } => name,
        }
    }

    /// What the change does to `links`: the kernel's effect, for fake
    /// kernels and for checking that a plan converges.
    pub fn simulate(&self, links: &mut Links) {
        let name = self.link().to_string();
        match self {
            LinkChange::AddBridge { .. } => {
                links.insert(name, new_link("bridge", None));
            }
            LinkChange::AddVxlan { mtu, .. } => {
                links.insert(name, new_link("vxlan", Some(*mtu)));
            }
            LinkChange::DelLink { .. } => {
                links.remove(&name);
                for l in links.values_mut() {
                    if l.master.as_deref() == Some(name.as_str()) {
                        l.master = None;
                    }
                }
            }
            _ => {
                let Some(l) = links.get_mut(&name) else {
                    return;
                };
                match self {
                    LinkChange::SetMaster { master, .. } => {
                        // A new bridge port: flooding on, nothing pinned.
                        l.master = Some(master.clone());
                        l.unicast_flood = Some(true);
                        l.pinned.clear();
                    }
                    LinkChange::SetMtu { mtu, .. } => l.mtu = Some(*mtu),
                    LinkChange::SetMac { mac, .. } => l.mac = Some(*mac),
                    LinkChange::Ipv6Off { .. } => l.ipv6 = false,
                    LinkChange::SetUp { .. } => l.up = true,
                    LinkChange::AddAddr { addr, .. } => {
                        l.addrs.insert(*addr);
                    }
                    LinkChange::DelAddr { addr, .. } => {
                        l.addrs.remove(addr);
                    }
                    LinkChange::FloodAdd { vtep, .. } => {
                        l.flood.insert(*vtep);
                    }
                    LinkChange::FloodDel { vtep, .. } => {
                        l.flood.remove(vtep);
                    }
                    LinkChange::PinMac { mac, .. } => {
                        l.unicast_flood = Some(false);
                        if *mac != [0; 6] {
                            l.pinned.insert(*mac);
                        }
                    }
                    LinkChange::UnpinMac { mac, .. } => {
                        l.pinned.remove(mac);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A link as the kernel makes it: down, IPv6 on, nothing else.
fn new_link(kind: &str, mtu: Option<u32>) -> LinkState {
    LinkState {
        kind: Some(kind.into()),
        mtu: mtu.or(Some(1500)),
        ipv6: true,
        ..Default::default()
    }
}

/// What a link must be, beyond up with IPv6 off; None leaves a property
/// as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkWant<'a> {
    /// The bridge it must be a port of.
    pub master: Option<&'a str>,
    /// Exactly these addresses.
    pub addrs: Option<&'a BTreeSet<Ipv4Net>>,
    /// A VXLAN device's flood list, exactly.
    pub flood: Option<&'a BTreeSet<Ipv4Addr>>,
    /// An MTU above this is lowered to it.
    pub max_mtu: Option<u32>,
    /// Exactly this MAC address.
    pub mac: Option<[u8; 6]>,
    /// A VM port: no unknown unicast, and exactly this MAC pinned to it
    /// (with `master`).
    pub pin: Option<[u8; 6]>,
}

/// The changes that make `name` (as observed in `have`, or about to be
/// made) up, with IPv6 off, and what `want` says. IPv6 goes off before the
/// link joins its bridge, and the link comes up last.
pub fn converge_link(name: &str, have: Option<&LinkState>, want: LinkWant<'_>) -> Vec<LinkChange> {
    let fresh = new_link("", None);
    let have = have.unwrap_or(&fresh);
    let name = || name.to_string();
    let mut out = Vec::new();
    if have.ipv6 {
        out.push(LinkChange::Ipv6Off { name: name() });
    }
    if let Some(m) = want.master
        && have.master.as_deref() != Some(m)
    {
        out.push(LinkChange::SetMaster {
            name: name(),
            master: m.to_string(),
        });
    }
    if let (Some(max), Some(mtu)) = (want.max_mtu, have.mtu)
        && mtu > max
    {
        out.push(LinkChange::SetMtu {
            name: name(),
            mtu: max,
        });
    }
    if let Some(mac) = want.mac
        && have.mac != Some(mac)
    {
        out.push(LinkChange::SetMac { name: name(), mac });
    }
    if let Some(mac) = want.pin {
        // Joining a bridge makes a new port: flooding on, nothing pinned.
        let moved = want
            .master
            .is_some_and(|m| have.master.as_deref() != Some(m));
        for m in have.pinned.iter().filter(|m| **m != mac && !moved) {
            out.push(LinkChange::UnpinMac {
                name: name(),
                mac: *m,
            });
        }
        // (The all-zero MAC pins nothing: flooding off only.)
        let unpinned = mac != [0; 6] && !have.pinned.contains(&mac);
        if moved || have.unicast_flood != Some(false) || unpinned {
            out.push(LinkChange::PinMac { name: name(), mac });
        }
    }
    if let Some(addrs) = want.addrs {
        for a in have.addrs.difference(addrs) {
            out.push(LinkChange::DelAddr {
                name: name(),
                addr: *a,
            });
        }
        for a in addrs.difference(&have.addrs) {
            out.push(LinkChange::AddAddr {
                name: name(),
                addr: *a,
            });
        }
    }
    if let Some(flood) = want.flood {
        for v in have.flood.difference(flood) {
            out.push(LinkChange::FloodDel {
                name: name(),
                vtep: *v,
            });
        }
        for v in flood.difference(&have.flood) {
            out.push(LinkChange::FloodAdd {
                name: name(),
                vtep: *v,
            });
        }
    }
    if !have.up {
        out.push(LinkChange::SetUp { name: name() });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_their_vnis() {
        assert_eq!(vxlan_ifname(12), "vx12");
        assert_eq!(vni_of("br12", "br"), Some(12));
        assert_eq!(vni_of("br", "br"), None);
        assert_eq!(vni_of("br-lan", "br"), None);
        assert_eq!(vni_of("vx1x", "vx"), None);
    }

    #[test]
    fn a_vm_port_is_pinned_after_it_joins_and_stale_pins_go() {
        let mac = [0xfa, 0x16, 0x3e, 0, 0, 1];
        let want = LinkWant {
            master: Some("br1"),
            pin: Some(mac),
            ..Default::default()
        };
        let mut links = Links::new();
        links.insert("t1".into(), new_link("veth", None));
        let plan = converge_link("t1", links.get("t1"), want);
        let join = plan
            .iter()
            .position(|c| matches!(c, LinkChange::SetMaster { .. }));
        let pin = plan
            .iter()
            .position(|c| matches!(c, LinkChange::PinMac { .. }));
        assert!(join < pin, "pinned in its bridge: {plan:?}");
        for c in &plan {
            c.simulate(&mut links);
        }
        assert_eq!(links["t1"].unicast_flood, Some(false));
        assert!(converge_link("t1", links.get("t1"), want).is_empty());
        // A MAC pinned by hand, or the NIC's old one, is unpinned.
        let old = [0xfa, 0x16, 0x3e, 0, 0, 9];
        links.get_mut("t1").unwrap().pinned.insert(old);
        assert_eq!(
            converge_link("t1", links.get("t1"), want),
            vec![LinkChange::UnpinMac {
                name: "t1".into(),
                mac: old
            }]
        );
        // Flooding turned back on by hand: turned off again.
        links.get_mut("t1").unwrap().pinned.remove(&old);
        links.get_mut("t1").unwrap().unicast_flood = Some(true);
        assert_eq!(
            converge_link("t1", links.get("t1"), want),
            vec![LinkChange::PinMac {
                name: "t1".into(),
                mac
            }]
        );
    }

    #[test]
    fn a_converged_link_needs_nothing() {
        let flood: BTreeSet<Ipv4Addr> = [Ipv4Addr::new(192, 0, 2, 2)].into();
        let addrs = BTreeSet::new();
        let want = LinkWant {
            master: Some("br1"),
            addrs: Some(&addrs),
            flood: Some(&flood),
            max_mtu: None,
            mac: None,
            pin: None,
        };
        let mut links = Links::new();
        let first = converge_link("vx1", None, want);
        LinkChange::AddVxlan {
            name: "vx1".into(),
            vni: 1,
            local: Ipv4Addr::new(192, 0, 2, 11),
            mtu: 1450,
        }
        .simulate(&mut links);
        for c in &first {
            c.simulate(&mut links);
        }
        assert_eq!(converge_link("vx1", links.get("vx1"), want), vec![]);
        assert_eq!(links["vx1"].flood, flood);
        assert!(links["vx1"].up && !links["vx1"].ipv6);
    }
}
