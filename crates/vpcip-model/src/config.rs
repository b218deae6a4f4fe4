//! The server's configuration file (TOML): `listen`, `db`,
//! `operator_token`, `tls_cert`, `tls_key`, `[quotas]`, `[isolation]`,
//! `[security_groups]`, `[dhcp]` and `[console]`. Flags and the
//! environment take precedence over it; unknown keys are refused.

use serde::Deserialize;

use crate::rules::Quotas;

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: Option<String>,
    pub db: Option<String>,
    /// PostgreSQL: connections each controller keeps at most (see
    /// `vpcip controller --db-connections`).
    pub db_connections: Option<u32>,
    pub operator_token: Option<String>,
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Per-tenant limits: `[quotas]` with `vpcs`, `nics`, `vips`, `eips`.
    #[serde(default)]
    pub quotas: Quotas,
    /// `[isolation]`: what VMs may reach of the infrastructure.
    #[serde(default)]
    pub isolation: Isolation,
    /// `[security_groups] max_rules = 100`: rules per group at most.
    #[serde(default)]
    pub security_groups: SecurityGroups,
    /// `[dhcp] dns_servers = ["192.0.2.53"]`, `lease_seconds = 86400`:
    /// what guests learn unless their subnet says.
    #[serde(default)]
    pub dhcp: crate::desired::DhcpDefaults,
    /// `[console] traffic_sample_seconds = 60`: how often an EIP's traffic
    /// is sampled for its plot (and `GET /v1/eips/{id}/traffic`).
    #[serde(default)]
    pub console: Console,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Console {
    #[serde(default = "default_sample_seconds")]
    pub traffic_sample_seconds: u32,
}

/// Seconds between two samples of an EIP's traffic history unless the
/// configuration says (a minute, as the clouds' consoles plot).
pub const DEFAULT_TRAFFIC_SAMPLE_SECONDS: u32 = 60;

fn default_sample_seconds() -> u32 {
    DEFAULT_TRAFFIC_SAMPLE_SECONDS
}

impl Default for Console {
    fn default() -> Self {
        Console {
            traffic_sample_seconds: default_sample_seconds(),
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroups {
    #[serde(default = "default_max_rules")]
    pub max_rules: usize,
}

fn default_max_rules() -> usize {
    crate::rules::DEFAULT_MAX_SG_RULES
}

impl Default for SecurityGroups {
    fn default() -> Self {
        SecurityGroups {
            max_rules: default_max_rules(),
        }
    }
}

/// `[isolation] allow = ["udp 192.0.2.53 53", …]`: infrastructure services
/// (on the host networks or the gateway nodes) that VMs may reach. Empty by
/// default: VMs reach the outside world and their VPC, nothing else.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Isolation {
    #[serde(default)]
    pub allow: Vec<String>,
}

impl Isolation {
    /// The allowed services, each checked.
    pub fn services(&self) -> Result<Vec<crate::desired::InfraService>, String> {
        let mut out = self
            .allow
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<_>, String>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl ServerConfig {
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_parse_and_reject_unknown_keys() {
        let c = ServerConfig::parse("listen = \"127.0.0.1:1\"\noperator_token = \"x\"").unwrap();
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(c.operator_token.as_deref(), Some("x"));
        assert!(ServerConfig::parse("bogus = 1").is_err());
        let q = ServerConfig::parse("[quotas]\neips = 5").unwrap();
        assert_eq!(q.quotas.eips, 5);
        assert_eq!(q.quotas.vips, 1_000);
        assert!(ServerConfig::parse("[quotas]\neip = 5").is_err());
        let i = ServerConfig::parse("[isolation]\nallow = [\"udp 192.0.2.53 53\"]").unwrap();
        let s = i.isolation.services().unwrap();
        assert_eq!(s[0].to_string(), "udp 192.0.2.53 53");
        for bad in [
            "icmp 192.0.2.53 53",
            "udp 192.0.2.53",
            "udp 0.0.0.0 53",
            "tcp 192.0.2.1 0",
        ] {
            let c = ServerConfig::parse(&format!("[isolation]\nallow = [\"{bad}\"]")).unwrap();
            let e = c.isolation.services().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
