//! EIPs: allocate from an EIP segment, bind to a server, NIC or VIP (NAT or
//! visible), rebind, change bandwidth, release; and the vendor manuals' "EIP visible
//! on the NIC" recipe as one transaction.

use vpcip_model::ipam::usable;
use vpcip_model::rules::{self, ResolvedTarget};
use vpcip_model::*;

use super::binding::{
    bind_eip, clear_eip, finish_bind, follow_server, prepare_bind, resolve_target,
};
use super::compute::{NicSpec, make_nic};
use super::network::{default_sg_name, insert_subnet};
use crate::db::{Claim, PoolUse, Resource, Scope, Tx, new_id};
use crate::{Store, StoreError};

/// The helpers, each once, in order.
fn dedup(algs: &[Alg]) -> Vec<Alg> {
    let mut v = algs.to_vec();
    v.sort();
    v.dedup();
    v
}

/// Allocates an address for a new EIP: from the named segment, the segment
/// holding the wanted address, or the first segment with room.
async fn allocate_eip_address(
    tx: &mut Tx,
    scope: &Scope,
    id: &str,
    subnet: Option<&str>,
    ip: Option<std::net::Ipv4Addr>,
) -> Result<(Subnet, std::net::Ipv4Addr), StoreError> {
    let candidates: Vec<Subnet> = match subnet {
        Some(key) => {
            let s: Subnet = tx.find(scope, key, false).await?;
            rules::need_subnet_kind(&s, SubnetKind::Eip)?;
            vec![s]
        }
        None => {
            let all = tx.eip_segments().await?;
            all.into_iter()
                .filter(|s| s.kind == SubnetKind::Eip)
                .filter(|s| ip.is_none_or(|a| s.cidr.contains(&a)))
                .collect()
        }
    };
    if candidates.is_empty() {
        return Err(match ip {
            Some(a) => RuleError::invalid("ip", format!("{a} is in no EIP segment")),
            None => RuleError::invalid(
                "subnet",
                "no EIP segment is configured; the operator creates one",
            ),
        }
        .into());
    }
    let mut last_err = None;
    for c in candidates {
        // The lowest address: the allocation's statement holds the
        // segment itself.
        let s = match ip {
            None => c,
            Some(_) => tx.pool_subnet(&c.id, PoolUse::Rewrite).await?,
        };
        if let Some(a) = ip {
            rules::check_chosen_address(&s, a)?;
        }
        match tx.allocate(&s, id, ip).await {
            Ok(a) => return Ok((s, a)),
            Err(StoreError::Rule(e @ RuleError::AddressExhausted { .. })) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err
        .unwrap_or_else(|| RuleError::invalid("subnet", "no EIP segment has room"))
        .into())
}

impl Store {
    pub async fn create_eip(&self, scope: &Scope, req: &CreateEip) -> Result<Eip, StoreError> {
        rules::check_bandwidth(req.bandwidth_mbps)?;
        if let Some(n) = &req.name {
            rules::validate_name("name", n)?;
        }
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let id = match tx
                .claim::<Eip>(scope.tenant(), req.client_token.as_deref(), req)
                .await?
            {
                Claim::Existing(e) => return Ok(e),
                Claim::New(id) => id,
            };
            let eip = self.create_eip_in(&mut tx, scope, id, req).await?;
            tx.commit().await?;
            Ok(eip)
        })
        .await
    }

    async fn create_eip_in(
        &self,
        tx: &mut Tx,
        scope: &Scope,
        id: String,
        req: &CreateEip,
    ) -> Result<Eip, StoreError> {
        // The operator's EIP for a tenant's target belongs to that tenant.
        let tenant = match (&req.bind, scope) {
            (Some(b), Scope::Operator) => match resolve_target(tx, scope, &b.target).await? {
                ResolvedTarget::Nic(n) => n.tenant,
                ResolvedTarget::Vip(v) => v.tenant,
            },
            _ => scope.tenant().to_string(),
        };
        tx.check_quota(&tenant, Kind::Eip);
        // The target is looked up and locked before the address is taken,
        // and bound after: allocations in a segment queue on its lowest
        // free range from there to the commit, which is kept short (on
        // PostgreSQL the binding's and the EIP's inserts ride in the
        // commit's message: the range is held for one round trip).
        let bind = match &req.bind {
            Some(b) => Some((b, prepare_bind(tx, scope, &b.target).await?)),
            None => None,
        };
        let mut eip = Eip {
            id,
            tenant,
            name: req.name.clone().unwrap_or_default(),
            subnet_id: String::new(),
            ip: req.ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            bandwidth_mbps: req.bandwidth_mbps,
            binding: EipBinding::Unbound,
            algs: dedup(&req.algs),
        };
        let (subnet, ip) =
            allocate_eip_address(tx, scope, &eip.id, req.subnet.as_deref(), req.ip).await?;
        eip.subnet_id = subnet.id;
        eip.ip = ip;
        if let Some((b, target)) = bind {
            finish_bind(tx, &mut eip, target, b).await?;
        }
        tx.insert(&eip).await?;
        Ok(eip)
    }

    pub async fn bind_eip(
        &self,
        scope: &Scope,
        key: &str,
        req: &BindEip,
    ) -> Result<Eip, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut eip: Eip = tx.find(scope, key, true).await?;
            scope.must_own(&eip.tenant, "this EIP")?;
            bind_eip(&mut tx, scope, &mut eip, req).await?;
            tx.update(&eip).await?;
            tx.commit().await?;
            Ok(eip)
        })
        .await
    }

    pub async fn unbind_eip(&self, scope: &Scope, key: &str) -> Result<Eip, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut eip: Eip = tx.find(scope, key, true).await?;
            scope.must_own(&eip.tenant, "this EIP")?;
            if !eip.is_bound() {
                return Err(RuleError::EipNotBound { eip: eip.ip }.into());
            }
            rules::check_eip_unbind(&eip)?;
            clear_eip(&mut tx, &mut eip).await?;
            tx.update(&eip).await?;
            tx.commit().await?;
            Ok(eip)
        })
        .await
    }

    pub async fn update_eip(
        &self,
        scope: &Scope,
        key: &str,
        req: &UpdateEip,
    ) -> Result<Eip, StoreError> {
        if let Some(b) = req.bandwidth_mbps {
            rules::check_bandwidth(b)?;
        }
        if req.bandwidth_mbps.is_none() && req.algs.is_none() {
            return Err(RuleError::invalid(
                "bandwidth_mbps",
                "nothing to change: give bandwidth_mbps or algs",
            )
            .into());
        }
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut eip: Eip = tx.find(scope, key, true).await?;
            scope.must_own(&eip.tenant, "this EIP")?;
            if let Some(b) = req.bandwidth_mbps {
                eip.bandwidth_mbps = b;
            }
            if let Some(a) = &req.algs {
                eip.algs = dedup(a);
            }
            tx.update(&eip).await?;
            tx.commit().await?;
            Ok(eip)
        })
        .await
    }

    /// Releases an unbound EIP: its address returns to the segment.
    pub async fn release_eip(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        self.release(scope, key, false).await
    }

    /// Releases an EIP, unbinding it first if it is bound in NAT mode, in
    /// one transaction (Neutron's floating IP delete does both).
    pub async fn unbind_and_release_eip(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        self.release(scope, key, true).await
    }

    async fn release(&self, scope: &Scope, key: &str, unbind: bool) -> Result<(), StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut eip: Eip = tx.find(scope, key, true).await?;
            scope.must_own(&eip.tenant, "this EIP")?;
            if unbind && eip.is_bound() {
                rules::check_eip_unbind(&eip)?;
                clear_eip(&mut tx, &mut eip).await?;
            }
            // Said as unbinding says it: a visible EIP is its NIC's (or
            // VIP's) address, freed by deleting that; a NAT binding is
            // undone by unbinding.
            rules::check_eip_unbind(&eip)?;
            if let Some(t) = eip.target_id() {
                let what = match (eip.nic_id(), eip.vip_id()) {
                    (Some(n), _) => tx
                        .get::<Nic>(n, false)
                        .await
                        .map(|n| format!("NIC {}", n.label()))
                        .unwrap_or_else(|_| format!("NIC {t}")),
                    _ => tx
                        .get::<Vip>(t, false)
                        .await
                        .map(|v| format!("VIP {}", v.label()))
                        .unwrap_or_else(|_| format!("VIP {t}")),
                };
                return Err(RuleError::InUse {
                    kind: "EIP",
                    id: eip.ip.to_string(),
                    reason: format!("it is bound to {what}; unbind it first"),
                }
                .into());
            }
            let subnet = tx.pool_subnet(&eip.subnet_id, PoolUse::Rewrite).await?;
            tx.release(&subnet, eip.ip).await?;
            tx.delete(&eip).await?;
            // Its counters and their history go with it: whoever takes
            // the address next starts from nothing.
            for table in ["eip_traffic", "eip_traffic_history"] {
                tx.write_quiet(
                    &format!("DELETE FROM {table} WHERE ip = $1"),
                    &[u32::from(eip.ip).into()],
                )
                .await?;
            }
            tx.commit().await
        })
        .await
    }

    /// The vendor manuals' "expose an EIP on a NIC" recipe, all steps in one
    /// transaction: allocate the EIP; add its segment as a secondary CIDR
    /// block of the server's VPC (unless a block already holds it); make (or
    /// reuse) a subnet there in the server's zone; make an ENI whose primary
    /// IP is the EIP; bind the EIP to it in visible mode; attach it.
    pub async fn create_visible_eip(
        &self,
        scope: &Scope,
        req: &CreateVisibleEip,
    ) -> Result<VisibleEip, StoreError> {
        rules::check_bandwidth(req.bandwidth_mbps)?;
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let out = match tx
                .claim::<Eip>(scope.tenant(), req.client_token.as_deref(), req)
                .await?
            {
                Claim::Existing(eip) => {
                    let nic: Nic = tx.get(eip.nic_id().unwrap_or_default(), false).await?;
                    VisibleEip {
                        vpc: tx.get(&nic.vpc_id, false).await?,
                        subnet: tx.get(&nic.subnet_id, false).await?,
                        nic,
                        eip,
                    }
                }
                Claim::New(id) => self.visible_eip_in(&mut tx, scope, id, req).await?,
            };
            tx.commit().await?;
            Ok(out)
        })
        .await
    }

    async fn visible_eip_in(
        &self,
        tx: &mut Tx,
        scope: &Scope,
        id: String,
        req: &CreateVisibleEip,
    ) -> Result<VisibleEip, StoreError> {
        {
            let mut server: Server = tx.find(scope, &req.server, true).await?;
            scope.must_own(&server.tenant, "this server")?;
            let primary: Nic = match server.nic_ids.first() {
                Some(id) => tx.get(id, false).await?,
                None => {
                    return Err(RuleError::ServerWithoutNic {
                        server: server.label().to_string(),
                    }
                    .into());
                }
            };
            let eip_scope = Scope::Tenant(server.tenant.clone());
            let eip = self
                .create_eip_in(
                    tx,
                    &eip_scope,
                    id,
                    &CreateEip {
                        name: req.name.clone(),
                        subnet: req.subnet.clone(),
                        ip: req.ip,
                        bandwidth_mbps: req.bandwidth_mbps,
                        bind: None,
                        algs: vec![],
                        client_token: None,
                    },
                )
                .await?;
            let segment: Subnet = tx.get(&eip.subnet_id, false).await?;
            let block = segment.cidr;

            // Step 1: the secondary CIDR block.
            let mut vpc: Vpc = tx.get(&primary.vpc_id, true).await?;
            if !vpc.blocks().any(|b| b.contains(&eip.ip)) {
                rules::check_vpc_cidr_add(&vpc, &block)?;
                vpc.secondary_cidrs.push(block);
                tx.update(&vpc).await?;
            }
            // Step 2: a subnet holding the EIP, in the server's zone.
            let siblings: Vec<Subnet> = tx.children(&vpc.id).await?;
            let subnet = match siblings.iter().find(|s| s.cidr.contains(&eip.ip)) {
                Some(s) => {
                    if s.zone_id.as_deref() != Some(&server.zone_id) {
                        let zs: Zone = tx.get(&server.zone_id, false).await?;
                        let zn = match &s.zone_id {
                            Some(z) => tx.get::<Zone>(z, false).await?.name,
                            None => "none".into(),
                        };
                        return Err(RuleError::SubnetZoneMismatch {
                            subnet: s.label().to_string(),
                            subnet_zone: zn,
                            server: server.label().to_string(),
                            server_zone: zs.name,
                        }
                        .into());
                    }
                    s.clone()
                }
                None => {
                    let hosts = usable(&block);
                    // The router's address in the new subnet is taken from
                    // the EIP segment too, so it is never handed out as an
                    // EIP (released when the subnet goes).
                    let subnet_id = new_id(Kind::Subnet);
                    let seg = tx.pool_subnet(&segment.id, PoolUse::Lowest).await?;
                    let gateway = tx.allocate(&seg, &subnet_id, None).await?;
                    let zone: Zone = tx.get(&server.zone_id, false).await?;
                    let creq = CreateSubnet {
                        name: format!("visible-{}-{}", block.network(), block.prefix_len()),
                        vpc: Some(vpc.id.clone()),
                        zone: Some(zone.id.clone()),
                        kind: SubnetKind::Guest,
                        cidr: Some(block),
                        gateway: Some(gateway),
                        range: Some(format!("{}-{}", hosts.start(), hosts.end())),
                        prefix_len: None,
                        ..Default::default()
                    };
                    let host_networks: Vec<HostNetwork> = tx.all().await?;
                    let plan = rules::plan_subnet(&creq, &vpc, &siblings, &host_networks)?;
                    insert_subnet(tx, subnet_id, &vpc, Some(zone.id), &creq, &plan).await?
                }
            };
            // Step 3: the ENI whose primary IP is the EIP.
            let eni_name = req
                .eni_name
                .clone()
                .unwrap_or_else(|| format!("eni-{}", eip.ip).replace('.', "-"));
            let sgs = if req.security_groups.is_empty() {
                vec![default_sg_name(&vpc.name)]
            } else {
                req.security_groups.clone()
            };
            let mut nic = make_nic(
                tx,
                &eip_scope,
                NicSpec {
                    id: new_id(Kind::Nic),
                    name: &eni_name,
                    subnet,
                    ip: Some(eip.ip),
                    security_groups: &sgs,
                    source_dest_check: true,
                    server: None,
                },
            )
            .await?;
            // Step 5: attach to the server (step 4, the visible bind, is
            // `make_nic`'s).
            nic.server_id = Some(server.id.clone());
            server.nic_ids.push(nic.id.clone());
            tx.update(&nic).await?;
            tx.update(&server).await?;
            // (`make_nic` bound the EIP to the ENI in visible mode, as it
            // does for any NIC made on a visible subnet's address; the ENI
            // is the server's now, and its binding follows.)
            follow_server(tx, &nic).await?;
            let eip: Eip = tx.get(&eip.id, false).await?;
            let subnet: Subnet = tx.get(&nic.subnet_id, false).await?;
            Ok(VisibleEip {
                eip,
                vpc,
                subnet,
                nic,
            })
        }
    }
}
