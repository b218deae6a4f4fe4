//! Links, addresses, routes and FDB entries over rtnetlink, in one network
//! namespace: [`Net::open`] in the namespace the work is for (see
//! [`crate::netns::in_netns`]), then synchronous calls, each one netlink
//! request answered before the next.
//!
//! What vpcip owns is recognisable, so that a reconcile never touches what
//! others made: its routes carry the protocol [`RTPROT_VPCIP`], its links
//! the names the desired state gives them.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use futures_util::stream::StreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{
    Handle, IpVersion, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan,
    RouteMessageBuilder,
};

use crate::SysError;

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

    pub fn del_link(&self, index: u32) -> Result<(), SysError> {
        self.rt
            .block_on(self.handle.link().del(index).execute())
            .map_err(kernel("delete link"))
    }

    /// The IPv4 addresses (with prefix) on a link.
    pub fn addrs(&self, index: u32) -> Result<Vec<Ipv4Net>, SysError> {
        let msgs: Vec<_> = self
            .rt
            .block_on(
                self.handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect::<Vec<_>>(),
            )
            .map_err(kernel("list addresses"))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(IpAddr::V4(ip)) => {
                        Ipv4Net::new(*ip, m.header.prefix_len).ok()
                    }
                    _ => None,
                })
            })
            .collect())
    }

    /// Every link's IPv4 addresses, by link index, in one dump.
    pub fn all_addrs(&self) -> Result<std::collections::BTreeMap<u32, Vec<Ipv4Net>>, SysError> {
        let msgs: Vec<_> = self
            .rt
            .block_on(
                self.handle
                    .address()
                    .get()
                    .execute()
                    .try_collect::<Vec<_>>(),
            )
            .map_err(kernel("list addresses"))?;
        let mut out: std::collections::BTreeMap<u32, Vec<Ipv4Net>> = Default::default();
        for m in &msgs {
            for a in &m.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = a
                    && let Ok(net) = Ipv4Net::new(*ip, m.header.prefix_len)
                {
                    out.entry(m.header.index).or_default().push(net);
                }
            }
        }
        Ok(out)
    }

    pub fn add_addr(&self, index: u32, addr: Ipv4Net) -> Result<(), SysError> {
        self.rt
            .block_on(
                self.handle
                    .address()
                    .add(index, IpAddr::V4(addr.addr()), addr.prefix_len())
                    .execute(),
            )
            .map_err(kernel("add address"))
    }

    pub fn del_addr(&self, index: u32, addr: Ipv4Net) -> Result<(), SysError> {
        let msgs: Vec<_> = self
            .rt
            .block_on(
                self.handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .set_address_filter(IpAddr::V4(addr.addr()))
                    .execute()
                    .try_collect::<Vec<_>>(),
            )
            .map_err(kernel("find address"))?;
        for m in msgs {
            if m.header.index == index && m.header.prefix_len == addr.prefix_len() {
                self.rt
                    .block_on(self.handle.address().del(m).execute())
                    .map_err(kernel("delete address"))?;
            }
        }
        Ok(())
    }

    /// The IPv4 routes of every table.
    pub fn routes(&self) -> Result<Vec<Route>, SysError> {
        let msgs: Vec<RouteMessage> = self
            .rt
            .block_on(
                self.handle
                    .route()
                    .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                    .execute()
                    .try_collect(),
            )
            .map_err(kernel("list routes"))?;
        Ok(msgs.iter().filter_map(route_of).collect())
    }

    /// vpcip's policy rules (`ip rule … proto 240`): fwmark → table.
    pub fn fw_rules(&self) -> Result<Vec<FwRule>, SysError> {
        let msgs: Vec<RuleMessage> = self
            .rt
            .block_on(
                self.handle
                    .rule()
                    .get(IpVersion::V4)
                    .execute()
                    .try_collect(),
            )
            .map_err(kernel("list rules"))?;
        let mut out = Vec::new();
        for m in &msgs {
            let (mut mark, mut table, mut priority, mut ours) = (None, None, 0, false);
            for a in &m.attributes {
                match a {
                    RuleAttribute::FwMark(v) => mark = Some(*v),
                    RuleAttribute::Table(t) => table = Some(*t),
                    RuleAttribute::Priority(p) => priority = *p,
                    RuleAttribute::Protocol(p) => ours = u8::from(*p) == RTPROT_VPCIP,
                    _ => {}
                }
            }
            if let (true, Some(mark), Some(table)) = (ours, mark, table) {
                out.push(FwRule {
                    mark,
                    table,
                    priority,
                });
            }
        }
        Ok(out)
    }

    pub fn add_fw_rule(&self, r: &FwRule) -> Result<(), SysError> {
        let mut req = self
            .handle
            .rule()
            .add()
            .v4()
            .fw_mark(r.mark)
            .table_id(r.table)
            .priority(r.priority)
            .action(RuleAction::ToTable);
        req.message_mut()
            .attributes
            .push(RuleAttribute::Protocol(RouteProtocol::from(RTPROT_VPCIP)));
        self.rt.block_on(req.execute()).map_err(kernel("add rule"))
    }

    pub fn del_fw_rule(&self, r: &FwRule) -> Result<(), SysError> {
        let mut m = RuleMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.action = RuleAction::ToTable;
        m.attributes.push(RuleAttribute::FwMark(r.mark));
        m.attributes.push(RuleAttribute::Table(r.table));
        m.attributes.push(RuleAttribute::Priority(r.priority));
        self.rt
            .block_on(self.handle.rule().del(m).execute())
            .map_err(kernel("delete rule"))
    }

    /// Adds one of vpcip's routes: unicast (through `gateway` on link `oif`,
    /// or straight onto the link) or unreachable.
    pub fn add_route(&self, r: &Route) -> Result<(), SysError> {
        self.rt
            .block_on(self.handle.route().add(route_msg(r)).execute())
            .map_err(kernel("add route"))
    }

    pub fn del_route(&self, r: &Route) -> Result<(), SysError> {
        self.rt
            .block_on(self.handle.route().del(route_msg(r)).execute())
            .map_err(kernel("delete route"))
    }

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

