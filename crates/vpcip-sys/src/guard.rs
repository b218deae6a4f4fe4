//! The infrastructure guard of hosts and gateway nodes, in nftables' ip
//! family, over netlink: table `ip vpcip_guard`.
//!
//! ```text
//! set vteps { typeof ip saddr . @th,96,24 }    # which VTEP may send which VNI
//! chain input { type filter hook input priority -200
//!   udp dport 4789 ip saddr . @th,96,24 != @vteps drop
//! }
//! # gateway nodes only: the VPC routers (links vr*) reach the outside world
//! set infra { type ipv4_addr; flags interval }                # host networks, router links
//! set allow { type ipv4_addr . inet_proto . inet_service }    # the operator's exceptions
//!   input:   iifname "vr*" ip daddr . meta l4proto . th dport @allow accept
//!            iifname "vr*" drop
//! chain forward { type filter hook forward priority -200
//!            iifname "vr*" ct direction reply accept           # answers to what the infrastructure opened
//!            iifname "vr*" ip daddr . meta l4proto . th dport @allow accept
//!            iifname "vr*" ip daddr @infra drop
//! }
//! ```
//!
//! VXLAN from an address that is not one of the segment's VTEPs, or for a
//! VNI the sender has no port in, is dropped before the tunnel sees it:
//! one lookup whatever the number of VTEPs. A VM (through its router, its
//! EIP or the default SNAT) reaches neither the node itself nor the host
//! networks nor another VPC's router.

use std::net::Ipv4Addr;

use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    InetHookNumber, MetaKey, NfTablesMessage, Operator, Register, SetAttribute, SetFlags,
};
use vpcip_dataplane::isolation::{InfraGuard, interval_elements, intervals_of};
use vpcip_model::desired::{InfraProtocol, InfraService};

use crate::SysError;
use crate::expr::{
    CT_DIRECTION, Expr, IP_CT_DIR_REPLY, NETWORK_HEADER, NOT_IN, TRANSPORT_HEADER, accept, cmp, ct,
    drop, ifname_prefix, lookup, meta, payload,
};
use crate::link::VXLAN_PORT;
use crate::nft::{NatTable, filter_chain_in, rule_in};
use crate::sets::{Element, SetContents, new_set};

pub const GUARD_TABLE: &str = "vpcip_guard";
const VTEPS: &str = "vteps";
const INFRA: &str = "infra";
const ALLOW: &str = "allow";
/// nftables' data types: `ipv4_addr . integer`, `ipv4_addr`, `ipv4_addr .
/// inet_proto . inet_service`.
const TYPE_IPV4_INTEGER: u32 = (7 << 6) | 4;
const TYPE_IPV4: u32 = 7;
const TYPE_IPV4_PROTO_SERVICE: u32 = (7 << 12) | (12 << 6) | 13;
const IPPROTO_UDP: u8 = 17;
/// The set's description for `nft list` (`typeof ip saddr . @th,96,24`),
/// as nft 1.0.6 writes it on x86-64: without it nft cannot tell the
/// integer's length and fails to list the table.
const VTEPS_TYPEOF: [u8; 78] = [
    0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x03, 0x46, 0x00, 0x04, 0x0d, 0x00, 0x00, 0x00, 0x01, 0x3e,
    0x00, 0x14, 0x00, 0x04, 0x07, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x04, 0x0c, 0x00, 0x00, 0x00,
    0x01, 0x04, 0x0b, 0x00, 0x00, 0x00, 0x01, 0x26, 0x00, 0x04, 0x07, 0x00, 0x00, 0x00, 0x01, 0x1e,
    0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x03, 0x00,
    0x00, 0x00, 0x03, 0x04, 0x60, 0x00, 0x00, 0x00, 0x04, 0x04, 0x18, 0x00, 0x00, 0x00,
];

/// What kind of node the guard is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardRole {
    Host,
    /// A gateway node: its VPC routers' links start with this prefix.
    Gateway {
        router_ifprefix: &'static str,
    },
}

fn rule(chain: &str, exprs: Vec<Expr>) -> NfTablesMessage {
    rule_in(GUARD_TABLE, chain, exprs)
}

