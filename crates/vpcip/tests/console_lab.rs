//! The web console against the lab, in Chromium (Playwright, as
//! console_browser.rs): the VPC's picture shows the VIP's holder move from
//! a to b when a's keepalived stops, on the page as it is (it redraws
//! itself); the status page shows an agent the test killed; the EIP's
//! traffic, sent by the outside client, is plotted. Screenshots are kept
//! in target/console-artifacts.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use vpcip_lab::cloud;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_vip_move_a_killed_agent_and_an_eips_traffic_in_chromium() {
    let venv = vpcip_lab::browser_venv();
    // EIPs' traffic sampled every 2 s, so the plot has points in seconds.
    let mut lab = Lab::up_with("cnl", "[console]\ntraffic_sample_seconds = 2\n").await;
    let v1 = lab.vpc("v1", "10.0.0.0/16").await;
    let sa = lab.subnet(&v1, "v1-a", "10.0.1.0/24").await;
    let (_, a) = lab.vm("a", &sa, "h1").await;
    let (_, b) = lab.vm("b", &sa, "h2").await;
    let (vip, eip) = lab.vip_with_eip("vip-1", &sa, &[&a, &b]).await;
    for vm in ["a", "b"] {
        lab.httpd(vm);
    }
    let ka = speaker(&mut lab, Speaker::Keepalived, "a", 1, &vip, &a);
    speaker(&mut lab, Speaker::Keepalived, "b", 1, &vip, &b);
    let to = std::net::SocketAddr::from((eip.ip, 80));
    if let Err(last) = lab.wait_served_by(to, "a", Duration::from_secs(20)) {
        panic!("the EIP on the VIP does not reach the master a: {last:?}");
    }
    // Traffic for the plot: 6 s of pings from the outside client (bounded).
    lab.w.exec(
        "client",
        &["ping", "-q", "-c", "30", "-i", "0.2", &eip.ip.to_string()],
    );
    let ui = cloud::console_url(&lab.w).expect("the lab controller's console");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-artifacts");
    std::fs::create_dir_all(&out).unwrap();
    let agent = cloud::AGENTS[2].1;
    let mut browser = Command::new(venv.join("bin/python"))
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console_lab.py"))
        .env("UI", &ui)
        .env("OPERATOR", OPERATOR)
        .env("VPC", &v1.id)
        .env("VIP", &vip.id)
        .env("EIP", &eip.id)
        .env("NIC_A", &a.id)
        .env("NIC_B", &b.id)
        .env("AGENT", agent)
        .env("OUT", &out)
        .env("HOME", cloud::state_dir(&lab.w))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_browser = browser.stdin.take().unwrap();
    let mut said = String::new();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    // Reads what the browser says up to its mark `at: MARK` (false when it
    // ended first).
    let mut wait_for = |mark: &str, said: &mut String| {
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            said.push_str(&line);
            said.push('\n');
            if line == format!("at: {mark}") {
                return true;
            }
        }
        false
    };
    let mut ended_early = !wait_for("holder-a", &mut said);
    if !ended_early {
        // a dies: its keepalived killed, its NIC down.
        kill_speaker(&mut lab, Speaker::Keepalived, "a", 1, ka);
        lab.w.exec("a", &["ip", "link", "set", "eth0", "down"]);
        writeln!(to_browser, "a's keepalived killed and its NIC down").unwrap();
        ended_early = !wait_for("holder-b", &mut said);
    }
    if !ended_early {
        lab.w.kill(lab.agents[2]);
        writeln!(to_browser, "agent {agent} killed").unwrap();
    }
    for line in lines {
        said.push_str(&line.unwrap_or_default());
        said.push('\n');
    }
    drop(to_browser);
    let run = browser.wait_with_output().unwrap();
    said.push_str(&String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "the browser's checks failed:\n{said}");
    assert!(said.contains("all checks passed"), "{said}");
    for shot in [
        "vip-holder-a.png",
        "vip-holder-b.png",
        "status-killed-agent.png",
        "eip-traffic.png",
    ] {
        assert!(out.join(shot).exists(), "no screenshot {shot}");
    }
}
