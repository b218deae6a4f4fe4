//! Platform resources: zones, host networks, gateways (with their BGP settings) and the physical routes of the EIP segments.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Zone {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct HostNetwork {
    pub id: String,
    pub name: String,
    #[schema(value_type = String, example = "192.168.201.0/24")]
    pub cidr: Ipv4Net,
}

/// A gateway node registered by the operator (later by its agent).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Gateway {
    pub id: String,
    pub name: String,
    /// The gateway's address on the physical network: the next hop of the
    /// EIP segments' static routes.
    #[schema(value_type = String, example = "192.168.201.20")]
    pub underlay_ip: Ipv4Addr,
    /// The address the VPCs' default SNAT leaves this gateway from (VMs
    /// without an EIP reaching the outside world): taken from an EIP
    /// segment, so never the node's own (VTEP) address. None while no EIP
    /// segment has a free address; VMs without an EIP then reach nothing
    /// outside.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "203.0.113.254")]
    pub snat_ip: Option<Ipv4Addr>,
    /// Its number in the gateway cluster (1 to 255): the VRRP router ID
    /// under which the gateways elect who carries the VPCs placed on it
    /// (it, while it lives and is not drained). 0 on gateways registered
    /// before clusters: numbered in ID order after the others.
    #[serde(default)]
    pub slot: u8,
    /// Drained for maintenance: it carries no VPC and announces nothing
    /// while another gateway lives; its agent keeps its data plane ready.
    #[serde(default)]
    pub drained: bool,
    /// Its BGP sessions to the physical routers, which it announces the
    /// EIPs it carries to; None: static routes (`vpcip route list`).
    #[serde(default)]
    pub bgp: Option<BgpConfig>,
}

/// A gateway's BGP: its AS and its peers (the physical routers).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BgpConfig {
    #[schema(example = 64513)]
    pub local_as: u32,
    pub peers: Vec<BgpPeer>,
    /// BFD on every session (100 ms × 3): a dead gateway's routes are
    /// withdrawn in about 0.3 s instead of the hold time.
    #[serde(default = "yes")]
    pub bfd: bool,
}

fn yes() -> bool {
    true
}

/// One BGP peer of a gateway.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct BgpPeer {
    #[schema(value_type = String, example = "192.0.2.1")]
    pub ip: Ipv4Addr,
    #[schema(example = 64512)]
    pub peer_as: u32,
}

/// What an agent does: a gateway (VPC routers, NAT, EIPs) or a host (VM
/// ports).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AgentRole {
    Gateway,
    Host,
}

impl AgentRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentRole::Gateway => "gateway",
            AgentRole::Host => "host",
        }
    }
}
