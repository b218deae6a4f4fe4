//! Servers, NICs, VIPs and EIPs, and what their guests need.

use super::*;

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
