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
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let admin = pg_admin_url();
    let name = unique("vpcip_t");
    let mut conn = sqlx::AnyConnection::connect(&admin)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{name}", &admin[..i]),
        None => panic!("bad VPCIP_TEST_PG_URL {admin}"),
    };
    let store = Store::open(&url).await.expect("open postgres");
    TestDb { store, path: None }
}
