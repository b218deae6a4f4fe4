//! A host's security-group filter in nftables, over netlink: the tables
//! `bridge vpcip_sgmark` (which VM port a frame comes from or goes to, as
//! the packet's mark) and `ip vpcip_sg` (conntrack zones, each port's
//! chains, each group's sets). The layout and the reasons are in
//! `vpcip_dataplane::filter`; this module writes and reads it.
//!
//! Bridged IPv4 reaches the `ip` hooks through br_netfilter
//! (`net.bridge.bridge-nf-call-iptables = 1` in the host's namespace), so
//! conntrack sees it: this kernel has no conntrack in the bridge family.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use netlink_packet_core::{DefaultNla, NLM_F_CREATE};
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, Expressions, Immediate, InetHookNumber,
    ListAttribute, Lookup, Meta, MetaKey, NfTablesMessage, Operator, Register, SetAttribute,
    SetDescription, SetElementAttribute, SetElementList, SetElementMessage, SetFlags, SetMessage,
    TableAttribute, TableMessage, Verdict, VerdictAttribute,
};
use vpcip_dataplane::filter::{ChainSpec, FilterSeen, FilterWant, Way, parse_chain_name};
use vpcip_model::filter::{FilterElement, PROTO_VRRP};

use crate::SysError;
use crate::counters::counter_of;
use crate::expr::{
    Expr, NETWORK_HEADER, TRANSPORT_HEADER, accept, cmp, ct, drop, lookup, mask, meta, payload, ret,
};
use crate::nft::{NatTable, attrs, filter_chain_in, rule_in};
use crate::sets::{with_host_order_data, with_host_order_keys};

pub const SG_TABLE: &str = "vpcip_sg";
pub const SGMARK_TABLE: &str = "vpcip_sgmark";
const PORT_MARK: &str = "port_mark";
/// The same numbers as `port_mark`, typed as the packet's priority (nft
/// refuses one map for both `meta mark set` and `meta priority set`).
/// Made last in the bridge table: its presence says the table is of the
/// current shape.
const PORT_PRIO: &str = "port_prio";
const ZONE: &str = "zone";
const INGRESS: &str = "ingress";
const EGRESS: &str = "egress";
const DROPS_IN: &str = "drops_in";
/// Made last: its presence says the table is of the current shape.
const DROPS_OUT: &str = "drops_out";
const IFNAMSIZ: usize = 16;
const TYPE_IFNAME: u32 = 41;
const TYPE_MARK: u32 = 19;
const TYPE_INTEGER: u32 = 4;
const TYPE_CLASSID: u32 = 23;

/// The zone map's description for `nft list` (`typeof iifname : ct zone`),
/// as nft 1.0.6 writes it on x86-64: keys and data in host byte order,
/// keyed by `meta iifname`, valued `ct zone`. With it the listing shows
/// names and zones, and `nft -f` takes `ct zone set iifname map @zone` back.
const ZONE_TYPEOF: [u8; 56] = [
    0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x00, 0x00, 0x00, 0x03, 0x0e, 0x00, 0x04,
    0x09, 0x00, 0x00, 0x00, 0x01, 0x06, 0x00, 0x04, 0x06, 0x00, 0x00, 0x00, 0x04, 0x14, 0x00, 0x04,
    0x0c, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x04, 0x11, 0x00, 0x00, 0x00, 0x01, 0x04, 0xff, 0xff,
    0xff, 0xff, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
];

/// `port_prio`'s (`typeof oifname : meta priority`).
const PORT_PRIO_TYPEOF: [u8; 50] = [
    0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x00, 0x00, 0x00, 0x03, 0x0e, 0x00, 0x04,
    0x09, 0x00, 0x00, 0x00, 0x01, 0x06, 0x00, 0x04, 0x07, 0x00, 0x00, 0x00, 0x04, 0x0e, 0x00, 0x04,
    0x09, 0x00, 0x00, 0x00, 0x01, 0x06, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00, 0x06, 0x04, 0x00, 0x00,
    0x00, 0x00,
];

/// `drops_in`'s (`typeof meta priority`): counted by the port a packet goes to.
const PRIORITY_KEY_TYPEOF: [u8; 22] = [
    0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x03, 0x0e, 0x00, 0x04, 0x09, 0x00, 0x00, 0x00, 0x01, 0x06,
    0x00, 0x04, 0x02, 0x00, 0x00, 0x00,
];

