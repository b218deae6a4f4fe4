//! Agents, what they report, and the system at a glance (`vpcip status`).

use super::*;

/// An agent as the controller knows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub role: AgentRole,
    #[schema(value_type = String)]
    pub underlay_ip: Ipv4Addr,
    /// The last revision the agent reported applied.
    pub applied_revision: i64,
    /// Unix seconds of the agent's last report.
    pub last_seen: i64,
    /// The agent's last reconcile error, if any.
    pub error: Option<String>,
    /// Host agents: the NICs placed on the host whose port (the link the
    /// hypervisor makes, [`port_ifname`]) it has not found, as last
    /// reported.
    #[serde(default)]
    pub missing_ports: Vec<String>,
    /// Gateway agents: what they carry and their BGP sessions, as last
    /// reported.
    #[serde(default)]
    pub cluster: Option<ClusterReport>,
}

/// The system at a glance (`GET /v1/status`, `vpcip status`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SystemStatus {
    /// The desired state's revision now.
    pub revision: i64,
    /// Unix seconds when the status was read.
    pub now: i64,
    pub agents: Vec<AgentStatus>,
    /// Bound EIPs.
    pub bound_eips: usize,
    /// EIPs the gateways' data planes hold, as last reported.
    pub programmed_eips: usize,
    /// EIPs whose data plane differs from the desired state.
    pub differing: Vec<EipDrift>,
    /// NICs placed on a host whose port the hypervisor has not made (the
    /// host agent looks for it every second).
    #[serde(default)]
    pub missing_ports: Vec<MissingPort>,
    /// What is wrong with the gateways' BGP ([`bgp_problems`]).
    #[serde(default)]
    pub bgp: Vec<BgpProblem>,
}

/// Something wrong with a gateway's BGP.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BgpProblem {
    pub gateway: String,
    /// The peer it concerns, when one.
    #[schema(value_type = Option<String>)]
    pub peer: Option<Ipv4Addr>,
    pub problem: String,
}

/// What is wrong with the gateways' BGP, from their configuration and
/// their agents' last reports: a daemon that cannot be driven, a session
/// not established (a peer that never came up, or is down now), a peer
/// that announces routes to the gateway (refused: a gateway learns
/// nothing), a gateway with BGP and no session up (nothing announced from
/// it).
pub fn bgp_problems(gateways: &[Gateway], agents: &[Agent]) -> Vec<BgpProblem> {
    let mut out = Vec::new();
    for g in gateways {
        let Some(cfg) = &g.bgp else { continue };
        let problem = |peer, problem: String| BgpProblem {
            gateway: g.name.clone(),
            peer,
            problem,
        };
        let report = agents
            .iter()
            .find(|a| a.name == g.name && a.role == AgentRole::Gateway)
            .and_then(|a| a.cluster.as_ref());
        let Some(report) = report else {
            out.push(problem(
                None,
                "its agent has not reported its BGP sessions".into(),
            ));
            continue;
        };
        if let Some(e) = &report.bgp_error {
            out.push(problem(None, e.clone()));
            continue;
        }
        let mut up = 0;
        for p in &cfg.peers {
            match report.bgp.iter().find(|s| s.peer == p.ip) {
                Some(s) if s.state == "established" => {
                    up += 1;
                    if s.drops >= BGP_FLAPPING_DROPS {
                        out.push(problem(
                            Some(p.ip),
                            format!(
                                "flapping: the session went down {} times in the last {} minutes",
                                s.drops,
                                BGP_FLAP_WINDOW_SECONDS / 60
                            ),
                        ));
                    }
                    if s.received > 0 {
                        out.push(problem(
                            Some(p.ip),
                            format!(
                                "the peer announces {} routes to the gateway (refused: a gateway learns nothing from the physical network)",
                                s.received
                            ),
                        ));
                    }
                }
                Some(s) => out.push(problem(
                    Some(p.ip),
                    format!(
                        "session {}{}",
                        s.state,
                        if s.info.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", s.info)
                        }
                    ),
                )),
                None => out.push(problem(Some(p.ip), "no session reported".into())),
            }
        }
        if up == 0 && !cfg.peers.is_empty() {
            out.push(problem(
                None,
                "no BGP session is up: nothing is announced from this gateway".into(),
            ));
        }
    }
    out
}

