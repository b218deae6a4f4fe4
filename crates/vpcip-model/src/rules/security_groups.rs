//! Security groups: their rules, and the groups a NIC may have.

use ipnet::Ipv4Net;

use super::{MAX_SECURITY_GROUPS_PER_NIC, label};
use crate::error::RuleError;
use crate::resources::{Protocol, SecurityGroup, SgRule, Vpc};

/// Rules a group holds at most, unless the server's config says otherwise
/// (`[security_groups] max_rules`).
pub const DEFAULT_MAX_SG_RULES: usize = 100;

/// Checks one rule on its own: one remote, ports only on tcp and udp and
/// in 1..=65535 with min <= max, and a remote prefix that can match
/// something (no host bits, not loopback, multicast or reserved).
pub fn check_sg_rule(r: &SgRule) -> Result<(), RuleError> {
    let bad = |reason: String| RuleError::SgRuleInvalid {
        rule: r.to_string(),
        reason,
    };
    match (&r.remote_cidr, &r.remote_group) {
        (Some(_), None) | (None, Some(_)) => {}
        _ => return Err(bad("set exactly one of remote_cidr and remote_group".into())),
    }
    let ported = matches!(r.protocol, Protocol::Tcp | Protocol::Udp);
    match (ported, r.port_min, r.port_max) {
        (true, Some(a), Some(b)) if a >= 1 && a <= b => {}
        (true, None, None) | (false, None, None) => {}
        (true, a, b) => {
            return Err(bad(format!(
                "port range {}-{} can never match: ports run 1 <= min <= max <= 65535",
                a.map_or("?".into(), |v| v.to_string()),
                b.map_or("?".into(), |v| v.to_string())
            )));
        }
        (false, _, _) => {
            return Err(bad(format!(
                "ports apply only to tcp and udp, not to {}",
                r.protocol.as_str()
            )));
        }
    }
    if let Some(c) = r.remote_cidr {
        if c.addr() != c.network() {
            return Err(bad(format!(
                "{c} has host bits set (did you mean {}?)",
                c.trunc()
            )));
        }
        let never = |net: &str| {
            net.parse::<Ipv4Net>()
                .is_ok_and(|n| n.contains(&c) && c.prefix_len() > 0)
        };
        if ["127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "0.0.0.0/8"]
            .iter()
            .any(|n| never(n))
        {
            return Err(bad(format!(
                "{c} can never match: no VM talks to loopback, multicast or reserved addresses across a security group"
            )));
        }
    }
    Ok(())
}

/// Checks a group's rules: each on its own, no rule twice, at most `limit`.
pub fn check_sg_rules(group: &str, rules: &[SgRule], limit: usize) -> Result<(), RuleError> {
    if rules.len() > limit {
        return Err(RuleError::SgRuleLimit {
            group: group.into(),
            count: rules.len(),
            limit,
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in rules {
        check_sg_rule(r)?;
        if !seen.insert(r.to_string()) {
            return Err(RuleError::SgRuleInvalid {
                rule: r.to_string(),
                reason: format!("group {group} already has this rule"),
            });
        }
    }
    Ok(())
}

/// A NIC's groups: 1 to 5, all in its VPC, all of one type, none managed
/// (unless the operator chooses).
pub fn check_security_groups(
    nic_vpc: &Vpc,
    groups: &[SecurityGroup],
    operator: bool,
) -> Result<(), RuleError> {
    if groups.is_empty() || groups.len() > MAX_SECURITY_GROUPS_PER_NIC {
        return Err(RuleError::SecurityGroupCount {
            count: groups.len(),
        });
    }
    for (i, g) in groups.iter().enumerate() {
        if groups[..i].iter().any(|o| o.id == g.id) {
            return Err(RuleError::invalid(
                "security_groups",
                format!("{} is given twice", label(&g.name, &g.id)),
            ));
        }
        if g.vpc_id != nic_vpc.id {
            return Err(RuleError::SecurityGroupWrongVpc {
                group: label(&g.name, &g.id).into(),
                group_vpc: g.vpc_id.clone(),
                nic_vpc: label(&nic_vpc.name, &nic_vpc.id).into(),
            });
        }
        if g.managed && !operator {
            return Err(RuleError::SecurityGroupManaged {
                group: label(&g.name, &g.id).into(),
            });
        }
    }
    let first = &groups[0];
    if let Some(other) = groups.iter().find(|g| g.kind != first.kind) {
        return Err(RuleError::SecurityGroupMixedKinds {
            first: label(&first.name, &first.id).into(),
            first_kind: first.kind.as_str(),
            other: label(&other.name, &other.id).into(),
            other_kind: other.kind.as_str(),
        });
    }
    Ok(())
}
