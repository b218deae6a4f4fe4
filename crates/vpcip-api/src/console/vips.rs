//! VIP pages: the list and create, one VIP's page with its NICs (bind,
//! unbind), the NIC holding it now, its EIP, and each member's
//! keepalived.conf to copy (what `vpcip vip guest-config --keepalived`
//! prints).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use vpcip_model::*;

use super::list::{self, ListQuery, Pager, holds};
use super::session::{Posted, SignedIn};
use super::{Button, Frame, api_refusal, message, render_refused, split_error};
use crate::App;

#[derive(Template)]
#[template(path = "console/vips.html")]
struct ListPage {
    frame: Frame,
    vips: Vec<Vip>,
    pager: Pager,
    error: Option<String>,
}

async fn list_page(app: &App, s: &SignedIn, q: &ListQuery, error: Option<String>) -> Response {
    let listed = list::page::<Vip>(
        app,
        &s.scope,
        q,
        ("/ui/vips", "address, name or ID", "VIP(s)"),
        |v, n| holds(&[&v.name, &v.id, &v.ip.to_string()], n),
    )
    .await;
    let (vips, pager) = match listed {
        Ok(l) => l,
        Err(e) => return api_refusal(e),
    };
    let failed = error.is_some();
    render_refused(
        &ListPage {
            frame: Frame::of(s),
            vips,
            pager,
            error,
        },
        failed,
    )
}

pub(crate) async fn list(
    State(app): State<App>,
    s: SignedIn,
    Query(q): Query<ListQuery>,
) -> Response {
    list_page(&app, &s, &q, None).await
}

#[derive(Deserialize)]
pub(crate) struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    ip: String,
}

pub(crate) async fn create(
    State(app): State<App>,
    Posted { signed: s, form: f }: Posted<CreateForm>,
) -> Response {
    let ip = match f.ip.trim() {
        "" => Ok(None),
        a => a
            .parse()
            .map(Some)
            .map_err(|_| format!("ip: {a:?} is not an IPv4 address")),
    };
    let made = match ip {
        Ok(ip) => app
            .store
            .create_vip(
                &s.scope,
                &CreateVip {
                    name: f.name.trim().to_string(),
                    subnet: f.subnet.trim().to_string(),
                    ip,
                    client_token: None,
                },
            )
            .await
            .map_err(message),
        Err(e) => Err(e),
    };
    match made {
        Ok(v) => Redirect::to(&format!("/ui/vips/{}", v.id)).into_response(),
        Err(e) => list_page(&app, &s, &ListQuery::default(), Some(e)).await,
    }
}

/// One bound NIC as the VIP's page shows it.
struct Member {
    nic: Nic,
    keepalived: String,
    /// The commands adding the VIP to the NIC, per guest OS.
    commands: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "console/vip.html")]
struct VipPage {
    frame: Frame,
    vip: Vip,
    members: Vec<Member>,
    holder: Option<String>,
    eip: Option<Eip>,
    error_in: String,
    error: Option<String>,
    /// The vendor manuals' recommendations a bind just went past (the
    /// API's `warnings`).
    warnings: Vec<String>,
}

async fn vip_page(app: &App, s: &SignedIn, id: &str, error: Option<(&str, String)>) -> Response {
    vip_page_warned(app, s, id, error, vec![]).await
}

async fn vip_page_warned(
    app: &App,
    s: &SignedIn,
    id: &str,
    error: Option<(&str, String)>,
    warnings: Vec<String>,
) -> Response {
    let vip: Vip = match app.store.show(&s.scope, id).await {
        Ok(v) => v,
        Err(e) => return api_refusal(e),
    };
    let subnet: Option<Subnet> = app.store.show(&s.scope, &vip.subnet_id).await.ok();
    let mut nics = vec![];
    for n in &vip.nic_ids {
        if let Ok(nic) = app.store.show::<Nic>(&s.scope, n).await {
            nics.push(nic);
        }
    }
    let mut members = vec![];
    for (rank, nic) in nics.iter().enumerate() {
        // The NIC's place on its server names its interface in the guest.
        let device = match &nic.server_id {
            Some(id) => app
                .store
                .show::<Server>(&s.scope, id)
                .await
                .ok()
                .and_then(|sv| sv.nic_ids.iter().position(|n| *n == nic.id))
                .unwrap_or(0),
            None => 0,
        };
        let (keepalived, commands) = match &subnet {
            Some(sub) => (
                keepalived(&vip, sub, nic, &nics, rank, device),
                guest_commands(&vip, sub, nic, device),
            ),
            None => (String::new(), vec![]),
        };
        members.push(Member {
            nic: nic.clone(),
            keepalived,
            commands,
        });
    }
    let holder = app
        .store
        .vip_holding(&s.scope, &vip.id)
        .await
        .ok()
        .and_then(|h| h.nic_id);
    let eip = match &vip.eip_id {
        Some(e) => app.store.show::<Eip>(&s.scope, e).await.ok(),
        None => None,
    };
    let failed = error.is_some();
    let (error_in, error) = split_error(error);
    render_refused(
        &VipPage {
            frame: Frame::of(s),
            vip,
            members,
            holder,
            eip,
            error_in,
            error,
            warnings,
        },
        failed,
    )
}

