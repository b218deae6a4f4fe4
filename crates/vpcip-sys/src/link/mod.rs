//! Links, addresses, routes and FDB entries over rtnetlink, in one network
//! namespace: [`Net::open`] in the namespace the work is for (see
//! [`crate::netns::in_netns`]), then synchronous calls, each one netlink
//! request answered before the next.
//!
//! What vpcip owns is recognisable, so that a reconcile never touches what
//! others made: its routes carry the protocol [`RTPROT_VPCIP`], its links
//! the names the desired state gives them.

use std::net::Ipv4Addr;

use futures_util::StreamExt;
use ipnet::Ipv4Net;
use rtnetlink::Handle;
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;

use crate::SysError;

mod addrs;
mod links;
mod neighbours;
mod routes;
mod sysctl;

pub use links::parse_mac;
pub use neighbours::{flood_of, pinned_of};
pub use sysctl::{ipv4_sysctl, ipv4_sysctl_is, net_sysctl, net_sysctl_is};

/// The route protocol number vpcip's routes carry (`ip route` shows
/// `proto 240`); routes with another protocol are never changed.
pub const RTPROT_VPCIP: u8 = 240;
/// VXLAN's IANA port.
pub const VXLAN_PORT: u16 = 4789;
pub use vpcip_dataplane::links::VXLAN_OVERHEAD;

/// One link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `veth`, `bridge`, `vxlan`, …; None for devices without a kind.
    pub kind: Option<String>,
    /// The bridge it is a port of.
    pub master: Option<u32>,
    pub up: bool,
    /// The carrier is on (IFF_LOWER_UP): the other end of the wire is up.
    pub carrier: bool,
    pub mtu: Option<u32>,
    /// Its hardware address, when it has an Ethernet one.
    pub mac: Option<[u8; 6]>,
    /// A bridge port's unicast flooding (None: not a bridge port).
    pub unicast_flood: Option<bool>,
}

/// One FDB entry, from a bridge-family neighbour dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    /// The port or VXLAN device it is on.
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// A VXLAN entry's remote VTEP.
    pub dst: Option<Ipv4Addr>,
    /// In the bridge's table (`master`), not the device's own (`self`).
    pub master: bool,
    /// Added as static (`NUD_NOARP`): never aged out.
    pub static_entry: bool,
    /// Sticky: learning never moves it to another port.
    pub sticky: bool,
}

pub use vpcip_dataplane::routing::MAIN_TABLE;

/// One IPv4 route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub table: u32,
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub kind: RouteKind,
    pub protocol: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Unicast,
    Unreachable,
    /// Any other type (blackhole, prohibit, …), by its number: vpcip makes
    /// none, but removes one of its own protocol that it finds.
    Other(u8),
}

fn kernel(what: &'static str) -> impl FnOnce(rtnetlink::Error) -> SysError {
    move |e| match e {
        rtnetlink::Error::NetlinkError(m) => SysError::Kernel {
            what,
            errno: m.raw_code().abs(),
        },
        _ => SysError::Kernel { what, errno: 5 },
    }
}

/// An rtnetlink connection in the namespace it was opened in.
pub struct Net {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) handle: Handle,
}

impl Net {
    /// Opens rtnetlink in the current thread's network namespace.
    pub fn open() -> Result<Net, SysError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(SysError::io("start the netlink runtime"))?;
        let (conn, handle, _) = {
            let _guard = rt.enter();
            rtnetlink::new_connection().map_err(SysError::io("open rtnetlink"))?
        };
        rt.spawn(conn);
        Ok(Net { rt, handle })
    }
}

impl Net {
    /// Sends one request with `flags` (beside request and ack) and waits
    /// for its acknowledgement.
    pub(crate) async fn acked(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &'static str,
    ) -> Result<(), SysError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut handle = self.handle.clone();
        let mut resp = handle
            .request(req)
            .map_err(|_| SysError::Kernel { what, errno: 5 })?;
        while let Some(m) = resp.next().await {
            if let NetlinkPayload::Error(e) = m.payload
                && e.code.is_some()
            {
                return Err(SysError::Kernel {
                    what,
                    errno: e.raw_code().abs(),
                });
            }
        }
        Ok(())
    }
}

pub use vpcip_dataplane::routing::FwRule;
