//! Agents: registration, their reports, and the desired state they watch.

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

    /// Records a gateway's counters (those that changed since its last
    /// report) and the time of the report.
    pub async fn report_counters(
        &self,
        scope: &Scope,
        key: &str,
        report: &desired::CountersReport,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let agent = agent_for(&mut tx, scope, key, "report counters").await?;
        let host_only = report.counters.is_empty()
            && report.vip_holders.is_none()
            && report.programmed.is_none();
        if agent.role == AgentRole::Host && host_only {
            for d in &report.nic_drops {
                // Only the NICs of servers placed on this host.
                let Ok(nic) = tx.get::<Nic>(&d.nic_id, false).await else {
                    continue;
                };
                let here = match &nic.server_id {
                    Some(s) => tx
                        .get::<Server>(s, false)
                        .await
                        .is_ok_and(|s| s.host.as_deref() == Some(agent.name.as_str())),
                    None => false,
                };
                if !here {
                    continue;
                }
                let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                tx.write_quiet(
                    "INSERT INTO nic_drops (nic_id, agent_id, packets_in, packets_out) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (nic_id) DO UPDATE SET agent_id = excluded.agent_id, \
                     packets_in = excluded.packets_in, packets_out = excluded.packets_out",
                    &[
                        d.nic_id.as_str().into(),
                        agent.id().into(),
                        n(d.packets_in).into(),
                        n(d.packets_out).into(),
                    ],
                )
                .await?;
            }
            return tx.commit().await;
        }
        if agent.role != AgentRole::Gateway {
            // A host's report would overwrite the gateways' counters and
            // VIP holders.
            return Err(RuleError::invalid(
                "agent",
                format!(
                    "{} is a {} agent: only gateway agents report EIP counters and VIP holders (hosts report NIC drops only)",
                    agent.name,
                    agent.role.as_str()
                ),
            )
            .into());
        }
        for c in &report.counters {
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            tx.write_quiet(
                "INSERT INTO eip_traffic (ip, agent_id, packets_in, bytes_in, packets_out, bytes_out, drops_in, drops_out) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (ip, agent_id) DO UPDATE SET \
                 packets_in = excluded.packets_in, bytes_in = excluded.bytes_in, \
                 packets_out = excluded.packets_out, bytes_out = excluded.bytes_out, \
                 drops_in = excluded.drops_in, drops_out = excluded.drops_out",
                &[
                    u32::from(c.eip).into(),
                    agent.id().into(),
                    n(c.packets_in).into(),
                    n(c.bytes_in).into(),
                    n(c.packets_out).into(),
                    n(c.bytes_out).into(),
                    n(c.drops_in).into(),
                    n(c.drops_out).into(),
                ],
            )
            .await?;
        }
        if let Some(eips) = &report.programmed {
            tx.write_quiet(
                "DELETE FROM gateway_eips WHERE agent_id = $1",
                &[agent.id().into()],
            )
            .await?;
            for ip in eips {
                tx.write_quiet(
                    "INSERT INTO gateway_eips (agent_id, ip) VALUES ($1, $2)",
                    &[agent.id().into(), u32::from(*ip).into()],
                )
                .await?;
            }
        }
        if let Some(holders) = &report.vip_holders {
            tx.write_quiet(
                "DELETE FROM vip_holders WHERE agent_id = $1",
                &[agent.id().into()],
            )
            .await?;
            for h in holders {
                tx.write_quiet(
                    "INSERT INTO vip_holders (vpc_id, ip, mac, agent_id) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (vpc_id, ip) DO UPDATE SET mac = excluded.mac, agent_id = excluded.agent_id",
                    &[
                        h.vpc_id.as_str().into(),
                        u32::from(h.ip).into(),
                        h.mac.to_ascii_lowercase().into(),
                        agent.id().into(),
                    ],
                )
                .await?;
            }
        }
        tx.write_quiet(
            "INSERT INTO counter_reports (agent_id, at) VALUES ($1, $2) \
             ON CONFLICT (agent_id) DO UPDATE SET at = excluded.at",
            &[agent.id().into(), now().into()],
        )
        .await?;
        tx.commit().await
    }

    /// An EIP's counters, as its owner (or an operator) sees them.
    pub async fn eip_counters(
        &self,
        scope: &Scope,
        key: &str,
    ) -> Result<desired::EipCounters, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let eip: Eip = tx.find(scope, key, false).await?;
        let rows = tx
            .rows(
                "SELECT c.agent_id, c.packets_in, c.bytes_in, c.packets_out, c.bytes_out, r.at, c.drops_in, c.drops_out \
                 FROM eip_traffic c LEFT JOIN counter_reports r ON r.agent_id = c.agent_id WHERE c.ip = $1",
                &[u32::from(eip.ip).into()],
            )
            .await?;
        let mut out = desired::EipCounters {
            eip_id: eip.id.clone(),
            traffic: desired::EipTraffic::none(eip.ip),
            gateway: None,
            as_of: 0,
            carried_by: None,
        };
        // Every gateway that passed it counted its share: the sum, and
        // the gateway that counted most lately.
        let mut names = Vec::new();
        for r in &rows {
            let agent: Agent = tx.get(&r.text(0)?, false).await?;
            let n = |v: i64| u64::try_from(v).unwrap_or(0);
            let t = &mut out.traffic;
            t.packets_in += n(r.int(1)?);
            t.bytes_in += n(r.int(2)?);
            t.packets_out += n(r.int(3)?);
            t.bytes_out += n(r.int(4)?);
            t.drops_in += n(r.int(6)?);
            t.drops_out += n(r.int(7)?);
            out.as_of = out.as_of.max(r.int(5).unwrap_or(0));
            names.push(agent.name);
        }
        names.sort();
        if !names.is_empty() {
            out.gateway = Some(names.join(", "));
        }
        let gateways: Vec<Gateway> = tx.all().await?;
        tx.commit().await?;
        if let (Some(vpc), true) = (&eip.vpc_id, eip.private_ip.is_some()) {
            let agents = self.agents(&Scope::Operator).await?;
            out.carried_by = desired::carrier(vpc, &gateways, &agents);
        }
        Ok(out)
    }

    /// Packets a NIC's security groups dropped, as its host last reported
    /// (zeros before any report).
    pub async fn nic_drops(
        &self,
        scope: &Scope,
        key: &str,
    ) -> Result<desired::NicDrops, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let nic: Nic = tx.find(scope, key, false).await?;
        let rows = tx
            .rows(
                "SELECT packets_in, packets_out FROM nic_drops WHERE nic_id = $1",
                &[nic.id.as_str().into()],
            )
            .await?;
        let mut out = desired::NicDrops {
            nic_id: nic.id.clone(),
            ..Default::default()
        };
        if let Some(r) = rows.first() {
            out.packets_in = u64::try_from(r.int(0)?).unwrap_or(0);
            out.packets_out = u64::try_from(r.int(1)?).unwrap_or(0);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Which NIC holds a VIP now, as its gateway's router resolves it.
    pub async fn vip_holding(
        &self,
        scope: &Scope,
        key: &str,
    ) -> Result<desired::VipHolding, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let vip: Vip = tx.find(scope, key, false).await?;
        let rows = tx
            .rows(
                "SELECT h.mac, r.at FROM vip_holders h LEFT JOIN counter_reports r ON r.agent_id = h.agent_id \
                 WHERE h.vpc_id = $1 AND h.ip = $2",
                &[vip.vpc_id.as_str().into(), u32::from(vip.ip).into()],
            )
            .await?;
        let mut out = desired::VipHolding {
            vip_id: vip.id.clone(),
            ip: vip.ip,
            nic_id: None,
            mac: None,
            bound: false,
            as_of: 0,
        };
        if let Some(r) = rows.first() {
            let mac = r.text(0)?;
            out.as_of = r.int(1).unwrap_or(0);
            let nics: Vec<Nic> = tx.children(&vip.subnet_id).await?;
            if let Some(n) = nics.iter().find(|n| n.mac.eq_ignore_ascii_case(&mac)) {
                out.nic_id = Some(n.id.clone());
                out.bound = vip.nic_ids.contains(&n.id);
            }
            out.mac = Some(mac);
        }
        tx.commit().await?;
        Ok(out)
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

    /// Every EIP's counters with the gateway that counted them.
    pub async fn counted_traffic(&self) -> Result<Vec<desired::CountedTraffic>, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let agents: Vec<Agent> = tx.all().await?;
        let rows = tx
            .rows(
                "SELECT ip, agent_id, packets_in, bytes_in, packets_out, bytes_out, drops_in, drops_out \
                 FROM eip_traffic ORDER BY ip, agent_id",
                &[],
            )
            .await?;
        tx.commit().await?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let agent = r.text(1)?;
            out.push(desired::CountedTraffic {
                gateway: agents
                    .iter()
                    .find(|a| a.id == agent)
                    .map_or(agent, |a| a.name.clone()),
                traffic: desired::EipTraffic {
                    eip: std::net::Ipv4Addr::from(r.u32(0)?),
                    packets_in: n(r.int(2)?),
                    bytes_in: n(r.int(3)?),
                    packets_out: n(r.int(4)?),
                    bytes_out: n(r.int(5)?),
                    drops_in: n(r.int(6)?),
                    drops_out: n(r.int(7)?),
                },
            });
        }
        Ok(out)
    }

    /// The system at a glance: the revision, each agent's health and lag,
    /// and the EIPs whose data plane (as the gateways last reported it)
    /// differs from the bindings.
    pub async fn status(&self, scope: &Scope) -> Result<desired::SystemStatus, StoreError> {
        let agents = self.agents(scope).await?;
        let mut tx = self.db.begin_read().await?;
        let revision = tx
            .rows("SELECT value FROM revision WHERE id = 1", &[])
            .await?
            .first()
            .ok_or_else(|| StoreError::Corrupt("no revision row".into()))?
            .int(0)?;
        let eips: Vec<Eip> = tx.all().await?;
        let gateways: Vec<Gateway> = tx.all().await?;
        let programmed_rows = tx.rows("SELECT DISTINCT ip FROM gateway_eips", &[]).await?;
        let reported = tx
            .count("SELECT COUNT(*) FROM counter_reports", &[])
            .await?;
        tx.commit().await?;
        let mut programmed = std::collections::BTreeSet::new();
        for r in programmed_rows {
            programmed.insert(std::net::Ipv4Addr::from(r.u32(0)?));
        }
        let bound: std::collections::BTreeMap<std::net::Ipv4Addr, &Eip> = eips
            .iter()
            .filter(|e| e.private_ip.is_some())
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
        Ok(desired::SystemStatus {
            revision,
            now,
            agents: agents
                .into_iter()
                .map(|a| desired::AgentStatus {
                    lag: (revision - a.applied_revision).max(0),
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
