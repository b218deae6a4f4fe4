//! The web console (`/ui`, on a listener of its own): server-rendered
//! pages (askama templates, no script to build, nothing fetched from
//! outside) doing what the vendor manuals' console steps do, through the
//! same store operations and scopes as the API, so a tenant sees exactly
//! what the API shows it.
//!
//! Sign-in takes a token (a tenant's or the operator's); the session is a
//! random cookie (HttpOnly, SameSite=Strict, Secure under TLS) that names
//! the token, kept in this controller's memory only; every request
//! re-checks the token, so a deleted token ends its sessions. Every form
//! carries the session's CSRF token (the sign-in form a cookie-bound one),
//! and a post without it is refused.

mod compute;
mod eips;
mod list;
mod network;
mod platform;
mod plot;
mod session;
mod topology;
mod vips;

use askama::Template;
use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use vpcip_store::Scope;

use crate::App;
use crate::error::ApiError;
pub use session::Sessions;
use session::{LOGIN_COOKIE, Posted, SESSION_COOKIE, SignedIn, cookie, random_token};

/// The console's routes, under `/ui`.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/eips") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/eips", get(eips::list).post(eips::allocate))
        .route("/ui/eips/{id}", get(eips::show))
        .route("/ui/eips/{id}/traffic.svg", get(eips::traffic_svg))
        .route("/ui/eips/{id}/bind", post(eips::bind))
        .route("/ui/eips/{id}/unbind", post(eips::unbind))
        .route("/ui/eips/{id}/update", post(eips::update))
        .route("/ui/eips/{id}/release", post(eips::release))
        .route("/ui/vips", get(vips::list).post(vips::create))
        .route("/ui/vips/{id}", get(vips::show))
        .route("/ui/vips/{id}/bind", post(vips::bind))
        .route("/ui/vips/{id}/unbind", post(vips::unbind))
        .route("/ui/vips/{id}/delete", post(vips::delete))
        .route("/ui/vpcs", get(network::vpcs).post(network::create_vpc))
        .route("/ui/vpcs/{id}", get(network::vpc))
        .route("/ui/vpcs/{id}/delete", post(network::delete_vpc))
        .route("/ui/vpcs/{id}/subnets", post(network::create_subnet))
        .route("/ui/vpcs/{id}/subnets/delete", post(network::delete_subnet))
        .route("/ui/vpcs/{id}/groups", post(network::create_group))
        .route("/ui/vpcs/{id}/topology.svg", get(topology::svg))
        .route("/ui/groups", get(network::groups))
        .route("/ui/groups/{id}", get(network::group))
        .route("/ui/groups/{id}/rules", post(network::add_rules))
        .route("/ui/groups/{id}/rules/remove", post(network::remove_rule))
        .route("/ui/groups/{id}/delete", post(network::delete_group))
        .route(
            "/ui/servers",
            get(compute::servers).post(compute::create_server),
        )
        .route("/ui/servers/{id}", get(compute::server))
        .route("/ui/servers/{id}/attach", post(compute::attach_to_server))
        .route("/ui/servers/{id}/delete", post(compute::delete_server))
        .route("/ui/nics", get(compute::nics).post(compute::create_nic))
        .route("/ui/nics/{id}", get(compute::nic))
        .route("/ui/nics/{id}/update", post(compute::update_nic))
        .route("/ui/nics/{id}/attach", post(compute::attach_nic))
        .route("/ui/nics/{id}/detach", post(compute::detach_nic))
        .route("/ui/nics/{id}/delete", post(compute::delete_nic))
        .route("/ui/status", get(status))
        .route("/ui/platform", get(platform::page))
        .route("/ui/platform/tokens", post(platform::create_token))
        .route(
            "/ui/platform/tokens/{id}/delete",
            post(platform::delete_token),
        )
        .fallback(|| async { refusal(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// Serves the console on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the console over TLS (its cookies then Secure).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
) -> std::io::Result<()> {
    let app = App { tls: true, ..app };
    axum::serve(crate::tls::TlsListener::new(listener, config)?, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// No page is framed by another site, sniffed, cached, or allowed a script
/// or style from anywhere but itself.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
        ),
    ] {
        if let Ok(v) = value.parse() {
            h.insert(name, v);
        }
    }
    r
}

/// What every page's frame shows: who is signed in, the CSRF token for
/// its forms.
pub(crate) struct Frame {
    pub who: String,
    pub operator: bool,
    pub csrf: String,
}

impl Frame {
    fn of(s: &SignedIn) -> Frame {
        Frame {
            who: match &s.scope {
                Scope::Operator => "operator".into(),
                Scope::Tenant(t) => format!("tenant {t}"),
                Scope::Agent(a) => format!("agent {}", a.name),
            },
            operator: matches!(s.scope, Scope::Operator),
            csrf: s.csrf.clone(),
        }
    }
}

pub(crate) fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the page failed to render: {e}"),
        ),
    }
}

