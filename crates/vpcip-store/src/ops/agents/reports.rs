//! What the agents report of the data plane: the gateways' EIP counters,
//! programmed EIPs and VIP holders, the hosts' NIC drops; and their reads.

use vpcip_model::desired::{self, Agent, AgentRole};
use vpcip_model::*;

use super::agent_for;
use crate::db::{Resource, Scope, now};
use crate::{Store, StoreError};

impl Store {
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
        let at = now();
        let slot = at / self.traffic_sample_secs;
        if !report.counters.is_empty() {
            tx.write_quiet(
                "DELETE FROM eip_traffic_history WHERE at < $1",
                &[(at - crate::TRAFFIC_HISTORY_SECS - self.traffic_sample_secs).into()],
            )
            .await?;
        }
        // Only the counters of addresses an EIP holds now: a report in
        // flight as an EIP is released would bring its counts back for the
        // address's next holder.
        let held: std::collections::BTreeSet<i64> = if report.counters.is_empty() {
            Default::default()
        } else {
            let marks: Vec<String> = (0..report.counters.len())
                .map(|i| format!("${}", i + 2))
                .collect();
            let mut args: Vec<crate::sql::Val> = vec![format!("{}-%", Kind::Eip.prefix()).into()];
            args.extend(report.counters.iter().map(|c| u32::from(c.eip).into()));
            tx.rows(
                &format!(
                    "SELECT addr FROM ip_allocations WHERE owner_id LIKE $1 AND addr IN ({})",
                    marks.join(", ")
                ),
                &args,
            )
            .await?
            .iter()
            .map(|r| r.int(0))
            .collect::<Result<_, _>>()?
        };
        for c in report
            .counters
            .iter()
            .filter(|c| held.contains(&i64::from(u32::from(c.eip))))
        {
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            tx.write_quiet(
                "INSERT INTO eip_traffic_history (ip, agent_id, slot, at, packets_in, bytes_in, packets_out, bytes_out, drops_in, drops_out) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (ip, agent_id, slot) DO UPDATE SET \
                 at = excluded.at, packets_in = excluded.packets_in, bytes_in = excluded.bytes_in, \
                 packets_out = excluded.packets_out, bytes_out = excluded.bytes_out, \
                 drops_in = excluded.drops_in, drops_out = excluded.drops_out",
                &[
                    u32::from(c.eip).into(),
                    agent.id().into(),
                    slot.into(),
                    at.into(),
                    n(c.packets_in).into(),
                    n(c.bytes_in).into(),
                    n(c.packets_out).into(),
                    n(c.bytes_out).into(),
                    n(c.drops_in).into(),
                    n(c.drops_out).into(),
                ],
            )
            .await?;
            // `last_in_at`: now if packets came in since the last report
            // (or ever, on the first), else unchanged. A count back at zero
            // is a restarted agent's, not a packet.
            let first_in = if c.packets_in > 0 { at } else { 0 };
            tx.write_quiet(
                "INSERT INTO eip_traffic (ip, agent_id, packets_in, bytes_in, packets_out, bytes_out, drops_in, drops_out, last_in_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (ip, agent_id) DO UPDATE SET \
                 last_in_at = CASE WHEN excluded.packets_in > eip_traffic.packets_in \
                 OR (excluded.packets_in < eip_traffic.packets_in AND excluded.packets_in > 0) THEN $10 ELSE eip_traffic.last_in_at END, \
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
                    first_in.into(),
                    at.into(),
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
            &[agent.id().into(), at.into()],
        )
        .await?;
        tx.commit().await
    }

    /// The traffic of each of `eips` (read by the caller through its
    /// scope), summed over the gateways that counted it, in one read.
    pub async fn eip_traffic_totals(
        &self,
        eips: &[Eip],
    ) -> Result<std::collections::HashMap<std::net::Ipv4Addr, desired::EipTraffic>, StoreError>
    {
        let mut out = std::collections::HashMap::new();
        if eips.is_empty() {
            return Ok(out);
        }
        let marks: Vec<String> = (1..=eips.len()).map(|i| format!("${i}")).collect();
        let args: Vec<crate::sql::Val> = eips.iter().map(|e| u32::from(e.ip).into()).collect();
        let mut tx = self.db.begin_read().await?;
        let rows = tx
            .rows(
                &format!(
                    "SELECT ip, CAST(SUM(packets_in) AS BIGINT), CAST(SUM(bytes_in) AS BIGINT), CAST(SUM(packets_out) AS BIGINT), \
                     CAST(SUM(bytes_out) AS BIGINT), CAST(SUM(drops_in) AS BIGINT), CAST(SUM(drops_out) AS BIGINT) \
                     FROM eip_traffic WHERE ip IN ({}) GROUP BY ip",
                    marks.join(", ")
                ),
                &args,
            )
            .await?;
        tx.commit().await?;
        for r in rows {
            let n = |i: usize| r.int(i).map(|v| u64::try_from(v).unwrap_or(0));
            let ip = std::net::Ipv4Addr::from(u32::try_from(r.int(0)?).unwrap_or(0));
            out.insert(
                ip,
                desired::EipTraffic {
                    eip: ip,
                    packets_in: n(1)?,
                    bytes_in: n(2)?,
                    packets_out: n(3)?,
                    bytes_out: n(4)?,
                    drops_in: n(5)?,
                    drops_out: n(6)?,
                },
            );
        }
        Ok(out)
    }

