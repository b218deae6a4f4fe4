//! Per-EIP bandwidth: an HTB qdisc (handle `1:`) at the root of a device
//! vpcip owns, with one leaf class `1:<minor>` per EIP, over rtnetlink.
//!
//! Packets are not classified by tc filters: nftables sets each packet's
//! `skb->priority` to its EIP's class id from a map (a hash lookup), and
//! HTB takes a priority that names one of its leaf classes as the class (a
//! hash lookup too). So the cost per packet does not grow with the number
//! of limited EIPs, and a packet of no EIP (priority 0) leaves directly,
//! unshaped (`default 0`). HTB shapes (it queues and paces), so TCP gets
//! its rate without a policer's drop storms, and a packet larger than the
//! bucket (a GSO super-packet, or full-size frames under a tiny limit) is
//! sent on credit rather than dropped: no MTU/burst trap.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use futures_util::stream;
use rtnetlink::packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_REPLACE, Nla};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption, TcStats2};

use crate::SysError;
use crate::link::Net;

/// The HTB qdisc's handle major.
pub const HTB_MAJOR: u16 = 1;

const TCA_HTB_PARMS: u16 = 1;
const TCA_HTB_INIT: u16 = 2;
const TCA_HTB_RATE64: u16 = 6;
const TCA_HTB_CEIL64: u16 = 7;
const TC_HTB_PROTOVER: u32 = 3;
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// Requests in flight at once when many classes change.
const IN_FLIGHT: usize = 256;

pub use vpcip_dataplane::gateway::class_id;

/// One leaf class as the kernel has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassState {
    /// Rate (and ceiling), bytes per second.
    pub rate: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Packets the class's queue dropped (the limiter's drops).
    pub drops: u64,
}

pub use vpcip_dataplane::routing::ClassChange;

/// The bucket: 10 ms at the rate, and never under 4 full-size frames, so
/// that a small limit passes full-size packets at its rate (HTB sends a
/// packet larger than what is left on credit, so even a larger one is not
/// dropped).
fn burst_bytes(rate: u64) -> u64 {
    (rate / 100).max(4 * 1514)
}

/// HTB's `buffer`/`cbuffer`: the bucket as time at the rate, in the
/// scheduler's ticks (64 ns).
fn ticks(bytes: u64, rate: u64) -> u32 {
    let ns = u128::from(bytes) * 1_000_000_000 / u128::from(rate.max(1));
    u32::try_from(ns / 64).unwrap_or(u32::MAX)
}

/// `struct tc_ratespec` (12 bytes): rate in bytes/s, 32 bits (the full
/// rate goes in TCA_HTB_RATE64 when it does not fit).
fn ratespec(rate: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[1] = TC_LINKLAYER_ETHERNET;
    b[8..12].copy_from_slice(&u32::try_from(rate).unwrap_or(u32::MAX).to_ne_bytes());
    b
}

/// `struct tc_htb_opt` for a leaf class whose rate is its ceiling (no
/// borrowing: the limit is the limit).
fn htb_opt(rate: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(44);
    b.extend_from_slice(&ratespec(rate));
    b.extend_from_slice(&ratespec(rate));
    let buffer = ticks(burst_bytes(rate), rate);
    b.extend_from_slice(&buffer.to_ne_bytes()); // buffer
    b.extend_from_slice(&buffer.to_ne_bytes()); // cbuffer
    b.extend_from_slice(&1514u32.to_ne_bytes()); // quantum
    b.extend_from_slice(&0u32.to_ne_bytes()); // level
    b.extend_from_slice(&0u32.to_ne_bytes()); // prio
    b
}

fn header(index: u32, handle: TcHandle, parent: TcHandle) -> TcMessage {
    let mut m = TcMessage::default();
    m.header.index = index.cast_signed();
    m.header.handle = handle;
    m.header.parent = parent;
    m
}

fn handle(minor: u16) -> TcHandle {
    TcHandle {
        major: HTB_MAJOR,
        minor,
    }
}

fn nla_value(n: &impl Nla) -> Vec<u8> {
    let mut v = vec![0u8; n.value_len()];
    n.emit_value(&mut v);
    v
}

/// The rate (bytes/s) in an HTB class's options.
fn rate_of(options: &[u8]) -> Option<u64> {
    let mut rate = None;
    for (kind, value) in crate::nft::attrs(options) {
        match kind & 0x3fff {
            TCA_HTB_PARMS if value.len() >= 12 => {
                rate = rate.or(Some(u64::from(u32::from_ne_bytes(
                    value[8..12].try_into().ok()?,
                ))));
            }
            TCA_HTB_RATE64 if value.len() >= 8 => {
                return Some(u64::from_ne_bytes(value[..8].try_into().ok()?));
            }
            _ => {}
        }
    }
    rate
}

impl Net {
    /// Whether `index` has vpcip's HTB qdisc at its root.
    pub fn has_htb(&self, index: u32) -> Result<bool, SysError> {
        let qdiscs: Vec<TcMessage> = self.rt.block_on(async {
            self.handle
                .qdisc()
                .get()
                .index(index.cast_signed())
                .execute()
                .filter_map(|m| async move { m.ok() })
                .collect()
                .await
        });
        Ok(qdiscs.iter().any(|q| {
            q.header.index == index.cast_signed()
                && q.header.parent == TcHandle::ROOT
                && q.header.handle == handle(0)
                && q.attributes
                    .iter()
                    .any(|a| matches!(a, TcAttribute::Kind(k) if k == "htb"))
        }))
    }

