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

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use vpcip_client::Client;
use vpcip_model::desired::{
    Agent, AgentReport, AgentRole, CountersReport, Desired, EipTraffic, RegisterAgent, VipHolder,
};

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

/// What the BGP task last learnt: the sessions, or why there are none.
type BgpStatus = Arc<std::sync::Mutex<(Vec<vpcip_model::desired::BgpSession>, Option<String>)>>;

/// Keeps the local BIRD's configuration as the desired state says and
/// reads its sessions every second.
async fn run_bgp(
    bird: Option<bgp::Bird>,
    underlay: Ipv4Addr,
    want: tokio::sync::watch::Receiver<Option<vpcip_model::BgpConfig>>,
    status: BgpStatus,
    metrics: Arc<metrics::AgentMetrics>,
    changed: Arc<tokio::sync::Notify>,
) {
    let flaps = Arc::new(std::sync::Mutex::new(bgp::Flaps::default()));
    loop {
        let bgp = want.borrow().clone();
        let flaps = flaps.clone();
        let bird = bird.clone();
        let got = tokio::task::spawn_blocking(move || -> (Vec<_>, Option<String>) {
            let (Some(bird), Some(bgp)) = (bird, bgp) else {
                return (vec![], None);
            };
            let text = bgp::render(underlay, &bgp);
            if let Err(e) = bird.ensure(&text) {
                return (vec![], Some(e));
            }
            let peers: Vec<Ipv4Addr> = bgp.peers.iter().map(|p| p.ip).collect();
            match bird.sessions(&peers) {
                Ok(mut s) => {
                    if let Ok(mut f) = flaps.lock() {
                        f.observe(&mut s, std::time::Instant::now());
                    }
                    (s, None)
                }
                Err(e) => (vec![], Some(e)),
            }
        })
        .await;
        if let Ok((sessions, error)) = got {
            metrics.bgp_up.clear();
            metrics.bgp_announced.clear();
            for s in &sessions {
                let l = metrics::PeerLabels {
                    peer: s.peer.to_string(),
                };
                metrics
                    .bgp_up
                    .get_or_create(&l)
                    .set(i64::from(s.state == "established"));
                metrics
                    .bgp_announced
                    .get_or_create(&l)
                    .set(i64::try_from(s.exported).unwrap_or(i64::MAX));
            }
            if let Ok(mut st) = status.lock() {
                // A session came up or went down: report it now.
                let states = |s: &[vpcip_model::desired::BgpSession]| -> Vec<(Ipv4Addr, String)> {
                    s.iter().map(|b| (b.peer, b.state.clone())).collect()
                };
                if states(&st.0) != states(&sessions) || st.1 != error {
                    changed.notify_one();
                }
                *st = (sessions, error);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn register(client: &Client, cfg: &AgentConfig) -> Agent {
    let req = RegisterAgent {
        name: cfg.name.clone(),
        role: cfg.role,
        underlay_ip: cfg.underlay_ip,
    };
    let mut delay = Duration::from_millis(100);
    loop {
        match client.post::<_, Agent>("/v1/agents", &req).await {
            Ok(a) => return a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register with the controller; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// What the counters reader needs of a router: its namespace, its VPC, the
/// VPC's VIPs and each limited EIP's bandwidth class.
#[derive(Clone)]
pub struct RouterView {
    pub netns: std::path::PathBuf,
    pub vpc_id: String,
    pub vips: Vec<Ipv4Addr>,
    pub classes: Vec<(u16, Ipv4Addr)>,
    /// The slot it is placed on.
    pub slot: u8,
}

/// How often a gateway reports its per-EIP counters (those that changed).
pub const COUNTERS_PERIOD: Duration = Duration::from_secs(2);

/// Reads the node's per-EIP counters every [`COUNTERS_PERIOD`] (or less
/// often when reading them takes long) and reports those that changed (all
/// of them after a failed report).
async fn report_counters(
    client: Client,
    agent_id: String,
    node: std::path::PathBuf,
    routers: tokio::sync::watch::Receiver<Vec<RouterView>>,
    cluster: Option<cluster::Cluster>,
) {
    let mut sent: std::collections::BTreeMap<Ipv4Addr, EipTraffic> = Default::default();
    let mut sent_holders: Option<Vec<VipHolder>> = None;
    let mut sent_programmed: Option<Vec<Ipv4Addr>> = None;
    let reading = std::sync::Arc::new(std::sync::Mutex::new(gateway::CounterReading::default()));
    let mut period = COUNTERS_PERIOD;
    loop {
        tokio::time::sleep(period).await;
        let node = node.clone();
        let started = std::time::Instant::now();
        let views = routers.borrow().clone();
        // The VIP holders as the gateway carrying each VPC sees them (a
        // standby's router may have seen no advert lately).
        let standby = cluster
            .as_ref()
            .and_then(cluster::Cluster::roles)
            .map(|r| r.backup)
            .unwrap_or_default();
        let reading = reading.clone();
        let read = tokio::task::spawn_blocking(move || {
            let carried: Vec<RouterView> = views
                .iter()
                .filter(|v| !standby.contains(&v.slot))
                .cloned()
                .collect();
            let mut reading = reading
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            gateway::read_counters(&node, &views, &mut reading).map(|c| {
                (
                    c,
                    gateway::read_vip_holders(&carried),
                    reading.steered.clone(),
                )
            })
        })
        .await;
        // Reading counters costs more with many active EIPs: spend at most
        // a tenth of the time on it.
        period = COUNTERS_PERIOD.max(started.elapsed() * 10);
        let (now, holders, programmed) = match read {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot read the counters yet");
                continue;
            }
            Err(_) => continue,
        };
        let changed: Vec<EipTraffic> = now
            .iter()
            .filter(|c| sent.get(&c.eip) != Some(c))
            .copied()
            .collect();
        let report = CountersReport {
            counters: changed,
            vip_holders: (sent_holders.as_ref() != Some(&holders)).then(|| holders.clone()),
            programmed: (sent_programmed.as_ref() != Some(&programmed)).then(|| programmed.clone()),
            nic_drops: vec![],
        };
        match client
            .post::<_, ()>(&format!("/v1/agents/{agent_id}/counters"), &report)
            .await
        {
            Ok(()) => {
                sent = now.into_iter().map(|c| (c.eip, c)).collect();
                sent_holders = Some(holders);
                sent_programmed = Some(programmed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot report counters");
                sent.clear();
                sent_holders = None;
                sent_programmed = None;
            }
        }
    }
}

/// Reads the packets each NIC's security groups dropped every
/// [`COUNTERS_PERIOD`], reports those that changed (all after a failed
/// report) and keeps them in the agent's metrics. `ports`: each VM port's
/// NIC, from the desired state.
async fn report_nic_drops(
    client: Client,
    agent_id: String,
    node: std::path::PathBuf,
    ports: tokio::sync::watch::Receiver<Vec<(String, String)>>,
    metrics: std::sync::Arc<metrics::AgentMetrics>,
) {
    let mut sent: std::collections::BTreeMap<String, vpcip_model::desired::NicDrops> =
        Default::default();
    loop {
        tokio::time::sleep(COUNTERS_PERIOD).await;
        let node = node.clone();
        let read = tokio::task::spawn_blocking(move || kernel::host::read_port_drops(&node)).await;
        let Ok(Ok(by_port)) = read else {
            continue;
        };
        let nics: std::collections::BTreeMap<String, String> =
            ports.borrow().iter().cloned().collect();
        let now: Vec<vpcip_model::desired::NicDrops> = by_port
            .iter()
            .filter_map(|(port, d)| {
                nics.get(port).map(|nic| vpcip_model::desired::NicDrops {
                    nic_id: nic.clone(),
                    packets_in: d.packets_in,
                    packets_out: d.packets_out,
                })
            })
            .collect();
        for d in &now {
            for (direction, v) in [("in", d.packets_in), ("out", d.packets_out)] {
                metrics
                    .nic_dropped_packets
                    .get_or_create(&metrics::NicLabels {
                        nic: d.nic_id.clone(),
                        direction,
                    })
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
        }
        let changed: Vec<_> = now
            .iter()
            .filter(|d| sent.get(&d.nic_id) != Some(*d))
            .cloned()
            .collect();
        if changed.is_empty() {
            continue;
        }
        let report = CountersReport {
            nic_drops: changed,
            ..Default::default()
        };
        match client
            .post::<_, ()>(&format!("/v1/agents/{agent_id}/counters"), &report)
            .await
        {
            Ok(()) => sent = now.into_iter().map(|d| (d.nic_id.clone(), d)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot report NIC drops");
                sent.clear();
            }
        }
    }
}

/// Sends the agent's last report again every
/// [`vpcip_model::desired::AGENT_HEARTBEAT_SECONDS`].
async fn heartbeat(
    client: Client,
    id: String,
    last: tokio::sync::watch::Receiver<Option<AgentReport>>,
    cluster: Option<(cluster::Cluster, BgpStatus)>,
) {
    let period = Duration::from_secs(vpcip_model::desired::AGENT_HEARTBEAT_SECONDS);
    loop {
        tokio::time::sleep(period).await;
        let mut report = last.borrow().clone();
        // What the cluster does now, not at the last pass.
        if let (Some(r), Some((c, bgp))) = (report.as_mut(), &cluster)
            && let Some(cr) = r.cluster.as_mut()
        {
            cr.carrying = c.carrying();
            if let Ok(b) = bgp.lock() {
                cr.bgp = b.0.clone();
                if cr.bgp_error.is_none() || b.1.is_some() {
                    cr.bgp_error = b.1.clone();
                }
            }
        }
        if let Some(r) = report
            && let Err(e) = client
                .post::<_, ()>(&format!("/v1/agents/{id}/report"), &r)
                .await
        {
            tracing::debug!(error = %e, "heartbeat not delivered");
        }
    }
}

/// The names of the host's VM ports, as the last desired state gave them.
type PortNames = Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>;

/// Watches the host's links: when one of its VM ports is made or goes (a
/// hypervisor's tap), `seen` wakes the loop for a pass at once.
fn watch_ports(node: std::path::PathBuf, names: PortNames, seen: Arc<tokio::sync::Notify>) {
    let watch = move || {
        loop {
            let mut events = match vpcip_sys::link_events::LinkEvents::open(&node) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the host's links; again in a second");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            loop {
                match events.wait() {
                    Ok(changed) => {
                        let ours = names
                            .read()
                            .is_ok_and(|n| changed.iter().any(|c| c.is_empty() || n.contains(c)));
                        if ours {
                            seen.notify_one();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watching the host's links failed; again");
                        break;
                    }
                }
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("links".into())
        .spawn(watch)
    {
        tracing::error!(error = %e, "cannot watch the host's links");
    }
}

/// What the host's DHCP server answers, by port.
fn dhcp_leases(
    h: &vpcip_model::desired::HostState,
    mtu: u16,
) -> std::collections::BTreeMap<String, dhcp::PortLease> {
    h.ports
        .iter()
        .filter_map(|p| {
            Some((
                p.ifname.clone(),
                dhcp::PortLease {
                    mac: vpcip_dataplane::isolation::parse_mac(&p.mac)?,
                    lease: p.dhcp.clone()?,
                    mtu,
                },
            ))
        })
        .collect()
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
    let mut host = host::HostReconciler::new(&cfg.node_netns, cfg.underlay_ip);
    let mut applied: Option<i64> = None;
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
        let path = match applied {
            Some(r) => format!("/v1/agents/{}/desired?after={r}&wait={wait}", agent.id),
            None => format!("/v1/agents/{}/desired", agent.id),
        };
        let fetched = tokio::select! {
            got = client.get::<Desired>(&path) => Some(got),
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
            .post::<_, ()>(&format!("/v1/agents/{}/report", agent.id), &report)
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
