//! The resources as the API shows them, and the requests that
//! create and change them. Shared by the server, the client and the CLI.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Warning;

/// The tenant that owns platform resources (zones, host networks, gateways,
/// the default VPC and its EIP segments).
pub const SYSTEM_TENANT: &str = "system";
pub const DEFAULT_VPC_NAME: &str = "default";

/// Kinds of resources, with the prefix of their IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Zone,
    HostNetwork,
    Gateway,
    Vpc,
    Subnet,
    SecurityGroup,
    Server,
    Nic,
    Vip,
    Eip,
    Agent,
}

impl Kind {
    /// Name used in the store and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Zone => "zone",
            Kind::HostNetwork => "host network",
            Kind::Gateway => "gateway",
            Kind::Vpc => "VPC",
            Kind::Subnet => "subnet",
            Kind::SecurityGroup => "security group",
            Kind::Server => "server",
            Kind::Nic => "NIC",
            Kind::Vip => "VIP",
            Kind::Eip => "EIP",
            Kind::Agent => "agent",
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Zone => "zone",
            Kind::HostNetwork => "hostnet",
            Kind::Gateway => "gw",
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::SecurityGroup => "sg",
            Kind::Server => "vm",
            Kind::Nic => "eni",
            Kind::Vip => "vip",
            Kind::Eip => "eip",
            Kind::Agent => "agent",
        }
    }

    /// Stable key used as the `kind` column of the store.
    pub fn key(self) -> &'static str {
        match self {
            Kind::HostNetwork => "host_network",
            Kind::SecurityGroup => "security_group",
            other => other.prefix(),
        }
    }
}

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

/// A field that is there, null or not (absent is None by `default`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// One BGP peer of a gateway.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct BgpPeer {
    #[schema(value_type = String, example = "192.0.2.1")]
    pub ip: Ipv4Addr,
    #[schema(example = 64512)]
    pub peer_as: u32,
}

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

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SgKind {
    #[default]
    Basic,
    Advanced,
}

impl SgKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SgKind::Basic => "basic",
            SgKind::Advanced => "advanced",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    All,
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SgRule {
    /// Given by the server (`sgr-…`); empty in requests.
    #[serde(default)]
    pub id: String,
    pub direction: Direction,
    pub protocol: Protocol,
    /// Inclusive port range; only for tcp and udp.
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    /// Exactly one of `remote_cidr` and `remote_group` is set.
    #[schema(value_type = Option<String>)]
    pub remote_cidr: Option<Ipv4Net>,
    pub remote_group: Option<String>,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::All => "all",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

/// A rule written `DIRECTION:PROTOCOL[:PORTS]:REMOTE`, e.g.
/// `ingress:tcp:80-443:0.0.0.0/0` or `ingress:all:sg-web` (a remote group).
impl std::fmt::Display for SgRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.direction.as_str(), self.protocol.as_str())?;
        match (self.port_min, self.port_max) {
            (Some(a), Some(b)) if a == b => write!(f, ":{a}")?,
            (Some(a), Some(b)) => write!(f, ":{a}-{b}")?,
            _ => {}
        }
        match (&self.remote_cidr, &self.remote_group) {
            (Some(c), _) => write!(f, ":{c}"),
            (None, Some(g)) => write!(f, ":{g}"),
            (None, None) => write!(f, ":?"),
        }
    }
}

impl std::str::FromStr for SgRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (dir, proto, ports, remote) = match parts.as_slice() {
            [d, p, r] => (*d, *p, None, *r),
            [d, p, ports, r] => (*d, *p, Some(*ports), *r),
            _ => {
                return Err(format!(
                    "rule {s:?} is not DIRECTION:PROTOCOL[:PORTS]:REMOTE"
                ));
            }
        };
        let direction = match dir {
            "ingress" | "in" => Direction::Ingress,
            "egress" | "out" => Direction::Egress,
            _ => return Err(format!("rule {s:?}: direction must be ingress or egress")),
        };
        let protocol = match proto {
            "all" => Protocol::All,
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            _ => {
                return Err(format!(
                    "rule {s:?}: protocol must be all, tcp, udp or icmp"
                ));
            }
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("rule {s:?}: port {p:?} is not a number in 0-65535"))
        };
        let (port_min, port_max) = match ports {
            None => (None, None),
            Some(p) => {
                let (a, b) = p.split_once('-').unwrap_or((p, p));
                (Some(port(a)?), Some(port(b)?))
            }
        };
        let (remote_cidr, remote_group) = match remote.parse() {
            Ok(net) => (Some(net), None),
            Err(_) => (None, Some(remote.to_string())),
        };
        Ok(SgRule {
            id: String::new(),
            direction,
            protocol,
            port_min,
            port_max,
            remote_cidr,
            remote_group,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SecurityGroup {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub vpc_id: String,
    pub kind: SgKind,
    /// Groups the platform manages for its own services; tenants cannot
    /// choose them.
    pub managed: bool,
    pub rules: Vec<SgRule>,
}

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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Token {
    pub id: String,
    pub tenant: String,
    pub description: String,
    /// An agent's token: it serves the agent routes (register, watch,
    /// report) and nothing else, for one agent: `tenant` is its name,
    /// `agent_role` its role.
    #[serde(default)]
    pub agent: bool,
    /// An agent token's role: its agent registers with this role only.
    /// (Absent on agent tokens made before tokens were bound to one agent:
    /// those are refused.)
    #[serde(default)]
    pub agent_role: Option<crate::desired::AgentRole>,
    /// Only in the answer to a create: the secret is stored hashed.
    pub secret: Option<String>,
}

/// A page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `page_token` to get the next page; absent on the last.
    pub next_page_token: Option<String>,
}

/// An answer that may carry warnings (VIP bind, EIP bind).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct WithWarnings<T> {
    #[serde(flatten)]
    pub item: T,
    pub warnings: Vec<Warning>,
}

// ---- requests ----

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

/// The seeds' "EIP visible on the NIC" recipe in one call: allocate an EIP,
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
    pub agent_role: Option<crate::desired::AgentRole>,
}