    /// Puts vpcip's HTB qdisc at the root of `index` (replacing what was
    /// there, and with it every class): unclassified packets leave
    /// directly.
    pub fn add_htb(&self, index: u32) -> Result<(), SysError> {
        // HTB cannot be changed in place: an HTB already there goes first.
        if self.has_htb(index)? {
            self.rt.block_on(self.acked(
                RouteNetlinkMessage::DelQueueDiscipline(header(index, handle(0), TcHandle::ROOT)),
                0,
                "remove the HTB qdisc",
            ))?;
        }
        let mut m = header(index, handle(0), TcHandle::ROOT);
        let mut glob = Vec::with_capacity(20);
        for v in [TC_HTB_PROTOVER, 10, 0, 0, 0] {
            // version, rate2quantum, default class (none: direct), debug,
            // direct_pkts
            glob.extend_from_slice(&v.to_ne_bytes());
        }
        m.attributes.push(TcAttribute::Kind("htb".into()));
        m.attributes.push(TcAttribute::Options(vec![TcOption::Other(
            DefaultNla::new(TCA_HTB_INIT, glob),
        )]));
        self.rt.block_on(self.acked(
            RouteNetlinkMessage::NewQueueDiscipline(m),
            NLM_F_CREATE | NLM_F_REPLACE,
            "add the HTB qdisc",
        ))
    }

    /// The leaf classes of vpcip's HTB qdisc on `index`, by minor.
    pub fn htb_classes(&self, index: u32) -> Result<BTreeMap<u16, ClassState>, SysError> {
        let msgs: Vec<TcMessage> = self
            .rt
            .block_on(
                self.handle
                    .traffic_class(index.cast_signed())
                    .get()
                    .execute()
                    .collect::<Vec<_>>(),
            )
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| match e {
                rtnetlink::Error::NetlinkError(m) => SysError::Kernel {
                    what: "list HTB classes",
                    errno: m.raw_code().abs(),
                },
                _ => SysError::Kernel {
                    what: "list HTB classes",
                    errno: 5,
                },
            })?;
        let mut out = BTreeMap::new();
        for m in msgs {
            if m.header.handle.major != HTB_MAJOR || m.header.handle.minor == 0 {
                continue;
            }
            let mut c = ClassState::default();
            let mut htb = false;
            for a in &m.attributes {
                match a {
                    TcAttribute::Kind(k) => htb = k == "htb",
                    TcAttribute::Options(opts) => {
                        for o in opts {
                            if let Some(r) = rate_of(&nla_value(o)) {
                                c.rate = r;
                            }
                        }
                    }
                    TcAttribute::Stats2(stats) => {
                        for s in stats {
                            match s {
                                TcStats2::Basic(b) => {
                                    c.bytes = b.bytes;
                                    c.packets = u64::from(b.packets);
                                }
                                TcStats2::Queue(q) => c.drops = u64::from(q.drops),
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            if htb {
                out.insert(m.header.handle.minor, c);
            }
        }
        Ok(out)
    }

    /// Applies class changes on `index`, many requests in flight at once;
    /// stops at the first refusal.
    pub fn htb_apply(&self, index: u32, changes: &[ClassChange]) -> Result<(), SysError> {
        let requests = changes.iter().map(|c| {
            let (msg, flags, what) = match *c {
                ClassChange::Set { minor, rate } => {
                    let mut m = header(index, handle(minor), handle(0));
                    m.attributes.push(TcAttribute::Kind("htb".into()));
                    let mut opts = vec![TcOption::Other(DefaultNla::new(
                        TCA_HTB_PARMS,
                        htb_opt(rate),
                    ))];
                    if rate > u64::from(u32::MAX) {
                        for kind in [TCA_HTB_RATE64, TCA_HTB_CEIL64] {
                            opts.push(TcOption::Other(DefaultNla::new(
                                kind,
                                rate.to_ne_bytes().to_vec(),
                            )));
                        }
                    }
                    m.attributes.push(TcAttribute::Options(opts));
                    (
                        RouteNetlinkMessage::NewTrafficClass(m),
                        NLM_F_CREATE | NLM_F_REPLACE,
                        "set an HTB class",
                    )
                }
                ClassChange::Remove { minor } => (
                    RouteNetlinkMessage::DelTrafficClass(header(index, handle(minor), handle(0))),
                    0,
                    "remove an HTB class",
                ),
            };
            self.acked(msg, flags, what)
        });
        self.rt.block_on(async {
            let mut results = stream::iter(requests).buffer_unordered(IN_FLIGHT);
            while let Some(r) = results.next().await {
                r?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_options_carry_the_rate_and_a_bucket_of_whole_frames() {
        // 10 Mbit/s: 1,250,000 bytes/s; the bucket is 10 ms of it, 12,500
        // bytes, 156,250 ticks of 64 ns.
        let o = htb_opt(1_250_000);
        assert_eq!(o.len(), 44);
        assert_eq!(u32::from_ne_bytes(o[8..12].try_into().unwrap()), 1_250_000);
        assert_eq!(u32::from_ne_bytes(o[20..24].try_into().unwrap()), 1_250_000);
        assert_eq!(o[1], TC_LINKLAYER_ETHERNET);
        assert_eq!(u32::from_ne_bytes(o[24..28].try_into().unwrap()), 156_250);
        // 1 Mbit/s: 4 frames, more than 10 ms of it.
        assert_eq!(burst_bytes(125_000), 6056);
        // 1 Gbit/s: 10 ms of it.
        assert_eq!(burst_bytes(125_000_000), 1_250_000);
        assert_eq!(class_id(7), 0x0001_0007);
        let mut nla = Vec::new();
        nla.extend_from_slice(&48u16.to_ne_bytes());
        nla.extend_from_slice(&TCA_HTB_PARMS.to_ne_bytes());
        nla.extend_from_slice(&o);
        assert_eq!(rate_of(&nla), Some(1_250_000));
    }
}
