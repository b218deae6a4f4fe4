//! A host's security-group filter in nftables, over netlink: the tables
//! `bridge vpcip_sgmark` (which VM port a multicast or broadcast frame
//! goes to, as the packet's priority) and `ip vpcip_sg` (conntrack zones,
//! each port's chains, found by bridge and MAC, each group's sets). The
//! layout and the reasons are in `vpcip_dataplane::filter`; this module
//! writes and reads it.
//!
//! Bridged IPv4 reaches the `ip` hooks through br_netfilter
//! (`net.bridge.bridge-nf-call-iptables = 1` in the host's namespace), so
//! conntrack sees it: this kernel has no conntrack in the bridge family.

mod change;
mod elements;
mod read;
mod tables;

pub const SG_TABLE: &str = "vpcip_sg";
pub const SGMARK_TABLE: &str = "vpcip_sgmark";
/// Port → its number, typed as the packet's priority; a catch-all `* : 0`
/// for every other port.
const PORT_PRIO: &str = "port_prio";
/// The bridge table's chain. Its name tells the layout: the older ones
/// (`forward`, `ports`) numbered every frame, in a map `port_mark` too.
const MULTICAST_CHAIN: &str = "multicast";
const ZONE: &str = "zone";
/// `iifname . ether saddr` / `oifname . ether daddr` → a port's chain.
const INGRESS: &str = "ingress";
const EGRESS: &str = "egress";
const DROPS_IN: &str = "drops_in";
const DROPS_OUT: &str = "drops_out";
/// Port number → its ingress chain, for multicast and broadcast. Made
/// last: its presence says the table is of the current shape.
const MC_INGRESS: &str = "mc_ingress";
const IFNAMSIZ: usize = 16;
const TYPE_IFNAME: u32 = 41;
const TYPE_MARK: u32 = 19;
const TYPE_INTEGER: u32 = 4;
const TYPE_CLASSID: u32 = 23;
const TYPE_ETHER_ADDR: u32 = 9;
/// `ifname . ether_addr`, packed 6 bits each.
const TYPE_PORT_MAC: u32 = (TYPE_IFNAME << 6) | TYPE_ETHER_ADDR;
/// Its key: the name padded to 16 bytes, the MAC to 8.
const PORT_MAC_KEY_LEN: u32 = 24;

/// The zone map's description for `nft list` (`typeof iifname : ct zone`),
/// as nft 1.0.6 writes it on x86-64: keys and data in host byte order,
/// keyed by `meta iifname`, valued `ct zone`. With it the listing shows
/// names and zones, and `nft -f` takes `ct zone set iifname map @zone` back.
const ZONE_TYPEOF: [u8; 56] = [
    0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x00, 0x00, 0x00, 0x03, 0x0e, 0x00, 0x04,
    0x09, 0x00, 0x00, 0x00, 0x01, 0x06, 0x00, 0x04, 0x06, 0x00, 0x00, 0x00, 0x04, 0x14, 0x00, 0x04,
    0x0c, 0x00, 0x00, 0x00, 0x01, 0x0c, 0x00, 0x04, 0x11, 0x00, 0x00, 0x00, 0x01, 0x04, 0xff, 0xff,
    0xff, 0xff, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
];

/// `port_prio`'s (`typeof oifname : meta priority`).
const PORT_PRIO_TYPEOF: [u8; 50] = [
    0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x00, 0x00, 0x00, 0x03, 0x0e, 0x00, 0x04,
    0x09, 0x00, 0x00, 0x00, 0x01, 0x06, 0x00, 0x04, 0x07, 0x00, 0x00, 0x00, 0x04, 0x0e, 0x00, 0x04,
    0x09, 0x00, 0x00, 0x00, 0x01, 0x06, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00, 0x06, 0x04, 0x00, 0x00,
    0x00, 0x00,
];

/// The multicast ingress verdict map's (`typeof meta priority : verdict`),
/// likewise: nft type-checks `meta priority vmap @mc_ingress` against the
/// key.
const INGRESS_TYPEOF: [u8; 44] = [
    0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x03, 0x0e, 0x00, 0x04,
    0x09, 0x00, 0x00, 0x00, 0x01, 0x06, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00, 0x04, 0x08, 0x00, 0x04,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
];
/// `inet_proto . inet_service . ipv4_addr`, packed 6 bits each.
const TYPE_RULE: u32 = (12 << 12) | (13 << 6) | 7;
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
/// `ct` keys and `ct state` bits.
const CT_STATE: u32 = 0;
const CT_ZONE: u32 = 17;
const CT_ESTABLISHED_RELATED: u32 = 2 | 4;
/// Element attributes read back.
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;

/// One drop counter per port and direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    pub packets_in: u64,
    pub packets_out: u64,
}

#[cfg(test)]
mod tests;
