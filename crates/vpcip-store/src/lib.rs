//! vpcip's store: one transaction per mutation on SQLite (the embedded
//! default) or PostgreSQL (several controllers), with the domain rules of
//! `vpcip-model` applied inside the transaction.

pub mod db;
pub mod error;
mod ops;
pub mod sql;
#[cfg(feature = "testing")]
pub mod testing;
pub mod watch;
pub use ops::{VpcContents, token_hash};

use std::future::Future;
use std::time::Duration;

pub use db::{Backend, Db, Resource, Scope, Tx};
pub use error::StoreError;
/// How long a controller keeps a token it looked up, at most.
pub const TOKEN_CACHE_MAX_AGE: std::time::Duration = db::tokens::TokenCache::MAX_AGE;
use vpcip_model::Page;

/// Largest page a list returns.
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 100;

/// How long an EIP's traffic history is kept: an hour, and one sample
/// before it (the first point's rate needs it).
pub const TRAFFIC_HISTORY_SECS: i64 = 3600;

#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) db: Db,
    /// The infrastructure services VMs may reach (the server's
    /// `[isolation] allow`), handed to the gateways.
    infra_allow: Vec<vpcip_model::desired::InfraService>,
    /// Rules a security group holds at most (`[security_groups]
    /// max_rules`).
    pub(crate) max_sg_rules: usize,
    /// Seconds between two samples of an EIP's traffic history.
    pub(crate) traffic_sample_secs: i64,
    /// What guests learn by DHCP unless their subnet says (`[dhcp]`).
    dhcp: vpcip_model::desired::DhcpDefaults,
    /// The agents' watch, started on first use ([`Store::watch`]).
    watch: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<watch::Watch>>>,
}

impl Store {
    /// The database underneath, for tests that break it on purpose.
    #[cfg(feature = "testing")]
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Waits until the store's revision is past `after` or `wait` has
    /// passed; returns the revision then. Every commit wakes the wait at
    /// once: this process's directly, other controllers' (on the same
    /// PostgreSQL) through LISTEN/NOTIFY. Nothing polls.
    pub async fn wait_for_revision(&self, after: i64, wait: Duration) -> Result<i64, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.db.subscribe();
        loop {
            let now = self.db.revision().await?;
            if now > after || tokio::time::Instant::now() >= deadline {
                return Ok(now);
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Whether the database answers (the controller's health).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.revision().await.map(drop)
    }

    /// Connects (`sqlite://PATH` or `postgres://…`), migrates, and makes
    /// sure the built-in `default` VPC exists.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, None).await
    }

    /// [`Store::open`], on PostgreSQL with at most `connections`
    /// connections (default [`sql::default_pg_connections`]).
    pub async fn open_with(url: &str, connections: Option<u32>) -> Result<Self, StoreError> {
        let store = Store {
            db: Db::connect(url, connections).await?,
            infra_allow: Vec::new(),
            max_sg_rules: vpcip_model::rules::DEFAULT_MAX_SG_RULES,
            traffic_sample_secs: i64::from(vpcip_model::config::DEFAULT_TRAFFIC_SAMPLE_SECONDS),
            dhcp: vpcip_model::desired::DhcpDefaults::default(),
            watch: Default::default(),
        };
        store.ensure_default_vpc().await?;
        Ok(store)
    }

    /// The per-tenant quotas this store enforces.
    pub fn quotas(&self) -> vpcip_model::rules::Quotas {
        self.db.quotas
    }

    /// The same store with these per-tenant quotas.
    pub fn with_quotas(mut self, quotas: vpcip_model::rules::Quotas) -> Self {
        self.db.quotas = quotas;
        self
    }

    /// The same store handing these infrastructure services to the
    /// gateways as reachable from VMs.
    pub fn with_infra_allow(mut self, allow: Vec<vpcip_model::desired::InfraService>) -> Self {
        self.infra_allow = allow;
        self
    }

    /// The same store allowing `max` rules per security group.
    pub fn with_max_sg_rules(mut self, max: usize) -> Self {
        self.max_sg_rules = max;
        self
    }

    /// The same store sampling EIPs' traffic history every `secs` seconds
    /// (at least 1; tests take short samples).
    pub fn with_traffic_sample_secs(mut self, secs: u32) -> Self {
        self.traffic_sample_secs = i64::from(secs.max(1));
        self
    }

    /// The same store handing guests these DHCP defaults.
    pub fn with_dhcp(mut self, dhcp: vpcip_model::desired::DhcpDefaults) -> Self {
        self.dhcp = dhcp;
        self
    }

    /// Runs one transaction, again when it lost a race (deadlock,
    /// serialization failure, a concurrent duplicate client token).
    pub(crate) async fn retry<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0u32;
        loop {
            match f().await {
                Err(e) if e.is_retryable() && attempt < 10 => {
                    attempt += 1;
                    let jitter = rand::random::<u64>() % (5 * u64::from(attempt));
                    tokio::time::sleep(Duration::from_millis(1 + jitter)).await;
                }
                other => return other,
            }
        }
    }

    /// One resource by ID or name, as `scope` sees it.
    pub async fn show<R: Resource>(&self, scope: &Scope, key: &str) -> Result<R, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let r = tx.find::<R>(scope, key, false).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// How many `R` `scope` sees (one indexed count: a console's list shows
    /// its size without reading every document).
    pub async fn count<R: Resource>(&self, scope: &Scope) -> Result<usize, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let n = match scope {
            Scope::Operator => {
                tx.count(
                    "SELECT COUNT(*) FROM resources WHERE kind = $1",
                    &[R::KIND.key().into()],
                )
                .await?
            }
            Scope::Tenant(t) => {
                tx.count(
                    &format!(
                        "SELECT COUNT(*) FROM resources WHERE kind = $1 AND (tenant = $2 OR {})",
                        crate::db::SHARED
                    ),
                    &[R::KIND.key().into(), t.as_str().into()],
                )
                .await?
            }
            Scope::Agent(_) => 0,
        };
        tx.commit().await?;
        Ok(n)
    }

    /// A page of what `scope` sees, optionally only the children of `parent`.
    pub async fn list<R: Resource>(
        &self,
        scope: &Scope,
        parent: Option<&str>,
        page_token: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<R>, StoreError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(vpcip_model::RuleError::invalid(
                "limit",
                format!("{limit} is outside 1..={MAX_PAGE}"),
            )
            .into());
        }
        let mut tx = self.db.begin_read().await?;
        let page = tx.page::<R>(scope, parent, page_token, limit).await?;
        tx.commit().await?;
        Ok(page)
    }
}
