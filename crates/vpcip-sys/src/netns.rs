//! Network namespaces: a netlink socket belongs to the namespace it was
//! opened in, so an agent works on a node's namespace by opening its sockets
//! there, on a short-lived thread, without moving its own threads.

use std::os::fd::AsFd;
use std::path::Path;

use nix::sched::{CloneFlags, setns};

use crate::SysError;

/// Runs `f` on a thread that has entered the network namespace at `path`
/// (`/run/netns/NAME` or `/proc/PID/ns/net`) and returns its result.
pub fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, SysError> {
    let ns = std::fs::File::open(path).map_err(SysError::io("open network namespace"))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| SysError::Io("setns", std::io::Error::from(e)))?;
            Ok(f())
        })
        .join()
        .unwrap_or(Err(SysError::Parse("namespace thread panicked")))
    })
}

/// The path of a named namespace made by `ip netns add NAME`.
pub fn named(name: &str) -> std::path::PathBuf {
    Path::new("/run/netns").join(name)
}
