//! A transaction's look-ups: a resource by ID or name as a scope sees it,
//! by ID whoever owns it, all of a kind or of a parent, and pages.

use super::*;

impl Tx {
    /// The store's revision as this transaction sees it.
    pub async fn revision(&mut self) -> Result<i64, StoreError> {
        self.rows("SELECT value FROM revision WHERE id = 1", &[])
            .await?
            .first()
            .ok_or_else(|| StoreError::Corrupt("no revision row".into()))?
            .int(0)
    }

    /// Finds a resource by ID or name as `scope` sees it, and locks its row
    /// for the rest of the transaction when `lock` is set. Two indexed
    /// look-ups (ID, then name) rather than one `OR`, which no planner
    /// indexes well; a key that cannot be an ID (every ID is the kind's
    /// prefix and a dash) is looked up by name alone.
    pub async fn find<R: Resource>(
        &mut self,
        scope: &Scope,
        key: &str,
        lock: bool,
    ) -> Result<R, StoreError> {
        let suffix = if lock { self.lock_suffix() } else { "" };
        if R::KIND.may_be_id(key)
            && let Some(r) = self.visible_by_id::<R>(scope, key, suffix).await?
        {
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

    /// An EIP target's document, its row locked, and the EIP bound to it
    /// (if any): one statement.
    pub async fn get_target<R: Resource>(
        &mut self,
        id: &str,
    ) -> Result<(R, Option<String>), StoreError> {
        let sql = format!(
            "SELECT r.doc, b.eip_id FROM resources AS r
             LEFT JOIN eip_bindings AS b ON b.target_id = r.id
             WHERE r.id = $1 AND r.kind = $2{}",
            match self.backend {
                Backend::Postgres => " FOR UPDATE OF r",
                Backend::Sqlite => "",
            }
        );
        let row = self
            .sql
            .query_opt(&sql, &[id.into(), R::KIND.key().into()])
            .await?
            .ok_or_else(|| RuleError::not_found(R::KIND.as_str(), id))?;
        Ok((from_doc(&row.text(0)?)?, row.opt_text(1)?))
    }

    /// PostgreSQL: server `id`'s tenant, its primary NIC (the NIC's row
    /// locked) and the EIP bound to that NIC, in one statement. None when
    /// there is no such server or it has no NIC: the caller looks again
    /// step by step, for the refusal's reason.
    pub async fn server_primary_nic(
        &mut self,
        id: &str,
    ) -> Result<Option<(String, Nic, Option<String>)>, StoreError> {
        let row = self
            .sql
            .query_opt(
                "SELECT s.tenant, n.doc, b.eip_id FROM resources AS s
                 JOIN resources AS n ON n.id = (s.doc::jsonb -> 'nic_ids' ->> 0) AND n.kind = $2
                 LEFT JOIN eip_bindings AS b ON b.target_id = n.id
                 WHERE s.id = $1 AND s.kind = $3
                 FOR UPDATE OF n",
                &[id.into(), Kind::Nic.key().into(), Kind::Server.key().into()],
            )
            .await?;
        row.map(|r| Ok((r.text(0)?, from_doc(&r.text(1)?)?, r.opt_text(2)?)))
            .transpose()
    }

    /// The EIP segments (the default VPC's subnets), in ID order: one
    /// statement.
    pub async fn eip_segments(&mut self) -> Result<Vec<Subnet>, StoreError> {
        self.docs(
            "SELECT doc FROM resources WHERE kind = $1 AND parent = (
                 SELECT id FROM resources WHERE kind = $2 AND tenant = $3 AND name = $4)
             ORDER BY id",
            &[
                Kind::Subnet.key().into(),
                Kind::Vpc.key().into(),
                SYSTEM_TENANT.into(),
                DEFAULT_VPC_NAME.into(),
            ],
        )
        .await
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
                .filter(|id| R::KIND.may_be_id(id))
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
