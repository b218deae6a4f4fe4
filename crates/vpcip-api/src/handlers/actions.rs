//! Actions and updates on one resource, and the one-off reads: a server's
//! NICs, the physical routes, the tokens.

use axum::extract::{Path, State};
use axum::response::Response;
use vpcip_model::*;

use super::{ApiResult, Body, ok};
use crate::App;
use crate::auth::Caller;
use crate::error::ErrorBody;

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
