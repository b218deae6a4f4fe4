//! Bearer-token authentication: the operator's token (from the server's
//! configuration) sees everything; a tenant's token (created by the
//! operator, stored hashed) sees its tenant's resources; an agent's token
//! serves the agent routes, for its one agent (the store checks which).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use vpcip_store::{Scope, token_hash};

use crate::App;
use crate::error::ApiError;

/// The authenticated caller of a request.
pub struct Caller(pub Scope);

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let caller = authenticate(parts, app).await?;
        if let Some(slot) = parts.extensions.get::<crate::metrics::CallerSlot>()
            && let Ok(mut s) = slot.0.lock()
        {
            *s = Some(match &caller.0 {
                Scope::Operator => "operator".to_string(),
                Scope::Tenant(t) => t.clone(),
                Scope::Agent(a) => format!("agent {}", a.name),
            });
        }
        Ok(caller)
    }
}

async fn authenticate(parts: &mut Parts, app: &App) -> Result<Caller, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
    // The scheme is case-insensitive (RFC 7235).
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization must be: Bearer <token>"))?;
    match token_scope(app, token).await? {
        // An agent's token acts for its own agent on the agent routes
        // (register, watch, report) and nowhere else.
        Some(Scope::Agent(a)) if parts.uri.path().starts_with(vpcip_model::paths::AGENTS) => {
            Ok(Caller(Scope::Agent(a)))
        }
        Some(Scope::Agent(_)) => Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "an agent's token serves the agent routes (/v1/agents/…) only, not {}",
                parts.uri.path()
            ),
        )),
        Some(scope) => Ok(Caller(scope)),
        None => Err(ApiError::unauthorized("unknown token")),
    }
}

/// Whose token `token` is: the operator's, a tenant's or an agent's; None
/// for a token vpcip never issued.
pub(crate) async fn token_scope(app: &App, token: &str) -> Result<Option<Scope>, ApiError> {
    let hash = token_hash(token);
    if app
        .operator_token_hash
        .as_deref()
        .is_some_and(|h| constant_time_eq(h.as_bytes(), hash.as_bytes()))
    {
        return Ok(Some(Scope::Operator));
    }
    Ok(app.store.authenticate(token).await?)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
