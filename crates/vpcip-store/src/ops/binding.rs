//! Bindings: the only writer of what an EIP is bound to and of which NICs
//! hold a VIP. An EIP's binding lives in three places that must agree —
//! the `eip_bindings` row (one EIP per target, one target per EIP, by
//! database keys), the EIP's document ([`EipBinding`], one value) and the
//! bound VIP's `eip_id` — and a VIP's NICs in two (`vip_bindings` rows and
//! the VIP's and NIC's documents). Every change goes through this module,
//! inside the caller's transaction, so no copy is written alone.

use vpcip_model::rules::{self, ResolvedTarget};
use vpcip_model::*;

use crate::StoreError;
use crate::db::{Backend, Resource, Scope, Tx};

/// The NIC or VIP an EIP target names, locked (a server: its primary NIC).
pub(crate) async fn resolve_target(
    tx: &mut Tx,
    scope: &Scope,
    target: &EipTarget,
) -> Result<ResolvedTarget, StoreError> {
    Ok(match target {
        EipTarget::Server(key) => {
            let primary = primary_nic(tx, scope, key).await?;
            ResolvedTarget::Nic(tx.get(&primary, true).await?)
        }
        EipTarget::Nic(key) => ResolvedTarget::Nic(tx.find(scope, key, true).await?),
        EipTarget::Vip(key) => ResolvedTarget::Vip(tx.find(scope, key, true).await?),
    })
}

/// The ID of server `key`'s primary NIC.
async fn primary_nic(tx: &mut Tx, scope: &Scope, key: &str) -> Result<String, StoreError> {
    let server: Server = tx.find(scope, key, false).await?;
    server.nic_ids.first().cloned().ok_or_else(|| {
        RuleError::ServerWithoutNic {
            server: server.label().to_string(),
        }
        .into()
    })
}

/// Binds `eip` (its row locked; the caller writes its document) to the
/// target `req` names, after the rules allow it; a rebind clears the old
/// binding first.
pub(crate) async fn bind_eip(
    tx: &mut Tx,
    scope: &Scope,
    eip: &mut Eip,
    req: &BindEip,
) -> Result<(), StoreError> {
    let target = prepare_bind(tx, scope, &req.target).await?;
    finish_bind(tx, eip, target, req).await
}

/// A bind's target, locked, and the EIP it holds now, if any: what
/// [`finish_bind`] checks and writes.
pub(crate) struct BindTarget {
    target: ResolvedTarget,
    holder: Option<String>,
}

/// Looks up and locks the target of a bind, and which EIP holds it.
pub(crate) async fn prepare_bind(
    tx: &mut Tx,
    scope: &Scope,
    target: &EipTarget,
) -> Result<BindTarget, StoreError> {
    if let EipTarget::Server(key) = target {
        // PostgreSQL, a server by ID: the server, its NIC and the NIC's EIP
        // in one statement (a server is never shared: its tenant alone
        // says who sees it).
        if tx.backend == Backend::Postgres
            && Kind::Server.may_be_id(key)
            && let Some((tenant, nic, holder)) = tx.server_primary_nic(key).await?
            && scope.sees(&tenant, false)
        {
            return Ok(BindTarget {
                target: ResolvedTarget::Nic(nic),
                holder,
            });
        }
        // Else the NIC and its EIP in one statement.
        let primary = primary_nic(tx, scope, key).await?;
        let (nic, holder) = tx.get_target(&primary).await?;
        return Ok(BindTarget {
            target: ResolvedTarget::Nic(nic),
            holder,
        });
    }
    let target = resolve_target(tx, scope, target).await?;
    let holder = tx
        .strings(
            "SELECT eip_id FROM eip_bindings WHERE target_id = $1",
            target.id(),
        )
        .await?;
    Ok(BindTarget {
        target,
        holder: holder.into_iter().next(),
    })
}

