//! `controllers`: three `vpcip controller`s on one PostgreSQL. EIPs are
//! bound through the first; a gateway agent (simulated: it speaks the
//! real watch protocol, `GET /v1/agents/{id}/watch?revision=REV`)
//! watches the third. Timed: from the bind's answer to the watcher's
//! desired state holding the EIP. Beside it, the same with the watcher on
//! the controller that took the bind (woken in-process): the baseline.

use std::time::{Duration, Instant};

use anyhow::Context;
use vpcip_client::Client;
use vpcip_model::desired::{AgentRole, RegisterAgent, WatchBatch};
use vpcip_model::*;

use crate::secgroups::quantile;
use crate::world::{ServerProcess, bench_servers, bench_world, fresh_url};
use crate::{OPERATOR, fmt_runs};

/// A gateway agent's watch on `client`, from registration on: sends every
/// batch of changes it gets (its JSON) with the time it came.
fn watch(
    client: Client,
    agent_id: String,
    tx: tokio::sync::mpsc::UnboundedSender<(Instant, String)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut have: Option<i64> = None;
        let base = paths::at(paths::AGENT_WATCH, &[&agent_id]);
        loop {
            let path = match have {
                Some(r) => format!("{base}?revision={r}&wait=30"),
                None => format!("{base}?wait=0"),
            };
            let Ok(b) = client.get::<WatchBatch>(&path).await else {
                return;
            };
            have = Some(b.revision);
            let json = serde_json::to_string(&b).unwrap_or_default();
            if tx.send((Instant::now(), json)).is_err() {
                return;
            }
        }
    })
}

pub(crate) async fn controllers(binds: usize, dir: &std::path::Path) -> anyhow::Result<()> {
    let db = fresh_url("postgres", dir).await?;
    let a = ServerProcess::start(&db).await?;
    let _b = ServerProcess::start(&db).await?;
    let c = ServerProcess::start(&db).await?;
    let op = Client::new(&a.url, Some(OPERATOR));
    bench_world(&op, "100.64.0.0/16", "10.0.0.0/8", "10.0.0.0/16").await?;
    let _: HostNetwork = op
        .post(
            paths::HOST_NETWORKS,
            &CreateHostNetwork {
                name: "underlay".into(),
                cidr: "192.0.2.0/24".parse()?,
            },
        )
        .await?;
    let token = |tenant: &str, agent: bool| CreateToken {
        tenant: tenant.into(),
        description: String::new(),
        agent,
        agent_role: agent.then_some(AgentRole::Gateway),
        ec2: false,
    };
    let gw: Token = op.post(paths::TOKENS, &token("gw1", true)).await?;
    let tenant: Token = op.post(paths::TOKENS, &token("bench", false)).await?;
    let tenant = op.with_token(tenant.secret.as_deref().context("token secret")?);
    let gw_secret = gw.secret.context("token secret")?;
    let agent: vpcip_model::desired::Agent = Client::new(&c.url, Some(&gw_secret))
        .post(
            paths::AGENTS,
            &RegisterAgent {
                name: "gw1".into(),
                role: AgentRole::Gateway,
                underlay_ip: "192.0.2.21".parse()?,
            },
        )
        .await?;
    let servers: Vec<String> = bench_servers(&tenant, 2 * binds)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut results = vec![];
    // The watcher on another controller, then on the binding one.
    for (label, watched) in [
        ("another controller", &c.url),
        ("the same controller", &a.url),
    ] {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = watch(Client::new(watched, Some(&gw_secret)), agent.id.clone(), tx);
        // Its first answer (the whole state) comes at once.
        rx.recv().await.context("the watcher's first answer")?;
        let mut lat = Vec::with_capacity(binds);
        let chunk = if results.is_empty() {
            &servers[..binds]
        } else {
            &servers[binds..]
        };
        for server in chunk {
            let eip = tenant.eip_for_server(server, 10).await?;
            let answered = Instant::now();
            let want = format!("\"{}\"", eip.ip);
            let deadline = answered + Duration::from_secs(10);
            let seen = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, rx.recv()).await {
                    Ok(Some((at, json))) if json.contains(&want) => break at,
                    Ok(Some(_)) => continue,
                    _ => anyhow::bail!("{label}: the watcher never saw {}", eip.ip),
                }
            };
            lat.push(seen.saturating_duration_since(answered).as_secs_f64() * 1000.0);
        }
        watcher.abort();
        let mut sorted = lat.clone();
        sorted.sort_by(f64::total_cmp);
        let (p50, p99) = (quantile(&sorted, 0.5), quantile(&sorted, 0.99));
        println!(
            "controllers bind on one, gateway watching {label:19}: p50 {p50:6.1} ms  p99 {p99:6.1} ms  max {:6.1} ms  ({} binds; first ten: {})",
            quantile(&sorted, 1.0),
            lat.len(),
            fmt_runs(&lat[..lat.len().min(10)], 1)
        );
        results.push(p99);
    }
    Ok(())
}
