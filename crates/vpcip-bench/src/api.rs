//! `api`: EIP allocate+bind operations per second through the HTTP API.

use std::time::Instant;

use vpcip_model::*;

use crate::world::{bench_servers, tenant_bench_server};
use crate::{Args, fmt_runs, median};

pub(crate) async fn api_bench(
    backend: &str,
    args: &Args,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<(usize, f64, Vec<f64>)>> {
    // (The server lives until the end of the benchmark.)
    let (_server, tenant, _) = tenant_bench_server(backend, dir).await?;
    // One server per operation: each EIP needs its own target.
    let servers: Vec<String> = bench_servers(&tenant, args.ops)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
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
