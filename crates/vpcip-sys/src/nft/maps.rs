//! Maps from addresses to 32-bit values, in any `ip` table.

use super::*;

impl NatTable {
    /// A map from addresses to 32-bit values (a mark, a class id) in an
    /// `ip` table, read whole.
    pub fn read_u32_map(
        &mut self,
        table: &str,
        map: &str,
    ) -> Result<BTreeMap<Ipv4Addr, u32>, SysError> {
        for _ in 0..10 {
            let mut out = BTreeMap::new();
            let done = self.dump_set(NetfilterProtoFamily::IPv4, table, map, |k, v, _| {
                let k = <[u8; 4]>::try_from(k).ok().map(Ipv4Addr::from);
                let v = v
                    .and_then(|v| <[u8; 4]>::try_from(v).ok())
                    .map(u32::from_ne_bytes);
                if let (Some(k), Some(v)) = (k, v) {
                    out.insert(k, v);
                }
            })?;
            if done {
                return Ok(out);
            }
        }
        Err(SysError::Parse("the map kept changing while it was read"))
    }

    /// Makes such a map `want`, in one transaction; returns the number of
    /// elements changed.
    pub fn apply_u32_map(
        &mut self,
        table: &str,
        map: &str,
        have: &BTreeMap<Ipv4Addr, u32>,
        want: &BTreeMap<Ipv4Addr, u32>,
    ) -> Result<usize, SysError> {
        // The register holds the value in host byte order.
        let data = |v: u32| Ipv4Addr::from(v.to_ne_bytes());
        let remove: Vec<(Ipv4Addr, Ipv4Addr)> = have
            .iter()
            .filter(|(k, v)| want.get(k) != Some(v))
            .map(|(k, v)| (*k, data(*v)))
            .collect();
        let add: Vec<(Ipv4Addr, Ipv4Addr)> = want
            .iter()
            .filter(|(k, v)| have.get(k) != Some(v))
            .map(|(k, v)| (*k, data(*v)))
            .collect();
        if add.is_empty() && remove.is_empty() {
            return Ok(0);
        }
        let change = |add, pairs| ElementChange {
            table,
            map,
            add,
            pairs,
        };
        self.transact_in(
            NetfilterProtoFamily::IPv4,
            vec![],
            &[change(false, &remove), change(true, &add)],
            &[],
            NLM_F_CREATE,
        )?;
        Ok(add.len() + remove.len())
    }
}
