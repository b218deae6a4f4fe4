//! Link events of a namespace (rtnetlink's link group): what lets the host
//! agent plug a VM's port the moment the hypervisor makes it, rather than
//! at its next pass.

use std::path::Path;

use netlink_sys::{Socket, SocketAddr, constants::NETLINK_ROUTE};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::LinkAttribute;

use crate::SysError;
use crate::netns::in_netns;

/// `RTMGRP_LINK`: links added, changed, removed.
const RTMGRP_LINK: u32 = 1;

/// A subscription to a namespace's link events.
pub struct LinkEvents {
    sock: Socket,
    buf: Vec<u8>,
}

impl LinkEvents {
    /// Subscribes to the link events of the namespace at `netns`.
    pub fn open(netns: &Path) -> Result<Self, SysError> {
        let sock = in_netns(netns, || -> Result<Socket, SysError> {
            let mut s = Socket::new(NETLINK_ROUTE).map_err(SysError::io("open rtnetlink"))?;
            s.bind(&SocketAddr::new(0, RTMGRP_LINK))
                .map_err(SysError::io("subscribe to link events"))?;
            Ok(s)
        })??;
        Ok(LinkEvents {
            sock,
            buf: vec![0; 1 << 16],
        })
    }

    /// The names of the links the next datagram says were added, changed
    /// or removed (blocks until one comes; an overrun of the socket's
    /// buffer reads as an event of no name: look at everything).
    pub fn wait(&mut self) -> Result<Vec<String>, SysError> {
        let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                return Ok(vec![String::new()]);
            }
            Err(e) => return Err(SysError::Io("receive link events", e)),
        };
        let mut names = Vec::new();
        let mut at = 0;
        while at < n {
            let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[at..n])
            else {
                break;
            };
            let len = msg.header.length as usize;
            if let NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l),
            ) = &msg.payload
            {
                names.extend(l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some(name.clone()),
                    _ => None,
                }));
            }
            if len == 0 {
                break;
            }
            at += len.next_multiple_of(4);
        }
        Ok(names)
    }
}
