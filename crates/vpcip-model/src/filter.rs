//! Security groups compiled for a host: each group used by a NIC on the
//! host becomes two lists of elements (ingress, egress), each element a
//! protocol range, a port range and a remote prefix. A packet that opens a
//! connection passes when one element of one of its NIC's groups matches
//! it; the host's filter looks the three up at once (see the host agent's
//! `ip vpcip_sg` table), so the cost of a packet does not grow with the
//! number of rules.
//!
//! What the rules mean:
//! - a rule's remote is a prefix, or a group: the addresses of the group's
//!   members (each member NIC's address and the VIPs bound to it), kept up
//!   to date as members come and go;
//! - a *basic* group lets its members reach each other on everything (an
//!   implicit `ingress all from <the group itself>`); an *advanced* group
//!   does not (Alibaba Cloud's two types);
//! - `all` matches every protocol and port; `icmp` every ICMP type; `tcp`
//!   and `udp` without ports every port;
//! - replies to an allowed connection, and ICMP errors about it, always
//!   pass (the filter is stateful), so no rule is needed for them;
//! - VRRP between the NICs that share a VIP passes without a rule: each
//!   such NIC accepts protocol 112 from the others' addresses, and sends it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::resources::{Direction, Nic, Protocol, SecurityGroup, SgKind, SgRule, Vip};

/// IP protocol numbers.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_VRRP: u8 = 112;

/// What one rule lets through, one remote prefix at a time.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub struct FilterElement {
    /// IP protocol range (inclusive): one protocol, or 0–255 for `all`.
    pub proto_min: u8,
    pub proto_max: u8,
    /// Destination port range (inclusive); 0–65535 when ports do not apply.
    pub port_min: u16,
    pub port_max: u16,
    /// The remote end's address range (inclusive): the source of ingress,
    /// the destination of egress.
    #[schema(value_type = String)]
    pub remote_min: Ipv4Addr,
    #[schema(value_type = String)]
    pub remote_max: Ipv4Addr,
}

impl FilterElement {
    /// Everything of `proto` (a range) to `ports` from or to `remote`.
    pub fn new(proto: (u8, u8), ports: (u16, u16), remote: Ipv4Net) -> Self {
        FilterElement {
            proto_min: proto.0,
            proto_max: proto.1,
            port_min: ports.0,
            port_max: ports.1,
            remote_min: remote.network(),
            remote_max: remote.broadcast(),
        }
    }

    /// Whether a packet of `proto` to `port` with remote address `remote`
    /// matches (`port` is 0 for protocols without ports).
    pub fn matches(&self, proto: u8, port: u16, remote: Ipv4Addr) -> bool {
        (self.proto_min..=self.proto_max).contains(&proto)
            && (self.port_min..=self.port_max).contains(&port)
            && (self.remote_min..=self.remote_max).contains(&remote)
    }

    fn overlaps(&self, o: &FilterElement) -> bool {
        self.proto_min <= o.proto_max
            && o.proto_min <= self.proto_max
            && self.port_min <= o.port_max
            && o.port_min <= self.port_max
            && self.remote_min <= o.remote_max
            && o.remote_min <= self.remote_max
    }

    fn volume(&self) -> u128 {
        let span = |a: u32, b: u32| u128::from(b - a) + 1;
        span(self.proto_min.into(), self.proto_max.into())
            * span(self.port_min.into(), self.port_max.into())
            * span(self.remote_min.into(), self.remote_max.into())
    }

    /// `self` without what `a` covers: at most six boxes, none
    /// overlapping `a` or each other.
    fn minus(mut self, a: &FilterElement) -> Vec<FilterElement> {
        if !self.overlaps(a) {
            return vec![self];
        }
        let mut out = Vec::new();
        if self.proto_min < a.proto_min {
            out.push(FilterElement {
                proto_max: a.proto_min - 1,
                ..self
            });
            self.proto_min = a.proto_min;
        }
        if self.proto_max > a.proto_max {
            out.push(FilterElement {
                proto_min: a.proto_max + 1,
                ..self
            });
            self.proto_max = a.proto_max;
        }
        if self.port_min < a.port_min {
            out.push(FilterElement {
                port_max: a.port_min - 1,
                ..self
            });
            self.port_min = a.port_min;
        }
        if self.port_max > a.port_max {
            out.push(FilterElement {
                port_min: a.port_max + 1,
                ..self
            });
            self.port_max = a.port_max;
        }
        let (lo, hi) = (u32::from(a.remote_min), u32::from(a.remote_max));
        if u32::from(self.remote_min) < lo {
            out.push(FilterElement {
                remote_max: Ipv4Addr::from(lo - 1),
                ..self
            });
        }
        if u32::from(self.remote_max) > hi {
            out.push(FilterElement {
                remote_min: Ipv4Addr::from(hi + 1),
                ..self
            });
        }
        out
    }
}

