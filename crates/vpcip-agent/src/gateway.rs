//! The gateway agent's reconciler: for each VPC router, the EIP NAT maps.
//! (The router namespaces, their links and routes are the next step; today
//! they must exist, named `<prefix>vpcr-<vpc id>`.)

use vpcip_dataplane::nat::{NatMap, plan_nat};
use vpcip_model::desired::GatewayState;
use vpcip_sys::netns::{in_netns, named};
use vpcip_sys::nft::NatTable;

#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Map elements added or removed.
    pub changed: usize,
}

pub struct GatewayReconciler {
    prefix: String,
}

/// The namespace of a VPC's router.
pub fn router_netns(prefix: &str, vpc_id: &str) -> String {
    format!("{prefix}vpcr-{vpc_id}")
}

impl GatewayReconciler {
    pub fn new(prefix: &str) -> Self {
        GatewayReconciler {
            prefix: prefix.to_string(),
        }
    }

    /// Brings every VPC router's NAT maps to the desired state. Every router
    /// is tried; the errors are reported together.
    pub fn reconcile(&mut self, state: &GatewayState) -> Result<Summary, String> {
        let mut summary = Summary::default();
        let mut errors = Vec::new();
        for router in &state.routers {
            let ns = named(&router_netns(&self.prefix, &router.vpc_id));
            if !ns.exists() {
                if !router.nat.is_empty() {
                    errors.push(format!(
                        "VPC {}: router namespace {} is missing",
                        router.vpc_id,
                        ns.display()
                    ));
                }
                continue;
            }
            let desired: NatMap = router.nat.iter().map(|e| (e.eip, e.private_ip)).collect();
            let result = in_netns(&ns, || -> Result<usize, vpcip_sys::SysError> {
                let mut table = NatTable::open()?;
                table.ensure()?;
                let (dnat, snat) = table.read()?;
                let mut plan = plan_nat(&desired, &dnat, &snat);
                if !plan.is_empty() {
                    // Something to change: make sure the read was not a
                    // partial dump (see NatTable::read).
                    let (dnat, snat) = table.read_settled()?;
                    plan = plan_nat(&desired, &dnat, &snat);
                }
                let n = plan.dnat.add.len()
                    + plan.dnat.remove.len()
                    + plan.snat.add.len()
                    + plan.snat.remove.len();
                table.apply(&plan)?;
                // Connections tracked under a mapping that changed keep it
                // until they end: forget them, so the change holds for them.
                let changed: std::collections::BTreeSet<_> =
                    plan.dnat.remove.iter().map(|(eip, _)| *eip).collect();
                let f = vpcip_sys::conntrack::forget(&changed)?;
                if !changed.is_empty() {
                    tracing::info!(vpc = %router.vpc_id, seen = f.seen, deleted = f.deleted, "forgot the connections of changed EIPs");
                }
                Ok(n)
            });
            match result {
                Ok(Ok(n)) => summary.changed += n,
                Ok(Err(e)) | Err(e) => errors.push(format!("VPC {}: {e}", router.vpc_id)),
            }
        }
        if errors.is_empty() {
            Ok(summary)
        } else {
            Err(errors.join("; "))
        }
    }
}