/// A NIC whose port is missing on its host.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MissingPort {
    pub nic_id: String,
    /// The link the hypervisor must make: `t` + the NIC ID's tail.
    pub port: String,
    pub host: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentStatus {
    #[serde(flatten)]
    pub agent: Agent,
    /// Revisions behind the desired state.
    pub lag: i64,
    pub healthy: bool,
}

/// An EIP whose data plane differs from what is desired.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EipDrift {
    #[schema(value_type = String)]
    pub eip: Ipv4Addr,
    /// Its ID, when it is an EIP.
    pub eip_id: Option<String>,
    /// `not_programmed`: bound, but no gateway holds it; `not_bound`: a
    /// gateway holds it, but it is not bound (or no longer an EIP).
    pub problem: String,
}

/// An EIP's traffic and the gateway that counted it (for metrics).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CountedTraffic {
    pub gateway: String,
    pub traffic: EipTraffic,
}

/// An agent is healthy when it reported within this many seconds (agents
/// report at least every [`AGENT_HEARTBEAT_SECONDS`]).
pub const AGENT_HEALTH_SECONDS: i64 = 15;
/// How often an agent reports when nothing changes.
pub const AGENT_HEARTBEAT_SECONDS: u64 = 5;

impl Agent {
    pub fn healthy(&self, now: i64) -> bool {
        self.last_seen > 0 && now - self.last_seen <= AGENT_HEALTH_SECONDS && self.error.is_none()
    }

    /// What `vpcip status` and `gateway list` say of it.
    pub fn health(&self, now: i64) -> String {
        match (&self.error, self.healthy(now)) {
            (Some(e), _) => format!("error: {e}"),
            (None, true) => "healthy".into(),
            (None, false) if self.last_seen <= 0 => "registered, not reported yet".into(),
            (None, false) => format!("silent for {}s", now - self.last_seen),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    pub name: String,
    pub role: AgentRole,
    #[schema(value_type = String)]
    pub underlay_ip: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentReport {
    pub applied_revision: i64,
    #[serde(default)]
    pub error: Option<String>,
    /// Host agents: the NIC IDs whose port is not there yet.
    #[serde(default)]
    pub missing_ports: Vec<String>,
    /// Gateway agents: the slots they carry and their BGP sessions.
    #[serde(default)]
    pub cluster: Option<ClusterReport>,
}

/// A gateway's part in the cluster, as its agent reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct ClusterReport {
    /// The slots (VRRP router IDs) whose VPCs this gateway carries now:
    /// their traffic passes here and it announces their EIPs.
    pub carrying: Vec<u8>,
    /// Its BGP sessions, as its BGP daemon tells them.
    #[serde(default)]
    pub bgp: Vec<BgpSession>,
    /// Why BGP does not run as configured (the daemon unreachable, its
    /// configuration refused); None when it does or none is configured.
    #[serde(default)]
    pub bgp_error: Option<String>,
    /// Routes announced (the EIP segments, and the /32s of what it
    /// carries).
    #[serde(default)]
    pub announced: usize,
}

/// One BGP session of a gateway.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BgpSession {
    #[schema(value_type = String)]
    pub peer: Ipv4Addr,
    /// `established`, or the state it is stuck in (`idle`, `connect`,
    /// `active`, `opensent`, `openconfirm`, `down`).
    pub state: String,
    /// The daemon's last word on it (an error, "BFD session down"…).
    pub info: String,
    /// Routes the peer sent (they are refused: a gateway learns nothing).
    pub received: u64,
    /// Routes announced to the peer.
    pub exported: u64,
    /// Times the session left `established` in the last
    /// [`BGP_FLAP_WINDOW_SECONDS`] (as the agent saw it, every second).
    #[serde(default)]
    pub drops: u32,
}

/// The window a flapping session's drops are counted over.
pub const BGP_FLAP_WINDOW_SECONDS: u64 = 600;
/// A session that dropped this often in the window is flapping.
pub const BGP_FLAPPING_DROPS: u32 = 3;

/// One EIP's traffic as a gateway node counted it (since the EIP was last
/// bound there).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EipTraffic {
    #[schema(value_type = String)]
    pub eip: Ipv4Addr,
    /// From the physical network towards the EIP.
    pub packets_in: u64,
    pub bytes_in: u64,
    /// From the EIP out to the physical network.
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Packets its bandwidth limit dropped, towards the EIP and from it.
    #[serde(default)]
    pub drops_in: u64,
    #[serde(default)]
    pub drops_out: u64,
}

