//! The store suite: every operation and rule through real transactions, on
//! SQLite and on PostgreSQL alike.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use common::*;
use vpcip_model::ipam::{AddrRange, FreeRanges};
use vpcip_model::*;
use vpcip_store::{Scope, Store, StoreError};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

async fn seeds_eip_lifecycle(s: &Store) {
    let (_z, _vpc, sw1, seg) = seeds_world(s).await;
    assert_eq!(seg.cidr.to_string(), "192.168.202.0/24");
    // The physical route the operator is told about.
    let routes = s.physical_routes(&OP).await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].prefix.to_string(), "192.168.202.0/24");
    assert_eq!(routes[0].next_hop, ip("192.168.201.20"));

    let t1 = tenant("t1");
    let vm1 = server(s, &t1, "vm-1", "sw1").await;
    let nic: Nic = s.show(&t1, &vm1.nic_ids[0]).await.unwrap();
    assert_eq!(
        nic.ip,
        ip("10.0.0.2"),
        "lowest free address after the gateway"
    );
    assert!(nic.primary && nic.source_dest_check);
    assert_eq!(nic.security_group_ids.len(), 1, "the VPC's default group");
    assert_eq!(s.show::<Subnet>(&t1, &sw1.id).await.unwrap().used, 1);

    // server-create-eip: allocate and bind in one call.
    let eip = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 10,
                bind: Some(BindEip {
                    target: EipTarget::Server("vm-1".into()),
                    mode: EipMode::Nat,
                    allow_reassociation: false,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(eip.ip, ip("192.168.202.1"));
    assert_eq!(eip.nic_id(), Some(nic.id.as_str()));
    assert_eq!(eip.server_id(), Some(vm1.id.as_str()));
    assert_eq!(eip.private_ip(), Some(nic.ip));

    // A second EIP cannot take the same target.
    let e2 = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let err = rule(
        s.bind_eip(
            &t1,
            &e2.id,
            &BindEip {
                target: EipTarget::Nic(nic.id.clone()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code(), "target_has_eip");
    assert_eq!(
        err.to_string(),
        format!("NIC vm-1-eth0 already has EIP 192.168.202.1")
    );

    // Rebinding needs the explicit flag.
    let vm2 = server(s, &t1, "vm-2", "sw1").await;
    let to_vm2 = |allow| BindEip {
        target: EipTarget::Server("vm-2".into()),
        mode: EipMode::Nat,
        allow_reassociation: allow,
    };
    assert_eq!(
        code(s.bind_eip(&t1, &eip.id, &to_vm2(false)).await.unwrap_err()),
        "eip_bound"
    );
    let moved = s.bind_eip(&t1, &eip.id, &to_vm2(true)).await.unwrap();
    assert_eq!(moved.server_id(), Some(vm2.id.as_str()));
    // The old target is free again: e2 can take it.
    s.bind_eip(
        &t1,
        &e2.id,
        &BindEip {
            target: EipTarget::Server("vm-1".into()),
            mode: EipMode::Nat,
            allow_reassociation: false,
        },
    )
    .await
    .unwrap();

    // Bandwidth, unbind, release.
    assert_eq!(
        s.update_eip(
            &t1,
            &eip.id,
            &UpdateEip {
                bandwidth_mbps: Some(50),
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .bandwidth_mbps,
        50
    );
    assert_eq!(
        code(
            s.update_eip(
                &t1,
                &eip.id,
                &UpdateEip {
                    bandwidth_mbps: Some(0),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "invalid_argument"
    );
    assert_eq!(
        code(s.release_eip(&t1, &eip.id).await.unwrap_err()),
        "resource_in_use"
    );
    let unbound = s.unbind_eip(&t1, &eip.id).await.unwrap();
    assert!(unbound.nic_id().is_none() && unbound.private_ip().is_none());
    assert_eq!(
        code(s.unbind_eip(&t1, &eip.id).await.unwrap_err()),
        "eip_not_bound"
    );
    // Two EIPs and the gateway's default SNAT address.
    assert_eq!(s.show::<Subnet>(&OP, &seg.id).await.unwrap().used, 3);
    s.release_eip(&t1, &eip.id).await.unwrap();
    assert_eq!(s.show::<Subnet>(&OP, &seg.id).await.unwrap().used, 2);
    assert_eq!(
        code(s.show::<Eip>(&t1, &eip.id).await.unwrap_err()),
        "not_found"
    );
    // The released address is handed out again.
    let again = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.ip, ip("192.168.202.1"));
    // A chosen address: free, in use, outside.
    let chosen = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 1,
                ip: Some(ip("192.168.202.77")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(chosen.ip, ip("192.168.202.77"));
    let err = rule(
        s.create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 1,
                ip: Some(ip("192.168.202.77")),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.to_string(),
        "address 192.168.202.77 of subnet eip-seg is already in use"
    );
    assert_eq!(
        code(
            s.create_eip(
                &t1,
                &CreateEip {
                    bandwidth_mbps: 1,
                    ip: Some(ip("10.9.9.9")),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "invalid_argument"
    );
}

async fn segments_and_host_networks_never_overlap(s: &Store) {
    seeds_world(s).await;
    let err = rule(
        s.create_subnet(
            &OP,
            &CreateSubnet {
                name: "bad".into(),
                kind: SubnetKind::Eip,
                cidr: Some("192.168.201.0/24".parse().unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code(), "segment_overlaps_host_network");
    assert_eq!(
        err.to_string(),
        "EIP segment 192.168.201.0/24 overlaps host network 192.168.201.0/24"
    );
    let err = rule(
        s.create_host_network(
            &OP,
            &CreateHostNetwork {
                name: "wide".into(),
                cidr: "192.168.0.0/16".parse().unwrap(),
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code(), "host_network_overlaps_segment");
    // Several segments are allowed, but not overlapping.
    s.create_subnet(
        &OP,
        &CreateSubnet {
            name: "seg2".into(),
            kind: SubnetKind::Eip,
            cidr: Some("203.0.113.0/24".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let err = code(
        s.create_subnet(
            &OP,
            &CreateSubnet {
                name: "seg3".into(),
                kind: SubnetKind::Eip,
                cidr: Some("203.0.113.128/25".parse().unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err, "subnet_overlap");
    // Tenants cannot create segments; EIP subnets only live in default.
    assert_eq!(
        code(
            s.create_subnet(
                &tenant("t1"),
                &CreateSubnet {
                    name: "x".into(),
                    kind: SubnetKind::Eip,
                    cidr: Some("198.51.100.0/24".parse().unwrap()),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "forbidden"
    );
    assert_eq!(
        code(
            s.create_subnet(
                &tenant("t1"),
                &CreateSubnet {
                    name: "x".into(),
                    vpc: Some("vpc1".into()),
                    kind: SubnetKind::Eip,
                    cidr: Some("10.5.0.0/24".parse().unwrap()),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "eip_subnet_outside_default_vpc"
    );
}

/// Each gateway's default SNAT address is an EIP segment address it holds
/// like an EIP (no EIP can take it), follows the segments as they come and
/// go, and goes back when the gateway does.
async fn gateways_hold_a_default_snat_address(s: &Store) {
    let gateway = |name: &'static str| async move {
        s.list::<Gateway>(&OP, None, None, None)
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|g| g.name == name)
            .unwrap()
    };
    let clean = || async {
        assert_eq!(
            vpcip_store::testing::invariants(s).await.unwrap(),
            Vec::<String>::new()
        );
    };
    // Registered before any segment: none, until one comes.
    seeds_world(s).await;
    assert_eq!(
        gateway("allinone").await.snat_ip,
        Some(ip("192.168.202.254"))
    );
    let t1 = tenant("t1");
    let taken = code(
        s.create_eip(
            &t1,
            &CreateEip {
                ip: Some(ip("192.168.202.254")),
                bandwidth_mbps: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(taken, "address_in_use");
    // A gateway registered later takes the next one down.
    let gw2 = s
        .create_gateway(
            &OP,
            &CreateGateway {
                name: "gw2".into(),
                underlay_ip: ip("192.168.201.21"),
            },
        )
        .await
        .unwrap();
    assert_eq!(gw2.snat_ip, Some(ip("192.168.202.253")));
    clean().await;
    // Gone with its gateway: an EIP may have it now.
    s.delete_gateway(&OP, "gw2", false).await.unwrap();
    let eip = s
        .create_eip(
            &t1,
            &CreateEip {
                ip: Some(ip("192.168.202.253")),
                bandwidth_mbps: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    s.release_eip(&t1, &eip.id).await.unwrap();
    // A segment that goes takes the gateway's address with it; the
    // gateway moves to another segment, or has none.
    s.create_subnet(
        &OP,
        &CreateSubnet {
            name: "seg2".into(),
            kind: SubnetKind::Eip,
            cidr: Some("203.0.113.0/24".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.delete_subnet(&OP, "eip-seg").await.unwrap();
    assert_eq!(gateway("allinone").await.snat_ip, Some(ip("203.0.113.254")));
    clean().await;
    s.delete_subnet(&OP, "seg2").await.unwrap();
    assert_eq!(gateway("allinone").await.snat_ip, None);
    clean().await;
}

async fn vpc_blocks_and_subnets(s: &Store) {
    seeds_world(s).await;
    let t1 = tenant("t1");
    let vpc = s
        .add_vpc_cidr(&t1, "vpc1", "120.1.2.0/24".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(vpc.secondary_cidrs.len(), 1);
    s.create_subnet(
        &t1,
        &CreateSubnet {
            name: "sw2".into(),
            vpc: Some("vpc1".into()),
            zone: Some("z1".into()),
            cidr: Some("120.1.2.0/25".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let err = rule(
        s.remove_vpc_cidr(&t1, "vpc1", "120.1.2.0/24".parse().unwrap())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code(), "vpc_cidr_in_use");
    assert_eq!(
        err.to_string(),
        "CIDR block 120.1.2.0/24 of VPC vpc1 still holds subnet sw2 (120.1.2.0/25)"
    );
    // Sibling overlap and outside-the-VPC.
    assert_eq!(
        code(
            s.create_subnet(
                &t1,
                &CreateSubnet {
                    name: "sw3".into(),
                    vpc: Some("vpc1".into()),
                    zone: Some("z1".into()),
                    cidr: Some("10.0.0.128/25".parse().unwrap()),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "subnet_overlap"
    );
    assert_eq!(
        code(
            s.create_subnet(
                &t1,
                &CreateSubnet {
                    name: "sw3".into(),
                    vpc: Some("vpc1".into()),
                    zone: Some("z1".into()),
                    cidr: Some("172.16.0.0/24".parse().unwrap()),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "subnet_outside_vpc"
    );
    s.delete_subnet(&t1, "sw2").await.unwrap();
    let vpc = s
        .remove_vpc_cidr(&t1, "vpc1", "120.1.2.0/24".parse().unwrap())
        .await
        .unwrap();
    assert!(vpc.secondary_cidrs.is_empty());
    // Overlapping VPCs of different tenants are fine; names are per tenant.
    let t2 = tenant("t2");
    s.create_vpc(
        &t2,
        &CreateVpc {
            name: "vpc1".into(),
            cidr: "10.0.0.0/8".parse().unwrap(),
            secondary_cidrs: vec![],
            tenant: None,
            client_token: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        code(
            s.create_vpc(
                &t2,
                &CreateVpc {
                    name: "vpc1".into(),
                    cidr: "10.0.0.0/8".parse().unwrap(),
                    secondary_cidrs: vec![],
                    tenant: None,
                    client_token: None
                }
            )
            .await
            .unwrap_err()
        ),
        "name_taken"
    );
    // A VPC with subnets cannot go; the default VPC never goes.
    assert_eq!(
        code(s.delete_vpc(&t1, "vpc1").await.unwrap_err()),
        "resource_in_use"
    );
    assert_eq!(
        code(s.delete_vpc(&OP, "default").await.unwrap_err()),
        "default_vpc"
    );
    assert_eq!(
        code(s.delete_vpc(&t1, "default").await.unwrap_err()),
        "default_vpc"
    );
}

async fn enis_attach_in_their_zone(s: &Store) {
    let (_z1, _vpc, _sw1, _seg) = seeds_world(s).await;
    let t1 = tenant("t1");
    s.create_zone(&OP, &CreateZone { name: "z2".into() })
        .await
        .unwrap();
    s.create_subnet(
        &t1,
        &CreateSubnet {
            name: "sw-z2".into(),
            vpc: Some("vpc1".into()),
            zone: Some("z2".into()),
            cidr: Some("10.2.0.0/24".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let vm1 = server(s, &t1, "vm-1", "sw1").await;
    let eni = s
        .create_nic(
            &t1,
            &CreateNic {
                name: "eni-2".into(),
                subnet: "sw-z2".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let err = rule(s.attach_nic(&t1, "eni-2", "vm-1").await.unwrap_err());
    assert_eq!(err.code(), "zone_mismatch");
    assert_eq!(
        err.to_string(),
        "ENI eni-2 is in zone z2, server vm-1 is in zone z1"
    );
    // Same zone, different subnet than the primary: fine.
    s.create_subnet(
        &t1,
        &CreateSubnet {
            name: "sw1b".into(),
            vpc: Some("vpc1".into()),
            zone: Some("z1".into()),
            cidr: Some("10.1.0.0/24".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let eni3 = s
        .create_nic(
            &t1,
            &CreateNic {
                name: "eni-3".into(),
                subnet: "sw1b".into(),
                ip: Some(ip("10.1.0.202")),
                source_dest_check: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(eni3.ip, ip("10.1.0.202"));
    assert!(!eni3.source_dest_check);
    let attached = s.attach_nic(&t1, "eni-3", "vm-1").await.unwrap();
    assert_eq!(attached.server_id.as_deref(), Some(vm1.id.as_str()));
    assert_eq!(
        code(s.attach_nic(&t1, "eni-3", "vm-1").await.unwrap_err()),
        "nic_attached"
    );
    assert_eq!(s.server_nics(&t1, "vm-1").await.unwrap().len(), 2);
    assert_eq!(
        code(s.delete_nic(&t1, "eni-3").await.unwrap_err()),
        "resource_in_use"
    );
    assert_eq!(
        code(s.detach_nic(&t1, &vm1.nic_ids[0]).await.unwrap_err()),
        "nic_primary"
    );
    s.detach_nic(&t1, "eni-3").await.unwrap();
    s.delete_nic(&t1, "eni-3").await.unwrap();
    // Chosen addresses: in use, out of range.
    assert_eq!(
        code(
            s.create_nic(
                &t1,
                &CreateNic {
                    name: "x".into(),
                    subnet: "sw1".into(),
                    ip: Some(vm1_ip(s, &vm1).await),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "address_in_use"
    );
    let err = rule(
        s.create_nic(
            &t1,
            &CreateNic {
                name: "x".into(),
                subnet: "sw1".into(),
                ip: Some(ip("10.0.1.9")),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.to_string(),
        "address 10.0.1.9 is outside the allocation range 10.0.0.2-10.0.0.254 of subnet sw1"
    );
    // Security groups: up to 5, one type, no managed ones.
    let sg = |name: &str, kind| CreateSecurityGroup {
        name: name.into(),
        vpc: "vpc1".into(),
        kind,
        rules: vec![],
        managed: false,
        client_token: None,
    };
    for n in ["a", "b", "c", "d", "e", "f"] {
        s.create_security_group(&t1, &sg(n, SgKind::Basic))
            .await
            .unwrap();
    }
    s.create_security_group(&t1, &sg("adv", SgKind::Advanced))
        .await
        .unwrap();
    let six: Vec<String> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        code(
            s.update_nic(
                &t1,
                &eni.id,
                &UpdateNic {
                    security_groups: Some(six),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "security_group_count"
    );
    assert_eq!(
        code(
            s.update_nic(
                &t1,
                &eni.id,
                &UpdateNic {
                    security_groups: Some(vec!["a".into(), "adv".into()]),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "security_group_mixed_kinds"
    );
    let managed = CreateSecurityGroup {
        managed: true,
        ..sg("svc", SgKind::Basic)
    };
    assert_eq!(
        code(s.create_security_group(&t1, &managed).await.unwrap_err()),
        "forbidden"
    );
    s.create_security_group(
        &OP,
        &CreateSecurityGroup {
            vpc: s.show::<Vpc>(&t1, "vpc1").await.unwrap().id,
            ..managed
        },
    )
    .await
    .unwrap();
    let svc_id = s
        .list::<SecurityGroup>(&OP, None, None, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|g| g.managed)
        .unwrap()
        .id;
    assert_eq!(
        code(
            s.update_nic(
                &t1,
                &eni.id,
                &UpdateNic {
                    security_groups: Some(vec![svc_id]),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "security_group_managed"
    );
    let upd = s
        .update_nic(
            &t1,
            &eni.id,
            &UpdateNic {
                security_groups: Some(vec!["a".into(), "b".into()]),
                source_dest_check: Some(false),
            },
        )
        .await
        .unwrap();
    assert_eq!(upd.security_group_ids.len(), 2);
    assert!(!upd.source_dest_check);
    assert_eq!(
        code(s.delete_security_group(&t1, "a").await.unwrap_err()),
        "resource_in_use"
    );
}

async fn vm1_ip(s: &Store, vm: &Server) -> Ipv4Addr {
    s.show::<Nic>(&OP, &vm.nic_ids[0]).await.unwrap().ip
}

async fn vip_limits_and_warnings(s: &Store) {
    seeds_world(s).await;
    let t1 = tenant("t1");
    s.create_subnet(
        &t1,
        &CreateSubnet {
            name: "big".into(),
            vpc: Some("vpc1".into()),
            zone: Some("z1".into()),
            cidr: Some("10.8.0.0/16".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let vip = s
        .create_vip(
            &t1,
            &CreateVip {
                name: "vip-1".into(),
                subnet: "big".into(),
                ip: Some(ip("10.8.0.100")),
                client_token: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(vip.ip, ip("10.8.0.100"));
    let mut nics = vec![];
    for i in 0..11 {
        let vm = server(s, &t1, &format!("vm-{i}"), "big").await;
        nics.push(vm.nic_ids[0].clone());
    }
    for n in &nics[..10] {
        let r = s.bind_vip(&t1, "vip-1", n).await.unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
    let err = rule(s.bind_vip(&t1, "vip-1", &nics[10]).await.unwrap_err());
    assert_eq!(err.code(), "vip_nic_limit");
    assert_eq!(
        err.to_string(),
        "VIP vip-1 is already bound to 10 NICs (limit 10)"
    );
    assert_eq!(
        code(s.bind_vip(&t1, "vip-1", &nics[0]).await.unwrap_err()),
        "vip_already_bound"
    );
    // A NIC holds at most 10 VIPs; a server past 8 is warned.
    let holder = &nics[10];
    for i in 0..10 {
        let v = s
            .create_vip(
                &t1,
                &CreateVip {
                    name: format!("v{i}"),
                    subnet: "big".into(),
                    ip: None,
                    client_token: None,
                },
            )
            .await
            .unwrap();
        let r = s.bind_vip(&t1, &v.id, holder).await.unwrap();
        assert_eq!(
            r.warnings.iter().any(|w| w.code == "server_vip_count"),
            i >= 8,
            "bind {i}: {:?}",
            r.warnings
        );
    }
    let v11 = s
        .create_vip(
            &t1,
            &CreateVip {
                name: "v11".into(),
                subnet: "big".into(),
                ip: None,
                client_token: None,
            },
        )
        .await
        .unwrap();
    let err = rule(s.bind_vip(&t1, &v11.id, holder).await.unwrap_err());
    assert_eq!(err.code(), "nic_vip_limit");
    assert_eq!(
        err.to_string(),
        "NIC vm-10-eth0 already holds 10 VIPs (limit 10)"
    );
    // Wrong subnet.
    let other = server(s, &t1, "vm-sw1", "sw1").await;
    assert_eq!(
        code(
            s.bind_vip(&t1, &v11.id, &other.nic_ids[0])
                .await
                .unwrap_err()
        ),
        "vip_subnet_mismatch"
    );
    // Several NICs of one server in the VIP's subnet: a warning.
    let eni = s
        .create_nic(
            &t1,
            &CreateNic {
                name: "second".into(),
                subnet: "big".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    s.attach_nic(&t1, &eni.id, "vm-0").await.unwrap();
    let r = s.bind_vip(&t1, &v11.id, &eni.id).await.unwrap();
    assert_eq!(
        r.warnings
            .iter()
            .map(|w| w.code.as_str())
            .collect::<Vec<_>>(),
        ["server_nics_in_vip_subnet"]
    );
    // One EIP per VIP.
    let bind_vip = |v: &str| BindEip {
        target: EipTarget::Vip(v.into()),
        mode: EipMode::Nat,
        allow_reassociation: false,
    };
    let e1 = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 10,
                bind: Some(bind_vip("vip-1")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        s.show::<Vip>(&t1, "vip-1").await.unwrap().eip_id.as_deref(),
        Some(e1.id.as_str())
    );
    let err = rule(
        s.create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 10,
                bind: Some(bind_vip("vip-1")),
                ..Default::default()
            },
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.to_string(),
        format!("VIP vip-1 already has EIP {}", e1.ip)
    );
    // The failed create left nothing behind: the next EIP gets the same address.
    let e2 = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(u32::from(e2.ip), u32::from(e1.ip) + 1);
    // Deleting a bound VIP is refused; unbinding frees it.
    assert_eq!(
        code(s.delete_vip(&t1, "vip-1").await.unwrap_err()),
        "resource_in_use"
    );
    let unbound = s.unbind_vip(&t1, "vip-1", &nics[0]).await.unwrap();
    assert_eq!(unbound.nic_ids.len(), 9);
    assert!(
        s.show::<Nic>(&t1, &nics[0])
            .await
            .unwrap()
            .vip_ids
            .is_empty()
    );
    assert_eq!(
        code(s.unbind_vip(&t1, "vip-1", &nics[0]).await.unwrap_err()),
        "vip_not_bound"
    );
}

async fn deleting_a_server_unbinds_and_releases(s: &Store) {
    let (_z, _vpc, sw1, _seg) = seeds_world(s).await;
    let t1 = tenant("t1");
    let vm = server(s, &t1, "vm-1", "sw1").await;
    let eni = s
        .create_nic(
            &t1,
            &CreateNic {
                name: "eni-a".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    s.attach_nic(&t1, "eni-a", "vm-1").await.unwrap();
    let vip = s
        .create_vip(
            &t1,
            &CreateVip {
                name: "vip".into(),
                subnet: "sw1".into(),
                ip: None,
                client_token: None,
            },
        )
        .await
        .unwrap();
    s.bind_vip(&t1, "vip", &vm.nic_ids[0]).await.unwrap();
    let eip = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 1,
                bind: Some(BindEip {
                    target: EipTarget::Server("vm-1".into()),
                    mode: EipMode::Nat,
                    allow_reassociation: false,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let eni_eip = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 1,
                bind: Some(BindEip {
                    target: EipTarget::Nic("eni-a".into()),
                    mode: EipMode::Nat,
                    allow_reassociation: false,
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(eni_eip.server_id(), Some(vm.id.as_str()));
    assert_eq!(s.show::<Subnet>(&t1, &sw1.id).await.unwrap().used, 3);
    s.delete_server(&t1, "vm-1").await.unwrap();
    let eip = s.show::<Eip>(&t1, &eip.id).await.unwrap();
    assert!(eip.nic_id().is_none(), "EIP stays allocated, unbound");
    let eni = s.show::<Nic>(&t1, &eni.id).await.unwrap();
    assert!(
        eni.server_id.is_none(),
        "secondary ENI is detached and kept"
    );
    assert!(
        s.show::<Eip>(&t1, &eni_eip.id)
            .await
            .unwrap()
            .server_id()
            .is_none()
    );
    assert!(
        s.show::<Vip>(&t1, &vip.id)
            .await
            .unwrap()
            .nic_ids
            .is_empty()
    );
    assert_eq!(
        s.show::<Subnet>(&t1, &sw1.id).await.unwrap().used,
        2,
        "primary NIC's address released"
    );
}

async fn visible_recipe_step_by_step(s: &Store) {
    seeds_world(s).await;
    let t1 = tenant("t1");
    server(s, &t1, "vm-1", "sw1").await;
    let eip = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 5,
                ip: Some(ip("192.168.202.106")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Step 1: the EIP's block as a secondary CIDR block.
    s.add_vpc_cidr(&t1, "vpc1", "192.168.202.0/24".parse().unwrap())
        .await
        .unwrap();
    // Step 2: vSwitch 2 inside it, in the server's zone.
    s.create_subnet(
        &t1,
        &CreateSubnet {
            name: "vsw2".into(),
            vpc: Some("vpc1".into()),
            zone: Some("z1".into()),
            cidr: Some("192.168.202.0/25".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Visible mode to a NIC that does not own the address is refused.
    let vm1_nic = s.show::<Server>(&t1, "vm-1").await.unwrap().nic_ids[0].clone();
    assert_eq!(
        code(
            s.bind_eip(
                &t1,
                &eip.id,
                &BindEip {
                    target: EipTarget::Nic(vm1_nic),
                    mode: EipMode::Visible,
                    allow_reassociation: false
                }
            )
            .await
            .unwrap_err()
        ),
        "visible_address_mismatch"
    );
    // Every address of vSwitch 2 is public: a NIC there takes an EIP of
    // its tenant, never any other address of the segment.
    let eni_at = |name: &'static str, at: Option<Ipv4Addr>| {
        let t1 = t1.clone();
        async move {
            s.create_nic(
                &t1,
                &CreateNic {
                    name: name.into(),
                    subnet: "vsw2".into(),
                    ip: at,
                    ..Default::default()
                },
            )
            .await
        }
    };
    for at in [None, Some(ip("192.168.202.100"))] {
        let e = eni_at("eni-x", at).await.unwrap_err();
        let message = e.to_string();
        assert_eq!(code(e), "visible_subnet_address", "{message}");
        assert!(message.contains("192.168.202.0/24"), "{message}");
    }
    // Another tenant's EIP is refused the same way.
    let t2 = tenant("t2");
    let theirs = s
        .create_eip(
            &t2,
            &CreateEip {
                bandwidth_mbps: 5,
                ip: Some(ip("192.168.202.110")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        code(eni_at("eni-x", Some(theirs.ip)).await.unwrap_err()),
        "visible_subnet_address"
    );
    // Step 3: an ENI whose primary IP is the EIP; the EIP is bound to it
    // in visible mode at once, and stays so while the ENI exists.
    let eni = eni_at("eni-v", Some(eip.ip)).await.unwrap();
    let now = s.show::<Eip>(&t1, &eip.id).await.unwrap();
    assert_eq!(
        (now.nic_id(), now.mode()),
        (Some(eni.id.as_str()), EipMode::Visible)
    );
    assert_eq!(
        code(s.unbind_eip(&t1, &eip.id).await.unwrap_err()),
        "resource_in_use"
    );
    assert_eq!(
        code(s.release_eip(&t1, &eip.id).await.unwrap_err()),
        "resource_in_use"
    );
    // Step 4: bind (already done: a no-op); step 5: attach.
    let bound = s
        .bind_eip(
            &t1,
            &eip.id,
            &BindEip {
                target: EipTarget::Nic("eni-v".into()),
                mode: EipMode::Visible,
                allow_reassociation: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(bound.mode(), EipMode::Visible);
    assert_eq!(bound.private_ip(), Some(eip.ip));
    s.attach_nic(&t1, &eni.id, "vm-1").await.unwrap();
    assert_eq!(
        s.show::<Eip>(&t1, &eip.id).await.unwrap().server_id(),
        s.show::<Server>(&t1, "vm-1")
            .await
            .ok()
            .map(|v| v.id)
            .as_deref()
    );
    // A VIP in vSwitch 2 (shared by ENIs there) sits on an EIP the same
    // way, which reaches it in visible mode.
    let for_vip = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 5,
                ip: Some(ip("192.168.202.107")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let vip = s
        .create_vip(
            &t1,
            &CreateVip {
                name: "vip-v".into(),
                subnet: "vsw2".into(),
                ip: Some(for_vip.ip),
                client_token: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(vip.eip_id.as_deref(), Some(for_vip.id.as_str()));
    let e = s.show::<Eip>(&t1, &for_vip.id).await.unwrap();
    assert_eq!(
        (e.vip_id(), e.mode(), e.private_ip()),
        (Some(vip.id.as_str()), EipMode::Visible, Some(for_vip.ip))
    );
    // Deleting the VIP frees its EIP, which can then be released.
    s.delete_vip(&t1, &vip.id).await.unwrap();
    assert!(
        s.show::<Eip>(&t1, &for_vip.id)
            .await
            .unwrap()
            .vip_id()
            .is_none()
    );
    s.release_eip(&t1, &for_vip.id).await.unwrap();
}

async fn visible_recipe_in_one_call(s: &Store) {
    seeds_world(s).await;
    let t1 = tenant("t1");
    let vm = server(s, &t1, "vm-1", "sw1").await;
    let out = s
        .create_visible_eip(
            &t1,
            &CreateVisibleEip {
                bandwidth_mbps: 5,
                server: "vm-1".into(),
                client_token: Some("v1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        out.vpc.secondary_cidrs,
        vec!["192.168.202.0/24".parse().unwrap()]
    );
    assert!(out.subnet.cidr.contains(&out.eip.ip));
    assert_eq!(out.nic.ip, out.eip.ip);
    // The router's address in the visible subnet is taken in the EIP
    // segment too: no EIP can ever be given that address.
    let gw = out.subnet.gateway.unwrap();
    assert_ne!(gw, out.eip.ip);
    let seg = s.show::<Subnet>(&OP, "eip-seg").await.unwrap();
    assert_eq!(
        seg.used, 3,
        "the EIP, the visible subnet's gateway and the gateway node's default SNAT address"
    );
    let err = s
        .create_eip(
            &OP,
            &CreateEip {
                ip: Some(gw),
                bandwidth_mbps: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), "address_in_use");
    assert_eq!(out.nic.server_id.as_deref(), Some(vm.id.as_str()));
    assert_eq!(out.eip.mode(), EipMode::Visible);
    assert_eq!(out.eip.nic_id(), Some(out.nic.id.as_str()));
    assert_eq!(s.server_nics(&t1, "vm-1").await.unwrap().len(), 2);
    // Replay with the same token returns the same resources.
    let again = s
        .create_visible_eip(
            &t1,
            &CreateVisibleEip {
                bandwidth_mbps: 5,
                server: "vm-1".into(),
                client_token: Some("v1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.eip.id, out.eip.id);
    // A second one reuses the block and the subnet.
    let two = s
        .create_visible_eip(
            &t1,
            &CreateVisibleEip {
                bandwidth_mbps: 5,
                server: "vm-1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(two.subnet.id, out.subnet.id);
    assert_eq!(two.vpc.secondary_cidrs.len(), 1);
    // A failure half-way leaves nothing: a server in another zone cannot reuse the subnet.
    s.create_zone(&OP, &CreateZone { name: "z2".into() })
        .await
        .unwrap();
    s.create_subnet(
        &t1,
        &CreateSubnet {
            name: "sw-z2".into(),
            vpc: Some("vpc1".into()),
            zone: Some("z2".into()),
            cidr: Some("10.2.0.0/24".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    server(s, &t1, "vm-z2", "sw-z2").await;
    let seg_used = s.show::<Subnet>(&OP, "eip-seg").await.unwrap().used;
    let eips = s
        .list::<Eip>(&t1, None, None, None)
        .await
        .unwrap()
        .items
        .len();
    assert_eq!(
        code(
            s.create_visible_eip(
                &t1,
                &CreateVisibleEip {
                    bandwidth_mbps: 5,
                    server: "vm-z2".into(),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "zone_mismatch"
    );
    assert_eq!(
        s.show::<Subnet>(&OP, "eip-seg").await.unwrap().used,
        seg_used
    );
    assert_eq!(
        s.list::<Eip>(&t1, None, None, None)
            .await
            .unwrap()
            .items
            .len(),
        eips
    );
}

/// 32 clients race for 10 free addresses: exactly 10 win, 22 are told the
/// subnet is exhausted, and no address is handed out twice.
/// Per-tenant quotas: a tenant's EIPs (and VIPs, NICs, VPCs) stop at its
/// quota with an error naming the tenant, the count and the limit; another
/// tenant is not affected; releasing one makes room; 16 racing creates for
/// a quota of 3 make exactly 3.
async fn quotas_hold_under_racing_creates(s: &Store) {
    let s = s.clone().with_quotas(vpcip_model::rules::Quotas {
        vpcs: 2,
        nics: 2,
        vips: 1,
        eips: 3,
    });
    seeds_world(&s).await;
    let t1 = tenant("t1");
    let eip = |s: &Store, who: &'static str| {
        let s = s.clone();
        async move {
            s.create_eip(
                &tenant(who),
                &CreateEip {
                    bandwidth_mbps: 1,
                    ..Default::default()
                },
            )
            .await
        }
    };
    let shared = Arc::new(s.clone());
    let mut tasks = vec![];
    for _ in 0..16 {
        let s = shared.clone();
        tasks.push(tokio::spawn(async move { eip(&s, "t1").await }));
    }
    let (mut made, mut refused) = (vec![], 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(e) => made.push(e),
            Err(e) => {
                let message = e.to_string();
                assert_eq!(code(e), "quota_exceeded", "{message}");
                assert_eq!(message, "tenant t1 already has 3 EIPs: its quota is 3");
                refused += 1;
            }
        }
    }
    assert_eq!((made.len(), refused), (3, 13));
    // Another tenant has its own.
    eip(&s, "t2").await.unwrap();
    // Releasing one makes room for one.
    s.release_eip(&t1, &made[0].id).await.unwrap();
    eip(&s, "t1").await.unwrap();
    assert_eq!(code(eip(&s, "t1").await.unwrap_err()), "quota_exceeded");
    // The other kinds: VIPs, NICs (a server's), VPCs.
    let vip = |name: &'static str| CreateVip {
        name: name.into(),
        subnet: "sw1".into(),
        ip: None,
        client_token: None,
    };
    s.create_vip(&t1, &vip("v1")).await.unwrap();
    assert_eq!(
        code(s.create_vip(&t1, &vip("v2")).await.unwrap_err()),
        "quota_exceeded"
    );
    server(&s, &t1, "vm-1", "sw1").await;
    server(&s, &t1, "vm-2", "sw1").await;
    let third = s
        .create_server(
            &t1,
            &CreateServer {
                name: "vm-3".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(third), "quota_exceeded");
    // (seeds_world made t1's first VPC.)
    s.create_vpc(
        &t1,
        &CreateVpc {
            name: "vpc2".into(),
            cidr: "172.16.0.0/16".parse().unwrap(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let vpc3 = s
        .create_vpc(
            &t1,
            &CreateVpc {
                name: "vpc3".into(),
                cidr: "172.17.0.0/16".parse().unwrap(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(vpc3), "quota_exceeded");
    assert_eq!(
        vpcip_store::testing::invariants(&s).await.unwrap(),
        Vec::<String>::new()
    );
}

/// The crash test's invariant checker finds what it is for: an address
/// whose owner is gone, and one both free and taken.
async fn invariants_catch_a_leak_and_a_double_allocation(s: &Store) {
    seeds_world(s).await;
    let t1 = tenant("t1");
    let eip = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        vpcip_store::testing::invariants(s).await.unwrap(),
        Vec::<String>::new()
    );
    // The EIP's row goes without its address (a half-applied release).
    let mut tx = s.db().begin().await.unwrap();
    tx.exec("DELETE FROM resources WHERE id = $1", &[&eip.id])
        .await
        .unwrap();
    // And its segment's free range takes in a taken address again.
    tx.exec(
        "UPDATE ip_free_ranges SET lo = lo - 1 WHERE subnet_id = $1",
        &[&eip.subnet_id],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let bad = vpcip_store::testing::invariants(s).await.unwrap();
    assert!(
        bad.iter().any(|b| b.contains("which does not exist")),
        "{bad:#?}"
    );
    assert!(
        bad.iter().any(|b| b.contains("both allocated and free")),
        "{bad:#?}"
    );
}

async fn race_for_ten_addresses(s: &Store) {
    s.create_zone(&OP, &CreateZone { name: "z1".into() })
        .await
        .unwrap();
    range_segment(s, "198.51.100.1-198.51.100.10").await;
    let s = Arc::new(s.clone());
    let mut tasks = vec![];
    for i in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_eip(
                &tenant(&format!("t{}", i % 4)),
                &CreateEip {
                    bandwidth_mbps: 1,
                    ..Default::default()
                },
            )
            .await
        }));
    }
    let mut won = BTreeSet::new();
    let mut exhausted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(e) => assert!(won.insert(e.ip), "{} handed out twice", e.ip),
            Err(StoreError::Rule(RuleError::AddressExhausted { .. })) => exhausted += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((won.len(), exhausted), (10, 22));
    assert_eq!(
        vpcip_store::testing::invariants(&s).await.unwrap(),
        Vec::<String>::new()
    );
    let seg: Subnet = s.show(&OP, "seg").await.unwrap();
    assert_eq!(seg.used, 10);
}

/// Allocations (the lowest free address and chosen ones) and releases
/// racing in one small segment: no address handed out twice, none lost,
/// and the segment's count of addresses in use (written at commit) is the
/// number allocated.
async fn racing_allocations_and_releases_keep_the_pool_exact(s: &Store) {
    s.create_zone(&OP, &CreateZone { name: "z1".into() })
        .await
        .unwrap();
    range_segment(s, "198.51.100.1-198.51.100.16").await;
    let s = Arc::new(s.clone());
    let mut tasks = vec![];
    for i in 0..8u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let who = tenant(&format!("t{i}"));
            let mut mine: Vec<String> = vec![];
            for round in 0..12u8 {
                // Odd tasks now and then ask for an address of their own.
                let ip = (i % 2 == 1 && round % 3 == 0).then(|| {
                    format!("198.51.100.{}", 1 + (i + round) % 16)
                        .parse()
                        .unwrap()
                });
                match s
                    .create_eip(
                        &who,
                        &CreateEip {
                            bandwidth_mbps: 1,
                            ip,
                            ..Default::default()
                        },
                    )
                    .await
                {
                    Ok(e) => mine.push(e.id),
                    Err(StoreError::Rule(
                        RuleError::AddressExhausted { .. } | RuleError::AddressInUse { .. },
                    )) => {}
                    Err(e) => panic!("unexpected {e:?}"),
                }
                if round % 2 == 1 && !mine.is_empty() {
                    s.release_eip(&who, &mine.remove(0)).await.unwrap();
                }
            }
            mine.len()
        }));
    }
    let mut kept = 0;
    for t in tasks {
        kept += t.await.unwrap();
    }
    assert_eq!(
        vpcip_store::testing::invariants(&s).await.unwrap(),
        Vec::<String>::new()
    );
    let seg: Subnet = s.show(&OP, "seg").await.unwrap();
    assert_eq!(seg.used, kept as u64);
    let eips = s
        .list::<Eip>(&OP, None, None, Some(1000))
        .await
        .unwrap()
        .items;
    let addrs: BTreeSet<_> = eips.iter().map(|e| e.ip).collect();
    assert_eq!((eips.len(), addrs.len()), (kept, kept));
}

/// EIP segment "seg": the addresses `range` of 198.51.100.0/24.
async fn range_segment(s: &Store, range: &str) {
    s.create_subnet(
        &OP,
        &CreateSubnet {
            name: "seg".into(),
            kind: SubnetKind::Eip,
            range: Some(range.into()),
            prefix_len: Some(24),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

/// Eight clients take a whole pool of several runs (PostgreSQL: rows of
/// 64 addresses each, taken side by side): every address exactly once,
/// then `address_exhausted` for all; a released address in the middle is
/// the next one taken.
async fn racing_allocations_empty_a_pool_of_many_runs(s: &Store) {
    range_segment(s, "198.51.100.1-198.51.100.254").await;
    let s = Arc::new(s.clone());
    let mut tasks = vec![];
    for i in 0..8u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let who = tenant(&format!("t{i}"));
            let mut mine = vec![];
            loop {
                let req = CreateEip {
                    bandwidth_mbps: 1,
                    ..Default::default()
                };
                match s.create_eip(&who, &req).await {
                    Ok(e) => mine.push(e),
                    Err(StoreError::Rule(RuleError::AddressExhausted { .. })) => break mine,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let addrs: BTreeSet<u32> = all.iter().map(|e| u32::from(e.ip)).collect();
    let want: BTreeSet<u32> =
        (u32::from(ip("198.51.100.1"))..=u32::from(ip("198.51.100.254"))).collect();
    assert_eq!((all.len(), &addrs), (254, &want));
    assert_eq!(
        vpcip_store::testing::invariants(&s).await.unwrap(),
        Vec::<String>::new()
    );
    let middle = all.iter().find(|e| e.ip == ip("198.51.100.64")).unwrap();
    let owner = tenant(&middle.tenant);
    s.release_eip(&owner, &middle.id).await.unwrap();
    let again = s
        .create_eip(
            &owner,
            &CreateEip {
                bandwidth_mbps: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.ip, ip("198.51.100.64"));
    let seg: Subnet = s.show(&OP, "seg").await.unwrap();
    assert_eq!(seg.used, 254);
}

/// Eight clients allocate and bind an EIP to one server at once: one gets
/// it, the seven others `target_has_eip` (no server error), and nothing
/// else is left allocated.
async fn racing_binds_to_one_server_refuse_all_but_one(s: &Store) {
    seeds_world(s).await;
    let t1 = tenant("t1");
    let server = s
        .create_server(
            &t1,
            &CreateServer {
                name: "one".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = Arc::new(s.clone());
    let mut tasks = vec![];
    for _ in 0..8 {
        let (s, t1, id) = (s.clone(), t1.clone(), server.id.clone());
        tasks.push(tokio::spawn(async move {
            s.create_eip(
                &t1,
                &CreateEip {
                    bandwidth_mbps: 1,
                    bind: Some(BindEip {
                        target: EipTarget::Server(id),
                        mode: EipMode::Nat,
                        allow_reassociation: false,
                    }),
                    ..Default::default()
                },
            )
            .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(code(e), "target_has_eip"),
        }
    }
    assert_eq!(won, 1);
    let eips = s
        .list::<Eip>(&t1, None, None, Some(100))
        .await
        .unwrap()
        .items;
    assert_eq!(eips.len(), 1);
    assert_eq!(
        vpcip_store::testing::invariants(&s).await.unwrap(),
        Vec::<String>::new()
    );
}

async fn client_tokens_make_creates_idempotent(s: &Store) {
    seeds_world(s).await;
    let t1 = tenant("t1");
    let req = CreateEip {
        bandwidth_mbps: 3,
        client_token: Some("tok-1".into()),
        ..Default::default()
    };
    let a = s.create_eip(&t1, &req).await.unwrap();
    let b = s.create_eip(&t1, &req).await.unwrap();
    assert_eq!(a.id, b.id);
    // Another tenant's identical token is another request.
    let c = s.create_eip(&tenant("t2"), &req).await.unwrap();
    assert_ne!(a.id, c.id);
    // Concurrent duplicates converge on one resource.
    let s2 = Arc::new(s.clone());
    let mut tasks = vec![];
    for _ in 0..8 {
        let s = s2.clone();
        tasks.push(tokio::spawn(async move {
            s.create_server(
                &tenant("t1"),
                &CreateServer {
                    name: "vm-x".into(),
                    subnet: "sw1".into(),
                    client_token: Some("srv".into()),
                    ..Default::default()
                },
            )
            .await
        }));
    }
    let ids: BTreeSet<String> = futures_ids(tasks).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(
        s.list::<Server>(&t1, None, None, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

async fn futures_ids(
    tasks: Vec<tokio::task::JoinHandle<Result<Server, StoreError>>>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in tasks {
        out.insert(t.await.unwrap().unwrap().id);
    }
    out
}

async fn tenants_see_only_their_own(s: &Store) {
    seeds_world(s).await;
    let (t1, t2) = (tenant("t1"), tenant("t2"));
    let vm = server(s, &t1, "vm-1", "sw1").await;
    let eip = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        code(s.show::<Server>(&t2, &vm.id).await.unwrap_err()),
        "not_found"
    );
    assert_eq!(
        code(s.show::<Server>(&t2, "vm-1").await.unwrap_err()),
        "not_found"
    );
    assert_eq!(
        code(s.release_eip(&t2, &eip.id).await.unwrap_err()),
        "not_found"
    );
    assert_eq!(
        code(s.delete_server(&t2, &vm.id).await.unwrap_err()),
        "not_found"
    );
    // t2 cannot bind its EIP to t1's server.
    let e2 = s
        .create_eip(
            &t2,
            &CreateEip {
                bandwidth_mbps: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        code(
            s.bind_eip(
                &t2,
                &e2.id,
                &BindEip {
                    target: EipTarget::Nic(vm.nic_ids[0].clone()),
                    mode: EipMode::Nat,
                    allow_reassociation: false
                }
            )
            .await
            .unwrap_err()
        ),
        "not_found"
    );
    assert!(
        s.list::<Server>(&t2, None, None, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        s.list::<Eip>(&t2, None, None, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // Shared platform resources are visible, not changeable.
    assert_eq!(
        s.list::<Zone>(&t2, None, None, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(s.show::<Vpc>(&t2, "default").await.unwrap().is_default);
    assert_eq!(
        code(s.delete_subnet(&t2, "eip-seg").await.unwrap_err()),
        "forbidden"
    );
    assert_eq!(
        code(
            s.create_zone(&t2, &CreateZone { name: "z9".into() })
                .await
                .unwrap_err()
        ),
        "forbidden"
    );
    // The operator sees everything.
    assert_eq!(
        s.list::<Eip>(&OP, None, None, None)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

async fn lists_are_paged(s: &Store) {
    s.create_subnet(
        &OP,
        &CreateSubnet {
            name: "seg".into(),
            kind: SubnetKind::Eip,
            cidr: Some("203.0.113.0/24".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for _ in 0..25 {
        s.create_eip(
            &tenant("t1"),
            &CreateEip {
                bandwidth_mbps: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let mut seen = BTreeSet::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let p = s
            .list::<Eip>(&tenant("t1"), None, token.as_deref(), Some(10))
            .await
            .unwrap();
        pages += 1;
        for e in &p.items {
            assert!(seen.insert(e.id.clone()));
        }
        match p.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (25, 3));
    assert_eq!(
        code(s.list::<Eip>(&OP, None, None, Some(0)).await.unwrap_err()),
        "invalid_argument"
    );
    assert_eq!(
        code(
            s.list::<Eip>(&OP, None, None, Some(5000))
                .await
                .unwrap_err()
        ),
        "invalid_argument"
    );
}

/// A random allocate/release sequence through the database matches the
/// model's free-range set address for address.
async fn store_ipam_matches_the_model(s: &Store) {
    // More than one run of a new pool (PostgreSQL keeps 64
    // addresses a row): taking and giving back cross their ends.
    range_segment(s, "198.51.100.10-198.51.100.250").await;
    let range = AddrRange {
        first: u32::from(ip("198.51.100.10")),
        last: u32::from(ip("198.51.100.250")),
    };
    let mut model = FreeRanges::new(range);
    let mut held: Vec<Eip> = vec![];
    let t = tenant("t1");
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        match seed % 3 {
            0 if !held.is_empty() => {
                let e = held.swap_remove((seed >> 8) as usize % held.len());
                s.release_eip(&t, &e.id).await.unwrap();
                model.give_back(u32::from(e.ip));
            }
            1 => {
                let want = Ipv4Addr::from(range.first + u32::try_from((seed >> 16) % 241).unwrap());
                let r = s
                    .create_eip(
                        &t,
                        &CreateEip {
                            bandwidth_mbps: 1,
                            ip: Some(want),
                            ..Default::default()
                        },
                    )
                    .await;
                assert_eq!(r.is_ok(), model.take_addr(u32::from(want)), "{want}");
                if let Ok(e) = r {
                    held.push(e);
                }
            }
            _ => {
                let r = s
                    .create_eip(
                        &t,
                        &CreateEip {
                            bandwidth_mbps: 1,
                            ..Default::default()
                        },
                    )
                    .await;
                match (r, model.take_lowest()) {
                    (Ok(e), Some(a)) => {
                        assert_eq!(u32::from(e.ip), a);
                        held.push(e);
                    }
                    (Err(e), None) => assert_eq!(code(e), "address_exhausted"),
                    (r, m) => panic!("store {r:?} vs model {m:?}"),
                }
            }
        }
    }
    let seg: Subnet = s.show(&OP, "seg").await.unwrap();
    assert_eq!(usize::try_from(seg.used).unwrap(), held.len());
}

/// VNIs and router numbers are unique and reused after a delete; servers
/// go to the least loaded host agent; each agent's desired state lists the
/// L2 domains and VTEPs it needs.
async fn overlay_numbers_placement_and_desired_state(s: &Store) {
    use vpcip_model::desired::{AgentRole, RegisterAgent};
    let (_z, vpc1, sw1, _seg) = seeds_world(s).await;
    let t1 = tenant("t1");
    assert!(vpc1.router_index >= 1);
    let sw2 = s
        .create_subnet(
            &t1,
            &CreateSubnet {
                name: "sw2".into(),
                vpc: Some("vpc1".into()),
                zone: Some("z1".into()),
                cidr: Some("10.0.1.0/24".parse().unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .subnet;
    assert!(sw1.vni >= 1 && sw2.vni >= 1 && sw1.vni != sw2.vni);
    let vpc2 = s
        .create_vpc(
            &t1,
            &CreateVpc {
                name: "vpc2".into(),
                cidr: "10.0.0.0/8".parse().unwrap(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_ne!(vpc1.router_index, vpc2.router_index);
    s.delete_subnet(&t1, &sw2.id).await.unwrap();
    let sw3 = s
        .create_subnet(
            &t1,
            &CreateSubnet {
                name: "sw3".into(),
                vpc: Some("vpc2".into()),
                zone: Some("z1".into()),
                cidr: Some("10.0.0.0/24".parse().unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .subnet;
    assert_eq!(sw3.vni, sw2.vni, "a deleted subnet's VNI is free again");

    let reg = |name: &str, role, ip: &str| RegisterAgent {
        name: name.into(),
        role,
        underlay_ip: ip.parse().unwrap(),
    };
    let gw = s
        .register_agent(&OP, &reg("gw1", AgentRole::Gateway, "192.168.201.21"))
        .await
        .unwrap();
    let h1 = s
        .register_agent(&OP, &reg("h1", AgentRole::Host, "192.168.201.11"))
        .await
        .unwrap();
    let h2 = s
        .register_agent(&OP, &reg("h2", AgentRole::Host, "192.168.201.12"))
        .await
        .unwrap();
    let a = server(s, &t1, "a", "sw1").await;
    let b = server(s, &t1, "b", "sw1").await;
    let c = server(s, &t1, "c", "sw3").await;
    assert_eq!(a.host.as_deref(), Some("h1"));
    assert_eq!(b.host.as_deref(), Some("h2"), "the least loaded host");
    assert_eq!(c.host.as_deref(), Some("h1"));
    let err = s
        .create_server(
            &t1,
            &CreateServer {
                name: "d".into(),
                subnet: "sw1".into(),
                host: Some("h2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), "forbidden", "tenants do not choose hosts");
    let err = s
        .create_server(
            &OP,
            &CreateServer {
                name: "d".into(),
                subnet: sw1.id.clone(),
                host: Some("nowhere".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), "not_found");

    let d1 = s.desired(&OP, &h1.id).await.unwrap().host.unwrap();
    assert_eq!(d1.ports.len(), 2);
    let vnis: Vec<u32> = d1.domains.iter().map(|d| d.vni).collect();
    assert!(vnis.contains(&sw1.vni) && vnis.contains(&sw3.vni));
    let dom1 = d1.domains.iter().find(|d| d.vni == sw1.vni).unwrap();
    assert_eq!(dom1.vteps, vec![ip("192.168.201.12"), ip("192.168.201.21")]);
    let dom3 = d1.domains.iter().find(|d| d.vni == sw3.vni).unwrap();
    assert_eq!(dom3.vteps, vec![ip("192.168.201.21")], "only the gateway");
    let d2 = s.desired(&OP, &h2.id).await.unwrap().host.unwrap();
    assert_eq!(d2.ports.len(), 1);
    let g = s.desired(&OP, &gw.id).await.unwrap().gateway.unwrap();
    assert_eq!(g.routers.len(), 2);
    let r1 = g.routers.iter().find(|r| r.vpc_id == vpc1.id).unwrap();
    assert_eq!(r1.index, vpc1.router_index);
    assert_eq!(
        r1.subnets[0].l2.vteps,
        vec![ip("192.168.201.11"), ip("192.168.201.12")]
    );
    assert_eq!(g.eip_segments.len(), 1);
}

on_both!(
    overlay_numbers_placement_and_desired_state,
    seeds_eip_lifecycle,
    segments_and_host_networks_never_overlap,
    gateways_hold_a_default_snat_address,
    vpc_blocks_and_subnets,
    enis_attach_in_their_zone,
    vip_limits_and_warnings,
    deleting_a_server_unbinds_and_releases,
    visible_recipe_step_by_step,
    quotas_hold_under_racing_creates,
    invariants_catch_a_leak_and_a_double_allocation,
    visible_recipe_in_one_call,
    race_for_ten_addresses,
    racing_allocations_and_releases_keep_the_pool_exact,
    racing_allocations_empty_a_pool_of_many_runs,
    racing_binds_to_one_server_refuse_all_but_one,
    client_tokens_make_creates_idempotent,
    tenants_see_only_their_own,
    lists_are_paged,
    store_ipam_matches_the_model,
);

/// The store binds an agent's scope to its one agent, and serializes
/// underlay claims: eight agents racing for one free address get one
/// registration and seven `underlay_in_use`; a gateway deleted while it is
/// the last of bound EIPs needs `force`.
async fn agents_act_for_themselves_and_claim_free_addresses(s: &Store) {
    use vpcip_model::desired::{AgentReport, AgentRole, RegisterAgent};
    use vpcip_model::rules::AgentIdentity;
    seeds_world(s).await;
    let reg = |name: &str, role, ip: &str| RegisterAgent {
        name: name.into(),
        role,
        underlay_ip: ip.parse().unwrap(),
    };
    let gw1 = Scope::Agent(AgentIdentity {
        name: "gw1".into(),
        role: AgentRole::Gateway,
    });
    let me = s
        .register_agent(&gw1, &reg("gw1", AgentRole::Gateway, "192.168.201.21"))
        .await
        .unwrap();
    let h1 = s
        .register_agent(&OP, &reg("h1", AgentRole::Host, "192.168.201.11"))
        .await
        .unwrap();
    for req in [
        reg("h1", AgentRole::Host, "192.168.201.11"),
        reg("gw1", AgentRole::Host, "192.168.201.21"),
        reg("gw2", AgentRole::Gateway, "192.168.201.22"),
    ] {
        let e = s.register_agent(&gw1, &req).await.unwrap_err();
        assert_eq!(code(e), "agent_identity", "{}", req.name);
    }
    let report = AgentReport {
        applied_revision: 1,
        error: None,
        missing_ports: vec![],
        cluster: None,
    };
    s.report_agent(&gw1, &me.id, &report).await.unwrap();
    // A host agent's missing ports show in the status until they appear.
    let waiting = AgentReport {
        missing_ports: vec!["nic-abcdefghjk".into()],
        ..report.clone()
    };
    s.report_agent(&OP, &h1.id, &waiting).await.unwrap();
    let missing = s.status(&OP).await.unwrap().missing_ports;
    assert_eq!(missing.len(), 1);
    assert_eq!(
        (
            missing[0].nic_id.as_str(),
            missing[0].port.as_str(),
            missing[0].host.as_str()
        ),
        ("nic-abcdefghjk", "tabcdefghjk", "h1")
    );
    s.report_agent(&OP, &h1.id, &report).await.unwrap();
    assert!(s.status(&OP).await.unwrap().missing_ports.is_empty());
    s.desired(&gw1, "gw1").await.unwrap();
    assert_eq!(
        code(s.report_agent(&gw1, &h1.id, &report).await.unwrap_err()),
        "agent_identity"
    );
    assert_eq!(
        code(s.desired(&gw1, &h1.id).await.unwrap_err()),
        "agent_identity"
    );
    assert_eq!(code(s.agents(&gw1).await.unwrap_err()), "forbidden");
    // Nothing else either, should a route ever hand an agent's scope on.
    assert_eq!(
        code(s.list::<Eip>(&gw1, None, None, None).await.unwrap_err()),
        "forbidden"
    );
    assert_eq!(
        code(
            s.create_vpc(
                &gw1,
                &CreateVpc {
                    name: "v".into(),
                    cidr: "10.0.0.0/16".parse().unwrap(),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
        ),
        "forbidden"
    );

    // Racing for one address: exactly one gets it.
    let s2 = Arc::new(s.clone());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s2.clone();
        tasks.push(tokio::spawn(async move {
            let req = RegisterAgent {
                name: format!("h-race-{i}"),
                role: AgentRole::Host,
                underlay_ip: "192.168.201.50".parse().unwrap(),
            };
            s.register_agent(&OP, &req).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(code(e), "underlay_in_use"),
        }
    }
    assert_eq!(won, 1);

    // The last gateway of a bound EIP.
    let t1 = tenant("t1");
    let vm = server(s, &t1, "vm-1", "sw1").await;
    s.create_eip(
        &t1,
        &CreateEip {
            bandwidth_mbps: 1,
            bind: Some(BindEip {
                target: EipTarget::Server(vm.id.clone()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.delete_gateway(&OP, "allinone", false).await.unwrap();
    assert_eq!(
        code(s.delete_gateway(&OP, "gw1", false).await.unwrap_err()),
        "last_gateway"
    );
    assert_eq!(
        code(s.delete_gateway(&gw1, "gw1", true).await.unwrap_err()),
        "forbidden"
    );
    s.delete_gateway(&OP, "gw1", true).await.unwrap();
    assert!(s.physical_routes(&OP).await.unwrap().is_empty());
}

on_both!(agents_act_for_themselves_and_claim_free_addresses);

/// An agent token made before tokens named their agent's role acts for no
/// one: refused with a code saying how to replace it.
#[tokio::test]
async fn agent_tokens_without_a_role_are_refused() {
    use vpcip_model::desired::AgentRole;
    let db = common::sqlite().await;
    let s = &db.store;
    let tok = s
        .create_token(
            &OP,
            &CreateToken {
                tenant: "gw1".into(),
                description: String::new(),
                agent: true,
                agent_role: Some(AgentRole::Gateway),
                ec2: false,
            },
        )
        .await
        .unwrap();
    let secret = tok.secret.clone().unwrap();
    assert_eq!(
        s.authenticate(&secret).await.unwrap(),
        Some(Scope::Agent(vpcip_model::rules::AgentIdentity {
            name: "gw1".into(),
            role: AgentRole::Gateway
        }))
    );
    // As the migration leaves an older agent token.
    let mut tx = s.db().begin().await.unwrap();
    tx.exec(
        "UPDATE api_tokens SET agent_role = NULL WHERE id = $1",
        &[&tok.id],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // (Written behind the store's back: its cache of tokens forgotten.)
    s.db().forget_tokens();
    let e = s.authenticate(&secret).await.unwrap_err();
    let message = e.to_string();
    assert_eq!(code(e), "agent_token_without_role");
    assert!(
        message.contains("vpcip token create --agent gw1 --role gateway|host"),
        "{message}"
    );
    let listed = s.list_tokens(&OP).await.unwrap();
    assert_eq!((listed[0].agent, listed[0].agent_role), (true, None));
}

#[tokio::test]
async fn tokens_are_stored_hashed() {
    let db = common::sqlite().await;
    let s = &db.store;
    let tok = s
        .create_token(
            &OP,
            &CreateToken {
                tenant: "t1".into(),
                description: "ci".into(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await
        .unwrap();
    let secret = tok.secret.clone().unwrap();
    assert_eq!(s.authenticate(&secret).await.unwrap(), Some(tenant("t1")));
    assert_eq!(s.authenticate("vpcip_wrong").await.unwrap(), None);
    assert!(
        s.list_tokens(&OP)
            .await
            .unwrap()
            .iter()
            .all(|t| t.secret.is_none())
    );
    // The database holds only the hash.
    let stored = vpcip_store::testing::stored_token_hashes(s).await.unwrap();
    assert_eq!(stored[0], vpcip_store::token_hash(&secret));
    assert!(!stored[0].contains(&secret));
    assert_eq!(
        code(
            s.create_token(
                &tenant("t1"),
                &CreateToken {
                    tenant: "t1".into(),
                    description: String::new(),
                    agent: false,
                    agent_role: None,
                    ec2: false,
                }
            )
            .await
            .unwrap_err()
        ),
        "forbidden"
    );
    s.delete_token(&OP, &tok.id).await.unwrap();
    assert_eq!(s.authenticate(&secret).await.unwrap(), None);
}

#[tokio::test]
async fn operator_creates_for_a_tenant() {
    let db = common::sqlite().await;
    let s = &db.store;
    let v = s
        .create_vpc(
            &OP,
            &CreateVpc {
                name: "v".into(),
                cidr: "10.0.0.0/16".parse().unwrap(),
                secondary_cidrs: vec![],
                tenant: Some("acme".into()),
                client_token: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(v.tenant, "acme");
    assert!(s.show::<Vpc>(&tenant("acme"), "v").await.is_ok());
    assert_eq!(
        code(
            s.create_vpc(
                &tenant("t1"),
                &CreateVpc {
                    name: "v".into(),
                    cidr: "10.0.0.0/16".parse().unwrap(),
                    secondary_cidrs: vec![],
                    tenant: Some("acme".into()),
                    client_token: None
                }
            )
            .await
            .unwrap_err()
        ),
        "forbidden"
    );
    let _: &Scope = &OP;
}

/// On PostgreSQL (several controllers, READ COMMITTED), deleting the last
/// gateway is serialized with a bind in progress: the delete waits for the
/// bind's transaction, then sees the EIP bound and refuses.
#[cfg(feature = "pg-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_gateway_waits_for_a_bind_in_progress() {
    let db = common::postgres().await;
    let s = std::sync::Arc::new(db.store.clone());
    seeds_world(&s).await;
    let t1 = tenant("t1");
    let eip = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // A bind holds the EIP's row…
    let mut tx = s.db().begin().await.unwrap();
    let mut held: Eip = tx.get(&eip.id, true).await.unwrap();
    // …while the operator deletes the only gateway.
    let s2 = s.clone();
    let delete = tokio::spawn(async move { s2.delete_gateway(&OP, "allinone", false).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !delete.is_finished(),
        "the delete did not wait for the bind"
    );
    held.binding = EipBinding::Nic {
        nic_id: "nic-held".into(),
        server_id: None,
        vpc_id: "vpc-held".into(),
        private_ip: ip("10.0.0.9"),
        mode: EipMode::Nat,
    };
    tx.update(&held).await.unwrap();
    tx.commit().await.unwrap();
    let e = delete.await.unwrap().unwrap_err();
    assert_eq!(code(e), "last_gateway");
}

/// PostgreSQL restarted under a running controller (here: every backend
/// of the store's connections terminated, as a restart does): the pool's
/// connections are all stale, and no request fails for it.
#[cfg(feature = "pg-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_costs_no_request() {
    let db = common::postgres().await;
    let s = &db.store;
    seeds_world(s).await;
    // Several connections in the pool: concurrent reads.
    let read = || s.list::<Vpc>(&OP, None, None, None);
    let all = tokio::join!(
        read(),
        read(),
        read(),
        read(),
        read(),
        read(),
        read(),
        read()
    );
    for r in [all.0, all.1, all.2, all.3, all.4, all.5, all.6, all.7] {
        r.unwrap();
    }
    // From outside the store, as a restart would: its backends end.
    let admin = sqlx::PgPool::connect(&vpcip_store::testing::pg_admin_url())
        .await
        .unwrap();
    let name: String = {
        let mut tx = s.db().begin_read().await.unwrap();
        let rows = tx.rows("SELECT current_database()", &[]).await.unwrap();
        tx.commit().await.unwrap();
        rows[0].text(0).unwrap()
    };
    let killed: Vec<(bool,)> =
        sqlx::query_as("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&name)
            .fetch_all(&admin)
            .await
            .unwrap();
    assert!(killed.len() >= 2, "only {} backends to end", killed.len());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Every request after it succeeds: reads and a write.
    let all = tokio::join!(
        read(),
        read(),
        read(),
        read(),
        read(),
        read(),
        read(),
        read()
    );
    for r in [all.0, all.1, all.2, all.3, all.4, all.5, all.6, all.7] {
        r.expect("a read failed on a connection the restart closed");
    }
    s.ping().await.unwrap();
    let _: Zone = s
        .create_zone(&OP, &CreateZone { name: "z9".into() })
        .await
        .expect("a write failed on a connection the restart closed");
    // A database that is gone: the store's health (the controller's
    // /healthz) says so.
    sqlx::query(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    assert!(s.ping().await.is_err(), "ping answers without a database");
}

/// A read transaction is one snapshot: what commits while it reads is not
/// seen half (on PostgreSQL the default, READ COMMITTED, took a snapshot per
/// statement, so a reader of several tables could see an EIP's binding row
/// and not its document; the crash test caught it).
async fn a_reader_sees_one_snapshot(s: &Store) {
    seeds_world(s).await;
    async fn count(tx: &mut vpcip_store::Tx) -> i64 {
        tx.rows("SELECT COUNT(*) FROM resources WHERE kind = 'eip'", &[])
            .await
            .unwrap()[0]
            .int(0)
            .unwrap()
    }
    let mut reader = s.db().begin_read().await.unwrap();
    let before = count(&mut reader).await;
    s.create_eip(
        &tenant("t1"),
        &CreateEip {
            bandwidth_mbps: 5,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        count(&mut reader).await,
        before,
        "the reader saw a later write"
    );
    reader.commit().await.unwrap();
    let mut after = s.db().begin_read().await.unwrap();
    assert_eq!(count(&mut after).await, before + 1);
    after.commit().await.unwrap();
}

on_both!(a_reader_sees_one_snapshot);

/// Several controllers on one PostgreSQL: a token revoked on one is
/// refused by the others as soon as they hear the revocation, though they
/// had it in their caches of tokens (a fresh look-up would find it gone:
/// the test waits for the notification, not for the cache's age limit).
#[cfg(feature = "pg-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_revoked_on_one_controller_is_refused_by_the_others() {
    let a = vpcip_store::testing::postgres().await;
    let b = Store::open(&a.url).await.unwrap();
    let tok = a
        .store
        .create_token(
            &OP,
            &CreateToken {
                tenant: "t1".into(),
                description: String::new(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await
        .unwrap();
    let secret = tok.secret.clone().unwrap();
    // Known to both, and kept by both.
    for s in [&a.store, &b] {
        assert_eq!(s.authenticate(&secret).await.unwrap(), Some(tenant("t1")));
    }
    let kept = std::time::Instant::now();
    a.store.delete_token(&OP, &tok.id).await.unwrap();
    assert_eq!(a.store.authenticate(&secret).await.unwrap(), None);
    // Refused before the kept entry would have aged out: the notification
    // did it.
    let deadline = kept + vpcip_store::TOKEN_CACHE_MAX_AGE - std::time::Duration::from_secs(1);
    while b.authenticate(&secret).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the other controller still takes the revoked token"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Several controllers on one PostgreSQL: a commit on one wakes the
/// watchers of the others at once (LISTEN/NOTIFY), not at their deadline
/// (nothing polls); reads then see it.
#[cfg(feature = "pg-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_on_one_controller_wakes_the_watchers_of_the_others() {
    let a = vpcip_store::testing::postgres().await;
    let b = Store::open(&a.url).await.unwrap();
    let before = b.db().revision().await.unwrap();
    for round in 0..3 {
        let waiter = {
            let b = b.clone();
            let after = before + round;
            tokio::spawn(async move {
                b.wait_for_revision(after, std::time::Duration::from_secs(60))
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "the watcher returned with no commit");
        let _: Vpc = a
            .store
            .create_vpc(
                &OP,
                &CreateVpc {
                    name: format!("v{round}"),
                    cidr: "10.0.0.0/8".parse().unwrap(),
                    tenant: Some("acme".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        // Woken by the other controller's commit: far within the 60 s
        // deadline it would otherwise wait for.
        let now = tokio::time::timeout(std::time::Duration::from_secs(20), waiter)
            .await
            .expect("the other controller's commit did not wake the watcher")
            .unwrap()
            .unwrap();
        assert!(now > before + round, "woken at revision {now}");
        assert_eq!(
            b.show::<Vpc>(&OP, &format!("v{round}")).await.unwrap().name,
            format!("v{round}")
        );
    }
}

/// A request dropped while its transaction begins (a client that hangs up,
/// an agent killed in its long poll) leaves no transaction open on the
/// pooled connection. sqlx counts a transaction only once its BEGIN has
/// answered, so a BEGIN cancelled in flight went back to the pool still
/// open, and the next writer ran inside a stranger's READ ONLY snapshot
/// ("cannot execute INSERT in a read-only transaction"; the crash test
/// caught it).
#[cfg(feature = "pg-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_begin_cancelled_in_flight_leaves_no_transaction_behind() {
    let db = common::postgres().await;
    let s = &db.store;
    for i in 0..600u32 {
        // Dropped after 0 to 19 of its polls: before, during and after the
        // BEGIN's round trip.
        let yields = async {
            for _ in 0..i % 20 {
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            biased;
            _ = s.db().begin_read() => {}
            _ = yields => {}
        }
    }
    // Every connection of the pool at once (each held; all but the one
    // that LISTENs): a writer's transaction is its own, read-write at
    // PostgreSQL's default level.
    let mut held = vec![];
    for _ in 1..vpcip_store::sql::default_pg_connections() {
        let mut tx = s.db().begin().await.unwrap();
        let row = tx
            .rows(
                "SELECT current_setting('transaction_read_only'), \
                 current_setting('transaction_isolation')",
                &[],
            )
            .await
            .unwrap()
            .remove(0);
        let mode = (row.text(0).unwrap(), row.text(1).unwrap());
        assert_eq!(
            mode,
            ("off".to_string(), "read committed".to_string()),
            "a writer's transaction began inside a cancelled reader's"
        );
        held.push(tx);
    }
}

/// An EIP's traffic history: rates between a gateway's samples, a sample
/// a slot, summed over gateways, a restarted agent's counts from zero;
/// its owner's only; gone with the EIP.
async fn eip_traffic_history_rates_and_ends_with_the_eip(s: &Store) {
    use vpcip_model::desired::{self, CountersReport, EipTraffic, RegisterAgent};
    use vpcip_model::rules::AgentIdentity;
    let s = s.clone().with_traffic_sample_secs(1);
    seeds_world(&s).await;
    let t1 = tenant("t1");
    let eip = s
        .create_eip(
            &t1,
            &CreateEip {
                bandwidth_mbps: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut gws = vec![];
    for (name, ip) in [("gw1", "192.168.201.21"), ("gw2", "192.168.201.22")] {
        let scope = Scope::Agent(AgentIdentity {
            name: name.into(),
            role: desired::AgentRole::Gateway,
        });
        let me = s
            .register_agent(
                &scope,
                &RegisterAgent {
                    name: name.into(),
                    role: desired::AgentRole::Gateway,
                    underlay_ip: ip.parse().unwrap(),
                },
            )
            .await
            .unwrap();
        gws.push((scope, me.id));
    }
    let report = |packets: u64, bytes: u64| CountersReport {
        counters: vec![EipTraffic {
            packets_in: packets,
            bytes_in: bytes,
            packets_out: packets / 2,
            bytes_out: bytes / 2,
            drops_in: 0,
            drops_out: packets / 10,
            ..EipTraffic::none(eip.ip)
        }],
        vip_holders: None,
        programmed: None,
        nic_drops: vec![],
    };
    // gw1 counts 0, then 1,000 packets / 1,000,000 bytes, then its agent
    // restarts and counts 500 / 250,000 again; gw2 counts alongside.
    let mut times = vec![];
    for (gw1, gw2) in [
        ((0, 0), (0, 0)),
        ((1000, 1_000_000), (100, 0)),
        ((500, 250_000), (200, 0)),
    ] {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        times.push(at);
        s.report_counters(&gws[0].0, &gws[0].1, &report(gw1.0, gw1.1))
            .await
            .unwrap();
        s.report_counters(&gws[1].0, &gws[1].1, &report(gw2.0, gw2.1))
            .await
            .unwrap();
        // The next report in the next slot (whole seconds).
        let next = (at + 1) * 1000;
        let now_ms = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(
            next.saturating_sub(now_ms) + 20,
        ))
        .await;
    }
    let h = s.eip_traffic_history(&t1, &eip.id).await.unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    let secs = |i: usize| (times[i] - times[i - 1]) as f64;
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    assert!(
        close(h[0].packets_in, 1000.0 / secs(1) + 100.0 / secs(1)),
        "{h:?}"
    );
    assert!(close(h[0].bits_in, 8_000_000.0 / secs(1)), "{h:?}");
    assert!(close(h[0].bits_out, 4_000_000.0 / secs(1)), "{h:?}");
    assert!(
        close(h[0].drops_out, 100.0 / secs(1) + 10.0 / secs(1)),
        "{h:?}"
    );
    // gw1 went back to 500: counted from zero, not as a negative rate.
    assert!(
        close(h[1].packets_in, 500.0 / secs(2) + 100.0 / secs(2)),
        "{h:?}"
    );
    assert!(close(h[1].bits_in, 2_000_000.0 / secs(2)), "{h:?}");
    assert!(h[0].at < h[1].at);
    // Another tenant's: not found.
    let e = s
        .eip_traffic_history(&tenant("t2"), &eip.id)
        .await
        .unwrap_err();
    assert_eq!(code(e), "not_found");
    // The platform's evidence of the route: the last packet in. An agent
    // restarting with its counts at zero is no packet.
    let last_in = |s: Store| async move {
        s.segment_reach(&OP).await.unwrap()[0]
            .last_in
            .clone()
            .unwrap()
            .at
    };
    let before = last_in(s.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    s.report_counters(&gws[0].0, &gws[0].1, &report(0, 0))
        .await
        .unwrap();
    assert_eq!(last_in(s.clone()).await, before);
    // Released: the next holder of the address starts from nothing, also
    // when a gateway's report was still on its way.
    s.release_eip(&t1, &eip.id).await.unwrap();
    s.report_counters(&gws[0].0, &gws[0].1, &report(9000, 9_000_000))
        .await
        .unwrap();
    let again = s
        .create_eip(
            &tenant("t2"),
            &CreateEip {
                ip: Some(eip.ip),
                bandwidth_mbps: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        s.eip_traffic_history(&tenant("t2"), &again.id)
            .await
            .unwrap()
            .is_empty()
    );
    let c = s.eip_counters(&tenant("t2"), &again.id).await.unwrap();
    assert_eq!(c.traffic, EipTraffic::none(eip.ip));
}
on_both!(eip_traffic_history_rates_and_ends_with_the_eip);

/// The console's reads: a VPC's contents by its indexes (only that VPC's,
/// only the scope's), and a text search (case aside, `%` and `_` as
/// themselves, only the scope's).
async fn views_read_one_vpc_and_search_within_the_scope(s: &Store) {
    let (_, vpc, sw1, _) = seeds_world(s).await;
    let t1 = tenant("t1");
    let t2 = tenant("t2");
    let web = server(s, &t1, "web", "sw1").await;
    let db = server(s, &t1, "db", "sw1").await;
    let eni = s
        .create_nic(
            &t1,
            &CreateNic {
                name: "eni-x".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let vip = s
        .create_vip(
            &t1,
            &CreateVip {
                name: "vip-1".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let bound = |target: EipTarget, name: &str| CreateEip {
        name: Some(name.into()),
        bandwidth_mbps: 10,
        bind: Some(BindEip {
            target,
            mode: EipMode::Nat,
            allow_reassociation: false,
        }),
        ..Default::default()
    };
    let e_web = s
        .create_eip(&t1, &bound(EipTarget::Server(web.id.clone()), "Web-Front"))
        .await
        .unwrap();
    let e_vip = s
        .create_eip(&t1, &bound(EipTarget::Vip(vip.id.clone()), "for-vip"))
        .await
        .unwrap();
    let unbound = s
        .create_eip(
            &t1,
            &CreateEip {
                name: Some("spare".into()),
                bandwidth_mbps: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // A second VPC of t1's, with a server and an EIP: not in vpc1's view.
    s.create_vpc(
        &t1,
        &CreateVpc {
            name: "vpc2".into(),
            cidr: "172.16.0.0/16".parse().unwrap(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.create_subnet(
        &t1,
        &CreateSubnet {
            name: "sw2".into(),
            vpc: Some("vpc2".into()),
            zone: Some("z1".into()),
            cidr: Some("172.16.0.0/24".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let other = server(s, &t1, "other", "sw2").await;
    let e_other = s
        .create_eip(
            &t1,
            &bound(EipTarget::Server(other.id.clone()), "elsewhere"),
        )
        .await
        .unwrap();
    let (seen, c) = s.vpc_contents(&t1, &vpc.name).await.unwrap();
    assert_eq!(seen.id, vpc.id);
    let ids = |v: Vec<String>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        ids(c.subnets.iter().map(|x| x.id.clone()).collect()),
        ids(vec![sw1.id.clone()])
    );
    assert_eq!(
        ids(c.servers.iter().map(|x| x.id.clone()).collect()),
        ids(vec![web.id.clone(), db.id.clone()])
    );
    assert_eq!(
        ids(c.nics.iter().map(|x| x.id.clone()).collect()),
        ids(vec![
            web.nic_ids[0].clone(),
            db.nic_ids[0].clone(),
            eni.id.clone()
        ])
    );
    assert_eq!(c.vips.len(), 1);
    assert_eq!(
        ids(c.eips.iter().map(|x| x.id.clone()).collect()),
        ids(vec![e_web.id.clone(), e_vip.id.clone()])
    );
    assert_eq!(c.groups.len(), 1, "the VPC's default group");
    // The operator sees the same VPC the same; another tenant not at all.
    let (_, by_op) = s.vpc_contents(&OP, &vpc.id).await.unwrap();
    assert_eq!(by_op.eips.len(), 2);
    assert_eq!(
        code(s.vpc_contents(&t2, &vpc.id).await.unwrap_err()),
        "not_found"
    );
    // Search: by name case aside, by address prefix, by the server bound.
    let found = |v: Vec<Eip>| ids(v.into_iter().map(|e| e.id).collect());
    assert_eq!(
        found(s.search::<Eip>(&t1, "web-front").await.unwrap()),
        ids(vec![e_web.id.clone()])
    );
    assert_eq!(
        found(s.search::<Eip>(&t1, "192.168.202.").await.unwrap()),
        ids(vec![
            e_web.id.clone(),
            e_vip.id.clone(),
            unbound.id.clone(),
            e_other.id.clone()
        ])
    );
    assert_eq!(
        found(s.search::<Eip>(&t1, &other.id).await.unwrap()),
        ids(vec![e_other.id.clone()])
    );
    // `%` and `_` are themselves, not patterns.
    assert!(s.search::<Eip>(&t1, "%").await.unwrap().is_empty());
    assert!(s.search::<Eip>(&t1, "web_front").await.unwrap().is_empty());
    // Another tenant finds none of them; the operator all.
    assert!(
        s.search::<Eip>(&t2, "192.168.202.")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.search::<Eip>(&t2, "web-front").await.unwrap().is_empty());
    assert_eq!(s.search::<Eip>(&OP, "192.168.202.").await.unwrap().len(), 4);
}
on_both!(views_read_one_vpc_and_search_within_the_scope);