/// Binds `eip` (its row locked or new; the caller writes its document) to
/// the prepared target, after the rules allow it; a rebind clears the old
/// binding first.
pub(crate) async fn finish_bind(
    tx: &mut Tx,
    eip: &mut Eip,
    prepared: BindTarget,
    req: &BindEip,
) -> Result<(), StoreError> {
    let BindTarget { target, holder } = prepared;
    let target_tenant = match &target {
        ResolvedTarget::Nic(n) => &n.tenant,
        ResolvedTarget::Vip(v) => &v.tenant,
    };
    if *target_tenant != eip.tenant {
        // Another tenant's NIC is as good as absent.
        return Err(RuleError::not_found(target.kind(), target.label()).into());
    }
    let target_eip = match &holder {
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
    if eip.target_id() == Some(target.id()) && eip.mode() == req.mode {
        return Ok(());
    }
    if eip.is_bound() {
        clear_eip(tx, eip).await?;
    }
    // Another transaction may have bound the target after this one read
    // who holds it (PostgreSQL: a server's NIC and its binding are read in
    // one statement, whose join is not read again once the NIC's lock is
    // granted): the insert's unique key then runs the transaction again,
    // and the holder is seen and refused. On PostgreSQL the insert waits
    // for the next statement, or rides in the commit's.
    tx.insert_binding(target.id(), &eip.id, req.mode).await?;
    eip.binding = match target {
        ResolvedTarget::Nic(n) => EipBinding::Nic {
            private_ip: n.ip,
            nic_id: n.id,
            server_id: n.server_id,
            vpc_id: n.vpc_id,
            mode: req.mode,
        },
        ResolvedTarget::Vip(mut v) => {
            v.eip_id = Some(eip.id.clone());
            tx.update(&v).await?;
            EipBinding::Vip {
                private_ip: v.ip,
                vip_id: v.id,
                vpc_id: v.vpc_id,
                mode: req.mode,
            }
        }
    };
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
    let segments = tx.eip_segments().await?;
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
        Some(e) if e.tenant == subnet.tenant && e.nic_id().is_none() && e.vip_id().is_none() => {
            Ok(Some(e))
        }
        Some(e) if e.tenant == subnet.tenant => Err(refuse(format!(
            "EIP {ip} is bound to {}",
            e.nic_id().or(e.vip_id()).unwrap_or_default()
        ))),
        _ => Err(refuse(format!("{ip} is not an EIP you hold"))),
    }
}

/// Binds `eip` in visible mode to the NIC or VIP just made on its address
/// in a visible subnet, and writes it.
pub(crate) async fn bind_visible(
    tx: &mut Tx,
    eip: &Eip,
    target: EipTarget,
) -> Result<Eip, StoreError> {
    let mut eip: Eip = tx.get(&eip.id, true).await?;
    bind_eip(
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
    tx.update(&eip).await?;
    Ok(eip)
}

/// Clears `eip`'s binding (its row locked; the caller writes its
/// document), keeping it allocated.
pub(crate) async fn clear_eip(tx: &mut Tx, eip: &mut Eip) -> Result<(), StoreError> {
    tx.exec("DELETE FROM eip_bindings WHERE eip_id = $1", &[&eip.id])
        .await?;
    if let Some(v) = eip.vip_id() {
        let mut vip: Vip = tx.get(v, true).await?;
        vip.eip_id = None;
        tx.update(&vip).await?;
    }
    eip.binding = EipBinding::Unbound;
    Ok(())
}

/// Unbinds whatever EIP is bound to `target_id` (a NIC or VIP), keeping the
/// EIP allocated.
pub(crate) async fn unbind_target(tx: &mut Tx, target_id: &str) -> Result<(), StoreError> {
    for id in bound_to(tx, target_id).await? {
        let mut eip: Eip = tx.get(&id, true).await?;
        clear_eip(tx, &mut eip).await?;
        tx.update(&eip).await?;
    }
    Ok(())
}

/// The EIP bound to `target_id` (none or one).
async fn bound_to(tx: &mut Tx, target_id: &str) -> Result<Vec<String>, StoreError> {
    tx.strings(
        "SELECT eip_id FROM eip_bindings WHERE target_id = $1",
        target_id,
    )
    .await
}

/// Keeps the EIP bound to `nic` in step with the NIC's server (after an
/// attach or a detach).
pub(crate) async fn follow_server(tx: &mut Tx, nic: &Nic) -> Result<(), StoreError> {
    for id in bound_to(tx, &nic.id).await? {
        let mut eip: Eip = tx.get(&id, true).await?;
        if let EipBinding::Nic { server_id, .. } = &mut eip.binding {
            server_id.clone_from(&nic.server_id);
        }
        tx.update(&eip).await?;
    }
    Ok(())
}

/// Binds VIP `vip` to `nic` (both locked; the rules checked by the
/// caller) and writes both.
pub(crate) async fn bind_vip(tx: &mut Tx, vip: &mut Vip, nic: &mut Nic) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO vip_bindings (vip_id, nic_id) VALUES ($1, $2)",
        &[&vip.id, &nic.id],
    )
    .await?;
    vip.nic_ids.push(nic.id.clone());
    nic.vip_ids.push(vip.id.clone());
    tx.update(vip).await?;
    tx.update(nic).await?;
    Ok(())
}

/// Removes the binding of `vip_id` to `nic` (both rows are locked by the
/// caller or here) and writes both.
pub(crate) async fn unbind_vip(tx: &mut Tx, vip_id: &str, nic: &mut Nic) -> Result<(), StoreError> {
    let mut vip: Vip = tx.get(vip_id, true).await?;
    tx.exec(
        "DELETE FROM vip_bindings WHERE vip_id = $1 AND nic_id = $2",
        &[&vip.id, &nic.id],
    )
    .await?;
    vip.nic_ids.retain(|n| *n != nic.id);
    nic.vip_ids.retain(|v| *v != vip.id);
    tx.update(&vip).await?;
    tx.update(nic).await?;
    Ok(())
}