impl EipTraffic {
    pub fn none(eip: Ipv4Addr) -> Self {
        EipTraffic {
            eip,
            packets_in: 0,
            bytes_in: 0,
            packets_out: 0,
            bytes_out: 0,
            drops_in: 0,
            drops_out: 0,
        }
    }
}

/// A gateway agent's counters: those that changed since its last report;
/// and, when they changed, which MAC holds each VIP of its routers (from the
/// routers' neighbour tables).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CountersReport {
    pub counters: Vec<EipTraffic>,
    /// All of the agent's VIP holders, when they changed; absent otherwise.
    #[serde(default)]
    pub vip_holders: Option<Vec<VipHolder>>,
    /// Every EIP the gateway's data plane holds (steers and counts), when
    /// that changed; absent otherwise. `vpcip status` compares it with the
    /// bound EIPs.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub programmed: Option<Vec<Ipv4Addr>>,
    /// A host agent's report: packets its NICs' security groups dropped,
    /// those that changed.
    #[serde(default)]
    pub nic_drops: Vec<NicDrops>,
}

/// Packets a NIC's security groups dropped since its host's filter was
/// made, as its host agent last reported them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct NicDrops {
    pub nic_id: String,
    /// Coming in (its ingress rules).
    pub packets_in: u64,
    /// Going out (its egress rules).
    pub packets_out: u64,
}

/// The MAC a VPC router last resolved a VIP to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct VipHolder {
    pub vpc_id: String,
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
    pub mac: String,
}

/// Which NIC holds a VIP now, as the data plane sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct VipHolding {
    pub vip_id: String,
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
    /// The NIC whose MAC answers for the VIP, if any is known.
    pub nic_id: Option<String>,
    pub mac: Option<String>,
    /// Whether that NIC is one the VIP is bound to.
    pub bound: bool,
    /// Unix seconds of the gateway report this comes from.
    pub as_of: i64,
}

/// Whether an EIP segment's traffic reaches the gateways, from what they
/// count all the time.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SegmentReach {
    pub subnet_id: String,
    #[schema(value_type = String)]
    pub prefix: ipnet::Ipv4Net,
    /// Addresses of it the gateways' data planes hold (bound EIPs).
    pub held: u64,
    /// The latest packet a gateway counted coming in for one of them.
    pub last_in: Option<PacketSeen>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PacketSeen {
    #[schema(value_type = String)]
    pub eip: Ipv4Addr,
    pub gateway: String,
    /// Unix seconds of the report that counted it.
    pub at: i64,
}

/// A packet counted within this long is recent evidence of the route.
pub const ROUTE_EVIDENCE_SECS: i64 = 600;

impl SegmentReach {
    /// `vpcip eip check-route`'s verdict from the evidence at hand: routed
    /// (`Some(true)`), not reached (`Some(false)`), or nothing to tell by
    /// (`None`), and why.
    pub fn verdict(&self, now: i64) -> (Option<bool>, String) {
        match (&self.last_in, self.held) {
            (Some(p), _) if now - p.at <= ROUTE_EVIDENCE_SECS => (
                Some(true),
                format!(
                    "routed: packets for {} reached {} {} s ago",
                    p.eip,
                    p.gateway,
                    (now - p.at).max(0)
                ),
            ),
            (_, 0) => (
                None,
                "no EIP of it is bound: nothing to check yet".to_string(),
            ),
            (Some(p), held) => (
                None,
                format!(
                    "no packet for its {held} bound EIPs in the last {} min (the last: for {} at {}, {} min ago); `vpcip eip check-route ADDRESS` while sending it traffic tells",
                    ROUTE_EVIDENCE_SECS / 60,
                    p.eip,
                    p.gateway,
                    (now - p.at) / 60
                ),
            ),
            (None, held) => (
                Some(false),
                format!(
                    "not reached: no packet has ever come in for its {held} bound EIPs; does the physical network route {} to the gateway? (`vpcip eip check-route ADDRESS` while sending it traffic)",
                    self.prefix
                ),
            ),
        }
    }
}

