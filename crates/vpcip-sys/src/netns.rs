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

/// Creates the named namespace `name` (as `ip netns add` does) unless it
/// exists, and returns its path.
pub fn create_named(name: &str) -> Result<std::path::PathBuf, SysError> {
    let path = named(name);
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all("/run/netns").map_err(SysError::io("create /run/netns"))?;
    std::fs::File::create(&path).map_err(SysError::io("create namespace file"))?;
    let target = path.clone();
    let made = std::thread::spawn(move || -> Result<(), SysError> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| SysError::Io("unshare", std::io::Error::from(e)))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| SysError::Io("bind-mount namespace", std::io::Error::from(e)))
    })
    .join()
    .unwrap_or(Err(SysError::Parse("namespace thread panicked")));
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Removes the named namespace `name` (its links go with it once nothing
/// else holds it).
pub fn delete_named(name: &str) -> Result<(), SysError> {
    let path = named(name);
    if !path.exists() {
        return Ok(());
    }
    let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
    std::fs::remove_file(&path).map_err(SysError::io("remove namespace file"))
}

/// The named namespaces whose names start with `prefix`.
pub fn list_named(prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    out.sort();
    out
}
