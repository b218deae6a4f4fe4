//! A transaction's reads and writes of resources, idempotent creates and
//! relations.
//!
//! `read.rs` holds the look-ups (by ID or name, lists, pages), `claim.rs`
//! the idempotent creates; this file the writes, quotas, commit and
//! relations.

mod claim;
mod read;

use super::*;
use crate::error::{DbError, DbErrorKind};
use crate::sql::pg_literal;

impl Tx {
    /// Refuses a new resource of `kind` for `tenant` beyond the tenant's
    /// quota of them. Checked when the transaction commits, against the
    /// tenant's count as this transaction leaves it: the count's row is
    /// locked only from there to the commit (racing creates for one tenant
    /// queue there, not for their whole transactions), and cannot both
    /// pass.
    pub fn check_quota(&mut self, tenant: &str, kind: Kind) {
        if let Some(limit) = self.quotas.of(kind)
            && tenant != SYSTEM_TENANT
        {
            self.limits
                .insert((tenant.to_string(), kind.key()), (kind.as_str(), limit));
        }
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        let wrote = self.dirty;
        let changes = self.changes.take();
        match (wrote, self.backend) {
            (true, Backend::Postgres) => self.commit_pg().await?,
            (true, Backend::Sqlite) => {
                self.count_and_check_sqlite().await?;
                self.bump_and_log_sqlite().await?;
                self.sql.commit().await?;
            }
            (false, _) => self.sql.commit().await?,
        }
        if let (true, Some(c)) = (wrote, changes) {
            c.send_replace(());
        }
        Ok(())
    }

    /// This transaction's changes of the tenants' counts (what quotas are
    /// checked against), as JSON rows.
    fn usage_deltas(&self) -> Vec<serde_json::Value> {
        self.usage
            .iter()
            .filter(|(_, by)| **by != 0)
            .map(|((tenant, kind), by)| serde_json::json!({"tenant": tenant, "kind": kind, "by": by}))
            .collect()
    }

    /// Refuses a count (tenant, kind, count as this transaction leaves
    /// it) beyond its quota, for the kinds this transaction created.
    fn check_counts(&self, counted: Vec<Row>) -> Result<(), StoreError> {
        for row in counted {
            let (tenant, kind, n) = (row.text(0)?, row.text(1)?, row.int(2)?);
            let Some(((_, key), (name, limit))) = self
                .limits
                .iter()
                .find(|((t, k), _)| *t == tenant && *k == kind)
            else {
                continue;
            };
            let by = self
                .usage
                .get(&(tenant.clone(), *key))
                .copied()
                .unwrap_or(0);
            if by > 0 && n > i64::from(*limit) {
                return Err(RuleError::QuotaExceeded {
                    tenant,
                    kind: name,
                    count: usize::try_from(n - by).unwrap_or(0),
                    limit: *limit,
                }
                .into());
            }
        }
        Ok(())
    }

    /// The changes of subnets' counts of addresses in use, as JSON rows.
    fn used_deltas(&mut self) -> Vec<serde_json::Value> {
        std::mem::take(&mut self.addresses_used)
            .into_iter()
            .filter(|(_, by)| *by != 0)
            .map(|(id, by)| serde_json::json!({"id": id, "by": by}))
            .collect()
    }

    /// The change log's rows: the last write of each resource.
    fn log_rows(&mut self) -> String {
        let mut seen = std::collections::BTreeSet::new();
        let log: Vec<serde_json::Value> = std::mem::take(&mut self.log)
            .into_iter()
            .rev()
            .filter(|(id, _, _)| seen.insert(id.clone()))
            .map(|(id, kind, doc)| serde_json::json!({"id": id, "kind": kind, "doc": doc}))
            .collect();
        serde_json::Value::Array(log).to_string()
    }

