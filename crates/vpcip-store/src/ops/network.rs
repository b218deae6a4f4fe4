//! VPCs and their CIDR blocks, subnets (guest and EIP segments) and
//! security groups.

use ipnet::Ipv4Net;
use vpcip_model::desired;
use vpcip_model::rules::{self, label};
use vpcip_model::*;

use crate::db::{Claim, PoolUse, Resource, Scope, Tx, new_id};
use crate::ops::infra::reassign_snat;
use crate::ops::security_groups::new_rule_id;
use crate::{Store, StoreError};

/// The tenant a new resource of `scope` belongs to, when the operator may
/// name one.
fn owner_tenant(scope: &Scope, requested: Option<&str>) -> Result<String, StoreError> {
    match (scope, requested) {
        (Scope::Agent(_), _) => Err(RuleError::Forbidden {
            action: "create tenants' resources".into(),
        }
        .into()),
        (_, None) => Ok(scope.tenant().to_string()),
        (Scope::Operator, Some(t)) => {
            rules::validate_tenant(t)?;
            Ok(t.to_string())
        }
        (Scope::Tenant(own), Some(t)) if own == t => Ok(t.to_string()),
        (Scope::Tenant(_), Some(_)) => Err(RuleError::Forbidden {
            action: "create resources for another tenant".into(),
        }
        .into()),
    }
}

