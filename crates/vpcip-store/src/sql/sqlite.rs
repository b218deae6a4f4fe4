//! SQLite through rusqlite: opening a database file, values in and out,
//! errors.

use std::path::PathBuf;
use std::time::Duration;

use super::{Lite, Val};
use crate::error::{DbError, DbErrorKind, StoreError};

pub(super) fn sqlite_path(url: &str) -> Result<PathBuf, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.contains(":memory:") {
        return Err(StoreError::Config(format!(
            "SQLite URL {url:?} needs a file path (sqlite://PATH)"
        )));
    }
    Ok(PathBuf::from(path))
}

pub(super) fn open_lite(path: &PathBuf) -> Result<Lite, StoreError> {
    let conn = Lite::open(path).map_err(lite_err)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(lite_err)?;
    // WAL: readers see a snapshot and never block the writer; NORMAL sync is
    // durable across application crashes (a power loss may drop the last
    // commits, never corrupt).
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .map_err(lite_err)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// `$1` → `?1`: the same SQL text for both back ends.
pub(super) fn lite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

pub(super) fn to_lite(v: &Val) -> rusqlite::types::Value {
    match v {
        Val::Null => rusqlite::types::Value::Null,
        Val::Int(i) => rusqlite::types::Value::Integer(*i),
        Val::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

pub(super) fn from_lite(v: rusqlite::types::ValueRef<'_>) -> Val {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        // vpcip stores no reals (a float's `as` saturates; never UB).
        #[allow(clippy::cast_possible_truncation)]
        ValueRef::Real(f) => Val::Int(f as i64),
        ValueRef::Text(t) | ValueRef::Blob(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

pub(super) fn lite_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi;
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            DbErrorKind::Unique
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            DbErrorKind::Retryable
        }
        _ => DbErrorKind::Other,
    };
    StoreError::Db(DbError {
        kind,
        message: e.to_string(),
        constraint: None,
    })
}
