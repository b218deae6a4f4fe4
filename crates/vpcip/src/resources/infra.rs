//! Zones, host networks, gateways, hosts, physical routes, API tokens.

use super::*;

pub(super) async fn zone(ctx: &Ctx, c: ZoneCmd) -> anyhow::Result<()> {
    match c {
        ZoneCmd::List => ctx.list::<Zone>("zones", None).await,
        ZoneCmd::Show(k) => ctx.show::<Zone>("zones", &k.id).await,
        ZoneCmd::Create { name } => ctx
            .create::<_, Zone>("zones", &CreateZone { name })
            .await
            .map(drop),
        ZoneCmd::Delete(k) => ctx.delete("zones", &k.id).await,
    }
}

pub(super) async fn host_network(ctx: &Ctx, c: HostNetworkCmd) -> anyhow::Result<()> {
    match c {
        HostNetworkCmd::List => ctx.list::<HostNetwork>("host-networks", None).await,
        HostNetworkCmd::Show(k) => ctx.show::<HostNetwork>("host-networks", &k.id).await,
        HostNetworkCmd::Create { name, cidr } => ctx
            .create::<_, HostNetwork>("host-networks", &CreateHostNetwork { name, cidr })
            .await
            .map(drop),
        HostNetworkCmd::Delete(k) => ctx.delete("host-networks", &k.id).await,
    }
}

pub(super) async fn gateway(ctx: &Ctx, c: GatewayCmd) -> anyhow::Result<()> {
    match c {
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
    }
}

pub(super) async fn token(ctx: &Ctx, c: TokenCmd) -> anyhow::Result<()> {
    match c {
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
    }
}
