//! nftables over netlink: one connection per namespace ([`NatTable`]),
//! batches of messages in one transaction ([`socket`]), set elements
//! encoded by hand ([`elements`]), answers parsed by a small parser of our
//! own ([`parse`]), rule builders ([`rules`]), and the router's NAT table
//! ([`nat`]); the other tables have their own modules (`counters`, `qos`,
//! `alg`, `spoof`, `guard`). Messages are built with
//! netlink-packet-netfilter; the `nat`, `ct` and `masq` expressions, which
//! it does not type, from their raw attributes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use netlink_packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage,
};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, Cmp, DataAttribute, Expressions, GenMessage, Hook,
    InetHookNumber, Lookup, Meta, MetaKey, NfTablesMessage, Operator, Payload, Register,
    RuleAttribute, RuleMessage, SetAttribute, SetElementList, SetElementMessage, SetFlags,
    SetMessage, TableAttribute, TableMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use vpcip_dataplane::nat::{NatMap, NatPlan};

use crate::SysError;
use crate::expr;

mod elements;
mod maps;
mod nat;
pub(crate) mod parse;
mod rules;
mod socket;

use elements::*;
use parse::*;
use rules::*;
use socket::*;

pub use elements::{ElementChange, KeyChange, encode_elements, encode_keys};
pub(crate) use elements::{put_attr, put_str};
pub(crate) use nat::map_nat;
pub(crate) use parse::attrs;
pub(crate) use rules::{Expr, filter_chain_in, meta_set_from_map, nat_chain_in, rule_in};
pub(crate) use socket::recv_dump;
/// The router's uplink (towards the gateway and the physical network):
/// outbound NAT happens only there.
pub use vpcip_dataplane::gateway::UPLINK;

pub const TABLE: &str = "vpcip_nat";
pub const DNAT_MAP: &str = "eip_dnat";
pub const SNAT_MAP: &str = "eip_snat";

/// nftables' data type of an IPv4 address (`ipv4_addr`).
pub(super) const TYPE_IPV4_ADDR: u32 = 7;
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// Elements per NEWSETELEM message: the element list has a 16-bit length.
pub(super) const ELEMENTS_PER_MESSAGE: usize = 1500;
pub(super) const NFT_MSG_NEWSETELEM: u8 = 12;
pub(super) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(super) const NFTA_LIST_ELEM: u16 = 1;
pub(super) const NFTA_SET_ELEM_KEY: u16 = 1;
pub(super) const NFTA_SET_ELEM_DATA: u16 = 2;
pub(super) const NFTA_DATA_VALUE: u16 = 1;

/// A netlink connection to nftables in one network namespace (the one the
/// socket was opened in).
pub struct NatTable {
    sock: Socket,
    seq: u32,
}
