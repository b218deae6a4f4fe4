//! Agents: registration, their reports, and the desired state they watch.
//!
//! `reports.rs` holds what the agents report of the data plane (counters,
//! drops, VIP holders) and its reads, `status.rs` the system's status.

mod reports;
mod status;

use vpcip_model::desired::{self, Agent, AgentReport, AgentRole, Desired, RegisterAgent};
use vpcip_model::rules::{self, UnderlayClaim};
use vpcip_model::*;

use crate::db::{Resource, Scope, Tx, new_id, now};
use crate::ops::infra::{check_underlay, insert_gateway};
use crate::sql::Val;
use crate::{Store, StoreError};

/// The agent `key` (ID or name) names, for `scope`: any agent for the
/// operator, only its own for an agent token (another agent, or one that
/// does not exist, is refused as not its own), none for a tenant.
async fn agent_for(
    tx: &mut Tx,
    scope: &Scope,
    key: &str,
    action: &str,
) -> Result<Agent, StoreError> {
    let Scope::Agent(me) = scope else {
        scope.require_operator(action)?;
        return tx.find(scope, key, false).await;
    };
    match tx.find::<Agent>(&Scope::Operator, key, false).await {
        Ok(a) => {
            me.check_acts_for(&a.name, Some(a.role))?;
            Ok(a)
        }
        Err(StoreError::Rule(RuleError::NotFound { .. })) => {
            me.check_acts_for(key, None)?;
            Err(RuleError::not_found("agent", key).into())
        }
        Err(e) => Err(e),
    }
}

