//! The host agent's reconciler: observe the node, plan
//! (`vpcip_dataplane::host`, which says what a host holds), apply. Each
//! pass is level-triggered: whatever drifted is repaired, an idle pass
//! changes nothing, and links vpcip did not name are left alone.

use std::net::Ipv4Addr;
use std::path::Path;

use vpcip_dataplane::host::plan_host;
use vpcip_model::desired::HostState;

use crate::gateway::Summary;
use crate::kernel::host::SysHost;
use crate::kernel::{HostKernel, KernelError};

pub use vpcip_dataplane::links::bridge_ifname;

pub struct HostReconciler<K: HostKernel = SysHost> {
    kernel: K,
    underlay: Ipv4Addr,
    /// The VM ports' MTU, as the last pass found the underlay.
    overlay_mtu: u32,
}

impl HostReconciler<SysHost> {
    /// The reconciler of the host whose namespace is `node`, its VXLAN
    /// endpoint `underlay`.
    pub fn new(node: &Path, underlay: Ipv4Addr) -> Self {
        HostReconciler::with_kernel(SysHost::new(node), underlay)
    }
}

impl<K: HostKernel> HostReconciler<K> {
    pub fn with_kernel(kernel: K, underlay: Ipv4Addr) -> Self {
        HostReconciler {
            kernel,
            underlay,
            overlay_mtu: 1450,
        }
    }

    /// One pass: the changes made, and whether a port is still awaited.
    pub fn reconcile(&mut self, state: &HostState) -> Result<Summary, KernelError> {
        let observed = self.kernel.observe(self.underlay)?;
        self.overlay_mtu = observed
            .underlay_mtu
            .saturating_sub(vpcip_dataplane::links::VXLAN_OVERHEAD);
        let plan = plan_host(state, &observed, self.underlay);
        for c in &plan.changes {
            tracing::debug!(change = ?c, "host change");
        }
        self.kernel.apply(&plan.changes)?;
        Ok(Summary {
            changed: plan.changes.len(),
            pending: !plan.waiting.is_empty(),
            missing_ports: state
                .ports
                .iter()
                .filter(|p| plan.waiting.contains(&p.ifname))
                .map(|p| p.nic_id.clone())
                .collect(),
        })
    }

    /// The MTU of the VM ports (the underlay's, less VXLAN's overhead).
    pub fn overlay_mtu(&self) -> u32 {
        self.overlay_mtu
    }

    pub fn kernel(&self) -> &K {
        &self.kernel
    }
}

#[cfg(test)]
mod tests;
