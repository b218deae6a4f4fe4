//! The command line: `vpcip server`, and `vpcip <resource> <verb>` for every
//! resource of the API.

use std::net::Ipv4Addr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;

#[derive(Parser)]
#[command(
    name = "vpcip",
    version,
    about = "Elastic IPs and Virtual IPs for private clouds"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    /// Log format of the long-running commands.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// The command and its arguments.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the API client's flags stand in every command's help (clap shows
/// global flags everywhere; those that are not clients refuse them).
const CLIENT_HEADING: &str = "API client options (for the commands that call the API)";

/// The commands that are not clients of the API: the API client's flags
/// mean nothing to them.
const NOT_CLIENTS: [&str; 6] = ["server", "allinone", "vrrp", "guest", "lab", "completion"];

/// An API client's flag given to a command that is not a client of the API
/// (`vpcip server --token …`), as (command, flag): refused, not ignored.
pub fn misplaced_client_flag(args: &[String]) -> Option<(String, String)> {
    let command = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .filter(|c| NOT_CLIENTS.contains(&c.as_str()))?;
    // Stop at `--`: what follows is not vpcip's (`lab exec … -- cmd -o x`).
    let flag = args
        .iter()
        .skip(1)
        .take_while(|a| a.as_str() != "--")
        .find(|a| {
            let name = a.split('=').next().unwrap_or_default();
            matches!(
                name,
                "--url" | "--token" | "--output" | "-o" | "--field" | "--columns"
            ) || (a.starts_with("-o") && !a.starts_with("--"))
        })?;
    Some((
        command.clone(),
        flag.split('=').next().unwrap_or_default().to_string(),
    ))
}

/// The API's field names in its messages, and the CLI flags that set them.
const FLAGS_OF_FIELDS: [(&str, &str); 9] = [
    ("allow_reassociation", "--allow-reassociation"),
    ("bandwidth_mbps", "--bandwidth"),
    ("source_dest_check", "--source-dest-check"),
    ("security_groups", "--sg"),
    ("client_token", "--client-token"),
    ("page_token", "--page-token"),
    ("prefix_len", "--prefix-len"),
    ("secondary_cidrs", "add-cidr"),
    ("nic_id", "--nic"),
];

/// An API message as a CLI user reads it: the API's field names (which a
/// script of the API sees) said as the flags that set them.
pub fn in_flags(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    'scan: while !rest.is_empty() {
        for (field, flag) in FLAGS_OF_FIELDS {
            if let Some(after) = rest.strip_prefix(field) {
                let before_ok = !out
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                let after_ok = !after
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                if before_ok && after_ok {
                    out.push_str(flag);
                    rest = after;
                    continue 'scan;
                }
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The API's URL: `http://` is assumed when no scheme is given
/// (`127.0.0.1:9696`); a scheme other than http or https is refused.
pub fn api_url(s: &str) -> Result<String, String> {
    match s.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(s.to_string()),
        Some((scheme, _)) => Err(format!(
            "the API's URL is http://HOST:PORT or https://HOST:PORT, not {scheme}://…"
        )),
        None if !s.is_empty() => Ok(format!("http://{s}")),
        None => Err("the API's URL is empty".into()),
    }
}

/// A token as given (`--token`, `VPCIP_TOKEN`): surrounding whitespace (the
/// newline of a file it was read from) dropped; anything else a header
/// cannot carry refused by name.
pub fn api_token(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("the token is empty".into());
    }
    if let Some(c) = t.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the token holds {c:?}, which no token has: check --token or VPCIP_TOKEN"
        ));
    }
    Ok(t.to_string())
}

