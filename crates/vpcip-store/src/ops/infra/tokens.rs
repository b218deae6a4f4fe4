//! API tokens: a tenant's or an agent's, stored as their SHA-256.

use sha2::{Digest, Sha256};
use vpcip_model::desired::AgentRole;
use vpcip_model::rules::{self, AgentIdentity};
use vpcip_model::*;

use crate::db::{Backend, Scope, now};
use crate::{Store, StoreError};

impl Store {
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
        if req.ec2 && req.agent {
            return Err(RuleError::invalid(
                "ec2",
                format!("agent {}'s token serves the agent routes only: an EC2 credential is a tenant's", req.tenant),
            )
            .into());
        }
        let secret = format!("vpcip_{}", hex::encode(rand::random::<[u8; 24]>()));
        let ec2_secret = req.ec2.then(|| hex::encode(rand::random::<[u8; 20]>()));
        let id = format!("tok-{}", &hex::encode(rand::random::<[u8; 5]>()));
        let mut tx = self.db.begin().await?;
        tx.write(
                "INSERT INTO api_tokens (id, hash, tenant, description, created_at, agent, agent_role, ec2_secret) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    id.as_str().into(),
                    token_hash(&secret).into(),
                    req.tenant.as_str().into(),
                    req.description.as_str().into(),
                    now().into(),
                    i64::from(req.agent).into(),
                    req.agent_role.map(|r| r.as_str().to_string()).into(),
                    ec2_secret.clone().into(),
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
            ec2: req.ec2,
            ec2_secret,
        })
    }

    pub async fn list_tokens(&self, scope: &Scope) -> Result<Vec<Token>, StoreError> {
        scope.require_operator("list tokens")?;
        let mut tx = self.db.begin_read().await?;
        let rows = tx
            .rows(
                "SELECT id, tenant, description, agent, agent_role, CASE WHEN ec2_secret IS NULL THEN 0 ELSE 1 END FROM api_tokens ORDER BY id",
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
                    ec2: r.int(5)? != 0,
                    ec2_secret: None,
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
        if tx.backend == Backend::Postgres {
            // Every other controller forgets its tokens when this commits.
            tx.exec(
                &format!("SELECT pg_notify('{}', '')", crate::db::TOKENS_CHANNEL),
                &[],
            )
            .await?;
        }
        tx.commit().await?;
        self.db.tokens.forget_all();
        Ok(())
    }

    /// Whom a bearer token acts for, if it is a token: its tenant, or its
    /// agent. An agent token made before agent tokens named their role is
    /// refused.
    /// Tokens found are kept a few seconds (`db/tokens.rs`: a revocation
    /// empties every controller's cache).
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Scope>, StoreError> {
        let hash = token_hash(secret);
        if let Some(scope) = self.db.tokens.get(&hash) {
            return Ok(Some(scope));
        }
        let generation = self.db.tokens.generation();
        let rows = self
            .db
            .read_once(
                "SELECT tenant, agent, agent_role FROM api_tokens WHERE hash = $1",
                &[hash.as_str().into()],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let name = r.text(0)?;
        let scope = if r.int(1)? == 0 {
            Scope::Tenant(name)
        } else {
            match r.text(2).ok().and_then(|s| parse_role(&s)) {
                Some(role) => Scope::Agent(AgentIdentity { name, role }),
                None => return Err(RuleError::AgentTokenWithoutRole { agent: name }.into()),
            }
        };
        if let Some(g) = generation {
            self.db.tokens.put(g, hash, scope.clone());
        }
        Ok(Some(scope))
    }
}

impl Store {
    /// The EC2 credential whose access key is `access_key` (a tenant
    /// token's ID): its secret access key and the tenant it acts for.
    pub async fn ec2_credential(
        &self,
        access_key: &str,
    ) -> Result<Option<(String, Scope)>, StoreError> {
        let mut tx = self.db.begin_read().await?;
        let rows = tx
            .rows(
                "SELECT ec2_secret, tenant FROM api_tokens WHERE id = $1 AND agent = 0 AND ec2_secret IS NOT NULL",
                &[access_key.into()],
            )
            .await?;
        tx.commit().await?;
        match rows.first() {
            Some(r) => Ok(Some((r.text(0)?, Scope::Tenant(r.text(1)?)))),
            None => Ok(None),
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
