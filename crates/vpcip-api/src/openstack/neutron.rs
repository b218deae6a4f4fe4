//! Neutron v2.0: floating IPs (vpcip's EIPs) read and written, and the
//! networks, subnets and ports they name, read-only. A network is a vpcip
//! subnet (its L2 segment; `router:external` for an EIP segment, the
//! floating IPs' `floating_network_id`); a Neutron subnet is the same
//! subnet's addressing; a port is a NIC. A floating IP's `router_id` is
//! its VPC (whose router it passes), its `description` the EIP's name.
//! Everything goes through the store's own operations and rules.

use std::collections::{BTreeSet, HashMap};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use vpcip_model::*;

use super::{OsCaller, OsError, all, api, base_url, matches, query_pairs, rfc3339};
use crate::App;
use crate::error::ApiError;

/// The bandwidth of a floating IP made through Neutron, which has no such
/// field: change it with `vpcip eip update --bandwidth`.
pub const FLOATING_IP_MBPS: u32 = crate::ec2::ADDRESS_MBPS;

pub(super) fn routes() -> Router<App> {
    Router::new()
        // The root: Neutron's versions; EC2's actions are POSTed there.
        .route("/", get(versions).post(crate::ec2::handle))
        .route("/v2.0", get(resources))
        .route("/v2.0/", get(resources))
        .route("/v2.0/networks", get(list_networks))
        .route("/v2.0/networks/{id}", get(show_network))
        .route("/v2.0/subnets", get(list_subnets))
        .route("/v2.0/subnets/{id}", get(show_subnet))
        .route("/v2.0/ports", get(list_ports))
        .route("/v2.0/ports/{id}", get(show_port))
        .route("/v2.0/floatingips", get(list_fips).post(create_fip))
        .route(
            "/v2.0/floatingips/{id}",
            get(show_fip).put(update_fip).delete(delete_fip),
        )
}

type Answer = Result<Response, OsError>;

async fn caller(app: &App, headers: &HeaderMap, kind: &str) -> Result<OsCaller, OsError> {
    OsCaller::from_headers(headers, app)
        .await
        .map_err(|e| OsError::neutron(e, kind))
}

fn one(key: &str, v: Value) -> Response {
    axum::Json(json!({ key: v })).into_response()
}

async fn versions(State(app): State<App>, headers: HeaderMap) -> Response {
    let base = base_url(&app, &headers);
    axum::Json(json!({"versions": [{"id": "v2.0", "status": "CURRENT",
        "links": [{"rel": "self", "href": format!("{base}/v2.0/")}]}]}))
    .into_response()
}

async fn resources(State(app): State<App>, headers: HeaderMap) -> Response {
    let base = base_url(&app, &headers);
    let r = |name: &str, coll: &str| {
        json!({"name": name, "collection": coll,
            "links": [{"rel": "self", "href": format!("{base}/v2.0/{coll}")}]})
    };
    axum::Json(json!({"resources": [
        r("floatingip", "floatingips"), r("network", "networks"),
        r("subnet", "subnets"), r("port", "ports"),
    ]}))
    .into_response()
}

// ---- networks and subnets (vpcip subnets) ----

fn network(s: &Subnet) -> Value {
    let external = s.kind == SubnetKind::Eip;
    json!({
        "id": s.id, "name": s.name, "status": "ACTIVE", "admin_state_up": true,
        "shared": external, "router:external": external, "subnets": [s.id],
        "mtu": 1450, "project_id": s.tenant, "tenant_id": s.tenant,
        "description": "", "tags": [], "port_security_enabled": true,
        "availability_zones": s.zone_id.iter().collect::<Vec<_>>(),
        "provider:network_type": "vxlan", "provider:segmentation_id": s.vni,
    })
}