impl Store {
    /// Registers an agent (again, after a restart: same name, same ID). A
    /// gateway agent also registers its gateway, whose underlay address is
    /// the next hop of the EIP segments' routes. An agent token registers
    /// its own agent only (name and role); the underlay address must be a
    /// free unicast address of a host network ([`rules::check_underlay`]).
    pub async fn register_agent(
        &self,
        scope: &Scope,
        req: &RegisterAgent,
    ) -> Result<Agent, StoreError> {
        match scope {
            Scope::Agent(me) => me.check_acts_for(&req.name, Some(req.role))?,
            _ => scope.require_operator("register agents")?,
        }
        rules::validate_name("name", &req.name)?;
        // Authorized: the lookups below see every agent and gateway.
        let op = &Scope::Operator;
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let gateway = req.role == AgentRole::Gateway;
            check_underlay(
                &mut tx,
                req.underlay_ip,
                UnderlayClaim {
                    agent: Some(&req.name),
                    gateway: gateway.then_some(req.name.as_str()),
                },
            )
            .await?;
            let existing = match tx.find::<Agent>(op, &req.name, true).await {
                Ok(a) => Some(a),
                Err(StoreError::Rule(RuleError::NotFound { .. })) => None,
                Err(e) => return Err(e),
            };
            let agent = match existing {
                Some(mut a) => {
                    if a.role != req.role || a.underlay_ip != req.underlay_ip {
                        a.role = req.role;
                        a.underlay_ip = req.underlay_ip;
                        tx.update(&a).await?;
                    }
                    a
                }
                None => {
                    let a = Agent {
                        id: new_id(Kind::Agent),
                        name: req.name.clone(),
                        role: req.role,
                        underlay_ip: req.underlay_ip,
                        applied_revision: 0,
                        last_seen: 0,
                        error: None,
                        missing_ports: vec![],
                        cluster: None,
                    };
                    tx.insert(&a).await?;
                    a
                }
            };
            if gateway {
                match tx.find::<Gateway>(op, &req.name, true).await {
                    Ok(mut g) if g.underlay_ip != req.underlay_ip => {
                        g.underlay_ip = req.underlay_ip;
                        tx.update(&g).await?;
                    }
                    Ok(_) => {}
                    Err(StoreError::Rule(RuleError::NotFound { .. })) => {
                        insert_gateway(&mut tx, &req.name, req.underlay_ip).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
            tx.commit().await?;
            Ok(agent)
        })
        .await
    }

    pub async fn report_agent(
        &self,
        scope: &Scope,
        key: &str,
        report: &AgentReport,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let agent = agent_for(&mut tx, scope, key, "report agent status").await?;
        let error = report
            .error
            .as_deref()
            .map(|e| e.chars().take(1000).collect::<String>());
        // At most 1,000 NIC IDs, each of at most 64 characters.
        let missing: Vec<&str> = report
            .missing_ports
            .iter()
            .take(1000)
            .map(|id| id.get(..64).unwrap_or(id))
            .collect();
        let missing = serde_json::to_string(&missing)
            .map_err(|e| StoreError::Corrupt(format!("missing ports: {e}")))?;
        // At most 64 BGP sessions and 255 slots, their words cut short.
        let cluster = report.cluster.as_ref().map(|c| {
            let cut = |t: &str| t.chars().take(200).collect::<String>();
            let mut c = c.clone();
            c.carrying.truncate(255);
            c.bgp.truncate(64);
            for b in &mut c.bgp {
                b.state = cut(&b.state);
                b.info = cut(&b.info);
            }
            c.bgp_error = c.bgp_error.as_deref().map(cut);
            c
        });
        let cluster = cluster
            .map(|c| serde_json::to_string(&c))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("cluster report: {e}")))?;
        let args: [Val; 6] = [
            agent.id().into(),
            report.applied_revision.into(),
            now().into(),
            error.into(),
            missing.into(),
            cluster.into(),
        ];
        let n = tx
            .write_quiet(
                "UPDATE agent_status SET applied_revision = $2, last_seen = $3, error = $4, missing = $5, cluster = $6 WHERE agent_id = $1",
                &args,
            )
            .await?;
        if n == 0 {
            tx.write_quiet(
                "INSERT INTO agent_status (agent_id, applied_revision, last_seen, error, missing, cluster) VALUES ($1, $2, $3, $4, $5, $6)",
                &args,
            )
            .await?;
        }
        tx.commit().await
    }
    /// Agents with their last reports.
    pub async fn agents(&self, scope: &Scope) -> Result<Vec<Agent>, StoreError> {
        scope.require_operator("list agents")?;
        let mut tx = self.db.begin_read().await?;
        let mut agents: Vec<Agent> = tx.all().await?;
        let rows = tx
            .rows(
                "SELECT agent_id, applied_revision, last_seen, error, missing, cluster FROM agent_status",
                &[],
            )
            .await?;
        tx.commit().await?;
        for r in rows {
            let id = r.text(0)?;
            if let Some(a) = agents.iter_mut().find(|a| a.id == id) {
                a.applied_revision = r.int(1)?;
                a.last_seen = r.int(2)?;
                a.error = r.text(3).ok();
                a.missing_ports = r
                    .text(4)
                    .ok()
                    .and_then(|m| serde_json::from_str(&m).ok())
                    .unwrap_or_default();
                a.cluster = r.text(5).ok().and_then(|c| serde_json::from_str(&c).ok());
            }
        }
        Ok(agents)
    }

    /// One agent (operator, or its own agent token): who may watch, and whether it exists, before
    /// a long poll waits.
    pub async fn agent(&self, scope: &Scope, key: &str) -> Result<Agent, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let agent = agent_for(&mut tx, scope, key, "read desired state").await?;
        tx.commit().await?;
        Ok(agent)
    }

    /// An agent's whole desired state, read in one snapshot with the
    /// revision it belongs to.
    pub async fn desired(&self, scope: &Scope, key: &str) -> Result<Desired, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let agent = agent_for(&mut tx, scope, key, "read desired state").await?;
        let revision = tx.revision().await?;
        let vpcs: Vec<Vpc> = tx.all().await?;
        let subnets: Vec<Subnet> = tx.all().await?;
        let eips: Vec<Eip> = tx.all().await?;
        let servers: Vec<Server> = tx.all().await?;
        let nics: Vec<Nic> = tx.all().await?;
        let vips: Vec<Vip> = tx.all().await?;
        let agents: Vec<Agent> = tx.all().await?;
        let host_networks: Vec<HostNetwork> = tx.all().await?;
        let gateways: Vec<Gateway> = tx.all().await?;
        let security_groups: Vec<SecurityGroup> = tx.all().await?;
        tx.commit().await?;
        let world = desired::World {
            vpcs: &vpcs,
            subnets: &subnets,
            eips: &eips,
            servers: &servers,
            nics: &nics,
            vips: &vips,
            agents: &agents,
            host_networks: &host_networks,
            gateways: &gateways,
            security_groups: &security_groups,
            dhcp: &self.dhcp,
        };
        let mut desired = world.desired(revision, &agent);
        if let Some(g) = desired.gateway.as_mut() {
            g.infra_allow = self.infra_allow.clone();
        }
        Ok(desired)
    }
}
