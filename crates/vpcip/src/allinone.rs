//! `vpcip allinone`: the controller (SQLite), a gateway agent and a host
//! agent in one process on one node, the way an operator first deploys
//! (the vendor manuals' AllInOne).
//!
//! ```text
//!  this node's namespace                         <prefix>host
//!  physical NIC <underlay-ip>  (gateway)         VM ports (taps/veths named
//!  VPC routers <prefix>vpcr-*                      t<NIC id tail>) on bridges
//!  vh-host 169.254.255.253/30 ══════════════════ phy0 169.254.255.254/30
//! ```
//!
//! The host side lives in its own namespace: one kernel cannot hold the
//! gateway's and the host's VXLAN device for the same VNI side by side, so
//! the two ends of each subnet's tunnel are a veth apart, as two machines
//! would be a cable apart. The hypervisor makes VM ports in that namespace.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;
use ipnet::Ipv4Net;
use vpcip_model::desired::AgentRole;
use vpcip_sys::link::{Net, RTPROT_VPCIP, Route, RouteKind};
use vpcip_sys::netns::{create_named, in_netns};

use crate::cli::AllinoneArgs;

/// The node's end and the host namespace's end of their link.
const NODE_SIDE: Ipv4Addr = Ipv4Addr::new(169, 254, 255, 253);
const HOST_SIDE: Ipv4Addr = Ipv4Addr::new(169, 254, 255, 254);
const NODE_IF: &str = "vh-host";
const HOST_IF: &str = "phy0";

/// Makes the host namespace and its link to the node (idempotent).
fn host_namespace(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let ns = create_named(name)?;
    let ns_for_move = ns.clone();
    in_netns(
        std::path::Path::new("/proc/self/ns/net"),
        move || -> anyhow::Result<()> {
            let net = Net::open()?;
            if net.link(NODE_IF)?.is_none() {
                let in_host =
                    in_netns(&ns_for_move, || Net::open().and_then(|n| n.link(HOST_IF)))??;
                if in_host.is_some() {
                    anyhow::bail!(
                        "{HOST_IF} exists in the host namespace without its peer {NODE_IF}"
                    );
                }
                net.add_veth(NODE_IF, "vh-peer")?;
                let peer = net
                    .link("vh-peer")?
                    .context("the new veth peer is missing")?;
                net.move_to(peer.index, &ns_for_move, HOST_IF)?;
            }
            let l = net.link(NODE_IF)?.context("the host link is missing")?;
            let want = Ipv4Net::new(NODE_SIDE, 30)?;
            if !net.addrs(l.index)?.contains(&want) {
                net.add_addr(l.index, want)?;
            }
            if !l.up {
                net.set_up(l.index)?;
            }
            Ok(())
        },
    )??;
    in_netns(&ns, || -> anyhow::Result<()> {
        let net = Net::open()?;
        for l in net.links()? {
            if (l.name == "lo" || l.name == HOST_IF) && !l.up {
                net.set_up(l.index)?;
            }
        }
        let l = net.link(HOST_IF)?.context("the host link is missing")?;
        let want = Ipv4Net::new(HOST_SIDE, 30)?;
        if !net.addrs(l.index)?.contains(&want) {
            net.add_addr(l.index, want)?;
        }
        let default = Route {
            table: vpcip_sys::link::MAIN_TABLE,
            dst: Ipv4Net::default(),
            gateway: Some(NODE_SIDE),
            oif: Some(l.index),
            kind: RouteKind::Unicast,
            protocol: RTPROT_VPCIP,
        };
        if !net.routes()?.contains(&default) {
            net.add_route(&default)?;
        }
        Ok(())
    })??;
    Ok(ns)
}

pub async fn run(args: AllinoneArgs) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("vpcip allinone programs this node's network: run it as root");
    }
    if let Some(path) = args.db.strip_prefix("sqlite://")
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let token = match std::env::var("VPCIP_OPERATOR_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => {
            let t = format!("vpcip_op_{}", hex_token());
            println!("operator token (set VPCIP_OPERATOR_TOKEN to choose one): {t}");
            t
        }
    };
    let store = vpcip_store::Store::open(&args.db).await?;
    register_underlay(&store, &args).await?;
    let app = vpcip_api::App::new(store, Some(&token));
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let never = std::future::pending::<()>();
        if let Err(e) = vpcip_api::serve(listener, app, never).await {
            tracing::error!(error = %e, "the API stopped");
        }
    });

    let host_ns_name = format!("{}host", args.netns_prefix);
    let host_ns = host_namespace(&host_ns_name)?;
    let resync = Duration::from_secs(args.resync.max(1));
    if !args.no_gateway {
        let cfg = vpcip_agent::AgentConfig {
            metrics: Default::default(),
            name: args.name.clone(),
            role: AgentRole::Gateway,
            underlay_ip: args.underlay_ip,
            netns_prefix: args.netns_prefix.clone(),
            node_netns: "/proc/self/ns/net".into(),
            resync,
            state_dir: args.state_dir.join(format!("agent-{}", args.name)),
            bird: None,
        };
        let client = vpcip_client::Client::new(&url, Some(&token));
        tokio::spawn(vpcip_agent::run(client, cfg));
    }
    let cfg = vpcip_agent::AgentConfig {
        metrics: Default::default(),
        name: format!("{}-host", args.name),
        role: AgentRole::Host,
        underlay_ip: HOST_SIDE,
        netns_prefix: args.netns_prefix.clone(),
        node_netns: host_ns,
        resync,
        state_dir: args.state_dir.join(format!("agent-{}-host", args.name)),
        bird: None,
    };
    let client = vpcip_client::Client::new(&url, Some(&token));
    tokio::spawn(vpcip_agent::run(client, cfg));

    println!("vpcip allinone: API {url}, store {}", args.db);
    println!(
        "  gateway {} ({}): route the EIP segments to {}",
        args.name,
        if args.no_gateway { "off" } else { "on" },
        args.underlay_ip
    );
    println!(
        "  host {}-host: make each VM's port in namespace {host_ns_name}, named t<NIC ID tail> (`vpcip nic list` shows NICs)",
        args.name
    );
    // SIGINT, or SIGTERM as systemd sends it: the data plane stays as it
    // is (its namespaces are the system's, see vpcip_sys::netns), as after
    // a crash; the next start takes it over.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    println!("stopping; the data plane keeps its state");
    Ok(())
}

/// Agents register only with an address of a host network: the gateway's
/// underlay address (as a /32: its network is the operator's to register)
/// and the host namespace's link, unless a host network holds them already.
async fn register_underlay(store: &vpcip_store::Store, args: &AllinoneArgs) -> anyhow::Result<()> {
    let op = vpcip_store::Scope::Operator;
    let page = store.list::<vpcip_model::HostNetwork>(&op, None, None, Some(1000));
    let known = page.await?.items;
    let gateway = (!args.no_gateway).then_some(("underlay", args.underlay_ip, 32));
    for (what, addr, len) in gateway.into_iter().chain([("host-link", HOST_SIDE, 30)]) {
        if !known.iter().any(|h| h.cidr.contains(&addr)) {
            let cidr = Ipv4Net::new(addr, len)?.trunc();
            let name = format!("{}-{what}", args.name);
            let req = vpcip_model::CreateHostNetwork { name, cidr };
            store.create_host_network(&op, &req).await?;
        }
    }
    Ok(())
}

fn hex_token() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
