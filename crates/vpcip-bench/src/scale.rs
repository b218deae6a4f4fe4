//! `scale`: the control plane at cloud scale. One real `vpcip controller`
//! (SQLite) and, from this process, a simulator of every agent: each host
//! and gateway agent long-polls over HTTP as the real ones do and reports
//! what it applied. The world: `--hosts` hosts, two gateways, `--vms` VMs
//! of 20 per VPC (`--nics-per-vm` NICs each, every NIC but the last
//! `--binds` with a bound EIP).
//!
//! Measured, with the agents on the watch (`GET /v1/agents/{id}/watch`):
//! - all agents connecting at once (snapshots), reconnecting at once
//!   (resumed), and after a controller restart (snapshots from a cold
//!   controller): time until every one has its answer, controller memory;
//! - `--binds` EIPs bound one after another: bind's answer → a gateway
//!   agent has the NAT entry (p50/p99), controller CPU per bind, bytes
//!   sent per bind over all agents;
//! - `--sustain` seconds of rebinds from 32 clients: binds per second
//!   achieved, and how far behind the agents are when it stops.
//!
//! Beside it, the protocol every agent used before (`GET
//! /v1/agents/{id}/desired?after=REV`: the whole desired state after any
//! write) on the same world when `--baseline` is given (at 100 hosts and
//! 2,000 EIPs it takes seconds per bind; at the full size it does not
//! finish).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vpcip_client::Client;
use vpcip_model::desired::AgentRole;
use vpcip_model::*;

mod build;
mod sim;

use build::build;
use sim::{Counters, Protocol, Seen, SimAgent, usage};

use crate::secgroups::quantile;
use crate::world::{ServerProcess, fresh_url};
use crate::{OPERATOR, fmt_runs};

/// The simulator's sizes.
pub(crate) struct Scale {
    pub hosts: usize,
    pub vms: usize,
    pub nics_per_vm: usize,
    pub binds: usize,
    pub sustain: u64,
    pub baseline: bool,
}

const VMS_PER_VPC: usize = 20;

/// Starts every agent's poll and waits until each has its first answer:
/// the seconds that took.
async fn connect_all(
    sims: &mut [SimAgent],
    client: &Client,
    protocol: Protocol,
    counters: &Arc<Counters>,
    seen: &Seen,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    for s in sims.iter_mut() {
        let tx = (s.agent.role == AgentRole::Gateway).then(|| seen.clone());
        s.start(client, protocol, counters.clone(), tx);
    }
    let deadline = t0 + Duration::from_secs(300);
    for s in sims.iter() {
        while !s.answered.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "agent {} never got an answer",
                s.agent.name
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), s.first.notified())
                .await;
        }
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Binds an EIP to each of `nics` one after another; per bind, the time
/// from the answer until a gateway agent has it. Drains what came before.
async fn timed_binds(
    t: &Client,
    nics: &[String],
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(Instant, String)>,
) -> anyhow::Result<Vec<f64>> {
    while rx.try_recv().is_ok() {}
    let mut lat = Vec::with_capacity(nics.len());
    for nic in nics {
        let eip = t
            .create_eip(&CreateEip {
                bandwidth_mbps: 100,
                bind: Some(BindEip {
                    target: EipTarget::Nic(nic.clone()),
                    mode: EipMode::Nat,
                    allow_reassociation: false,
                }),
                ..Default::default()
            })
            .await?;
        let answered = Instant::now();
        let want = format!("\"{}\"", eip.ip);
        let deadline = answered + Duration::from_secs(60);
        let seen = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx.recv()).await {
                Ok(Some((at, json))) if json.contains(&want) => break at,
                Ok(Some(_)) => {}
                _ => anyhow::bail!("no gateway agent saw {}", eip.ip),
            }
        };
        lat.push(seen.saturating_duration_since(answered).as_secs_f64() * 1000.0);
    }
    Ok(lat)
}

