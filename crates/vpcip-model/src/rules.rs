//! The model's rules as pure functions: the store loads what a rule needs,
//! asks here, and writes only when the answer is yes.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::{RuleError, Warning};
use crate::ipam::{AddrRange, net_of, overlaps, usable};
use crate::resources::*;

mod agents;
pub use agents::{
    AgentIdentity, UnderlayClaim, check_bgp, check_drain, check_gateway_delete,
    check_host_network_delete, check_underlay,
};

/// A NIC holds at most this many VIPs; a VIP is bound to at most this many NICs.
pub const MAX_VIPS_PER_NIC: usize = 10;
pub const MAX_NICS_PER_VIP: usize = 10;
/// Recommendations of the vendor manuals: exceeding them warns.
pub const RECOMMENDED_VIPS_PER_SERVER: usize = 8;
pub const RECOMMENDED_SERVERS_PER_VIP: usize = 10;
/// Secondary CIDR blocks per VPC (the vendor manuals' cloud allows 5).
pub const MAX_SECONDARY_CIDRS: usize = 5;
pub const MAX_SECURITY_GROUPS_PER_NIC: usize = 5;
pub const MAX_BANDWIDTH_MBPS: u32 = 100_000;
pub const MAX_NAME_LEN: usize = 64;

/// How a resource is named in messages: its name, or its ID when unnamed.
pub fn label<'a>(name: &'a str, id: &'a str) -> &'a str {
    if name.is_empty() { id } else { name }
}

pub fn validate_name(field: &str, name: &str) -> Result<(), RuleError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(RuleError::invalid(
            field,
            format!("{name:?} must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(ok_char) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(RuleError::invalid(
            field,
            format!(
                "{name:?} must start with a letter or digit and hold only letters, digits, '-', '_' and '.'"
            ),
        ));
    }
    Ok(())
}

pub fn validate_tenant(tenant: &str) -> Result<(), RuleError> {
    validate_name("tenant", tenant)
}

/// How many of each resource one tenant may have (configurable by the
/// operator; the server's config file, `[quotas]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    pub vpcs: u32,
    /// Servers' NICs and ENIs together.
    pub nics: u32,
    pub vips: u32,
    pub eips: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            vpcs: 100,
            nics: 10_000,
            vips: 1_000,
            eips: 1_000,
        }
    }
}

impl Quotas {
    /// The quota of a kind, if it has one.
    pub fn of(&self, kind: Kind) -> Option<u32> {
        match kind {
            Kind::Vpc => Some(self.vpcs),
            Kind::Nic => Some(self.nics),
            Kind::Vip => Some(self.vips),
            Kind::Eip => Some(self.eips),
            _ => None,
        }
    }
}

pub fn check_bandwidth(mbps: u32) -> Result<(), RuleError> {
    if mbps == 0 || mbps > MAX_BANDWIDTH_MBPS {
        return Err(RuleError::invalid(
            "bandwidth_mbps",
            format!("{mbps} Mbit/s is outside 1..={MAX_BANDWIDTH_MBPS}"),
        ));
    }
    Ok(())
}

fn check_block(field: &str, block: &Ipv4Net) -> Result<(), RuleError> {
    if block.trunc() != *block {
        return Err(RuleError::invalid(
            field,
            format!("{block} has host bits set; the block is {}", block.trunc()),
        ));
    }
    Ok(())
}

/// A new VPC's blocks: well formed and not overlapping one another.
pub fn check_new_vpc(name: &str, cidr: &Ipv4Net, secondary: &[Ipv4Net]) -> Result<(), RuleError> {
    validate_name("name", name)?;
    check_block("cidr", cidr)?;
    let mut vpc = Vpc {
        id: String::new(),
        tenant: String::new(),
        name: name.to_string(),
        cidr: *cidr,
        secondary_cidrs: vec![],
        is_default: false,
        router_index: 0,
    };
    for block in secondary {
        check_vpc_cidr_add(&vpc, block)?;
        vpc.secondary_cidrs.push(*block);
    }
    Ok(())
}

