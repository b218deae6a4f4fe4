//! The table that picks each EIP's bandwidth class, `ip vpcip_qos`:
//!
//! ```text
//! map eip_class { type ipv4_addr : classid }     # EIP → 1:<class>
//! chain classify { type filter hook postrouting priority 200;
//!                  meta priority set ip daddr map @eip_class }   # or saddr
//! ```
//!
//! On the gateway node it keys on the destination (traffic to an EIP,
//! shaped on the way into its router); in a router on the source, after
//! the source NAT has made it the EIP (traffic from an EIP, shaped on the
//! way out of the router). The HTB qdisc on that link takes the priority
//! as the class ([`crate::shaper`]). One fixed rule; a map lookup per
//! packet whatever the number of EIPs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use netlink_packet_core::NLM_F_CREATE;
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    InetHookNumber, MetaKey, NfTablesMessage, SetAttribute, SetFlags, SetMessage, TableAttribute,
    TableMessage,
};

use crate::SysError;
use crate::nft::{NatTable, filter_chain_in, meta_set_from_map, rule_in};

pub const QOS_TABLE: &str = "vpcip_qos";
pub const EIP_CLASS: &str = "eip_class";
/// nftables' `classid` data type.
const TYPE_CLASSID: u32 = 23;

/// Which address of a packet names its EIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EipIs {
    Destination,
    Source,
}

/// `meta priority set ip daddr|saddr map @eip_class`.
fn classify(key: EipIs) -> Vec<crate::nft::Expr> {
    let offset = match key {
        EipIs::Destination => 16,
        EipIs::Source => 12,
    };
    meta_set_from_map(MetaKey::Priority, offset, EIP_CLASS, 1)
}

impl NatTable {
    /// Whether the table is there.
    pub fn has_qos(&mut self) -> Result<bool, SysError> {
        self.has_set(NetfilterProtoFamily::IPv4, QOS_TABLE, EIP_CLASS)
    }

    /// Makes the table (see the module) unless it is there; true when it
    /// was made.
    pub fn ensure_qos(&mut self, key: EipIs) -> Result<bool, SysError> {
        if self.has_qos()? {
            return Ok(false);
        }
        let table = || TableMessage {
            attributes: vec![TableAttribute::Name(QOS_TABLE.into())],
        };
        let msgs = vec![
            NfTablesMessage::NewTable(table()),
            NfTablesMessage::DeleteTable(table()),
            NfTablesMessage::NewTable(table()),
            NfTablesMessage::NewSet(SetMessage {
                attributes: vec![
                    SetAttribute::Table(QOS_TABLE.into()),
                    SetAttribute::Name(EIP_CLASS.into()),
                    SetAttribute::Flags(SetFlags::Map),
                    SetAttribute::KeyType(7), // ipv4_addr
                    SetAttribute::KeyLen(4),
                    SetAttribute::DataType(TYPE_CLASSID),
                    SetAttribute::DataLen(4),
                    SetAttribute::Id(1),
                ],
            }),
            filter_chain_in(QOS_TABLE, "classify", InetHookNumber::PostRouting, 200),
            rule_in(QOS_TABLE, "classify", classify(key)),
        ];
        self.transact_in(NetfilterProtoFamily::IPv4, msgs, &[], &[], NLM_F_CREATE)?;
        Ok(true)
    }

    /// Each shaped EIP's class id (`1:<class>` as a 32-bit priority).
    pub fn read_classes(&mut self) -> Result<BTreeMap<Ipv4Addr, u32>, SysError> {
        self.read_u32_map(QOS_TABLE, EIP_CLASS)
    }

    /// Makes the class map `want`; returns the number of elements changed.
    pub fn apply_classes(
        &mut self,
        have: &BTreeMap<Ipv4Addr, u32>,
        want: &BTreeMap<Ipv4Addr, u32>,
    ) -> Result<usize, SysError> {
        self.apply_u32_map(QOS_TABLE, EIP_CLASS, have, want)
    }
}