#[derive(Args, Clone)]
pub struct Global {
    /// The controller's API.
    #[arg(
        long,
        global = true,
        help_heading = CLIENT_HEADING,
        env = "VPCIP_URL",
        default_value = "http://127.0.0.1:9696",
        value_parser = api_url
    )]
    pub url: String,
    /// Bearer token (the operator's, or a tenant's).
    #[arg(
        long,
        global = true,
        help_heading = CLIENT_HEADING,
        env = "VPCIP_TOKEN",
        hide_env_values = true,
        value_parser = api_token
    )]
    pub token: Option<String>,
    /// Output: a table for people, JSON or YAML for scripts.
    #[arg(
        short = 'o',
        long,
        global = true,
        help_heading = CLIENT_HEADING,
        value_enum,
        default_value = "table"
    )]
    pub output: Output,
    /// Print only this field of what the command shows or makes, one value
    /// per line, for scripts: `--field id`, `--field ip`, `--field secret`.
    #[arg(long, global = true, help_heading = CLIENT_HEADING, value_name = "NAME")]
    pub field: Option<String>,
    /// A table's columns, by their headings, in this order: `--columns
    /// NAME,IP,"BOUND TO"` (any case).
    #[arg(long, global = true, help_heading = CLIENT_HEADING, value_delimiter = ',')]
    pub columns: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(ValueEnum, Clone, Copy)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the controller: REST API and store.
    Server(ServerArgs),
    /// Run a gateway or host agent: watch the controller, program the kernel.
    Agent(AgentArgs),
    /// A small cloud in network namespaces on this machine (as root).
    #[command(subcommand)]
    Lab(LabCmd),
    /// Controller, gateway agent and host agent on this one node, with
    /// SQLite: the way to first deploy (as root).
    Allinone(AllinoneArgs),
    /// Tools to run inside a guest.
    #[command(subcommand)]
    Guest(GuestCmd),
    /// A VRRPv3 speaker for guests (RFC 5798), interoperating with
    /// keepalived: holds the VIPs on the interface while master.
    Vrrp(VrrpArgs),
    /// The shell's completion script, on standard output: e.g. `vpcip
    /// completion bash > /etc/bash_completion.d/vpcip`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Resource(Resource),
}

#[derive(Args)]
pub struct ServerArgs {
    /// Address to listen on [default: 127.0.0.1:9696].
    #[arg(long, env = "VPCIP_LISTEN")]
    pub listen: Option<String>,
    /// Store: sqlite://PATH (embedded default) or postgres://… (several
    /// controllers sharing state) [default: sqlite://./vpcip.db].
    #[arg(long, env = "VPCIP_DB")]
    pub db: Option<String>,
    /// A TOML file with `listen`, `db`, `operator_token`, `tls_cert`,
    /// `tls_key`, `[quotas]`, `[isolation]`, `[security_groups]` and `[dhcp]`;
    /// flags and the environment
    /// (VPCIP_OPERATOR_TOKEN) take precedence.
    #[arg(long, env = "VPCIP_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Serve the API (and the agents' stream) over TLS with this
    /// certificate chain (PEM); needs --tls-key. Clients trust its CA with
    /// VPCIP_CA_CERT.
    #[arg(long, env = "VPCIP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "VPCIP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct VrrpArgs {
    /// The interface the VIPs live on.
    #[arg(long, default_value = "eth0")]
    pub interface: String,
    /// Virtual router ID (1 to 255), the same on every member.
    #[arg(long)]
    pub vrid: u8,
    /// 1 to 254 (255: the owner of the addresses).
    #[arg(long, default_value_t = 100)]
    pub priority: u8,
    /// Advertisement interval in centiseconds (1 = 10 ms, 100 = 1 s).
    #[arg(long, default_value_t = 100)]
    pub advert_int: u16,
    /// The VIPs, with their prefix (10.0.1.100/24); repeat for several.
    #[arg(long, required = true)]
    pub vip: Vec<Ipv4Net>,
    /// Do not take over from a lower-priority master.
    #[arg(long)]
    pub no_preempt: bool,
    /// Seconds after startup before preempting.
    #[arg(long, default_value_t = 0)]
    pub preempt_delay: u64,
    /// How the checksum is computed when sending (both are accepted).
    #[arg(long, value_enum, default_value = "pseudo")]
    pub checksum: Checksum,
    /// Gratuitous ARPs sent per VIP on becoming master.
    #[arg(long, default_value_t = 5)]
    pub garp: u32,
    /// A command run on every state change, with keepalived's arguments:
    /// INSTANCE <name> MASTER|BACKUP|FAULT <priority>.
    #[arg(long)]
    pub notify: Option<String>,
    /// Go to FAULT (release the VIPs) while this interface is down.
    #[arg(long)]
    pub track_interface: Option<String>,
    /// Go to FAULT while this command fails (checked every second).
    #[arg(long)]
    pub track_script: Option<String>,
    /// The instance's name in logs and notify arguments.
    #[arg(long, default_value = "VI_1")]
    pub name: String,
}

