//! VPCs and subnets.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Vpc {
    pub id: String,
    pub tenant: String,
    pub name: String,
    #[schema(value_type = String, example = "10.0.0.0/8")]
    pub cidr: Ipv4Net,
    #[schema(value_type = Vec<String>)]
    pub secondary_cidrs: Vec<Ipv4Net>,
    pub is_default: bool,
    /// The VPC router's number on its gateway (names its link; 0 for the
    /// default VPC, which has no router).
    #[serde(default)]
    pub router_index: u32,
}

impl Vpc {
    pub fn blocks(&self) -> impl Iterator<Item = &Ipv4Net> {
        std::iter::once(&self.cidr).chain(self.secondary_cidrs.iter())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SubnetKind {
    #[default]
    Guest,
    Eip,
}

impl SubnetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubnetKind::Guest => "guest",
            SubnetKind::Eip => "eip",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Subnet {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub vpc_id: String,
    pub zone_id: Option<String>,
    pub kind: SubnetKind,
    #[schema(value_type = String, example = "192.168.202.0/24")]
    pub cidr: Ipv4Net,
    #[schema(value_type = String, example = "192.168.202.1")]
    pub range_start: Ipv4Addr,
    #[schema(value_type = String, example = "192.168.202.254")]
    pub range_end: Ipv4Addr,
    #[schema(value_type = Option<String>)]
    pub gateway: Option<Ipv4Addr>,
    /// Addresses in the allocation range, and how many are taken (filled in
    /// when read).
    pub total: u64,
    pub used: u64,
    /// The VXLAN network identifier of the subnet's L2 domain (guest
    /// subnets; 0 for EIP segments).
    #[serde(default)]
    pub vni: u32,
    /// The DNS servers its VMs learn by DHCP (empty: the server's
    /// `[dhcp] dns_servers`).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub dns_servers: Vec<Ipv4Addr>,
    /// Routes its VMs learn by DHCP (classless static routes, option 121).
    #[serde(default)]
    pub host_routes: Vec<HostRoute>,
}

/// A route a subnet's VMs learn by DHCP (option 121), as a Neutron
/// subnet's host routes: written `DESTINATION,NEXT_HOP`
/// (`10.9.0.0/16,10.0.1.5`) or `destination=…,gateway=…`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct HostRoute {
    #[schema(value_type = String, example = "10.9.0.0/16")]
    pub destination: Ipv4Net,
    #[schema(value_type = String, example = "10.0.1.5")]
    pub next_hop: Ipv4Addr,
}

impl std::fmt::Display for HostRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.destination, self.next_hop)
    }
}

impl std::str::FromStr for HostRoute {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?}: write a host route as DESTINATION,NEXT_HOP (10.9.0.0/16,10.0.1.5)");
        let (dest, hop) = s.split_once(',').ok_or_else(bad)?;
        let dest = dest
            .trim()
            .strip_prefix("destination=")
            .unwrap_or(dest.trim());
        let hop = hop
            .trim()
            .strip_prefix("gateway=")
            .or_else(|| hop.trim().strip_prefix("nexthop="))
            .unwrap_or(hop.trim());
        Ok(HostRoute {
            destination: dest.parse().map_err(|_| bad())?,
            next_hop: hop.parse().map_err(|_| bad())?,
        })
    }
}

/// The static route the physical network needs for an EIP segment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PhysicalRoute {
    #[schema(value_type = String, example = "192.168.202.0/24")]
    pub prefix: Ipv4Net,
    #[schema(value_type = String, example = "192.168.201.20")]
    pub next_hop: Ipv4Addr,
    pub gateway: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SubnetCreated {
    #[serde(flatten)]
    pub subnet: Subnet,
    /// For an EIP subnet: what to configure on the physical router(s).
    pub physical_routes: Vec<PhysicalRoute>,
    /// Said when an EIP subnet has no gateway yet to route it to.
    pub warnings: Vec<Warning>,
}
