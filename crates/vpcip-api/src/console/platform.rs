//! The operator's platform page: the EIP segments (addresses used of each)
//! and the routes the physical network needs for them, the tokens (create,
//! revoke; a new secret shown once) and the per-tenant quotas.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use vpcip_model::*;
use vpcip_store::Scope;

use super::session::{Posted, SignedIn};
use super::topology::all;
use super::{Button, Frame, api_refusal, message, refusal, render_refused};
use crate::App;

#[derive(Template)]
#[template(path = "console/platform.html")]
struct PlatformPage {
    frame: Frame,
    segments: Vec<(Subnet, u64)>,
    routes: Vec<PhysicalRoute>,
    /// Each segment's route verdict: its prefix, `ok`/`bad`/`unknown`, and
    /// why.
    verdicts: Vec<(String, String, String)>,
    /// Problems of the gateways' BGP sessions (when they announce).
    bgp: Vec<String>,
    tokens: Vec<Token>,
    quotas: vpcip_model::rules::Quotas,
    /// A token just made: its secret, shown this once.
    secret: Option<String>,
    error: Option<String>,
}

async fn platform_page(
    app: &App,
    s: &SignedIn,
    secret: Option<String>,
    error: Option<String>,
) -> Response {
    if !matches!(s.scope, Scope::Operator) {
        return refusal(StatusCode::FORBIDDEN, "the platform page is the operator's");
    }
    let read = async {
        let segments = all::<Subnet>(app, &s.scope, None)
            .await?
            .into_iter()
            .filter(|n| n.kind == SubnetKind::Eip)
            .map(|n| {
                let size = u64::from(u32::from(n.range_end))
                    .saturating_sub(u64::from(u32::from(n.range_start)))
                    + 1;
                (n, size)
            })
            .collect();
        let routes = app.store.physical_routes(&s.scope).await?;
        let tokens = app.store.list_tokens(&s.scope).await?;
        let reach = app.store.segment_reach(&s.scope).await?;
        let status = app.store.status(&s.scope).await?;
        Ok::<_, crate::error::ApiError>((segments, routes, tokens, reach, status))
    };
    let (segments, routes, tokens, reach, status) = match read.await {
        Ok(r) => r,
        Err(e) => return api_refusal(e),
    };
    let now = vpcip_store::db::now();
    let verdicts = reach
        .iter()
        .map(|r| {
            let (ok, why) = r.verdict(now);
            let class = match ok {
                Some(true) => "ok",
                Some(false) => "bad",
                None => "unknown",
            };
            (r.prefix.to_string(), class.to_string(), why)
        })
        .collect();
    let bgp = status
        .bgp
        .iter()
        .map(|b| {
            format!(
                "{}{}: {}",
                b.gateway,
                b.peer.map(|p| format!(", peer {p}")).unwrap_or_default(),
                b.problem
            )
        })
        .collect();
    let failed = error.is_some();
    render_refused(
        &PlatformPage {
            frame: Frame::of(s),
            segments,
            routes,
            verdicts,
            bgp,
            tokens,
            quotas: app.store.quotas(),
            secret,
            error,
        },
        failed,
    )
}

pub(crate) async fn page(State(app): State<App>, s: SignedIn) -> Response {
    platform_page(&app, &s, None, None).await
}

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    description: String,
}

pub(crate) async fn create_token(
    State(app): State<App>,
    Posted { signed: s, form: f }: Posted<TokenForm>,
) -> Response {
    let made = app
        .store
        .create_token(
            &s.scope,
            &CreateToken {
                tenant: f.tenant.trim().to_string(),
                description: f.description.trim().to_string(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await;
    match made {
        Ok(t) => platform_page(&app, &s, t.secret, None).await,
        Err(e) => platform_page(&app, &s, None, Some(message(e))).await,
    }
}

pub(crate) async fn delete_token(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, .. }: Posted<Button>,
) -> Response {
    match app.store.delete_token(&s.scope, &id).await {
        Ok(()) => Redirect::to("/ui/platform").into_response(),
        Err(e) => platform_page(&app, &s, None, Some(message(e))).await,
    }
}
