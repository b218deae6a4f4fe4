//! Connections, schema and the transaction primitives every operation is
//! built from: resource documents, row locks, and the IPAM free-range rows.
//!
//! One schema serves SQLite and PostgreSQL. Resources are JSON documents in
//! one table (indexed by kind, tenant, name, parent); everything that must be
//! unique (allocated addresses, bindings, client tokens) has a table of its
//! own whose keys the database enforces, whatever happens in memory.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};
use vpcip_model::ipam::{self, AddrRange};
use vpcip_model::rules::label;
use vpcip_model::*;

use crate::error::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The schema, in order; each statement runs once, recorded in
/// `schema_migrations`. Only append.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE resources (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        name TEXT,
        parent TEXT,
        attached TEXT,
        doc TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE UNIQUE INDEX resources_name ON resources (kind, tenant, name)",
    "CREATE INDEX resources_parent ON resources (kind, parent)",
    "CREATE INDEX resources_attached ON resources (attached)",
    "CREATE INDEX resources_list ON resources (kind, tenant, id)",
    "CREATE TABLE ip_allocations (
        subnet_id TEXT NOT NULL,
        addr BIGINT NOT NULL,
        owner_id TEXT NOT NULL,
        PRIMARY KEY (subnet_id, addr)
    )",
    "CREATE INDEX ip_allocations_owner ON ip_allocations (owner_id)",
    "CREATE TABLE ip_free_ranges (
        subnet_id TEXT NOT NULL,
        lo BIGINT NOT NULL,
        hi BIGINT NOT NULL,
        PRIMARY KEY (subnet_id, lo)
    )",
    "CREATE TABLE vip_bindings (
        vip_id TEXT NOT NULL,
        nic_id TEXT NOT NULL,
        PRIMARY KEY (vip_id, nic_id)
    )",
    "CREATE INDEX vip_bindings_nic ON vip_bindings (nic_id)",
    "CREATE TABLE eip_bindings (
        target_id TEXT PRIMARY KEY,
        eip_id TEXT NOT NULL UNIQUE,
        mode TEXT NOT NULL
    )",
    "CREATE TABLE client_tokens (
        tenant TEXT NOT NULL,
        token TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        PRIMARY KEY (tenant, token)
    )",
    "CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        description TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )",
];

/// What the store knows how to keep: every resource kind of the model.
pub trait Resource: Serialize + DeserializeOwned + Send + Sync {
    const KIND: Kind;
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn tenant(&self) -> &str {
        SYSTEM_TENANT
    }
    /// The resource this one lives in (indexed for child lookups).
    fn parent(&self) -> Option<&str> {
        None
    }
    /// The server a NIC is attached to.
    fn attached(&self) -> Option<&str> {
        None
    }
    fn label(&self) -> &str {
        label(self.name(), self.id())
    }
}

macro_rules! resource {
    ($t:ty, $kind:expr $(, tenant)? ) => {
        impl Resource for $t {
            const KIND: Kind = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
        }
    };
}
resource!(Zone, Kind::Zone);
resource!(HostNetwork, Kind::HostNetwork);
resource!(Gateway, Kind::Gateway);

impl Resource for Vpc {
    const KIND: Kind = Kind::Vpc;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn tenant(&self) -> &str {
        &self.tenant
    }
}
impl Resource for Subnet {
    const KIND: Kind = Kind::Subnet;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.vpc_id)
    }
}
impl Resource for SecurityGroup {
    const KIND: Kind = Kind::SecurityGroup;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.vpc_id)
    }
}
impl Resource for Server {
    const KIND: Kind = Kind::Server;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn tenant(&self) -> &str {
        &self.tenant
    }
}
impl Resource for Nic {
    const KIND: Kind = Kind::Nic;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.subnet_id)
    }
    fn attached(&self) -> Option<&str> {
        self.server_id.as_deref()
    }
}
impl Resource for Vip {
    const KIND: Kind = Kind::Vip;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.subnet_id)
    }
}
impl Resource for Eip {
    const KIND: Kind = Kind::Eip;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn tenant(&self) -> &str {
        &self.tenant
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.subnet_id)
    }
}

