//! Store errors: a rule refused (the caller's fault, shown as is), or the
//! database failed (ours, shown as an internal error and logged).

use vpcip_model::RuleError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("database error: {0}")]
    Db(DbError),
    #[error("store is inconsistent: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Config(String),
    /// A concurrent transaction won a race; the operation runs again.
    #[error("transaction lost a race")]
    Retry,
    /// Not ready yet (the watch catching up after a start): retry.
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A unique or primary key was violated.
    Unique,
    /// Serialization failure, deadlock, busy database: run again.
    Retryable,
    /// PostgreSQL: counts beyond their quotas, checked in the commit's
    /// statement (the message: a JSON array of `{tenant, kind, n}`).
    OverQuota,
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    pub kind: DbErrorKind,
    pub message: String,
    /// The constraint violated, when the database names it.
    pub constraint: Option<String>,
}

impl StoreError {
    /// Running the whole transaction again is safe and gives the right
    /// answer.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Retry
                | StoreError::Db(DbError {
                    kind: DbErrorKind::Retryable,
                    ..
                })
        )
    }

    /// A unique violation of one of `table`'s keys (named `<table>_…`,
    /// as PostgreSQL names them).
    pub fn violates(&self, table: &str) -> bool {
        match self {
            StoreError::Db(DbError {
                kind: DbErrorKind::Unique,
                constraint: Some(c),
                ..
            }) => c
                .strip_prefix(table)
                .is_some_and(|rest| rest.starts_with('_')),
            _ => false,
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            StoreError::Db(DbError {
                kind: DbErrorKind::Unique,
                ..
            })
        )
    }
}