pub fn check_vpc_cidr_add(vpc: &Vpc, block: &Ipv4Net) -> Result<(), RuleError> {
    if vpc.is_default {
        return Err(RuleError::DefaultVpc {
            action: "given CIDR blocks",
        });
    }
    check_block("cidr", block)?;
    if let Some(other) = vpc.blocks().find(|b| overlaps(b, block)) {
        return Err(RuleError::VpcCidrOverlap {
            vpc: label(&vpc.name, &vpc.id).into(),
            block: *block,
            other: *other,
        });
    }
    if vpc.secondary_cidrs.len() >= MAX_SECONDARY_CIDRS {
        return Err(RuleError::VpcCidrLimit {
            vpc: label(&vpc.name, &vpc.id).into(),
            count: vpc.secondary_cidrs.len(),
            limit: MAX_SECONDARY_CIDRS,
        });
    }
    Ok(())
}

/// Removing a secondary block: it must be one, and hold no subnet.
pub fn check_vpc_cidr_remove(
    vpc: &Vpc,
    block: &Ipv4Net,
    subnets: &[Subnet],
) -> Result<(), RuleError> {
    let vpc_label = label(&vpc.name, &vpc.id).to_string();
    if vpc.cidr == *block {
        return Err(RuleError::VpcCidrPrimary {
            vpc: vpc_label,
            block: *block,
        });
    }
    if !vpc.secondary_cidrs.contains(block) {
        return Err(RuleError::VpcCidrUnknown {
            vpc: vpc_label,
            block: *block,
        });
    }
    if let Some(s) = subnets.iter().find(|s| block.contains(&s.cidr)) {
        return Err(RuleError::VpcCidrInUse {
            vpc: vpc_label,
            block: *block,
            subnet: label(&s.name, &s.id).into(),
            cidr: s.cidr,
        });
    }
    Ok(())
}

/// A host network must not overlap an EIP segment.
pub fn check_host_network(cidr: &Ipv4Net, eip_segments: &[Subnet]) -> Result<(), RuleError> {
    check_block("cidr", cidr)?;
    if let Some(s) = eip_segments.iter().find(|s| overlaps(&s.cidr, cidr)) {
        return Err(RuleError::HostNetworkOverlapsSegment {
            host_network: *cidr,
            segment: s.cidr,
        });
    }
    Ok(())
}

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

/// Rules a group holds at most, unless the server's config says otherwise
/// (`[security_groups] max_rules`).
pub const DEFAULT_MAX_SG_RULES: usize = 100;

