//! The long-running commands and the lab: `server`, `agent`, `allinone`,
//! `vrrp`, `guest`, `lab`.

use super::*;

#[derive(Args)]
pub struct ServerArgs {
    /// Address to listen on [default: 127.0.0.1:9696].
    #[arg(long, env = "VPCIP_LISTEN")]
    pub listen: Option<String>,
    /// Serve the web console at http://ADDR/ui (a listener of its own; TLS
    /// too when the API has it). No console when absent.
    #[arg(long, env = "VPCIP_CONSOLE_LISTEN", value_name = "ADDR")]
    pub console_listen: Option<String>,
    /// Store: sqlite://PATH (embedded default) or postgres://… (several
    /// controllers sharing state) [default: sqlite://./vpcip.db].
    #[arg(long, env = "VPCIP_DB")]
    pub db: Option<String>,
    /// PostgreSQL: connections this controller keeps at most, and so
    /// transactions it runs at once (others queue for one). About twice
    /// the database server's cores: more only make the transactions that
    /// hold the hot rows (the revision, a tenant's count) wait behind
    /// each other for the CPU [default: twice this machine's cores, plus
    /// one].
    #[arg(long, env = "VPCIP_DB_CONNECTIONS", value_name = "N")]
    pub db_connections: Option<u32>,
    /// A TOML file with `listen`, `db`, `db_connections`, `operator_token`, `tls_cert`,
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
    /// 127.0.0.1:9697; port 0 takes a free port). The address listened on
    /// is written to STATE_DIR/metrics-listen.
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
