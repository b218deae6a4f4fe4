//! The system at a glance, for the operator.

use vpcip_model::desired::{self, AgentRole};
use vpcip_model::*;

use crate::db::{Resource, Scope, now};
use crate::{Store, StoreError};

/// The EIPs the gateways last reported programmed.
const PROGRAMMED: &str = "SELECT DISTINCT ip FROM gateway_eips";

fn programmed(
    rows: &[crate::sql::Row],
) -> Result<std::collections::BTreeSet<std::net::Ipv4Addr>, StoreError> {
    rows.iter()
        .map(|r| r.u32(0).map(std::net::Ipv4Addr::from))
        .collect()
}

impl Store {
    /// The system at a glance: the revision, each agent's health and lag,
    /// and the EIPs whose data plane (as the gateways last reported it)
    /// differs from the bindings.
    pub async fn status(&self, scope: &Scope) -> Result<desired::SystemStatus, StoreError> {
        let agents = self.agents(scope).await?;
        let mut tx = self.db.begin_read().await?;
        let revision = tx.revision().await?;
        let eips: Vec<Eip> = tx.all().await?;
        let gateways: Vec<Gateway> = tx.all().await?;
        let programmed = programmed(&tx.rows(PROGRAMMED, &[]).await?)?;
        let reported = tx
            .count("SELECT COUNT(*) FROM counter_reports", &[])
            .await?;
        tx.commit().await?;
        let bound: std::collections::BTreeMap<std::net::Ipv4Addr, &Eip> = eips
            .iter()
            .filter(|e| e.private_ip().is_some())
            .map(|e| (e.ip, e))
            .collect();
        let mut differing = Vec::new();
        // Until a gateway has reported, nothing is known of the data plane.
        if reported > 0 {
            for (ip, e) in &bound {
                if !programmed.contains(ip) {
                    differing.push(desired::EipDrift {
                        eip: *ip,
                        eip_id: Some(e.id.clone()),
                        problem: "not_programmed".into(),
                    });
                }
            }
            for ip in &programmed {
                if !bound.contains_key(ip) {
                    differing.push(desired::EipDrift {
                        eip: *ip,
                        eip_id: eips.iter().find(|e| e.ip == *ip).map(|e| e.id.clone()),
                        problem: "not_bound".into(),
                    });
                }
            }
        }
        let mut missing_ports: Vec<desired::MissingPort> = agents
            .iter()
            .filter(|a| a.role == AgentRole::Host)
            .flat_map(|a| {
                a.missing_ports.iter().map(|nic| desired::MissingPort {
                    nic_id: nic.clone(),
                    port: desired::port_ifname(nic),
                    host: a.name.clone(),
                })
            })
            .collect();
        missing_ports.sort_by(|a, b| (&a.host, &a.nic_id).cmp(&(&b.host, &b.nic_id)));
        let bgp = desired::bgp_problems(&gateways, &agents);
        let now = now();
        let watch = self.watch_running();
        Ok(desired::SystemStatus {
            revision,
            now,
            agents: agents
                .into_iter()
                .map(|a| desired::AgentStatus {
                    // Behind the last change of its own state (once the
                    // watch runs), not behind writes that concern others.
                    lag: (watch
                        .as_ref()
                        .and_then(|w| w.latest(&a.id))
                        .unwrap_or(revision)
                        - a.applied_revision)
                        .max(0),
                    healthy: a.healthy(now),
                    agent: a,
                })
                .collect(),
            bound_eips: bound.len(),
            programmed_eips: programmed.len(),
            differing,
            missing_ports,
            bgp,
        })
    }

    /// The EIPs some gateway last reported programmed (its NAT maps and
    /// steering hold them): what "ACTIVE" means to the OpenStack facade.
    pub async fn programmed_eips(
        &self,
    ) -> Result<std::collections::BTreeSet<std::net::Ipv4Addr>, StoreError> {
        programmed(&self.db.read_once(PROGRAMMED, &[]).await?)
    }

    /// Of one EIP: whether some gateway reported it programmed, and when
    /// it was created (Unix seconds), in one read.
    pub async fn eip_facts(&self, eip: &Eip) -> Result<(bool, Option<i64>), StoreError> {
        let mut tx = self.db.begin_read().await?;
        let programmed = !tx
            .rows(
                "SELECT 1 FROM gateway_eips WHERE ip = $1",
                &[u32::from(eip.ip).into()],
            )
            .await?
            .is_empty();
        let created = tx
            .rows(
                "SELECT created_at FROM resources WHERE id = $1",
                &[eip.id.as_str().into()],
            )
            .await?;
        tx.commit().await?;
        let created = match created.first() {
            Some(r) => Some(r.int(0)?),
            None => None,
        };
        Ok((programmed, created))
    }

    /// When each resource of kind `R` was created (Unix seconds), by ID.
    pub async fn created_times<R: Resource>(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows = self
            .db
            .read_once(
                "SELECT id, created_at FROM resources WHERE kind = $1",
                &[R::KIND.key().into()],
            )
            .await?;
        rows.iter().map(|r| Ok((r.text(0)?, r.int(1)?))).collect()
    }
}