impl Store {
    pub async fn create_vpc(&self, scope: &Scope, req: &CreateVpc) -> Result<Vpc, StoreError> {
        let tenant = owner_tenant(scope, req.tenant.as_deref())?;
        rules::check_new_vpc(&req.name, &req.cidr, &req.secondary_cidrs)?;
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let id = match tx
                .claim::<Vpc>(&tenant, req.client_token.as_deref(), req)
                .await?
            {
                Claim::Existing(v) => return Ok(v),
                Claim::New(id) => id,
            };
            tx.check_quota(&tenant, Kind::Vpc);
            let vpc = Vpc {
                id,
                tenant: tenant.clone(),
                name: req.name.clone(),
                cidr: req.cidr,
                secondary_cidrs: req.secondary_cidrs.clone(),
                is_default: false,
                router_index: 0,
            };
            let vpc = Vpc {
                router_index: tx.take_number("router", MAX_ROUTERS, &vpc.id).await?,
                ..vpc
            };
            tx.insert(&vpc).await?;
            // Every VPC comes with a default group, so a NIC always has
            // one: its members reach each other, everything may leave,
            // nothing else comes in (as the big clouds' default groups).
            let sg_id = new_id(Kind::SecurityGroup);
            tx.insert(&SecurityGroup {
                id: sg_id.clone(),
                tenant: tenant.clone(),
                name: default_sg_name(&vpc.name),
                vpc_id: vpc.id.clone(),
                kind: SgKind::Basic,
                managed: false,
                rules: vec![
                    SgRule {
                        id: new_rule_id(),
                        direction: Direction::Egress,
                        protocol: Protocol::All,
                        port_min: None,
                        port_max: None,
                        remote_cidr: "0.0.0.0/0".parse().ok(),
                        remote_group: None,
                    },
                    SgRule {
                        id: new_rule_id(),
                        direction: Direction::Ingress,
                        protocol: Protocol::All,
                        port_min: None,
                        port_max: None,
                        remote_cidr: None,
                        remote_group: Some(sg_id),
                    },
                ],
            })
            .await?;
            tx.commit().await?;
            Ok(vpc)
        })
        .await
    }

    pub async fn add_vpc_cidr(
        &self,
        scope: &Scope,
        key: &str,
        cidr: Ipv4Net,
    ) -> Result<Vpc, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut vpc: Vpc = tx.find(scope, key, true).await?;
            scope.must_own(&vpc.tenant, "this VPC")?;
            rules::check_vpc_cidr_add(&vpc, &cidr)?;
            vpc.secondary_cidrs.push(cidr);
            tx.update(&vpc).await?;
            tx.commit().await?;
            Ok(vpc)
        })
        .await
    }

    pub async fn remove_vpc_cidr(
        &self,
        scope: &Scope,
        key: &str,
        cidr: Ipv4Net,
    ) -> Result<Vpc, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut vpc: Vpc = tx.find(scope, key, true).await?;
            scope.must_own(&vpc.tenant, "this VPC")?;
            let subnets: Vec<Subnet> = tx.children(&vpc.id).await?;
            rules::check_vpc_cidr_remove(&vpc, &cidr, &subnets)?;
            vpc.secondary_cidrs.retain(|b| *b != cidr);
            tx.update(&vpc).await?;
            tx.commit().await?;
            Ok(vpc)
        })
        .await
    }

    pub async fn delete_vpc(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let vpc: Vpc = tx.find(scope, key, true).await?;
            if vpc.is_default {
                return Err(RuleError::DefaultVpc { action: "deleted" }.into());
            }
            scope.must_own(&vpc.tenant, "this VPC")?;
            let subnets: Vec<Subnet> = tx.children(&vpc.id).await?;
            if let Some(s) = subnets.first() {
                return Err(RuleError::InUse {
                    kind: "VPC",
                    id: vpc.label().to_string(),
                    reason: format!("it still holds subnet {}", label(&s.name, &s.id)),
                }
                .into());
            }
            for sg in tx.children::<SecurityGroup>(&vpc.id).await? {
                tx.delete(&sg).await?;
            }
            tx.delete(&vpc).await?;
            tx.commit().await
        })
        .await
    }

    pub async fn create_subnet(
        &self,
        scope: &Scope,
        req: &CreateSubnet,
    ) -> Result<SubnetCreated, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let id = match tx.claim::<Subnet>(scope.tenant(), req.client_token.as_deref(), req).await? {
                Claim::Existing(s) => {
                    let routes = eip_routes(&mut tx, &s).await?;
                    return Ok(SubnetCreated {
                        subnet: s,
                        physical_routes: routes,
                        warnings: vec![],
                    });
                }
                Claim::New(id) => id,
            };
            let vpc_key = match (&req.vpc, req.kind) {
                (Some(v), _) => v.as_str(),
                (None, SubnetKind::Eip) => DEFAULT_VPC_NAME,
                (None, SubnetKind::Guest) => {
                    return Err(RuleError::invalid("vpc", "a guest subnet needs its VPC").into());
                }
            };
            // The VPC row lock serializes sibling-overlap checks.
            let vpc: Vpc = tx.find(scope, vpc_key, true).await?;
            scope.must_own(&vpc.tenant, "this VPC")?;
            let zone = match (&req.zone, req.kind) {
                (Some(z), _) => Some(tx.find::<Zone>(scope, z, false).await?),
                (None, SubnetKind::Eip) => None,
                (None, SubnetKind::Guest) => {
                    return Err(RuleError::invalid("zone", "a guest subnet needs its zone").into());
                }
            };
            let siblings: Vec<Subnet> = tx.children(&vpc.id).await?;
            let host_networks: Vec<HostNetwork> = tx.all().await?;
            let plan = rules::plan_subnet(req, &vpc, &siblings, &host_networks)?;
            let subnet = insert_subnet(&mut tx, id, &vpc, zone.map(|z| z.id), req, &plan).await?;
            if subnet.kind == SubnetKind::Eip {
                // The default VPC's row, locked above, is the underlay lock.
                reassign_snat(&mut tx, None).await?;
            }
            let physical_routes = eip_routes(&mut tx, &subnet).await?;
            tx.commit().await?;
            let warnings = if subnet.kind == SubnetKind::Eip && physical_routes.is_empty() {
                vec![Warning {
                    code: "no_gateway".into(),
                    message: format!(
                        "no gateway is registered: route {} to the gateway's underlay address once it is",
                        subnet.cidr
                    ),
                }]
            } else {
                vec![]
            };
            Ok(SubnetCreated {
                subnet,
                physical_routes,
                warnings,
            })
        })
        .await
    }

    pub async fn delete_subnet(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let found: Subnet = tx.find(scope, key, false).await?;
            if found.kind == SubnetKind::Eip {
                // Gateways hold default SNAT addresses in EIP segments:
                // the underlay lock first, as where they are assigned.
                tx.find::<Vpc>(&Scope::Operator, DEFAULT_VPC_NAME, true).await?;
            }
            let subnet: Subnet = tx.get(&found.id, true).await?;
            scope.must_own(&subnet.tenant, "this subnet")?;
            if subnet.kind == SubnetKind::Eip {
                reassign_snat(&mut tx, Some(&subnet)).await?;
            }
            let in_use = tx.allocations_in_use(&subnet.id).await?;
            if in_use > 0 {
                return Err(RuleError::InUse {
                    kind: "subnet",
                    id: label(&subnet.name, &subnet.id).into(),
                    reason: format!("{in_use} of its addresses are allocated"),
                }
                .into());
            }
            // Addresses it holds in other subnets (a visible subnet's
            // router address in its EIP segment) go back.
            let held = tx
                .rows(
                    "SELECT subnet_id, addr FROM ip_allocations WHERE owner_id = $1 AND subnet_id <> $1",
                    &[subnet.id.as_str().into()],
                )
                .await?;
            for r in held {
                let other = tx.pool_subnet(&r.text(0)?, PoolUse::Rewrite).await?;
                let addr = std::net::Ipv4Addr::from(r.u32(1)?);
                tx.release(&other, addr).await?;
            }
            tx.drop_pool(&subnet.id).await?;
            tx.delete(&subnet).await?;
            tx.commit().await
        })
        .await
    }
}

