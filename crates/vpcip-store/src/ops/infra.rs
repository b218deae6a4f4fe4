//! Platform resources the operator owns: zones, host (underlay) networks,
//! gateways, the default VPC, and API tokens.
//!
//! `gateways.rs` holds the gateways' operations, `tokens.rs` the API
//! tokens'; this file the default VPC, zones, host networks and the
//! underlay and SNAT bookkeeping the gateways' operations share.

mod gateways;
mod tokens;

pub use tokens::token_hash;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use vpcip_model::desired::Agent;
use vpcip_model::rules::{self, UnderlayClaim, label};
use vpcip_model::*;

use crate::db::{Scope, Tx, new_id};
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
    for seg in eip_segments(tx).await? {
        if except == Some(seg.id.as_str()) {
            continue;
        }
        if let Some(ip) = tx.allocate_highest(&seg, &gw.id).await? {
            gw.snat_ip = Some(ip);
            break;
        }
    }
    Ok(())
}

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

/// Gives `gw`'s default SNAT address back to its EIP segment (the caller
/// holds [`lock_underlay`] and writes `gw`).
pub(crate) async fn release_snat(tx: &mut Tx, gw: &mut Gateway) -> Result<(), StoreError> {
    let Some(ip) = gw.snat_ip.take() else {
        return Ok(());
    };
    if let Some(seg) = eip_segments(tx)
        .await?
        .into_iter()
        .find(|s| s.cidr.contains(&ip))
    {
        tx.release(&seg, ip).await?;
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
            let seg = tx.get::<Subnet>(&seg.id, true).await?;
            tx.release(&seg, ip).await?;
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
}
