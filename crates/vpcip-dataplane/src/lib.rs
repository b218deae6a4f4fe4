//! vpcip's data-plane planner: from the desired state and what the kernel
//! holds, the changes to make. Pure code: no sockets, tested without a
//! kernel; the agents observe the kernel, plan here and apply the changes
//! through `vpcip-sys`.

pub mod fastpath;
pub mod filter;
pub mod gateway;
pub mod host;
pub mod isolation;
pub mod links;
pub mod nat;
pub mod routing;
