//! Guest configuration for VIPs, as the vendor manuals give it: the commands or file
//! content that add (or remove) a VIP on a guest's NIC, per guest OS, and a
//! keepalived.conf for the NICs the VIP is bound to. Pure rendering.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
mod lvs;
mod vrrp;

pub use lvs::{LvsPort, lvs_backend, lvs_director_nft};
pub use vrrp::{VrrpParams, keepalived_conf, vrid_of, vrrp_command};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestOs {
    /// CentOS / RHEL and kin: NetworkManager's `nmcli`.
    Centos,
    /// Ubuntu 20/22: a netplan file and `netplan apply`.
    Ubuntu,
    /// Windows Server: `netsh`.
    Windows,
    /// Any Linux, by hand: iproute2's `ip` (what the lab runs).
    Linux,
}

/// What the guest needs to know about its NIC.
#[derive(Debug, Clone)]
pub struct GuestNic<'a> {
    /// The interface inside the guest (`eth0`; `Ethernet` on Windows).
    pub ifname: &'a str,
    /// The NetworkManager connection (`System eth0` in the vendor manuals).
    pub connection: &'a str,
    pub ip: Ipv4Addr,
    pub subnet: Ipv4Net,
    /// The subnet's router, next hop of the NIC's own default route.
    pub gateway: Option<Ipv4Addr>,
    /// The NIC's place on its server: 0 is the primary NIC (`eth0`), the
    /// secondary ENIs follow (`eth1`, …).
    pub device: usize,
}

impl GuestNic<'_> {
    /// The routing table (and rule priority) a secondary NIC's replies
    /// use: 1000 plus its place on the server (`eth1` → 1001). None for the
    /// primary NIC, whose replies follow the main table.
    pub fn source_table(&self) -> Option<u32> {
        (self.device > 0)
            .then(|| 1000u32.saturating_add(u32::try_from(self.device).unwrap_or(u32::MAX)))
    }
}