#[derive(ValueEnum, Clone, Copy)]
pub enum Checksum {
    /// Over the IPv4 pseudo-header (RFC 5798, keepalived 2.2.7).
    Pseudo,
    /// Over the VRRP message only.
    Message,
}

#[derive(Subcommand)]
pub enum GuestCmd {
    /// Check this guest against the vendor manuals' advice for VIPs: IP forwarding
    /// off on a standby, the VIP only on the master, no two NICs in one
    /// subnet. Exits 1 when something is wrong.
    Check {
        /// The VIP this guest shares.
        #[arg(long)]
        vip: Option<Ipv4Addr>,
        /// This guest's role in the pair.
        #[arg(long, value_enum)]
        role: Option<VrrpRole>,
    },
}

#[derive(ValueEnum, Clone, Copy)]
pub enum VrrpRole {
    Master,
    Backup,
}

#[derive(Args)]
pub struct AllinoneArgs {
    /// The API's address.
    #[arg(long, env = "VPCIP_LISTEN", default_value = "127.0.0.1:9696")]
    pub listen: String,
    /// The store.
    #[arg(
        long,
        env = "VPCIP_DB",
        default_value = "sqlite:///var/lib/vpcip/vpcip.db"
    )]
    pub db: String,
    /// This node's address on the physical network: the next hop of the
    /// EIP segments' static routes.
    #[arg(long)]
    pub underlay_ip: Ipv4Addr,
    /// This node's name (its gateway's; the host agent is `<name>-host`).
    #[arg(long, default_value = "allinone")]
    pub name: String,
    /// Run without the gateway agent (a host-only node).
    #[arg(long)]
    pub no_gateway: bool,
    /// Prefix of the network namespaces made on this node (VPC routers, the
    /// host namespace).
    #[arg(long, default_value = "vpcip-")]
    pub netns_prefix: String,
    /// Seconds between the agents' reconciles when nothing changes.
    #[arg(long, default_value_t = 10)]
    pub resync: u64,
    /// Where the agents keep what they saw of the kernel across restarts.
    #[arg(long, default_value = "/run/vpcip")]
    pub state_dir: std::path::PathBuf,
}

#[derive(Subcommand)]
pub enum LabCmd {
    /// Build the world, start a controller and a gateway agent, and run the
    /// tour (an EIP carrying HTTP from an outside client to a VM).
    Up {
        /// The lab's name (several labs may run side by side).
        #[arg(long, default_value = "demo")]
        name: String,
    },
    /// Stop the lab's processes and remove its namespaces (also after a crash).
    Down {
        /// The lab's name (several labs may run side by side).
        #[arg(long, default_value = "demo")]
        name: String,
    },
    /// Run a command inside a lab node (client, router, vm-1).
    Exec {
        /// The lab's name (several labs may run side by side).
        #[arg(long, default_value = "demo")]
        name: String,
        /// The node (namespace) of the lab: client, phy, gw, h1, h2, or a VM.
        node: String,
        /// The command and its arguments.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// The lab VM's web server (started by `lab up`).
    #[command(hide = true)]
    Httpd {
        /// The network namespace to serve in.
        #[arg(long)]
        netns: String,
        /// The TCP port to listen on.
        #[arg(long, default_value_t = 80)]
        port: u16,
    },
}

#[derive(ValueEnum, Clone, Copy)]
pub enum Role {
    Gateway,
    Host,
}

impl From<Role> for vpcip_model::desired::AgentRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Gateway => Self::Gateway,
            Role::Host => Self::Host,
        }
    }
}

