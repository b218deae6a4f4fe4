//! The host's security-group filter, planned: which number each VM port
//! has, which conntrack zone each bridge's traffic is tracked in, the
//! elements of each group's sets, one chain per port and direction, and
//! how a packet finds those chains.
//!
//! The kernel side (`vpcip-sys/src/filter/`) is two tables:
//!
//! ```text
//! table bridge vpcip_sgmark {
//!   map port_prio { typeof oifname : meta priority; elements = { <port> : <number>, * : 0 } }
//!   chain multicast { hook forward priority -350
//!     ether daddr & 01:00:00:00:00:00 != 0        # multicast and broadcast only:
//!       meta priority set oifname map @port_prio }  # the port it goes to (`*`: 0)
//! }
//! table ip vpcip_sg {                         # reached through br_netfilter
//!   map zone { type ifname : ct zone }        # bridge → its VPC's zone
//!   map egress  { type ifname . ether_addr : verdict }  # bridge . port's MAC → jump e<n>_<hash>
//!   map ingress { type ifname . ether_addr : verdict }  # bridge . port's MAC → jump i<n>_<hash>
//!   map mc_ingress { typeof meta priority : verdict }  # port number → jump i<n>_<hash>
//!   set in_<group>  { type inet_proto . inet_service . ipv4_addr; flags interval }
//!   set out_<group> { … }
//!   set drops_in, drops_out { type mark; counter }
//!   chain i<n>_<hash> { ip protocol . th dport . ip saddr @in_<group> accept   # per group
//!                       ip protocol vrrp ip saddr <peer> accept               # per VRRP peer
//!                       meta mark set <n> meta mark @drops_in; drop }
//!   chain e<n>_<hash> { ip protocol . th dport . ip daddr @out_<group> return; …
//!                       meta mark set <n> meta mark @drops_out; drop }
//!   chain raw { hook prerouting priority -300
//!     ct zone set iifname map @zone accept      # a bridge's packets
//!     udp dport 4789 notrack }                  # the tunnel's own packets
//!   chain rawout { hook output priority -300; udp dport 4789 notrack }
//!   chain forward { hook forward priority 0
//!     ct state established,related accept
//!     iifname . ether saddr vmap @egress        # the sender's egress: returns when allowed
//!     oifname . ether daddr vmap @ingress       # a unicast receiver's ingress
//!     ether daddr & 01:00:00:00:00:00 != 0 meta priority vmap @mc_ingress
//!     accept }                                  # neither side is a VM port
//! }
//! ```
//!
//! In the `ip` hooks the bridge is both the input and the output device;
//! a VM port is found by its bridge and its MAC. That holds because the
//! port guards pin each port's source MAC, and the host makes each VM port
//! take no unknown unicast and pins its MAC to it (a static, sticky FDB
//! entry, [`crate::links::LinkChange::PinMac`]): the bridge sends a unicast
//! frame out of a VM port only when it is addressed to that port's MAC.
//! Multicast and broadcast go to several ports at once and are numbered
//! per port by the bridge table. A packet of an established connection
//! therefore costs one test in the bridge table and one state check
//! (measured: `bench/run secgroups`; the numbering of every frame it
//! replaced took about four percent of VM-to-VM throughput).
//!
//! A port's chain is named after its number and a hash of what it holds:
//! a change of its groups or peers makes a new chain, points the maps at
//! it and drops the old one in one transaction. Numbers stay with their
//! ports while they exist; a new port takes the lowest free one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use vpcip_model::desired::HostState;
use vpcip_model::filter::{FilterElement, PROTO_TCP, PROTO_VRRP};

use crate::isolation::parse_mac;
use crate::links::bridge_ifname;

/// Which way a port's chain filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Way {
    /// Into the VM: the remote is the source.
    Ingress,
    /// Out of the VM: the remote is the destination.
    Egress,
}

/// The name of a group's set for one direction.
pub fn set_name(group: &str, way: Way) -> String {
    match way {
        Way::Ingress => format!("in_{group}"),
        Way::Egress => format!("out_{group}"),
    }
}

