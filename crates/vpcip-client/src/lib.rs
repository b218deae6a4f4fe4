//! Typed HTTP client of the vpcip API, used by the CLI (and the agents).

pub mod console;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vpcip_model::paths::{self, Collection};
use vpcip_model::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused: its stable code and message.
    #[error("{message} ({code})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// (Said once: the deepest cause, not reqwest's chain, which repeats
    /// the URL.)
    #[error(
        "cannot reach the vpcip API at {url}: {}{}",
        root_cause(cause),
        transport_hint(url, cause)
    )]
    Transport { url: String, cause: reqwest::Error },
    #[error("unexpected answer from {url}: {detail}")]
    Protocol { url: String, detail: String },
}

/// The innermost error of `e`'s chain (e.g. "Connection refused (os error
/// 111)"), or its own text when it has none.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if e.is_timeout() {
        return "no answer in time".into();
    }
    cur.to_string()
}

/// What a transport error most likely means, when it can be told.
fn transport_hint(url: &str, e: &reqwest::Error) -> String {
    let mut chain = String::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        chain.push_str(&c.to_string());
        chain.push(' ');
        cur = c.source();
    }
    if url.starts_with("http://") && chain.contains("invalid HTTP version") {
        " (the server speaks TLS here: use https://)".into()
    } else if url.starts_with("https://") && chain.contains("UnknownIssuer") {
        " (the server's certificate is not trusted: set VPCIP_CA_CERT to its CA's PEM file)".into()
    } else {
        String::new()
    }
}

