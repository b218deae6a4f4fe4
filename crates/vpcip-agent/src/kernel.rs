//! What sits between an agent's plan and the kernel: observing a node and
//! applying typed changes to it. `vpcip-sys` implements it over netlink in
//! the node's namespace; tests implement it with a fake kernel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use vpcip_dataplane::host::{HostChange, HostObserved};
use vpcip_dataplane::isolation::{InfraGuard, PortGuards};
use vpcip_dataplane::links::{LinkChange, LinkState, Links};
use vpcip_sys::SysError;
use vpcip_sys::guard::{GuardRole, ipv6_enabled, ipv6_off};
use vpcip_sys::link::{Link, Net};
use vpcip_sys::netns::in_netns;
use vpcip_sys::nft::NatTable;

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
    fn sys(op: &'static str, object: impl Into<String>) -> impl FnOnce(SysError) -> KernelError {
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

/// The guards as last observed or written, with the nftables generation
/// that was current then: while nobody changed nftables in the namespace,
/// they are not read again (a dump of thousands of elements per pass).
struct SeenGuards {
    generation: u32,
    netns: u64,
    ports: Option<PortGuards>,
    infra: Option<InfraGuard>,
}

/// The host kernel over netlink, in the node's network namespace.
pub struct SysHost {
    node: PathBuf,
    seen: Option<SeenGuards>,
}

impl SysHost {
    pub fn new(node: &Path) -> Self {
        SysHost {
            node: node.to_path_buf(),
            seen: None,
        }
    }

    fn in_node<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, KernelError> + Send,
    ) -> Result<T, KernelError> {
        in_netns(&self.node, f)
            .map_err(KernelError::sys("enter", self.node.display().to_string()))?
    }
}

/// The inode of the current thread's network namespace.
pub(crate) fn netns_inode() -> Result<u64, SysError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .map_err(|e| SysError::Io("stat network namespace", e))
}

/// The links of the current namespace, with their addresses, flood lists
/// (VXLAN devices) and IPv6 state; and the MTU of the link holding
/// `underlay` (1500 when none does).
fn observe_links(net: &Net, underlay: Ipv4Addr) -> Result<(Links, u32), KernelError> {
    let links = net.links().map_err(KernelError::sys("list", "links"))?;
    let addrs = net
        .all_addrs()
        .map_err(KernelError::sys("list", "addresses"))?;
    let names: BTreeMap<u32, &str> = links.iter().map(|l| (l.index, l.name.as_str())).collect();
    let mut out = Links::new();
    let mut underlay_mtu = 1500;
    for l in &links {
        let a = addrs.get(&l.index).cloned().unwrap_or_default();
        if a.iter().any(|n| n.addr() == underlay) {
            underlay_mtu = l.mtu.unwrap_or(1500);
        }
        let flood = if l.kind.as_deref() == Some("vxlan") {
            net.flood_list(l.index)
                .map_err(KernelError::sys("read flood list of", &l.name))?
                .into_iter()
                .collect()
        } else {
            Default::default()
        };
        out.insert(
            l.name.clone(),
            LinkState {
                kind: l.kind.clone(),
                master: l.master.and_then(|m| names.get(&m)).map(|n| n.to_string()),
                up: l.up,
                mtu: l.mtu,
                ipv6: ipv6_enabled(&l.name).map_err(KernelError::sys("read IPv6 of", &l.name))?,
                addrs: a.into_iter().collect(),
                flood,
            },
        );
    }
    Ok((out, underlay_mtu))
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
        LinkChange::Ipv6Off { .. } => "turn IPv6 off on",
        LinkChange::SetUp { .. } => "bring up",
        LinkChange::AddAddr { .. } => "add address to",
        LinkChange::DelAddr { .. } => "delete address of",
        LinkChange::FloodAdd { .. } => "add flood entry to",
        LinkChange::FloodDel { .. } => "delete flood entry of",
        LinkChange::DelLink { .. } => "delete link",
    }
}

