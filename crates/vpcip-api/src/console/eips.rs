//! EIP pages: the list (search, pages), allocate (and bind in one step),
//! one EIP's page with bind/rebind, unbind, bandwidth and release.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use vpcip_model::*;

use super::list::{self, ListQuery};
use super::session::{Posted, SignedIn};
use super::{Button, Frame, api_refusal, message, render_refused, split_error};
use crate::App;

/// One EIP as the pages show it.
pub(crate) struct Row {
    pub id: String,
    pub name: String,
    pub ip: String,
    pub bandwidth_mbps: u32,
    pub mode: String,
    pub target: String,
    pub vpc_id: String,
}

impl Row {
    fn of(e: &Eip) -> Row {
        let (mode, target, vpc_id) = match &e.binding {
            EipBinding::Unbound => ("-".to_string(), "unbound".to_string(), String::new()),
            EipBinding::Nic {
                nic_id,
                server_id,
                vpc_id,
                private_ip,
                mode,
            } => (
                mode_name(*mode),
                match server_id {
                    Some(s) => format!("server {s} (NIC {nic_id}, {private_ip})"),
                    None => format!("NIC {nic_id} ({private_ip})"),
                },
                vpc_id.clone(),
            ),
            EipBinding::Vip {
                vip_id,
                vpc_id,
                private_ip,
                mode,
            } => (
                mode_name(*mode),
                format!("VIP {vip_id} ({private_ip})"),
                vpc_id.clone(),
            ),
        };
        Row {
            id: e.id.clone(),
            name: e.name.clone(),
            ip: e.ip.to_string(),
            bandwidth_mbps: e.bandwidth_mbps,
            mode,
            target,
            vpc_id,
        }
    }

    fn matches(&self, q: &str) -> bool {
        list::holds(&[&self.id, &self.name, &self.ip, &self.target], q)
    }
}

fn mode_name(m: EipMode) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "console/eips.html")]
struct ListPage {
    frame: Frame,
    /// Each EIP with its traffic in and out.
    rows: Vec<(Row, String)>,
    pager: list::Pager,
    error: Option<String>,
}

async fn list_page(app: &App, s: &SignedIn, q: &ListQuery, error: Option<String>) -> Response {
    let listed = list::page::<Eip>(
        app,
        &s.scope,
        q,
        ("/ui/eips", "address, name, ID or target", "EIP(s)"),
        |e, needle| Row::of(e).matches(needle),
    )
    .await;
    let (eips, pager) = match listed {
        Ok(l) => l,
        Err(e) => return api_refusal(e),
    };
    // Each one's traffic, in one read for the page.
    let traffic = app
        .store
        .eip_traffic_totals(&eips)
        .await
        .unwrap_or_default();
    let rows = eips
        .iter()
        .map(|e| {
            let t = traffic.get(&e.ip);
            (
                Row::of(e),
                t.map(|t| format!("{} / {}", bytes(t.bytes_in), bytes(t.bytes_out)))
                    .unwrap_or_else(|| "-".into()),
            )
        })
        .collect();
    let refused = error.is_some();
    render_refused(
        &ListPage {
            frame: Frame::of(s),
            rows,
            pager,
            error,
        },
        refused,
    )
}

/// A byte count as people read it (`1.5 MB`).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

pub(crate) async fn list(
    State(app): State<App>,
    s: SignedIn,
    Query(q): Query<ListQuery>,
) -> Response {
    list_page(&app, &s, &q, None).await
}

#[derive(Deserialize)]
pub(crate) struct AllocateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    bandwidth_mbps: String,
    /// `server`, `nic`, `vip`, or empty: allocate only.
    #[serde(default)]
    target_kind: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    mode: String,
}

fn target_of(kind: &str, id: &str) -> Result<Option<EipTarget>, String> {
    let id = id.trim().to_string();
    match (kind, id.is_empty()) {
        ("" | "none", _) => Ok(None),
        (_, true) => Err("bind: name the server, NIC or VIP to bind to (target)".into()),
        ("server", _) => Ok(Some(EipTarget::Server(id))),
        ("nic", _) => Ok(Some(EipTarget::Nic(id))),
        ("vip", _) => Ok(Some(EipTarget::Vip(id))),
        (other, _) => Err(format!(
            "target_kind: {other:?} is none of server, nic, vip"
        )),
    }
}

fn mode_of(m: &str) -> Result<EipMode, String> {
    serde_json::from_value(serde_json::Value::String(
        if m.is_empty() { "nat" } else { m }.to_string(),
    ))
    .map_err(|_| format!("mode: {m:?} is neither nat nor visible"))
}

fn mbps_of(v: &str) -> Result<u32, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("bandwidth_mbps: {v:?} is not a whole number of Mbit/s"))
}

