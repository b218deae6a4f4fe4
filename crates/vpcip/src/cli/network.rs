//! VPCs, subnets and security groups.

use super::*;

#[derive(Subcommand)]
pub enum VpcCmd {
    /// List the VPCs you may see.
    List,
    /// Show one VPC, by ID or name.
    Show(Key),
    /// Create a VPC.
    Create {
        /// Its name (unique among the tenant's).
        name: String,
        /// An IPv4 block, e.g. 10.0.0.0/16.
        #[arg(long)]
        cidr: Ipv4Net,
        /// Secondary CIDR blocks.
        #[arg(long = "secondary-cidr")]
        secondary: Vec<Ipv4Net>,
        /// Operator: create it for this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Makes the create idempotent: the same token and request return what the first made.
        #[arg(long)]
        client_token: Option<String>,
    },
    /// Delete a VPC, by ID or name.
    Delete(Key),
    /// Add a secondary CIDR block.
    AddCidr {
        /// The VPC (ID or name).
        vpc: String,
        /// An IPv4 block, e.g. 10.0.0.0/16.
        cidr: Ipv4Net,
    },
    /// Remove a secondary CIDR block that holds no subnet.
    RemoveCidr {
        /// The VPC (ID or name).
        vpc: String,
        /// An IPv4 block, e.g. 10.0.0.0/16.
        cidr: Ipv4Net,
    },
}

#[derive(ValueEnum, Clone, Copy)]
pub enum SubnetType {
    Guest,
    Eip,
}

#[derive(Subcommand)]
pub enum SubnetCmd {
    /// List the subnets you may see.
    List(VpcListArgs),
    /// Show one subnet, by ID or name.
    Show(Key),
    /// Create a subnet: by --cidr, or the vendor manuals' way by --range and --prefix-len.
    Create {
        /// Its name (unique among the tenant's).
        name: String,
        /// VPC (an EIP subnet goes to the default VPC).
        #[arg(long)]
        vpc: Option<String>,
        /// The zone (ID or name).
        #[arg(long)]
        zone: Option<String>,
        /// guest: VMs' subnet; eip: an EIP segment (in the default VPC).
        /// Stored as the subnet's `kind` (`--kind` too).
        #[arg(
            long = "type",
            visible_alias = "kind",
            value_enum,
            default_value = "guest"
        )]
        kind: SubnetType,
        /// An IPv4 block, e.g. 10.0.0.0/16.
        #[arg(long)]
        cidr: Option<Ipv4Net>,
        /// Allocation range, e.g. 192.168.202.1-192.168.202.254.
        #[arg(long)]
        range: Option<String>,
        /// Mask length of the range, e.g. 24.
        #[arg(long)]
        prefix_len: Option<u8>,
        /// The subnet's gateway address (default: its first host address).
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
        /// A DNS server its VMs learn by DHCP (repeat, at most 5; default:
        /// the server's `[dhcp] dns_servers`).
        #[arg(long = "dns-server")]
        dns_servers: Vec<Ipv4Addr>,
        /// A route its VMs learn by DHCP (option 121), DESTINATION,NEXT_HOP,
        /// e.g. 10.9.0.0/16,10.0.1.5 (repeat, at most 20).
        #[arg(long = "host-route")]
        host_routes: Vec<vpcip_model::HostRoute>,
        /// Makes the create idempotent: the same token and request return what the first made.
        #[arg(long)]
        client_token: Option<String>,
    },
    /// Change what its VMs learn by DHCP (at their next renewal): the
    /// lists given replace the old ones.
    Update {
        /// The subnet (ID or name).
        subnet: String,
        /// A DNS server its VMs learn by DHCP (repeat, at most 5).
        #[arg(long = "dns-server")]
        dns_servers: Vec<Ipv4Addr>,
        /// Hand out no DNS servers of the subnet's own (the server's
        /// defaults then).
        #[arg(long, conflicts_with = "dns_servers")]
        no_dns_servers: bool,
        /// A route its VMs learn by DHCP, DESTINATION,NEXT_HOP (repeat, at most 20).
        #[arg(long = "host-route")]
        host_routes: Vec<vpcip_model::HostRoute>,
        /// Hand out no host routes.
        #[arg(long, conflicts_with = "host_routes")]
        no_host_routes: bool,
    },
    /// Delete a subnet, by ID or name.
    Delete(Key),
}

#[derive(ValueEnum, Clone, Copy)]
pub enum SgType {
    Basic,
    Advanced,
}

#[derive(Subcommand)]
pub enum SgCmd {
    /// List the security groups you may see.
    List(VpcListArgs),
    /// Show one security group, by ID or name.
    Show(Key),
    /// Create a security group.
    Create {
        /// Its name (unique among the tenant's).
        name: String,
        /// The VPC (ID or name).
        #[arg(long)]
        vpc: String,
        /// basic: members reach each other; advanced: no implicit access
        /// between members. Stored as the group's `kind` (`--kind` too).
        #[arg(
            long = "type",
            visible_alias = "kind",
            value_enum,
            default_value = "basic"
        )]
        kind: SgType,
        /// A rule: DIRECTION:PROTOCOL[:PORTS]:REMOTE, e.g.
        /// ingress:tcp:80-443:0.0.0.0/0 or ingress:all:sg-web.
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// Operator: a group the platform manages for its own services.
        #[arg(long)]
        managed: bool,
    },
    /// Delete a security group, by ID or name.
    Delete(Key),
    /// Add or remove rules; hosts filter with them at once.
    #[command(subcommand)]
    Rule(SgRuleCmd),
}

#[derive(Subcommand)]
pub enum SgRuleCmd {
    /// Add rules: DIRECTION:PROTOCOL[:PORTS]:REMOTE each, e.g.
    /// ingress:tcp:22:198.51.100.0/24 or ingress:all:sg-web.
    Add {
        /// The security group (ID or name).
        group: String,
        /// A rule: DIRECTION:PROTOCOL[:PORTS]:REMOTE, e.g. ingress:tcp:80:0.0.0.0/0 (repeat for several).
        #[arg(required = true)]
        rules: Vec<String>,
    },
    /// Remove one rule, by its ID (sgr-…) or as written. Connections it
    /// let in are cut.
    Remove {
        /// The security group (ID or name).
        group: String,
        /// The rule, by its ID (sgr-…) or as written.
        rule: String,
    },
}
