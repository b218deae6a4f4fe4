//! `vpcip <resource> <verb>`: each verb is one API call (or a page walk),
//! printed as a table or as JSON.

use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vpcip_client::Client;
use vpcip_model::*;

use crate::cli::*;
use crate::table::{GatewayHealth, Tabular, print_list, print_one};
use vpcip_model::desired::{Agent, AgentRole, EipCounters, VipHolding};

struct Ctx {
    client: Client,
    output: Output,
}

impl Ctx {
    async fn list<T: DeserializeOwned + Serialize + Tabular>(
        &self,
        collection: &str,
        parent: Option<&str>,
    ) -> anyhow::Result<()> {
        let items: Vec<T> = self.client.list_all(collection, parent).await?;
        print_list(&items, self.output)
    }

    async fn show<T: DeserializeOwned + Serialize>(
        &self,
        collection: &str,
        id: &str,
    ) -> anyhow::Result<()> {
        let item: T = self.client.show(collection, id).await?;
        print_one(&item, self.output)
    }

    async fn create<B: Serialize, T: DeserializeOwned + Serialize>(
        &self,
        collection: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let item: T = self.client.post(&format!("/v1/{collection}"), body).await?;
        print_one(&item, self.output)?;
        Ok(item)
    }

    async fn delete(&self, collection: &str, id: &str) -> anyhow::Result<()> {
        self.client.remove(collection, id).await?;
        if self.output == Output::Table {
            println!("deleted {id}");
        }
        Ok(())
    }

    async fn action<B: Serialize, T: DeserializeOwned + Serialize>(
        &self,
        collection: &str,
        id: &str,
        action: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let item: T = self.client.action(collection, id, action, body).await?;
        print_one(&item, self.output)?;
        Ok(item)
    }

    /// Warnings go to stderr so that `-o json` output stays clean.
    fn warn(&self, warnings: &[Warning]) {
        for w in warnings {
            eprintln!("warning: {} ({})", w.message, w.code);
        }
    }
}

