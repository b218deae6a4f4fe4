//! A host's port guards, in nftables' bridge family, over netlink: table
//! `bridge vpcip_spoof` with five sets and fixed rules, whatever the number
//! of ports:
//!
//! ```text
//! set ports   { type ifname }                  # every VM port
//! set macs    { type ifname . ether_addr }     # the one MAC each port sends from
//! set links   { type ifname }                  # VM ports and VXLAN devices
//! set guarded { type ifname }                  # ports whose source/destination check is on
//! set allowed { type ifname . ipv4_addr }      # what each may send from (its IP, its VIPs)
//! set answered { type ifname }                 # ports whose DHCP the host agent answers
//! chain prerouting { type filter hook prerouting priority -200
//!   iifname != @ports accept                                  # the tunnel's side
//!   iifname @answered udp dport 67 log group 6768 drop        # to the agent's DHCP server
//!   udp dport 67 drop                                         # DHCP never leaves a port
//!   udp sport 67 drop                                         # nor does a rogue server's answer
//!   iifname . ether saddr != @macs drop
//!   ether type arp  iifname . arp saddr ether != @macs drop
//!   iifname != @guarded accept                                # source/dest check off
//!   ether type ip   iifname . ip saddr      != @allowed drop
//!   ether type arp  iifname . arp saddr ip  != @allowed drop
//!   ether type ip6  drop                                      # VPCs are IPv4
//! }
//! chain input  { type filter hook input priority -200;  iifname @links drop }
//! chain output { type filter hook output priority -200; oifname @links drop }
//! ```
//!
//! The MAC is pinned whatever the source/destination check (a router VM
//! may send from any address, never as another VM). `input` and `output`
//! keep the host out of its tenants' segments: nothing the host makes
//! (IPv6 router solicitations, say) goes out on a tenant link, and nothing
//! from one reaches the host. A port joins or leaves, or gains a VIP:
//! elements added or removed in one transaction. A VM's DHCP requests are
//! copied to the host agent (nfnetlink_log group [`DHCP_LOG_GROUP`]) and go
//! no further: no other VM sees them, and no VM's answer reaches another.

use std::collections::BTreeSet;

use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, Hook, InetHookNumber, MetaKey, NfTablesMessage, Operator,
    Register, RuleAttribute, RuleMessage, SetFlags,
};
pub use vpcip_dataplane::isolation::PortGuards as Guards;

use crate::SysError;
use crate::expr::{
    Expr, LINK_HEADER, NETWORK_HEADER, NOT_IN, accept, cmp, drop, log_group, lookup, meta, payload,
};
use crate::nft::NatTable;
use crate::sets::{SetContents, new_set, with_host_order_keys};

pub const SPOOF_TABLE: &str = "vpcip_spoof";
const PORTS: &str = "ports";
const MACS: &str = "macs";
const LINKS: &str = "links";
const GUARDED: &str = "guarded";
const ALLOWED: &str = "allowed";
const ANSWERED: &str = "answered";
/// The nfnetlink_log group a host's DHCP requests are copied to (the DHCP
/// ports, 67 and 68, side by side).
pub const DHCP_LOG_GROUP: u16 = 6768;
/// nftables' data types: `ifname`, `ifname . ether_addr` and `ifname .
/// ipv4_addr` (concatenated types are packed 6 bits each).
const TYPE_IFNAME: u32 = 41;
const TYPE_IFNAME_ETHER: u32 = (41 << 6) | 9;
const TYPE_IFNAME_IPV4: u32 = (41 << 6) | 7;
const IFNAMSIZ: usize = 16;

fn ifname_key(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.resize(IFNAMSIZ, 0);
    k
}

