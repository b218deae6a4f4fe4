//! Set elements encoded by hand (the typed encoder took ~180 ms for
//! 200,000 elements), and netlink attributes.

use super::*;

/// Appends a typed message to a batch under the next sequence number.
pub(super) fn push_message(
    buf: &mut Vec<u8>,
    m: &mut NetlinkMessage<NetfilterMessage>,
    seq: &mut u32,
) {
    *seq = seq.wrapping_add(1);
    m.header.sequence_number = *seq;
    m.finalize();
    let start = buf.len();
    buf.resize(start + m.buffer_len(), 0);
    m.serialize(&mut buf[start..]);
}

/// Elements to add to or remove from one map (of an `ip` table).
pub struct ElementChange<'a> {
    pub table: &'a str,
    pub map: &'a str,
    pub add: bool,
    pub pairs: &'a [(Ipv4Addr, Ipv4Addr)],
}

pub(super) const NFT_MSG_DELSETELEM: u8 = 14;
pub(super) const NLA_F_NESTED: u16 = 0x8000;
pub(super) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(super) const NFTA_SET_ELEM_LIST_SET: u16 = 2;

/// A netlink attribute's length field. Messages are kept far under 64 KiB
/// (`ELEMENTS_PER_MESSAGE`), so it always fits.
pub(super) fn nla_len(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

pub(crate) fn put_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&nla_len(len).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + ((4 - len % 4) % 4), 0);
}

pub(crate) fn put_str(buf: &mut Vec<u8>, kind: u16, s: &str) {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    put_attr(buf, kind, &v);
}

/// NEWSETELEM / DELSETELEM messages for `change`, at most
/// ELEMENTS_PER_MESSAGE elements each, appended to `buf`: the same bytes as
/// netlink-packet-netfilter's `SetElementMessage` (checked by a test).
pub fn encode_elements(buf: &mut Vec<u8>, seq: &mut u32, change: &ElementChange<'_>, flags: u16) {
    let msg_type = (NFNL_SUBSYS_NFTABLES << 8)
        | u16::from(if change.add {
            NFT_MSG_NEWSETELEM
        } else {
            NFT_MSG_DELSETELEM
        });
    for chunk in change.pairs.chunks(ELEMENTS_PER_MESSAGE) {
        *seq = seq.wrapping_add(1);
        let start = buf.len();
        buf.extend_from_slice(&[0; 4]); // length, set below
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port
        buf.extend_from_slice(&[2, 0, 0, 0]); // nfgenmsg: NFPROTO_IPV4, version 0, res_id 0
        put_str(buf, NFTA_SET_ELEM_LIST_TABLE, change.table);
        put_str(buf, NFTA_SET_ELEM_LIST_SET, change.map);
        let list_len = 4 + chunk.len() * 28;
        buf.extend_from_slice(&nla_len(list_len).to_ne_bytes());
        buf.extend_from_slice(&(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED).to_ne_bytes());
        for (k, v) in chunk {
            buf.extend_from_slice(&28u16.to_ne_bytes());
            buf.extend_from_slice(&(NFTA_LIST_ELEM | NLA_F_NESTED).to_ne_bytes());
            for (kind, addr) in [(NFTA_SET_ELEM_KEY, k), (NFTA_SET_ELEM_DATA, v)] {
                buf.extend_from_slice(&12u16.to_ne_bytes());
                buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
                buf.extend_from_slice(&8u16.to_ne_bytes());
                buf.extend_from_slice(&NFTA_DATA_VALUE.to_ne_bytes());
                buf.extend_from_slice(&addr.octets());
            }
        }
        let len = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
        buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }
}

/// Keys to add to or remove from a set of IPv4 addresses (an `ip` table).
pub struct KeyChange<'a> {
    pub table: &'a str,
    pub set: &'a str,
    pub add: bool,
    /// A removal of a key that may be missing (DESTROYSETELEM: the kernel
    /// does not refuse the batch for it), as in sets the packet path fills.
    pub missing_ok: bool,
    pub keys: &'a [Ipv4Addr],
}

