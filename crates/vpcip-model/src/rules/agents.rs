//! Agents' identity and the underlay: whom an agent token acts for, which
//! addresses a node (an agent or a gateway) may claim on the physical
//! network, and what must stay for the underlay to keep working (a host
//! network that still holds nodes, the last gateway of bound EIPs).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::label;
use crate::desired::{Agent, AgentRole};
use crate::error::RuleError;
use crate::resources::{BgpConfig, Gateway, HostNetwork, Subnet};

/// Whom an agent token acts for: one agent, by name and role, fixed when
/// the operator made the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    pub name: String,
    pub role: AgentRole,
}

impl AgentIdentity {
    /// Whether this token may act for the agent `name` with `role` (`None`:
    /// whatever role it has): refused unless it is the token's own agent.
    pub fn check_acts_for(&self, name: &str, role: Option<AgentRole>) -> Result<(), RuleError> {
        if self.name == name && role.is_none_or(|r| r == self.role) {
            return Ok(());
        }
        Err(RuleError::AgentIdentity {
            agent: self.name.clone(),
            role: self.role.as_str(),
            requested: match role {
                Some(r) => format!("{name} ({})", r.as_str()),
                None => name.to_string(),
            },
        })
    }
}

/// Who claims an underlay address: the agent and the gateway of these
/// names (a gateway agent is both), which may keep the address they hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnderlayClaim<'a> {
    pub agent: Option<&'a str>,
    pub gateway: Option<&'a str>,
}

/// How many host networks an error lists before "and N more".
const LISTED: usize = 8;

fn listed(items: &[String]) -> String {
    let mut out = items
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > LISTED {
        out += &format!(" and {} more", items.len() - LISTED);
    }
    out
}

/// What makes an address no node's, whatever the networks: `None` when it
/// may be one.
fn reserved(addr: Ipv4Addr) -> Option<&'static str> {
    let o = addr.octets();
    if addr.is_broadcast() {
        Some("the limited broadcast address")
    } else if o[0] == 0 {
        Some("in 0.0.0.0/8 (\"this network\")")
    } else if addr.is_loopback() {
        Some("a loopback address (127.0.0.0/8)")
    } else if addr.is_multicast() {
        Some("a multicast address (224.0.0.0/4)")
    } else if o[0] >= 240 {
        Some("in the reserved block 240.0.0.0/4")
    } else {
        None
    }
}

/// Whether `addr` is the network or the broadcast address of `net` (/31
/// and /32 have neither, RFC 3021).
fn network_or_broadcast(net: &Ipv4Net, addr: Ipv4Addr) -> Option<&'static str> {
    if net.prefix_len() >= 31 {
        None
    } else if addr == net.network() {
        Some("network")
    } else if addr == net.broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

/// Whether a node (agent or gateway) may have `addr` as its underlay
/// address: a unicast address of a registered host network (not its
/// network or broadcast address), in no EIP segment, and held by no other
/// agent or gateway.
pub fn check_underlay(
    addr: Ipv4Addr,
    claim: UnderlayClaim<'_>,
    host_networks: &[HostNetwork],
    eip_segments: &[Subnet],
    agents: &[Agent],
    gateways: &[Gateway],
) -> Result<(), RuleError> {
    if let Some(reason) = reserved(addr) {
        return Err(RuleError::UnderlayReserved {
            addr,
            reason: reason.into(),
        });
    }
    if let Some(s) = eip_segments.iter().find(|s| s.cidr.contains(&addr)) {
        return Err(RuleError::UnderlayInEipSegment {
            addr,
            segment: s.cidr,
        });
    }
    let holding: Vec<&HostNetwork> = host_networks
        .iter()
        .filter(|h| h.cidr.contains(&addr))
        .collect();
    if holding.is_empty() {
        let known: Vec<String> = host_networks
            .iter()
            .map(|h| format!("{} {}", label(&h.name, &h.id), h.cidr))
            .collect();
        return Err(RuleError::UnderlayOutsideHostNetworks {
            addr,
            host_networks: if known.is_empty() {
                "none is registered".into()
            } else {
                format!("registered: {}", listed(&known))
            },
        });
    }
    for h in holding {
        if let Some(which) = network_or_broadcast(&h.cidr, addr) {
            return Err(RuleError::UnderlayReserved {
                addr,
                reason: format!(
                    "the {which} address of host network {} ({})",
                    label(&h.name, &h.id),
                    h.cidr
                ),
            });
        }
    }
    if let Some(a) = agents
        .iter()
        .find(|a| a.underlay_ip == addr && claim.agent != Some(a.name.as_str()))
    {
        return Err(RuleError::UnderlayInUse {
            addr,
            holder: format!("agent {} ({})", label(&a.name, &a.id), a.role.as_str()),
        });
    }
    if let Some(g) = gateways
        .iter()
        .find(|g| g.underlay_ip == addr && claim.gateway != Some(g.name.as_str()))
    {
        return Err(RuleError::UnderlayInUse {
            addr,
            holder: format!("gateway {}", label(&g.name, &g.id)),
        });
    }
    Ok(())
}

