//! PostgreSQL through sqlx: values in and out, transactions that survive
//! a restarted server, errors, and fresh databases for tests.

use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Column, Postgres, Row as _, TypeInfo};

use super::{Row, Val};
use crate::error::{DbError, DbErrorKind, StoreError};

pub(super) fn bind_pg<'q>(
    mut q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    args: &[Val],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    for a in args {
        q = match a {
            Val::Null => q.bind(None::<String>),
            Val::Int(i) => q.bind(*i),
            Val::Text(s) => q.bind(s.clone()),
        };
    }
    q
}

pub(super) fn from_pg(row: &PgRow) -> Result<Row, StoreError> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match col.type_info().name() {
            "INT8" => row
                .try_get::<Option<i64>, _>(i)
                .map_err(pg_err)?
                .map(Val::Int),
            "INT4" => row
                .try_get::<Option<i32>, _>(i)
                .map_err(pg_err)?
                .map(|n| Val::Int(i64::from(n))),
            _ => row
                .try_get::<Option<String>, _>(i)
                .map_err(pg_err)?
                .map(Val::Text),
        };
        out.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(out))
}

pub(super) fn pg<'a>(
    tx: &'a mut Option<sqlx::Transaction<'static, Postgres>>,
) -> Result<&'a mut sqlx::Transaction<'static, Postgres>, StoreError> {
    tx.as_mut()
        .ok_or_else(|| StoreError::Corrupt("transaction used after commit".into()))
}

/// A transaction on a pooled connection. A connection the server has
/// closed meanwhile (PostgreSQL restarted, the backend terminated) fails
/// its `BEGIN`; sqlx then drops it, and the next one is tried: a database
/// restart costs no client request, whatever the number of stale
/// connections in the pool (connections are not pinged before use: that
/// would cost every transaction a round trip).
pub(super) async fn pg_begin(
    p: &PgPool,
) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
    pg_begin_with(p, "BEGIN").await
}

///
/// The BEGIN runs in a task of its own, so that it finishes even when the
/// caller is dropped on the way (a client hanging up, an agent killed in
/// its long poll): sqlx counts a transaction only once its BEGIN has
/// answered, and one cancelled in flight went back to the pool still open,
/// where the next writer ran inside it. Finished, the transaction is
/// dropped as any other and rolled back.
pub(super) async fn pg_begin_with(
    p: &PgPool,
    begin: &'static str,
) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
    let p = p.clone();
    tokio::spawn(async move {
        let mut tries = 0u32;
        loop {
            match p.begin_with(begin).await {
                Ok(t) => return Ok(t),
                Err(e) if broken_connection(&e) && tries <= p.options().get_max_connections() => {
                    tries += 1;
                }
                Err(e) => return Err(pg_err(e)),
            }
        }
    })
    .await
    .map_err(|e| StoreError::Corrupt(format!("the task beginning a transaction failed: {e}")))?
}

/// The connection is gone, not the statement wrong: I/O errors, protocol
/// errors, and PostgreSQL's admin shutdown and connection exception codes.
fn broken_connection(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("57P0") || c.starts_with("08")),
        _ => false,
    }
}

/// `s` as a PostgreSQL literal, dollar-quoted with a tag that first
/// occurs after it where it is closed (not in it, nor across its end, as
/// `a$v` then `$v$` would): nothing in it is read as SQL, whatever the
/// server's `standard_conforming_strings`.
pub(crate) fn pg_literal(s: &str) -> String {
    let mut tag = "$v$".to_string();
    let mut i = 0u32;
    while format!("{s}{tag}").find(&tag) != Some(s.len()) {
        tag = format!("$v{i}$");
        i += 1;
    }
    format!("{tag}{s}{tag}")
}

/// The SQLSTATE `vpcip_finish` raises a count beyond its quota with.
const OVER_QUOTA: &str = "VP001";

pub(crate) fn pg_err(e: sqlx::Error) -> StoreError {
    let kind = match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some(OVER_QUOTA) => {
            return StoreError::Db(DbError {
                kind: DbErrorKind::OverQuota,
                message: d.message().to_string(),
                constraint: None,
            });
        }
        sqlx::Error::Database(d) if d.is_unique_violation() => DbErrorKind::Unique,
        sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("40001" | "40P01")) => {
            DbErrorKind::Retryable
        }
        _ => DbErrorKind::Other,
    };
    let constraint = match &e {
        sqlx::Error::Database(d) => d.constraint().map(str::to_string),
        _ => None,
    };
    StoreError::Db(DbError {
        kind,
        message: e.to_string(),
        constraint,
    })
}

/// Creates a fresh database `name` on the PostgreSQL server of `admin_url`
/// and returns its URL (tests and benchmarks).
pub async fn create_pg_database(admin_url: &str, name: &str) -> Result<String, StoreError> {
    use sqlx::Connection;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Config(format!("bad database name {name:?}")));
    }
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .map_err(pg_err)?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .map_err(pg_err)?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .ok_or_else(|| StoreError::Config(format!("bad PostgreSQL URL {admin_url:?}")))?;
    Ok(format!("{base}/{name}"))
}

#[cfg(test)]
mod tests {
    use super::pg_literal;

    /// The literal's text, as PostgreSQL reads it: up to the first
    /// occurrence of the opening tag.
    fn read(lit: &str) -> &str {
        let tag_end = lit[1..].find('$').map(|i| i + 2).unwrap();
        let tag = &lit[..tag_end];
        let body = &lit[tag_end..];
        &body[..body.find(tag).unwrap()]
    }

    #[test]
    fn a_literal_reads_back_whole_whatever_it_holds() {
        for s in [
            "",
            "plain",
            "it's",
            "$v$",
            "a$v",
            "a$v$v",
            "$v0$ and $v$",
            "$",
            "x$v1",
            "\\'\"",
        ] {
            assert_eq!(read(&pg_literal(s)), s, "{s:?} → {}", pg_literal(s));
        }
    }
}
