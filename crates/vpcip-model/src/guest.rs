//! Guest configuration for VIPs, as the vendor manuals give it: the commands or file
//! content that add (or remove) a VIP on a guest's NIC, per guest OS, and a
//! keepalived.conf for the NICs the VIP is bound to. Pure rendering.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

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
/// seeds' "configure a secondary ENI" asks, or take it down. A secondary
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

/// A member's VRRP parameters.
#[derive(Debug, Clone, Copy)]
pub struct VrrpParams {
    /// Its place among the VIP's NICs: 0 is the preferred master.
    pub rank: usize,
    pub vrid: u8,
    /// Advertisement interval, centiseconds.
    pub advert_cs: u16,
}

impl VrrpParams {
    /// 150 for the first NIC, then 140, 130, …
    pub fn priority(&self) -> u32 {
        150u32
            .saturating_sub(u32::try_from(self.rank).map_or(u32::MAX, |r| r.saturating_mul(10)))
            .max(1)
    }
}

/// Centiseconds as keepalived's seconds: 100 → "1", 10 → "0.1", 1 → "0.01".
fn seconds(cs: u16) -> String {
    if cs.is_multiple_of(100) {
        (cs / 100).to_string()
    } else if cs.is_multiple_of(10) {
        format!("{}.{}", cs / 100, (cs % 100) / 10)
    } else {
        format!("{}.{:02}", cs / 100, cs % 100)
    }
}

/// A VRRP virtual router ID for a VIP: the same on every member, derived
/// from the address (1 to 255).
pub fn vrid_of(vip: Ipv4Addr) -> u8 {
    // 1 to 255: always fits.
    u8::try_from(u32::from(vip) % 255 + 1).unwrap_or(u8::MAX)
}

/// keepalived.conf for one member of the VIP's pair (or group): `me` is
/// this NIC, `rank` its place among the VIP's NICs (0 is the preferred
/// master: priority 150, then 140, 130, …).
pub fn keepalived_conf(
    vip_name: &str,
    vip: Ipv4Addr,
    subnet: Ipv4Net,
    me: &GuestNic<'_>,
    peers: &[Ipv4Addr],
    p: &VrrpParams,
) -> String {
    let (priority, vrid) = (p.priority(), p.vrid);
    let mut out = String::new();
    let peers: Vec<String> = peers.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "! keepalived for VIP {vip} ({vip_name}) on {} ({}); peers: {}",
        me.ifname,
        me.ip,
        if peers.is_empty() {
            "none".to_string()
        } else {
            peers.join(", ")
        }
    );
    let _ = writeln!(out, "! Made by `vpcip vip guest-config --keepalived`.");
    let _ = writeln!(out, "global_defs {{");
    let _ = writeln!(out, "    router_id {}", me.ip);
    let _ = writeln!(out, "    vrrp_version 3");
    let _ = writeln!(out, "    vrrp_garp_master_delay 1");
    let _ = writeln!(out, "    vrrp_garp_master_refresh 60");
    let _ = writeln!(out, "}}");
    let _ = writeln!(out, "vrrp_instance {} {{", instance_name(vip_name));
    let _ = writeln!(out, "    state BACKUP");
    let _ = writeln!(out, "    interface {}", me.ifname);
    let _ = writeln!(out, "    virtual_router_id {vrid}");
    let _ = writeln!(out, "    priority {priority}");
    let _ = writeln!(out, "    advert_int {}", seconds(p.advert_cs));
    let _ = writeln!(out, "    virtual_ipaddress {{");
    let _ = writeln!(
        out,
        "        {vip}/{} dev {}",
        subnet.prefix_len(),
        me.ifname
    );
    let _ = writeln!(out, "    }}");
    let _ = writeln!(out, "}}");
    out
}

/// The `vpcip vrrp` command equivalent to [`keepalived_conf`].
pub fn vrrp_command(
    vip_name: &str,
    vip: Ipv4Addr,
    subnet: Ipv4Net,
    me: &GuestNic<'_>,
    p: &VrrpParams,
) -> String {
    format!(
        "vpcip vrrp --interface {} --vrid {} --priority {} --advert-int {} --vip {vip}/{} --name {}\n",
        me.ifname,
        p.vrid,
        p.priority(),
        p.advert_cs,
        subnet.prefix_len(),
        instance_name(vip_name)
    )
}

