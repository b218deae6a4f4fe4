//! Per-EIP bandwidth limits: what programming them costs, and whether they
//! slow the EIPs without a limit.
//!
//! 1. Programming: the gateway agent's whole first pass into an empty node
//!    for N EIPs, each with a limit (an HTB class on both ends of the
//!    router's link, a map element on each side) against the same pass
//!    without limits; beside it, `tc -batch` adding N HTB classes to one
//!    device (the usual tool, one class per line) as the baseline; and the
//!    idle pass with the limits in place.
//! 2. Throughput: the whole lab cloud (controller, agents, a VM with an
//!    EIP without a limit); iperf3 TCP from the outside client through that
//!    EIP, before and after N limited EIPs (bound to VIPs in the same VPC,
//!    so that their classes sit on the same links) are added.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vpcip_lab::World;
use vpcip_lab::cloud;
use vpcip_model::desired::{NatEntry, Shaping, assign_classes};
use vpcip_model::*;

/// `n` bindings (10.128/9 → 10.1/16, inside the world only), each limited
/// to 10 Mbit/s when `limited`.
fn entries(n: u32, limited: bool) -> Vec<NatEntry> {
    let eips: Vec<Ipv4Addr> = (1..=n).map(|i| Ipv4Addr::from(0x0a80_0000 + i)).collect();
    let classes = assign_classes(&eips);
    eips.iter()
        .zip(classes)
        .enumerate()
        .map(|(i, (eip, class))| NatEntry {
            eip: *eip,
            private_ip: Ipv4Addr::from(0x0a01_0000 + u32::try_from(i).unwrap_or(0) + 1),
            eip_id: String::new(),
            shaping: class
                .filter(|_| limited)
                .map(|class| Shaping { class, mbps: 10 }),
            algs: vec![],
        })
        .collect()
}

/// (first pass, idle pass) of the gateway agent into an empty node.
fn agent_pass(n: u32, limited: bool) -> anyhow::Result<(f64, f64)> {
    let mut w = World::new("vps");
    w.add_node("gw");
    let state = crate::dataplane::one_router(entries(n, limited));
    let mut r = crate::dataplane::gateway_agent(&w);
    let (first, idle) = crate::dataplane::first_and_idle(&mut r, &state)?;
    if limited {
        let classes = w.exec(
            "vpcr-vpc-bench00001",
            &["tc", "class", "show", "dev", "up0"],
        );
        let count = classes.lines().count();
        anyhow::ensure!(count == n as usize, "{count} classes on up0, not {n}");
    }
    Ok((first, idle))
}

/// `tc -batch` adding an HTB qdisc and `n` classes to a veth.
fn tc_batch(n: u32, dir: &std::path::Path) -> anyhow::Result<f64> {
    let mut w = World::new("vpt");
    w.add_node("t");
    w.exec(
        "t",
        &[
            "ip", "link", "add", "a0", "type", "veth", "peer", "name", "a1",
        ],
    );
    let mut f = String::from("qdisc add dev a0 root handle 1: htb\n");
    for minor in 1..=n {
        let _ = writeln!(
            f,
            "class add dev a0 parent 1: classid 1:{minor:x} htb rate 10mbit ceil 10mbit"
        );
    }
    let path = dir.join("shaping.tc");
    std::fs::write(&path, f)?;
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &w.ns("t"), "tc", "-batch"])
        .arg(&path)
        .output()?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(secs)
}

fn programming(n: u32, repeats: usize, dir: &std::path::Path) -> anyhow::Result<()> {
    let (mut with, mut without, mut idle, mut tc) = (vec![], vec![], vec![], vec![]);
    for _ in 0..repeats {
        let (first, i) = agent_pass(n, true)?;
        with.push(first);
        idle.push(i);
        without.push(agent_pass(n, false)?.0);
        tc.push(tc_batch(n, dir)?);
    }
    let m = |v: &Vec<f64>| crate::median(v.clone());
    println!(
        "shaping program {n} limits: agent first pass {:.3} s with limits vs {:.3} s without (limits add {:.3} s); tc -batch {n} classes on one device {:.3} s  runs with: {} without: {} tc: {}",
        m(&with),
        m(&without),
        m(&with) - m(&without),
        m(&tc),
        crate::fmt_runs(&with, 3),
        crate::fmt_runs(&without, 3),
        crate::fmt_runs(&tc, 3)
    );
    println!(
        "shaping idle pass with {n} limits: {:.3} s  runs: {}",
        m(&idle),
        crate::fmt_runs(&idle, 3)
    );
    Ok(())
}

