//! Bind to first packet: the time from an EIP bind request to the API until
//! a new TCP connection from the outside client reaches the VM through it,
//! in the lab's whole cloud (physical router, gateway node, two hosts, real
//! `vpcip controller` and agents as processes). p50 and p99 over N binds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use vpcip_lab::cloud;
use vpcip_lab::{Conn, echo_server, eventually};
use vpcip_model::*;

pub async fn bind_latency(binds: usize, _dir: &std::path::Path) -> anyhow::Result<()> {
    let crate::LabCloud { mut w, op, .. } = crate::lab_cloud("vpbb", "203.0.113.0/24").await?;
    crate::bench_world(&op, "203.0.113.0/24", "10.0.0.0/16", "10.0.0.0/24").await?;
    let (vm, _) = crate::bench_vm(&mut w, &op, "vm", cloud::HOSTS[0], vec![]).await?;
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
    let _echo = echo_server(&w.ns("vm"), 8080, Duration::from_secs(600));
    // The VM's port plugged and the EIP answering once: the world is ready.
    let ready = eventually(Duration::from_secs(15), || {
        Conn::open(
            &w.ns("client"),
            SocketAddr::new(eip.ip.into(), 8080),
            Duration::from_millis(200),
        )
        .and_then(|mut c| c.ask("x"))
        .is_some()
    });
    if !ready {
        bail!("the EIP never answered before the runs");
    }
    let _: Eip = op
        .action(paths::EIP_UNBIND, &eip.id, &serde_json::json!({}))
        .await?;

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
            .action(paths::EIP_UNBIND, &eip.id, &serde_json::json!({}))
            .await?;
        if !eventually(Duration::from_secs(5), || {
            !reaches(Duration::from_millis(20))
        }) {
            bail!("bind {i}: the EIP still answers 5 s after unbind");
        }
    }
    samples.sort_by(f64::total_cmp);
    // p in [0, 1]: the index is within the samples.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
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