/// Checks one rule on its own: one remote, ports only on tcp and udp and
/// in 1..=65535 with min <= max, and a remote prefix that can match
/// something (no host bits, not loopback, multicast or reserved).
pub fn check_sg_rule(r: &SgRule) -> Result<(), RuleError> {
    let bad = |reason: String| RuleError::SgRuleInvalid {
        rule: r.to_string(),
        reason,
    };
    match (&r.remote_cidr, &r.remote_group) {
        (Some(_), None) | (None, Some(_)) => {}
        _ => return Err(bad("set exactly one of remote_cidr and remote_group".into())),
    }
    let ported = matches!(r.protocol, Protocol::Tcp | Protocol::Udp);
    match (ported, r.port_min, r.port_max) {
        (true, Some(a), Some(b)) if a >= 1 && a <= b => {}
        (true, None, None) | (false, None, None) => {}
        (true, a, b) => {
            return Err(bad(format!(
                "port range {}-{} can never match: ports run 1 <= min <= max <= 65535",
                a.map_or("?".into(), |v| v.to_string()),
                b.map_or("?".into(), |v| v.to_string())
            )));
        }
        (false, _, _) => {
            return Err(bad(format!(
                "ports apply only to tcp and udp, not to {}",
                r.protocol.as_str()
            )));
        }
    }
    if let Some(c) = r.remote_cidr {
        if c.addr() != c.network() {
            return Err(bad(format!(
                "{c} has host bits set (did you mean {}?)",
                c.trunc()
            )));
        }
        let never = |net: &str| {
            net.parse::<Ipv4Net>()
                .is_ok_and(|n| n.contains(&c) && c.prefix_len() > 0)
        };
        if ["127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "0.0.0.0/8"]
            .iter()
            .any(|n| never(n))
        {
            return Err(bad(format!(
                "{c} can never match: no VM talks to loopback, multicast or reserved addresses across a security group"
            )));
        }
    }
    Ok(())
}

/// Checks a group's rules: each on its own, no rule twice, at most `limit`.
pub fn check_sg_rules(group: &str, rules: &[SgRule], limit: usize) -> Result<(), RuleError> {
    if rules.len() > limit {
        return Err(RuleError::SgRuleLimit {
            group: group.into(),
            count: rules.len(),
            limit,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in rules {
        check_sg_rule(r)?;
        if !seen.insert(r.to_string()) {
            return Err(RuleError::SgRuleInvalid {
                rule: r.to_string(),
                reason: format!("group {group} already has this rule"),
            });
        }
    }
    Ok(())
}

/// A NIC's groups: 1 to 5, all in its VPC, all of one type, none managed
/// (unless the operator chooses).
pub fn check_security_groups(
    nic_vpc: &Vpc,
    groups: &[SecurityGroup],
    operator: bool,
) -> Result<(), RuleError> {
    if groups.is_empty() || groups.len() > MAX_SECURITY_GROUPS_PER_NIC {
        return Err(RuleError::SecurityGroupCount {
            count: groups.len(),
        });
    }
    for (i, g) in groups.iter().enumerate() {
        if groups[..i].iter().any(|o| o.id == g.id) {
            return Err(RuleError::invalid(
                "security_groups",
                format!("{} is given twice", label(&g.name, &g.id)),
            ));
        }
        if g.vpc_id != nic_vpc.id {
            return Err(RuleError::SecurityGroupWrongVpc {
                group: label(&g.name, &g.id).into(),
                group_vpc: g.vpc_id.clone(),
                nic_vpc: label(&nic_vpc.name, &nic_vpc.id).into(),
            });
        }
        if g.managed && !operator {
            return Err(RuleError::SecurityGroupManaged {
                group: label(&g.name, &g.id).into(),
            });
        }
    }
    let first = &groups[0];
    if let Some(other) = groups.iter().find(|g| g.kind != first.kind) {
        return Err(RuleError::SecurityGroupMixedKinds {
            first: label(&first.name, &first.id).into(),
            first_kind: first.kind.as_str(),
            other: label(&other.name, &other.id).into(),
            other_kind: other.kind.as_str(),
        });
    }
    Ok(())
}

/// A server's primary NIC must be in a subnet of the server's zone.
pub fn check_server_subnet(
    server_name: &str,
    server_zone: &Zone,
    subnet: &Subnet,
    subnet_zone: &Zone,
) -> Result<(), RuleError> {
    need_subnet_kind(subnet, SubnetKind::Guest)?;
    if server_zone.id != subnet_zone.id {
        return Err(RuleError::SubnetZoneMismatch {
            subnet: label(&subnet.name, &subnet.id).into(),
            subnet_zone: subnet_zone.name.clone(),
            server: server_name.into(),
            server_zone: server_zone.name.clone(),
        });
    }
    Ok(())
}

/// Attaching a secondary ENI: free, and in the server's zone.
pub fn check_attach(
    nic: &Nic,
    nic_zone: &Zone,
    server: &Server,
    server_zone: &Zone,
    server_vpc: Option<&str>,
) -> Result<(), RuleError> {
    if let Some(s) = &nic.server_id {
        return Err(RuleError::NicAttached {
            nic: label(&nic.name, &nic.id).into(),
            server: s.clone(),
        });
    }
    if let Some(vpc) = server_vpc
        && vpc != nic.vpc_id
    {
        return Err(RuleError::invalid(
            "server",
            format!(
                "ENI {} is in VPC {}, server {} in VPC {vpc}: a server's NICs share its VPC",
                label(&nic.name, &nic.id),
                nic.vpc_id,
                label(&server.name, &server.id)
            ),
        ));
    }
    if nic_zone.id != server_zone.id {
        return Err(RuleError::ZoneMismatch {
            nic: label(&nic.name, &nic.id).into(),
            nic_zone: nic_zone.name.clone(),
            server: label(&server.name, &server.id).into(),
            server_zone: server_zone.name.clone(),
        });
    }
    Ok(())
}

pub fn check_detach(nic: &Nic) -> Result<&str, RuleError> {
    let server = nic
        .server_id
        .as_deref()
        .ok_or_else(|| RuleError::NicNotAttached {
            nic: label(&nic.name, &nic.id).into(),
        })?;
    if nic.primary {
        return Err(RuleError::NicPrimary {
            nic: label(&nic.name, &nic.id).into(),
            server: server.into(),
        });
    }
    Ok(server)
}

/// What the VIP bind rules need to know about the current state.
#[derive(Debug, Clone, Default)]
pub struct VipBindContext {
    /// NICs the VIP is bound to now.
    pub vip_nics: Vec<Nic>,
    /// VIPs the NIC holds now.
    pub nic_vip_count: usize,
    /// VIPs held by the NIC's server over all its NICs (0 when unattached).
    pub server_vip_count: usize,
    /// The NIC's server's NICs that are in the VIP's subnet (the NIC included).
    pub server_nics_in_subnet: usize,
    /// The NIC's server's name, for the warnings (its ID when empty).
    pub server_name: Option<String>,
}

/// Binding a VIP to a NIC: hard limits are errors, the vendor manuals'
/// recommendations are warnings.
pub fn check_vip_bind(
    vip: &Vip,
    nic: &Nic,
    ctx: &VipBindContext,
) -> Result<Vec<Warning>, RuleError> {
    let vip_label = label(&vip.name, &vip.id).to_string();
    let nic_label = label(&nic.name, &nic.id).to_string();
    if nic.subnet_id != vip.subnet_id {
        return Err(RuleError::VipSubnetMismatch {
            vip: vip_label,
            vip_subnet: vip.subnet_id.clone(),
            nic: nic_label,
            nic_subnet: nic.subnet_id.clone(),
        });
    }
    if ctx.vip_nics.iter().any(|n| n.id == nic.id) {
        return Err(RuleError::VipAlreadyBound {
            vip: vip_label,
            nic: nic_label,
        });
    }
    if ctx.vip_nics.len() >= MAX_NICS_PER_VIP {
        return Err(RuleError::VipNicLimit {
            vip: vip_label,
            count: ctx.vip_nics.len(),
            limit: MAX_NICS_PER_VIP,
        });
    }
    if ctx.nic_vip_count >= MAX_VIPS_PER_NIC {
        return Err(RuleError::NicVipLimit {
            nic: nic_label,
            count: ctx.nic_vip_count,
            limit: MAX_VIPS_PER_NIC,
        });
    }
    let mut servers: Vec<&str> = ctx
        .vip_nics
        .iter()
        .filter_map(|n| n.server_id.as_deref())
        .chain(nic.server_id.as_deref())
        .collect();
    servers.sort_unstable();
    servers.dedup();
    Ok(vip_warnings(
        &vip_label,
        ctx.server_name.as_deref().or(nic.server_id.as_deref()),
        ctx.server_vip_count + 1,
        servers.len(),
        ctx.server_nics_in_subnet,
    ))
}

/// The seeds' recommendations, after a bind: VIPs on the server, servers on
/// the VIP, and several NICs of one server in the VIP's subnet.
pub fn vip_warnings(
    vip: &str,
    server: Option<&str>,
    server_vips: usize,
    vip_servers: usize,
    server_nics_in_subnet: usize,
) -> Vec<Warning> {
    let mut w = Vec::new();
    if let Some(server) = server {
        if server_vips > RECOMMENDED_VIPS_PER_SERVER {
            w.push(Warning {
                code: "server_vip_count".into(),
                message: format!(
                    "server {server} now holds {server_vips} VIPs (recommended at most {RECOMMENDED_VIPS_PER_SERVER})"
                ),
            });
        }
        if server_nics_in_subnet > 1 {
            w.push(Warning {
                code: "server_nics_in_vip_subnet".into(),
                message: format!(
                    "server {server} has {server_nics_in_subnet} NICs in the subnet of VIP {vip}; route conflicts on the server may break the VIP"
                ),
            });
        }
    }
    if vip_servers > RECOMMENDED_SERVERS_PER_VIP {
        w.push(Warning {
            code: "vip_server_count".into(),
            message: format!(
                "VIP {vip} is now bound to {vip_servers} servers (recommended at most {RECOMMENDED_SERVERS_PER_VIP})"
            ),
        });
    }
    w
}

/// The bind target as resolved by the store.
#[derive(Debug, Clone)]
pub enum ResolvedTarget {
    Nic(Nic),
    Vip(Vip),
}

impl ResolvedTarget {
    pub fn id(&self) -> &str {
        match self {
            ResolvedTarget::Nic(n) => &n.id,
            ResolvedTarget::Vip(v) => &v.id,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            ResolvedTarget::Nic(_) => "NIC",
            ResolvedTarget::Vip(_) => "VIP",
        }
    }
    pub fn label(&self) -> &str {
        match self {
            ResolvedTarget::Nic(n) => label(&n.name, &n.id),
            ResolvedTarget::Vip(v) => label(&v.name, &v.id),
        }
    }
    pub fn ip(&self) -> Ipv4Addr {
        match self {
            ResolvedTarget::Nic(n) => n.ip,
            ResolvedTarget::Vip(v) => v.ip,
        }
    }
}

/// Binding an EIP: one target per EIP (moving needs allow_reassociation),
/// one EIP per target, and in visible mode the target's address is the EIP.
pub fn check_eip_bind(
    eip: &Eip,
    target: &ResolvedTarget,
    target_eip: Option<&Eip>,
    mode: EipMode,
    allow_reassociation: bool,
) -> Result<(), RuleError> {
    let current = eip.nic_id.as_deref().or(eip.vip_id.as_deref());
    if let Some(cur) = current {
        if cur == target.id() && eip.mode == mode {
            // Binding again to the same target is a no-op, not an error.
            return Ok(());
        }
        if !allow_reassociation {
            return Err(RuleError::EipBound {
                eip: eip.ip,
                target_kind: if eip.vip_id.is_some() { "VIP" } else { "NIC" },
                target: cur.to_string(),
            });
        }
    }
    if current.is_some() {
        check_eip_unbind(eip)?;
    }
    if let Some(other) = target_eip.filter(|o| o.id != eip.id) {
        return Err(RuleError::TargetHasEip {
            target_kind: target.kind(),
            target: target.label().to_string(),
            eip: other.ip,
        });
    }
    if mode == EipMode::Visible && target.ip() != eip.ip {
        return Err(RuleError::VisibleAddressMismatch {
            eip: eip.ip,
            target_kind: target.kind(),
            target: target.label().to_string(),
            addr: target.ip(),
        });
    }
    Ok(())
}

/// A visible-mode EIP is its target's own address (a NIC or VIP in a
/// subnet carved from the EIP segment): it stays bound until that NIC or
/// VIP is deleted, or the address could be handed out again while in use.
pub fn check_eip_unbind(eip: &Eip) -> Result<(), RuleError> {
    if eip.mode == EipMode::Visible
        && let Some(t) = eip.nic_id.as_deref().or(eip.vip_id.as_deref())
    {
        let kind = if eip.vip_id.is_some() { "VIP" } else { "NIC" };
        return Err(RuleError::InUse {
            kind: "EIP",
            id: eip.ip.to_string(),
            reason: format!(
                "it is the address of {kind} {t} (visible mode); delete the {kind} to free it"
            ),
        });
    }
    Ok(())
}

/// A NIC's MAC: locally administered, unicast, and the NIC's address in its
/// last four bytes, so it is unique in the NIC's L2 domain (its subnet).
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("fa:16:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

#[cfg(test)]
mod tests;
