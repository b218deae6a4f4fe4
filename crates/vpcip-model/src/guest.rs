//! Guest configuration for VIPs, as the seeds give it: the commands or file
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
}

/// What the guest needs to know about its NIC.
#[derive(Debug, Clone)]
pub struct GuestNic<'a> {
    /// The interface inside the guest (`eth0`; `Ethernet` on Windows).
    pub ifname: &'a str,
    /// The NetworkManager connection (`System eth0` in the seeds).
    pub connection: &'a str,
    pub ip: Ipv4Addr,
    pub subnet: Ipv4Net,
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
        150u32.saturating_sub(10 * self.rank as u32).max(1)
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
    (u32::from(vip) % 255 + 1) as u8
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
        }
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
    fn vrids_are_in_range_and_stable() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.0.100", "192.168.0.22"] {
            let v = vrid_of(ip.parse().unwrap());
            assert!(v >= 1);
            assert_eq!(v, vrid_of(ip.parse().unwrap()));
        }
    }
}
