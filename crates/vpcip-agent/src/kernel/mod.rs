//! What sits between an agent's plan and the kernel: observing a node and
//! applying typed changes to it. [`host::SysHost`] and
//! [`gateway::SysGateway`] implement it over netlink (`vpcip-sys`) in the
//! node's namespaces; tests implement it with fake kernels.

pub mod gateway;
pub mod host;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use vpcip_dataplane::gateway::{GatewayChange, GatewayObserved};
use vpcip_dataplane::host::{HostChange, HostObserved};
use vpcip_dataplane::links::{LinkChange, LinkState, Links};
use vpcip_sys::SysError;
use vpcip_sys::guard::{ipv6_enabled, ipv6_off};
use vpcip_sys::link::{Link, Net, flood_of, pinned_of};
use vpcip_sys::netns::in_netns;

/// Why a pass could not observe or change the kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{op} {object}: {source}")]
    Sys {
        /// What was being done: "observe", "add bridge", …
        op: &'static str,
        /// Which object: a link's name, a table, the namespace.
        object: String,
        #[source]
        source: SysError,
    },
    #[error("{op} {object}: no such link")]
    NoLink { op: &'static str, object: String },
}

impl KernelError {
    pub(crate) fn sys(
        op: &'static str,
        object: impl Into<String>,
    ) -> impl FnOnce(SysError) -> KernelError {
        let object = object.into();
        move |source| KernelError::Sys { op, object, source }
    }
}

/// A host node as its agent sees it.
pub trait HostKernel {
    /// What the node holds now; `underlay` names the link whose MTU the
    /// overlay is sized from.
    fn observe(&mut self, underlay: Ipv4Addr) -> Result<HostObserved, KernelError>;
    /// Makes the changes, in order; stops at the first that fails.
    fn apply(&mut self, changes: &[HostChange]) -> Result<(), KernelError>;
}

/// A gateway node and its routers' namespaces as its agent sees them.
pub trait GatewayKernel {
    /// What the node and every router namespace hold now.
    fn observe(&mut self, underlay: Ipv4Addr) -> Result<GatewayObserved, KernelError>;
    /// Makes the changes, in order; stops at the first that fails.
    fn apply(&mut self, changes: &[GatewayChange]) -> Result<(), KernelError>;
    /// Called after each pass (the real kernel keeps what it saw on disk).
    fn pass_done(&mut self) {}
}

/// Runs `f` in the namespace at `path`.
pub(crate) fn in_ns<T: Send>(
    path: &Path,
    f: impl FnOnce() -> Result<T, KernelError> + Send,
) -> Result<T, KernelError> {
    in_netns(path, f).map_err(KernelError::sys("enter", path.display().to_string()))?
}

/// The inode of the current thread's network namespace.
pub(crate) fn netns_inode() -> Result<u64, SysError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .map_err(|e| SysError::Io("stat network namespace", e))
}

/// The links of a namespace as observed.
pub(crate) struct NsLinks {
    pub links: Links,
    /// The MTU of the link holding the underlay address (1500 when none
    /// does).
    pub underlay_mtu: u32,
    /// Link names by index.
    pub names: BTreeMap<u32, String>,
}

/// The links of the current namespace, with their addresses, flood lists
/// (VXLAN devices) and IPv6 state.
pub(crate) fn observe_links(net: &Net, underlay: Ipv4Addr) -> Result<NsLinks, KernelError> {
    let links = net.links().map_err(KernelError::sys("list", "links"))?;
    let addrs = net
        .all_addrs()
        .map_err(KernelError::sys("list", "addresses"))?;
    let names: BTreeMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
    let mut out = Links::new();
    let mut underlay_mtu = 1500;
    // One dump of the FDB for every VXLAN device's flood list and every
    // bridge port's pinned MACs.
    let fdb = net.fdb().map_err(KernelError::sys("list", "fdb"))?;
    for l in &links {
        let a = addrs.get(&l.index).cloned().unwrap_or_default();
        if a.iter().any(|n| n.addr() == underlay) {
            underlay_mtu = l.mtu.unwrap_or(1500);
        }
        let flood = if l.kind.as_deref() == Some("vxlan") {
            flood_of(&fdb, l.index).into_iter().collect()
        } else {
            Default::default()
        };
        out.insert(
            l.name.clone(),
            LinkState {
                kind: l.kind.clone(),
                master: l.master.and_then(|m| names.get(&m)).cloned(),
                up: l.up,
                mtu: l.mtu,
                mac: l.mac,
                ipv6: ipv6_enabled(&l.name).map_err(KernelError::sys("read IPv6 of", &l.name))?,
                addrs: a.into_iter().collect(),
                flood,
                unicast_flood: l.unicast_flood,
                pinned: pinned_of(&fdb, l.index).into_iter().collect(),
            },
        );
    }
    Ok(NsLinks {
        links: out,
        underlay_mtu,
        names,
    })
}

