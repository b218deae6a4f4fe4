//! nftables expression builders shared by vpcip's tables: loads into
//! registers (meta, payload, ct), comparisons, lookups and verdicts. Each
//! returns netlink attributes; nothing here talks to the kernel.

use netlink_packet_core::DefaultNla;
use netlink_packet_netfilter::nftables::{
    Bitwise, Cmp, DataAttribute, ExpressionAttribute, Expressions, Immediate, ListAttribute,
    Lookup, Meta, MetaKey, Operator, Payload, Register, Verdict, VerdictAttribute,
};

pub(crate) type Expr = ListAttribute<ExpressionAttribute>;

/// Payload bases: where an offset counts from.
pub(crate) const LINK_HEADER: u32 = 0;
pub(crate) const NETWORK_HEADER: u32 = 1;
pub(crate) const TRANSPORT_HEADER: u32 = 2;

/// `NFT_LOOKUP_F_INV`: the lookup matches when the key is *not* there.
pub(crate) const NOT_IN: u32 = 1;

/// `ct` keys.
pub(crate) const CT_DIRECTION: u32 = 1;
/// `ct direction reply`.
pub(crate) const IP_CT_DIR_REPLY: u8 = 1;

/// `meta <key>` into `reg`.
pub(crate) fn meta(key: MetaKey, reg: Register) -> Expr {
    Expressions::Meta(vec![Meta::Key(key), Meta::DestinationRegister(reg)]).into()
}

/// `len` bytes at `offset` from `base` into `reg`.
pub(crate) fn payload(base: u32, offset: u32, len: u32, reg: Register) -> Expr {
    Expressions::Payload(vec![
        Payload::DestinationRegister(reg),
        Payload::Base(base),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
    .into()
}

/// `ct <key>` into `reg`.
pub(crate) fn ct(key: u32, reg: Register) -> Expr {
    let reg: u32 = reg.into();
    Expressions::Other {
        expression_type: "ct".into(),
        attributes: vec![
            DefaultNla::new(1, reg.to_be_bytes().to_vec()), // NFTA_CT_DREG
            DefaultNla::new(2, key.to_be_bytes().to_vec()), // NFTA_CT_KEY
        ],
    }
    .into()
}

/// Compares `reg` with `data` (a shorter `data` compares a prefix).
pub(crate) fn cmp(reg: Register, op: Operator, data: Vec<u8>) -> Expr {
    Expressions::Cmp(vec![
        Cmp::SourceRegister(reg),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(data)),
    ])
    .into()
}

/// `reg &= mask`.
pub(crate) fn mask(reg: Register, mask: Vec<u8>) -> Expr {
    let len = u32::try_from(mask.len()).unwrap_or(u32::MAX);
    Expressions::Bitwise(vec![
        Bitwise::SourceRegister(reg),
        Bitwise::DestinationRegister(reg),
        Bitwise::Length(len),
        Bitwise::Mask(DataAttribute::Value(mask)),
        Bitwise::Xor(DataAttribute::Value(vec![0; len as usize])),
    ])
    .into()
}

/// The key in `reg` (and the registers after it) looked up in a set.
pub(crate) fn lookup(set: &str, id: u32, reg: Register, flags: u32) -> Expr {
    Expressions::Lookup(vec![
        Lookup::Set(set.into()),
        Lookup::SetId(id),
        Lookup::SourceRegister(reg),
        Lookup::Flags(flags),
    ])
    .into()
}

fn verdict(code: u32) -> Expr {
    Expressions::Immediate(vec![
        Immediate::DestinationRegister(Register::Verdict),
        Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(
            Verdict::Other(code),
        )])),
    ])
    .into()
}

pub(crate) fn drop() -> Expr {
    verdict(0) // NF_DROP
}

pub(crate) fn accept() -> Expr {
    verdict(1) // NF_ACCEPT
}

/// `log group <group>`: the packet copied to whoever listens on that
/// nfnetlink_log group.
pub(crate) fn log_group(group: u16) -> Expr {
    Expressions::Other {
        expression_type: "log".into(),
        attributes: vec![
            DefaultNla::new(1, group.to_be_bytes().to_vec()), // NFTA_LOG_GROUP
        ],
    }
    .into()
}

/// UDP's port at `offset` in the transport header (0: source, 2:
/// destination) into `Reg1`: `meta l4proto udp`, then the port.
pub(crate) fn udp_port(offset: u32) -> Vec<Expr> {
    vec![
        meta(MetaKey::L4Proto, Register::Reg1),
        cmp(Register::Reg1, Operator::Equal, vec![17]),
        payload(TRANSPORT_HEADER, offset, 2, Register::Reg1),
    ]
}

/// `udp sport|dport == port` (see [`udp_port`]).
pub(crate) fn udp_port_is(offset: u32, port: u16) -> Vec<Expr> {
    let mut e = udp_port(offset);
    e.push(cmp(
        Register::Reg1,
        Operator::Equal,
        port.to_be_bytes().to_vec(),
    ));
    e
}

/// `notrack`: conntrack leaves the packet alone.
pub(crate) fn notrack() -> Expr {
    Expressions::Other {
        expression_type: "notrack".into(),
        attributes: vec![],
    }
    .into()
}

/// Back to the chain that jumped here.
pub(crate) fn ret() -> Expr {
    verdict((-5i32).cast_unsigned()) // NFT_RETURN
}

/// `iifname|oifname PREFIX*`: the interface's name starts with `prefix`.
pub(crate) fn ifname_prefix(key: MetaKey, prefix: &str) -> Vec<Expr> {
    vec![
        meta(key, Register::Reg1),
        cmp(Register::Reg1, Operator::Equal, prefix.as_bytes().to_vec()),
    ]
}
