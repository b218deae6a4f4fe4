//! Servers and their NICs: primary NICs made with the server, secondary
//! ENIs made on their own and attached in the same zone.

use std::net::Ipv4Addr;

use vpcip_model::desired::{Agent, AgentRole};
use vpcip_model::rules;
use vpcip_model::*;

use super::network::default_sg_name;
use crate::db::{Claim, PoolUse, Resource, Scope, Tx, new_id};
use crate::{Store, StoreError};

/// What a new NIC is made of; shared by servers, ENIs and the visible-EIP
/// recipe.
pub(crate) struct NicSpec<'a> {
    pub id: String,
    pub name: &'a str,
    pub subnet: Subnet,
    pub ip: Option<Ipv4Addr>,
    pub security_groups: &'a [String],
    pub source_dest_check: bool,
    pub server: Option<&'a Server>,
}

/// Makes a NIC in one transaction: its address, its groups, its row. The
/// subnet row is locked here.
pub(crate) async fn make_nic(
    tx: &mut Tx,
    scope: &Scope,
    spec: NicSpec<'_>,
) -> Result<Nic, StoreError> {
    rules::validate_name("name", spec.name)?;
    rules::need_subnet_kind(&spec.subnet, SubnetKind::Guest)?;
    let vpc: Vpc = tx.get(&spec.subnet.vpc_id, false).await?;
    let groups = resolve_groups(tx, scope, &vpc, spec.security_groups).await?;
    rules::check_security_groups(&vpc, &groups, scope.is_operator())?;
    let zone_id = spec.subnet.zone_id.clone().ok_or_else(|| {
        StoreError::Corrupt(format!("guest subnet {} has no zone", spec.subnet.id))
    })?;
    tx.check_quota(&spec.subnet.tenant, Kind::Nic);
    let subnet = tx
        .pool_subnet(&spec.subnet.id, PoolUse::for_address(spec.ip))
        .await?;
    let id = spec.id;
    if let Some(ip) = spec.ip {
        rules::check_chosen_address(&subnet, ip)?;
    }
    let visible = super::binding::visible_subnet_eip(tx, &subnet, spec.ip).await?;
    let ip = tx.allocate(&subnet, &id, spec.ip).await?;
    let nic = Nic {
        id,
        tenant: subnet.tenant.clone(),
        name: spec.name.to_string(),
        vpc_id: vpc.id.clone(),
        subnet_id: subnet.id.clone(),
        zone_id,
        ip,
        mac: rules::mac_for(ip),
        server_id: spec.server.map(|s| s.id.clone()),
        primary: spec.server.is_some(),
        security_group_ids: groups.iter().map(|g| g.id.clone()).collect(),
        source_dest_check: spec.source_dest_check,
        vip_ids: vec![],
    };
    tx.insert(&nic).await?;
    if let Some(eip) = visible {
        super::binding::bind_visible(tx, &eip, EipTarget::Nic(nic.id.clone())).await?;
    }
    Ok(nic)
}

/// The groups named, or the VPC's default group when none are.
async fn resolve_groups(
    tx: &mut Tx,
    scope: &Scope,
    vpc: &Vpc,
    keys: &[String],
) -> Result<Vec<SecurityGroup>, StoreError> {
    if keys.is_empty() {
        let default = default_sg_name(&vpc.name);
        let groups: Vec<SecurityGroup> = tx.children(&vpc.id).await?;
        return Ok(groups
            .into_iter()
            .filter(|g| g.name == default)
            .take(1)
            .collect());
    }
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        out.push(tx.find::<SecurityGroup>(scope, k, false).await?);
    }
    Ok(out)
}

/// The host a new server runs on: the one asked for (operators only; it
/// must be a registered host agent), else the registered host with the
/// fewest servers (ties by name), else none.
async fn place(
    tx: &mut Tx,
    scope: &Scope,
    asked: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let hosts: Vec<Agent> = tx
        .all::<Agent>()
        .await?
        .into_iter()
        .filter(|a| a.role == AgentRole::Host)
        .collect();
    if let Some(name) = asked {
        scope.require_operator("place servers on a chosen host")?;
        return match hosts.iter().find(|a| a.name == name || a.id == name) {
            Some(a) => Ok(Some(a.name.clone())),
            None => Err(RuleError::not_found("host", name).into()),
        };
    }
    if hosts.is_empty() {
        return Ok(None);
    }
    // Servers per host, counted on the (kind, attached) index.
    let mut loads: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for r in tx
        .rows(
            "SELECT attached, COUNT(*) FROM resources WHERE kind = $1 AND attached IS NOT NULL GROUP BY attached",
            &[Kind::Server.key().into()],
        )
        .await?
    {
        loads.insert(r.text(0)?, r.int(1)?);
    }
    let load = |h: &Agent| loads.get(&h.name).copied().unwrap_or(0);
    Ok(hosts
        .iter()
        .min_by(|a, b| load(a).cmp(&load(b)).then(a.name.cmp(&b.name)))
        .map(|a| a.name.clone()))
}

