//! The agents' reconcile loop: register, watch the desired state (a whole
//! snapshot per revision, and again every resync period), diff it against
//! the kernel and change only what differs. Level-triggered: a restarted
//! agent, or one whose kernel state drifted, converges without flushing
//! what is already right. When the controller is unreachable the data plane
//! keeps its last state.

pub mod gateway;

use std::net::Ipv4Addr;
use std::time::Duration;

use vpcip_client::Client;
use vpcip_model::desired::{Agent, AgentReport, AgentRole, Desired, RegisterAgent};

pub struct AgentConfig {
    pub name: String,
    pub role: AgentRole,
    pub underlay_ip: Ipv4Addr,
    /// Prefix of the network namespaces this agent works on (the lab gives
    /// each world its own).
    pub netns_prefix: String,
    /// How often the agent reconciles even without a change.
    pub resync: Duration,
}

async fn register(client: &Client, cfg: &AgentConfig) -> Agent {
    let req = RegisterAgent {
        name: cfg.name.clone(),
        role: cfg.role,
        underlay_ip: cfg.underlay_ip,
    };
    let mut delay = Duration::from_millis(100);
    loop {
        match client.post::<_, Agent>("/v1/agents", &req).await {
            Ok(a) => return a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register with the controller; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Runs the agent until the process ends.
pub async fn run(client: Client, cfg: AgentConfig) -> ! {
    let agent = register(&client, &cfg).await;
    tracing::info!(id = %agent.id, role = cfg.role.as_str(), "agent registered");
    let mut gateway = gateway::GatewayReconciler::new(&cfg.netns_prefix);
    let mut applied: Option<i64> = None;
    loop {
        let path = match applied {
            Some(r) => format!(
                "/v1/agents/{}/desired?after={r}&wait={}",
                agent.id,
                cfg.resync.as_secs().max(1)
            ),
            None => format!("/v1/agents/{}/desired", agent.id),
        };
        let desired: Desired = match client.get(&path).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "controller unreachable; the data plane keeps its last state");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let started = std::time::Instant::now();
        let result = match (cfg.role, &desired.gateway) {
            (AgentRole::Gateway, Some(state)) => gateway.reconcile(state),
            _ => Ok(gateway::Summary::default()),
        };
        let error = match &result {
            Ok(s) => {
                if s.changed > 0 {
                    tracing::info!(
                        revision = desired.revision,
                        changed = s.changed,
                        took_ms = started.elapsed().as_millis() as u64,
                        "reconciled"
                    );
                }
                None
            }
            Err(e) => {
                tracing::warn!(revision = desired.revision, error = %e, "reconcile failed");
                Some(e.clone())
            }
        };
        let report = AgentReport {
            applied_revision: desired.revision,
            error,
        };
        if let Err(e) = client
            .post::<_, ()>(&format!("/v1/agents/{}/report", agent.id), &report)
            .await
        {
            tracing::warn!(error = %e, "cannot report to the controller");
        }
        applied = Some(desired.revision);
    }
}
