//! VRRP for a VIP's NICs: keepalived.conf, or the `vpcip vrrp` command
//! that does the same.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::GuestNic;

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

fn instance_name(vip_name: &str) -> String {
    let clean: String = vip_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("VI_{clean}")
}
