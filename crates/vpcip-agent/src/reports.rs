//! What the agent reports besides each pass: a gateway's per-EIP
//! counters and VIP holders, a host's NIC drops, and the heartbeat.

use std::net::Ipv4Addr;
use std::time::Duration;
use vpcip_model::paths;

use vpcip_client::Client;
use vpcip_model::desired::{AgentReport, CountersReport, EipTraffic, VipHolder};

use crate::bgp_task::BgpStatus;
use crate::{cluster, gateway, kernel, metrics};

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
pub(crate) async fn report_counters(
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
            .post::<_, ()>(&paths::at(paths::AGENT_COUNTERS, &[&agent_id]), &report)
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
pub(crate) async fn report_nic_drops(
    client: Client,
    agent_id: String,
    node: std::path::PathBuf,
    ports: tokio::sync::watch::Receiver<Vec<(String, String)>>,
    fastpath: vpcip_sys::fastpath::TakenCount,
    metrics: std::sync::Arc<metrics::AgentMetrics>,
) {
    let mut sent: std::collections::BTreeMap<String, vpcip_model::desired::NicDrops> =
        Default::default();
    loop {
        tokio::time::sleep(COUNTERS_PERIOD).await;
        if let Some(n) = fastpath.read() {
            metrics
                .fastpath_packets
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
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
            .post::<_, ()>(&paths::at(paths::AGENT_COUNTERS, &[&agent_id]), &report)
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
pub(crate) async fn heartbeat(
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
                .post::<_, ()>(&paths::at(paths::AGENT_REPORT, &[&id]), &r)
                .await
        {
            tracing::debug!(error = %e, "heartbeat not delivered");
        }
    }
}
