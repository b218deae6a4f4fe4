//! nftables sets of raw keys in any table: the set itself, element changes
//! (chunked under the element list's 16-bit length), a flush, and a read
//! of what a set holds. The tables that use them give the keys meaning.

use std::collections::BTreeSet;

use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetAttribute, SetElementAttribute,
    SetElementFlags, SetElementList, SetElementMessage, SetFlags, SetMessage,
};

use crate::SysError;
use crate::nft::{NatTable, attrs};

/// Elements per message, well under the 64 KiB element list.
const ELEMENTS_PER_MESSAGE: usize = 1000;
const NFTA_SET_ELEM_FLAGS: u16 = 3;

/// One set element as it is sent and read: its key, and whether it ends an
/// interval (interval sets only).
pub(crate) type Element = (Vec<u8>, bool);

/// A set of `table`: `key_type` is nftables' data type (concatenations
/// packed 6 bits each), `key_len` the key's length with each part padded
/// to 4 bytes.
pub(crate) fn new_set(
    table: &str,
    name: &str,
    id: u32,
    flags: SetFlags,
    key_type: u32,
    key_len: u32,
) -> NfTablesMessage {
    NfTablesMessage::NewSet(SetMessage {
        attributes: vec![
            SetAttribute::Table(table.into()),
            SetAttribute::Name(name.into()),
            SetAttribute::Flags(flags),
            SetAttribute::KeyType(key_type),
            SetAttribute::KeyLen(key_len),
            SetAttribute::Id(id),
        ],
    })
}

/// Messages adding (or removing) `elements` to a set.
pub(crate) fn change_elements(
    table: &str,
    set: &str,
    add: bool,
    elements: &[Element],
) -> Vec<NfTablesMessage> {
    elements
        .chunks(ELEMENTS_PER_MESSAGE)
        .map(|chunk| {
            let msg = SetElementMessage {
                attributes: vec![
                    SetElementList::Table(table.into()),
                    SetElementList::Set(set.into()),
                    SetElementList::Elements(
                        chunk
                            .iter()
                            .map(|(k, end)| {
                                let mut e =
                                    vec![SetElementAttribute::Key(DataAttribute::Value(k.clone()))];
                                if *end {
                                    e.push(SetElementAttribute::Flags(
                                        SetElementFlags::IntervalEnd,
                                    ));
                                }
                                ListAttribute::Element(e)
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
        })
        .collect()
}

/// `set`'s description for `nft list`: its keys are strings in host byte
/// order (nft's `NFTNL_UDATA_SET_KEYBYTEORDER`, as nft writes it for `type
/// ifname`); without it nft shows each interface name as "".
pub(crate) fn with_host_order_keys(mut set: NfTablesMessage) -> NfTablesMessage {
    if let NfTablesMessage::NewSet(m) = &mut set {
        m.attributes.push(SetAttribute::UserData(vec![
            0x00, 0x04, 0x01, 0x00, 0x00, 0x00,
        ]));
    }
    set
}

/// A message removing every element of a set.
pub(crate) fn flush(table: &str, set: &str) -> NfTablesMessage {
    NfTablesMessage::DeleteSetElement(SetElementMessage {
        attributes: vec![
            SetElementList::Table(table.into()),
            SetElementList::Set(set.into()),
        ],
    })
}

/// Messages turning `have` into `want`: removals first, then additions.
pub(crate) fn converge_elements(
    table: &str,
    set: &str,
    have: &BTreeSet<Element>,
    want: &BTreeSet<Element>,
) -> (Vec<NfTablesMessage>, usize) {
    let remove: Vec<Element> = have.difference(want).cloned().collect();
    let add: Vec<Element> = want.difference(have).cloned().collect();
    let n = remove.len() + add.len();
    let mut msgs = Vec::new();
    if !remove.is_empty() {
        msgs.extend(change_elements(table, set, false, &remove));
    }
    if !add.is_empty() {
        msgs.extend(change_elements(table, set, true, &add));
    }
    (msgs, n)
}

impl NatTable {
    /// What a set holds, read again while the kernel says a dump was
    /// interrupted.
    pub(crate) fn read_elements(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        set: &str,
    ) -> Result<BTreeSet<Element>, SysError> {
        for _ in 0..10 {
            let mut out = BTreeSet::new();
            let whole = self.dump_set(family, table, set, |k, _, raw| {
                let end = attrs(raw)
                    .find(|(t, _)| *t == NFTA_SET_ELEM_FLAGS)
                    .and_then(|(_, v)| <[u8; 4]>::try_from(v).ok())
                    .is_some_and(|f| u32::from_be_bytes(f) & 1 != 0);
                out.insert((k.to_vec(), end));
            })?;
            if whole {
                return Ok(out);
            }
        }
        Err(SysError::Parse("a set kept changing while it was read"))
    }
}