/// NEWSETELEM / DELSETELEM (or DESTROYSETELEM) messages for keys without
/// data, like [`encode_elements`].
pub fn encode_keys(buf: &mut Vec<u8>, seq: &mut u32, change: &KeyChange<'_>, flags: u16) {
    const NFT_MSG_DESTROYSETELEM: u8 = 30;
    let msg_type = (NFNL_SUBSYS_NFTABLES << 8)
        | u16::from(match (change.add, change.missing_ok) {
            (true, _) => NFT_MSG_NEWSETELEM,
            (false, false) => NFT_MSG_DELSETELEM,
            (false, true) => NFT_MSG_DESTROYSETELEM,
        });
    for chunk in change.keys.chunks(ELEMENTS_PER_MESSAGE) {
        *seq = seq.wrapping_add(1);
        let start = buf.len();
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&[2, 0, 0, 0]); // NFPROTO_IPV4
        put_str(buf, NFTA_SET_ELEM_LIST_TABLE, change.table);
        put_str(buf, NFTA_SET_ELEM_LIST_SET, change.set);
        let list_len = 4 + chunk.len() * 16;
        buf.extend_from_slice(&nla_len(list_len).to_ne_bytes());
        buf.extend_from_slice(&(NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED).to_ne_bytes());
        for k in chunk {
            buf.extend_from_slice(&16u16.to_ne_bytes());
            buf.extend_from_slice(&(NFTA_LIST_ELEM | NLA_F_NESTED).to_ne_bytes());
            buf.extend_from_slice(&12u16.to_ne_bytes());
            buf.extend_from_slice(&(NFTA_SET_ELEM_KEY | NLA_F_NESTED).to_ne_bytes());
            buf.extend_from_slice(&8u16.to_ne_bytes());
            buf.extend_from_slice(&NFTA_DATA_VALUE.to_ne_bytes());
            buf.extend_from_slice(&k.octets());
        }
        let len = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
        buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_netfilter::nftables::{DataAttribute, ListAttribute, SetElementAttribute};

    /// The hand encoder writes exactly what the typed one does.
    #[test]
    fn element_encoding_matches_the_typed_encoder() {
        let pairs: Vec<(Ipv4Addr, Ipv4Addr)> = (0..3000u32)
            .map(|i| {
                (
                    Ipv4Addr::from(0xcb00_7100 + i),
                    Ipv4Addr::from(0x0a00_0000 + i),
                )
            })
            .collect();
        for add in [true, false] {
            let mut ours = Vec::new();
            let mut seq = 7;
            encode_elements(
                &mut ours,
                &mut seq,
                &ElementChange {
                    table: TABLE,
                    map: DNAT_MAP,
                    add,
                    pairs: &pairs,
                },
                NLM_F_CREATE,
            );
            assert_eq!(seq, 9, "two messages of at most {ELEMENTS_PER_MESSAGE}");
            let mut theirs = Vec::new();
            let mut seq = 7u32;
            for chunk in pairs.chunks(ELEMENTS_PER_MESSAGE) {
                let msg = SetElementMessage {
                    attributes: vec![
                        SetElementList::Table(TABLE.into()),
                        SetElementList::Set(DNAT_MAP.into()),
                        SetElementList::Elements(
                            chunk
                                .iter()
                                .map(|(k, v)| {
                                    ListAttribute::Element(vec![
                                        SetElementAttribute::Key(DataAttribute::Value(
                                            k.octets().to_vec(),
                                        )),
                                        SetElementAttribute::Data(DataAttribute::Value(
                                            v.octets().to_vec(),
                                        )),
                                    ])
                                })
                                .collect(),
                        ),
                    ],
                };
                let inner = if add {
                    NfTablesMessage::NewSetElement(msg)
                } else {
                    NfTablesMessage::DeleteSetElement(msg)
                };
                let mut m = nft_message(NetfilterProtoFamily::IPv4, inner, NLM_F_CREATE);
                seq += 1;
                m.header.sequence_number = seq;
                m.finalize();
                let start = theirs.len();
                theirs.resize(start + m.buffer_len(), 0);
                m.serialize(&mut theirs[start..]);
            }
            assert_eq!(ours.len(), theirs.len());
            assert!(ours == theirs, "encodings differ (add = {add})");
        }
    }
}