/// iperf3 TCP from node `from` to `to` (an iperf3 server) for `secs`:
/// Gbit/s the server received.
pub(crate) fn iperf(w: &World, from: &str, to: Ipv4Addr, secs: u32) -> anyhow::Result<f64> {
    let out = w.exec(
        from,
        &[
            "iperf3",
            "-c",
            &to.to_string(),
            "-t",
            &secs.to_string(),
            "-J",
            "--connect-timeout",
            "3000",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).context("iperf3 -J")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .context("no receiver rate")
}

async fn throughput(n: u32, repeats: usize) -> anyhow::Result<()> {
    let segment = "10.200.0.0/16";
    let crate::LabCloud {
        mut w,
        op,
        controller,
        agents,
        ..
    } = crate::lab_cloud("vpq", segment).await?;
    let mut control = vec![controller];
    control.extend(agents);
    let vpc = crate::bench_world(&op, segment, "10.0.0.0/16", "10.0.0.0/16").await?;
    let (server, _) = crate::bench_vm(&mut w, &op, "x", cloud::HOSTS[0], vec![]).await?;
    let free = op
        .eip_for_server(&server.id, vpcip_model::rules::MAX_BANDWIDTH_MBPS)
        .await?;
    let child = Command::new("ip")
        .args(["netns", "exec", &w.ns("x"), "iperf3", "-s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    w.adopt(child);
    let reachable = vpcip_lab::eventually(Duration::from_secs(20), || {
        w.try_exec(
            "client",
            &["ping", "-c", "1", "-W", "1", &free.ip.to_string()],
        )
        .is_some()
    });
    if !reachable {
        bail!("the unlimited EIP never answered");
    }
    // The data path alone: the controller and the agents (which read and
    // report every EIP's counters every few seconds, a cost that grows with
    // the EIPs) are stopped while iperf3 runs, and go on between runs.
    let pids: Vec<nix::unistd::Pid> = control
        .iter()
        .filter_map(|i| w.pid(*i))
        .map(|p| nix::unistd::Pid::from_raw(p.cast_signed()))
        .collect();
    let signal = |sig| {
        for p in &pids {
            let _ = nix::sys::signal::kill(*p, sig);
        }
    };
    // Each repeat: one run with the control plane paused, one with it
    // running (as on a real gateway).
    let measure = |w: &World| -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let _ = iperf(w, "client", free.ip, 1)?; // warm-up
        let (mut paused, mut running) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            signal(nix::sys::signal::Signal::SIGSTOP);
            let r = iperf(w, "client", free.ip, 3);
            signal(nix::sys::signal::Signal::SIGCONT);
            paused.push(r?);
            std::thread::sleep(Duration::from_millis(500));
            running.push(iperf(w, "client", free.ip, 3)?);
        }
        Ok((paused, running))
    };
    let before = measure(&w)?;

    // N limited EIPs beside it, each on a VIP of the same VPC.
    let started = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for i in 0..n {
        let op = op.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let vip: Vip = op
                .post(
                    paths::VIPS,
                    &CreateVip {
                        name: format!("vip-{i}"),
                        subnet: "sw".into(),
                        ip: None,
                        client_token: None,
                    },
                )
                .await?;
            op.create_eip(&CreateEip {
                bandwidth_mbps: 10,
                bind: Some(BindEip {
                    target: EipTarget::Vip(vip.id.clone()),
                    mode: EipMode::Nat,
                    allow_reassociation: false,
                }),
                ..Default::default()
            })
            .await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let made = started.elapsed().as_secs_f64();
    let router = format!("vpcr-{}", vpc.id);
    let started = Instant::now();
    let programmed = vpcip_lab::eventually(Duration::from_secs(300), || {
        w.try_exec(&router, &["tc", "class", "show", "dev", "up0"])
            .is_some_and(|t| t.lines().count() == n as usize)
    });
    if !programmed {
        bail!("the gateway did not program {n} limits");
    }
    let converged = started.elapsed().as_secs_f64();
    let after = measure(&w)?;
    let (before, before_running) = before;
    let (after, after_running) = after;
    let (b, a) = (crate::median(before.clone()), crate::median(after.clone()));
    let (br, ar) = (
        crate::median(before_running.clone()),
        crate::median(after_running.clone()),
    );
    println!(
        "shaping made {n} limited EIPs through the API in {made:.1} s; the gateway held all their classes {converged:.1} s later"
    );
    println!(
        "shaping unlimited EIP TCP throughput (control plane paused during each run): {b:.2} Gbit/s with 0 limited EIPs, {a:.2} Gbit/s with {n} beside it: ratio {:.2}  runs before: {} after: {}",
        a / b,
        crate::fmt_runs(&before, 2),
        crate::fmt_runs(&after, 2)
    );
    println!(
        "shaping unlimited EIP TCP throughput (control plane running): {br:.2} Gbit/s with 0 limited EIPs, {ar:.2} Gbit/s with {n} beside it: ratio {:.2}  runs before: {} after: {}",
        ar / br,
        crate::fmt_runs(&before_running, 2),
        crate::fmt_runs(&after_running, 2)
    );
    Ok(())
}

pub async fn shaping(n: u32, repeats: usize, dir: &std::path::Path) -> anyhow::Result<()> {
    programming(n, repeats, dir)?;
    throughput(n, repeats).await
}