pub async fn run(cmd: Resource, global: &Global) -> anyhow::Result<()> {
    let ctx = Ctx {
        client: Client::new(&global.url, global.token.as_deref()),
        output: global.output,
    };
    match cmd {
        Resource::Zone(c) => match c {
            ZoneCmd::List => ctx.list::<Zone>("zones", None).await,
            ZoneCmd::Show(k) => ctx.show::<Zone>("zones", &k.id).await,
            ZoneCmd::Create { name } => ctx
                .create::<_, Zone>("zones", &CreateZone { name })
                .await
                .map(drop),
            ZoneCmd::Delete(k) => ctx.delete("zones", &k.id).await,
        },
        Resource::HostNetwork(c) => match c {
            HostNetworkCmd::List => ctx.list::<HostNetwork>("host-networks", None).await,
            HostNetworkCmd::Show(k) => ctx.show::<HostNetwork>("host-networks", &k.id).await,
            HostNetworkCmd::Create { name, cidr } => ctx
                .create::<_, HostNetwork>("host-networks", &CreateHostNetwork { name, cidr })
                .await
                .map(drop),
            HostNetworkCmd::Delete(k) => ctx.delete("host-networks", &k.id).await,
        },
        Resource::Gateway(c) => match c {
            GatewayCmd::List => {
                let gateways: Vec<Gateway> = ctx.client.list_all("gateways", None).await?;
                let agents: Vec<Agent> = ctx.client.get("/v1/agents").await?;
                let rows: Vec<GatewayHealth> = gateways
                    .into_iter()
                    .map(|g| GatewayHealth {
                        agent: agents
                            .iter()
                            .find(|a| a.name == g.name && a.role == AgentRole::Gateway)
                            .cloned(),
                        gateway: g,
                    })
                    .collect();
                print_list(&rows, ctx.output)
            }
            GatewayCmd::Show(k) => ctx.show::<Gateway>("gateways", &k.id).await,
            GatewayCmd::Register { name, address } => ctx
                .create::<_, Gateway>(
                    "gateways",
                    &CreateGateway {
                        name,
                        underlay_ip: address,
                    },
                )
                .await
                .map(drop),
            GatewayCmd::Delete { id, force } => {
                ctx.client.delete_gateway(&id, force).await?;
                if ctx.output == Output::Table {
                    println!("deleted {id}");
                }
                Ok(())
            }
        },
        Resource::Host(HostCmd::List) => {
            let agents: Vec<Agent> = ctx.client.get("/v1/agents").await?;
            let hosts: Vec<Agent> = agents
                .into_iter()
                .filter(|a| a.role == AgentRole::Host)
                .collect();
            print_list(&hosts, ctx.output)
        }
        Resource::Route(RouteCmd::List) => {
            let routes: Vec<PhysicalRoute> = ctx.client.get("/v1/physical-routes").await?;
            print_list(&routes, ctx.output)
        }
        Resource::Vpc(c) => match c {
            VpcCmd::List => ctx.list::<Vpc>("vpcs", None).await,
            VpcCmd::Show(k) => ctx.show::<Vpc>("vpcs", &k.id).await,
            VpcCmd::Create {
                name,
                cidr,
                secondary,
                tenant,
                client_token,
            } => ctx
                .create::<_, Vpc>(
                    "vpcs",
                    &CreateVpc {
                        name,
                        cidr,
                        secondary_cidrs: secondary,
                        tenant,
                        client_token,
                    },
                )
                .await
                .map(drop),
            VpcCmd::Delete(k) => ctx.delete("vpcs", &k.id).await,
            VpcCmd::AddCidr { vpc, cidr } => ctx
                .action::<_, Vpc>("vpcs", &vpc, "add-cidr", &VpcCidrChange { cidr })
                .await
                .map(drop),
            VpcCmd::RemoveCidr { vpc, cidr } => ctx
                .action::<_, Vpc>("vpcs", &vpc, "remove-cidr", &VpcCidrChange { cidr })
                .await
                .map(drop),
        },
        Resource::Subnet(c) => match c {
            SubnetCmd::List(l) => ctx.list::<Subnet>("subnets", l.parent.as_deref()).await,
            SubnetCmd::Show(k) => ctx.show::<Subnet>("subnets", &k.id).await,
            SubnetCmd::Create {
                name,
                vpc,
                zone,
                kind,
                cidr,
                range,
                prefix_len,
                gateway,
                client_token,
            } => {
                let req = CreateSubnet {
                    name,
                    vpc,
                    zone,
                    kind: match kind {
                        SubnetType::Guest => SubnetKind::Guest,
                        SubnetType::Eip => SubnetKind::Eip,
                    },
                    cidr,
                    range,
                    prefix_len,
                    gateway,
                    client_token,
                };
                let created = ctx.client.create_subnet(&req).await?;
                print_one(&created.subnet, ctx.output)?;
                if ctx.output == Output::Table && created.subnet.kind == SubnetKind::Eip {
                    println!("\nConfigure this static route on the physical router(s):");
                    print_list(&created.physical_routes, ctx.output)?;
                }
                ctx.warn(&created.warnings);
                Ok(())
            }
            SubnetCmd::Delete(k) => ctx.delete("subnets", &k.id).await,
        },
        Resource::SecurityGroup(c) => match c {
            SgCmd::List(l) => {
                ctx.list::<SecurityGroup>("security-groups", l.parent.as_deref())
                    .await
            }
            SgCmd::Show(k) => ctx.show::<SecurityGroup>("security-groups", &k.id).await,
            SgCmd::Create {
                name,
                vpc,
                kind,
                rules,
                managed,
            } => {
                let rules = rules
                    .iter()
                    .map(|r| parse_rule(r))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let req = CreateSecurityGroup {
                    name,
                    vpc,
                    kind: match kind {
                        SgType::Basic => SgKind::Basic,
                        SgType::Advanced => SgKind::Advanced,
                    },
                    rules,
                    managed,
                    client_token: None,
                };
                ctx.create::<_, SecurityGroup>("security-groups", &req)
                    .await
                    .map(drop)
            }
            SgCmd::Delete(k) => ctx.delete("security-groups", &k.id).await,
        },
        Resource::Vm(c) => match c {
            VmCmd::List => ctx.list::<Server>("servers", None).await,
            VmCmd::Show(k) => ctx.show::<Server>("servers", &k.id).await,
            VmCmd::Create {
                name,
                subnet,
                zone,
                ip,
                security_groups,
                host,
                client_token,
            } => ctx
                .create::<_, Server>(
                    "servers",
                    &CreateServer {
                        name,
                        subnet,
                        zone,
                        ip,
                        security_groups,
                        host,
                        client_token,
                    },
                )
                .await
                .map(drop),
            VmCmd::Delete(k) => ctx.delete("servers", &k.id).await,
            VmCmd::Nics(k) => {
                let nics: Vec<Nic> = ctx
                    .client
                    .get(&format!("/v1/servers/{}/nics", k.id))
                    .await?;
                print_list(&nics, ctx.output)
            }
        },
        Resource::Nic(c) => match c {
            NicCmd::List(l) => ctx.list::<Nic>("nics", l.parent.as_deref()).await,
            NicCmd::Show(k) => ctx.show::<Nic>("nics", &k.id).await,
            NicCmd::Create {
                name,
                subnet,
                ip,
                security_groups,
                no_source_dest_check,
                client_token,
            } => ctx
                .create::<_, Nic>(
                    "nics",
                    &CreateNic {
                        name,
                        subnet,
                        ip,
                        security_groups,
                        source_dest_check: Some(!no_source_dest_check),
                        client_token,
                    },
                )
                .await
                .map(drop),
            NicCmd::Update {
                id,
                security_groups,
                source_dest_check,
            } => {
                let req = UpdateNic {
                    security_groups: (!security_groups.is_empty()).then_some(security_groups),
                    source_dest_check: source_dest_check.map(|f| matches!(f, OnOff::On)),
                };
                let nic: Nic = ctx.client.patch(&format!("/v1/nics/{id}"), &req).await?;
                print_one(&nic, ctx.output)
            }
            NicCmd::GuestConfig { nic, guest, remove } => {
                nic_guest_config(&ctx, &nic, guest, remove).await
            }
            NicCmd::Attach { id, server } => ctx
                .action::<_, Nic>("nics", &id, "attach", &AttachNic { server })
                .await
                .map(drop),
            NicCmd::Detach(k) => ctx
                .action::<_, Nic>("nics", &k.id, "detach", &serde_json::json!({}))
                .await
                .map(drop),
            NicCmd::Delete(k) => ctx.delete("nics", &k.id).await,
        },
        Resource::Vip(c) => match c {
            c @ VipCmd::GuestConfig { .. } => guest_config(&ctx, c).await,
            VipCmd::List(l) => ctx.list::<Vip>("vips", l.parent.as_deref()).await,
            VipCmd::Show(k) => {
                let vip: Vip = ctx.client.show("vips", &k.id).await?;
                let holding: VipHolding = ctx
                    .client
                    .get(&format!("/v1/vips/{}/holder", vip.id))
                    .await?;
                match ctx.output {
                    Output::Json => {
                        let mut v = serde_json::to_value(&vip)?;
                        v["holder"] = serde_json::to_value(&holding)?;
                        println!("{}", serde_json::to_string_pretty(&v)?);
                    }
                    Output::Table => {
                        print_one(&vip, ctx.output)?;
                        let held = match (&holding.nic_id, &holding.mac) {
                            (Some(nic), Some(mac)) if holding.bound => format!("{nic} ({mac})"),
                            (Some(nic), Some(mac)) => {
                                format!("{nic} ({mac}), NOT bound to this VIP")
                            }
                            (None, Some(mac)) => format!("{mac}, not a NIC of the subnet"),
                            _ => "- (no router has resolved it yet)".into(),
                        };
                        println!("held by:  {held}");
                    }
                }
                Ok(())
            }
            VipCmd::Create {
                name,
                subnet,
                ip,
                client_token,
            } => ctx
                .create::<_, Vip>(
                    "vips",
                    &CreateVip {
                        name,
                        subnet,
                        ip,
                        client_token,
                    },
                )
                .await
                .map(drop),
            VipCmd::Bind { id, nic } => {
                let r: WithWarnings<Vip> = ctx.action("vips", &id, "bind", &VipNic { nic }).await?;
                ctx.warn(&r.warnings);
                Ok(())
            }
            VipCmd::Unbind { id, nic } => ctx
                .action::<_, Vip>("vips", &id, "unbind", &VipNic { nic })
                .await
                .map(drop),
            VipCmd::Delete(k) => ctx.delete("vips", &k.id).await,
        },
        Resource::Eip(c) => eip(&ctx, c).await,
        Resource::Status => status(&ctx).await,
        Resource::Token(c) => match c {
            TokenCmd::List => {
                let tokens: Vec<Token> = ctx.client.get("/v1/tokens").await?;
                print_list(&tokens, ctx.output)
            }
            TokenCmd::Create {
                tenant,
                description,
                agent,
                role,
            } => {
                let t: Token = ctx
                    .client
                    .post(
                        "/v1/tokens",
                        &CreateToken {
                            agent: agent.is_some(),
                            tenant: agent.or(tenant).unwrap_or_default(),
                            description,
                            agent_role: role.map(AgentRole::from),
                        },
                    )
                    .await?;
                print_one(&t, ctx.output)?;
                if ctx.output == Output::Table {
                    eprintln!("The secret is shown once; vpcip keeps only its hash.");
                }
                Ok(())
            }
            TokenCmd::Delete(k) => ctx.delete("tokens", &k.id).await,
        },
    }
}

