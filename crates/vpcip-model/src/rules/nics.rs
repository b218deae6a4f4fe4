//! NICs on servers: a primary NIC's zone, attaching and detaching ENIs.

use super::{label, need_subnet_kind};
use crate::error::RuleError;
use crate::resources::{Nic, Server, Subnet, SubnetKind, Zone};

/// A server's primary NIC must be in a subnet of the server's zone.
pub fn check_server_subnet(
    server_name: &str,
    server_zone: &Zone,
    subnet: &Subnet,
    subnet_zone: &Zone,
) -> Result<(), RuleError> {
    need_subnet_kind(subnet, SubnetKind::Guest)?;
    if server_zone.id != subnet_zone.id {
        return Err(RuleError::SubnetZoneMismatch {
            subnet: label(&subnet.name, &subnet.id).into(),
            subnet_zone: subnet_zone.name.clone(),
            server: server_name.into(),
            server_zone: server_zone.name.clone(),
        });
    }
    Ok(())
}

/// Attaching a secondary ENI: free, and in the server's zone.
pub fn check_attach(
    nic: &Nic,
    nic_zone: &Zone,
    server: &Server,
    server_zone: &Zone,
    server_vpc: Option<&str>,
) -> Result<(), RuleError> {
    if let Some(s) = &nic.server_id {
        return Err(RuleError::NicAttached {
            nic: label(&nic.name, &nic.id).into(),
            server: s.clone(),
        });
    }
    if let Some(vpc) = server_vpc
        && vpc != nic.vpc_id
    {
        return Err(RuleError::invalid(
            "server",
            format!(
                "ENI {} is in VPC {}, server {} in VPC {vpc}: a server's NICs share its VPC",
                label(&nic.name, &nic.id),
                nic.vpc_id,
                label(&server.name, &server.id)
            ),
        ));
    }
    if nic_zone.id != server_zone.id {
        return Err(RuleError::ZoneMismatch {
            nic: label(&nic.name, &nic.id).into(),
            nic_zone: nic_zone.name.clone(),
            server: label(&server.name, &server.id).into(),
            server_zone: server_zone.name.clone(),
        });
    }
    Ok(())
}

pub fn check_detach(nic: &Nic) -> Result<&str, RuleError> {
    let server = nic
        .server_id
        .as_deref()
        .ok_or_else(|| RuleError::NicNotAttached {
            nic: label(&nic.name, &nic.id).into(),
        })?;
    if nic.primary {
        return Err(RuleError::NicPrimary {
            nic: label(&nic.name, &nic.id).into(),
            server: server.into(),
        });
    }
    Ok(server)
}