#[derive(Args)]
pub struct AgentArgs {
    /// gateway (carries EIPs and VPC routers) or host (runs VMs).
    #[arg(long, value_enum)]
    pub role: Role,
    /// The node's name (registering again with the same name is a restart).
    #[arg(long)]
    pub name: String,
    /// The node's address on the physical network.
    #[arg(long)]
    pub underlay_ip: Ipv4Addr,
    /// Prefix of the network namespaces the agent makes (VPC routers).
    #[arg(long, default_value = "")]
    pub netns_prefix: String,
    /// Work on this named network namespace as the node (the lab's nodes)
    /// instead of the agent's own.
    #[arg(long)]
    pub netns: Option<String>,
    /// Seconds between reconciles when nothing changes (repairs drift).
    #[arg(long, default_value_t = 10)]
    pub resync: u64,
    /// Where the agent keeps what it saw of the kernel across restarts
    /// [default: /run/vpcip/agent-<name>].
    #[arg(long)]
    pub state_dir: Option<std::path::PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g.
    /// 127.0.0.1:9697).
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Gateways: the control socket of the node's BIRD 2 (`bird -s`),
    /// which speaks BGP for it (`vpcip gateway update --bgp-peer`).
    #[arg(long, requires = "bird_config", value_name = "PATH")]
    pub bird_socket: Option<std::path::PathBuf>,
    /// Gateways: the configuration file that BIRD was started with (`bird
    /// -c`): the agent writes it and reloads BIRD.
    #[arg(long, requires = "bird_socket", value_name = "PATH")]
    pub bird_config: Option<std::path::PathBuf>,
}

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
    /// Servers (VMs, ECS instances).
    #[command(subcommand, name = "vm", alias = "ecs")]
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

#[derive(Subcommand)]
pub enum VmCmd {
    /// List the servers (VMs) you may see.
    List,
    /// Show one server (VM), by ID or name.
    Show(Key),
    /// Create a server (VM).
    Create {
        /// Its name (unique among the tenant's).
        name: String,
        /// Subnet of the primary NIC.
        #[arg(long)]
        subnet: String,
        /// The zone (ID or name).
        #[arg(long)]
        zone: Option<String>,
        /// Primary private IP (auto-assigned when absent).
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// Security groups (1 to 5; the VPC's default when none).
        #[arg(long = "sg")]
        security_groups: Vec<String>,
        /// The host to run on (operators; the least loaded host when absent).
        #[arg(long)]
        host: Option<String>,
        /// Makes the create idempotent: the same token and request return what the first made.
        #[arg(long)]
        client_token: Option<String>,
    },
    /// Delete a server (VM), by ID or name.
    Delete(Key),
    /// The server's NICs, primary first.
    Nics(Key),
}