/// Who is asking: the operator sees everything; a tenant sees its own
/// resources and the platform's shared ones (zones, the default VPC and its
/// EIP segments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Operator,
    Tenant(String),
}

impl Scope {
    pub fn is_operator(&self) -> bool {
        matches!(self, Scope::Operator)
    }

    /// The tenant new resources of this caller belong to.
    pub fn tenant(&self) -> &str {
        match self {
            Scope::Operator => SYSTEM_TENANT,
            Scope::Tenant(t) => t,
        }
    }

    pub fn sees(&self, kind: Kind, tenant: &str) -> bool {
        match self {
            Scope::Operator => true,
            Scope::Tenant(t) => {
                t == tenant
                    || (tenant == SYSTEM_TENANT
                        && matches!(kind, Kind::Zone | Kind::Vpc | Kind::Subnet))
            }
        }
    }

    pub fn owns(&self, tenant: &str) -> bool {
        match self {
            Scope::Operator => true,
            Scope::Tenant(t) => t == tenant,
        }
    }

    pub fn require_operator(&self, action: &str) -> Result<(), RuleError> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(RuleError::Forbidden {
                action: action.to_string(),
            })
        }
    }
}

pub fn new_id(kind: Kind) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{}-{tail}", kind.prefix())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn from_doc<T: DeserializeOwned>(row: &AnyRow) -> Result<T, StoreError> {
    let doc: String = row.try_get("doc")?;
    serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt(format!("bad document: {e}")))
}

type ConnectFuture<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>>;

/// Every SQLite connection: WAL (readers never block the writer), durable
/// enough with NORMAL sync in WAL mode, and a busy timeout instead of errors.
fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> ConnectFuture<'_> {
    Box::pin(async move {
        for p in [
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            "PRAGMA busy_timeout = 10000",
        ] {
            sqlx::query(p).execute(&mut *conn).await?;
        }
        Ok(())
    })
}

/// The two pools: on SQLite every write goes through one connection (SQLite
/// has one writer anyway, and this avoids busy-lock upgrades), reads through
/// several; on PostgreSQL both are the same pool.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) read: AnyPool,
    pub(crate) write: AnyPool,
    pub backend: Backend,
}

impl Db {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(format!(
                "database URL {url:?} is neither sqlite://… nor postgres://…"
            )));
        };
        let db = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') || url.contains(":memory:") {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                };
                let write = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(sqlite_pragmas)
                    .connect(&url)
                    .await?;
                let read = AnyPoolOptions::new()
                    .max_connections(8)
                    .after_connect(sqlite_pragmas)
                    .connect(&url)
                    .await?;
                Db {
                    read,
                    write,
                    backend,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(32)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect(url)
                    .await?;
                Db {
                    read: pool.clone(),
                    write: pool,
                    backend,
                }
            }
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        if self.backend == Backend::Postgres {
            // Several controllers may start at once: one migrates.
            sqlx::query("SELECT pg_advisory_xact_lock(7271)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
            .execute(&mut *tx)
            .await?;
        let done: i64 = sqlx::query("SELECT COUNT(*) AS n FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
            sqlx::query(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                .bind(i as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            inner: self.write.begin().await?,
            backend: self.backend,
        })
    }

    /// A read-only transaction on the read pool (one consistent snapshot).
    pub async fn begin_read(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            inner: self.read.begin().await?,
            backend: self.backend,
        })
    }

    /// Drops every table: for tests that share one PostgreSQL database.
    pub async fn reset_for_tests(&self) -> Result<(), StoreError> {
        for t in [
            "resources",
            "ip_allocations",
            "ip_free_ranges",
            "vip_bindings",
            "eip_bindings",
            "client_tokens",
            "api_tokens",
            "schema_migrations",
        ] {
            sqlx::query(&format!("DROP TABLE IF EXISTS {t}"))
                .execute(&self.write)
                .await?;
        }
        self.migrate().await
    }
}

pub enum Claim<R> {
    Existing(R),
    New(String),
}