fn target_of(t: TargetArgs) -> Option<EipTarget> {
    t.server
        .map(EipTarget::Server)
        .or(t.nic.map(EipTarget::Nic))
        .or(t.vip.map(EipTarget::Vip))
}

fn mode_of(m: Mode) -> EipMode {
    match m {
        Mode::Nat => EipMode::Nat,
        Mode::Visible => EipMode::Visible,
    }
}

/// `vpcip vip guest-config`: the vendor manuals' guest commands, or keepalived.conf.
async fn guest_config(ctx: &Ctx, c: VipCmd) -> anyhow::Result<()> {
    let VipCmd::GuestConfig {
        vip,
        nic,
        guest: guest_args,
        remove,
        keepalived,
        vrrp,
        vrid,
        advert_int,
        lvs_director,
        lvs_backend,
        backends,
        ports,
    } = c
    else {
        return Ok(());
    };
    use vpcip_model::guest;
    let vip: Vip = ctx.client.show("vips", &vip).await?;
    let nic: Nic = ctx.client.show("nics", &nic).await?;
    let subnet: Subnet = ctx.client.show("subnets", &nic.subnet_id).await?;
    if !vip.nic_ids.contains(&nic.id) && !lvs_backend {
        eprintln!(
            "warning: VIP {} is not bound to NIC {}: the data plane drops what it sends from the VIP (vpcip vip bind {} --nic {})",
            vip.ip, nic.name, vip.name, nic.name
        );
    }
    let (os, ifname, connection, device) = guest_names(ctx, &nic, guest_args).await?;
    let me = guest::GuestNic {
        ifname: &ifname,
        connection: &connection,
        ip: nic.ip,
        subnet: subnet.cidr,
        gateway: subnet.gateway,
        device,
    };
    let params = guest::VrrpParams {
        rank: vip.nic_ids.iter().position(|n| *n == nic.id).unwrap_or(0),
        vrid: vrid.unwrap_or_else(|| guest::vrid_of(vip.ip)),
        advert_cs: advert_int,
    };
    let check_off = |n: &Nic, why: &str| {
        if n.source_dest_check {
            eprintln!(
                "warning: NIC {}'s source/destination check is on: {why}, which the data plane drops (vpcip nic update {} --source-dest-check off)",
                n.name, n.name
            );
        }
    };
    if lvs_director {
        check_off(&nic, "a director forwards the clients' packets");
        let mut ips = Vec::new();
        for key in &backends {
            let b: Nic = ctx.client.show("nics", key).await?;
            if b.subnet_id != nic.subnet_id {
                bail!(
                    "backend {} is in subnet {}, the director in {}: direct routing reaches only its own subnet",
                    b.name,
                    b.subnet_id,
                    nic.subnet_id
                );
            }
            check_off(&b, "a backend answers from the VIP");
            ips.push(b.ip);
        }
        let ports = if ports.is_empty() {
            vec![guest::LvsPort {
                udp: false,
                port: 80,
            }]
        } else {
            ports
        };
        print!("{}", guest::lvs_director_nft(vip.ip, &ifname, &ports, &ips));
    } else if lvs_backend {
        check_off(&nic, "a backend answers from the VIP");
        print!("{}", guest::lvs_backend(vip.ip, &ifname, remove));
    } else if vrrp {
        print!(
            "{}",
            guest::vrrp_command(&vip.name, vip.ip, subnet.cidr, &me, &params)
        );
    } else if keepalived {
        let mut peers = Vec::new();
        for id in vip.nic_ids.iter().filter(|n| **n != nic.id) {
            let peer: Nic = ctx.client.show("nics", id).await?;
            peers.push(peer.ip);
        }
        print!(
            "{}",
            guest::keepalived_conf(&vip.name, vip.ip, subnet.cidr, &me, &peers, &params)
        );
    } else {
        print!("{}", guest::vip_config(os, &me, vip.ip, remove));
    }
    Ok(())
}