/// Writes a planned subnet and opens its address pool (the reserved
/// addresses taken).
impl Store {
    /// Changes what a subnet's VMs learn by DHCP (DNS servers, host
    /// routes); they learn it at their next renewal.
    pub async fn update_subnet(
        &self,
        scope: &Scope,
        key: &str,
        req: &UpdateSubnet,
    ) -> Result<Subnet, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut subnet: Subnet = tx.find(scope, key, true).await?;
            scope.must_own(&subnet.tenant, "this subnet")?;
            if let Some(dns) = &req.dns_servers {
                subnet.dns_servers = dns.clone();
            }
            if let Some(routes) = &req.host_routes {
                subnet.host_routes = routes.clone();
            }
            rules::check_subnet_dhcp(
                subnet.kind,
                subnet.cidr,
                subnet.gateway,
                &subnet.dns_servers,
                &subnet.host_routes,
            )?;
            tx.update(&subnet).await?;
            tx.commit().await?;
            Ok(subnet)
        })
        .await
    }
}

pub(crate) async fn insert_subnet(
    tx: &mut Tx,
    id: String,
    vpc: &Vpc,
    zone_id: Option<String>,
    req: &CreateSubnet,
    plan: &rules::SubnetPlan,
) -> Result<Subnet, StoreError> {
    let mut subnet = Subnet {
        id,
        tenant: vpc.tenant.clone(),
        name: req.name.clone(),
        vpc_id: vpc.id.clone(),
        zone_id,
        kind: req.kind,
        cidr: plan.cidr,
        range_start: plan.range.start(),
        range_end: plan.range.end(),
        gateway: plan.gateway,
        total: plan.range.len(),
        used: 0,
        vni: 0,
        dns_servers: req.dns_servers.clone(),
        host_routes: req.host_routes.clone(),
    };
    if subnet.kind == SubnetKind::Guest {
        subnet.vni = tx.take_number("vni", MAX_VNI, &subnet.id).await?;
    }
    tx.insert(&subnet).await?;
    tx.open_pool(&subnet, &plan.reserved).await?;
    // The document counts them at commit; the answer now.
    subnet.used = plan.reserved.len() as u64;
    Ok(subnet)
}

/// VXLAN's 24-bit VNI space.
const MAX_VNI: u32 = (1 << 24) - 1;
/// Router links are /31s of 169.254.0.0/16 (see `desired::router_link`).
const MAX_ROUTERS: u32 = desired::MAX_ROUTERS;

pub(crate) fn default_sg_name(vpc_name: &str) -> String {
    format!("{vpc_name}-default")
}

async fn eip_routes(tx: &mut Tx, subnet: &Subnet) -> Result<Vec<PhysicalRoute>, StoreError> {
    if subnet.kind != SubnetKind::Eip {
        return Ok(vec![]);
    }
    let gateways: Vec<Gateway> = tx.all().await?;
    Ok(rules::physical_routes(subnet, &gateways))
}
