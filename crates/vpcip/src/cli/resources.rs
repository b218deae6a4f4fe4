//! The API's clients: a command per resource, a verb per operation.

use super::*;

#[derive(Subcommand)]
pub enum Resource {
    /// The system at a glance (operator): the controller's revision, each
    /// gateway and host with its health and revision lag, and the EIPs
    /// whose data plane differs from the desired state. Exits 3 when
    /// something is wrong.
    Status,
    /// Failure domains (operator).
    #[command(subcommand)]
    Zone(ZoneCmd),
    /// Physical (underlay) networks of hosts and gateways (operator).
    #[command(subcommand, name = "host-network")]
    HostNetwork(HostNetworkCmd),
    /// EIP gateway nodes and their agents' health (operator).
    #[command(subcommand)]
    Gateway(GatewayCmd),
    /// Host agents and their health (operator).
    #[command(subcommand)]
    Host(HostCmd),
    /// Static routes the physical network needs for the EIP segments (operator).
    #[command(subcommand)]
    Route(RouteCmd),
    /// Virtual private clouds.
    #[command(subcommand)]
    Vpc(VpcCmd),
    /// Subnets (vSwitches): guest subnets and EIP segments.
    #[command(subcommand)]
    Subnet(SubnetCmd),
    /// Security groups.
    #[command(subcommand, name = "sg")]
    SecurityGroup(SgCmd),
    /// Servers (VMs, ECS instances); `vm` is the same command.
    #[command(subcommand, name = "server", visible_alias = "vm", alias = "ecs")]
    Vm(VmCmd),
    /// NICs and secondary ENIs.
    #[command(subcommand, alias = "eni")]
    Nic(NicCmd),
    /// Virtual IPs shared by keepalived pairs.
    #[command(subcommand)]
    Vip(VipCmd),
    /// Elastic IPs.
    #[command(subcommand)]
    Eip(EipCmd),
    /// API tokens of tenants (operator).
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Args)]
pub struct ListArgs {
    /// Only the children of this resource (ID or name).
    #[arg(long)]
    pub parent: Option<String>,
}

/// A list of what lives in a VPC: all, or one VPC's.
#[derive(Args)]
pub struct VpcListArgs {
    /// Only those of this VPC (ID or name).
    #[arg(long = "vpc", visible_alias = "parent")]
    pub parent: Option<String>,
}

/// A list of what lives in a subnet: all, or one subnet's.
#[derive(Args)]
pub struct SubnetListArgs {
    /// Only those of this subnet (ID or name).
    #[arg(long = "subnet", visible_alias = "parent")]
    pub parent: Option<String>,
}

#[derive(Args)]
pub struct EipListArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// Only the EIP of this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Only the EIPs bound to this server (ID or name).
    #[arg(long)]
    pub server: Option<String>,
    /// Only the EIP bound to this VIP (ID or name).
    #[arg(long)]
    pub vip: Option<String>,
    /// Only the EIPs bound to nothing.
    #[arg(long, conflicts_with_all = ["server", "vip"])]
    pub unbound: bool,
}

#[derive(Args)]
pub struct Key {
    /// ID or name.
    pub id: String,
}

#[derive(Subcommand)]
pub enum ZoneCmd {
    /// List the zones you may see.
    List,
    /// Show one zone, by ID or name.
    Show(Key),
    /// Create a zone (an availability zone: where servers and their
    /// subnets live).
    Create {
        /// Its name.
        name: String,
    },
    /// Delete a zone, by ID or name.
    Delete(Key),
}

#[derive(Subcommand)]
pub enum HostNetworkCmd {
    /// List the host networks you may see.
    List,
    /// Show one host network, by ID or name.
    Show(Key),
    /// Register a host network: the underlay the agents and gateways
    /// have their addresses in.
    Create {
        /// Its name.
        name: String,
        /// Its IPv4 block, e.g. 192.0.2.0/24.
        cidr: Ipv4Net,
    },
    /// Delete a host network, by ID or name.
    Delete(Key),
}

#[derive(Subcommand)]
pub enum GatewayCmd {
    /// List the gateways you may see.
    List,
    /// Show one gateway, by ID or name.
    Show(Key),
    /// Register a gateway by its underlay address (the EIP routes' next hop):
    /// a free address of a registered host network (`gateway create` too).
    #[command(visible_alias = "create")]
    Register {
        /// Its name (unique among the tenant's).
        name: String,
        /// Its address on the underlay (a registered host network).
        #[arg(long)]
        address: Ipv4Addr,
    },
    /// Delete a gateway (the last one while EIPs are bound only with --force).
    Delete {
        /// ID or name.
        id: String,
        /// Delete the last gateway even while EIPs are bound: they become
        /// unreachable.
        #[arg(long)]
        force: bool,
    },
    /// Set a gateway's BGP sessions to the physical routers, which it then
    /// announces the EIPs it carries to (BFD on unless --no-bfd).
    Update {
        /// ID or name.
        id: String,
        /// A BGP peer (a physical router); repeat for several.
        #[arg(long = "bgp-peer", value_name = "IP", requires = "peer_as")]
        bgp_peer: Vec<Ipv4Addr>,
        /// The peers' AS: one for all, or one per --bgp-peer in order.
        #[arg(long = "peer-as", value_name = "AS")]
        peer_as: Vec<u32>,
        /// The gateway's own AS.
        #[arg(long = "local-as", value_name = "AS", requires = "bgp_peer")]
        local_as: Option<u32>,
        /// No BFD on the sessions: a dead gateway is noticed only at the
        /// hold time (90 s and more) instead of about 0.3 s.
        #[arg(long, requires = "bgp_peer")]
        no_bfd: bool,
        /// Remove its BGP: back to static routes (`vpcip route list`).
        #[arg(long, conflicts_with_all = ["bgp_peer", "local_as"])]
        no_bgp: bool,
    },
    /// Move every VPC a gateway carries to the others without losing a
    /// packet (it announces nothing more), so that it can be stopped; waits
    /// until it carries nothing.
    Drain {
        /// ID or name.
        id: String,
        /// How long to wait for the others to take over, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Bring a drained gateway back: it takes its share again.
    Undrain {
        /// ID or name.
        id: String,
    },
}

#[derive(Subcommand)]
pub enum HostCmd {
    /// List the hosts you may see.
    List,
    /// Show one host (its agent): health, revision, address; by ID or name.
    Show(Key),
}

#[derive(Subcommand)]
pub enum RouteCmd {
    /// List the physical routes you may see.
    List,
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// List the API tokens you may see.
    List,
    /// A tenant's token (--tenant), or an agent's (--agent NAME --role):
    /// it registers, watches and reports as that one agent, with that
    /// role, and does nothing else.
    Create {
        /// The tenant the token acts for.
        #[arg(long, required_unless_present = "agent", conflicts_with = "agent")]
        tenant: Option<String>,
        /// What the token is for (shown in `token list`).
        #[arg(long, default_value = "")]
        description: String,
        /// A token for the agent NAME (its `vpcip agent --name`).
        #[arg(long, value_name = "NAME", requires = "role")]
        agent: Option<String>,
        /// The agent's role: the token registers it with this role only.
        #[arg(long, value_enum, requires = "agent")]
        role: Option<Role>,
        /// Also an EC2 credential for `aws ec2 … --endpoint-url`: the
        /// access key is the token's ID, the secret access key is printed
        /// once as `ec2_secret`.
        #[arg(long, conflicts_with = "agent")]
        ec2: bool,
    },
    /// Delete a API token, by ID or name.
    Delete(Key),
}
