//! `vpcip lab`: a small cloud in network namespaces on this machine (see
//! `vpcip_lab::cloud` for its picture): a physical router with the static
//! route for the EIP segment, an outside client, a gateway node and two
//! hosts; a real controller, gateway agent and host agents as processes; the
//! lab plays the hypervisor and plugs VMs. A tour creates a VPC, subnets,
//! servers and an EIP through the API and fetches a page from a VM through
//! the EIP. Everything carries the lab's prefix; `lab down` ends the lab's
//! processes by PID and removes its namespaces, also after a crash.
//!
//! `up.rs` builds the lab and runs the tour, `net.rs` holds what runs in
//! the lab's namespaces (the VMs' web server, GETs, route look-ups).

mod net;
mod up;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use vpcip_lab::World;
use vpcip_model::Eip;

use crate::cli::LabCmd;
use net::httpd;
use up::up;

#[derive(Serialize, Deserialize)]
struct LabState {
    prefix: String,
    url: String,
    operator_token: String,
    tenant_token: String,
    pids: Vec<u32>,
    /// Node name → namespace.
    nodes: Vec<(String, String)>,
}

impl LabState {
    /// The nodes' names, comma-separated (as `lab exec` takes them).
    fn node_names(&self) -> String {
        self.nodes
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn state_dir(name: &str) -> PathBuf {
    PathBuf::from("/run/vpcip-lab").join(name)
}

fn load(name: &str) -> anyhow::Result<LabState> {
    let path = state_dir(name).join("state.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no lab {name:?} is up ({} missing)", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn prefix_of(name: &str) -> String {
    format!("vl-{name}-")
}

fn step(msg: &str) {
    println!("\x1b[1m==> {msg}\x1b[0m");
}

pub async fn run(cmd: LabCmd) -> anyhow::Result<()> {
    match cmd {
        LabCmd::Up { name } => up(&name).await,
        LabCmd::Down { name } => down(&name),
        LabCmd::Exec {
            name,
            node,
            command,
        } => exec(&name, &node, &command),
        LabCmd::Httpd { netns, port } => httpd(&netns, port),
    }
}

fn spawn_detached<A: AsRef<std::ffi::OsStr>>(
    args: &[A],
    log: &std::path::Path,
    envs: &[(&str, &str)],
) -> anyhow::Result<u32> {
    let exe = std::env::current_exe()?;
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn()?;
    Ok(child.id())
}

/// What to try once the lab is up.
fn print_hints(name: &str, url: &str, operator_token: &str, state: &LabState, eip: &Eip) {
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "vpcip".into());
    let lab = if name == "demo" {
        String::new()
    } else {
        format!(" --name {name}")
    };
    println!();
    println!("The lab is up. Try:");
    // Only what runs here: the observers come from Debian's packages.
    let has = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
    };
    if has("curl") {
        println!("  {me} lab exec{lab} client -- curl -s http://{}/", eip.ip);
    } else {
        println!(
            "  (apt-get install curl, then: {me} lab exec{lab} client -- curl -s http://{}/)",
            eip.ip
        );
    }
    println!(
        "  VPCIP_URL={url} VPCIP_TOKEN={} {me} eip list",
        state.tenant_token
    );
    println!("  VPCIP_URL={url} VPCIP_TOKEN={operator_token} {me} host list");
    println!("  {me} lab exec{lab} phy -- ip route show proto bird   # the EIPs, learnt by BGP");
    println!(
        "  VPCIP_URL={url} VPCIP_TOKEN={operator_token} {me} gateway list   # who carries what, BGP sessions"
    );
    println!(
        "  VPCIP_URL={url} VPCIP_TOKEN={operator_token} {me} gateway drain gw1   # then undrain"
    );
    println!("  {me} lab exec{lab} gw1 -- ip route show table 9999   # what gw1 announces");
    if has("nft") {
        println!("  {me} lab exec{lab} vpc1-router-gw1 -- nft list table ip vpcip_nat");
    } else {
        println!("  (apt-get install nftables to read the routers' NAT tables with nft)");
    }
    println!("  {me} lab exec{lab} h1 -- bridge fdb show");
    println!("  nodes: {}", state.node_names());
    println!("  {me} lab down{lab}");
}

fn down(name: &str) -> anyhow::Result<()> {
    let prefix = prefix_of(name);
    if let Ok(state) = load(name) {
        for pid in state.pids {
            // Only the lab's own processes, by the PIDs it recorded.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.cast_signed()),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let removed = World::remove_all(&prefix);
    let _ = std::fs::remove_dir_all(state_dir(name));
    // The BIRDs' configurations and sockets.
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("{prefix}state")));
    println!("lab {name} is down ({removed} namespaces removed)");
    Ok(())
}

fn exec(name: &str, node: &str, command: &[String]) -> anyhow::Result<()> {
    let state = load(name)?;
    let ns = state
        .nodes
        .iter()
        .find(|(n, _)| n == node)
        .map(|(_, ns)| ns.clone())
        .with_context(|| {
            format!(
                "no node {node:?} in lab {name}; nodes: {}",
                state.node_names()
            )
        })?;
    if command.is_empty() {
        bail!("give a command: vpcip lab exec {node} -- COMMAND");
    }
    let status = Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(command)
        .status()?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
