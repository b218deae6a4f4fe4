//! HTTP entry points: parse, authenticate, call one store operation, answer.
//! No rule lives here.
//!
//! `crud.rs` holds each resource kind's list, show, create and delete,
//! `actions.rs` the actions and updates on one resource and the other
//! one-off operations, `agents.rs` what the agents and the operator's
//! status use; this file the extractors and answers they share.

mod actions;
mod agents;
mod crud;

pub use actions::*;
pub use agents::*;
pub use crud::*;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::{IntoParams, ToSchema};
use vpcip_model::*;

use crate::App;
use crate::error::ApiError;

/// A JSON body whose rejections are API errors (400 `invalid_body`).
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<App> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, app).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(e)) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body rejected: {}", e.body_text()),
            )),
            Err(e) => Err(ApiError::bad_request("invalid_body", e.body_text())),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
    /// Only the children of this resource: the VPC of subnets and security
    /// groups, the subnet of NICs, VIPs and EIPs.
    pub parent: Option<String>,
}

/// Query parameters whose rejections are API errors.
pub struct Params(pub ListParams);

impl FromRequestParts<App> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        match axum::extract::Query::<ListParams>::from_request_parts(parts, app).await {
            Ok(q) => Ok(Params(q.0)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::bad_request("invalid_query", e.body_text()))
            }
            Err(e) => Err(ApiError::bad_request("invalid_query", e.body_text())),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

fn created<T: serde::Serialize>(v: T) -> Response {
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

fn ok<T: serde::Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Query parameters whose rejections are API errors (400 `invalid_query`).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<App> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, app)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

#[derive(serde::Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Whether this controller can serve: its database answers. 503 when it
/// does not, so that a load balancer sends the traffic elsewhere.
#[utoipa::path(get, path = paths::HEALTHZ, tag = "platform", responses(
    (status = 200, body = Health),
    (status = 503, body = Health, description = "the database does not answer"),
))]
pub async fn healthz(State(app): State<App>) -> Response {
    match app.store.ping().await {
        Ok(()) => ok(Health {
            status: "ok".into(),
        }),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(Health {
                status: format!("database unavailable: {e}"),
            }),
        )
            .into_response(),
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route")
}

/// A route that exists, asked with a method it does not serve.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not served on {}", uri.path()),
    )
}

/// Prometheus metrics (OpenMetrics text; no token): see [`crate::metrics`].
pub async fn metrics_page(State(app): State<App>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        crate::metrics::render(&app).await,
    )
        .into_response()
}

/// Every item of kind `R` the scope sees, all pages (for the OpenStack and
/// EC2 facades, whose lists are not paginated).
pub(crate) async fn all<R: vpcip_store::Resource>(
    app: &App,
    scope: &vpcip_store::Scope,
) -> Result<Vec<R>, ApiError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = app
            .store
            .list::<R>(scope, None, token.as_deref(), Some(1000))
            .await
            .map_err(ApiError::from)?;
        out.extend(page.items);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}
