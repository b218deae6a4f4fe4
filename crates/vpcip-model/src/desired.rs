//! Desired data-plane state: what each agent must make of the kernel,
//! computed from the resources by pure functions. Agents receive it whole
//! (level-triggered), so a restarted or drifted agent converges by diffing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::filter;
use crate::resources::*;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AgentRole {
    Gateway,
    Host,
}

impl AgentRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentRole::Gateway => "gateway",
            AgentRole::Host => "host",
        }
    }
}

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

/// One EIP's 1:1 NAT on a VPC router. A visible-mode EIP is an identity
/// entry (EIP → EIP): the router's rules then pass it untranslated, and its
/// connections are tracked like every other EIP's.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct NatEntry {
    #[schema(value_type = String)]
    pub eip: Ipv4Addr,
    #[schema(value_type = String)]
    pub private_ip: Ipv4Addr,
    pub eip_id: String,
    /// Its bandwidth limit on the gateway; None when it has none (the
    /// maximum, [`crate::rules::MAX_BANDWIDTH_MBPS`], is the line rate).
    #[serde(default)]
    pub shaping: Option<Shaping>,
    /// The NAT helpers attached to its traffic.
    #[serde(default)]
    pub algs: Vec<Alg>,
}

/// An EIP's bandwidth limit, shaped in both directions on its router's
/// links: HTB class `1:<class>` at `mbps` Mbit/s.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shaping {
    pub class: u16,
    pub mbps: u32,
}

/// HTB classes for one router's limited EIPs (in address order): the
/// address's low 16 bits when that class is free, else the next free one
/// (1 to 0xfffe), so an EIP keeps its class while others come and go. None
/// for the EIPs beyond the 65,534 classes one router has.
pub fn assign_classes(eips: &[Ipv4Addr]) -> Vec<Option<u16>> {
    const LAST: u32 = 0xfffe;
    let mut taken = vec![false; LAST as usize + 1];
    let mut free = LAST;
    eips.iter()
        .map(|ip| {
            if free == 0 {
                return None;
            }
            let mut c = (u32::from(*ip) & 0xffff).clamp(1, LAST);
            while taken[c as usize] {
                c = if c == LAST { 1 } else { c + 1 };
            }
            taken[c as usize] = true;
            free -= 1;
            u16::try_from(c).ok()
        })
        .collect()
}

/// A subnet's L2 domain: its VXLAN network identifier and the VTEPs (the
/// underlay addresses of the other nodes with a port in it) that broadcast,
/// unknown-unicast and multicast frames are replicated to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct L2Domain {
    pub subnet_id: String,
    pub vni: u32,
    #[schema(value_type = Vec<String>)]
    pub vteps: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RouterSubnet {
    #[serde(flatten)]
    pub l2: L2Domain,
    #[schema(value_type = String)]
    pub cidr: Ipv4Net,
    #[schema(value_type = Option<String>)]
    pub gateway: Option<Ipv4Addr>,
}

/// A VPC's router on a gateway node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct VpcRouter {
    pub vpc_id: String,
    /// The router's number: its link to the gateway node is
    /// [`router_link`]`(index)`.
    pub index: u32,
    /// The slot it is placed on ([`Cluster::slots`]).
    #[serde(default)]
    pub slot: u8,
    pub subnets: Vec<RouterSubnet>,
    /// The EIPs bound in this VPC, NAT and visible mode (the latter as
    /// identity entries); the gateway node routes each to this router.
    pub nat: Vec<NatEntry>,
    /// The visible-mode EIPs among them.
    #[schema(value_type = Vec<String>)]
    pub visible: Vec<Ipv4Addr>,
    /// The VPC's VIPs: the router reports which MAC holds each.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub vips: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct GatewayState {
    pub routers: Vec<VpcRouter>,
    /// The EIP segments: addresses in them that are not bound are
    /// unreachable at the gateway rather than sent back to the physical
    /// network.
    #[schema(value_type = Vec<String>)]
    pub eip_segments: Vec<Ipv4Net>,
    /// The infrastructure VMs must never reach (the host networks and the
    /// agents' addresses): the gateway drops what its routers send there,
    /// the default SNAT and EIP traffic included, unless
    /// [`Self::infra_allow`] lists it.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub infrastructure: Vec<Ipv4Net>,
    /// The operator's explicit exceptions (e.g. a DNS resolver on the
    /// underlay); empty unless configured.
    #[serde(default)]
    pub infra_allow: Vec<InfraService>,
    /// This gateway's default SNAT address ([`crate::Gateway::snat_ip`]):
    /// what the routers masquerade leaves the node from it, and nothing
    /// leaves without it.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub snat_ip: Option<Ipv4Addr>,
    /// The gateway cluster: who carries what, where the others are, BGP.
    #[serde(default)]
    pub cluster: Cluster,
}

/// VRRP among the gateways: advertisement interval, centiseconds (three
/// missed adverts and a dead gateway's VPCs move: ~0.16 s).
pub const GATEWAY_ADVERT_CS: u16 = 5;

