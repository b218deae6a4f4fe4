//! Security groups and their rules, with the rules' text form (`ingress:tcp:80:0.0.0.0/0`).

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SgKind {
    #[default]
    Basic,
    Advanced,
}

impl SgKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SgKind::Basic => "basic",
            SgKind::Advanced => "advanced",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    All,
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SgRule {
    /// Given by the server (`sgr-…`); empty in requests.
    #[serde(default)]
    pub id: String,
    pub direction: Direction,
    pub protocol: Protocol,
    /// Inclusive port range; only for tcp and udp.
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    /// Exactly one of `remote_cidr` and `remote_group` is set.
    #[schema(value_type = Option<String>)]
    pub remote_cidr: Option<Ipv4Net>,
    pub remote_group: Option<String>,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::All => "all",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

/// A rule written `DIRECTION:PROTOCOL[:PORTS]:REMOTE`, e.g.
/// `ingress:tcp:80-443:0.0.0.0/0` or `ingress:all:sg-web` (a remote group).
impl std::fmt::Display for SgRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.direction.as_str(), self.protocol.as_str())?;
        match (self.port_min, self.port_max) {
            (Some(a), Some(b)) if a == b => write!(f, ":{a}")?,
            (Some(a), Some(b)) => write!(f, ":{a}-{b}")?,
            _ => {}
        }
        match (&self.remote_cidr, &self.remote_group) {
            (Some(c), _) => write!(f, ":{c}"),
            (None, Some(g)) => write!(f, ":{g}"),
            (None, None) => write!(f, ":?"),
        }
    }
}

impl std::str::FromStr for SgRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (dir, proto, ports, remote) = match parts.as_slice() {
            [d, p, r] => (*d, *p, None, *r),
            [d, p, ports, r] => (*d, *p, Some(*ports), *r),
            _ => {
                return Err(format!(
                    "rule {s:?} is not DIRECTION:PROTOCOL[:PORTS]:REMOTE"
                ));
            }
        };
        let direction = match dir {
            "ingress" | "in" => Direction::Ingress,
            "egress" | "out" => Direction::Egress,
            _ => return Err(format!("rule {s:?}: direction must be ingress or egress")),
        };
        let protocol = match proto {
            "all" => Protocol::All,
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            _ => {
                return Err(format!(
                    "rule {s:?}: protocol must be all, tcp, udp or icmp"
                ));
            }
        };
        let port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("rule {s:?}: port {p:?} is not a number in 0-65535"))
        };
        let (port_min, port_max) = match ports {
            None => (None, None),
            Some(p) => {
                let (a, b) = p.split_once('-').unwrap_or((p, p));
                (Some(port(a)?), Some(port(b)?))
            }
        };
        let (remote_cidr, remote_group) = match remote.parse() {
            Ok(net) => (Some(net), None),
            Err(_) => (None, Some(remote.to_string())),
        };
        Ok(SgRule {
            id: String::new(),
            direction,
            protocol,
            port_min,
            port_max,
            remote_cidr,
            remote_group,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SecurityGroup {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub vpc_id: String,
    pub kind: SgKind,
    /// Groups the platform manages for its own services; tenants cannot
    /// choose them.
    pub managed: bool,
    pub rules: Vec<SgRule>,
}
