//! Each resource kind's `list_*`, `show_*`, `create_*` and `delete_*`.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use vpcip_model::*;

use super::{ApiResult, Body, ListParams, Params, Query, created, no_content, ok};
use crate::App;
use crate::auth::Caller;
use crate::error::ErrorBody;

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