/// What one port's chain for one direction holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainSpec {
    pub mark: u32,
    pub way: Way,
    /// The group sets looked up, in order.
    pub sets: Vec<String>,
    /// VRRP passes from these (ingress); any VRRP leaves (egress) when
    /// there is one.
    pub vrrp: Vec<Ipv4Addr>,
}

impl ChainSpec {
    /// The chain's name: its direction, its mark and a hash of the rest.
    pub fn name(&self) -> String {
        let mut text = String::new();
        for s in &self.sets {
            text.push_str(s);
            text.push(',');
        }
        for p in &self.vrrp {
            text.push_str(&p.to_string());
            text.push(',');
        }
        let hash = fnv1a(text.as_bytes());
        let d = match self.way {
            Way::Ingress => 'i',
            Way::Egress => 'e',
        };
        format!("{d}{}_{hash:016x}", self.mark)
    }
}

/// The mark and direction of a port chain's name (None: not a port chain).
pub fn parse_chain_name(name: &str) -> Option<(Way, u32)> {
    let way = match name.as_bytes().first()? {
        b'i' => Way::Ingress,
        b'e' => Way::Egress,
        _ => return None,
    };
    let (mark, hash) = name.get(1..)?.split_once('_')?;
    if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((way, mark.parse().ok()?))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An element of the `ingress` or `egress` map: a VM port's bridge and
/// MAC, in the way the map looks it up.
pub type MacKey = (Way, String, [u8; 6]);

/// The filter as nftables holds it (what can be read back).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterSeen {
    /// VM port → its number.
    pub marks: BTreeMap<String, u32>,
    /// Bridge and MAC → the port chain a unicast packet jumps to.
    pub by_mac: BTreeMap<MacKey, String>,
    /// Bridge → conntrack zone.
    pub zones: BTreeMap<String, u16>,
    /// Group set → its elements.
    pub sets: BTreeMap<String, BTreeSet<FilterElement>>,
    /// The port chains, by name.
    pub chains: BTreeSet<String>,
    /// Marks with a drop counter.
    pub counted: BTreeSet<u32>,
}

/// The filter a host must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterWant {
    pub marks: BTreeMap<String, u32>,
    pub by_mac: BTreeMap<MacKey, String>,
    pub zones: BTreeMap<String, u16>,
    pub sets: BTreeMap<String, BTreeSet<FilterElement>>,
    /// The port chains, by name.
    pub chains: BTreeMap<String, ChainSpec>,
}

impl FilterWant {
    /// What reading the kernel back gives once this is in place.
    pub fn seen(&self) -> FilterSeen {
        FilterSeen {
            marks: self.marks.clone(),
            by_mac: self.by_mac.clone(),
            zones: self.zones.clone(),
            sets: self.sets.clone(),
            chains: self.chains.keys().cloned().collect(),
            counted: self.marks.values().copied().collect(),
        }
    }
}

/// The filter for `want`, keeping the marks `have` gave to ports that stay.
pub fn filter_for(want: &HostState, have: Option<&FilterSeen>) -> FilterWant {
    let mut out = FilterWant::default();
    let wanted: BTreeSet<&str> = want.ports.iter().map(|p| p.ifname.as_str()).collect();
    if let Some(h) = have {
        for (port, mark) in &h.marks {
            if wanted.contains(port.as_str()) && *mark > 0 {
                out.marks.insert(port.clone(), *mark);
            }
        }
    }
    let mut taken: BTreeSet<u32> = out.marks.values().copied().collect();
    let mut next = 1u32;
    for p in &want.ports {
        if out.marks.contains_key(&p.ifname) {
            continue;
        }
        while taken.contains(&next) {
            next += 1;
        }
        taken.insert(next);
        out.marks.insert(p.ifname.clone(), next);
    }
    let groups: BTreeMap<&str, &vpcip_model::filter::GroupFilter> =
        want.groups.iter().map(|g| (g.id.as_str(), g)).collect();
    for p in &want.ports {
        out.zones.insert(bridge_ifname(p.vni), p.zone);
        let mark = out.marks.get(&p.ifname).copied().unwrap_or(0);
        for way in [Way::Ingress, Way::Egress] {
            let mut sets = Vec::new();
            for g in &p.security_groups {
                let Some(group) = groups.get(g.as_str()) else {
                    continue;
                };
                let name = set_name(g, way);
                let elements = match way {
                    Way::Ingress => &group.ingress,
                    Way::Egress => &group.egress,
                };
                out.sets
                    .entry(name.clone())
                    .or_insert_with(|| elements.iter().copied().collect());
                sets.push(name);
            }
            let spec = ChainSpec {
                mark,
                way,
                sets,
                vrrp: p.vrrp_peers.clone(),
            };
            // A MAC that does not parse has no element: the port guards
            // drop the port's frames, and the bridge sends it no unicast.
            if let Some(mac) = parse_mac(&p.mac) {
                out.by_mac
                    .insert((way, bridge_ifname(p.vni), mac), spec.name());
            }
            out.chains.insert(spec.name(), spec);
        }
    }
    out
}