#[derive(Subcommand)]
pub enum NicCmd {
    /// List the NICs you may see.
    List(SubnetListArgs),
    /// Show one NIC, by ID or name.
    Show(Key),
    /// Create a secondary ENI (attach it with `nic attach`).
    Create {
        /// Its name (unique among the tenant's).
        name: String,
        /// The subnet (ID or name).
        #[arg(long)]
        subnet: String,
        /// Primary private IP: a free address in the subnet's range.
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// A security group (ID or name); repeat for several (1 to 5).
        #[arg(long = "sg")]
        security_groups: Vec<String>,
        /// on: the NIC sends only from its own addresses (the default);
        /// off: from any (LVS-DR backends, routers), as `nic update` takes it.
        #[arg(long)]
        source_dest_check: Option<OnOff>,
        /// The same as `--source-dest-check off` (kept for scripts).
        #[arg(long, hide = true, conflicts_with = "source_dest_check")]
        no_source_dest_check: bool,
        /// Makes the create idempotent: the same token and request return what the first made.
        #[arg(long)]
        client_token: Option<String>,
    },
    /// Change security groups or the source/destination check.
    Update {
        /// ID or name.
        id: String,
        /// A security group (ID or name); repeat for several (1 to 5).
        #[arg(long = "sg")]
        security_groups: Vec<String>,
        /// on: the NIC sends only from its own addresses (the default); off: from any (routers, NAT VMs).
        #[arg(long)]
        source_dest_check: Option<OnOff>,
    },
    /// Attach an ENI to a server (the guest sees a new NIC).
    Attach {
        /// ID or name.
        id: String,
        /// The server (ID or name).
        #[arg(long)]
        server: String,
    },
    /// Detach an ENI from its server.
    Detach(Key),
    /// Delete a NIC, by ID or name.
    Delete(Key),
    /// What to run (or write) in the guest to bring the NIC up, as the
    /// vendor manuals' "configure a secondary ENI" asks: address, and for a
    /// secondary ENI the source-based routing that sends replies out
    /// through the NIC they came in on (also for its subnet's VIPs and a
    /// visible EIP); --remove takes it down.
    GuestConfig {
        /// The NIC (ID or name).
        nic: String,
        #[command(flatten)]
        guest: GuestArgs,
        /// The commands that remove the configuration.
        #[arg(long)]
        remove: bool,
    },
    /// How the hypervisor plugs the NIC: the tap device it makes (named
    /// `t` and the part of the NIC ID after the last `-`), the NIC's MAC
    /// and the overlay's MTU, as libvirt's `<interface type='ethernet'>`
    /// (--libvirt) or QEMU's arguments (--qemu); both when neither is
    /// asked. The host agent adopts the tap the moment it appears, and
    /// answers the guest's DHCP.
    HypervisorConfig {
        /// The NIC (ID or name).
        nic: String,
        /// Only the libvirt <interface> element.
        #[arg(long)]
        libvirt: bool,
        /// Only QEMU's arguments.
        #[arg(long)]
        qemu: bool,
        /// The overlay's MTU: the underlay's less 50 (VXLAN).
        #[arg(long, default_value_t = 1450)]
        mtu: u16,
    },
}

/// The guest a configuration is rendered for.
#[derive(Args)]
pub struct GuestArgs {
    /// The guest's operating system (which tools its commands use).
    #[arg(long, value_enum, default_value = "centos")]
    pub os: Os,
    /// The interface inside the guest [default: by the NIC's place on its
    /// server: eth0, eth1, …; Ethernet, Ethernet 2, … on Windows].
    #[arg(long)]
    pub ifname: Option<String>,
    /// The NetworkManager connection [default: "System <ifname>"].
    #[arg(long)]
    pub connection: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand)]