    /// The gateway carrying VPC `key` now (the one whose agent last
    /// reported winning the election of the VPC's slot), as its owner (or
    /// an operator) sees it.
    pub async fn vpc_carrier(
        &self,
        scope: &Scope,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let vpc: Vpc = tx.find(scope, key, false).await?;
        let gateways: Vec<Gateway> = tx.all().await?;
        tx.commit().await?;
        let agents = self.agents(&Scope::Operator).await?;
        Ok(desired::carrier(&vpc.id, &gateways, &agents))
    }

    /// Whether each EIP segment's traffic reaches the gateways: how many of
    /// its addresses the gateways hold, and the latest packet a gateway
    /// counted coming in for one of them (`vpcip eip check-route`'s
    /// evidence, gathered all the time). Operators only.
    pub async fn segment_reach(
        &self,
        scope: &Scope,
    ) -> Result<Vec<desired::SegmentReach>, StoreError> {
        scope.require_operator("read whether the EIP segments are routed")?;
        let mut tx = self.db.begin_read().await?;
        let subnets: Vec<Subnet> = tx.all().await?;
        let mut out = vec![];
        for s in subnets.iter().filter(|s| s.kind == SubnetKind::Eip) {
            let (lo, hi) = (u32::from(s.range_start), u32::from(s.range_end));
            let held = tx
                .count(
                    "SELECT COUNT(DISTINCT ip) FROM gateway_eips WHERE ip >= $1 AND ip <= $2",
                    &[lo.into(), hi.into()],
                )
                .await?;
            let last = tx
                .rows(
                    "SELECT ip, agent_id, last_in_at FROM eip_traffic WHERE ip >= $1 AND ip <= $2 AND last_in_at > 0 \
                     ORDER BY last_in_at DESC LIMIT 1",
                    &[lo.into(), hi.into()],
                )
                .await?;
            let last_in = match last.first() {
                Some(r) => {
                    let agent: Agent = tx.get(&r.text(1)?, false).await?;
                    let ip = u32::try_from(r.int(0)?).unwrap_or(0);
                    Some(desired::PacketSeen {
                        eip: ip.into(),
                        gateway: agent.name,
                        at: r.int(2)?,
                    })
                }
                None => None,
            };
            out.push(desired::SegmentReach {
                subnet_id: s.id.clone(),
                prefix: s.cidr,
                held: held as u64,
                last_in,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// An EIP's traffic over the last hour: rates per second between each
    /// gateway's consecutive samples, summed over the gateways, one point
    /// a sample slot (oldest first). A gateway's counters that went back
    /// (its agent restarted) count from zero.
    pub async fn eip_traffic_history(
        &self,
        scope: &Scope,
        key: &str,
    ) -> Result<Vec<desired::TrafficRate>, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let eip: Eip = tx.find(scope, key, false).await?;
        let since = now() - crate::TRAFFIC_HISTORY_SECS - self.traffic_sample_secs;
        let rows = tx
            .rows(
                "SELECT agent_id, slot, at, packets_in, bytes_in, packets_out, bytes_out, drops_in, drops_out \
                 FROM eip_traffic_history WHERE ip = $1 AND at >= $2 ORDER BY agent_id, slot",
                &[u32::from(eip.ip).into(), since.into()],
            )
            .await?;
        tx.commit().await?;
        let mut samples = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut counts = [0i64; 6];
            for (i, c) in counts.iter_mut().enumerate() {
                *c = r.int(3 + i)?;
            }
            samples.push((r.text(0)?, r.int(1)?, r.int(2)?, counts));
        }
        Ok(desired::TrafficRate::from_samples(&samples))
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
        if let (Some(vpc), true) = (&eip.vpc_id(), eip.private_ip().is_some()) {
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
}
