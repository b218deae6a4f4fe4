//! Rule and chain builders shared by vpcip's tables.

use super::*;

pub(crate) use crate::expr::Expr;

pub(super) fn rule(chain: &str, exprs: Vec<Expr>) -> NfTablesMessage {
    rule_in(TABLE, chain, exprs)
}

pub(crate) fn rule_in(table: &str, chain: &str, exprs: Vec<Expr>) -> NfTablesMessage {
    NfTablesMessage::NewRule(RuleMessage {
        attributes: vec![
            RuleAttribute::Table(table.into()),
            RuleAttribute::Chain(chain.into()),
            RuleAttribute::Expressions(exprs),
        ],
    })
}

/// A filter chain of `table` on `hook` at `priority`.
pub(crate) fn filter_chain_in(
    table: &str,
    name: &str,
    hook: InetHookNumber,
    priority: i32,
) -> NfTablesMessage {
    NfTablesMessage::NewChain(ChainMessage {
        attributes: vec![
            ChainAttribute::Table(table.into()),
            ChainAttribute::Name(name.into()),
            ChainAttribute::Type("filter".into()),
            ChainAttribute::Hook(vec![
                Hook::Number(hook.into()),
                Hook::Priority(priority.cast_unsigned()),
            ]),
        ],
    })
}

/// `meta <key> set ip saddr|daddr map @<map>`: the IPv4 address at
/// `offset` in the network header (12 source, 16 destination) looked up in
/// a map whose data becomes the packet's mark, priority, ….
pub(crate) fn meta_set_from_map(key: MetaKey, offset: u32, map: &str, map_id: u32) -> Vec<Expr> {
    vec![
        Expressions::Payload(vec![
            Payload::DestinationRegister(Register::Reg1),
            Payload::Base(1),
            Payload::Offset(offset),
            Payload::Len(4),
        ])
        .into(),
        Expressions::Lookup(vec![
            Lookup::Set(map.into()),
            Lookup::SetId(map_id),
            Lookup::SourceRegister(Register::Reg1),
            Lookup::DestinationRegister(Register::Reg1),
        ])
        .into(),
        Expressions::Meta(vec![Meta::Key(key), Meta::SourceRegister(Register::Reg1)]).into(),
    ]
}

/// `iifname`/`oifname` `==`/`!=` NAME.
pub(super) fn ifname(key: MetaKey, op: Operator, name: &str) -> Vec<Expr> {
    let mut padded = name.as_bytes().to_vec();
    padded.resize(16, 0); // IFNAMSIZ: an exact match
    vec![
        Expressions::Meta(vec![
            Meta::Key(key),
            Meta::DestinationRegister(Register::Reg1),
        ])
        .into(),
        Expressions::Cmp(vec![
            Cmp::SourceRegister(Register::Reg1),
            Cmp::Op(op),
            Cmp::Data(DataAttribute::Value(padded)),
        ])
        .into(),
    ]
}

pub(crate) fn nat_chain_in(
    table: &str,
    name: &str,
    hook: InetHookNumber,
    priority: i32,
) -> NfTablesMessage {
    NfTablesMessage::NewChain(ChainMessage {
        attributes: vec![
            ChainAttribute::Table(table.into()),
            ChainAttribute::Name(name.into()),
            ChainAttribute::Type("nat".into()),
            ChainAttribute::Hook(vec![
                Hook::Number(hook.into()),
                Hook::Priority(priority.cast_unsigned()),
            ]),
        ],
    })
}
