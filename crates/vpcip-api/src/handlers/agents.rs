//! What the agents use (registration, reports, the desired state they
//! watch), what they reported, and the operator's system status.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use vpcip_model::*;

use super::{ApiResult, Body, created, no_content, ok};
use crate::App;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct WatchParams {
    /// The revision the agent has; the answer waits for a newer one.
    pub after: Option<i64>,
    /// Seconds to wait for a newer revision (0 to 60, default 30); the
    /// current state is returned when the wait ends.
    pub wait: Option<u64>,
}

/// Registers an agent (again after a restart).
///
/// Its underlay address must be a free unicast address of a registered
/// host network, outside the EIP segments (400 `underlay_*`, 409
/// `underlay_in_use`). An agent token registers its own agent only, with
/// its role (403 `agent_identity`).
#[utoipa::path(post, path = paths::AGENTS, tag = "agents", request_body = vpcip_model::desired::RegisterAgent,
    responses((status = 201, body = vpcip_model::desired::Agent),
        (status = 400, body = ErrorBody, description = "a bad underlay address: `underlay_reserved`, `underlay_in_eip_segment`, `underlay_outside_host_networks`"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a tenant's token, or an agent token for another agent or role (`agent_identity`)"),
        (status = 409, body = ErrorBody, description = "`underlay_in_use`: another agent or gateway holds the address")),
    security(("bearer" = [])))]
pub async fn register_agent(
    State(app): State<App>,
    Caller(scope): Caller,
    Body(req): Body<vpcip_model::desired::RegisterAgent>,
) -> ApiResult<Response> {
    Ok(created(app.store.register_agent(&scope, &req).await?))
}

/// Every agent with its last report (operator).
#[utoipa::path(get, path = paths::AGENTS, tag = "agents",
    responses((status = 200, body = Vec<vpcip_model::desired::Agent>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not the operator's token (agent tokens included)")),
    security(("bearer" = [])))]
pub async fn list_agents(State(app): State<App>, Caller(scope): Caller) -> ApiResult<Response> {
    Ok(ok(app.store.agents(&scope).await?))
}

/// An agent's reconcile result: the revision it applied and its error.
///
/// An agent token reports for its own agent only (403 `agent_identity`).
#[utoipa::path(post, path = paths::AGENT_REPORT, tag = "agents", request_body = vpcip_model::desired::AgentReport,
    params(("id" = String, Path, description = "ID or name")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a tenant's token, or an agent token for another agent (`agent_identity`)"),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn report_agent(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
    Body(req): Body<vpcip_model::desired::AgentReport>,
) -> ApiResult<Response> {
    app.store.report_agent(&scope, &id, &req).await?;
    Ok(no_content())
}

/// A gateway agent's per-EIP counters, VIP holders and programmed EIPs.
///
/// Only gateway agents report them (400 for a host agent); an agent token
/// reports for its own agent only (403 `agent_identity`).
#[utoipa::path(post, path = paths::AGENT_COUNTERS, tag = "agents", request_body = vpcip_model::desired::CountersReport,
    params(("id" = String, Path, description = "ID or name")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a tenant's token, or an agent token for another agent (`agent_identity`)"),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn report_counters(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
    Body(req): Body<vpcip_model::desired::CountersReport>,
) -> ApiResult<Response> {
    app.store.report_counters(&scope, &id, &req).await?;
    Ok(no_content())
}

/// An EIP's traffic over the last hour, per second, one point a sample
/// slot (a minute unless the controller says otherwise), from the
/// counters its gateways reported: bits, packets and limiter drops in
/// both directions.
#[utoipa::path(get, path = paths::EIP_TRAFFIC, tag = "eips",
    params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Vec<vpcip_model::desired::TrafficRate>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn eip_traffic(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(app.store.eip_traffic_history(&scope, &id).await?))
}

/// An EIP's packets and bytes in both directions, as its gateway counted
/// them.
#[utoipa::path(get, path = paths::EIP_COUNTERS, tag = "eips",
    params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = vpcip_model::desired::EipCounters), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn eip_counters(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(app.store.eip_counters(&scope, &id).await?))
}

/// Which NIC holds the VIP now, learned from the data plane (the router's
/// neighbour table: whoever answered ARP or sent gratuitous ARP for it).
#[utoipa::path(get, path = paths::VIP_HOLDER, tag = "vips",
    params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = vpcip_model::desired::VipHolding), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn vip_holder(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(app.store.vip_holding(&scope, &id).await?))
}

/// The agent's whole desired state once the store's revision passes
/// `after` (long poll): a full snapshot every time, so an agent that missed
/// anything converges on the next answer.
///
/// An agent token reads its own agent's only (403 `agent_identity`).
#[utoipa::path(get, path = paths::AGENT_DESIRED, tag = "agents",
    params(("id" = String, Path, description = "ID or name"), WatchParams),
    responses((status = 200, body = vpcip_model::desired::Desired), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a tenant's token, or an agent token for another agent (`agent_identity`)"),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn watch_desired(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
    WatchQuery(w): WatchQuery,
) -> ApiResult<Response> {
    // Refused or unknown callers learn it at once, not after the wait.
    app.store.agent(&scope, &id).await?;
    let wait = std::time::Duration::from_secs(w.wait.unwrap_or(30).min(60));
    if let Some(after) = w.after {
        app.store.wait_for_revision(after, wait).await?;
    }
    Ok(ok(app.store.desired(&scope, &id).await?))
}

/// What the watch resumes from.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// The revision of the last batch the agent applied; absent (or too
    /// old for the controller's history) for a snapshot.
    pub revision: Option<i64>,
    /// Seconds to wait for a change (0 to 60, default 30); an empty batch
    /// at the current revision when the wait ends.
    pub wait: Option<u64>,
}

/// The agent's desired state as keyed entries: a snapshot (`reset`) when
/// `revision` is absent or older than the controller keeps, then only the
/// entries that changed since `revision`, as soon as one of them does
/// (long poll). Writes that do not concern this agent do not wake it. Any
/// controller on the same database resumes any agent's revision.
///
/// An agent token reads its own agent's only (403 `agent_identity`).
#[utoipa::path(get, path = paths::AGENT_WATCH, tag = "agents",
    params(("id" = String, Path, description = "ID or name"), ChangesParams),
    responses((status = 200, body = vpcip_model::desired::WatchBatch), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a tenant's token, or an agent token for another agent (`agent_identity`)"),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody, description = "the controller is still loading (`not_ready`)")),
    security(("bearer" = [])))]
pub async fn watch_changes(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<ChangesParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let q = query
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?
        .0;
    let wait = std::time::Duration::from_secs(q.wait.unwrap_or(30).min(60));
    Ok(ok(app
        .store
        .watch_agent(&scope, &id, q.revision, wait)
        .await?))
}

/// Watch parameters whose rejections are API errors.
pub struct WatchQuery(pub WatchParams);

impl FromRequestParts<App> for WatchQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        axum::extract::Query::<WatchParams>::from_request_parts(parts, app)
            .await
            .map(|q| WatchQuery(q.0))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// The system at a glance: the revision, each agent's health and lag, and
/// the EIPs whose data plane differs from the desired state (operator).
#[utoipa::path(get, path = paths::STATUS, tag = "agents",
    responses((status = 200, body = vpcip_model::desired::SystemStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn system_status(State(app): State<App>, Caller(scope): Caller) -> ApiResult<Response> {
    Ok(ok(app.store.status(&scope).await?))
}