/// What `vpcip vip guest-config` prints for the NIC on each guest OS: the
/// commands (or file) that add the VIP to it.
fn guest_commands(vip: &Vip, subnet: &Subnet, nic: &Nic, device: usize) -> Vec<(String, String)> {
    use vpcip_model::guest;
    guest::GuestOs::ALL
        .iter()
        .map(|(os, label)| {
            let ifname = os.ifname(device);
            let connection = format!("System {ifname}");
            let me = guest::GuestNic {
                ifname: &ifname,
                connection: &connection,
                ip: nic.ip,
                subnet: subnet.cidr,
                gateway: subnet.gateway,
                device,
            };
            (
                label.to_string(),
                guest::vip_config(*os, &me, vip.ip, false),
            )
        })
        .collect()
}

/// keepalived.conf for member `rank`, the NIC at `device` on its server
/// (`vpcip vip guest-config --keepalived`).
fn keepalived(
    vip: &Vip,
    subnet: &Subnet,
    nic: &Nic,
    all: &[Nic],
    rank: usize,
    device: usize,
) -> String {
    use vpcip_model::guest;
    let ifname = guest::GuestOs::Linux.ifname(device);
    let connection = format!("System {ifname}");
    let me = guest::GuestNic {
        ifname: &ifname,
        connection: &connection,
        ip: nic.ip,
        subnet: subnet.cidr,
        gateway: subnet.gateway,
        device,
    };
    let params = guest::VrrpParams {
        rank,
        vrid: guest::vrid_of(vip.ip),
        advert_cs: 100,
    };
    let peers: Vec<std::net::Ipv4Addr> = all
        .iter()
        .filter(|n| n.id != nic.id)
        .map(|n| n.ip)
        .collect();
    guest::keepalived_conf(&vip.name, vip.ip, subnet.cidr, &me, &peers, &params)
}

pub(crate) async fn show(State(app): State<App>, s: SignedIn, Path(id): Path<String>) -> Response {
    vip_page(&app, &s, &id, None).await
}

#[derive(Deserialize)]
pub(crate) struct NicForm {
    #[serde(default)]
    nic: String,
}

pub(crate) async fn bind(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<NicForm>,
) -> Response {
    match app.store.bind_vip(&s.scope, &id, f.nic.trim()).await {
        Ok(v) if v.warnings.is_empty() => {
            Redirect::to(&format!("/ui/vips/{}", v.item.id)).into_response()
        }
        Ok(v) => {
            let warnings = v
                .warnings
                .iter()
                .map(|w| format!("{} ({})", w.message, w.code))
                .collect();
            vip_page_warned(&app, &s, &v.item.id, None, warnings).await
        }
        Err(e) => vip_page(&app, &s, &id, Some(("bind", message(e)))).await,
    }
}

pub(crate) async fn unbind(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<NicForm>,
) -> Response {
    match app.store.unbind_vip(&s.scope, &id, f.nic.trim()).await {
        Ok(v) => Redirect::to(&format!("/ui/vips/{}", v.id)).into_response(),
        Err(e) => vip_page(&app, &s, &id, Some(("unbind", message(e)))).await,
    }
}

pub(crate) async fn delete(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, .. }: Posted<Button>,
) -> Response {
    match app.store.delete_vip(&s.scope, &id).await {
        Ok(()) => Redirect::to("/ui/vips").into_response(),
        Err(e) => vip_page(&app, &s, &id, Some(("delete", message(e)))).await,
    }
}
