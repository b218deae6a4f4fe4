//! Servers, NICs and VIPs.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Server {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub zone_id: String,
    /// NICs attached, the primary first.
    pub nic_ids: Vec<String>,
    /// The host (its agent's name) the server runs on; none while no host
    /// agent is registered.
    #[serde(default)]
    pub host: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Nic {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub zone_id: String,
    #[schema(value_type = String, example = "10.0.0.202")]
    pub ip: Ipv4Addr,
    pub mac: String,
    pub server_id: Option<String>,
    pub primary: bool,
    pub security_group_ids: Vec<String>,
    pub source_dest_check: bool,
    /// VIPs bound to this NIC (filled in when read).
    pub vip_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Vip {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub vpc_id: String,
    pub subnet_id: String,
    #[schema(value_type = String, example = "192.168.0.22")]
    pub ip: Ipv4Addr,
    /// NICs the VIP is bound to (filled in when read).
    pub nic_ids: Vec<String>,
    /// The EIP bound to the VIP, if any (filled in when read).
    pub eip_id: Option<String>,
}
