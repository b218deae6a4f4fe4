//! The console's sessions: a random ID in a cookie naming a token and a
//! CSRF token, in this controller's memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use vpcip_store::Scope;

use crate::App;

pub const SESSION_COOKIE: &str = "vpcip_session";
pub const LOGIN_COOKIE: &str = "vpcip_login";
/// A session ends after this long, signed out or not.
pub const LIFETIME_SECS: u64 = 8 * 3600;
/// Sessions kept at most (the oldest goes first): a flood of sign-ins
/// cannot grow the controller's memory without bound.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    token: String,
    csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `token` (already checked): its ID.
    pub fn open(&self, token: &str) -> String {
        let id = random_token();
        let csrf = random_token();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                token: token.to_string(),
                csrf: csrf.clone(),
                expires: now + Duration::from_secs(LIFETIME_SECS),
            },
        );
        id
    }

    pub fn close(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The session's token and CSRF token, while it lasts.
    fn get(&self, id: &str) -> Option<(String, String)> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| (s.token.clone(), s.csrf.clone()))
    }
}

/// A signed-in browser: its scope (from its token, checked again on every
/// request) and its session's CSRF token.
pub struct SignedIn {
    pub id: String,
    pub scope: Scope,
    pub csrf: String,
}

/// A form posted by a signed-in browser, its CSRF token (the form's
/// `csrf` field) checked against the session's before the handler runs:
/// every console form but the sign-in goes through here.
pub struct Posted<T> {
    pub signed: SignedIn,
    pub form: T,
}

#[derive(serde::Deserialize)]
struct WithCsrf<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

impl<T: serde::de::DeserializeOwned + Send> FromRequest<App> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &App) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let signed = SignedIn::from_request_parts(&mut parts, app).await?;
        let Form(posted) = Form::<WithCsrf<T>>::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(IntoResponse::into_response)?;
        if !same(&signed.csrf, &posted.csrf) {
            return Err(super::refusal(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or is not this session's (csrf)",
            ));
        }
        Ok(Posted {
            signed,
            form: posted.form,
        })
    }
}

impl FromRequestParts<App> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Response> {
        let to_login = || Redirect::to("/ui/login").into_response();
        let id = cookie_value(&parts.headers, SESSION_COOKIE).ok_or_else(to_login)?;
        let (token, csrf) = app.sessions.get(&id).ok_or_else(to_login)?;
        match crate::auth::token_scope(app, &token).await {
            Ok(Some(Scope::Agent(_))) | Ok(None) => {
                app.sessions.close(&id);
                Err(to_login())
            }
            Ok(Some(scope)) => Ok(SignedIn { id, scope, csrf }),
            Err(e) => Err(super::api_refusal(e)),
        }
    }
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Constant-time equality (tokens).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path /ui, Secure under
/// TLS; `max_age` 0 removes it.
pub fn cookie(name: &str, value: &str, secure: bool, max_age: u64) -> String {
    format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}
