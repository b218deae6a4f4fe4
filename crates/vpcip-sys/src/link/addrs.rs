//! A link's IPv4 addresses.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;

use super::{Net, kernel};
use crate::SysError;

impl Net {
    /// The IPv4 addresses (with prefix) on a link.
    pub fn addrs(&self, index: u32) -> Result<Vec<Ipv4Net>, SysError> {
        let msgs: Vec<_> = self
            .rt
            .block_on(
                self.handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect::<Vec<_>>(),
            )
            .map_err(kernel("list addresses"))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(IpAddr::V4(ip)) => {
                        Ipv4Net::new(*ip, m.header.prefix_len).ok()
                    }
                    _ => None,
                })
            })
            .collect())
    }

    /// Every link's IPv4 addresses, by link index, in one dump.
    pub fn all_addrs(&self) -> Result<std::collections::BTreeMap<u32, Vec<Ipv4Net>>, SysError> {
        let msgs: Vec<_> = self
            .rt
            .block_on(
                self.handle
                    .address()
                    .get()
                    .execute()
                    .try_collect::<Vec<_>>(),
            )
            .map_err(kernel("list addresses"))?;
        let mut out: std::collections::BTreeMap<u32, Vec<Ipv4Net>> = Default::default();
        for m in &msgs {
            for a in &m.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = a
                    && let Ok(net) = Ipv4Net::new(*ip, m.header.prefix_len)
                {
                    out.entry(m.header.index).or_default().push(net);
                }
            }
        }
        Ok(out)
    }

    pub fn add_addr(&self, index: u32, addr: Ipv4Net) -> Result<(), SysError> {
        self.rt
            .block_on(
                self.handle
                    .address()
                    .add(index, IpAddr::V4(addr.addr()), addr.prefix_len())
                    .execute(),
            )
            .map_err(kernel("add address"))
    }

    pub fn del_addr(&self, index: u32, addr: Ipv4Net) -> Result<(), SysError> {
        let msgs: Vec<_> = self
            .rt
            .block_on(
                self.handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .set_address_filter(IpAddr::V4(addr.addr()))
                    .execute()
                    .try_collect::<Vec<_>>(),
            )
            .map_err(kernel("find address"))?;
        for m in msgs {
            if m.header.index == index && m.header.prefix_len == addr.prefix_len() {
                self.rt
                    .block_on(self.handle.address().del(m).execute())
                    .map_err(kernel("delete address"))?;
            }
        }
        Ok(())
    }
}
