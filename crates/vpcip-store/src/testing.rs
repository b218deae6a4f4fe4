//! Throw-away stores for tests, benchmarks and the lab: a fresh SQLite file,
//! or a fresh database on the PostgreSQL named by `VPCIP_TEST_PG_URL` (which
//! `scripts/test` starts). A missing PostgreSQL is an error, never a skip.

use crate::Store;

pub struct TestDb {
    pub store: Store,
    /// Where it is (`sqlite://…` or `postgres://…`): another store may open
    /// it too, as another controller would.
    pub url: String,
    path: Option<std::path::PathBuf>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
            }
        }
    }
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

pub async fn sqlite() -> TestDb {
    let path = std::env::temp_dir().join(format!("{}.db", unique("vpcip-test-")));
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).await.expect("open sqlite");
    TestDb {
        store,
        url,
        path: Some(path),
    }
}

pub fn pg_admin_url() -> String {
    std::env::var("VPCIP_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("VPCIP_TEST_PG_URL is not set: run the tests with scripts/test, which starts a PostgreSQL on loopback")
    })
}

pub async fn postgres() -> TestDb {
    let name = unique("vpcip_t");
    let url = crate::sql::create_pg_database(&pg_admin_url(), &name)
        .await
        .expect("create a database on the test PostgreSQL");
    let store = Store::open(&url).await.expect("open postgres");
    TestDb {
        store,
        url,
        path: None,
    }
}

/// The token hashes as stored (to check that no secret is).
pub async fn stored_token_hashes(store: &Store) -> Result<Vec<String>, crate::StoreError> {
    let mut tx = store.db.begin_read().await?;
    let rows = tx.rows("SELECT hash FROM api_tokens", &[]).await?;
    rows.iter().map(|r| r.text(0)).collect()
}

/// Marks `count` addresses of `subnet_id`'s pool as taken, every other one
/// from the start of its range: the worst shape for a free-range table (one
/// free range per gap). For the IPAM benchmark; bulk SQL in one transaction.
pub async fn take_every_other(
    store: &Store,
    subnet_id: &str,
    count: u32,
) -> Result<(), crate::StoreError> {
    use vpcip_model::Subnet;
    let mut tx = store.db.begin().await?;
    let mut subnet: Subnet = tx.get(subnet_id, true).await?;
    let first = u32::from(subnet.range_start);
    let last = u32::from(subnet.range_end);
    let needed = u64::from(count) * 2;
    if u64::from(last - first) + 1 < needed {
        return Err(crate::StoreError::Config(format!(
            "subnet {subnet_id} is too small for {count} scattered addresses"
        )));
    }
    tx.exec(
        "DELETE FROM ip_free_ranges WHERE subnet_id = $1",
        &[subnet_id],
    )
    .await?;
    const BATCH: u32 = 500;
    let mut i = 0;
    while i < count {
        let n = BATCH.min(count - i);
        let mut alloc =
            String::from("INSERT INTO ip_allocations (subnet_id, addr, owner_id) VALUES ");
        let mut free = String::from("INSERT INTO ip_free_ranges (subnet_id, lo, hi) VALUES ");
        for j in 0..n {
            let taken = first + 2 * (i + j);
            let sep = if j == 0 { "" } else { "," };
            alloc += &format!("{sep}('{}', {taken}, 'bench-fill')", subnet.id);
            let gap = taken + 1;
            let hi = if i + j + 1 == count { last } else { gap };
            free += &format!("{sep}('{}', {gap}, {hi})", subnet.id);
        }
        tx.exec(&alloc, &[]).await?;
        tx.exec(&free, &[]).await?;
        i += n;
    }
    subnet.used += u64::from(count);
    tx.update(&subnet).await?;
    tx.commit().await
}

