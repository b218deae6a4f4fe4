//! nftables sets of raw keys in any table: the set itself, element changes
//! (chunked under the element list's 16-bit length), a flush, and a read
//! of what a set holds. The tables that use them give the keys meaning.

use std::collections::BTreeSet;

use netlink_packet_core::NLM_F_CREATE;
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetAttribute, SetElementAttribute,
    SetElementFlags, SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute,
    TableMessage,
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
fn change_elements(
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

/// `set`'s description for `nft list`: its data (a map's values: marks,
/// zones) are in host byte order (nft's `NFTNL_UDATA_SET_DATABYTEORDER`);
/// without it nft shows mark 1 as 0x01000000.
pub(crate) fn with_host_order_data(mut set: NfTablesMessage) -> NfTablesMessage {
    if let NfTablesMessage::NewSet(m) = &mut set {
        // Appended to the keys' entry when there is one.
        let entry = [0x01, 0x04, 0x01, 0x00, 0x00, 0x00];
        if let Some(SetAttribute::UserData(u)) = m
            .attributes
            .iter_mut()
            .find(|a| matches!(a, SetAttribute::UserData(_)))
        {
            u.extend_from_slice(&entry);
        } else {
            m.attributes.push(SetAttribute::UserData(entry.to_vec()));
        }
    }
    set
}

/// A message removing every element of a set.
fn flush(table: &str, set: &str) -> NfTablesMessage {
    NfTablesMessage::DeleteSetElement(SetElementMessage {
        attributes: vec![
            SetElementList::Table(table.into()),
            SetElementList::Set(set.into()),
        ],
    })
}

/// Messages turning `have` into `want`: removals first, then additions.
fn converge_elements(
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

/// What each set of a table must hold: (set, elements).
pub(crate) type SetContents = Vec<(&'static str, BTreeSet<Element>)>;

impl NatTable {
    /// Makes `table` anew unless it already has the set `marker` (the last
    /// one its current shape adds): in one transaction an older table goes,
    /// and one of `body` (sets, chains, rules) holding `contents` takes its
    /// place, so that no packet sees it empty. True when it was made.
    pub(crate) fn ensure_table(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        marker: &str,
        body: Vec<NfTablesMessage>,
        contents: &SetContents,
    ) -> Result<bool, SysError> {
        if self.has_set(family, table, marker)? {
            return Ok(false);
        }
        self.make_table(family, table, body, contents)?;
        Ok(true)
    }

    /// Makes `table` anew from `body` and `contents`, in one transaction
    /// (an older one goes in it).
    pub(crate) fn make_table(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        body: Vec<NfTablesMessage>,
        contents: &SetContents,
    ) -> Result<(), SysError> {
        let t = || TableMessage {
            attributes: vec![TableAttribute::Name(table.into())],
        };
        let mut msgs = vec![
            NfTablesMessage::NewTable(t()),
            NfTablesMessage::DeleteTable(t()),
            NfTablesMessage::NewTable(t()),
        ];
        msgs.extend(body);
        for (set, want) in contents {
            msgs.extend(converge_elements(table, set, &BTreeSet::new(), want).0);
        }
        self.transact_in(family, msgs, &[], &[], NLM_F_CREATE)
    }

    /// Makes each set of `table` hold what `contents` gives, from what the
    /// kernel holds now, in one transaction; the sets named in `whole`
    /// (interval sets, whose elements cannot be changed one by one safely)
    /// are rewritten whole when they differ. Returns the number of elements
    /// added or removed.
    pub(crate) fn converge_sets(
        &mut self,
        family: NetfilterProtoFamily,
        table: &str,
        contents: &SetContents,
        whole: &[&str],
    ) -> Result<usize, SysError> {
        let mut msgs = Vec::new();
        let mut n = 0;
        for (set, want) in contents {
            let have = self.read_elements(family, table, set)?;
            if &have == want {
                continue;
            }
            let (m, k) = if whole.contains(set) {
                msgs.push(flush(table, set));
                let (m, _) = converge_elements(table, set, &BTreeSet::new(), want);
                (m, have.symmetric_difference(want).count())
            } else {
                converge_elements(table, set, &have, want)
            };
            msgs.extend(m);
            n += k;
        }
        if !msgs.is_empty() {
            self.transact_in(family, msgs, &[], &[], NLM_F_CREATE)?;
        }
        Ok(n)
    }

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
