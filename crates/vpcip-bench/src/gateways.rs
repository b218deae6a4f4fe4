//! The gateway cluster (`bench/run gateways`): what an outside client sees
//! through an EIP when the gateway carrying it dies (agent and BIRD
//! SIGKILLed, its underlay link down), when it comes back, and when it is
//! drained and undrained; beside it, the same death of an active/standby
//! pair of router namespaces kept by keepalived the way Neutron's L3 HA
//! keeps its routers (one VRRP instance moving the router's outside and
//! inside addresses, 1:1 NAT in nftables), at keepalived's default 2 s
//! adverts and at 100 ms. Also a new EIP's bind → its route at the
//! physical router, and 100,000 EIPs announced from an empty node.
//!
//! Probes: a UDP datagram every 10 ms from the outside client to the EIP,
//! echoed by the VM; the gap is the longest run of unanswered probes.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vpcip_lab::cloud::{self, CLUSTER_GATEWAYS};
use vpcip_lab::{World, eventually};
use vpcip_model::*;
use vpcip_sys::netns::{in_netns, named};

use crate::OPERATOR;

const PORT: u16 = 7788;
const PERIOD: Duration = Duration::from_millis(10);

/// What the probes saw: sent, answered, and the longest run of
/// unanswered ones (as time).
#[derive(Debug, Clone, Copy)]
struct Seen {
    sent: u32,
    answered: u32,
    gap: Duration,
}

