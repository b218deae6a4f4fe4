//! Address allocation: free ranges and allocated addresses, one row each.

use super::*;

/// How a transaction uses a subnet's pool, which says how it locks the
/// subnet's row (PostgreSQL). Taking the lowest free address only shrinks
/// the lowest range, which concurrent takers follow by its upper end
/// (their row lock only keeps the subnet from being deleted under them);
/// a release or a chosen address reads free ranges and rewrites them, so
/// it has the pool alone (its row lock waits for the takers and keeps
/// them out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolUse {
    Lowest,
    Rewrite,
}

impl PoolUse {
    /// What allocating `want` (or the lowest, for None) needs.
    pub fn for_address(want: Option<Ipv4Addr>) -> Self {
        if want.is_some() {
            PoolUse::Rewrite
        } else {
            PoolUse::Lowest
        }
    }
}

impl Tx {
    // ---- IPAM ----

    /// Opens a subnet's address pool: one free range, minus the reserved
    /// addresses (owned by the subnet itself).
    pub async fn open_pool(
        &mut self,
        subnet: &Subnet,
        reserved: &[Ipv4Addr],
    ) -> Result<(), StoreError> {
        let r = AddrRange::new(subnet.range_start, subnet.range_end);
        match self.backend {
            // Kept as runs of addresses, one row each (at most ~4,096 rows
            // a pool): concurrent allocations of the lowest address each
            // take the lowest run no other holds (`allocate_lowest_pg`)
            // instead of queueing on one row. Taking and giving back work
            // on runs as on any free ranges.
            Backend::Postgres => {
                let size = u64::from(r.last - r.first) + 1;
                let run = (size / 4096).max(64);
                self.write(
                    "INSERT INTO ip_free_ranges (subnet_id, lo, hi)
                     SELECT $1, lo, LEAST(lo + $4 - 1, $3)
                     FROM generate_series($2::bigint, $3::bigint, $4::bigint) AS lo",
                    &[
                        subnet.id.as_str().into(),
                        r.first.into(),
                        r.last.into(),
                        i64::try_from(run).unwrap_or(i64::MAX).into(),
                    ],
                )
                .await?;
            }
            Backend::Sqlite => self.insert_range(&subnet.id, r).await?,
        }
        let id = subnet.id.clone();
        for a in reserved {
            self.allocate(subnet, &id, Some(*a)).await?;
        }
        Ok(())
    }

    pub(super) async fn range_where(
        &mut self,
        sql: &str,
        subnet_id: &str,
        at: Option<u32>,
    ) -> Result<Option<AddrRange>, StoreError> {
        let mut args: Vec<Val> = vec![subnet_id.into()];
        args.extend(at.map(Val::from));
        match self.sql.query_opt(sql, &args).await? {
            None => Ok(None),
            Some(r) => Ok(Some(AddrRange {
                first: r.u32(0)?,
                last: r.u32(1)?,
            })),
        }
    }

    /// A subnet to allocate in or release to, its row locked as `how`
    /// needs until the transaction ends.
    pub async fn pool_subnet(&mut self, id: &str, how: PoolUse) -> Result<Subnet, StoreError> {
        let sql = format!(
            "SELECT doc FROM resources WHERE id = $1 AND kind = $2{}",
            match how {
                PoolUse::Lowest => self.key_share_suffix(),
                PoolUse::Rewrite => self.lock_suffix(),
            }
        );
        let row = self
            .sql
            .query_opt(&sql, &[id.into(), Kind::Subnet.key().into()])
            .await?
            .ok_or_else(|| RuleError::not_found(Kind::Subnet.as_str(), id))?;
        from_doc(&row.text(0)?)
    }

