//! A transaction's reads and writes of resources, idempotent creates and
//! relations.

use super::*;

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

    pub(super) fn lock_suffix(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            // SQLite: the write transaction holds the one writer connection.
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
        if let Some(r) = self.visible_by_id::<R>(scope, key, suffix).await? {
            return Ok(r);
        }
        let rows = self
            .sql
            .query(
                &format!(
                    "SELECT tenant, id, doc, CASE WHEN {SHARED} THEN 1 ELSE 0 END FROM resources WHERE kind = $1 AND name = $2{suffix}"
                ),
                &[R::KIND.key().into(), key.into()],
            )
            .await?;
        if rows.is_empty()
            && R::KIND == Kind::Eip
            && let Ok(ip) = key.parse::<std::net::Ipv4Addr>()
        {
            // An EIP by its address: the owner of that address in its
            // segment.
            let owners = self
                .sql
                .query(
                    "SELECT owner_id FROM ip_allocations WHERE addr = $1",
                    &[u32::from(ip).into()],
                )
                .await?;
            for o in owners {
                if let Some(r) = self.visible_by_id::<R>(scope, &o.text(0)?, suffix).await? {
                    return Ok(r);
                }
            }
        }
        pick(scope, R::KIND, key, &rows)
    }

    /// The resource of kind `R` with ID `id`, if `scope` sees it (`suffix`:
    /// the row lock, if any).
    async fn visible_by_id<R: Resource>(
        &mut self,
        scope: &Scope,
        id: &str,
        suffix: &str,
    ) -> Result<Option<R>, StoreError> {
        let row = self
            .sql
            .query_opt(
                &format!(
                    "SELECT tenant, doc, CASE WHEN {SHARED} THEN 1 ELSE 0 END FROM resources WHERE id = $1 AND kind = $2{suffix}"
                ),
                &[id.into(), R::KIND.key().into()],
            )
            .await?;
        match row {
            Some(row) if scope.sees(&row.text(0)?, row.int(2)? == 1) => {
                from_doc(&row.text(1)?).map(Some)
            }
            _ => Ok(None),
        }
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
        // Page tokens are opaque: `p` and the hex of the last ID given.
        let after = match after {
            None => String::new(),
            Some(t) => t
                .strip_prefix('p')
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|id| id.starts_with(&format!("{}-", R::KIND.prefix())))
                .ok_or_else(|| {
                    RuleError::invalid(
                        "page_token",
                        format!("{t:?} is not a page token of this list (give next_page_token as it came)"),
                    )
                })?,
        };
        let mut sql = String::from("SELECT doc FROM resources WHERE kind = $1 AND id > $2");
        let mut args: Vec<Val> = vec![R::KIND.key().into(), after.as_str().into()];
        match scope {
            Scope::Operator => {}
            Scope::Tenant(t) => {
                args.push(t.into());
                sql += &format!(" AND (tenant = $3 OR {SHARED})");
            }
            Scope::Agent(_) => {
                return Err(RuleError::Forbidden {
                    action: format!("list {}s", R::KIND.as_str()),
                }
                .into());
            }
        }
        if let Some(p) = parent {
            // The parent by ID or name, among what the scope sees.
            let rows = self
                .sql
                .query(
                    &format!(
                        "SELECT id, tenant, CASE WHEN {SHARED} THEN 1 ELSE 0 END FROM resources WHERE id = $1 OR name = $1"
                    ),
                    &[p.into()],
                )
                .await?;
            let mut ids = Vec::new();
            for r in &rows {
                if scope.sees(&r.text(1)?, r.int(2)? == 1) {
                    ids.push(r.text(0)?);
                }
            }
            if ids.is_empty() {
                return Err(RuleError::not_found("parent", p).into());
            }
            let first = args.len() + 1;
            let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", first + i)).collect();
            args.extend(ids.into_iter().map(Val::from));
            sql += &format!(" AND parent IN ({})", marks.join(", "));
        }
        sql += &format!(" ORDER BY id LIMIT {}", u64::from(limit) + 1);
        let mut items: Vec<R> = self.docs(&sql, &args).await?;
        let next_page_token = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|r| format!("p{}", hex::encode(r.id())))
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
    /// The same token with another request (another body) is refused,
    /// as AWS's IdempotentParameterMismatch: 409 `idempotency_conflict`.
    pub async fn claim<R: Resource>(
        &mut self,
        tenant: &str,
        token: Option<&str>,
        request: &impl serde::Serialize,
    ) -> Result<Claim<R>, StoreError> {
        let id = new_id(R::KIND);
        let Some(token) = token else {
            return Ok(Claim::New(id));
        };
        if token.is_empty() || token.len() > 128 {
            return Err(RuleError::invalid("client_token", "must be 1 to 128 characters").into());
        }
        let digest = request_digest(request);
        let prior = self
            .sql
            .query_opt(
                "SELECT resource_id, request FROM client_tokens WHERE tenant = $1 AND token = $2",
                &[tenant.into(), token.into()],
            )
            .await?;
        if let Some(row) = prior {
            let made = row.text(0)?;
            if row.opt_text(1)?.is_some_and(|d| d != digest) {
                return Err(RuleError::IdempotencyConflict {
                    token: token.to_string(),
                    kind: R::KIND.as_str(),
                    id: made,
                }
                .into());
            }
            return Ok(Claim::Existing(self.get(&made, false).await?));
        }
        let res = self
            .write(
                "INSERT INTO client_tokens (tenant, token, resource_id, request) VALUES ($1, $2, $3, $4)",
                &[
                    tenant.into(),
                    token.into(),
                    id.as_str().into(),
                    digest.as_str().into(),
                ],
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
        if scope.sees(&tenant, row.int(3)? == 1) {
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

/// A request's digest, its client token left out: what makes two creates
/// with one token the same request.
fn request_digest(request: &impl serde::Serialize) -> String {
    use sha2::{Digest, Sha256};
    let mut v = serde_json::to_value(request).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.remove("client_token");
    }
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}
