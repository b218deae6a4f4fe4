//! A VPC's CIDR blocks, and the host networks beside them.

use ipnet::Ipv4Net;

use super::{MAX_SECONDARY_CIDRS, check_block, label, validate_name};
use crate::error::RuleError;
use crate::ipam::overlaps;
use crate::resources::{Subnet, Vpc};

/// A new VPC's blocks: well formed and not overlapping one another.
pub fn check_new_vpc(name: &str, cidr: &Ipv4Net, secondary: &[Ipv4Net]) -> Result<(), RuleError> {
    validate_name("name", name)?;
    check_block("cidr", cidr)?;
    let mut vpc = Vpc {
        id: String::new(),
        tenant: String::new(),
        name: name.to_string(),
        cidr: *cidr,
        secondary_cidrs: vec![],
        is_default: false,
        router_index: 0,
    };
    for block in secondary {
        check_vpc_cidr_add(&vpc, block)?;
        vpc.secondary_cidrs.push(*block);
    }
    Ok(())
}

pub fn check_vpc_cidr_add(vpc: &Vpc, block: &Ipv4Net) -> Result<(), RuleError> {
    if vpc.is_default {
        return Err(RuleError::DefaultVpc {
            action: "given CIDR blocks",
        });
    }
    check_block("cidr", block)?;
    if let Some(other) = vpc.blocks().find(|b| overlaps(b, block)) {
        return Err(RuleError::VpcCidrOverlap {
            vpc: label(&vpc.name, &vpc.id).into(),
            block: *block,
            other: *other,
        });
    }
    if vpc.secondary_cidrs.len() >= MAX_SECONDARY_CIDRS {
        return Err(RuleError::VpcCidrLimit {
            vpc: label(&vpc.name, &vpc.id).into(),
            count: vpc.secondary_cidrs.len(),
            limit: MAX_SECONDARY_CIDRS,
        });
    }
    Ok(())
}

/// Removing a secondary block: it must be one, and hold no subnet.
pub fn check_vpc_cidr_remove(
    vpc: &Vpc,
    block: &Ipv4Net,
    subnets: &[Subnet],
) -> Result<(), RuleError> {
    let vpc_label = label(&vpc.name, &vpc.id).to_string();
    if vpc.cidr == *block {
        return Err(RuleError::VpcCidrPrimary {
            vpc: vpc_label,
            block: *block,
        });
    }
    if !vpc.secondary_cidrs.contains(block) {
        return Err(RuleError::VpcCidrUnknown {
            vpc: vpc_label,
            block: *block,
        });
    }
    if let Some(s) = subnets.iter().find(|s| block.contains(&s.cidr)) {
        return Err(RuleError::VpcCidrInUse {
            vpc: vpc_label,
            block: *block,
            subnet: label(&s.name, &s.id).into(),
            cidr: s.cidr,
        });
    }
    Ok(())
}

/// A host network must not overlap an EIP segment.
pub fn check_host_network(cidr: &Ipv4Net, eip_segments: &[Subnet]) -> Result<(), RuleError> {
    check_block("cidr", cidr)?;
    if let Some(s) = eip_segments.iter().find(|s| overlaps(&s.cidr, cidr)) {
        return Err(RuleError::HostNetworkOverlapsSegment {
            host_network: *cidr,
            segment: s.cidr,
        });
    }
    Ok(())
}