    /// Allocates an address in `subnet`: `want` (the caller holds the
    /// subnet's row from [`Tx::pool_subnet`] with [`PoolUse::Rewrite`]),
    /// or the lowest free one (its statement holds the subnet, as
    /// [`PoolUse::Lowest`] does). Costs one index look-up and two or three row
    /// writes, whatever the number of addresses taken (the lowest: one
    /// statement on PostgreSQL). The subnet's count of addresses in use
    /// changes at commit (`subnet.used` is left as read).
    pub async fn allocate(
        &mut self,
        subnet: &Subnet,
        owner: &str,
        want: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, StoreError> {
        if want.is_none() && self.backend == Backend::Postgres {
            return self.allocate_lowest_pg(subnet, owner).await;
        }
        let range = match want {
            None => {
                self.range_where(
                    "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 ORDER BY lo LIMIT 1",
                    &subnet.id,
                    None,
                )
                .await?
            }
            Some(a) => {
                self.range_where(
                    "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 AND lo <= $2 ORDER BY lo DESC LIMIT 1",
                    &subnet.id,
                    Some(u32::from(a)),
                )
                .await?
            }
        };
        let subnet_label = label(&subnet.name, &subnet.id).to_string();
        let (addr, from) = match (want, range) {
            (None, Some(r)) => (r.first, r),
            (None, None) => {
                return Err(RuleError::AddressExhausted {
                    subnet: subnet_label,
                    start: subnet.range_start,
                    end: subnet.range_end,
                }
                .into());
            }
            (Some(a), Some(r)) if r.contains(u32::from(a)) => (u32::from(a), r),
            (Some(a), _) => {
                vpcip_model::rules::check_chosen_address(subnet, a)?;
                return Err(RuleError::AddressInUse {
                    addr: a,
                    subnet: subnet_label,
                }
                .into());
            }
        };
        let t = ipam::take(from, addr);
        match (t.below, t.above) {
            // The common case, the lowest address of a range: shrink it.
            (None, Some(above)) => {
                self.write(
                    "UPDATE ip_free_ranges SET lo = $1 WHERE subnet_id = $2 AND lo = $3",
                    &[
                        above.first.into(),
                        subnet.id.as_str().into(),
                        from.first.into(),
                    ],
                )
                .await?;
            }
            (below, above) => {
                self.write(
                    "DELETE FROM ip_free_ranges WHERE subnet_id = $1 AND lo = $2",
                    &[subnet.id.as_str().into(), from.first.into()],
                )
                .await?;
                for r in [below, above].into_iter().flatten() {
                    self.insert_range(&subnet.id, r).await?;
                }
            }
        }
        let res = self
            .write(
                "INSERT INTO ip_allocations (subnet_id, addr, owner_id) VALUES ($1, $2, $3)",
                &[subnet.id.as_str().into(), addr.into(), owner.into()],
            )
            .await;
        match res {
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Corrupt(format!(
                    "address {} of subnet {} is allocated but also in a free range",
                    Ipv4Addr::from(addr),
                    subnet.id
                )));
            }
            other => other?,
        };
        self.add_used(&subnet.id, 1);
        Ok(Ipv4Addr::from(addr))
    }

    /// The lowest free address in one statement: the lowest free range
    /// that no other transaction is taking from, shrunk from below (or
    /// deleted, for its last address), and the address recorded. Alone, that is the pool's lowest address; concurrent
    /// allocations take the lowest of different ranges (a new pool is
    /// kept as runs: `open_pool`) rather than queue. When every range is
    /// held, the lowest is waited for, found by its upper end, which taking
    /// its lowest address does not change: the waiter takes the next
    /// address of the range as the other left it; if the other took its
    /// last, the next range is tried.
    async fn allocate_lowest_pg(
        &mut self,
        subnet: &Subnet,
        owner: &str,
    ) -> Result<Ipv4Addr, StoreError> {
        // The subnet is held (FOR KEY SHARE: not deleted, nor its pool
        // rewritten, until the commit) by the statement itself.
        // First the lowest run no other transaction holds; when every run
        // is held (or none is left), the lowest, waiting for its holder. A
        // range's last address deletes it (its `lo` moved up could be the
        // next run's).
        macro_rules! take_lowest {
            ($pick:literal) => {
                concat!(
                    "WITH s AS (
                        SELECT id FROM resources WHERE id = $1 AND kind = 'subnet' FOR KEY SHARE),
                    c AS (
                        SELECT hi FROM ip_free_ranges WHERE subnet_id = (SELECT id FROM s)
                        ORDER BY lo LIMIT 1",
                    $pick,
                    "),
                    u AS (
                        UPDATE ip_free_ranges SET lo = lo + 1
                        WHERE subnet_id = $1 AND hi = (SELECT hi FROM c) AND lo < hi
                        RETURNING lo - 1 AS addr),
                    d AS (
                        DELETE FROM ip_free_ranges
                        WHERE subnet_id = $1 AND hi = (SELECT hi FROM c) AND lo = hi
                        RETURNING lo AS addr)
                    INSERT INTO ip_allocations (subnet_id, addr, owner_id)
                    SELECT $1, a.addr, $2 FROM (SELECT addr FROM u UNION ALL SELECT addr FROM d) AS a
                    RETURNING addr"
                )
            };
        }
        const SKIP: &str = take_lowest!(" FOR UPDATE SKIP LOCKED");
        const WAIT: &str = take_lowest!("");
        self.dirty = true;
        for attempt in 0..16 {
            let sql = if attempt == 0 { SKIP } else { WAIT };
            let res = self
                .sql
                .query_opt(sql, &[subnet.id.as_str().into(), owner.into()])
                .await;
            match res {
                Ok(Some(row)) => {
                    let addr = row.u32(0)?;
                    self.add_used(&subnet.id, 1);
                    return Ok(Ipv4Addr::from(addr));
                }
                Ok(None) => {
                    let left = self
                        .range_where(
                            "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 ORDER BY lo LIMIT 1",
                            &subnet.id,
                            None,
                        )
                        .await?;
                    if left.is_none() {
                        // Deleted while this waited for it?
                        let exists = self
                            .count(
                                "SELECT COUNT(*) FROM resources WHERE id = $1 AND kind = $2",
                                &[subnet.id.as_str().into(), Kind::Subnet.key().into()],
                            )
                            .await?;
                        if exists == 0 {
                            return Err(
                                RuleError::not_found(Kind::Subnet.as_str(), &subnet.id).into()
                            );
                        }
                        return Err(RuleError::AddressExhausted {
                            subnet: label(&subnet.name, &subnet.id).to_string(),
                            start: subnet.range_start,
                            end: subnet.range_end,
                        }
                        .into());
                    }
                }
                Err(e) if e.is_unique_violation() => {
                    return Err(StoreError::Corrupt(format!(
                        "the lowest free address of subnet {} is also allocated",
                        subnet.id
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Retry)
    }

    /// Allocates the highest free address of `subnet` (the caller holds
    /// its row for [`PoolUse::Rewrite`]); None when it has none left.
    pub async fn allocate_highest(
        &mut self,
        subnet: &Subnet,
        owner: &str,
    ) -> Result<Option<Ipv4Addr>, StoreError> {
        let top = self
            .range_where(
                "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 ORDER BY hi DESC LIMIT 1",
                &subnet.id,
                None,
            )
            .await?;
        match top {
            None => Ok(None),
            Some(r) => self
                .allocate(subnet, owner, Some(Ipv4Addr::from(r.last)))
                .await
                .map(Some),
        }
    }

    pub(super) async fn insert_range(
        &mut self,
        subnet_id: &str,
        r: AddrRange,
    ) -> Result<(), StoreError> {
        self.write(
            "INSERT INTO ip_free_ranges (subnet_id, lo, hi) VALUES ($1, $2, $3)",
            &[subnet_id.into(), r.first.into(), r.last.into()],
        )
        .await?;
        Ok(())
    }

    /// Gives `addr` back to `subnet`'s pool (the caller holds its row for
    /// [`PoolUse::Rewrite`]), merging it with its free neighbours; the
    /// count of addresses in use changes at commit.
    pub async fn release(&mut self, subnet: &Subnet, addr: Ipv4Addr) -> Result<(), StoreError> {
        let a = u32::from(addr);
        let gone = self
            .write(
                "DELETE FROM ip_allocations WHERE subnet_id = $1 AND addr = $2",
                &[subnet.id.as_str().into(), a.into()],
            )
            .await?;
        if gone == 0 {
            return Err(StoreError::Corrupt(format!(
                "address {addr} of subnet {} was not allocated",
                subnet.id
            )));
        }
        let below = match a.checked_sub(1) {
            Some(b) => {
                self.range_where(
                    "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 AND lo <= $2 ORDER BY lo DESC LIMIT 1",
                    &subnet.id,
                    Some(b),
                )
                .await?
            }
            None => None,
        };
        let above = match a.checked_add(1) {
            Some(n) => {
                self.range_where(
                    "SELECT lo, hi FROM ip_free_ranges WHERE subnet_id = $1 AND lo = $2",
                    &subnet.id,
                    Some(n),
                )
                .await?
            }
            None => None,
        };
        let g = ipam::give(a, below, above);
        for r in [g.absorbed_below, g.absorbed_above].into_iter().flatten() {
            self.write(
                "DELETE FROM ip_free_ranges WHERE subnet_id = $1 AND lo = $2",
                &[subnet.id.as_str().into(), r.first.into()],
            )
            .await?;
        }
        self.insert_range(&subnet.id, g.merged).await?;
        self.add_used(&subnet.id, -1);
        Ok(())
    }

    /// Addresses of a subnet held by anything but the subnet itself.
    pub async fn allocations_in_use(&mut self, subnet_id: &str) -> Result<usize, StoreError> {
        self.count(
            "SELECT COUNT(*) FROM ip_allocations WHERE subnet_id = $1 AND owner_id <> $1",
            &[subnet_id.into()],
        )
        .await
    }

    pub async fn drop_pool(&mut self, subnet_id: &str) -> Result<(), StoreError> {
        for sql in [
            "DELETE FROM ip_allocations WHERE subnet_id = $1",
            "DELETE FROM ip_free_ranges WHERE subnet_id = $1",
        ] {
            self.write(sql, &[subnet_id.into()]).await?;
        }
        Ok(())
    }
}
