//! EIPs: allocate from an EIP segment, bind to a server, NIC or VIP (NAT or
//! visible), rebind, change bandwidth, release; and the vendor manuals' "EIP visible
//! on the NIC" recipe as one transaction.

use vpcip_model::ipam::usable;
use vpcip_model::rules::{self, ResolvedTarget};
use vpcip_model::*;

use super::compute::{NicSpec, make_nic};
use super::network::{default_sg_name, insert_subnet, must_own};
use crate::db::{Claim, Resource, Scope, Tx, new_id};
use crate::{Store, StoreError};

/// The helpers, each once, in order.
fn dedup(algs: &[Alg]) -> Vec<Alg> {
    let mut v = algs.to_vec();
    v.sort();
    v.dedup();
    v
}

/// Unbinds whatever EIP is bound to `target_id` (a NIC or VIP), keeping the
/// EIP allocated.
pub(crate) async fn unbind_target(tx: &mut Tx, target_id: &str) -> Result<(), StoreError> {
    let ids = tx
        .strings(
            "SELECT eip_id FROM eip_bindings WHERE target_id = $1",
            target_id,
        )
        .await?;
    for id in ids {
        let mut eip: Eip = tx.get(&id, true).await?;
        clear_binding(tx, &mut eip).await?;
        tx.update(&eip).await?;
    }
    Ok(())
}

async fn clear_binding(tx: &mut Tx, eip: &mut Eip) -> Result<(), StoreError> {
    tx.exec("DELETE FROM eip_bindings WHERE eip_id = $1", &[&eip.id])
        .await?;
    if let Some(v) = eip.vip_id.take() {
        let mut vip: Vip = tx.get(&v, true).await?;
        vip.eip_id = None;
        tx.update(&vip).await?;
    }
    eip.nic_id = None;
    eip.server_id = None;
    eip.private_ip = None;
    eip.vpc_id = None;
    eip.mode = EipMode::Nat;
    Ok(())
}

/// A guest subnet carved from an EIP segment (the vendor manuals' visible-mode
/// subnet: a secondary VPC block equal to the EIP's) holds public
/// addresses, which the segment hands out as EIPs. So a NIC or VIP made
/// there must take the address of an EIP of the subnet's tenant that is
/// bound to nothing (the recipe's "the ENI's primary IP is the EIP"); the
/// caller binds that EIP to it in visible mode in the same transaction, so
/// the address can be neither released nor handed out again while the NIC
/// or VIP has it. Returns that EIP, or None for an ordinary subnet.
pub(crate) async fn visible_subnet_eip(
    tx: &mut Tx,
    subnet: &Subnet,
    want: Option<std::net::Ipv4Addr>,
) -> Result<Option<Eip>, StoreError> {
    let default: Vpc = tx.find(&Scope::Operator, DEFAULT_VPC_NAME, false).await?;
    let segments: Vec<Subnet> = tx.children(&default.id).await?;
    let Some(segment) = segments.into_iter().find(|s| {
        s.kind == SubnetKind::Eip
            && (s.cidr.contains(&subnet.cidr.network()) || subnet.cidr.contains(&s.cidr.network()))
    }) else {
        return Ok(None);
    };
    let refuse = |reason: String| -> StoreError {
        RuleError::VisibleSubnetAddress {
            subnet: subnet.label().to_string(),
            segment: segment.cidr,
            reason,
        }
        .into()
    };
    let Some(ip) = want else {
        return Err(refuse(
            "no address was given; allocate an EIP and give its address".into(),
        ));
    };
    let owner = tx
        .rows(
            "SELECT owner_id FROM ip_allocations WHERE subnet_id = $1 AND addr = $2",
            &[segment.id.as_str().into(), u32::from(ip).into()],
        )
        .await?;
    let eip: Option<Eip> = match owner.first() {
        Some(r) => tx.get::<Eip>(&r.text(0)?, true).await.ok(),
        None => None,
    };
    match eip {
        Some(e) if e.tenant == subnet.tenant && e.nic_id.is_none() && e.vip_id.is_none() => {
            Ok(Some(e))
        }
        Some(e) if e.tenant == subnet.tenant => Err(refuse(format!(
            "EIP {ip} is bound to {}",
            e.nic_id.or(e.vip_id).unwrap_or_default()
        ))),
        _ => Err(refuse(format!("{ip} is not an EIP you hold"))),
    }
}

