//! The server's configuration file (TOML): `listen`, `db`,
//! `operator_token`, `tls_cert`, `tls_key` and `[quotas]`. Flags and the
//! environment take precedence over it; unknown keys are refused.

use serde::Deserialize;

use crate::rules::Quotas;

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: Option<String>,
    pub db: Option<String>,
    pub operator_token: Option<String>,
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    /// Per-tenant limits: `[quotas]` with `vpcs`, `nics`, `vips`, `eips`.
    #[serde(default)]
    pub quotas: Quotas,
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
    }
}
