//! The gateway node's table `ip vpcip_gw`: which router each EIP goes to,
//! the second stage of the VPCs' default SNAT, and per-EIP packet and byte
//! counters in both directions:
//!
//! ```text
//! map eip_router { type ipv4_addr : mark }                 # EIP → its VPC router's number
//! chain steer { type filter hook prerouting priority mangle; meta mark set ip daddr map @eip_router }
//! set eip_in  { type ipv4_addr; size 262144; flags dynamic; counter }   # made by the packets
//! set eip_out { type ipv4_addr; size 262144; flags dynamic; counter }
//! chain count_in    { type filter hook prerouting priority -300; ip daddr @eip_router update @eip_in { ip daddr } }
//! chain count_out   { type filter hook postrouting priority 300; ip saddr @eip_router update @eip_out { ip saddr } }
//! map default_snat { type ipv4_addr : ipv4_addr }        # router link address → the gateway's default SNAT address
//! chain postrouting { type nat hook postrouting priority 100;
//!                     ip saddr 169.254.0.0/16 oifname != "vr*" snat to ip saddr map @default_snat
//!                     ip saddr 169.254.0.0/16 oifname != "vr*" drop }
//! set untracked { type inet_service; elements = { 4789 } }
//! chain raw    { type filter hook prerouting priority -300; udp dport @untracked notrack }
//! chain rawout { type filter hook output priority -300; udp dport @untracked notrack }
//! ```
//!
//! The tunnel's own packets (VXLAN to and from the hosts) are not tracked:
//! each inner flow would otherwise leave an unreplied entry of its own in
//! the node's conntrack table.
//!
//! The mark selects the router: one policy rule and one routing table per
//! VPC router (`fwmark N lookup 10000+N`), not a route per EIP, so binding
//! an EIP on the gateway is map elements only.
//!
//! Every packet between the physical network and an EIP crosses the node,
//! so these counters are also the answer to "does the physical network
//! route this EIP to the gateway?". An EIP's counter element is made by
//! its first packet (the `update` statement; the agent never writes one),
//! so binding 100,000 EIPs writes no counter at all, and an EIP without an
//! element has sent and received nothing. The agent removes an EIP's
//! elements when it is no longer bound here (a removal of an element that
//! is not there is no error). The rules are fixed whatever the number of
//! EIPs; a gateway counts at most [`COUNTED_MAX`] EIPs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use netlink_packet_core::DefaultNla;
use netlink_packet_core::NLM_F_CREATE;
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    Expressions, InetHookNumber, Lookup, MetaKey, NfTablesMessage, Operator, Payload, Register,
    SetAttribute, SetDescription, SetFlags, SetMessage,
};

use crate::SysError;
use crate::expr;
use crate::nft::{
    Expr, KeyChange, NatTable, filter_chain_in, map_nat, meta_set_from_map, nat_chain_in, rule_in,
};

mod parse;
pub(crate) use parse::counter_of;

/// The gateway node's table: the VPCs' default SNAT, second stage.
pub const GATEWAY_TABLE: &str = "vpcip_gw";

/// The map giving the address each router's masqueraded traffic leaves
/// the gateway node from: router link address → the gateway's default
/// SNAT address.
pub const DEFAULT_SNAT_MAP: &str = "default_snat";

/// UDP ports the node does not track (VXLAN's); the set the table's
/// current shape adds last.
const UNTRACKED: &str = "untracked";
const VXLAN_PORT: u16 = 4789;

/// `udp dport @untracked notrack`.
fn untracked() -> Vec<Expr> {
    let mut e = crate::expr::udp_port(2);
    e.push(crate::expr::lookup(UNTRACKED, 5, Register::Reg1, 0));
    e.push(crate::expr::notrack());
    e
}

