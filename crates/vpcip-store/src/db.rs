//! Connections, schema and the transaction primitives every operation is
//! built from: resource documents, row locks, and the IPAM free-range rows.
//!
//! One schema serves SQLite and PostgreSQL. Resources are JSON documents in
//! one table (indexed by kind, tenant, name, parent); everything that must be
//! unique (allocated addresses, bindings, client tokens) has a table of its
//! own whose keys the database enforces, whatever happens in memory.

use std::net::Ipv4Addr;

use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use vpcip_model::desired::Agent;
use vpcip_model::ipam::{self, AddrRange};
use vpcip_model::rules::{self, label};
use vpcip_model::*;

use crate::error::StoreError;
pub use crate::sql::Backend;
use crate::sql::{Pool, Row, SqlTx, Val};

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
    // Lookups by name across tenants (`find`): without it, an ID-or-name
    // lookup scans every resource of the kind.
    "CREATE INDEX resources_by_name ON resources (kind, name)",
    // Every committed write bumps the revision; agents watch it.
    "CREATE TABLE revision (id BIGINT PRIMARY KEY, value BIGINT NOT NULL)",
    "INSERT INTO revision (id, value) VALUES (1, 0)",
    // Agents' reports: written without bumping the revision (a report is
    // not a change of desired state).
    "CREATE TABLE agent_status (
        agent_id TEXT PRIMARY KEY,
        applied_revision BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        error TEXT
    )",
    // Small numbers handed out once per owner: subnets' VNIs (pool 'vni')
    // and VPC routers' link numbers (pool 'router'), unique by key.
    "CREATE TABLE numbers (
        pool TEXT NOT NULL,
        n BIGINT NOT NULL,
        owner TEXT NOT NULL,
        PRIMARY KEY (pool, n)
    )",
    "CREATE INDEX numbers_owner ON numbers (owner)",
    // Per-EIP counters as the gateways report them (not desired state: no
    // revision bump), and when each gateway last reported.
    "CREATE TABLE eip_counters (
        ip BIGINT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        packets_in BIGINT NOT NULL,
        bytes_in BIGINT NOT NULL,
        packets_out BIGINT NOT NULL,
        bytes_out BIGINT NOT NULL
    )",
    "CREATE TABLE counter_reports (agent_id TEXT PRIMARY KEY, at BIGINT NOT NULL)",
    // Which MAC each gateway's routers resolve each VIP to.
    "CREATE TABLE vip_holders (
        vpc_id TEXT NOT NULL,
        ip BIGINT NOT NULL,
        mac TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        PRIMARY KEY (vpc_id, ip)
    )",
    // Packets each EIP's bandwidth limit dropped, both ways.
    "ALTER TABLE eip_counters ADD COLUMN drops_in BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE eip_counters ADD COLUMN drops_out BIGINT NOT NULL DEFAULT 0",
    // The EIPs each gateway's data plane holds, as it last reported them.
    "CREATE TABLE gateway_eips (
        agent_id TEXT NOT NULL,
        ip BIGINT NOT NULL,
        PRIMARY KEY (agent_id, ip)
    )",
    // Agents' tokens serve the agent routes only.
    "ALTER TABLE api_tokens ADD COLUMN agent BIGINT NOT NULL DEFAULT 0",
    // ... for one agent: the token's tenant is its name, this its role
    // (NULL on agent tokens made before: refused).
    "ALTER TABLE api_tokens ADD COLUMN agent_role TEXT",
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

/// `impl Resource`: the platform's kinds (no tenant), and the tenants'
/// kinds with the field that names their parent.
macro_rules! resource {
    ($t:ty, $kind:expr) => {
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
    ($t:ty, $kind:expr, tenant $(, parent = $parent:ident)?) => {
        impl Resource for $t {
            const KIND: Kind = $kind;
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn tenant(&self) -> &str {
                &self.tenant
            }
            $(fn parent(&self) -> Option<&str> {
                Some(&self.$parent)
            })?
        }
    };
}

resource!(Zone, Kind::Zone);
resource!(HostNetwork, Kind::HostNetwork);
resource!(Gateway, Kind::Gateway);
resource!(Agent, Kind::Agent);
resource!(Vpc, Kind::Vpc, tenant);
resource!(Subnet, Kind::Subnet, tenant, parent = vpc_id);
resource!(SecurityGroup, Kind::SecurityGroup, tenant, parent = vpc_id);
resource!(Server, Kind::Server, tenant);
resource!(Vip, Kind::Vip, tenant, parent = subnet_id);
resource!(Eip, Kind::Eip, tenant, parent = subnet_id);

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

/// Who is asking: the operator sees everything; a tenant sees its own
/// resources and the platform's shared ones (zones, the default VPC and its
/// EIP segments); an agent's token acts for its one agent on the agent
/// operations (register, watch, report) and sees nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Operator,
    Tenant(String),
    Agent(rules::AgentIdentity),
}

