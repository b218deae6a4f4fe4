//! Security groups: made with their rules, rules added and removed one
//! transaction at a time, deleted when nothing uses them. Each rule gets an
//! ID (`sgr-…`); a remote group is stored by its ID, so renaming cannot
//! change what a rule means.

use rand::Rng;
use vpcip_model::rules::{self, label};
use vpcip_model::*;

use crate::db::{Claim, Resource, Scope, Tx};
use crate::{Store, StoreError};

/// A rule's ID: `sgr-` and ten random characters.
pub(crate) fn new_rule_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..10)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!("sgr-{tail}")
}

/// Gives `rules` IDs and their remote groups' IDs (a group of `vpc`, or the
/// group being made, named `self_name` and to be `self_id`).
async fn resolve_rules(
    tx: &mut Tx,
    scope: &Scope,
    vpc: &Vpc,
    self_name: &str,
    self_id: &str,
    rules: &[SgRule],
) -> Result<Vec<SgRule>, StoreError> {
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        let mut r = r.clone();
        r.id = new_rule_id();
        if let Some(g) = &r.remote_group {
            if g == self_name || g == self_id {
                r.remote_group = Some(self_id.to_string());
            } else {
                let remote: SecurityGroup =
                    tx.find(scope, g, false).await.map_err(|e| match e {
                        StoreError::Rule(RuleError::NotFound { .. }) => RuleError::SgRuleInvalid {
                            rule: r.to_string(),
                            reason: format!(
                                "remote group {g} does not exist in your VPC {}",
                                vpc.label()
                            ),
                        }
                        .into(),
                        e => e,
                    })?;
                if remote.vpc_id != vpc.id || remote.tenant != vpc.tenant {
                    return Err(RuleError::SgRuleInvalid {
                        rule: r.to_string(),
                        reason: format!(
                            "remote group {} is in VPC {}, not in the group's VPC {}",
                            label(&remote.name, &remote.id),
                            remote.vpc_id,
                            vpc.label()
                        ),
                    }
                    .into());
                }
                r.remote_group = Some(remote.id);
            }
        }
        out.push(r);
    }
    Ok(out)
}

impl Store {
    pub async fn create_security_group(
        &self,
        scope: &Scope,
        req: &CreateSecurityGroup,
    ) -> Result<SecurityGroup, StoreError> {
        rules::validate_name("name", &req.name)?;
        rules::check_sg_rules(&req.name, &req.rules, self.max_sg_rules)?;
        if req.managed {
            scope.require_operator("create managed security groups")?;
        }
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let id = match tx
                .claim::<SecurityGroup>(scope.tenant(), req.client_token.as_deref(), req)
                .await?
            {
                Claim::Existing(g) => return Ok(g),
                Claim::New(id) => id,
            };
            let vpc: Vpc = tx.find(scope, &req.vpc, false).await?;
            scope.must_own(&vpc.tenant, "this VPC")?;
            let rules = resolve_rules(&mut tx, scope, &vpc, &req.name, &id, &req.rules).await?;
            rules::check_sg_rules(&req.name, &rules, self.max_sg_rules)?;
            let sg = SecurityGroup {
                id,
                tenant: vpc.tenant.clone(),
                name: req.name.clone(),
                vpc_id: vpc.id.clone(),
                kind: req.kind,
                managed: req.managed,
                rules,
            };
            tx.insert(&sg).await?;
            tx.commit().await?;
            Ok(sg)
        })
        .await
    }

    /// Adds `add` to the group's rules, all or none.
    pub async fn add_sg_rules(
        &self,
        scope: &Scope,
        key: &str,
        add: &[SgRule],
    ) -> Result<SecurityGroup, StoreError> {
        for r in add {
            rules::check_sg_rule(r)?;
        }
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut sg: SecurityGroup = tx.find(scope, key, true).await?;
            scope.must_own(&sg.tenant, "this security group")?;
            let vpc: Vpc = tx.get(&sg.vpc_id, false).await?;
            let new = resolve_rules(&mut tx, scope, &vpc, &sg.name, &sg.id, add).await?;
            sg.rules.extend(new);
            rules::check_sg_rules(label(&sg.name, &sg.id), &sg.rules, self.max_sg_rules)?;
            tx.update(&sg).await?;
            tx.commit().await?;
            Ok(sg)
        })
        .await
    }

    /// Removes one rule, by its ID or as written (`ingress:tcp:22:0.0.0.0/0`).
    pub async fn remove_sg_rule(
        &self,
        scope: &Scope,
        key: &str,
        rule: &str,
    ) -> Result<SecurityGroup, StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let mut sg: SecurityGroup = tx.find(scope, key, true).await?;
            scope.must_own(&sg.tenant, "this security group")?;
            let written: Option<SgRule> = rule.parse().ok();
            let pos = sg.rules.iter().position(|r| {
                r.id == rule
                    || written.as_ref().is_some_and(|w| {
                        let mut w = w.clone();
                        if w.remote_group.as_deref() == Some(sg.name.as_str()) {
                            w.remote_group = Some(sg.id.clone());
                        }
                        w.to_string() == r.to_string()
                    })
            });
            let Some(pos) = pos else {
                return Err(RuleError::not_found(
                    "security group rule",
                    format!("{rule} (in {})", label(&sg.name, &sg.id)),
                )
                .into());
            };
            sg.rules.remove(pos);
            tx.update(&sg).await?;
            tx.commit().await?;
            Ok(sg)
        })
        .await
    }

    pub async fn delete_security_group(&self, scope: &Scope, key: &str) -> Result<(), StoreError> {
        self.retry(|| async {
            let mut tx = self.db.begin().await?;
            let sg: SecurityGroup = tx.find(scope, key, true).await?;
            scope.must_own(&sg.tenant, "this security group")?;
            let user = tx
                .strings(
                    "SELECT id FROM resources WHERE kind = 'eni' AND doc LIKE '%\"' || $1 || '\"%' LIMIT 1",
                    &sg.id,
                )
                .await?;
            if let Some(nic) = user.first() {
                return Err(RuleError::InUse {
                    kind: "security group",
                    id: label(&sg.name, &sg.id).into(),
                    reason: format!("NIC {nic} uses it"),
                }
                .into());
            }
            let groups: Vec<SecurityGroup> = tx.all().await?;
            if let Some(other) = groups.iter().find(|g| {
                g.id != sg.id
                    && g.rules
                        .iter()
                        .any(|r| r.remote_group.as_deref() == Some(sg.id.as_str()))
            }) {
                return Err(RuleError::InUse {
                    kind: "security group",
                    id: label(&sg.name, &sg.id).into(),
                    reason: format!(
                        "a rule of group {} names it as its remote group",
                        label(&other.name, &other.id)
                    ),
                }
                .into());
            }
            tx.delete(&sg).await?;
            tx.commit().await
        })
        .await
    }
}
