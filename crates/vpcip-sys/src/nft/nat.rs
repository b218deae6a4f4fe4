//! The EIP 1:1 NAT of a VPC router: table `ip vpcip_nat` with two maps,
//! `eip_dnat` (EIP → private) and `eip_snat` (private → EIP), and a fixed
//! set of rules (see [`nat_rules`]): DNAT by the map; SNAT by the map and a
//! default masquerade on the uplink; hairpin (a VM reaching an EIP of its
//! own VPC) by the same map or a masquerade. A bind or unbind is an element
//! added or removed, in one netlink transaction; per-packet cost does not
//! grow with the number of EIPs.

use super::*;

/// `ct status dnat`: the connection's destination was translated.
pub(super) fn ct_dnat() -> Vec<Expr> {
    const NFT_CT_STATUS: u32 = 2;
    const IPS_DST_NAT: u32 = 1 << 5;
    vec![
        expr::ct(NFT_CT_STATUS, Register::Reg1),
        expr::mask(Register::Reg1, IPS_DST_NAT.to_ne_bytes().to_vec()),
        expr::cmp(Register::Reg1, Operator::NotEqual, vec![0; 4]),
    ]
}

/// `dnat to ip daddr map @eip_dnat` / `snat to ip saddr map @eip_snat`.
pub(crate) fn map_nat(map: &str, map_id: u32, offset: u32, nat_type: u32) -> Vec<Expr> {
    vec![
        Expressions::Payload(vec![
            Payload::DestinationRegister(Register::Reg1),
            Payload::Base(1), // network header
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
        Expressions::Other {
            expression_type: "nat".into(),
            attributes: vec![
                DefaultNla::new(1, be32(nat_type)), // NFTA_NAT_TYPE
                DefaultNla::new(2, be32(2)),        // NFTA_NAT_FAMILY: NFPROTO_IPV4
                DefaultNla::new(3, be32(1)),        // NFTA_NAT_REG_ADDR_MIN: reg 1
            ],
        }
        .into(),
    ]
}

pub(super) fn masquerade() -> Vec<Expr> {
    vec![
        Expressions::Other {
            expression_type: "masq".into(),
            attributes: vec![],
        }
        .into(),
    ]
}

/// The router's NAT rules, fixed whatever the number of EIPs:
///
/// ```text
/// prerouting:  dnat to ip daddr map @eip_dnat
/// postrouting: iifname != up0 oifname != up0 ct status dnat snat to ip saddr map @eip_snat   # hairpin, from a VM with an EIP
///              iifname != up0 oifname != up0 ct status dnat masquerade                      # hairpin, from a VM without
///              oifname == up0 snat to ip saddr map @eip_snat                                # outbound with the EIP
///              oifname == up0 masquerade                                                    # default SNAT
/// ```
pub(super) fn nat_rules() -> Vec<NfTablesMessage> {
    const DNAT: u32 = 1;
    const SNAT: u32 = 0;
    let hairpin = || {
        let mut v = ifname(MetaKey::Iifname, Operator::NotEqual, UPLINK);
        v.extend(ifname(MetaKey::Oifname, Operator::NotEqual, UPLINK));
        v.extend(ct_dnat());
        v
    };
    let uplink = || ifname(MetaKey::Oifname, Operator::Equal, UPLINK);
    let with = |mut a: Vec<Expr>, b: Vec<Expr>| {
        a.extend(b);
        a
    };
    vec![
        rule("prerouting", map_nat(DNAT_MAP, 1, 16, DNAT)),
        rule(
            "postrouting",
            with(hairpin(), map_nat(SNAT_MAP, 2, 12, SNAT)),
        ),
        rule("postrouting", with(hairpin(), masquerade())),
        rule(
            "postrouting",
            with(uplink(), map_nat(SNAT_MAP, 2, 12, SNAT)),
        ),
        rule("postrouting", with(uplink(), masquerade())),
    ]
}

pub(super) fn nat_chain(name: &str, hook: InetHookNumber, priority: i32) -> NfTablesMessage {
    nat_chain_in(TABLE, name, hook, priority)
}

pub(super) fn map(name: &str, id: u32) -> NfTablesMessage {
    sized_map(name, id, 0)
}

/// A NAT map holding at most `capacity` elements (0: no limit). Given a
/// size, the kernel keeps the map in a hash table of fixed size, which
/// takes 100,000 elements in about half the time of the resizable one.
fn sized_map(name: &str, id: u32, capacity: u32) -> NfTablesMessage {
    let mut attributes = vec![
        SetAttribute::Table(TABLE.into()),
        SetAttribute::Name(name.into()),
        SetAttribute::Flags(SetFlags::Map),
        SetAttribute::KeyType(TYPE_IPV4_ADDR),
        SetAttribute::KeyLen(4),
        SetAttribute::DataType(TYPE_IPV4_ADDR),
        SetAttribute::DataLen(4),
        SetAttribute::Id(id),
    ];
    if capacity > 0 {
        attributes.push(SetAttribute::Description(vec![
            netlink_packet_netfilter::nftables::SetDescription::Size(capacity),
        ]));
    }
    NfTablesMessage::NewSet(SetMessage { attributes })
}

impl NatTable {
    /// Whether the router's NAT table is there.
    pub fn has_nat(&mut self) -> Result<bool, SysError> {
        self.has_set(NetfilterProtoFamily::IPv4, TABLE, DNAT_MAP)
    }

    /// Creates the table, maps and rules if the table is missing. An existing
    /// table is left as it is: its maps hold live bindings.
    pub fn ensure(&mut self) -> Result<bool, SysError> {
        if self.has_nat()? {
            return Ok(false);
        }
        self.transact(
            vec![
                NfTablesMessage::NewTable(TableMessage {
                    attributes: vec![TableAttribute::Name(TABLE.into())],
                }),
                map(DNAT_MAP, 1),
                map(SNAT_MAP, 2),
                nat_chain("prerouting", InetHookNumber::PreRouting, -100),
                nat_chain("postrouting", InetHookNumber::PostRouting, 100),
            ]
            .into_iter()
            .chain(nat_rules())
            .collect(),
            NLM_F_CREATE,
        )?;
        Ok(true)
    }

    /// How many bindings the maps hold at most (0: no limit, or no table).
    pub fn capacity(&mut self) -> Result<u32, SysError> {
        Ok(self
            .set_info(NetfilterProtoFamily::IPv4, TABLE, DNAT_MAP)?
            .map_or(0, |(_, size)| size))
    }

    /// Makes the table anew with maps for `capacity` bindings holding
    /// `dnat` (EIP → private) and its reverse, in one transaction: the old
    /// table goes in it, so no packet sees the maps half made.
    pub fn remake(&mut self, capacity: u32, dnat: &NatMap) -> Result<(), SysError> {
        let t = || TableMessage {
            attributes: vec![TableAttribute::Name(TABLE.into())],
        };
        let msgs: Vec<NfTablesMessage> = [
            NfTablesMessage::NewTable(t()),
            NfTablesMessage::DeleteTable(t()),
            NfTablesMessage::NewTable(t()),
            sized_map(DNAT_MAP, 1, capacity),
            sized_map(SNAT_MAP, 2, capacity),
            nat_chain("prerouting", InetHookNumber::PreRouting, -100),
            nat_chain("postrouting", InetHookNumber::PostRouting, 100),
        ]
        .into_iter()
        .chain(nat_rules())
        .collect();
        let forward: Vec<(Ipv4Addr, Ipv4Addr)> = dnat.iter().map(|(e, p)| (*e, *p)).collect();
        let back: Vec<(Ipv4Addr, Ipv4Addr)> = dnat.iter().map(|(e, p)| (*p, *e)).collect();
        let change = |map, pairs| ElementChange {
            table: TABLE,
            map,
            add: true,
            pairs,
        };
        self.transact_with(
            msgs,
            &[change(DNAT_MAP, &forward), change(SNAT_MAP, &back)],
            NLM_F_CREATE,
        )
    }

    /// Applies a plan to both maps in one transaction: all of it, or
    /// (when the kernel refuses any part) none of it.
    pub fn apply(&mut self, plan: &NatPlan) -> Result<(), SysError> {
        if plan.is_empty() {
            return Ok(());
        }
        let change = |map, add, pairs| ElementChange {
            table: TABLE,
            map,
            add,
            pairs,
        };
        self.transact_with(
            vec![],
            &[
                change(DNAT_MAP, false, &plan.dnat.remove),
                change(SNAT_MAP, false, &plan.snat.remove),
                change(DNAT_MAP, true, &plan.dnat.add),
                change(SNAT_MAP, true, &plan.snat.add),
            ],
            NLM_F_CREATE,
        )
    }

    /// The elements of one map, as the kernel holds them.
    pub fn read_map(&mut self, name: &str) -> Result<NatMap, SysError> {
        for _ in 0..10 {
            if let Some(map) = self.dump_map(name)? {
                return Ok(map);
            }
        }
        Err(SysError::Parse("the map kept changing while it was read"))
    }

    /// One dump of a map; None when the kernel says it was interrupted.
    pub(super) fn dump_map(&mut self, name: &str) -> Result<Option<NatMap>, SysError> {
        let mut out = BTreeMap::new();
        let complete = self.dump_set(NetfilterProtoFamily::IPv4, TABLE, name, |k, v, _| {
            let k = <[u8; 4]>::try_from(k).ok().map(Ipv4Addr::from);
            let v = v
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .map(Ipv4Addr::from);
            if let (Some(k), Some(v)) = (k, v) {
                out.insert(k, v);
            }
        })?;
        Ok(complete.then_some(out))
    }

    /// Both maps: (EIP → private, private → EIP).
    ///
    /// A dump of a large map taken while the kernel is still resizing its
    /// hash table (just after a bulk load) can miss elements: the dump is
    /// paged by skipping what was sent, and the resize reorders the table.
    /// A plan made from such a read would re-add what exists and fail; use
    /// [`NatTable::read_settled`] before applying a change.
    pub fn read(&mut self) -> Result<(NatMap, NatMap), SysError> {
        Ok((self.read_map(DNAT_MAP)?, self.read_map(SNAT_MAP)?))
    }

    /// Both maps, read until two reads in a row agree.
    pub fn read_settled(&mut self) -> Result<(NatMap, NatMap), SysError> {
        let mut last = self.read()?;
        for _ in 0..10 {
            let now = self.read()?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
        Err(SysError::Parse(
            "the maps kept changing while they were read",
        ))
    }
}
