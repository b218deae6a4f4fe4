//! `console`: the web console's server render time with a large tenant:
//! the EIP list (first page, and a search) with 10,000 EIPs, and a VPC's
//! topology page with 1,000 servers each holding an EIP. The console and
//! its store run in this process (SQLite); each request goes over HTTP on
//! loopback with the session's cookie, as a browser's would.

use std::time::Instant;

use vpcip_model::*;
use vpcip_store::Scope;

use crate::{fmt_runs, median};

/// Requests of each page in each run.
const REQUESTS: usize = 200;

/// `eips` EIPs for the tenant (10,000: the figure), a tenth of them
/// bound to servers in the VPC the topology draws.
pub(crate) async fn console_bench(
    eips: usize,
    repeats: usize,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let (eip_count, servers) = (eips, eips / 10);
    let url = format!("sqlite://{}/console.db", dir.display());
    // Quotas above the default 1,000 EIPs a tenant.
    let store = vpcip_store::Store::open(&url)
        .await?
        .with_quotas(vpcip_model::rules::Quotas {
            vpcs: 10,
            nics: 20_000,
            vips: 100,
            eips: 20_000,
        });
    let op = Scope::Operator;
    let t = Scope::Tenant("bench".into());
    store
        .create_zone(&op, &CreateZone { name: "z1".into() })
        .await?;
    store
        .create_subnet(
            &op,
            &CreateSubnet {
                name: "seg".into(),
                kind: SubnetKind::Eip,
                cidr: Some("100.64.0.0/16".parse()?),
                ..Default::default()
            },
        )
        .await?;
    let vpc = store
        .create_vpc(
            &t,
            &CreateVpc {
                name: "vpc1".into(),
                cidr: "10.0.0.0/16".parse()?,
                secondary_cidrs: vec![],
                tenant: None,
                client_token: None,
            },
        )
        .await?;
    store
        .create_subnet(
            &t,
            &CreateSubnet {
                name: "sw1".into(),
                vpc: Some("vpc1".into()),
                zone: Some("z1".into()),
                cidr: Some("10.0.0.0/20".parse()?),
                ..Default::default()
            },
        )
        .await?;
    let made = Instant::now();
    for i in 0..eip_count {
        let bind = if i < servers {
            let s = store
                .create_server(
                    &t,
                    &CreateServer {
                        name: format!("vm-{i}"),
                        subnet: "sw1".into(),
                        zone: None,
                        ip: None,
                        security_groups: vec![],
                        host: None,
                        client_token: None,
                    },
                )
                .await?;
            Some(BindEip {
                target: EipTarget::Server(s.id),
                mode: EipMode::Nat,
                allow_reassociation: false,
            })
        } else {
            None
        };
        store
            .create_eip(
                &t,
                &CreateEip {
                    bandwidth_mbps: 10,
                    bind,
                    ..Default::default()
                },
            )
            .await?;
    }
    eprintln!(
        "console: {eip_count} EIPs, {servers} servers made in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    // The tenant's token, signed in through the console's own form.
    let token = store
        .create_token(
            &op,
            &CreateToken {
                tenant: "bench".into(),
                description: "console bench".into(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await?
        .secret
        .unwrap_or_default();
    let app = vpcip_api::App::new(store.clone(), Some("bench-operator"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(vpcip_api::console::serve(
        listener,
        app,
        std::future::pending(),
    ));
    let console = vpcip_client::console::ConsoleSession::sign_in(&base, &token).await?;
    let pages = [
        ("EIP list, first page", "/ui/eips".to_string()),
        ("EIP list, a search", "/ui/eips?q=100.64.3.".to_string()),
        ("VPC topology", format!("/ui/vpcs/{}", vpc.id)),
    ];
    for (what, path) in pages {
        let mut p50s = vec![];
        let mut p99s = vec![];
        let mut bytes = 0;
        for _ in 0..repeats {
            let mut times = vec![];
            for _ in 0..REQUESTS {
                let start = Instant::now();
                let (status, body) = console.get(&path).await?;
                anyhow::ensure!(status == 200, "{path}: {status}");
                bytes = body.len();
                times.push(start.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            p50s.push(times[times.len() / 2]);
            p99s.push(times[times.len() * 99 / 100]);
        }
        println!(
            "console {what:22} p50 {:6.1} ms  p99 {:6.1} ms  ({bytes} bytes; p99 runs: {})",
            median(p50s),
            median(p99s.clone()),
            fmt_runs(&p99s, 1)
        );
    }
    Ok(())
}
