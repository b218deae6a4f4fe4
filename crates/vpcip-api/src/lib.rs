//! vpcip's REST API: resource-oriented JSON over HTTP, bearer-token
//! tenants, an OpenAPI document at `/openapi.json`.

pub mod auth;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod security_groups;
pub mod tls;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use vpcip_store::{Store, token_hash};

use handlers::*;
use security_groups::*;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct App {
    pub store: Store,
    /// SHA-256 of the operator's token; no operator access when absent.
    pub operator_token_hash: Option<String>,
    pub metrics: std::sync::Arc<metrics::ApiMetrics>,
}

impl App {
    pub fn new(store: Store, operator_token: Option<&str>) -> Self {
        App {
            store,
            operator_token_hash: operator_token.filter(|t| !t.is_empty()).map(token_hash),
            metrics: Default::default(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "vpcip", description = "Elastic IPs and Virtual IPs for private clouds."),
    paths(
        healthz, physical_routes, list_tokens, create_token, delete_token,
        list_zones, show_zone, create_zone, delete_zone,
        list_host_networks, show_host_network, create_host_network, delete_host_network,
        list_gateways, show_gateway, create_gateway, delete_gateway, update_gateway,
        list_vpcs, show_vpc, create_vpc, delete_vpc, add_vpc_cidr, remove_vpc_cidr,
        list_subnets, show_subnet, create_subnet, delete_subnet, update_subnet,
        list_security_groups, show_security_group, create_security_group, delete_security_group,
        add_sg_rules, remove_sg_rule, nic_drops,
        list_servers, show_server, create_server, delete_server, server_nics,
        list_nics, show_nic, create_nic, delete_nic, update_nic, attach_nic, detach_nic,
        list_vips, show_vip, create_vip, delete_vip, bind_vip, unbind_vip,
        list_eips, show_eip, create_eip, create_visible_eip, release_eip, bind_eip, unbind_eip, update_eip,
        register_agent, list_agents, report_agent, report_counters, eip_counters, vip_holder, watch_desired,
        system_status,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document as served and as committed (`openapi.json`).
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default() + "\n"
}

pub fn router(app: App) -> Router {
    let doc = openapi_json();
    let metrics = app.metrics.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .route("/v1/status", get(system_status))
        .route(
            "/openapi.json",
            get(move || async move { ([("content-type", "application/json")], doc) }),
        )
        .route("/v1/physical-routes", get(physical_routes))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", axum::routing::delete(delete_token))
        .route("/v1/zones", get(list_zones).post(create_zone))
        .route("/v1/zones/{id}", get(show_zone).delete(delete_zone))
        .route(
            "/v1/host-networks",
            get(list_host_networks).post(create_host_network),
        )
        .route(
            "/v1/host-networks/{id}",
            get(show_host_network).delete(delete_host_network),
        )
        .route("/v1/gateways", get(list_gateways).post(create_gateway))
        .route(
            "/v1/gateways/{id}",
            get(show_gateway)
                .delete(delete_gateway)
                .patch(update_gateway),
        )
        .route("/v1/vpcs", get(list_vpcs).post(create_vpc))
        .route("/v1/vpcs/{id}", get(show_vpc).delete(delete_vpc))
        .route("/v1/vpcs/{id}/add-cidr", post(add_vpc_cidr))
        .route("/v1/vpcs/{id}/remove-cidr", post(remove_vpc_cidr))
        .route("/v1/subnets", get(list_subnets).post(create_subnet))
        .route(
            "/v1/subnets/{id}",
            get(show_subnet).delete(delete_subnet).patch(update_subnet),
        )
        .route(
            "/v1/security-groups",
            get(list_security_groups).post(create_security_group),
        )
        .route(
            "/v1/security-groups/{id}",
            get(show_security_group).delete(delete_security_group),
        )
        .route("/v1/security-groups/{id}/rules", post(add_sg_rules))
        .route("/v1/nics/{id}/drops", get(nic_drops))
        .route(
            "/v1/security-groups/{id}/rules/{rule}",
            axum::routing::delete(remove_sg_rule),
        )
        .route("/v1/servers", get(list_servers).post(create_server))
        .route("/v1/servers/{id}", get(show_server).delete(delete_server))
        .route("/v1/servers/{id}/nics", get(server_nics))
        .route("/v1/nics", get(list_nics).post(create_nic))
        .route(
            "/v1/nics/{id}",
            get(show_nic).delete(delete_nic).patch(update_nic),
        )
        .route("/v1/nics/{id}/attach", post(attach_nic))
        .route("/v1/nics/{id}/detach", post(detach_nic))
        .route("/v1/vips", get(list_vips).post(create_vip))
        .route("/v1/vips/{id}", get(show_vip).delete(delete_vip))
        .route("/v1/vips/{id}/bind", post(bind_vip))
        .route("/v1/vips/{id}/unbind", post(unbind_vip))
        .route("/v1/eips", get(list_eips).post(create_eip))
        .route("/v1/eips/visible", post(create_visible_eip))
        .route(
            "/v1/eips/{id}",
            get(show_eip).delete(release_eip).patch(update_eip),
        )
        .route("/v1/eips/{id}/bind", post(bind_eip))
        .route("/v1/eips/{id}/unbind", post(unbind_eip))
        .route("/v1/agents", get(list_agents).post(register_agent))
        .route("/v1/agents/{id}/report", post(report_agent))
        .route("/v1/agents/{id}/counters", post(report_counters))
        .route("/v1/eips/{id}/counters", get(eip_counters))
        .route("/v1/vips/{id}/holder", get(vip_holder))
        .route("/v1/agents/{id}/desired", get(watch_desired))
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// Serves the API over TLS on `listener` until `shutdown` resolves.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
) -> std::io::Result<()> {
    axum::serve(tls::TlsListener::new(listener, config)?, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}
