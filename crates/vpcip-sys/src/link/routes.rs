//! Routes and policy rules: vpcip's carry the protocol [`RTPROT_VPCIP`].

use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{IpVersion, RouteMessageBuilder};

use super::{FwRule, Net, RTPROT_VPCIP, Route, RouteKind, kernel};
use crate::SysError;

impl Net {
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
}

fn table_attr(m: &RouteMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Table(t) => Some(*t),
        _ => None,
    })
}

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