pub(crate) async fn allocate(
    State(app): State<App>,
    Posted { signed: s, form: f }: Posted<AllocateForm>,
) -> Response {
    let req = (|| {
        let bind = target_of(&f.target_kind, &f.target)?
            .map(|target| {
                mode_of(&f.mode).map(|mode| BindEip {
                    target,
                    mode,
                    allow_reassociation: false,
                })
            })
            .transpose()?;
        Ok::<_, String>(CreateEip {
            name: Some(f.name.trim().to_string()).filter(|n| !n.is_empty()),
            bandwidth_mbps: mbps_of(&f.bandwidth_mbps)?,
            bind,
            ..Default::default()
        })
    })();
    let outcome = match req {
        Ok(req) => app.store.create_eip(&s.scope, &req).await.map_err(message),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(eip) => Redirect::to(&format!("/ui/eips/{}", eip.id)).into_response(),
        Err(e) => list_page(&app, &s, &ListQuery::default(), Some(e)).await,
    }
}

#[derive(Template)]
#[template(path = "console/eip.html")]
struct EipPage {
    frame: Frame,
    row: Row,
    traffic: Option<desired::EipCounters>,
    /// Its traffic over the last hour (SVG).
    plot: String,
    /// The form a refusal belongs to, and the API's message.
    error_in: String,
    error: Option<String>,
}

async fn eip_page(app: &App, s: &SignedIn, id: &str, error: Option<(&str, String)>) -> Response {
    let eip: Eip = match app.store.show(&s.scope, id).await {
        Ok(e) => e,
        Err(e) => return api_refusal(e),
    };
    let traffic = app.store.eip_counters(&s.scope, &eip.id).await.ok();
    let plot = match traffic_plot(app, s, &eip.id).await {
        Ok(p) => p,
        Err(e) => return api_refusal(e),
    };
    let failed = error.is_some();
    let (error_in, error) = split_error(error);
    render_refused(
        &EipPage {
            frame: Frame::of(s),
            row: Row::of(&eip),
            traffic,
            plot,
            error_in,
            error,
        },
        failed,
    )
}

async fn traffic_plot(
    app: &App,
    s: &SignedIn,
    id: &str,
) -> Result<String, vpcip_store::StoreError> {
    let points = app.store.eip_traffic_history(&s.scope, id).await?;
    Ok(super::plot::traffic(
        &points,
        vpcip_store::db::now(),
        vpcip_store::TRAFFIC_HISTORY_SECS,
    ))
}

/// The traffic plot alone (the page fetches it again every ten seconds).
pub(crate) async fn traffic_svg(
    State(app): State<App>,
    s: SignedIn,
    Path(id): Path<String>,
) -> Response {
    match traffic_plot(&app, &s, &id).await {
        Ok(svg) => ([(axum::http::header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Err(e) => api_refusal(e),
    }
}

pub(crate) async fn show(State(app): State<App>, s: SignedIn, Path(id): Path<String>) -> Response {
    eip_page(&app, &s, &id, None).await
}

/// After an action: the EIP's page again, with the refusal next to its
/// form if there was one.
/// (The redirect names the EIP by the ID the store answered with, never by
/// what the request said.)
async fn after(app: &App, s: &SignedIn, id: &str, form: &str, r: Result<Eip, String>) -> Response {
    match r {
        Ok(eip) => Redirect::to(&format!("/ui/eips/{}", eip.id)).into_response(),
        Err(e) => eip_page(app, s, id, Some((form, e))).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct BindForm {
    #[serde(default)]
    target_kind: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    mode: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    allow_reassociation: Option<String>,
}

pub(crate) async fn bind(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<BindForm>,
) -> Response {
    let req = target_of(&f.target_kind, &f.target).and_then(|t| {
        let target = t.ok_or("target_kind: choose server, nic or vip")?;
        Ok(BindEip {
            target,
            mode: mode_of(&f.mode)?,
            allow_reassociation: f.allow_reassociation.is_some(),
        })
    });
    let r = match req {
        Ok(req) => app
            .store
            .bind_eip(&s.scope, &id, &req)
            .await
            .map_err(message),
        Err(e) => Err(e),
    };
    after(&app, &s, &id, "bind", r).await
}

pub(crate) async fn unbind(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, .. }: Posted<Button>,
) -> Response {
    let r = app.store.unbind_eip(&s.scope, &id).await.map_err(message);
    after(&app, &s, &id, "unbind", r).await
}

#[derive(Deserialize)]
pub(crate) struct UpdateForm {
    #[serde(default)]
    bandwidth_mbps: String,
}

pub(crate) async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<UpdateForm>,
) -> Response {
    let r = match mbps_of(&f.bandwidth_mbps) {
        Ok(mbps) => app
            .store
            .update_eip(
                &s.scope,
                &id,
                &UpdateEip {
                    bandwidth_mbps: Some(mbps),
                    algs: None,
                },
            )
            .await
            .map_err(message),
        Err(e) => Err(e),
    };
    after(&app, &s, &id, "update", r).await
}

pub(crate) async fn release(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, .. }: Posted<Button>,
) -> Response {
    match app.store.release_eip(&s.scope, &id).await {
        Ok(()) => Redirect::to("/ui/eips").into_response(),
        Err(e) => eip_page(&app, &s, &id, Some(("release", message(e)))).await,
    }
}
