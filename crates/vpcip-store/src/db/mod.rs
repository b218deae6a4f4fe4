//! Connections, schema and the transaction primitives every operation is
//! built from: resource documents, row locks, and the IPAM free-range rows.
//!
//! One schema serves SQLite and PostgreSQL. Resources are JSON documents in
//! one table (indexed by kind, tenant, name, parent); everything that must be
//! unique (allocated addresses, bindings, client tokens) has a table of its
//! own whose keys the database enforces, whatever happens in memory.
//!
//! `migrations.rs` holds the schema, `resource.rs` how resources are
//! stored, `scope.rs` who sees what, `tx.rs` the transaction's reads and
//! writes, `alloc.rs` address allocation.

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

mod alloc;
pub use alloc::PoolUse;
mod conn;
use conn::{Conn, NewBinding, NewRow};
mod migrations;
mod resource;
mod scope;
pub(crate) mod tokens;
mod tx;

use migrations::MIGRATIONS;
pub(crate) use resource::from_doc;
pub use resource::{Resource, new_id, now};
pub(crate) use scope::SHARED;
pub use scope::Scope;

/// The store's database, SQLite or PostgreSQL.
#[derive(Clone, Debug)]
pub struct Db {
    pool: Pool,
    pub backend: Backend,
    /// Told after every commit that wrote: in this process directly, and,
    /// on PostgreSQL, from every controller sharing the database (its
    /// revision's trigger NOTIFYs `vpcip_revision`, which each controller
    /// LISTENs to).
    changes: std::sync::Arc<tokio::sync::watch::Sender<()>>,
    /// Per-tenant limits, checked in the transaction that creates.
    pub quotas: vpcip_model::rules::Quotas,
    /// Bearer tokens already looked up (see `tokens.rs`).
    pub(crate) tokens: std::sync::Arc<tokens::TokenCache>,
}

