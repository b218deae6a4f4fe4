//! The agent's Prometheus metrics (served on `--metrics-listen`):
//!
//! - `vpcip_agent_reconcile_duration_seconds` (histogram): one pass;
//! - `vpcip_agent_reconcile_errors_total`: passes that failed;
//! - `vpcip_agent_passes_total`, `vpcip_agent_changes_total`: passes made
//!   and the kernel changes they made (an idle pass makes none);
//! - `vpcip_agent_applied_revision`, `vpcip_agent_desired_revision`: the
//!   revision applied last and the newest one received;
//! - `vpcip_agent_revision_lag`: revisions behind when the newest arrived;
//! - `vpcip_agent_nic_dropped_packets{nic, direction}` (host agents):
//!   packets each NIC's security groups dropped, `in` or `out`;
//! - `vpcip_agent_fastpath_packets` (host agents): packets of established
//!   connections the fast path took around the bridge since the agent
//!   loaded it (read every 2 s with the drops; 0 where the kernel cannot
//!   run it);
//! - `vpcip_agent_dhcp_answers_total{kind}` and
//!   `vpcip_agent_dhcp_answer_duration_seconds` (host agents): DHCP answers
//!   sent (offer, ack, nak), and the time from a request's arrival to its
//!   answer.
//! - `vpcip_agent_gateway_carrying{slot}` (gateway agents): 1 for each
//!   slot whose VPCs this gateway carries now;
//! - `vpcip_agent_bgp_session_up{peer}`, `vpcip_agent_bgp_routes_announced{peer}`
//!   (gateway agents with BGP): each session established or not, and the
//!   routes announced on it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A NIC and a direction (`in`, `out`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NicLabels {
    pub nic: String,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlotLabels {
    pub slot: u8,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

pub struct AgentMetrics {
    pub carrying: Family<SlotLabels, Gauge>,
    pub bgp_up: Family<PeerLabels, Gauge>,
    pub bgp_announced: Family<PeerLabels, Gauge>,
    pub nic_dropped_packets: Family<NicLabels, Gauge>,
    /// Packets the established-flow fast path took around the bridge.
    pub fastpath_packets: Gauge,
    /// DHCP answers sent, by kind (offer, ack, nak).
    pub dhcp_answers: Family<KindLabels, Counter>,
    /// From a request's arrival at the agent to its answer sent.
    pub dhcp_answer_seconds: Histogram,
    pub registry: Registry,
    pub reconcile_seconds: Histogram,
    pub reconcile_errors: Counter,
    /// Passes made, and the kernel changes they made: an idle pass adds
    /// one to the first and nothing to the second.
    pub passes: Counter,
    pub changes: Counter,
    pub applied_revision: Gauge,
    pub desired_revision: Gauge,
    pub revision_lag: Gauge,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vpcip_agent");
        // 1 ms to about 16 s.
        let reconcile_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
        );
        let m = AgentMetrics {
            carrying: Family::default(),
            bgp_up: Family::default(),
            bgp_announced: Family::default(),
            dhcp_answers: Family::default(),
            // 10 µs to about 160 ms.
            dhcp_answer_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.000_01, 2.0, 15),
            ),
            reconcile_seconds,
            reconcile_errors: Counter::default(),
            passes: Counter::default(),
            changes: Counter::default(),
            applied_revision: Gauge::default(),
            desired_revision: Gauge::default(),
            revision_lag: Gauge::default(),
            nic_dropped_packets: Family::default(),
            fastpath_packets: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "fastpath_packets",
            "Packets of established connections the fast path took around the bridge",
            m.fastpath_packets.clone(),
        );
        registry.register(
            "nic_dropped_packets",
            "Packets a NIC's security groups dropped",
            m.nic_dropped_packets.clone(),
        );
        registry.register(
            "gateway_carrying",
            "1 for each slot whose VPCs this gateway carries now",
            m.carrying.clone(),
        );
        registry.register(
            "bgp_session_up",
            "1 when the BGP session to the peer is established",
            m.bgp_up.clone(),
        );
        registry.register(
            "bgp_routes_announced",
            "Routes announced to the BGP peer",
            m.bgp_announced.clone(),
        );
        registry.register(
            "dhcp_answers",
            "DHCP answers the host agent sent to its guests",
            m.dhcp_answers.clone(),
        );
        registry.register_with_unit(
            "dhcp_answer_duration",
            "From a guest's DHCP request reaching the host agent to the answer sent",
            prometheus_client::registry::Unit::Seconds,
            m.dhcp_answer_seconds.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile pass took",
            prometheus_client::registry::Unit::Seconds,
            m.reconcile_seconds.clone(),
        );
        registry.register("passes", "Reconcile passes made", m.passes.clone());
        registry.register(
            "changes",
            "Kernel changes the passes made (none in an idle pass)",
            m.changes.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile passes that failed",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "applied_revision",
            "The desired-state revision applied last",
            m.applied_revision.clone(),
        );
        registry.register(
            "desired_revision",
            "The newest desired-state revision received",
            m.desired_revision.clone(),
        );
        registry.register(
            "revision_lag",
            "Revisions the agent was behind when the newest arrived",
            m.revision_lag.clone(),
        );
        AgentMetrics { registry, ..m }
    }
}

impl AgentMetrics {
    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
