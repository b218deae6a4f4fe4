//! `vpcip status`.

use super::*;

/// `vpcip status`.
pub(super) async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    use vpcip_model::desired::SystemStatus;
    let s: SystemStatus = ctx.client.get(paths::STATUS).await?;
    let unhealthy = s.agents.iter().filter(|a| !a.healthy).count();
    // What the gateways hold is known once one of them has reported.
    let known = s
        .agents
        .iter()
        .any(|a| a.agent.role == vpcip_model::desired::AgentRole::Gateway && a.agent.last_seen > 0);
    let bad = unhealthy > 0
        || !known
        || !s.differing.is_empty()
        || !s.missing_ports.is_empty()
        || !s.bgp.is_empty()
        || s.agents.is_empty();
    if ctx.output != Output::Table {
        crate::table::print_value(&serde_json::to_value(&s)?, ctx.output)?;
    } else {
        println!("controller   revision {}", s.revision);
        if s.agents.is_empty() {
            println!("agents       none registered");
        }
        for a in &s.agents {
            let ago = if a.agent.last_seen > 0 {
                format!("last report {} s ago", s.now - a.agent.last_seen)
            } else {
                "no report yet".into()
            };
            println!(
                "{:<12} {:<14} {:<9} applied {} (lag {}), {}{}",
                a.agent.role.as_str(),
                a.agent.name,
                if a.healthy { "healthy" } else { "UNHEALTHY" },
                a.agent.applied_revision,
                a.lag,
                ago,
                a.agent
                    .error
                    .as_deref()
                    .map(|e| format!(", error: {e}"))
                    .unwrap_or_default()
            );
        }
        println!(
            "EIPs         {} bound, {} in the gateways' data plane",
            s.bound_eips, s.programmed_eips
        );
        if !known {
            println!("             unknown: no gateway has reported its data plane yet");
        } else if s.differing.is_empty() {
            println!("             none differs from the desired state");
        }
        for d in &s.differing {
            let what = match d.problem.as_str() {
                "not_programmed" => "bound, but no gateway holds it",
                "not_bound" => "a gateway holds it, but it is not bound",
                other => other,
            };
            println!(
                "DIFFERS      {} ({}): {what}",
                d.eip,
                d.eip_id.as_deref().unwrap_or("no EIP")
            );
        }
        for b in &s.bgp {
            println!(
                "BGP          {}{}: {}",
                b.gateway,
                b.peer.map(|p| format!(", peer {p}")).unwrap_or_default(),
                b.problem
            );
        }
        for m in &s.missing_ports {
            println!(
                "NO PORT      {} on {}: the hypervisor has not made its port {} there",
                m.nic_id, m.host, m.port
            );
        }
    }
    if bad {
        std::process::exit(3);
    }
    Ok(())
}