/// The revision's trigger (made again at every start: the function and
/// the trigger are replaced, not added).
const NOTIFY_REVISION: &str = "
CREATE OR REPLACE FUNCTION vpcip_notify_revision() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('vpcip_revision', NEW.value::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS revision_notify ON revision;
CREATE TRIGGER revision_notify AFTER UPDATE ON revision
    FOR EACH ROW EXECUTE FUNCTION vpcip_notify_revision();
";

/// PostgreSQL's end of every writing transaction (`Tx::commit_pg`), sent
/// with the COMMIT in one message: $1 the change log's rows, $2 the
/// subnets' changes of addresses in use, $3 the new resource still to
/// insert, $4 the tenants' changes of counts, $5 the quotas those counts
/// are held to, $6 the EIP binding still to insert. Each step waits for the one before by reading it
/// (`(SELECT COUNT(*) FROM …) >= 0`, evaluated once before its own rows).
/// Counts beyond their quotas are refused with SQLSTATE VP001, the
/// message a JSON array of `{tenant, kind, n}`: the transaction then
/// rolls back, and the COMMIT after it does not run.
const FINISH: &str = "
CREATE OR REPLACE FUNCTION vpcip_finish(json, json, json, json, json, json) RETURNS void AS $$
DECLARE
    over json;
BEGIN
    WITH b AS (
         INSERT INTO eip_bindings (target_id, eip_id, mode)
         SELECT x.target_id, x.eip_id, x.mode
         FROM json_to_recordset($6) AS x(target_id text, eip_id text, mode text)
         RETURNING target_id),
     i AS (
         INSERT INTO resources (id, kind, tenant, name, parent, attached, doc, created_at)
         SELECT x.id, x.kind, x.tenant, x.name, x.parent, x.attached, x.doc, x.created_at
         FROM json_to_recordset($3) AS x(id text, kind text, tenant text, name text,
             parent text, attached text, doc text, created_at bigint)
         WHERE (SELECT COUNT(*) FROM b) >= 0
         RETURNING id),
     u AS (
         INSERT INTO usage (tenant, kind, n)
         SELECT x.tenant, x.kind, x.by
         FROM json_to_recordset($4) AS x(tenant text, kind text, by bigint)
         WHERE (SELECT COUNT(*) FROM i) >= 0
         ORDER BY x.tenant, x.kind
         ON CONFLICT (tenant, kind) DO UPDATE SET n = usage.n + excluded.n
         RETURNING tenant, kind, n),
     p AS (
         UPDATE resources AS s
         SET doc = jsonb_set(s.doc::jsonb, '{used}',
             to_jsonb(((s.doc::jsonb) ->> 'used')::bigint + x.by))::text
         FROM json_to_recordset($2) AS x(id text, by bigint)
         WHERE s.kind = 'subnet' AND s.id = x.id AND (SELECT COUNT(*) FROM u) >= 0
         RETURNING s.id, s.kind, s.doc),
     r AS (
         UPDATE revision SET value = value + 1
         WHERE id = 1 AND (SELECT COUNT(*) FROM p) >= 0
         RETURNING value),
     l AS (
         INSERT INTO changes (rev, id, kind, doc)
         SELECT r.value, x.id, x.kind, x.doc
         FROM r, json_to_recordset($1) AS x(id text, kind text, doc text)
         WHERE x.id NOT IN (SELECT id FROM p)
         UNION ALL
         SELECT r.value, p.id, p.kind, p.doc FROM r, p
         RETURNING rev)
    SELECT json_agg(json_build_object('tenant', u.tenant, 'kind', u.kind, 'n', u.n))
    INTO over
    FROM u
    JOIN json_to_recordset($4) AS d(tenant text, kind text, by bigint)
        ON d.tenant = u.tenant AND d.kind = u.kind
    JOIN json_to_recordset($5) AS q(tenant text, kind text, lim bigint)
        ON q.tenant = u.tenant AND q.kind = u.kind
    WHERE d.by > 0 AND u.n > q.lim AND (SELECT COUNT(*) FROM l) >= 0;
    IF over IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'VP001', MESSAGE = over::text;
    END IF;
END
$$ LANGUAGE plpgsql;
";

/// The channel a token's revocation is told on (`Store::delete_token`).
pub(crate) const TOKENS_CHANNEL: &str = "vpcip_tokens";

/// Wakes this process's waiters on every other controller's commit: a
/// task LISTENing to `vpcip_revision` for as long as the process runs. A
/// lost connection is made again (sqlx's listener does), and the waiters
/// are woken then too, since notifications sent meanwhile are lost.
///
/// It also hears token revocations (`vpcip_tokens`): the token cache is
/// emptied on each, and keeps nothing from the moment the connection is
/// found lost until a notification is heard again.
async fn listen(
    pool: sqlx::PgPool,
    changes: std::sync::Arc<tokio::sync::watch::Sender<()>>,
    tokens: std::sync::Arc<tokens::TokenCache>,
) -> Result<(), StoreError> {
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .map_err(crate::sql::pg_err)?;
    listener
        .listen_all(["vpcip_revision", TOKENS_CHANNEL])
        .await
        .map_err(crate::sql::pg_err)?;
    tokens.set_trusted(true);
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    failing = false;
                    tokens.set_trusted(true);
                    if n.channel() == TOKENS_CHANNEL {
                        tokens.forget_all();
                    } else {
                        changes.send_replace(());
                    }
                }
                // The connection was lost and is made again on the next
                // call: what was sent meanwhile is unknown.
                Ok(None) => {
                    tokens.set_trusted(false);
                    changes.send_replace(());
                }
                Err(e) => {
                    tokens.set_trusted(false);
                    if !failing {
                        tracing::warn!(error = %e, "listening to other controllers' commits failed; retrying");
                        failing = true;
                    }
                    changes.send_replace(());
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}

impl Db {
    pub async fn connect(url: &str, connections: Option<u32>) -> Result<Self, StoreError> {
        let pool = Pool::connect(url, connections).await?;
        let backend = pool.backend();
        let db = Db {
            backend,
            pool,
            changes: std::sync::Arc::new(tokio::sync::watch::channel(()).0),
            quotas: Default::default(),
            // SQLite's one controller revokes its tokens itself;
            // PostgreSQL's keep nothing until they listen to each other.
            tokens: std::sync::Arc::new(tokens::TokenCache::new(backend == Backend::Sqlite)),
        };
        db.migrate().await?;
        if let Pool::Pg(pool) = &db.pool {
            listen(pool.clone(), db.changes.clone(), db.tokens.clone()).await?;
        }
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
        // Servers stored before a server's host was kept in `attached`
        // (hosts' loads are counted by it): filled in once.
        let unfilled = tx
            .rows(
                "SELECT doc FROM resources WHERE kind = $1 AND attached IS NULL",
                &[Kind::Server.key().into()],
            )
            .await?;
        for row in unfilled {
            let server: Server = from_doc(&row.text(0)?)?;
            if let Some(host) = &server.host {
                tx.write_quiet(
                    "UPDATE resources SET attached = $1 WHERE id = $2",
                    &[host.into(), server.id.into()],
                )
                .await?;
            }
        }
        if self.backend == Backend::Postgres {
            // Every change of the revision tells every controller
            // (LISTEN vpcip_revision), in the committing transaction: the
            // notification leaves with the commit, and costs no round trip.
            tx.sql.batch(NOTIFY_REVISION).await?;
            tx.sql.batch(FINISH).await?;
        }
        tx.commit().await
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            sql: Conn::new(self.pool.begin().await?, self.backend),
            backend: self.backend,
            dirty: false,
            log: Vec::new(),
            changes: Some(self.changes.clone()),
            quotas: self.quotas,
            usage: Default::default(),
            limits: Default::default(),
            addresses_used: Default::default(),
        })
    }

    /// Wakes when a write commits in this process.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// Forgets the tokens looked up (tests that change a token's row
    /// behind the store's back).
    #[cfg(feature = "testing")]
    pub fn forget_tokens(&self) {
        self.tokens.forget_all();
    }

    /// The store's revision: bumped by every committed write.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        self.read_once("SELECT value FROM revision WHERE id = 1", &[])
            .await?
            .first()
            .ok_or_else(|| StoreError::Corrupt("no revision row".into()))?
            .int(0)
    }

    /// One read statement on its own: one round trip on PostgreSQL (for
    /// reads of one table, such as a token's lookup on every request).
    pub(crate) async fn read_once(
        &self,
        sql: &str,
        args: &[crate::sql::Val],
    ) -> Result<Vec<crate::sql::Row>, StoreError> {
        self.pool.query_once(sql, args).await
    }

    /// A read-only transaction (one consistent snapshot).
    pub async fn begin_read(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            sql: Conn::new(self.pool.begin_read().await?, self.backend),
            backend: self.backend,
            dirty: false,
            log: Vec::new(),
            changes: None,
            quotas: self.quotas,
            usage: Default::default(),
            limits: Default::default(),
            addresses_used: Default::default(),
        })
    }
}

