//! The web console in a real browser: Debian's Chromium, headless, driven
//! by Playwright for Python (pinned, scripts/browser-tools) through
//! `console_browser.py`, against a real `vpcip controller` serving its
//! console. Each step is checked in the page and here through the API.
//! Screenshots are kept in target/console-artifacts.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::path::PathBuf;
use std::process::Command;

mod support;
use support::{OPERATOR, cli, ok, start_with_console};

#[test]
fn a_tenant_manages_an_eip_in_the_console_in_chromium() {
    let venv = vpcip_lab::browser_venv();
    let (server, ui) = start_with_console();
    let op = |args: &[&str]| ok(&cli(&server, OPERATOR, args));
    op(&["zone", "create", "z1"]);
    op(&[
        "subnet",
        "create",
        "public",
        "--type",
        "eip",
        "--cidr",
        "203.0.113.0/24",
    ]);
    let token = |tenant: &str| {
        op(&["token", "create", "--tenant", tenant, "--field", "secret"])
            .trim()
            .to_string()
    };
    let (acme, other) = (token("acme"), token("other"));
    let t = |args: &[&str]| ok(&cli(&server, &acme, args));
    t(&["vpc", "create", "vpc1", "--cidr", "10.0.0.0/16"]);
    t(&[
        "subnet",
        "create",
        "sw1",
        "--vpc",
        "vpc1",
        "--zone",
        "z1",
        "--cidr",
        "10.0.0.0/24",
    ]);
    t(&["server", "create", "vm1", "--subnet", "sw1"]);
    // vm1's NIC holds 10 VIPs, the most a NIC may: the browser's 11th is
    // refused.
    let nics: Vec<serde_json::Value> =
        serde_json::from_str(&t(&["server", "nics", "vm1", "-o", "json"])).unwrap();
    let nic = nics[0]["id"].as_str().unwrap().to_string();
    for i in 0..10 {
        let name = format!("v{i}");
        t(&["vip", "create", &name, "--subnet", "sw1"]);
        t(&["vip", "bind", &name, "--nic", &nic]);
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-artifacts");
    std::fs::create_dir_all(&out).unwrap();
    let run = Command::new(venv.join("bin/python"))
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console_browser.py"))
        .env("UI", &ui)
        .env("TENANT", &acme)
        .env("OTHER", &other)
        .env("NIC", &nic)
        .env("OUT", &out)
        .env("HOME", &server.dir)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "the browser's checks failed:\n{said}");
    assert!(said.contains("all checks passed"), "{said}");
    // What the browser did, through the API: the EIP was made, and is gone.
    let listed = ok(&cli(&server, &acme, &["eip", "list", "-o", "json"]));
    assert_eq!(listed.trim(), "[]", "the released EIP is still listed");
    let events = std::fs::read_to_string(server.dir.join("server.log")).unwrap();
    assert!(events.contains("web console at /ui"));
    // The refused VIP exists, bound to nothing.
    let eleventh = ok(&cli(
        &server,
        &acme,
        &["vip", "show", "eleventh", "-o", "json"],
    ));
    let eleventh: serde_json::Value = serde_json::from_str(&eleventh).unwrap();
    assert_eq!(eleventh["nic_ids"], serde_json::json!([]), "{eleventh}");
    for shot in ["topology.png", "eip.png", "vip-refused.png"] {
        assert!(out.join(shot).exists(), "no screenshot {shot}");
    }
}
