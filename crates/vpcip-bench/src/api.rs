//! `api`: EIP allocate+bind operations per second through the HTTP API.

use std::time::Instant;

use anyhow::Context;
use vpcip_client::Client;
use vpcip_model::*;

use crate::world::{ServerProcess, bench_world, fresh_url};
use crate::{Args, OPERATOR, fmt_runs, median};

pub(crate) async fn api_bench(
    backend: &str,
    args: &Args,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<(usize, f64, Vec<f64>)>> {
    let db = fresh_url(backend, dir).await?;
    let server = ServerProcess::start(&db).await?;
    let op = Client::new(&server.url, Some(OPERATOR));
    bench_world(&op, "100.64.0.0/16", "10.0.0.0/8", "10.0.0.0/16").await?;
    let tok: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "bench".into(),
                description: "bench".into(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await?;
    let tenant = op.with_token(tok.secret.as_deref().context("token secret")?);
    // One server per operation: each EIP needs its own target.
    let mut servers = Vec::with_capacity(args.ops);
    for i in 0..args.ops {
        let s: vpcip_model::Server = tenant
            .post(
                paths::SERVERS,
                &CreateServer {
                    name: format!("vm-{i}"),
                    subnet: "sw".into(),
                    ..Default::default()
                },
            )
            .await?;
        servers.push(s.id);
    }
    let mut out = vec![];
    for clients in [1usize, 8, 32] {
        let mut rates = vec![];
        for _ in 0..args.repeats {
            let chunks: Vec<Vec<String>> = servers
                .chunks(servers.len().div_ceil(clients))
                .map(|c| c.to_vec())
                .collect();
            let start = Instant::now();
            let mut tasks = vec![];
            for chunk in chunks {
                let c = tenant.clone();
                tasks.push(tokio::spawn(async move {
                    let mut ids = vec![];
                    for server in chunk {
                        let e = c.eip_for_server(&server, 10).await?;
                        ids.push(e.id);
                    }
                    Ok::<_, vpcip_client::ClientError>(ids)
                }));
            }
            let mut eips = vec![];
            for t in tasks {
                eips.extend(t.await??);
            }
            let secs = start.elapsed().as_secs_f64();
            rates.push(eips.len() as f64 / secs);
            // Not timed: unbind and release, so the next run starts alike.
            for id in eips {
                let _: Eip = tenant
                    .action(paths::EIP_UNBIND, &id, &serde_json::json!({}))
                    .await?;
                tenant.remove::<vpcip_model::Eip>(&id).await?;
            }
        }
        let m = median(rates.clone());
        println!(
            "api {backend:8} clients={clients:2}  {m:8.0} ops/s  (runs: {})",
            fmt_runs(&rates, 0)
        );
        out.push((clients, m, rates));
    }
    Ok(out)
}
