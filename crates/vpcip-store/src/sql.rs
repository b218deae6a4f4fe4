//! The two SQL back ends behind one small executor: PostgreSQL through sqlx,
//! SQLite through rusqlite.
//!
//! Why not sqlx for SQLite too: sqlx runs each SQLite statement on a worker
//! thread and hands the result back through channels, about 20 µs of thread
//! hops per statement. An EIP allocate+bind is ~15 statements inside the one
//! write transaction SQLite allows at a time, so those hops alone capped the
//! API at ~1,200 operations/s on 2 cores (BENCHMARKS.md). rusqlite runs the
//! statements in line, a few µs each, on connections guarded by async
//! mutexes. Both speak the same SQL: `$N` placeholders are rewritten to
//! SQLite's `?N`.
//!
//! `sqlite.rs` and `postgres.rs` hold each back end's connections,
//! conversions and errors; this file the executor both sit behind.

mod postgres;
mod sqlite;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::StoreError;
pub use postgres::create_pg_database;
use postgres::{bind_pg, from_pg, pg, pg_begin, pg_begin_with};
pub(crate) use postgres::{pg_err, pg_literal};
use sqlite::{from_lite, lite_err, lite_sql, open_lite, sqlite_path, to_lite};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A bound value or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl From<&str> for Val {
    fn from(s: &str) -> Self {
        Val::Text(s.to_string())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Self {
        Val::Text(s)
    }
}
impl From<&String> for Val {
    fn from(s: &String) -> Self {
        Val::Text(s.clone())
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Self {
        Val::Int(i)
    }
}
impl From<u32> for Val {
    fn from(i: u32) -> Self {
        Val::Int(i64::from(i))
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// One result row, columns by position.
#[derive(Debug, Clone)]
pub struct Row(pub(crate) Vec<Val>);

impl Row {
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.0.get(i) {
            Some(Val::Text(s)) => Ok(s.clone()),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.0.get(i) {
            Some(Val::Null) => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.0.get(i) {
            Some(Val::Int(n)) => Ok(*n),
            other => Err(StoreError::Corrupt(format!(
                "column {i}: expected an integer, got {other:?}"
            ))),
        }
    }

    pub fn u32(&self, i: usize) -> Result<u32, StoreError> {
        let n = self.int(i)?;
        u32::try_from(n)
            .map_err(|_| StoreError::Corrupt(format!("column {i}: {n} is not an IPv4 address")))
    }
}

type Lite = rusqlite::Connection;

/// The database: a PostgreSQL pool, or one SQLite writer and a few readers
/// (WAL: readers never block the writer, and SQLite has one writer anyway).
#[derive(Clone)]
pub enum Pool {
    Pg(PgPool),
    Lite {
        writer: Arc<Mutex<Lite>>,
        readers: Arc<Vec<Arc<Mutex<Lite>>>>,
        next: Arc<AtomicUsize>,
    },
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pool::Pg(_) => f.write_str("Pool::Pg"),
            Pool::Lite { .. } => f.write_str("Pool::Lite"),
        }
    }
}

/// PostgreSQL connections a controller keeps by default: twice this
/// machine's cores, plus the one that listens to the other controllers
/// (`LISTEN`, held for good). Every write ends on rows all writers share
/// (the revision; a tenant's count; a segment's), held from its last
/// statement to its commit: with more transactions running than cores,
/// the one holding them waits for a CPU while the others wait for it
/// (BENCHMARKS.md: allocate+bind with 8 clients ×1.4 against 32
/// connections on 2 cores).
pub fn default_pg_connections() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(2 * cores + 1).unwrap_or(u32::MAX)
}

impl Pool {
    /// `connections`: PostgreSQL's at most (default
    /// [`default_pg_connections`]).
    pub async fn connect(url: &str, connections: Option<u32>) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let path = sqlite_path(url)?;
            let writer = open_lite(&path)?;
            let readers = (0..4)
                .map(|_| open_lite(&path).map(|c| Arc::new(Mutex::new(c))))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Pool::Lite {
                writer: Arc::new(Mutex::new(writer)),
                readers: Arc::new(readers),
                next: Arc::new(AtomicUsize::new(0)),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(connections.unwrap_or_else(default_pg_connections).max(2))
                .acquire_timeout(Duration::from_secs(60))
                .test_before_acquire(false)
                .connect(url)
                .await
                .map_err(pg_err)?;
            Ok(Pool::Pg(pool))
        } else {
            Err(StoreError::Config(format!(
                "database URL {url:?} is neither sqlite://PATH nor postgres://…"
            )))
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Pool::Pg(_) => Backend::Postgres,
            Pool::Lite { .. } => Backend::Sqlite,
        }
    }

    /// A read-write transaction (on SQLite: the writer, `BEGIN IMMEDIATE`,
    /// so it never has to upgrade a read lock).
    pub async fn begin(&self) -> Result<SqlTx, StoreError> {
        match self {
            Pool::Pg(p) => Ok(SqlTx::Pg(Some(pg_begin(p).await?))),
            Pool::Lite { writer, .. } => {
                let conn = writer.clone().lock_owned().await;
                conn.execute_batch("BEGIN IMMEDIATE").map_err(lite_err)?;
                Ok(SqlTx::Lite { conn, open: true })
            }
        }
    }

    /// One read statement on its own (its own snapshot): on PostgreSQL one
    /// round trip, where a read transaction takes three (BEGIN, the
    /// statement, COMMIT).
    pub async fn query_once(&self, sql: &str, args: &[Val]) -> Result<Vec<Row>, StoreError> {
        match self {
            Pool::Pg(p) => {
                let rows = bind_pg(sqlx::query(sql), args)
                    .fetch_all(p)
                    .await
                    .map_err(pg_err)?;
                rows.iter().map(from_pg).collect()
            }
            Pool::Lite { .. } => self.begin_read().await?.query(sql, args).await,
        }
    }

    /// A read-only transaction: one consistent snapshot.
    pub async fn begin_read(&self) -> Result<SqlTx, StoreError> {
        match self {
            // PostgreSQL's default (READ COMMITTED) takes a snapshot per
            // statement: a reader of several tables could see a write
            // committed between its statements (an EIP's binding row
            // without its document). REPEATABLE READ keeps one.
            Pool::Pg(p) => Ok(SqlTx::Pg(Some(
                pg_begin_with(p, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?,
            ))),
            Pool::Lite { readers, next, .. } => {
                let free = readers.iter().find_map(|r| r.clone().try_lock_owned().ok());
                let conn = match free {
                    Some(c) => c,
                    None => {
                        let i = next.fetch_add(1, Ordering::Relaxed) % readers.len();
                        readers[i].clone().lock_owned().await
                    }
                };
                conn.execute_batch("BEGIN").map_err(lite_err)?;
                Ok(SqlTx::Lite { conn, open: true })
            }
        }
    }
}

/// One transaction on either back end. Dropped without `commit`, it rolls
/// back.
pub enum SqlTx {
    /// `None` once committed.
    Pg(Option<sqlx::Transaction<'static, Postgres>>),
    Lite {
        conn: OwnedMutexGuard<Lite>,
        open: bool,
    },
}

impl Drop for SqlTx {
    fn drop(&mut self) {
        if let SqlTx::Lite { conn, open: true } = self {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

impl SqlTx {
    pub async fn query(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>, StoreError> {
        match self {
            SqlTx::Pg(tx) => {
                let rows = bind_pg(sqlx::query(sql), args)
                    .fetch_all(&mut **pg(tx)?)
                    .await
                    .map_err(pg_err)?;
                rows.iter().map(from_pg).collect()
            }
            SqlTx::Lite { conn, .. } => {
                let mut stmt = conn.prepare_cached(&lite_sql(sql)).map_err(lite_err)?;
                let n = stmt.column_count();
                let params = rusqlite::params_from_iter(args.iter().map(to_lite));
                let mut rows = stmt.query(params).map_err(lite_err)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(lite_err)? {
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(from_lite(r.get_ref(i).map_err(lite_err)?));
                    }
                    out.push(Row(vals));
                }
                Ok(out)
            }
        }
    }

    pub async fn query_opt(&mut self, sql: &str, args: &[Val]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args).await?.into_iter().next())
    }

    pub async fn execute(&mut self, sql: &str, args: &[Val]) -> Result<u64, StoreError> {
        match self {
            SqlTx::Pg(tx) => Ok(bind_pg(sqlx::query(sql), args)
                .execute(&mut **pg(tx)?)
                .await
                .map_err(pg_err)?
                .rows_affected()),
            SqlTx::Lite { conn, .. } => {
                let mut stmt = conn.prepare_cached(&lite_sql(sql)).map_err(lite_err)?;
                let n = stmt
                    .execute(rusqlite::params_from_iter(args.iter().map(to_lite)))
                    .map_err(lite_err)?;
                Ok(n as u64)
            }
        }
    }

    /// Statements without parameters, several at once (schema changes).
    pub async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            SqlTx::Pg(tx) => {
                sqlx::raw_sql(sql)
                    .execute(&mut **pg(tx)?)
                    .await
                    .map_err(pg_err)?;
                Ok(())
            }
            SqlTx::Lite { conn, .. } => conn.execute_batch(sql).map_err(lite_err),
        }
    }

    /// PostgreSQL: `sql` (one statement, its values written in it) and
    /// the commit in one message, so that the rows its writes lock are
    /// released without waiting a round trip for the COMMIT. A new, empty
    /// transaction ends the message: dropping it here queues its
    /// ROLLBACK, which leaves with the test sqlx makes of every
    /// connection returned to the pool (its transaction count stays
    /// right, and no stray ROLLBACK is sent outside a transaction).
    pub async fn commit_after(&mut self, sql: &str) -> Result<(), StoreError> {
        let SqlTx::Pg(tx) = self else {
            return Err(StoreError::Corrupt("commit_after on SQLite".into()));
        };
        let mut tx = tx
            .take()
            .ok_or_else(|| StoreError::Corrupt("transaction committed twice".into()))?;
        let message: String = format!("{sql}; COMMIT; BEGIN");
        let conn: &mut sqlx::PgConnection = &mut tx;
        sqlx::Executor::execute(conn, message.as_str())
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        match &mut self {
            SqlTx::Lite { conn, open } => {
                *open = false;
                if let Err(e) = conn.execute_batch("COMMIT") {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(lite_err(e));
                }
                Ok(())
            }
            SqlTx::Pg(tx) => match tx.take() {
                Some(tx) => tx.commit().await.map_err(pg_err),
                None => Err(StoreError::Corrupt("transaction committed twice".into())),
            },
        }
    }
}
