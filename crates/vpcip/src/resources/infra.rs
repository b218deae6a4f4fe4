//! Zones, host networks, gateways, hosts, physical routes, API tokens.

use super::*;

pub(super) async fn zone(ctx: &Ctx, c: ZoneCmd) -> anyhow::Result<()> {
    match c {
        ZoneCmd::List => ctx.list::<Zone>(None).await,
        ZoneCmd::Show(k) => ctx.show::<Zone>(&k.id).await,
        ZoneCmd::Create { name } => ctx.create::<_, Zone>(&CreateZone { name }).await.map(drop),
        ZoneCmd::Delete(k) => ctx.delete(paths::ZONE, &k.id).await,
    }
}

pub(super) async fn host_network(ctx: &Ctx, c: HostNetworkCmd) -> anyhow::Result<()> {
    match c {
        HostNetworkCmd::List => ctx.list::<HostNetwork>(None).await,
        HostNetworkCmd::Show(k) => ctx.show::<HostNetwork>(&k.id).await,
        HostNetworkCmd::Create { name, cidr } => ctx
            .create::<_, HostNetwork>(&CreateHostNetwork { name, cidr })
            .await
            .map(drop),
        HostNetworkCmd::Delete(k) => ctx.delete(paths::HOST_NETWORK, &k.id).await,
    }
}

pub(super) async fn gateway(ctx: &Ctx, c: GatewayCmd) -> anyhow::Result<()> {
    match c {
        GatewayCmd::List => {
            let gateways: Vec<Gateway> = ctx.client.list(None).await?;
            let agents: Vec<Agent> = ctx.client.get(paths::AGENTS).await?;
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
        GatewayCmd::Show(k) => ctx.show::<Gateway>(&k.id).await,
        GatewayCmd::Register { name, address } => ctx
            .create::<_, Gateway>(&CreateGateway {
                name,
                underlay_ip: address,
            })
            .await
            .map(drop),
        GatewayCmd::Delete { id, force } => {
            ctx.client.delete_gateway(&id, force).await?;
            if ctx.output == Output::Table {
                println!("deleted {id}");
            }
            Ok(())
        }
        GatewayCmd::Update {
            id,
            bgp_peer,
            peer_as,
            local_as,
            no_bfd,
            no_bgp,
        } => {
            let bgp = if no_bgp {
                Some(None)
            } else if bgp_peer.is_empty() {
                anyhow::bail!(
                    "say what to change: --bgp-peer IP --peer-as AS --local-as AS, or --no-bgp"
                );
            } else {
                let Some(local_as) = local_as else {
                    anyhow::bail!("--local-as is needed with --bgp-peer: the gateway's own AS");
                };
                Some(Some(BgpConfig {
                    local_as,
                    peers: bgp_peers(&bgp_peer, &peer_as)?,
                    bfd: !no_bfd,
                }))
            };
            let req = UpdateGateway { bgp, drained: None };
            ctx.update::<_, Gateway>(&id, &req).await.map(drop)
        }
        GatewayCmd::Drain { id, timeout } => drain(ctx, &id, timeout).await,
        GatewayCmd::Undrain { id } => {
            let req = UpdateGateway {
                bgp: None,
                drained: Some(false),
            };
            ctx.update::<_, Gateway>(&id, &req).await.map(drop)
        }
    }
}

/// Pairs each BGP peer with its AS: one AS for all, or one per peer.
fn bgp_peers(ips: &[Ipv4Addr], ases: &[u32]) -> anyhow::Result<Vec<BgpPeer>> {
    match ases {
        [one] => Ok(ips
            .iter()
            .map(|&ip| BgpPeer { ip, peer_as: *one })
            .collect()),
        many if many.len() == ips.len() => Ok(ips
            .iter()
            .zip(many)
            .map(|(&ip, &peer_as)| BgpPeer { ip, peer_as })
            .collect()),
        _ => anyhow::bail!(
            "{} --peer-as for {} --bgp-peer: give one AS for all peers, or one per peer",
            ases.len(),
            ips.len()
        ),
    }
}

/// Drains gateway `id`, then waits until its agent carries nothing and
/// announces nothing (the others have taken its VPCs over).
async fn drain(ctx: &Ctx, id: &str, timeout: u64) -> anyhow::Result<()> {
    let req = UpdateGateway {
        bgp: None,
        drained: Some(true),
    };
    let gw: Gateway = ctx
        .client
        .patch(&paths::at(paths::GATEWAY, &[id]), &req)
        .await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
    loop {
        let agents: Vec<Agent> = ctx.client.get(paths::AGENTS).await?;
        let agent = agents
            .iter()
            .find(|a| a.name == gw.name && a.role == AgentRole::Gateway);
        let idle = match agent.and_then(|a| a.cluster.as_ref()) {
            Some(c) => c.carrying.is_empty() && c.announced == 0,
            // No agent (or one that never reported): nothing passes there.
            None => agent.is_none_or(|a| a.last_seen == 0),
        };
        if idle {
            if ctx.output == Output::Table {
                println!(
                    "drained {}: it carries no VPC and announces nothing; it can be stopped (`vpcip gateway undrain {}` brings it back)",
                    gw.name, gw.name
                );
            } else {
                print_one(&gw, ctx.output)?;
            }
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            let carrying = agent
                .and_then(|a| a.cluster.as_ref())
                .map(|c| format!("slots {:?}, {} routes announced", c.carrying, c.announced))
                .unwrap_or_default();
            anyhow::bail!(
                "gateway {} is drained but still carries traffic after {timeout}s ({carrying}): is another gateway's agent healthy? (`vpcip gateway list`)",
                gw.name
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

pub(super) async fn token(ctx: &Ctx, c: TokenCmd) -> anyhow::Result<()> {
    match c {
        TokenCmd::List => {
            let tokens: Vec<Token> = ctx.client.get(paths::TOKENS).await?;
            print_list(&tokens, ctx.output)
        }
        TokenCmd::Create {
            tenant,
            description,
            agent,
            role,
            ec2,
        } => {
            let t: Token = ctx
                .client
                .post(
                    paths::TOKENS,
                    &CreateToken {
                        agent: agent.is_some(),
                        tenant: agent.or(tenant).unwrap_or_default(),
                        description,
                        agent_role: role.map(AgentRole::from),
                        ec2,
                    },
                )
                .await?;
            print_one(&t, ctx.output)?;
            if ctx.output == Output::Table {
                eprintln!("The secret is shown once; vpcip keeps only its hash.");
                if t.ec2 {
                    eprintln!(
                        "EC2: the access key is the token's ID, the secret access key ec2_secret (shown once too; vpcip keeps it to check signatures)."
                    );
                }
            }
            Ok(())
        }
        TokenCmd::Delete(k) => ctx.delete(paths::TOKEN, &k.id).await,
    }
}