/// The guest's OS, interface, NetworkManager connection and the NIC's
/// place on its server (0 when it is not attached: say --ifname then).
async fn guest_names(
    ctx: &Ctx,
    nic: &Nic,
    args: GuestArgs,
) -> anyhow::Result<(vpcip_model::guest::GuestOs, String, String, usize)> {
    use vpcip_model::guest::GuestOs;
    let os = match args.os {
        Os::Centos => GuestOs::Centos,
        Os::Ubuntu => GuestOs::Ubuntu,
        Os::Windows => GuestOs::Windows,
        Os::Linux => GuestOs::Linux,
    };
    let device = match &nic.server_id {
        Some(id) => {
            let server: Server = ctx.client.show("servers", id).await?;
            server
                .nic_ids
                .iter()
                .position(|n| *n == nic.id)
                .unwrap_or(0)
        }
        None => {
            eprintln!(
                "warning: NIC {} is not attached to a server: rendered as its primary NIC (attach it: vpcip nic attach {} --server <server>)",
                nic.name, nic.name
            );
            0
        }
    };
    let ifname = args.ifname.unwrap_or_else(|| match (os, device) {
        (GuestOs::Windows, 0) => "Ethernet".into(),
        (GuestOs::Windows, d) => format!("Ethernet {}", d + 1),
        (_, d) => format!("eth{d}"),
    });
    let connection = args
        .connection
        .unwrap_or_else(|| format!("System {ifname}"));
    Ok((os, ifname, connection, device))
}