/// One transaction: every mutation of the store is exactly one of these.
pub struct Tx {
    pub(crate) inner: Transaction<'static, Any>,
    pub backend: Backend,
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.inner.commit().await?;
        Ok(())
    }

    fn lock_suffix(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            // SQLite: the write transaction holds the one writer connection.
            Backend::Sqlite => "",
        }
    }

    pub async fn insert<R: Resource>(&mut self, r: &R) -> Result<(), StoreError> {
        let doc = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let res = sqlx::query(
            "INSERT INTO resources (id, kind, tenant, name, parent, attached, doc, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.id().to_string())
        .bind(R::KIND.key())
        .bind(r.tenant().to_string())
        .bind((!r.name().is_empty()).then(|| r.name().to_string()))
        .bind(r.parent().map(str::to_string))
        .bind(r.attached().map(str::to_string))
        .bind(doc)
        .bind(now())
        .execute(&mut *self.inner)
        .await;
        match res {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(RuleError::NameTaken {
                kind: R::KIND.as_str(),
                name: r.name().to_string(),
            }
            .into()),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }

    pub async fn update<R: Resource>(&mut self, r: &R) -> Result<(), StoreError> {
        let doc = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query("UPDATE resources SET doc = $1, attached = $2 WHERE id = $3 AND kind = $4")
            .bind(doc)
            .bind(r.attached().map(str::to_string))
            .bind(r.id().to_string())
            .bind(R::KIND.key())
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    pub async fn delete<R: Resource>(&mut self, r: &R) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM resources WHERE id = $1 AND kind = $2")
            .bind(r.id().to_string())
            .bind(R::KIND.key())
            .execute(&mut *self.inner)
            .await?;
        sqlx::query("DELETE FROM client_tokens WHERE resource_id = $1")
            .bind(r.id().to_string())
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    /// Finds a resource by ID or name as `scope` sees it, and locks its row
    /// for the rest of the transaction when `lock` is set.
    pub async fn find<R: Resource>(
        &mut self,
        scope: &Scope,
        key: &str,
        lock: bool,
    ) -> Result<R, StoreError> {
        let sql = format!(
            "SELECT tenant, id, doc FROM resources WHERE kind = $1 AND (id = $2 OR name = $2){}",
            if lock { self.lock_suffix() } else { "" }
        );
        let rows = sqlx::query(&sql)
            .bind(R::KIND.key())
            .bind(key.to_string())
            .fetch_all(&mut *self.inner)
            .await?;
        pick(scope, R::KIND, key, &rows)
    }

    /// Gets a resource by ID, whoever owns it (for internal references).
    pub async fn get<R: Resource>(&mut self, id: &str, lock: bool) -> Result<R, StoreError> {
        let sql = format!(
            "SELECT doc FROM resources WHERE kind = $1 AND id = $2{}",
            if lock { self.lock_suffix() } else { "" }
        );
        let row = sqlx::query(&sql)
            .bind(R::KIND.key())
            .bind(id.to_string())
            .fetch_optional(&mut *self.inner)
            .await?
            .ok_or_else(|| RuleError::not_found(R::KIND.as_str(), id))?;
        from_doc(&row)
    }

    pub async fn children<R: Resource>(&mut self, parent: &str) -> Result<Vec<R>, StoreError> {
        let rows =
            sqlx::query("SELECT doc FROM resources WHERE kind = $1 AND parent = $2 ORDER BY id")
                .bind(R::KIND.key())
                .bind(parent.to_string())
                .fetch_all(&mut *self.inner)
                .await?;
        rows.iter().map(from_doc).collect()
    }

    pub async fn all<R: Resource>(&mut self) -> Result<Vec<R>, StoreError> {
        let rows = sqlx::query("SELECT doc FROM resources WHERE kind = $1 ORDER BY id")
            .bind(R::KIND.key())
            .fetch_all(&mut *self.inner)
            .await?;
        rows.iter().map(from_doc).collect()
    }

    /// The page of `R` that `scope` sees, after `after`, in ID order.
    pub async fn page<R: Resource>(
        &mut self,
        scope: &Scope,
        parent: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<R>, StoreError> {
        let shared = matches!(R::KIND, Kind::Zone | Kind::Vpc | Kind::Subnet);
        let mut sql = String::from("SELECT doc FROM resources WHERE kind = $1 AND id > $2");
        let mut binds = vec![R::KIND.key().to_string(), after.unwrap_or("").to_string()];
        if let Scope::Tenant(t) = scope {
            binds.push(t.clone());
            sql += if shared {
                " AND (tenant = $3 OR tenant = 'system')"
            } else {
                " AND tenant = $3"
            };
        }
        if let Some(p) = parent {
            binds.push(p.to_string());
            sql += &format!(" AND parent = ${}", binds.len());
        }
        sql += &format!(" ORDER BY id LIMIT {}", u64::from(limit) + 1);
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&mut *self.inner).await?;
        let mut items: Vec<R> = rows.iter().map(from_doc).collect::<Result<_, _>>()?;
        let next_page_token = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|r| r.id().to_string())
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    // ---- idempotent creates ----

    /// Starts a create: the resource an earlier request with the same client
    /// token made, or a new ID with the token claimed for it. The token row
    /// is written first, so a concurrent duplicate waits on it and then
    /// replays instead of creating twice.
    pub async fn claim<R: Resource>(
        &mut self,
        tenant: &str,
        token: Option<&str>,
    ) -> Result<Claim<R>, StoreError> {
        if let Some(r) = self.replay::<R>(tenant, token).await? {
            return Ok(Claim::Existing(r));
        }
        let id = new_id(R::KIND);
        self.remember(tenant, token, &id).await?;
        Ok(Claim::New(id))
    }

    async fn replay<R: Resource>(
        &mut self,
        tenant: &str,
        token: Option<&str>,
    ) -> Result<Option<R>, StoreError> {
        let Some(token) = token else { return Ok(None) };
        let row =
            sqlx::query("SELECT resource_id FROM client_tokens WHERE tenant = $1 AND token = $2")
                .bind(tenant.to_string())
                .bind(token.to_string())
                .fetch_optional(&mut *self.inner)
                .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let id: String = row.try_get("resource_id")?;
                Ok(Some(self.get(&id, false).await?))
            }
        }
    }

    async fn remember(
        &mut self,
        tenant: &str,
        token: Option<&str>,
        id: &str,
    ) -> Result<(), StoreError> {
        let Some(token) = token else { return Ok(()) };
        if token.is_empty() || token.len() > 128 {
            return Err(RuleError::invalid("client_token", "must be 1 to 128 characters").into());
        }
        let res = sqlx::query(
            "INSERT INTO client_tokens (tenant, token, resource_id) VALUES ($1, $2, $3)",
        )
        .bind(tenant.to_string())
        .bind(token.to_string())
        .bind(id.to_string())
        .execute(&mut *self.inner)
        .await;
        match res {
            // A concurrent create with the same token committed first: run
            // again, and the replay returns its resource.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Retry),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }

    // ---- IPAM ----

    /// Opens a subnet's address pool: one free range, minus the reserved
    /// addresses (owned by the subnet itself).
    pub async fn open_pool(
        &mut self,
        subnet: &mut Subnet,
        reserved: &[Ipv4Addr],
    ) -> Result<(), StoreError> {
        let r = AddrRange::new(subnet.range_start, subnet.range_end);
        sqlx::query("INSERT INTO ip_free_ranges (subnet_id, lo, hi) VALUES ($1, $2, $3)")
            .bind(subnet.id.clone())
            .bind(i64::from(r.first))
            .bind(i64::from(r.last))
            .execute(&mut *self.inner)
            .await?;
        let id = subnet.id.clone();
        for a in reserved {
            self.allocate(subnet, &id, Some(*a)).await?;
        }
        Ok(())
    }

    /// Allocates an address in `subnet` (the caller holds the subnet's row
    /// lock): `want`, or the lowest free one. Costs two index look-ups and a
    /// few row writes, whatever the number of addresses taken.
    pub async fn allocate(
        &mut self,
        subnet: &mut Subnet,
        owner: &str,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, StoreError> {
        let row = match want {
            None => sqlx::query("SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 ORDER BY lo LIMIT 1")
                .bind(subnet.id.clone())
                .fetch_optional(&mut *self.inner)
                .await?,
            Some(a) => sqlx::query(
                "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 AND lo <= $2 ORDER BY lo DESC LIMIT 1",
            )
            .bind(subnet.id.clone())
            .bind(i64::from(u32::from(a)))
            .fetch_optional(&mut *self.inner)
            .await?,
        };
        let range = row
            .map(|r| -> Result<AddrRange, StoreError> {
                Ok(AddrRange {
                    first: u32::try_from(r.try_get::<i64, _>("lo")?)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    last: u32::try_from(r.try_get::<i64, _>("hi")?)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .transpose()?;
        let subnet_label = label(&subnet.name, &subnet.id).to_string();
        let (addr, from) = match (want, range) {
            (None, Some(r)) => (r.first, r),
            (None, None) => {
                return Err(RuleError::AddressExhausted {
                    subnet: subnet_label,
                    start: subnet.range_start,
                    end: subnet.range_end,
                }
                .into());
            }
            (Some(a), Some(r)) if r.contains(u32::from(a)) => (u32::from(a), r),
            (Some(a), _) => {
                vpcip_model::rules::check_chosen_address(subnet, a)?;
                return Err(RuleError::AddressInUse {
                    addr: a,
                    subnet: subnet_label,
                }
                .into());
            }
        };
        let t = ipam::take(from, addr);
        sqlx::query("DELETE FROM ip_free_ranges WHERE subnet_id = $1 AND lo = $2")
            .bind(subnet.id.clone())
            .bind(i64::from(t.from.first))
            .execute(&mut *self.inner)
            .await?;
        for r in [t.below, t.above].into_iter().flatten() {
            self.insert_range(&subnet.id, r).await?;
        }
        let res = sqlx::query(
            "INSERT INTO ip_allocations (subnet_id, addr, owner_id) VALUES ($1, $2, $3)",
        )
        .bind(subnet.id.clone())
        .bind(i64::from(addr))
        .bind(owner.to_string())
        .execute(&mut *self.inner)
        .await;
        if let Err(sqlx::Error::Database(e)) = &res
            && e.is_unique_violation()
        {
            return Err(StoreError::Corrupt(format!(
                "address {} of subnet {} is allocated but also in a free range",
                Ipv4Addr::from(addr),
                subnet.id
            )));
        }
        res?;
        subnet.used += 1;
        Ok(Ipv4Addr::from(addr))
    }

    async fn insert_range(&mut self, subnet_id: &str, r: AddrRange) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO ip_free_ranges (subnet_id, lo, hi) VALUES ($1, $2, $3)")
            .bind(subnet_id.to_string())
            .bind(i64::from(r.first))
            .bind(i64::from(r.last))
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    async fn range_at(
        &mut self,
        subnet_id: &str,
        sql: &str,
        at: u32,
    ) -> Result<Option<AddrRange>, StoreError> {
        let row = sqlx::query(sql)
            .bind(subnet_id.to_string())
            .bind(i64::from(at))
            .fetch_optional(&mut *self.inner)
            .await?;
        row.map(|r| -> Result<AddrRange, StoreError> {
            let lo: i64 = r.try_get("lo")?;
            let hi: i64 = r.try_get("hi")?;
            Ok(AddrRange {
                first: u32::try_from(lo).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                last: u32::try_from(hi).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            })
        })
        .transpose()
    }

    /// Gives `addr` back to `subnet`'s pool (the caller holds the subnet's
    /// row lock), merging it with its free neighbours.
    pub async fn release(&mut self, subnet: &mut Subnet, addr: Ipv4Addr) -> Result<(), StoreError> {
        let a = u32::from(addr);
        let gone = sqlx::query("DELETE FROM ip_allocations WHERE subnet_id = $1 AND addr = $2")
            .bind(subnet.id.clone())
            .bind(i64::from(a))
            .execute(&mut *self.inner)
            .await?
            .rows_affected();
        if gone == 0 {
            return Err(StoreError::Corrupt(format!(
                "address {addr} of subnet {} was not allocated",
                subnet.id
            )));
        }
        let below = match a.checked_sub(1) {
            Some(b) => {
                self.range_at(
                    &subnet.id,
                    "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 AND lo <= $2 ORDER BY lo DESC LIMIT 1",
                    b,
                )
                .await?
            }
            None => None,
        };
        let above = match a.checked_add(1) {
            Some(n) => {
                self.range_at(
                    &subnet.id,
                    "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 AND lo = $2",
                    n,
                )
                .await?
            }
            None => None,
        };
        let g = ipam::give(a, below, above);
        for r in [g.absorbed_below, g.absorbed_above].into_iter().flatten() {
            sqlx::query("DELETE FROM ip_free_ranges WHERE subnet_id = $1 AND lo = $2")
                .bind(subnet.id.clone())
                .bind(i64::from(r.first))
                .execute(&mut *self.inner)
                .await?;
        }
        self.insert_range(&subnet.id, g.merged).await?;
        subnet.used = subnet.used.saturating_sub(1);
        Ok(())
    }

    /// Addresses of a subnet held by anything but the subnet itself.
    pub async fn allocations_in_use(&mut self, subnet_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM ip_allocations WHERE subnet_id = $1 AND owner_id <> $1",
        )
        .bind(subnet_id.to_string())
        .fetch_one(&mut *self.inner)
        .await?
        .try_get("n")?)
    }

    pub async fn drop_pool(&mut self, subnet_id: &str) -> Result<(), StoreError> {
        for sql in [
            "DELETE FROM ip_allocations WHERE subnet_id = $1",
            "DELETE FROM ip_free_ranges WHERE subnet_id = $1",
        ] {
            sqlx::query(sql)
                .bind(subnet_id.to_string())
                .execute(&mut *self.inner)
                .await?;
        }
        Ok(())
    }

    // ---- relations ----

    pub async fn count(&mut self, sql: &str, key: &str) -> Result<usize, StoreError> {
        let n: i64 = sqlx::query(sql)
            .bind(key.to_string())
            .fetch_one(&mut *self.inner)
            .await?
            .try_get(0)?;
        Ok(n as usize)
    }

    pub async fn exec(&mut self, sql: &str, binds: &[&str]) -> Result<u64, StoreError> {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(b.to_string());
        }
        Ok(q.execute(&mut *self.inner).await?.rows_affected())
    }

    pub async fn strings(&mut self, sql: &str, key: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(sql)
            .bind(key.to_string())
            .fetch_all(&mut *self.inner)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }
}

/// Of the rows matching an ID-or-name key, the one `scope` means: the ID
/// first, then the caller's own name, then a shared one.
fn pick<R: Resource>(
    scope: &Scope,
    kind: Kind,
    key: &str,
    rows: &[AnyRow],
) -> Result<R, StoreError> {
    let mut by_name = Vec::new();
    for row in rows {
        let tenant: String = row.try_get("tenant")?;
        let id: String = row.try_get("id")?;
        if !scope.sees(kind, &tenant) {
            continue;
        }
        if id == key {
            return from_doc(row);
        }
        by_name.push((tenant, row));
    }
    let own: Vec<_> = by_name
        .iter()
        .filter(|(t, _)| t == scope.tenant())
        .collect();
    match (own.as_slice(), by_name.as_slice()) {
        ([(_, row)], _) => from_doc(row),
        ([], [(_, row)]) => from_doc(row),
        ([], []) => Err(RuleError::not_found(kind.as_str(), key).into()),
        (_, many) => Err(RuleError::invalid(
            "name",
            format!(
                "{key:?} names {} {}s (of tenants {}); use the ID",
                many.len(),
                kind.as_str(),
                many.iter()
                    .map(|(t, _)| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into()),
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" => Ok(Backend::Postgres),
            _ => Err(format!("unknown backend {s}")),
        }
    }
}

impl Db {
    /// The read pool, for tests and read-only reports.
    pub fn read_pool(&self) -> AnyPool {
        self.read.clone()
    }
}
