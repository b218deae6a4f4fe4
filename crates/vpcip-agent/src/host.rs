//! The host agent's reconciler. On the host (its own namespace, or the one
//! it is told to work on), per L2 domain with a port here: a bridge
//! `br<vni>` with the domain's VXLAN device `vx<vni>` as a port, flooding
//! to the domain's other VTEPs; each VM port (the link the hypervisor made
//! for a NIC, named by `port_ifname`) joined to its domain's bridge.
//! Bridges and VXLAN devices of domains no longer here are removed; links it
//! did not make are left alone. Port guards (`vpcip_sys::spoof`): every
//! port sends only from its NIC's MAC, and, when its source/destination
//! check is on, only from its NIC's address and its VIPs; the host has no
//! IPv6 on tenant links and neither sends into them nor takes anything from
//! them. The infrastructure guard (`vpcip_sys::guard`) takes VXLAN only
//! from each segment's VTEPs.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use vpcip_dataplane::isolation::{host_guard, port_guards};
use vpcip_model::desired::HostState;
use vpcip_sys::SysError;
use vpcip_sys::guard::{GuardRole, ipv6_off};
use vpcip_sys::link::VXLAN_OVERHEAD;
use vpcip_sys::nft::NatTable;

use crate::gateway::{Summary, converge_vxlan, on, vxlan_ifname};

pub struct HostReconciler {
    node: PathBuf,
    underlay: Ipv4Addr,
}

/// The name of an L2 domain's bridge.
pub fn bridge_ifname(vni: u32) -> String {
    format!("br{vni}")
}

/// Whether `name` is `<prefix><digits>`: a name vpcip gives.
fn ours(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

impl HostReconciler {
    pub fn new(node: &Path, underlay: Ipv4Addr) -> Self {
        HostReconciler {
            node: node.to_path_buf(),
            underlay,
        }
    }

    pub fn reconcile(&mut self, state: &HostState) -> Result<Summary, String> {
        let underlay = self.underlay;
        on(&self.node, |net| {
            let mut s = Summary::default();
            // The guards first: a port is guarded before it is plugged.
            let want = port_guards(state, vxlan_ifname);
            let mut nft = NatTable::open()?;
            s.changed += usize::from(nft.ensure_spoof(&want)?);
            s.changed += nft.apply_spoof(&want)?;
            let guard = host_guard(state);
            s.changed += usize::from(nft.ensure_guard(GuardRole::Host, &guard)?);
            s.changed += nft.apply_guard(GuardRole::Host, &guard)?;
            let links = net.links()?;
            let mut mtu = 1500;
            for l in &links {
                if net.addrs(l.index)?.iter().any(|a| a.addr() == underlay) {
                    mtu = l.mtu.unwrap_or(1500);
                }
            }
            let vx_mtu = mtu - VXLAN_OVERHEAD;
            let find = |name: &str| links.iter().find(|l| l.name == name);
            let mut made = false;
            for d in &state.domains {
                let (br, vx) = (bridge_ifname(d.vni), vxlan_ifname(d.vni));
                if find(&br).is_none() {
                    net.add_bridge(&br)?;
                    made = true;
                    s.changed += 1;
                }
                if find(&vx).is_none() {
                    net.add_vxlan(&vx, d.vni, underlay, vx_mtu)?;
                    made = true;
                    s.changed += 1;
                }
            }
            let links = if made { net.links()? } else { links };
            let find = |name: &str| links.iter().find(|l| l.name == name);
            for d in &state.domains {
                let (Some(br), Some(vx)) =
                    (find(&bridge_ifname(d.vni)), find(&vxlan_ifname(d.vni)))
                else {
                    return Err(SysError::Parse("a new bridge or vxlan device is missing"));
                };
                if vx.master != Some(br.index) {
                    net.set_master(vx.index, br.index)?;
                    s.changed += 1;
                }
                s.changed += converge_vxlan(net, vx.index, &[], &d.vteps)?;
                for l in [br, vx] {
                    s.changed += usize::from(ipv6_off(&l.name)?);
                    if !l.up {
                        net.set_up(l.index)?;
                        s.changed += 1;
                    }
                }
            }
            for p in &state.ports {
                let Some(l) = find(&p.ifname) else {
                    // The hypervisor has not made the VM's link yet.
                    s.pending = true;
                    continue;
                };
                let Some(br) = find(&bridge_ifname(p.vni)) else {
                    continue;
                };
                // No IPv6 of the host's on the port before it joins the
                // segment: an enslaved port still sends its own (router
                // solicitations, MLD) past the bridge's hooks.
                s.changed += usize::from(ipv6_off(&l.name)?);
                if l.master != Some(br.index) {
                    net.set_master(l.index, br.index)?;
                    s.changed += 1;
                }
                if l.mtu.is_some_and(|m| m > vx_mtu) {
                    net.set_mtu(l.index, vx_mtu)?;
                }
                if !l.up {
                    net.set_up(l.index)?;
                    s.changed += 1;
                }
            }
            // Domains no longer here.
            let want: BTreeSet<u32> = state.domains.iter().map(|d| d.vni).collect();
            for l in &links {
                let vni = l
                    .name
                    .get(2..)
                    .and_then(|d| d.parse::<u32>().ok())
                    .filter(|_| ours(&l.name, "br") || ours(&l.name, "vx"));
                let kind_ok = matches!(l.kind.as_deref(), Some("bridge" | "vxlan"));
                if let Some(vni) = vni
                    && kind_ok
                    && !want.contains(&vni)
                {
                    net.del_link(l.index)?;
                    s.changed += 1;
                }
            }
            Ok(s)
        })
    }
}
