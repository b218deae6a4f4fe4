//! Test stores: a fresh SQLite file, or a fresh database on the PostgreSQL
//! that `scripts/test` starts (VPCIP_TEST_PG_URL). A missing PostgreSQL
//! fails the test: it is never skipped silently.
#![allow(dead_code)]

use vpcip_model::*;
use vpcip_store::{Scope, Store};

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

/// Runs one async test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = $crate::common::sqlite().await;
                super::$name(&db.store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = $crate::common::postgres().await;
                super::$name(&db.store).await;
            }
        }
    )*};
}

pub const OP: Scope = Scope::Operator;

pub fn tenant(t: &str) -> Scope {
    Scope::Tenant(t.to_string())
}

/// The seeds' AllInOne world: zone z1, host network 192.168.201.0/24, gateway
/// 192.168.201.20, EIP segment 192.168.202.1-254/24, and for tenant t1 a VPC
/// 10.0.0.0/8 with subnet sw1 10.0.0.0/24 in z1.
pub async fn seeds_world(s: &Store) -> (Zone, Vpc, Subnet, Subnet) {
    let z1 = s
        .create_zone(&OP, &CreateZone { name: "z1".into() })
        .await
        .unwrap();
    s.create_host_network(
        &OP,
        &CreateHostNetwork {
            name: "underlay".into(),
            cidr: "192.168.201.0/24".parse().unwrap(),
        },
    )
    .await
    .unwrap();
    s.create_gateway(
        &OP,
        &CreateGateway {
            name: "allinone".into(),
            underlay_ip: "192.168.201.20".parse().unwrap(),
        },
    )
    .await
    .unwrap();
    let seg = s
        .create_subnet(
            &OP,
            &CreateSubnet {
                name: "eip-seg".into(),
                kind: SubnetKind::Eip,
                range: Some("192.168.202.1-192.168.202.254".into()),
                prefix_len: Some(24),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .subnet;
    let t1 = tenant("t1");
    let vpc = s
        .create_vpc(
            &t1,
            &CreateVpc {
                name: "vpc1".into(),
                cidr: "10.0.0.0/8".parse().unwrap(),
                secondary_cidrs: vec![],
                tenant: None,
                client_token: None,
            },
        )
        .await
        .unwrap();
    let sw1 = s
        .create_subnet(
            &t1,
            &CreateSubnet {
                name: "sw1".into(),
                vpc: Some("vpc1".into()),
                zone: Some("z1".into()),
                cidr: Some("10.0.0.0/24".parse().unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .subnet;
    (z1, vpc, sw1, seg)
}

pub async fn server(s: &Store, scope: &Scope, name: &str, subnet: &str) -> Server {
    s.create_server(
        scope,
        &CreateServer {
            name: name.into(),
            subnet: subnet.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

pub fn code(e: vpcip_store::StoreError) -> String {
    match e {
        vpcip_store::StoreError::Rule(r) => r.code().to_string(),
        other => panic!("expected a rule error, got {other:?}"),
    }
}

pub fn rule(e: vpcip_store::StoreError) -> RuleError {
    match e {
        vpcip_store::StoreError::Rule(r) => r,
        other => panic!("expected a rule error, got {other:?}"),
    }
}
