//! Plugging and DHCP, as a guest's boot sees them, in the lab's whole cloud
//! (real `vpcip controller` and agents):
//!
//! - a hypervisor's tap made for a NIC (`ip tuntap add`, up) until the host
//!   agent has it in the subnet's bridge at the overlay's MTU (its guards
//!   hold the port's name from before it exists);
//! - a whole DHCP exchange (discover, offer, request, ack) by busybox's
//!   udhcpc in a guest, answered by its host agent, against the same
//!   client answered by dnsmasq (the server Neutron's DHCP agent runs per
//!   network) on a plain veth beside it, in the same run.

use std::process::Command;
use std::time::{Duration, Instant};

use vpcip_lab::cloud;
use vpcip_model::*;

use crate::secgroups::quantile;

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn report(what: &str, unit: &str, mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let p50 = quantile(&samples, 0.5);
    println!(
        "dhcp {what} over {} runs: p50 {p50:.1} {unit}, p90 {:.1}, p99 {:.1}, max {:.1}",
        samples.len(),
        quantile(&samples, 0.9),
        quantile(&samples, 0.99),
        samples[samples.len() - 1]
    );
    p50
}

/// One DORA by udhcpc in namespace `ns` on `ifname` (its hook does
/// nothing): milliseconds, process start included.
fn dora(ns: &str, ifname: &str) -> anyhow::Result<f64> {
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "busybox", "udhcpc", "-i", ifname])
        .args(["-f", "-q", "-n", "-t", "3", "-T", "1", "-s", "/bin/true"])
        .output()?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(
        out.status.success(),
        "udhcpc in {ns} got no lease: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(ms)
}

