//! Neighbours (the ARP table) and a VXLAN device's flood list (its
//! all-zero-MAC FDB entries).

use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use futures_util::stream::StreamExt;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Net, kernel};
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

    /// The remote VTEPs a VXLAN device floods to (its all-zero-MAC FDB
    /// entries).
    pub fn flood_list(&self, index: u32) -> Result<Vec<Ipv4Addr>, SysError> {
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
        let mut out = Vec::new();
        for m in msgs.iter().filter(|m| m.header.ifindex == index) {
            let zero = m
                .attributes
                .iter()
                .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(l) if l.iter().all(|b| *b == 0)));
            // (In a bridge-family dump the destination comes as raw bytes.)
            let dst = m.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                    <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
                }
                _ => None,
            });
            if let (true, Some(ip)) = (zero, dst) {
                out.push(ip);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
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
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(Self::flood_msg(
            index, vtep,
        )));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
        let mut handle = self.handle.clone();
        self.rt.block_on(async {
            let mut resp = handle.request(req).map_err(|_| SysError::Kernel {
                what: "add fdb entry",
                errno: 5,
            })?;
            while let Some(m) = resp.next().await {
                if let NetlinkPayload::Error(e) = m.payload
                    && e.code.is_some()
                {
                    return Err(SysError::Kernel {
                        what: "add fdb entry",
                        errno: e.raw_code().abs(),
                    });
                }
            }
            Ok(())
        })
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