/// Binds `eip` to the NIC or VIP just made on its address in a visible
/// subnet (see [`visible_subnet_eip`]).
pub(crate) async fn bind_visible(
    tx: &mut Tx,
    eip: &Eip,
    target: EipTarget,
) -> Result<(), StoreError> {
    let mut eip: Eip = tx.get(&eip.id, true).await?;
    bind_in(
        tx,
        &Scope::Tenant(eip.tenant.clone()),
        &mut eip,
        &BindEip {
            target,
            mode: EipMode::Visible,
            allow_reassociation: false,
        },
    )
    .await?;
    tx.update(&eip).await
}

async fn resolve_target(
    tx: &mut Tx,
    scope: &Scope,
    target: &EipTarget,
) -> Result<ResolvedTarget, StoreError> {
    Ok(match target {
        EipTarget::Server(key) => {
            let server: Server = tx.find(scope, key, false).await?;
            let primary = server
                .nic_ids
                .first()
                .ok_or_else(|| RuleError::ServerWithoutNic {
                    server: server.label().to_string(),
                })?;
            ResolvedTarget::Nic(tx.get(primary, true).await?)
        }
        EipTarget::Nic(key) => ResolvedTarget::Nic(tx.find(scope, key, true).await?),
        EipTarget::Vip(key) => ResolvedTarget::Vip(tx.find(scope, key, true).await?),
    })
}