/// `udp dport 4789 ip saddr . @th,96,24 != @vteps drop`: the VNI is the
/// three bytes after the VXLAN header's flags (loaded with the reserved
/// byte before them, which the mask clears).
fn vxlan_rule() -> Vec<Expr> {
    vec![
        meta(MetaKey::L4Proto, Register::Reg1),
        cmp(Register::Reg1, Operator::Equal, vec![IPPROTO_UDP]),
        payload(TRANSPORT_HEADER, 2, 2, Register::Reg1),
        cmp(
            Register::Reg1,
            Operator::Equal,
            VXLAN_PORT.to_be_bytes().to_vec(),
        ),
        payload(NETWORK_HEADER, 12, 4, Register::Reg32_00),
        payload(TRANSPORT_HEADER, 12, 3, Register::Reg32_01),
        lookup(VTEPS, 1, Register::Reg32_00, NOT_IN),
        drop(),
    ]
}

/// `ip daddr . meta l4proto . th dport @allow accept`.
fn allowed() -> Vec<Expr> {
    vec![
        payload(NETWORK_HEADER, 16, 4, Register::Reg32_00),
        meta(MetaKey::L4Proto, Register::Reg32_01),
        payload(TRANSPORT_HEADER, 2, 2, Register::Reg32_02),
        lookup(ALLOW, 3, Register::Reg32_00, 0),
        accept(),
    ]
}

fn then(mut v: Vec<Expr>, more: Vec<Expr>) -> Vec<Expr> {
    v.extend(more);
    v
}

/// The table's sets, chains and rules.
fn table(role: GuardRole) -> Vec<NfTablesMessage> {
    let mut vteps = new_set(
        GUARD_TABLE,
        VTEPS,
        1,
        SetFlags::empty(),
        TYPE_IPV4_INTEGER,
        8,
    );
    if let NfTablesMessage::NewSet(m) = &mut vteps {
        m.attributes
            .push(SetAttribute::UserData(VTEPS_TYPEOF.to_vec()));
    }
    let mut msgs = vec![
        vteps,
        filter_chain_in(GUARD_TABLE, "input", InetHookNumber::LocalIn, -200),
        rule("input", vxlan_rule()),
    ];
    if let GuardRole::Gateway { router_ifprefix } = role {
        let from_router = || ifname_prefix(MetaKey::Iifname, router_ifprefix);
        msgs.extend([
            new_set(GUARD_TABLE, INFRA, 2, SetFlags::Interval, TYPE_IPV4, 4),
            new_set(
                GUARD_TABLE,
                ALLOW,
                3,
                SetFlags::empty(),
                TYPE_IPV4_PROTO_SERVICE,
                12,
            ),
            filter_chain_in(GUARD_TABLE, "forward", InetHookNumber::Forward, -200),
            rule("input", then(from_router(), allowed())),
            rule("input", then(from_router(), vec![drop()])),
            rule(
                "forward",
                then(
                    from_router(),
                    vec![
                        ct(CT_DIRECTION, Register::Reg1),
                        cmp(Register::Reg1, Operator::Equal, vec![IP_CT_DIR_REPLY]),
                        accept(),
                    ],
                ),
            ),
            rule("forward", then(from_router(), allowed())),
            rule(
                "forward",
                then(
                    from_router(),
                    vec![
                        payload(NETWORK_HEADER, 16, 4, Register::Reg1),
                        lookup(INFRA, 2, Register::Reg1, 0),
                        drop(),
                    ],
                ),
            ),
        ]);
    }
    msgs
}

fn vtep_key((ip, vni): &(Ipv4Addr, u32)) -> Element {
    let mut k = ip.octets().to_vec();
    k.extend_from_slice(&vni.to_be_bytes()[1..]);
    k.push(0);
    (k, false)
}

fn allow_key(s: &InfraService) -> Element {
    let mut k = s.ip.octets().to_vec();
    k.extend_from_slice(&[s.protocol.number(), 0, 0, 0]);
    k.extend_from_slice(&s.port.to_be_bytes());
    k.extend_from_slice(&[0, 0]);
    (k, false)
}

/// Each set's elements for `g`.
fn elements(role: GuardRole, g: &InfraGuard) -> SetContents {
    let mut out = vec![(VTEPS, g.vteps.iter().map(vtep_key).collect())];
    if matches!(role, GuardRole::Gateway { .. }) {
        out.push((
            INFRA,
            interval_elements(&g.infra)
                .into_iter()
                .map(|(ip, end)| (ip.octets().to_vec(), end))
                .collect(),
        ));
        out.push((ALLOW, g.allow.iter().map(allow_key).collect()));
    }
    out
}