/// One security group as a host filters with it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct GroupFilter {
    pub id: String,
    pub ingress: Vec<FilterElement>,
    pub egress: Vec<FilterElement>,
}

/// The addresses of each group's members: their NICs' addresses and the
/// VIPs bound to those NICs, by group ID.
pub fn group_members(nics: &[Nic], vips: &[Vip]) -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
    let mut vips_of: BTreeMap<&str, Vec<Ipv4Addr>> = BTreeMap::new();
    for v in vips {
        for n in &v.nic_ids {
            vips_of.entry(n.as_str()).or_default().push(v.ip);
        }
    }
    let mut out: BTreeMap<String, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for n in nics {
        for g in &n.security_group_ids {
            let set = out.entry(g.clone()).or_default();
            set.insert(n.ip);
            set.extend(vips_of.get(n.id.as_str()).into_iter().flatten());
        }
    }
    out
}

/// The protocol and port ranges of a rule.
fn ranges(rule: &SgRule) -> ((u8, u8), (u16, u16)) {
    let proto = match rule.protocol {
        Protocol::All => (0, u8::MAX),
        Protocol::Tcp => (PROTO_TCP, PROTO_TCP),
        Protocol::Udp => (PROTO_UDP, PROTO_UDP),
        Protocol::Icmp => (PROTO_ICMP, PROTO_ICMP),
    };
    let ports = match (rule.port_min, rule.port_max) {
        (Some(a), Some(b)) => (a, b),
        _ => (0, u16::MAX),
    };
    (proto, ports)
}

/// `group` compiled: its rules with remote groups expanded to their
/// members, and, for a basic group, its members allowed in from each other.
pub fn compile_group(
    group: &SecurityGroup,
    members: &BTreeMap<String, BTreeSet<Ipv4Addr>>,
) -> GroupFilter {
    let mut ingress = BTreeSet::new();
    let mut egress = BTreeSet::new();
    let none = BTreeSet::new();
    let mut add = |direction: Direction, proto: (u8, u8), ports: (u16, u16), remote: Ipv4Net| {
        let e = FilterElement::new(proto, ports, remote);
        match direction {
            Direction::Ingress => ingress.insert(e),
            Direction::Egress => egress.insert(e),
        };
    };
    for r in &group.rules {
        let (proto, ports) = ranges(r);
        if let Some(cidr) = r.remote_cidr {
            add(r.direction, proto, ports, cidr.trunc());
        } else if let Some(g) = &r.remote_group {
            for ip in members.get(g).unwrap_or(&none) {
                add(r.direction, proto, ports, Ipv4Net::from(*ip));
            }
        }
    }
    if group.kind == SgKind::Basic {
        for ip in members.get(&group.id).unwrap_or(&none) {
            add(
                Direction::Ingress,
                (0, u8::MAX),
                (0, u16::MAX),
                Ipv4Net::from(*ip),
            );
        }
    }
    GroupFilter {
        id: group.id.clone(),
        ingress: disjoint(ingress),
        egress: disjoint(egress),
    }
}

/// The same packets as `elements`, as boxes that do not overlap (the
/// kernel refuses an element whose corner lies in another): the largest
/// first, each later one without what the earlier ones cover.
pub fn disjoint(elements: BTreeSet<FilterElement>) -> Vec<FilterElement> {
    let mut sorted: Vec<FilterElement> = elements.into_iter().collect();
    sorted.sort_by_key(|e| std::cmp::Reverse(e.volume()));
    let mut out: Vec<FilterElement> = Vec::new();
    for e in sorted {
        let mut pieces = vec![e];
        for a in &out {
            pieces = pieces.into_iter().flat_map(|p| p.minus(a)).collect();
            if pieces.is_empty() {
                break;
            }
        }
        out.extend(pieces);
    }
    out.sort();
    out
}

