//! NAT helpers (ALGs) per EIP, in a router: the table `ip vpcip_alg`.
//!
//! ```text
//! ct helper ftp   { type "ftp" protocol tcp; }     # one object per helper
//! set alg_ftp { type ipv4_addr; }                  # the EIPs (and their private addresses) with FTP
//! chain prerouting { type filter hook prerouting priority -150;   # after conntrack, before DNAT
//!     tcp dport 21 ip daddr @alg_ftp ct helper set "ftp"    # to the EIP (a server in the VM)
//!     tcp dport 21 ip saddr @alg_ftp ct helper set "ftp"    # from the VM (a client in it)
//!     … }
//! ```
//!
//! The kernel's helper then follows the control connection, opens the way
//! for the related ones (FTP data, SIP media), and — this being NAT — its
//! NAT half rewrites the addresses the protocol carries in its payload
//! (the FTP PASV reply, SIP's Via/Contact and SDP) to the EIP. Fixed rules;
//! a set lookup per new connection on the helper's port.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use netlink_packet_core::{DefaultNla, NLM_F_CREATE};
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    Cmp, DataAttribute, Expressions, InetHookNumber, Lookup, Meta, MetaKey, NfTablesMessage,
    Operator, Payload, Register, SetAttribute, SetMessage, TableAttribute, TableMessage,
};

use crate::SysError;
use crate::nft::{Expr, KeyChange, NatTable, filter_chain_in, rule_in};

pub const ALG_TABLE: &str = "vpcip_alg";

/// One kernel helper: its object's name, the kernel's helper name, the
/// protocol and port it watches.
struct Helper {
    object: &'static str,
    kernel: &'static str,
    tcp: bool,
    port: u16,
}

/// An ALG vpcip offers: its name (as the API spells it) and its helpers.
pub struct AlgSpec {
    pub name: &'static str,
    helpers: &'static [Helper],
}

/// The ALGs this kernel has helpers (and NAT helpers) for.
pub const ALGS: &[AlgSpec] = &[
    AlgSpec {
        name: "ftp",
        helpers: &[Helper {
            object: "ftp",
            kernel: "ftp",
            tcp: true,
            port: 21,
        }],
    },
    AlgSpec {
        name: "sip",
        helpers: &[
            Helper {
                object: "sip",
                kernel: "sip",
                tcp: false,
                port: 5060,
            },
            Helper {
                object: "sip-tcp",
                kernel: "sip",
                tcp: true,
                port: 5060,
            },
        ],
    },
    AlgSpec {
        name: "tftp",
        helpers: &[Helper {
            object: "tftp",
            kernel: "tftp",
            tcp: false,
            port: 69,
        }],
    },
    AlgSpec {
        name: "h323",
        helpers: &[
            Helper {
                object: "q931",
                kernel: "Q.931",
                tcp: true,
                port: 1720,
            },
            Helper {
                object: "ras",
                kernel: "RAS",
                tcp: false,
                port: 1719,
            },
        ],
    },
];

/// The set of an ALG: `alg_<name>`.
pub fn set_name(alg: &str) -> String {
    format!("alg_{alg}")
}

fn str_nla(kind: u16, s: &str) -> DefaultNla {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    DefaultNla::new(kind, v)
}

/// `ct helper <object> { type "<kernel>" protocol tcp|udp; }`.
fn helper_object(h: &Helper) -> NfTablesMessage {
    const NFTA_OBJ_TABLE: u16 = 1;
    const NFTA_OBJ_NAME: u16 = 2;
    const NFTA_OBJ_TYPE: u16 = 3;
    const NFTA_OBJ_DATA: u16 = 4;
    const NLA_F_NESTED: u16 = 0x8000;
    const NFT_OBJECT_CT_HELPER: u32 = 3;
    let mut data = Vec::new();
    crate::nft::put_str(&mut data, 1, h.kernel); // NFTA_CT_HELPER_NAME
    crate::nft::put_attr(&mut data, 2, &2u16.to_be_bytes()); // L3PROTO: NFPROTO_IPV4
    crate::nft::put_attr(&mut data, 3, &[if h.tcp { 6 } else { 17 }]); // L4PROTO
    NfTablesMessage::NewObject(vec![
        str_nla(NFTA_OBJ_TABLE, ALG_TABLE),
        str_nla(NFTA_OBJ_NAME, h.object),
        DefaultNla::new(NFTA_OBJ_TYPE, NFT_OBJECT_CT_HELPER.to_be_bytes().to_vec()),
        DefaultNla::new(NFTA_OBJ_DATA | NLA_F_NESTED, data),
    ])
}