/// The ingress verdict map's (`typeof meta priority : verdict`), likewise:
/// nft type-checks `meta priority vmap @ingress` against the key.
const INGRESS_TYPEOF: [u8; 44] = [
    0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x03, 0x0e, 0x00, 0x04,
    0x09, 0x00, 0x00, 0x00, 0x01, 0x06, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00, 0x04, 0x08, 0x00, 0x04,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
];
/// `inet_proto . inet_service . ipv4_addr`, packed 6 bits each.
const TYPE_RULE: u32 = (12 << 12) | (13 << 6) | 7;
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
/// `ct` keys and `ct state` bits.
const CT_STATE: u32 = 0;
const CT_ZONE: u32 = 17;
const CT_ESTABLISHED_RELATED: u32 = 2 | 4;
/// Element attributes read back.
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;

/// One drop counter per port and direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    pub packets_in: u64,
    pub packets_out: u64,
}

fn ifname_key(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.resize(IFNAMSIZ, 0);
    k
}

fn ifname_of(key: &[u8]) -> String {
    let name = key.get(..IFNAMSIZ).unwrap_or(key);
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

/// A rule element's key and key end: each field padded to 4 bytes.
fn element_keys(e: &FilterElement) -> (Vec<u8>, Vec<u8>) {
    let key = |proto: u8, port: u16, addr: Ipv4Addr| {
        let mut k = vec![proto, 0, 0, 0];
        k.extend_from_slice(&port.to_be_bytes());
        k.extend_from_slice(&[0, 0]);
        k.extend_from_slice(&addr.octets());
        k
    };
    (
        key(e.proto_min, e.port_min, e.remote_min),
        key(e.proto_max, e.port_max, e.remote_max),
    )
}

/// The element a key and key end stand for (None: not one of ours).
fn element_of(key: &[u8], end: &[u8]) -> Option<FilterElement> {
    let field = |k: &[u8]| -> Option<(u8, u16, Ipv4Addr)> {
        let proto = *k.first()?;
        let port = u16::from_be_bytes(k.get(4..6)?.try_into().ok()?);
        let addr = Ipv4Addr::from(<[u8; 4]>::try_from(k.get(8..12)?).ok()?);
        Some((proto, port, addr))
    };
    let (p0, port0, a0) = field(key)?;
    let (p1, port1, a1) = field(end)?;
    (p0 <= p1 && port0 <= port1 && a0 <= a1).then_some(FilterElement {
        proto_min: p0,
        proto_max: p1,
        port_min: port0,
        port_max: port1,
        remote_min: a0,
        remote_max: a1,
    })
}

/// A new table, an older one of that name gone first.
fn table_msgs() -> Vec<NfTablesMessage> {
    let t = |name: &str| TableMessage {
        attributes: vec![TableAttribute::Name(name.into())],
    };
    vec![
        NfTablesMessage::NewTable(t(SG_TABLE)),
        NfTablesMessage::DeleteTable(t(SG_TABLE)),
        NfTablesMessage::NewTable(t(SG_TABLE)),
    ]
}

fn set_msg(table: &str, name: &str, id: u32, extra: Vec<SetAttribute>) -> NfTablesMessage {
    let mut attributes = vec![
        SetAttribute::Table(table.into()),
        SetAttribute::Name(name.into()),
        SetAttribute::Id(id),
    ];
    attributes.extend(extra);
    NfTablesMessage::NewSet(SetMessage { attributes })
}

/// A group's set: `inet_proto . inet_service . ipv4_addr`, intervals.
fn group_set(name: &str, id: u32) -> NfTablesMessage {
    let field = |len: u32| {
        // NFTA_LIST_ELEM { NFTA_SET_FIELD_LEN len }
        let mut inner = Vec::new();
        inner.extend_from_slice(&8u16.to_ne_bytes());
        inner.extend_from_slice(&1u16.to_ne_bytes());
        inner.extend_from_slice(&len.to_be_bytes());
        DefaultNla::new(1 | 0x8000, inner)
    };
    set_msg(
        SG_TABLE,
        name,
        id,
        vec![
            SetAttribute::Flags(SetFlags::Interval | SetFlags::Concat),
            SetAttribute::KeyType(TYPE_RULE),
            SetAttribute::KeyLen(12),
            SetAttribute::Description(vec![SetDescription::Concat(vec![
                field(1),
                field(2),
                field(4),
            ])]),
        ],
    )
}

fn delete_set(table: &str, name: &str) -> NfTablesMessage {
    NfTablesMessage::DeleteSet(SetMessage {
        attributes: vec![
            SetAttribute::Table(table.into()),
            SetAttribute::Name(name.into()),
        ],
    })
}

/// Element messages: `(key, key end, data)` each.
fn elements_msg(
    table: &str,
    set: &str,
    add: bool,
    elements: Vec<Vec<SetElementAttribute>>,
) -> Vec<NfTablesMessage> {
    elements
        .chunks(1000)
        .map(|chunk| {
            let m = SetElementMessage {
                attributes: vec![
                    SetElementList::Table(table.into()),
                    SetElementList::Set(set.into()),
                    SetElementList::Elements(
                        chunk.iter().cloned().map(ListAttribute::Element).collect(),
                    ),
                ],
            };
            if add {
                NfTablesMessage::NewSetElement(m)
            } else {
                NfTablesMessage::DeleteSetElement(m)
            }
        })
        .collect()
}

fn rule_element(e: &FilterElement) -> Vec<SetElementAttribute> {
    let (key, end) = element_keys(e);
    vec![
        SetElementAttribute::Key(DataAttribute::Value(key)),
        SetElementAttribute::KeyEnd(vec![DefaultNla::new(NFTA_DATA_VALUE, end)]),
    ]
}

fn mark_key(mark: u32) -> SetElementAttribute {
    SetElementAttribute::Key(DataAttribute::Value(mark.to_ne_bytes().to_vec()))
}

fn jump(chain: &str) -> SetElementAttribute {
    SetElementAttribute::Data(DataAttribute::Verdict(vec![
        VerdictAttribute::Code(Verdict::Jump),
        VerdictAttribute::Chain(chain.into()),
    ]))
}

/// `meta <key> vmap @map`.
fn vmap(key: MetaKey, map: &str, id: u32) -> Vec<Expr> {
    vec![
        meta(key, Register::Reg1),
        Expressions::Lookup(vec![
            Lookup::Set(map.into()),
            Lookup::SetId(id),
            Lookup::SourceRegister(Register::Reg1),
            Lookup::DestinationRegister(Register::Verdict),
        ])
        .into(),
    ]
}

/// `meta mark set 0 meta priority set 0`: the ports' numbers do not leave
/// the filter.
fn clear_ports() -> Vec<Expr> {
    let zero = |key| {
        [
            Expressions::Immediate(vec![
                Immediate::DestinationRegister(Register::Reg1),
                Immediate::Data(DataAttribute::Value(vec![0; 4])),
            ])
            .into(),
            Expressions::Meta(vec![Meta::Key(key), Meta::SourceRegister(Register::Reg1)]).into(),
        ]
    };
    let mut e: Vec<Expr> = zero(MetaKey::Mark).into();
    e.extend(zero(MetaKey::Priority));
    e
}

/// The forward chain's rules. The bridge table gave the packet its ports'
/// numbers: the port it comes from as its mark, the port it goes to as
/// its priority (0: not a VM port, the tunnel). Packets of a tracked
/// connection pass; the others are judged by the egress chain of the port
/// they come from (which returns when it allows them) and the ingress
/// chain of the port they go to. Packets conntrack calls invalid are
/// judged by the rules like new ones, not dropped: a host on an asymmetric
/// path (an LVS director forwarding to a backend on another host, which
/// answers the client directly) sees one direction of the connection only.
fn forward_rules() -> Vec<NfTablesMessage> {
    let r = |e: Vec<Expr>| rule_in(SG_TABLE, "forward", e);
    let mut established = vec![
        ct(CT_STATE, Register::Reg1),
        mask(
            Register::Reg1,
            CT_ESTABLISHED_RELATED.to_ne_bytes().to_vec(),
        ),
        cmp(Register::Reg1, Operator::NotEqual, vec![0; 4]),
    ];
    established.extend(clear_ports());
    established.push(accept());
    let mut neither = clear_ports();
    neither.push(accept());
    vec![
        r(established),
        r(vmap(MetaKey::Mark, EGRESS, 3)),
        r(vmap(MetaKey::Priority, INGRESS, 2)),
        r(neither),
    ]
}

/// The ip table's fixed part (set IDs 1–5).
fn ip_body() -> Vec<NfTablesMessage> {
    let counted = |name: &str, id: u32, key_type: u32| {
        set_msg(
            SG_TABLE,
            name,
            id,
            vec![
                SetAttribute::Flags(SetFlags::Expression),
                SetAttribute::KeyType(key_type),
                SetAttribute::KeyLen(4),
                SetAttribute::ListExpressions(vec![
                    Expressions::Other {
                        expression_type: "counter".into(),
                        attributes: vec![],
                    }
                    .into(),
                ]),
            ],
        )
    };
    let vmap = |name: &str, id: u32, key_type: u32| {
        set_msg(
            SG_TABLE,
            name,
            id,
            vec![
                SetAttribute::Flags(SetFlags::Map),
                SetAttribute::KeyType(key_type),
                SetAttribute::KeyLen(4),
                SetAttribute::DataType(NFT_DATA_VERDICT),
            ],
        )
    };
    let mut msgs = table_msgs();
    msgs.push(set_msg(
        SG_TABLE,
        ZONE,
        1,
        vec![
            SetAttribute::Flags(SetFlags::Map),
            SetAttribute::KeyType(TYPE_IFNAME),
            SetAttribute::KeyLen(16),
            // A zone: 16 bits in host byte order, as `ct zone` takes it.
            SetAttribute::DataType(TYPE_INTEGER),
            SetAttribute::DataLen(2),
            SetAttribute::UserData(ZONE_TYPEOF.to_vec()),
        ],
    ));
    // Keyed by the port number the bridge put in the packet's priority:
    // typed as nft types `meta priority` (classid) so the listing reloads.
    let mut ingress = vmap(INGRESS, 2, TYPE_CLASSID);
    if let NfTablesMessage::NewSet(m) = &mut ingress {
        m.attributes
            .push(SetAttribute::UserData(INGRESS_TYPEOF.to_vec()));
    }
    msgs.push(ingress);
    msgs.push(with_host_order_keys(vmap(EGRESS, 3, TYPE_MARK)));
    let mut drops_in = counted(DROPS_IN, 4, TYPE_CLASSID);
    if let NfTablesMessage::NewSet(m) = &mut drops_in {
        m.attributes
            .push(SetAttribute::UserData(PRIORITY_KEY_TYPEOF.to_vec()));
    }
    msgs.push(drops_in);
    msgs.push(with_host_order_keys(counted(DROPS_OUT, 5, TYPE_MARK)));
    msgs.push(filter_chain_in(
        SG_TABLE,
        "raw",
        InetHookNumber::PreRouting,
        -300,
    ));
    msgs.push(filter_chain_in(
        SG_TABLE,
        "pre",
        InetHookNumber::PreRouting,
        0,
    ));
    msgs.push(filter_chain_in(
        SG_TABLE,
        "forward",
        InetHookNumber::Forward,
        0,
    ));
    // ct zone set iifname map @zone
    let ct_set = Expressions::Other {
        expression_type: "ct".into(),
        attributes: vec![
            DefaultNla::new(2, CT_ZONE.to_be_bytes().to_vec()), // NFTA_CT_KEY
            DefaultNla::new(4, u32::from(Register::Reg1).to_be_bytes().to_vec()), // NFTA_CT_SREG
        ],
    };
    // The tunnel's own packets (VXLAN, UDP 4789, to and from the host, not
    // bridged) are not tracked: conntrack would see every packet twice,
    // outer and inner.
    let vxlan = || crate::expr::udp_port_is(2, 4789);
    let mut e = vec![
        meta(MetaKey::Iifname, Register::Reg1),
        lookup(ZONE, 1, Register::Reg1, crate::expr::NOT_IN),
    ];
    e.extend(vxlan());
    e.push(crate::expr::notrack());
    msgs.push(rule_in(SG_TABLE, "raw", e));
    msgs.push(filter_chain_in(
        SG_TABLE,
        "rawout",
        InetHookNumber::LocalOut,
        -300,
    ));
    let mut e = vxlan();
    e.push(crate::expr::notrack());
    msgs.push(rule_in(SG_TABLE, "rawout", e));
    msgs.push(rule_in(
        SG_TABLE,
        "raw",
        vec![
            meta(MetaKey::Iifname, Register::Reg1),
            Expressions::Lookup(vec![
                Lookup::Set(ZONE.into()),
                Lookup::SetId(1),
                Lookup::SourceRegister(Register::Reg1),
                Lookup::DestinationRegister(Register::Reg1),
            ])
            .into(),
            ct_set.into(),
        ],
    ));
    msgs.extend(forward_rules());
    msgs
}

/// The bridge table, whole: `meta mark set 0; meta mark set iifname map
/// @port_mark; meta priority set oifname map @port_prio` at the start of
/// forward.
fn bridge_body() -> Vec<NfTablesMessage> {
    let t = || TableMessage {
        attributes: vec![TableAttribute::Name(SGMARK_TABLE.into())],
    };
    let mut msgs = vec![
        NfTablesMessage::NewTable(t()),
        NfTablesMessage::DeleteTable(t()),
        NfTablesMessage::NewTable(t()),
        with_host_order_data(with_host_order_keys(set_msg(
            SGMARK_TABLE,
            PORT_MARK,
            1,
            vec![
                SetAttribute::Flags(SetFlags::Map),
                SetAttribute::KeyType(TYPE_IFNAME),
                SetAttribute::KeyLen(16),
                SetAttribute::DataType(TYPE_MARK),
                SetAttribute::DataLen(4),
            ],
        ))),
        set_msg(
            SGMARK_TABLE,
            PORT_PRIO,
            2,
            vec![
                SetAttribute::Flags(SetFlags::Map),
                SetAttribute::KeyType(TYPE_IFNAME),
                SetAttribute::KeyLen(16),
                SetAttribute::DataType(TYPE_CLASSID),
                SetAttribute::DataLen(4),
                SetAttribute::UserData(PORT_PRIO_TYPEOF.to_vec()),
            ],
        ),
    ];
    msgs.push(filter_chain_in(
        SGMARK_TABLE,
        "forward",
        InetHookNumber::Forward,
        -350,
    ));
    let set_from_map = |from: MetaKey, map: &str, id: u32, to: MetaKey| {
        rule_in(
            SGMARK_TABLE,
            "forward",
            vec![
                meta(from, Register::Reg1),
                Expressions::Lookup(vec![
                    Lookup::Set(map.into()),
                    Lookup::SetId(id),
                    Lookup::SourceRegister(Register::Reg1),
                    Lookup::DestinationRegister(Register::Reg1),
                ])
                .into(),
                Expressions::Meta(vec![Meta::Key(to), Meta::SourceRegister(Register::Reg1)]).into(),
            ],
        )
    };
    msgs.push(rule_in(SGMARK_TABLE, "forward", clear_ports()));
    msgs.push(set_from_map(MetaKey::Iifname, PORT_MARK, 1, MetaKey::Mark));
    msgs.push(set_from_map(
        MetaKey::Oifname,
        PORT_PRIO,
        2,
        MetaKey::Priority,
    ));
    msgs
}

/// A port chain and its rules.
fn port_chain(
    name: &str,
    spec: &ChainSpec,
    set_ids: &BTreeMap<String, u32>,
) -> Vec<NfTablesMessage> {
    let mut msgs = vec![NfTablesMessage::NewChain(ChainMessage {
        attributes: vec![
            ChainAttribute::Table(SG_TABLE.into()),
            ChainAttribute::Name(name.into()),
        ],
    })];
    let remote_offset = match spec.way {
        Way::Ingress => 12,
        Way::Egress => 16,
    };
    let r = |e: Vec<Expr>| rule_in(SG_TABLE, name, e);
    // Allowed: out of the port, on to the ingress check (return); into
    // it, through.
    let pass = || -> Vec<Expr> {
        match spec.way {
            Way::Egress => vec![ret()],
            Way::Ingress => {
                let mut e = clear_ports();
                e.push(accept());
                e
            }
        }
    };
    for set in &spec.sets {
        let mut e = vec![
            payload(NETWORK_HEADER, 9, 1, Register::Reg32_00),
            payload(TRANSPORT_HEADER, 2, 2, Register::Reg32_01),
            payload(NETWORK_HEADER, remote_offset, 4, Register::Reg32_02),
            lookup(
                set,
                set_ids.get(set).copied().unwrap_or(0),
                Register::Reg32_00,
                0,
            ),
        ];
        e.extend(pass());
        msgs.push(r(e));
    }
    let vrrp = || {
        vec![
            payload(NETWORK_HEADER, 9, 1, Register::Reg1),
            cmp(Register::Reg1, Operator::Equal, vec![PROTO_VRRP]),
        ]
    };
    match spec.way {
        Way::Ingress => {
            for peer in &spec.vrrp {
                let mut e = vrrp();
                e.push(payload(NETWORK_HEADER, 12, 4, Register::Reg1));
                e.push(cmp(Register::Reg1, Operator::Equal, peer.octets().to_vec()));
                e.extend(pass());
                msgs.push(r(e));
            }
        }
        Way::Egress if !spec.vrrp.is_empty() => {
            let mut e = vrrp();
            e.extend(pass());
            msgs.push(r(e));
        }
        Way::Egress => {}
    }
    let (drops, id, key) = match spec.way {
        Way::Ingress => (DROPS_IN, 4, MetaKey::Priority),
        Way::Egress => (DROPS_OUT, 5, MetaKey::Mark),
    };
    msgs.push(r(vec![
        meta(key, Register::Reg1),
        lookup(drops, id, Register::Reg1, 0),
    ]));
    msgs.push(r(vec![drop()]));
    msgs
}

impl NatTable {
    /// What the filter's tables hold; None when either is missing or of
    /// an older shape.
    pub fn read_filter(&mut self) -> Result<Option<FilterSeen>, SysError> {
        let ip = NetfilterProtoFamily::IPv4;
        let bridge = NetfilterProtoFamily::Bridge;
        if !self.has_set(ip, SG_TABLE, DROPS_OUT)?
            || !self.has_set(bridge, SGMARK_TABLE, PORT_PRIO)?
        {
            return Ok(None);
        }
        let mut seen = FilterSeen::default();
        let mut ok = self.dump_set(bridge, SGMARK_TABLE, PORT_MARK, |k, v, _| {
            if let Some(v) = v.and_then(|v| <[u8; 4]>::try_from(v).ok()) {
                seen.marks.insert(ifname_of(k), u32::from_ne_bytes(v));
            }
        })?;
        // The two port maps hold the same numbers; if they do not, the
        // table is made anew.
        let mut prios = BTreeMap::new();
        ok &= self.dump_set(bridge, SGMARK_TABLE, PORT_PRIO, |k, v, _| {
            if let Some(v) = v.and_then(|v| <[u8; 4]>::try_from(v).ok()) {
                prios.insert(ifname_of(k), u32::from_ne_bytes(v));
            }
        })?;
        if ok && prios != seen.marks {
            return Ok(None);
        }
        // (A zone map of an older shape held 32-bit values typed mark,
        // which `nft -f` refused: made anew.)
        let mut older = false;
        ok &= self.dump_set(ip, SG_TABLE, ZONE, |k, v, _| {
            match v.map(<[u8; 2]>::try_from) {
                Some(Ok(v)) => {
                    seen.zones.insert(ifname_of(k), u16::from_ne_bytes(v));
                }
                Some(Err(_)) => older = true,
                None => {}
            }
        })?;
        if older {
            return Ok(None);
        }
        ok &= self.dump_set(ip, SG_TABLE, DROPS_IN, |k, _, _| {
            if let Ok(m) = <[u8; 4]>::try_from(k) {
                seen.counted.insert(u32::from_ne_bytes(m));
            }
        })?;
        let chains = self.chain_names(ip, SG_TABLE)?;
        seen.chains = chains
            .iter()
            .filter(|c| parse_chain_name(c).is_some())
            .cloned()
            .collect();
        for set in self.set_names(ip, SG_TABLE)? {
            if !(set.starts_with("in_") || set.starts_with("out_")) {
                continue;
            }
            let mut elements = BTreeSet::new();
            let mut foreign = false;
            ok &= self.dump_set(ip, SG_TABLE, &set, |k, _, raw| {
                let end = attrs(raw)
                    .find(|(t, _)| *t == NFTA_SET_ELEM_KEY_END)
                    .and_then(|(_, v)| attrs(v).find(|(t, _)| *t == NFTA_DATA_VALUE))
                    .map(|(_, v)| v.to_vec());
                match end.and_then(|end| element_of(k, &end)) {
                    Some(e) => {
                        elements.insert(e);
                    }
                    None => foreign = true,
                }
            })?;
            if foreign {
                // Something vpcip did not write: make the set again.
                elements.insert(FilterElement {
                    proto_min: 255,
                    proto_max: 0,
                    port_min: 0,
                    port_max: 0,
                    remote_min: Ipv4Addr::BROADCAST,
                    remote_max: Ipv4Addr::UNSPECIFIED,
                });
            }
            seen.sets.insert(set, elements);
        }
        if !ok {
            return Err(SysError::Parse("the filter changed while it was read"));
        }
        Ok(Some(seen))
    }

    /// Makes the filter's tables anew (an older shape goes), holding
    /// `want`.
    pub fn make_filter(&mut self, want: &FilterWant) -> Result<(), SysError> {
        let mut msgs = ip_body();
        msgs.extend(self.filter_changes(&FilterSeen::default(), want, 6));
        self.transact_in(NetfilterProtoFamily::IPv4, msgs, &[], &[], NLM_F_CREATE)?;
        let mut msgs = bridge_body();
        msgs.extend(mark_changes(&BTreeMap::new(), &want.marks));
        self.transact_in(NetfilterProtoFamily::Bridge, msgs, &[], &[], NLM_F_CREATE)
    }

    /// Turns the filter from `have` into `want`: one transaction for the
    /// `ip` table (sets, chains and maps together, so that no packet sees
    /// a port half changed), then one for the ports' marks.
    pub fn change_filter(&mut self, have: &FilterSeen, want: &FilterWant) -> Result<(), SysError> {
        let msgs = self.filter_changes(have, want, 1);
        if !msgs.is_empty() {
            self.transact_in(NetfilterProtoFamily::IPv4, msgs, &[], &[], NLM_F_CREATE)?;
        }
        let marks = mark_changes(&have.marks, &want.marks);
        if !marks.is_empty() {
            self.transact_in(NetfilterProtoFamily::Bridge, marks, &[], &[], NLM_F_CREATE)?;
        }
        Ok(())
    }

    fn filter_changes(
        &mut self,
        have: &FilterSeen,
        want: &FilterWant,
        first_id: u32,
    ) -> Vec<NfTablesMessage> {
        let mut msgs = Vec::new();
        let mut next_id = first_id.max(6);
        let mut set_ids = BTreeMap::new();
        // Group sets: new ones made, elements of the others changed.
        for (name, elements) in &want.sets {
            let old = have.sets.get(name);
            if old.is_none() {
                set_ids.insert(name.clone(), next_id);
                msgs.push(group_set(name, next_id));
                next_id += 1;
            }
            let empty = BTreeSet::new();
            let old = old.unwrap_or(&empty);
            let gone: Vec<_> = old.difference(elements).map(rule_element).collect();
            let new: Vec<_> = elements.difference(old).map(rule_element).collect();
            if !gone.is_empty() {
                msgs.extend(elements_msg(SG_TABLE, name, false, gone));
            }
            if !new.is_empty() {
                msgs.extend(elements_msg(SG_TABLE, name, true, new));
            }
        }
        // Zones.
        let zone_elem = |bridge: &str, zone: Option<u16>| {
            let mut e = vec![SetElementAttribute::Key(DataAttribute::Value(ifname_key(
                bridge,
            )))];
            if let Some(z) = zone {
                e.push(SetElementAttribute::Data(DataAttribute::Value(
                    z.to_ne_bytes().to_vec(),
                )));
            }
            e
        };
        let zones_gone: Vec<_> = have
            .zones
            .iter()
            .filter(|(b, z)| want.zones.get(*b) != Some(z))
            .map(|(b, _)| zone_elem(b, None))
            .collect();
        let zones_new: Vec<_> = want
            .zones
            .iter()
            .filter(|(b, z)| have.zones.get(*b) != Some(z))
            .map(|(b, z)| zone_elem(b, Some(*z)))
            .collect();
        if !zones_gone.is_empty() {
            msgs.extend(elements_msg(SG_TABLE, ZONE, false, zones_gone));
        }
        if !zones_new.is_empty() {
            msgs.extend(elements_msg(SG_TABLE, ZONE, true, zones_new));
        }
        // Drop counters: one per port mark, in both directions.
        let counted: BTreeSet<u32> = want.marks.values().copied().collect();
        let drop_gone: Vec<_> = have
            .counted
            .difference(&counted)
            .map(|m| vec![mark_key(*m)])
            .collect();
        let drop_new: Vec<_> = counted
            .difference(&have.counted)
            .map(|m| vec![mark_key(*m)])
            .collect();
        for set in [DROPS_IN, DROPS_OUT] {
            if !drop_new.is_empty() {
                msgs.extend(elements_msg(SG_TABLE, set, true, drop_new.clone()));
            }
        }
        // Port chains: the map elements of chains that go are removed, new
        // chains made and pointed at, then the old chains deleted.
        let old_chains: BTreeMap<(Way, u32), &String> = have
            .chains
            .iter()
            .filter_map(|n| parse_chain_name(n).map(|k| (k, n)))
            .collect();
        let map_of = |way: Way| match way {
            Way::Ingress => INGRESS,
            Way::Egress => EGRESS,
        };
        for ((way, mark), name) in &old_chains {
            if !want.chains.contains_key(*name) {
                msgs.extend(elements_msg(
                    SG_TABLE,
                    map_of(*way),
                    false,
                    vec![vec![mark_key(*mark)]],
                ));
            }
        }
        for (name, spec) in &want.chains {
            if have.chains.contains(name) {
                continue;
            }
            msgs.extend(port_chain(name, spec, &set_ids));
            msgs.extend(elements_msg(
                SG_TABLE,
                map_of(spec.way),
                true,
                vec![vec![mark_key(spec.mark), jump(name)]],
            ));
        }
        for name in old_chains.values() {
            if !want.chains.contains_key(*name) {
                msgs.push(NfTablesMessage::DeleteChain(ChainMessage {
                    attributes: vec![
                        ChainAttribute::Table(SG_TABLE.into()),
                        ChainAttribute::Name((*name).clone()),
                    ],
                }));
            }
        }
        for set in [DROPS_IN, DROPS_OUT] {
            if !drop_gone.is_empty() {
                msgs.extend(elements_msg(SG_TABLE, set, false, drop_gone.clone()));
            }
        }
        // Sets no chain uses any more.
        for name in have.sets.keys() {
            if !want.sets.contains_key(name) {
                msgs.push(delete_set(SG_TABLE, name));
            }
        }
        msgs
    }

    /// Each VM port's dropped packets, by port name (none when the filter
    /// is not there).
    pub fn read_port_drops(&mut self) -> Result<BTreeMap<String, Drops>, SysError> {
        if !self.has_set(NetfilterProtoFamily::Bridge, SGMARK_TABLE, PORT_MARK)? {
            return Ok(BTreeMap::new());
        }
        let mut marks = BTreeMap::new();
        self.dump_set(
            NetfilterProtoFamily::Bridge,
            SGMARK_TABLE,
            PORT_MARK,
            |k, v, _| {
                if let Some(v) = v.and_then(|v| <[u8; 4]>::try_from(v).ok()) {
                    marks.insert(u32::from_ne_bytes(v), ifname_of(k));
                }
            },
        )?;
        let by_mark = self.read_filter_drops()?;
        Ok(marks
            .into_iter()
            .map(|(m, port)| (port, by_mark.get(&m).copied().unwrap_or_default()))
            .collect())
    }

    /// Each port's dropped packets, by mark.
    pub fn read_filter_drops(&mut self) -> Result<BTreeMap<u32, Drops>, SysError> {
        let mut out: BTreeMap<u32, Drops> = BTreeMap::new();
        for (set, ingress) in [(DROPS_IN, true), (DROPS_OUT, false)] {
            self.dump_set(NetfilterProtoFamily::IPv4, SG_TABLE, set, |k, _, raw| {
                let (Ok(m), Some((packets, _))) = (<[u8; 4]>::try_from(k), counter_of(raw)) else {
                    return;
                };
                let d = out.entry(u32::from_ne_bytes(m)).or_default();
                if ingress {
                    d.packets_in = packets;
                } else {
                    d.packets_out = packets;
                }
            })?;
        }
        Ok(out)
    }
}

fn mark_changes(
    have: &BTreeMap<String, u32>,
    want: &BTreeMap<String, u32>,
) -> Vec<NfTablesMessage> {
    let elem = |port: &str, mark: Option<u32>| {
        let mut e = vec![SetElementAttribute::Key(DataAttribute::Value(ifname_key(
            port,
        )))];
        if let Some(m) = mark {
            e.push(SetElementAttribute::Data(DataAttribute::Value(
                m.to_ne_bytes().to_vec(),
            )));
        }
        e
    };
    let gone: Vec<_> = have
        .iter()
        .filter(|(p, m)| want.get(*p) != Some(m))
        .map(|(p, _)| elem(p, None))
        .collect();
    let new: Vec<_> = want
        .iter()
        .filter(|(p, m)| have.get(*p) != Some(m))
        .map(|(p, m)| elem(p, Some(*m)))
        .collect();
    let mut msgs = Vec::new();
    for map in [PORT_MARK, PORT_PRIO] {
        if !gone.is_empty() {
            msgs.extend(elements_msg(SGMARK_TABLE, map, false, gone.clone()));
        }
        if !new.is_empty() {
            msgs.extend(elements_msg(SGMARK_TABLE, map, true, new.clone()));
        }
    }
    msgs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_elements_read_back_as_written() {
        for remote in ["0.0.0.0/0", "10.0.0.0/8", "10.1.2.3/32", "192.0.2.128/25"] {
            let e = FilterElement::new((6, 6), (80, 443), remote.parse().unwrap());
            let (k, end) = element_keys(&e);
            assert_eq!(element_of(&k, &end), Some(e), "{remote}");
        }
    }
}
