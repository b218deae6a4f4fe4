//! vpcip's REST API: resource-oriented JSON over HTTP, bearer-token
//! tenants, an OpenAPI document at `/openapi.json`.

pub mod auth;
pub mod console;
mod ec2;
pub mod error;
pub mod handlers;
pub mod metrics;
mod openstack;
pub mod security_groups;
pub mod tls;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodFilter, MethodRouter, get};
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
    /// Served over TLS (the OpenStack catalog's endpoints say https).
    pub tls: bool,
    /// The web console's sign-ins (this controller's memory).
    pub sessions: std::sync::Arc<console::Sessions>,
}

impl App {
    pub fn new(store: Store, operator_token: Option<&str>) -> Self {
        App {
            store,
            operator_token_hash: operator_token.filter(|t| !t.is_empty()).map(token_hash),
            metrics: Default::default(),
            tls: false,
            sessions: Default::default(),
        }
    }
}

/// Every operation of the API, each named once: its path and method are
/// those of its handler's OpenAPI annotation, so the router built from this
/// list (`router`) and the document (`ApiDoc`) cannot disagree.
macro_rules! operations {
    ($($handler:ident),* $(,)?) => {
        #[derive(OpenApi)]
        #[openapi(
            info(title = "vpcip", description = "Elastic IPs and Virtual IPs for private clouds."),
            paths($($handler),*),
            modifiers(&BearerAuth),
        )]
        pub struct ApiDoc;

        /// Each operation's handler by its operation ID (the handler's name).
        fn handlers() -> Vec<(&'static str, AddHandler)> {
            vec![$((stringify!($handler), |r, m| r.on(m, $handler))),*]
        }
    };
}

/// Adds a handler to a path's router for one method.
type AddHandler = fn(MethodRouter<App>, MethodFilter) -> MethodRouter<App>;

operations!(
    healthz,
    physical_routes,
    list_tokens,
    create_token,
    delete_token,
    list_zones,
    show_zone,
    create_zone,
    delete_zone,
    list_host_networks,
    show_host_network,
    create_host_network,
    delete_host_network,
    list_gateways,
    show_gateway,
    create_gateway,
    delete_gateway,
    update_gateway,
    list_vpcs,
    show_vpc,
    create_vpc,
    delete_vpc,
    add_vpc_cidr,
    remove_vpc_cidr,
    list_subnets,
    show_subnet,
    create_subnet,
    delete_subnet,
    update_subnet,
    list_security_groups,
    show_security_group,
    create_security_group,
    delete_security_group,
    add_sg_rules,
    remove_sg_rule,
    nic_drops,
    list_servers,
    show_server,
    create_server,
    delete_server,
    server_nics,
    list_nics,
    show_nic,
    create_nic,
    delete_nic,
    update_nic,
    attach_nic,
    detach_nic,
    list_vips,
    show_vip,
    create_vip,
    delete_vip,
    bind_vip,
    unbind_vip,
    list_eips,
    show_eip,
    create_eip,
    create_visible_eip,
    release_eip,
    bind_eip,
    unbind_eip,
    update_eip,
    register_agent,
    list_agents,
    report_agent,
    report_counters,
    eip_counters,
    eip_traffic,
    vip_holder,
    watch_desired,
    watch_changes,
    system_status,
);

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

/// The router of every operation `ApiDoc` documents, at its documented
/// path and method.
fn operation_routes() -> Router<App> {
    let handlers: std::collections::HashMap<&str, AddHandler> = handlers().into_iter().collect();
    let mut router = Router::new();
    for (path, item) in ApiDoc::openapi().paths.paths {
        let mut methods = MethodRouter::new();
        for (filter, operation) in [
            (MethodFilter::GET, &item.get),
            (MethodFilter::POST, &item.post),
            (MethodFilter::PUT, &item.put),
            (MethodFilter::PATCH, &item.patch),
            (MethodFilter::DELETE, &item.delete),
        ] {
            let Some(operation) = operation else { continue };
            let id = operation.operation_id.as_deref().unwrap_or_default();
            // Every documented operation comes from `operations!`, which
            // names its handler: a miss is a bug in this file, caught by
            // the router test.
            if let Some(add) = handlers.get(id) {
                methods = add(methods, filter);
            }
        }
        router = router.route(&path, methods);
    }
    router
}

pub fn router(app: App) -> Router {
    // Shared, not copied: the router's services are cloned per connection,
    // and a captured String (the document is ~240 KB) was copied with them.
    let doc = axum::body::Bytes::from(openapi_json());
    let metrics = app.metrics.clone();
    Router::new()
        .route("/metrics", get(metrics_page))
        .route(
            "/openapi.json",
            get(move || async move { ([("content-type", "application/json")], doc) }),
        )
        .merge(operation_routes())
        .merge(openstack::router())
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
    let app = App { tls: true, ..app };
    // The watch follows the change log from the start: agents failing
    // over from another controller resume their revision here.
    app.store.watch();
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
    app.store.watch();
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_operation_has_its_handler() {
        let handlers: std::collections::HashSet<&str> =
            handlers().into_iter().map(|(id, _)| id).collect();
        let mut documented = 0;
        for item in ApiDoc::openapi().paths.paths.values() {
            for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                let id = op.operation_id.as_deref().unwrap_or_default();
                assert!(handlers.contains(id), "{id} has no handler");
                documented += 1;
            }
        }
        assert_eq!(documented, handlers.len());
    }
}
