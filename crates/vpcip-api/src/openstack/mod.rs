//! The OpenStack APIs users already script floating IPs with, served on
//! the same listener and mapped onto the same store and rules (no second
//! source of truth): Keystone v3's token issue at `/v3` (`keystone.rs`),
//! Neutron v2.0's floating IPs, networks, subnets and ports at `/v2.0`
//! (`neutron.rs`), and the little of Nova's servers that `openstack port
//! list --server` asks (`compute.rs`). The unmodified `openstack` client
//! and openstacksdk work against it (`crates/vpcip/tests/openstack.rs`).
//!
//! A Keystone token *is* a vpcip token: the password of a Keystone user
//! (the tenant's name) is a token vpcip issued to that tenant, and the
//! token Keystone answers with is that same token, which the other
//! services take in `X-Auth-Token`. The operator's token is the user
//! `admin`, with the admin role.

mod compute;
mod keystone;
mod neutron;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use vpcip_store::{Scope, StoreError};

use crate::App;
use crate::error::ApiError;

/// The Keystone user (and project) the operator's token is.
pub(crate) const OPERATOR_USER: &str = "admin";

/// The routes of the three facades.
pub(crate) fn router() -> Router<App> {
    keystone::routes()
        .merge(neutron::routes())
        .merge(compute::routes())
}

/// The caller of a Neutron or Nova request, from its `X-Auth-Token`.
pub(crate) struct OsCaller(pub Scope);

impl OsCaller {
    pub(crate) async fn from_headers(headers: &HeaderMap, app: &App) -> Result<Self, ApiError> {
        let token = headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("missing X-Auth-Token (a token from POST /v3/auth/tokens)")
            })?;
        match crate::auth::token_scope(app, token).await? {
            Some(scope @ (Scope::Operator | Scope::Tenant(_))) => Ok(OsCaller(scope)),
            _ => Err(ApiError::unauthorized("the token is not valid here")),
        }
    }
}

/// Where the clients reach this server: the scheme and the `Host` they
/// used (the catalog's endpoints point back there).
pub(crate) fn base_url(app: &App, headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("127.0.0.1");
    let scheme = if app.tls { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// An error in the shape of the service that answers it.
pub(crate) struct OsError {
    status: StatusCode,
    body: serde_json::Value,
}

impl IntoResponse for OsError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

impl OsError {
    /// Neutron's `{"NeutronError": {"type", "message", "detail"}}`; `kind`
    /// names the resource for a 404 (`FloatingIPNotFound`).
    pub(crate) fn neutron(e: ApiError, kind: &str) -> Self {
        let ty = match (e.status, e.code.as_str()) {
            (StatusCode::NOT_FOUND, _) => format!("{kind}NotFound"),
            (_, "eip_bound" | "target_has_eip") => "FloatingIPPortAlreadyAssociated".into(),
            (_, "address_taken" | "ip_in_use") => "IpAddressInUse".into(),
            (_, "address_exhausted") => "ExternalIpAddressExhausted".into(),
            (StatusCode::CONFLICT, _) => "Conflict".into(),
            (StatusCode::BAD_REQUEST, _) => "BadRequest".into(),
            (StatusCode::UNAUTHORIZED, _) => "NotAuthenticated".into(),
            (StatusCode::FORBIDDEN, _) => "PolicyNotAuthorized".into(),
            _ => "ServiceUnavailable".into(),
        };
        OsError {
            status: e.status,
            body: serde_json::json!({"NeutronError": {
                "type": ty, "message": e.message, "detail": e.code,
            }}),
        }
    }

    /// Keystone's `{"error": {"code", "title", "message"}}`.
    pub(crate) fn keystone(e: ApiError) -> Self {
        let title = e.status.canonical_reason().unwrap_or("Error");
        OsError {
            status: e.status,
            body: serde_json::json!({"error": {
                "code": e.status.as_u16(), "title": title, "message": e.message,
            }}),
        }
    }

    /// Nova's `{"<fault>": {"code", "message"}}`.
    pub(crate) fn nova(e: ApiError) -> Self {
        let fault = match e.status {
            StatusCode::NOT_FOUND => "itemNotFound",
            StatusCode::BAD_REQUEST => "badRequest",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            _ => "computeFault",
        };
        OsError {
            status: e.status,
            body: serde_json::json!({fault: {"code": e.status.as_u16(), "message": e.message}}),
        }
    }
}

pub(crate) use crate::handlers::all;

/// A store failure as the API would say it.
pub(crate) fn api(e: StoreError) -> ApiError {
    ApiError::from(e)
}

/// Unix seconds as RFC 3339 (`2026-12-01T10:00:00Z`).
pub(crate) fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
        .to_string()
}

/// A query's filters, as the clients send them (`router%3Aexternal=True`,
/// repeated `fields=`): each key's values, decoded as a form is.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    serde_urlencoded::from_str(query.unwrap_or_default()).unwrap_or_default()
}

/// A filter on a query: the items whose value under `key` is one of the
/// values asked (all items when the query does not name `key`).
pub(crate) fn matches(query: &[(String, String)], key: &str, value: Option<&str>) -> bool {
    let asked: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect();
    asked.is_empty()
        || asked.iter().any(|a| match value {
            Some(v) => a.eq_ignore_ascii_case(v),
            None => a.is_empty() || a.eq_ignore_ascii_case("none"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded_and_filter_as_neutron_does() {
        let q = query_pairs(Some(
            "router%3Aexternal=True&fields=id&fields=name&name=a+b%2Fc",
        ));
        assert_eq!(q[0], ("router:external".into(), "True".into()));
        assert_eq!(q[3], ("name".into(), "a b/c".into()));
        assert!(matches(&q, "router:external", Some("true")));
        assert!(!matches(&q, "router:external", Some("false")));
        assert!(matches(&q, "status", Some("DOWN")), "no filter: all");
        assert!(matches(&q, "fields", Some("name")));
        // A broken escape is kept as written.
        assert_eq!(query_pairs(Some("a=%zz%4"))[0].1, "%zz%4");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