/// A page that may carry a refusal next to one of its forms: 422 then.
pub(crate) fn render_refused(t: &impl Template, refused: bool) -> Response {
    let mut r = render(t);
    if refused {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

#[derive(Template)]
#[template(path = "console/refusal.html")]
struct RefusalPage<'a> {
    status: u16,
    message: &'a str,
}

/// A page that says why not (an unknown resource, a refused request).
pub(crate) fn refusal(status: StatusCode, message: &str) -> Response {
    let page = RefusalPage {
        status: status.as_u16(),
        message,
    };
    let mut r = render(&page);
    *r.status_mut() = status;
    r
}

/// The API's answer to a failed operation, as a page.
pub(crate) fn api_refusal(e: impl Into<ApiError>) -> Response {
    let e = e.into();
    refusal(e.status, &format!("{} ({})", e.message, e.code))
}

/// A refusal to show next to one form of a page: the form's name (empty
/// when none) and the message.
pub(crate) fn split_error(error: Option<(&str, String)>) -> (String, Option<String>) {
    match error {
        Some((form, e)) => (form.to_string(), Some(e)),
        None => (String::new(), None),
    }
}

/// The API's message for a refused form (shown next to the form).
pub(crate) fn message(e: impl Into<ApiError>) -> String {
    let e = e.into();
    format!("{} ({})", e.message, e.code)
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    csrf: String,
    error: Option<String>,
}

async fn login_page() -> Response {
    login_form(None)
}

/// The sign-in form with a fresh CSRF token bound to its cookie, and the
/// reason the last try failed (then 401).
fn login_form(error: Option<&str>) -> Response {
    let csrf = random_token();
    let mut r = render(&LoginPage {
        csrf: csrf.clone(),
        error: error.map(str::to_string),
    });
    if error.is_some() {
        *r.status_mut() = StatusCode::UNAUTHORIZED;
    }
    set_cookie(&mut r, &cookie(LOGIN_COOKIE, &csrf, false, 600));
    r
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

async fn login(State(app): State<App>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    // The sign-in form's token is bound to a cookie only this site set
    // (another site's form cannot sign a browser in as someone else).
    let bound = session::cookie_value(&headers, LOGIN_COOKIE);
    if f.csrf.is_empty() || bound.as_deref().is_none_or(|c| !session::same(c, &f.csrf)) {
        return refusal(
            StatusCode::FORBIDDEN,
            "the sign-in form's CSRF token is missing or does not match (csrf)",
        );
    }
    let again = |error: &str| login_form(Some(error));
    let token = f.token.trim();
    match crate::auth::token_scope(&app, token).await {
        Ok(Some(Scope::Agent(_))) => again("an agent's token cannot sign in to the console"),
        Ok(Some(_)) => {
            let id = app.sessions.open(token);
            let mut r = Redirect::to("/ui/eips").into_response();
            set_cookie(
                &mut r,
                &cookie(SESSION_COOKIE, &id, app.tls, session::LIFETIME_SECS),
            );
            set_cookie(&mut r, &cookie(LOGIN_COOKIE, "", false, 0));
            r
        }
        Ok(None) => again("unknown token"),
        Err(e) => again(&message(e)),
    }
}

/// A form with no field but its CSRF token (a button).
#[derive(Deserialize)]
pub(crate) struct Button {}

async fn logout(State(app): State<App>, Posted { signed: s, .. }: Posted<Button>) -> Response {
    app.sessions.close(&s.id);
    let mut r = Redirect::to("/ui/login").into_response();
    set_cookie(&mut r, &cookie(SESSION_COOKIE, "", app.tls, 0));
    r
}

fn set_cookie(r: &mut Response, value: &str) {
    if let Ok(v) = value.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[derive(Template)]
#[template(path = "console/status.html")]
struct StatusPage {
    frame: Frame,
    status: vpcip_model::desired::SystemStatus,
}

/// The operator's `vpcip status`: agents with health, lag and errors, and
/// what differs.
async fn status(State(app): State<App>, s: SignedIn) -> Response {
    if !matches!(s.scope, Scope::Operator) {
        return refusal(StatusCode::FORBIDDEN, "the status page is the operator's");
    }
    match app.store.status(&s.scope).await {
        Ok(status) => render(&StatusPage {
            frame: Frame::of(&s),
            status,
        }),
        Err(e) => api_refusal(e),
    }
}