impl Scope {
    pub fn is_operator(&self) -> bool {
        matches!(self, Scope::Operator)
    }

    /// The tenant new resources of this caller belong to (an agent's: no
    /// tenant's, the empty name no tenant has).
    pub fn tenant(&self) -> &str {
        match self {
            Scope::Operator => SYSTEM_TENANT,
            Scope::Tenant(t) => t,
            Scope::Agent(_) => "",
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
            Scope::Agent(_) => false,
        }
    }

    pub fn owns(&self, tenant: &str) -> bool {
        match self {
            Scope::Operator => true,
            Scope::Tenant(t) => t == tenant,
            Scope::Agent(_) => false,
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
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_doc<T: DeserializeOwned>(doc: &str) -> Result<T, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("bad document: {e}")))
}

/// The store's database, SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct Db {
    pool: Pool,
    pub backend: Backend,
    /// Told after every commit that wrote (in this process; other
    /// controllers' commits are seen by polling the revision).
    changes: std::sync::Arc<tokio::sync::watch::Sender<()>>,
    /// Per-tenant limits, checked in the transaction that creates.
    pub quotas: vpcip_model::rules::Quotas,
}

impl Db {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = Pool::connect(url).await?;
        let db = Db {
            backend: pool.backend(),
            pool,
            changes: std::sync::Arc::new(tokio::sync::watch::channel(()).0),
            quotas: Default::default(),
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            // Several controllers may start at once: one migrates.
            tx.sql
                .execute("SELECT pg_advisory_xact_lock(7271)", &[])
                .await?;
        }
        tx.sql
            .batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
            .await?;
        let done = tx
            .count("SELECT COUNT(*) FROM schema_migrations", &[])
            .await?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
            tx.sql.batch(sql).await?;
            tx.sql
                .execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[Val::Int(i64::try_from(i).unwrap_or(i64::MAX))],
                )
                .await?;
        }
        tx.commit().await
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            sql: self.pool.begin().await?,
            backend: self.backend,
            dirty: false,
            changes: Some(self.changes.clone()),
            quotas: self.quotas,
        })
    }

    /// Wakes when a write commits in this process.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// The store's revision: bumped by every committed write.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        let mut tx = self.begin_read().await?;
        let rows = tx
            .rows("SELECT value FROM revision WHERE id = 1", &[])
            .await?;
        tx.commit().await?;
        rows.first()
            .ok_or_else(|| StoreError::Corrupt("no revision row".into()))?
            .int(0)
    }

    /// A read-only transaction (one consistent snapshot).
    pub async fn begin_read(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            sql: self.pool.begin_read().await?,
            backend: self.backend,
            dirty: false,
            changes: None,
            quotas: self.quotas,
        })
    }
}

pub enum Claim<R> {
    Existing(R),
    New(String),
}

/// One transaction: every mutation of the store is exactly one of these.
pub struct Tx {
    pub(crate) sql: SqlTx,
    pub backend: Backend,
    /// Whether this transaction wrote anything (then commit bumps the
    /// revision).
    dirty: bool,
    changes: Option<std::sync::Arc<tokio::sync::watch::Sender<()>>>,
    quotas: vpcip_model::rules::Quotas,
}