/// The gateway cluster as one gateway sees it. Every gateway holds every
/// VPC router with the same maps (a 1:1 NAT is a bijection: any of them
/// translates an established flow mid-stream); the VPCs placed on a slot
/// pass through the gateway that wins that slot's VRRP election, which
/// also announces their EIPs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct Cluster {
    /// This gateway's own slot (its VRRP router ID).
    pub slot: u8,
    /// Drained: it wins no election while another gateway lives, and
    /// announces nothing.
    pub drained: bool,
    /// VRRP advertisement interval among the gateways, centiseconds.
    pub advert_cs: u16,
    /// The other gateways' underlay addresses: where its adverts go.
    #[schema(value_type = Vec<String>)]
    pub peers: Vec<Ipv4Addr>,
    /// Every slot of the cluster.
    pub slots: Vec<Slot>,
    /// Its BGP sessions; None: static routes.
    pub bgp: Option<crate::BgpConfig>,
}

impl Cluster {
    pub fn slot(&self, vrid: u8) -> Option<&Slot> {
        self.slots.iter().find(|s| s.vrid == vrid)
    }
}

/// One slot: a gateway's share of the VPCs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Slot {
    pub vrid: u8,
    /// The gateway it is placed on.
    pub owner: String,
    /// This gateway's VRRP priority for it: 250 for its owner, one of
    /// 101 to 200 for the others (distinct: one backup wins), 1 when
    /// drained.
    pub priority: u8,
    /// The owner's default SNAT address: the slot's VPCs leave from it
    /// whichever gateway carries them, so their connections survive a
    /// move when the VM speaks first.
    #[schema(value_type = Option<String>)]
    pub snat_ip: Option<Ipv4Addr>,
}

/// FNV-1a: a hash that never changes between releases (placements and
/// priorities must not move when the controller is upgraded).
fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Each gateway's slot: its own, or (gateways registered before clusters,
/// slot 0) the lowest free ones in ID order.
pub fn gateway_slots(gateways: &[Gateway]) -> BTreeMap<&str, u8> {
    let mut taken: BTreeSet<u8> = gateways.iter().map(|g| g.slot).filter(|s| *s > 0).collect();
    let mut out: BTreeMap<&str, u8> = gateways
        .iter()
        .filter(|g| g.slot > 0)
        .map(|g| (g.id.as_str(), g.slot))
        .collect();
    let mut unnumbered: Vec<&Gateway> = gateways.iter().filter(|g| g.slot == 0).collect();
    unnumbered.sort_by(|a, b| a.id.cmp(&b.id));
    for g in unnumbered {
        if let Some(free) = (1..=255u8).find(|s| !taken.contains(s)) {
            taken.insert(free);
            out.insert(g.id.as_str(), free);
        }
    }
    out
}

/// The slot VPC `vpc_id` is placed on: rendezvous hashing over the
/// gateways, so adding or removing one moves only its share.
pub fn placement(vpc_id: &str, gateways: &[Gateway], slots: &BTreeMap<&str, u8>) -> Option<u8> {
    gateways
        .iter()
        .filter_map(|g| Some((stable_hash(&[vpc_id, &g.id]), *slots.get(g.id.as_str())?)))
        .max()
        .map(|(_, s)| s)
}

/// Gateway `me`'s VRRP priority for the slot owned by `owner`.
fn slot_priority(me: &Gateway, owner: &Gateway, vrid: u8, gateways: &[Gateway]) -> u8 {
    if me.drained {
        return 1;
    }
    if me.id == owner.id {
        return 250;
    }
    let v = vrid.to_string();
    let mut others: Vec<&Gateway> = gateways
        .iter()
        .filter(|g| g.id != owner.id && !g.drained)
        .collect();
    others.sort_by_key(|g| (std::cmp::Reverse(stable_hash(&[&v, &g.id])), g.id.clone()));
    let rank = others.iter().position(|g| g.id == me.id).unwrap_or(0);
    200u8.saturating_sub(u8::try_from(rank.min(99)).unwrap_or(99))
}
/// One infrastructure service VMs may reach: `udp 192.0.2.53 53`.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub struct InfraService {
    pub protocol: InfraProtocol,
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
    pub port: u16,
}

#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum InfraProtocol {
    Tcp,
    Udp,
}

impl InfraProtocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            InfraProtocol::Tcp => 6,
            InfraProtocol::Udp => 17,
        }
    }
}

impl std::fmt::Display for InfraService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.protocol {
            InfraProtocol::Tcp => "tcp",
            InfraProtocol::Udp => "udp",
        };
        write!(f, "{p} {} {}", self.ip, self.port)
    }
}

impl std::str::FromStr for InfraService {
    type Err = String;

    /// `tcp|udp ADDRESS PORT`, as the server's configuration file lists it.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("infrastructure service `{s}`: expected `tcp|udp ADDRESS PORT`");
        let mut words = s.split_whitespace();
        let (Some(p), Some(ip), Some(port), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(bad());
        };
        let protocol = match p {
            "tcp" => InfraProtocol::Tcp,
            "udp" => InfraProtocol::Udp,
            _ => return Err(bad()),
        };
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 || ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(bad());
        }
        Ok(InfraService { protocol, ip, port })
    }
}

