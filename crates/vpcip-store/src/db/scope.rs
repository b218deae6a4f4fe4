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

    pub fn sees(&self, kind: Kind, tenant: &str) -> bool {
        match self {
            Scope::Operator => true,
            Scope::Tenant(t) => {
                t == tenant
                    || (tenant == SYSTEM_TENANT
                        && matches!(kind, Kind::Zone | Kind::Vpc | Kind::Subnet))
            }
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
