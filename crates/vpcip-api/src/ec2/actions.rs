//! The five address actions, each onto the store's own operations.

use axum::http::StatusCode;
use vpcip_model::*;
use vpcip_store::Scope;

use super::{ADDRESS_MBPS, Ec2Error, Params, err, refusal, store_err, xml_escape};
use crate::App;

/// The association of a bound EIP: its ID with another prefix, so that
/// `DisassociateAddress` finds the EIP.
fn association_id(eip: &Eip) -> Option<String> {
    eip.is_bound()
        .then(|| format!("eipassoc-{}", eip.id.trim_start_matches("eip-")))
}

fn tag(name: &str, value: &str) -> String {
    format!("<{name}>{}</{name}>", xml_escape(value))
}

/// The EIP an `AllocationId` or `PublicIp` names.
async fn find(app: &App, scope: &Scope, p: &Params) -> Result<Eip, Ec2Error> {
    let key = p.get("AllocationId").or(p.get("PublicIp")).ok_or_else(|| {
        err(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "give AllocationId (or PublicIp)",
        )
    })?;
    app.store
        .show::<Eip>(scope, key)
        .await
        .map_err(store_err("InvalidAllocationID.NotFound"))
}

pub(super) async fn allocate(app: &App, scope: &Scope, p: &Params) -> Result<String, Ec2Error> {
    if let Some(d) = p.get("Domain")
        && d != "vpc"
    {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            format!("Domain {d}: vpcip's addresses are all of the vpc domain"),
        ));
    }
    let ip = match p.get("Address") {
        Some(a) => Some(a.parse().map_err(|_| {
            err(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                format!("Address {a} is not an IPv4 address"),
            )
        })?),
        None => None,
    };
    let eip = app
        .store
        .create_eip(
            scope,
            &CreateEip {
                ip,
                bandwidth_mbps: ADDRESS_MBPS,
                ..Default::default()
            },
        )
        .await
        .map_err(store_err("InvalidAddress.NotFound"))?;
    Ok(format!(
        "{}{}<domain>vpc</domain><publicIpv4Pool>{}</publicIpv4Pool><networkBorderGroup>vpcip</networkBorderGroup>",
        tag("publicIp", &eip.ip.to_string()),
        tag("allocationId", &eip.id),
        xml_escape(&eip.subnet_id),
    ))
}

pub(super) async fn associate(app: &App, scope: &Scope, p: &Params) -> Result<String, Ec2Error> {
    let eip = find(app, scope, p).await?;
    let (target, missing) = match (p.get("NetworkInterfaceId"), p.get("InstanceId")) {
        (Some(n), _) => (
            EipTarget::Nic(n.into()),
            "InvalidNetworkInterfaceID.NotFound",
        ),
        (None, Some(i)) => (EipTarget::Server(i.into()), "InvalidInstanceID.NotFound"),
        (None, None) => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "MissingParameter",
                "give InstanceId or NetworkInterfaceId",
            ));
        }
    };
    if let Some(want) = p.get("PrivateIpAddress") {
        // A NIC has one private address: the one asked must be it.
        let nic: Nic = match &target {
            EipTarget::Server(s) => {
                let server: Server = app.store.show(scope, s).await.map_err(store_err(missing))?;
                let primary = server.nic_ids.first().cloned().unwrap_or_default();
                app.store
                    .show(scope, &primary)
                    .await
                    .map_err(store_err(missing))?
            }
            EipTarget::Nic(n) | EipTarget::Vip(n) => {
                app.store.show(scope, n).await.map_err(store_err(missing))?
            }
        };
        if nic.ip.to_string() != want {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                format!(
                    "PrivateIpAddress {want}: the network interface's address is {}",
                    nic.ip
                ),
            ));
        }
    }
    let bind = BindEip {
        target,
        mode: EipMode::Nat,
        allow_reassociation: p.flag("AllowReassociation"),
    };
    let bound = app
        .store
        .bind_eip(scope, &eip.id, &bind)
        .await
        .map_err(store_err(missing))?;
    Ok(tag(
        "associationId",
        &association_id(&bound).unwrap_or_default(),
    ))
}

