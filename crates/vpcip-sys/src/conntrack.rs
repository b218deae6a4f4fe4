//! Conntrack over ctnetlink: after an EIP is unbound or moved, connections
//! already tracked keep their old NAT mapping until they end. Deleting their
//! entries makes the change take effect for them too. Only the entries of the
//! changed addresses are touched; everything else keeps flowing.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use vpcip_dataplane::filter::Flow;

use crate::SysError;
use crate::nft::parse::{Received, messages, raw_attrs as attrs};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const AF_INET: u8 = 2;

fn header(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | ty).to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[AF_INET, 0, 0, 0]);
    start
}

fn finish(buf: &mut [u8], start: usize) {
    let len = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// (source, destination) of a tuple attribute's value.
fn tuple_ips(tuple: &[u8]) -> (Option<Ipv4Addr>, Option<Ipv4Addr>) {
    let mut out = (None, None);
    for (t, _, ip) in attrs(tuple) {
        if t != CTA_TUPLE_IP {
            continue;
        }
        for (t, _, v) in attrs(ip) {
            let addr = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from);
            match t {
                CTA_IP_V4_SRC => out.0 = addr,
                CTA_IP_V4_DST => out.1 = addr,
                _ => {}
            }
        }
    }
    out
}

/// (protocol, destination port) of a tuple attribute's value; the port is
/// 0 for protocols without ports.
fn tuple_proto(tuple: &[u8]) -> (u8, u16) {
    const CTA_TUPLE_PROTO: u16 = 2;
    const CTA_PROTO_NUM: u16 = 1;
    const CTA_PROTO_DST_PORT: u16 = 3;
    let mut out = (0, 0);
    for (t, _, p) in attrs(tuple) {
        if t != CTA_TUPLE_PROTO {
            continue;
        }
        for (t, _, v) in attrs(p) {
            match t {
                CTA_PROTO_NUM => out.0 = v.first().copied().unwrap_or(0),
                CTA_PROTO_DST_PORT => {
                    out.1 = v.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
                }
                _ => {}
            }
        }
    }
    if !matches!(out.0, 6 | 17 | 132 | 33 | 136) {
        out.1 = 0;
    }
    out
}

/// Deletes, in the current network namespace, every conntrack entry whose
/// original direction `refused` says the rules no longer allow (the
/// security-group filter's connections after a rule went away).
pub fn forget_flows(refused: impl Fn(&Flow) -> bool) -> Result<Forgotten, SysError> {
    let hit = |entry: &[u8]| {
        let mut flow = Flow {
            zone: 0,
            proto: 0,
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            dport: 0,
        };
        for (t, _, value) in attrs(entry) {
            match t {
                CTA_TUPLE_ORIG => {
                    let (s, d) = tuple_ips(value);
                    flow.src = s.unwrap_or(Ipv4Addr::UNSPECIFIED);
                    flow.dst = d.unwrap_or(Ipv4Addr::UNSPECIFIED);
                    (flow.proto, flow.dport) = tuple_proto(value);
                }
                CTA_ZONE => {
                    flow.zone = value
                        .get(..2)
                        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
                }
                _ => {}
            }
        }
        refused(&flow)
    };
    let mut total = Forgotten::default();
    for _ in 0..4 {
        let pass = forget_once(&hit)?;
        total.seen = total.seen.max(pass.seen);
        total.deleted += pass.deleted;
        if pass.deleted == 0 {
            break;
        }
    }
    Ok(total)
}

/// What [`forget`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    /// Entries in the table.
    pub seen: usize,
    /// Entries of the given addresses, deleted.
    pub deleted: usize,
}

/// Deletes, in the current network namespace, every IPv4 conntrack entry
/// whose original or reply tuple has one of `addrs` as its source or
/// destination.
pub fn forget(addrs: &BTreeSet<Ipv4Addr>) -> Result<Forgotten, SysError> {
    if addrs.is_empty() {
        return Ok(Forgotten::default());
    }
    // A dump taken while connections come and go may miss an entry: go
    // over the table again until a pass finds nothing left to delete.
    let hit = |entry: &[u8]| {
        attrs(entry).any(|(t, _, value)| {
            matches!(t, CTA_TUPLE_ORIG | CTA_TUPLE_REPLY) && {
                let (s, d) = tuple_ips(value);
                [s, d].iter().flatten().any(|a| addrs.contains(a))
            }
        })
    };
    let mut total = Forgotten::default();
    for _ in 0..4 {
        let pass = forget_once(&hit)?;
        total.seen = total.seen.max(pass.seen);
        total.deleted += pass.deleted;
        if pass.deleted == 0 {
            break;
        }
    }
    Ok(total)
}

fn forget_once(hit: &dyn Fn(&[u8]) -> bool) -> Result<Forgotten, SysError> {
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(SysError::io("open ctnetlink"))?;
    sock.bind_auto().map_err(SysError::io("bind ctnetlink"))?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(SysError::io("connect ctnetlink"))?;
    let mut req = Vec::new();
    let start = header(&mut req, IPCTNL_MSG_CT_GET, NLM_F_DUMP, 1);
    finish(&mut req, start);
    sock.send(&req, 0)
        .map_err(SysError::io("send conntrack dump"))?;

    // The delete requests, each with the entry's original tuple (and zone)
    // copied as the kernel gave them.
    let mut deletes = Vec::new();
    let mut count = 0;
    let mut seen = 0;
    'dump: loop {
        let data = crate::nft::recv_dump(&sock, "receive conntrack dump")?;
        for Received {
            ty, payload: body, ..
        } in messages(&data)?
        {
            match ty {
                NLMSG_DONE => break 'dump,
                NLMSG_ERROR => {
                    let err = body
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(0);
                    if err != 0 {
                        return Err(SysError::Kernel {
                            what: "conntrack dump",
                            errno: -err,
                        });
                    }
                    break 'dump;
                }
                _ => {}
            }
            let Some(entry) = body.get(4..) else { continue };
            seen += 1;
            let mut orig = None;
            let mut zone = None;
            for (t, whole, _) in attrs(entry) {
                match t {
                    CTA_TUPLE_ORIG => orig = Some(whole.to_vec()),
                    CTA_ZONE => zone = Some(whole.to_vec()),
                    _ => {}
                }
            }
            if let (true, Some(orig)) = (hit(entry), orig) {
                count += 1;
                let start = header(
                    &mut deletes,
                    IPCTNL_MSG_CT_DELETE,
                    0,
                    2u32.saturating_add(u32::try_from(count).unwrap_or(u32::MAX)),
                );
                deletes.extend_from_slice(&orig);
                deletes.resize(deletes.len() + (4 - orig.len() % 4) % 4, 0);
                if let Some(z) = zone {
                    deletes.extend_from_slice(&z);
                    deletes.resize(deletes.len() + (4 - z.len() % 4) % 4, 0);
                }
                finish(&mut deletes, start);
            }
        }
    }
    if !deletes.is_empty() {
        // An entry that ended meanwhile answers ENOENT: harmless, and not
        // waited for (no acknowledgements are asked).
        sock.send(&deletes, 0)
            .map_err(SysError::io("send conntrack deletes"))?;
    }
    Ok(Forgotten {
        seen,
        deleted: count,
    })
}
