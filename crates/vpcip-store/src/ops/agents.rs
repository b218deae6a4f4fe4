//! Agents: registration, their reports, and the desired state they watch.

use vpcip_model::desired::{self, Agent, AgentReport, AgentRole, Desired, RegisterAgent};
use vpcip_model::rules;
use vpcip_model::*;

use crate::db::{Resource, Scope, new_id, now};
use crate::sql::Val;
use crate::{Store, StoreError};

impl Store {
    /// Registers an agent (again, after a restart: same name, same ID). A
    /// gateway agent also registers its gateway, whose underlay address is
    /// the next hop of the EIP segments' routes.
    pub async fn register_agent(
        &self,
        scope: &Scope,
        req: &RegisterAgent,
    ) -> Result<Agent, StoreError> {
        scope.require_operator("register agents")?;
        rules::validate_name("name", &req.name)?;
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let existing = match tx.find::<Agent>(scope, &req.name, true).await {
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
                    };
                    tx.insert(&a).await?;
                    a
                }
            };
            if req.role == AgentRole::Gateway {
                match tx.find::<Gateway>(scope, &req.name, true).await {
                    Ok(mut g) if g.underlay_ip != req.underlay_ip => {
                        g.underlay_ip = req.underlay_ip;
                        tx.update(&g).await?;
                    }
                    Ok(_) => {}
                    Err(StoreError::Rule(RuleError::NotFound { .. })) => {
                        tx.insert(&Gateway {
                            id: new_id(Kind::Gateway),
                            name: req.name.clone(),
                            underlay_ip: req.underlay_ip,
                        })
                        .await?;
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
        scope.require_operator("report agent status")?;
        let mut tx = self.db.begin().await?;
        let agent: Agent = tx.find(scope, key, false).await?;
        let error = report
            .error
            .as_deref()
            .map(|e| e.chars().take(1000).collect::<String>());
        let args: [Val; 4] = [
            agent.id().into(),
            report.applied_revision.into(),
            now().into(),
            error.into(),
        ];
        let n = tx
            .write_quiet(
                "UPDATE agent_status SET applied_revision = $2, last_seen = $3, error = $4 WHERE agent_id = $1",
                &args,
            )
            .await?;
        if n == 0 {
            tx.write_quiet(
                "INSERT INTO agent_status (agent_id, applied_revision, last_seen, error) VALUES ($1, $2, $3, $4)",
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
                "SELECT agent_id, applied_revision, last_seen, error FROM agent_status",
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
            }
        }
        Ok(agents)
    }

    /// An agent's whole desired state, read in one snapshot with the
    /// revision it belongs to.
    pub async fn desired(&self, scope: &Scope, key: &str) -> Result<Desired, StoreError> {
        scope.require_operator("read desired state")?;
        let mut tx = self.db.begin_read().await?;
        let agent: Agent = tx.find(scope, key, false).await?;
        let revision = tx
            .rows("SELECT value FROM revision WHERE id = 1", &[])
            .await?
            .first()
            .ok_or_else(|| StoreError::Corrupt("no revision row".into()))?
            .int(0)?;
        let vpcs: Vec<Vpc> = tx.all().await?;
        let subnets: Vec<Subnet> = tx.all().await?;
        let eips: Vec<Eip> = tx.all().await?;
        let servers: Vec<Server> = tx.all().await?;
        let nics: Vec<Nic> = tx.all().await?;
        let vips: Vec<Vip> = tx.all().await?;
        let agents: Vec<Agent> = tx.all().await?;
        tx.commit().await?;
        let world = desired::World {
            vpcs: &vpcs,
            subnets: &subnets,
            eips: &eips,
            servers: &servers,
            nics: &nics,
            vips: &vips,
            agents: &agents,
        };
        Ok(world.desired(revision, &agent))
    }
}
