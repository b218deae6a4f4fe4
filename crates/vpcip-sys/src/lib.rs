//! vpcip's kernel interface: nftables, links, addresses, routes and FDB
//! entries over netlink, and network namespaces.
//! Agents talk to the kernel only through here; no `ip`, `nft` or `tc`.

pub mod alg;
pub mod conntrack;
pub mod counters;
mod expr;
pub mod fastpath;
pub mod filter;
pub mod frames;
pub mod guard;
pub mod link;
pub mod link_events;
pub mod netns;
pub mod nft;
pub mod qos;
mod sets;
pub mod shaper;
pub mod spoof;
pub mod tcbpf;

#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("{0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
    #[error("{what} failed: {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel { what: &'static str, errno: i32 },
    #[error("cannot parse the kernel's answer: {0}")]
    Parse(&'static str),
}

impl SysError {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> SysError {
        move |e| SysError::Io(what, e)
    }

    /// The kernel's errno, when the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            SysError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}
