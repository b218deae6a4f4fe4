//! Reading the filter back from the kernel: what its tables hold, and the
//! drop counters.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use netlink_packet_netfilter::NetfilterProtoFamily;
use vpcip_dataplane::filter::{FilterSeen, Way, parse_chain_name};
use vpcip_model::filter::FilterElement;

use super::elements::{element_of, ifname_of, port_mac_of};
use super::*;
use crate::SysError;
use crate::counters::counter_of;
use crate::nft::{NatTable, attrs};

impl NatTable {
    /// What the filter's tables hold; None when either is missing or of
    /// an older shape.
    pub fn read_filter(&mut self) -> Result<Option<FilterSeen>, SysError> {
        let ip = NetfilterProtoFamily::IPv4;
        let bridge = NetfilterProtoFamily::Bridge;
        if !self.has_set(ip, SG_TABLE, MC_INGRESS)?
            || !self.has_set(bridge, SGMARK_TABLE, PORT_PRIO)?
        {
            return Ok(None);
        }
        // A bridge table of an older layout (its chain `forward` or
        // `ports`, numbering every frame): made anew.
        if !self
            .chain_names(bridge, SGMARK_TABLE)?
            .iter()
            .any(|c| c == MULTICAST_CHAIN)
        {
            return Ok(None);
        }
        let mut seen = FilterSeen::default();
        let mut ok = self.dump_set(bridge, SGMARK_TABLE, PORT_PRIO, |k, v, _| {
            if let Some(v) = v.and_then(|v| <[u8; 4]>::try_from(v).ok()) {
                seen.marks.insert(ifname_of(k), u32::from_ne_bytes(v));
            }
        })?;
        for (map, way) in [(INGRESS, Way::Ingress), (EGRESS, Way::Egress)] {
            ok &= self.dump_set(ip, SG_TABLE, map, |k, _, raw| {
                if let (Some((bridge, mac)), Some(chain)) = (port_mac_of(k), jump_of(raw)) {
                    seen.by_mac.insert((way, bridge, mac), chain);
                }
            })?;
        }
        // (A zone map of an older shape held 32-bit values typed mark,
        // which `nft -f` refused: made anew.)
        let mut older = false;
        ok &= self.dump_set(ip, SG_TABLE, ZONE, |k, v, _| {
            match v.map(<[u8; 2]>::try_from) {
                Some(Ok(v)) => {
                    seen.zones.insert(ifname_of(k), u16::from_ne_bytes(v));
                }
                Some(Err(_)) => older = true,
                None => {}
            }
        })?;
        if older {
            return Ok(None);
        }
        ok &= self.dump_set(ip, SG_TABLE, DROPS_IN, |k, _, _| {
            if let Ok(m) = <[u8; 4]>::try_from(k) {
                seen.counted.insert(u32::from_ne_bytes(m));
            }
        })?;
        let chains = self.chain_names(ip, SG_TABLE)?;
        // The fixed part of an older layout (an empty `pre` chain, the raw
        // chain's two look-ups a packet): made anew.
        if chains.iter().any(|c| c == "pre") {
            return Ok(None);
        }
        seen.chains = chains
            .iter()
            .filter(|c| parse_chain_name(c).is_some())
            .cloned()
            .collect();
        for set in self.set_names(ip, SG_TABLE)? {
            if !(set.starts_with("in_") || set.starts_with("out_")) {
                continue;
            }
            let mut elements = BTreeSet::new();
            let mut foreign = false;
            ok &= self.dump_set(ip, SG_TABLE, &set, |k, _, raw| {
                let end = attrs(raw)
                    .find(|(t, _)| *t == NFTA_SET_ELEM_KEY_END)
                    .and_then(|(_, v)| attrs(v).find(|(t, _)| *t == NFTA_DATA_VALUE))
                    .map(|(_, v)| v.to_vec());
                match end.and_then(|end| element_of(k, &end)) {
                    Some(e) => {
                        elements.insert(e);
                    }
                    None => foreign = true,
                }
            })?;
            if foreign {
                // Something vpcip did not write: make the set again.
                elements.insert(FilterElement {
                    proto_min: 255,
                    proto_max: 0,
                    port_min: 0,
                    port_max: 0,
                    remote_min: Ipv4Addr::BROADCAST,
                    remote_max: Ipv4Addr::UNSPECIFIED,
                });
            }
            seen.sets.insert(set, elements);
        }
        if !ok {
            return Err(SysError::Parse("the filter changed while it was read"));
        }
        Ok(Some(seen))
    }

    /// Each VM port's dropped packets, by port name (none when the filter
    /// is not there).
    pub fn read_port_drops(&mut self) -> Result<BTreeMap<String, Drops>, SysError> {
        if !self.has_set(NetfilterProtoFamily::Bridge, SGMARK_TABLE, PORT_PRIO)? {
            return Ok(BTreeMap::new());
        }
        let mut marks = BTreeMap::new();
        self.dump_set(
            NetfilterProtoFamily::Bridge,
            SGMARK_TABLE,
            PORT_PRIO,
            |k, v, _| {
                if let Some(v) = v.and_then(|v| <[u8; 4]>::try_from(v).ok()) {
                    let m = u32::from_ne_bytes(v);
                    if m > 0 {
                        marks.insert(m, ifname_of(k));
                    }
                }
            },
        )?;
        let by_mark = self.read_filter_drops()?;
        Ok(marks
            .into_iter()
            .map(|(m, port)| (port, by_mark.get(&m).copied().unwrap_or_default()))
            .collect())
    }

    /// Each port's dropped packets, by mark.
    pub fn read_filter_drops(&mut self) -> Result<BTreeMap<u32, Drops>, SysError> {
        let mut out: BTreeMap<u32, Drops> = BTreeMap::new();
        for (set, ingress) in [(DROPS_IN, true), (DROPS_OUT, false)] {
            self.dump_set(NetfilterProtoFamily::IPv4, SG_TABLE, set, |k, _, raw| {
                let (Ok(m), Some((packets, _))) = (<[u8; 4]>::try_from(k), counter_of(raw)) else {
                    return;
                };
                let d = out.entry(u32::from_ne_bytes(m)).or_default();
                if ingress {
                    d.packets_in = packets;
                } else {
                    d.packets_out = packets;
                }
            })?;
        }
        Ok(out)
    }
}

/// The chain a verdict map's element jumps to (from the element's
/// attributes: `NFTA_SET_ELEM_DATA { NFTA_DATA_VERDICT { …,
/// NFTA_VERDICT_CHAIN } }`).
fn jump_of(element: &[u8]) -> Option<String> {
    const NFTA_SET_ELEM_DATA: u16 = 2;
    const NFTA_DATA_VERDICT: u16 = 2;
    const NFTA_VERDICT_CHAIN: u16 = 2;
    let (_, data) = attrs(element).find(|(t, _)| *t == NFTA_SET_ELEM_DATA)?;
    let (_, verdict) = attrs(data).find(|(t, _)| *t == NFTA_DATA_VERDICT)?;
    let (_, chain) = attrs(verdict).find(|(t, _)| *t == NFTA_VERDICT_CHAIN)?;
    let end = chain.iter().position(|b| *b == 0).unwrap_or(chain.len());
    Some(String::from_utf8_lossy(&chain[..end]).into_owned())
}
