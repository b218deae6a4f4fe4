//! Server and NIC pages: servers (list, create, one server's NICs, attach
//! an ENI, delete) and NICs/ENIs (list, create, one NIC's page with its
//! security groups and source/destination check to change, the packets
//! its groups dropped, attach, detach, delete).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use vpcip_model::*;

use super::list::{self, ListQuery, Pager, holds};
use super::network::{opt_addr, some, words};
use super::session::{Posted, SignedIn};
use super::{Button, Frame, api_refusal, message, render_refused, split_error};
use crate::App;

#[derive(Template)]
#[template(path = "console/servers.html")]
struct ServersPage {
    frame: Frame,
    servers: Vec<Server>,
    pager: Pager,
    error: Option<String>,
}

async fn servers_page(app: &App, s: &SignedIn, q: &ListQuery, error: Option<String>) -> Response {
    let listed = list::page::<Server>(
        app,
        &s.scope,
        q,
        ("/ui/servers", "name, ID or host", "server(s)"),
        |v, n| holds(&[&v.name, &v.id, v.host.as_deref().unwrap_or("")], n),
    )
    .await;
    let (servers, pager) = match listed {
        Ok(l) => l,
        Err(e) => return api_refusal(e),
    };
    let refused = error.is_some();
    render_refused(
        &ServersPage {
            frame: Frame::of(s),
            servers,
            pager,
            error,
        },
        refused,
    )
}

pub(crate) async fn servers(
    State(app): State<App>,
    s: SignedIn,
    Query(q): Query<ListQuery>,
) -> Response {
    servers_page(&app, &s, &q, None).await
}

#[derive(Deserialize)]
pub(crate) struct ServerForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    ip: String,
    /// Comma-separated IDs or names; the VPC's default group when empty.
    #[serde(default)]
    security_groups: String,
    #[serde(default)]
    host: String,
}

pub(crate) async fn create_server(
    State(app): State<App>,
    Posted { signed: s, form: f }: Posted<ServerForm>,
) -> Response {
    let made = match opt_addr("ip", &f.ip) {
        Ok(ip) => app
            .store
            .create_server(
                &s.scope,
                &CreateServer {
                    name: f.name.trim().to_string(),
                    subnet: f.subnet.trim().to_string(),
                    ip,
                    security_groups: words(&f.security_groups),
                    host: some(&f.host),
                    ..CreateServer::default()
                },
            )
            .await
            .map_err(message),
        Err(e) => Err(e),
    };
    match made {
        Ok(v) => Redirect::to(&format!("/ui/servers/{}", v.id)).into_response(),
        Err(e) => servers_page(&app, &s, &ListQuery::default(), Some(e)).await,
    }
}

#[derive(Template)]
#[template(path = "console/server.html")]
struct ServerPage {
    frame: Frame,
    server: Server,
    nics: Vec<Nic>,
    error_in: String,
    error: Option<String>,
}

async fn server_page(app: &App, s: &SignedIn, id: &str, error: Option<(&str, String)>) -> Response {
    let server: Server = match app.store.show(&s.scope, id).await {
        Ok(v) => v,
        Err(e) => return api_refusal(e),
    };
    let nics = match app.store.server_nics(&s.scope, &server.id).await {
        Ok(n) => n,
        Err(e) => return api_refusal(e),
    };
    let refused = error.is_some();
    let (error_in, error) = split_error(error);
    render_refused(
        &ServerPage {
            frame: Frame::of(s),
            server,
            nics,
            error_in,
            error,
        },
        refused,
    )
}

pub(crate) async fn server(
    State(app): State<App>,
    s: SignedIn,
    Path(id): Path<String>,
) -> Response {
    server_page(&app, &s, &id, None).await
}

#[derive(Deserialize)]
pub(crate) struct NicKeyForm {
    #[serde(default)]
    nic: String,
}

/// Attaches an ENI to the server (from the server's page).
pub(crate) async fn attach_to_server(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<NicKeyForm>,
) -> Response {
    match app.store.attach_nic(&s.scope, f.nic.trim(), &id).await {
        Ok(n) => Redirect::to(&format!(
            "/ui/servers/{}",
            n.server_id.as_deref().unwrap_or(&id)
        ))
        .into_response(),
        Err(e) => server_page(&app, &s, &id, Some(("attach", message(e)))).await,
    }
}

pub(crate) async fn delete_server(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, .. }: Posted<Button>,
) -> Response {
    match app.store.delete_server(&s.scope, &id).await {
        Ok(()) => Redirect::to("/ui/servers").into_response(),
        Err(e) => server_page(&app, &s, &id, Some(("delete", message(e)))).await,
    }
}

#[derive(Template)]
#[template(path = "console/nics.html")]
struct NicsPage {
    frame: Frame,
    nics: Vec<Nic>,
    pager: Pager,
    error: Option<String>,
}

