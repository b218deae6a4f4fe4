//! A transaction's statements, in order — except a new resource's insert
//! on PostgreSQL, which waits for the transaction's next statement and runs
//! just before it, or, when it is the last write, inside the commit's own
//! statement ([`Conn::take_pending`]): every create saves a round trip, and
//! an EIP's allocate+bind holds its segment's lowest free range for one
//! round trip fewer (what concurrent allocations in a segment queue on).

use super::*;

const INSERT: &str =
    "INSERT INTO resources (id, kind, tenant, name, parent, attached, doc, created_at)
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// A resource's row, to be inserted.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NewRow {
    pub id: String,
    pub kind: &'static str,
    pub tenant: String,
    pub name: Option<String>,
    pub parent: Option<String>,
    pub attached: Option<String>,
    pub doc: String,
    pub created_at: i64,
    /// The kind's name in errors.
    #[serde(skip)]
    pub kind_name: &'static str,
}

impl NewRow {
    pub fn of<R: Resource>(r: &R, doc: String) -> Self {
        NewRow {
            id: r.id().to_string(),
            kind: R::KIND.key(),
            tenant: r.tenant().to_string(),
            name: (!r.name().is_empty()).then(|| r.name().to_string()),
            parent: r.parent().map(str::to_string),
            attached: r.attached().map(str::to_string),
            doc,
            created_at: now(),
            kind_name: R::KIND.as_str(),
        }
    }

    /// The error its insert's unique violation means: the name is taken
    /// (IDs are random).
    pub fn refusal(&self, e: StoreError) -> StoreError {
        if e.is_unique_violation() {
            RuleError::NameTaken {
                kind: self.kind_name,
                name: self.name.clone().unwrap_or_default(),
            }
            .into()
        } else {
            e
        }
    }

    fn args(&self) -> Vec<Val> {
        vec![
            self.id.as_str().into(),
            self.kind.into(),
            self.tenant.as_str().into(),
            self.name.as_deref().into(),
            self.parent.as_deref().into(),
            self.attached.as_deref().into(),
            self.doc.as_str().into(),
            self.created_at.into(),
        ]
    }
}

const INSERT_BINDING: &str =
    "INSERT INTO eip_bindings (target_id, eip_id, mode) VALUES ($1, $2, $3)";

/// An EIP's binding, to be inserted.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NewBinding {
    pub target_id: String,
    pub eip_id: String,
    pub mode: &'static str,
}

impl NewBinding {
    /// The error its insert's unique violation means: another transaction
    /// bound the target (or the EIP) after this one read who holds it —
    /// run again, the holder is then seen and refused.
    pub fn refusal(e: StoreError) -> StoreError {
        if e.is_unique_violation() {
            StoreError::Retry
        } else {
            e
        }
    }
}

/// The transaction's connection with at most one resource's insert and one
/// binding's insert waiting.
pub(crate) struct Conn {
    sql: SqlTx,
    backend: Backend,
    pending: Option<NewRow>,
    binding: Option<NewBinding>,
}

impl Conn {
    pub fn new(sql: SqlTx, backend: Backend) -> Self {
        Conn {
            sql,
            backend,
            pending: None,
            binding: None,
        }
    }

    /// Inserts `row`: on PostgreSQL when the next statement runs (a
    /// refusal — the name taken — is then that statement's error: the
    /// transaction is spoiled either way), on SQLite now.
    pub async fn insert(&mut self, row: NewRow) -> Result<(), StoreError> {
        if self.pending.is_some() {
            self.flush().await?;
        }
        match self.backend {
            Backend::Postgres => {
                self.pending = Some(row);
                Ok(())
            }
            Backend::Sqlite => {
                let res = self.sql.execute(INSERT, &row.args()).await;
                res.map(|_| ()).map_err(|e| row.refusal(e))
            }
        }
    }

    /// Inserts an EIP's binding: on PostgreSQL when the next statement
    /// runs, or in the commit's own (as [`Conn::insert`]); on SQLite now.
    pub async fn insert_binding(&mut self, b: NewBinding) -> Result<(), StoreError> {
        if self.binding.is_some() {
            self.flush().await?;
        }
        match self.backend {
            Backend::Postgres => {
                self.binding = Some(b);
                Ok(())
            }
            Backend::Sqlite => self.execute_binding(&b).await,
        }
    }

    async fn execute_binding(&mut self, b: &NewBinding) -> Result<(), StoreError> {
        let args = [
            b.target_id.as_str().into(),
            b.eip_id.as_str().into(),
            b.mode.into(),
        ];
        let res = self.sql.execute(INSERT_BINDING, &args).await;
        res.map(|_| ()).map_err(NewBinding::refusal)
    }

    /// The inserts still waiting, for the commit's statement to make.
    pub fn take_pending(&mut self) -> (Option<NewRow>, Option<NewBinding>) {
        (self.pending.take(), self.binding.take())
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if let Some(row) = self.pending.take() {
            let res = self.sql.execute(INSERT, &row.args()).await;
            res.map_err(|e| row.refusal(e))?;
        }
        if let Some(b) = self.binding.take() {
            self.execute_binding(&b).await?;
        }
        Ok(())
    }

    pub async fn query(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>, StoreError> {
        self.flush().await?;
        self.sql.query(sql, args).await
    }

    pub async fn query_opt(&mut self, sql: &str, args: &[Val]) -> Result<Option<Row>, StoreError> {
        self.flush().await?;
        self.sql.query_opt(sql, args).await
    }

    pub async fn execute(&mut self, sql: &str, args: &[Val]) -> Result<u64, StoreError> {
        self.flush().await?;
        self.sql.execute(sql, args).await
    }

    pub async fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.flush().await?;
        self.sql.batch(sql).await
    }

    /// PostgreSQL: `sql` and the commit in one message (see
    /// `SqlTx::commit_after`); the connection is done with after it.
    pub async fn commit_after(&mut self, sql: &str) -> Result<(), StoreError> {
        self.flush().await?;
        self.sql.commit_after(sql).await
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.flush().await?;
        self.sql.commit().await
    }
}