/// The gateway node's default SNAT, second stage: what the routers
/// masqueraded to their link addresses leaves the node from its default
/// SNAT address, never from the node's own, and nothing leaves without one:
///
/// ```text
/// ip saddr BLOCK oifname != "PREFIX*" snat to ip saddr map @default_snat
/// ip saddr BLOCK oifname != "PREFIX*" drop
/// ```
pub(crate) fn gateway_default_snat(
    links: Ipv4Addr,
    prefix_len: u8,
    router_ifprefix: &str,
    map_id: u32,
) -> [Vec<Expr>; 2] {
    let mask = if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len))
    };
    let leaving = || {
        vec![
            expr::payload(expr::NETWORK_HEADER, 12, 4, Register::Reg1),
            expr::mask(Register::Reg1, mask.to_be_bytes().to_vec()),
            expr::cmp(Register::Reg1, Operator::Equal, links.octets().to_vec()),
            expr::meta(MetaKey::Oifname, Register::Reg1),
            // A comparison shorter than the name: a prefix match.
            expr::cmp(
                Register::Reg1,
                Operator::NotEqual,
                router_ifprefix.as_bytes().to_vec(),
            ),
        ]
    };
    const SNAT: u32 = 0;
    let mut snat = leaving();
    snat.extend(map_nat(DEFAULT_SNAT_MAP, map_id, 12, SNAT));
    let mut drop = leaving();
    drop.push(expr::drop());
    [snat, drop]
}

pub const EIP_ROUTER: &str = "eip_router";
pub const EIP_IN: &str = "eip_in";
pub const EIP_OUT: &str = "eip_out";

/// One EIP's traffic as the gateway node counted it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
}

/// The EIPs a gateway node counts at most (each counter set's size: the
/// kernel sizes its hash table for it, 4 MB each).
pub const COUNTED_MAX: u32 = 262_144;

fn counted_set(name: &str, id: u32) -> NfTablesMessage {
    NfTablesMessage::NewSet(SetMessage {
        attributes: vec![
            SetAttribute::Table(GATEWAY_TABLE.into()),
            SetAttribute::Name(name.into()),
            // Filled by the packet path (`update`).
            SetAttribute::Flags(SetFlags::Eval | SetFlags::Expression),
            SetAttribute::KeyType(7), // ipv4_addr
            SetAttribute::KeyLen(4),
            SetAttribute::Id(id),
            SetAttribute::Description(vec![SetDescription::Size(COUNTED_MAX)]),
            // Keys in network byte order (as nft writes it).
            SetAttribute::UserData(vec![0x00, 0x04, 0x02, 0x00, 0x00, 0x00]),
            SetAttribute::ListExpressions(vec![
                Expressions::Other {
                    expression_type: "counter".into(),
                    attributes: vec![],
                }
                .into(),
            ]),
        ],
    })
}

/// `ip daddr @eip_router update @set { ip daddr }` (offset 16) / the same
/// with `ip saddr` (offset 12): a bound EIP's packet bumps its counter,
/// whose element the first packet makes.
fn count(set: &str, id: u32, offset: u32) -> Vec<Expr> {
    let address = || {
        Expressions::Payload(vec![
            Payload::DestinationRegister(Register::Reg1),
            Payload::Base(1),
            Payload::Offset(offset),
            Payload::Len(4),
        ])
        .into()
    };
    let be = |v: u32| v.to_be_bytes().to_vec();
    let mut name = set.as_bytes().to_vec();
    name.push(0);
    vec![
        address(),
        Expressions::Lookup(vec![
            Lookup::Set(EIP_ROUTER.into()),
            Lookup::SetId(3),
            Lookup::SourceRegister(Register::Reg1),
        ])
        .into(),
        Expressions::Other {
            expression_type: "dynset".into(),
            attributes: vec![
                DefaultNla::new(1, name),                          // NFTA_DYNSET_SET_NAME
                DefaultNla::new(2, be(id)),                        // NFTA_DYNSET_SET_ID
                DefaultNla::new(3, be(1)),                         // NFTA_DYNSET_OP: update
                DefaultNla::new(4, be(u32::from(Register::Reg1))), // NFTA_DYNSET_SREG_KEY
            ],
        }
        .into(),
    ]
}