impl Store {
    pub async fn create_server(
        &self,
        scope: &Scope,
        req: &CreateServer,
    ) -> Result<Server, StoreError> {
        rules::validate_name("name", &req.name)?;
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let id = match tx
                .claim::<Server>(scope.tenant(), req.client_token.as_deref(), req)
                .await?
            {
                Claim::Existing(s) => return Ok(s),
                Claim::New(id) => id,
            };
            let subnet: Subnet = tx.find(scope, &req.subnet, false).await?;
            scope.must_own(&subnet.tenant, "this subnet")?;
            let subnet_zone: Zone = match &subnet.zone_id {
                Some(z) => tx.get(z, false).await?,
                None => {
                    return Err(
                        RuleError::invalid("subnet", "an EIP subnet holds no servers").into(),
                    );
                }
            };
            let zone: Zone = match &req.zone {
                Some(z) => tx.find(scope, z, false).await?,
                None => subnet_zone.clone(),
            };
            rules::check_server_subnet(&req.name, &zone, &subnet, &subnet_zone)?;
            let host = place(&mut tx, scope, req.host.as_deref()).await?;
            let mut server = Server {
                id,
                tenant: subnet.tenant.clone(),
                name: req.name.clone(),
                zone_id: zone.id.clone(),
                nic_ids: vec![],
                host,
            };
            let nic = make_nic(
                &mut tx,
                scope,
                NicSpec {
                    id: new_id(Kind::Nic),
                    name: &format!("{}-eth0", req.name),
                    subnet,
                    ip: req.ip,
                    security_groups: &req.security_groups,
                    source_dest_check: true,
                    server: Some(&server),
                },
            )
            .await?;
            server.nic_ids.push(nic.id);
            tx.insert(&server).await?;
            tx.commit().await?;
            Ok(server)
        })
        .await
    }

    /// Deletes a server: secondary ENIs are detached (and kept), the primary
    /// NIC is deleted with its address; EIPs and VIPs on it are unbound, not
    /// lost.
    pub async fn delete_server(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let server: Server = tx.find(scope, key, true).await?;
            scope.must_own(&server.tenant, "this server")?;
            for nic_id in &server.nic_ids {
                let mut nic: Nic = tx.get(nic_id, true).await?;
                if nic.primary {
                    super::binding::unbind_target(&mut tx, &nic.id).await?;
                    for vip in nic.vip_ids.clone() {
                        super::binding::unbind_vip(&mut tx, &vip, &mut nic).await?;
                    }
                    let subnet = tx.pool_subnet(&nic.subnet_id, PoolUse::Rewrite).await?;
                    tx.release(&subnet, nic.ip).await?;
                    tx.delete(&nic).await?;
                } else {
                    nic.server_id = None;
                    tx.update(&nic).await?;
                    super::binding::follow_server(&mut tx, &nic).await?;
                }
            }
            tx.delete(&server).await?;
            tx.commit().await
        })
        .await
    }

    pub async fn create_nic(&self, scope: &Scope, req: &CreateNic) -> Result<Nic, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let id = match tx
                .claim::<Nic>(scope.tenant(), req.client_token.as_deref(), req)
                .await?
            {
                Claim::Existing(n) => return Ok(n),
                Claim::New(id) => id,
            };
            let subnet: Subnet = tx.find(scope, &req.subnet, false).await?;
            scope.must_own(&subnet.tenant, "this subnet")?;
            let nic = make_nic(
                &mut tx,
                scope,
                NicSpec {
                    id,
                    name: &req.name,
                    subnet,
                    ip: req.ip,
                    security_groups: &req.security_groups,
                    source_dest_check: req.source_dest_check.unwrap_or(true),
                    server: None,
                },
            )
            .await?;
            tx.commit().await?;
            Ok(nic)
        })
        .await
    }

    pub async fn update_nic(
        &self,
        scope: &Scope,
        key: &str,
        req: &UpdateNic,
    ) -> Result<Nic, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut nic: Nic = tx.find(scope, key, true).await?;
            scope.must_own(&nic.tenant, "this NIC")?;
            if let Some(keys) = &req.security_groups {
                let vpc: Vpc = tx.get(&nic.vpc_id, false).await?;
                let groups = resolve_groups(&mut tx, scope, &vpc, keys).await?;
                rules::check_security_groups(&vpc, &groups, scope.is_operator())?;
                nic.security_group_ids = groups.into_iter().map(|g| g.id).collect();
            }
            if let Some(flag) = req.source_dest_check {
                nic.source_dest_check = flag;
            }
            tx.update(&nic).await?;
            tx.commit().await?;
            Ok(nic)
        })
        .await
    }

    pub async fn attach_nic(
        &self,
        scope: &Scope,
        key: &str,
        server_key: &str,
    ) -> Result<Nic, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut nic: Nic = tx.find(scope, key, true).await?;
            scope.must_own(&nic.tenant, "this NIC")?;
            let mut server: Server = tx.find(scope, server_key, true).await?;
            scope.must_own(&server.tenant, "this server")?;
            let nic_zone: Zone = tx.get(&nic.zone_id, false).await?;
            let server_zone: Zone = tx.get(&server.zone_id, false).await?;
            let primary: Option<Nic> = match server.nic_ids.first() {
                Some(id) => Some(tx.get(id, false).await?),
                None => None,
            };
            rules::check_attach(
                &nic,
                &nic_zone,
                &server,
                &server_zone,
                primary.as_ref().map(|p| p.vpc_id.as_str()),
            )?;
            nic.server_id = Some(server.id.clone());
            server.nic_ids.push(nic.id.clone());
            tx.update(&nic).await?;
            tx.update(&server).await?;
            super::binding::follow_server(&mut tx, &nic).await?;
            tx.commit().await?;
            Ok(nic)
        })
        .await
    }

    pub async fn detach_nic(&self, scope: &Scope, key: &str) -> Result<Nic, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut nic: Nic = tx.find(scope, key, true).await?;
            scope.must_own(&nic.tenant, "this NIC")?;
            let server_id = rules::check_detach(&nic)?.to_string();
            let mut server: Server = tx.get(&server_id, true).await?;
            server.nic_ids.retain(|n| *n != nic.id);
            nic.server_id = None;
            tx.update(&nic).await?;
            tx.update(&server).await?;
            super::binding::follow_server(&mut tx, &nic).await?;
            tx.commit().await?;
            Ok(nic)
        })
        .await
    }

    /// Deletes a detached ENI that carries no EIP and no VIP.
    pub async fn delete_nic(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let nic: Nic = tx.find(scope, key, true).await?;
            scope.must_own(&nic.tenant, "this NIC")?;
            let in_use = |reason: String| -> StoreError {
                RuleError::InUse {
                    kind: "NIC",
                    id: nic.label().to_string(),
                    reason,
                }
                .into()
            };
            if let Some(s) = &nic.server_id {
                return Err(in_use(format!(
                    "it is attached to server {s}; detach it first"
                )));
            }
            if let Some(v) = nic.vip_ids.first() {
                return Err(in_use(format!("it holds VIP {v}; unbind it first")));
            }
            let eips = tx
                .rows(
                    "SELECT eip_id, mode FROM eip_bindings WHERE target_id = $1",
                    &[nic.id.as_str().into()],
                )
                .await?;
            if let Some(r) = eips.first() {
                if r.text(1)? != EipMode::Visible.as_str() {
                    return Err(in_use(format!(
                        "EIP {} is bound to it; unbind it first",
                        r.text(0)?
                    )));
                }
                // A visible EIP is the NIC's own address: it goes with it.
                super::binding::unbind_target(&mut tx, &nic.id).await?;
            }
            let subnet = tx.pool_subnet(&nic.subnet_id, PoolUse::Rewrite).await?;
            tx.release(&subnet, nic.ip).await?;
            tx.delete(&nic).await?;
            tx.commit().await
        })
        .await
    }

    /// The NICs attached to a server, primary first.
    pub async fn server_nics(&self, scope: &Scope, key: &str) -> Result<Vec<Nic>, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let server: Server = tx.find(scope, key, false).await?;
        let mut out = Vec::with_capacity(server.nic_ids.len());
        for id in &server.nic_ids {
            out.push(tx.get::<Nic>(id, false).await?);
        }
        tx.commit().await?;
        Ok(out)
    }
}
