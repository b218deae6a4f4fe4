//! EIPs: modes, targets, NAT helpers.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum EipMode {
    /// 1:1 NAT at the gateway; the guest does not see the EIP.
    #[default]
    Nat,
    /// Cut-through: the EIP is the NIC's own address, routed untranslated.
    Visible,
}

impl EipMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EipMode::Nat => "nat",
            EipMode::Visible => "visible",
        }
    }
}

/// What an EIP is bound to, as requested.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "kind", content = "id")]
pub enum EipTarget {
    /// A server: its primary NIC.
    Server(String),
    /// A NIC or secondary ENI.
    Nic(String),
    Vip(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Eip {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub subnet_id: String,
    #[schema(value_type = String, example = "192.168.202.7")]
    pub ip: Ipv4Addr,
    pub bandwidth_mbps: u32,
    pub mode: EipMode,
    /// The bound NIC (for a server: its primary NIC) or VIP.
    pub nic_id: Option<String>,
    pub vip_id: Option<String>,
    /// The server of the bound NIC, if attached.
    pub server_id: Option<String>,
    /// The private address the EIP maps to.
    #[schema(value_type = Option<String>)]
    pub private_ip: Option<Ipv4Addr>,
    pub vpc_id: Option<String>,
    /// The NAT helpers attached to its traffic (NAT mode carries these
    /// protocols' addresses in their payload).
    #[serde(default)]
    pub algs: Vec<Alg>,
}

/// A NAT helper (application-level gateway) the kernel has: it follows the
/// protocol's control connection, lets its related connections through and
/// rewrites the addresses it carries to the EIP.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum Alg {
    /// FTP, active and passive (TCP 21).
    Ftp,
    /// SIP over UDP and TCP (5060), and its media.
    Sip,
    /// TFTP (UDP 69).
    Tftp,
    /// H.323: Q.931 (TCP 1720) and RAS (UDP 1719).
    H323,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Ftp => "ftp",
            Alg::Sip => "sip",
            Alg::Tftp => "tftp",
            Alg::H323 => "h323",
        }
    }
}

impl std::str::FromStr for Alg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ftp" => Ok(Alg::Ftp),
            "sip" => Ok(Alg::Sip),
            "tftp" => Ok(Alg::Tftp),
            "h323" => Ok(Alg::H323),
            other => Err(format!("no NAT helper {other}: ftp, sip, tftp or h323")),
        }
    }
}
