//! The model's rules as pure functions: the store loads what a rule needs,
//! asks here, and writes only when the answer is yes.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::RuleError;
#[cfg(test)]
use crate::ipam::usable;
use crate::resources::*;

mod agents;
mod binding;
mod nics;
mod security_groups;
mod subnets;
mod vpc;

pub use agents::{
    AgentIdentity, UnderlayClaim, check_bgp, check_drain, check_gateway_delete,
    check_host_network_delete, check_underlay,
};
pub use binding::{
    ResolvedTarget, VipBindContext, check_eip_bind, check_eip_unbind, check_vip_bind, vip_warnings,
};
pub use nics::{check_attach, check_detach, check_server_subnet};
pub use security_groups::{
    DEFAULT_MAX_SG_RULES, check_security_groups, check_sg_rule, check_sg_rules,
};
pub use subnets::{
    MAX_DNS_SERVERS, MAX_HOST_ROUTES, SubnetPlan, check_chosen_address, check_subnet_dhcp,
    need_subnet_kind, physical_routes, plan_subnet,
};
pub use vpc::{check_host_network, check_new_vpc, check_vpc_cidr_add, check_vpc_cidr_remove};

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
/// A NIC's MAC: locally administered, unicast, and the NIC's address in its
/// last four bytes, so it is unique in the NIC's L2 domain (its subnet).
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("fa:16:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

#[cfg(test)]
mod tests;