/// Probes `to` from `ns` every 10 ms for `run`.
fn probe(ns: &str, to: SocketAddr, run: Duration) -> std::thread::JoinHandle<Seen> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        in_netns(&named(&ns), move || {
            let mut got = std::collections::BTreeSet::new();
            let Ok(s) = UdpSocket::bind(("0.0.0.0", 0)) else {
                return Seen {
                    sent: 0,
                    answered: 0,
                    gap: run,
                };
            };
            let _ = s.set_read_timeout(Some(Duration::from_millis(2)));
            // The probes answered (the echo ends with the probe's number)
            // until `deadline`.
            let mut buf = [0u8; 128];
            let mut answers_until =
                |deadline: Instant, got: &mut std::collections::BTreeSet<u32>| {
                    while Instant::now() < deadline {
                        if let Ok((n, _)) = s.recv_from(&mut buf)
                            && let Some(n) = String::from_utf8_lossy(&buf[..n])
                                .split_whitespace()
                                .last()
                                .and_then(|w| w.parse::<u32>().ok())
                        {
                            got.insert(n);
                        }
                    }
                };
            let started = Instant::now();
            let mut seq = 0u32;
            while started.elapsed() < run {
                let slot = started + PERIOD * seq;
                let _ = s.send_to(seq.to_string().as_bytes(), to);
                seq += 1;
                answers_until(slot + PERIOD, &mut got);
            }
            // Late answers.
            answers_until(Instant::now() + Duration::from_millis(300), &mut got);
            let mut longest = 0u32;
            let mut run_len = 0u32;
            for i in 0..seq {
                if got.contains(&i) {
                    run_len = 0;
                } else {
                    run_len += 1;
                    longest = longest.max(run_len);
                }
            }
            Seen {
                sent: seq,
                answered: u32::try_from(got.len()).unwrap_or(u32::MAX),
                gap: PERIOD * longest,
            }
        })
        .unwrap_or(Seen {
            sent: 0,
            answered: 0,
            gap: run,
        })
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn kill(w: &World, indexes: &[usize]) {
    for i in indexes {
        if let Some(pid) = w.pid(*i) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.cast_signed()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The gateway phy routes `ip` to, when it learnt a route by BGP.
fn next_hop(w: &World, ip: Ipv4Addr) -> Option<usize> {
    let r = w.try_exec(
        cloud::PHYSICAL_ROUTER,
        &["ip", "route", "show", &ip.to_string()],
    )?;
    if !r.contains("proto bird") {
        return None;
    }
    CLUSTER_GATEWAYS
        .iter()
        .position(|(_, u)| r.contains(&format!("via {u} ")))
}

pub async fn gateways(runs: usize, binds: usize, announced: u32, dir: &Path) -> anyhow::Result<()> {
    let segment = "203.0.113.0/24";
    let crate::LabCloud {
        mut w,
        op,
        url,
        mut agents,
        mut birds,
        ..
    } = crate::lab_cluster("vpgw", segment).await?;
    let exe = std::env::current_exe()?.with_file_name("vpcip");
    crate::bench_world(&op, segment, "10.0.0.0/16", "10.0.1.0/24").await?;
    let (server, _) = crate::bench_vm(&mut w, &op, "web", cloud::HOSTS[0], vec![]).await?;
    let limit = Duration::from_secs(3600);
    vpcip_lab::udp_echo_server(&w.ns("web"), PORT, limit);
    let eip = op.eip_for_server(&server.id, 100).await?;
    let to = SocketAddr::new(eip.ip.into(), PORT);
    let client = w.ns(cloud::CLIENT);
    if !eventually(Duration::from_secs(30), || {
        next_hop(&w, eip.ip).is_some() && vpcip_lab::udp_ask(&client, to, "1").is_some()
    }) {
        bail!("the client does not reach {} through the cluster", eip.ip);
    }
    println!("\n## Gateway cluster: an EIP's carrier dies, comes back, is drained");
    println!("(probes every 10 ms through a NAT EIP; gap = longest run of unanswered probes)\n");
    println!("| run | death: gap | death: lost | return: lost | drain: lost | undrain: lost |");
    println!("|---|---|---|---|---|---|");
    let mut deaths = Vec::new();
    let mut others = (0u32, 0u32, 0u32);
    for run in 1..=runs {
        let Some(i) = next_hop(&w, eip.ip) else {
            bail!("run {run}: phy has no route to {}", eip.ip);
        };
        let (gw, underlay) = CLUSTER_GATEWAYS[i];
        // Death.
        let p = probe(&client, to, Duration::from_secs(4));
        std::thread::sleep(Duration::from_millis(1000));
        kill(&w, &[agents[i], birds[i]]);
        w.exec(gw, &["ip", "link", "set", "phy0", "down"]);
        let death = p.join().map_err(|_| anyhow::anyhow!("probe panicked"))?;
        // Return: link up, BIRD and agent again; it takes its share back.
        let p = probe(&client, to, Duration::from_secs(12));
        w.exec(gw, &["ip", "link", "set", "phy0", "up"]);
        w.exec(
            gw,
            &[
                "ip",
                "route",
                "replace",
                "default",
                "via",
                cloud::PHYSICAL_UNDERLAY,
            ],
        );
        let (conf, _) = cloud::bird_paths(&w, gw);
        let conf_text = std::fs::read_to_string(&conf).unwrap_or_default();
        let b = cloud::start_bird(&mut w, gw, &conf_text);
        let a = cloud::start_agent(&mut w, &exe, &url, OPERATOR, "gateway", gw, underlay, 10);
        let back = eventually(Duration::from_secs(11), || next_hop(&w, eip.ip) == Some(i));
        let ret = p.join().map_err(|_| anyhow::anyhow!("probe panicked"))?;
        if !back {
            bail!("run {run}: {gw} did not take its share back");
        }
        // The restarted processes replace the dead ones.
        agents[i] = a;
        birds[i] = b;
        // Drain and undrain.
        let p = probe(&client, to, Duration::from_secs(4));
        std::thread::sleep(Duration::from_millis(500));
        crate::vpcip_cli(&exe, &url, &["gateway", "drain", gw])?;
        let drain = p.join().map_err(|_| anyhow::anyhow!("probe panicked"))?;
        let p = probe(&client, to, Duration::from_secs(4));
        std::thread::sleep(Duration::from_millis(500));
        crate::vpcip_cli(&exe, &url, &["gateway", "undrain", gw])?;
        if !eventually(Duration::from_secs(5), || next_hop(&w, eip.ip) == Some(i)) {
            bail!("run {run}: {gw} did not come back after undrain");
        }
        let undrain = p.join().map_err(|_| anyhow::anyhow!("probe panicked"))?;
        let lost = |s: Seen| s.sent - s.answered;
        println!(
            "| {run} | {:.0} ms | {} of {} | {} of {} | {} of {} | {} of {} |",
            ms(death.gap),
            lost(death),
            death.sent,
            lost(ret),
            ret.sent,
            lost(drain),
            drain.sent,
            lost(undrain),
            undrain.sent
        );
        deaths.push(ms(death.gap));
        others.0 += lost(ret);
        others.1 += lost(drain);
        others.2 += lost(undrain);
    }
    println!(
        "\nvpcip, the carrier dies: gap median {:.0} ms over {runs} runs ({}); probes lost on return {}, drain {}, undrain {} (all runs)",
        crate::median(deaths.clone()),
        crate::fmt_runs(&deaths, 0),
        others.0,
        others.1,
        others.2
    );
    bind_to_route(&w, &op, binds).await?;
    drop(w);
    for cs in [200u16, 10] {
        let gaps = keepalived_pair(runs, cs, dir)?;
        println!(
            "keepalived pair (Neutron L3 HA), adverts {} ms: gap median {:.0} ms over {runs} runs ({})",
            u32::from(cs) * 10,
            crate::median(gaps.clone()),
            crate::fmt_runs(&gaps, 0)
        );
    }
    announce_many(announced)?;
    Ok(())
}

/// A new EIP bound to a server → its /32 at the physical router (learnt by
/// BGP), from the API's answer; `n` binds.
async fn bind_to_route(w: &World, op: &vpcip_client::Client, n: usize) -> anyhow::Result<()> {
    let subnet: Subnet = op.show("sw").await?;
    let server: Server = op
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "bindee".into(),
                subnet: subnet.id.clone(),
                host: Some(cloud::HOSTS[1].into()),
                ..Default::default()
            },
        )
        .await?;
    let phy = named(&w.ns(cloud::PHYSICAL_ROUTER));
    let mut times = Vec::new();
    for _ in 0..n {
        let eip = op.eip_for_server(&server.id, 10).await?;
        let answered = Instant::now();
        let dst = vpcip_model::ipam::net_of(eip.ip, 32)?;
        let seen = in_netns(&phy, || -> anyhow::Result<bool> {
            let net = vpcip_sys::link::Net::open()?;
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if net.routes()?.iter().any(|r| r.dst == dst) {
                    return Ok(true);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(false)
        })??;
        if !seen {
            bail!("{} never reached the physical router", eip.ip);
        }
        times.push(ms(answered.elapsed()));
        let _: Eip = op
            .action(paths::EIP_UNBIND, &eip.id, &serde_json::json!({}))
            .await?;
        op.remove::<vpcip_model::Eip>(&eip.id).await?;
        // The next bind may take the same address: its route must be gone
        // first, or the next measure would find the old one.
        let gone = in_netns(&phy, || -> anyhow::Result<bool> {
            let net = vpcip_sys::link::Net::open()?;
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if !net.routes()?.iter().any(|r| r.dst == dst) {
                    return Ok(true);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(false)
        })??;
        if !gone {
            bail!(
                "the route to {} stayed at the physical router after its release",
                eip.ip
            );
        }
    }
    times.sort_by(f64::total_cmp);
    let p = |q: f64| crate::secgroups::quantile(&times, q);
    println!(
        "a new EIP bound → its route at the physical router (BGP): p50 {:.0} ms, p99 {:.0} ms over {n} binds",
        p(0.5),
        p(0.99)
    );
    Ok(())
}

/// Neutron's L3 HA, reduced to what the client sees: two router
/// namespaces `ka1` (master) and `ka2`, one keepalived instance each
/// moving the router's outside address (the physical router's next hop for
/// the EIPs) and inside address (the server's gateway), 1:1 NAT of the EIP
/// in nftables on both. The master dies (keepalived SIGKILLed, links down).
fn keepalived_pair(runs: usize, advert_cs: u16, dir: &Path) -> anyhow::Result<Vec<f64>> {
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

/// 100,000 EIPs announced from an empty gateway node: the agent's first
/// pass (routers, maps, announcement table) until the physical router's
/// kernel holds every /32, learnt from the node's BIRD.
fn announce_many(n: u32) -> anyhow::Result<()> {
    use vpcip_dataplane::gateway::Roles;
    let mut w = World::new("vpan");
    cloud::physical(&mut w, &[]);
    let gw_ip: Ipv4Addr = cloud::GATEWAY_UNDERLAY.parse()?;
    let bgp = cloud::gateway_bgp();
    cloud::start_bird(
        &mut w,
        cloud::GATEWAY,
        &vpcip_agent::bgp::render(gw_ip, &bgp),
    );
    let phy = format!(
        "router id {ip};\nprotocol device {{}}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; }}\n\
         protocol bgp node_gw {{ local {ip} as {pas}; neighbor {gw_ip} as {gas}; connect delay time 1; ipv4 {{ import all; export none; }}; }}\n",
        ip = cloud::PHYSICAL_UNDERLAY,
        pas = cloud::PHYSICAL_AS,
        gas = cloud::GATEWAY_AS
    );
    cloud::start_bird(&mut w, cloud::PHYSICAL_ROUTER, &phy);
    let (_, sock) = cloud::bird_paths(&w, cloud::GATEWAY);
    let bird = vpcip_agent::bgp::Bird {
        socket: sock,
        config: cloud::bird_paths(&w, cloud::GATEWAY).0,
    };
    if !eventually(Duration::from_secs(15), || {
        bird.sessions(&[bgp.peers[0].ip])
            .is_ok_and(|s| s.iter().all(|b| b.state == "established"))
    }) {
        bail!("the BGP session did not come up");
    }
    let nat: Vec<vpcip_model::desired::NatEntry> = (0..n)
        .map(|i| {
            let eip = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i);
            vpcip_model::desired::NatEntry {
                eip,
                private_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i),
                eip_id: format!("eip-{i}"),
                shaping: None,
                algs: vec![],
            }
        })
        .collect();
    let mut state = crate::dataplane::one_router(nat);
    state.cluster.bgp = Some(bgp);
    state.cluster.slots = vec![vpcip_model::desired::Slot {
        vrid: 1,
        owner: cloud::GATEWAY.into(),
        priority: 250,
        snat_ip: None,
    }];
    state.routers[0].slot = 1;
    let roles = Roles {
        master: [1].into(),
        backup: Default::default(),
    };
    let mut agent = crate::dataplane::gateway_agent(&w);
    let phy_ns = named(&w.ns(cloud::PHYSICAL_ROUTER));
    let started = Instant::now();
    agent
        .reconcile_with(&state, Some(&roles))
        .map_err(|e| anyhow::anyhow!(e))?;
    let pass = started.elapsed();
    let all = in_netns(&phy_ns, || -> anyhow::Result<bool> {
        let net = vpcip_sys::link::Net::open()?;
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            let have = net
                .routes()?
                .iter()
                .filter(|r| r.dst.prefix_len() == 32 && r.dst.addr().octets()[0] == 100)
                .count();
            if have >= n as usize {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(false)
    })??;
    if !all {
        bail!("the physical router did not learn all {n} routes in 60 s");
    }
    println!(
        "{n} EIPs announced from an empty node: in the physical router's kernel {:.2} s after the agent's pass began (the pass itself {:.2} s: routers, NAT maps, announcement table)",
        started.elapsed().as_secs_f64(),
        pass.as_secs_f64()
    );
    Ok(())
}