pub enum Claim<R> {
    Existing(R),
    New(String),
}

/// One transaction: every mutation of the store is exactly one of these.
pub struct Tx {
    pub(crate) sql: Conn,
    pub backend: Backend,
    /// Whether this transaction wrote anything (then commit bumps the
    /// revision).
    pub(super) dirty: bool,
    /// The resources this transaction wrote (ID, kind, document or None
    /// when deleted), for the change log.
    pub(super) log: Vec<(String, &'static str, Option<String>)>,
    pub(super) changes: Option<std::sync::Arc<tokio::sync::watch::Sender<()>>>,
    pub(super) quotas: vpcip_model::rules::Quotas,
    /// What this transaction adds to each tenant's counts (tenant, kind
    /// key), applied at commit.
    pub(super) usage: std::collections::BTreeMap<(String, &'static str), i64>,
    /// The counts checked against a quota at commit: (tenant, kind key) →
    /// the kind's name and limit.
    pub(super) limits: std::collections::BTreeMap<(String, &'static str), (&'static str, u32)>,
    /// What this transaction adds to each subnet's count of addresses in
    /// use (subnet ID → change), written into the subnet's document at
    /// commit: allocations in one subnet do not queue on its row for their
    /// whole transactions.
    pub(super) addresses_used: std::collections::BTreeMap<String, i64>,
}
