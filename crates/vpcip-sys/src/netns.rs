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
    // The errors name the namespace.
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let ns =
        std::fs::File::open(path).map_err(|e| SysError::Io("open network namespace", named(e)))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
                SysError::Io(
                    "enter the network namespace (is it one? `ip netns list`)",
                    named(e.into()),
                )
            })?;
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

/// Whether `path` is a network namespace (a file of the kernel's nsfs, as
/// a bind mount of one is), not an empty file left behind.
fn is_namespace(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// The inode of a process's mount namespace, when it can be read.
fn mount_ns(pid: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|m| m.ino())
}

/// A process's parent.
fn parent_of(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid …: the command may hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1).map(str::to_string)
}

/// The system's mount namespace when vpcip runs in another one: PID 1's,
/// or, where PID 1's cannot be read (a sandbox), the nearest ancestor's
/// that differs from vpcip's (where it was started from, e.g. the shell
/// that ran `ip netns exec`). None when vpcip's is the system's.
fn system_mounts() -> Option<std::path::PathBuf> {
    let ours = mount_ns("self")?;
    if let Some(init) = mount_ns("1") {
        return (init != ours).then(|| "/proc/1/ns/mnt".into());
    }
    let mut pid = parent_of("self")?;
    while pid != "0" {
        if let Some(ns) = mount_ns(&pid)
            && ns != ours
        {
            return Some(format!("/proc/{pid}/ns/mnt").into());
        }
        if pid == "1" {
            break;
        }
        pid = parent_of(&pid)?;
    }
    None
}

/// Runs `f` on a thread in the system's mount namespace ([`system_mounts`])
/// when vpcip runs in another one (`ip netns exec`, systemd's
/// PrivateMounts, a container's unshared mounts); None when it runs in the
/// system's.
fn in_system_mounts<T: Send>(
    f: impl FnOnce() -> Result<T, SysError> + Send,
) -> Result<Option<T>, SysError> {
    let Some(system) = system_mounts() else {
        return Ok(None);
    };
    std::thread::scope(|s| {
        s.spawn(move || {
            // A thread sharing its filesystem context cannot change mount
            // namespace.
            nix::sched::unshare(CloneFlags::CLONE_FS)
                .map_err(|e| SysError::Io("unshare the filesystem context", e.into()))?;
            let mnt = std::fs::File::open(&system)
                .map_err(SysError::io("open the system's mount namespace"))?;
            setns(mnt.as_fd(), CloneFlags::CLONE_NEWNS)
                .map_err(|e| SysError::Io("enter the system's mount namespace", e.into()))?;
            f().map(Some)
        })
        .join()
        .unwrap_or(Err(SysError::Parse("mount namespace thread panicked")))
    })
}

/// Makes the named namespace at `path` (a namespace in vpcip's mount
/// namespace) seen in the system's mount namespace too, so that it outlives
/// vpcip's mount namespace and `ip netns` everywhere sees it.
fn publish(path: &Path) -> Result<(), SysError> {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(path).map_err(SysError::io("open network namespace"))?;
    // The descriptor is the process's, whatever the thread's mounts.
    let source = format!("/proc/self/fd/{}", ns.as_raw_fd());
    let target = path.to_path_buf();
    in_system_mounts(move || {
        if is_namespace(&target) {
            return Ok(());
        }
        std::fs::create_dir_all("/run/netns").map_err(SysError::io("create /run/netns"))?;
        // The file may be the one vpcip's own mount stands on (the same
        // directory seen from both): kept, for removing it there would
        // undo that mount.
        if !target.exists() {
            std::fs::File::create(&target).map_err(SysError::io("create namespace file"))?;
        }
        nix::mount::mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| SysError::Io("bind-mount namespace in the system's mounts", e.into()))
    })?;
    drop(ns);
    Ok(())
}

/// Creates the named namespace `name` (as `ip netns add` does) unless it
/// exists, and returns its path. It is made in the system's mount namespace
/// as well as in vpcip's (see [`publish`]); a file left behind where a
/// namespace was (its mount gone with a mount namespace that ended) is
/// replaced.
pub fn create_named(name: &str) -> Result<std::path::PathBuf, SysError> {
    let path = named(name);
    if is_namespace(&path) {
        publish(&path)?;
        return Ok(path);
    }
    if path.exists() {
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        std::fs::remove_file(&path).map_err(SysError::io("remove a stale namespace file"))?;
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
    publish(&path)?;
    Ok(path)
}

/// Removes the named namespace `name` (its links go with it once nothing
/// else holds it).
pub fn delete_named(name: &str) -> Result<(), SysError> {
    let path = named(name);
    let unmount = |path: &Path| -> Result<(), SysError> {
        if !path.exists() {
            return Ok(());
        }
        let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
        std::fs::remove_file(path).map_err(SysError::io("remove namespace file"))
    };
    let system = path.clone();
    in_system_mounts(move || unmount(&system))?;
    unmount(&path)
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