/// Binds `eip` (row locked) to `target` inside `tx`.
async fn bind_in(
    tx: &mut Tx,
    scope: &Scope,
    eip: &mut Eip,
    req: &BindEip,
) -> Result<(), StoreError> {
    let target = resolve_target(tx, scope, &req.target).await?;
    let target_tenant = match &target {
        ResolvedTarget::Nic(n) => &n.tenant,
        ResolvedTarget::Vip(v) => &v.tenant,
    };
    if *target_tenant != eip.tenant {
        // Another tenant's NIC is as good as absent.
        return Err(RuleError::not_found(target.kind(), target.label()).into());
    }
    let holder = tx
        .strings(
            "SELECT eip_id FROM eip_bindings WHERE target_id = $1",
            target.id(),
        )
        .await?;
    let target_eip = match holder.first() {
        Some(id) if *id != eip.id => Some(tx.get::<Eip>(id, false).await?),
        _ => None,
    };
    rules::check_eip_bind(
        eip,
        &target,
        target_eip.as_ref(),
        req.mode,
        req.allow_reassociation,
    )?;
    let current = eip.nic_id.as_deref().or(eip.vip_id.as_deref());
    if current == Some(target.id()) && eip.mode == req.mode {
        return Ok(());
    }
    if current.is_some() {
        clear_binding(tx, eip).await?;
    }
    tx.exec(
        "INSERT INTO eip_bindings (target_id, eip_id, mode) VALUES ($1, $2, $3)",
        &[target.id(), &eip.id, req.mode.as_str()],
    )
    .await?;
    eip.mode = req.mode;
    eip.private_ip = Some(target.ip());
    match target {
        ResolvedTarget::Nic(n) => {
            eip.nic_id = Some(n.id.clone());
            eip.server_id = n.server_id.clone();
            eip.vpc_id = Some(n.vpc_id.clone());
        }
        ResolvedTarget::Vip(mut v) => {
            eip.vip_id = Some(v.id.clone());
            eip.vpc_id = Some(v.vpc_id.clone());
            v.eip_id = Some(eip.id.clone());
            tx.update(&v).await?;
        }
    }
    Ok(())
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
            let default: Vpc = tx.find(&Scope::Operator, DEFAULT_VPC_NAME, false).await?;
            let all: Vec<Subnet> = tx.children(&default.id).await?;
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
        let mut s: Subnet = tx.get(&c.id, true).await?;
        if let Some(a) = ip {
            rules::check_chosen_address(&s, a)?;
        }
        match tx.allocate(&mut s, id, ip).await {
            Ok(a) => {
                tx.update(&s).await?;
                return Ok((s, a));
            }
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
        tx.check_quota(&tenant, Kind::Eip).await?;
        let (subnet, ip) =
            allocate_eip_address(tx, scope, &id, req.subnet.as_deref(), req.ip).await?;
        let mut eip = Eip {
            id,
            tenant,
            name: req.name.clone().unwrap_or_default(),
            subnet_id: subnet.id.clone(),
            ip,
            bandwidth_mbps: req.bandwidth_mbps,
            mode: EipMode::Nat,
            nic_id: None,
            vip_id: None,
            server_id: None,
            private_ip: None,
            vpc_id: None,
            algs: dedup(&req.algs),
        };
        if let Some(b) = &req.bind {
            bind_in(tx, scope, &mut eip, b).await?;
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
            must_own(scope, &eip.tenant, "this EIP")?;
            bind_in(&mut tx, scope, &mut eip, req).await?;
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
            must_own(scope, &eip.tenant, "this EIP")?;
            if eip.nic_id.is_none() && eip.vip_id.is_none() {
                return Err(RuleError::EipNotBound { eip: eip.ip }.into());
            }
            rules::check_eip_unbind(&eip)?;
            clear_binding(&mut tx, &mut eip).await?;
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
            must_own(scope, &eip.tenant, "this EIP")?;
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
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let eip: Eip = tx.find(scope, key, true).await?;
            must_own(scope, &eip.tenant, "this EIP")?;
            // Said as unbinding says it: a visible EIP is its NIC's (or
            // VIP's) address, freed by deleting that; a NAT binding is
            // undone by unbinding.
            rules::check_eip_unbind(&eip)?;
            if let Some(t) = eip.nic_id.as_ref().or(eip.vip_id.as_ref()) {
                let what = match (&eip.nic_id, &eip.vip_id) {
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
            let mut subnet: Subnet = tx.get(&eip.subnet_id, true).await?;
            tx.release(&mut subnet, eip.ip).await?;
            tx.update(&subnet).await?;
            tx.delete(&eip).await?;
            tx.commit().await
        })
        .await
    }

    /// The seeds' "expose an EIP on a NIC" recipe, all steps in one
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
                    let nic: Nic = tx
                        .get(eip.nic_id.as_deref().unwrap_or_default(), false)
                        .await?;
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
            must_own(scope, &server.tenant, "this server")?;
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
                    let mut seg: Subnet = tx.get(&segment.id, true).await?;
                    let gateway = tx.allocate(&mut seg, &subnet_id, None).await?;
                    tx.update(&seg).await?;
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
            // Steps 4 and 5: bind in visible mode, attach to the server.
            nic.server_id = Some(server.id.clone());
            server.nic_ids.push(nic.id.clone());
            tx.update(&nic).await?;
            tx.update(&server).await?;
            let mut eip: Eip = tx.get(&eip.id, true).await?;
            bind_in(
                tx,
                &eip_scope,
                &mut eip,
                &BindEip {
                    target: EipTarget::Nic(nic.id.clone()),
                    mode: EipMode::Visible,
                    allow_reassociation: false,
                },
            )
            .await?;
            // (The ENI is the server's now: the EIP shows it, as a bind to
            // an attached NIC does.)
            eip.server_id = Some(server.id.clone());
            tx.update(&eip).await?;
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