/// A tracked connection, as conntrack gives it (its original direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub zone: u16,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// The destination port (0 without ports).
    pub dport: u16,
}

/// What one port now allows, to judge the connections already tracked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPolicy {
    pub zone: u16,
    pub ips: Vec<Ipv4Addr>,
    pub ingress: Vec<FilterElement>,
    pub egress: Vec<FilterElement>,
    pub vrrp: Vec<Ipv4Addr>,
}

impl PortPolicy {
    /// Whether this port's rules would refuse to open `flow` now.
    pub fn refuses(&self, flow: &Flow) -> bool {
        if flow.zone != self.zone {
            return false;
        }
        let allowed = |elements: &[FilterElement], remote: Ipv4Addr| {
            let port = if matches!(flow.proto, PROTO_TCP | 17) {
                flow.dport
            } else {
                // Protocols without ports match whatever range a rule of
                // theirs has (always the whole range).
                0
            };
            elements.iter().any(|e| e.matches(flow.proto, port, remote))
        };
        let vrrp = flow.proto == PROTO_VRRP;
        if self.ips.contains(&flow.dst)
            && !allowed(&self.ingress, flow.src)
            && !(vrrp && self.vrrp.contains(&flow.src))
        {
            return true;
        }
        let vrrp_out = vrrp && !self.vrrp.is_empty();
        self.ips.contains(&flow.src) && !allowed(&self.egress, flow.dst) && !vrrp_out
    }
}

