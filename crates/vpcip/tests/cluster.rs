//! A gateway cluster in the lab: two gateways (gw1, gw2) announcing the
//! EIPs by BGP to a real BIRD on the physical router, elections between
//! them, a planned drain and a gateway's death, with real packets.

#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use vpcip_model::paths;

use common::*;
use vpcip_lab::cloud::{self, CLUSTER_GATEWAYS};
use vpcip_lab::{Conn, echo_server, eventually};
use vpcip_model::desired::Agent;

/// The gateway phy's route to `ip` goes through, by name; None without a
/// route learnt by BGP.
fn next_hop(lab: &Lab, ip: Ipv4Addr) -> Option<&'static str> {
    let r = lab.w.exec(
        cloud::PHYSICAL_ROUTER,
        &["ip", "route", "show", &ip.to_string()],
    );
    if !r.contains("proto bird") {
        return None;
    }
    CLUSTER_GATEWAYS
        .iter()
        .find(|(_, u)| r.contains(&format!("via {u} ")))
        .map(|(n, _)| *n)
}

/// Pings `to` from the client `count` times every 10 ms in the background;
/// the handle answers (sent, received).
fn probe(lab: &Lab, to: Ipv4Addr, count: u32) -> std::thread::JoinHandle<(u32, u32)> {
    let ns = lab.ns("client");
    std::thread::spawn(move || {
        let out = std::process::Command::new("ip")
            .args([
                "netns", "exec", &ns, "ping", "-n", "-q", "-i", "0.01", "-W", "1",
            ])
            .args(["-c", &count.to_string(), &to.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        // "300 packets transmitted, 300 received, 0% packet loss"
        let stats = text
            .lines()
            .find(|l| l.contains("transmitted"))
            .unwrap_or_default();
        let num = |word: &str| {
            stats
                .split(',')
                .find(|p| p.contains(word))
                .and_then(|p| p.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (num("transmitted"), num("received"))
    })
}

/// Asks on `conn` every 20 ms for `run`; every answer must come (none is
/// lost for good and the connection is never reset); returns the longest
/// wait for one.
fn keep_asking(conn: &mut Conn, run: Duration, what: &str) -> Duration {
    let started = Instant::now();
    let mut longest = Duration::ZERO;
    let mut n = 0u32;
    while started.elapsed() < run {
        n += 1;
        let asked = Instant::now();
        let line = format!("{what}-{n}");
        let got = conn.ask(&line);
        assert_eq!(
            got,
            Some(format!("{CLIENT} {line}")),
            "the connection through the EIP broke during {what} (question {n})"
        );
        longest = longest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    longest
}

async fn gateway_agent(lab: &Lab, name: &str) -> Agent {
    let agents: Vec<Agent> = lab.op.get(paths::AGENTS).await.unwrap();
    agents.into_iter().find(|a| a.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eips_announced_by_bgp_survive_a_drain_and_a_gateway_death() {
    let mut lab = Lab::up_cluster("clu").await;
    let v = lab.vpc("v1", "10.0.0.0/16").await;
    let s = lab.subnet(&v, "v1-a", "10.0.1.0/24").await;
    let (web, _) = lab.vm("web", &s, "h1").await;
    let (_plain, _) = lab.vm("plain", &s, "h2").await;
    let eip = lab.eip_for(&web).await.ip;
    echo_server(&lab.ns("web"), 8080, Duration::from_secs(300));
    // A visible EIP too: the vendor manuals' recipe on server vis.
    let (vis, _) = lab.vm("vis", &s, "h2").await;
    let out = lab.visible_eip_for(&vis).await;
    let visible = out.eip.ip;
    cloud::attach_nic(&mut lab.w, "vis", "h2", "eth1", &out.nic.id, &out.nic.mac);
    guest_config(&lab, "vis", &["nic", "guest-config", &out.nic.id]);
    echo_server(&lab.ns("vis"), 8081, Duration::from_secs(300));

    // The physical router learns the EIP by BGP from the gateway carrying
    // the VPC, and the client reaches it.
    assert!(
        eventually(Duration::from_secs(20), || next_hop(&lab, eip).is_some()),
        "phy learnt no route to {eip}: {}",
        lab.w.exec(cloud::PHYSICAL_ROUTER, &["ip", "route"])
    );
    let carrier = next_hop(&lab, eip).unwrap();
    let other = CLUSTER_GATEWAYS
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n != carrier)
        .unwrap();
    let segment = lab
        .w
        .exec(cloud::PHYSICAL_ROUTER, &["ip", "route", "show", SEGMENT]);
    assert!(
        segment.contains("proto bird"),
        "the segment is announced too: {segment}"
    );
    let mut conn = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            conn = Conn::open(&lab.ns("client"), at(eip, 8080), Duration::from_secs(1));
            conn.as_mut()
                .and_then(|c| c.ask("hello"))
                .is_some_and(|a| a == format!("{CLIENT} hello"))
        }),
        "the client does not reach {eip}"
    );
    let mut conn = conn.unwrap();
    let mut vconn = None;
    assert!(
        eventually(Duration::from_secs(15), || {
            vconn = Conn::open(&lab.ns("client"), at(visible, 8081), Duration::from_secs(1));
            vconn
                .as_mut()
                .and_then(|c| c.ask("hello"))
                .is_some_and(|a| a == format!("{CLIENT} hello"))
        }),
        "the client does not reach the visible EIP {visible}"
    );
    let mut vconn = vconn.unwrap();
    // Both directions of an EIP pass through one gateway at a time, so its
    // bandwidth limit (shaped where it passes) is never doubled: only the
    // carrier counts the EIP's packets.
    let counted = |gw: &str| -> u64 {
        let set = lab
            .w
            .exec(gw, &["nft", "list", "set", "ip", "vpcip_gw", "eip_in"]);
        set.split(&format!("{eip} counter packets "))
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = (counted("gw1"), counted("gw2"));
    for i in 0..20 {
        assert!(conn.ask(&format!("count-{i}")).is_some());
    }
    let after = (counted("gw1"), counted("gw2"));
    let grew = (after.0 - before.0, after.1 - before.1);
    let on_carrier = if carrier == "gw1" { grew.0 } else { grew.1 };
    let on_other = if carrier == "gw1" { grew.1 } else { grew.0 };
    assert!(
        on_carrier >= 20 && on_other == 0,
        "counted by gw1/gw2: {grew:?}"
    );
    // The gateways show who carries what and their sessions.
    let list = || String::from_utf8(cli(&lab, &["gateway", "list"]).stdout).unwrap();
    let established = format!("{} established", cloud::PHYSICAL_UNDERLAY);
    assert!(
        eventually(Duration::from_secs(5), || list()
            .matches(&established)
            .count()
            == 2),
        "{}",
        list()
    );
    let shown = String::from_utf8(cli(&lab, &["eip", "show", &eip.to_string()]).stdout).unwrap();
    assert!(
        shown.contains(&format!("carried by:  {carrier}")),
        "{shown}"
    );
    let report = gateway_agent(&lab, carrier).await.cluster.unwrap();
    assert!(!report.carrying.is_empty(), "{report:?}");
    assert!(
        report.bgp.iter().all(|b| b.state == "established"),
        "{report:?}"
    );

    // Planned drain: not one probe lost, the connection carries on, and
    // the drained gateway announces nothing.
    let pings = probe(&lab, eip, 400);
    std::thread::sleep(Duration::from_millis(300));
    let out = cli(&lab, &["gateway", "drain", carrier]);
    assert!(out.status.success(), "{out:?}");
    keep_asking(&mut conn, Duration::from_secs(2), "drain");
    keep_asking(&mut vconn, Duration::from_millis(500), "drain (visible)");
    let (sent, received) = pings.join().unwrap();
    assert_eq!((sent, received), (400, 400), "probes lost during the drain");
    assert_eq!(
        next_hop(&lab, eip),
        Some(other),
        "the other gateway carries it"
    );
    let drained = gateway_agent(&lab, carrier).await.cluster.unwrap();
    assert!(
        drained.carrying.is_empty() && drained.announced == 0,
        "{drained:?}"
    );
    // Undrained: it takes its share back, again without a loss.
    let pings = probe(&lab, eip, 400);
    std::thread::sleep(Duration::from_millis(300));
    let out = cli(&lab, &["gateway", "undrain", carrier]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        eventually(Duration::from_secs(15), || next_hop(&lab, eip)
            == Some(carrier)),
        "{carrier} did not take its share back"
    );
    keep_asking(&mut conn, Duration::from_secs(1), "undrain");
    keep_asking(&mut vconn, Duration::from_millis(500), "undrain (visible)");
    let (sent, received) = pings.join().unwrap();
    assert_eq!(
        (sent, received),
        (400, 400),
        "probes lost during the undrain"
    );

    // The carrier's agent restarts (SIGKILL, then started again): the
    // other gateway wins its elections meanwhile, both keep forwarding,
    // and the restarted agent takes its share back — without a loss.
    let i = CLUSTER_GATEWAYS
        .iter()
        .position(|(n, _)| *n == carrier)
        .unwrap();
    let pings = probe(&lab, eip, 500);
    std::thread::sleep(Duration::from_millis(300));
    lab.w.kill(lab.agents[i]);
    std::thread::sleep(Duration::from_millis(1000));
    lab.agents[i] = cloud::start_agent(
        &mut lab.w,
        bin(),
        &lab.url,
        OPERATOR,
        "gateway",
        carrier,
        CLUSTER_GATEWAYS[i].1,
        1,
    );
    keep_asking(&mut conn, Duration::from_secs(2), "agent restart");
    let (sent, received) = pings.join().unwrap();
    assert_eq!(
        (sent, received),
        (500, 500),
        "probes lost during the agent's restart"
    );
    assert!(
        eventually(Duration::from_secs(10), || next_hop(&lab, eip)
            == Some(carrier)),
        "{carrier} did not take its share back after its agent's restart"
    );
    // Its BIRD restarts gracefully (`birdc graceful restart`, then started
    // again with the agent's configuration): the connection carries on.
    let pings = probe(&lab, eip, 500);
    std::thread::sleep(Duration::from_millis(300));
    let (conf, sock) = cloud::bird_paths(&lab.w, carrier);
    let stop = std::process::Command::new("birdc")
        .arg("-s")
        .arg(&sock)
        .args(["graceful", "restart"])
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&conf).unwrap();
    lab.birds[i] = cloud::start_bird(&mut lab.w, carrier, &text);
    keep_asking(&mut conn, Duration::from_secs(2), "BIRD restart");
    let (sent, received) = pings.join().unwrap();
    // (0 lost here in every run; a probe or two of slack for a loaded
    // machine.)
    assert!(
        sent == 500 && sent - received <= 2,
        "BIRD's graceful restart: {} of {sent} probes lost",
        sent - received
    );
    assert!(
        eventually(Duration::from_secs(15), || next_hop(&lab, eip)
            == Some(carrier)),
        "{carrier} did not announce again after its BIRD's restart"
    );

    // The carrier dies: agent and BIRD killed, its underlay link down.
    // The established connection carries on through the other gateway.
    let pings = probe(&lab, eip, 300);
    std::thread::sleep(Duration::from_millis(300));
    lab.w.kill(lab.agents[i]);
    lab.w.kill(lab.birds[i]);
    lab.w.exec(carrier, &["ip", "link", "set", "phy0", "down"]);
    // The visible EIP's connection, asked at the same time.
    let mut v = vconn;
    let visible_side = std::thread::spawn(move || {
        keep_asking(&mut v, Duration::from_secs(3), "failover (visible)")
    });
    let longest = keep_asking(&mut conn, Duration::from_secs(3), "failover");
    let longest_visible = visible_side.join().unwrap();
    eprintln!("failover: the visible EIP's longest answer {longest_visible:?}");
    let (sent, received) = pings.join().unwrap();
    eprintln!(
        "failover: longest answer {longest:?}, {} of {sent} probes lost",
        sent - received
    );
    assert_eq!(next_hop(&lab, eip), Some(other));
    // New connections: to the EIP, and out by default SNAT.
    assert!(
        eventually(Duration::from_secs(5), || vpcip_lab::ask_once(
            &lab.ns("client"),
            at(eip, 8080),
            "new"
        )
        .is_some()),
        "no new connection to {eip} after the failover"
    );
    assert!(
        eventually(Duration::from_secs(5), || lab.pings("plain", CLIENT_IP)),
        "default SNAT does not work after the failover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bgp_faults_are_reported_and_break_nothing() {
    let mut lab = Lab::up_cluster("clf").await;
    let v = lab.vpc("v1", "10.0.0.0/16").await;
    let s = lab.subnet(&v, "v1-a", "10.0.1.0/24").await;
    let (web, _) = lab.vm("web", &s, "h1").await;
    let eip = lab.eip_for(&web).await.ip;
    echo_server(&lab.ns("web"), 8080, Duration::from_secs(120));
    let reaches = |lab: &Lab| {
        eventually(Duration::from_secs(10), || {
            vpcip_lab::ask_once(&lab.ns("client"), at(eip, 8080), "x").is_some()
        })
    };
    assert!(reaches(&lab), "the client does not reach {eip}");
    let status = |lab: &Lab| {
        let out = cli(lab, &["status"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    // A peer that never comes up (nothing at 192.0.2.9), beside the good one.
    let phy = cloud::PHYSICAL_UNDERLAY;
    let out = cli(
        &lab,
        &[
            "gateway",
            "update",
            "gw1",
            "--bgp-peer",
            phy,
            "--bgp-peer",
            "192.0.2.9",
            "--peer-as",
            "64512",
            "--local-as",
            "64513",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    // A gateway whose only peer is not there: no session at all.
    let out = cli(
        &lab,
        &[
            "gateway",
            "update",
            "gw2",
            "--bgp-peer",
            "192.0.2.77",
            "--peer-as",
            "64512",
            "--local-as",
            "64513",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    // The physical router announces a route back to the gateways.
    let (conf, sock) = cloud::bird_paths(&lab.w, cloud::PHYSICAL_ROUTER);
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("export none;", "export where proto = \"back\";")
        + "protocol static back { ipv4; route 198.18.0.0/15 unreachable; }\n";
    std::fs::write(&conf, text).unwrap();
    let reload = std::process::Command::new("birdc")
        .arg("-s")
        .arg(&sock)
        .arg("configure")
        .output()
        .unwrap();
    assert!(reload.status.success(), "{reload:?}");
    let said = eventually(Duration::from_secs(20), || {
        let (code, text) = status(&lab);
        code == Some(3)
            && text.contains("BGP          gw1, peer 192.0.2.9: session")
            && text.contains("BGP          gw2: no BGP session is up")
            && text.contains("BGP          gw1, peer 192.0.2.1: the peer announces 1 routes")
    });
    assert!(said, "{}", status(&lab).1);
    // Nothing else broke: the EIP still answers, gw1 learnt nothing.
    assert!(reaches(&lab), "the EIP broke");
    let routes = lab.w.exec("gw1", &["ip", "route", "show", "table", "all"]);
    assert!(!routes.contains("198.18."), "{routes}");
    let list = String::from_utf8(cli(&lab, &["gateway", "list"]).stdout).unwrap();
    assert!(list.contains("192.0.2.9 "), "{list}");
    // A flapping session: phy drops gw1's three times.
    let birdc = |args: &[&str]| {
        let out = std::process::Command::new("birdc")
            .arg("-s")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    let established = |lab: &Lab| {
        let (_, text) = status(lab);
        !text.contains("BGP          gw1, peer 192.0.2.1: session")
    };
    for _ in 0..3 {
        birdc(&["disable", "node_gw1"]);
        std::thread::sleep(Duration::from_millis(1500));
        birdc(&["enable", "node_gw1"]);
        assert!(
            eventually(Duration::from_secs(15), || established(&lab)),
            "{}",
            status(&lab).1
        );
    }
    assert!(
        eventually(Duration::from_secs(10), || status(&lab).1.contains(
            "BGP          gw1, peer 192.0.2.1: flapping: the session went down 3 times"
        )),
        "{}",
        status(&lab).1
    );
    assert!(reaches(&lab), "the EIP broke");

    // check-route, summing what both gateways count: OK while the client
    // pings; once phy drops both sessions (and with them the routes), NOT
    // REACHED naming the BGP problems.
    let ip = eip.to_string();
    let pinger = |ns: String, ip: String| {
        std::thread::spawn(move || {
            let _ = std::process::Command::new("ip")
                .args([
                    "netns", "exec", &ns, "ping", "-q", "-c", "40", "-i", "0.1", "-w", "6", &ip,
                ])
                .output();
        })
    };
    let p = pinger(lab.ns("client"), ip.clone());
    let ok = cli(&lab, &["eip", "check-route", &ip, "--wait", "2"]);
    let text = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(ok.status.success() && text.starts_with("OK:"), "{text}");
    p.join().unwrap();
    birdc(&["disable", "node_gw1"]);
    birdc(&["disable", "node_gw2"]);
    assert!(
        eventually(Duration::from_secs(10), || !lab
            .w
            .exec(cloud::PHYSICAL_ROUTER, &["ip", "route"])
            .lines()
            .any(|l| l.contains("proto bird") && !l.contains("198.18."))),
        "phy kept routes"
    );
    // The gateways report every 2 s: let the first pings' counts arrive
    // before the next baseline (check-route counts from the latest report).
    std::thread::sleep(Duration::from_secs(5));
    let p = pinger(lab.ns("client"), ip.clone());
    let missing = cli(&lab, &["eip", "check-route", &ip, "--wait", "2"]);
    let text = String::from_utf8_lossy(&missing.stdout).into_owned();
    assert_eq!(missing.status.code(), Some(3), "{text}");
    assert!(
        text.contains("NOT REACHED") && text.contains("announce the EIPs by BGP"),
        "{text}"
    );
    p.join().unwrap();
}

/// An EIP's bandwidth limit holds across the cluster: both directions of
/// its traffic pass one gateway at a time (shaped there), also while it is
/// drained mid-transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eips_limit_holds_across_the_cluster() {
    let mut lab = Lab::up_cluster("clb").await;
    let v = lab.vpc("v1", "10.0.0.0/16").await;
    let s = lab.subnet(&v, "v1-a", "10.0.1.0/24").await;
    let (x, _) = lab.vm("x", &s, "h1").await;
    let eip = lab.eip_for(&x).await; // 10 Mbit/s
    assert_eq!(eip.bandwidth_mbps, 10);
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns("x"), "iperf3", "-s", "-p", "5201"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    lab.w.adopt(child);
    assert!(
        eventually(Duration::from_secs(20), || next_hop(&lab, eip.ip).is_some()
            && lab.pings("client", eip.ip)),
        "the EIP never answered"
    );
    for reverse in [false, true] {
        let mbps = received_mbps(&iperf3(&lab, eip.ip, 5201, false, reverse, 4));
        assert!(
            (8.0..=10.5).contains(&mbps),
            "{mbps:.1} Mbit/s through a 10 Mbit/s EIP (reverse {reverse})"
        );
    }
    // Drained mid-transfer: the other gateway takes over; the transfer's
    // rate over its whole run stays within the limit.
    let carrier = next_hop(&lab, eip.ip).unwrap();
    let (client, to) = (lab.ns("client"), eip.ip.to_string());
    let transfer = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args(["netns", "exec", &client, "iperf3", "-c", &to, "-p", "5201"])
            .args(["-t", "6", "-J", "-R", "--connect-timeout", "3000"])
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_secs(2));
    let out = cli(&lab, &["gateway", "drain", carrier]);
    assert!(out.status.success(), "{out:?}");
    let out = transfer.join().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mbps = received_mbps(&report);
    assert!(
        (7.0..=10.5).contains(&mbps),
        "{mbps:.1} Mbit/s through a 10 Mbit/s EIP while its gateway was drained"
    );
    assert_ne!(next_hop(&lab, eip.ip), Some(carrier));
}