/// `vpcip nic guest-config`: the guest side of a (secondary) NIC.
async fn nic_guest_config(
    ctx: &Ctx,
    key: &str,
    args: GuestArgs,
    remove: bool,
) -> anyhow::Result<()> {
    let nic: Nic = ctx.client.show("nics", key).await?;
    let subnet: Subnet = ctx.client.show("subnets", &nic.subnet_id).await?;
    let (os, ifname, connection, device) = guest_names(ctx, &nic, args).await?;
    let me = vpcip_model::guest::GuestNic {
        ifname: &ifname,
        connection: &connection,
        ip: nic.ip,
        subnet: subnet.cidr,
        gateway: subnet.gateway,
        device,
    };
    print!("{}", vpcip_model::guest::nic_config(os, &me, remove));
    Ok(())
}

/// `vpcip status`.
async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    use vpcip_model::desired::SystemStatus;
    let s: SystemStatus = ctx.client.get("/v1/status").await?;
    let unhealthy = s.agents.iter().filter(|a| !a.healthy).count();
    let bad = unhealthy > 0 || !s.differing.is_empty() || s.agents.is_empty();
    if ctx.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("controller   revision {}", s.revision);
        if s.agents.is_empty() {
            println!("agents       none registered");
        }
        for a in &s.agents {
            let ago = s.now - a.agent.last_seen;
            println!(
                "{:<12} {:<14} {:<9} applied {} (lag {}), last report {} s ago{}",
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
        if s.differing.is_empty() {
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
    }
    if bad {
        std::process::exit(3);
    }
    Ok(())
}

/// An EIP by address, ID or name.
async fn find_eip(ctx: &Ctx, key: &str) -> anyhow::Result<Eip> {
    if let Ok(ip) = key.parse::<Ipv4Addr>() {
        let all: Vec<Eip> = ctx.client.list_all("eips", None).await?;
        return all
            .into_iter()
            .find(|e| e.ip == ip)
            .with_context(|| format!("no EIP {ip} that you can see"));
    }
    Ok(ctx.client.show("eips", key).await?)
}

/// The seeds' "ping the EIP from outside and tcpdump on the gateway", made
/// one command: the gateway counts every packet for a bound EIP, so the
/// counter moving while traffic is sent answers whether the physical
/// network routes the EIP to the gateway.
async fn check_route(ctx: &Ctx, key: &str, wait: u64) -> anyhow::Result<()> {
    let eip = find_eip(ctx, key).await?;
    if eip.private_ip.is_none() {
        bail!(
            "EIP {} is not bound: the gateway counts only bound EIPs; bind it, then check",
            eip.ip
        );
    }
    let path = format!("/v1/eips/{}/counters", eip.id);
    let no_report = || {
        anyhow::anyhow!(
            "the gateway has not reported counters for {} lately: is its agent running? (vpcip gateway list)",
            eip.ip
        )
    };
    // The baseline is the gateway's latest report, taken before the prompt:
    // whatever is sent after the prompt counts (gateways report every 2 s;
    // a packet counted a little before the prompt proves the route too).
    let start = now_secs();
    let before: EipCounters = ctx.client.get(&path).await?;
    if before.as_of < start - 10 {
        return Err(no_report());
    }
    eprintln!(
        "Send traffic to {} from the physical network now (e.g. ping {} from outside); watching the gateway's counters for {wait} s…",
        eip.ip, eip.ip
    );
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let after = report_after(
        ctx,
        &path,
        start.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)),
    )
    .await?
    .ok_or_else(no_report)?;
    let gateway = after
        .gateway
        .clone()
        .unwrap_or_else(|| "the gateway".into());
    let arrived = after
        .traffic
        .packets_in
        .saturating_sub(before.traffic.packets_in);
    if arrived > 0 {
        println!(
            "OK: {arrived} packets for {} reached {gateway} in {} s; the physical network routes it to the gateway",
            eip.ip,
            after.as_of - before.as_of
        );
        return Ok(());
    }
    let routes: Vec<PhysicalRoute> = ctx
        .client
        .get("/v1/physical-routes")
        .await
        .unwrap_or_default();
    let hint = routes
        .iter()
        .find(|r| r.prefix.contains(&eip.ip))
        .map(|r| {
            format!(
                ": the physical network needs the route {} via {} (gateway {})",
                r.prefix, r.next_hop, r.gateway
            )
        })
        .unwrap_or_default();
    println!(
        "NOT REACHED: no packet for {} reached {gateway} in {} s (was traffic sent?){hint}",
        eip.ip,
        after.as_of - before.as_of
    );
    std::process::exit(3)
}

