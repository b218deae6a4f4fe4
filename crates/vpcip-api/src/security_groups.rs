//! Rules added to and removed from a security group, live: the hosts
//! filter with the new rules as soon as their agents see the revision.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;
use vpcip_model::SecurityGroup;
use vpcip_model::SgRule;
use vpcip_model::paths;

use crate::App;
use crate::auth::Caller;
use crate::error::ErrorBody;
use crate::handlers::{ApiResult, Body};

/// Rules to add to a group (all or none).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSgRules {
    pub rules: Vec<SgRule>,
}

/// Adds rules to a security group.
///
/// Each rule is checked (400 `sg_rule_invalid` naming the rule: ports on
/// a protocol without ports, a range that can never match, a prefix with
/// host bits, a remote group outside the group's VPC, a rule the group
/// already has) and the group's rule limit holds (400 `sg_rule_limit`).
#[utoipa::path(post, path = paths::SECURITY_GROUP_RULES, tag = "security-groups",
    request_body = AddSgRules,
    params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = SecurityGroup), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_sg_rules(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
    Body(req): Body<AddSgRules>,
) -> ApiResult<Json<SecurityGroup>> {
    Ok(Json(app.store.add_sg_rules(&scope, &id, &req.rules).await?))
}

/// Removes one rule from a security group, by its ID (`sgr-…`) or as
/// written (`ingress:tcp:22:0.0.0.0%2F0`, URL-encoded).
///
/// Connections the rule let in are cut at once: the hosts forget the
/// tracked connections of the group's NICs that the remaining rules do
/// not allow.
#[utoipa::path(delete, path = paths::SECURITY_GROUP_RULE, tag = "security-groups",
    params(("id" = String, Path, description = "ID or name"), ("rule" = String, Path, description = "rule ID or the rule as written")),
    responses((status = 200, body = SecurityGroup), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_sg_rule(
    State(app): State<App>,
    Caller(scope): Caller,
    Path((id, rule)): Path<(String, String)>,
) -> ApiResult<Json<SecurityGroup>> {
    Ok(Json(app.store.remove_sg_rule(&scope, &id, &rule).await?))
}

/// Packets the NIC's security groups dropped (in: its ingress rules, out:
/// its egress rules), as its host agent last reported them.
#[utoipa::path(get, path = paths::NIC_DROPS, tag = "nics",
    params(("id" = String, Path, description = "ID or name")),
    responses((status = 200, body = vpcip_model::desired::NicDrops), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn nic_drops(
    State(app): State<App>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<vpcip_model::desired::NicDrops>> {
    Ok(Json(app.store.nic_drops(&scope, &id).await?))
}
