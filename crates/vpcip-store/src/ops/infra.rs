//! Platform resources the operator owns: zones, host (underlay) networks,
//! gateways, the default VPC, and API tokens.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};
use vpcip_model::desired::{Agent, AgentRole};
use vpcip_model::rules::{self, AgentIdentity, UnderlayClaim, label};
use vpcip_model::*;

use crate::db::{Scope, Tx, new_id, now};
use crate::{Store, StoreError};

/// Locks the default VPC's row: what reads the host networks, the EIP
/// segments or the nodes' underlay addresses and writes on the strength of
/// it is serialized with every change of them (segments are created under
/// the same lock).
async fn lock_underlay(tx: &mut Tx) -> Result<Vpc, StoreError> {
    tx.find(&Scope::Operator, DEFAULT_VPC_NAME, true).await
}

/// Checks `addr` as the underlay address `claim` asks for, against the
/// host networks, EIP segments, agents and gateways of `tx` (which holds
/// [`lock_underlay`]).
pub(crate) async fn check_underlay(
    tx: &mut Tx,
    addr: Ipv4Addr,
    claim: UnderlayClaim<'_>,
) -> Result<(), StoreError> {
    let default = lock_underlay(tx).await?;
    let segments: Vec<Subnet> = tx.children(&default.id).await?;
    let segments: Vec<Subnet> = segments
        .into_iter()
        .filter(|s| s.kind == SubnetKind::Eip)
        .collect();
    let host_networks: Vec<HostNetwork> = tx.all().await?;
    let agents: Vec<Agent> = tx.all().await?;
    let gateways: Vec<Gateway> = tx.all().await?;
    rules::check_underlay(addr, claim, &host_networks, &segments, &agents, &gateways)?;
    Ok(())
}

/// The EIP segments, each row locked, in address order (the caller holds
/// [`lock_underlay`]).
async fn eip_segments(tx: &mut Tx) -> Result<Vec<Subnet>, StoreError> {
    let default: Vpc = tx.find(&Scope::Operator, DEFAULT_VPC_NAME, false).await?;
    let mut out = Vec::new();
    for s in tx.children::<Subnet>(&default.id).await? {
        if s.kind == SubnetKind::Eip {
            out.push(tx.get::<Subnet>(&s.id, true).await?);
        }
    }
    out.sort_by_key(|s| s.cidr);
    Ok(out)
}

/// Gives `gw` a default SNAT address if it has none: the highest free
/// address of the first EIP segment (but `except`) that has one, allocated
/// to the gateway so that no EIP can take it. The caller holds
/// [`lock_underlay`] and writes `gw`.
pub(crate) async fn assign_snat(
    tx: &mut Tx,
    gw: &mut Gateway,
    except: Option<&str>,
) -> Result<(), StoreError> {
    if gw.snat_ip.is_some() {
        return Ok(());
    }
    for mut seg in eip_segments(tx).await? {
        if except == Some(seg.id.as_str()) {
            continue;
        }
        if let Some(ip) = tx.allocate_highest(&mut seg, &gw.id).await? {
            tx.update(&seg).await?;
            gw.snat_ip = Some(ip);
            break;
        }
    }
    Ok(())
}

/// Gives `gw`'s default SNAT address back to its EIP segment (the caller
/// holds [`lock_underlay`] and writes `gw`).
/// Registers gateway `name` at `underlay` (checked by the caller): the
/// lowest free slot of the cluster, and a default SNAT address.
pub(crate) async fn insert_gateway(
    tx: &mut Tx,
    name: &str,
    underlay: std::net::Ipv4Addr,
) -> Result<Gateway, StoreError> {
    let gateways: Vec<Gateway> = tx.all().await?;
    let taken = vpcip_model::desired::gateway_slots(&gateways);
    let slot = (1..=255u8)
        .find(|s| !taken.values().any(|t| t == s))
        .ok_or_else(|| {
            RuleError::invalid(
                "name",
                "a cluster has at most 255 gateways: delete one first",
            )
        })?;
    let mut gw = Gateway {
        id: new_id(Kind::Gateway),
        name: name.to_string(),
        underlay_ip: underlay,
        snat_ip: None,
        slot,
        drained: false,
        bgp: None,
    };
    assign_snat(tx, &mut gw, None).await?;
    tx.insert(&gw).await?;
    Ok(gw)
}

pub(crate) async fn release_snat(tx: &mut Tx, gw: &mut Gateway) -> Result<(), StoreError> {
    let Some(ip) = gw.snat_ip.take() else {
        return Ok(());
    };
    if let Some(mut seg) = eip_segments(tx)
        .await?
        .into_iter()
        .find(|s| s.cidr.contains(&ip))
    {
        tx.release(&mut seg, ip).await?;
        tx.update(&seg).await?;
    }
    Ok(())
}