/// Applies one link change in the current namespace; `links` is what the
/// namespace held before it (read again after a link is made).
pub(crate) fn apply_link(
    net: &Net,
    links: &mut Vec<Link>,
    c: &LinkChange,
) -> Result<(), KernelError> {
    let name = c.link();
    let op = link_op(c);
    let index = |links: &[Link], n: &str| {
        links
            .iter()
            .find(|l| l.name == n)
            .map(|l| l.index)
            .ok_or_else(|| KernelError::NoLink {
                op,
                object: n.to_string(),
            })
    };
    let err = KernelError::sys(op, name);
    match c {
        LinkChange::AddBridge { .. } => net.add_bridge(name).map_err(err)?,
        LinkChange::AddVxlan {
            vni, local, mtu, ..
        } => {
            net.add_vxlan(name, *vni, *local, *mtu).map_err(err)?;
        }
        LinkChange::Ipv6Off { .. } => {
            // A kernel without IPv6 has nothing to turn off.
            let _ = ipv6_off(name).map_err(err)?;
        }
        LinkChange::DelLink { .. } => net.del_link(index(links, name)?).map_err(err)?,
        LinkChange::SetMaster { master, .. } => {
            let (i, m) = (index(links, name)?, index(links, master)?);
            net.set_master(i, m).map_err(err)?;
        }
        LinkChange::SetMtu { mtu, .. } => net.set_mtu(index(links, name)?, *mtu).map_err(err)?,
        LinkChange::SetMac { mac, .. } => net.set_mac(index(links, name)?, *mac).map_err(err)?,
        LinkChange::SetUp { .. } => net.set_up(index(links, name)?).map_err(err)?,
        LinkChange::AddAddr { addr, .. } => {
            net.add_addr(index(links, name)?, *addr).map_err(err)?
        }
        LinkChange::DelAddr { addr, .. } => {
            net.del_addr(index(links, name)?, *addr).map_err(err)?
        }
        LinkChange::FloodAdd { vtep, .. } => {
            net.flood_add(index(links, name)?, *vtep).map_err(err)?;
        }
        LinkChange::FloodDel { vtep, .. } => {
            net.flood_del(index(links, name)?, *vtep).map_err(err)?;
        }
        LinkChange::PinMac { mac, .. } => {
            let i = index(links, name)?;
            net.unicast_flood_off(i)
                .map_err(KernelError::sys(op, name))?;
            if *mac != [0; 6] {
                net.pin_mac(i, *mac).map_err(err)?;
            }
        }
        LinkChange::UnpinMac { mac, .. } => {
            net.unpin_mac(index(links, name)?, *mac).map_err(err)?;
        }
    }
    if matches!(
        c,
        LinkChange::AddBridge { .. } | LinkChange::AddVxlan { .. }
    ) {
        *links = net.links().map_err(KernelError::sys("list", "links"))?;
    }
    Ok(())
}

fn link_op(c: &LinkChange) -> &'static str {
    match c {
        LinkChange::AddBridge { .. } => "add bridge",
        LinkChange::AddVxlan { .. } => "add VXLAN device",
        LinkChange::SetMaster { .. } => "set master of",
        LinkChange::SetMtu { .. } => "set MTU of",
        LinkChange::SetMac { .. } => "set the MAC of",
        LinkChange::Ipv6Off { .. } => "turn IPv6 off on",
        LinkChange::SetUp { .. } => "bring up",
        LinkChange::AddAddr { .. } => "add address to",
        LinkChange::DelAddr { .. } => "delete address of",
        LinkChange::FloodAdd { .. } => "add flood entry to",
        LinkChange::FloodDel { .. } => "delete flood entry of",
        LinkChange::PinMac { .. } => "pin the MAC of",
        LinkChange::UnpinMac { .. } => "unpin a MAC from",
        LinkChange::DelLink { .. } => "delete link",
    }
}