fn table_attr(m: &RouteMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Table(t) => Some(*t),
        _ => None,
    })
}

pub use vpcip_dataplane::routing::FwRule;

fn route_of(m: &RouteMessage) -> Option<Route> {
    if m.header.address_family != AddressFamily::Inet {
        return None;
    }
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    Some(Route {
        table: table_attr(m).unwrap_or(u32::from(m.header.table)),
        dst: Ipv4Net::new(dst, m.header.destination_prefix_length).ok()?,
        gateway,
        oif,
        kind: match m.header.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Unreachable => RouteKind::Unreachable,
            other => RouteKind::Other(u8::from(other)),
        },
        protocol: u8::from(m.header.protocol),
    })
}

fn route_msg(r: &Route) -> RouteMessage {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .table_id(r.table)
        .protocol(RouteProtocol::from(r.protocol));
    match r.kind {
        RouteKind::Unreachable => {
            b = b.kind(RouteType::Unreachable);
        }
        RouteKind::Other(t) => {
            b = b.kind(RouteType::from(t));
        }
        _ => {
            if let Some(oif) = r.oif {
                b = b.output_interface(oif);
            }
            match r.gateway {
                Some(gw) => b = b.gateway(gw),
                None => b = b.scope(RouteScope::Link),
            }
        }
    }
    b.build()
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
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Controller(i) => l.master = Some(*i),
            LinkAttribute::Mtu(v) => l.mtu = Some(*v),
            LinkAttribute::Address(a) => l.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        l.kind = Some(k.to_string());
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

/// Sets an IPv4 sysctl of the current thread's network namespace, e.g.
/// `("ip_forward", "1")` or `("conf/all/rp_filter", "0")`.
/// Whether an IPv4 sysctl of the current namespace (`ip_forward`,
/// `conf/<link>/arp_accept`) is `value`; false when it does not exist.
pub fn ipv4_sysctl_is(key: &str, value: &str) -> Result<bool, SysError> {
    net_sysctl_is(&format!("ipv4/{key}"), value)
}

/// Whether `/proc/sys/net/<key>` of the current thread's network namespace
/// holds `value` (false when it does not exist).
pub fn net_sysctl_is(key: &str, value: &str) -> Result<bool, SysError> {
    match std::fs::read_to_string(format!("/proc/sys/net/{key}")) {
        Ok(now) => Ok(now.trim() == value),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SysError::Io("read sysctl", e)),
    }
}

pub fn ipv4_sysctl(key: &str, value: &str) -> Result<(), SysError> {
    net_sysctl(&format!("ipv4/{key}"), value)
}

/// Sets `/proc/sys/net/<key>` of the current thread's network namespace.
pub fn net_sysctl(key: &str, value: &str) -> Result<(), SysError> {
    let path = format!("/proc/sys/net/{key}");
    let now = std::fs::read_to_string(&path).map_err(SysError::io("read sysctl"))?;
    if now.trim() != value {
        std::fs::write(&path, value).map_err(SysError::io("write sysctl"))?;
    }
    Ok(())
}
