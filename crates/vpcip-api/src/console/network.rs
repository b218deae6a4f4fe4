//! VPC pages: the list and create; one VPC's page with its picture, its
//! subnets (create, delete) and security groups (create), and delete; the
//! security groups' pages with their rules (add, remove), the NICs using
//! them, and delete.

use std::net::Ipv4Addr;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use vpcip_model::*;

use super::list::{self, ListQuery, Pager, holds};
use super::session::{Posted, SignedIn};
use super::topology::picture;
use super::{Button, Frame, api_refusal, message, render_refused, split_error};
use crate::App;

#[derive(Template)]
#[template(path = "console/vpcs.html")]
struct VpcsPage {
    frame: Frame,
    vpcs: Vec<Vpc>,
    pager: Pager,
    error: Option<String>,
}

async fn vpcs_page(app: &App, s: &SignedIn, q: &ListQuery, error: Option<String>) -> Response {
    let listed = list::page::<Vpc>(
        app,
        &s.scope,
        q,
        ("/ui/vpcs", "name, ID or CIDR", "VPC(s)"),
        |v, n| holds(&[&v.name, &v.id, &v.cidr.to_string()], n),
    )
    .await;
    let (vpcs, pager) = match listed {
        Ok(l) => l,
        Err(e) => return api_refusal(e),
    };
    let refused = error.is_some();
    render_refused(
        &VpcsPage {
            frame: Frame::of(s),
            vpcs,
            pager,
            error,
        },
        refused,
    )
}

pub(crate) async fn vpcs(
    State(app): State<App>,
    s: SignedIn,
    Query(q): Query<ListQuery>,
) -> Response {
    vpcs_page(&app, &s, &q, None).await
}

#[derive(Deserialize)]
pub(crate) struct VpcForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    cidr: String,
    /// Operators only: the tenant to create it for.
    #[serde(default)]
    tenant: String,
}

pub(crate) async fn create_vpc(
    State(app): State<App>,
    Posted { signed: s, form: f }: Posted<VpcForm>,
) -> Response {
    let made = match net("cidr", &f.cidr) {
        Ok(cidr) => app
            .store
            .create_vpc(
                &s.scope,
                &CreateVpc {
                    name: f.name.trim().to_string(),
                    cidr,
                    tenant: some(&f.tenant),
                    ..CreateVpc::default()
                },
            )
            .await
            .map_err(message),
        Err(e) => Err(e),
    };
    match made {
        Ok(v) => Redirect::to(&format!("/ui/vpcs/{}", v.id)).into_response(),
        Err(e) => vpcs_page(&app, &s, &ListQuery::default(), Some(e)).await,
    }
}

#[derive(Template)]
#[template(path = "console/topology.html")]
struct VpcPage {
    frame: Frame,
    vpc: Vpc,
    svg: String,
    subnets: Vec<Subnet>,
    groups: Vec<SecurityGroup>,
    error_in: String,
    error: Option<String>,
    /// What the last subnet created said (e.g. an EIP segment without a
    /// gateway to route it to).
    warnings: Vec<String>,
}

async fn vpc_page(
    app: &App,
    s: &SignedIn,
    id: &str,
    error: Option<(&str, String)>,
    warnings: Vec<String>,
) -> Response {
    let (vpc, contents, svg) = match picture(app, &s.scope, id).await {
        Ok(p) => p,
        Err(e) => return api_refusal(e),
    };
    let (subnets, groups) = (contents.subnets, contents.groups);
    let refused = error.is_some();
    let (error_in, error) = split_error(error);
    render_refused(
        &VpcPage {
            frame: Frame::of(s),
            vpc,
            svg,
            subnets,
            groups,
            error_in,
            error,
            warnings,
        },
        refused,
    )
}

pub(crate) async fn vpc(State(app): State<App>, s: SignedIn, Path(id): Path<String>) -> Response {
    vpc_page(&app, &s, &id, None, vec![]).await
}