/// `ip daddr|saddr @set <proto> dport <port> ct helper set "<object>"`.
fn helper_rule(set: &str, set_id: u32, by_destination: bool, h: &Helper) -> Vec<Expr> {
    vec![
        Expressions::Meta(vec![
            Meta::Key(MetaKey::L4Proto),
            Meta::DestinationRegister(Register::Reg1),
        ])
        .into(),
        Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(Operator::Equal),
            Cmp::Data(DataAttribute::Value(vec![if h.tcp { 6 } else { 17 }])),
        ])
        .into(),
        Expressions::Payload(vec![
            Payload::DestinationRegister(Register::Reg1),
            Payload::Base(2), // transport header
            Payload::Offset(2),
            Payload::Len(2),
        ])
        .into(),
        Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(Operator::Equal),
            Cmp::Data(DataAttribute::Value(h.port.to_be_bytes().to_vec())),
        ])
        .into(),
        Expressions::Payload(vec![
            Payload::DestinationRegister(Register::Reg1),
            Payload::Base(1),
            Payload::Offset(if by_destination { 16 } else { 12 }),
            Payload::Len(4),
        ])
        .into(),
        Expressions::Lookup(vec![
            Lookup::Set(set.into()),
            Lookup::SetId(set_id),
            Lookup::SourceRegister(Register::Reg1),
        ])
        .into(),
        Expressions::Other {
            expression_type: "objref".into(),
            attributes: vec![
                DefaultNla::new(1, 3u32.to_be_bytes().to_vec()), // IMM_TYPE: ct helper
                str_nla(2, h.object),                            // IMM_NAME
            ],
        }
        .into(),
    ]
}

/// The addresses in each ALG's set, by ALG name.
pub use vpcip_dataplane::gateway::AlgSets;

impl NatTable {
    /// Whether the table is there whole.
    pub fn has_alg(&mut self) -> Result<bool, SysError> {
        let last = ALGS.last().map(|a| set_name(a.name)).unwrap_or_default();
        self.has_set(NetfilterProtoFamily::IPv4, ALG_TABLE, &last)
    }

    /// Makes the table (see the module) unless it is there whole; true
    /// when it was made.
    pub fn ensure_alg(&mut self) -> Result<bool, SysError> {
        if self.has_alg()? {
            return Ok(false);
        }
        let table = || TableMessage {
            attributes: vec![TableAttribute::Name(ALG_TABLE.into())],
        };
        let mut msgs = vec![
            NfTablesMessage::NewTable(table()),
            NfTablesMessage::DeleteTable(table()),
            NfTablesMessage::NewTable(table()),
            filter_chain_in(ALG_TABLE, "prerouting", InetHookNumber::PreRouting, -150),
        ];
        for (i, alg) in ALGS.iter().enumerate() {
            let set = set_name(alg.name);
            let id = u32::try_from(i + 1).unwrap_or(u32::MAX);
            msgs.push(NfTablesMessage::NewSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(ALG_TABLE.into()),
                    SetAttribute::Name(set.clone()),
                    SetAttribute::KeyType(7), // ipv4_addr
                    SetAttribute::KeyLen(4),
                    SetAttribute::Id(id),
                ],
            }));
            for h in alg.helpers {
                msgs.push(helper_object(h));
                for by_destination in [true, false] {
                    msgs.push(rule_in(
                        ALG_TABLE,
                        "prerouting",
                        helper_rule(&set, id, by_destination, h),
                    ));
                }
            }
        }
        self.transact_in(NetfilterProtoFamily::IPv4, msgs, &[], &[], NLM_F_CREATE)?;
        Ok(true)
    }

    /// What each ALG's set holds.
    pub fn read_algs(&mut self) -> Result<AlgSets, SysError> {
        let mut out = AlgSets::new();
        for alg in ALGS {
            let set = set_name(alg.name);
            let mut done = false;
            for _ in 0..10 {
                let mut keys = BTreeSet::new();
                done = self.dump_set(NetfilterProtoFamily::IPv4, ALG_TABLE, &set, |k, _, _| {
                    if let Ok(k) = <[u8; 4]>::try_from(k) {
                        keys.insert(Ipv4Addr::from(k));
                    }
                })?;
                if done {
                    if !keys.is_empty() {
                        out.insert(alg.name.to_string(), keys);
                    }
                    break;
                }
            }
            if !done {
                return Err(SysError::Parse(
                    "an ALG set kept changing while it was read",
                ));
            }
        }
        Ok(out)
    }

    /// Makes the ALG sets `want`, in one transaction; returns the number of
    /// elements changed.
    pub fn apply_algs(&mut self, have: &AlgSets, want: &AlgSets) -> Result<usize, SysError> {
        let empty = BTreeSet::new();
        let mut changes: Vec<(String, bool, Vec<Ipv4Addr>)> = Vec::new();
        for alg in ALGS {
            let h = have.get(alg.name).unwrap_or(&empty);
            let w = want.get(alg.name).unwrap_or(&empty);
            let set = set_name(alg.name);
            changes.push((set.clone(), false, h.difference(w).copied().collect()));
            changes.push((set, true, w.difference(h).copied().collect()));
        }
        changes.retain(|(_, _, keys)| !keys.is_empty());
        if changes.is_empty() {
            return Ok(0);
        }
        let n = changes.iter().map(|(_, _, k)| k.len()).sum();
        let keys: Vec<KeyChange<'_>> = changes
            .iter()
            .map(|(set, add, keys)| KeyChange {
                table: ALG_TABLE,
                set,
                add: *add,
                missing_ok: false,
                keys,
            })
            .collect();
        self.transact_in(NetfilterProtoFamily::IPv4, vec![], &[], &keys, NLM_F_CREATE)?;
        Ok(n)
    }
}
