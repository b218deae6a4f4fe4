//! Desired data-plane state: what each agent must make of the kernel,
//! computed from the resources by pure functions. Agents receive it whole
//! (level-triggered), so a restarted or drifted agent converges by diffing.
//!
//! - [`status`]: agents, their reports, and the system at a glance;
//! - [`gateway`]: a gateway's routers, NAT, shaping and its cluster;
//! - [`host`]: a host's ports, L2 domains and DHCP leases;
//! - [`world`]: what each agent gets, computed from the resources;
//! - [`entries`]: the same as keyed entries, and the watch's changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::filter;
use crate::resources::*;

mod entries;
mod gateway;
mod host;
mod status;
mod world;

pub use entries::*;
pub use gateway::*;
pub use host::*;
pub use status::*;
pub use world::*;

// (Named here too, where the agents' types are.)
pub use crate::resources::AgentRole;

#[cfg(test)]
mod tests;
