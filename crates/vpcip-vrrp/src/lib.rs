//! VRRPv3 (RFC 5798) for `vpcip vrrp`, the guest speaker that interoperates
//! with keepalived. Pure code: the packet codec here; the state machine and
//! the sockets come next.

pub mod machine;
pub mod packet;
