//! The API through a real server on loopback, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::collections::BTreeSet;
use std::net::SocketAddr;

use reqwest::StatusCode;
use vpcip_api::App;
use vpcip_client::{Client, ClientError};
use vpcip_model::*;
use vpcip_store::testing::{self, TestDb};

const OPERATOR: &str = "operator-secret";

struct Server {
    addr: SocketAddr,
    _db: TestDb,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    async fn start(db: TestDb) -> Server {
        let app = App::new(db.store.clone(), Some(OPERATOR));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(vpcip_api::serve(listener, app, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            _db: db,
            stop: Some(tx),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn operator(&self) -> Client {
        Client::new(&self.url(), Some(OPERATOR))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::Server::start(vpcip_store::testing::sqlite().await).await).await;
            }
            #[cfg(feature = "pg-tests")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::Server::start(vpcip_store::testing::postgres().await).await).await;
            }
        }
    )*};
}

fn api_err(r: Result<impl std::fmt::Debug, ClientError>) -> (u16, String, String) {
    match r.unwrap_err() {
        ClientError::Api {
            status,
            code,
            message,
        } => (status, code, message),
        other => panic!("expected an API error, got {other}"),
    }
}

/// Sets up the vendor manuals' world through the API and returns a tenant client.
async fn seeds_world(s: &Server, tenant: &str) -> Client {
    let op = s.operator();
    let _: Zone = op
        .post(paths::ZONES, &CreateZone { name: "z1".into() })
        .await
        .unwrap();
    let _: HostNetwork = op
        .post(
            paths::HOST_NETWORKS,
            &CreateHostNetwork {
                name: "underlay".into(),
                cidr: "192.168.201.0/24".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    let _: Gateway = op
        .post(
            paths::GATEWAYS,
            &CreateGateway {
                name: "allinone".into(),
                underlay_ip: "192.168.201.20".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    let seg = op
        .create_subnet(&CreateSubnet {
            name: "eip-seg".into(),
            kind: SubnetKind::Eip,
            range: Some("192.168.202.1-192.168.202.254".into()),
            prefix_len: Some(24),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seg.physical_routes.len(), 1);
    assert_eq!(
        seg.physical_routes[0].next_hop.to_string(),
        "192.168.201.20"
    );
    let tok: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: tenant.into(),
                description: "test".into(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await
        .unwrap();
    let t = Client::new(&s.url(), tok.secret.as_deref());
    let _: Vpc = t
        .post(
            paths::VPCS,
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
    t.create_subnet(&CreateSubnet {
        name: "sw1".into(),
        vpc: Some("vpc1".into()),
        zone: Some("z1".into()),
        cidr: Some("10.0.0.0/24".parse().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    t
}

async fn seeds_procedure_over_http(s: Server) {
    let t = seeds_world(&s, "acme").await;
    let _: Server_ = t
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "vm-1".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let eip = t
        .create_eip(&CreateEip {
            bandwidth_mbps: 10,
            bind: Some(BindEip {
                target: EipTarget::Server("vm-1".into()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(eip.private_ip().unwrap().to_string(), "10.0.0.2");
    // The rule errors come back with their code, message and a 4xx.
    let (status, code, message) = api_err(
        t.action::<_, Eip>(
            paths::EIP_BIND,
            &eip.id,
            &BindEip {
                target: EipTarget::Server("vm-1".into()),
                mode: EipMode::Visible,
                allow_reassociation: true,
            },
        )
        .await,
    );
    assert_eq!((status, code.as_str()), (400, "visible_address_mismatch"));
    assert!(message.contains("10.0.0.2"), "{message}");
    let (status, code, _) = api_err(t.show::<Eip>("eip-nonexistent").await);
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let (status, code, _) = api_err(t.remove::<vpcip_model::Eip>(&eip.id).await);
    assert_eq!((status, code.as_str()), (409, "resource_in_use"));
    // Unbind, change bandwidth, release.
    let _: Eip = t
        .action(paths::EIP_UNBIND, &eip.id, &serde_json::json!({}))
        .await
        .unwrap();
    let e: Eip = t
        .patch(
            &paths::at(paths::EIP, &[&eip.id]),
            &UpdateEip {
                bandwidth_mbps: Some(20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(e.bandwidth_mbps, 20);
    t.remove::<vpcip_model::Eip>(&eip.id).await.unwrap();
    // The one-call visible recipe.
    let v: VisibleEip = t
        .post(
            paths::EIPS_VISIBLE,
            &CreateVisibleEip {
                bandwidth_mbps: 5,
                server: "vm-1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(v.nic.ip, v.eip.ip);
    let nics: Vec<Nic> = t.get("/v1/servers/vm-1/nics").await.unwrap();
    assert_eq!(nics.len(), 2);
}

type Server_ = vpcip_model::Server;

async fn bad_input_is_4xx(s: Server) {
    let t = seeds_world(&s, "acme").await;
    let http = reqwest::Client::new();
    // A method a route does not serve: 405 with the JSON error.
    let r = http
        .put(format!("{}/v1/eips", s.url()))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    // The scheme of Authorization is case-insensitive (RFC 7235).
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = http
            .get(format!("{}/v1/zones", s.url()))
            .header("authorization", format!("{scheme} {OPERATOR}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{scheme}");
    }
    let post = |path: &str, body: &'static str| {
        http.post(format!("{}{path}", s.url()))
            .bearer_auth(OPERATOR)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (path, body) in [
        (paths::EIPS, "{"),
        (paths::EIPS, "{\"bandwidth_mbps\": -1}"),
        (paths::EIPS, "{\"bandwidth_mbps\": 5, \"surprise\": true}"),
        (
            paths::SUBNETS,
            "{\"name\": \"x\", \"cidr\": \"10.0.0.0/33\"}",
        ),
        (paths::VPCS, "[]"),
        (paths::ZONES, "{\"name\": \"\"}"),
    ] {
        let r = post(path, body).await.unwrap();
        assert!(
            r.status().is_client_error(),
            "{path} {body}: {}",
            r.status()
        );
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let huge = format!("{{\"name\": \"{}\"}}", "a".repeat(100_000));
    let r = http
        .post(format!("{}/v1/zones", s.url()))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = http
        .get(format!("{}/v1/eips?limit=abc", s.url()))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http
        .get(format!("{}/v1/nowhere", s.url()))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A tenant asking for an operator action: 403 with the rule.
    let (status, code, message) = api_err(
        t.post::<_, Zone>(paths::ZONES, &CreateZone { name: "z9".into() })
            .await,
    );
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    assert_eq!(message, "only the platform operator may create zones");
}

async fn tenants_are_isolated(s: Server) {
    let a = seeds_world(&s, "acme").await;
    let op = s.operator();
    let tok: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "globex".into(),
                description: String::new(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await
        .unwrap();
    let b = Client::new(&s.url(), tok.secret.as_deref());
    let vm: Server_ = a
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "vm-1".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let eip = a
        .create_eip(&CreateEip {
            bandwidth_mbps: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    // No token and bad tokens: 401.
    let anon = Client::new(&s.url(), None);
    assert_eq!(api_err(anon.show::<Eip>(&eip.id).await).0, 401);
    assert_eq!(
        api_err(a.with_token("vpcip_forged").show::<Eip>(&eip.id).await).0,
        401
    );
    // Another tenant: 404 for what exists, and nothing in its lists.
    assert_eq!(api_err(b.show::<Eip>(&eip.id).await).0, 404);
    assert_eq!(api_err(b.show::<Server_>(&vm.id).await).0, 404);
    assert_eq!(
        api_err(b.remove::<vpcip_model::Server>(&vm.id).await).0,
        404
    );
    assert_eq!(
        api_err(
            b.action::<_, Eip>(paths::EIP_UNBIND, &eip.id, &serde_json::json!({}))
                .await
        )
        .0,
        404
    );
    assert!(b.list::<Eip>(None).await.unwrap().is_empty());
    assert!(b.list::<Server_>(None).await.unwrap().is_empty());
    // The operator sees both tenants' resources.
    assert_eq!(op.show::<Eip>(&eip.id).await.unwrap().tenant, "acme");
    // Healthz and the OpenAPI document need no token.
    let _: serde_json::Value = anon.get("/healthz").await.unwrap();
    let doc: serde_json::Value = anon.get("/openapi.json").await.unwrap();
    assert!(doc["paths"][paths::EIPS].is_object());
}

async fn idempotent_creates_and_pages(s: Server) {
    let t = seeds_world(&s, "acme").await;
    let req = CreateEip {
        bandwidth_mbps: 2,
        client_token: Some("once".into()),
        ..Default::default()
    };
    let a = t.create_eip(&req).await.unwrap();
    let b = t.create_eip(&req).await.unwrap();
    assert_eq!(a.id, b.id);
    // The same token with another request: 409, the token named (as AWS's
    // IdempotentParameterMismatch); nothing made.
    let (status, code, msg) = api_err(
        t.create_eip(&CreateEip {
            bandwidth_mbps: 3,
            ..req.clone()
        })
        .await,
    );
    assert_eq!(
        (status, code.as_str()),
        (409, "idempotency_conflict"),
        "{msg}"
    );
    assert!(msg.contains("\"once\"") && msg.contains(&a.id), "{msg}");
    for _ in 0..11 {
        t.create_eip(&CreateEip {
            bandwidth_mbps: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let page: Page<Eip> = t.get("/v1/eips?limit=5").await.unwrap();
    assert_eq!(page.items.len(), 5);
    let next = page.next_page_token.unwrap();
    let page2: Page<Eip> = t
        .get(&format!(
            "{}?limit=5&page_token={next}",
            paths::at(paths::EIPS, &[])
        ))
        .await
        .unwrap();
    assert_eq!(page2.items.len(), 5);
    assert!(
        page2
            .items
            .iter()
            .all(|e| page.items.iter().all(|f| e.id > f.id))
    );
    assert_eq!(t.list::<Eip>(None).await.unwrap().len(), 12);
    // Page tokens are opaque and checked: garbage, or an ID, is 400.
    for garbage in ["garbage", page.items[0].id.as_str(), "p00", "pzz"] {
        let (status, code, msg) = api_err(
            t.get::<Page<Eip>>(&format!(
                "{}?limit=5&page_token={garbage}",
                paths::at(paths::EIPS, &[])
            ))
            .await,
        );
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_argument"),
            "{garbage}: {msg}"
        );
        assert!(msg.contains("page_token"), "{msg}");
    }
    let (status, code, _) = api_err(t.get::<Page<Eip>>("/v1/eips?limit=100000").await);
    assert_eq!((status, code.as_str()), (400, "invalid_argument"));
}

/// 32 concurrent HTTP clients, 10 free addresses: 10 EIPs, 22 clear refusals.
async fn race_over_http(s: Server) {
    let op = s.operator();
    op.create_subnet(&CreateSubnet {
        name: "tiny".into(),
        kind: SubnetKind::Eip,
        range: Some("198.51.100.1-198.51.100.10".into()),
        prefix_len: Some(24),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut tasks = vec![];
    for _ in 0..32 {
        let c = op.clone();
        tasks.push(tokio::spawn(async move {
            c.create_eip(&CreateEip {
                bandwidth_mbps: 1,
                ..Default::default()
            })
            .await
        }));
    }
    let mut ips = BTreeSet::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(e) => assert!(ips.insert(e.ip)),
            Err(e) => {
                assert_eq!(e.code(), Some("address_exhausted"), "{e}");
                assert_eq!(e.status(), Some(409));
                refused += 1;
            }
        }
    }
    assert_eq!((ips.len(), refused), (10, 22));
}

/// Issue 14's API items: an EIP by its address everywhere; parents by
/// name, an unknown parent 404; what tenants see of the operator's; the
/// visible EIP's server; duplicate groups, cross-VPC ENIs, tiny subnets
/// and IPv6 refused with what is wrong.
async fn names_addresses_and_what_tenants_see(s: Server) {
    let t = seeds_world(&s, "acme").await;
    let op = s.operator();
    let vm: Server_ = t
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "vm-1".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let eip = t
        .create_eip(&CreateEip {
            bandwidth_mbps: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let addr = eip.ip.to_string();
    // By address: show, update, bind, unbind, release.
    let shown: Eip = t.show(&addr).await.unwrap();
    assert_eq!(shown.id, eip.id);
    let updated: Eip = t
        .patch(
            &paths::at(paths::EIP, &[&addr]),
            &UpdateEip {
                bandwidth_mbps: Some(20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.bandwidth_mbps, 20);
    let bound: Eip = t
        .action(
            paths::EIP_BIND,
            &addr,
            &BindEip {
                target: EipTarget::Server("vm-1".into()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(bound.server_id(), Some(vm.id.as_str()));
    let _: Eip = t
        .action(paths::EIP_UNBIND, &addr, &serde_json::json!({}))
        .await
        .unwrap();
    t.remove::<vpcip_model::Eip>(&addr).await.unwrap();
    assert_eq!(api_err(t.show::<Eip>(&addr).await).0, 404);

    // Parents by name; an unknown parent is 404, not an empty list.
    let by_name = t.list::<Subnet>(Some("vpc1")).await.unwrap();
    assert_eq!(
        by_name.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["sw1"]
    );
    let (status, code, msg) = api_err(t.list::<Subnet>(Some("no-such-vpc")).await);
    assert_eq!((status, code.as_str()), (404, "not_found"), "{msg}");

    // The operator's own VPC and subnet are not the tenants'; zones, the
    // default VPC and the EIP segments are shared.
    let _: Vpc = op
        .post(
            paths::VPCS,
            &CreateVpc {
                name: "ops-net".into(),
                cidr: "172.16.0.0/16".parse().unwrap(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    op.create_subnet(&CreateSubnet {
        name: "ops-sub".into(),
        vpc: Some("ops-net".into()),
        zone: Some("z1".into()),
        cidr: Some("172.16.0.0/24".parse().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let vpcs: Vec<String> = t
        .list::<Vpc>(None)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert!(
        vpcs.contains(&"vpc1".to_string()) && vpcs.contains(&"default".to_string()),
        "{vpcs:?}"
    );
    assert!(!vpcs.contains(&"ops-net".to_string()), "{vpcs:?}");
    let subnets: Vec<String> = t
        .list::<Subnet>(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(subnets.contains(&"eip-seg".to_string()), "{subnets:?}");
    assert!(!subnets.contains(&"ops-sub".to_string()), "{subnets:?}");
    assert_eq!(api_err(t.show::<Vpc>("ops-net").await).0, 404);
    assert_eq!(api_err(t.show::<Subnet>("ops-sub").await).0, 404);

    // The visible EIP recipe fills the EIP's server.
    let visible: VisibleEip = t
        .post(
            paths::EIPS_VISIBLE,
            &CreateVisibleEip {
                bandwidth_mbps: 5,
                server: vm.id.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(visible.eip.server_id(), Some(vm.id.as_str()));
    let again: Eip = t.show(&visible.eip.id).await.unwrap();
    assert_eq!(again.server_id(), Some(vm.id.as_str()));
    // Releasing it says what unbinding says: delete the NIC.
    let (status, code, msg) = api_err(t.remove::<vpcip_model::Eip>(&visible.eip.id).await);
    assert_eq!((status, code.as_str()), (409, "resource_in_use"), "{msg}");
    assert!(msg.contains("delete the NIC"), "{msg}");
    let (_, _, unbind) = api_err(
        t.action::<_, Eip>(paths::EIP_UNBIND, &visible.eip.id, &serde_json::json!({}))
            .await,
    );
    assert!(unbind.contains("delete the NIC"), "{unbind}");
    // A NAT binding names the NIC by its name.
    let nat = t
        .create_eip(&CreateEip {
            bandwidth_mbps: 5,
            bind: Some(BindEip {
                target: EipTarget::Server("vm-1".into()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let (_, _, msg) = api_err(t.remove::<vpcip_model::Eip>(&nat.id).await);
    let primary: Nic = t.show(&vm.nic_ids[0]).await.unwrap();
    assert!(
        msg.contains(&format!("NIC {}", primary.name)) && msg.contains("unbind it first"),
        "{msg}"
    );

    // The same group twice in a NIC's list.
    let nic: Nic = t.show(&vm.nic_ids[0]).await.unwrap();
    let sg = nic.security_group_ids[0].clone();
    let (status, code, msg) = api_err(
        t.patch::<_, Nic>(
            &paths::at(paths::NIC, &[&nic.id]),
            &UpdateNic {
                security_groups: Some(vec![sg.clone(), sg.clone()]),
                source_dest_check: None,
            },
        )
        .await,
    );
    assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{msg}");
    assert!(msg.contains("given twice"), "{msg}");
    // An ENI of another VPC cannot join vm-1.
    let _: Vpc = t
        .post(
            paths::VPCS,
            &CreateVpc {
                name: "vpc2".into(),
                cidr: "10.9.0.0/16".parse().unwrap(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    t.create_subnet(&CreateSubnet {
        name: "sw9".into(),
        vpc: Some("vpc2".into()),
        zone: Some("z1".into()),
        cidr: Some("10.9.0.0/24".parse().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let eni: Nic = t
        .post(
            paths::NICS,
            &CreateNic {
                name: "eni-9".into(),
                subnet: "sw9".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, code, msg) = api_err(
        t.action::<_, Nic>(
            paths::NIC_ATTACH,
            &eni.id,
            &AttachNic {
                server: vm.id.clone(),
            },
        )
        .await,
    );
    assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{msg}");
    assert!(msg.contains("a server's NICs share its VPC"), "{msg}");
    // A /31 guest subnet; an IPv6 block.
    let (status, _, msg) = api_err(
        t.create_subnet(&CreateSubnet {
            name: "tiny".into(),
            vpc: Some("vpc1".into()),
            zone: Some("z1".into()),
            cidr: Some("10.0.9.0/31".parse().unwrap()),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("/30 or larger"), "{msg}");
    let (status, _, msg) = api_err(
        t.post::<_, Vpc>(
            paths::VPCS,
            &serde_json::json!({"name": "v6", "cidr": "2001:db8::/32"}),
        )
        .await,
    );
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("IPv4 only"), "{msg}");
}

on_both!(
    names_addresses_and_what_tenants_see,
    seeds_procedure_over_http,
    bad_input_is_4xx,
    tenants_are_isolated,
    idempotent_creates_and_pages,
    race_over_http
);

/// The committed `openapi.json` is what the server serves; regenerate with
/// `UPDATE_OPENAPI=1 cargo test -p vpcip-api openapi`.
#[test]
fn openapi_document_is_committed_and_fresh() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
    let now = vpcip_api::openapi_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &now).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == now,
        "openapi.json is stale: run UPDATE_OPENAPI=1 cargo test -p vpcip-api openapi, and commit it"
    );
}

#[tokio::test]
async fn sqlite_store_is_usable_from_test_helper() {
    let db = testing::sqlite().await;
    assert!(
        db.store
            .show::<Vpc>(&vpcip_store::Scope::Operator, "default")
            .await
            .unwrap()
            .is_default
    );
}

/// Every route of the OpenAPI document, called with no token (401), a bad
/// token (401), another tenant's token (404 for the first tenant's
/// resources, 403 for what only the operator may do, and lists without the
/// first tenant's items) and the operator's token (never 401 or 403). A
/// route the table below does not cover fails the test, so no route ships
/// without the check.
async fn every_route_checks_its_caller(s: Server) {
    use serde_json::{Value, json};
    let acme = seeds_world(&s, "acme").await;
    let op = s.operator();
    let tok: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "globex".into(),
                description: String::new(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await
        .unwrap();
    let globex = tok.secret.clone().unwrap();
    // acme's resources, one of each kind.
    let acme_token: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "acme".into(),
                description: "second".into(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await
        .unwrap();
    let vpc: Vpc = acme.show("vpc1").await.unwrap();
    let subnet: Subnet = acme.show("sw1").await.unwrap();
    let vm: Server_ = acme
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "vm-1".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let nic: Nic = acme.show(&vm.nic_ids[0]).await.unwrap();
    let vip: Vip = acme
        .post(
            paths::VIPS,
            &CreateVip {
                name: "vip-1".into(),
                subnet: "sw1".into(),
                ip: None,
                client_token: None,
            },
        )
        .await
        .unwrap();
    let eip = acme
        .create_eip(&CreateEip {
            bandwidth_mbps: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let sgs: Vec<SecurityGroup> = acme.list(None).await.unwrap();
    let sg = sgs.iter().find(|g| g.tenant == "acme").unwrap().clone();
    let zone: Zone = op.show("z1").await.unwrap();
    let hn: HostNetwork = op.show("underlay").await.unwrap();
    let gw: Gateway = op.show("allinone").await.unwrap();
    let agent: vpcip_model::desired::Agent = op
        .post(
            paths::AGENTS,
            &vpcip_model::desired::RegisterAgent {
                name: "allinone".into(),
                role: vpcip_model::desired::AgentRole::Gateway,
                underlay_ip: "192.168.201.20".parse().unwrap(),
            },
        )
        .await
        .unwrap();

    // What each {id} stands for, by the route's first segment; and who
    // owns it.
    let id_of = |path: &str| -> Option<(&str, bool)> {
        let kind = path.trim_start_matches("/v1/").split('/').next()?;
        Some(match kind {
            "vpcs" => (vpc.id.as_str(), true),
            "subnets" => (subnet.id.as_str(), true),
            "servers" => (vm.id.as_str(), true),
            "nics" => (nic.id.as_str(), true),
            "vips" => (vip.id.as_str(), true),
            "eips" => (eip.id.as_str(), true),
            "security-groups" => (sg.id.as_str(), true),
            "tokens" => (acme_token.id.as_str(), false),
            "zones" => (zone.id.as_str(), false),
            "host-networks" => (hn.id.as_str(), false),
            "gateways" => (gw.id.as_str(), false),
            "agents" => (agent.id.as_str(), false),
            "physical-routes" | "status" => ("", false),
            _ => return None,
        })
    };
    // A valid body for each route that takes one (naming acme's resources
    // where it refers to any).
    let body_of = |method: &str, path: &str| -> Option<Value> {
        Some(match (method, path) {
            ("POST", paths::AGENTS) => {
                json!({"name": "gw-x", "role": "gateway", "underlay_ip": "192.168.201.21"})
            }
            ("POST", "/v1/agents/{id}/counters") => json!({"counters": []}),
            ("POST", "/v1/agents/{id}/report") => json!({"applied_revision": 1, "error": null}),
            ("POST", paths::EIPS) => {
                json!({"bandwidth_mbps": 1, "bind": {"target": {"kind": "server", "id": vm.id}}})
            }
            ("POST", paths::EIPS_VISIBLE) => json!({"bandwidth_mbps": 1, "server": vm.id}),
            ("PATCH", "/v1/eips/{id}") => json!({"bandwidth_mbps": 2}),
            ("POST", "/v1/eips/{id}/bind") => json!({"target": {"kind": "nic", "id": nic.id}}),
            ("POST", paths::GATEWAYS) => json!({"name": "gw-2", "underlay_ip": "192.168.201.22"}),
            ("PATCH", "/v1/gateways/{id}") => {
                json!({"bgp": {"local_as": 64513, "peers": [{"ip": "192.168.201.1", "peer_as": 64512}]}})
            }
            ("POST", paths::HOST_NETWORKS) => json!({"name": "hn-2", "cidr": "192.168.210.0/24"}),
            ("POST", paths::NICS) => json!({"name": "eni-x", "subnet": subnet.id}),
            ("PATCH", "/v1/nics/{id}") => json!({"source_dest_check": false}),
            ("PATCH", "/v1/subnets/{id}") => json!({"dns_servers": ["192.0.2.53"]}),
            ("POST", "/v1/nics/{id}/attach") => json!({"server": vm.id}),
            ("POST", paths::SECURITY_GROUPS) => json!({"name": "sg-x", "vpc": vpc.id}),
            ("POST", "/v1/security-groups/{id}/rules") => json!({"rules": [{
                "direction": "ingress", "protocol": "tcp", "port_min": 22, "port_max": 22,
                "remote_cidr": "192.0.2.0/24"}]}),
            ("POST", paths::SERVERS) => json!({"name": "vm-x", "subnet": subnet.id}),
            ("POST", paths::SUBNETS) => {
                json!({"name": "sw-x", "vpc": vpc.id, "zone": zone.id, "cidr": "10.0.9.0/24"})
            }
            ("POST", paths::TOKENS) => json!({"tenant": "acme"}),
            ("POST", paths::VIPS) => json!({"name": "vip-x", "subnet": subnet.id}),
            ("POST", "/v1/vips/{id}/bind" | "/v1/vips/{id}/unbind") => json!({"nic": nic.id}),
            ("POST", paths::VPCS) => json!({"name": "vpc-x", "cidr": "172.16.0.0/16"}),
            ("POST", "/v1/vpcs/{id}/add-cidr" | "/v1/vpcs/{id}/remove-cidr") => {
                json!({"cidr": "172.20.0.0/16"})
            }
            ("POST", paths::ZONES) => json!({"name": "z-x"}),
            _ => return None,
        })
    };
    let http = reqwest::Client::new();
    let call = |method: &str, path: &str, token: Option<&str>, body: Option<&Value>| {
        let mut req = http.request(method.parse().unwrap(), format!("{}{path}", s.url()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
    };

    let doc: Value = serde_json::from_str(&vpcip_api::openapi_json()).unwrap();
    let mut covered = 0;
    let mut total = 0;
    let mut operator_calls = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op_doc) in methods.as_object().unwrap() {
            let method = method.to_uppercase();
            if path != "/healthz" {
                total += 1;
            }
            let secured = op_doc["security"].is_array();
            if path == "/healthz" {
                assert!(!secured);
                continue;
            }
            assert!(
                secured,
                "{method} {path} has no bearer security in the document"
            );
            let with_id = path.contains("{id}");
            let (id, tenant_owned) = match id_of(path) {
                Some(x) => x,
                None => panic!("{method} {path}: not covered by this test (add it to id_of)"),
            };
            let body = body_of(&method, path);
            let takes_body = op_doc["requestBody"].is_object();
            assert_eq!(
                takes_body,
                body.is_some(),
                "{method} {path}: not covered by this test (add a body to body_of)"
            );
            let url = path
                .replace("{id}", id)
                .replace("{rule}", "ingress:tcp:22:192.0.2.0%2F24");
            let what = format!("{method} {path}");
            // No token, a bad token.
            assert_eq!(
                call(&method, &url, None, body.as_ref()).await.0,
                401,
                "{what}, no token"
            );
            assert_eq!(
                call(&method, &url, Some("vpcip_forged"), body.as_ref())
                    .await
                    .0,
                401,
                "{what}, a bad token"
            );
            // Another tenant.
            let (status, text) = call(&method, &url, Some(&globex), body.as_ref()).await;
            let platform_read =
                method == "GET" && matches!(path.as_str(), paths::ZONES | "/v1/zones/{id}");
            match (with_id, tenant_owned) {
                _ if platform_read => assert_eq!(status, 200, "{what}, another tenant: {text}"),
                (true, true) => assert_eq!(status, 404, "{what}, another tenant: {text}"),
                // The operator's resources: refused, or (a read) not there
                // for this tenant.
                (_, false) if method == "GET" => {
                    assert!(
                        status == 403 || status == 404 || status == 200,
                        "{what}, another tenant: {status} {text}"
                    );
                    for private in [&gw.id, &hn.id, &acme_token.id, &agent.id] {
                        assert!(
                            status != 200 || !text.contains(private.as_str()),
                            "{what} shows {private} to a tenant: {text}"
                        );
                    }
                }
                (_, false) => assert_eq!(status, 403, "{what}, another tenant: {text}"),
                (false, true) if method == "GET" => {
                    assert_eq!(status, 200, "{what}, another tenant: {text}");
                    for acme_id in [
                        &vpc.id, &subnet.id, &vm.id, &nic.id, &vip.id, &eip.id, &sg.id,
                    ] {
                        assert!(
                            !text.contains(acme_id.as_str()),
                            "{what} shows another tenant {acme_id}: {text}"
                        );
                    }
                }
                // Creating in a tenant collection: only with acme's
                // resources named is there anything to refuse.
                (false, true) => {
                    if path == paths::VPCS {
                        assert_eq!(status, 201, "{what}, another tenant: {text}");
                    } else {
                        assert_eq!(status, 404, "{what}, another tenant naming acme's: {text}");
                    }
                }
            }
            operator_calls.push((method.clone(), path.clone(), url, body));
            covered += 1;
        }
    }
    // The operator: never refused as a caller (mutations last, reads
    // first, so that what is read still exists).
    operator_calls.sort_by_key(|(m, _, _, _)| m != "GET");
    for (method, path, url, body) in &operator_calls {
        let (status, text) = call(method, url, Some(OPERATOR), body.as_ref()).await;
        assert!(
            status != 401 && status != 403,
            "{method} {path}, the operator: {status} {text}"
        );
    }
    // Every operation of the document (but /healthz, open to all).
    assert_eq!(
        covered, total,
        "only {covered} of {total} operations covered"
    );
    eprintln!("{covered} of {total} operations covered");
}

on_both!(every_route_checks_its_caller);

/// An agent's token registers, watches and reports, and is refused
/// everywhere else; a tenant's token cannot use the agent routes.
async fn agent_tokens_serve_the_agent_routes_only(s: Server) {
    let tenant = seeds_world(&s, "acme").await;
    let op = s.operator();
    let tok: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "gw-1".into(),
                description: "the gateway's agent".into(),
                agent: true,
                agent_role: Some(vpcip_model::desired::AgentRole::Gateway),
                ec2: false,
            },
        )
        .await
        .unwrap();
    assert!(tok.agent);
    let agent = Client::new(&s.url(), tok.secret.as_deref());
    let me: vpcip_model::desired::Agent = agent
        .post(
            paths::AGENTS,
            &vpcip_model::desired::RegisterAgent {
                name: "gw-1".into(),
                role: vpcip_model::desired::AgentRole::Gateway,
                underlay_ip: "192.168.201.21".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    let desired: vpcip_model::desired::Desired = agent
        .get(&paths::at(paths::AGENT_DESIRED, &[&me.id]))
        .await
        .unwrap();
    let _: () = agent
        .post(
            &paths::at(paths::AGENT_REPORT, &[&me.id]),
            &vpcip_model::desired::AgentReport {
                applied_revision: desired.revision,
                error: None,
                missing_ports: vec![],
                cluster: None,
            },
        )
        .await
        .unwrap();
    // Nothing else.
    let (status, code, message) = api_err(agent.list::<Eip>(None).await);
    assert_eq!((status, code.as_str()), (403, "forbidden"), "{message}");
    assert!(message.contains("agent routes"), "{message}");
    assert_eq!(
        api_err(
            agent
                .post::<_, Zone>(paths::ZONES, &CreateZone { name: "z9".into() })
                .await
        )
        .0,
        403
    );
    // A tenant's token cannot act as an agent.
    assert_eq!(
        api_err(
            tenant
                .get::<vpcip_model::desired::Desired>(&paths::at(paths::AGENT_DESIRED, &[&me.id]))
                .await
        )
        .0,
        403
    );
    let listed: Vec<Token> = op.get(paths::TOKENS).await.unwrap();
    assert!(listed.iter().any(|t| t.id == tok.id && t.agent));
}

on_both!(agent_tokens_serve_the_agent_routes_only);

use vpcip_model::desired::{Agent, AgentReport, AgentRole, Desired, RegisterAgent};

/// A token for one agent (the operator's `token create --agent NAME --role`).
async fn agent_token(s: &Server, name: &str, role: AgentRole) -> Client {
    let tok: Token = s
        .operator()
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: name.into(),
                description: format!("agent {name}"),
                agent: true,
                agent_role: Some(role),
                ec2: false,
            },
        )
        .await
        .unwrap();
    assert_eq!((tok.agent, tok.agent_role), (true, Some(role)));
    Client::new(&s.url(), tok.secret.as_deref())
}

fn reg(name: &str, role: AgentRole, ip: &str) -> RegisterAgent {
    RegisterAgent {
        name: name.into(),
        role,
        underlay_ip: ip.parse().unwrap(),
    }
}

/// Issue 11, attack 4: an agent token acts for its own agent (name and
/// role) only. It cannot register another agent (which would publish it as
/// the next hop of every EIP segment), re-register its gateway as a host,
/// or read or report for another agent (existing or not); everything else
/// is 403 `agent_identity` naming the token's agent. Its own flows work,
/// and the operator's token still does everything.
async fn an_agent_token_acts_for_its_agent_only(s: Server) {
    let _tenant = seeds_world(&s, "acme").await;
    let op = s.operator();
    let h1: Agent = op
        .post(paths::AGENTS, &reg("h1", AgentRole::Host, "192.168.201.11"))
        .await
        .unwrap();
    let gw1 = agent_token(&s, "gw1", AgentRole::Gateway).await;

    // Its own flows: register (again, as after a restart), watch, report.
    let me: Agent = gw1
        .post(
            paths::AGENTS,
            &reg("gw1", AgentRole::Gateway, "192.168.201.21"),
        )
        .await
        .unwrap();
    let again: Agent = gw1
        .post(
            paths::AGENTS,
            &reg("gw1", AgentRole::Gateway, "192.168.201.21"),
        )
        .await
        .unwrap();
    assert_eq!(again.id, me.id);
    let desired: Desired = gw1
        .get(&format!(
            "{}?after=0&wait=0",
            paths::at(paths::AGENT_DESIRED, &[&me.id])
        ))
        .await
        .unwrap();
    assert!(desired.gateway.is_some());
    let _: Desired = gw1.get("/v1/agents/gw1/desired").await.unwrap();
    let report = AgentReport {
        applied_revision: desired.revision,
        error: None,
        missing_ports: vec![],
        cluster: None,
    };
    let _: () = gw1
        .post(&paths::at(paths::AGENT_REPORT, &[&me.id]), &report)
        .await
        .unwrap();
    let _: () = gw1
        .post(
            &paths::at(paths::AGENT_COUNTERS, &[&me.id]),
            &serde_json::json!({"counters": [], "vip_holders": []}),
        )
        .await
        .unwrap();

    // Another agent's registration: refused, and it is no next hop.
    let (status, code, message) = api_err(
        gw1.post::<_, Agent>(
            paths::AGENTS,
            &reg("other-gw", AgentRole::Gateway, "192.168.201.22"),
        )
        .await,
    );
    assert_eq!(
        (status, code.as_str()),
        (403, "agent_identity"),
        "{message}"
    );
    assert_eq!(
        message,
        "this agent token acts for agent gw1 (gateway) only, not other-gw (gateway)"
    );
    let routes: Vec<PhysicalRoute> = op.get(paths::PHYSICAL_ROUTES).await.unwrap();
    let hops: BTreeSet<String> = routes.iter().map(|r| r.gateway.clone()).collect();
    assert_eq!(
        hops,
        BTreeSet::from(["allinone".to_string(), "gw1".to_string()])
    );
    // Its own gateway re-registered as a host elsewhere; another gateway
    // taken over as a host.
    for (name, addr, requested) in [
        ("gw1", "192.168.201.23", "gw1 (host)"),
        ("allinone", "192.168.201.20", "allinone (host)"),
    ] {
        let (status, code, message) = api_err(
            gw1.post::<_, Agent>(paths::AGENTS, &reg(name, AgentRole::Host, addr))
                .await,
        );
        assert_eq!((status, code.as_str()), (403, "agent_identity"));
        assert_eq!(
            message,
            format!("this agent token acts for agent gw1 (gateway) only, not {requested}")
        );
    }
    let agents: Vec<Agent> = op.get(paths::AGENTS).await.unwrap();
    let mine = agents.iter().find(|a| a.name == "gw1").unwrap();
    assert_eq!(
        (mine.role, mine.underlay_ip.to_string().as_str()),
        (AgentRole::Gateway, "192.168.201.21")
    );
    assert!(!agents.iter().any(|a| a.name == "other-gw"));

    // Another agent's report, counters, desired state: by ID, by name,
    // and an agent that does not exist.
    let bad = AgentReport {
        applied_revision: 1,
        error: Some("forged".into()),
        missing_ports: vec![],
        cluster: None,
    };
    for key in [h1.id.as_str(), "h1", "agent-nonexistent"] {
        let want = if key == "h1" || key == h1.id {
            "this agent token acts for agent gw1 (gateway) only, not h1 (host)".to_string()
        } else {
            format!("this agent token acts for agent gw1 (gateway) only, not {key}")
        };
        let (status, code, message) = api_err(
            gw1.post::<_, ()>(&paths::at(paths::AGENT_REPORT, &[key]), &bad)
                .await,
        );
        assert_eq!(
            (status, code.as_str(), message.as_str()),
            (403, "agent_identity", want.as_str())
        );
        let (status, code, _) = api_err(
            gw1.post::<_, ()>(
                &paths::at(paths::AGENT_COUNTERS, &[key]),
                &serde_json::json!({"counters": []}),
            )
            .await,
        );
        assert_eq!((status, code.as_str()), (403, "agent_identity"), "{key}");
        let (status, code, _) = api_err(
            gw1.get::<Desired>(&format!(
                "{}?wait=0",
                paths::at(paths::AGENT_DESIRED, &[key])
            ))
            .await,
        );
        assert_eq!((status, code.as_str()), (403, "agent_identity"), "{key}");
        // Nor another agent's watch.
        let (status, code, _) = api_err(
            gw1.get::<vpcip_model::desired::WatchBatch>(&format!(
                "{}?wait=0",
                paths::at(paths::AGENT_WATCH, &[key])
            ))
            .await,
        );
        assert_eq!((status, code.as_str()), (403, "agent_identity"), "{key}");
    }
    let status: vpcip_model::desired::SystemStatus = op.get(paths::STATUS).await.unwrap();
    let h1_now = status.agents.iter().find(|a| a.agent.name == "h1").unwrap();
    assert_eq!(h1_now.agent.error, None, "the forged report never landed");
    // Nor does it list the agents or read the status.
    let (status, code, _) = api_err(gw1.get::<Vec<Agent>>(paths::AGENTS).await);
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    assert_eq!(
        api_err(gw1.get::<serde_json::Value>(paths::STATUS).await).0,
        403
    );

    // A host's token: its own host only, and no counters (those are the
    // gateways').
    let h1_token = agent_token(&s, "h1", AgentRole::Host).await;
    let _: Agent = h1_token
        .post(paths::AGENTS, &reg("h1", AgentRole::Host, "192.168.201.11"))
        .await
        .unwrap();
    let (status, code, message) = api_err(
        h1_token
            .post::<_, Agent>(
                paths::AGENTS,
                &reg("h1", AgentRole::Gateway, "192.168.201.11"),
            )
            .await,
    );
    assert_eq!((status, code.as_str()), (403, "agent_identity"));
    assert_eq!(
        message,
        "this agent token acts for agent h1 (host) only, not h1 (gateway)"
    );
    let (status, code, message) = api_err(
        h1_token
            .post::<_, ()>(
                &paths::at(paths::AGENT_COUNTERS, &[&h1.id]),
                &serde_json::json!({"counters": [], "vip_holders": []}),
            )
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "invalid_argument"));
    assert!(
        message.contains("h1 is a host agent: only gateway agents report EIP counters and VIP holders (hosts report NIC drops only)"),
        "{message}"
    );
    assert_eq!(
        api_err(
            h1_token
                .get::<Desired>(&format!(
                    "{}?wait=0",
                    paths::at(paths::AGENT_DESIRED, &[&me.id])
                ))
                .await
        )
        .0,
        403
    );

    // An agent token names its role; a role needs an agent token.
    for (agent, role, field_msg) in [
        (true, None, "give the role (gateway or host) of agent gw9"),
        (false, Some(AgentRole::Host), "set agent to make one"),
    ] {
        let (status, code, message) = api_err(
            op.post::<_, Token>(
                paths::TOKENS,
                &CreateToken {
                    tenant: "gw9".into(),
                    description: String::new(),
                    agent,
                    agent_role: role,
                    ec2: false,
                },
            )
            .await,
        );
        assert_eq!((status, code.as_str()), (400, "invalid_argument"));
        assert!(
            message.starts_with("invalid agent_role: ") && message.contains(field_msg),
            "{message}"
        );
    }
    let listed: Vec<Token> = op.get(paths::TOKENS).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|t| t.tenant == "gw1" && t.agent_role == Some(AgentRole::Gateway))
    );

    // The operator's token still does everything.
    let _: Agent = op
        .post(
            paths::AGENTS,
            &reg("other-gw", AgentRole::Gateway, "192.168.201.22"),
        )
        .await
        .unwrap();
    let _: () = op
        .post(&paths::at(paths::AGENT_REPORT, &[&h1.id]), &bad)
        .await
        .unwrap();
    let status: vpcip_model::desired::SystemStatus = op.get(paths::STATUS).await.unwrap();
    let h1_now = status.agents.iter().find(|a| a.agent.name == "h1").unwrap();
    assert_eq!(h1_now.agent.error.as_deref(), Some("forged"));
}

/// Issue 11, attack 5: a gateway's or agent's underlay address is a free
/// unicast address of a registered host network, outside the EIP segments
/// — through the operator's `gateway register` and through an agent token
/// alike; the same agent re-registering with its own address is fine.
async fn underlay_addresses_are_validated(s: Server) {
    let _tenant = seeds_world(&s, "acme").await;
    let op = s.operator();
    let gw1 = agent_token(&s, "gw1", AgentRole::Gateway).await;
    let _: Agent = op
        .post(paths::AGENTS, &reg("h1", AgentRole::Host, "192.168.201.11"))
        .await
        .unwrap();
    let cases = [
        (
            "192.168.202.7",
            400,
            "underlay_in_eip_segment",
            "underlay address 192.168.202.7 lies in EIP segment 192.168.202.0/24, which the physical network routes to the gateways",
        ),
        (
            "0.0.0.0",
            400,
            "underlay_reserved",
            "underlay address 0.0.0.0 is in 0.0.0.0/8 (\"this network\"): no node is reachable at it",
        ),
        (
            "127.0.0.1",
            400,
            "underlay_reserved",
            "underlay address 127.0.0.1 is a loopback address (127.0.0.0/8): no node is reachable at it",
        ),
        (
            "224.0.0.18",
            400,
            "underlay_reserved",
            "underlay address 224.0.0.18 is a multicast address (224.0.0.0/4): no node is reachable at it",
        ),
        (
            "255.255.255.255",
            400,
            "underlay_reserved",
            "underlay address 255.255.255.255 is the limited broadcast address: no node is reachable at it",
        ),
        (
            "192.168.201.255",
            400,
            "underlay_reserved",
            "underlay address 192.168.201.255 is the broadcast address of host network underlay (192.168.201.0/24): no node is reachable at it",
        ),
        (
            "192.168.201.0",
            400,
            "underlay_reserved",
            "underlay address 192.168.201.0 is the network address of host network underlay (192.168.201.0/24): no node is reachable at it",
        ),
        (
            "10.99.0.1",
            400,
            "underlay_outside_host_networks",
            "underlay address 10.99.0.1 lies in no host network (registered: underlay 192.168.201.0/24): register its network first (vpcip host-network create)",
        ),
        (
            "192.168.201.20",
            409,
            "underlay_in_use",
            "underlay address 192.168.201.20 is already held by gateway allinone",
        ),
        (
            "192.168.201.11",
            409,
            "underlay_in_use",
            "underlay address 192.168.201.11 is already held by agent h1 (host)",
        ),
    ];
    for (addr, want_status, want_code, want_message) in cases {
        let by_operator = op
            .post::<_, Gateway>(
                paths::GATEWAYS,
                &CreateGateway {
                    name: "gw-x".into(),
                    underlay_ip: addr.parse().unwrap(),
                },
            )
            .await;
        let by_token = gw1
            .post::<_, Agent>(paths::AGENTS, &reg("gw1", AgentRole::Gateway, addr))
            .await;
        let host_by_operator = op
            .post::<_, Agent>(paths::AGENTS, &reg("h2", AgentRole::Host, addr))
            .await;
        for (who, r) in [
            ("gateway register", api_err(by_operator)),
            ("agent token", api_err(by_token)),
            ("host agent", api_err(host_by_operator)),
        ] {
            assert_eq!(
                (r.0, r.1.as_str(), r.2.as_str()),
                (want_status, want_code, want_message),
                "{addr} by {who}"
            );
        }
    }
    // Nothing of it was registered.
    let gateways: Vec<Gateway> = op.list(None).await.unwrap();
    assert_eq!(gateways.len(), 1, "{gateways:?}");
    let routes: Vec<PhysicalRoute> = op.get(paths::PHYSICAL_ROUTES).await.unwrap();
    assert!(routes.iter().all(|r| r.gateway == "allinone"), "{routes:?}");
    // Good addresses; the same agent again with its own; its gateway
    // moving to a free one; a gateway the operator registered taken up
    // by its own agent at its address.
    let me: Agent = gw1
        .post(
            paths::AGENTS,
            &reg("gw1", AgentRole::Gateway, "192.168.201.21"),
        )
        .await
        .unwrap();
    let _: Agent = gw1
        .post(
            paths::AGENTS,
            &reg("gw1", AgentRole::Gateway, "192.168.201.21"),
        )
        .await
        .unwrap();
    let moved: Agent = gw1
        .post(
            paths::AGENTS,
            &reg("gw1", AgentRole::Gateway, "192.168.201.24"),
        )
        .await
        .unwrap();
    assert_eq!(moved.id, me.id);
    let g: Gateway = op.show("gw1").await.unwrap();
    assert_eq!(g.underlay_ip.to_string(), "192.168.201.24");
    let _: Agent = op
        .post(
            paths::AGENTS,
            &reg("allinone", AgentRole::Gateway, "192.168.201.20"),
        )
        .await
        .unwrap();
    // The address gw1 left is free again.
    let _: Gateway = op
        .post(
            paths::GATEWAYS,
            &CreateGateway {
                name: "gw-x".into(),
                underlay_ip: "192.168.201.21".parse().unwrap(),
            },
        )
        .await
        .unwrap();
}

/// Issue 11, attack 5: a host network that still holds a gateway's or an
/// agent's underlay address stays (409 naming them), and so does the last
/// gateway while EIPs are bound, unless forced (409 saying what stops
/// working).
async fn deletes_that_strand_the_underlay_are_refused(s: Server) {
    let tenant = seeds_world(&s, "acme").await;
    let op = s.operator();
    // The host network holds the gateway "allinone".
    let (status, code, message) = api_err(op.remove::<vpcip_model::HostNetwork>("underlay").await);
    assert_eq!((status, code.as_str()), (409, "resource_in_use"));
    assert_eq!(
        message,
        "host network underlay (192.168.201.0/24) is in use: the underlay address of gateway allinone (192.168.201.20) lies in it and in no other host network"
    );
    // An unused one goes.
    let _: HostNetwork = op
        .post(
            paths::HOST_NETWORKS,
            &CreateHostNetwork {
                name: "spare".into(),
                cidr: "10.20.0.0/24".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    op.remove::<vpcip_model::HostNetwork>("spare")
        .await
        .unwrap();
    // A host agent in a network of its own keeps that one.
    let _: HostNetwork = op
        .post(
            paths::HOST_NETWORKS,
            &CreateHostNetwork {
                name: "rack2".into(),
                cidr: "10.30.0.0/24".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    let _: Agent = op
        .post(paths::AGENTS, &reg("h2", AgentRole::Host, "10.30.0.12"))
        .await
        .unwrap();
    let (status, _, message) = api_err(op.remove::<vpcip_model::HostNetwork>("rack2").await);
    assert_eq!(status, 409);
    assert!(
        message.contains("the underlay address of agent h2 (host, 10.30.0.12) lies in it"),
        "{message}"
    );

    // The last gateway with an EIP bound.
    let _: Server_ = tenant
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "vm-1".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let eip = tenant
        .create_eip(&CreateEip {
            bandwidth_mbps: 1,
            bind: Some(BindEip {
                target: EipTarget::Server("vm-1".into()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let (status, code, message) = api_err(op.delete_gateway("allinone", false).await);
    assert_eq!((status, code.as_str()), (409, "last_gateway"));
    assert_eq!(
        message,
        "gateway allinone is the last gateway and 1 EIP is bound: deleting it makes them unreachable; pass --force (API: force=true) to delete anyway"
    );
    let (status, code, _) = api_err(op.delete("/v1/gateways/allinone?force=false").await);
    assert_eq!((status, code.as_str()), (409, "last_gateway"));
    let (status, code, _) = api_err(op.delete("/v1/gateways/allinone?force=maybe").await);
    assert_eq!((status, code.as_str()), (400, "invalid_query"));
    // Not the last: a second gateway takes the routes.
    let _: Gateway = op
        .post(
            paths::GATEWAYS,
            &CreateGateway {
                name: "gw2".into(),
                underlay_ip: "192.168.201.22".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    op.delete_gateway("allinone", false).await.unwrap();
    let routes: Vec<PhysicalRoute> = op.get(paths::PHYSICAL_ROUTES).await.unwrap();
    assert_eq!(
        routes
            .iter()
            .map(|r| r.gateway.as_str())
            .collect::<Vec<_>>(),
        ["gw2"]
    );
    assert_eq!(
        api_err(op.delete_gateway("gw2", false).await).1,
        "last_gateway"
    );
    // Unbound, the last one goes without force; forced, even while bound.
    let _: Eip = tenant
        .action(paths::EIP_UNBIND, &eip.id, &serde_json::json!({}))
        .await
        .unwrap();
    let _: Gateway = op
        .post(
            paths::GATEWAYS,
            &CreateGateway {
                name: "gw3".into(),
                underlay_ip: "192.168.201.23".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    op.delete_gateway("gw2", false).await.unwrap();
    let _: Eip = tenant
        .bind_eip(
            &eip.id,
            &BindEip {
                target: EipTarget::Server("vm-1".into()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            },
        )
        .await
        .unwrap();
    op.delete_gateway("gw3", true).await.unwrap();
    let routes: Vec<PhysicalRoute> = op.get(paths::PHYSICAL_ROUTES).await.unwrap();
    assert!(routes.is_empty(), "{routes:?}");
    // With no node left in it, the host network goes too.
    op.remove::<vpcip_model::HostNetwork>("underlay")
        .await
        .unwrap();
}

on_both!(
    an_agent_token_acts_for_its_agent_only,
    underlay_addresses_are_validated,
    deletes_that_strand_the_underlay_are_refused
);

/// Every input limit refuses with an error that names the rule and the
/// values: the body size, the page size, names, descriptions, quotas.
async fn input_limits_each_have_a_clear_error(s: Server) {
    let t = seeds_world(&s, "acme").await;
    let op = s.operator();
    let http = reqwest::Client::new();
    // Body: 64 KB at most.
    let r = http
        .post(format!("{}/v1/zones", s.url()))
        .bearer_auth(OPERATOR)
        .header("content-type", "application/json")
        .body(format!("{{\"name\": \"{}\"}}", "a".repeat(70_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Page size: 1 to 1000.
    let (status, code, message) = api_err(t.get::<Page<Eip>>("/v1/eips?limit=1001").await);
    assert_eq!((status, code.as_str()), (400, "invalid_argument"));
    assert!(message.contains("1001 is outside 1..=1000"), "{message}");
    // Names: 1 to 64 plain characters.
    let long = "n".repeat(65);
    let (status, code, message) = api_err(
        op.post::<_, Zone>(paths::ZONES, &CreateZone { name: long.clone() })
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "invalid_argument"));
    assert!(message.contains("must be 1 to 64 characters"), "{message}");
    let (_, _, message) = api_err(
        op.post::<_, Zone>(paths::ZONES, &CreateZone { name: "a b".into() })
            .await,
    );
    assert!(message.contains("only letters, digits"), "{message}");
    // Descriptions: 256 characters.
    let (status, _, message) = api_err(
        op.post::<_, Token>(
            paths::TOKENS,
            &CreateToken {
                tenant: "acme".into(),
                description: "d".repeat(300),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await,
    );
    assert_eq!(status, 400);
    assert!(message.contains("at most 256 characters"), "{message}");
    // Quotas: the default allows 100 VPCs; the 101st is refused.
    for i in 2..=100 {
        let _: Vpc = t
            .post(
                paths::VPCS,
                &CreateVpc {
                    name: format!("vpc{i}"),
                    cidr: "172.16.0.0/16".parse().unwrap(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let (status, code, message) = api_err(
        t.post::<_, Vpc>(
            paths::VPCS,
            &CreateVpc {
                name: "vpc101".into(),
                cidr: "172.16.0.0/16".parse().unwrap(),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!((status, code.as_str()), (409, "quota_exceeded"));
    assert_eq!(
        message,
        "tenant acme already has 100 VPCs: its quota is 100"
    );
}

on_both!(input_limits_each_have_a_clear_error);

/// A gateway's BGP and drain through the API: bad BGP named by its rule,
/// the last undrained gateway refused, absent fields untouched.
async fn gateways_take_bgp_and_drain(s: Server) {
    use serde_json::json;
    let t = seeds_world(&s, "acme").await;
    let op = s.operator();
    for (name, ip) in [("gw-a", "192.168.201.31"), ("gw-b", "192.168.201.32")] {
        let _: Gateway = op
            .post(
                paths::GATEWAYS,
                &CreateGateway {
                    name: name.into(),
                    underlay_ip: ip.parse().unwrap(),
                },
            )
            .await
            .unwrap();
    }
    let bgp =
        json!({"bgp": {"local_as": 64513, "peers": [{"ip": "192.168.201.1", "peer_as": 64512}]}});
    let gw: Gateway = op.patch("/v1/gateways/gw-a", &bgp).await.unwrap();
    let cfg = gw.bgp.clone().unwrap();
    assert_eq!((cfg.local_as, cfg.peers.len(), cfg.bfd), (64513, 1, true));
    assert!(gw.slot > 0);
    // Drained: the BGP stays.
    let gw: Gateway = op
        .patch("/v1/gateways/gw-a", &json!({"drained": true}))
        .await
        .unwrap();
    assert!(gw.drained);
    assert_eq!(gw.bgp, Some(cfg));
    // gw-b is now the last undrained one (the fixture's gateway aside).
    let gws: Vec<Gateway> = op.list(None).await.unwrap();
    for g in gws.iter().filter(|g| g.name != "gw-b" && g.name != "gw-a") {
        let _: Gateway = op
            .patch(
                &paths::at(paths::GATEWAY, &[&g.id]),
                &json!({"drained": true}),
            )
            .await
            .unwrap();
    }
    let (status, code, msg) = api_err(
        op.patch::<_, Gateway>("/v1/gateways/gw-b", &json!({"drained": true}))
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{msg}");
    assert!(msg.contains("only undrained gateway"), "{msg}");
    let bad =
        json!({"bgp": {"local_as": 23456, "peers": [{"ip": "192.168.201.1", "peer_as": 64512}]}});
    let (status, _, msg) = api_err(op.patch::<_, Gateway>("/v1/gateways/gw-b", &bad).await);
    assert_eq!(status, 400);
    assert!(msg.contains("AS_TRANS"), "{msg}");
    // null removes it.
    let gw: Gateway = op
        .patch("/v1/gateways/gw-a", &json!({"bgp": null}))
        .await
        .unwrap();
    assert_eq!(gw.bgp, None);
    // Tenants may not.
    assert!(
        t.patch::<_, Gateway>("/v1/gateways/gw-a", &bgp)
            .await
            .is_err()
    );
}
on_both!(gateways_take_bgp_and_drain);

/// The OpenStack and EC2 facades take only what vpcip issued, and answer
/// a refusal in their own service's shape: no token, a token vpcip never
/// issued, an agent's token (it serves the agent routes only), a
/// malformed signature.
async fn the_facades_check_their_callers(s: Server) {
    let http = reqwest::Client::new();
    let op = s.operator();
    let agent: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "gw9".into(),
                description: String::new(),
                agent: true,
                agent_role: Some(vpcip_model::desired::AgentRole::Gateway),
                ec2: false,
            },
        )
        .await
        .unwrap();
    let agent_secret = agent.secret.unwrap();
    for path in [
        "/v2.0/floatingips",
        "/v2.0/networks",
        "/v2.0/ports",
        "/compute/v2.1/servers",
    ] {
        for token in [
            None,
            Some("vpcip_never-issued"),
            Some(agent_secret.as_str()),
        ] {
            let mut req = http.get(format!("{}{path}", s.url()));
            if let Some(t) = token {
                req = req.header("x-auth-token", t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} with {token:?}");
            let body: serde_json::Value = r.json().await.unwrap();
            if path.starts_with("/v2.0") {
                assert!(body["NeutronError"]["message"].is_string(), "{body}");
            } else {
                assert_eq!(body["unauthorized"]["code"], 401, "{body}");
            }
        }
    }
    // Keystone: the agent's token is no user's password.
    let r = http
        .post(format!("{}/v3/auth/tokens", s.url()))
        .json(
            &serde_json::json!({"auth": {"identity": {"methods": ["password"],
            "password": {"user": {"name": "gw9", "password": agent_secret}}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], 401, "{body}");
    // EC2: unsigned, and signed with a scheme it does not take.
    for auth in [
        None,
        Some("AWS AKID:sig"),
        Some("AWS4-HMAC-SHA256 Credential=x"),
    ] {
        let mut req = http
            .post(format!("{}/", s.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("Action=DescribeAddresses&Version=2016-11-15");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let text = r.text().await.unwrap();
        assert!(text.contains("<Code>AuthFailure</Code>"), "{text}");
    }
}

on_both!(the_facades_check_their_callers);

/// A controller serving `store` on loopback: its URL, what stops it, and
/// its task.
async fn controller(
    store: vpcip_store::Store,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(vpcip_api::serve(
        listener,
        App::new(store, Some(OPERATOR)),
        async {
            let _ = rx.await;
        },
    ));
    (format!("http://{addr}"), tx, task)
}

/// A client given several controllers (comma-separated URLs) uses the one
/// that answers and moves to the next when one cannot be reached, as the
/// agents do when a controller dies; an API refusal is not a reason to
/// move.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_fails_over_between_controllers() {
    let db = vpcip_store::testing::sqlite().await;
    let (a, stop_a, task_a) = controller(db.store.clone()).await;
    let (b, _stop_b, _task_b) = controller(db.store.clone()).await;
    // A port nothing listens on, first: the client goes on to a.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let c = Client::new(&format!("{dead},{a},{b}"), Some(OPERATOR));
    let _: Zone = c
        .post(paths::ZONES, &CreateZone { name: "z1".into() })
        .await
        .unwrap();
    // A refusal is an answer: no other controller is asked.
    let (status, code, _) = api_err(
        c.post::<_, Zone>(paths::ZONES, &CreateZone { name: "z1".into() })
            .await,
    );
    assert_eq!((status, code.as_str()), (409, "name_taken"));
    // Controller a goes away: b answers, with what a wrote.
    stop_a.send(()).unwrap();
    task_a.await.unwrap().unwrap();
    let zones: Vec<Zone> = c.list(None).await.unwrap();
    assert_eq!(zones.len(), 1);
    let _: Zone = c
        .post(paths::ZONES, &CreateZone { name: "z2".into() })
        .await
        .unwrap();
    assert_eq!(c.list::<Zone>(None).await.unwrap().len(), 2);
    // None left: the error names the last one tried.
    let gone = Client::new(&dead, Some(OPERATOR));
    let e = gone.list::<Zone>(None).await.unwrap_err();
    assert!(e.to_string().contains("cannot reach"), "{e}");
}

/// Issue 15: the watch sends a snapshot, then only the entries that
/// changed, only to the agents a change concerns, resumable from a
/// revision; what it adds up to is the desired state `/desired` computes.
async fn the_watch_sends_changes_to_the_agents_concerned_only(s: Server) {
    use vpcip_model::desired::{Agent, AgentRole, Desired, Entries, RegisterAgent, WatchBatch};
    let t = seeds_world(&s, "acme").await;
    let op = s.operator();
    let mut agents = Vec::new();
    for (name, role, ip) in [
        ("allinone", AgentRole::Gateway, "192.168.201.20"),
        ("h1", AgentRole::Host, "192.168.201.11"),
        ("h2", AgentRole::Host, "192.168.201.12"),
    ] {
        let a: Agent = op
            .post(
                paths::AGENTS,
                &RegisterAgent {
                    name: name.into(),
                    role,
                    underlay_ip: ip.parse().unwrap(),
                },
            )
            .await
            .unwrap();
        agents.push(a);
    }
    let vm: Server_ = t
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "vm-1".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let watch = |id: &str, since: Option<i64>, wait: u64| {
        let base = paths::at(paths::AGENT_WATCH, &[id]);
        match since {
            Some(r) => format!("{base}?revision={r}&wait={wait}"),
            None => format!("{base}?wait={wait}"),
        }
    };
    // Snapshots first.
    let mut have: Vec<(Entries, i64)> = Vec::new();
    for a in &agents {
        let b: WatchBatch = op.get(&watch(&a.id, None, 0)).await.unwrap();
        assert!(b.reset, "the first answer is a snapshot");
        assert_eq!(b.role, a.role);
        let mut e = Entries::default();
        e.apply(&b);
        let fresh: Desired = op
            .get(&paths::at(paths::AGENT_DESIRED, &[&a.id]))
            .await
            .unwrap();
        assert_eq!(e, Entries::of(&fresh), "{}'s snapshot", a.name);
        have.push((e, b.revision));
    }
    let host = vm.host.clone().unwrap();
    assert!(
        have[1..]
            .iter()
            .zip(&agents[1..])
            .any(|((e, _), a)| a.name == host && e.map.keys().any(|k| k.starts_with("port/"))),
        "vm-1's host has its port"
    );

    // A write that concerns no agent (an unbound EIP) wakes none: each
    // long poll ends at its deadline with nothing.
    let eip = t
        .create_eip(&CreateEip {
            bandwidth_mbps: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    for (a, (_, r)) in agents.iter().zip(&have) {
        let b: WatchBatch = op.get(&watch(&a.id, Some(*r), 1)).await.unwrap();
        assert!(!b.reset && b.changes.is_empty(), "{}: {b:?}", a.name);
    }

    // Binding it: the gateway gets its NAT entry, and only that; the hosts
    // get nothing.
    let gw = &agents[0];
    let poll = {
        let op = op.clone();
        let path = watch(&gw.id, Some(have[0].1), 30);
        tokio::spawn(async move { op.get::<WatchBatch>(&path).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the gateway's watch waits for a change"
    );
    let bound = t
        .bind_eip(
            &eip.id,
            &BindEip {
                target: EipTarget::Server("vm-1".into()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            },
        )
        .await
        .unwrap();
    let b = poll.await.unwrap().unwrap();
    assert!(!b.reset);
    let keys: Vec<&str> = b.changes.iter().map(|c| c.key.as_str()).collect();
    let nat_key = format!("nat/{}/{}", bound.vpc_id().unwrap(), bound.ip);
    assert_eq!(keys, [nat_key.as_str()], "{b:?}");
    let bytes = serde_json::to_vec(&b).unwrap().len();
    assert!(bytes < 1024, "a bind sends {bytes} bytes to the gateway");
    for (a, (_, r)) in agents.iter().zip(&have).skip(1) {
        let b: WatchBatch = op.get(&watch(&a.id, Some(*r), 1)).await.unwrap();
        assert!(b.changes.is_empty(), "{}: {b:?}", a.name);
    }
    // Resumed from the old revision, the same change; with the batch
    // applied, the gateway has what /desired computes.
    let again: WatchBatch = op.get(&watch(&gw.id, Some(have[0].1), 0)).await.unwrap();
    assert_eq!(again.changes, b.changes);
    have[0].0.apply(&b);
    let fresh: Desired = op
        .get(&paths::at(paths::AGENT_DESIRED, &[&gw.id]))
        .await
        .unwrap();
    assert_eq!(have[0].0, Entries::of(&fresh));
    // A revision older than the history: a snapshot.
    let old: WatchBatch = op.get(&watch(&gw.id, Some(0), 0)).await.unwrap();
    assert!(old.reset);

    // Bad input and the wrong caller.
    let (status, code, _) = api_err(
        op.get::<WatchBatch>(&format!(
            "{}?revision=soon",
            paths::at(paths::AGENT_WATCH, &[&gw.id])
        ))
        .await,
    );
    assert_eq!((status, code.as_str()), (400, "invalid_query"));
    let (status, _, _) = api_err(t.get::<WatchBatch>(&watch(&gw.id, None, 0)).await);
    assert_eq!(status, 403);
    let (status, _, _) = api_err(
        op.get::<WatchBatch>(&watch("agent-nonexistent", None, 0))
            .await,
    );
    assert_eq!(status, 404);
}

on_both!(the_watch_sends_changes_to_the_agents_concerned_only);

/// Issue 15: two controllers on one PostgreSQL. An agent watching one is
/// woken by a bind committed on the other, and resumes its revision on the
/// other without a snapshot.
#[cfg(feature = "pg-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_resumes_its_watch_on_another_controller() {
    use vpcip_model::desired::{Agent, AgentRole, RegisterAgent, WatchBatch};
    let db = vpcip_store::testing::postgres().await;
    let other = vpcip_store::Store::open(&db.url).await.unwrap();
    let (a, _stop_a, _task_a) = controller(db.store.clone()).await;
    let (b, _stop_b, _task_b) = controller(other).await;
    let s = Server::start(db).await;
    let t = seeds_world(&s, "acme").await;
    let on_a = Client::new(&a, Some(OPERATOR));
    let on_b = Client::new(&b, Some(OPERATOR));
    let gw: Agent = on_a
        .post(
            paths::AGENTS,
            &RegisterAgent {
                name: "allinone".into(),
                role: AgentRole::Gateway,
                underlay_ip: "192.168.201.20".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    let _: Server_ = t
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "vm-1".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let base = paths::at(paths::AGENT_WATCH, &[&gw.id]);
    let first: WatchBatch = on_a.get(&format!("{base}?wait=0")).await.unwrap();
    assert!(first.reset);
    let poll = {
        let on_a = on_a.clone();
        let path = format!("{base}?revision={}&wait=30", first.revision);
        tokio::spawn(async move { on_a.get::<WatchBatch>(&path).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!poll.is_finished());
    // The bind lands through controller b.
    let tb = Client::new(&b, t.token());
    let eip = tb
        .create_eip(&CreateEip {
            bandwidth_mbps: 10,
            bind: Some(BindEip {
                target: EipTarget::Server("vm-1".into()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let woken = tokio::time::timeout(std::time::Duration::from_secs(20), poll)
        .await
        .expect("a's watcher woken by b's commit")
        .unwrap()
        .unwrap();
    let nat_key = format!("nat/{}/{}", eip.vpc_id().unwrap(), eip.ip);
    assert!(woken.changes.iter().any(|c| c.key == nat_key), "{woken:?}");
    // The agent fails over to b with the revision it had from a.
    let resumed: WatchBatch = on_b
        .get(&format!("{base}?revision={}&wait=0", first.revision))
        .await
        .unwrap();
    assert!(!resumed.reset, "b resumes a's revision");
    assert_eq!(resumed.changes, woken.changes);
    let later: WatchBatch = on_b
        .get(&format!("{base}?revision={}&wait=0", woken.revision))
        .await
        .unwrap();
    assert!(!later.reset && later.changes.is_empty(), "{later:?}");
}
