//! Counter values as the kernel dumps them in set elements.

use crate::nft::attrs;

/// The packets and bytes of a `counter` expression among an element's
/// attributes (NFTA_SET_ELEM_EXPR, or a list of them).
///
/// Checked against bytes the kernel sent (see the test below).
pub(crate) fn counter_of(elem: &[u8]) -> Option<(u64, u64)> {
    const NFTA_SET_ELEM_EXPR: u16 = 7;
    const NFTA_SET_ELEM_EXPRESSIONS: u16 = 10;
    fn expr(e: &[u8]) -> Option<(u64, u64)> {
        let mut name = None;
        let mut data = None;
        for (t, v) in attrs(e) {
            match t {
                1 => name = Some(v),
                2 => data = Some(v),
                _ => {}
            }
        }
        if name? != b"counter\0" {
            return None;
        }
        let (mut bytes, mut packets) = (0, 0);
        for (t, v) in attrs(data?) {
            // NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS (and a padding
            // attribute, skipped).
            let n = || {
                v.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
            };
            match t {
                1 => bytes = n()?,
                2 => packets = n()?,
                _ => {}
            }
        }
        Some((packets, bytes))
    }
    for (t, v) in attrs(elem) {
        match t {
            NFTA_SET_ELEM_EXPR => return expr(v),
            NFTA_SET_ELEM_EXPRESSIONS => {
                if let Some(c) = attrs(v).find_map(|(_, e)| expr(e)) {
                    return Some(c);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An element of `eip_in` as the kernel dumped it (203.0.113.1, 473
    /// bytes in 7 packets).
    #[test]
    fn counters_parse_from_a_real_dump() {
        let elem: &[u8] = &[
            0x0c, 0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x00, 0xcb, 0x00, 0x71, 0x01, 0x2c, 0x00,
            0x07, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x63, 0x6f, 0x75, 0x6e, 0x74, 0x65, 0x72, 0x00,
            0x1c, 0x00, 0x02, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x01, 0xd9, 0x0c, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
        ];
        assert_eq!(counter_of(elem), Some((7, 473)));
    }
}
