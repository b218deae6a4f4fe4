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
    Expr, LINK_HEADER, NETWORK_HEADER, TRANSPORT_HEADER, accept, cmp, ct, drop, lookup, mask, meta,
    payload, ret,
};
use crate::nft::{filter_chain_in, rule_in};
use crate::sets::with_host_order_keys;

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

/// The key in register 1 looked up in a data map, its value into register 1.
fn map_in_reg1(map: &str, id: u32) -> Expr {
    Expressions::Lookup(vec![
        Lookup::Set(map.into()),
        Lookup::SetId(id),
        Lookup::SourceRegister(Register::Reg1),
        Lookup::DestinationRegister(Register::Reg1),
    ])
    .into()
}

/// `<meta key> . ether <saddr|daddr> vmap @map`: a VM port found by its
/// bridge and MAC (the MAC at `mac_offset` in the Ethernet header).
fn port_mac_vmap(key: MetaKey, mac_offset: u32, map: &str, id: u32) -> Vec<Expr> {
    vec![
        // `meta iiftype ether`, the dependency nft writes before `ether
        // saddr` in the ip family (and reads back as that).
        meta(MetaKey::Iftype, Register::Reg1),
        cmp(
            Register::Reg1,
            Operator::Equal,
            ARPHRD_ETHER.to_ne_bytes().to_vec(),
        ),
        meta(key, Register::Reg32_00),
        payload(LINK_HEADER, mac_offset, 6, Register::Reg32_04),
        Expressions::Lookup(vec![
            Lookup::Set(map.into()),
            Lookup::SetId(id),
            Lookup::SourceRegister(Register::Reg32_00),
            Lookup::DestinationRegister(Register::Verdict),
        ])
        .into(),
    ]
}

/// Ethernet, as `meta iiftype` gives it.
const ARPHRD_ETHER: u16 = 1;

/// `ether daddr & 01:00:00:00:00:00 != 0`: a multicast or broadcast frame
/// (the group bit of its destination).
fn to_group() -> Vec<Expr> {
    vec![
        payload(LINK_HEADER, 0, 1, Register::Reg1),
        mask(Register::Reg1, vec![1]),
        cmp(Register::Reg1, Operator::NotEqual, vec![0]),
    ]
}

/// The forward chain's rules. Packets of a tracked connection pass; the
/// others are judged by the egress chain of the VM port they come from
/// (which returns when it allows them) and the ingress chain of the port
/// they go to. In the `ip` hooks the bridge is both the input and the
/// output device, so a port is found by its bridge and its MAC: the
/// sender's source MAC (the port guards pin each port's), the receiver's
/// destination MAC (the bridge sends a unicast frame out of a VM port
/// only when addressed to the MAC pinned there: no unknown unicast goes
/// out of one). Multicast and broadcast go to several ports at once: the
/// bridge table numbered them by the port they go to, as the packet's
/// priority. Packets conntrack calls invalid are judged by the rules like
/// new ones, not dropped: a host on an asymmetric path (an LVS director
/// forwarding to a backend on another host, which answers the client
/// directly) sees one direction of the connection only.
fn forward_rules() -> Vec<NfTablesMessage> {
    let r = |e: Vec<Expr>| rule_in(SG_TABLE, "forward", e);
    let established = vec![
        ct(CT_STATE, Register::Reg1),
        mask(
            Register::Reg1,
            CT_ESTABLISHED_RELATED.to_ne_bytes().to_vec(),
        ),
        cmp(Register::Reg1, Operator::NotEqual, vec![0; 4]),
        accept(),
    ];
    let mut multicast = to_group();
    multicast.extend(vmap(MetaKey::Priority, MC_INGRESS, 6));
    vec![
        r(established),
        r(port_mac_vmap(MetaKey::Iifname, 6, EGRESS, 3)),
        r(port_mac_vmap(MetaKey::Oifname, 0, INGRESS, 2)),
        r(multicast),
        // Neither side is a VM port.
        r(vec![accept()]),
    ]
}