async fn nics_page(app: &App, s: &SignedIn, q: &ListQuery, error: Option<String>) -> Response {
    let listed = list::page::<Nic>(
        app,
        &s.scope,
        q,
        ("/ui/nics", "address, name, ID, subnet or server", "NIC(s)"),
        |n, needle| {
            let ip = n.ip.to_string();
            holds(
                &[
                    &n.name,
                    &n.id,
                    &ip,
                    &n.subnet_id,
                    n.server_id.as_deref().unwrap_or(""),
                ],
                needle,
            )
        },
    )
    .await;
    let (nics, pager) = match listed {
        Ok(l) => l,
        Err(e) => return api_refusal(e),
    };
    let refused = error.is_some();
    render_refused(
        &NicsPage {
            frame: Frame::of(s),
            nics,
            pager,
            error,
        },
        refused,
    )
}

pub(crate) async fn nics(
    State(app): State<App>,
    s: SignedIn,
    Query(q): Query<ListQuery>,
) -> Response {
    nics_page(&app, &s, &q, None).await
}

#[derive(Deserialize)]
pub(crate) struct NicForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    ip: String,
    #[serde(default)]
    security_groups: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    source_dest_check_off: Option<String>,
}

pub(crate) async fn create_nic(
    State(app): State<App>,
    Posted { signed: s, form: f }: Posted<NicForm>,
) -> Response {
    let made = match opt_addr("ip", &f.ip) {
        Ok(ip) => app
            .store
            .create_nic(
                &s.scope,
                &CreateNic {
                    name: f.name.trim().to_string(),
                    subnet: f.subnet.trim().to_string(),
                    ip,
                    security_groups: words(&f.security_groups),
                    source_dest_check: f.source_dest_check_off.is_some().then_some(false),
                    client_token: None,
                },
            )
            .await
            .map_err(message),
        Err(e) => Err(e),
    };
    match made {
        Ok(n) => Redirect::to(&format!("/ui/nics/{}", n.id)).into_response(),
        Err(e) => nics_page(&app, &s, &ListQuery::default(), Some(e)).await,
    }
}

#[derive(Template)]
#[template(path = "console/nic.html")]
struct NicPage {
    frame: Frame,
    nic: Nic,
    /// Its groups as `name (id)`, and the text of the update form's field.
    groups: Vec<(String, String)>,
    groups_field: String,
    drops: Option<vpcip_model::desired::NicDrops>,
    error_in: String,
    error: Option<String>,
}

async fn nic_page(app: &App, s: &SignedIn, id: &str, error: Option<(&str, String)>) -> Response {
    let nic: Nic = match app.store.show(&s.scope, id).await {
        Ok(v) => v,
        Err(e) => return api_refusal(e),
    };
    let mut groups = vec![];
    for g in &nic.security_group_ids {
        let name = match app.store.show::<SecurityGroup>(&s.scope, g).await {
            Ok(sg) => sg.name,
            Err(_) => String::new(),
        };
        groups.push((g.clone(), name));
    }
    let groups_field = groups
        .iter()
        .map(|(id, name)| if name.is_empty() { id } else { name })
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let drops = app.store.nic_drops(&s.scope, &nic.id).await.ok();
    let refused = error.is_some();
    let (error_in, error) = split_error(error);
    render_refused(
        &NicPage {
            frame: Frame::of(s),
            nic,
            groups,
            groups_field,
            drops,
            error_in,
            error,
        },
        refused,
    )
}

pub(crate) async fn nic(State(app): State<App>, s: SignedIn, Path(id): Path<String>) -> Response {
    nic_page(&app, &s, &id, None).await
}

#[derive(Deserialize)]
pub(crate) struct UpdateForm {
    #[serde(default)]
    security_groups: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    source_dest_check: Option<String>,
}

pub(crate) async fn update_nic(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<UpdateForm>,
) -> Response {
    let req = UpdateNic {
        security_groups: Some(words(&f.security_groups)),
        source_dest_check: Some(f.source_dest_check.is_some()),
    };
    match app.store.update_nic(&s.scope, &id, &req).await {
        Ok(n) => Redirect::to(&format!("/ui/nics/{}", n.id)).into_response(),
        Err(e) => nic_page(&app, &s, &id, Some(("update", message(e)))).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct ServerKeyForm {
    #[serde(default)]
    server: String,
}

pub(crate) async fn attach_nic(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<ServerKeyForm>,
) -> Response {
    match app.store.attach_nic(&s.scope, &id, f.server.trim()).await {
        Ok(n) => Redirect::to(&format!("/ui/nics/{}", n.id)).into_response(),
        Err(e) => nic_page(&app, &s, &id, Some(("attach", message(e)))).await,
    }
}

pub(crate) async fn detach_nic(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, .. }: Posted<Button>,
) -> Response {
    match app.store.detach_nic(&s.scope, &id).await {
        Ok(n) => Redirect::to(&format!("/ui/nics/{}", n.id)).into_response(),
        Err(e) => nic_page(&app, &s, &id, Some(("attach", message(e)))).await,
    }
}

pub(crate) async fn delete_nic(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, .. }: Posted<Button>,
) -> Response {
    match app.store.delete_nic(&s.scope, &id).await {
        Ok(()) => Redirect::to("/ui/nics").into_response(),
        Err(e) => nic_page(&app, &s, &id, Some(("delete", message(e)))).await,
    }
}