pub(crate) async fn delete_vpc(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, .. }: Posted<Button>,
) -> Response {
    match app.store.delete_vpc(&s.scope, &id).await {
        Ok(()) => Redirect::to("/ui/vpcs").into_response(),
        Err(e) => vpc_page(&app, &s, &id, Some(("delete", message(e))), vec![]).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct SubnetForm {
    #[serde(default)]
    name: String,
    /// A CIDR (`10.0.1.0/24`) or a range as the vendor manuals write it
    /// (`192.168.202.1-192.168.202.254`, with `prefix_len`).
    #[serde(default)]
    cidr: String,
    #[serde(default)]
    prefix_len: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    gateway: String,
    /// Comma-separated.
    #[serde(default)]
    dns_servers: String,
    /// `guest` or (operators) `eip`.
    #[serde(default)]
    kind: String,
}

fn subnet_request(vpc: &str, f: &SubnetForm) -> Result<CreateSubnet, String> {
    let written = f.cidr.trim();
    let (cidr, range) = if written.contains('-') {
        (None, Some(written.to_string()))
    } else {
        (Some(net("cidr", written)?), None)
    };
    let prefix_len = match f.prefix_len.trim() {
        "" => None,
        p => Some(
            p.parse()
                .map_err(|_| format!("prefix_len: {p:?} is not a number in 0-32"))?,
        ),
    };
    let kind = match f.kind.trim() {
        "" | "guest" => SubnetKind::Guest,
        "eip" => SubnetKind::Eip,
        k => return Err(format!("kind: {k:?} is not guest or eip")),
    };
    let dns_servers = words(&f.dns_servers)
        .iter()
        .map(|a| addr("dns_servers", a))
        .collect::<Result<_, _>>()?;
    Ok(CreateSubnet {
        name: f.name.trim().to_string(),
        vpc: Some(vpc.to_string()),
        zone: some(&f.zone),
        kind,
        cidr,
        range,
        prefix_len,
        gateway: opt_addr("gateway", &f.gateway)?,
        dns_servers,
        ..CreateSubnet::default()
    })
}

pub(crate) async fn create_subnet(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<SubnetForm>,
) -> Response {
    let made = match subnet_request(&id, &f) {
        Ok(req) => app
            .store
            .create_subnet(&s.scope, &req)
            .await
            .map_err(message),
        Err(e) => Err(e),
    };
    match made {
        Ok(c) if c.warnings.is_empty() => {
            Redirect::to(&format!("/ui/vpcs/{}", c.subnet.vpc_id)).into_response()
        }
        Ok(c) => {
            let warnings = c
                .warnings
                .iter()
                .map(|w| format!("{} ({})", w.message, w.code))
                .collect();
            vpc_page(&app, &s, &c.subnet.vpc_id, None, warnings).await
        }
        Err(e) => vpc_page(&app, &s, &id, Some(("subnet", e)), vec![]).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct KeyForm {
    #[serde(default)]
    key: String,
}

pub(crate) async fn delete_subnet(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<KeyForm>,
) -> Response {
    // Back to the subnet's own VPC (as the store names it).
    let deleted = match app.store.show::<Subnet>(&s.scope, f.key.trim()).await {
        Ok(sub) => app
            .store
            .delete_subnet(&s.scope, &sub.id)
            .await
            .map(|()| sub.vpc_id),
        Err(e) => Err(e),
    };
    match deleted {
        Ok(vpc) => Redirect::to(&format!("/ui/vpcs/{vpc}")).into_response(),
        Err(e) => vpc_page(&app, &s, &id, Some(("subnets", message(e))), vec![]).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct GroupForm {
    #[serde(default)]
    name: String,
    /// `basic` (members reach each other) or `advanced` (they do not
    /// unless a rule says so).
    #[serde(default)]
    kind: String,
    /// Rules as the CLI writes them, one a line.
    #[serde(default)]
    rules: String,
}

pub(crate) async fn create_group(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<GroupForm>,
) -> Response {
    let kind = match f.kind.trim() {
        "" | "basic" => Ok(SgKind::Basic),
        "advanced" => Ok(SgKind::Advanced),
        k => Err(format!("kind: {k:?} is not basic or advanced")),
    };
    let made = match kind.and_then(|kind| Ok((kind, rules(&f.rules)?))) {
        Ok((kind, rules)) => app
            .store
            .create_security_group(
                &s.scope,
                &CreateSecurityGroup {
                    name: f.name.trim().to_string(),
                    vpc: id.clone(),
                    kind,
                    rules,
                    managed: false,
                    client_token: None,
                },
            )
            .await
            .map_err(message),
        Err(e) => Err(e),
    };
    match made {
        Ok(g) => Redirect::to(&format!("/ui/groups/{}", g.id)).into_response(),
        Err(e) => vpc_page(&app, &s, &id, Some(("group", e)), vec![]).await,
    }
}

#[derive(Template)]
#[template(path = "console/groups.html")]
struct GroupsPage {
    frame: Frame,
    groups: Vec<SecurityGroup>,
    pager: Pager,
}

pub(crate) async fn groups(
    State(app): State<App>,
    s: SignedIn,
    Query(q): Query<ListQuery>,
) -> Response {
    let listed = list::page::<SecurityGroup>(
        &app,
        &s.scope,
        &q,
        ("/ui/groups", "name, ID or VPC", "group(s)"),
        |g, n| holds(&[&g.name, &g.id, &g.vpc_id], n),
    )
    .await;
    match listed {
        Ok((groups, pager)) => render_refused(
            &GroupsPage {
                frame: Frame::of(&s),
                groups,
                pager,
            },
            false,
        ),
        Err(e) => api_refusal(e),
    }
}

#[derive(Template)]
#[template(path = "console/group.html")]
struct GroupPage {
    frame: Frame,
    group: SecurityGroup,
    /// Rules as written (`ingress:tcp:22:0.0.0.0/0`), with their IDs.
    rules: Vec<(String, String)>,
    /// The NICs it guards.
    used_by: Vec<Nic>,
    error_in: String,
    error: Option<String>,
}

async fn group_page(app: &App, s: &SignedIn, id: &str, error: Option<(&str, String)>) -> Response {
    let group: SecurityGroup = match app.store.show(&s.scope, id).await {
        Ok(g) => g,
        Err(e) => return api_refusal(e),
    };
    // A NIC's record holds its groups' IDs: the database finds them.
    let used_by = match app.store.search::<Nic>(&s.scope, &group.id).await {
        Ok(nics) => nics
            .into_iter()
            .filter(|n| n.security_group_ids.contains(&group.id))
            .collect(),
        Err(e) => return api_refusal(e),
    };
    let rules = group
        .rules
        .iter()
        .map(|r| (r.id.clone(), r.to_string()))
        .collect();
    let refused = error.is_some();
    let (error_in, error) = split_error(error);
    render_refused(
        &GroupPage {
            frame: Frame::of(s),
            group,
            rules,
            used_by,
            error_in,
            error,
        },
        refused,
    )
}

pub(crate) async fn group(State(app): State<App>, s: SignedIn, Path(id): Path<String>) -> Response {
    group_page(&app, &s, &id, None).await
}

#[derive(Deserialize)]
pub(crate) struct RulesForm {
    /// Rules as the CLI writes them, one a line.
    #[serde(default)]
    rules: String,
}

pub(crate) async fn add_rules(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<RulesForm>,
) -> Response {
    let added = match rules(&f.rules) {
        Ok(r) if r.is_empty() => Err("rules: write at least one rule".to_string()),
        Ok(r) => app
            .store
            .add_sg_rules(&s.scope, &id, &r)
            .await
            .map_err(message),
        Err(e) => Err(e),
    };
    match added {
        Ok(g) => Redirect::to(&format!("/ui/groups/{}", g.id)).into_response(),
        Err(e) => group_page(&app, &s, &id, Some(("add", e))).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct RuleForm {
    /// The rule's ID.
    #[serde(default)]
    rule: String,
}

pub(crate) async fn remove_rule(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, form: f }: Posted<RuleForm>,
) -> Response {
    match app.store.remove_sg_rule(&s.scope, &id, f.rule.trim()).await {
        Ok(g) => Redirect::to(&format!("/ui/groups/{}", g.id)).into_response(),
        Err(e) => group_page(&app, &s, &id, Some(("rules", message(e)))).await,
    }
}

pub(crate) async fn delete_group(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted { signed: s, .. }: Posted<Button>,
) -> Response {
    let vpc = app
        .store
        .show::<SecurityGroup>(&s.scope, &id)
        .await
        .map(|g| g.vpc_id);
    match app.store.delete_security_group(&s.scope, &id).await {
        Ok(()) => match vpc {
            Ok(v) => Redirect::to(&format!("/ui/vpcs/{v}")).into_response(),
            Err(_) => Redirect::to("/ui/groups").into_response(),
        },
        Err(e) => group_page(&app, &s, &id, Some(("delete", message(e)))).await,
    }
}

/// Rules written one a line (or comma-separated) as the CLI takes them.
fn rules(text: &str) -> Result<Vec<SgRule>, String> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.parse::<SgRule>())
        .collect()
}

/// A field's words, comma- or space-separated.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// A field left empty is not given.
pub(crate) fn some(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

fn net(field: &str, text: &str) -> Result<ipnet::Ipv4Net, String> {
    let t = text.trim();
    t.parse()
        .map_err(|_| format!("{field}: {t:?} is not an IPv4 CIDR (e.g. 10.0.0.0/16)"))
}

fn addr(field: &str, text: &str) -> Result<Ipv4Addr, String> {
    let t = text.trim();
    t.parse()
        .map_err(|_| format!("{field}: {t:?} is not an IPv4 address"))
}

pub(crate) fn opt_addr(field: &str, text: &str) -> Result<Option<Ipv4Addr>, String> {
    match text.trim() {
        "" => Ok(None),
        t => addr(field, t).map(Some),
    }
}