/// `meta mark set ip daddr map @eip_router`.
fn steer() -> Vec<Expr> {
    meta_set_from_map(MetaKey::Mark, 16, EIP_ROUTER, 3)
}

fn filter_chain(name: &str, hook: InetHookNumber, priority: i32) -> NfTablesMessage {
    filter_chain_in(GATEWAY_TABLE, name, hook, priority)
}

impl NatTable {
    /// Whether the gateway node's table is there, of the current shape
    /// (with the VXLAN port untracked, and counters the packets make).
    pub fn has_gateway_table(&mut self) -> Result<bool, SysError> {
        let ip = NetfilterProtoFamily::IPv4;
        Ok(self.has_set(ip, GATEWAY_TABLE, UNTRACKED)?
            && self
                .set_flags(ip, GATEWAY_TABLE, EIP_IN)?
                .is_some_and(|f| f & SetFlags::Eval.bits() != 0))
    }

    /// Makes the gateway node's table (see the module) unless it is there
    /// with its counter sets; true when it was (re)made. `links` and
    /// `prefix_len`: the router links' block; `router_ifprefix`: the names
    /// of the node's ends of the router links.
    pub fn ensure_gateway(
        &mut self,
        links: Ipv4Addr,
        prefix_len: u8,
        router_ifprefix: &str,
    ) -> Result<bool, SysError> {
        // An older table without the counters goes, in the same
        // transaction.
        let mut body = vec![
            counted_set(EIP_IN, 1),
            counted_set(EIP_OUT, 2),
            crate::sets::with_host_order_data(NfTablesMessage::NewSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(GATEWAY_TABLE.into()),
                    SetAttribute::Name(EIP_ROUTER.into()),
                    SetAttribute::Flags(SetFlags::Map),
                    SetAttribute::KeyType(7), // ipv4_addr
                    SetAttribute::KeyLen(4),
                    SetAttribute::DataType(19), // mark
                    SetAttribute::DataLen(4),
                    SetAttribute::Id(3),
                ],
            })),
            NfTablesMessage::NewSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(GATEWAY_TABLE.into()),
                    SetAttribute::Name(DEFAULT_SNAT_MAP.into()),
                    SetAttribute::Flags(SetFlags::Map),
                    SetAttribute::KeyType(7), // ipv4_addr
                    SetAttribute::KeyLen(4),
                    SetAttribute::DataType(7), // ipv4_addr
                    SetAttribute::DataLen(4),
                    SetAttribute::Id(4),
                ],
            }),
            filter_chain("steer", InetHookNumber::PreRouting, -150),
            filter_chain("count_in", InetHookNumber::PreRouting, -300),
            filter_chain("count_out", InetHookNumber::PostRouting, 300),
            nat_chain_in(
                GATEWAY_TABLE,
                "postrouting",
                InetHookNumber::PostRouting,
                100,
            ),
            rule_in(GATEWAY_TABLE, "steer", steer()),
            rule_in(GATEWAY_TABLE, "count_in", count(EIP_IN, 1, 16)),
            rule_in(GATEWAY_TABLE, "count_out", count(EIP_OUT, 2, 12)),
        ];
        for r in gateway_default_snat(links, prefix_len, router_ifprefix, 4) {
            body.push(rule_in(GATEWAY_TABLE, "postrouting", r));
        }
        body.push(crate::sets::new_set(
            GATEWAY_TABLE,
            UNTRACKED,
            5,
            SetFlags::empty(),
            13, // inet_service
            2,
        ));
        body.push(filter_chain("raw", InetHookNumber::PreRouting, -300));
        body.push(filter_chain("rawout", InetHookNumber::LocalOut, -300));
        body.push(rule_in(GATEWAY_TABLE, "raw", untracked()));
        body.push(rule_in(GATEWAY_TABLE, "rawout", untracked()));
        if self.has_gateway_table()? {
            return Ok(false);
        }
        let ports = std::iter::once((VXLAN_PORT.to_be_bytes().to_vec(), false)).collect();
        self.make_table(
            NetfilterProtoFamily::IPv4,
            GATEWAY_TABLE,
            body,
            &vec![(UNTRACKED, ports)],
        )?;
        Ok(true)
    }

    /// The default SNAT map: router link address → the address its
    /// masqueraded traffic leaves the node from.
    pub fn read_default_snat(&mut self) -> Result<BTreeMap<Ipv4Addr, Ipv4Addr>, SysError> {
        Ok(self
            .read_u32_map(GATEWAY_TABLE, DEFAULT_SNAT_MAP)?
            .into_iter()
            .map(|(k, v)| (k, Ipv4Addr::from(v.to_ne_bytes())))
            .collect())
    }

    /// Makes the default SNAT map `want`, in one transaction; returns the
    /// number of elements changed.
    pub fn apply_default_snat(
        &mut self,
        have: &BTreeMap<Ipv4Addr, Ipv4Addr>,
        want: &BTreeMap<Ipv4Addr, Ipv4Addr>,
    ) -> Result<usize, SysError> {
        // As the kernel holds it: the address's bytes, read as a u32.
        let raw = |m: &BTreeMap<Ipv4Addr, Ipv4Addr>| -> BTreeMap<Ipv4Addr, u32> {
            m.iter()
                .map(|(k, v)| (*k, u32::from_ne_bytes(v.octets())))
                .collect()
        };
        self.apply_u32_map(GATEWAY_TABLE, DEFAULT_SNAT_MAP, &raw(have), &raw(want))
    }

    /// The counted EIPs and their counts.
    pub fn read_counters(&mut self) -> Result<BTreeMap<Ipv4Addr, Count>, SysError> {
        for _ in 0..10 {
            let mut out: BTreeMap<Ipv4Addr, Count> = BTreeMap::new();
            let key = |k: &[u8]| <[u8; 4]>::try_from(k).ok().map(Ipv4Addr::from);
            let a = self.dump_set(
                NetfilterProtoFamily::IPv4,
                GATEWAY_TABLE,
                EIP_IN,
                |k, _, e| {
                    if let Some(ip) = key(k) {
                        let (p, b) = counter_of(e).unwrap_or_default();
                        let c = out.entry(ip).or_default();
                        c.packets_in = p;
                        c.bytes_in = b;
                    }
                },
            )?;
            let b = self.dump_set(
                NetfilterProtoFamily::IPv4,
                GATEWAY_TABLE,
                EIP_OUT,
                |k, _, e| {
                    if let Some(ip) = key(k) {
                        let (p, b) = counter_of(e).unwrap_or_default();
                        let c = out.entry(ip).or_default();
                        c.packets_out = p;
                        c.bytes_out = b;
                    }
                },
            )?;
            if a && b {
                return Ok(out);
            }
        }
        Err(SysError::Parse(
            "the counter sets kept changing while they were read",
        ))
    }

    /// Which router (by number) each EIP goes to.
    pub fn read_steering(&mut self) -> Result<BTreeMap<Ipv4Addr, u32>, SysError> {
        self.read_u32_map(GATEWAY_TABLE, EIP_ROUTER)
    }

    /// Makes the steering map `want`, in one transaction; returns the
    /// number of elements changed.
    pub fn apply_steering(
        &mut self,
        have: &BTreeMap<Ipv4Addr, u32>,
        want: &BTreeMap<Ipv4Addr, u32>,
    ) -> Result<usize, SysError> {
        self.apply_u32_map(GATEWAY_TABLE, EIP_ROUTER, have, want)
    }

    /// Stops counting `remove` (EIPs no longer bound here): their elements
    /// go, whether or not a packet made them.
    pub fn apply_counted(&mut self, remove: &[Ipv4Addr]) -> Result<(), SysError> {
        if remove.is_empty() {
            return Ok(());
        }
        let change = |set| KeyChange {
            table: GATEWAY_TABLE,
            set,
            add: false,
            missing_ok: true,
            keys: remove,
        };
        self.transact_in(
            NetfilterProtoFamily::IPv4,
            vec![],
            &[],
            &[change(EIP_IN), change(EIP_OUT)],
            NLM_F_CREATE,
        )
    }
}