    /// PostgreSQL's end of a writing transaction and its commit, in one
    /// message (`vpcip_finish`, then COMMIT): the insert still waiting
    /// (see `conn.rs`), the tenants' counts (rows taken in key order, and
    /// refused beyond their quotas), the subnets' counts of addresses in
    /// use, the revision's bump and the change log — the rows locked in
    /// that order by every transaction, so no deadlock; and the hot ones
    /// (a tenant's count, a subnet, the revision) held only while
    /// PostgreSQL runs the message, not for a round trip to the COMMIT:
    /// writers queue on them for microseconds.
    async fn commit_pg(&mut self) -> Result<(), StoreError> {
        let (pending, binding) = self.sql.take_pending();
        let inserted = serde_json::to_string(&pending.iter().collect::<Vec<_>>())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let bound = serde_json::to_string(&binding.iter().collect::<Vec<_>>())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let usage = serde_json::Value::Array(self.usage_deltas()).to_string();
        let used = serde_json::Value::Array(self.used_deltas()).to_string();
        let log = self.log_rows();
        let limits: Vec<serde_json::Value> = self
            .limits
            .iter()
            .map(|((tenant, kind), (_, limit))| {
                serde_json::json!({"tenant": tenant, "kind": kind, "lim": limit})
            })
            .collect();
        let limits = serde_json::Value::Array(limits).to_string();
        let call = format!(
            "SELECT vpcip_finish({}, {}, {}, {}, {}, {})",
            pg_literal(&log),
            pg_literal(&used),
            pg_literal(&inserted),
            pg_literal(&usage),
            pg_literal(&limits),
            pg_literal(&bound)
        );
        match self.sql.commit_after(&call).await {
            Ok(()) => Ok(()),
            Err(StoreError::Db(DbError {
                kind: DbErrorKind::OverQuota,
                message,
                ..
            })) => Err(self.over_quota(&message)),
            // A unique key: the binding's (a target bound meanwhile) or
            // the new resource's name.
            Err(e) => Err(match (pending, binding) {
                (_, Some(_)) if e.violates("eip_bindings") => NewBinding::refusal(e),
                (Some(row), _) => row.refusal(e),
                _ => e,
            }),
        }
    }

    /// The refusal of the counts `vpcip_finish` found beyond their quotas
    /// (`message`: a JSON array of `{tenant, kind, n}`).
    fn over_quota(&self, message: &str) -> StoreError {
        #[derive(serde::Deserialize)]
        struct Over {
            tenant: String,
            kind: String,
            n: i64,
        }
        let over: Vec<Over> = match serde_json::from_str(message) {
            Ok(o) => o,
            Err(e) => {
                return StoreError::Corrupt(format!("vpcip_finish's refusal {message:?}: {e}"));
            }
        };
        let rows = over
            .into_iter()
            .map(|o| Row(vec![Val::Text(o.tenant), Val::Text(o.kind), Val::Int(o.n)]))
            .collect();
        match self.check_counts(rows) {
            Err(e) => e,
            Ok(()) => StoreError::Corrupt(format!(
                "vpcip_finish refused counts within their quotas: {message}"
            )),
        }
    }

    /// SQLite: adds this transaction's creations and deletions to the
    /// tenants' counts and refuses a count beyond its quota.
    async fn count_and_check_sqlite(&mut self) -> Result<(), StoreError> {
        let deltas = self.usage_deltas();
        if deltas.is_empty() {
            return Ok(());
        }
        let counted = self
            .sql
            .query(
                "INSERT INTO usage (tenant, kind, n)
                 SELECT j.value ->> 'tenant', j.value ->> 'kind', j.value ->> 'by'
                 FROM json_each($1) AS j WHERE true
                 ON CONFLICT (tenant, kind) DO UPDATE SET n = usage.n + excluded.n
                 RETURNING tenant, kind, n",
                &[serde_json::Value::Array(deltas).to_string().into()],
            )
            .await?;
        self.check_counts(counted)
    }