/// The ip table's fixed part (set IDs 1–6).
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
    let port_mac = |name: &str, id: u32| {
        set_msg(
            SG_TABLE,
            name,
            id,
            vec![
                SetAttribute::Flags(SetFlags::Map),
                SetAttribute::KeyType(TYPE_PORT_MAC),
                SetAttribute::KeyLen(PORT_MAC_KEY_LEN),
                SetAttribute::DataType(NFT_DATA_VERDICT),
            ],
        )
    };
    msgs.push(port_mac(INGRESS, 2));
    msgs.push(port_mac(EGRESS, 3));
    msgs.push(with_host_order_keys(counted(DROPS_IN, 4, TYPE_MARK)));
    msgs.push(with_host_order_keys(counted(DROPS_OUT, 5, TYPE_MARK)));
    // Keyed by the port number the bridge put in a multicast packet's
    // priority: typed as nft types `meta priority` (classid) so the
    // listing reloads.
    let mut mc = vmap(MC_INGRESS, 6, TYPE_CLASSID);
    if let NfTablesMessage::NewSet(m) = &mut mc {
        m.attributes
            .push(SetAttribute::UserData(INGRESS_TYPEOF.to_vec()));
    }
    msgs.push(mc);
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
            map_in_reg1(ZONE, 1),
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

/// The bridge table, whole: a multicast or broadcast frame's priority set
/// to the number of the port it goes to (`port_prio`, whose catch-all
/// element `* : 0` stands for every other port); a unicast frame takes
/// one test of its destination's group bit and nothing else.
pub(super) fn bridge_body() -> Vec<NfTablesMessage> {
    let t = || TableMessage {
        attributes: vec![TableAttribute::Name(SGMARK_TABLE.into())],
    };
    let mut msgs = vec![
        NfTablesMessage::NewTable(t()),
        NfTablesMessage::DeleteTable(t()),
        NfTablesMessage::NewTable(t()),
        set_msg(
            SGMARK_TABLE,
            PORT_PRIO,
            1,
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
    msgs.extend(elements_msg(
        SGMARK_TABLE,
        PORT_PRIO,
        true,
        vec![vec![
            SetElementAttribute::Flags(SetElementFlags::CatchAll),
            SetElementAttribute::Data(DataAttribute::Value(vec![0; 4])),
        ]],
    ));
    msgs.push(filter_chain_in(
        SGMARK_TABLE,
        MULTICAST_CHAIN,
        InetHookNumber::Forward,
        -350,
    ));
    let mut e = to_group();
    e.extend([
        meta(MetaKey::Oifname, Register::Reg1),
        map_in_reg1(PORT_PRIO, 1),
        Expressions::Meta(vec![
            Meta::Key(MetaKey::Priority),
            Meta::SourceRegister(Register::Reg1),
        ])
        .into(),
    ]);
    msgs.push(rule_in(SGMARK_TABLE, MULTICAST_CHAIN, e));
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
            Way::Ingress => vec![accept()],
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
    // Counted by the port's number, then dropped: `meta mark set <n> meta
    // mark @drops_<way>; drop` (the mark of a packet that goes no further).
    let (drops, id) = match spec.way {
        Way::Ingress => (DROPS_IN, 4),
        Way::Egress => (DROPS_OUT, 5),
    };
    msgs.push(r(vec![
        Expressions::Immediate(vec![
            Immediate::DestinationRegister(Register::Reg1),
            Immediate::Data(DataAttribute::Value(spec.mark.to_ne_bytes().to_vec())),
        ])
        .into(),
        Expressions::Meta(vec![
            Meta::Key(MetaKey::Mark),
            Meta::SourceRegister(Register::Reg1),
        ])
        .into(),
        meta(MetaKey::Mark, Register::Reg1),
        lookup(drops, id, Register::Reg1, 0),
    ]));
    // (Its own rule: a missing counter never lets a packet through.)
    msgs.push(r(vec![drop()]));
    msgs
}
