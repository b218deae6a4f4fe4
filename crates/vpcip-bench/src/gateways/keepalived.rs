//! The keepalived pair beside the cluster: Neutron's L3 HA, its master
//! killed under the same probes.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use vpcip_lab::{World, eventually};

use super::{PORT, ms, probe};

/// Neutron's L3 HA, reduced to what the client sees: two router
/// namespaces `ka1` (master) and `ka2`, one keepalived instance each
/// moving the router's outside address (the physical router's next hop for
/// the EIPs) and inside address (the server's gateway), 1:1 NAT of the EIP
/// in nftables on both. The master dies (keepalived SIGKILLed, links down).
pub(super) fn keepalived_pair(runs: usize, advert_cs: u16, dir: &Path) -> anyhow::Result<Vec<f64>> {
    let mut gaps = Vec::new();
    for run in 1..=runs {
        let mut w = World::new("vpka");
        for n in ["client", "phy", "ka1", "ka2", "srv"] {
            w.add_node(n);
        }
        w.link(
            "client",
            "eth0",
            "198.51.100.10/24",
            "phy",
            "cl0",
            "198.51.100.1/24",
        );
        w.exec(
            "client",
            &["ip", "route", "add", "default", "via", "198.51.100.1"],
        );
        w.exec("phy", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        for (node, br, addr) in [("phy", "ul", "192.0.2.1/24"), ("srv", "il", "10.9.0.10/24")] {
            w.exec(node, &["ip", "link", "add", br, "type", "bridge"]);
            w.exec(node, &["ip", "addr", "add", addr, "dev", br]);
            w.exec(node, &["ip", "link", "set", br, "up"]);
        }
        w.exec("srv", &["ip", "route", "add", "default", "via", "10.9.0.1"]);
        w.exec(
            "phy",
            &["ip", "route", "add", "203.0.113.0/24", "via", "192.0.2.30"],
        );
        let mut pids = Vec::new();
        for (k, (node, prio)) in [("ka1", 200), ("ka2", 100)].into_iter().enumerate() {
            for (peer, br, ifname, addr) in [
                ("phy", "ul", "ext", format!("192.0.2.{}/24", 31 + k)),
                ("srv", "il", "int", format!("10.9.0.{}/24", 2 + k)),
            ] {
                let port = format!("{ifname}-{node}");
                vpcip_lab::run(
                    "ip",
                    &[
                        "-n",
                        &w.ns(peer),
                        "link",
                        "add",
                        &port,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        ifname,
                        "netns",
                        &w.ns(node),
                    ],
                );
                w.exec(peer, &["ip", "link", "set", &port, "master", br, "up"]);
                w.exec(node, &["ip", "addr", "add", &addr, "dev", ifname]);
                w.exec(node, &["ip", "link", "set", ifname, "up"]);
            }
            w.exec(node, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            w.exec(node, &["ip", "route", "add", "default", "via", "192.0.2.1"]);
            let rules = "table ip nat {\n\
                 chain pre { type nat hook prerouting priority -100; ip daddr 203.0.113.200 dnat to 10.9.0.10; }\n\
                 chain post { type nat hook postrouting priority 100; ip saddr 10.9.0.10 oifname \"ext\" snat to 203.0.113.200; }\n}\n";
            let d = dir.join(format!("ka-{advert_cs}-{run}-{node}"));
            std::fs::create_dir_all(&d)?;
            std::fs::write(d.join("nat.nft"), rules)?;
            w.exec(
                node,
                &["nft", "-f", &d.join("nat.nft").display().to_string()],
            );
            let advert = format!("{}.{:02}", advert_cs / 100, advert_cs % 100);
            let conf = format!(
                "global_defs {{\n  vrrp_version 3\n}}\n\
                 vrrp_instance router {{\n  state BACKUP\n  interface ext\n  virtual_router_id 51\n  priority {prio}\n  advert_int {advert}\n  nopreempt\n\
                   virtual_ipaddress {{\n    192.0.2.30/24 dev ext\n    10.9.0.1/24 dev int\n  }}\n}}\n"
            );
            std::fs::write(d.join("k.conf"), conf)?;
            let child = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &w.ns(node),
                    "keepalived",
                    "-n",
                    "-l",
                    "-P",
                    "-f",
                ])
                .arg(d.join("k.conf"))
                .arg("-p")
                .arg(d.join("k.pid"))
                .arg("-r")
                .arg(d.join("v.pid"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("start keepalived (apt-get install keepalived)")?;
            let pid = child.id();
            w.adopt(child);
            let vrrp = d.join("v.pid");
            eventually(Duration::from_secs(5), || vrrp.exists());
            let child_pid: Option<u32> = std::fs::read_to_string(&vrrp)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            pids.push(
                [Some(pid), child_pid]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>(),
            );
            if k == 0 {
                // ka1 first: it becomes the master.
                let up = eventually(Duration::from_secs(15), || {
                    w.exec(node, &["ip", "-4", "addr", "show", "ext"])
                        .contains("192.0.2.30")
                });
                if !up {
                    bail!("keepalived in ka1 did not take the router's addresses");
                }
            }
        }
        vpcip_lab::udp_echo_server(&w.ns("srv"), PORT, Duration::from_secs(60));
        let to = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 200).into(), PORT);
        if !eventually(Duration::from_secs(10), || {
            vpcip_lab::udp_ask(&w.ns("client"), to, "1").is_some()
        }) {
            bail!("the keepalived pair does not answer");
        }
        let run_for = Duration::from_millis(1000 + u64::from(advert_cs) * 10 * 5 + 2000);
        let p = probe(&w.ns("client"), to, run_for);
        std::thread::sleep(Duration::from_millis(1000));
        for pid in &pids[0] {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.cast_signed()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        w.exec("ka1", &["ip", "link", "set", "ext", "down"]);
        w.exec("ka1", &["ip", "link", "set", "int", "down"]);
        let seen = p.join().map_err(|_| anyhow::anyhow!("probe panicked"))?;
        gaps.push(ms(seen.gap));
    }
    Ok(gaps)
}
