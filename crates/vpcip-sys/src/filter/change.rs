//! Making the filter and changing it: the messages that turn what the
//! tables hold into what is wanted.

use std::collections::{BTreeMap, BTreeSet};

use netlink_packet_core::NLM_F_CREATE;
use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, NfTablesMessage, SetElementAttribute,
};
use vpcip_dataplane::filter::{FilterSeen, FilterWant, Way, parse_chain_name};

use super::elements::{
    delete_set, elements_msg, group_set, ifname_key, jump, mark_key, port_mac_key, rule_element,
};
use super::tables::{bridge_body, ip_body, port_chain};
use super::*;
use crate::SysError;
use crate::nft::NatTable;

impl NatTable {
    /// Makes the filter's tables anew (an older shape goes), holding
    /// `want`.
    pub fn make_filter(&mut self, want: &FilterWant) -> Result<(), SysError> {
        let mut msgs = ip_body();
        msgs.extend(self.filter_changes(&FilterSeen::default(), want, 7));
        self.transact_in(NetfilterProtoFamily::IPv4, msgs, &[], &[], NLM_F_CREATE)?;
        let mut msgs = bridge_body();
        msgs.extend(mark_changes(&BTreeMap::new(), &want.marks));
        self.transact_in(NetfilterProtoFamily::Bridge, msgs, &[], &[], NLM_F_CREATE)
    }

    /// Turns the filter from `have` into `want`: one transaction for the
    /// `ip` table (sets, chains and maps together, so that no packet sees
    /// a port half changed), then one for the ports' numbers.
    pub fn change_filter(&mut self, have: &FilterSeen, want: &FilterWant) -> Result<(), SysError> {
        let msgs = self.filter_changes(have, want, 1);
        if !msgs.is_empty() {
            self.transact_in(NetfilterProtoFamily::IPv4, msgs, &[], &[], NLM_F_CREATE)?;
        }
        let marks = mark_changes(&have.marks, &want.marks);
        if !marks.is_empty() {
            self.transact_in(NetfilterProtoFamily::Bridge, marks, &[], &[], NLM_F_CREATE)?;
        }
        Ok(())
    }