pub enum VipCmd {
    /// List the VIPs you may see.
    List(SubnetListArgs),
    /// Show one VIP, by ID or name.
    Show(Key),
    /// Create a VIP.
    Create {
        /// Its name (unique among the tenant's).
        name: String,
        /// The subnet (ID or name).
        #[arg(long)]
        subnet: String,
        /// The address (assigned automatically when absent).
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// Makes the create idempotent: the same token and request return what the first made.
        #[arg(long)]
        client_token: Option<String>,
    },
    /// Bind it (to a NIC, a server or a VIP).
    Bind {
        /// ID or name.
        id: String,
        /// The NIC (ID or name).
        #[arg(long)]
        nic: String,
    },
    /// Unbind it.
    Unbind {
        /// ID or name.
        id: String,
        /// The NIC (ID or name).
        #[arg(long)]
        nic: String,
    },
    /// Delete a VIP, by ID or name.
    Delete(Key),
    /// What to run (or write) in a guest to add the VIP to one of its NICs,
    /// or remove it, as the vendor manuals do it; --keepalived prints the
    /// keepalived.conf for that NIC instead.
    GuestConfig {
        /// The VIP (ID or name).
        vip: String,
        /// The NIC (ID or name); it should be one the VIP is bound to.
        #[arg(long)]
        nic: String,
        #[command(flatten)]
        guest: GuestArgs,
        /// The commands that remove the VIP.
        #[arg(long)]
        remove: bool,
        /// keepalived.conf for this NIC (priority by its place among the
        /// VIP's NICs: the first bound is the preferred master).
        #[arg(long)]
        keepalived: bool,
        /// The `vpcip vrrp` command equivalent to --keepalived.
        #[arg(long, conflicts_with = "keepalived")]
        vrrp: bool,
        /// The vendor manuals' HA load-balancing cluster, for a director (one of the
        /// NICs the VIP is bound to): an nftables ruleset that forwards the
        /// VIP's --port traffic to the --backend NICs by direct routing
        /// (LVS-DR without IPVS); run it beside --keepalived or --vrrp.
        #[arg(long, conflicts_with_all = ["keepalived", "vrrp"], requires = "backends")]
        lvs_director: bool,
        /// For a direct-routing backend's NIC: the VIP on its loopback,
        /// without answering ARP for it.
        #[arg(long, conflicts_with_all = ["keepalived", "vrrp", "lvs_director"])]
        lvs_backend: bool,
        /// A backend of --lvs-director (NIC ID or name; repeat).
        #[arg(long = "backend", id = "backends")]
        backends: Vec<String>,
        /// A port --lvs-director forwards: 80, 80/tcp, 53/udp (repeat)
        /// [default: 80/tcp].
        #[arg(long = "port")]
        ports: Vec<vpcip_model::guest::LvsPort>,
        /// The VRRP virtual router ID [default: derived from the VIP].
        #[arg(long)]
        vrid: Option<u8>,
        /// The advertisement interval, centiseconds (100 = 1 s, 1 = 10 ms).
        #[arg(long, default_value_t = 100)]
        advert_int: u16,
    },
}

#[derive(ValueEnum, Clone, Copy)]
pub enum Os {
    Centos,
    Ubuntu,
    Windows,
    /// Any Linux by hand, with iproute2's `ip`.
    Linux,
}

#[derive(ValueEnum, Clone, Copy)]
pub enum Mode {
    Nat,
    Visible,
}

#[derive(Args)]
pub struct TargetArgs {
    /// A server (its primary NIC).
    #[arg(long, group = "target")]
    pub server: Option<String>,
    /// A NIC or secondary ENI.
    #[arg(long, group = "target", alias = "eni")]
    pub nic: Option<String>,
    /// A VIP (the EIP follows whichever NIC holds it).
    #[arg(long, group = "target")]
    pub vip: Option<String>,
}

