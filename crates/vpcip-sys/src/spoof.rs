//! Anti-spoofing on a host's VM ports, in nftables' bridge family, over
//! netlink: table `bridge vpcip_spoof` with two sets and three fixed rules,
//! whatever the number of ports:
//!
//! ```text
//! set guarded { type ifname }                  # ports whose source/destination check is on
//! set allowed { type ifname . ipv4_addr }      # what each may send from (its IP, its VIPs)
//! chain prerouting { type filter hook prerouting priority -200
//!   iifname @guarded ether type ip   iifname . ip saddr      != @allowed drop
//!   iifname @guarded ether type arp  iifname . arp saddr ip  != @allowed drop
//!   iifname @guarded ether type ip6  drop                    # VPCs are IPv4
//! }
//! ```
//!
//! A port joins or leaves, or gains a VIP: elements added or removed in one
//! transaction. Ports not in `guarded` (source/destination check off) pass.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, Cmp, DataAttribute, ExpressionAttribute, Expressions, Hook,
    Immediate, InetHookNumber, ListAttribute, Lookup, Meta, MetaKey, NfTablesMessage, Operator,
    Payload, Register, RuleAttribute, RuleMessage, SetAttribute, SetElementAttribute,
    SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute, TableMessage, Verdict,
    VerdictAttribute,
};

use crate::SysError;
use crate::nft::NatTable;

pub const SPOOF_TABLE: &str = "vpcip_spoof";
const GUARDED: &str = "guarded";
const ALLOWED: &str = "allowed";
/// nftables' data types: `ifname`, and `ifname . ipv4_addr` (concatenated
/// types are packed 6 bits each).
const TYPE_IFNAME: u32 = 41;
const TYPE_IFNAME_IPV4: u32 = (41 << 6) | 7;
const IFNAMSIZ: usize = 16;
const NFT_LOOKUP_F_INV: u32 = 1;
const NF_DROP: u32 = 0;

type Expr = ListAttribute<ExpressionAttribute>;

/// What a host's anti-spoofing holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guards {
    pub guarded: BTreeSet<String>,
    pub allowed: BTreeSet<(String, Ipv4Addr)>,
}

fn ifname_key(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.resize(IFNAMSIZ, 0);
    k
}

fn name_of(key: &[u8]) -> String {
    let end = key.iter().position(|b| *b == 0).unwrap_or(key.len());
    String::from_utf8_lossy(&key[..end]).into_owned()
}

fn meta_iifname(reg: Register) -> Expr {
    Expressions::Meta(vec![
        Meta::Key(MetaKey::Iifname),
        Meta::DestinationRegister(reg),
    ])
    .into()
}

fn lookup(set: &str, id: u32, reg: Register, flags: u32) -> Expr {
    Expressions::Lookup(vec![
        Lookup::Set(set.into()),
        Lookup::SetId(id),
        Lookup::SourceRegister(reg),
        Lookup::Flags(flags),
    ])
    .into()
}

fn payload(base: u32, offset: u32, len: u32, reg: Register) -> Expr {
    Expressions::Payload(vec![
        Payload::DestinationRegister(reg),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
    .into()
}

fn ether_type(t: u16) -> Vec<Expr> {
    vec![
        payload(0, 12, 2, Register::Reg1), // link-layer header
        Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(Operator::Equal),
            Cmp::Data(DataAttribute::Value(t.to_be_bytes().to_vec())),
        ])
        .into(),
    ]
}

fn drop() -> Expr {
    Expressions::Immediate(vec![
        Immediate::DestinationRegister(Register::Verdict),
        Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(
            Verdict::Other(NF_DROP),
        )])),
    ])
    .into()
}

fn rule(exprs: Vec<Expr>) -> NfTablesMessage {
    NfTablesMessage::NewRule(RuleMessage {
        attributes: vec![
            RuleAttribute::Table(SPOOF_TABLE.into()),
            RuleAttribute::Chain("prerouting".into()),
            RuleAttribute::Expressions(exprs),
        ],
    })
}

/// The three rules; `source_offset` is where the sender's IPv4 address is
/// in the network header (12 in IP, 14 in ARP).
fn rules() -> Vec<NfTablesMessage> {
    let guarded = || {
        vec![
            meta_iifname(Register::Reg1),
            lookup(GUARDED, 1, Register::Reg1, 0),
        ]
    };
    let check = |ethertype: u16, source_offset: u32| {
        let mut v = guarded();
        v.extend(ether_type(ethertype));
        v.push(meta_iifname(Register::Reg32_00));
        v.push(payload(1, source_offset, 4, Register::Reg32_04));
        v.push(lookup(ALLOWED, 2, Register::Reg32_00, NFT_LOOKUP_F_INV));
        v.push(drop());
        v
    };
    let mut v6 = guarded();
    v6.extend(ether_type(0x86dd));
    v6.push(drop());
    vec![rule(check(0x0800, 12)), rule(check(0x0806, 14)), rule(v6)]
}

