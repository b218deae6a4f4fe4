//! `vpcip lab`: a small cloud in network namespaces on this machine, with a
//! real controller and gateway agent as processes, and a tour that shows an
//! EIP carrying HTTP from an outside client to a VM.
//!
//! Today's world is the EIP path: outside client — VPC router — VM. The
//! router namespace is wired by the lab (the gateway agent programs its NAT);
//! the physical router, hosts, overlay and host agents come with the rest of
//! issue 3. Everything carries the lab's prefix; `lab down` ends the lab's
//! processes by PID and removes its namespaces, also after a crash.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use vpcip_client::Client;
use vpcip_lab::World;
use vpcip_model::*;

use crate::cli::LabCmd;

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

fn spawn_detached(
    args: &[&str],
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

async fn up(name: &str) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("vpcip lab builds network namespaces: run it as root");
    }
    let dir = state_dir(name);
    if dir.join("state.json").exists() {
        bail!("lab {name:?} is already up: `vpcip lab down --name {name}` first");
    }
    let prefix = prefix_of(name);
    World::remove_all(&prefix); // leftovers of a crashed lab
    std::fs::create_dir_all(&dir)?;
    let operator_token = format!("lab-{}", std::process::id());
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}");
    let mut state = LabState {
        prefix: prefix.clone(),
        url: url.clone(),
        operator_token: operator_token.clone(),
        tenant_token: String::new(),
        pids: vec![],
        nodes: vec![],
    };
    let save = |s: &LabState| -> anyhow::Result<()> {
        std::fs::write(dir.join("state.json"), serde_json::to_string_pretty(s)?)?;
        Ok(())
    };

    step(&format!(
        "controller: vpcip server on {url}, SQLite in {}",
        dir.display()
    ));
    let db = format!("sqlite://{}/vpcip.db", dir.display());
    let listen = format!("127.0.0.1:{port}");
    state.pids.push(spawn_detached(
        &["server", "--listen", &listen, "--db", &db],
        &dir.join("server.log"),
        &[("VPCIP_OPERATOR_TOKEN", &operator_token)],
    )?);
    save(&state)?;
    let op = Client::new(&url, Some(&operator_token));
    let mut ok = false;
    for _ in 0..100 {
        if op.get::<serde_json::Value>("/healthz").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !ok {
        bail!(
            "the controller did not start; see {}",
            dir.join("server.log").display()
        );
    }

    step("operator: zone z1, EIP segment 203.0.113.0/24, a token for tenant acme");
    let _: Zone = op
        .post("/v1/zones", &CreateZone { name: "z1".into() })
        .await?;
    let seg = op
        .create_subnet(&CreateSubnet {
            name: "eip-seg".into(),
            kind: SubnetKind::Eip,
            range: Some("203.0.113.1-203.0.113.254".into()),
            prefix_len: Some(24),
            ..Default::default()
        })
        .await?;
    let tok: Token = op
        .post(
            "/v1/tokens",
            &CreateToken {
                tenant: "acme".into(),
                description: "lab".into(),
            },
        )
        .await?;
    state.tenant_token = tok.secret.clone().unwrap_or_default();
    save(&state)?;
    let t = Client::new(&url, tok.secret.as_deref());

    step("tenant acme: VPC vpc1 10.0.0.0/16, subnet sw1 10.0.0.0/24, server vm-1");
    let vpc: Vpc = t
        .post(
            "/v1/vpcs",
            &CreateVpc {
                name: "vpc1".into(),
                cidr: "10.0.0.0/16".parse()?,
                secondary_cidrs: vec![],
                tenant: None,
                client_token: None,
            },
        )
        .await?;
    t.create_subnet(&CreateSubnet {
        name: "sw1".into(),
        vpc: Some("vpc1".into()),
        zone: Some("z1".into()),
        cidr: Some("10.0.0.0/24".parse()?),
        ..Default::default()
    })
    .await?;
    let vm: vpcip_model::Server = t
        .post(
            "/v1/servers",
            &CreateServer {
                name: "vm-1".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await?;
    let nic: Nic = t.show("nics", &vm.nic_ids[0]).await?;

    step("namespaces: client (198.51.100.10) — VPC router — vm-1 (10.0.0.2), a web server in vm-1");
    let router = format!("vpcr-{}", vpc.id);
    let mut w = World::with_prefix(&prefix);
    vpcip_lab::client_router_vm(&mut w, &router, &seg.subnet.cidr.to_string());
    anyhow::ensure!(
        nic.ip == Ipv4Addr::new(10, 0, 0, 2),
        "vm-1 got {} instead of 10.0.0.2",
        nic.ip
    );
    state.nodes = vec![
        ("client".into(), w.ns("client")),
        ("router".into(), w.ns(&router)),
        ("vm-1".into(), w.ns("vm")),
    ];
    let vm_ns = w.ns("vm");
    w.keep();
    save(&state)?;
    state.pids.push(spawn_detached(
        &["lab", "httpd", "--netns", &vm_ns, "--port", "80"],
        &dir.join("httpd.log"),
        &[],
    )?);
    save(&state)?;

    step("gateway agent: vpcip agent --role gateway (programs the VPC router's NAT over netlink)");
    state.pids.push(spawn_detached(
        &[
            "agent",
            "--role",
            "gateway",
            "--name",
            "gw1",
            "--underlay-ip",
            "198.51.100.1",
            "--netns-prefix",
            &prefix,
            "--resync",
            "5",
        ],
        &dir.join("agent.log"),
        &[("VPCIP_URL", &url), ("VPCIP_TOKEN", &operator_token)],
    )?);
    save(&state)?;

    step("tenant acme: vpcip eip create --bandwidth 10 --server vm-1");
    let eip = t
        .create_eip(&CreateEip {
            bandwidth_mbps: 10,
            bind: Some(BindEip {
                target: EipTarget::Server("vm-1".into()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            }),
            ..Default::default()
        })
        .await?;
    println!("    EIP {} → {} (vm-1)", eip.ip, nic.ip);

    step(&format!("outside client: GET http://{}/", eip.ip));
    let client_ns = state.nodes[0].1.clone();
    let mut answer = None;
    for _ in 0..100 {
        answer = http_get(&client_ns, SocketAddr::new(eip.ip.into(), 80));
        if answer.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match answer {
        Some(body) => println!("    {}", body.trim()),
        None => bail!(
            "the EIP did not answer; see {}",
            dir.join("agent.log").display()
        ),
    }
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
    println!("  {me} lab exec{lab} client -- curl -s http://{}/", eip.ip);
    println!(
        "  VPCIP_URL={url} VPCIP_TOKEN={} {me} eip list",
        state.tenant_token
    );
    println!("  VPCIP_URL={url} VPCIP_TOKEN={operator_token} {me} gateway list");
    println!("  {me} lab exec{lab} router -- nft list table ip vpcip_nat");
    println!("  {me} lab down{lab}");
    Ok(())
}

fn http_get(ns: &str, to: SocketAddr) -> Option<String> {
    vpcip_sys::netns::in_netns(&vpcip_sys::netns::named(ns), move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(300)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("GET / HTTP/1.0\r\nHost: {}\r\n\r\n", to.ip()).as_bytes())
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.split("\r\n\r\n").nth(1).map(str::to_string)
    })
    .ok()
    .flatten()
}

fn down(name: &str) -> anyhow::Result<()> {
    let prefix = prefix_of(name);
    if let Ok(state) = load(name) {
        for pid in state.pids {
            // Only the lab's own processes, by the PIDs it recorded.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let removed = World::remove_all(&prefix);
    let _ = std::fs::remove_dir_all(state_dir(name));
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
                state
                    .nodes
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
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

/// The lab VM's web server: answers every request with who it is and who
/// asked.
fn httpd(netns: &str, port: u16) -> anyhow::Result<()> {
    let listener = vpcip_sys::netns::in_netns(&vpcip_sys::netns::named(netns), move || {
        TcpListener::bind(("0.0.0.0", port))
    })??;
    let host = netns.to_string();
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let peer = s
            .peer_addr()
            .map(|p| p.ip().to_string())
            .unwrap_or_default();
        let local = s
            .local_addr()
            .map(|p| p.ip().to_string())
            .unwrap_or_default();
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf);
        let body = format!("hello from {host} ({local}); you are {peer}\n");
        let _ = s.write_all(
            format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    Ok(())
}
