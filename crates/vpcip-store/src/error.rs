//! Store errors: a rule refused (the caller's fault, shown as is), or the
//! database failed (ours, shown as an internal error and logged).

use vpcip_model::RuleError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("store is inconsistent: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Config(String),
    /// A concurrent transaction won a race; the operation runs again.
    #[error("transaction lost a race")]
    Retry,
}

impl StoreError {
    /// Serialization failures, deadlocks and busy locks: running the whole
    /// transaction again is safe and gives the right answer.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Retry => true,
            StoreError::Db(sqlx::Error::Database(e)) => {
                matches!(
                    e.code().as_deref(),
                    Some("40001" | "40P01" | "5" | "517" | "6")
                )
            }
            _ => false,
        }
    }
}