/// Checks the store's invariants straight from the database, as a crash
/// test does after every kill; returns what is wrong (nothing, when all
/// holds):
/// - every allocated address belongs to something that exists, and every
///   EIP, NIC and VIP holds its own address in its subnet, and every
///   gateway its default SNAT address in an EIP segment;
/// - a subnet's free ranges and allocated addresses cover its range
///   exactly once (nothing both free and taken, nothing lost), and its
///   count of addresses in use is the number allocated in it;
/// - every EIP binding names an existing EIP and target, and agrees with
///   the EIP; every bound EIP has its binding;
/// - VIP bindings name existing VIPs and NICs, within the limits (10 NICs
///   per VIP, 10 VIPs per NIC);
/// - no tenant is over a quota.
pub async fn invariants(store: &Store) -> Result<Vec<String>, crate::StoreError> {
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::Ipv4Addr;
    use vpcip_model::{Eip, Gateway, Kind, Nic, Subnet, SubnetKind, Vip};
    let mut bad = Vec::new();
    let mut tx = store.db.begin_read().await?;
    let ids: BTreeSet<String> = tx
        .rows("SELECT id FROM resources", &[])
        .await?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_, _>>()?;
    let eips: Vec<Eip> = tx.all().await?;
    let nics: Vec<Nic> = tx.all().await?;
    let vips: Vec<Vip> = tx.all().await?;
    let subnets: Vec<Subnet> = tx.all().await?;
    let gateways: Vec<Gateway> = tx.all().await?;
    let mut alloc: BTreeMap<(String, u32), String> = BTreeMap::new();
    for r in tx
        .rows("SELECT subnet_id, addr, owner_id FROM ip_allocations", &[])
        .await?
    {
        let (subnet, addr, owner) = (r.text(0)?, r.u32(1)?, r.text(2)?);
        if !ids.contains(&owner) {
            bad.push(format!(
                "address {} of subnet {subnet} is held by {owner}, which does not exist",
                Ipv4Addr::from(addr)
            ));
        }
        alloc.insert((subnet, addr), owner);
    }
    let mut holds = |subnet: &str, ip: Ipv4Addr, owner: &str, what: &str| match alloc
        .get(&(subnet.to_string(), u32::from(ip)))
    {
        Some(o) if o == owner => {}
        other => bad.push(format!(
            "{what} {owner} has {ip} in {subnet}, allocated to {other:?}"
        )),
    };
    for e in &eips {
        holds(&e.subnet_id, e.ip, &e.id, "EIP");
    }
    for n in &nics {
        holds(&n.subnet_id, n.ip, &n.id, "NIC");
    }
    for v in &vips {
        holds(&v.subnet_id, v.ip, &v.id, "VIP");
    }
    for g in &gateways {
        let Some(ip) = g.snat_ip else { continue };
        let seg = subnets
            .iter()
            .find(|s| s.kind == SubnetKind::Eip && s.cidr.contains(&ip))
            .map_or("no EIP segment", |s| s.id.as_str());
        holds(seg, ip, &g.id, "gateway");
    }
    let mut free: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
    for r in tx
        .rows("SELECT subnet_id, lo, hi FROM ip_free_ranges", &[])
        .await?
    {
        free.entry(r.text(0)?)
            .or_default()
            .push((r.u32(1)?, r.u32(2)?));
    }
    for s in &subnets {
        let (lo, hi) = (u32::from(s.range_start), u32::from(s.range_end));
        let ranges = free.get(&s.id).cloned().unwrap_or_default();
        if let Some((a, b)) = ranges.iter().find(|(a, b)| a > b) {
            bad.push(format!("subnet {} has an empty free range {a}..{b}", s.id));
            continue;
        }
        let held = alloc.keys().filter(|(sub, _)| *sub == s.id).count() as u64;
        if s.used != held {
            bad.push(format!(
                "subnet {} says {} addresses are in use, {held} are allocated",
                s.id, s.used
            ));
        }
        let free_count: u64 = ranges.iter().map(|(a, b)| u64::from(b - a) + 1).sum();
        let taken: Vec<u32> = alloc
            .keys()
            .filter(|(sub, a)| *sub == s.id && (lo..=hi).contains(a))
            .map(|(_, a)| *a)
            .collect();
        for a in &taken {
            if ranges.iter().any(|(x, y)| (x..=y).contains(&a)) {
                bad.push(format!(
                    "{} of subnet {} is both allocated and free",
                    Ipv4Addr::from(*a),
                    s.id
                ));
            }
        }
        if free_count + taken.len() as u64 != u64::from(hi - lo) + 1 {
            bad.push(format!(
                "subnet {}: {free_count} free + {} taken != {} in its range (addresses lost or doubled)",
                s.id,
                taken.len(),
                u64::from(hi - lo) + 1
            ));
        }
    }
    let mut bound: BTreeMap<String, String> = BTreeMap::new();
    for r in tx
        .rows("SELECT target_id, eip_id FROM eip_bindings", &[])
        .await?
    {
        let (target, eip) = (r.text(0)?, r.text(1)?);
        match eips.iter().find(|e| e.id == eip) {
            None => bad.push(format!("a binding names EIP {eip}, which does not exist")),
            Some(e) if e.nic_id().or(e.vip_id()) != Some(target.as_str()) => bad.push(format!(
                "EIP {eip} is bound to {target} by the binding but to {:?} by itself",
                e.nic_id().or(e.vip_id())
            )),
            _ => {}
        }
        if !ids.contains(&target) {
            bad.push(format!(
                "EIP {eip} is bound to {target}, which does not exist"
            ));
        }
        bound.insert(eip, target);
    }
    for e in &eips {
        if (e.nic_id().is_some() || e.vip_id().is_some()) && !bound.contains_key(&e.id) {
            bad.push(format!("EIP {} says it is bound but has no binding", e.id));
        }
    }
    let mut per_vip: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_nic: BTreeMap<String, usize> = BTreeMap::new();
    for r in tx
        .rows("SELECT vip_id, nic_id FROM vip_bindings", &[])
        .await?
    {
        let (vip, nic) = (r.text(0)?, r.text(1)?);
        for id in [&vip, &nic] {
            if !ids.contains(id) {
                bad.push(format!("a VIP binding names {id}, which does not exist"));
            }
        }
        *per_vip.entry(vip).or_default() += 1;
        *per_nic.entry(nic).or_default() += 1;
    }
    for (vip, n) in per_vip.iter().filter(|(_, n)| **n > 10) {
        bad.push(format!("VIP {vip} is bound to {n} NICs"));
    }
    for (nic, n) in per_nic.iter().filter(|(_, n)| **n > 10) {
        bad.push(format!("NIC {nic} holds {n} VIPs"));
    }
    let quotas = store.db.quotas;
    for (kind, limit) in [
        (Kind::Eip, quotas.eips),
        (Kind::Vip, quotas.vips),
        (Kind::Nic, quotas.nics),
        (Kind::Vpc, quotas.vpcs),
    ] {
        for r in tx
            .rows(
                "SELECT tenant, COUNT(*) FROM resources WHERE kind = $1 GROUP BY tenant",
                &[kind.key().into()],
            )
            .await?
        {
            let (tenant, n) = (r.text(0)?, r.int(1)?);
            if tenant != vpcip_model::SYSTEM_TENANT && n > i64::from(limit) {
                bad.push(format!(
                    "tenant {tenant} has {n} {}s, over its quota {limit}",
                    kind.key()
                ));
            }
        }
    }
    // The counts quotas are checked against agree with the resources.
    let counted: BTreeMap<(String, String), i64> = tx
        .rows(
            "SELECT tenant, kind, COUNT(*) FROM resources GROUP BY tenant, kind",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok(((r.text(0)?, r.text(1)?), r.int(2)?)))
        .collect::<Result<_, crate::StoreError>>()?;
    let kept: BTreeMap<(String, String), i64> = tx
        .rows("SELECT tenant, kind, n FROM usage WHERE n <> 0", &[])
        .await?
        .iter()
        .map(|r| Ok(((r.text(0)?, r.text(1)?), r.int(2)?)))
        .collect::<Result<_, crate::StoreError>>()?;
    if counted != kept {
        bad.push(format!(
            "the usage counts {kept:?} differ from the resources {counted:?}"
        ));
    }
    tx.commit().await?;
    Ok(bad)
}
