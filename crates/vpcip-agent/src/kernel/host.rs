//! The host kernel over netlink, in the host's namespace.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use vpcip_dataplane::fastpath::FastPathSeen;
use vpcip_dataplane::filter::FilterSeen;
use vpcip_dataplane::host::{HostChange, HostObserved};
use vpcip_dataplane::isolation::{InfraGuard, PortGuards};
use vpcip_sys::fastpath::{FastPath, TakenCount};
use vpcip_sys::guard::GuardRole;
use vpcip_sys::link::Net;
use vpcip_sys::nft::NatTable;

use super::{HostKernel, KernelError, NsLinks, apply_link, in_ns, netns_inode, observe_links};

/// The guards as last observed or written, with the nftables generation
/// that was current then: while nobody changed nftables in the namespace,
/// they are not read again (a dump of thousands of elements per pass).
struct SeenGuards {
    generation: u32,
    netns: u64,
    ports: Option<PortGuards>,
    infra: Option<InfraGuard>,
    filter: Option<FilterSeen>,
}

/// The established-flow fast path of this agent.
enum Fast {
    /// Loaded by the first change that wants it.
    NotLoaded,
    /// The kernel refused it (said once in the log): the filter alone.
    Unavailable,
    Loaded(Box<FastPath>),
}

/// The host kernel over netlink, in the node's network namespace.
pub struct SysHost {
    node: PathBuf,
    seen: Option<SeenGuards>,
    fast: Fast,
    taken: TakenCount,
}

impl SysHost {
    pub fn new(node: &Path) -> Self {
        SysHost {
            node: node.to_path_buf(),
            seen: None,
            fast: Fast::NotLoaded,
            taken: TakenCount::default(),
        }
    }

    /// The fast path's count of packets taken around the bridge, for
    /// another task to read (None until it is loaded).
    pub fn fastpath_taken(&self) -> TakenCount {
        self.taken.clone()
    }
}