pub(crate) async fn scale(s: &Scale, dir: &std::path::Path) -> anyhow::Result<()> {
    let db = fresh_url("sqlite", dir).await?;
    let mut ctl = ServerProcess::start(&db).await?;
    let mut op = Client::new(&ctl.url, Some(OPERATOR));
    let (mut t, agents, free) = build(&op, s).await?;
    let protocols = if s.baseline {
        vec![Protocol::Watch, Protocol::Snapshot]
    } else {
        vec![Protocol::Watch]
    };
    let half = free.len() / protocols.len().max(1);
    let mut rows = BTreeMap::new();
    for (round, protocol) in protocols.into_iter().enumerate() {
        let pid = ctl.pid();
        let counters = Arc::new(Counters::default());
        let (seen, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut sims: Vec<SimAgent> = agents
            .iter()
            .map(|a| SimAgent {
                agent: a.clone(),
                revision: Arc::default(),
                first: Arc::new(tokio::sync::Notify::new()),
                answered: Arc::default(),
                task: None,
            })
            .collect();
        let (_, mem_before) = usage(pid)?;
        let connect = connect_all(&mut sims, &op, protocol, &counters, &seen).await?;
        let (_, mem_connect) = usage(pid)?;
        println!(
            "scale {protocol:?}: the first answers, {:.0} bytes each on average",
            counters.bytes.load(Ordering::Relaxed) as f64
                / counters.answers.load(Ordering::Relaxed).max(1) as f64
        );
        // Let the first reports land.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let nics = &free[round * half..(round + 1) * half];
        let bytes0 = counters.bytes.load(Ordering::Relaxed);
        let (cpu0, _) = usage(pid)?;
        let lat = timed_binds(&t, nics, &mut rx).await?;
        // What the binds' last changes still sent.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (cpu1, mem) = usage(pid)?;
        let bytes = counters.bytes.load(Ordering::Relaxed) - bytes0;
        let mut sorted = lat.clone();
        sorted.sort_by(f64::total_cmp);
        let n = lat.len().max(1) as f64;
        println!(
            "scale {protocol:?}: {} agents connect at once {connect:.2} s; bind → gateway agent p50 {:.1} ms p99 {:.1} ms (first ten {}); controller CPU per bind {:.2} ms; bytes per bind over all agents {:.0}; controller memory {mem_before:.0} MB before the agents connect, {mem_connect:.0} MB after, {mem:.0} MB after the binds",
            sims.len(),
            quantile(&sorted, 0.5),
            quantile(&sorted, 0.99),
            fmt_runs(&lat[..lat.len().min(10)], 1),
            (cpu1 - cpu0) * 1000.0 / n,
            bytes as f64 / n,
        );
        rows.insert(format!("{protocol:?}"), quantile(&sorted, 0.99));
        if protocol == Protocol::Watch {
            // Everyone reconnects at once: resumed from their revisions.
            sims.iter_mut().for_each(SimAgent::stop);
            let again = connect_all(&mut sims, &op, protocol, &counters, &seen).await?;
            println!(
                "scale Watch: {} agents reconnect at once (resumed) {again:.2} s",
                sims.len()
            );
            if s.sustain > 0 {
                sustain(&t, &op, &sims, s.sustain).await?;
            }
            // The controller restarts: every agent resyncs from a cold one.
            sims.iter_mut().for_each(SimAgent::stop);
            drop(ctl);
            ctl = ServerProcess::start(&db).await?;
            // The watch loads as the controller starts: what it holds.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (_, loaded) = usage(ctl.pid())?;
            println!(
                "scale Watch: a restarted controller holds {loaded:.0} MB before the agents connect"
            );
            op = Client::new(&ctl.url, Some(OPERATOR));
            t = Client::new(&ctl.url, t.token());
            let cold = connect_all(&mut sims, &op, protocol, &counters, &seen).await?;
            let (_, mem) = usage(ctl.pid())?;
            println!(
                "scale Watch: {} agents reconnect to a restarted controller {cold:.2} s; controller memory {mem:.0} MB",
                sims.len()
            );
        }
        sims.iter_mut().for_each(SimAgent::stop);
    }
    if let (Some(w), Some(b)) = (rows.get("Watch"), rows.get("Snapshot")) {
        println!(
            "scale: bind → gateway agent p99, watch {w:.1} ms vs whole snapshots {b:.1} ms: {:.1}x faster",
            b / w
        );
    }
    Ok(())
}

/// `secs` seconds of rebinds from 32 clients (each moves its EIPs between
/// two NICs): binds per second, then how long until every agent's
/// applied revision is its latest change (`vpcip status`'s lag 0).
async fn sustain(t: &Client, op: &Client, _sims: &[SimAgent], secs: u64) -> anyhow::Result<()> {
    let eips: Vec<Eip> = t.list::<Eip>(None).await?;
    let eips: Vec<Eip> = eips
        .into_iter()
        .filter(|e| e.nic_id().is_some())
        .take(64)
        .collect();
    anyhow::ensure!(eips.len() >= 64, "not enough bound EIPs to move");
    let stop = Instant::now() + Duration::from_secs(secs);
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for pair in eips.chunks(2) {
        let (a, b) = (pair[0].clone(), pair[1].clone());
        let t = t.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            // The two EIPs swap NICs, again and again: unbind one, move
            // the other onto its NIC, bind the first to the NIC left free.
            let mut at_a = a.nic_id().unwrap_or_default().to_string();
            let mut at_b = b.nic_id().unwrap_or_default().to_string();
            let bind = |nic: &str| BindEip {
                target: EipTarget::Nic(nic.to_string()),
                mode: EipMode::Nat,
                allow_reassociation: true,
            };
            while Instant::now() < stop {
                let r0 = t
                    .post::<_, Eip>(
                        &paths::at(paths::EIP_UNBIND, &[&b.id]),
                        &serde_json::json!({}),
                    )
                    .await;
                let r1 = t.bind_eip(&a.id, &bind(&at_b)).await;
                let r2 = t.bind_eip(&b.id, &bind(&at_a)).await;
                let ok = [r0.is_ok(), r1.is_ok(), r2.is_ok()];
                done.fetch_add(ok.iter().map(|&o| u64::from(o)).sum(), Ordering::Relaxed);
                if ok.iter().all(|&o| o) {
                    std::mem::swap(&mut at_a, &mut at_b);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let ended = Instant::now();
    let binds = done.load(Ordering::Relaxed);
    let behind = loop {
        let status: vpcip_model::desired::SystemStatus = op.get(paths::STATUS).await?;
        let lagging = status.agents.iter().filter(|a| a.lag > 0).count();
        if lagging == 0 || ended.elapsed() > Duration::from_secs(60) {
            break (lagging, ended.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "scale Watch: sustained {:.0} binds and unbinds/s for {secs} s (32 clients); {} agents behind their latest change {:.2} s after the last bind",
        binds as f64 / secs as f64,
        behind.0,
        behind.1
    );
    Ok(())
}
