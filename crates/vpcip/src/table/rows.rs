//! Each resource as a row of a list.

use serde::Serialize;
use vpcip_model::*;

use super::Tabular;

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}

impl Tabular for Zone {
    const HEADER: &'static [&'static str] = &["ID", "NAME"];
    fn row(&self) -> Vec<String> {
        vec![self.id.clone(), self.name.clone()]
    }
}

impl Tabular for HostNetwork {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "CIDR"];
    fn row(&self) -> Vec<String> {
        vec![self.id.clone(), self.name.clone(), self.cidr.to_string()]
    }
}

impl Tabular for Gateway {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "UNDERLAY IP", "DEFAULT SNAT"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.underlay_ip.to_string(),
            snat(self),
        ]
    }
}

/// A gateway with its agent, if one registered.
#[derive(Serialize)]
pub struct GatewayHealth {
    #[serde(flatten)]
    pub gateway: Gateway,
    pub agent: Option<vpcip_model::desired::Agent>,
}

fn health(a: &vpcip_model::desired::Agent) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    a.health(now)
}

/// A gateway's default SNAT address, or why VMs without an EIP reach
/// nothing outside.
fn snat(g: &Gateway) -> String {
    g.snat_ip
        .map_or_else(|| "none (no EIP segment)".into(), |ip| ip.to_string())
}

impl Tabular for GatewayHealth {
    const HEADER: &'static [&'static str] = &[
        "ID",
        "NAME",
        "UNDERLAY IP",
        "DEFAULT SNAT",
        "SLOT",
        "CARRIES",
        "BGP",
        "AGENT",
        "APPLIED REVISION",
    ];
    fn row(&self) -> Vec<String> {
        let g = &self.gateway;
        let report = self.agent.as_ref().and_then(|a| a.cluster.as_ref());
        let slot = if g.drained {
            format!("{} (drained)", g.slot)
        } else {
            g.slot.to_string()
        };
        let carries = match report {
            Some(c) if c.carrying.is_empty() => "nothing".into(),
            Some(c) => format!(
                "slot{} {}",
                if c.carrying.len() > 1 { "s" } else { "" },
                c.carrying
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None => "-".into(),
        };
        vec![
            g.id.clone(),
            g.name.clone(),
            g.underlay_ip.to_string(),
            snat(g),
            slot,
            carries,
            bgp(g, report),
            self.agent
                .as_ref()
                .map_or_else(|| "no agent".into(), health),
            self.agent
                .as_ref()
                .map_or_else(|| "-".into(), |a| a.applied_revision.to_string()),
        ]
    }
}

/// A gateway's BGP sessions as its agent reported them: `static` without
/// BGP; each peer's state and the routes announced to it.
fn bgp(g: &Gateway, report: Option<&vpcip_model::desired::ClusterReport>) -> String {
    let Some(cfg) = &g.bgp else {
        return "static".into();
    };
    if let Some(e) = report.and_then(|r| r.bgp_error.as_deref()) {
        return format!("error: {e}");
    }
    let sessions = report.map(|r| r.bgp.as_slice()).unwrap_or_default();
    cfg.peers
        .iter()
        .map(|p| match sessions.iter().find(|s| s.peer == p.ip) {
            Some(s) if s.state == "established" => {
                format!("{} established, {} routes", p.ip, s.exported)
            }
            Some(s) if s.info.is_empty() => format!("{} {}", p.ip, s.state),
            Some(s) => format!("{} {} ({})", p.ip, s.state, s.info),
            None => format!("{} not reported yet", p.ip),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Tabular for vpcip_model::desired::Agent {
    const HEADER: &'static [&'static str] =
        &["ID", "NAME", "UNDERLAY IP", "HEALTH", "APPLIED REVISION"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.underlay_ip.to_string(),
            health(self),
            self.applied_revision.to_string(),
        ]
    }
}

impl Tabular for PhysicalRoute {
    const HEADER: &'static [&'static str] = &["NETWORK PREFIX", "NEXT HOP", "GATEWAY"];
    fn row(&self) -> Vec<String> {
        vec![
            self.prefix.to_string(),
            self.next_hop.to_string(),
            self.gateway.clone(),
        ]
    }
}

