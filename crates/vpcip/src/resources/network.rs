//! VPCs, subnets, security groups.

use super::*;

pub(super) async fn vpc(ctx: &Ctx, c: VpcCmd) -> anyhow::Result<()> {
    match c {
        VpcCmd::List => ctx.list::<Vpc>(None).await,
        VpcCmd::Show(k) => ctx.show::<Vpc>(&k.id).await,
        VpcCmd::Create {
            name,
            cidr,
            secondary,
            tenant,
            client_token,
        } => ctx
            .create::<_, Vpc>(&CreateVpc {
                name,
                cidr,
                secondary_cidrs: secondary,
                tenant,
                client_token,
            })
            .await
            .map(drop),
        VpcCmd::Delete(k) => ctx.delete(paths::VPC, &k.id).await,
        VpcCmd::AddCidr { vpc, cidr } => ctx
            .action::<_, Vpc>(paths::VPC_ADD_CIDR, &vpc, &VpcCidrChange { cidr })
            .await
            .map(drop),
        VpcCmd::RemoveCidr { vpc, cidr } => ctx
            .action::<_, Vpc>(paths::VPC_REMOVE_CIDR, &vpc, &VpcCidrChange { cidr })
            .await
            .map(drop),
    }
}

pub(super) async fn subnet(ctx: &Ctx, c: SubnetCmd) -> anyhow::Result<()> {
    match c {
        SubnetCmd::List(l) => ctx.list::<Subnet>(l.parent.as_deref()).await,
        SubnetCmd::Show(k) => ctx.show::<Subnet>(&k.id).await,
        SubnetCmd::Create {
            name,
            vpc,
            zone,
            kind,
            cidr,
            range,
            prefix_len,
            gateway,
            dns_servers,
            host_routes,
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
                dns_servers,
                host_routes,
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
        SubnetCmd::Update {
            subnet,
            dns_servers,
            no_dns_servers,
            host_routes,
            no_host_routes,
        } => {
            let req = UpdateSubnet {
                dns_servers: (no_dns_servers || !dns_servers.is_empty()).then_some(dns_servers),
                host_routes: (no_host_routes || !host_routes.is_empty()).then_some(host_routes),
            };
            ctx.update::<_, Subnet>(&subnet, &req).await.map(drop)
        }
        SubnetCmd::Delete(k) => ctx.delete(paths::SUBNET, &k.id).await,
    }
}

pub(super) async fn security_group(ctx: &Ctx, c: SgCmd) -> anyhow::Result<()> {
    match c {
        SgCmd::List(l) => ctx.list::<SecurityGroup>(l.parent.as_deref()).await,
        SgCmd::Show(k) => {
            let sg: SecurityGroup = ctx.client.show(&k.id).await?;
            if ctx.output != Output::Table {
                return crate::table::print_one(&sg, ctx.output);
            }
            println!(
                "{} {} (VPC {}, {})",
                sg.id,
                sg.name,
                sg.vpc_id,
                sg.kind.as_str()
            );
            println!("RULES");
            for r in &sg.rules {
                println!("  {:<16} {r}", r.id);
            }
            let nics: Vec<Nic> = ctx.client.list(None).await?;
            let users: Vec<String> = nics
                .iter()
                .filter(|n| n.security_group_ids.contains(&sg.id))
                .map(|n| format!("{} ({}, {})", n.id, n.name, n.ip))
                .collect();
            println!("USED BY {} NIC(S)", users.len());
            for u in users {
                println!("  {u}");
            }
            Ok(())
        }
        SgCmd::Rule(SgRuleCmd::Add { group, rules }) => {
            let rules = rules
                .iter()
                .map(|r| parse_rule(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let sg = ctx.client.add_sg_rules(&group, &rules).await?;
            crate::table::print_one(&sg, ctx.output)
        }
        SgCmd::Rule(SgRuleCmd::Remove { group, rule }) => {
            let sg = ctx.client.remove_sg_rule(&group, &rule).await?;
            crate::table::print_one(&sg, ctx.output)
        }
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
            ctx.create::<_, SecurityGroup>(&req).await.map(drop)
        }
        SgCmd::Delete(k) => ctx.delete(paths::SECURITY_GROUP, &k.id).await,
    }
}

/// `DIRECTION:PROTOCOL[:PORTS]:REMOTE`, e.g. `ingress:tcp:80-443:0.0.0.0/0`.
pub(super) fn parse_rule(s: &str) -> anyhow::Result<SgRule> {
    s.parse().map_err(|e: String| anyhow::anyhow!(e))
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