impl Tx {
    /// Refuses a new resource of `kind` for `tenant` once the tenant has
    /// its quota of them. Creations for one tenant are serialized here (on
    /// PostgreSQL by a transaction lock on the tenant; SQLite has one
    /// writer), so racing creates cannot both pass the count.
    pub async fn check_quota(&mut self, tenant: &str, kind: Kind) -> Result<(), StoreError> {
        let Some(limit) = self.quotas.of(kind) else {
            return Ok(());
        };
        if tenant == SYSTEM_TENANT {
            return Ok(());
        }
        if self.backend == Backend::Postgres {
            self.sql
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))",
                    &[format!("quota:{tenant}:{}", kind.key()).into()],
                )
                .await?;
        }
        let count = self
            .count(
                "SELECT COUNT(*) FROM resources WHERE kind = $1 AND tenant = $2",
                &[kind.key().into(), tenant.into()],
            )
            .await?;
        if count >= limit as usize {
            return Err(RuleError::QuotaExceeded {
                tenant: tenant.to_string(),
                kind: kind.as_str(),
                count,
                limit,
            }
            .into());
        }
        Ok(())
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        let wrote = self.dirty;
        if wrote {
            self.sql
                .execute("UPDATE revision SET value = value + 1 WHERE id = 1", &[])
                .await?;
        }
        let changes = self.changes.take();
        self.sql.commit().await?;
        if let (true, Some(c)) = (wrote, changes) {
            c.send_replace(());
        }
        Ok(())
    }

    /// A write that is not a change of desired state (agents' reports): it
    /// does not bump the revision.
    pub(crate) async fn write_quiet(&mut self, sql: &str, args: &[Val]) -> Result<u64, StoreError> {
        self.sql.execute(sql, args).await
    }

    /// Every write of the store goes through here.
    pub(crate) async fn write(&mut self, sql: &str, args: &[Val]) -> Result<u64, StoreError> {
        self.dirty = true;
        self.sql.execute(sql, args).await
    }

    fn lock_suffix(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            // SQLite: the write transaction holds the one writer connection.
            Backend::Sqlite => "",
        }
    }

    async fn docs<T: DeserializeOwned>(
        &mut self,
        sql: &str,
        args: &[Val],
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.sql.query(sql, args).await?;
        rows.iter().map(|r| from_doc(&r.text(0)?)).collect()
    }

    pub async fn insert<R: Resource>(&mut self, r: &R) -> Result<(), StoreError> {
        let doc = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let res = self
            .write(
                "INSERT INTO resources (id, kind, tenant, name, parent, attached, doc, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    r.id().into(),
                    R::KIND.key().into(),
                    r.tenant().into(),
                    (!r.name().is_empty()).then(|| r.name()).into(),
                    r.parent().into(),
                    r.attached().into(),
                    doc.into(),
                    now().into(),
                ],
            )
            .await;
        match res {
            Err(e) if e.is_unique_violation() => Err(RuleError::NameTaken {
                kind: R::KIND.as_str(),
                name: r.name().to_string(),
            }
            .into()),
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    }

    pub async fn update<R: Resource>(&mut self, r: &R) -> Result<(), StoreError> {
        let doc = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write(
            "UPDATE resources SET doc = $1, attached = $2 WHERE id = $3 AND kind = $4",
            &[
                doc.into(),
                r.attached().into(),
                r.id().into(),
                R::KIND.key().into(),
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn delete<R: Resource>(&mut self, r: &R) -> Result<(), StoreError> {
        self.write(
            "DELETE FROM resources WHERE id = $1 AND kind = $2",
            &[r.id().into(), R::KIND.key().into()],
        )
        .await?;
        self.write(
            "DELETE FROM client_tokens WHERE resource_id = $1",
            &[r.id().into()],
        )
        .await?;
        self.write("DELETE FROM numbers WHERE owner = $1", &[r.id().into()])
            .await?;
        Ok(())
    }

    /// Takes a free number in `1..=max` from `pool` for `owner`: the one
    /// after the lowest taken number whose successor is free (or 1). Two
    /// transactions racing for one number: the key refuses the second, which
    /// is retried whole.
    pub async fn take_number(
        &mut self,
        pool: &str,
        max: u32,
        owner: &str,
    ) -> Result<u32, StoreError> {
        let rows = self
            .rows(
                "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM numbers WHERE pool = $1 AND n = 1) THEN 1 \
                 ELSE (SELECT MIN(a.n) + 1 FROM numbers a WHERE a.pool = $1 AND NOT EXISTS \
                 (SELECT 1 FROM numbers b WHERE b.pool = $1 AND b.n = a.n + 1)) END",
                &[pool.into()],
            )
            .await?;
        let n = rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("no free-number row".into()))?
            .int(0)?;
        let n = match u32::try_from(n) {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(RuleError::NumbersExhausted {
                    pool: pool.to_string(),
                    max,
                }
                .into());
            }
        };
        let inserted = self
            .write(
                "INSERT INTO numbers (pool, n, owner) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[pool.into(), n.into(), owner.into()],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Retry);
        }
        Ok(n)
    }

    /// Finds a resource by ID or name as `scope` sees it, and locks its row
    /// for the rest of the transaction when `lock` is set. Two indexed look-ups
    /// (ID, then name) rather than one `OR`, which no planner indexes well.
    pub async fn find<R: Resource>(
        &mut self,
        scope: &Scope,
        key: &str,
        lock: bool,
    ) -> Result<R, StoreError> {
        let suffix = if lock { self.lock_suffix() } else { "" };
        let by_id = self
            .sql
            .query_opt(
                &format!(
                    "SELECT tenant, id, doc FROM resources WHERE id = $1 AND kind = $2{suffix}"
                ),
                &[key.into(), R::KIND.key().into()],
            )
            .await?;
        if let Some(row) = &by_id
            && scope.sees(R::KIND, &row.text(0)?)
        {
            return from_doc(&row.text(2)?);
        }
        let rows = self
            .sql
            .query(
                &format!(
                    "SELECT tenant, id, doc FROM resources WHERE kind = $1 AND name = $2{suffix}"
                ),
                &[R::KIND.key().into(), key.into()],
            )
            .await?;
        pick(scope, R::KIND, key, &rows)
    }

    /// Gets a resource by ID, whoever owns it (for internal references).
    pub async fn get<R: Resource>(&mut self, id: &str, lock: bool) -> Result<R, StoreError> {
        let sql = format!(
            "SELECT doc FROM resources WHERE id = $1 AND kind = $2{}",
            if lock { self.lock_suffix() } else { "" }
        );
        let row = self
            .sql
            .query_opt(&sql, &[id.into(), R::KIND.key().into()])
            .await?
            .ok_or_else(|| RuleError::not_found(R::KIND.as_str(), id))?;
        from_doc(&row.text(0)?)
    }

    pub async fn children<R: Resource>(&mut self, parent: &str) -> Result<Vec<R>, StoreError> {
        self.docs(
            "SELECT doc FROM resources WHERE kind = $1 AND parent = $2 ORDER BY id",
            &[R::KIND.key().into(), parent.into()],
        )
        .await
    }

    pub async fn all<R: Resource>(&mut self) -> Result<Vec<R>, StoreError> {
        self.docs(
            "SELECT doc FROM resources WHERE kind = $1 ORDER BY id",
            &[R::KIND.key().into()],
        )
        .await
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
        let mut args: Vec<Val> = vec![R::KIND.key().into(), after.unwrap_or("").into()];
        match scope {
            Scope::Operator => {}
            Scope::Tenant(t) => {
                args.push(t.into());
                sql += if shared {
                    " AND (tenant = $3 OR tenant = 'system')"
                } else {
                    " AND tenant = $3"
                };
            }
            Scope::Agent(_) => {
                return Err(RuleError::Forbidden {
                    action: format!("list {}s", R::KIND.as_str()),
                }
                .into());
            }
        }
        if let Some(p) = parent {
            args.push(p.into());
            sql += &format!(" AND parent = ${}", args.len());
        }
        sql += &format!(" ORDER BY id LIMIT {}", u64::from(limit) + 1);
        let mut items: Vec<R> = self.docs(&sql, &args).await?;
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
        let id = new_id(R::KIND);
        let Some(token) = token else {
            return Ok(Claim::New(id));
        };
        if token.is_empty() || token.len() > 128 {
            return Err(RuleError::invalid("client_token", "must be 1 to 128 characters").into());
        }
        let prior = self
            .sql
            .query_opt(
                "SELECT resource_id FROM client_tokens WHERE tenant = $1 AND token = $2",
                &[tenant.into(), token.into()],
            )
            .await?;
        if let Some(row) = prior {
            return Ok(Claim::Existing(self.get(&row.text(0)?, false).await?));
        }
        let res = self
            .write(
                "INSERT INTO client_tokens (tenant, token, resource_id) VALUES ($1, $2, $3)",
                &[tenant.into(), token.into(), id.as_str().into()],
            )
            .await;
        match res {
            // A concurrent create with the same token committed first: run
            // again, and the replay returns its resource.
            Err(e) if e.is_unique_violation() => Err(StoreError::Retry),
            Err(e) => Err(e),
            Ok(_) => Ok(Claim::New(id)),
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
        self.insert_range(&subnet.id, r).await?;
        let id = subnet.id.clone();
        for a in reserved {
            self.allocate(subnet, &id, Some(*a)).await?;
        }
        Ok(())
    }

    async fn range_where(
        &mut self,
        sql: &str,
        subnet_id: &str,
        at: Option<u32>,
    ) -> Result<Option<AddrRange>, StoreError> {
        let mut args: Vec<Val> = vec![subnet_id.into()];
        args.extend(at.map(Val::from));
        match self.sql.query_opt(sql, &args).await? {
            None => Ok(None),
            Some(r) => Ok(Some(AddrRange {
                first: r.u32(0)?,
                last: r.u32(1)?,
            })),
        }
    }

    /// Allocates an address in `subnet` (the caller holds the subnet's row
    /// lock): `want`, or the lowest free one. Costs one index look-up and two
    /// or three row writes, whatever the number of addresses taken.
    pub async fn allocate(
        &mut self,
        subnet: &mut Subnet,
        owner: &str,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, StoreError> {
        let range = match want {
            None => {
                self.range_where(
                    "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 ORDER BY lo LIMIT 1",
                    &subnet.id,
                    None,
                )
                .await?
            }
            Some(a) => {
                self.range_where(
                    "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 AND lo <= $2 ORDER BY lo DESC LIMIT 1",
                    &subnet.id,
                    Some(u32::from(a)),
                )
                .await?
            }
        };
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
        match (t.below, t.above) {
            // The common case, the lowest address of a range: shrink it.
            (None, Some(above)) => {
                self.write(
                    "UPDATE ip_free_ranges SET lo = $1 WHERE subnet_id = $2 AND lo = $3",
                    &[
                        above.first.into(),
                        subnet.id.as_str().into(),
                        from.first.into(),
                    ],
                )
                .await?;
            }
            (below, above) => {
                self.write(
                    "DELETE FROM ip_free_ranges WHERE subnet_id = $1 AND lo = $2",
                    &[subnet.id.as_str().into(), from.first.into()],
                )
                .await?;
                for r in [below, above].into_iter().flatten() {
                    self.insert_range(&subnet.id, r).await?;
                }
            }
        }
        let res = self
            .write(
                "INSERT INTO ip_allocations (subnet_id, addr, owner_id) VALUES ($1, $2, $3)",
                &[subnet.id.as_str().into(), addr.into(), owner.into()],
            )
            .await;
        match res {
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Corrupt(format!(
                    "address {} of subnet {} is allocated but also in a free range",
                    Ipv4Addr::from(addr),
                    subnet.id
                )));
            }
            other => other?,
        };
        subnet.used += 1;
        Ok(Ipv4Addr::from(addr))
    }

    /// Allocates the highest free address of `subnet` (the caller holds
    /// the subnet's row lock); None when it has none left.
    pub async fn allocate_highest(
        &mut self,
        subnet: &mut Subnet,
        owner: &str,
    ) -> Result<Option<Ipv4Addr>, StoreError> {
        let top = self
            .range_where(
                "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 ORDER BY hi DESC LIMIT 1",
                &subnet.id,
                None,
            )
            .await?;
        match top {
            None => Ok(None),
            Some(r) => self
                .allocate(subnet, owner, Some(Ipv4Addr::from(r.last)))
                .await
                .map(Some),
        }
    }

    async fn insert_range(&mut self, subnet_id: &str, r: AddrRange) -> Result<(), StoreError> {
        self.write(
            "INSERT INTO ip_free_ranges (subnet_id, lo, hi) VALUES ($1, $2, $3)",
            &[subnet_id.into(), r.first.into(), r.last.into()],
        )
        .await?;
        Ok(())
    }

    /// Gives `addr` back to `subnet`'s pool (the caller holds the subnet's
    /// row lock), merging it with its free neighbours.
    pub async fn release(&mut self, subnet: &mut Subnet, addr: Ipv4Addr) -> Result<(), StoreError> {
        let a = u32::from(addr);
        let gone = self
            .write(
                "DELETE FROM ip_allocations WHERE subnet_id = $1 AND addr = $2",
                &[subnet.id.as_str().into(), a.into()],
            )
            .await?;
        if gone == 0 {
            return Err(StoreError::Corrupt(format!(
                "address {addr} of subnet {} was not allocated",
                subnet.id
            )));
        }
        let below = match a.checked_sub(1) {
            Some(b) => {
                self.range_where(
                    "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 AND lo <= $2 ORDER BY lo DESC LIMIT 1",
                    &subnet.id,
                    Some(b),
                )
                .await?
            }
            None => None,
        };
        let above = match a.checked_add(1) {
            Some(n) => {
                self.range_where(
                    "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 AND lo = $2",
                    &subnet.id,
                    Some(n),
                )
                .await?
            }
            None => None,
        };
        let g = ipam::give(a, below, above);
        for r in [g.absorbed_below, g.absorbed_above].into_iter().flatten() {
            self.write(
                "DELETE FROM ip_free_ranges WHERE subnet_id = $1 AND lo = $2",
                &[subnet.id.as_str().into(), r.first.into()],
            )
            .await?;
        }
        self.insert_range(&subnet.id, g.merged).await?;
        subnet.used = subnet.used.saturating_sub(1);
        Ok(())
    }

    /// Addresses of a subnet held by anything but the subnet itself.
    pub async fn allocations_in_use(&mut self, subnet_id: &str) -> Result<usize, StoreError> {
        self.count(
            "SELECT COUNT(*) FROM ip_allocations WHERE subnet_id = $1 AND owner_id <> $1",
            &[subnet_id.into()],
        )
        .await
    }

    pub async fn drop_pool(&mut self, subnet_id: &str) -> Result<(), StoreError> {
        for sql in [
            "DELETE FROM ip_allocations WHERE subnet_id = $1",
            "DELETE FROM ip_free_ranges WHERE subnet_id = $1",
        ] {
            self.write(sql, &[subnet_id.into()]).await?;
        }
        Ok(())
    }

    // ---- relations ----

    pub async fn count(&mut self, sql: &str, args: &[Val]) -> Result<usize, StoreError> {
        let row = self
            .sql
            .query_opt(sql, args)
            .await?
            .ok_or_else(|| StoreError::Corrupt("COUNT returned no row".into()))?;
        Ok(usize::try_from(row.int(0)?).unwrap_or(0))
    }

    pub async fn exec(&mut self, sql: &str, args: &[&str]) -> Result<u64, StoreError> {
        let args: Vec<Val> = args.iter().map(|a| Val::from(*a)).collect();
        self.write(sql, &args).await
    }

    pub async fn strings(&mut self, sql: &str, key: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.sql.query(sql, &[key.into()]).await?;
        rows.iter().map(|r| r.text(0)).collect()
    }

    /// Rows of any query, for the few reads no typed method covers.
    pub async fn rows(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>, StoreError> {
        self.sql.query(sql, args).await
    }
}

/// Of the rows matching a name, the one `scope` means: the caller's own,
/// then a shared one.
fn pick<R: Resource>(scope: &Scope, kind: Kind, key: &str, rows: &[Row]) -> Result<R, StoreError> {
    let mut by_name = Vec::new();
    for row in rows {
        let tenant = row.text(0)?;
        if scope.sees(kind, &tenant) {
            by_name.push((tenant, row));
        }
    }
    let own: Vec<_> = by_name
        .iter()
        .filter(|(t, _)| t == scope.tenant())
        .collect();
    match (own.as_slice(), by_name.as_slice()) {
        ([(_, row)], _) => from_doc(&row.text(2)?),
        ([], [(_, row)]) => from_doc(&row.text(2)?),
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
