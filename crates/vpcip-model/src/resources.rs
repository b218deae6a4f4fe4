//! The resources as the API shows them, and the requests that
//! create and change them. Shared by the server, the client and the CLI.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Warning;

mod platform;
pub use platform::*;
mod network;
pub use network::*;
mod security_groups;
pub use security_groups::*;
mod compute;
pub use compute::*;
mod eip;
pub use eip::*;
mod requests;
pub use requests::*;

/// The tenant that owns platform resources (zones, host networks, gateways,
/// the default VPC and its EIP segments).
pub const SYSTEM_TENANT: &str = "system";
pub const DEFAULT_VPC_NAME: &str = "default";

/// Kinds of resources, with the prefix of their IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Zone,
    HostNetwork,
    Gateway,
    Vpc,
    Subnet,
    SecurityGroup,
    Server,
    Nic,
    Vip,
    Eip,
    Agent,
}

impl Kind {
    /// Name used in the store and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Zone => "zone",
            Kind::HostNetwork => "host network",
            Kind::Gateway => "gateway",
            Kind::Vpc => "VPC",
            Kind::Subnet => "subnet",
            Kind::SecurityGroup => "security group",
            Kind::Server => "server",
            Kind::Nic => "NIC",
            Kind::Vip => "VIP",
            Kind::Eip => "EIP",
            Kind::Agent => "agent",
        }
    }

    /// Whether `key` can be an ID of this kind (every ID is the kind's
    /// prefix and a dash), rather than a name only.
    pub fn may_be_id(self, key: &str) -> bool {
        key.strip_prefix(self.prefix())
            .is_some_and(|rest| rest.starts_with('-'))
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Zone => "zone",
            Kind::HostNetwork => "hostnet",
            Kind::Gateway => "gw",
            Kind::Vpc => "vpc",
            Kind::Subnet => "subnet",
            Kind::SecurityGroup => "sg",
            Kind::Server => "vm",
            Kind::Nic => "eni",
            Kind::Vip => "vip",
            Kind::Eip => "eip",
            Kind::Agent => "agent",
        }
    }

    /// Stable key used as the `kind` column of the store.
    pub fn key(self) -> &'static str {
        match self {
            Kind::HostNetwork => "host_network",
            Kind::SecurityGroup => "security_group",
            other => other.prefix(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Token {
    pub id: String,
    pub tenant: String,
    pub description: String,
    /// An agent's token: it serves the agent routes (register, watch,
    /// report) and nothing else, for one agent: `tenant` is its name,
    /// `agent_role` its role.
    #[serde(default)]
    pub agent: bool,
    /// An agent token's role: its agent registers with this role only.
    /// (Absent on agent tokens made before tokens were bound to one agent:
    /// those are refused.)
    #[serde(default)]
    pub agent_role: Option<AgentRole>,
    /// Only in the answer to a create: the secret is stored hashed.
    pub secret: Option<String>,
    /// An EC2 credential too: its ID is the access key.
    #[serde(default)]
    pub ec2: bool,
    /// Only in the answer to a create: the EC2 secret access key. vpcip
    /// keeps it (a signature can only be checked with it), apart from the
    /// token's own secret, which stays hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2_secret: Option<String>,
}

/// A page of a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `page_token` to get the next page; absent on the last.
    pub next_page_token: Option<String>,
}

/// An answer that may carry warnings (VIP bind, EIP bind).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct WithWarnings<T> {
    #[serde(flatten)]
    pub item: T,
    pub warnings: Vec<Warning>,
}
