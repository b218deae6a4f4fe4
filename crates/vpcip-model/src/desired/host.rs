//! A host's desired state: its VM ports, their L2 domains and DHCP leases.

use super::*;

/// A VM's port on a host: the NIC's link (made by the hypervisor, named
/// [`port_ifname`]) joined to its subnet's L2 domain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct HostPort {
    pub nic_id: String,
    pub ifname: String,
    pub vni: u32,
    pub mac: String,
    /// The addresses the NIC may send from: its own and its VIPs'.
    #[schema(value_type = Vec<String>)]
    pub ips: Vec<Ipv4Addr>,
    /// When false, the NIC may send from any address (routers, NAT VMs).
    pub source_dest_check: bool,
    /// The NIC's security groups (IDs, in [`HostState::groups`]).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The other NICs of its VIPs: VRRP from them passes.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub vrrp_peers: Vec<Ipv4Addr>,
    /// Its VPC's conntrack zone (the VPC's number): two VPCs' connections
    /// never mix, whatever their addresses.
    #[serde(default)]
    pub zone: u16,
    /// What the host answers the NIC's DHCP requests with.
    #[serde(default)]
    pub dhcp: Option<DhcpLease>,
}

/// A NIC's DHCP answer, but for the MTU (the host's overlay MTU, which the
/// host agent knows): its address for as long as the NIC exists.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DhcpLease {
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// The subnet's gateway: the server identifier the guest sees (the
    /// host answers in its name).
    #[schema(value_type = String)]
    pub server: Ipv4Addr,
    /// The default route (option 3): the primary NIC's only, so that a
    /// secondary ENI never takes the default route.
    #[schema(value_type = Option<String>)]
    pub router: Option<Ipv4Addr>,
    #[schema(value_type = Vec<String>)]
    pub dns_servers: Vec<Ipv4Addr>,
    /// Classless static routes (option 121): the subnet's host routes,
    /// and the default route with them when the NIC has one (a client
    /// that takes option 121 ignores option 3).
    pub routes: Vec<crate::resources::HostRoute>,
    /// The server's name, when the NIC is attached (option 12).
    pub hostname: Option<String>,
    pub lease_seconds: u32,
}

/// The server's `[dhcp]` settings: DNS servers for subnets that name none,
/// and the lease time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DhcpDefaults {
    #[serde(default)]
    pub dns_servers: Vec<Ipv4Addr>,
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u32,
}

/// A day, as Neutron's `dhcp_lease_duration`.
pub const DEFAULT_LEASE_SECONDS: u32 = 86_400;

fn default_lease_seconds() -> u32 {
    DEFAULT_LEASE_SECONDS
}

impl Default for DhcpDefaults {
    fn default() -> Self {
        DhcpDefaults {
            dns_servers: vec![],
            lease_seconds: DEFAULT_LEASE_SECONDS,
        }
    }
}

impl DhcpDefaults {
    /// The settings, checked: DNS servers as a subnet's, a lease of two
    /// minutes to a year.
    pub fn checked(self) -> Result<Self, crate::error::RuleError> {
        crate::rules::check_subnet_dhcp(
            SubnetKind::Guest,
            Ipv4Net::default(),
            None,
            &self.dns_servers,
            &[],
        )?;
        if !(120..=31_536_000).contains(&self.lease_seconds) {
            return Err(crate::error::RuleError::invalid(
                "dhcp.lease_seconds",
                format!(
                    "{} is not between 120 (two minutes) and 31536000 (a year)",
                    self.lease_seconds
                ),
            ));
        }
        Ok(self)
    }
}

/// The DHCP answer of NIC `n` in `subnet`, on `server` when attached.
pub fn dhcp_lease(
    n: &Nic,
    subnet: &Subnet,
    server: Option<&Server>,
    defaults: &DhcpDefaults,
) -> Option<DhcpLease> {
    let gateway = subnet.gateway?;
    let router = n.primary.then_some(gateway);
    let mut routes = subnet.host_routes.clone();
    if let Some(g) = router
        && !routes.is_empty()
    {
        routes.push(crate::resources::HostRoute {
            destination: Ipv4Net::default(),
            next_hop: g,
        });
    }
    Some(DhcpLease {
        ip: n.ip,
        prefix_len: subnet.cidr.prefix_len(),
        server: gateway,
        router,
        dns_servers: if subnet.dns_servers.is_empty() {
            defaults.dns_servers.clone()
        } else {
            subnet.dns_servers.clone()
        },
        routes,
        hostname: server.map(|s| s.name.clone()),
        lease_seconds: defaults.lease_seconds,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct HostState {
    pub domains: Vec<L2Domain>,
    pub ports: Vec<HostPort>,
    /// The security groups of the ports, compiled.
    #[serde(default)]
    pub groups: Vec<crate::filter::GroupFilter>,
}
