//! `openstack`: a floating IP created and associated in one call through
//! the Neutron facade (`POST /v2.0/floatingips` with `port_id`, as
//! `openstack floating ip create --port` does), beside the same through
//! vpcip's own API (`POST /v1/eips` with `bind`), runs interleaved.

use std::time::Instant;

use vpcip_model::*;

use crate::world::{bench_servers, tenant_bench_server};
use crate::{Args, fmt_runs, median};

pub(crate) async fn openstack_bench(
    backend: &str,
    args: &Args,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let (server, tenant, secret) = tenant_bench_server(backend, dir).await?;
    let segment: Subnet = tenant.show("seg").await?;
    let nics: Vec<String> = bench_servers(&tenant, args.ops)
        .await?
        .into_iter()
        .map(|s| s.nic_ids[0].clone())
        .collect();
    let http = reqwest::Client::new();
    for clients in [1usize, 8] {
        let (mut native, mut neutron) = (vec![], vec![]);
        for _ in 0..args.repeats {
            for facade in [false, true] {
                let chunks: Vec<Vec<String>> = nics
                    .chunks(nics.len().div_ceil(clients))
                    .map(<[String]>::to_vec)
                    .collect();
                let start = Instant::now();
                let mut tasks = vec![];
                for chunk in chunks {
                    let (c, http, url, secret, seg) = (
                        tenant.clone(),
                        http.clone(),
                        server.url.clone(),
                        secret.clone(),
                        segment.id.clone(),
                    );
                    tasks.push(tokio::spawn(async move {
                        let mut ids = vec![];
                        for nic in chunk {
                            ids.push(if facade {
                                let r = http
                                    .post(format!("{url}/v2.0/floatingips"))
                                    .header("x-auth-token", &secret)
                                    .json(&serde_json::json!({"floatingip": {
                                        "floating_network_id": seg, "port_id": nic}}))
                                    .send()
                                    .await?
                                    .error_for_status()?;
                                let v: serde_json::Value = r.json().await?;
                                v["floatingip"]["id"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string()
                            } else {
                                c.create_eip(&CreateEip {
                                    bandwidth_mbps: 10,
                                    bind: Some(BindEip {
                                        target: EipTarget::Nic(nic),
                                        mode: EipMode::Nat,
                                        allow_reassociation: false,
                                    }),
                                    ..Default::default()
                                })
                                .await?
                                .id
                            });
                        }
                        anyhow::Ok(ids)
                    }));
                }
                let mut eips = vec![];
                for t in tasks {
                    eips.extend(t.await??);
                }
                let rate = eips.len() as f64 / start.elapsed().as_secs_f64();
                if facade { &mut neutron } else { &mut native }.push(rate);
                // Not timed: unbind and release, so the next run starts alike.
                for id in eips {
                    let _: Eip = tenant
                        .action(paths::EIP_UNBIND, &id, &serde_json::json!({}))
                        .await?;
                    tenant.remove::<Eip>(&id).await?;
                }
            }
        }
        let (a, b) = (median(native.clone()), median(neutron.clone()));
        println!(
            "openstack {backend:8} clients={clients}  vpcip API {a:6.0} ops/s (runs: {})  Neutron facade {b:6.0} ops/s (runs: {})  ratio {:.2}",
            fmt_runs(&native, 0),
            fmt_runs(&neutron, 0),
            b / a
        );
    }
    Ok(())
}
