//! A host's VM ports: watching its links for them, and what its DHCP
//! server answers on each.

use std::sync::Arc;
use std::time::Duration;

use crate::dhcp;

/// The names of the host's VM ports, as the last desired state gave them.
pub(crate) type PortNames = Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>;

/// Watches the host's links: when one of its VM ports is made or goes (a
/// hypervisor's tap), `seen` wakes the loop for a pass at once.
pub(crate) fn watch_ports(
    node: std::path::PathBuf,
    names: PortNames,
    seen: Arc<tokio::sync::Notify>,
) {
    let watch = move || {
        loop {
            let mut events = match vpcip_sys::link_events::LinkEvents::open(&node) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the host's links; again in a second");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            loop {
                match events.wait() {
                    Ok(changed) => {
                        let ours = names
                            .read()
                            .is_ok_and(|n| changed.iter().any(|c| c.is_empty() || n.contains(c)));
                        if ours {
                            seen.notify_one();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "watching the host's links failed; again");
                        break;
                    }
                }
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("links".into())
        .spawn(watch)
    {
        tracing::error!(error = %e, "cannot watch the host's links");
    }
}

/// What the host's DHCP server answers, by port.
pub(crate) fn dhcp_leases(
    h: &vpcip_model::desired::HostState,
    mtu: u16,
) -> std::collections::BTreeMap<String, dhcp::PortLease> {
    h.ports
        .iter()
        .filter_map(|p| {
            Some((
                p.ifname.clone(),
                dhcp::PortLease {
                    mac: vpcip_dataplane::isolation::parse_mac(&p.mac)?,
                    lease: p.dhcp.clone()?,
                    mtu,
                },
            ))
        })
        .collect()
}