impl Tabular for Vpc {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "TENANT", "CIDR", "SECONDARY CIDRS"];
    fn row(&self) -> Vec<String> {
        let sec: Vec<String> = self
            .secondary_cidrs
            .iter()
            .map(ToString::to_string)
            .collect();
        vec![
            self.id.clone(),
            self.name.clone(),
            self.tenant.clone(),
            self.cidr.to_string(),
            if sec.is_empty() {
                "-".into()
            } else {
                sec.join(",")
            },
        ]
    }
}

impl Tabular for Subnet {
    const HEADER: &'static [&'static str] = &[
        "ID", "NAME", "TYPE", "VPC", "ZONE", "CIDR", "RANGE", "GATEWAY", "USED",
    ];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.kind.as_str().into(),
            self.vpc_id.clone(),
            opt(&self.zone_id),
            self.cidr.to_string(),
            format!("{}-{}", self.range_start, self.range_end),
            opt(&self.gateway),
            format!("{}/{}", self.used, self.total),
        ]
    }
}

impl Tabular for SecurityGroup {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "VPC", "TYPE", "MANAGED", "RULES"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.vpc_id.clone(),
            self.kind.as_str().into(),
            self.managed.to_string(),
            self.rules.len().to_string(),
        ]
    }
}

impl Tabular for Server {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "TENANT", "ZONE", "HOST", "NICS"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.tenant.clone(),
            self.zone_id.clone(),
            self.host.clone().unwrap_or_else(|| "-".into()),
            self.nic_ids.join(","),
        ]
    }
}

impl Tabular for Nic {
    const HEADER: &'static [&'static str] = &[
        "ID",
        "NAME",
        "SUBNET",
        "IP",
        "MAC",
        "SERVER",
        "PRIMARY",
        "SRC/DST CHECK",
        "VIPS",
    ];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.subnet_id.clone(),
            self.ip.to_string(),
            self.mac.clone(),
            opt(&self.server_id),
            self.primary.to_string(),
            if self.source_dest_check { "on" } else { "off" }.into(),
            self.vip_ids.len().to_string(),
        ]
    }
}

impl Tabular for Vip {
    const HEADER: &'static [&'static str] = &["ID", "NAME", "SUBNET", "IP", "NICS", "EIP"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.subnet_id.clone(),
            self.ip.to_string(),
            if self.nic_ids.is_empty() {
                "-".into()
            } else {
                self.nic_ids.join(",")
            },
            opt(&self.eip_id),
        ]
    }
}

impl Tabular for Eip {
    const HEADER: &'static [&'static str] = &[
        "ID",
        "NAME",
        "IP",
        "BANDWIDTH",
        "MODE",
        "BOUND TO",
        "SERVER",
        "PRIVATE IP",
        "ALGS",
        "TENANT",
    ];
    fn row(&self) -> Vec<String> {
        let bound = match (&self.nic_id(), &self.vip_id()) {
            (Some(n), _) => format!("nic {n}"),
            (_, Some(v)) => format!("vip {v}"),
            _ => "-".into(),
        };
        vec![
            self.id.clone(),
            if self.name.is_empty() {
                "-".into()
            } else {
                self.name.clone()
            },
            self.ip.to_string(),
            if self.bandwidth_mbps >= vpcip_model::rules::MAX_BANDWIDTH_MBPS {
                "unlimited".into()
            } else {
                format!("{} Mbit/s", self.bandwidth_mbps)
            },
            self.mode().as_str().into(),
            bound,
            opt(&self.server_id()),
            opt(&self.private_ip()),
            if self.algs.is_empty() {
                "-".into()
            } else {
                self.algs
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            },
            self.tenant.clone(),
        ]
    }
}

impl Tabular for Token {
    const HEADER: &'static [&'static str] = &["ID", "TENANT", "AGENT", "EC2", "DESCRIPTION"];
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.tenant.clone(),
            match (self.agent, self.agent_role) {
                (false, _) => "-".into(),
                (true, Some(r)) => format!("{} ({})", self.tenant, r.as_str()),
                (true, None) => "no role: refused".into(),
            },
            if self.ec2 { "yes".into() } else { "-".into() },
            self.description.clone(),
        ]
    }
}
