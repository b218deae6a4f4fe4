//! Binding VIPs to NICs and EIPs to NICs or VIPs.

use std::net::Ipv4Addr;

use super::{
    MAX_NICS_PER_VIP, MAX_VIPS_PER_NIC, RECOMMENDED_SERVERS_PER_VIP, RECOMMENDED_VIPS_PER_SERVER,
    label,
};
use crate::error::{RuleError, Warning};
use crate::resources::{Eip, EipMode, Nic, Vip};

/// What the VIP bind rules need to know about the current state.
#[derive(Debug, Clone, Default)]
pub struct VipBindContext {
    /// NICs the VIP is bound to now.
    pub vip_nics: Vec<Nic>,
    /// VIPs the NIC holds now.
    pub nic_vip_count: usize,
    /// VIPs held by the NIC's server over all its NICs (0 when unattached).
    pub server_vip_count: usize,
    /// The NIC's server's NICs that are in the VIP's subnet (the NIC included).
    pub server_nics_in_subnet: usize,
    /// The NIC's server's name, for the warnings (its ID when empty).
    pub server_name: Option<String>,
}

/// Binding a VIP to a NIC: hard limits are errors, the vendor manuals'
/// recommendations are warnings.
pub fn check_vip_bind(
    vip: &Vip,
    nic: &Nic,
    ctx: &VipBindContext,
) -> Result<Vec<Warning>, RuleError> {
    let vip_label = label(&vip.name, &vip.id).to_string();
    let nic_label = label(&nic.name, &nic.id).to_string();
    if nic.subnet_id != vip.subnet_id {
        return Err(RuleError::VipSubnetMismatch {
            vip: vip_label,
            vip_subnet: vip.subnet_id.clone(),
            nic: nic_label,
            nic_subnet: nic.subnet_id.clone(),
        });
    }
    if ctx.vip_nics.iter().any(|n| n.id == nic.id) {
        return Err(RuleError::VipAlreadyBound {
            vip: vip_label,
            nic: nic_label,
        });
    }
    if ctx.vip_nics.len() >= MAX_NICS_PER_VIP {
        return Err(RuleError::VipNicLimit {
            vip: vip_label,
            count: ctx.vip_nics.len(),
            limit: MAX_NICS_PER_VIP,
        });
    }
    if ctx.nic_vip_count >= MAX_VIPS_PER_NIC {
        return Err(RuleError::NicVipLimit {
            nic: nic_label,
            count: ctx.nic_vip_count,
            limit: MAX_VIPS_PER_NIC,
        });
    }
    let mut servers: Vec<&str> = ctx
        .vip_nics
        .iter()
        .filter_map(|n| n.server_id.as_deref())
        .chain(nic.server_id.as_deref())
        .collect();
    servers.sort_unstable();
    servers.dedup();
    Ok(vip_warnings(
        &vip_label,
        ctx.server_name.as_deref().or(nic.server_id.as_deref()),
        ctx.server_vip_count + 1,
        servers.len(),
        ctx.server_nics_in_subnet,
    ))
}

/// The vendor manuals' recommendations, after a bind: VIPs on the server, servers on
/// the VIP, and several NICs of one server in the VIP's subnet.
pub fn vip_warnings(
    vip: &str,
    server: Option<&str>,
    server_vips: usize,
    vip_servers: usize,
    server_nics_in_subnet: usize,
) -> Vec<Warning> {
    let mut w = Vec::new();
    if let Some(server) = server {
        if server_vips > RECOMMENDED_VIPS_PER_SERVER {
            w.push(Warning {
                code: "server_vip_count".into(),
                message: format!(
                    "server {server} now holds {server_vips} VIPs (recommended at most {RECOMMENDED_VIPS_PER_SERVER})"
                ),
            });
        }
        if server_nics_in_subnet > 1 {
            w.push(Warning {
                code: "server_nics_in_vip_subnet".into(),
                message: format!(
                    "server {server} has {server_nics_in_subnet} NICs in the subnet of VIP {vip}; route conflicts on the server may break the VIP"
                ),
            });
        }
    }
    if vip_servers > RECOMMENDED_SERVERS_PER_VIP {
        w.push(Warning {
            code: "vip_server_count".into(),
            message: format!(
                "VIP {vip} is now bound to {vip_servers} servers (recommended at most {RECOMMENDED_SERVERS_PER_VIP})"
            ),
        });
    }
    w
}

/// The bind target as resolved by the store.
#[derive(Debug, Clone)]
pub enum ResolvedTarget {
    Nic(Nic),
    Vip(Vip),
}

impl ResolvedTarget {
    pub fn id(&self) -> &str {
        match self {
            ResolvedTarget::Nic(n) => &n.id,
            ResolvedTarget::Vip(v) => &v.id,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            ResolvedTarget::Nic(_) => "NIC",
            ResolvedTarget::Vip(_) => "VIP",
        }
    }
    pub fn label(&self) -> &str {
        match self {
            ResolvedTarget::Nic(n) => label(&n.name, &n.id),
            ResolvedTarget::Vip(v) => label(&v.name, &v.id),
        }
    }
    pub fn ip(&self) -> Ipv4Addr {
        match self {
            ResolvedTarget::Nic(n) => n.ip,
            ResolvedTarget::Vip(v) => v.ip,
        }
    }
}

/// Binding an EIP: one target per EIP (moving needs allow_reassociation),
/// one EIP per target, and in visible mode the target's address is the EIP.
pub fn check_eip_bind(
    eip: &Eip,
    target: &ResolvedTarget,
    target_eip: Option<&Eip>,
    mode: EipMode,
    allow_reassociation: bool,
) -> Result<(), RuleError> {
    let current = eip.nic_id().or(eip.vip_id());
    if let Some(cur) = current {
        if cur == target.id() && eip.mode() == mode {
            // Binding again to the same target is a no-op, not an error.
            return Ok(());
        }
        if !allow_reassociation {
            return Err(RuleError::EipBound {
                eip: eip.ip,
                target_kind: if eip.vip_id().is_some() { "VIP" } else { "NIC" },
                target: cur.to_string(),
            });
        }
    }
    if current.is_some() {
        check_eip_unbind(eip)?;
    }
    if let Some(other) = target_eip.filter(|o| o.id != eip.id) {
        return Err(RuleError::TargetHasEip {
            target_kind: target.kind(),
            target: target.label().to_string(),
            eip: other.ip,
        });
    }
    if mode == EipMode::Visible && target.ip() != eip.ip {
        return Err(RuleError::VisibleAddressMismatch {
            eip: eip.ip,
            target_kind: target.kind(),
            target: target.label().to_string(),
            addr: target.ip(),
        });
    }
    Ok(())
}

/// A visible-mode EIP is its target's own address (a NIC or VIP in a
/// subnet carved from the EIP segment): it stays bound until that NIC or
/// VIP is deleted, or the address could be handed out again while in use.
pub fn check_eip_unbind(eip: &Eip) -> Result<(), RuleError> {
    if eip.mode() == EipMode::Visible
        && let Some(t) = eip.nic_id().or(eip.vip_id())
    {
        let kind = if eip.vip_id().is_some() { "VIP" } else { "NIC" };
        return Err(RuleError::InUse {
            kind: "EIP",
            id: eip.ip.to_string(),
            reason: format!(
                "it is the address of {kind} {t} (visible mode); delete the {kind} to free it"
            ),
        });
    }
    Ok(())
}