impl NatTable {
    /// Creates the guard's table, holding `want` from the start, unless it
    /// exists with the sets of `role`; true when (re)created.
    pub fn ensure_guard(&mut self, role: GuardRole, want: &InfraGuard) -> Result<bool, SysError> {
        let marker = match role {
            GuardRole::Host => VTEPS,
            GuardRole::Gateway { .. } => ALLOW,
        };
        let contents = elements(role, want);
        self.ensure_table(
            NetfilterProtoFamily::IPv4,
            GUARD_TABLE,
            marker,
            table(role),
            &contents,
        )
    }

    /// What the guard's sets hold; None when the table is missing or lacks
    /// the sets of `role`.
    pub fn read_guard(&mut self, role: GuardRole) -> Result<Option<InfraGuard>, SysError> {
        let family = NetfilterProtoFamily::IPv4;
        let marker = match role {
            GuardRole::Host => VTEPS,
            GuardRole::Gateway { .. } => ALLOW,
        };
        if !self.has_set(family, GUARD_TABLE, marker)? {
            return Ok(None);
        }
        let mut g = InfraGuard {
            vteps: self
                .read_elements(family, GUARD_TABLE, VTEPS)?
                .iter()
                .filter_map(|(k, _)| {
                    let ip = <[u8; 4]>::try_from(k.get(..4)?).ok()?;
                    let vni = k.get(4..7)?;
                    let vni = u32::from_be_bytes([0, vni[0], vni[1], vni[2]]);
                    Some((Ipv4Addr::from(ip), vni))
                })
                .collect(),
            ..Default::default()
        };
        if matches!(role, GuardRole::Gateway { .. }) {
            let els: Vec<(Ipv4Addr, bool)> = self
                .read_elements(family, GUARD_TABLE, INFRA)?
                .iter()
                .filter_map(|(k, end)| {
                    Some((Ipv4Addr::from(<[u8; 4]>::try_from(k.get(..4)?).ok()?), *end))
                })
                .collect();
            g.infra = intervals_of(&els);
            g.allow = self
                .read_elements(family, GUARD_TABLE, ALLOW)?
                .iter()
                .filter_map(|(k, _)| {
                    let ip = <[u8; 4]>::try_from(k.get(..4)?).ok()?;
                    let protocol = match k.get(4)? {
                        6 => InfraProtocol::Tcp,
                        17 => InfraProtocol::Udp,
                        _ => return None,
                    };
                    let port = u16::from_be_bytes(<[u8; 2]>::try_from(k.get(8..10)?).ok()?);
                    Some(InfraService {
                        protocol,
                        ip: Ipv4Addr::from(ip),
                        port,
                    })
                })
                .collect();
        }
        Ok(Some(g))
    }

    /// Makes the guard's sets what `want` gives, in one transaction;
    /// returns the number of elements added or removed. The interval set
    /// is rewritten whole when it differs (its elements are few).
    pub fn apply_guard(&mut self, role: GuardRole, want: &InfraGuard) -> Result<usize, SysError> {
        let contents = elements(role, want);
        self.converge_sets(NetfilterProtoFamily::IPv4, GUARD_TABLE, &contents, &[INFRA])
    }
}

/// Whether IPv6 is on on a link of the current namespace (false on a
/// kernel without IPv6).
pub fn ipv6_enabled(ifname: &str) -> Result<bool, SysError> {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    match std::fs::read_to_string(&path) {
        Ok(now) => Ok(now.trim() != "1"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SysError::Io("read sysctl disable_ipv6", e)),
    }
}

/// Turns IPv6 off on a link (no link-local address, no router
/// solicitations, no neighbour discovery of the node's own): tenant links
/// carry nothing of the node's. A kernel without IPv6 has nothing to turn
/// off.
pub fn ipv6_off(ifname: &str) -> Result<bool, SysError> {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    match std::fs::read_to_string(&path) {
        Ok(now) if now.trim() == "1" => Ok(false),
        Ok(_) => std::fs::write(&path, "1")
            .map(|()| true)
            .map_err(SysError::io("write sysctl disable_ipv6")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SysError::Io("read sysctl disable_ipv6", e)),
    }
}
