//! The VRRPv3 advertisement for IPv4 (RFC 5798 §5.1):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                       IPv4 Address(es)                        |
//! ```
//!
//! The checksum: RFC 5798 computes it over an IP pseudo-header and the
//! message; keepalived 2.2.7 does so, while some speakers sum the message
//! alone (as VRRPv2 did). We send keepalived's way unless told otherwise,
//! and accept both.

use std::net::Ipv4Addr;

/// IANA's protocol number for VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The VRRP multicast group for IPv4.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const VERSION: u8 = 3;
const TYPE_ADVERTISEMENT: u8 = 1;
const HEADER: usize = 8;

/// How the checksum covers the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumMode {
    /// Over the IPv4 pseudo-header and the message (RFC 5798; keepalived).
    PseudoHeader,
    /// Over the message alone (some other speakers).
    MessageOnly,
}

/// One advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    /// 255: the address owner; 0: the master is stopping.
    pub priority: u8,
    /// Centiseconds (12 bits: up to 4095).
    pub max_advert_cs: u16,
    pub addrs: Vec<Ipv4Addr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("VRRP packet of {0} bytes is shorter than its header or its addresses")]
    Short(usize),
    #[error("VRRP version {0} (only version 3 is spoken)")]
    Version(u8),
    #[error("VRRP type {0} is not an advertisement (1)")]
    Type(u8),
    #[error("VRRP advertisement lists no address")]
    NoAddress,
    #[error(
        "VRRP checksum {got:#06x} matches neither the pseudo-header sum {pseudo:#06x} nor the message sum {message:#06x}"
    )]
    Checksum { got: u16, pseudo: u16, message: u16 },
}

fn ones_sum(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // Folded: it fits in 16 bits.
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

/// The checksum of `msg` (its checksum field taken as zero).
pub fn checksum(msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr, mode: ChecksumMode) -> u16 {
    let mut zeroed = msg.to_vec();
    if zeroed.len() >= HEADER {
        zeroed[6] = 0;
        zeroed[7] = 0;
    }
    let mut sum = 0;
    if mode == ChecksumMode::PseudoHeader {
        sum = ones_sum(sum, &src.octets());
        sum = ones_sum(sum, &dst.octets());
        sum = ones_sum(sum, &[0, IPPROTO_VRRP]);
        sum = ones_sum(
            sum,
            &u16::try_from(msg.len()).unwrap_or(u16::MAX).to_be_bytes(),
        );
    }
    fold(ones_sum(sum, &zeroed))
}

impl Advert {
    /// The message (the IP payload) sent from `src` to `dst`.
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr, mode: ChecksumMode) -> Vec<u8> {
        let count = self.addrs.len().min(255);
        let mut msg = Vec::with_capacity(HEADER + 4 * count);
        msg.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        msg.push(self.vrid);
        msg.push(self.priority);
        msg.push(u8::try_from(count).unwrap_or(u8::MAX));
        msg.extend_from_slice(&(self.max_advert_cs & 0x0fff).to_be_bytes());
        msg.extend_from_slice(&[0, 0]);
        for a in &self.addrs[..count] {
            msg.extend_from_slice(&a.octets());
        }
        let c = checksum(&msg, src, dst, mode);
        msg[6..8].copy_from_slice(&c.to_be_bytes());
        msg
    }

    /// Parses a message received from `src` to `dst`; accepts either
    /// checksum and says which one it carried.
    pub fn decode(
        msg: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<(Advert, ChecksumMode), DecodeError> {
        if msg.len() < HEADER {
            return Err(DecodeError::Short(msg.len()));
        }
        let (version, kind) = (msg[0] >> 4, msg[0] & 0x0f);
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        if kind != TYPE_ADVERTISEMENT {
            return Err(DecodeError::Type(kind));
        }
        let count = usize::from(msg[3]);
        if count == 0 {
            return Err(DecodeError::NoAddress);
        }
        if msg.len() < HEADER + 4 * count {
            return Err(DecodeError::Short(msg.len()));
        }
        // The checksum covers the message as long as its header says.
        let msg = &msg[..HEADER + 4 * count];
        let got = u16::from_be_bytes([msg[6], msg[7]]);
        let pseudo = checksum(msg, src, dst, ChecksumMode::PseudoHeader);
        let message = checksum(msg, src, dst, ChecksumMode::MessageOnly);
        let mode = if got == pseudo {
            ChecksumMode::PseudoHeader
        } else if got == message {
            ChecksumMode::MessageOnly
        } else {
            return Err(DecodeError::Checksum {
                got,
                pseudo,
                message,
            });
        };
        let addrs = msg[HEADER..]
            .chunks_exact(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect();
        Ok((
            Advert {
                vrid: msg[1],
                priority: msg[2],
                max_advert_cs: u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff,
                addrs,
            },
            mode,
        ))
    }
}

/// A gratuitous ARP request announcing `ip` at `mac`.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f.resize(60, 0);
    f
}

/// (source, TTL, payload) of an IPv4 packet.
pub fn parse_ip(pkt: &[u8]) -> Option<(Ipv4Addr, u8, &[u8])> {
    let ihl = usize::from(pkt.first()? & 0x0f) * 4;
    if pkt.len() < ihl || ihl < 20 || pkt[9] != IPPROTO_VRRP {
        return None;
    }
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    Some((src, pkt[8], &pkt[ihl..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever is encoded decodes to itself, with either checksum;
        /// decoding never panics on arbitrary bytes.
        #[test]
        fn encode_decode_round_trip(
            vrid in 1u8..=255,
            priority in any::<u8>(),
            cs in 0u16..4096,
            addrs in proptest::collection::vec(any::<u32>(), 1..20),
            src in any::<u32>(),
            pseudo in any::<bool>(),
            junk in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let adv = Advert {
                vrid,
                priority,
                max_advert_cs: cs,
                addrs: addrs.into_iter().map(Ipv4Addr::from).collect(),
            };
            let mode = if pseudo { ChecksumMode::PseudoHeader } else { ChecksumMode::MessageOnly };
            let src = Ipv4Addr::from(src);
            let bytes = adv.encode(src, GROUP, mode);
            let (back, _) = Advert::decode(&bytes, src, GROUP).unwrap();
            prop_assert_eq!(back, adv);
            let _ = Advert::decode(&junk, src, GROUP);
        }
    }
}
