//! vpcip's domain: typed resources, the rules of the model and the IPAM
//! arithmetic, as pure code with no I/O. The store and the API are thin
//! shells around it.

pub mod config;
pub mod desired;
pub mod error;
pub mod filter;
pub mod guest;
pub mod ipam;
pub mod paths;
pub mod resources;
pub mod rules;

pub use error::{ErrorClass, RuleError, Warning};
pub use resources::*;
