//! Gateways: registered by their underlay address, changed, drained,
//! deleted; and the physical network's routes to them.

use vpcip_model::desired::{Agent, AgentRole};
use vpcip_model::rules::{self, UnderlayClaim};
use vpcip_model::*;

use super::{check_underlay, eip_segments, insert_gateway, lock_underlay, release_snat};
use crate::db::Scope;
use crate::{Store, StoreError};

impl Store {
    /// Registers a gateway by its underlay address, which must be a free
    /// unicast address of a host network (see [`rules::check_underlay`]).
    pub async fn create_gateway(
        &self,
        scope: &Scope,
        req: &CreateGateway,
    ) -> Result<Gateway, StoreError> {
        scope.require_operator("register gateways")?;
        rules::validate_name("name", &req.name)?;
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            // Its own agent (a gateway agent of this name) may hold the
            // address already.
            let own_agent = match tx.find::<Agent>(scope, &req.name, false).await {
                Ok(a) if a.role == AgentRole::Gateway => Some(a.name),
                Ok(_) | Err(StoreError::Rule(RuleError::NotFound { .. })) => None,
                Err(e) => return Err(e),
            };
            check_underlay(
                &mut tx,
                req.underlay_ip,
                UnderlayClaim {
                    agent: own_agent.as_deref(),
                    gateway: Some(&req.name),
                },
            )
            .await?;
            let gw = insert_gateway(&mut tx, &req.name, req.underlay_ip).await?;
            tx.commit().await?;
            Ok(gw)
        })
        .await
    }

    /// Changes a gateway's BGP or drains it (`drained`: another gateway
    /// carries its VPCs; refused for the only gateway left undrained).
    pub async fn update_gateway(
        &self,
        scope: &Scope,
        key: &str,
        req: &UpdateGateway,
    ) -> Result<Gateway, StoreError> {
        scope.require_operator("change gateways")?;
        if let Some(Some(bgp)) = &req.bgp {
            rules::check_bgp(bgp)?;
        }
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut gw: Gateway = tx.find(scope, key, true).await?;
            if let Some(bgp) = &req.bgp {
                gw.bgp = bgp.clone();
            }
            if let Some(drained) = req.drained {
                if drained && !gw.drained {
                    let gateways: Vec<Gateway> = tx.all().await?;
                    rules::check_drain(&gw, &gateways)?;
                }
                gw.drained = drained;
            }
            tx.update(&gw).await?;
            tx.commit().await?;
            Ok(gw)
        })
        .await
    }

    /// Deletes a gateway; the last one while EIPs are bound only when
    /// `force`d (the EIPs are then routed to no one).
    pub async fn delete_gateway(
        &self,
        scope: &Scope,
        key: &str,
        force: bool,
    ) -> Result<(), StoreError> {
        scope.require_operator("delete gateways")?;
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            lock_underlay(&mut tx).await?;
            let mut gw: Gateway = tx.find(scope, key, true).await?;
            let gateways: Vec<Gateway> = tx.all().await?;
            // Serialized with every bind (it locks its EIP's row) and every
            // EIP made (it allocates under its segment's row lock): no bind
            // slips in between the count and the delete.
            eip_segments(&mut tx).await?;
            tx.lock_kind(Kind::Eip).await?;
            let eips: Vec<Eip> = tx.all().await?;
            let bound = eips
                .iter()
                .filter(|e| e.nic_id().is_some() || e.vip_id().is_some())
                .count();
            rules::check_gateway_delete(&gw, &gateways, bound, force)?;
            release_snat(&mut tx, &mut gw).await?;
            tx.delete(&gw).await?;
            tx.commit().await
        })
        .await
    }

    /// The static routes the physical network needs, for every EIP segment.
    pub async fn physical_routes(&self, scope: &Scope) -> Result<Vec<PhysicalRoute>, StoreError> {
        scope.require_operator("read the physical routes")?;
        let mut tx = self.db.begin_read().await?;
        let gateways: Vec<Gateway> = tx.all().await?;
        let subnets: Vec<Subnet> = tx.all().await?;
        tx.commit().await?;
        Ok(subnets
            .iter()
            .filter(|s| s.kind == SubnetKind::Eip)
            .flat_map(|s| rules::physical_routes(s, &gateways))
            .collect())
    }
}
