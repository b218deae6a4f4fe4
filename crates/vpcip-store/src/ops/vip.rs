//! VIPs: an address in a subnet shared by up to 10 NICs.

use std::collections::BTreeSet;

use vpcip_model::rules::{self, VipBindContext};
use vpcip_model::*;

use crate::db::{Claim, PoolUse, Resource, Scope};
use crate::{Store, StoreError};

impl Store {
    pub async fn create_vip(&self, scope: &Scope, req: &CreateVip) -> Result<Vip, StoreError> {
        rules::validate_name("name", &req.name)?;
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let id = match tx
                .claim::<Vip>(scope.tenant(), req.client_token.as_deref(), req)
                .await?
            {
                Claim::Existing(v) => return Ok(v),
                Claim::New(id) => id,
            };
            let found: Subnet = tx.find(scope, &req.subnet, false).await?;
            scope.must_own(&found.tenant, "this subnet")?;
            rules::need_subnet_kind(&found, SubnetKind::Guest)?;
            tx.check_quota(&found.tenant, Kind::Vip);
            let subnet = tx
                .pool_subnet(&found.id, PoolUse::for_address(req.ip))
                .await?;
            if let Some(ip) = req.ip {
                rules::check_chosen_address(&subnet, ip)?;
            }
            let visible = super::binding::visible_subnet_eip(&mut tx, &subnet, req.ip).await?;
            let ip = tx.allocate(&subnet, &id, req.ip).await?;
            let vip = Vip {
                id,
                tenant: subnet.tenant.clone(),
                name: req.name.clone(),
                vpc_id: subnet.vpc_id.clone(),
                subnet_id: subnet.id.clone(),
                ip,
                nic_ids: vec![],
                eip_id: None,
            };
            tx.insert(&vip).await?;
            let vip = match visible {
                Some(eip) => {
                    super::binding::bind_visible(&mut tx, &eip, EipTarget::Vip(vip.id.clone()))
                        .await?;
                    tx.get(&vip.id, false).await?
                }
                None => vip,
            };
            tx.commit().await?;
            Ok(vip)
        })
        .await
    }

    pub async fn bind_vip(
        &self,
        scope: &Scope,
        key: &str,
        nic_key: &str,
    ) -> Result<WithWarnings<Vip>, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            // Lock order: VIP, then NIC (unbind takes the same order).
            let mut vip: Vip = tx.find(scope, key, true).await?;
            scope.must_own(&vip.tenant, "this VIP")?;
            let mut nic: Nic = tx.find(scope, nic_key, true).await?;
            scope.must_own(&nic.tenant, "this NIC")?;
            let mut vip_nics = Vec::with_capacity(vip.nic_ids.len());
            for id in &vip.nic_ids {
                vip_nics.push(tx.get::<Nic>(id, false).await?);
            }
            let mut server_name = None;
            let (server_vip_count, server_nics_in_subnet) = match &nic.server_id {
                None => (0, 1),
                Some(s) => {
                    let server: Server = tx.get(s, false).await?;
                    server_name = Some(server.name.clone());
                    let mut vips = BTreeSet::new();
                    let mut in_subnet = 0;
                    for id in &server.nic_ids {
                        let n: Nic = tx.get(id, false).await?;
                        vips.extend(n.vip_ids.iter().cloned());
                        in_subnet += usize::from(n.subnet_id == vip.subnet_id);
                    }
                    (vips.len(), in_subnet)
                }
            };
            let ctx = VipBindContext {
                vip_nics,
                nic_vip_count: nic.vip_ids.len(),
                server_vip_count,
                server_nics_in_subnet,
                server_name,
            };
            let warnings = rules::check_vip_bind(&vip, &nic, &ctx)?;
            super::binding::bind_vip(&mut tx, &mut vip, &mut nic).await?;
            tx.commit().await?;
            Ok(WithWarnings {
                item: vip,
                warnings,
            })
        })
        .await
    }

    pub async fn unbind_vip(
        &self,
        scope: &Scope,
        key: &str,
        nic_key: &str,
    ) -> Result<Vip, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let vip: Vip = tx.find(scope, key, true).await?;
            scope.must_own(&vip.tenant, "this VIP")?;
            let mut nic: Nic = tx.find(scope, nic_key, true).await?;
            if !vip.nic_ids.contains(&nic.id) {
                return Err(RuleError::VipNotBound {
                    vip: vip.label().to_string(),
                    nic: nic.label().to_string(),
                }
                .into());
            }
            super::binding::unbind_vip(&mut tx, &vip.id, &mut nic).await?;
            let vip: Vip = tx.get(&vip.id, false).await?;
            tx.commit().await?;
            Ok(vip)
        })
        .await
    }

    /// Deletes a VIP bound to no NIC and carrying no EIP.
    pub async fn delete_vip(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let vip: Vip = tx.find(scope, key, true).await?;
            scope.must_own(&vip.tenant, "this VIP")?;
            let eip = match &vip.eip_id {
                Some(e) => Some(tx.get::<Eip>(e, true).await?),
                None => None,
            };
            let reason = if let Some(n) = vip.nic_ids.first() {
                Some(format!("it is bound to NIC {n}; unbind it first"))
            } else {
                eip.as_ref()
                    .filter(|e| e.mode() != EipMode::Visible)
                    .map(|e| format!("EIP {} is bound to it; unbind it first", e.ip))
            };
            if let Some(reason) = reason {
                return Err(RuleError::InUse {
                    kind: "VIP",
                    id: vip.label().to_string(),
                    reason,
                }
                .into());
            }
            if eip.is_some() {
                // A visible EIP is the VIP's own address: it goes with it.
                super::binding::unbind_target(&mut tx, &vip.id).await?;
            }
            let subnet = tx.pool_subnet(&vip.subnet_id, PoolUse::Rewrite).await?;
            tx.release(&subnet, vip.ip).await?;
            tx.delete(&vip).await?;
            tx.commit().await
        })
        .await
    }
}