/// A VM's port on a host: the NIC's link (made by the hypervisor, named
/// [`port_ifname`]) joined to its subnet's L2 domain.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct HostPort {
    pub nic_id: String,
    pub ifname: String,
    pub vni: u32,
    pub mac: String,
    /// The addresses the NIC may send from: its own and its VIPs'.
    #[schema(value_type = Vec<String>)]
    pub ips: Vec<Ipv4Addr>,
    /// When false, the NIC may send from any address (routers, NAT VMs).
    pub source_dest_check: bool,
    /// The NIC's security groups (IDs, in [`HostState::groups`]).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The other NICs of its VIPs: VRRP from them passes.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub vrrp_peers: Vec<Ipv4Addr>,
    /// Its VPC's conntrack zone (the VPC's number): two VPCs' connections
    /// never mix, whatever their addresses.
    #[serde(default)]
    pub zone: u16,
    /// What the host answers the NIC's DHCP requests with.
    #[serde(default)]
    pub dhcp: Option<DhcpLease>,
}

/// A NIC's DHCP answer, but for the MTU (the host's overlay MTU, which the
/// host agent knows): its address for as long as the NIC exists.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DhcpLease {
    #[schema(value_type = String)]
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// The subnet's gateway: the server identifier the guest sees (the
    /// host answers in its name).
    #[schema(value_type = String)]
    pub server: Ipv4Addr,
    /// The default route (option 3): the primary NIC's only, so that a
    /// secondary ENI never takes the default route.
    #[schema(value_type = Option<String>)]
    pub router: Option<Ipv4Addr>,
    #[schema(value_type = Vec<String>)]
    pub dns_servers: Vec<Ipv4Addr>,
    /// Classless static routes (option 121): the subnet's host routes,
    /// and the default route with them when the NIC has one (a client
    /// that takes option 121 ignores option 3).
    pub routes: Vec<crate::resources::HostRoute>,
    /// The server's name, when the NIC is attached (option 12).
    pub hostname: Option<String>,
    pub lease_seconds: u32,
}

/// The server's `[dhcp]` settings: DNS servers for subnets that name none,
/// and the lease time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DhcpDefaults {
    #[serde(default)]
    pub dns_servers: Vec<Ipv4Addr>,
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u32,
}

/// A day, as Neutron's `dhcp_lease_duration`.
pub const DEFAULT_LEASE_SECONDS: u32 = 86_400;

fn default_lease_seconds() -> u32 {
    DEFAULT_LEASE_SECONDS
}

impl Default for DhcpDefaults {
    fn default() -> Self {
        DhcpDefaults {
            dns_servers: vec![],
            lease_seconds: DEFAULT_LEASE_SECONDS,
        }
    }
}

impl DhcpDefaults {
    /// The settings, checked: DNS servers as a subnet's, a lease of two
    /// minutes to a year.
    pub fn checked(self) -> Result<Self, crate::error::RuleError> {
        crate::rules::check_subnet_dhcp(
            SubnetKind::Guest,
            Ipv4Net::default(),
            None,
            &self.dns_servers,
            &[],
        )?;
        if !(120..=31_536_000).contains(&self.lease_seconds) {
            return Err(crate::error::RuleError::invalid(
                "dhcp.lease_seconds",
                format!(
                    "{} is not between 120 (two minutes) and 31536000 (a year)",
                    self.lease_seconds
                ),
            ));
        }
        Ok(self)
    }
}

/// The DHCP answer of NIC `n` in `subnet`, on `server` when attached.
pub fn dhcp_lease(
    n: &Nic,
    subnet: &Subnet,
    server: Option<&Server>,
    defaults: &DhcpDefaults,
) -> Option<DhcpLease> {
    let gateway = subnet.gateway?;
    let router = n.primary.then_some(gateway);
    let mut routes = subnet.host_routes.clone();
    if let Some(g) = router
        && !routes.is_empty()
    {
        routes.push(crate::resources::HostRoute {
            destination: Ipv4Net::default(),
            next_hop: g,
        });
    }
    Some(DhcpLease {
        ip: n.ip,
        prefix_len: subnet.cidr.prefix_len(),
        server: gateway,
        router,
        dns_servers: if subnet.dns_servers.is_empty() {
            defaults.dns_servers.clone()
        } else {
            subnet.dns_servers.clone()
        },
        routes,
        hostname: server.map(|s| s.name.clone()),
        lease_seconds: defaults.lease_seconds,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct HostState {
    pub domains: Vec<L2Domain>,
    pub ports: Vec<HostPort>,
    /// The security groups of the ports, compiled.
    #[serde(default)]
    pub groups: Vec<crate::filter::GroupFilter>,
}

/// What an agent gets: the store's revision and its whole desired state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Desired {
    pub revision: i64,
    pub gateway: Option<GatewayState>,
    pub host: Option<HostState>,
}

/// What the gateway node's ends of the router links are named after.
pub const ROUTER_IFPREFIX: &str = "vr";

/// Router links are /31s in 169.254.0.0/16; number 0 is not used, and
/// 169.254.250.2 and above are left for node-local links (`vpcip
/// allinone`'s host namespace).
pub const MAX_ROUTERS: u32 = 32000;

/// The addresses of router `index`'s link: the gateway node's end and the
/// router's (`up0`) end of a /31.
pub fn router_link(index: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(169, 254, 0, 0)) + 2 * index.min(MAX_ROUTERS);
    (Ipv4Addr::from(base), Ipv4Addr::from(base + 1))
}

/// The link-local block the router links are numbered from: the gateway
/// node masquerades what leaves it from there (the VPCs' default SNAT).
pub fn router_links_block() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(169, 254, 0, 0), 16).unwrap_or_default()
}

