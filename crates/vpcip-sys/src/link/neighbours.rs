//! Neighbours (the ARP table) and a VXLAN device's flood list (its
//! all-zero-MAC FDB entries).

use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use rtnetlink::packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{FdbEntry, Net, kernel};
use crate::SysError;

impl Net {
    /// The IPv4 neighbours that resolved (reachable, stale, delay, probe or
    /// permanent), with their MACs as `aa:bb:cc:dd:ee:ff`.
    pub fn neighbours(&self) -> Result<Vec<(Ipv4Addr, String)>, SysError> {
        let msgs: Vec<NeighbourMessage> = self
            .rt
            .block_on(
                self.handle
                    .neighbours()
                    .get()
                    .set_address_family(AddressFamily::Inet)
                    .execute()
                    .try_collect(),
            )
            .map_err(kernel("list neighbours"))?;
        let mut out = Vec::new();
        for m in &msgs {
            if matches!(
                m.header.state,
                NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
            ) {
                continue;
            }
            let ip = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let mac = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => Some(
                    l.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                ),
                _ => None,
            });
            if let (Some(ip), Some(mac)) = (ip, mac) {
                out.push((ip, mac));
            }
        }
        Ok(out)
    }

    /// The whole FDB: every bridge-family neighbour entry of the
    /// namespace, in one dump.
    pub fn fdb(&self) -> Result<Vec<FdbEntry>, SysError> {
        let msgs: Vec<NeighbourMessage> = self
            .rt
            .block_on(
                self.handle
                    .neighbours()
                    .get()
                    .set_address_family(AddressFamily::Bridge)
                    .execute()
                    .try_collect(),
            )
            .map_err(kernel("list fdb"))?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                let mac = m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::LinkLayerAddress(l) => {
                        <[u8; 6]>::try_from(l.as_slice()).ok()
                    }
                    _ => None,
                })?;
                // (In a bridge-family dump the destination comes as raw bytes.)
                let dst = m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                    NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                        <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
                    }
                    _ => None,
                });
                Some(FdbEntry {
                    ifindex: m.header.ifindex,
                    mac,
                    dst,
                    // (A dump names the bridge, NDA_MASTER; NTF_MASTER is
                    // a request's flag.)
                    master: m
                        .attributes
                        .iter()
                        .any(|a| matches!(a, NeighbourAttribute::Controller(_))),
                    static_entry: m.header.state == NeighbourState::Noarp,
                    sticky: m.header.flags.contains(NeighbourFlags::Sticky),
                })
            })
            .collect())
    }

    fn pin_msg(index: u32, mac: [u8; 6]) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.state = NeighbourState::Noarp;
        m.header.flags = NeighbourFlags::Controller | NeighbourFlags::Sticky;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        m
    }

    /// `bridge fdb replace MAC dev <index> master static sticky`: the
    /// bridge sends frames to MAC out of this port only, whatever it learns.
    pub fn pin_mac(&self, index: u32, mac: [u8; 6]) -> Result<(), SysError> {
        self.rt.block_on(self.acked(
            RouteNetlinkMessage::NewNeighbour(Self::pin_msg(index, mac)),
            NLM_F_CREATE | NLM_F_REPLACE,
            "pin a MAC to a bridge port",
        ))
    }

    pub fn unpin_mac(&self, index: u32, mac: [u8; 6]) -> Result<(), SysError> {
        self.rt
            .block_on(
                self.handle
                    .neighbours()
                    .del(Self::pin_msg(index, mac))
                    .execute(),
            )
            .map_err(kernel("unpin a MAC from a bridge port"))
    }

    fn flood_msg(index: u32, vtep: Ipv4Addr) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.state = NeighbourState::Permanent;
        m.header.flags = NeighbourFlags::Own; // NTF_SELF: the VXLAN device's own table
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(vec![0; 6]));
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                vtep,
            )));
        m
    }

    /// `bridge fdb append 00:00:00:00:00:00 dst VTEP dev DEV self`: one more
    /// VTEP to replicate floods to.
    pub fn flood_add(&self, index: u32, vtep: Ipv4Addr) -> Result<(), SysError> {
        self.rt.block_on(self.acked(
            RouteNetlinkMessage::NewNeighbour(Self::flood_msg(index, vtep)),
            NLM_F_CREATE | NLM_F_APPEND,
            "add fdb entry",
        ))
    }

    pub fn flood_del(&self, index: u32, vtep: Ipv4Addr) -> Result<(), SysError> {
        self.rt
            .block_on(
                self.handle
                    .neighbours()
                    .del(Self::flood_msg(index, vtep))
                    .execute(),
            )
            .map_err(kernel("delete fdb entry"))
    }
}

/// A VXLAN device's flood list in a dump of the FDB: its all-zero-MAC
/// entries' VTEPs.
pub fn flood_of(fdb: &[FdbEntry], index: u32) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = fdb
        .iter()
        .filter(|e| e.ifindex == index && e.mac == [0; 6])
        .filter_map(|e| e.dst)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The MACs pinned to a bridge port in a dump of the FDB (static, sticky,
/// in the bridge's table).
pub fn pinned_of(fdb: &[FdbEntry], index: u32) -> Vec<[u8; 6]> {
    fdb.iter()
        .filter(|e| e.ifindex == index && e.master && e.static_entry && e.sticky)
        .map(|e| e.mac)
        .collect()
}