/// A port an LVS direct-routing service forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LvsPort {
    pub udp: bool,
    pub port: u16,
}

impl std::str::FromStr for LvsPort {
    type Err = String;

    /// `80`, `80/tcp` or `53/udp`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            other => return Err(format!("protocol {other}: tcp or udp")),
        };
        match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(LvsPort { udp, port: p }),
            _ => Err(format!("port {port}: 1 to 65535")),
        }
    }
}

/// The hash seed every director shares, so that the backup picks the same
/// backend for a flow as the master did and established connections
/// survive a director failover.
const LVS_SEED: u32 = 0x7670_6970; // "vpip"

/// An LVS direct-routing director without IPVS: an nftables ruleset (load
/// it with `nft -f`) whose netdev ingress hook on the director's NIC sends
/// each packet for the VIP's ports to a backend, chosen by a hash of the
/// client's address and port, with the frame's destination MAC rewritten
/// and the IP packet untouched (`fwd ip to … device`, the kernel's
/// neighbour-resolving forward). Stateless: every director with the same
/// backends chooses alike. The VIP stays on the director (VRRP) so that it
/// answers ARP for it; the backends answer the client directly.
pub fn lvs_director_nft(
    vip: Ipv4Addr,
    ifname: &str,
    ports: &[LvsPort],
    backends: &[Ipv4Addr],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# LVS direct routing for VIP {vip} on {ifname}, without IPVS: nft -f <this file>"
    );
    let _ = writeln!(out, "# Made by `vpcip vip guest-config --lvs-director`.");
    let _ = writeln!(out, "table netdev vpcip_lvs");
    let _ = writeln!(out, "delete table netdev vpcip_lvs");
    let _ = writeln!(out, "table netdev vpcip_lvs {{");
    let _ = writeln!(out, "    chain ingress {{");
    let _ = writeln!(
        out,
        "        type filter hook ingress device \"{ifname}\" priority 0; policy accept;"
    );
    let map: Vec<String> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{i} : {b}"))
        .collect();
    for p in ports {
        let proto = if p.udp { "udp" } else { "tcp" };
        let _ = writeln!(
            out,
            "        ip daddr {vip} {proto} dport {} fwd ip to jhash ip saddr . {proto} sport mod {} seed {LVS_SEED:#x} map {{ {} }} device \"{ifname}\"",
            p.port,
            backends.len(),
            map.join(", ")
        );
    }
    let _ = writeln!(out, "    }}");
    let _ = writeln!(out, "}}");
    out
}

/// A direct-routing backend: it holds the VIP on its loopback (to accept
/// the packets the director forwards and answer from the VIP) without
/// answering ARP for it, which only the director does. Its NIC's
/// source/destination check must be off: it sends from the VIP.
pub fn lvs_backend(vip: Ipv4Addr, ifname: &str, remove: bool) -> String {
    let mut out = String::new();
    if remove {
        let _ = writeln!(out, "ip addr del {vip}/32 dev lo");
        return out;
    }
    for (key, value) in [("arp_ignore", 1), ("arp_announce", 2)] {
        for dev in ["all", ifname] {
            let _ = writeln!(out, "sysctl -qw net.ipv4.conf.{dev}.{key}={value}");
        }
    }
    let _ = writeln!(out, "ip addr add {vip}/32 dev lo");
    out
}

