//! Bind to first packet: the time from an EIP bind request to the API until
//! a new TCP connection from the outside client reaches the VM through it,
//! with a real `vpcip server` and `vpcip agent` and a namespace world of the
//! benchmark's own (client — VPC router — VM). p50 and p99 over N binds.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vpcip_client::Client;
use vpcip_lab::{Conn, World, echo_server, eventually};
use vpcip_model::*;

use crate::{OPERATOR, ServerProcess};

pub async fn bind_latency(binds: usize, dir: &std::path::Path) -> anyhow::Result<()> {
    let mut w = World::new("vpbb");
    let server = ServerProcess::start(&format!("sqlite://{}/bind.db", dir.display())).await?;
    let op = Client::new(&server.url, Some(OPERATOR));
    let vpc = crate::bench_world(&op, "203.0.113.0/24", "10.0.0.0/16", "10.0.0.0/24").await?;
    let vm: vpcip_model::Server = op
        .post(
            "/v1/servers",
            &CreateServer {
                name: "vm-1".into(),
                subnet: "sw".into(),
                ..Default::default()
            },
        )
        .await?;
    let bind = BindEip {
        target: EipTarget::Server(vm.id.clone()),
        mode: EipMode::Nat,
        allow_reassociation: false,
    };
    // Created bound, so it belongs to the VM's tenant; unbound before the runs.
    let eip = op
        .create_eip(&CreateEip {
            bandwidth_mbps: 10,
            bind: Some(bind.clone()),
            ..Default::default()
        })
        .await?;
    let _: Eip = op
        .action("eips", &eip.id, "unbind", &serde_json::json!({}))
        .await?;

    let router = format!("vpcr-{}", vpc.id);
    vpcip_lab::client_router_vm(&mut w, &router, "203.0.113.0/24");
    let _echo = echo_server(&w.ns("vm"), 8080, Duration::from_secs(600));
    let exe = std::env::current_exe()?.with_file_name("vpcip");
    let agent = Command::new(&exe)
        .args([
            "agent",
            "--role",
            "gateway",
            "--name",
            "gw1",
            "--underlay-ip",
            "192.0.2.20",
        ])
        .args(["--netns-prefix", &w.prefix, "--resync", "10"])
        .env("VPCIP_URL", &server.url)
        .env("VPCIP_TOKEN", OPERATOR)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the agent")?;
    w.adopt(agent);

    let client = w.ns("client");
    let to = SocketAddr::new(eip.ip.into(), 8080);
    let reaches = |timeout| {
        Conn::open(&client, to, timeout)
            .and_then(|mut c| c.ask("x"))
            .is_some()
    };
    let mut samples = Vec::with_capacity(binds);
    for i in 0..binds {
        let start = Instant::now();
        op.bind_eip(&eip.id, &bind).await?;
        let deadline = start + Duration::from_secs(5);
        // 3 ms probes: before the map holds the EIP, a SYN gets an ICMP
        // error at first and then (rate-limited ICMP) nothing, so each probe
        // that fails costs up to its timeout: the figures' resolution.
        while !reaches(Duration::from_millis(3)) {
            if Instant::now() > deadline {
                bail!("bind {i}: no packet through the EIP after 5 s");
            }
        }
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        let _: Eip = op
            .action("eips", &eip.id, "unbind", &serde_json::json!({}))
            .await?;
        if !eventually(Duration::from_secs(5), || {
            !reaches(Duration::from_millis(20))
        }) {
            bail!("bind {i}: the EIP still answers 5 s after unbind");
        }
    }
    samples.sort_by(f64::total_cmp);
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "bind to first packet over {binds} binds: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        samples[samples.len() - 1]
    );
    Ok(())
}
