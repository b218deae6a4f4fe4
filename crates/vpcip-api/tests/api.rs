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

/// Sets up the seeds' world through the API and returns a tenant client.
async fn seeds_world(s: &Server, tenant: &str) -> Client {
    let op = s.operator();
    let _: Zone = op
        .post("/v1/zones", &CreateZone { name: "z1".into() })
        .await
        .unwrap();
    let _: HostNetwork = op
        .post(
            "/v1/host-networks",
            &CreateHostNetwork {
                name: "underlay".into(),
                cidr: "192.168.201.0/24".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    let _: Gateway = op
        .post(
            "/v1/gateways",
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
            "/v1/tokens",
            &CreateToken {
                tenant: tenant.into(),
                description: "test".into(),
                agent: false,
            },
        )
        .await
        .unwrap();
    let t = Client::new(&s.url(), tok.secret.as_deref());
    let _: Vpc = t
        .post(
            "/v1/vpcs",
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
            "/v1/servers",
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
    assert_eq!(eip.private_ip.unwrap().to_string(), "10.0.0.2");
    // The rule errors come back with their code, message and a 4xx.
    let (status, code, message) = api_err(
        t.action::<_, Eip>(
            "eips",
            &eip.id,
            "bind",
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
    let (status, code, _) = api_err(t.show::<Eip>("eips", "eip-nonexistent").await);
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let (status, code, _) = api_err(t.remove("eips", &eip.id).await);
    assert_eq!((status, code.as_str()), (409, "resource_in_use"));
    // Unbind, change bandwidth, release.
    let _: Eip = t
        .action("eips", &eip.id, "unbind", &serde_json::json!({}))
        .await
        .unwrap();
    let e: Eip = t
        .patch(
            &format!("/v1/eips/{}", eip.id),
            &UpdateEip {
                bandwidth_mbps: Some(20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(e.bandwidth_mbps, 20);
    t.remove("eips", &eip.id).await.unwrap();
    // The one-call visible recipe.
    let v: VisibleEip = t
        .post(
            "/v1/eips/visible",
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
    let post = |path: &str, body: &'static str| {
        http.post(format!("{}{path}", s.url()))
            .bearer_auth(OPERATOR)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (path, body) in [
        ("/v1/eips", "{"),
        ("/v1/eips", "{\"bandwidth_mbps\": -1}"),
        ("/v1/eips", "{\"bandwidth_mbps\": 5, \"surprise\": true}"),
        (
            "/v1/subnets",
            "{\"name\": \"x\", \"cidr\": \"10.0.0.0/33\"}",
        ),
        ("/v1/vpcs", "[]"),
        ("/v1/zones", "{\"name\": \"\"}"),
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
        t.post::<_, Zone>("/v1/zones", &CreateZone { name: "z9".into() })
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
            "/v1/tokens",
            &CreateToken {
                tenant: "globex".into(),
                description: String::new(),
                agent: false,
            },
        )
        .await
        .unwrap();
    let b = Client::new(&s.url(), tok.secret.as_deref());
    let vm: Server_ = a
        .post(
            "/v1/servers",
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
    assert_eq!(api_err(anon.show::<Eip>("eips", &eip.id).await).0, 401);
    assert_eq!(
        api_err(
            a.with_token("vpcip_forged")
                .show::<Eip>("eips", &eip.id)
                .await
        )
        .0,
        401
    );
    // Another tenant: 404 for what exists, and nothing in its lists.
    assert_eq!(api_err(b.show::<Eip>("eips", &eip.id).await).0, 404);
    assert_eq!(api_err(b.show::<Server_>("servers", &vm.id).await).0, 404);
    assert_eq!(api_err(b.remove("servers", &vm.id).await).0, 404);
    assert_eq!(
        api_err(
            b.action::<_, Eip>("eips", &eip.id, "unbind", &serde_json::json!({}))
                .await
        )
        .0,
        404
    );
    assert!(b.list_all::<Eip>("eips", None).await.unwrap().is_empty());
    assert!(
        b.list_all::<Server_>("servers", None)
            .await
            .unwrap()
            .is_empty()
    );
    // The operator sees both tenants' resources.
    assert_eq!(
        op.show::<Eip>("eips", &eip.id).await.unwrap().tenant,
        "acme"
    );
    // Healthz and the OpenAPI document need no token.
    let _: serde_json::Value = anon.get("/healthz").await.unwrap();
    let doc: serde_json::Value = anon.get("/openapi.json").await.unwrap();
    assert!(doc["paths"]["/v1/eips"].is_object());
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
        .get(&format!("/v1/eips?limit=5&page_token={next}"))
        .await
        .unwrap();
    assert!(page2.items.iter().all(|e| e.id > next));
    assert_eq!(t.list_all::<Eip>("eips", None).await.unwrap().len(), 12);
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

on_both!(
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
            "/v1/tokens",
            &CreateToken {
                tenant: "globex".into(),
                description: String::new(),
                agent: false,
            },
        )
        .await
        .unwrap();
    let globex = tok.secret.clone().unwrap();
    // acme's resources, one of each kind.
    let acme_token: Token = op
        .post(
            "/v1/tokens",
            &CreateToken {
                tenant: "acme".into(),
                description: "second".into(),
                agent: false,
            },
        )
        .await
        .unwrap();
    let vpc: Vpc = acme.show("vpcs", "vpc1").await.unwrap();
    let subnet: Subnet = acme.show("subnets", "sw1").await.unwrap();
    let vm: Server_ = acme
        .post(
            "/v1/servers",
            &CreateServer {
                name: "vm-1".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let nic: Nic = acme.show("nics", &vm.nic_ids[0]).await.unwrap();
    let vip: Vip = acme
        .post(
            "/v1/vips",
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
    let sgs: Vec<SecurityGroup> = acme.list_all("security-groups", None).await.unwrap();
    let sg = sgs.iter().find(|g| g.tenant == "acme").unwrap().clone();
    let zone: Zone = op.show("zones", "z1").await.unwrap();
    let hn: HostNetwork = op.show("host-networks", "underlay").await.unwrap();
    let gw: Gateway = op.show("gateways", "allinone").await.unwrap();
    let agent: vpcip_model::desired::Agent = op
        .post(
            "/v1/agents",
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
            ("POST", "/v1/agents") => {
                json!({"name": "gw-x", "role": "gateway", "underlay_ip": "192.168.201.21"})
            }
            ("POST", "/v1/agents/{id}/counters") => json!({"counters": []}),
            ("POST", "/v1/agents/{id}/report") => json!({"applied_revision": 1, "error": null}),
            ("POST", "/v1/eips") => {
                json!({"bandwidth_mbps": 1, "bind": {"target": {"kind": "server", "id": vm.id}}})
            }
            ("POST", "/v1/eips/visible") => json!({"bandwidth_mbps": 1, "server": vm.id}),
            ("PATCH", "/v1/eips/{id}") => json!({"bandwidth_mbps": 2}),
            ("POST", "/v1/eips/{id}/bind") => json!({"target": {"kind": "nic", "id": nic.id}}),
            ("POST", "/v1/gateways") => json!({"name": "gw-2", "underlay_ip": "192.168.201.22"}),
            ("POST", "/v1/host-networks") => json!({"name": "hn-2", "cidr": "192.168.210.0/24"}),
            ("POST", "/v1/nics") => json!({"name": "eni-x", "subnet": subnet.id}),
            ("PATCH", "/v1/nics/{id}") => json!({"source_dest_check": false}),
            ("POST", "/v1/nics/{id}/attach") => json!({"server": vm.id}),
            ("POST", "/v1/security-groups") => json!({"name": "sg-x", "vpc": vpc.id}),
            ("POST", "/v1/servers") => json!({"name": "vm-x", "subnet": subnet.id}),
            ("POST", "/v1/subnets") => {
                json!({"name": "sw-x", "vpc": vpc.id, "zone": zone.id, "cidr": "10.0.9.0/24"})
            }
            ("POST", "/v1/tokens") => json!({"tenant": "acme"}),
            ("POST", "/v1/vips") => json!({"name": "vip-x", "subnet": subnet.id}),
            ("POST", "/v1/vips/{id}/bind" | "/v1/vips/{id}/unbind") => json!({"nic": nic.id}),
            ("POST", "/v1/vpcs") => json!({"name": "vpc-x", "cidr": "172.16.0.0/16"}),
            ("POST", "/v1/vpcs/{id}/add-cidr" | "/v1/vpcs/{id}/remove-cidr") => {
                json!({"cidr": "172.20.0.0/16"})
            }
            ("POST", "/v1/zones") => json!({"name": "z-x"}),
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
    let mut operator_calls = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op_doc) in methods.as_object().unwrap() {
            let method = method.to_uppercase();
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
            let url = path.replace("{id}", id);
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
                method == "GET" && matches!(path.as_str(), "/v1/zones" | "/v1/zones/{id}");
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
                    if path == "/v1/vpcs" {
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
    assert!(covered >= 60, "only {covered} routes covered");
}

on_both!(every_route_checks_its_caller);

/// An agent's token registers, watches and reports, and is refused
/// everywhere else; a tenant's token cannot use the agent routes.
async fn agent_tokens_serve_the_agent_routes_only(s: Server) {
    let tenant = seeds_world(&s, "acme").await;
    let op = s.operator();
    let tok: Token = op
        .post(
            "/v1/tokens",
            &CreateToken {
                tenant: "gw-1".into(),
                description: "the gateway's agent".into(),
                agent: true,
            },
        )
        .await
        .unwrap();
    assert!(tok.agent);
    let agent = Client::new(&s.url(), tok.secret.as_deref());
    let me: vpcip_model::desired::Agent = agent
        .post(
            "/v1/agents",
            &vpcip_model::desired::RegisterAgent {
                name: "gw-1".into(),
                role: vpcip_model::desired::AgentRole::Gateway,
                underlay_ip: "192.168.201.20".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    let desired: vpcip_model::desired::Desired = agent
        .get(&format!("/v1/agents/{}/desired", me.id))
        .await
        .unwrap();
    let _: () = agent
        .post(
            &format!("/v1/agents/{}/report", me.id),
            &vpcip_model::desired::AgentReport {
                applied_revision: desired.revision,
                error: None,
            },
        )
        .await
        .unwrap();
    // Nothing else.
    let (status, code, message) = api_err(agent.list_all::<Eip>("eips", None).await);
    assert_eq!((status, code.as_str()), (403, "forbidden"), "{message}");
    assert!(message.contains("agent routes"), "{message}");
    assert_eq!(
        api_err(
            agent
                .post::<_, Zone>("/v1/zones", &CreateZone { name: "z9".into() })
                .await
        )
        .0,
        403
    );
    // A tenant's token cannot act as an agent.
    assert_eq!(
        api_err(
            tenant
                .get::<vpcip_model::desired::Desired>(&format!("/v1/agents/{}/desired", me.id))
                .await
        )
        .0,
        403
    );
    let listed: Vec<Token> = op.get("/v1/tokens").await.unwrap();
    assert!(listed.iter().any(|t| t.id == tok.id && t.agent));
}

on_both!(agent_tokens_serve_the_agent_routes_only);

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
        op.post::<_, Zone>("/v1/zones", &CreateZone { name: long.clone() })
            .await,
    );
    assert_eq!((status, code.as_str()), (400, "invalid_argument"));
    assert!(message.contains("must be 1 to 64 characters"), "{message}");
    let (_, _, message) = api_err(
        op.post::<_, Zone>("/v1/zones", &CreateZone { name: "a b".into() })
            .await,
    );
    assert!(message.contains("only letters, digits"), "{message}");
    // Descriptions: 256 characters.
    let (status, _, message) = api_err(
        op.post::<_, Token>(
            "/v1/tokens",
            &CreateToken {
                tenant: "acme".into(),
                description: "d".repeat(300),
                agent: false,
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
                "/v1/vpcs",
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
            "/v1/vpcs",
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