/// The first counters report made after `t` (10 s at most).
async fn report_after(ctx: &Ctx, path: &str, t: i64) -> anyhow::Result<Option<EipCounters>> {
    for _ in 0..20 {
        let c: EipCounters = ctx.client.get(path).await?;
        if c.as_of > t {
            return Ok(Some(c));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Ok(None)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn eip(ctx: &Ctx, c: EipCmd) -> anyhow::Result<()> {
    match c {
        EipCmd::List(l) => ctx.list::<Eip>("eips", l.parent.as_deref()).await,
        EipCmd::Show(k) => {
            let eip = find_eip(ctx, &k.id).await?;
            let counters: EipCounters = ctx
                .client
                .get(&format!("/v1/eips/{}/counters", eip.id))
                .await?;
            match ctx.output {
                Output::Json => {
                    let mut v = serde_json::to_value(&eip)?;
                    v["counters"] = serde_json::to_value(&counters)?;
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Output::Table => {
                    print_one(&eip, ctx.output)?;
                    let t = &counters.traffic;
                    println!(
                        "traffic in:  {} packets, {} bytes\ntraffic out: {} packets, {} bytes\nlimiter:     {} Mbit/s, dropped {} packets in, {} out\ncounted by:  {}",
                        t.packets_in,
                        t.bytes_in,
                        t.packets_out,
                        t.bytes_out,
                        eip.bandwidth_mbps,
                        t.drops_in,
                        t.drops_out,
                        counters
                            .gateway
                            .as_deref()
                            .unwrap_or("- (not bound, or not counted yet)")
                    );
                }
            }
            Ok(())
        }
        EipCmd::CheckRoute { eip, wait } => check_route(ctx, &eip, wait).await,
        EipCmd::Create {
            bandwidth,
            target,
            mode,
            visible,
            eni_name,
            subnet,
            ip,
            name,
            client_token,
            algs,
        } => {
            if visible && !algs.is_empty() {
                bail!(
                    "--alg is for NAT mode: a visible EIP is not translated, so the protocols need no helper"
                );
            }
            if visible {
                let Some(server) = target.server else {
                    bail!("--visible builds an ENI for a server: give --server");
                };
                let req = CreateVisibleEip {
                    name,
                    subnet,
                    ip,
                    bandwidth_mbps: bandwidth,
                    server,
                    eni_name,
                    security_groups: vec![],
                    client_token,
                };
                let out: VisibleEip = ctx.client.post("/v1/eips/visible", &req).await?;
                if ctx.output == Output::Json {
                    return print_one(&out, ctx.output);
                }
                print_one(&out.eip, ctx.output)?;
                println!(
                    "\nVPC {} now has block {}; ENI {} ({}) in subnet {} carries the EIP and is attached to {}.",
                    out.vpc.name,
                    out.subnet.cidr,
                    out.nic.name,
                    out.nic.ip,
                    out.subnet.name,
                    out.nic.server_id.as_deref().unwrap_or("-")
                );
                return Ok(());
            }
            let bind = target_of(target).map(|t| BindEip {
                target: t,
                mode: mode_of(mode),
                allow_reassociation: false,
            });
            let req = CreateEip {
                name,
                subnet,
                ip,
                bandwidth_mbps: bandwidth,
                bind,
                algs,
                client_token,
            };
            let e = ctx.client.create_eip(&req).await?;
            print_one(&e, ctx.output)
        }
        EipCmd::Bind {
            id,
            target,
            mode,
            allow_reassociation,
        } => {
            let t = target_of(target).context("give --server, --nic or --vip")?;
            let e = ctx
                .client
                .bind_eip(
                    &id,
                    &BindEip {
                        target: t,
                        mode: mode_of(mode),
                        allow_reassociation,
                    },
                )
                .await?;
            print_one(&e, ctx.output)
        }
        EipCmd::Unbind(k) => ctx
            .action::<_, Eip>("eips", &k.id, "unbind", &serde_json::json!({}))
            .await
            .map(drop),
        EipCmd::Update {
            id,
            bandwidth,
            algs,
        } => {
            let algs = match algs {
                None => None,
                Some(v) if v == ["none"] => Some(vec![]),
                Some(v) => Some(
                    v.iter()
                        .map(|a| a.parse::<Alg>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(anyhow::Error::msg)?,
                ),
            };
            let e: Eip = ctx
                .client
                .patch(
                    &format!("/v1/eips/{id}"),
                    &UpdateEip {
                        bandwidth_mbps: bandwidth,
                        algs,
                    },
                )
                .await?;
            print_one(&e, ctx.output)
        }
        EipCmd::Release(k) => ctx.delete("eips", &k.id).await,
    }
}

/// `DIRECTION:PROTOCOL[:PORTS]:REMOTE`, e.g. `ingress:tcp:80-443:0.0.0.0/0`.
fn parse_rule(s: &str) -> anyhow::Result<SgRule> {
    let parts: Vec<&str> = s.split(':').collect();
    let (dir, proto, ports, remote) = match parts.as_slice() {
        [d, p, r] => (*d, *p, None, *r),
        [d, p, ports, r] => (*d, *p, Some(*ports), *r),
        _ => bail!("rule {s:?} is not DIRECTION:PROTOCOL[:PORTS]:REMOTE"),
    };
    let direction = match dir {
        "ingress" | "in" => Direction::Ingress,
        "egress" | "out" => Direction::Egress,
        _ => bail!("rule {s:?}: direction must be ingress or egress"),
    };
    let protocol = match proto {
        "all" => Protocol::All,
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        _ => bail!("rule {s:?}: protocol must be all, tcp, udp or icmp"),
    };
    let (port_min, port_max) = match ports {
        None => (None, None),
        Some(p) => {
            let (a, b) = p.split_once('-').unwrap_or((p, p));
            (
                Some(
                    a.parse()
                        .with_context(|| format!("rule {s:?}: bad port {a:?}"))?,
                ),
                Some(
                    b.parse()
                        .with_context(|| format!("rule {s:?}: bad port {b:?}"))?,
                ),
            )
        }
    };
    let (remote_cidr, remote_group) = match remote.parse() {
        Ok(net) => (Some(net), None),
        Err(_) => (None, Some(remote.to_string())),
    };
    Ok(SgRule {
        direction,
        protocol,
        port_min,
        port_max,
        remote_cidr,
        remote_group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse() {
        let r = parse_rule("ingress:tcp:80-443:0.0.0.0/0").unwrap();
        assert_eq!((r.port_min, r.port_max), (Some(80), Some(443)));
        assert_eq!(r.remote_cidr.unwrap().to_string(), "0.0.0.0/0");
        let r = parse_rule("egress:all:sg-web").unwrap();
        assert_eq!(r.remote_group.as_deref(), Some("sg-web"));
        assert!(parse_rule("sideways:tcp:x").is_err());
        assert!(parse_rule("ingress:tcp:eighty:0.0.0.0/0").is_err());
    }
}
