//! The simulator's world, built through the API: agents, VPCs, VMs with
//! their NICs, and an EIP bound to every NIC but the measured ones.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use vpcip_client::Client;
use vpcip_model::desired::{Agent, AgentRole, RegisterAgent};
use vpcip_model::*;

use super::sim::in_parallel;
use super::{Scale, VMS_PER_VPC};

/// The world: agents, VPCs, VMs, NICs, bound EIPs. Returns the tenant's
/// client, the agents, and the NICs left without an EIP.
pub(super) async fn build(
    op: &Client,
    s: &Scale,
) -> anyhow::Result<(Client, Vec<Agent>, Vec<String>)> {
    let started = Instant::now();
    let _: Zone = op
        .post(paths::ZONES, &CreateZone { name: "z1".into() })
        .await?;
    let _: HostNetwork = op
        .post(
            paths::HOST_NETWORKS,
            &CreateHostNetwork {
                name: "underlay".into(),
                cidr: "198.18.0.0/16".parse()?,
            },
        )
        .await?;
    op.create_subnet(&CreateSubnet {
        name: "seg".into(),
        kind: SubnetKind::Eip,
        cidr: Some("100.64.0.0/13".parse()?),
        ..Default::default()
    })
    .await?;
    let mut agents = Vec::new();
    for g in 1..=2u32 {
        let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 255, 0)) + g);
        let _: Gateway = op
            .post(
                paths::GATEWAYS,
                &CreateGateway {
                    name: format!("gw{g}"),
                    underlay_ip: ip,
                },
            )
            .await?;
        agents.push(
            op.post::<_, Agent>(
                paths::AGENTS,
                &RegisterAgent {
                    name: format!("gw{g}"),
                    role: AgentRole::Gateway,
                    underlay_ip: ip,
                },
            )
            .await?,
        );
    }
    let hosts = {
        let op = op.clone();
        in_parallel(s.hosts, 16, move |i| {
            let op = op.clone();
            async move {
                let ip = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 10)) + u32::try_from(i)?;
                Ok(op
                    .post::<_, Agent>(
                        paths::AGENTS,
                        &RegisterAgent {
                            name: format!("h{i}"),
                            role: AgentRole::Host,
                            underlay_ip: ip.into(),
                        },
                    )
                    .await?)
            }
        })
        .await?
    };
    agents.extend(hosts);
    let tok: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "bench".into(),
                description: String::new(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await?;
    let t = op.with_token(tok.secret.as_deref().context("token secret")?);
    let vpcs = s.vms.div_ceil(VMS_PER_VPC);
    {
        let t = t.clone();
        in_parallel(vpcs, 8, move |v| {
            let t = t.clone();
            async move {
                let _: Vpc = t
                    .post(
                        paths::VPCS,
                        &CreateVpc {
                            name: format!("v{v}"),
                            cidr: "10.0.0.0/16".parse()?,
                            secondary_cidrs: vec![],
                            tenant: None,
                            client_token: None,
                        },
                    )
                    .await?;
                t.create_subnet(&CreateSubnet {
                    name: format!("s{v}"),
                    vpc: Some(format!("v{v}")),
                    zone: Some("z1".into()),
                    cidr: Some("10.0.0.0/24".parse()?),
                    ..Default::default()
                })
                .await?;
                Ok(())
            }
        })
        .await?;
    }
    println!(
        "scale: {} agents, {vpcs} VPCs made in {:.0} s",
        agents.len(),
        started.elapsed().as_secs_f64()
    );
    let nics: Vec<Vec<String>> = {
        let t = t.clone();
        let per = s.nics_per_vm;
        in_parallel(s.vms, 16, move |i| {
            let t = t.clone();
            async move {
                let subnet = format!("s{}", i / VMS_PER_VPC);
                let vm: vpcip_model::Server = t
                    .post(
                        paths::SERVERS,
                        &CreateServer {
                            name: format!("vm{i}"),
                            subnet: subnet.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
                let mut nics = vm.nic_ids.clone();
                for k in 1..per {
                    let nic: Nic = t
                        .post(
                            paths::NICS,
                            &CreateNic {
                                name: format!("vm{i}-eni{k}"),
                                subnet: subnet.clone(),
                                ..Default::default()
                            },
                        )
                        .await?;
                    let _: Nic = t
                        .action(
                            paths::NIC_ATTACH,
                            &nic.id,
                            &AttachNic {
                                server: vm.id.clone(),
                            },
                        )
                        .await?;
                    nics.push(nic.id);
                }
                Ok(nics)
            }
        })
        .await?
    };
    let mut nics: Vec<String> = nics.into_iter().flatten().collect();
    println!(
        "scale: {} VMs, {} NICs made after {:.0} s",
        s.vms,
        nics.len(),
        started.elapsed().as_secs_f64()
    );
    // The measured binds' NICs: spread over the VPCs.
    let step = (nics.len() / s.binds.max(1)).max(1);
    let mut free = Vec::new();
    let mut i = nics.len();
    while free.len() < s.binds && i >= step {
        i -= step;
        free.push(nics.remove(i));
    }
    {
        let t = t.clone();
        let nics = Arc::new(nics);
        let n = nics.len();
        in_parallel(n, 16, move |i| {
            let t = t.clone();
            let nics = nics.clone();
            async move {
                t.create_eip(&CreateEip {
                    bandwidth_mbps: 100,
                    bind: Some(BindEip {
                        target: EipTarget::Nic(nics[i].clone()),
                        mode: EipMode::Nat,
                        allow_reassociation: false,
                    }),
                    ..Default::default()
                })
                .await?;
                Ok(())
            }
        })
        .await?;
        println!(
            "scale: {n} EIPs bound after {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok((t, agents, free))
}
