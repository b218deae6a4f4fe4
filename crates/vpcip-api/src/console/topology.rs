//! A VPC's picture (SVG drawn by the server): the gateway carrying it, its
//! router, its subnets with their servers' NICs, the EIPs on them (NAT or
//! visible), and its VIPs with the NIC holding each now. The page fetches
//! the picture again every two seconds, so a VIP's move shows by itself.

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use vpcip_model::*;
use vpcip_store::{Resource, Scope};

use super::api_refusal;
use super::session::SignedIn;
use crate::App;
use crate::error::ApiError;

/// Every `R` that `scope` sees (optionally the children of `parent`).
pub(crate) async fn all<R: Resource>(
    app: &App,
    scope: &Scope,
    parent: Option<&str>,
) -> Result<Vec<R>, ApiError> {
    let mut out = vec![];
    let mut token: Option<String> = None;
    loop {
        let page = app
            .store
            .list::<R>(scope, parent, token.as_deref(), Some(vpcip_store::MAX_PAGE))
            .await?;
        out.extend(page.items);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

pub(crate) async fn svg(State(app): State<App>, s: SignedIn, Path(id): Path<String>) -> Response {
    match picture(&app, &s.scope, &id).await {
        Ok((_, _, svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Err(e) => api_refusal(e),
    }
}

/// What the picture shows, read through `scope`.
struct Seen<'a> {
    vpc: Vpc,
    subnets: &'a [Subnet],
    nics: &'a [Nic],
    servers: &'a [Server],
    eips: &'a [Eip],
    vips: Vec<(Vip, Option<String>)>,
    gateway: Option<String>,
}

pub(crate) async fn picture(
    app: &App,
    scope: &Scope,
    id: &str,
) -> Result<(Vpc, vpcip_store::VpcContents, String), ApiError> {
    let (vpc, contents) = app.store.vpc_contents(scope, id).await?;
    let mut vips = vec![];
    for v in contents.vips.iter().cloned() {
        let holder = app
            .store
            .vip_holding(scope, &v.id)
            .await
            .ok()
            .and_then(|h| h.nic_id);
        vips.push((v, holder));
    }
    // The gateway whose agent reported carrying the VPC.
    let gateway = app.store.vpc_carrier(scope, &vpc.id).await?;
    let seen = Seen {
        vpc: vpc.clone(),
        subnets: &contents.subnets,
        nics: &contents.nics,
        servers: &contents.servers,
        eips: &contents.eips,
        vips,
        gateway,
    };
    let svg = draw(&seen);
    Ok((vpc, contents, svg))
}

/// Text for SVG, escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const COLUMN: usize = 300;
const NIC_H: usize = 56;

fn draw(s: &Seen) -> String {
    let columns = s.subnets.len().max(1);
    let width = (columns * COLUMN + 40).max(700);
    let rows = s
        .subnets
        .iter()
        .map(|sub| {
            s.nics.iter().filter(|n| n.subnet_id == sub.id).count()
                + s.vips.iter().filter(|(v, _)| v.subnet_id == sub.id).count()
        })
        .max()
        .unwrap_or(0);
    let height = 260 + rows * (NIC_H + 12) + 40;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" role="img" aria-label="topology of VPC {name}">"#,
        name = esc(&s.vpc.name)
    );
    let mid = width / 2;
    // The gateway carrying the VPC, and its router.
    let gw = s
        .gateway
        .as_deref()
        .unwrap_or("no gateway has reported carrying it");
    let _ = write!(
        out,
        r##"<g class="gateway"><rect x="{x}" y="10" width="260" height="40" rx="6" fill="#fde7c8" stroke="#b36b00"/><text x="{mid}" y="35" text-anchor="middle">gateway: {gw}</text></g>"##,
        x = mid - 130,
        gw = esc(gw)
    );
    let _ = write!(
        out,
        r##"<line x1="{mid}" y1="50" x2="{mid}" y2="80" stroke="#555"/><g class="router"><rect x="{x}" y="80" width="260" height="40" rx="6" fill="#e4ecf7" stroke="#2a5aa0"/><text x="{mid}" y="105" text-anchor="middle">router of {name} ({cidr})</text></g>"##,
        x = mid - 130,
        name = esc(&s.vpc.name),
        cidr = s.vpc.cidr
    );
    let mut nic_at = std::collections::HashMap::new();
    // Lookups by ID (a VPC may hold thousands of NICs and EIPs).
    let servers: HashMap<&str, &Server> = s.servers.iter().map(|v| (v.id.as_str(), v)).collect();
    let mut eips_on: HashMap<&str, Vec<&Eip>> = HashMap::new();
    for e in s.eips {
        if let Some(t) = e.target_id() {
            eips_on.entry(t).or_default().push(e);
        }
    }
    for (i, sub) in s.subnets.iter().enumerate() {
        let x = 20 + i * COLUMN;
        let cx = x + COLUMN / 2 - 10;
        let _ = write!(
            out,
            r##"<line x1="{mid}" y1="120" x2="{cx}" y2="150" stroke="#555"/><g class="subnet" data-id="{id}"><rect x="{x}" y="150" width="{w}" height="{h}" rx="8" fill="#f6f8fa" stroke="#888"/><text x="{tx}" y="170">subnet {name} {cidr}</text></g>"##,
            w = COLUMN - 20,
            h = 40 + rows * (NIC_H + 12) + 30,
            tx = x + 10,
            id = esc(&sub.id),
            name = esc(&sub.name),
            cidr = sub.cidr
        );
        let mut y = 185;
        for n in s.nics.iter().filter(|n| n.subnet_id == sub.id) {
            let server = n
                .server_id
                .as_ref()
                .and_then(|id| servers.get(id.as_str()))
                .map(|sv| format!("server {}", sv.name))
                .unwrap_or_else(|| "not attached".into());
            let _ = write!(
                out,
                r##"<g class="nic" data-id="{id}"><rect x="{nx}" y="{y}" width="170" height="{NIC_H}" rx="4" fill="#fff" stroke="#2a5aa0"/><text x="{tx}" y="{y1}">{server}</text><text x="{tx}" y="{y2}">{id} {ip}</text></g>"##,
                nx = x + 10,
                tx = x + 16,
                y1 = y + 20,
                y2 = y + 40,
                id = esc(&n.id),
                server = esc(&server),
                ip = n.ip
            );
            nic_at.insert(n.id.clone(), (x + 180, y + NIC_H / 2));
            for e in eips_on.get(n.id.as_str()).into_iter().flatten() {
                draw_eip(&mut out, e, x + 185, y + 8);
            }
            y += NIC_H + 12;
        }
        for (v, holder) in s.vips.iter().filter(|(v, _)| v.subnet_id == sub.id) {
            let held = holder.as_deref().unwrap_or("nobody yet");
            let _ = write!(
                out,
                r##"<g class="vip" data-id="{id}" data-holder="{held}"><rect x="{vx}" y="{y}" width="170" height="{NIC_H}" rx="4" fill="#eef7ee" stroke="#2d7d2d" stroke-dasharray="4 2"/><text x="{tx}" y="{y1}">VIP {name} {ip}</text><text x="{tx}" y="{y2}">held by {held}</text></g>"##,
                vx = x + 10,
                tx = x + 16,
                y1 = y + 20,
                y2 = y + 40,
                id = esc(&v.id),
                name = esc(&v.name),
                ip = v.ip,
                held = esc(held)
            );
            if let Some((hx, hy)) = holder.as_ref().and_then(|h| nic_at.get(h)) {
                let _ = write!(
                    out,
                    r##"<path class="holds" d="M{x1} {y1} C{cx} {y1} {cx} {hy} {hx} {hy}" fill="none" stroke="#2d7d2d" stroke-width="2"/>"##,
                    x1 = x + 180,
                    y1 = y + NIC_H / 2,
                    cx = x + 250,
                );
            }
            for e in eips_on.get(v.id.as_str()).into_iter().flatten() {
                draw_eip(&mut out, e, x + 185, y + 8);
            }
            y += NIC_H + 12;
        }
    }
    out.push_str("</svg>");
    out
}

fn draw_eip(out: &mut String, e: &Eip, x: usize, y: usize) {
    let visible = matches!(
        &e.binding,
        EipBinding::Nic {
            mode: EipMode::Visible,
            ..
        } | EipBinding::Vip {
            mode: EipMode::Visible,
            ..
        }
    );
    let (fill, mode) = if visible {
        ("#d9f2d9", "visible")
    } else {
        ("#dbe8fb", "NAT")
    };
    let _ = write!(
        out,
        r##"<g class="eip" data-id="{id}"><rect x="{x}" y="{y}" width="88" height="40" rx="4" fill="{fill}" stroke="#444"/><text x="{tx}" y="{y1}">EIP {mode}</text><text x="{tx}" y="{y2}">{ip}</text></g>"##,
        id = esc(&e.id),
        tx = x + 6,
        y1 = y + 16,
        y2 = y + 32,
        ip = e.ip
    );
}
