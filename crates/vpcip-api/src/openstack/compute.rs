//! Nova's servers, the little `openstack port list --server NAME` asks: the
//! version document and a server by ID or name (vpcip's servers).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use vpcip_model::Server;

use super::{OsCaller, OsError, all, api, base_url, matches, query_pairs};
use crate::App;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/compute/v2.1", get(version))
        .route("/compute/v2.1/", get(version))
        .route("/compute/v2.1/servers", get(list))
        .route("/compute/v2.1/servers/detail", get(list))
        .route("/compute/v2.1/servers/{id}", get(show))
}

async fn version(State(app): State<App>, headers: HeaderMap) -> Response {
    let base = base_url(&app, &headers);
    // No microversions: the clients then send none.
    axum::Json(json!({"version": {"id": "v2.1", "status": "CURRENT",
        "version": "", "min_version": "", "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/compute/v2.1/")}]}}))
    .into_response()
}

fn server(s: &Server) -> Value {
    json!({"id": s.id, "name": s.name, "status": "ACTIVE",
        "tenant_id": s.tenant, "OS-EXT-AZ:availability_zone": s.zone_id,
        "metadata": {}, "links": []})
}

async fn list(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Result<Response, OsError> {
    let c = OsCaller::from_headers(&headers, &app)
        .await
        .map_err(OsError::nova)?;
    let q = query_pairs(uri.query());
    let servers = all::<Server>(&app, &c.0).await.map_err(OsError::nova)?;
    let items: Vec<Value> = servers
        .iter()
        .filter(|s| matches(&q, "name", Some(&s.name)) && matches(&q, "id", Some(&s.id)))
        .map(server)
        .collect();
    Ok(axum::Json(json!({"servers": items})).into_response())
}

async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, OsError> {
    let c = OsCaller::from_headers(&headers, &app)
        .await
        .map_err(OsError::nova)?;
    let s: Server = app
        .store
        .show(&c.0, &id)
        .await
        .map_err(|e| OsError::nova(api(e)))?;
    Ok(axum::Json(json!({"server": server(&s)})).into_response())
}