impl ClientError {
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    /// The controllers, any of which serves the whole API (several share
    /// one PostgreSQL): requests go to the one that last answered, and to
    /// the next when it cannot be reached.
    bases: std::sync::Arc<Vec<String>>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// The bearer token it sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// A client of the API at `base` (`http://` or `https://`), or at
    /// any of several controllers given comma-separated
    /// (`http://c1:9696,http://c2:9696`): a request that cannot reach one
    /// (the connection is refused or cannot be made) goes to the next. Over
    /// HTTPS it trusts the CA certificate (PEM) the file named by
    /// `VPCIP_CA_CERT` holds — the operator's, which signed the
    /// controller's certificate — and nothing else.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        // No request waits forever on a controller that went away mid-way
        // (the agents' long poll lasts at most 60 s).
        let mut builder = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(120));
        if let Some(path) = std::env::var_os("VPCIP_CA_CERT").filter(|p| !p.is_empty()) {
            let shown = std::path::Path::new(&path).display().to_string();
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|pem| reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string()))
            {
                Ok(ca) => builder = builder.add_root_certificate(ca),
                // Said where it is seen: the client has no other way to
                // tell why the server will not be trusted.
                Err(e) => eprintln!(
                    "warning: VPCIP_CA_CERT={shown} is not a readable PEM certificate ({e}): the server's certificate will not be trusted"
                ),
            }
        }
        Client {
            bases: std::sync::Arc::new(
                base.split(',')
                    .map(|b| b.trim().trim_end_matches('/').to_string())
                    .filter(|b| !b.is_empty())
                    .collect(),
            ),
            current: Default::default(),
            token: token.map(str::to_string),
            http: builder.build().unwrap_or_default(),
        }
    }

    pub fn with_token(&self, token: &str) -> Self {
        Client {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// One request; a JSON body in, JSON (or nothing) out.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        use std::sync::atomic::Ordering;
        let n = self.bases.len().max(1);
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        let first = self.current.load(Ordering::Relaxed);
        let mut tried = 0;
        let (url, resp) = loop {
            let i = (first + tried) % n;
            let base = self.bases.get(i).map_or("", String::as_str);
            let url = format!("{base}{path}");
            let mut req = self.http.request(method.clone(), &url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => {
                    self.current.store(i, Ordering::Relaxed);
                    break (url, resp);
                }
                // Never reached that controller (the request was not
                // made), or a request that may be made twice (a read, a
                // put, a delete) failed on the way: another controller
                // may take it. (A POST that may have been made is not
                // sent again.)
                Err(cause)
                    if tried + 1 < n
                        && (cause.is_connect() || idempotent && !cause.is_decode()) =>
                {
                    tried += 1;
                }
                Err(cause) => return Err(ClientError::Transport { url, cause }),
            }
        };
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|cause| ClientError::Transport {
            url: url.clone(),
            cause,
        })?;
        if !status.is_success() {
            #[derive(serde::Deserialize)]
            struct Body {
                error: Detail,
            }
            #[derive(serde::Deserialize)]
            struct Detail {
                code: String,
                message: String,
            }
            return Err(match serde_json::from_slice::<Body>(&bytes) {
                Ok(b) => ClientError::Api {
                    status: status.as_u16(),
                    code: b.error.code,
                    message: b.error.message,
                },
                Err(_) => ClientError::Api {
                    status: status.as_u16(),
                    code: format!("http_{}", status.as_u16()),
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                },
            });
        }
        let bytes = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            &b"null"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(bytes).map_err(|e| ClientError::Protocol {
            url,
            detail: e.to_string(),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(Method::DELETE, path, None).await
    }

    /// Every item of collection `T`, following the pages; only those in
    /// `parent` (an ID or name) when given.
    pub async fn list<T: Collection + DeserializeOwned>(
        &self,
        parent: Option<&str>,
    ) -> Result<Vec<T>, ClientError> {
        self.list_at(T::PATH, parent).await
    }

    /// Every item of the collection at `path`, following the pages.
    pub async fn list_at<T: DeserializeOwned>(
        &self,
        path: &str,
        parent: Option<&str>,
    ) -> Result<Vec<T>, ClientError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut page_path = format!("{path}?limit=1000");
            if let Some(p) = parent {
                page_path += &format!("&parent={}", paths::segment(p));
            }
            if let Some(t) = &token {
                page_path += &format!("&page_token={}", paths::segment(t));
            }
            let page: Page<T> = self.get(&page_path).await?;
            out.extend(page.items);
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// One item of collection `T`, by ID or name.
    pub async fn show<T: Collection + DeserializeOwned>(&self, id: &str) -> Result<T, ClientError> {
        self.get(&paths::item::<T>(id)).await
    }

    /// Creates an item of collection `T`; the API's answer.
    pub async fn create<T: Collection, B: Serialize, R: DeserializeOwned>(
        &self,
        body: &B,
    ) -> Result<R, ClientError> {
        self.post(T::PATH, body).await
    }

    /// Changes an item of collection `T`; the item after.
    pub async fn update<T: Collection + DeserializeOwned, B: Serialize>(
        &self,
        id: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.patch(&paths::item::<T>(id), body).await
    }

    /// Deletes an item of collection `T`.
    pub async fn remove<T: Collection>(&self, id: &str) -> Result<(), ClientError> {
        self.delete(&paths::item::<T>(id)).await
    }

    /// Deletes a gateway; `force` deletes the last one even while EIPs are
    /// bound (refused otherwise: they would be routed to no one).
    pub async fn delete_gateway(&self, id: &str, force: bool) -> Result<(), ClientError> {
        let query = if force { "?force=true" } else { "" };
        self.delete(&format!("{}{query}", paths::item::<Gateway>(id)))
            .await
    }

    /// A `POST` to an action of one item: `template` (a `paths` constant
    /// such as `paths::EIP_BIND`) with `id` filled in.
    pub async fn action<B: Serialize, T: DeserializeOwned>(
        &self,
        template: &str,
        id: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.post(&paths::at(template, &[id]), body).await
    }

    // Typed helpers for the common calls.

    pub async fn create_eip(&self, req: &CreateEip) -> Result<Eip, ClientError> {
        self.create::<Eip, _, _>(req).await
    }

    pub async fn bind_eip(&self, eip: &str, req: &BindEip) -> Result<Eip, ClientError> {
        self.action(paths::EIP_BIND, eip, req).await
    }

    /// Adds rules to a security group (by ID or name); the group after.
    pub async fn add_sg_rules(
        &self,
        group: &str,
        rules: &[SgRule],
    ) -> Result<SecurityGroup, ClientError> {
        #[derive(Serialize)]
        struct Add<'a> {
            rules: &'a [SgRule],
        }
        self.post(
            &paths::at(paths::SECURITY_GROUP_RULES, &[group]),
            &Add { rules },
        )
        .await
    }

    /// Removes a rule (its ID, or the rule as written) from a group.
    pub async fn remove_sg_rule(
        &self,
        group: &str,
        rule: &str,
    ) -> Result<SecurityGroup, ClientError> {
        self.call::<(), SecurityGroup>(
            Method::DELETE,
            &paths::at(paths::SECURITY_GROUP_RULE, &[group, rule]),
            None,
        )
        .await
    }

    /// The default security group of a VPC (`<vpc name>-default`).
    pub async fn default_sg(&self, vpc: &Vpc) -> Result<SecurityGroup, ClientError> {
        let groups: Vec<SecurityGroup> = self.list(None).await?;
        let name = format!("{}-default", vpc.name);
        groups
            .into_iter()
            .find(|g| g.vpc_id == vpc.id && g.name == name)
            .ok_or_else(|| ClientError::Api {
                status: 404,
                code: "not_found".into(),
                message: format!("VPC {} has no group {name}", vpc.id),
            })
    }

    pub async fn create_subnet(&self, req: &CreateSubnet) -> Result<SubnetCreated, ClientError> {
        self.create::<Subnet, _, _>(req).await
    }

    /// Binds VIP `vip` to each NIC in turn (the first bound is the
    /// preferred master of the rendered guest configurations); the VIP as
    /// read back.
    pub async fn bind_vip_to(&self, vip: &str, nics: &[&str]) -> Result<Vip, ClientError> {
        for nic in nics {
            let _: WithWarnings<Vip> = self
                .action(
                    paths::VIP_BIND,
                    vip,
                    &VipNic {
                        nic: nic.to_string(),
                    },
                )
                .await?;
        }
        self.show(vip).await
    }

    /// A new EIP of `mbps` Mbit/s bound to server `server` (its primary
    /// NIC) in NAT mode: the manuals' "create a server with an EIP".
    pub async fn eip_for_server(&self, server: &str, mbps: u32) -> Result<Eip, ClientError> {
        self.create_eip(&CreateEip {
            bandwidth_mbps: mbps,
            bind: Some(BindEip {
                target: EipTarget::Server(server.to_string()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            }),
            ..Default::default()
        })
        .await
    }

    /// A new EIP of `mbps` Mbit/s bound to VIP `vip` in NAT mode.
    pub async fn eip_for_vip(&self, vip: &str, mbps: u32) -> Result<Eip, ClientError> {
        self.create_eip(&CreateEip {
            bandwidth_mbps: mbps,
            bind: Some(BindEip {
                target: EipTarget::Vip(vip.to_string()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            }),
            ..Default::default()
        })
        .await
    }

    /// Waits until `n` agents have registered (checking every 100 ms, at
    /// most `limit`); returns how many there are.
    pub async fn wait_for_agents(&self, n: usize, limit: std::time::Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let registered = self
                .get::<Vec<vpcip_model::desired::Agent>>(paths::AGENTS)
                .await
                .map_or(0, |a| a.len());
            if registered >= n || tokio::time::Instant::now() >= deadline {
                return registered;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