    /// SQLite: adds this transaction's changes of addresses in use to its
    /// subnets' documents (logged as they are then), bumps the revision
    /// and logs this transaction's resources under it.
    async fn bump_and_log_sqlite(&mut self) -> Result<(), StoreError> {
        let used = self.used_deltas();
        if !used.is_empty() {
            let used = serde_json::Value::Array(used).to_string();
            let patched = self
                .sql
                .query(
                    "UPDATE resources
                     SET doc = json_set(doc, x.path, json_extract(doc, x.path) + x.by)
                     FROM (SELECT j.value ->> 'id' AS id, j.value ->> 'by' AS by, $2 AS path FROM json_each($1) AS j) AS x
                     WHERE resources.kind = 'subnet' AND resources.id = x.id
                     RETURNING resources.id, resources.doc",
                    // The path as a value: `$` in the statement marks its
                    // parameters.
                    &[used.as_str().into(), "$.used".into()],
                )
                .await?;
            for row in patched {
                self.log
                    .push((row.text(0)?, Kind::Subnet.key(), Some(row.text(1)?)));
            }
        }
        let log = self.log_rows();
        self.sql
            .execute("UPDATE revision SET value = value + 1 WHERE id = 1", &[])
            .await?;
        self.sql
            .execute(
                "INSERT INTO changes (rev, id, kind, doc)
                 SELECT (SELECT value FROM revision WHERE id = 1),
                        j.value ->> 'id', j.value ->> 'kind', j.value ->> 'doc'
                 FROM json_each($1) AS j",
                &[log.into()],
            )
            .await?;
        Ok(())
    }

    /// Adds `by` to the subnet's count of addresses in use, at commit.
    pub(super) fn add_used(&mut self, subnet_id: &str, by: i64) {
        self.dirty = true;
        *self
            .addresses_used
            .entry(subnet_id.to_string())
            .or_default() += by;
    }

    /// Adds `by` to the tenant's count of `kind`, at commit.
    fn add_usage(&mut self, tenant: &str, kind: Kind, by: i64) {
        *self
            .usage
            .entry((tenant.to_string(), kind.key()))
            .or_default() += by;
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

    pub(super) fn lock_suffix(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            // SQLite: the write transaction holds the one writer connection.
            Backend::Sqlite => "",
        }
    }

    /// The lock that keeps a row from being deleted (or locked for update)
    /// until the transaction ends, and lets others take the same and
    /// update its document: what allocators hold on their subnet.
    pub(super) fn key_share_suffix(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR KEY SHARE",
            Backend::Sqlite => "",
        }
    }

    /// Locks every resource of `kind` (PostgreSQL: their rows, until the
    /// transaction ends; SQLite holds its one writer already): what is
    /// decided on the strength of all of them is serialized with each
    /// change of one.
    pub async fn lock_kind(&mut self, kind: Kind) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT id FROM resources WHERE kind = $1{}",
            self.lock_suffix()
        );
        self.sql.query(&sql, &[kind.key().into()]).await?;
        Ok(())
    }

    pub(super) async fn docs<T: DeserializeOwned>(
        &mut self,
        sql: &str,
        args: &[Val],
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.sql.query(sql, args).await?;
        rows.iter().map(|r| from_doc(&r.text(0)?)).collect()
    }

    /// Inserts a new resource (on PostgreSQL with the transaction's next
    /// statement: see `conn.rs`); a name the tenant already uses for its
    /// kind is refused, then or at the latest at commit.
    pub async fn insert<R: Resource>(&mut self, r: &R) -> Result<(), StoreError> {
        let doc = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.dirty = true;
        self.sql.insert(NewRow::of(r, doc.clone())).await?;
        self.log
            .push((r.id().to_string(), R::KIND.key(), Some(doc)));
        self.add_usage(r.tenant(), R::KIND, 1);
        Ok(())
    }

    /// Binds EIP `eip_id` to `target_id` (a NIC or a VIP) in `mode`; a
    /// target or EIP bound meanwhile by another transaction runs this one
    /// again ([`StoreError::Retry`]).
    pub async fn insert_binding(
        &mut self,
        target_id: &str,
        eip_id: &str,
        mode: EipMode,
    ) -> Result<(), StoreError> {
        self.dirty = true;
        self.sql
            .insert_binding(NewBinding {
                target_id: target_id.to_string(),
                eip_id: eip_id.to_string(),
                mode: mode.as_str(),
            })
            .await
    }

    pub async fn update<R: Resource>(&mut self, r: &R) -> Result<(), StoreError> {
        let doc = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.log
            .push((r.id().to_string(), R::KIND.key(), Some(doc.clone())));
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
        self.log.push((r.id().to_string(), R::KIND.key(), None));
        let gone = self
            .write(
                "DELETE FROM resources WHERE id = $1 AND kind = $2",
                &[r.id().into(), R::KIND.key().into()],
            )
            .await?;
        if gone > 0 {
            self.add_usage(r.tenant(), R::KIND, -1);
        }
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