/// An interface name from a key padded with NULs.
fn ifname_of(key: &[u8]) -> String {
    let name = key.get(..IFNAMSIZ).unwrap_or(key);
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

fn ether_type(t: u16) -> Vec<Expr> {
    vec![
        payload(LINK_HEADER, 12, 2, Register::Reg1),
        cmp(Register::Reg1, Operator::Equal, t.to_be_bytes().to_vec()),
    ]
}

fn rule(chain: &str, exprs: Vec<Expr>) -> NfTablesMessage {
    NfTablesMessage::NewRule(RuleMessage {
        attributes: vec![
            RuleAttribute::Table(SPOOF_TABLE.into()),
            RuleAttribute::Chain(chain.into()),
            RuleAttribute::Expressions(exprs),
        ],
    })
}

fn chain(name: &str, hook: InetHookNumber) -> NfTablesMessage {
    NfTablesMessage::NewChain(ChainMessage {
        attributes: vec![
            ChainAttribute::Table(SPOOF_TABLE.into()),
            ChainAttribute::Name(name.into()),
            ChainAttribute::Type("filter".into()),
            ChainAttribute::Hook(vec![
                Hook::Number(hook.into()),
                Hook::Priority((-200i32).cast_unsigned()),
            ]),
        ],
    })
}

/// The rules (set IDs as in [`sets`]).
fn rules() -> Vec<NfTablesMessage> {
    let member = |set: &str, id: u32, flags: u32| {
        vec![
            meta(MetaKey::Iifname, Register::Reg1),
            lookup(set, id, Register::Reg1, flags),
        ]
    };
    // `iifname . <len bytes at offset of base> != @set drop`.
    let pinned = |mut v: Vec<Expr>, base: u32, offset: u32, len: u32, set: &str, id: u32| {
        v.push(meta(MetaKey::Iifname, Register::Reg32_00));
        v.push(payload(base, offset, len, Register::Reg32_04));
        v.push(lookup(set, id, Register::Reg32_00, NOT_IN));
        v.push(drop());
        v
    };
    let with = |mut v: Vec<Expr>, more: Vec<Expr>| {
        v.extend(more);
        v
    };
    // Each frame costs as few lookups as it can: what does not come from
    // a VM port (the tunnel's side) leaves after one, the ether type is
    // compared before a lookup that needs it.
    // `udp <sport|dport> 67`.
    let udp_port = |offset: u32| crate::expr::udp_port_is(offset, 67);
    vec![
        rule("prerouting", with(member(PORTS, 1, NOT_IN), vec![accept()])),
        // DHCP: requests to the host agent only, no server answers.
        rule(
            "prerouting",
            with(
                with(member(ANSWERED, 6, 0), udp_port(2)),
                vec![log_group(DHCP_LOG_GROUP), drop()],
            ),
        ),
        rule("prerouting", with(udp_port(2), vec![drop()])),
        rule("prerouting", with(udp_port(0), vec![drop()])),
        // The frame's source MAC, then ARP's sender hardware address.
        rule("prerouting", pinned(vec![], LINK_HEADER, 6, 6, MACS, 2)),
        rule(
            "prerouting",
            pinned(ether_type(0x0806), NETWORK_HEADER, 8, 6, MACS, 2),
        ),
        rule(
            "prerouting",
            with(member(GUARDED, 4, NOT_IN), vec![accept()]),
        ),
        // The IP source, then ARP's sender protocol address.
        rule(
            "prerouting",
            pinned(ether_type(0x0800), NETWORK_HEADER, 12, 4, ALLOWED, 5),
        ),
        rule(
            "prerouting",
            pinned(ether_type(0x0806), NETWORK_HEADER, 14, 4, ALLOWED, 5),
        ),
        rule("prerouting", with(ether_type(0x86dd), vec![drop()])),
        rule("input", with(member(LINKS, 3, 0), vec![drop()])),
        rule(
            "output",
            vec![
                meta(MetaKey::Oifname, Register::Reg1),
                lookup(LINKS, 3, Register::Reg1, 0),
                drop(),
            ],
        ),
    ]
}

/// The sets, with the IDs the rules use.
fn sets() -> Vec<NfTablesMessage> {
    let set = |name, id, ty, len: usize| {
        new_set(
            SPOOF_TABLE,
            name,
            id,
            SetFlags::empty(),
            ty,
            u32::try_from(len).unwrap_or(u32::MAX),
        )
    };
    vec![
        with_host_order_keys(set(PORTS, 1, TYPE_IFNAME, IFNAMSIZ)),
        set(MACS, 2, TYPE_IFNAME_ETHER, IFNAMSIZ + 8),
        with_host_order_keys(set(LINKS, 3, TYPE_IFNAME, IFNAMSIZ)),
        with_host_order_keys(set(GUARDED, 4, TYPE_IFNAME, IFNAMSIZ)),
        set(ALLOWED, 5, TYPE_IFNAME_IPV4, IFNAMSIZ + 4),
        with_host_order_keys(set(ANSWERED, 6, TYPE_IFNAME, IFNAMSIZ)),
    ]
}

/// Each set's elements for `g`, in the order they are put in place: what a
/// port may send is there before the port is guarded.
fn elements(g: &Guards) -> SetContents {
    let names = |set: &BTreeSet<String>| set.iter().map(|p| (ifname_key(p), false)).collect();
    let macs = g
        .macs
        .iter()
        .map(|(p, mac)| {
            let mut k = ifname_key(p);
            k.extend_from_slice(mac);
            k.extend_from_slice(&[0, 0]);
            (k, false)
        })
        .collect();
    let allowed = g
        .allowed
        .iter()
        .map(|(p, ip)| {
            let mut k = ifname_key(p);
            k.extend_from_slice(&ip.octets());
            (k, false)
        })
        .collect();
    vec![
        (MACS, macs),
        (PORTS, names(&g.ports)),
        (LINKS, names(&g.links)),
        (ALLOWED, allowed),
        (GUARDED, names(&g.guarded)),
        (ANSWERED, names(&g.answered)),
    ]
}

impl NatTable {
    /// Creates the guards' table, holding `want` from the start, unless it
    /// exists with every set; true when (re)created. A table of an older
    /// vpcip (without MAC pinning, or DHCP) is replaced in the same
    /// transaction.
    pub fn ensure_spoof(&mut self, want: &Guards) -> Result<bool, SysError> {
        let mut body = sets();
        body.push(chain("prerouting", InetHookNumber::PreRouting));
        body.push(chain("input", InetHookNumber::LocalIn));
        body.push(chain("output", InetHookNumber::LocalOut));
        body.extend(rules());
        self.ensure_table(
            NetfilterProtoFamily::Bridge,
            SPOOF_TABLE,
            ANSWERED,
            body,
            &elements(want),
        )
    }

    /// What the guards' sets hold; None when the table is missing or of an
    /// older shape (without the set `answered`).
    pub fn read_spoof(&mut self) -> Result<Option<Guards>, SysError> {
        let family = NetfilterProtoFamily::Bridge;
        if !self.has_set(family, SPOOF_TABLE, ANSWERED)? {
            return Ok(None);
        }
        let mut read = |set| self.read_elements(family, SPOOF_TABLE, set);
        let names = |els: BTreeSet<(Vec<u8>, bool)>| -> BTreeSet<String> {
            els.iter().map(|(k, _)| ifname_of(k)).collect()
        };
        let split = |k: &[u8]| (ifname_of(k), k.get(IFNAMSIZ..).unwrap_or_default().to_vec());
        Ok(Some(Guards {
            ports: names(read(PORTS)?),
            macs: read(MACS)?
                .iter()
                .filter_map(|(k, _)| {
                    let (port, rest) = split(k);
                    Some((port, <[u8; 6]>::try_from(rest.get(..6)?).ok()?))
                })
                .collect(),
            links: names(read(LINKS)?),
            guarded: names(read(GUARDED)?),
            allowed: read(ALLOWED)?
                .iter()
                .filter_map(|(k, _)| {
                    let (port, rest) = split(k);
                    let ip = <[u8; 4]>::try_from(rest.get(..4)?).ok()?;
                    Some((port, std::net::Ipv4Addr::from(ip)))
                })
                .collect(),
            answered: names(read(ANSWERED)?),
        }))
    }

    /// Makes the sets what `want` gives, in one transaction, from what the
    /// kernel holds now; returns the number of elements added or removed.
    pub fn apply_spoof(&mut self, want: &Guards) -> Result<usize, SysError> {
        self.converge_sets(
            NetfilterProtoFamily::Bridge,
            SPOOF_TABLE,
            &elements(want),
            &[],
        )
    }
}
