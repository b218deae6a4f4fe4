//! Who sees and touches what: the operator, a tenant, an agent.

use super::*;

/// Who is asking: the operator sees everything; a tenant sees its own
/// resources and the platform's shared ones (zones, the default VPC and its
/// EIP segments); an agent's token acts for its one agent on the agent
/// operations (register, watch, report) and sees nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Operator,
    Tenant(String),
    Agent(rules::AgentIdentity),
}

impl Scope {
    pub fn is_operator(&self) -> bool {
        matches!(self, Scope::Operator)
    }

    /// The tenant new resources of this caller belong to (an agent's: no
    /// tenant's, the empty name no tenant has).
    pub fn tenant(&self) -> &str {
        match self {
            Scope::Operator => SYSTEM_TENANT,
            Scope::Tenant(t) => t,
            Scope::Agent(_) => "",
        }
    }

    /// Whether the scope sees a resource of `tenant`; `shared`: the row is
    /// one every tenant sees ([`SHARED`]: zones, the default VPC and its
    /// EIP segments), not the operator's own VPCs and subnets.
    pub fn sees(&self, tenant: &str, shared: bool) -> bool {
        match self {
            Scope::Operator => true,
            Scope::Tenant(t) => t == tenant || (tenant == SYSTEM_TENANT && shared),
            Scope::Agent(_) => false,
        }
    }

    pub fn owns(&self, tenant: &str) -> bool {
        match self {
            Scope::Operator => true,
            Scope::Tenant(t) => t == tenant,
            Scope::Agent(_) => false,
        }
    }

    /// Changing something the caller does not own: the platform's shared
    /// resources are visible to tenants but only the operator changes them.
    pub fn must_own(&self, tenant: &str, what: &str) -> Result<(), RuleError> {
        if self.owns(tenant) {
            Ok(())
        } else {
            Err(RuleError::Forbidden {
                action: format!("change {what}"),
            })
        }
    }

    pub fn require_operator(&self, action: &str) -> Result<(), RuleError> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(RuleError::Forbidden {
                action: action.to_string(),
            })
        }
    }
}

/// SQL over `resources`: whether a row is shared with every tenant: a zone,
/// the built-in default VPC, a subnet of it (the EIP segments).
pub(crate) const SHARED: &str = "(tenant = 'system' AND (kind = 'zone' OR (kind = 'vpc' AND name = 'default') OR (kind = 'subnet' AND parent IN (SELECT d.id FROM resources d WHERE d.kind = 'vpc' AND d.tenant = 'system' AND d.name = 'default'))))";
