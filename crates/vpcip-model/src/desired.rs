//! Desired data-plane state: what each agent must make of the kernel,
//! computed from the resources by pure functions. Agents receive it whole
//! (level-triggered), so a restarted or drifted agent converges by diffing.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
}

/// An agent is healthy when it reported within this many seconds.
pub const AGENT_HEALTH_SECONDS: i64 = 30;

impl Agent {
    pub fn healthy(&self, now: i64) -> bool {
        now - self.last_seen <= AGENT_HEALTH_SECONDS && self.error.is_none()
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
}

/// One EIP's 1:1 NAT on a VPC router.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct NatEntry {
    #[schema(value_type = String)]
    pub eip: Ipv4Addr,
    #[schema(value_type = String)]
    pub private_ip: Ipv4Addr,
    pub eip_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RouterSubnet {
    pub subnet_id: String,
    #[schema(value_type = String)]
    pub cidr: Ipv4Net,
    #[schema(value_type = Option<String>)]
    pub gateway: Option<Ipv4Addr>,
}

/// A VPC's router on a gateway node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct VpcRouter {
    pub vpc_id: String,
    pub subnets: Vec<RouterSubnet>,
    /// NAT-mode EIPs bound in this VPC.
    pub nat: Vec<NatEntry>,
    /// Visible-mode EIPs, routed untranslated to their NIC.
    #[schema(value_type = Vec<String>)]
    pub visible: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct GatewayState {
    pub routers: Vec<VpcRouter>,
}

/// What an agent gets: the store's revision and its whole desired state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Desired {
    pub revision: i64,
    pub gateway: Option<GatewayState>,
}

/// The gateway's desired state: one router per tenant VPC, with its guest
/// subnets and the EIPs bound in it.
pub fn gateway_state(vpcs: &[Vpc], subnets: &[Subnet], eips: &[Eip]) -> GatewayState {
    let routers = vpcs
        .iter()
        .filter(|v| !v.is_default)
        .map(|v| {
            let mut nat: Vec<NatEntry> = eips
                .iter()
                .filter(|e| e.vpc_id.as_deref() == Some(v.id.as_str()) && e.mode == EipMode::Nat)
                .filter_map(|e| {
                    e.private_ip.map(|p| NatEntry {
                        eip: e.ip,
                        private_ip: p,
                        eip_id: e.id.clone(),
                    })
                })
                .collect();
            nat.sort();
            let mut visible: Vec<Ipv4Addr> = eips
                .iter()
                .filter(|e| {
                    e.vpc_id.as_deref() == Some(v.id.as_str()) && e.mode == EipMode::Visible
                })
                .map(|e| e.ip)
                .collect();
            visible.sort();
            VpcRouter {
                vpc_id: v.id.clone(),
                subnets: subnets
                    .iter()
                    .filter(|s| s.vpc_id == v.id && s.kind == SubnetKind::Guest)
                    .map(|s| RouterSubnet {
                        subnet_id: s.id.clone(),
                        cidr: s.cidr,
                        gateway: s.gateway,
                    })
                    .collect(),
                nat,
                visible,
            }
        })
        .collect();
    GatewayState { routers }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routers_carry_their_bound_eips() {
        let vpc = |id: &str, default| Vpc {
            id: id.into(),
            tenant: "t".into(),
            name: id.into(),
            cidr: "10.0.0.0/8".parse().unwrap(),
            secondary_cidrs: vec![],
            is_default: default,
        };
        let eip = |ip: &str, vpc: Option<&str>, private: Option<&str>, mode| Eip {
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
        };
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
        let s = gateway_state(
            &[vpc("d", true), vpc("v1", false), vpc("v2", false)],
            &[],
            &eips,
        );
        assert_eq!(s.routers.len(), 2, "the default VPC has no router");
        assert_eq!(s.routers[0].nat.len(), 2);
        assert_eq!(s.routers[0].nat[0].eip.to_string(), "203.0.113.1", "sorted");
        assert!(s.routers[1].nat.is_empty());
        assert_eq!(s.routers[1].visible.len(), 1);
    }
}