/// The addresses a NIC takes VRRP from: the other NICs bound to one of its
/// VIPs.
pub fn vrrp_peers(nic: &Nic, nics: &[Nic], vips: &[Vip]) -> Vec<Ipv4Addr> {
    // The other holders first: most NICs hold no VIP, and then nothing
    // else is looked at (a host's every port asks).
    let others: BTreeSet<&str> = vips
        .iter()
        .filter(|v| v.nic_ids.contains(&nic.id))
        .flat_map(|v| v.nic_ids.iter().map(String::as_str))
        .filter(|id| *id != nic.id)
        .collect();
    if others.is_empty() {
        return Vec::new();
    }
    let out: BTreeSet<Ipv4Addr> = nics
        .iter()
        .filter(|n| others.contains(n.id.as_str()))
        .map(|n| n.ip)
        .collect();
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_element() -> impl Strategy<Value = FilterElement> {
        (
            prop_oneof![
                Just((0u8, 255u8)),
                Just((6, 6)),
                Just((17, 17)),
                Just((1, 1))
            ],
            prop_oneof![Just((0u16, 65535u16)), (1u16..100).prop_map(|p| (p, p + 5))],
            (0u32..4, 24u8..=32).prop_map(|(n, len)| {
                Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + n * 64), len).unwrap()
            }),
        )
            .prop_map(|(proto, ports, net)| FilterElement::new(proto, ports, net.trunc()))
    }

    proptest! {
        #[test]
        fn disjoint_boxes_match_the_same_packets_and_never_overlap(
            boxes in proptest::collection::btree_set(arb_element(), 1..8),
            probes in proptest::collection::vec((prop_oneof![Just(1u8), Just(6), Just(17), Just(47)], 0u16..110, 0u32..300), 50),
        ) {
            let out = disjoint(boxes.clone());
            for (i, a) in out.iter().enumerate() {
                for b in &out[i + 1..] {
                    prop_assert!(!a.overlaps(b), "{a:?} and {b:?}");
                }
            }
            for (proto, port, addr) in probes {
                let ip = Ipv4Addr::from(0x0a00_0000 + addr);
                let port = if matches!(proto, 6 | 17) { port } else { 0 };
                prop_assert_eq!(
                    boxes.iter().any(|e| e.matches(proto, port, ip)),
                    out.iter().any(|e| e.matches(proto, port, ip))
                );
            }
        }
    }

    fn rule(direction: Direction, protocol: Protocol, ports: Option<(u16, u16)>) -> SgRule {
        SgRule {
            id: String::new(),
            direction,
            protocol,
            port_min: ports.map(|p| p.0),
            port_max: ports.map(|p| p.1),
            remote_cidr: "0.0.0.0/0".parse().ok(),
            remote_group: None,
        }
    }

    fn group(id: &str, kind: SgKind, rules: Vec<SgRule>) -> SecurityGroup {
        SecurityGroup {
            id: id.into(),
            tenant: "t".into(),
            name: id.into(),
            vpc_id: "vpc-1".into(),
            kind,
            managed: false,
            rules,
        }
    }

    fn members() -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
        let mut m = BTreeMap::new();
        m.insert(
            "sg-a".to_string(),
            ["10.0.0.2", "10.0.0.3"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
        );
        m
    }

    #[test]
    fn a_basic_group_lets_its_members_in_an_advanced_one_does_not() {
        let r = vec![rule(Direction::Ingress, Protocol::Tcp, Some((22, 22)))];
        let basic = compile_group(&group("sg-a", SgKind::Basic, r.clone()), &members());
        let advanced = compile_group(&group("sg-a", SgKind::Advanced, r), &members());
        let member: Ipv4Addr = "10.0.0.3".parse().unwrap();
        let stranger: Ipv4Addr = "10.0.9.9".parse().unwrap();
        let passes =
            |g: &GroupFilter, proto, port, ip| g.ingress.iter().any(|e| e.matches(proto, port, ip));
        assert!(passes(&basic, PROTO_UDP, 53, member));
        assert!(!passes(&advanced, PROTO_UDP, 53, member));
        assert!(passes(&advanced, PROTO_TCP, 22, stranger));
        assert!(!passes(&basic, PROTO_TCP, 23, stranger));
        assert!(basic.egress.is_empty());
    }

    #[test]
    fn remote_groups_expand_to_their_members_and_covered_elements_go() {
        let mut r = rule(Direction::Ingress, Protocol::Tcp, Some((80, 80)));
        r.remote_cidr = None;
        r.remote_group = Some("sg-a".into());
        let all = rule(Direction::Egress, Protocol::All, None);
        let mut udp = rule(Direction::Egress, Protocol::Udp, Some((53, 53)));
        udp.remote_cidr = "10.0.0.0/8".parse().ok();
        let g = compile_group(
            &group("sg-b", SgKind::Advanced, vec![r, all, udp]),
            &members(),
        );
        assert_eq!(g.ingress.len(), 2);
        assert!(g.ingress.iter().all(|e| e.remote_min == e.remote_max));
        assert_eq!(g.egress.len(), 1, "udp/53 to 10/8 is inside all to 0/0");
    }
}