fn set(name: &str, id: u32, key_type: u32, key_len: u32) -> NfTablesMessage {
    NfTablesMessage::NewSet(SetMessage {
        attributes: vec![
            SetAttribute::Table(SPOOF_TABLE.into()),
            SetAttribute::Name(name.into()),
            SetAttribute::Flags(SetFlags::empty()),
            SetAttribute::KeyType(key_type),
            SetAttribute::KeyLen(key_len),
            SetAttribute::Id(id),
        ],
    })
}

fn elements(set: &str, add: bool, keys: Vec<Vec<u8>>) -> NfTablesMessage {
    let msg = SetElementMessage {
        attributes: vec![
            SetElementList::Table(SPOOF_TABLE.into()),
            SetElementList::Set(set.into()),
            SetElementList::Elements(
                keys.into_iter()
                    .map(|k| {
                        ListAttribute::Element(vec![SetElementAttribute::Key(
                            DataAttribute::Value(k),
                        )])
                    })
                    .collect(),
            ),
        ],
    };
    if add {
        NfTablesMessage::NewSetElement(msg)
    } else {
        NfTablesMessage::DeleteSetElement(msg)
    }
}

fn allowed_key(port: &str, ip: Ipv4Addr) -> Vec<u8> {
    let mut k = ifname_key(port);
    k.extend_from_slice(&ip.octets());
    k
}

impl NatTable {
    /// Creates the anti-spoofing table unless it exists; true when created.
    pub fn ensure_spoof(&mut self) -> Result<bool, SysError> {
        let mut msgs = vec![
            NfTablesMessage::NewTable(TableMessage {
                attributes: vec![TableAttribute::Name(SPOOF_TABLE.into())],
            }),
            set(GUARDED, 1, TYPE_IFNAME, IFNAMSIZ as u32),
            set(ALLOWED, 2, TYPE_IFNAME_IPV4, IFNAMSIZ as u32 + 4),
            NfTablesMessage::NewChain(ChainMessage {
                attributes: vec![
                    ChainAttribute::Table(SPOOF_TABLE.into()),
                    ChainAttribute::Name("prerouting".into()),
                    ChainAttribute::Type("filter".into()),
                    ChainAttribute::Hook(vec![
                        Hook::Number(InetHookNumber::PreRouting.into()),
                        Hook::Priority((-200i32) as u32),
                    ]),
                ],
            }),
        ];
        msgs.extend(rules());
        match self.transact_in(
            NetfilterProtoFamily::Bridge,
            msgs,
            &[],
            &[],
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(17) => Ok(false), // EEXIST
            Err(e) => Err(e),
        }
    }

    /// The sets as the kernel holds them.
    pub fn read_spoof(&mut self) -> Result<Guards, SysError> {
        for _ in 0..10 {
            let mut g = Guards::default();
            let a = self.dump_set(
                NetfilterProtoFamily::Bridge,
                SPOOF_TABLE,
                GUARDED,
                |k, _, _| {
                    g.guarded.insert(name_of(k));
                },
            )?;
            let b = self.dump_set(
                NetfilterProtoFamily::Bridge,
                SPOOF_TABLE,
                ALLOWED,
                |k, _, _| {
                    if k.len() == IFNAMSIZ + 4 {
                        let ip = Ipv4Addr::new(k[16], k[17], k[18], k[19]);
                        g.allowed.insert((name_of(&k[..IFNAMSIZ]), ip));
                    }
                },
            )?;
            if a && b {
                return Ok(g);
            }
        }
        Err(SysError::Parse(
            "the anti-spoofing sets kept changing while they were read",
        ))
    }

    /// Makes the sets `want`, in one transaction; returns the number of
    /// elements added or removed.
    pub fn apply_spoof(&mut self, have: &Guards, want: &Guards) -> Result<usize, SysError> {
        let mut msgs = Vec::new();
        let mut n = 0;
        let mut push = |set: &str, add: bool, keys: Vec<Vec<u8>>| {
            if !keys.is_empty() {
                n += keys.len();
                msgs.push(elements(set, add, keys));
            }
        };
        push(
            GUARDED,
            false,
            have.guarded
                .difference(&want.guarded)
                .map(|p| ifname_key(p))
                .collect(),
        );
        push(
            ALLOWED,
            false,
            have.allowed
                .difference(&want.allowed)
                .map(|(p, ip)| allowed_key(p, *ip))
                .collect(),
        );
        // What a newly guarded port may send is in place before it is
        // guarded.
        push(
            ALLOWED,
            true,
            want.allowed
                .difference(&have.allowed)
                .map(|(p, ip)| allowed_key(p, *ip))
                .collect(),
        );
        push(
            GUARDED,
            true,
            want.guarded
                .difference(&have.guarded)
                .map(|p| ifname_key(p))
                .collect(),
        );
        if msgs.is_empty() {
            return Ok(0);
        }
        self.transact_in(NetfilterProtoFamily::Bridge, msgs, &[], &[], NLM_F_CREATE)?;
        Ok(n)
    }
}