pub(super) async fn disassociate(app: &App, scope: &Scope, p: &Params) -> Result<String, Ec2Error> {
    let key = match (p.get("AssociationId"), p.get("PublicIp")) {
        (Some(a), _) => a
            .strip_prefix("eipassoc-")
            .map(|t| format!("eip-{t}"))
            .ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    "InvalidAssociationID.NotFound",
                    format!("The association ID '{a}' does not exist"),
                )
            })?,
        (None, Some(ip)) => ip.to_string(),
        (None, None) => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "MissingParameter",
                "give AssociationId (or PublicIp)",
            ));
        }
    };
    app.store
        .unbind_eip(scope, &key)
        .await
        .map_err(store_err("InvalidAssociationID.NotFound"))?;
    Ok("<return>true</return>".into())
}

pub(super) async fn release(app: &App, scope: &Scope, p: &Params) -> Result<String, Ec2Error> {
    let eip = find(app, scope, p).await?;
    if eip.is_bound() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "InvalidIPAddress.InUse",
            format!("Address {} is in use: disassociate it first", eip.ip),
        ));
    }
    app.store
        .release_eip(scope, &eip.id)
        .await
        .map_err(store_err("InvalidAllocationID.NotFound"))?;
    Ok("<return>true</return>".into())
}

pub(super) async fn describe(app: &App, scope: &Scope, p: &Params) -> Result<String, Ec2Error> {
    let eips = crate::handlers::all::<Eip>(app, scope)
        .await
        .map_err(|e| refusal(e, "InvalidAllocationID.NotFound"))?;
    let (ids, ips) = (p.list("AllocationId"), p.list("PublicIp"));
    // Filter.N.Name with Filter.N.Value.M.
    let mut filters: Vec<(String, Vec<String>)> = vec![];
    for n in 1.. {
        let Some(name) = p.get(&format!("Filter.{n}.Name")) else {
            break;
        };
        let values = p
            .list(&format!("Filter.{n}.Value"))
            .into_iter()
            .map(str::to_string)
            .collect();
        filters.push((name.to_string(), values));
    }
    let mut items = String::new();
    let mut found = 0;
    for e in &eips {
        let assoc = association_id(e);
        let field = |name: &str| -> Option<String> {
            match name {
                "allocation-id" => Some(e.id.clone()),
                "public-ip" => Some(e.ip.to_string()),
                "domain" => Some("vpc".into()),
                "instance-id" => e.server_id().map(str::to_string),
                "network-interface-id" => e.nic_id().map(str::to_string),
                "association-id" => assoc.clone(),
                "private-ip-address" => e.private_ip().map(|a| a.to_string()),
                "network-interface-owner-id" => Some(e.tenant.clone()),
                _ => None,
            }
        };
        let wanted = (ids.is_empty() || ids.contains(&e.id.as_str()))
            && (ips.is_empty() || ips.contains(&e.ip.to_string().as_str()))
            && filters
                .iter()
                .all(|(n, vs)| field(n).is_some_and(|v| vs.contains(&v)));
        if !wanted {
            continue;
        }
        found += 1;
        items.push_str("<item>");
        items.push_str(&tag("publicIp", &e.ip.to_string()));
        items.push_str(&tag("allocationId", &e.id));
        items.push_str("<domain>vpc</domain>");
        for (name, f) in [
            ("associationId", "association-id"),
            ("instanceId", "instance-id"),
            ("networkInterfaceId", "network-interface-id"),
            ("networkInterfaceOwnerId", "network-interface-owner-id"),
            ("privateIpAddress", "private-ip-address"),
        ] {
            if let Some(v) = field(f).filter(|_| e.is_bound() || name == "networkInterfaceOwnerId")
            {
                items.push_str(&tag(name, &v));
            }
        }
        items.push_str(&tag("publicIpv4Pool", &e.subnet_id));
        items.push_str("<networkBorderGroup>vpcip</networkBorderGroup><tagSet/></item>");
    }
    // Asked by ID or address and not there: EC2 says which.
    if found == 0 && !ids.is_empty() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "InvalidAllocationID.NotFound",
            format!("The allocation IDs '{}' do not exist", ids.join(", ")),
        ));
    }
    if found == 0 && !ips.is_empty() {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "InvalidAddress.NotFound",
            format!("Address '{}' not found.", ips.join(", ")),
        ));
    }
    Ok(format!("<addressesSet>{items}</addressesSet>"))
}
