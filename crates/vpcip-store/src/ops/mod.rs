//! The store's operations: each public method is one transaction that loads
//! what a rule of `vpcip_model::rules` needs, asks it, and writes.

mod agents;
mod binding;
mod compute;
mod eip;
mod infra;
mod network;
mod security_groups;
mod views;
mod vip;

pub use views::VpcContents;

pub use infra::token_hash;
