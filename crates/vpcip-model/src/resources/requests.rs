//! The requests that create and change resources.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateZone {
    pub name: String,
}

/// Request fields that hold IPv4 blocks: an IPv6 one is refused with what
/// vpcip speaks, not a parser's "invalid IP address syntax".
pub mod v4 {
    use ipnet::Ipv4Net;
    use serde::{Deserialize, Deserializer, de::Error};

    fn parse<E: Error>(s: &str) -> Result<Ipv4Net, E> {
        s.parse().map_err(|_| {
            if s.contains(':') {
                E::custom(format!(
                    "{s:?} is an IPv6 block: vpcip speaks IPv4 only, for now"
                ))
            } else {
                E::custom(format!(
                    "{s:?} is not an IPv4 block (write it as 10.0.0.0/16)"
                ))
            }
        })
    }

    pub fn net<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
        parse(&String::deserialize(d)?)
    }

    pub fn opt_net<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Net>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| parse(&s))
            .transpose()
    }

    pub fn nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ipv4Net>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| parse(s))
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHostNetwork {
    pub name: String,
    #[schema(value_type = String)]
    #[serde(deserialize_with = "v4::net")]
    pub cidr: Ipv4Net,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGateway {
    pub name: String,
    #[schema(value_type = String)]
    pub underlay_ip: Ipv4Addr,
}

/// Changes to a gateway (absent fields stay as they are).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateGateway {
    /// Its BGP (null: none, back to static routes).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<BgpConfig>)]
    pub bgp: Option<Option<BgpConfig>>,
    /// Drained: another gateway carries its VPCs (`vpcip gateway drain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drained: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateVpc {
    pub name: String,
    #[schema(value_type = String)]
    #[serde(deserialize_with = "v4::net")]
    pub cidr: Ipv4Net,
    #[serde(default, deserialize_with = "v4::nets")]
    #[schema(value_type = Vec<String>)]
    pub secondary_cidrs: Vec<Ipv4Net>,
    /// Operators may create a VPC for a tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcCidrChange {
    #[schema(value_type = String)]
    #[serde(deserialize_with = "v4::net")]
    pub cidr: Ipv4Net,
}

/// A subnet is given by `cidr`, or by `range` and `prefix_len` as the vendor manuals
/// do (`192.168.202.1-192.168.202.254`, 24).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateSubnet {
    pub name: String,
    /// VPC ID or name; an `eip` subnet defaults to the default VPC.
    #[serde(default)]
    pub vpc: Option<String>,
    /// Zone ID or name; required for guest subnets.
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub kind: SubnetKind,
    #[serde(default, deserialize_with = "v4::opt_net")]
    #[schema(value_type = Option<String>)]
    pub cidr: Option<Ipv4Net>,
    #[serde(default)]
    #[schema(example = "192.168.202.1-192.168.202.254")]
    pub range: Option<String>,
    #[serde(default)]
    pub prefix_len: Option<u8>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers for the subnet's VMs (DHCP option 6).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub dns_servers: Vec<Ipv4Addr>,
    /// Routes for the subnet's VMs (DHCP option 121).
    #[serde(default)]
    pub host_routes: Vec<HostRoute>,
    #[serde(default)]
    pub client_token: Option<String>,
}

/// What may change of a subnet: what its VMs learn by DHCP (at their next
/// renewal).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubnet {
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub dns_servers: Option<Vec<Ipv4Addr>>,
    #[serde(default)]
    pub host_routes: Option<Vec<HostRoute>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSecurityGroup {
    pub name: String,
    pub vpc: String,
    #[serde(default)]
    pub kind: SgKind,
    #[serde(default)]
    pub rules: Vec<SgRule>,
    /// Operators only: a group the platform manages for its services.
    #[serde(default)]
    pub managed: bool,
    #[serde(default)]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateServer {
    pub name: String,
    /// Subnet of the primary NIC (ID or name).
    pub subnet: String,
    /// Zone; defaults to the subnet's.
    #[serde(default)]
    pub zone: Option<String>,
    /// Primary private IP; auto-assigned when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ip: Option<Ipv4Addr>,
    /// Security groups of the primary NIC; the VPC's default group when empty.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The host to run on (a host agent's name); the least loaded
    /// registered host when absent.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateNic {
    pub name: String,
    pub subnet: String,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub source_dest_check: Option<bool>,
    #[serde(default)]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateNic {
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    #[serde(default)]
    pub source_dest_check: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachNic {
    pub server: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateVip {
    pub name: String,
    pub subnet: String,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VipNic {
    pub nic: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateEip {
    #[serde(default)]
    pub name: Option<String>,
    /// EIP subnet (ID or name); any EIP subnet with room when absent.
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ip: Option<Ipv4Addr>,
    #[schema(minimum = 1, maximum = 100000)]
    pub bandwidth_mbps: u32,
    /// Bind at once (the vendor manuals' `server-create-eip`).
    #[serde(default)]
    pub bind: Option<BindEip>,
    /// NAT helpers for its traffic.
    #[serde(default)]
    pub algs: Vec<Alg>,
    #[serde(default)]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindEip {
    pub target: EipTarget,
    #[serde(default)]
    pub mode: EipMode,
    /// Move the EIP from its current target.
    #[serde(default)]
    pub allow_reassociation: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[derive(Default)]
pub struct UpdateEip {
    /// A new bandwidth limit, Mbit/s.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100000)]
    pub bandwidth_mbps: Option<u32>,
    /// The NAT helpers, all of them (an empty list removes them).
    #[serde(default)]
    pub algs: Option<Vec<Alg>>,
}

/// The vendor manuals' "EIP visible on the NIC" recipe in one call: allocate an EIP,
/// add its block as a secondary CIDR of the VPC, create a subnet in it, an
/// ENI whose primary IP is the EIP, bind in visible mode, and attach the ENI
/// to the server.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateVisibleEip {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ip: Option<Ipv4Addr>,
    #[schema(minimum = 1, maximum = 100000)]
    pub bandwidth_mbps: u32,
    pub server: String,
    /// Name of the ENI to create; `eni-<EIP>` when absent.
    #[serde(default)]
    pub eni_name: Option<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub client_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct VisibleEip {
    pub eip: Eip,
    pub vpc: Vpc,
    pub subnet: Subnet,
    pub nic: Nic,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// The tenant; for an agent's token, the name of the one agent it acts
    /// for.
    pub tenant: String,
    #[serde(default)]
    pub description: String,
    /// A token for an agent (see [`Token::agent`]); needs `agent_role`.
    #[serde(default)]
    pub agent: bool,
    /// An agent token's role (`gateway` or `host`): the token registers,
    /// watches and reports as the agent `tenant` with this role only.
    #[serde(default)]
    pub agent_role: Option<AgentRole>,
    /// Also an EC2 credential (a tenant's token only): the access key is
    /// the token's ID, the secret access key `ec2_secret` in the answer.
    #[serde(default)]
    pub ec2: bool,
}

/// A field that is there, null or not (absent is None by `default`):
/// `Option<Option<T>>` tells "set to null" from "not given".
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}