fn instance_name(vip_name: &str) -> String {
    let clean: String = vip_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("VI_{clean}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic() -> GuestNic<'static> {
        GuestNic {
            ifname: "eth0",
            connection: "System eth0",
            ip: "192.168.0.11".parse().unwrap(),
            subnet: "192.168.0.0/24".parse().unwrap(),
            gateway: Some("192.168.0.1".parse().unwrap()),
            device: 0,
        }
    }

    /// The seeds' secondary ENI: eth1 in another subnet.
    fn eni() -> GuestNic<'static> {
        GuestNic {
            ifname: "eth1",
            connection: "System eth1",
            ip: "192.168.1.5".parse().unwrap(),
            subnet: "192.168.1.0/24".parse().unwrap(),
            gateway: Some("192.168.1.1".parse().unwrap()),
            device: 1,
        }
    }

    #[test]
    fn a_secondary_eni_gets_source_routing_on_every_os() {
        assert_eq!(
            nic_config(GuestOs::Centos, &eni(), false),
            "nmcli connection add type ethernet con-name \"System eth1\" ifname eth1 ipv4.method manual ipv4.addresses 192.168.1.5/24 \
             ipv4.never-default yes ipv4.routes \"192.168.1.0/24 table=1001, 0.0.0.0/0 192.168.1.1 table=1001\" \
             ipv4.routing-rules \"priority 1001 from 192.168.1.0/24 table 1001\"\n\
             nmcli connection up \"System eth1\"\n"
        );
        assert_eq!(
            nic_config(GuestOs::Centos, &eni(), true),
            "nmcli connection delete \"System eth1\"\n"
        );
        assert_eq!(
            nic_config(GuestOs::Ubuntu, &eni(), false),
            "# /etc/netplan/51-eth1.yaml\n\
             network:\n\
             \x20   version: 2\n\
             \x20   ethernets:\n\
             \x20       eth1:\n\
             \x20           dhcp4: false\n\
             \x20           addresses:\n\
             \x20           - 192.168.1.5/24\n\
             \x20           routes:\n\
             \x20           - to: 192.168.1.0/24\n\
             \x20             scope: link\n\
             \x20             table: 1001\n\
             \x20           - to: 0.0.0.0/0\n\
             \x20             via: 192.168.1.1\n\
             \x20             table: 1001\n\
             \x20           routing-policy:\n\
             \x20           - from: 192.168.1.0/24\n\
             \x20             table: 1001\n\
             \x20             priority: 1001\n\
             # then: netplan apply\n"
        );
        assert_eq!(
            nic_config(GuestOs::Ubuntu, &eni(), true),
            "rm /etc/netplan/51-eth1.yaml\nnetplan apply\n"
        );
        let w = GuestNic {
            ifname: "Ethernet 2",
            ..eni()
        };
        assert_eq!(
            nic_config(GuestOs::Windows, &w, false),
            "netsh interface ipv4 set address name=\"Ethernet 2\" source=static address=192.168.1.5 mask=255.255.255.0\n\
             netsh interface ipv4 add route 0.0.0.0/0 \"Ethernet 2\" 192.168.1.1 metric=500\n\
             ipconfig /all\n"
        );
        assert_eq!(
            nic_config(GuestOs::Windows, &w, true),
            "netsh interface ipv4 delete route 0.0.0.0/0 \"Ethernet 2\" 192.168.1.1\n\
             netsh interface ipv4 set address name=\"Ethernet 2\" source=dhcp\n"
        );
        assert_eq!(
            nic_config(GuestOs::Linux, &eni(), false),
            "ip link set eth1 up\n\
             ip addr add 192.168.1.5/24 dev eth1\n\
             ip route replace 192.168.1.0/24 dev eth1 src 192.168.1.5 table 1001\n\
             ip route replace default via 192.168.1.1 dev eth1 table 1001\n\
             ip rule add from 192.168.1.0/24 table 1001 priority 1001\n"
        );
        assert_eq!(
            nic_config(GuestOs::Linux, &eni(), true),
            "ip rule del from 192.168.1.0/24 table 1001 priority 1001\n\
             ip route flush table 1001\n\
             ip addr del 192.168.1.5/24 dev eth1\n"
        );
    }

    #[test]
    fn the_primary_nic_keeps_the_main_table() {
        assert_eq!(nic().source_table(), None);
        assert_eq!(eni().source_table(), Some(1001));
        let linux = nic_config(GuestOs::Linux, &nic(), false);
        assert!(!linux.contains("rule"), "{linux}");
        assert!(
            linux.ends_with("ip route replace default via 192.168.0.1 dev eth0\n"),
            "{linux}"
        );
        let centos = nic_config(GuestOs::Centos, &nic(), false);
        assert!(centos.contains(" ipv4.gateway 192.168.0.1\n"), "{centos}");
        assert!(!centos.contains("never-default"), "{centos}");
    }

    #[test]
    fn linux_adds_and_removes_the_vip_with_ip() {
        assert_eq!(
            vip_config(GuestOs::Linux, &eni(), vip(), false),
            "ip addr add 192.168.0.22/32 dev eth1\n"
        );
        assert_eq!(
            vip_config(GuestOs::Linux, &eni(), vip(), true),
            "ip addr del 192.168.0.22/32 dev eth1\n"
        );
    }

    fn vip() -> Ipv4Addr {
        "192.168.0.22".parse().unwrap()
    }

    #[test]
    fn centos_is_the_seeds_nmcli() {
        assert_eq!(
            vip_config(GuestOs::Centos, &nic(), vip(), false),
            "nmcli connection modify \"System eth0\" +ipv4.addresses 192.168.0.22\n\
             nmcli connection up \"System eth0\"\n"
        );
        assert_eq!(
            vip_config(GuestOs::Centos, &nic(), vip(), true),
            "nmcli connection modify \"System eth0\" -ipv4.addresses 192.168.0.22\n\
             nmcli connection up \"System eth0\"\n"
        );
    }

    #[test]
    fn ubuntu_is_the_seeds_netplan_file() {
        assert_eq!(
            vip_config(GuestOs::Ubuntu, &nic(), vip(), false),
            "# /etc/netplan/01-netcfg.yaml\n\
             network:\n\
             \x20   version: 2\n\
             \x20   renderer: NetworkManager\n\
             \x20   ethernets:\n\
             \x20       eth0:\n\
             \x20           dhcp4: true\n\
             \x20           addresses:\n\
             \x20           - 192.168.0.22/32\n\
             # then: netplan apply\n"
        );
        assert!(!vip_config(GuestOs::Ubuntu, &nic(), vip(), true).contains("addresses"));
    }

    #[test]
    fn windows_is_netsh() {
        let w = GuestNic {
            ifname: "Ethernet",
            ..nic()
        };
        assert_eq!(
            vip_config(GuestOs::Windows, &w, vip(), false),
            "netsh interface ipv4 add address name=\"Ethernet\" address=192.168.0.22 mask=255.255.255.0\n\
             ipconfig /all\n"
        );
        assert_eq!(
            vip_config(GuestOs::Windows, &w, vip(), true),
            "netsh interface ipv4 delete address name=\"Ethernet\" address=192.168.0.22\n\
             ipconfig /all\n"
        );
    }

    #[test]
    fn keepalived_conf_for_the_preferred_master() {
        let conf = keepalived_conf(
            "vip-1",
            vip(),
            "192.168.0.0/24".parse().unwrap(),
            &nic(),
            &["192.168.0.12".parse().unwrap()],
            &VrrpParams {
                rank: 0,
                vrid: vrid_of(vip()),
                advert_cs: 100,
            },
        );
        assert_eq!(
            conf,
            "! keepalived for VIP 192.168.0.22 (vip-1) on eth0 (192.168.0.11); peers: 192.168.0.12\n\
             ! Made by `vpcip vip guest-config --keepalived`.\n\
             global_defs {\n\
             \x20   router_id 192.168.0.11\n\
             \x20   vrrp_version 3\n\
             \x20   vrrp_garp_master_delay 1\n\
             \x20   vrrp_garp_master_refresh 60\n\
             }\n\
             vrrp_instance VI_vip_1 {\n\
             \x20   state BACKUP\n\
             \x20   interface eth0\n\
             \x20   virtual_router_id 128\n\
             \x20   priority 150\n\
             \x20   advert_int 1\n\
             \x20   virtual_ipaddress {\n\
             \x20       192.168.0.22/24 dev eth0\n\
             \x20   }\n\
             }\n"
        );
        let p = |rank, advert_cs| VrrpParams {
            rank,
            vrid: 1,
            advert_cs,
        };
        let net: Ipv4Net = "192.168.0.0/24".parse().unwrap();
        assert!(keepalived_conf("v", vip(), net, &nic(), &[], &p(1, 100)).contains("priority 140"));
        assert!(
            keepalived_conf("v", vip(), net, &nic(), &[], &p(0, 10)).contains("advert_int 0.1\n")
        );
        assert!(
            keepalived_conf("v", vip(), net, &nic(), &[], &p(0, 1)).contains("advert_int 0.01\n")
        );
        assert!(
            keepalived_conf("v", vip(), net, &nic(), &[], &p(0, 150)).contains("advert_int 1.5\n")
        );
    }

    #[test]
    fn the_vrrp_command_matches_the_keepalived_conf() {
        assert_eq!(
            vrrp_command(
                "vip-1",
                vip(),
                "192.168.0.0/24".parse().unwrap(),
                &nic(),
                &VrrpParams {
                    rank: 1,
                    vrid: 128,
                    advert_cs: 100
                }
            ),
            "vpcip vrrp --interface eth0 --vrid 128 --priority 140 --advert-int 100 --vip 192.168.0.22/24 --name VI_vip_1\n"
        );
    }

    #[test]
    fn an_lvs_director_forwards_each_port_by_a_shared_hash() {
        let ports: Vec<LvsPort> = ["80", "53/udp"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(
            lvs_director_nft(
                vip(),
                "eth0",
                &ports,
                &[
                    "192.168.0.31".parse().unwrap(),
                    "192.168.0.32".parse().unwrap()
                ]
            ),
            "# LVS direct routing for VIP 192.168.0.22 on eth0, without IPVS: nft -f <this file>\n\
             # Made by `vpcip vip guest-config --lvs-director`.\n\
             table netdev vpcip_lvs\n\
             delete table netdev vpcip_lvs\n\
             table netdev vpcip_lvs {\n\
             \x20   chain ingress {\n\
             \x20       type filter hook ingress device \"eth0\" priority 0; policy accept;\n\
             \x20       ip daddr 192.168.0.22 tcp dport 80 fwd ip to jhash ip saddr . tcp sport mod 2 seed 0x76706970 map { 0 : 192.168.0.31, 1 : 192.168.0.32 } device \"eth0\"\n\
             \x20       ip daddr 192.168.0.22 udp dport 53 fwd ip to jhash ip saddr . udp sport mod 2 seed 0x76706970 map { 0 : 192.168.0.31, 1 : 192.168.0.32 } device \"eth0\"\n\
             \x20   }\n\
             }\n"
        );
        assert!("0".parse::<LvsPort>().is_err());
        assert!("80/sctp".parse::<LvsPort>().unwrap_err().contains("sctp"));
        assert_eq!(
            "443/tcp".parse::<LvsPort>(),
            Ok(LvsPort {
                udp: false,
                port: 443
            })
        );
    }

    #[test]
    fn an_lvs_backend_holds_the_vip_on_lo_without_arp() {
        assert_eq!(
            lvs_backend(vip(), "eth0", false),
            "sysctl -qw net.ipv4.conf.all.arp_ignore=1\n\
             sysctl -qw net.ipv4.conf.eth0.arp_ignore=1\n\
             sysctl -qw net.ipv4.conf.all.arp_announce=2\n\
             sysctl -qw net.ipv4.conf.eth0.arp_announce=2\n\
             ip addr add 192.168.0.22/32 dev lo\n"
        );
        assert_eq!(
            lvs_backend(vip(), "eth0", true),
            "ip addr del 192.168.0.22/32 dev lo\n"
        );
    }

    #[test]
    fn vrids_are_in_range_and_stable() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.0.100", "192.168.0.22"] {
            let v = vrid_of(ip.parse().unwrap());
            assert!(v >= 1);
            assert_eq!(v, vrid_of(ip.parse().unwrap()));
        }
    }
}
