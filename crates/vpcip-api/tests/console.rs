//! The web console over HTTP, as a browser without a script engine drives
//! it: sign-in and its cookies, CSRF on every form, the EIP procedures
//! checked through the API, refusals shown next to their form, tenants
//! kept apart, the topology picture and the operator's status page. (The
//! browser tests in `crates/vpcip/tests/console_browser.rs` drive the same
//! pages in Chromium.)
#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::collections::HashMap;

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use vpcip_api::App;
use vpcip_client::Client;
use vpcip_model::*;

const OPERATOR: &str = "op-secret";

/// The API and the console of one store, each on its own listener.
struct Controller {
    api: String,
    ui: String,
    _db: vpcip_store::testing::TestDb,
}

async fn controller() -> Controller {
    let db = vpcip_store::testing::sqlite().await;
    // EIPs' traffic sampled every second (a minute by default), so a plot
    // has points within the test.
    let app = App::new(db.store.clone().with_traffic_sample_secs(1), Some(OPERATOR));
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ui = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (api_addr, ui_addr) = (api.local_addr().unwrap(), ui.local_addr().unwrap());
    tokio::spawn(vpcip_api::serve(api, app.clone(), std::future::pending()));
    tokio::spawn(vpcip_api::console::serve(ui, app, std::future::pending()));
    Controller {
        api: format!("http://{api_addr}"),
        ui: format!("http://{ui_addr}"),
        _db: db,
    }
}

/// A browser: its cookies, no redirects followed (the tests look at them).
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
    /// The Set-Cookie headers last received.
    set: Vec<String>,
}

struct Page {
    status: StatusCode,
    location: String,
    body: String,
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookies: HashMap::new(),
            set: vec![],
        }
    }

    async fn send(&mut self, r: reqwest::RequestBuilder) -> Page {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let r = r.header("cookie", cookie.join("; ")).send().await.unwrap();
        self.set = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for c in &self.set {
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        Page {
            status: r.status(),
            location: r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let r = self.http.get(format!("{}{path}", self.base));
        self.send(r).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(r).await
    }

    /// Signs in with `token`; the CSRF token of the pages after.
    async fn sign_in(&mut self, token: &str) -> String {
        let login = self.get("/ui/login").await;
        let csrf = csrf_of(&login.body);
        let p = self
            .post("/ui/login", &[("token", token), ("csrf", &csrf)])
            .await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
        csrf_of(&self.get("/ui/eips").await.body)
    }
}

/// The CSRF token a page's forms carry.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..at + 64].to_string()
}