fn subnet(s: &Subnet) -> Value {
    json!({
        "id": s.id, "name": s.name, "network_id": s.id, "ip_version": 4,
        "cidr": s.cidr.to_string(), "gateway_ip": s.gateway.map(|g| g.to_string()),
        "allocation_pools": [{"start": s.range_start.to_string(), "end": s.range_end.to_string()}],
        "enable_dhcp": s.kind != SubnetKind::Eip,
        "dns_nameservers": s.dns_servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "host_routes": [], "project_id": s.tenant, "tenant_id": s.tenant,
        "description": "", "tags": [],
    })
}

async fn list_networks(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Answer {
    let c = caller(&app, &headers, "Network").await?;
    let q = query_pairs(uri.query());
    let subnets = all::<Subnet>(&app, &c.0)
        .await
        .map_err(|e| OsError::neutron(e, "Network"))?;
    let items: Vec<Value> = subnets
        .iter()
        .filter(|s| {
            let external = if s.kind == SubnetKind::Eip {
                "true"
            } else {
                "false"
            };
            matches(&q, "router:external", Some(external))
                && matches(&q, "id", Some(&s.id))
                && matches(&q, "name", Some(&s.name))
                && matches(&q, "project_id", Some(&s.tenant))
                && matches(&q, "tenant_id", Some(&s.tenant))
        })
        .map(network)
        .collect();
    Ok(one("networks", Value::Array(items)))
}

async fn list_subnets(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Answer {
    let c = caller(&app, &headers, "Subnet").await?;
    let q = query_pairs(uri.query());
    let subnets = all::<Subnet>(&app, &c.0)
        .await
        .map_err(|e| OsError::neutron(e, "Subnet"))?;
    let items: Vec<Value> = subnets
        .iter()
        .filter(|s| {
            matches(&q, "id", Some(&s.id))
                && matches(&q, "name", Some(&s.name))
                && matches(&q, "network_id", Some(&s.id))
                && matches(&q, "cidr", Some(&s.cidr.to_string()))
        })
        .map(subnet)
        .collect();
    Ok(one("subnets", Value::Array(items)))
}

// ---- ports (NICs) ----

fn port(n: &Nic) -> Value {
    json!({
        "id": n.id, "name": n.name, "network_id": n.subnet_id, "mac_address": n.mac,
        "fixed_ips": [{"subnet_id": n.subnet_id, "ip_address": n.ip.to_string()}],
        "device_id": n.server_id.clone().unwrap_or_default(),
        "device_owner": if n.server_id.is_some() { "compute:nova" } else { "" },
        "status": if n.server_id.is_some() { "ACTIVE" } else { "DOWN" },
        "admin_state_up": true, "port_security_enabled": n.source_dest_check,
        "security_groups": n.security_group_ids,
        "allowed_address_pairs": [], "binding:vnic_type": "normal",
        "project_id": n.tenant, "tenant_id": n.tenant, "description": "", "tags": [],
    })
}

async fn list_ports(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Answer {
    let c = caller(&app, &headers, "Port").await?;
    let q = query_pairs(uri.query());
    let nics = all::<Nic>(&app, &c.0)
        .await
        .map_err(|e| OsError::neutron(e, "Port"))?;
    let items: Vec<Value> = nics
        .iter()
        .filter(|n| {
            matches(&q, "id", Some(&n.id))
                && matches(&q, "name", Some(&n.name))
                && matches(&q, "device_id", n.server_id.as_deref())
                && matches(&q, "network_id", Some(&n.subnet_id))
                && matches(&q, "mac_address", Some(&n.mac))
        })
        .map(port)
        .collect();
    Ok(one("ports", Value::Array(items)))
}

/// One item by ID or name, as `render` shows it; `kind` names it in a
/// 404 (`NetworkNotFound`).
async fn show_one<R: vpcip_store::Resource>(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    kind: &str,
    key: &str,
    render: fn(&R) -> Value,
) -> Answer {
    let c = caller(app, headers, kind).await?;
    let item: R = app
        .store
        .show(&c.0, id)
        .await
        .map_err(|e| OsError::neutron(api(e), kind))?;
    Ok(one(key, render(&item)))
}

async fn show_network(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    show_one::<Subnet>(&app, &headers, &id, "Network", "network", network).await
}

async fn show_subnet(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    show_one::<Subnet>(&app, &headers, &id, "Subnet", "subnet", subnet).await
}

async fn show_port(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    show_one::<Nic>(&app, &headers, &id, "Port", "port", port).await
}

// ---- floating IPs (EIPs) ----

/// What a floating IP's answer needs besides the EIP: whether a gateway
/// has it programmed, and when it was made.
struct FipContext {
    programmed: BTreeSet<std::net::Ipv4Addr>,
    created: HashMap<String, i64>,
}

impl FipContext {
    /// For a list: every programmed EIP and creation time.
    async fn read(app: &App) -> Result<Self, OsError> {
        let err = |e| OsError::neutron(api(e), "FloatingIP");
        Ok(FipContext {
            programmed: app.store.programmed_eips().await.map_err(err)?,
            created: app.store.created_times::<Eip>().await.map_err(err)?,
        })
    }

    /// For one EIP: its own facts only.
    async fn of(app: &App, e: &Eip) -> Result<Value, OsError> {
        let (programmed, created) = app
            .store
            .eip_facts(e)
            .await
            .map_err(|err| OsError::neutron(api(err), "FloatingIP"))?;
        let ctx = FipContext {
            programmed: programmed.then_some(e.ip).into_iter().collect(),
            created: created.map(|t| (e.id.clone(), t)).into_iter().collect(),
        };
        Ok(ctx.fip(e))
    }

    fn fip(&self, e: &Eip) -> Value {
        let status = if e.is_bound() && self.programmed.contains(&e.ip) {
            "ACTIVE"
        } else {
            "DOWN"
        };
        let at = self
            .created
            .get(&e.id)
            .and_then(|t| u64::try_from(*t).ok())
            .map(rfc3339);
        json!({
            "id": e.id, "floating_ip_address": e.ip.to_string(),
            "floating_network_id": e.subnet_id,
            "port_id": e.target_id(),
            "fixed_ip_address": e.private_ip().map(|p| p.to_string()),
            "router_id": e.vpc_id(), "status": status,
            "project_id": e.tenant, "tenant_id": e.tenant,
            "description": e.name, "tags": [], "port_details": null,
            "qos_policy_id": null, "dns_domain": "", "dns_name": "",
            "port_forwardings": [], "revision_number": 0,
            "created_at": at, "updated_at": at,
        })
    }
}

async fn list_fips(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Answer {
    let c = caller(&app, &headers, "FloatingIP").await?;
    let q = query_pairs(uri.query());
    let eips = all::<Eip>(&app, &c.0)
        .await
        .map_err(|e| OsError::neutron(e, "FloatingIP"))?;
    let ctx = FipContext::read(&app).await?;
    let items: Vec<Value> = eips
        .iter()
        .map(|e| ctx.fip(e))
        .filter(|f| {
            [
                "id",
                "floating_ip_address",
                "floating_network_id",
                "port_id",
                "fixed_ip_address",
                "router_id",
                "status",
                "project_id",
                "tenant_id",
                "description",
            ]
            .iter()
            .all(|k| matches(&q, k, f[*k].as_str()))
        })
        .collect();
    Ok(one("floatingips", Value::Array(items)))
}

async fn show_fip(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let c = caller(&app, &headers, "FloatingIP").await?;
    let e: Eip = app
        .store
        .show(&c.0, &id)
        .await
        .map_err(|e| OsError::neutron(api(e), "FloatingIP"))?;
    Ok(one("floatingip", FipContext::of(&app, &e).await?))
}

#[derive(Deserialize)]
struct FipBody<T> {
    floatingip: T,
}

#[derive(Deserialize)]
struct NewFip {
    floating_network_id: String,
    #[serde(default)]
    floating_ip_address: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    port_id: Option<String>,
    #[serde(default)]
    fixed_ip_address: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct FipChange {
    #[serde(default, deserialize_with = "vpcip_model::present")]
    port_id: Option<Option<String>>,
    #[serde(default)]
    fixed_ip_address: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    description: Option<String>,
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, OsError> {
    serde_json::from_slice::<FipBody<T>>(bytes)
        .map(|b| b.floatingip)
        .map_err(|e| {
            OsError::neutron(
                ApiError::bad_request("invalid_argument", format!("Bad floatingip request: {e}")),
                "FloatingIP",
            )
        })
}

/// The NIC `port` names, checked against the `fixed_ip_address` asked (a
/// NIC has one address).
async fn port_target(
    app: &App,
    c: &OsCaller,
    port: &str,
    fixed: Option<std::net::Ipv4Addr>,
) -> Result<EipTarget, OsError> {
    let nic: Nic = app
        .store
        .show(&c.0, port)
        .await
        .map_err(|e| OsError::neutron(api(e), "Port"))?;
    if let Some(f) = fixed
        && f != nic.ip
    {
        return Err(OsError::neutron(
            ApiError::bad_request(
                "invalid_argument",
                format!(
                    "Bad floatingip request: port {} has no fixed IP {f} (its address is {})",
                    nic.id, nic.ip
                ),
            ),
            "FloatingIP",
        ));
    }
    Ok(EipTarget::Nic(nic.id))
}

async fn create_fip(
    State(app): State<App>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Answer {
    let c = caller(&app, &headers, "FloatingIP").await?;
    let req: NewFip = body(&bytes)?;
    let bind = match &req.port_id {
        Some(p) => Some(BindEip {
            target: match req.fixed_ip_address {
                Some(_) => port_target(&app, &c, p, req.fixed_ip_address).await?,
                // The store resolves and checks the port in the same
                // transaction as the allocation.
                None => EipTarget::Nic(p.clone()),
            },
            mode: EipMode::Nat,
            allow_reassociation: false,
        }),
        None => None,
    };
    let eip = app
        .store
        .create_eip(
            &c.0,
            &CreateEip {
                name: req.description.filter(|d| !d.is_empty()),
                // The store checks it is an EIP segment ("external").
                subnet: Some(req.floating_network_id),
                ip: req.floating_ip_address,
                bandwidth_mbps: FLOATING_IP_MBPS,
                bind,
                algs: vec![],
                client_token: None,
            },
        )
        .await
        .map_err(|e| OsError::neutron(api(e), "FloatingIP"))?;
    let fip = FipContext::of(&app, &eip).await?;
    Ok((StatusCode::CREATED, one("floatingip", fip)).into_response())
}

async fn update_fip(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Answer {
    let c = caller(&app, &headers, "FloatingIP").await?;
    let req: FipChange = body(&bytes)?;
    let err = |e| OsError::neutron(api(e), "FloatingIP");
    let mut eip: Eip = app.store.show(&c.0, &id).await.map_err(err)?;
    if let Some(d) = req.description.as_deref()
        && d != eip.name
    {
        return Err(OsError::neutron(
            ApiError::bad_request(
                "invalid_argument",
                "Bad floatingip request: a floating IP's description is its EIP's name, set when it is made",
            ),
            "FloatingIP",
        ));
    }
    match req.port_id {
        // Neutron moves a floating IP without asking for a flag.
        Some(Some(port)) => {
            let target = port_target(&app, &c, &port, req.fixed_ip_address).await?;
            let bind = BindEip {
                target,
                mode: eip.mode(),
                allow_reassociation: true,
            };
            eip = app
                .store
                .bind_eip(&c.0, &eip.id, &bind)
                .await
                .map_err(err)?;
        }
        Some(None) if eip.is_bound() => {
            eip = app.store.unbind_eip(&c.0, &eip.id).await.map_err(err)?;
        }
        _ => {}
    }
    Ok(one("floatingip", FipContext::of(&app, &eip).await?))
}

async fn delete_fip(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let c = caller(&app, &headers, "FloatingIP").await?;
    app.store
        .unbind_and_release_eip(&c.0, &id)
        .await
        .map_err(|e| OsError::neutron(api(e), "FloatingIP"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