impl HostKernel for SysHost {
    fn observe(&mut self, underlay: Ipv4Addr) -> Result<HostObserved, KernelError> {
        let seen = self.seen.take();
        let fast = &mut self.fast;
        let taken = &self.taken;
        let (observed, now) = in_ns(&self.node, move || {
            let net = Net::open().map_err(KernelError::sys("open", "rtnetlink"))?;
            let NsLinks {
                links,
                underlay_mtu,
                names,
            } = observe_links(&net, underlay)?;
            // A new agent takes over the fast path an earlier one left, when
            // it is the same program (found on a tunnel, its maps read).
            if matches!(fast, Fast::NotLoaded) {
                let tunnels: Vec<u32> = names
                    .iter()
                    .filter(|(_, n)| {
                        links
                            .get(*n)
                            .is_some_and(|l| l.kind.as_deref() == Some("vxlan"))
                    })
                    .map(|(i, _)| *i)
                    .collect();
                match FastPath::adopt(&net, &tunnels, &names) {
                    Ok(Some(f)) => {
                        f.share_taken(taken)
                            .map_err(KernelError::sys("share", "the fast path's count"))?;
                        *fast = Fast::Loaded(Box::new(f));
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "no fast path taken over"),
                }
            }
            let fastpath = match fast {
                Fast::NotLoaded => FastPathSeen::Missing,
                Fast::Unavailable => FastPathSeen::Unavailable,
                Fast::Loaded(f) => FastPathSeen::Have(f.seen(&names)),
            };
            let mut nft = NatTable::open().map_err(KernelError::sys("open", "nftables"))?;
            let generation = nft
                .generation()
                .map_err(KernelError::sys("read", "nftables generation"))?;
            let netns = netns_inode().map_err(KernelError::sys("stat", "namespace"))?;
            let (ports, infra, filter) = match seen {
                Some(s) if s.generation == generation && s.netns == netns => {
                    (s.ports, s.infra, s.filter)
                }
                _ => (
                    nft.read_spoof()
                        .map_err(KernelError::sys("read", "bridge vpcip_spoof"))?,
                    nft.read_guard(GuardRole::Host)
                        .map_err(KernelError::sys("read", "ip vpcip_guard"))?,
                    nft.read_filter()
                        .map_err(KernelError::sys("read", "ip vpcip_sg"))?,
                ),
            };
            let observed = HostObserved {
                links,
                underlay_mtu,
                port_guards: ports.clone(),
                infra_guard: infra.clone(),
                filter: filter.clone(),
                fastpath,
            };
            let seen = SeenGuards {
                generation,
                netns,
                ports,
                infra,
                filter,
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
        let fast = &mut self.fast;
        let taken = &self.taken;
        let now = in_ns(&self.node, move || {
            let net = Net::open().map_err(KernelError::sys("open", "rtnetlink"))?;
            let mut nft = NatTable::open().map_err(KernelError::sys("open", "nftables"))?;
            let mut links = net.links().map_err(KernelError::sys("list", "links"))?;
            let mut seen = seen;
            let spoof = KernelError::sys;
            let done = (|| -> Result<(), KernelError> {
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
                        HostChange::MakeFilter(want) => {
                            bridge_netfilter_on()?;
                            nft.make_filter(want)
                                .map_err(spoof("make", "ip vpcip_sg"))?;
                            remember(&mut seen, |s| s.filter = Some(want.seen()));
                        }
                        HostChange::Filter { have, want } => {
                            bridge_netfilter_on()?;
                            nft.change_filter(have, want)
                                .map_err(spoof("change", "ip vpcip_sg"))?;
                            remember(&mut seen, |s| s.filter = Some(want.seen()));
                        }
                        HostChange::CutFlows(ports) => {
                            let gone = vpcip_sys::conntrack::forget_flows(|f| {
                                ports.iter().any(|p| p.refuses(f))
                            })
                            .map_err(spoof("forget", "connections no rule allows"))?;
                            if gone.deleted > 0 {
                                tracing::info!(
                                    deleted = gone.deleted,
                                    "forgot connections the security groups no longer allow"
                                );
                            }
                        }
                        HostChange::Link(l) => apply_link(&net, &mut links, l)?,
                        // (`links` is read again after each link made)
                        HostChange::FastPath(want) => {
                            apply_fastpath(&net, fast, taken, want, &links)?;
                        }
                    }
                }
                Ok(())
            })();
            // A pass that fails part-way may have narrowed the guards or
            // the filter without the fast path following (its change comes
            // last): it comes off every link, and the next pass loads it
            // anew.
            if let Err(e) = done {
                if let Fast::Loaded(f) = fast
                    && let Err(d) = f.detach_all(&net)
                {
                    tracing::warn!(error = %d, "taking the fast path off its links");
                }
                *fast = Fast::NotLoaded;
                return Err(e);
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

/// Loads the fast path when it is not yet and makes it hold `want` over
/// the namespace's `links`. A kernel that cannot load it (no BPF, BTF or
/// conntrack kfuncs) is said so once in the log and left to the filter
/// alone: the fast path only ever makes packets cheaper. One that fails
/// to take a change has the program taken off every link (what it holds
/// may be stale) and loaded anew by the next pass.
fn apply_fastpath(
    net: &Net,
    fast: &mut Fast,
    taken: &TakenCount,
    want: &vpcip_dataplane::fastpath::FastPathWant,
    links: &[vpcip_sys::link::Link],
) -> Result<(), KernelError> {
    if matches!(fast, Fast::NotLoaded) {
        *fast = match FastPath::load().and_then(|f| f.share_taken(taken).map(|()| f)) {
            Ok(f) => Fast::Loaded(Box::new(f)),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "the established-flow fast path cannot load here (BPF, BTF, conntrack kfuncs?): the security groups' filter judges every packet"
                );
                Fast::Unavailable
            }
        };
    }
    if let Fast::Loaded(f) = fast {
        let index = links.iter().map(|l| (l.name.clone(), l.index)).collect();
        if let Err(e) = f.apply(net, want, &index) {
            let _ = f.detach_all(net);
            *fast = Fast::NotLoaded;
            return Err(KernelError::sys(
                "program",
                "the established-flow fast path",
            )(e));
        }
    }
    Ok(())
}

/// Bridged IPv4 through the `ip` hooks (br_netfilter), in the current
/// namespace: without it the security groups see nothing.
fn bridge_netfilter_on() -> Result<(), KernelError> {
    const KEY: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    match std::fs::read_to_string(KEY) {
        Ok(v) if v.trim() == "1" => Ok(()),
        Ok(_) => std::fs::write(KEY, "1").map_err(|e| KernelError::Sys {
            op: "write",
            object: KEY.into(),
            source: vpcip_sys::SysError::Io("write sysctl", e),
        }),
        Err(e) => Err(KernelError::Sys {
            op: "read",
            object: format!("{KEY} (is the br_netfilter module loaded? `modprobe br_netfilter`)"),
            source: vpcip_sys::SysError::Io("read sysctl", e),
        }),
    }
}

/// Records a write of ours in what was seen, when something was.
fn remember(seen: &mut Option<SeenGuards>, f: impl FnOnce(&mut SeenGuards)) {
    if let Some(s) = seen.as_mut() {
        f(s);
    }
}

/// Packets each VM port's security groups dropped, by port name, in the
/// node's namespace.
pub fn read_port_drops(
    node: &Path,
) -> Result<std::collections::BTreeMap<String, vpcip_sys::filter::Drops>, KernelError> {
    in_ns(node, || {
        let mut nft = NatTable::open().map_err(KernelError::sys("open", "nftables"))?;
        nft.read_port_drops()
            .map_err(KernelError::sys("read", "ip vpcip_sg drop counters"))
    })
}