#[derive(Subcommand)]
pub enum EipCmd {
    /// List the EIPs you may see (all, or those --name, --server, --vip say).
    List(EipListArgs),
    /// Show one EIP, by ID, name or address.
    Show(Key),
    /// Allocate an EIP, and bind it at once when a target is given
    /// (`eip create --bandwidth 10 --server vm-1`). With --visible and
    /// --server: the "EIP visible on the NIC" recipe in one call.
    Create {
        /// Bandwidth limit, Mbit/s (1 to 100000), both directions.
        #[arg(long)]
        bandwidth: u32,
        #[command(flatten)]
        target: TargetArgs,
        /// nat: the gateway translates the EIP to the private address; visible: the EIP is the NIC's own address.
        #[arg(long, value_enum, default_value = "nat")]
        mode: Mode,
        /// Build the visible-EIP recipe: secondary CIDR, subnet, ENI whose
        /// address is the EIP, bound in visible mode and attached to --server.
        #[arg(long)]
        visible: bool,
        /// Name of the ENI --visible creates.
        #[arg(long)]
        eni_name: Option<String>,
        /// NAT helpers for its traffic, e.g. --alg ftp,sip (ftp, sip, tftp,
        /// h323).
        #[arg(long = "alg", value_delimiter = ',')]
        algs: Vec<vpcip_model::Alg>,
        /// EIP segment to allocate from.
        #[arg(long)]
        subnet: Option<String>,
        /// A chosen address of the segment (default: the lowest free).
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        /// Its name (unique among the tenant's).
        #[arg(long)]
        name: Option<String>,
        /// Makes the create idempotent: the same token and request return what the first made.
        #[arg(long)]
        client_token: Option<String>,
    },
    /// Bind it (to a NIC, a server or a VIP).
    Bind {
        /// ID or name.
        id: String,
        #[command(flatten)]
        target: TargetArgs,
        /// nat: the gateway translates the EIP to the private address; visible: the EIP is the NIC's own address.
        #[arg(long, value_enum, default_value = "nat")]
        mode: Mode,
        /// Move the EIP from its current target.
        #[arg(long)]
        allow_reassociation: bool,
    },
    /// Unbind it.
    Unbind(Key),
    /// Change the bandwidth limit (live) or the NAT helpers.
    Update {
        /// ID or name.
        id: String,
        /// Bandwidth limit, Mbit/s (1 to 100000), both directions.
        #[arg(long)]
        bandwidth: Option<u32>,
        /// The NAT helpers, all of them: --alg ftp,sip; --alg none removes
        /// them.
        #[arg(long = "alg", value_delimiter = ',')]
        algs: Option<Vec<String>>,
    },
    /// Release it: its address returns to the segment (unbind it first).
    Release(Key),
    /// Does the physical network route this EIP to the gateway? Watches
    /// the gateway's counter for the EIP while you send it traffic from
    /// outside (e.g. ping it); exits 3 when nothing arrived.
    CheckRoute {
        /// The EIP: address, ID or name.
        eip: String,
        /// Seconds to watch.
        #[arg(long, default_value_t = 5)]
        wait: u64,
    },
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
    },
    /// Delete a API token, by ID or name.
    Delete(Key),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn api_field_names_are_said_as_flags() {
        assert_eq!(
            super::in_flags(
                "EIP 192.168.202.7 is already bound to NIC eni-nic-1; pass allow_reassociation to move it"
            ),
            "EIP 192.168.202.7 is already bound to NIC eni-nic-1; pass --allow-reassociation to move it"
        );
        assert_eq!(
            super::in_flags("invalid bandwidth_mbps: 0 is outside 1..=100000 (invalid_argument)"),
            "invalid --bandwidth: 0 is outside 1..=100000 (invalid_argument)"
        );
        // Only whole words.
        assert_eq!(
            super::in_flags("my_bandwidth_mbps_x"),
            "my_bandwidth_mbps_x"
        );
    }

    #[test]
    fn client_options_given_to_a_command_that_is_not_a_client_are_named() {
        let m = |line: &str| {
            let args: Vec<String> = line.split(' ').map(String::from).collect();
            super::misplaced_client_flag(&args)
        };
        let pair = |c: &str, f: &str| Some((c.to_string(), f.to_string()));
        assert_eq!(m("vpcip server --token x"), pair("server", "--token"));
        assert_eq!(m("vpcip --url=http://a server"), pair("server", "--url"));
        assert_eq!(m("vpcip lab up -o json"), pair("lab", "-o"));
        assert_eq!(m("vpcip allinone --field id"), pair("allinone", "--field"));
        // A client takes them; what follows `--` is another program's.
        assert_eq!(m("vpcip eip list -o json --token x"), None);
        assert_eq!(m("vpcip lab exec web-1 -- curl -o page http://x/"), None);
        assert_eq!(m("vpcip server --listen 127.0.0.1:9696"), None);
    }

    /// Every command and verb says what it does, and every flag and
    /// argument what it takes (as the route-coverage test walks the API).
    #[test]
    fn every_command_and_flag_is_explained() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{p}: no description"));
                }
                for a in sub.get_arguments() {
                    let id = a.get_id().as_str();
                    if a.is_global_set() || matches!(id, "help" | "version") {
                        continue;
                    }
                    if a.get_help().is_none() && a.get_long_help().is_none() {
                        missing.push(format!("{p} {id}: no help"));
                    }
                }
                walk(sub, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "vpcip", &mut missing);
        assert!(
            missing.is_empty(),
            "{} without help:\n{}",
            missing.len(),
            missing.join("\n")
        );
    }
}