    fn filter_changes(
        &mut self,
        have: &FilterSeen,
        want: &FilterWant,
        first_id: u32,
    ) -> Vec<NfTablesMessage> {
        let mut msgs = Vec::new();
        let mut next_id = first_id.max(7);
        let mut set_ids = BTreeMap::new();
        // Group sets: new ones made, elements of the others changed.
        for (name, elements) in &want.sets {
            let old = have.sets.get(name);
            if old.is_none() {
                set_ids.insert(name.clone(), next_id);
                msgs.push(group_set(name, next_id));
                next_id += 1;
            }
            let empty = BTreeSet::new();
            let old = old.unwrap_or(&empty);
            let gone: Vec<_> = old.difference(elements).map(rule_element).collect();
            let new: Vec<_> = elements.difference(old).map(rule_element).collect();
            if !gone.is_empty() {
                msgs.extend(elements_msg(SG_TABLE, name, false, gone));
            }
            if !new.is_empty() {
                msgs.extend(elements_msg(SG_TABLE, name, true, new));
            }
        }
        // Zones.
        let zone_elem = |bridge: &str, zone: Option<u16>| {
            let mut e = vec![SetElementAttribute::Key(DataAttribute::Value(ifname_key(
                bridge,
            )))];
            if let Some(z) = zone {
                e.push(SetElementAttribute::Data(DataAttribute::Value(
                    z.to_ne_bytes().to_vec(),
                )));
            }
            e
        };
        let zones_gone: Vec<_> = have
            .zones
            .iter()
            .filter(|(b, z)| want.zones.get(*b) != Some(z))
            .map(|(b, _)| zone_elem(b, None))
            .collect();
        let zones_new: Vec<_> = want
            .zones
            .iter()
            .filter(|(b, z)| have.zones.get(*b) != Some(z))
            .map(|(b, z)| zone_elem(b, Some(*z)))
            .collect();
        if !zones_gone.is_empty() {
            msgs.extend(elements_msg(SG_TABLE, ZONE, false, zones_gone));
        }
        if !zones_new.is_empty() {
            msgs.extend(elements_msg(SG_TABLE, ZONE, true, zones_new));
        }
        // Drop counters: one per port mark, in both directions.
        let counted: BTreeSet<u32> = want.marks.values().copied().collect();
        let drop_gone: Vec<_> = have
            .counted
            .difference(&counted)
            .map(|m| vec![mark_key(*m)])
            .collect();
        let drop_new: Vec<_> = counted
            .difference(&have.counted)
            .map(|m| vec![mark_key(*m)])
            .collect();
        for set in [DROPS_IN, DROPS_OUT] {
            if !drop_new.is_empty() {
                msgs.extend(elements_msg(SG_TABLE, set, true, drop_new.clone()));
            }
        }
        // Port chains: the map elements of chains that go are removed, new
        // chains made and pointed at, then the old chains deleted.
        let old_chains: BTreeMap<(Way, u32), &String> = have
            .chains
            .iter()
            .filter_map(|n| parse_chain_name(n).map(|k| (k, n)))
            .collect();
        // (Multicast finds a port's ingress chain by its number, unicast
        // both chains by its bridge and MAC.)
        for ((way, mark), name) in &old_chains {
            if *way == Way::Ingress && !want.chains.contains_key(*name) {
                msgs.extend(elements_msg(
                    SG_TABLE,
                    MC_INGRESS,
                    false,
                    vec![vec![mark_key(*mark)]],
                ));
            }
        }
        let map_of = |way: Way| match way {
            Way::Ingress => INGRESS,
            Way::Egress => EGRESS,
        };
        for ((way, bridge, mac), chain) in &have.by_mac {
            let key = (*way, bridge.clone(), *mac);
            if want.by_mac.get(&key) != Some(chain) {
                msgs.extend(elements_msg(
                    SG_TABLE,
                    map_of(*way),
                    false,
                    vec![vec![port_mac_key(bridge, *mac)]],
                ));
            }
        }
        for (name, spec) in &want.chains {
            if have.chains.contains(name) {
                continue;
            }
            msgs.extend(port_chain(name, spec, &set_ids));
            if spec.way == Way::Ingress {
                msgs.extend(elements_msg(
                    SG_TABLE,
                    MC_INGRESS,
                    true,
                    vec![vec![mark_key(spec.mark), jump(name)]],
                ));
            }
        }
        for ((way, bridge, mac), chain) in &want.by_mac {
            let key = (*way, bridge.clone(), *mac);
            if have.by_mac.get(&key) != Some(chain) {
                msgs.extend(elements_msg(
                    SG_TABLE,
                    map_of(*way),
                    true,
                    vec![vec![port_mac_key(bridge, *mac), jump(chain)]],
                ));
            }
        }
        for name in old_chains.values() {
            if !want.chains.contains_key(*name) {
                msgs.push(NfTablesMessage::DeleteChain(ChainMessage {
                    attributes: vec![
                        ChainAttribute::Table(SG_TABLE.into()),
                        ChainAttribute::Name((*name).clone()),
                    ],
                }));
            }
        }
        for set in [DROPS_IN, DROPS_OUT] {
            if !drop_gone.is_empty() {
                msgs.extend(elements_msg(SG_TABLE, set, false, drop_gone.clone()));
            }
        }
        // Sets no chain uses any more.
        for name in have.sets.keys() {
            if !want.sets.contains_key(name) {
                msgs.push(delete_set(SG_TABLE, name));
            }
        }
        msgs
    }
}

fn mark_changes(
    have: &BTreeMap<String, u32>,
    want: &BTreeMap<String, u32>,
) -> Vec<NfTablesMessage> {
    let elem = |port: &str, mark: Option<u32>| {
        let mut e = vec![SetElementAttribute::Key(DataAttribute::Value(ifname_key(
            port,
        )))];
        if let Some(m) = mark {
            e.push(SetElementAttribute::Data(DataAttribute::Value(
                m.to_ne_bytes().to_vec(),
            )));
        }
        e
    };
    let gone: Vec<_> = have
        .iter()
        .filter(|(p, m)| want.get(*p) != Some(m))
        .map(|(p, _)| elem(p, None))
        .collect();
    let new: Vec<_> = want
        .iter()
        .filter(|(p, m)| have.get(*p) != Some(m))
        .map(|(p, m)| elem(p, Some(*m)))
        .collect();
    let mut msgs = Vec::new();
    if !gone.is_empty() {
        msgs.extend(elements_msg(SGMARK_TABLE, PORT_PRIO, false, gone));
    }
    if !new.is_empty() {
        msgs.extend(elements_msg(SGMARK_TABLE, PORT_PRIO, true, new));
    }
    msgs
}
