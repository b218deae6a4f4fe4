//! The filter's tables' fixed parts (the `ip` table's sets, chains and
//! forward rules; the bridge table, whole) and each port's chain.

use std::collections::BTreeMap;

use netlink_packet_core::DefaultNla;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, Expressions, Immediate, InetHookNumber, Lookup,
    Meta, MetaKey, NfTablesMessage, Operator, Register, SetAttribute, SetElementAttribute,
    SetElementFlags, SetFlags, TableAttribute, TableMessage,
};
use vpcip_dataplane::filter::{ChainSpec, Way};
use vpcip_model::filter::PROTO_VRRP;

use super::elements::{elements_msg, set_msg, table_msgs};
use super::*;
use crate::expr::{
    Expr, NETWORK_HEADER, TRANSPORT_HEADER, accept, cmp, ct, drop, lookup, mask, meta, payload, ret,
};
use crate::nft::{filter_chain_in, rule_in};
use crate::sets::{with_host_order_data, with_host_order_keys};

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
pub(super) fn ip_body() -> Vec<NfTablesMessage> {
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
    // A bridge's packets: their zone, and done (one lookup a packet).
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
            accept(),
        ],
    ));
    // The tunnel's own packets (VXLAN, UDP 4789, to and from the host, not
    // bridged) are not tracked: conntrack would see every packet twice,
    // outer and inner.
    let vxlan = || crate::expr::udp_port_is(2, 4789);
    let mut e = vxlan();
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
    msgs.extend(forward_rules());
    msgs
}

/// The bridge table, whole: `meta mark set iifname map @port_mark; meta
/// priority set oifname map @port_prio` at the start of forward, each map
/// with a catch-all element `* : 0` (not a VM port), so that every frame
/// gets both numbers in two look-ups and no rule clears them first.
pub(super) fn bridge_body() -> Vec<NfTablesMessage> {
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
    for map in [PORT_MARK, PORT_PRIO] {
        msgs.extend(elements_msg(
            SGMARK_TABLE,
            map,
            true,
            vec![vec![
                SetElementAttribute::Flags(SetElementFlags::CatchAll),
                SetElementAttribute::Data(DataAttribute::Value(vec![0; 4])),
            ]],
        ));
    }
    msgs.push(filter_chain_in(
        SGMARK_TABLE,
        PORTS_CHAIN,
        InetHookNumber::Forward,
        -350,
    ));
    let set_from_map = |from: MetaKey, map: &str, id: u32, to: MetaKey| {
        rule_in(
            SGMARK_TABLE,
            PORTS_CHAIN,
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
pub(super) fn port_chain(
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