/// After EIP segments changed: every gateway without a default SNAT
/// address gets one if a segment has room; those `leaving` held (a segment
/// about to be deleted) go back to it and move to another.
pub(crate) async fn reassign_snat(tx: &mut Tx, leaving: Option<&Subnet>) -> Result<(), StoreError> {
    let gateways: Vec<Gateway> = tx.all().await?;
    for mut gw in gateways {
        let before = gw.snat_ip;
        if let (Some(seg), Some(ip)) = (leaving, gw.snat_ip)
            && seg.cidr.contains(&ip)
        {
            let mut seg = tx.get::<Subnet>(&seg.id, true).await?;
            tx.release(&mut seg, ip).await?;
            tx.update(&seg).await?;
            gw.snat_ip = None;
        }
        assign_snat(tx, &mut gw, leaving.map(|l| l.id.as_str())).await?;
        if gw.snat_ip != before {
            tx.update(&gw).await?;
        }
    }
    Ok(())
}

impl Store {
    pub(crate) async fn ensure_default_vpc(&self) -> Result<(), StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let exists = tx
                .count(
                    "SELECT COUNT(*) FROM resources WHERE kind = 'vpc' AND tenant = 'system' AND name = $1",
                    &[DEFAULT_VPC_NAME.into()],
                )
                .await?;
            if exists == 0 {
                let any: Ipv4Net = "0.0.0.0/0".parse().map_err(|_| StoreError::Config("0.0.0.0/0".into()))?;
                tx.insert(&Vpc {
                    id: new_id(Kind::Vpc),
                    tenant: SYSTEM_TENANT.into(),
                    name: DEFAULT_VPC_NAME.into(),
                    cidr: any,
                    secondary_cidrs: vec![],
                    is_default: true,
                    router_index: 0,
                })
                .await?;
            }
            tx.commit().await
        })
        .await
    }

    pub async fn create_zone(&self, scope: &Scope, req: &CreateZone) -> Result<Zone, StoreError> {
        scope.require_operator("create zones")?;
        rules::validate_name("name", &req.name)?;
        let zone = Zone {
            id: new_id(Kind::Zone),
            name: req.name.clone(),
        };
        let mut tx = self.db.begin().await?;
        tx.insert(&zone).await?;
        tx.commit().await?;
        Ok(zone)
    }

    pub async fn delete_zone(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        scope.require_operator("delete zones")?;
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let zone: Zone = tx.find(scope, key, true).await?;
            let subnets: Vec<Subnet> = tx.all().await?;
            let servers: Vec<Server> = tx.all().await?;
            let user = subnets
                .iter()
                .find(|s| s.zone_id.as_deref() == Some(&zone.id))
                .map(|s| format!("subnet {} is in it", label(&s.name, &s.id)))
                .or_else(|| {
                    servers
                        .iter()
                        .find(|s| s.zone_id == zone.id)
                        .map(|s| format!("server {} is in it", label(&s.name, &s.id)))
                });
            if let Some(reason) = user {
                return Err(RuleError::InUse {
                    kind: "zone",
                    id: zone.name.clone(),
                    reason,
                }
                .into());
            }
            tx.delete(&zone).await?;
            tx.commit().await
        })
        .await
    }

    pub async fn create_host_network(
        &self,
        scope: &Scope,
        req: &CreateHostNetwork,
    ) -> Result<HostNetwork, StoreError> {
        scope.require_operator("define host networks")?;
        rules::validate_name("name", &req.name)?;
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            // Serialize with EIP segment creation through the default VPC row.
            let default: Vpc = tx.find(&Scope::Operator, DEFAULT_VPC_NAME, true).await?;
            let segments: Vec<Subnet> = tx.children(&default.id).await?;
            let segments: Vec<Subnet> = segments
                .into_iter()
                .filter(|s| s.kind == SubnetKind::Eip)
                .collect();
            rules::check_host_network(&req.cidr, &segments)?;
            let hn = HostNetwork {
                id: new_id(Kind::HostNetwork),
                name: req.name.clone(),
                cidr: req.cidr,
            };
            tx.insert(&hn).await?;
            tx.commit().await?;
            Ok(hn)
        })
        .await
    }

    /// Deletes a host network no node needs: refused while a gateway's or
    /// an agent's underlay address lies in it (and in no other).
    pub async fn delete_host_network(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        scope.require_operator("delete host networks")?;
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            lock_underlay(&mut tx).await?;
            let hn: HostNetwork = tx.find(scope, key, true).await?;
            let host_networks: Vec<HostNetwork> = tx.all().await?;
            let agents: Vec<Agent> = tx.all().await?;
            let gateways: Vec<Gateway> = tx.all().await?;
            rules::check_host_network_delete(&hn, &host_networks, &agents, &gateways)?;
            tx.delete(&hn).await?;
            tx.commit().await
        })
        .await
    }

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
                .filter(|e| e.nic_id.is_some() || e.vip_id.is_some())
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

    // ---- API tokens ----

    pub async fn create_token(
        &self,
        scope: &Scope,
        req: &CreateToken,
    ) -> Result<Token, StoreError> {
        scope.require_operator("create tokens")?;
        rules::validate_tenant(&req.tenant)?;
        if req.tenant == SYSTEM_TENANT {
            return Err(
                RuleError::invalid("tenant", "\"system\" is the platform's own tenant").into(),
            );
        }
        if req.description.len() > 256 {
            return Err(RuleError::invalid("description", "at most 256 characters").into());
        }
        match (req.agent, req.agent_role) {
            (true, None) => {
                return Err(RuleError::invalid(
                    "agent_role",
                    format!(
                        "an agent token acts for one agent: give the role (gateway or host) of agent {}",
                        req.tenant
                    ),
                )
                .into());
            }
            (false, Some(r)) => {
                return Err(RuleError::invalid(
                    "agent_role",
                    format!(
                        "{} is the role of an agent token's agent: set agent to make one",
                        r.as_str()
                    ),
                )
                .into());
            }
            _ => {}
        }
        let secret = format!("vpcip_{}", hex::encode(rand::random::<[u8; 24]>()));
        let id = format!("tok-{}", &hex::encode(rand::random::<[u8; 5]>()));
        let mut tx = self.db.begin().await?;
        tx.write(
                "INSERT INTO api_tokens (id, hash, tenant, description, created_at, agent, agent_role) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    id.as_str().into(),
                    token_hash(&secret).into(),
                    req.tenant.as_str().into(),
                    req.description.as_str().into(),
                    now().into(),
                    i64::from(req.agent).into(),
                    req.agent_role.map(|r| r.as_str().to_string()).into(),
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(Token {
            id,
            tenant: req.tenant.clone(),
            description: req.description.clone(),
            agent: req.agent,
            agent_role: req.agent_role,
            secret: Some(secret),
        })
    }

    pub async fn list_tokens(&self, scope: &Scope) -> Result<Vec<Token>, StoreError> {
        scope.require_operator("list tokens")?;
        let mut tx = self.db.begin_read().await?;
        let rows = tx
            .rows(
                "SELECT id, tenant, description, agent, agent_role FROM api_tokens ORDER BY id",
                &[],
            )
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(Token {
                    id: r.text(0)?,
                    tenant: r.text(1)?,
                    description: r.text(2)?,
                    agent: r.int(3)? != 0,
                    agent_role: r.text(4).ok().and_then(|s| parse_role(&s)),
                    secret: None,
                })
            })
            .collect()
    }

    pub async fn delete_token(&self, scope: &Scope, id: &str) -> Result<(), StoreError> {
        scope.require_operator("revoke tokens")?;
        let mut tx = self.db.begin().await?;
        if tx
            .exec("DELETE FROM api_tokens WHERE id = $1", &[id])
            .await?
            == 0
        {
            return Err(RuleError::not_found("token", id).into());
        }
        tx.commit().await
    }

    /// Whom a bearer token acts for, if it is a token: its tenant, or its
    /// agent. An agent token made before agent tokens named their role is
    /// refused.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Scope>, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let rows = tx
            .rows(
                "SELECT tenant, agent, agent_role FROM api_tokens WHERE hash = $1",
                &[token_hash(secret).into()],
            )
            .await?;
        tx.commit().await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let name = r.text(0)?;
        if r.int(1)? == 0 {
            return Ok(Some(Scope::Tenant(name)));
        }
        match r.text(2).ok().and_then(|s| parse_role(&s)) {
            Some(role) => Ok(Some(Scope::Agent(AgentIdentity { name, role }))),
            None => Err(RuleError::AgentTokenWithoutRole { agent: name }.into()),
        }
    }
}

fn parse_role(s: &str) -> Option<AgentRole> {
    match s {
        "gateway" => Some(AgentRole::Gateway),
        "host" => Some(AgentRole::Host),
        _ => None,
    }
}

/// Tokens are stored as their SHA-256: a leaked database reveals no token.
pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}
