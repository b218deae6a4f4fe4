//! Throw-away stores for tests, benchmarks and the lab: a fresh SQLite file,
//! or a fresh database on the PostgreSQL named by `VPCIP_TEST_PG_URL` (which
//! `scripts/test` starts). A missing PostgreSQL is an error, never a skip.

use crate::Store;

pub struct TestDb {
    pub store: Store,
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
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("open sqlite");
    TestDb {
        store,
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
    TestDb { store, path: None }
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
