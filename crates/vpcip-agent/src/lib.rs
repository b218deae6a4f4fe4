//! The agents' reconcile loop: register, watch the desired state (a whole
//! snapshot per revision, and again every resync period), diff it against
//! the kernel and change only what differs. Level-triggered: a restarted
//! agent, or one whose kernel state drifted, converges without flushing
//! what is already right. When the controller is unreachable the data plane
//! keeps its last state.

pub mod bgp;
pub mod cluster;
pub mod dhcp;
pub mod gateway;
pub mod host;
pub mod kernel;
pub mod metrics;

mod bgp_task;
mod ports;
mod reports;

pub use reports::{COUNTERS_PERIOD, RouterView};

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use vpcip_model::paths;

use vpcip_client::Client;
use vpcip_model::desired::{
    Agent, AgentReport, AgentRole, Desired, Entries, RegisterAgent, WatchBatch,
};

use bgp_task::{BgpStatus, run_bgp};
use ports::{PortNames, dhcp_leases, watch_ports};
use reports::{heartbeat, report_counters, report_nic_drops};

pub struct AgentConfig {
    pub name: String,
    pub role: AgentRole,
    pub underlay_ip: Ipv4Addr,
    /// Prefix of the network namespaces this agent makes (the VPC routers;
    /// the lab gives each world its own).
    pub netns_prefix: String,
    /// The node's network namespace: the agent's own unless it is told to
    /// work on another (the lab's nodes).
    pub node_netns: std::path::PathBuf,
    /// How often the agent reconciles even without a change.
    pub resync: Duration,
    /// Where the agent keeps what it saw of the kernel across restarts.
    pub state_dir: std::path::PathBuf,
    /// Where the reconcile loop records its metrics.
    pub metrics: std::sync::Arc<metrics::AgentMetrics>,
    /// Gateway agents: the local BIRD that speaks BGP for the node.
    pub bird: Option<bgp::Bird>,
}
async fn register(client: &Client, cfg: &AgentConfig) -> Agent {
    let req = RegisterAgent {
        name: cfg.name.clone(),
        role: cfg.role,
        underlay_ip: cfg.underlay_ip,
    };
    let mut delay = Duration::from_millis(100);
    loop {
        match client.post::<_, Agent>(paths::AGENTS, &req).await {
            Ok(a) => return a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register with the controller; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
/// Runs the agent until the process ends.
pub async fn run(client: Client, cfg: AgentConfig) -> ! {
    let agent = register(&client, &cfg).await;
    tracing::info!(id = %agent.id, role = cfg.role.as_str(), "agent registered");
    let (routers_tx, routers_rx) = tokio::sync::watch::channel(Vec::new());
    let (ports_tx, ports_rx) = tokio::sync::watch::channel(Vec::new());
    // The last report, sent again every few seconds while nothing changes:
    // the controller tells a dead agent from an idle one.
    let (report_tx, report_rx) = tokio::sync::watch::channel::<Option<AgentReport>>(None);
    let (bgp_tx, bgp_rx) = tokio::sync::watch::channel(None);
    let bgp_status = BgpStatus::default();
    let cluster = (cfg.role == AgentRole::Gateway)
        .then(|| cluster::Cluster::spawn(cfg.node_netns.clone(), cfg.underlay_ip));
    tokio::spawn(heartbeat(
        client.clone(),
        agent.id.clone(),
        report_rx,
        cluster.clone().map(|c| (c, bgp_status.clone())),
    ));
    let leases = dhcp::Leases::default();
    // A port of ours appeared or went: pass again now.
    let ports_seen = Arc::new(tokio::sync::Notify::new());
    let port_names: PortNames = PortNames::default();
    let mut host = host::HostReconciler::new(&cfg.node_netns, cfg.underlay_ip);
    if cfg.role == AgentRole::Host {
        dhcp::spawn(cfg.node_netns.clone(), leases.clone(), cfg.metrics.clone());
        watch_ports(
            cfg.node_netns.clone(),
            port_names.clone(),
            ports_seen.clone(),
        );
        tokio::spawn(report_nic_drops(
            client.clone(),
            agent.id.clone(),
            cfg.node_netns.clone(),
            ports_rx,
            host.kernel().fastpath_taken(),
            cfg.metrics.clone(),
        ));
    }
    let roles_changed = cluster.as_ref().map_or_else(
        || Arc::new(tokio::sync::Notify::new()),
        |c| c.changed.clone(),
    );
    if cfg.role == AgentRole::Gateway {
        tokio::spawn(report_counters(
            client.clone(),
            agent.id.clone(),
            cfg.node_netns.clone(),
            routers_rx,
            cluster.clone(),
        ));
        tokio::spawn(run_bgp(
            cfg.bird.clone(),
            cfg.underlay_ip,
            bgp_rx,
            bgp_status.clone(),
            cfg.metrics.clone(),
            roles_changed.clone(),
        ));
    }
    let mut gateway =
        gateway::GatewayReconciler::new(&cfg.netns_prefix, &cfg.node_netns, cfg.underlay_ip)
            .remember_in(&cfg.state_dir);
    let mut applied: Option<i64> = None;
    let mut entries = Entries::default();
    let mut have: Option<i64> = None;
    let mut pending = false;
    let mut last: Option<Desired> = None;
    loop {
        // Something desired could not be made yet (a VM's link not there):
        // look again in a second rather than at the next resync.
        let wait = if pending {
            1
        } else {
            cfg.resync.as_secs().max(1)
        };
        // The watch: a snapshot first, then the entries that changed
        // since the revision we have (resumed on any controller).
        let watch = paths::at(paths::AGENT_WATCH, &[&agent.id]);
        let path = match have {
            Some(r) => format!("{watch}?revision={r}&wait={wait}"),
            None => format!("{watch}?wait=0"),
        };
        let fetched = tokio::select! {
            got = client.get::<WatchBatch>(&path) => Some(got.map(|batch| {
                entries.apply(&batch);
                have = Some(batch.revision);
                entries.desired(batch.revision, batch.role)
            })),
            () = ports_seen.notified(), if last.is_some() => None,
            // A gateway election changed who carries what.
            () = roles_changed.notified(), if last.is_some() => None,
        };
        let desired: Desired = match fetched {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "controller unreachable; the data plane keeps its last state");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // The same desired state, for a port that came or went.
            None => match last.take() {
                Some(d) => d,
                None => continue,
            },
        };
        let m = &cfg.metrics;
        m.desired_revision.set(desired.revision);
        m.revision_lag
            .set(applied.map_or(0, |a| (desired.revision - a).max(0)));
        let started = std::time::Instant::now();
        if let Some(g) = &desired.gateway {
            let _ = bgp_tx.send(g.cluster.bgp.clone());
            let list: Vec<RouterView> = g
                .routers
                .iter()
                .map(|r| RouterView {
                    netns: vpcip_sys::netns::named(&gateway::router_netns(
                        &cfg.netns_prefix,
                        &r.vpc_id,
                    )),
                    vpc_id: r.vpc_id.clone(),
                    slot: r.slot,
                    vips: r.vips.clone(),
                    classes: r
                        .nat
                        .iter()
                        .filter_map(|e| e.shaping.map(|s| (s.class, e.eip)))
                        .collect(),
                })
                .collect();
            let _ = routers_tx.send(list);
        }
        if let Some(h) = &desired.host {
            if let Ok(mut names) = port_names.write() {
                *names = h.ports.iter().map(|p| p.ifname.clone()).collect();
            }
            let _ = ports_tx.send(
                h.ports
                    .iter()
                    .map(|p| (p.ifname.clone(), p.nic_id.clone()))
                    .collect(),
            );
        }
        // The pass talks to the kernel synchronously: off the async
        // runtime (in `vpcip allinone` that is the server's own).
        let role = cfg.role;
        let roles = cluster.as_ref().and_then(cluster::Cluster::roles);
        let pass_roles = roles.clone();
        let pass = tokio::task::spawn_blocking(move || {
            let result = match (role, &desired.gateway, &desired.host) {
                (AgentRole::Gateway, Some(state), _) => {
                    gateway.reconcile_with(state, pass_roles.as_ref())
                }
                (AgentRole::Host, _, Some(state)) => {
                    host.reconcile(state).map_err(|e| e.to_string())
                }
                _ => Ok(gateway::Summary::default()),
            };
            (gateway, host, desired, result)
        })
        .await;
        let (desired, result);
        (gateway, host, desired, result) = match pass {
            Ok(done) => done,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        if let Some(h) = &desired.host {
            let mtu = u16::try_from(host.overlay_mtu()).unwrap_or(1450);
            let now = dhcp_leases(h, mtu);
            if let Ok(mut l) = leases.write() {
                *l = now;
            }
        }
        pending = result.as_ref().is_ok_and(|s| s.pending);
        let mut cluster_report = None;
        if let (Some(c), Some(g)) = (&cluster, &desired.gateway) {
            // The elections start after the first pass that made the
            // data plane, and follow the desired state.
            if result.is_ok() {
                c.update(g);
            }
            let carrying = c.carrying();
            m.carrying.clear();
            for slot in &carrying {
                m.carrying
                    .get_or_create(&metrics::SlotLabels { slot: *slot })
                    .set(1);
            }
            let (bgp, mut bgp_error) = bgp_status.lock().map(|s| s.clone()).unwrap_or_default();
            if g.cluster.bgp.is_some() && cfg.bird.is_none() {
                bgp_error = Some(
                    "BGP is configured for this gateway, but its agent runs without --bird-socket and --bird-config".into(),
                );
            }
            if let Some(e) = c.error() {
                bgp_error = Some(e);
            }
            cluster_report = Some(vpcip_model::desired::ClusterReport {
                carrying,
                bgp,
                bgp_error,
                announced: roles
                    .as_ref()
                    .map_or(0, |r| vpcip_dataplane::gateway::announced(g, r).len()),
            });
        }
        m.reconcile_seconds.observe(started.elapsed().as_secs_f64());
        m.passes.inc();
        if let Ok(s) = &result {
            m.changes
                .inc_by(u64::try_from(s.changed).unwrap_or(u64::MAX));
        }
        if result.is_err() {
            m.reconcile_errors.inc();
        }
        let error = match &result {
            Ok(s) => {
                if s.changed > 0 {
                    tracing::info!(
                        revision = desired.revision,
                        changed = s.changed,
                        took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                        "reconciled"
                    );
                }
                None
            }
            Err(e) => {
                tracing::warn!(revision = desired.revision, error = %e, "reconcile failed");
                Some(e.clone())
            }
        };
        let report = AgentReport {
            applied_revision: desired.revision,
            error,
            missing_ports: result
                .as_ref()
                .map(|s| s.missing_ports.clone())
                .unwrap_or_default(),
            cluster: cluster_report,
        };
        if let Err(e) = client
            .post::<_, ()>(&paths::at(paths::AGENT_REPORT, &[&agent.id]), &report)
            .await
        {
            tracing::warn!(error = %e, "cannot report to the controller");
        }
        let _ = report_tx.send(Some(report));
        applied = Some(desired.revision);
        m.applied_revision.set(desired.revision);
        m.revision_lag.set(0);
        last = Some(desired);
    }
}
