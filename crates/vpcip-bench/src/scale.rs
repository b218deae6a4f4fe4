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

use anyhow::Context;
use vpcip_client::Client;
use vpcip_model::desired::{Agent, AgentReport, AgentRole, Desired, RegisterAgent, WatchBatch};
use vpcip_model::*;

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

/// How the simulated agents ask.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Watch,
    Snapshot,
}

/// What every simulated agent counts.
#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    answers: AtomicU64,
}

/// One simulated agent: long-polls, counts, reports what it applied, and
/// tells `seen` (gateways) each answer's body with its time.
struct SimAgent {
    agent: Agent,
    revision: Arc<std::sync::Mutex<Option<i64>>>,
    first: Arc<tokio::sync::Notify>,
    answered: Arc<std::sync::atomic::AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

type Seen = tokio::sync::mpsc::UnboundedSender<(Instant, String)>;

impl SimAgent {
    fn start(
        &mut self,
        client: &Client,
        protocol: Protocol,
        counters: Arc<Counters>,
        seen: Option<Seen>,
    ) {
        let client = client.clone();
        let id = self.agent.id.clone();
        let revision = self.revision.clone();
        let first = self.first.clone();
        let answered = self.answered.clone();
        answered.store(false, Ordering::SeqCst);
        self.task = Some(tokio::spawn(async move {
            let mut quick = true;
            loop {
                let have = *revision
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // The first request after (re)connecting answers at once.
                let wait = if quick { 0 } else { 30 };
                let path = match (protocol, have) {
                    (Protocol::Watch, Some(r)) => {
                        format!(
                            "{}?revision={r}&wait={wait}",
                            paths::at(paths::AGENT_WATCH, &[&id])
                        )
                    }
                    (Protocol::Watch, None) => {
                        format!("{}?wait=0", paths::at(paths::AGENT_WATCH, &[&id]))
                    }
                    (Protocol::Snapshot, Some(r)) if !quick => {
                        format!(
                            "{}?after={r}&wait={wait}",
                            paths::at(paths::AGENT_DESIRED, &[&id])
                        )
                    }
                    (Protocol::Snapshot, _) => paths::at(paths::AGENT_DESIRED, &[&id]),
                };
                let Ok(body) = client.get::<serde_json::Value>(&path).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let at = Instant::now();
                let text = body.to_string();
                counters
                    .bytes
                    .fetch_add(text.len() as u64, Ordering::Relaxed);
                counters.answers.fetch_add(1, Ordering::Relaxed);
                let rev = match protocol {
                    Protocol::Watch => {
                        serde_json::from_value::<WatchBatch>(body).map(|b| b.revision)
                    }
                    Protocol::Snapshot => {
                        serde_json::from_value::<Desired>(body).map(|d| d.revision)
                    }
                };
                let Ok(rev) = rev else { return };
                *revision
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(rev);
                if quick {
                    quick = false;
                    answered.store(true, Ordering::SeqCst);
                    first.notify_one();
                }
                if let Some(tx) = &seen {
                    let _ = tx.send((at, text));
                }
                let _ = client
                    .post::<_, ()>(
                        &paths::at(paths::AGENT_REPORT, &[&id]),
                        &AgentReport {
                            applied_revision: rev,
                            error: None,
                            missing_ports: vec![],
                            cluster: None,
                        },
                    )
                    .await;
            }
        }));
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Runs `n` futures made by `f` with at most `width` at once.
async fn in_parallel<F, Fut, T>(n: usize, width: usize, f: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < n || !set.is_empty() {
        while next < n && set.len() < width {
            let fut = f(next);
            let i = next;
            set.spawn(async move { (i, fut.await) });
            next += 1;
        }
        if let Some(done) = set.join_next().await {
            let (i, r) = done?;
            out[i] = Some(r?);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// The controller process's CPU seconds so far and resident memory (MB).
fn usage(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 (1-based): 12 and 13 after ')'.
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    Ok((ticks / 100.0, rss_kb / 1024.0))
}

/// The world: agents, VPCs, VMs, NICs, bound EIPs. Returns the tenant's
/// client, the agents, and the NICs left without an EIP.
async fn build(op: &Client, s: &Scale) -> anyhow::Result<(Client, Vec<Agent>, Vec<String>)> {
    let started = Instant::now();
    let _: Zone = op
        .post(paths::ZONES, &CreateZone { name: "z1".into() })
        .await?;
    let _: HostNetwork = op
        .post(
            paths::HOST_NETWORKS,
            &CreateHostNetwork {
                name: "underlay".into(),
                cidr: "198.18.0.0/16".parse()?,
            },
        )
        .await?;
    op.create_subnet(&CreateSubnet {
        name: "seg".into(),
        kind: SubnetKind::Eip,
        cidr: Some("100.64.0.0/13".parse()?),
        ..Default::default()
    })
    .await?;
    let mut agents = Vec::new();
    for g in 1..=2u32 {
        let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 255, 0)) + g);
        let _: Gateway = op
            .post(
                paths::GATEWAYS,
                &CreateGateway {
                    name: format!("gw{g}"),
                    underlay_ip: ip,
                },
            )
            .await?;
        agents.push(
            op.post::<_, Agent>(
                paths::AGENTS,
                &RegisterAgent {
                    name: format!("gw{g}"),
                    role: AgentRole::Gateway,
                    underlay_ip: ip,
                },
            )
            .await?,
        );
    }
    let hosts = {
        let op = op.clone();
        in_parallel(s.hosts, 16, move |i| {
            let op = op.clone();
            async move {
                let ip = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 10)) + u32::try_from(i)?;
                Ok(op
                    .post::<_, Agent>(
                        paths::AGENTS,
                        &RegisterAgent {
                            name: format!("h{i}"),
                            role: AgentRole::Host,
                            underlay_ip: ip.into(),
                        },
                    )
                    .await?)
            }
        })
        .await?
    };
    agents.extend(hosts);
    let tok: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "bench".into(),
                description: String::new(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await?;
    let t = op.with_token(tok.secret.as_deref().context("token secret")?);
    let vpcs = s.vms.div_ceil(VMS_PER_VPC);
    {
        let t = t.clone();
        in_parallel(vpcs, 8, move |v| {
            let t = t.clone();
            async move {
                let _: Vpc = t
                    .post(
                        paths::VPCS,
                        &CreateVpc {
                            name: format!("v{v}"),
                            cidr: "10.0.0.0/16".parse()?,
                            secondary_cidrs: vec![],
                            tenant: None,
                            client_token: None,
                        },
                    )
                    .await?;
                t.create_subnet(&CreateSubnet {
                    name: format!("s{v}"),
                    vpc: Some(format!("v{v}")),
                    zone: Some("z1".into()),
                    cidr: Some("10.0.0.0/24".parse()?),
                    ..Default::default()
                })
                .await?;
                Ok(())
            }
        })
        .await?;
    }
    println!(
        "scale: {} agents, {vpcs} VPCs made in {:.0} s",
        agents.len(),
        started.elapsed().as_secs_f64()
    );
    let nics: Vec<Vec<String>> = {
        let t = t.clone();
        let per = s.nics_per_vm;
        in_parallel(s.vms, 16, move |i| {
            let t = t.clone();
            async move {
                let subnet = format!("s{}", i / VMS_PER_VPC);
                let vm: vpcip_model::Server = t
                    .post(
                        paths::SERVERS,
                        &CreateServer {
                            name: format!("vm{i}"),
                            subnet: subnet.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
                let mut nics = vm.nic_ids.clone();
                for k in 1..per {
                    let nic: Nic = t
                        .post(
                            paths::NICS,
                            &CreateNic {
                                name: format!("vm{i}-eni{k}"),
                                subnet: subnet.clone(),
                                ..Default::default()
                            },
                        )
                        .await?;
                    let _: Nic = t
                        .action(
                            paths::NIC_ATTACH,
                            &nic.id,
                            &AttachNic {
                                server: vm.id.clone(),
                            },
                        )
                        .await?;
                    nics.push(nic.id);
                }
                Ok(nics)
            }
        })
        .await?
    };
    let mut nics: Vec<String> = nics.into_iter().flatten().collect();
    println!(
        "scale: {} VMs, {} NICs made after {:.0} s",
        s.vms,
        nics.len(),
        started.elapsed().as_secs_f64()
    );
    // The measured binds' NICs: spread over the VPCs.
    let step = (nics.len() / s.binds.max(1)).max(1);
    let mut free = Vec::new();
    let mut i = nics.len();
    while free.len() < s.binds && i >= step {
        i -= step;
        free.push(nics.remove(i));
    }
    {
        let t = t.clone();
        let nics = Arc::new(nics);
        let n = nics.len();
        in_parallel(n, 16, move |i| {
            let t = t.clone();
            let nics = nics.clone();
            async move {
                t.create_eip(&CreateEip {
                    bandwidth_mbps: 100,
                    bind: Some(BindEip {
                        target: EipTarget::Nic(nics[i].clone()),
                        mode: EipMode::Nat,
                        allow_reassociation: false,
                    }),
                    ..Default::default()
                })
                .await?;
                Ok(())
            }
        })
        .await?;
        println!(
            "scale: {n} EIPs bound after {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok((t, agents, free))
}

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
