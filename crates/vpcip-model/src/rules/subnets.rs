//! Subnets: their shape (CIDR, range, gateway), what their VMs learn by
//! DHCP, the physical routes of EIP segments, and addresses chosen in them.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{check_block, label, validate_name};
use crate::error::RuleError;
use crate::ipam::{AddrRange, net_of, overlaps, usable};
use crate::resources::{
    CreateSubnet, Gateway, HostNetwork, HostRoute, PhysicalRoute, Subnet, SubnetKind, Vpc,
};

/// The shape of a subnet to create, as decided by [`plan_subnet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetPlan {
    pub cidr: Ipv4Net,
    pub range: AddrRange,
    pub gateway: Option<Ipv4Addr>,
    /// Addresses of the range taken from the start (the gateway, when the
    /// range holds it).
    pub reserved: Vec<Ipv4Addr>,
}

/// Decides a subnet's CIDR, range and gateway, and checks every rule:
/// inside a VPC block, no sibling overlap, `eip` only in the default VPC and
/// not overlapping a host network.
pub fn plan_subnet(
    req: &CreateSubnet,
    vpc: &Vpc,
    siblings: &[Subnet],
    host_networks: &[HostNetwork],
) -> Result<SubnetPlan, RuleError> {
    validate_name("name", &req.name)?;
    let range = req
        .range
        .as_deref()
        .map(str::parse::<AddrRange>)
        .transpose()?;
    let cidr = match (req.cidr, range, req.prefix_len) {
        (Some(c), _, p) => {
            check_block("cidr", &c)?;
            if let Some(p) = p.filter(|&p| p != c.prefix_len()) {
                return Err(RuleError::invalid(
                    "prefix_len",
                    format!("{p} disagrees with cidr {c}"),
                ));
            }
            c
        }
        (None, Some(r), Some(p)) => net_of(r.start(), p)?,
        (None, Some(_), None) => {
            return Err(RuleError::invalid(
                "prefix_len",
                "a range needs its mask length (prefix_len), e.g. 24",
            ));
        }
        (None, None, _) => {
            return Err(RuleError::invalid(
                "cidr",
                "give cidr, or range and prefix_len",
            ));
        }
    };
    if req.kind == SubnetKind::Guest && cidr.prefix_len() > 30 {
        return Err(RuleError::invalid(
            "cidr",
            format!(
                "{cidr}: a guest subnet needs a network, a gateway, a VM and a broadcast address: /30 or larger"
            ),
        ));
    }
    let hosts = usable(&cidr);
    let gateway = match (req.gateway, req.kind) {
        (Some(g), _) => {
            if !hosts.contains(u32::from(g)) {
                return Err(RuleError::invalid(
                    "gateway",
                    format!("{g} is not a host address of {cidr}"),
                ));
            }
            Some(g)
        }
        (None, SubnetKind::Guest) if hosts.len() >= 2 => Some(hosts.start()),
        (None, SubnetKind::Guest) => {
            return Err(RuleError::invalid(
                "cidr",
                format!("{cidr} has no room for a gateway and a guest"),
            ));
        }
        (None, SubnetKind::Eip) => None,
    };
    let range = match range {
        Some(r) => {
            if !hosts.contains(r.first) || !hosts.contains(r.last) {
                return Err(RuleError::InvalidRange {
                    start: r.start(),
                    end: r.end(),
                    reason: format!("it must lie within the host addresses {hosts} of {cidr}"),
                });
            }
            r
        }
        None => match gateway {
            Some(g) if u32::from(g) == hosts.first => AddrRange {
                first: hosts.first + 1,
                last: hosts.last,
            },
            _ => hosts,
        },
    };
    let reserved: Vec<Ipv4Addr> = gateway
        .filter(|g| range.contains(u32::from(*g)))
        .into_iter()
        .collect();
    if reserved.len() as u64 >= range.len() {
        return Err(RuleError::InvalidRange {
            start: range.start(),
            end: range.end(),
            reason: "it holds no address besides the gateway".into(),
        });
    }

    let vpc_label = label(&vpc.name, &vpc.id).to_string();
    if req.kind == SubnetKind::Eip && !vpc.is_default {
        return Err(RuleError::EipSubnetOutsideDefault { vpc: vpc_label });
    }
    if !vpc.blocks().any(|b| b.contains(&cidr)) {
        return Err(RuleError::SubnetOutsideVpc {
            cidr,
            vpc: vpc_label,
            blocks: vpc
                .blocks()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if let Some(s) = siblings.iter().find(|s| overlaps(&s.cidr, &cidr)) {
        return Err(RuleError::SubnetOverlap {
            cidr,
            vpc: vpc_label,
            other: label(&s.name, &s.id).into(),
            other_cidr: s.cidr,
        });
    }
    if req.kind == SubnetKind::Eip
        && let Some(h) = host_networks.iter().find(|h| overlaps(&h.cidr, &cidr))
    {
        return Err(RuleError::SegmentOverlapsHostNetwork {
            segment: cidr,
            host_network: h.cidr,
        });
    }
    check_subnet_dhcp(req.kind, cidr, gateway, &req.dns_servers, &req.host_routes)?;
    Ok(SubnetPlan {
        cidr,
        range,
        gateway,
        reserved,
    })
}

/// DNS servers a subnet may hand out, at most (as Neutron's
/// `max_dns_nameservers`).
pub const MAX_DNS_SERVERS: usize = 5;
/// Host routes a subnet may hand out, at most (as Neutron's
/// `max_subnet_host_routes`).
pub const MAX_HOST_ROUTES: usize = 20;

/// What a subnet's VMs learn by DHCP besides their address: DNS servers
/// (unicast addresses, no repeats, at most [`MAX_DNS_SERVERS`]) and host
/// routes (a network address as destination, once each, the default route
/// excepted, which is the subnet's gateway; a next hop that is a host of
/// the subnet other than the route's own destination; at most
/// [`MAX_HOST_ROUTES`]). EIP segments have no VMs asking.
pub fn check_subnet_dhcp(
    kind: SubnetKind,
    cidr: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    dns: &[Ipv4Addr],
    routes: &[HostRoute],
) -> Result<(), RuleError> {
    if kind == SubnetKind::Eip && !(dns.is_empty() && routes.is_empty()) {
        return Err(RuleError::invalid(
            "dns_servers",
            "an EIP segment has no VMs asking DHCP: DNS servers and host routes are for guest subnets",
        ));
    }
    if dns.len() > MAX_DNS_SERVERS {
        return Err(RuleError::invalid(
            "dns_servers",
            format!("{} given, at most {MAX_DNS_SERVERS}", dns.len()),
        ));
    }
    for (i, d) in dns.iter().enumerate() {
        if d.is_unspecified() || d.is_broadcast() || d.is_multicast() || d.is_loopback() {
            return Err(RuleError::invalid(
                "dns_servers",
                format!("{d} is not a unicast address"),
            ));
        }
        if dns[..i].contains(d) {
            return Err(RuleError::invalid(
                "dns_servers",
                format!("{d} is given twice"),
            ));
        }
    }
    if routes.len() > MAX_HOST_ROUTES {
        return Err(RuleError::invalid(
            "host_routes",
            format!("{} given, at most {MAX_HOST_ROUTES}", routes.len()),
        ));
    }
    let hosts = usable(&cidr);
    for (i, r) in routes.iter().enumerate() {
        if r.destination.trunc() != r.destination {
            return Err(RuleError::invalid(
                "host_routes",
                format!(
                    "{r}: the destination has host bits set (the network is {})",
                    r.destination.trunc()
                ),
            ));
        }
        if r.destination.prefix_len() == 0 {
            return Err(RuleError::invalid(
                "host_routes",
                format!(
                    "{r}: the default route is the subnet's gateway ({})",
                    gateway.map_or_else(|| "none".into(), |g| g.to_string())
                ),
            ));
        }
        if !hosts.contains(u32::from(r.next_hop)) {
            return Err(RuleError::invalid(
                "host_routes",
                format!(
                    "{r}: the next hop {} is not a host address of {cidr}",
                    r.next_hop
                ),
            ));
        }
        if r.destination.contains(&r.next_hop) {
            return Err(RuleError::invalid(
                "host_routes",
                format!("{r}: the next hop lies inside the destination"),
            ));
        }
        if routes[..i].iter().any(|o| o.destination == r.destination) {
            return Err(RuleError::invalid(
                "host_routes",
                format!("{r}: {} is routed twice", r.destination),
            ));
        }
    }
    Ok(())
}

/// The physical routes an EIP segment needs: one per gateway.
pub fn physical_routes(segment: &Subnet, gateways: &[Gateway]) -> Vec<PhysicalRoute> {
    gateways
        .iter()
        .map(|g| PhysicalRoute {
            prefix: segment.cidr,
            next_hop: g.underlay_ip,
            gateway: label(&g.name, &g.id).to_string(),
        })
        .collect()
}

/// Whether `addr` may be a NIC's or VIP's chosen address in `subnet`.
pub fn check_chosen_address(subnet: &Subnet, addr: Ipv4Addr) -> Result<(), RuleError> {
    let r = AddrRange::new(subnet.range_start, subnet.range_end);
    if !r.contains(u32::from(addr)) {
        return Err(RuleError::AddressOutOfRange {
            addr,
            subnet: label(&subnet.name, &subnet.id).into(),
            start: subnet.range_start,
            end: subnet.range_end,
        });
    }
    Ok(())
}

pub fn need_subnet_kind(subnet: &Subnet, need: SubnetKind) -> Result<(), RuleError> {
    if subnet.kind != need {
        return Err(RuleError::SubnetKind {
            subnet: label(&subnet.name, &subnet.id).into(),
            kind: subnet.kind.as_str(),
            need: need.as_str(),
        });
    }
    Ok(())
}