/// An EIP's traffic over one sample slot, per second.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TrafficRate {
    /// Unix seconds of the slot's latest sample.
    pub at: i64,
    pub bits_in: f64,
    pub bits_out: f64,
    pub packets_in: f64,
    pub packets_out: f64,
    /// Packets the bandwidth limit dropped.
    pub drops_in: f64,
    pub drops_out: f64,
}

impl TrafficRate {
    /// Rates from cumulative samples `(gateway, slot, at, [packets_in,
    /// bytes_in, packets_out, bytes_out, drops_in, drops_out])` sorted by
    /// gateway then slot: each gateway's rate between its consecutive
    /// samples, summed per slot over the gateways. A count that went back
    /// (the gateway's agent restarted) counts from zero.
    pub fn from_samples(samples: &[(String, i64, i64, [i64; 6])]) -> Vec<TrafficRate> {
        let mut slots: std::collections::BTreeMap<i64, TrafficRate> = Default::default();
        for pair in samples.windows(2) {
            let ((ga, _, at_a, a), (gb, slot, at_b, b)) = (&pair[0], &pair[1]);
            if ga != gb || at_b <= at_a {
                continue;
            }
            let secs = (at_b - at_a) as f64;
            let rate = |i: usize| {
                let d = if b[i] >= a[i] { b[i] - a[i] } else { b[i] };
                d as f64 / secs
            };
            let p = slots.entry(*slot).or_insert(TrafficRate {
                at: *at_b,
                bits_in: 0.0,
                bits_out: 0.0,
                packets_in: 0.0,
                packets_out: 0.0,
                drops_in: 0.0,
                drops_out: 0.0,
            });
            p.at = p.at.max(*at_b);
            p.packets_in += rate(0);
            p.bits_in += rate(1) * 8.0;
            p.packets_out += rate(2);
            p.bits_out += rate(3) * 8.0;
            p.drops_in += rate(4);
            p.drops_out += rate(5);
        }
        slots.into_values().collect()
    }
}

/// An EIP's counters as `vpcip eip show` gives them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct EipCounters {
    pub eip_id: String,
    #[serde(flatten)]
    pub traffic: EipTraffic,
    /// The gateways that counted (the sum is shown), when one has.
    pub gateway: Option<String>,
    /// Unix seconds of that gateway's latest counters report: the counts
    /// are current as of then.
    pub as_of: i64,
    /// The gateway its traffic passes through now (the one carrying its
    /// VPC, [`carrier`]), when it is bound and a gateway reported carrying
    /// it.
    #[serde(default)]
    pub carried_by: Option<String>,
}

/// The gateway that carries VPC `vpc_id` now: the one whose agent last
/// reported winning the election of the VPC's slot.
pub fn carrier(vpc_id: &str, gateways: &[Gateway], agents: &[Agent]) -> Option<String> {
    let slots = gateway_slots(gateways);
    let slot = placement(vpc_id, gateways, &slots)?;
    agents
        .iter()
        .filter(|a| a.role == AgentRole::Gateway)
        .find(|a| {
            a.cluster
                .as_ref()
                .is_some_and(|c| c.carrying.contains(&slot))
        })
        .map(|a| a.name.clone())
}

#[cfg(test)]
mod reach_tests {
    use super::*;

    #[test]
    fn the_route_verdict_follows_the_evidence() {
        let seen = |at| PacketSeen {
            eip: "203.0.113.7".parse().unwrap(),
            gateway: "gw1".into(),
            at,
        };
        let reach = |held, last_in| SegmentReach {
            subnet_id: "subnet-x".into(),
            prefix: "203.0.113.0/24".parse().unwrap(),
            held,
            last_in,
        };
        let now = 100_000;
        let (ok, why) = reach(3, Some(seen(now - 5))).verdict(now);
        assert_eq!(ok, Some(true));
        assert_eq!(why, "routed: packets for 203.0.113.7 reached gw1 5 s ago");
        let (ok, why) = reach(3, None).verdict(now);
        assert_eq!(ok, Some(false));
        assert!(why.starts_with("not reached"), "{why}");
        // Old evidence with EIPs still bound: cannot tell (no traffic, or
        // the route went away).
        let (ok, why) = reach(3, Some(seen(now - 3600))).verdict(now);
        assert_eq!(ok, None);
        assert!(why.contains("60 min ago"), "{why}");
        let (ok, _) = reach(0, None).verdict(now);
        assert_eq!(ok, None);
    }
}