/// The tail of a resource ID (after its kind's prefix), for link names.
fn id_tail(id: &str) -> &str {
    id.rsplit('-').next().unwrap_or(id)
}

/// The gateway node's end of a VPC router's link (`vr` + the VPC ID's tail).
pub fn router_ifname(vpc_id: &str) -> String {
    format!("{ROUTER_IFPREFIX}{}", id_tail(vpc_id))
}

/// The host's end of a NIC's port (`t` + the NIC ID's tail): the name the
/// hypervisor gives the VM's tap or veth.
pub fn port_ifname(nic_id: &str) -> String {
    format!("t{}", id_tail(nic_id))
}

/// Everything the desired states are computed from.
pub struct World<'a> {
    pub vpcs: &'a [Vpc],
    pub subnets: &'a [Subnet],
    pub eips: &'a [Eip],
    pub servers: &'a [Server],
    pub nics: &'a [Nic],
    pub vips: &'a [Vip],
    pub agents: &'a [Agent],
    pub host_networks: &'a [HostNetwork],
    pub gateways: &'a [Gateway],
    pub security_groups: &'a [SecurityGroup],
    pub dhcp: &'a DhcpDefaults,
}

impl World<'_> {
    /// The host each NIC's server runs on, by NIC ID.
    fn nic_hosts(&self) -> BTreeMap<&str, Ipv4Addr> {
        let hosts: BTreeMap<&str, Ipv4Addr> = self
            .agents
            .iter()
            .filter(|a| a.role == AgentRole::Host)
            .map(|a| (a.name.as_str(), a.underlay_ip))
            .collect();
        let mut out = BTreeMap::new();
        for s in self.servers {
            if let Some(ip) = s.host.as_deref().and_then(|h| hosts.get(h)) {
                for n in &s.nic_ids {
                    out.insert(n.as_str(), *ip);
                }
            }
        }
        out
    }

    /// Each guest subnet's VTEPs: the gateways and the hosts with a port in
    /// it, by subnet ID.
    fn vteps(&self) -> BTreeMap<&str, BTreeSet<Ipv4Addr>> {
        let nic_hosts = self.nic_hosts();
        let gateways: BTreeSet<Ipv4Addr> = self
            .agents
            .iter()
            .filter(|a| a.role == AgentRole::Gateway)
            .map(|a| a.underlay_ip)
            .collect();
        let mut out: BTreeMap<&str, BTreeSet<Ipv4Addr>> = self
            .subnets
            .iter()
            .filter(|s| s.kind == SubnetKind::Guest)
            .map(|s| (s.id.as_str(), gateways.clone()))
            .collect();
        for n in self.nics {
            if let (Some(ip), Some(set)) = (
                nic_hosts.get(n.id.as_str()),
                out.get_mut(n.subnet_id.as_str()),
            ) {
                set.insert(*ip);
            }
        }
        out
    }

    /// Desired state of the agent `agent`.
    pub fn desired(&self, revision: i64, agent: &Agent) -> Desired {
        match agent.role {
            AgentRole::Gateway => Desired {
                revision,
                gateway: Some(self.gateway(agent)),
                host: None,
            },
            AgentRole::Host => Desired {
                revision,
                gateway: None,
                host: Some(self.host(agent)),
            },
        }
    }

    /// The gateway's desired state: one router per tenant VPC, with its
    /// guest subnets and the EIPs bound in it.
    pub fn gateway(&self, agent: &Agent) -> GatewayState {
        let me = agent.underlay_ip;
        let vteps = self.vteps();
        let slots = gateway_slots(self.gateways);
        let cluster = self.cluster(agent, &slots);
        let routers = self
            .vpcs
            .iter()
            .filter(|v| !v.is_default)
            .map(|v| {
                let bound = |e: &&Eip| e.vpc_id.as_deref() == Some(v.id.as_str());
                let mut bound_here: Vec<&Eip> = self
                    .eips
                    .iter()
                    .filter(bound)
                    .filter(|e| e.private_ip.is_some())
                    .collect();
                bound_here.sort_by_key(|e| e.ip);
                let limited: Vec<Ipv4Addr> = bound_here
                    .iter()
                    .filter(|e| e.bandwidth_mbps < crate::rules::MAX_BANDWIDTH_MBPS)
                    .map(|e| e.ip)
                    .collect();
                let classes: BTreeMap<Ipv4Addr, u16> = limited
                    .iter()
                    .zip(assign_classes(&limited))
                    .filter_map(|(ip, c)| Some((*ip, c?)))
                    .collect();
                let nat: Vec<NatEntry> = bound_here
                    .iter()
                    .filter_map(|e| {
                        e.private_ip.map(|p| NatEntry {
                            eip: e.ip,
                            private_ip: if e.mode == EipMode::Visible { e.ip } else { p },
                            eip_id: e.id.clone(),
                            shaping: classes.get(&e.ip).map(|&class| Shaping {
                                class,
                                mbps: e.bandwidth_mbps,
                            }),
                            algs: e.algs.clone(),
                        })
                    })
                    .collect();
                let mut visible: Vec<Ipv4Addr> = self
                    .eips
                    .iter()
                    .filter(bound)
                    .filter(|e| e.mode == EipMode::Visible && e.private_ip.is_some())
                    .map(|e| e.ip)
                    .collect();
                visible.sort();
                let mut vips: Vec<Ipv4Addr> = self
                    .vips
                    .iter()
                    .filter(|x| x.vpc_id == v.id)
                    .map(|x| x.ip)
                    .collect();
                vips.sort();
                VpcRouter {
                    vpc_id: v.id.clone(),
                    index: v.router_index,
                    slot: placement(&v.id, self.gateways, &slots).unwrap_or(0),
                    vips,
                    subnets: self
                        .subnets
                        .iter()
                        .filter(|s| s.vpc_id == v.id && s.kind == SubnetKind::Guest)
                        .map(|s| RouterSubnet {
                            l2: L2Domain {
                                subnet_id: s.id.clone(),
                                vni: s.vni,
                                vteps: vteps
                                    .get(s.id.as_str())
                                    .map(|set| set.iter().copied().filter(|ip| *ip != me).collect())
                                    .unwrap_or_default(),
                            },
                            cidr: s.cidr,
                            gateway: s.gateway,
                        })
                        .collect(),
                    nat,
                    visible,
                }
            })
            .collect();
        let mut eip_segments: Vec<Ipv4Net> = self
            .subnets
            .iter()
            .filter(|s| s.kind == SubnetKind::Eip)
            .map(|s| s.cidr)
            .collect();
        eip_segments.sort();
        // The host networks, and every agent's address (also one outside
        // them, or before any host network is registered).
        let mut infrastructure: Vec<Ipv4Net> = self
            .host_networks
            .iter()
            .map(|h| h.cidr)
            .chain(self.agents.iter().map(|a| Ipv4Net::from(a.underlay_ip)))
            .collect();
        infrastructure.sort();
        infrastructure.dedup();
        GatewayState {
            routers,
            eip_segments,
            infrastructure,
            infra_allow: Vec::new(),
            snat_ip: self
                .gateways
                .iter()
                .find(|g| g.name == agent.name)
                .and_then(|g| g.snat_ip),
            cluster,
        }
    }

    /// The cluster as gateway agent `agent` must know it.
    fn cluster(&self, agent: &Agent, slots: &BTreeMap<&str, u8>) -> Cluster {
        let Some(me) = self.gateways.iter().find(|g| g.name == agent.name) else {
            return Cluster::default();
        };
        let mut peers: Vec<Ipv4Addr> = self
            .gateways
            .iter()
            .filter(|g| g.id != me.id)
            .map(|g| g.underlay_ip)
            .collect();
        peers.sort();
        let mut out: Vec<Slot> = self
            .gateways
            .iter()
            .filter_map(|owner| {
                let vrid = *slots.get(owner.id.as_str())?;
                Some(Slot {
                    vrid,
                    owner: owner.name.clone(),
                    priority: slot_priority(me, owner, vrid, self.gateways),
                    snat_ip: owner.snat_ip,
                })
            })
            .collect();
        out.sort_by_key(|s| s.vrid);
        Cluster {
            slot: slots.get(me.id.as_str()).copied().unwrap_or(0),
            drained: me.drained,
            advert_cs: GATEWAY_ADVERT_CS,
            peers,
            slots: out,
            bgp: me.bgp.clone(),
        }
    }

    /// A host's desired state: a port per NIC of the servers placed on it,
    /// and the L2 domains of their subnets.
    pub fn host(&self, agent: &Agent) -> HostState {
        let vteps = self.vteps();
        let here: BTreeMap<&str, &Server> = self
            .servers
            .iter()
            .filter(|s| s.host.as_deref() == Some(agent.name.as_str()))
            .flat_map(|s| s.nic_ids.iter().map(move |n| (n.as_str(), s)))
            .collect();
        let subnets: BTreeMap<&str, &Subnet> =
            self.subnets.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut ports = Vec::new();
        let mut domains: BTreeMap<u32, L2Domain> = BTreeMap::new();
        let zones: BTreeMap<&str, u16> = self
            .vpcs
            .iter()
            .map(|v| (v.id.as_str(), u16::try_from(v.router_index).unwrap_or(0)))
            .collect();
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for n in self
            .nics
            .iter()
            .filter(|n| here.contains_key(n.id.as_str()))
        {
            let Some(subnet) = subnets.get(n.subnet_id.as_str()) else {
                continue;
            };
            if subnet.kind != SubnetKind::Guest {
                continue;
            }
            let mut ips = vec![n.ip];
            ips.extend(
                self.vips
                    .iter()
                    .filter(|v| v.nic_ids.contains(&n.id))
                    .map(|v| v.ip),
            );
            ips.sort();
            ips.dedup();
            used.extend(n.security_group_ids.iter().map(String::as_str));
            ports.push(HostPort {
                nic_id: n.id.clone(),
                ifname: port_ifname(&n.id),
                vni: subnet.vni,
                mac: n.mac.clone(),
                ips,
                source_dest_check: n.source_dest_check,
                security_groups: n.security_group_ids.clone(),
                vrrp_peers: filter::vrrp_peers(n, self.nics, self.vips),
                zone: zones.get(n.vpc_id.as_str()).copied().unwrap_or(0),
                dhcp: dhcp_lease(n, subnet, here.get(n.id.as_str()).copied(), self.dhcp),
            });
            domains.entry(subnet.vni).or_insert_with(|| L2Domain {
                subnet_id: subnet.id.clone(),
                vni: subnet.vni,
                vteps: vteps
                    .get(subnet.id.as_str())
                    .map(|set| {
                        set.iter()
                            .copied()
                            .filter(|ip| *ip != agent.underlay_ip)
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        ports.sort_by(|a, b| a.nic_id.cmp(&b.nic_id));
        let members = filter::group_members(self.nics, self.vips);
        let mut groups: Vec<filter::GroupFilter> = self
            .security_groups
            .iter()
            .filter(|g| used.contains(g.id.as_str()))
            .map(|g| filter::compile_group(g, &members))
            .collect();
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        HostState {
            domains: domains.into_values().collect(),
            ports,
            groups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_is_healthy_while_it_reports() {
        let mut a = Agent {
            id: "agent-1".into(),
            name: "h1".into(),
            role: AgentRole::Host,
            underlay_ip: Ipv4Addr::new(192, 0, 2, 11),
            applied_revision: 0,
            last_seen: 0,
            error: None,
            missing_ports: vec![],
            cluster: None,
        };
        assert_eq!(a.health(1_000), "registered, not reported yet");
        a.last_seen = 990;
        assert_eq!(a.health(1_000), "healthy");
        assert_eq!(a.health(990 + AGENT_HEALTH_SECONDS + 1), "silent for 16s");
        a.error = Some("setns failed".into());
        assert_eq!(a.health(1_000), "error: setns failed");
    }

    fn gateway(name: &str, slot: u8, drained: bool) -> Gateway {
        Gateway {
            id: format!("gw-{name}"),
            name: name.into(),
            underlay_ip: Ipv4Addr::new(192, 0, 2, 20 + slot),
            snat_ip: Some(Ipv4Addr::new(203, 0, 113, 250 + slot)),
            slot,
            drained,
            bgp: None,
        }
    }

    #[test]
    fn bgp_problems_name_the_gateway_the_peer_and_what_is_wrong() {
        let mut g = gateway("a", 1, false);
        g.bgp = Some(crate::BgpConfig {
            local_as: 64513,
            peers: vec![
                crate::BgpPeer {
                    ip: Ipv4Addr::new(192, 0, 2, 1),
                    peer_as: 64512,
                },
                crate::BgpPeer {
                    ip: Ipv4Addr::new(192, 0, 2, 9),
                    peer_as: 64512,
                },
            ],
            bfd: true,
        });
        let mut a = agent("a", AgentRole::Gateway, "192.0.2.21");
        let session = |last: u8, state: &str, info: &str, received| BgpSession {
            peer: Ipv4Addr::new(192, 0, 2, last),
            state: state.into(),
            info: info.into(),
            received,
            exported: 3,
            drops: 0,
        };
        a.cluster = Some(ClusterReport {
            carrying: vec![1],
            bgp: vec![
                session(1, "established", "", 2),
                session(9, "active", "Socket: Connection refused", 0),
            ],
            bgp_error: None,
            announced: 3,
        });
        let p = bgp_problems(std::slice::from_ref(&g), std::slice::from_ref(&a));
        let text: Vec<String> = p.iter().map(|p| p.problem.clone()).collect();
        assert_eq!(p.len(), 2, "{text:?}");
        assert!(text[0].contains("announces 2 routes"), "{text:?}");
        assert_eq!(text[1], "session active (Socket: Connection refused)");
        // None up: said too.
        a.cluster.as_mut().unwrap().bgp[0].state = "idle".into();
        let p = bgp_problems(std::slice::from_ref(&g), std::slice::from_ref(&a));
        assert!(
            p.iter()
                .any(|p| p.problem.starts_with("no BGP session is up"))
        );
        // Without BGP, nothing to say.
        g.bgp = None;
        assert!(bgp_problems(&[g], &[a]).is_empty());
    }

    #[test]
    fn slots_are_kept_and_the_unnumbered_get_the_lowest_free() {
        let gws = [
            gateway("a", 2, false),
            gateway("b", 0, false),
            gateway("c", 0, false),
        ];
        let s = gateway_slots(&gws);
        assert_eq!((s["gw-a"], s["gw-b"], s["gw-c"]), (2, 1, 3));
    }

    #[test]
    fn placement_spreads_vpcs_and_moves_only_the_share_of_a_new_gateway() {
        let two = [gateway("a", 1, false), gateway("b", 2, false)];
        let three = [
            gateway("a", 1, false),
            gateway("b", 2, false),
            gateway("c", 3, false),
        ];
        let (s2, s3) = (gateway_slots(&two), gateway_slots(&three));
        let vpcs: Vec<String> = (0..300).map(|i| format!("vpc-{i:05}")).collect();
        let on = |v: &str, g: &[Gateway], s: &BTreeMap<&str, u8>| placement(v, g, s).unwrap();
        let per_slot = |slot| vpcs.iter().filter(|v| on(v, &two, &s2) == slot).count();
        assert!(
            per_slot(1) > 100 && per_slot(2) > 100,
            "{} / {}",
            per_slot(1),
            per_slot(2)
        );
        for v in &vpcs {
            let before = on(v, &two, &s2);
            let after = on(v, &three, &s3);
            assert!(
                after == before || after == 3,
                "{v} moved from {before} to {after}"
            );
        }
    }

    #[test]
    fn the_owner_wins_its_slot_one_backup_is_next_and_a_drained_gateway_last() {
        let gws = [
            gateway("a", 1, false),
            gateway("b", 2, false),
            gateway("c", 3, true),
        ];
        let (a, b, c) = (&gws[0], &gws[1], &gws[2]);
        assert_eq!(slot_priority(a, a, 1, &gws), 250);
        assert_eq!(
            slot_priority(b, a, 1, &gws),
            200,
            "the only undrained other"
        );
        assert_eq!(slot_priority(c, a, 1, &gws), 1, "drained");
        assert_eq!(slot_priority(c, c, 3, &gws), 1, "drained, even for its own");
        let p = [slot_priority(a, c, 3, &gws), slot_priority(b, c, 3, &gws)];
        assert!(p.contains(&200) && p.contains(&199), "{p:?}: distinct");
    }

    #[test]
    fn classes_follow_the_low_bits_and_probe_past_collisions() {
        let ips: Vec<Ipv4Addr> = ["203.0.113.5", "198.51.100.0", "10.1.113.5", "10.2.255.255"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            assign_classes(&ips),
            vec![
                Some(0x7105),
                Some(0x6400),
                Some(0x7106), // 113.5 again: the next free class
                Some(0xfffe), // 0xffff is not a class: clamped
            ]
        );
        // Class 0 is not a class either.
        assert_eq!(
            assign_classes(&["10.0.0.0".parse().unwrap()]),
            vec![Some(1)]
        );
        // 65,534 classes, then none.
        let many: Vec<Ipv4Addr> = (0..65_536u32)
            .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
            .collect();
        let got = assign_classes(&many);
        assert_eq!(got.iter().filter(|c| c.is_some()).count(), 65_534);
        let distinct: BTreeSet<u16> = got.iter().flatten().copied().collect();
        assert_eq!(distinct.len(), 65_534);
    }

    fn vpc(id: &str, default: bool) -> Vpc {
        Vpc {
            id: id.into(),
            tenant: "t".into(),
            name: id.into(),
            cidr: "10.0.0.0/8".parse().unwrap(),
            secondary_cidrs: vec![],
            is_default: default,
            router_index: if default { 0 } else { 1 },
        }
    }

    fn eip(ip: &str, vpc: Option<&str>, private: Option<&str>, mode: EipMode) -> Eip {
        Eip {
            id: format!("eip-{ip}"),
            tenant: "t".into(),
            name: String::new(),
            subnet_id: "seg".into(),
            ip: ip.parse().unwrap(),
            bandwidth_mbps: 1,
            mode,
            nic_id: None,
            vip_id: None,
            server_id: None,
            private_ip: private.map(|p| p.parse().unwrap()),
            vpc_id: vpc.map(Into::into),
            algs: vec![],
        }
    }

    fn subnet(id: &str, vpc: &str, cidr: &str, vni: u32, kind: SubnetKind) -> Subnet {
        let cidr: Ipv4Net = cidr.parse().unwrap();
        Subnet {
            id: id.into(),
            tenant: "t".into(),
            name: id.into(),
            vpc_id: vpc.into(),
            zone_id: None,
            kind,
            cidr,
            range_start: cidr.network(),
            range_end: cidr.broadcast(),
            gateway: None,
            total: 0,
            used: 0,
            vni,
            dns_servers: vec![],
            host_routes: vec![],
        }
    }

    fn agent(name: &str, role: AgentRole, ip: &str) -> Agent {
        Agent {
            id: format!("agent-{name}"),
            name: name.into(),
            role,
            underlay_ip: ip.parse().unwrap(),
            applied_revision: 0,
            last_seen: 0,
            error: None,
            missing_ports: vec![],
            cluster: None,
        }
    }

    fn server(id: &str, host: &str, nics: &[&str]) -> Server {
        Server {
            id: id.into(),
            tenant: "t".into(),
            name: id.into(),
            zone_id: "z".into(),
            nic_ids: nics.iter().map(|n| n.to_string()).collect(),
            host: Some(host.into()),
        }
    }

    fn nic(id: &str, subnet: &str, ip: &str) -> Nic {
        Nic {
            id: id.into(),
            tenant: "t".into(),
            name: id.into(),
            vpc_id: "v1".into(),
            subnet_id: subnet.into(),
            zone_id: "z".into(),
            ip: ip.parse().unwrap(),
            mac: "00:16:3e:00:00:01".into(),
            server_id: None,
            primary: true,
            security_group_ids: vec![],
            source_dest_check: true,
            vip_ids: vec![],
        }
    }

    #[test]
    fn routers_carry_their_bound_eips() {
        let eips = [
            eip("203.0.113.2", Some("v1"), Some("10.0.0.3"), EipMode::Nat),
            eip("203.0.113.1", Some("v1"), Some("10.0.0.2"), EipMode::Nat),
            eip("203.0.113.3", None, None, EipMode::Nat),
            eip(
                "203.0.113.4",
                Some("v2"),
                Some("203.0.113.4"),
                EipMode::Visible,
            ),
        ];
        let world = World {
            vpcs: &[vpc("d", true), vpc("v1", false), vpc("v2", false)],
            subnets: &[subnet("seg", "d", "203.0.113.0/24", 0, SubnetKind::Eip)],
            eips: &eips,
            servers: &[],
            nics: &[],
            vips: &[],
            agents: &[],
            host_networks: &[],
            gateways: &[Gateway {
                id: "gw-1".into(),
                name: "gw".into(),
                underlay_ip: "192.0.2.2".parse().unwrap(),
                snat_ip: Some("203.0.113.254".parse().unwrap()),
                slot: 0,
                drained: false,
                bgp: None,
            }],
            security_groups: &[],
            dhcp: &DhcpDefaults::default(),
        };
        let s = world.gateway(&agent("gw", AgentRole::Gateway, "192.0.2.2"));
        assert_eq!(
            s.snat_ip,
            Some("203.0.113.254".parse().unwrap()),
            "its own gateway's default SNAT address"
        );
        let other = world.gateway(&agent("gw2", AgentRole::Gateway, "192.0.2.3"));
        assert_eq!(other.snat_ip, None, "not another gateway's");
        assert_eq!(s.routers.len(), 2, "the default VPC has no router");
        assert_eq!(s.routers[0].nat.len(), 2);
        assert_eq!(s.routers[0].nat[0].eip.to_string(), "203.0.113.1", "sorted");
        assert_eq!(s.routers[1].visible.len(), 1);
        assert_eq!(
            s.routers[1].nat[0].private_ip, s.routers[1].nat[0].eip,
            "a visible EIP is an identity entry"
        );
        assert_eq!(s.eip_segments.len(), 1);
    }

    #[test]
    fn l2_domains_list_the_other_vteps_with_a_port_in_the_subnet() {
        let agents = [
            agent("gw", AgentRole::Gateway, "192.0.2.2"),
            agent("h1", AgentRole::Host, "192.0.2.11"),
            agent("h2", AgentRole::Host, "192.0.2.12"),
        ];
        let subnets = [
            subnet("a", "v1", "10.0.1.0/24", 10, SubnetKind::Guest),
            subnet("b", "v1", "10.0.2.0/24", 11, SubnetKind::Guest),
        ];
        let servers = [
            server("s1", "h1", &["nic-1"]),
            server("s2", "h2", &["nic-2"]),
            server("s3", "h2", &["nic-3"]),
        ];
        let nics = [
            nic("nic-1", "a", "10.0.1.2"),
            nic("nic-2", "a", "10.0.1.3"),
            nic("nic-3", "b", "10.0.2.2"),
        ];
        let vips = [Vip {
            id: "vip-1".into(),
            tenant: "t".into(),
            name: "v".into(),
            vpc_id: "v1".into(),
            subnet_id: "a".into(),
            ip: "10.0.1.100".parse().unwrap(),
            nic_ids: vec!["nic-1".into()],
            eip_id: None,
        }];
        let world = World {
            vpcs: &[vpc("v1", false)],
            subnets: &subnets,
            eips: &[],
            servers: &servers,
            nics: &nics,
            vips: &vips,
            agents: &agents,
            host_networks: &[],
            gateways: &[],
            security_groups: &[],
            dhcp: &DhcpDefaults::default(),
        };
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        // Every agent's address is infrastructure to the gateway, a host
        // network registered or not.
        let g = world.gateway(&agents[0]);
        let want: Vec<Ipv4Net> = ["192.0.2.2/32", "192.0.2.11/32", "192.0.2.12/32"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(g.infrastructure, want);
        let h1 = world.host(&agents[1]);
        assert_eq!(h1.domains.len(), 1);
        assert_eq!(h1.domains[0].vteps, vec![ip("192.0.2.2"), ip("192.0.2.12")]);
        assert_eq!(h1.ports[0].ifname, "t1");
        assert_eq!(
            h1.ports[0].ips,
            vec![ip("10.0.1.2"), ip("10.0.1.100")],
            "its VIP too"
        );
        let h2 = world.host(&agents[2]);
        assert_eq!(h2.domains.len(), 2);
        assert_eq!(h2.domains[0].vteps, vec![ip("192.0.2.2"), ip("192.0.2.11")]);
        assert_eq!(h2.domains[1].vteps, vec![ip("192.0.2.2")]);
        let gw = world.gateway(&agents[0]);
        let r = &gw.routers[0];
        assert_eq!(
            r.subnets[0].l2.vteps,
            vec![ip("192.0.2.11"), ip("192.0.2.12")]
        );
        assert_eq!(r.subnets[1].l2.vteps, vec![ip("192.0.2.12")]);
    }

    #[test]
    fn router_links_are_distinct_slash_31s() {
        assert_eq!(
            router_link(1),
            (Ipv4Addr::new(169, 254, 0, 2), Ipv4Addr::new(169, 254, 0, 3))
        );
        assert_eq!(router_link(MAX_ROUTERS).1, Ipv4Addr::new(169, 254, 250, 1));
        assert_eq!(router_ifname("vpc-abcdefghjk"), "vrabcdefghjk");
        assert!(port_ifname("nic-abcdefghjk").len() <= 15);
    }
}
