//! HTTP entry points: parse, authenticate, call one store operation, answer.
//! No rule lives here.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::{IntoParams, ToSchema};
use vpcip_model::*;

use crate::App;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

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

/// `list_*` and `show_*` for a resource kind.
macro_rules! read_routes {
    ($list:ident, $show:ident, $ty:ty, $page:ty, $path:expr, $item_path:expr, $tag:literal) => {
        #[utoipa::path(get, path = $path, tag = $tag, params(ListParams),
            responses((status = 200, body = $page), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
                (status = 404, body = ErrorBody, description = "the parent named is not there")),
            security(("bearer" = [])))]
        pub async fn $list(State(app): State<App>, Caller(scope): Caller, Params(p): Params) -> ApiResult<Response> {
            let page = app
                .store
                .list::<$ty>(&scope, p.parent.as_deref(), p.page_token.as_deref(), p.limit)
                .await?;
            Ok(ok(page))
        }

        #[utoipa::path(get, path = $item_path, tag = $tag, params(("id" = String, Path, description = "ID or name")),
            responses((status = 200, body = $ty), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
            security(("bearer" = [])))]
        pub async fn $show(State(app): State<App>, Caller(scope): Caller, Path(id): Path<String>) -> ApiResult<Response> {
            Ok(ok(app.store.show::<$ty>(&scope, &id).await?))
        }
    };
}

read_routes!(
    list_zones,
    show_zone,
    Zone,
    Page<Zone>,
    paths::ZONES,
    paths::ZONE,
    "zones"
);
read_routes!(
    list_host_networks,
    show_host_network,
    HostNetwork,
    Page<HostNetwork>,
    paths::HOST_NETWORKS,
    paths::HOST_NETWORK,
    "platform"
);
read_routes!(
    list_gateways,
    show_gateway,
    Gateway,
    Page<Gateway>,
    paths::GATEWAYS,
    paths::GATEWAY,
    "platform"
);
read_routes!(
    list_vpcs,
    show_vpc,
    Vpc,
    Page<Vpc>,
    paths::VPCS,
    paths::VPC,
    "vpcs"
);
read_routes!(
    list_subnets,
    show_subnet,
    Subnet,
    Page<Subnet>,
    paths::SUBNETS,
    paths::SUBNET,
    "subnets"
);
read_routes!(
    list_security_groups,
    show_security_group,
    SecurityGroup,
    Page<SecurityGroup>,
    paths::SECURITY_GROUPS,
    paths::SECURITY_GROUP,
    "security-groups"
);
read_routes!(
    list_servers,
    show_server,
    Server,
    Page<Server>,
    paths::SERVERS,
    paths::SERVER,
    "servers"
);
read_routes!(
    list_nics,
    show_nic,
    Nic,
    Page<Nic>,
    paths::NICS,
    paths::NIC,
    "nics"
);
read_routes!(
    list_vips,
    show_vip,
    Vip,
    Page<Vip>,
    paths::VIPS,
    paths::VIP,
    "vips"
);
read_routes!(
    list_eips,
    show_eip,
    Eip,
    Page<Eip>,
    paths::EIPS,
    paths::EIP,
    "eips"
);

/// `delete_*` for a resource kind, through the store's own delete.
macro_rules! delete_route {
    ($(#[$doc:meta])* $name:ident, $store_fn:ident, $item_path:expr, $tag:literal) => {
        $(#[$doc])*
        #[utoipa::path(delete, path = $item_path, tag = $tag, params(("id" = String, Path, description = "ID or name")),
            responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
                (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
            security(("bearer" = [])))]
        pub async fn $name(State(app): State<App>, Caller(scope): Caller, Path(id): Path<String>) -> ApiResult<Response> {
            app.store.$store_fn(&scope, &id).await?;
            Ok(no_content())
        }
    };
}

delete_route!(delete_zone, delete_zone, paths::ZONE, "zones");
delete_route!(
    /// Deletes a host network.
    ///
    /// Refused (409 `resource_in_use`, naming them) while a gateway's or an
    /// agent's underlay address lies in it and in no other host network.
    delete_host_network,
    delete_host_network,
    paths::HOST_NETWORK,
    "platform"
);

#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct DeleteGatewayParams {
    /// Delete the last gateway even while EIPs are bound (they are then
    /// routed to no one).
    pub force: Option<bool>,
}