/// The ports whose rules lost something from `have` to `want` (their
/// tracked connections are judged again), with what they allow now.
pub fn narrowed(host: &HostState, have: &FilterSeen, want: &FilterWant) -> Vec<PortPolicy> {
    let groups: BTreeMap<&str, &vpcip_model::filter::GroupFilter> =
        host.groups.iter().map(|g| (g.id.as_str(), g)).collect();
    let had_chains: BTreeMap<(Way, u32), &String> = have
        .chains
        .iter()
        .filter_map(|n| parse_chain_name(n).map(|k| (k, n)))
        .collect();
    let mut out = Vec::new();
    for p in &host.ports {
        let Some(mark) = want.marks.get(&p.ifname) else {
            continue;
        };
        if have.marks.get(&p.ifname) != Some(mark) {
            continue; // a new port: nothing tracked was allowed by it
        }
        let lost = [Way::Ingress, Way::Egress].into_iter().any(|way| {
            let Some(spec) = want
                .chains
                .values()
                .find(|c| c.mark == *mark && c.way == way)
            else {
                return false;
            };
            let Some(old) = had_chains.get(&(way, *mark)) else {
                return false;
            };
            if **old != spec.name() {
                return true; // its groups or peers changed
            }
            spec.sets
                .iter()
                .any(|s| match (have.sets.get(s), want.sets.get(s)) {
                    (Some(h), Some(w)) => !h.is_subset(w),
                    _ => false,
                })
        });
        if !lost {
            continue;
        }
        let pick = |way: Way| -> Vec<FilterElement> {
            p.security_groups
                .iter()
                .filter_map(|g| groups.get(g.as_str()))
                .flat_map(|g| match way {
                    Way::Ingress => g.ingress.clone(),
                    Way::Egress => g.egress.clone(),
                })
                .collect()
        };
        out.push(PortPolicy {
            zone: p.zone,
            ips: p.ips.clone(),
            ingress: pick(Way::Ingress),
            egress: pick(Way::Egress),
            vrrp: p.vrrp_peers.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpcip_model::desired::HostPort;
    use vpcip_model::filter::{GroupFilter, PROTO_UDP};

    fn element(proto: u8, ports: (u16, u16), remote: &str) -> FilterElement {
        FilterElement::new((proto, proto), ports, remote.parse().unwrap())
    }

    fn port(n: u8, groups: &[&str]) -> HostPort {
        HostPort {
            nic_id: format!("nic-{n}"),
            ifname: format!("t{n}"),
            vni: 10,
            mac: format!("fa:16:3e:00:00:{n:02x}"),
            ips: vec![Ipv4Addr::new(10, 0, 0, n)],
            source_dest_check: true,
            security_groups: groups.iter().map(|g| g.to_string()).collect(),
            vrrp_peers: vec![],
            zone: 3,
            dhcp: None,
        }
    }

    fn host(ports: Vec<HostPort>, ssh: bool) -> HostState {
        let mut ingress = vec![element(PROTO_TCP, (80, 80), "0.0.0.0/0")];
        if ssh {
            ingress.push(element(PROTO_TCP, (22, 22), "0.0.0.0/0"));
        }
        HostState {
            domains: vec![],
            ports,
            groups: vec![GroupFilter {
                id: "sg-web".into(),
                ingress,
                egress: vec![element(PROTO_UDP, (53, 53), "10.0.0.0/8")],
            }],
        }
    }

    #[test]
    fn marks_stay_with_their_ports_and_new_ports_take_the_lowest_free_one() {
        let first = filter_for(
            &host(vec![port(1, &["sg-web"]), port(2, &["sg-web"])], true),
            None,
        );
        assert_eq!(first.marks["t1"], 1);
        assert_eq!(first.marks["t2"], 2);
        let second = filter_for(
            &host(vec![port(2, &["sg-web"]), port(3, &["sg-web"])], true),
            Some(&first.seen()),
        );
        assert_eq!(second.marks["t2"], 2, "kept");
        assert_eq!(second.marks["t3"], 1, "the lowest free");
        assert_eq!(second.chains.len(), 4);
        // Unicast finds each port's chains by its bridge and MAC.
        let t3 = (
            Way::Ingress,
            "br10".to_string(),
            [0xfa, 0x16, 0x3e, 0, 0, 3],
        );
        let chain = &second.by_mac[&t3];
        assert_eq!(parse_chain_name(chain), Some((Way::Ingress, 1)));
        assert_eq!(second.by_mac.len(), 4);
        assert_eq!(second.zones["br10"], 3);
        assert_eq!(second.sets["in_sg-web"].len(), 2);
    }

    #[test]
    fn chain_names_carry_mark_and_direction_and_change_with_content() {
        let spec = ChainSpec {
            mark: 7,
            way: Way::Egress,
            sets: vec!["out_sg-a".into()],
            vrrp: vec![],
        };
        assert_eq!(parse_chain_name(&spec.name()), Some((Way::Egress, 7)));
        let other = ChainSpec {
            sets: vec!["out_sg-b".into()],
            ..spec.clone()
        };
        assert_ne!(spec.name(), other.name());
        assert_eq!(parse_chain_name("prerouting"), None);
    }

    #[test]
    fn a_removed_rule_judges_the_ports_connections_again() {
        let before = host(vec![port(1, &["sg-web"])], true);
        let have = filter_for(&before, None).seen();
        let after = host(vec![port(1, &["sg-web"])], false);
        let want = filter_for(&after, Some(&have));
        let judged = narrowed(&after, &have, &want);
        assert_eq!(judged.len(), 1);
        let p = &judged[0];
        let flow = |dport| Flow {
            zone: 3,
            proto: PROTO_TCP,
            src: "198.51.100.7".parse().unwrap(),
            dst: Ipv4Addr::new(10, 0, 0, 1),
            dport,
        };
        assert!(p.refuses(&flow(22)), "ssh went away");
        assert!(!p.refuses(&flow(80)), "http stays");
        assert!(
            !p.refuses(&Flow {
                zone: 4,
                ..flow(22)
            }),
            "another VPC's"
        );
        // Nothing lost: nothing judged.
        assert!(narrowed(&before, &have, &filter_for(&before, Some(&have))).is_empty());
    }
}