/// The seeds' world: a zone, an EIP segment, and for tenant `t1` a VPC, a
/// subnet and server `web-1`; returns the operator's client and t1's token.
async fn world(c: &Controller) -> (Client, String) {
    let op = Client::new(&c.api, Some(OPERATOR));
    let _: Zone = op
        .post(paths::ZONES, &CreateZone { name: "z1".into() })
        .await
        .unwrap();
    op.create_subnet(&CreateSubnet {
        name: "eip-seg".into(),
        kind: SubnetKind::Eip,
        cidr: Some("203.0.113.0/24".parse().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let t1 = tenant_token(&op, "t1").await;
    let t = Client::new(&c.api, Some(&t1));
    let _: Vpc = t
        .post(
            paths::VPCS,
            &CreateVpc {
                name: "vpc1".into(),
                cidr: "10.0.0.0/16".parse().unwrap(),
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
    let _: Server = t
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "web-1".into(),
                subnet: "sw1".into(),
                zone: None,
                ip: None,
                security_groups: vec![],
                host: None,
                client_token: None,
            },
        )
        .await
        .unwrap();
    (op, t1)
}

async fn tenant_token(op: &Client, tenant: &str) -> String {
    let tok: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: tenant.into(),
                description: "console test".into(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await
        .unwrap();
    tok.secret.unwrap()
}

#[tokio::test]
async fn signing_in_sets_a_strict_session_cookie_and_forms_need_their_csrf_token() {
    let c = controller().await;
    let (op, t1) = world(&c).await;
    let mut b = Browser::new(&c.ui);
    // Not signed in: every page sends to the sign-in page.
    for path in ["/ui/eips", "/ui/vpcs", "/ui/status", "/ui/eips/eip-x"] {
        let p = b.get(path).await;
        assert_eq!(
            (p.status, p.location.as_str()),
            (StatusCode::SEE_OTHER, "/ui/login"),
            "{path}"
        );
    }
    // The sign-in form's own CSRF token is bound to a cookie.
    let login = b.get("/ui/login").await;
    let csrf = csrf_of(&login.body);
    assert!(
        b.set[0].contains("HttpOnly") && b.set[0].contains("SameSite=Strict"),
        "{:?}",
        b.set
    );
    let p = b.post("/ui/login", &[("token", t1.as_str())]).await;
    assert_eq!(
        p.status,
        StatusCode::FORBIDDEN,
        "sign-in without its CSRF token"
    );
    let mut other = Browser::new(&c.ui);
    let p = other
        .post("/ui/login", &[("token", t1.as_str()), ("csrf", &csrf)])
        .await;
    assert_eq!(
        p.status,
        StatusCode::FORBIDDEN,
        "another browser's sign-in token"
    );
    let p = b
        .post("/ui/login", &[("token", "not-a-token"), ("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.body.contains("unknown token"), "{}", p.body);
    // Signed in: an HttpOnly, SameSite=Strict session cookie for /ui.
    let csrf = b.sign_in(&t1).await;
    assert!(
        b.set.is_empty() || b.set.iter().all(|c| !c.starts_with("vpcip_session=;")),
        "{:?}",
        b.set
    );
    let session = b.cookies.get("vpcip_session").cloned().unwrap();
    assert_eq!(session.len(), 64);
    // A form posted without the session's CSRF token changes nothing.
    for form in [
        vec![("bandwidth_mbps", "5")],
        vec![("bandwidth_mbps", "5"), ("csrf", "0".repeat(64).as_str())],
    ] {
        let p = b.post("/ui/eips", &form).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
        assert!(p.body.contains("CSRF"), "{}", p.body);
    }
    let t = Client::new(&c.api, Some(&t1));
    assert!(
        t.list::<Eip>(None).await.unwrap().is_empty(),
        "a form without its CSRF token made an EIP"
    );
    // An agent's token does not sign in.
    let agent: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "h9".into(),
                description: "agent".into(),
                agent: true,
                agent_role: Some(desired::AgentRole::Host),
                ec2: false,
            },
        )
        .await
        .unwrap();
    let mut a = Browser::new(&c.ui);
    let login = a.get("/ui/login").await;
    let p = a
        .post(
            "/ui/login",
            &[
                ("token", agent.secret.as_deref().unwrap()),
                ("csrf", &csrf_of(&login.body)),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
    // Signing out ends the session.
    let p = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(p.location, "/ui/login");
    b.cookies.insert("vpcip_session".into(), session.clone());
    assert_eq!(
        b.get("/ui/eips").await.location,
        "/ui/login",
        "a signed-out session still works"
    );
    // Deleting the token ends its sessions too.
    let mut d = Browser::new(&c.ui);
    d.sign_in(&t1).await;
    let tokens: Vec<serde_json::Value> = op.get(paths::TOKENS).await.unwrap();
    let id = tokens
        .iter()
        .find(|t| t["tenant"] == "t1")
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_string();
    op.delete(&paths::TOKEN.replace("{id}", &id)).await.unwrap();
    assert_eq!(
        d.get("/ui/eips").await.location,
        "/ui/login",
        "a deleted token's session still works"
    );
}

#[tokio::test]
async fn a_tenant_allocates_binds_changes_unbinds_and_releases_an_eip_in_the_console() {
    let c = controller().await;
    let (op, t1) = world(&c).await;
    let t = Client::new(&c.api, Some(&t1));
    let mut b = Browser::new(&c.ui);
    let csrf = b.sign_in(&t1).await;
    // Allocate and bind in one step.
    let p = b
        .post(
            "/ui/eips",
            &[
                ("csrf", &csrf),
                ("name", "web"),
                ("bandwidth_mbps", "10"),
                ("target_kind", "server"),
                ("target", "web-1"),
                ("mode", "nat"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let eips = t.list::<Eip>(None).await.unwrap();
    assert_eq!(eips.len(), 1);
    let eip = &eips[0];
    assert_eq!(p.location, format!("/ui/eips/{}", eip.id));
    assert!(
        matches!(
            &eip.binding,
            EipBinding::Nic {
                server_id: Some(_),
                mode: EipMode::Nat,
                ..
            }
        ),
        "{eip:?}"
    );
    // In the list, found by its address, not by a stranger's.
    let list = b.get("/ui/eips").await;
    assert!(
        list.body.contains(&eip.ip.to_string()) && list.body.contains("server "),
        "{}",
        list.body
    );
    let found = b.get(&format!("/ui/eips?q={}", eip.ip)).await;
    assert!(found.body.contains("1 EIP(s)"), "{}", found.body);
    let none = b.get("/ui/eips?q=198.51.100.77").await;
    assert!(none.body.contains("0 EIP(s)"), "{}", none.body);
    // Its page; the bandwidth changed.
    let path = format!("/ui/eips/{}", eip.id);
    let page = b.get(&path).await;
    assert!(page.body.contains("10 Mbit/s"), "{}", page.body);
    let p = b
        .post(
            &format!("{path}/update"),
            &[("csrf", &csrf), ("bandwidth_mbps", "20")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let shown: Eip = t.get(&format!("/v1/eips/{}", eip.id)).await.unwrap();
    assert_eq!(shown.bandwidth_mbps, 20);
    // Refusals: the API's message, next to the form, nothing changed.
    let p = b
        .post(
            &format!("{path}/update"),
            &[("csrf", &csrf), ("bandwidth_mbps", "0")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("id=\"update-error\"") && p.body.contains("bandwidth"),
        "{}",
        p.body
    );
    let p = b
        .post(
            &format!("{path}/bind"),
            &[
                ("csrf", &csrf),
                ("target_kind", "server"),
                ("target", "no-such-server"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("id=\"bind-error\"") && p.body.contains("no-such-server"),
        "{}",
        p.body
    );
    // Moving it to another server needs the explicit reassociation.
    let _: Server = t
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "web-2".into(),
                subnet: "sw1".into(),
                zone: None,
                ip: None,
                security_groups: vec![],
                host: None,
                client_token: None,
            },
        )
        .await
        .unwrap();
    let p = b
        .post(
            &format!("{path}/bind"),
            &[
                ("csrf", &csrf),
                ("target_kind", "server"),
                ("target", "web-2"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(
        p.body.contains("id=\"bind-error\"") && p.body.contains("reassociation"),
        "{}",
        p.body
    );
    let p = b
        .post(
            &format!("{path}/bind"),
            &[
                ("csrf", &csrf),
                ("target_kind", "server"),
                ("target", "web-2"),
                ("allow_reassociation", "true"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let moved: Eip = t.get(&format!("/v1/eips/{}", eip.id)).await.unwrap();
    let web2: Server = t.get("/v1/servers/web-2").await.unwrap();
    assert!(
        matches!(&moved.binding, EipBinding::Nic { server_id: Some(s), .. } if *s == web2.id),
        "{moved:?}"
    );
    // A second EIP, bound to web-1 again.
    let second = t.eip_for_server("web-1", 5).await.unwrap();
    let second_path = format!("/ui/eips/{}", second.id);
    // Another tenant cannot see or touch it.
    let t2 = tenant_token(&op, "t2").await;
    let mut other = Browser::new(&c.ui);
    let other_csrf = other.sign_in(&t2).await;
    let p = other.get(&second_path).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND, "{}", p.body);
    assert!(!p.body.contains(&second.ip.to_string()), "{}", p.body);
    let p = other
        .post(&format!("{second_path}/release"), &[("csrf", &other_csrf)])
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND, "{}", p.body);
    assert!(
        !other
            .get("/ui/eips")
            .await
            .body
            .contains(&second.ip.to_string())
    );
    // Unbind, then release.
    let p = b
        .post(&format!("{second_path}/unbind"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let unbound: Eip = t.get(&format!("/v1/eips/{}", second.id)).await.unwrap();
    assert!(!unbound.is_bound());
    // A bound EIP is not released: the API's refusal, next to the form.
    let p = b.post(&format!("{path}/release"), &[("csrf", &csrf)]).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.body.contains("id=\"release-error\""), "{}", p.body);
    let p = b.post(&format!("{path}/unbind"), &[("csrf", &csrf)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    for e in [&eip.id, &second.id] {
        let p = b
            .post(&format!("/ui/eips/{e}/release"), &[("csrf", &csrf)])
            .await;
        assert_eq!(
            (p.status, p.location.as_str()),
            (StatusCode::SEE_OTHER, "/ui/eips")
        );
    }
    assert!(t.list::<Eip>(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_topology_shows_nics_eips_and_vips_and_the_status_page_is_the_operators() {
    let c = controller().await;
    let (op, t1) = world(&c).await;
    let t = Client::new(&c.api, Some(&t1));
    let server: Server = t.get("/v1/servers/web-1").await.unwrap();
    let nic = &server.nic_ids[0];
    let vip: Vip = t
        .post(
            paths::VIPS,
            &CreateVip {
                name: "db-vip".into(),
                subnet: "sw1".into(),
                ip: None,
                client_token: None,
            },
        )
        .await
        .unwrap();
    let _: Vip = t
        .action(paths::VIP_BIND, &vip.id, &VipNic { nic: nic.clone() })
        .await
        .unwrap();
    let on_server = t.eip_for_server("web-1", 10).await.unwrap();
    let on_vip = t.eip_for_vip("db-vip", 10).await.unwrap();
    let vpc: Vpc = t.get("/v1/vpcs/vpc1").await.unwrap();
    let mut b = Browser::new(&c.ui);
    b.sign_in(&t1).await;
    let list = b.get("/ui/vpcs").await;
    assert!(
        list.body.contains(&format!("/ui/vpcs/{}", vpc.id)),
        "{}",
        list.body
    );
    let page = b.get(&format!("/ui/vpcs/{}", vpc.id)).await;
    assert_eq!(page.status, StatusCode::OK);
    let svg = b
        .get(&format!("/ui/vpcs/{}/topology.svg", vpc.id))
        .await
        .body;
    for needle in [
        format!("class=\"nic\" data-id=\"{nic}\""),
        format!("class=\"eip\" data-id=\"{}\"", on_server.id),
        format!("class=\"eip\" data-id=\"{}\"", on_vip.id),
        format!("class=\"vip\" data-id=\"{}\"", vip.id),
        "server web-1".to_string(),
        "subnet sw1 10.0.0.0/24".to_string(),
    ] {
        assert!(
            svg.contains(&needle),
            "{needle} is not in the picture:\n{svg}"
        );
        assert!(page.body.contains(&needle), "{needle} is not on the page");
    }
    // No data plane reported: nobody holds the VIP yet.
    assert!(svg.contains("data-holder=\"nobody yet\""), "{svg}");
    // Another tenant: not found.
    let t2 = tenant_token(&op, "t2").await;
    let mut other = Browser::new(&c.ui);
    other.sign_in(&t2).await;
    let p = other
        .get(&format!("/ui/vpcs/{}/topology.svg", vpc.id))
        .await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    // The status page: the operator's only.
    assert_eq!(b.get("/ui/status").await.status, StatusCode::FORBIDDEN);
    let mut o = Browser::new(&c.ui);
    o.sign_in(OPERATOR).await;
    let p = o.get("/ui/status").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("id=\"agents\""), "{}", p.body);
}

#[tokio::test]
async fn a_tenant_makes_a_vip_binds_its_nics_and_reads_their_keepalived_conf_in_the_console() {
    let c = controller().await;
    let (_op, t1) = world(&c).await;
    let t = Client::new(&c.api, Some(&t1));
    let server: Server = t.get("/v1/servers/web-1").await.unwrap();
    let nic: Nic = t
        .get(&format!("/v1/nics/{}", server.nic_ids[0]))
        .await
        .unwrap();
    let mut b = Browser::new(&c.ui);
    let csrf = b.sign_in(&t1).await;
    // Create, with the address chosen.
    let p = b
        .post(
            "/ui/vips",
            &[
                ("csrf", &csrf),
                ("name", "db-vip"),
                ("subnet", "sw1"),
                ("ip", "10.0.0.100"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let vip: Vip = t.get("/v1/vips/db-vip").await.unwrap();
    assert_eq!(p.location, format!("/ui/vips/{}", vip.id));
    assert_eq!(vip.ip.to_string(), "10.0.0.100");
    // A refused create: the API's message next to the form.
    let p = b
        .post(
            "/ui/vips",
            &[
                ("csrf", &csrf),
                ("name", "bad"),
                ("subnet", "sw1"),
                ("ip", "10.9.9.9"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("id=\"create-error\"") && p.body.contains("10.9.9.9"),
        "{}",
        p.body
    );
    // Bind the NIC; its keepalived.conf is on the page.
    let path = format!("/ui/vips/{}", vip.id);
    let p = b
        .post(
            &format!("{path}/bind"),
            &[("csrf", &csrf), ("nic", &nic.name)],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let bound: Vip = t.get("/v1/vips/db-vip").await.unwrap();
    assert_eq!(bound.nic_ids, vec![nic.id.clone()]);
    let page = b.get(&path).await.body;
    assert!(
        page.contains("10.0.0.100") && page.contains("virtual_router_id"),
        "{page}"
    );
    // The VIP added by hand, per guest OS (`vpcip vip guest-config`).
    for line in [
        "nmcli connection modify &#34;System eth0&#34; +ipv4.addresses 10.0.0.100",
        "netsh interface ipv4 add address name=&#34;Ethernet&#34; address=10.0.0.100",
        "ip addr add 10.0.0.100/32 dev eth0",
    ] {
        assert!(page.contains(line), "{line} in {page}");
    }
    assert!(
        page.contains("id=\"holder\">nobody the gateways have seen"),
        "{page}"
    );
    // The 11th VIP on one NIC: refused, the rule and the values shown inline.
    for i in 0..9 {
        let v: Vip = t
            .post(
                paths::VIPS,
                &CreateVip {
                    name: format!("v{i}"),
                    subnet: "sw1".into(),
                    ip: None,
                    client_token: None,
                },
            )
            .await
            .unwrap();
        let _: Vip = t
            .action(
                paths::VIP_BIND,
                &v.id,
                &VipNic {
                    nic: nic.id.clone(),
                },
            )
            .await
            .unwrap();
    }
    let p = b
        .post(
            "/ui/vips",
            &[("csrf", &csrf), ("name", "eleventh"), ("subnet", "sw1")],
        )
        .await;
    let eleventh = p.location.trim_start_matches("/ui/vips/").to_string();
    let p = b
        .post(
            &format!("/ui/vips/{eleventh}/bind"),
            &[("csrf", &csrf), ("nic", &nic.id)],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(
        p.body.contains("id=\"bind-error\"") && p.body.contains("10"),
        "{}",
        p.body
    );
    // Unbind and delete.
    let p = b
        .post(
            &format!("{path}/unbind"),
            &[("csrf", &csrf), ("nic", &nic.id)],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    // Bound again as the server's 10th VIP: done, with the manuals'
    // recommendation (at most 8 a server) shown as the API gives it.
    let p = b
        .post(
            &format!("{path}/bind"),
            &[("csrf", &csrf), ("nic", &nic.id)],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(
        p.body.contains("id=\"bind-warning\"") && p.body.contains("server_vip_count"),
        "{}",
        p.body
    );
    let p = b
        .post(
            &format!("{path}/unbind"),
            &[("csrf", &csrf), ("nic", &nic.id)],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = b.post(&format!("{path}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (StatusCode::SEE_OTHER, "/ui/vips")
    );
    assert!(t.get::<Vip>("/v1/vips/db-vip").await.is_err());
}

#[tokio::test]
async fn the_operator_sees_segments_routes_quotas_and_tokens_and_makes_and_revokes_tokens() {
    let c = controller().await;
    let (op, t1) = world(&c).await;
    // A tenant does not see the platform page.
    let mut t = Browser::new(&c.ui);
    t.sign_in(&t1).await;
    assert_eq!(t.get("/ui/platform").await.status, StatusCode::FORBIDDEN);
    let mut o = Browser::new(&c.ui);
    let csrf = o.sign_in(OPERATOR).await;
    let page = o.get("/ui/platform").await;
    assert_eq!(page.status, StatusCode::OK);
    for needle in ["eip-seg", "203.0.113.0/24", "id=\"quotas\"", "t1"] {
        assert!(page.body.contains(needle), "{needle}:\n{}", page.body);
    }
    // A token made here works against the API; its secret is shown once.
    let p = o
        .post(
            "/ui/platform/tokens",
            &[
                ("csrf", &csrf),
                ("tenant", "t7"),
                ("description", "from the console"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let at = p.body.find("id=\"new-secret\"").expect("the secret shown");
    let secret = p.body[at..]
        .split("<code>")
        .nth(1)
        .and_then(|s| s.split("</code>").next())
        .unwrap()
        .to_string();
    let t7 = Client::new(&c.api, Some(&secret));
    assert!(t7.list::<Eip>(None).await.unwrap().is_empty());
    assert!(
        !o.get("/ui/platform").await.body.contains(&secret),
        "the secret is shown again"
    );
    // A refused one: the API's message next to the form.
    let p = o
        .post(
            "/ui/platform/tokens",
            &[("csrf", &csrf), ("tenant", "system")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("id=\"token-error\"") && p.body.contains("system"),
        "{}",
        p.body
    );
    // Revoked: the API refuses it.
    let tokens: Vec<serde_json::Value> = op.get(paths::TOKENS).await.unwrap();
    let id = tokens
        .iter()
        .find(|t| t["tenant"] == "t7")
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_string();
    let p = o
        .post(
            &format!("/ui/platform/tokens/{id}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(
        t7.list::<Eip>(None).await.is_err(),
        "a revoked token still works"
    );
}

#[tokio::test]
async fn the_eip_list_pages_and_counts_without_reading_every_eip() {
    let c = controller().await;
    let (_op, t1) = world(&c).await;
    let t = Client::new(&c.api, Some(&t1));
    let mut ips = vec![];
    for _ in 0..60 {
        ips.push(
            t.create_eip(&CreateEip {
                bandwidth_mbps: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .ip,
        );
    }
    let mut b = Browser::new(&c.ui);
    b.sign_in(&t1).await;
    let first = b.get("/ui/eips").await.body;
    assert!(first.contains("60 EIP(s), page 1 of 2"), "{first}");
    let second = b.get("/ui/eips?page=1").await.body;
    assert!(second.contains("page 2 of 2"), "{second}");
    let rows = |html: &str| html.matches("<tr data-id=").count();
    assert_eq!((rows(&first), rows(&second)), (50, 10));
    // Every EIP on exactly one of the two pages.
    for ip in &ips {
        let on = [&first, &second]
            .iter()
            .filter(|p| p.contains(&format!(">{ip}<")))
            .count();
        assert_eq!(on, 1, "{ip}");
    }
    // A page past the end shows the last.
    assert!(b.get("/ui/eips?page=9").await.body.contains("page 2 of 2"));
    // Every list pages and searches alike: 60 servers (web-1 and 59 more).
    for i in 0..59 {
        let _: Server = t
            .post(
                paths::SERVERS,
                &CreateServer {
                    name: format!("app-{i:02}"),
                    subnet: "sw1".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let first = b.get("/ui/servers").await.body;
    assert!(first.contains("60 server(s), page 1 of 2"), "{first}");
    assert_eq!(rows(&first), 50);
    assert!(first.contains("id=\"next\""), "{first}");
    let second = b.get("/ui/servers?page=1").await.body;
    assert_eq!(rows(&second), 10);
    // The "next" link carries the store's token: the same second page.
    let at = first.find("id=\"next\"").unwrap();
    let href = first[..at].rsplit("href=\"").next().unwrap();
    let href = href.split('"').next().unwrap().replace("&amp;", "&");
    assert!(href.contains("&after="), "{href}");
    let followed = b.get(&href).await.body;
    assert_eq!(rows(&followed), 10, "{followed}");
    assert!(followed.contains("page 2 of 2"));
    for tr in second.split("<tr data-id=").skip(1) {
        let id = tr.split('"').nth(1).unwrap();
        assert!(followed.contains(id), "{id} not on the followed page");
    }
    let found = b.get("/ui/servers?q=APP-4").await.body;
    assert!(found.contains("10 server(s)."), "{found}");
    assert!(
        found.contains("app-45") && !found.contains("web-1"),
        "{found}"
    );
    let nics = b.get("/ui/nics?q=web-1").await.body;
    assert!(nics.contains("1 NIC(s)."), "{nics}");
    // The search's own characters are text, not patterns.
    assert!(
        b.get("/ui/servers?q=%25")
            .await
            .body
            .contains("0 server(s).")
    );
    assert!(b.get("/ui/eips?q=_").await.body.contains("0 EIP(s)."));
    // A NUL in the search is no text (PostgreSQL refuses it in a string).
    let nul = b.get("/ui/eips?q=%00").await;
    assert_eq!(nul.status, StatusCode::OK, "{}", nul.body);
}

#[tokio::test]
async fn a_tenant_builds_vpcs_subnets_groups_servers_and_enis_in_the_console() {
    let c = controller().await;
    let (op, t1) = world(&c).await;
    let t = Client::new(&c.api, Some(&t1));
    let mut b = Browser::new(&c.ui);
    let csrf = b.sign_in(&t1).await;
    // A VPC: refused with the field named, then made.
    let p = b
        .post(
            "/ui/vpcs",
            &[("csrf", &csrf), ("name", "vpc2"), ("cidr", "10.1.0.0/33")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("id=\"create-error\"") && p.body.contains("cidr: &#34;10.1.0.0/33&#34;"),
        "{}",
        p.body
    );
    let p = b
        .post(
            "/ui/vpcs",
            &[("csrf", &csrf), ("name", "vpc2"), ("cidr", "10.1.0.0/16")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let vpc: Vpc = t.get("/v1/vpcs/vpc2").await.unwrap();
    let vpc_path = format!("/ui/vpcs/{}", vpc.id);
    assert_eq!(p.location, vpc_path);
    assert_eq!(vpc.cidr.to_string(), "10.1.0.0/16");
    // A subnet outside the VPC: the API's rule and values next to the form.
    let p = b
        .post(
            &format!("{vpc_path}/subnets"),
            &[
                ("csrf", &csrf),
                ("name", "sw2"),
                ("cidr", "10.2.0.0/24"),
                ("zone", "z1"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("id=\"subnet-error\"") && p.body.contains("10.2.0.0/24"),
        "{}",
        p.body
    );
    // As the vendor manuals write it: a range and a prefix length.
    let p = b
        .post(
            &format!("{vpc_path}/subnets"),
            &[
                ("csrf", &csrf),
                ("name", "sw2"),
                ("cidr", "10.1.0.10-10.1.0.200"),
                ("prefix_len", "24"),
                ("zone", "z1"),
                ("dns_servers", "192.0.2.53, 192.0.2.54"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let sw2: Subnet = t.get("/v1/subnets/sw2").await.unwrap();
    assert_eq!(
        (
            sw2.cidr.to_string(),
            sw2.range_start.to_string(),
            sw2.range_end.to_string()
        ),
        (
            "10.1.0.0/24".into(),
            "10.1.0.10".into(),
            "10.1.0.200".into()
        )
    );
    assert_eq!(sw2.dns_servers.len(), 2);
    let page = b.get(&vpc_path).await.body;
    assert!(page.contains(&sw2.id) && page.contains("<svg"), "{page}");
    // A security group with a rule; a rule that can never be right refused
    // inline; one added, one removed.
    let p = b
        .post(
            &format!("{vpc_path}/groups"),
            &[
                ("csrf", &csrf),
                ("name", "web"),
                ("kind", "basic"),
                ("rules", "ingress:tcp:80:0.0.0.0/0"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let web: SecurityGroup = t.get("/v1/security-groups/web").await.unwrap();
    let group_path = format!("/ui/groups/{}", web.id);
    assert_eq!(p.location, group_path);
    assert_eq!(web.rules.len(), 1);
    let p = b
        .post(
            &format!("{group_path}/rules"),
            &[("csrf", &csrf), ("rules", "ingress:icmp:22:0.0.0.0/0")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        p.body.contains("id=\"add-error\"") && p.body.contains("icmp"),
        "{}",
        p.body
    );
    let p = b
        .post(
            &format!("{group_path}/rules"),
            &[
                ("csrf", &csrf),
                (
                    "rules",
                    "ingress:tcp:22:10.0.0.0/8\negress:udp:53:192.0.2.0/24",
                ),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let web: SecurityGroup = t.get("/v1/security-groups/web").await.unwrap();
    assert_eq!(web.rules.len(), 3);
    let p = b
        .post(
            &format!("{group_path}/rules/remove"),
            &[("csrf", &csrf), ("rule", &web.rules[2].id)],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let web: SecurityGroup = t.get("/v1/security-groups/web").await.unwrap();
    let written: Vec<String> = web.rules.iter().map(ToString::to_string).collect();
    assert_eq!(
        written,
        ["ingress:tcp:80:0.0.0.0/0", "ingress:tcp:22:10.0.0.0/8"]
    );
    assert!(
        b.get(&group_path)
            .await
            .body
            .contains("ingress:tcp:22:10.0.0.0/8")
    );
    // A server in the group, and an ENI with source/dest check off.
    let p = b
        .post(
            "/ui/servers",
            &[
                ("csrf", &csrf),
                ("name", "app-1"),
                ("subnet", "sw2"),
                ("security_groups", "web"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let app1: Server = t.get("/v1/servers/app-1").await.unwrap();
    let server_path = format!("/ui/servers/{}", app1.id);
    assert_eq!(p.location, server_path);
    let primary: Nic = t
        .get(&format!("/v1/nics/{}", app1.nic_ids[0]))
        .await
        .unwrap();
    assert_eq!(primary.security_group_ids, vec![web.id.clone()]);
    let p = b
        .post(
            "/ui/nics",
            &[
                ("csrf", &csrf),
                ("name", "eni-a"),
                ("subnet", "sw2"),
                ("ip", "10.1.0.50"),
                ("source_dest_check_off", "true"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let eni: Nic = t.get("/v1/nics/eni-a").await.unwrap();
    assert!(!eni.source_dest_check && eni.server_id.is_none());
    assert_eq!(eni.ip.to_string(), "10.1.0.50");
    // Attached from the server's page; a second attach is refused inline.
    let p = b
        .post(
            &format!("{server_path}/attach"),
            &[("csrf", &csrf), ("nic", "eni-a")],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let eni: Nic = t.get("/v1/nics/eni-a").await.unwrap();
    assert_eq!(eni.server_id.as_deref(), Some(app1.id.as_str()));
    let p = b
        .post(
            &format!("{server_path}/attach"),
            &[("csrf", &csrf), ("nic", "eni-a")],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.body.contains("id=\"attach-error\""), "{}", p.body);
    let page = b.get(&server_path).await.body;
    assert!(
        page.contains(&eni.id) && page.contains(&primary.id),
        "{page}"
    );
    // The ENI's groups and check changed from its page; a group of another
    // VPC refused inline, nothing changed.
    let nic_path = format!("/ui/nics/{}", eni.id);
    let p = b
        .post(
            &format!("{nic_path}/update"),
            &[
                ("csrf", &csrf),
                ("security_groups", "web"),
                ("source_dest_check", "true"),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let eni: Nic = t.get("/v1/nics/eni-a").await.unwrap();
    assert!(eni.source_dest_check);
    assert_eq!(eni.security_group_ids, vec![web.id.clone()]);
    let vpc1_default = t
        .list::<SecurityGroup>(None)
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.vpc_id != vpc.id)
        .unwrap();
    let p = b
        .post(
            &format!("{nic_path}/update"),
            &[("csrf", &csrf), ("security_groups", &vpc1_default.id)],
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(
        p.body.contains("id=\"update-error\"")
            && p.body.contains(&vpc1_default.name)
            && p.body.contains("security_group_wrong_vpc"),
        "{}",
        p.body
    );
    assert_eq!(t.get::<Nic>("/v1/nics/eni-a").await.unwrap(), eni);
    let page = b.get(&nic_path).await.body;
    assert!(
        page.contains("id=\"nic-drops\">0 packets in, 0 out"),
        "{page}"
    );
    // The group's page lists where it is used; deleting it is refused.
    let page = b.get(&group_path).await.body;
    assert!(
        page.contains(&eni.id) && page.contains(&primary.id),
        "{page}"
    );
    let p = b
        .post(&format!("{group_path}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.body.contains("id=\"delete-error\""), "{}", p.body);
    // Another tenant: not found on every page and form, nothing changed.
    let t2 = tenant_token(&op, "t2").await;
    let mut other = Browser::new(&c.ui);
    let other_csrf = other.sign_in(&t2).await;
    for path in [&vpc_path, &group_path, &server_path, &nic_path] {
        assert_eq!(
            other.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    for (path, form) in [
        (format!("{nic_path}/update"), vec![("security_groups", "")]),
        (format!("{nic_path}/detach"), vec![]),
        (format!("{server_path}/delete"), vec![]),
        (
            format!("{group_path}/rules"),
            vec![("rules", "ingress:all:0.0.0.0/0")],
        ),
        (format!("{vpc_path}/delete"), vec![]),
    ] {
        let mut form = form;
        form.push(("csrf", &other_csrf));
        let p = other.post(&path, &form).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}: {}", p.body);
    }
    assert_eq!(t.get::<Nic>("/v1/nics/eni-a").await.unwrap(), eni);
    assert_eq!(
        t.get::<SecurityGroup>("/v1/security-groups/web")
            .await
            .unwrap(),
        web
    );
    // And none of t1's resources in t2's lists.
    for list in ["/ui/vpcs", "/ui/servers", "/ui/nics", "/ui/groups"] {
        let page = other.get(list).await.body;
        assert!(
            !page.contains(&vpc.id) && !page.contains(&app1.id) && !page.contains(&eni.id),
            "{list}: {page}"
        );
    }
    // A post without its CSRF token changes nothing.
    let p = b.post(&format!("{nic_path}/detach"), &[]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // Detach, delete the ENI, the server, the group, the subnet, the VPC.
    let p = b
        .post(&format!("{nic_path}/detach"), &[("csrf", &csrf)])
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert!(
        t.get::<Nic>("/v1/nics/eni-a")
            .await
            .unwrap()
            .server_id
            .is_none()
    );
    let p = b
        .post(&format!("{nic_path}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (StatusCode::SEE_OTHER, "/ui/nics")
    );
    let p = b
        .post(&format!("{server_path}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (StatusCode::SEE_OTHER, "/ui/servers")
    );
    let p = b
        .post(&format!("{group_path}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (StatusCode::SEE_OTHER, vpc_path.as_str())
    );
    let p = b
        .post(
            &format!("{vpc_path}/subnets/delete"),
            &[("csrf", &csrf), ("key", &sw2.id)],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let p = b
        .post(&format!("{vpc_path}/delete"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (StatusCode::SEE_OTHER, "/ui/vpcs")
    );
    assert!(t.get::<Vpc>("/v1/vpcs/vpc2").await.is_err());
    assert!(t.get::<Server>("/v1/servers/app-1").await.is_err());
}

#[tokio::test]
async fn an_eips_traffic_is_plotted_from_its_gateways_counters() {
    use vpcip_model::desired::{CountersReport, EipTraffic, TrafficRate};
    let c = controller().await;
    let (op, t1) = world(&c).await;
    let t = Client::new(&c.api, Some(&t1));
    let eip: Eip = t
        .post(
            paths::EIPS,
            &CreateEip {
                bandwidth_mbps: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (gw, me) = gateway_agent(&c, &op).await;
    let mut b = Browser::new(&c.ui);
    b.sign_in(&t1).await;
    let path = format!("/ui/eips/{}", eip.id);
    let page = b.get(&path).await.body;
    assert!(
        page.contains("no traffic counted in the last hour") && page.contains("data-points=\"0\""),
        "{page}"
    );
    // Three reports a second or more apart: two points, at 1 MB/s in.
    for i in 0..3u64 {
        let report = CountersReport {
            counters: vec![EipTraffic {
                packets_in: 1000 * i,
                bytes_in: 1_000_000 * i,
                packets_out: 500 * i,
                bytes_out: 500_000 * i,
                drops_in: 10 * i,
                drops_out: 0,
                eip: eip.ip,
            }],
            vip_holders: None,
            programmed: None,
            nic_drops: vec![],
        };
        let _: serde_json::Value = gw
            .post(&paths::at(paths::AGENT_COUNTERS, &[&me.id]), &report)
            .await
            .unwrap_or(serde_json::Value::Null);
        if i < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
    }
    let rates: Vec<TrafficRate> = t
        .get(&paths::at(paths::EIP_TRAFFIC, &[&eip.id]))
        .await
        .unwrap();
    assert_eq!(rates.len(), 2, "{rates:?}");
    for r in &rates {
        // 1,000,000 bytes over 1.1-2 s (whole seconds of report time).
        assert!((4e6..=8e6).contains(&r.bits_in), "{rates:?}");
        assert!((r.bits_out * 2.0 - r.bits_in).abs() < 1.0, "{rates:?}");
        assert!(r.drops_in > 0.0 && r.drops_out == 0.0, "{rates:?}");
    }
    let page = b.get(&path).await.body;
    assert!(
        page.contains("data-points=\"2\"")
            && page.contains("Bandwidth (Mbit/s)")
            && page.matches("<polyline").count() == 6,
        "{page}"
    );
    // The list shows each EIP's traffic in and out.
    let listed = b.get("/ui/eips").await.body;
    assert!(
        listed.contains("<td class=\"traffic\">2.0 MB / 1.0 MB</td>"),
        "{listed}"
    );
    let svg = b.get(&format!("{path}/traffic.svg")).await;
    assert_eq!(svg.status, StatusCode::OK);
    assert!(svg.body.starts_with("<svg") && svg.body.contains("data-points=\"2\""));
    // Another tenant's plot: not found, through the console and the API.
    let t2 = tenant_token(&op, "t2").await;
    let mut other = Browser::new(&c.ui);
    other.sign_in(&t2).await;
    let p = other.get(&format!("{path}/traffic.svg")).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(!p.body.contains("<svg"));
    assert!(
        Client::new(&c.api, Some(&t2))
            .get::<Vec<TrafficRate>>(&paths::at(paths::EIP_TRAFFIC, &[&eip.id]))
            .await
            .is_err()
    );
}

/// A registered gateway agent (its host network made first): its client
/// and record.
async fn gateway_agent(c: &Controller, op: &Client) -> (Client, vpcip_model::desired::Agent) {
    use vpcip_model::desired::{AgentRole, RegisterAgent};
    let _: HostNetwork = op
        .post(
            paths::HOST_NETWORKS,
            &CreateHostNetwork {
                name: "underlay".into(),
                cidr: "192.0.2.0/24".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    let gw: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "gw1".into(),
                description: "gateway".into(),
                agent: true,
                agent_role: Some(AgentRole::Gateway),
                ec2: false,
            },
        )
        .await
        .unwrap();
    let gw = Client::new(&c.api, gw.secret.as_deref());
    let me = gw
        .post(
            paths::AGENTS,
            &RegisterAgent {
                name: "gw1".into(),
                role: AgentRole::Gateway,
                underlay_ip: "192.0.2.21".parse().unwrap(),
            },
        )
        .await
        .unwrap();
    (gw, me)
}

#[tokio::test]
async fn the_platform_page_says_whether_each_segment_is_routed_to_the_gateways() {
    use vpcip_model::desired::{CountersReport, EipTraffic};
    let c = controller().await;
    let (op, t1) = world(&c).await;
    let t = Client::new(&c.api, Some(&t1));
    let mut b = Browser::new(&c.ui);
    b.sign_in(OPERATOR).await;
    let verdict = |page: &str| {
        let mark = "data-prefix=\"203.0.113.0/24\" data-verdict=\"";
        let at = page
            .find(mark)
            .unwrap_or_else(|| panic!("no verdict: {page}"))
            + mark.len();
        page[at..].split('"').next().unwrap().to_string()
    };
    let page = b.get("/ui/platform").await.body;
    assert_eq!(verdict(&page), "unknown", "{page}");
    assert!(page.contains("no EIP of it is bound"), "{page}");
    // Bound and held by a gateway, no packet in: not reached.
    let eip: Eip = t
        .post(
            paths::EIPS,
            &CreateEip {
                bandwidth_mbps: 5,
                bind: Some(BindEip {
                    target: EipTarget::Server("web-1".into()),
                    mode: EipMode::Nat,
                    allow_reassociation: false,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (gw, me) = gateway_agent(&c, &op).await;
    let report = |packets_in: u64| CountersReport {
        counters: vec![EipTraffic {
            packets_in,
            ..EipTraffic::none(eip.ip)
        }],
        vip_holders: None,
        programmed: Some(vec![eip.ip]),
        nic_drops: vec![],
    };
    let counters = paths::at(paths::AGENT_COUNTERS, &[&me.id]);
    let _ = gw.post::<_, serde_json::Value>(&counters, &report(0)).await;
    let page = b.get("/ui/platform").await.body;
    assert_eq!(verdict(&page), "bad", "{page}");
    assert!(
        page.contains("not reached: no packet has ever come in for its 1 bound EIPs"),
        "{page}"
    );
    // Packets came in: routed, naming the EIP and the gateway.
    let _ = gw.post::<_, serde_json::Value>(&counters, &report(3)).await;
    let page = b.get("/ui/platform").await.body;
    assert_eq!(verdict(&page), "ok", "{page}");
    assert!(
        page.contains(&format!("routed: packets for {} reached gw1", eip.ip)),
        "{page}"
    );
    // Only the operator reads it.
    let mut tenant = Browser::new(&c.ui);
    tenant.sign_in(&t1).await;
    assert_eq!(
        tenant.get("/ui/platform").await.status,
        StatusCode::FORBIDDEN
    );
}