/// Deletes a gateway.
///
/// The last gateway while EIPs are bound is refused (409 `last_gateway`)
/// unless `force=true`: the EIPs would be routed to no one.
#[utoipa::path(delete, path = paths::GATEWAY, tag = "platform",
    params(("id" = String, Path, description = "ID or name"), DeleteGatewayParams),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`last_gateway`: the last gateway while EIPs are bound, without `force=true`")),
    security(("bearer" = [])))]
pub async fn delete_gateway(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
    Query(q): Query<DeleteGatewayParams>,
) -> ApiResult<Response> {
    app.store
        .delete_gateway(&scope, &id, q.force.unwrap_or(false))
        .await?;
    Ok(no_content())
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
delete_route!(delete_vpc, delete_vpc, paths::VPC, "vpcs");
delete_route!(delete_subnet, delete_subnet, paths::SUBNET, "subnets");
delete_route!(
    delete_security_group,
    delete_security_group,
    paths::SECURITY_GROUP,
    "security-groups"
);
delete_route!(delete_server, delete_server, paths::SERVER, "servers");
delete_route!(delete_nic, delete_nic, paths::NIC, "nics");
delete_route!(delete_vip, delete_vip, paths::VIP, "vips");
delete_route!(release_eip, release_eip, paths::EIP, "eips");
delete_route!(delete_token, delete_token, paths::TOKEN, "platform");

/// `create_*` for a resource kind: one body in, the resource out (201).
macro_rules! create_route {
    ($(#[$doc:meta])* $name:ident, $store_fn:ident, $req:ty, $resp:ty, $path:expr, $tag:literal) => {
        $(#[$doc])*
        #[utoipa::path(post, path = $path, tag = $tag, request_body = $req,
            responses((status = 201, body = $resp), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
                (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
            security(("bearer" = [])))]
        pub async fn $name(State(app): State<App>, Caller(scope): Caller, Body(req): Body<$req>) -> ApiResult<Response> {
            Ok(created(app.store.$store_fn(&scope, &req).await?))
        }
    };
}

create_route!(
    create_zone,
    create_zone,
    CreateZone,
    Zone,
    paths::ZONES,
    "zones"
);
create_route!(
    create_host_network,
    create_host_network,
    CreateHostNetwork,
    HostNetwork,
    paths::HOST_NETWORKS,
    "platform"
);
create_route!(
    /// Registers a gateway by its underlay address.
    ///
    /// The address must be a free unicast address of a registered host
    /// network, outside the EIP segments (400 `underlay_reserved`,
    /// `underlay_in_eip_segment`, `underlay_outside_host_networks`; 409
    /// `underlay_in_use`).
    create_gateway,
    create_gateway,
    CreateGateway,
    Gateway,
    paths::GATEWAYS,
    "platform"
);
create_route!(create_vpc, create_vpc, CreateVpc, Vpc, paths::VPCS, "vpcs");
create_route!(
    create_subnet,
    create_subnet,
    CreateSubnet,
    SubnetCreated,
    paths::SUBNETS,
    "subnets"
);
create_route!(
    create_security_group,
    create_security_group,
    CreateSecurityGroup,
    SecurityGroup,
    paths::SECURITY_GROUPS,
    "security-groups"
);
create_route!(
    create_server,
    create_server,
    CreateServer,
    Server,
    paths::SERVERS,
    "servers"
);
create_route!(create_nic, create_nic, CreateNic, Nic, paths::NICS, "nics");
create_route!(create_vip, create_vip, CreateVip, Vip, paths::VIPS, "vips");
create_route!(create_eip, create_eip, CreateEip, Eip, paths::EIPS, "eips");
create_route!(
    create_visible_eip,
    create_visible_eip,
    CreateVisibleEip,
    VisibleEip,
    paths::EIPS_VISIBLE,
    "eips"
);
create_route!(
    /// Makes a tenant's token, or an agent's.
    ///
    /// An agent's token (`agent: true` with `agent_role`) acts for the one
    /// agent named `tenant`, with that role, on the agent routes only. The
    /// secret is in this answer only.
    create_token,
    create_token,
    CreateToken,
    Token,
    paths::TOKENS,
    "platform"
);

/// An action on one resource: `POST {path}` with a body, the resource out.
macro_rules! action_route {
    ($name:ident, $method:ident, $path:expr, $tag:literal, $req:ty, $resp:ty, |$app:ident, $scope:ident, $id:ident, $body:ident| $call:expr) => {
        #[utoipa::path($method, path = $path, tag = $tag, request_body = $req,
            params(("id" = String, Path, description = "ID or name")),
            responses((status = 200, body = $resp), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
                (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
            security(("bearer" = [])))]
        pub async fn $name(State($app): State<App>, Caller($scope): Caller, Path($id): Path<String>, Body($body): Body<$req>) -> ApiResult<Response> {
            Ok(ok($call.await?))
        }
    };
}

action_route!(
    add_vpc_cidr,
    post,
    paths::VPC_ADD_CIDR,
    "vpcs",
    VpcCidrChange,
    Vpc,
    |app, scope, id, body| app.store.add_vpc_cidr(&scope, &id, body.cidr)
);
action_route!(
    remove_vpc_cidr,
    post,
    paths::VPC_REMOVE_CIDR,
    "vpcs",
    VpcCidrChange,
    Vpc,
    |app, scope, id, body| app.store.remove_vpc_cidr(&scope, &id, body.cidr)
);
action_route!(
    update_gateway,
    patch,
    paths::GATEWAY,
    "platform",
    UpdateGateway,
    Gateway,
    |app, scope, id, body| app.store.update_gateway(&scope, &id, &body)
);
action_route!(
    update_subnet,
    patch,
    paths::SUBNET,
    "subnets",
    UpdateSubnet,
    Subnet,
    |app, scope, id, body| app.store.update_subnet(&scope, &id, &body)
);
action_route!(
    update_nic,
    patch,
    paths::NIC,
    "nics",
    UpdateNic,
    Nic,
    |app, scope, id, body| app.store.update_nic(&scope, &id, &body)
);
action_route!(
    attach_nic,
    post,
    paths::NIC_ATTACH,
    "nics",
    AttachNic,
    Nic,
    |app, scope, id, body| app.store.attach_nic(&scope, &id, &body.server)
);
action_route!(
    bind_vip,
    post,
    paths::VIP_BIND,
    "vips",
    VipNic,
    WithWarnings<Vip>,
    |app, scope, id, body| app.store.bind_vip(&scope, &id, &body.nic)
);
action_route!(
    unbind_vip,
    post,
    paths::VIP_UNBIND,
    "vips",
    VipNic,
    Vip,
    |app, scope, id, body| app.store.unbind_vip(&scope, &id, &body.nic)
);
action_route!(
    bind_eip,
    post,
    paths::EIP_BIND,
    "eips",
    BindEip,
    Eip,
    |app, scope, id, body| app.store.bind_eip(&scope, &id, &body)
);
action_route!(
    update_eip,
    patch,
    paths::EIP,
    "eips",
    UpdateEip,
    Eip,
    |app, scope, id, body| app.store.update_eip(&scope, &id, &body)
);

#[utoipa::path(post, path = paths::NIC_DETACH, tag = "nics", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Nic), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn detach_nic(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(app.store.detach_nic(&scope, &id).await?))
}

#[utoipa::path(post, path = paths::EIP_UNBIND, tag = "eips", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Eip), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn unbind_eip(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(app.store.unbind_eip(&scope, &id).await?))
}

#[utoipa::path(get, path = paths::SERVER_NICS, tag = "servers", params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = Vec<Nic>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn server_nics(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(app.store.server_nics(&scope, &id).await?))
}

#[utoipa::path(get, path = paths::PHYSICAL_ROUTES, tag = "platform",
    responses((status = 200, body = Vec<PhysicalRoute>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn physical_routes(State(app): State<App>, Caller(scope): Caller) -> ApiResult<Response> {
    Ok(ok(app.store.physical_routes(&scope).await?))
}

#[utoipa::path(get, path = paths::TOKENS, tag = "platform",
    responses((status = 200, body = Vec<Token>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tokens(State(app): State<App>, Caller(scope): Caller) -> ApiResult<Response> {
    Ok(ok(app.store.list_tokens(&scope).await?))
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

// ---- agents ----

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

/// The system at a glance: the revision, each agent's health and lag, and
/// the EIPs whose data plane differs from the desired state (operator).
#[utoipa::path(get, path = paths::STATUS, tag = "agents",
    responses((status = 200, body = vpcip_model::desired::SystemStatus), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn system_status(State(app): State<App>, Caller(scope): Caller) -> ApiResult<Response> {
    Ok(ok(app.store.status(&scope).await?))
}
