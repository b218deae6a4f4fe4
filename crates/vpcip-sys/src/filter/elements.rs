//! The filter's sets and their elements, as netlink messages: group sets
//! of rule elements, port names and marks as keys, jumps as data.

use std::net::Ipv4Addr;

use netlink_packet_core::DefaultNla;
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetAttribute, SetDescription,
    SetElementAttribute, SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute,
    TableMessage, Verdict, VerdictAttribute,
};
use vpcip_model::filter::FilterElement;

use super::{IFNAMSIZ, NFTA_DATA_VALUE, SG_TABLE, TYPE_RULE};

pub(super) fn ifname_key(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.resize(IFNAMSIZ, 0);
    k
}

pub(super) fn ifname_of(key: &[u8]) -> String {
    let name = key.get(..IFNAMSIZ).unwrap_or(key);
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

/// A rule element's key and key end: each field padded to 4 bytes.
pub(super) fn element_keys(e: &FilterElement) -> (Vec<u8>, Vec<u8>) {
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
pub(super) fn element_of(key: &[u8], end: &[u8]) -> Option<FilterElement> {
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
pub(super) fn table_msgs() -> Vec<NfTablesMessage> {
    let t = |name: &str| TableMessage {
        attributes: vec![TableAttribute::Name(name.into())],
    };
    vec![
        NfTablesMessage::NewTable(t(SG_TABLE)),
        NfTablesMessage::DeleteTable(t(SG_TABLE)),
        NfTablesMessage::NewTable(t(SG_TABLE)),
    ]
}

pub(super) fn set_msg(
    table: &str,
    name: &str,
    id: u32,
    extra: Vec<SetAttribute>,
) -> NfTablesMessage {
    let mut attributes = vec![
        SetAttribute::Table(table.into()),
        SetAttribute::Name(name.into()),
        SetAttribute::Id(id),
    ];
    attributes.extend(extra);
    NfTablesMessage::NewSet(SetMessage { attributes })
}

/// A group's set: `inet_proto . inet_service . ipv4_addr`, intervals.
pub(super) fn group_set(name: &str, id: u32) -> NfTablesMessage {
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

pub(super) fn delete_set(table: &str, name: &str) -> NfTablesMessage {
    NfTablesMessage::DeleteSet(SetMessage {
        attributes: vec![
            SetAttribute::Table(table.into()),
            SetAttribute::Name(name.into()),
        ],
    })
}

/// Element messages: `(key, key end, data)` each.
pub(super) fn elements_msg(
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

pub(super) fn rule_element(e: &FilterElement) -> Vec<SetElementAttribute> {
    let (key, end) = element_keys(e);
    vec![
        SetElementAttribute::Key(DataAttribute::Value(key)),
        SetElementAttribute::KeyEnd(vec![DefaultNla::new(NFTA_DATA_VALUE, end)]),
    ]
}

pub(super) fn mark_key(mark: u32) -> SetElementAttribute {
    SetElementAttribute::Key(DataAttribute::Value(mark.to_ne_bytes().to_vec()))
}

/// A VM port's key in the `ingress` and `egress` maps: its bridge's name
/// padded to 16 bytes, its MAC to 8.
pub(super) fn port_mac_key(bridge: &str, mac: [u8; 6]) -> SetElementAttribute {
    let mut k = ifname_key(bridge);
    k.extend_from_slice(&mac);
    k.extend_from_slice(&[0, 0]);
    SetElementAttribute::Key(DataAttribute::Value(k))
}

/// The bridge and MAC of a `port_mac_key`.
pub(super) fn port_mac_of(key: &[u8]) -> Option<(String, [u8; 6])> {
    let mac = <[u8; 6]>::try_from(key.get(IFNAMSIZ..IFNAMSIZ + 6)?).ok()?;
    Some((ifname_of(key), mac))
}

pub(super) fn jump(chain: &str) -> SetElementAttribute {
    SetElementAttribute::Data(DataAttribute::Verdict(vec![
        VerdictAttribute::Code(Verdict::Jump),
        VerdictAttribute::Chain(chain.into()),
    ]))
}
