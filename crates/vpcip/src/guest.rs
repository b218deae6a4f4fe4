//! `vpcip guest check`, run inside a guest: what the vendor manuals ask of the VMs
//! that share a VIP — IP forwarding off on a standby, the VIP only on the
//! master, no two NICs in one subnet.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use vpcip_sys::link::Net;
use vpcip_sys::netns::in_netns;

use crate::cli::VrrpRole as Role;

/// The guest's interfaces and their IPv4 addresses.
fn addresses() -> anyhow::Result<Vec<(String, Vec<Ipv4Net>)>> {
    let links = in_netns(Path::new("/proc/self/ns/net"), || -> anyhow::Result<_> {
        let net = Net::open()?;
        let mut out = Vec::new();
        for l in net.links()? {
            if l.name != "lo" {
                out.push((l.name.clone(), net.addrs(l.index)?));
            }
        }
        Ok(out)
    })??;
    Ok(links)
}

pub fn check(vip: Option<Ipv4Addr>, role: Option<Role>) -> anyhow::Result<()> {
    let mut problems = 0;
    let mut say = |ok: bool, msg: String| {
        println!("{} {msg}", if ok { "OK     " } else { "PROBLEM" });
        if !ok {
            problems += 1;
        }
    };
    let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?
        .trim()
        .to_string();
    let standby = matches!(role, Some(Role::Backup));
    say(
        !(standby && forwarding == "1"),
        format!(
            "IP forwarding is {} (net.ipv4.ip_forward = {forwarding}){}",
            if forwarding == "1" { "on" } else { "off" },
            if standby {
                "; the vendor manuals require it off on a standby: sed -i '/net.ipv4.ip_forward/s/1/0/g' /etc/sysctl.conf && sysctl -p"
            } else {
                ""
            }
        ),
    );
    let ifaces = addresses()?;
    // Two NICs in one subnet: the same network on two interfaces (the VIP
    // itself set aside).
    let mut networks: BTreeMap<Ipv4Net, Vec<&str>> = BTreeMap::new();
    for (name, addrs) in &ifaces {
        for a in addrs {
            if Some(a.addr()) == vip || a.prefix_len() == 32 {
                continue;
            }
            let list = networks.entry(a.trunc()).or_default();
            if !list.contains(&name.as_str()) {
                list.push(name);
            }
        }
    }
    let shared: Vec<String> = networks
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(n, v)| format!("{} in {n}", v.join(" and ")))
        .collect();
    say(
        shared.is_empty(),
        if shared.is_empty() {
            "no two NICs in one subnet".into()
        } else {
            format!(
                "two NICs in one subnet ({}): the vendor manuals advise against VIPs then (route conflicts)",
                shared.join("; ")
            )
        },
    );
    if let Some(vip) = vip {
        let on: Vec<&str> = ifaces
            .iter()
            .filter(|(_, addrs)| addrs.iter().any(|a| a.addr() == vip))
            .map(|(n, _)| n.as_str())
            .collect();
        let held = if on.is_empty() {
            format!("VIP {vip} is not on this guest")
        } else {
            format!("VIP {vip} is on {}", on.join(", "))
        };
        match role {
            Some(Role::Master) => say(!on.is_empty(), format!("{held}; a master holds it")),
            Some(Role::Backup) => say(
                on.is_empty(),
                format!("{held}; only the master may hold it"),
            ),
            None => say(true, held),
        }
    }
    if problems > 0 {
        anyhow::bail!("{problems} problem(s) found");
    }
    Ok(())
}
