//! The controller's Prometheus metrics at `GET /metrics` (no token):
//!
//! - `vpcip_api_request_duration_seconds{method,route,status}` (histogram);
//! - `vpcip_store_errors_total{kind}`: the store failing (`unavailable`:
//!   the database refused or went away; `internal`: an inconsistency);
//! - `vpcip_eip_packets_total`, `vpcip_eip_bytes_total`,
//!   `vpcip_eip_limiter_drops_total` `{eip,direction,gateway}`: each EIP's
//!   traffic as its gateway last reported it (direction `in` is towards the
//!   EIP);
//! - `vpcip_agent_revision_lag{agent,role}`, `vpcip_agent_up{agent,role}`:
//!   how far behind each agent is, and whether it reported lately;
//! - `vpcip_revision`: the desired state's revision.
//!
//! Every API mutation also leaves one log line (target `vpcip::audit`):
//! method, route, resource, tenant and result.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use vpcip_model::desired::{AgentStatus, CountedTraffic};

/// The exposition format served.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Store failures since start, by kind: unavailable, internal.
pub(crate) static STORE_UNAVAILABLE: AtomicU64 = AtomicU64::new(0);
pub(crate) static STORE_INTERNAL: AtomicU64 = AtomicU64::new(0);

/// Counts (and logs) a store failure that is not a rule's refusal.
pub(crate) fn count_store_error(e: &vpcip_store::StoreError) {
    use vpcip_store::StoreError;
    match e {
        StoreError::Rule(_) | StoreError::Unavailable(_) => {}
        StoreError::Retry | StoreError::Db(_) => {
            STORE_UNAVAILABLE.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = ?e, "store error");
        }
        StoreError::Corrupt(_) | StoreError::Config(_) => {
            STORE_INTERNAL.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "store inconsistency");
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

fn new_histogram() -> Histogram {
    // 0.5 ms to about 16 s (the watch long-polls last up to a minute: they
    // land in +Inf).
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics kept between scrapes.
#[derive(Clone)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::new_with_constructor(new_histogram),
        }
    }
}

/// Who made a request: the authentication fills it in for the audit log.
#[derive(Clone, Default)]
pub(crate) struct CallerSlot(pub Arc<std::sync::Mutex<Option<String>>>);

/// Times every routed request and writes the audit line of mutations.
pub(crate) async fn track(
    State(metrics): State<Arc<ApiMetrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let slot = CallerSlot::default();
    req.extensions_mut().insert(slot.clone());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.to_string(),
            route: route.clone(),
            status,
        })
        .observe(started.elapsed().as_secs_f64());
    if method != axum::http::Method::GET {
        let tenant = slot
            .0
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .unwrap_or_else(|| "-".into());
        let result = if resp.status().is_success() {
            "ok"
        } else {
            "refused"
        };
        // The agents' own reports come every few seconds: not audited at
        // info.
        if route.starts_with(vpcip_model::paths::AGENTS) && route != vpcip_model::paths::AGENTS {
            tracing::debug!(target: "vpcip::audit", %method, %route, resource = %path, %tenant, status, result, "api mutation");
        } else {
            tracing::info!(target: "vpcip::audit", %method, %route, resource = %path, %tenant, status, result, "api mutation");
        }
    }
    resp
}

/// What is read at scrape time: the store's view of EIPs and agents.
#[derive(Debug)]
struct Snapshot {
    traffic: Vec<CountedTraffic>,
    agents: Vec<AgentStatus>,
    revision: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EipLabels {
    eip: String,
    direction: &'static str,
    gateway: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut counter = |name: &str,
                           help: &str,
                           unit: Option<&Unit>,
                           value: &dyn Fn(&vpcip_model::desired::EipTraffic, bool) -> u64|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Counter)?;
            for c in &self.traffic {
                for (inbound, direction) in [(true, "in"), (false, "out")] {
                    let labels = EipLabels {
                        eip: c.traffic.eip.to_string(),
                        direction,
                        gateway: c.gateway.clone(),
                    };
                    ConstCounter::new(value(&c.traffic, inbound))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
            Ok(())
        };
        counter(
            "vpcip_eip_packets",
            "Packets to (in) and from (out) each EIP, as its gateway counted them",
            None,
            &|t, i| if i { t.packets_in } else { t.packets_out },
        )?;
        counter(
            "vpcip_eip",
            "Bytes to (in) and from (out) each EIP, as its gateway counted them",
            Some(&Unit::Bytes),
            &|t, i| if i { t.bytes_in } else { t.bytes_out },
        )?;
        counter(
            "vpcip_eip_limiter_drops",
            "Packets each EIP's bandwidth limit dropped, towards it (in) and from it (out)",
            None,
            &|t, i| if i { t.drops_in } else { t.drops_out },
        )?;
        let mut errors = encoder.encode_descriptor(
            "vpcip_store_errors",
            "Store failures: unavailable (the database refused or went away), internal (an inconsistency)",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in [
            ("unavailable", &STORE_UNAVAILABLE),
            ("internal", &STORE_INTERNAL),
        ] {
            ConstCounter::new(n.load(Ordering::Relaxed))
                .encode(errors.encode_family(&KindLabel { kind })?)?;
        }
        let mut lag = encoder.encode_descriptor(
            "vpcip_agent_revision_lag",
            "Desired-state revisions each agent is behind",
            None,
            MetricType::Gauge,
        )?;
        for a in &self.agents {
            let labels = AgentLabels {
                agent: a.agent.name.clone(),
                role: a.agent.role.as_str(),
            };
            ConstGauge::new(a.lag).encode(lag.encode_family(&labels)?)?;
        }
        let mut up = encoder.encode_descriptor(
            "vpcip_agent_up",
            "1 when the agent reported lately without an error",
            None,
            MetricType::Gauge,
        )?;
        for a in &self.agents {
            let labels = AgentLabels {
                agent: a.agent.name.clone(),
                role: a.agent.role.as_str(),
            };
            ConstGauge::new(i64::from(a.healthy)).encode(up.encode_family(&labels)?)?;
        }
        ConstGauge::new(self.revision).encode(encoder.encode_descriptor(
            "vpcip_revision",
            "The desired state's revision",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

/// The metrics page.
pub(crate) async fn render(app: &crate::App) -> String {
    let status = app.store.status(&vpcip_store::Scope::Operator).await;
    let traffic = app.store.counted_traffic().await;
    let (agents, revision) = match status {
        Ok(s) => (s.agents, s.revision),
        Err(e) => {
            count_store_error(&e);
            (vec![], 0)
        }
    };
    let traffic = traffic.unwrap_or_else(|e| {
        count_store_error(&e);
        vec![]
    });
    let mut registry = Registry::default();
    registry.register_with_unit(
        "vpcip_api_request_duration",
        "Time to answer an API request, by route and status",
        Unit::Seconds,
        app.metrics.requests.clone(),
    );
    registry.register_collector(Box::new(Snapshot {
        traffic,
        agents,
        revision,
    }));
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}