impl HostKernel for SysHost {
    fn observe(&mut self, underlay: Ipv4Addr) -> Result<HostObserved, KernelError> {
        let seen = self.seen.take();
        let (observed, now) = self.in_node(move || {
            let net = Net::open().map_err(KernelError::sys("open", "rtnetlink"))?;
            let (links, underlay_mtu) = observe_links(&net, underlay)?;
            let mut nft = NatTable::open().map_err(KernelError::sys("open", "nftables"))?;
            let generation = nft
                .generation()
                .map_err(KernelError::sys("read", "nftables generation"))?;
            let netns = netns_inode().map_err(KernelError::sys("stat", "namespace"))?;
            let (ports, infra) = match seen {
                Some(s) if s.generation == generation && s.netns == netns => (s.ports, s.infra),
                _ => (
                    nft.read_spoof()
                        .map_err(KernelError::sys("read", "bridge vpcip_spoof"))?,
                    nft.read_guard(GuardRole::Host)
                        .map_err(KernelError::sys("read", "ip vpcip_guard"))?,
                ),
            };
            let observed = HostObserved {
                links,
                underlay_mtu,
                port_guards: ports.clone(),
                infra_guard: infra.clone(),
            };
            let seen = SeenGuards {
                generation,
                netns,
                ports,
                infra,
            };
            Ok((observed, seen))
        })?;
        self.seen = Some(now);
        Ok(observed)
    }

    fn apply(&mut self, changes: &[HostChange]) -> Result<(), KernelError> {
        if changes.is_empty() {
            return Ok(());
        }
        // What was seen of the guards is stale once they change.
        let seen = self.seen.take();
        let now = self.in_node(move || {
            let net = Net::open().map_err(KernelError::sys("open", "rtnetlink"))?;
            let mut nft = NatTable::open().map_err(KernelError::sys("open", "nftables"))?;
            let mut links = net.links().map_err(KernelError::sys("list", "links"))?;
            let mut seen = seen;
            let spoof = KernelError::sys;
            for c in changes {
                match c {
                    HostChange::MakePortGuards(want) => {
                        nft.ensure_spoof(want)
                            .map_err(spoof("make", "bridge vpcip_spoof"))?;
                        nft.apply_spoof(want)
                            .map_err(spoof("fill", "bridge vpcip_spoof"))?;
                        remember(&mut seen, |s| s.ports = Some(want.clone()));
                    }
                    HostChange::PortGuards { want, .. } => {
                        nft.apply_spoof(want)
                            .map_err(spoof("change", "bridge vpcip_spoof"))?;
                        remember(&mut seen, |s| s.ports = Some(want.clone()));
                    }
                    HostChange::MakeInfraGuard(want) => {
                        nft.ensure_guard(GuardRole::Host, want)
                            .map_err(spoof("make", "ip vpcip_guard"))?;
                        nft.apply_guard(GuardRole::Host, want)
                            .map_err(spoof("fill", "ip vpcip_guard"))?;
                        remember(&mut seen, |s| s.infra = Some(want.clone()));
                    }
                    HostChange::InfraGuard { want, .. } => {
                        nft.apply_guard(GuardRole::Host, want)
                            .map_err(spoof("change", "ip vpcip_guard"))?;
                        remember(&mut seen, |s| s.infra = Some(want.clone()));
                    }
                    HostChange::Link(l) => apply_link(&net, &mut links, l)?,
                }
            }
            // Our own writes moved the generation: what we wrote is what
            // is there.
            if let Some(s) = seen.as_mut() {
                s.generation = nft
                    .generation()
                    .map_err(KernelError::sys("read", "nftables generation"))?;
            }
            Ok(seen)
        })?;
        self.seen = now;
        Ok(())
    }
}

/// Records a write of ours in what was seen, when something was.
fn remember(seen: &mut Option<SeenGuards>, f: impl FnOnce(&mut SeenGuards)) {
    if let Some(s) = seen.as_mut() {
        f(s);
    }
}
