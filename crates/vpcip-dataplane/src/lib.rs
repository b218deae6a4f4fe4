//! vpcip's data-plane planner: from the desired state and what the kernel
//! holds, the changes to make. Pure code: no sockets, tested without a
//! kernel; `vpcip-sys` applies the plans.

pub mod isolation;
pub mod nat;