pub async fn dhcp(n: usize) -> anyhow::Result<()> {
    for tool in ["busybox", "dnsmasq"] {
        anyhow::ensure!(
            Command::new(tool).arg("--help").output().is_ok(),
            "{tool} is needed (apt-get install busybox-static dnsmasq-base)"
        );
    }
    let crate::LabCloud { mut w, op, .. } = crate::lab_cloud("vbdh", "203.0.113.0/24").await?;
    crate::bench_world(&op, "203.0.113.0/24", "10.0.0.0/16", "10.0.0.0/24").await?;
    let host = cloud::HOSTS[0];
    let host_ns = w.ns(host);
    let net = vpcip_sys::netns::in_netns(
        &vpcip_sys::netns::named(&host_ns),
        vpcip_sys::link::Net::open,
    )??;

    // Taps.
    let mut plug = Vec::new();
    for i in 0..n {
        let server: Server = op
            .post(
                paths::SERVERS,
                &CreateServer {
                    name: format!("tap-{i}"),
                    subnet: "sw".into(),
                    host: Some(host.into()),
                    ..Default::default()
                },
            )
            .await?;
        let port = desired::port_ifname(&server.nic_ids[0]);
        // The agent knows the port (and reports it missing) before the
        // hypervisor makes it.
        let known = Instant::now();
        loop {
            let s: desired::SystemStatus = op.get(paths::STATUS).await?;
            if s.missing_ports
                .iter()
                .any(|m| m.nic_id == server.nic_ids[0])
            {
                break;
            }
            anyhow::ensure!(
                known.elapsed() < Duration::from_secs(10),
                "{port} never awaited"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // From before the tap is made (two runs of `ip` included: the
        // agent often has it plugged before the second returns).
        let start = Instant::now();
        run(&[
            "ip", "-n", &host_ns, "tuntap", "add", "dev", &port, "mode", "tap",
        ])?;
        run(&["ip", "-n", &host_ns, "link", "set", &port, "up"])?;
        loop {
            if let Some(l) = tokio::task::block_in_place(|| net.link(&port))?
                && l.master.is_some()
                && l.mtu == Some(1450)
            {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(5),
                "{port} never plugged"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        plug.push(start.elapsed().as_secs_f64() * 1e3);
        run(&["ip", "-n", &host_ns, "link", "del", &port])?;
        op.remove::<vpcip_model::Server>(&server.id).await?;
    }
    report(
        "tap made (ip tuntap add; ip link set up) -> in its bridge at MTU 1450",
        "ms",
        plug,
    );
    tokio::task::block_in_place(move || drop(net));

    // DHCP: a guest of the lab's cloud, and the same client against
    // dnsmasq on a veth in the same run.
    let server: Server = op
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "guest".into(),
                subnet: "sw".into(),
                host: Some(host.into()),
                ..Default::default()
            },
        )
        .await?;
    let nic: Nic = op.show(&server.nic_ids[0]).await?;
    w.add_node("guest");
    cloud::attach_nic(&mut w, "guest", host, "eth0", &nic.id, &nic.mac);
    w.exec("guest", &["ip", "link", "set", "eth0", "up"]);
    w.add_node("dnsm");
    w.add_node("plain");
    let (dn, pl) = (w.ns("dnsm"), w.ns("plain"));
    run(&[
        "ip", "-n", &dn, "link", "add", "d0", "type", "veth", "peer", "name", "eth0", "netns", &pl,
    ])?;
    run(&["ip", "-n", &dn, "addr", "add", "10.99.0.1/24", "dev", "d0"])?;
    run(&["ip", "-n", &dn, "link", "set", "d0", "up"])?;
    run(&["ip", "-n", &pl, "link", "set", "eth0", "up"])?;
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &dn,
            "dnsmasq",
            "--no-daemon",
            "--port=0",
            "--interface=d0",
        ])
        .args([
            "--bind-interfaces",
            "--dhcp-range=10.99.0.10,10.99.0.200,12h",
        ])
        .args([
            "--dhcp-authoritative",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--log-facility=-",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    w.adopt(child);
    // Both answer before the clock starts.
    let ready = Instant::now();
    while dora(&w.ns("guest"), "eth0").is_err() || dora(&pl, "eth0").is_err() {
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(20),
            "no DHCP server answers"
        );
    }
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let a = dora(&w.ns("guest"), "eth0")?;
        let b = dora(&pl, "eth0")?;
        ours.push(a);
        theirs.push(b);
        ratios.push(a / b);
    }
    report("DORA by udhcpc, answered by the host agent", "ms", ours);
    report("DORA by udhcpc, answered by dnsmasq", "ms", theirs);
    let r = crate::median(ratios.clone());
    println!("dhcp host agent / dnsmasq, median of per-run ratios: {r:.2}");
    // A real guest's boot, from QEMU's start to its page through an EIP.
    let image = vpcip_lab::qemu::guest_image().map_err(|e| anyhow::anyhow!(e))?;
    let dir = std::env::temp_dir().join(format!("vpcip-bench-guests-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut boots = Vec::new();
    for i in 0..5 {
        let server: Server = op
            .post(
                paths::SERVERS,
                &CreateServer {
                    name: format!("q{i}"),
                    subnet: "sw".into(),
                    host: Some(host.into()),
                    ..Default::default()
                },
            )
            .await?;
        let nic: Nic = op.show(&server.nic_ids[0]).await?;
        let eip = op.eip_for_server(&server.id, 100).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let to = std::net::SocketAddr::new(eip.ip.into(), 80);
        let client = w.ns("client");
        let start = Instant::now();
        let guest = vpcip_lab::qemu::boot(
            &mut w,
            &image,
            host,
            &format!("q{i}"),
            &desired::port_ifname(&nic.id),
            &nic.mac,
            &vpcip_lab::qemu::Boot::default(),
            &dir,
        );
        let want = format!("hello from q{i}");
        loop {
            let page = tokio::task::block_in_place(|| vpcip_lab::http_get(&client, to));
            if page.is_some_and(|p| p.starts_with(&want)) {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(120),
                "q{i} never served through its EIP"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        boots.push(start.elapsed().as_secs_f64());
        w.kill(guest.process);
        let _: Eip = op
            .action(paths::EIP_UNBIND, &eip.id, &serde_json::json!({}))
            .await?;
        op.remove::<vpcip_model::Eip>(&eip.id).await?;
        op.remove::<vpcip_model::Server>(&server.id).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(
        "QEMU guest (TCG) started -> its page through its EIP",
        "s",
        boots,
    );

    // The host agent's own part: from a request's arrival to its answer.
    let url = cloud::agent_metrics_url(&w, host).ok_or_else(|| anyhow::anyhow!("no metrics"))?;
    let page = vpcip_lab::scrape(&url);
    for line in page
        .lines()
        .filter(|l| l.starts_with("vpcip_agent_dhcp_answer"))
    {
        println!("dhcp agent metric {line}");
    }
    Ok(())
}