impl GuestOs {
    /// Every OS the guest configuration is written for, with its name.
    pub const ALL: [(GuestOs, &'static str); 4] = [
        (GuestOs::Centos, "CentOS / RHEL (nmcli)"),
        (GuestOs::Ubuntu, "Ubuntu (netplan)"),
        (GuestOs::Windows, "Windows Server (netsh)"),
        (GuestOs::Linux, "Any Linux (ip)"),
    ];

    /// The interface the guest gives the NIC at `device` on its server
    /// (`eth0`, `eth1`; `Ethernet`, `Ethernet 2` on Windows).
    pub fn ifname(self, device: usize) -> String {
        match (self, device) {
            (GuestOs::Windows, 0) => "Ethernet".into(),
            (GuestOs::Windows, d) => format!("Ethernet {}", d + 1),
            (_, d) => format!("eth{d}"),
        }
    }
}

/// The commands (or file) that add the VIP to the NIC, or remove it.
pub fn vip_config(os: GuestOs, nic: &GuestNic<'_>, vip: Ipv4Addr, remove: bool) -> String {
    let mut out = String::new();
    match os {
        GuestOs::Centos => {
            let sign = if remove { '-' } else { '+' };
            let _ = writeln!(
                out,
                "nmcli connection modify \"{}\" {sign}ipv4.addresses {vip}",
                nic.connection
            );
            let _ = writeln!(out, "nmcli connection up \"{}\"", nic.connection);
        }
        GuestOs::Ubuntu => {
            let _ = writeln!(out, "# /etc/netplan/01-netcfg.yaml");
            let _ = writeln!(out, "network:");
            let _ = writeln!(out, "    version: 2");
            let _ = writeln!(out, "    renderer: NetworkManager");
            let _ = writeln!(out, "    ethernets:");
            let _ = writeln!(out, "        {}:", nic.ifname);
            let _ = writeln!(out, "            dhcp4: true");
            if !remove {
                let _ = writeln!(out, "            addresses:");
                let _ = writeln!(out, "            - {vip}/32");
            }
            let _ = writeln!(out, "# then: netplan apply");
        }
        GuestOs::Windows => {
            if remove {
                let _ = writeln!(
                    out,
                    "netsh interface ipv4 delete address name=\"{}\" address={vip}",
                    nic.ifname
                );
            } else {
                let _ = writeln!(
                    out,
                    "netsh interface ipv4 add address name=\"{}\" address={vip} mask={}",
                    nic.ifname,
                    nic.subnet.netmask()
                );
            }
            let _ = writeln!(out, "ipconfig /all");
        }
        GuestOs::Linux => {
            let verb = if remove { "del" } else { "add" };
            let _ = writeln!(out, "ip addr {verb} {vip}/32 dev {}", nic.ifname);
        }
    }
    out
}

/// What to run (or write) in a guest to bring up one of its NICs, as the
/// vendor manuals' "configure a secondary ENI" asks, or take it down. A secondary
/// NIC gets source-based routing: a table of its own (its subnet, and a
/// default route through its subnet's router) and a rule sending
/// everything from its subnet there, so replies leave through the NIC they
/// came in on; the VIPs of that subnet (and a visible EIP, the NIC's own
/// address) are covered by the same rule.
pub fn nic_config(os: GuestOs, nic: &GuestNic<'_>, remove: bool) -> String {
    let mut out = String::new();
    let (ifname, ip, net) = (nic.ifname, nic.ip, nic.subnet);
    let len = net.prefix_len();
    let route = nic.source_table().zip(nic.gateway);
    match os {
        GuestOs::Centos => {
            if remove {
                let _ = writeln!(out, "nmcli connection delete \"{}\"", nic.connection);
                return out;
            }
            let _ = write!(
                out,
                "nmcli connection add type ethernet con-name \"{}\" ifname {ifname} ipv4.method manual ipv4.addresses {ip}/{len}",
                nic.connection
            );
            match (route, nic.gateway) {
                (Some((t, gw)), _) => {
                    let _ = write!(
                        out,
                        " ipv4.never-default yes ipv4.routes \"{net} table={t}, 0.0.0.0/0 {gw} table={t}\" ipv4.routing-rules \"priority {t} from {net} table {t}\""
                    );
                }
                (None, Some(gw)) if nic.device == 0 => {
                    let _ = write!(out, " ipv4.gateway {gw}");
                }
                _ => {}
            }
            let _ = writeln!(out);
            let _ = writeln!(out, "nmcli connection up \"{}\"", nic.connection);
        }
        GuestOs::Ubuntu => {
            let file = format!("/etc/netplan/{}-{ifname}.yaml", 50 + nic.device);
            if remove {
                let _ = writeln!(out, "rm {file}");
                let _ = writeln!(out, "netplan apply");
                return out;
            }
            let _ = writeln!(out, "# {file}");
            let _ = writeln!(out, "network:");
            let _ = writeln!(out, "    version: 2");
            let _ = writeln!(out, "    ethernets:");
            let _ = writeln!(out, "        {ifname}:");
            let _ = writeln!(out, "            dhcp4: false");
            let _ = writeln!(out, "            addresses:");
            let _ = writeln!(out, "            - {ip}/{len}");
            match (route, nic.gateway) {
                (Some((t, gw)), _) => {
                    let _ = writeln!(out, "            routes:");
                    let _ = writeln!(out, "            - to: {net}");
                    let _ = writeln!(out, "              scope: link");
                    let _ = writeln!(out, "              table: {t}");
                    let _ = writeln!(out, "            - to: 0.0.0.0/0");
                    let _ = writeln!(out, "              via: {gw}");
                    let _ = writeln!(out, "              table: {t}");
                    let _ = writeln!(out, "            routing-policy:");
                    let _ = writeln!(out, "            - from: {net}");
                    let _ = writeln!(out, "              table: {t}");
                    let _ = writeln!(out, "              priority: {t}");
                }
                (None, Some(gw)) if nic.device == 0 => {
                    let _ = writeln!(out, "            routes:");
                    let _ = writeln!(out, "            - to: default");
                    let _ = writeln!(out, "              via: {gw}");
                }
                _ => {}
            }
            let _ = writeln!(out, "# then: netplan apply");
        }
        GuestOs::Windows => {
            let name = nic.ifname;
            if remove {
                if let Some(gw) = nic.gateway {
                    let _ = writeln!(
                        out,
                        "netsh interface ipv4 delete route 0.0.0.0/0 \"{name}\" {gw}"
                    );
                }
                let _ = writeln!(
                    out,
                    "netsh interface ipv4 set address name=\"{name}\" source=dhcp"
                );
                return out;
            }
            let _ = writeln!(
                out,
                "netsh interface ipv4 set address name=\"{name}\" source=static address={ip} mask={}",
                net.netmask()
            );
            if let Some(gw) = nic.gateway {
                // Windows sends from the NIC that owns the source address
                // (strong host model): a route through this NIC is the
                // source routing; a higher metric keeps the primary NIC
                // the default for everything else.
                let metric = if nic.device == 0 { 10 } else { 500 };
                let _ = writeln!(
                    out,
                    "netsh interface ipv4 add route 0.0.0.0/0 \"{name}\" {gw} metric={metric}"
                );
            }
            let _ = writeln!(out, "ipconfig /all");
        }
        GuestOs::Linux => {
            if remove {
                if let Some((t, _)) = route {
                    let _ = writeln!(out, "ip rule del from {net} table {t} priority {t}");
                    let _ = writeln!(out, "ip route flush table {t}");
                }
                let _ = writeln!(out, "ip addr del {ip}/{len} dev {ifname}");
                return out;
            }
            let _ = writeln!(out, "ip link set {ifname} up");
            let _ = writeln!(out, "ip addr add {ip}/{len} dev {ifname}");
            match (route, nic.gateway) {
                (Some((t, gw)), _) => {
                    let _ = writeln!(
                        out,
                        "ip route replace {net} dev {ifname} src {ip} table {t}"
                    );
                    let _ = writeln!(
                        out,
                        "ip route replace default via {gw} dev {ifname} table {t}"
                    );
                    let _ = writeln!(out, "ip rule add from {net} table {t} priority {t}");
                }
                (None, Some(gw)) if nic.device == 0 => {
                    let _ = writeln!(out, "ip route replace default via {gw} dev {ifname}");
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
