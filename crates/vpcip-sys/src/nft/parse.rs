//! A small parser of nftables answers (the crate's typed parser is
//! quadratic in message size; docs/decisions.md, "Reading large sets").

use super::*;

pub(super) enum DumpState {
    More,
    Done,
    /// The set changed while it was dumped (NLM_F_DUMP_INTR): dump again.
    Interrupted,
}

pub(super) const NLM_F_DUMP_INTR: u16 = 0x10;

pub(super) fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    b.get(i..i + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]))
}

pub(super) fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    b.get(i..i + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// One netlink message of a received datagram.
pub(crate) struct Received<'a> {
    pub(crate) ty: u16,
    pub(crate) flags: u16,
    pub(crate) payload: &'a [u8],
}

/// The netlink messages of a datagram.
pub(crate) fn messages(data: &[u8]) -> Result<Vec<Received<'_>>, SysError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 16 <= data.len() {
        let len = u32_at(data, i).unwrap_or(0) as usize;
        if len < 16 || i + len > data.len() {
            return Err(SysError::Parse("truncated netlink message"));
        }
        out.push(Received {
            ty: u16_at(data, i + 4).unwrap_or(0),
            flags: u16_at(data, i + 6).unwrap_or(0),
            payload: &data[i + 16..i + len],
        });
        i += (len + 3) & !3;
    }
    Ok(out)
}

/// The acknowledgements and errors in a datagram: (sequence, errno).
pub(super) fn acks(data: &[u8]) -> Result<Vec<(u32, i32)>, SysError> {
    let mut out = Vec::new();
    for Received { ty, payload, .. } in messages(data)? {
        if ty == 2 {
            // NLMSG_ERROR: errno, then the header of the request it answers.
            let err = u32_at(payload, 0)
                .ok_or(SysError::Parse("short NLMSG_ERROR"))?
                .cast_signed();
            let seq = u32_at(payload, 4 + 8).ok_or(SysError::Parse("short NLMSG_ERROR"))?;
            out.push((seq, err));
        }
    }
    Ok(out)
}

/// Attributes of a netlink attribute stream: (type without flags, value).
pub(crate) fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    raw_attrs(b).map(|(ty, _, value)| (ty, value))
}

/// Attributes of a netlink attribute stream with their own bytes: (type
/// without flags, the whole attribute, value). The one attribute parser of
/// the crate (nftables and conntrack answers).
pub(crate) fn raw_attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(b, 0)? as usize;
        let ty = u16_at(b, 2)? & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let whole = &b[..len];
        let value = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, whole, value))
    })
}

pub(super) fn data_value(nested: &[u8]) -> Option<&[u8]> {
    attrs(nested)
        .find(|(t, _)| *t == NFTA_DATA_VALUE)
        .map(|(_, v)| v)
}

/// Gives each set element of a dump datagram (key, data) to `each`.
pub(super) fn parse_elements(
    data: &[u8],
    interrupted: &mut bool,
    each: &mut impl FnMut(&[u8], Option<&[u8]>, &[u8]),
) -> Result<DumpState, SysError> {
    for Received { ty, flags, payload } in messages(data)? {
        *interrupted |= flags & NLM_F_DUMP_INTR != 0;
        match ty {
            3 if *interrupted => return Ok(DumpState::Interrupted),
            3 => return Ok(DumpState::Done), // NLMSG_DONE
            2 => {
                let err = u32_at(payload, 0).unwrap_or(0).cast_signed();
                if err != 0 {
                    return Err(SysError::Kernel {
                        what: "nftables dump",
                        errno: -err,
                    });
                }
                return Ok(DumpState::Done);
            }
            t if t & 0xff == u16::from(NFT_MSG_NEWSETELEM) => {
                // Skip the 4-byte nfgenmsg.
                let body = payload.get(4..).unwrap_or_default();
                for (t, list) in attrs(body) {
                    if t != NFTA_SET_ELEM_LIST_ELEMENTS {
                        continue;
                    }
                    for (t, elem) in attrs(list) {
                        if t != NFTA_LIST_ELEM {
                            continue;
                        }
                        let (mut key, mut val) = (None, None);
                        let raw = elem;
                        for (t, v) in attrs(elem) {
                            match t {
                                NFTA_SET_ELEM_KEY => key = data_value(v),
                                NFTA_SET_ELEM_DATA => val = data_value(v),
                                _ => {}
                            }
                        }
                        if let Some(k) = key {
                            each(k, val, raw);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(DumpState::More)
}
