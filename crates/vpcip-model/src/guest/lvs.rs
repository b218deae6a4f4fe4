//! LVS direct routing: the director's nftables ruleset and a backend's
//! commands.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

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
