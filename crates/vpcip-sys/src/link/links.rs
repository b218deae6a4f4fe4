//! Links: listing them, making veths, bridges and VXLAN devices, setting
//! them up, moving them between namespaces.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoPortData, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::{LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan};

use super::{Link, Net, VXLAN_PORT, kernel};
use crate::SysError;

impl Net {
    pub fn links(&self) -> Result<Vec<Link>, SysError> {
        let msgs: Vec<LinkMessage> = self
            .rt
            .block_on(self.handle.link().get().execute().try_collect())
            .map_err(kernel("list links"))?;
        Ok(msgs.iter().map(link_of).collect())
    }

    pub fn link(&self, name: &str) -> Result<Option<Link>, SysError> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    fn add(&self, what: &'static str, msg: LinkMessage) -> Result<(), SysError> {
        self.rt
            .block_on(self.handle.link().add(msg).execute())
            .map_err(kernel(what))
    }

    fn set(&self, what: &'static str, msg: LinkMessage) -> Result<(), SysError> {
        self.rt
            .block_on(self.handle.link().set(msg).execute())
            .map_err(kernel(what))
    }

    /// A veth pair, both ends here, down.
    pub fn add_veth(&self, name: &str, peer: &str) -> Result<(), SysError> {
        self.add("add veth", LinkVeth::new(name, peer).build())
    }

    pub fn add_bridge(&self, name: &str) -> Result<(), SysError> {
        self.add("add bridge", LinkBridge::new(name).build())
    }

    /// A VXLAN device for `vni` with its tunnel endpoint at `local`, learning
    /// remote MACs, its MTU leaving room for the encapsulation.
    pub fn add_vxlan(
        &self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        mtu: u32,
    ) -> Result<(), SysError> {
        self.add(
            "add vxlan",
            LinkVxlan::new(name, vni)
                .local(local)
                .port(VXLAN_PORT)
                .learning(true)
                .mtu(mtu)
                .build(),
        )
    }

    pub fn set_up(&self, index: u32) -> Result<(), SysError> {
        self.set(
            "set link up",
            LinkUnspec::new_with_index(index).up().build(),
        )
    }

    pub fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), SysError> {
        self.set(
            "set link mtu",
            LinkUnspec::new_with_index(index).mtu(mtu).build(),
        )
    }

    pub fn set_master(&self, index: u32, master: u32) -> Result<(), SysError> {
        self.set(
            "set link master",
            LinkUnspec::new_with_index(index).controller(master).build(),
        )
    }

    pub fn set_mac(&self, index: u32, mac: [u8; 6]) -> Result<(), SysError> {
        self.set(
            "set link address",
            LinkUnspec::new_with_index(index)
                .address(mac.to_vec())
                .build(),
        )
    }

    /// Moves a link into the namespace at `netns` under a new name.
    pub fn move_to(&self, index: u32, netns: &std::path::Path, name: &str) -> Result<(), SysError> {
        let fd = std::fs::File::open(netns).map_err(SysError::io("open network namespace"))?;
        let msg: LinkMessage = LinkMessageBuilder::<LinkUnspec>::default()
            .index(index)
            .setns_by_fd(fd.as_raw_fd())
            .name(name)
            .build();
        self.set("move link to namespace", msg)
    }

    /// `bridge link set dev <index> flood off`: frames to MACs the bridge
    /// has not learned do not go out of this port.
    pub fn unicast_flood_off(&self, index: u32) -> Result<(), SysError> {
        // (A port's settings go in RTM_NEWLINK: RTM_SETLINK ignores them.)
        let msg = LinkBridgePort::new(index)
            .append_info_data(InfoBridgePort::UnicastFlood(false))
            .build();
        self.rt
            .block_on(self.handle.link().set_port(msg).execute())
            .map_err(kernel("set bridge port flooding"))
    }

    pub fn del_link(&self, index: u32) -> Result<(), SysError> {
        self.rt
            .block_on(self.handle.link().del(index).execute())
            .map_err(kernel("delete link"))
    }
}

fn link_of(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        kind: None,
        master: None,
        up: m.header.flags.contains(LinkFlags::Up),
        carrier: m.header.flags.contains(LinkFlags::LowerUp),
        mtu: None,
        mac: None,
        unicast_flood: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Controller(i) => l.master = Some(*i),
            LinkAttribute::Mtu(v) => l.mtu = Some(*v),
            LinkAttribute::Address(a) => l.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                        LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                            for p in port {
                                if let InfoBridgePort::UnicastFlood(on) = p {
                                    l.unicast_flood = Some(*on);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}
