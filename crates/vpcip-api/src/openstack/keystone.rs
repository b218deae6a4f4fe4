//! Keystone v3, the part the clients need: the version document and
//! `POST /v3/auth/tokens` with the password or token method, answering 201
//! with `X-Subject-Token` and a token whose catalog points the `network`
//! and `compute` services back at this server.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use vpcip_store::Scope;

use super::{OPERATOR_USER, OsError, base_url};
use crate::App;
use crate::error::ApiError;

/// How long a Keystone token says it lasts. vpcip's token does not expire
/// (it is revoked by `vpcip token delete`); the clients only need a time
/// well ahead, after which they authenticate again.
const TOKEN_HOURS: u64 = 24;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/v3", get(version))
        .route("/v3/", get(version))
        .route("/v3/auth/tokens", post(issue))
}

async fn version(State(app): State<App>, headers: HeaderMap) -> Response {
    let base = base_url(&app, &headers);
    axum::Json(serde_json::json!({"version": {
        "id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/v3/")}],
        "media-types": [{"base": "application/json",
            "type": "application/vnd.openstack.identity-v3+json"}],
    }}))
    .into_response()
}

#[derive(Deserialize)]
struct AuthRequest {
    auth: Auth,
}

#[derive(Deserialize)]
struct Auth {
    identity: Identity,
    #[serde(default)]
    scope: Option<AuthScope>,
}

#[derive(Deserialize)]
struct Identity {
    methods: Vec<String>,
    #[serde(default)]
    password: Option<PasswordMethod>,
    #[serde(default)]
    token: Option<TokenMethod>,
}

#[derive(Deserialize)]
struct PasswordMethod {
    user: User,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    password: String,
}

#[derive(Deserialize)]
struct TokenMethod {
    id: String,
}

#[derive(Deserialize)]
struct AuthScope {
    #[serde(default)]
    project: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// The user (a tenant's name, or `admin` for the operator) a Keystone
/// token is for, with its vpcip scope.
fn user_of(scope: &Scope) -> Option<&str> {
    match scope {
        Scope::Operator => Some(OPERATOR_USER),
        Scope::Tenant(t) => Some(t),
        Scope::Agent(_) => None,
    }
}

async fn issue(
    State(app): State<App>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OsError> {
    let refused = || {
        OsError::keystone(ApiError::unauthorized(
            "The request you have made requires authentication: the user and password (a vpcip token of that tenant) do not match.",
        ))
    };
    let req: AuthRequest = serde_json::from_slice(&body).map_err(|e| {
        OsError::keystone(ApiError::bad_request(
            "invalid_argument",
            format!("not a Keystone v3 auth request: {e}"),
        ))
    })?;
    let identity = &req.auth.identity;
    let (token, user) = if identity.methods.iter().any(|m| m == "password") {
        let p = identity.password.as_ref().ok_or_else(refused)?;
        (
            p.user.password.as_str(),
            Some(
                p.user
                    .name
                    .as_deref()
                    .or(p.user.id.as_deref())
                    .unwrap_or(""),
            ),
        )
    } else if identity.methods.iter().any(|m| m == "token") {
        (
            identity.token.as_ref().ok_or_else(refused)?.id.as_str(),
            None,
        )
    } else {
        return Err(OsError::keystone(ApiError::unauthorized(
            "only the password and token methods are served",
        )));
    };
    let scope = crate::auth::token_scope(&app, token)
        .await
        .map_err(OsError::keystone)?
        .ok_or_else(refused)?;
    let me = user_of(&scope).ok_or_else(refused)?.to_string();
    // The password is that user's token; a project asked for is its own.
    if user.is_some_and(|u| u != me) {
        return Err(refused());
    }
    if let Some(p) = req.auth.scope.as_ref().and_then(|s| s.project.as_ref())
        && p.name
            .as_deref()
            .or(p.id.as_deref())
            .is_some_and(|n| n != me)
    {
        return Err(OsError::keystone(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("user {me} has no role on that project: its only project is {me}"),
        )));
    }
    let now = u64::try_from(vpcip_store::db::now()).unwrap_or(0);
    let base = base_url(&app, &headers);
    let roles: &[&str] = if matches!(scope, Scope::Operator) {
        &["admin", "member", "reader"]
    } else {
        &["member", "reader"]
    };
    let endpoint = |service: &str, url: String| {
        serde_json::json!({"id": format!("{service}-public"), "interface": "public",
            "region": "RegionOne", "region_id": "RegionOne", "url": url})
    };
    let domain = serde_json::json!({"id": "default", "name": "Default"});
    let body = serde_json::json!({"token": {
        "methods": identity.methods,
        "user": {"id": me, "name": me, "domain": domain, "password_expires_at": null},
        "project": {"id": me, "name": me, "domain": domain},
        "is_domain": false,
        "roles": roles.iter().map(|r| serde_json::json!({"id": r, "name": r})).collect::<Vec<_>>(),
        "audit_ids": [],
        "issued_at": super::rfc3339(now),
        "expires_at": super::rfc3339(now + TOKEN_HOURS * 3600),
        "catalog": [
            {"id": "identity", "type": "identity", "name": "keystone",
             "endpoints": [endpoint("identity", format!("{base}/v3"))]},
            {"id": "network", "type": "network", "name": "neutron",
             "endpoints": [endpoint("network", base.clone())]},
            {"id": "compute", "type": "compute", "name": "nova",
             "endpoints": [endpoint("compute", format!("{base}/compute/v2.1"))]},
        ],
    }});
    let mut resp = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    Ok(resp)
}
