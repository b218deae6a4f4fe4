//! Test stores: a fresh SQLite file, or a fresh database on the PostgreSQL
//! that `scripts/test` starts (VPCIP_TEST_PG_URL). A missing PostgreSQL
//! fails the test: it is never skipped silently.
#![allow(dead_code)]

use vpcip_model::*;
#[cfg(feature = "pg-tests")]
pub use vpcip_store::testing::postgres;
pub use vpcip_store::testing::sqlite;
use vpcip_store::{Scope, Store};

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
            #[cfg(feature = "pg-tests")]
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