/// Whether host network `hn` may be deleted: not while a gateway's or an
/// agent's underlay address lies in it and in no other host network.
pub fn check_host_network_delete(
    hn: &HostNetwork,
    host_networks: &[HostNetwork],
    agents: &[Agent],
    gateways: &[Gateway],
) -> Result<(), RuleError> {
    let stranded = |ip: Ipv4Addr| {
        hn.cidr.contains(&ip)
            && !host_networks
                .iter()
                .any(|o| o.id != hn.id && o.cidr.contains(&ip))
    };
    let mut users: Vec<String> = gateways
        .iter()
        .filter(|g| stranded(g.underlay_ip))
        .map(|g| format!("gateway {} ({})", label(&g.name, &g.id), g.underlay_ip))
        .collect();
    users.extend(
        agents
            .iter()
            .filter(|a| stranded(a.underlay_ip))
            // A gateway agent is its gateway, named above.
            .filter(|a| {
                !(a.role == AgentRole::Gateway
                    && gateways
                        .iter()
                        .any(|g| g.name == a.name && g.underlay_ip == a.underlay_ip))
            })
            .map(|a| {
                format!(
                    "agent {} ({}, {})",
                    label(&a.name, &a.id),
                    a.role.as_str(),
                    a.underlay_ip
                )
            }),
    );
    if users.is_empty() {
        return Ok(());
    }
    Err(RuleError::InUse {
        kind: "host network",
        id: format!("{} ({})", label(&hn.name, &hn.id), hn.cidr),
        reason: if users.len() == 1 {
            format!(
                "the underlay address of {} lies in it and in no other host network",
                users[0]
            )
        } else {
            format!(
                "the underlay addresses of {} lie in it and in no other host network",
                listed(&users)
            )
        },
    })
}

/// Whether gateway `gw` may be deleted: not when it is the last gateway
/// and EIPs are bound (they would be routed to no one), unless forced.
pub fn check_gateway_delete(
    gw: &Gateway,
    gateways: &[Gateway],
    bound_eips: usize,
    force: bool,
) -> Result<(), RuleError> {
    let last = gateways.iter().all(|g| g.id == gw.id);
    if last && bound_eips > 0 && !force {
        return Err(RuleError::LastGateway {
            gateway: label(&gw.name, &gw.id).to_string(),
            eips: bound_eips,
        });
    }
    Ok(())
}

/// A gateway has at most this many BGP peers.
pub const MAX_BGP_PEERS: usize = 16;

/// A gateway's BGP: an AS number that can be used (1 to 4294967294, not
/// AS_TRANS 23456), one to [`MAX_BGP_PEERS`] peers, each a unicast
/// address with a usable AS, none twice.
pub fn check_bgp(bgp: &BgpConfig) -> Result<(), RuleError> {
    let usable_as = |field: &str, asn: u32| {
        if asn == 0 || asn == 23456 || asn == u32::MAX {
            return Err(RuleError::invalid(
                field,
                format!(
                    "AS {asn} cannot be used: an AS number is 1 to 4294967294, and not 23456 (AS_TRANS)"
                ),
            ));
        }
        Ok(())
    };
    usable_as("local_as", bgp.local_as)?;
    if bgp.peers.is_empty() || bgp.peers.len() > MAX_BGP_PEERS {
        return Err(RuleError::invalid(
            "peers",
            format!(
                "a gateway has 1 to {MAX_BGP_PEERS} BGP peers, {} given",
                bgp.peers.len()
            ),
        ));
    }
    for (i, p) in bgp.peers.iter().enumerate() {
        let ip = p.ip;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
            return Err(RuleError::invalid(
                "peers",
                format!("peer {ip} is not a unicast address a BGP session can reach"),
            ));
        }
        usable_as("peer_as", p.peer_as)?;
        if bgp.peers[..i].iter().any(|q| q.ip == ip) {
            return Err(RuleError::invalid(
                "peers",
                format!("peer {ip} is given twice"),
            ));
        }
    }
    Ok(())
}

/// Whether gateway `gw` may be drained: not when no other undrained
/// gateway would be left to carry its VPCs.
pub fn check_drain(gw: &Gateway, gateways: &[Gateway]) -> Result<(), RuleError> {
    if gateways.iter().any(|g| g.id != gw.id && !g.drained) {
        return Ok(());
    }
    Err(RuleError::invalid(
        "drained",
        format!(
            "gateway {} is the only undrained gateway: no other would carry its VPCs (register another first)",
            label(&gw.name, &gw.id)
        ),
    ))
}

#[cfg(test)]
mod tests;
