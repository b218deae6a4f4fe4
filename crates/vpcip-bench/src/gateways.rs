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
//!
//! `keepalived.rs` holds the keepalived pair, `routes.rs` the routes at the
//! physical router (a bind's, and many EIPs announced at once).

mod keepalived;
mod routes;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use vpcip_lab::cloud::{self, CLUSTER_GATEWAYS};
use vpcip_lab::{World, eventually};
use vpcip_sys::netns::{in_netns, named};

use crate::OPERATOR;
use keepalived::keepalived_pair;
use routes::{announce_many, bind_to_route};

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
