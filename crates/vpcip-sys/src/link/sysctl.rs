//! The current network namespace's sysctls (`/proc/sys/net`).

use crate::SysError;

/// Sets an IPv4 sysctl of the current thread's network namespace, e.g.
/// `("ip_forward", "1")` or `("conf/all/rp_filter", "0")`.
/// Whether an IPv4 sysctl of the current namespace (`ip_forward`,
/// `conf/<link>/arp_accept`) is `value`; false when it does not exist.
pub fn ipv4_sysctl_is(key: &str, value: &str) -> Result<bool, SysError> {
    net_sysctl_is(&format!("ipv4/{key}"), value)
}

/// Whether `/proc/sys/net/<key>` of the current thread's network namespace
/// holds `value` (false when it does not exist).
pub fn net_sysctl_is(key: &str, value: &str) -> Result<bool, SysError> {
    match std::fs::read_to_string(format!("/proc/sys/net/{key}")) {
        Ok(now) => Ok(now.trim() == value),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SysError::Io("read sysctl", e)),
    }
}

pub fn ipv4_sysctl(key: &str, value: &str) -> Result<(), SysError> {
    net_sysctl(&format!("ipv4/{key}"), value)
}

/// Sets `/proc/sys/net/<key>` of the current thread's network namespace.
pub fn net_sysctl(key: &str, value: &str) -> Result<(), SysError> {
    let path = format!("/proc/sys/net/{key}");
    let now = std::fs::read_to_string(&path).map_err(SysError::io("read sysctl"))?;
    if now.trim() != value {
        std::fs::write(&path, value).map_err(SysError::io("write sysctl"))?;
    }
    Ok(())
}
