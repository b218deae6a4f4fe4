//! EIPs: allocate, bind, check the physical route.

use super::*;

/// An EIP by address, ID or name.
pub(super) async fn find_eip(ctx: &Ctx, key: &str) -> anyhow::Result<Eip> {
    if let Ok(ip) = key.parse::<Ipv4Addr>() {
        let all: Vec<Eip> = ctx.client.list(None).await?;
        return all
            .into_iter()
            .find(|e| e.ip == ip)
            .with_context(|| format!("no EIP {ip} that you can see"));
    }
    Ok(ctx.client.show(key).await?)
}

/// The seeds' "ping the EIP from outside and tcpdump on the gateway", made
/// one command: the gateway counts every packet for a bound EIP, so the
/// counter moving while traffic is sent answers whether the physical
/// network routes the EIP to the gateway.
pub(super) async fn check_route(ctx: &Ctx, key: &str, wait: u64) -> anyhow::Result<()> {
    let eip = find_eip(ctx, key).await?;
    if eip.private_ip().is_none() {
        bail!(
            "EIP {} is not bound: the gateway counts only bound EIPs; bind it, then check",
            eip.ip
        );
    }
    let path = paths::at(paths::EIP_COUNTERS, &[&eip.id]);
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
    // Announced by BGP: the sessions are what to look at.
    if let Ok(gateways) = ctx.client.list::<Gateway>(None).await
        && gateways.iter().any(|g| g.bgp.is_some())
    {
        let status: Option<vpcip_model::desired::SystemStatus> =
            ctx.client.get(paths::STATUS).await.ok();
        let problems: Vec<String> = status
            .map(|s| {
                s.bgp
                    .iter()
                    .map(|b| {
                        format!(
                            "{}{}: {}",
                            b.gateway,
                            b.peer.map(|p| format!(", peer {p}")).unwrap_or_default(),
                            b.problem
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "NOT REACHED: no packet for {} reached {gateway} in {} s (was traffic sent?): the gateways announce the EIPs by BGP; {}",
            eip.ip,
            after.as_of - before.as_of,
            if problems.is_empty() {
                "every session is established: does the physical router prefer another route to it? (`vpcip gateway list`)".to_string()
            } else {
                format!("BGP problems: {}", problems.join("; "))
            }
        );
        std::process::exit(3)
    }
    // The routes name the gateways' underlay addresses: the operator's to
    // read. A tenant is told whom to ask rather than nothing.
    let hint = match ctx
        .client
        .get::<Vec<PhysicalRoute>>(paths::PHYSICAL_ROUTES)
        .await
    {
        Ok(routes) => routes
            .iter()
            .find(|r| r.prefix.contains(&eip.ip))
            .map(|r| {
                format!(
                    ": the physical network needs the route {} via {} (gateway {})",
                    r.prefix, r.next_hop, r.gateway
                )
            })
            .unwrap_or_default(),
        Err(e) if matches!(e.status(), Some(401 | 403)) => {
            ": ask the operator to check the physical network's route to the EIP segment (`vpcip route list` needs the operator's token)".into()
        }
        Err(e) => format!(" (the route the physical network needs could not be read: {e})"),
    };
    println!(
        "NOT REACHED: no packet for {} reached {gateway} in {} s (was traffic sent?){hint}",
        eip.ip,
        after.as_of - before.as_of
    );
    std::process::exit(3)
}

/// The first counters report made after `t` (10 s at most).
pub(super) async fn report_after(
    ctx: &Ctx,
    path: &str,
    t: i64,
) -> anyhow::Result<Option<EipCounters>> {
    for _ in 0..20 {
        let c: EipCounters = ctx.client.get(path).await?;
        if c.as_of > t {
            return Ok(Some(c));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Ok(None)
}

pub(super) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(super) async fn eip(ctx: &Ctx, c: EipCmd) -> anyhow::Result<()> {
    match c {
        EipCmd::List(l) => {
            let mut eips: Vec<Eip> = ctx.client.list(l.list.parent.as_deref()).await?;
            if let Some(name) = &l.name {
                eips.retain(|e| &e.name == name);
            }
            if let Some(key) = &l.server {
                let server: Server = ctx.client.show(key).await?;
                eips.retain(|e| e.server_id() == Some(server.id.as_str()));
            }
            if let Some(key) = &l.vip {
                let vip: Vip = ctx.client.show(key).await?;
                eips.retain(|e| e.vip_id() == Some(vip.id.as_str()));
            }
            if l.unbound {
                eips.retain(|e| e.nic_id().is_none() && e.vip_id().is_none());
            }
            ctx.print_named(&eips).await
        }
        EipCmd::Show(k) => {
            let eip = find_eip(ctx, &k.id).await?;
            let counters: EipCounters = ctx
                .client
                .get(&paths::at(paths::EIP_COUNTERS, &[&eip.id]))
                .await?;
            match ctx.output {
                Output::Json | Output::Yaml => {
                    let mut v = serde_json::to_value(&eip)?;
                    v["counters"] = serde_json::to_value(&counters)?;
                    crate::table::print_value(&v, ctx.output)?;
                }
                Output::Table => {
                    print_one(&eip, ctx.output)?;
                    let t = &counters.traffic;
                    println!(
                        "traffic in:  {} packets, {} bytes\ntraffic out: {} packets, {} bytes\nlimiter:     {} Mbit/s, dropped {} packets in, {} out\ncounted by:  {}\ncarried by:  {}",
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
                            .unwrap_or("- (not bound, or not counted yet)"),
                        counters
                            .carried_by
                            .as_deref()
                            .unwrap_or("- (not bound, or no gateway reported carrying it)")
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
                let out: VisibleEip = ctx.client.post(paths::EIPS_VISIBLE, &req).await?;
                if ctx.output != Output::Table {
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
            .action::<_, Eip>(paths::EIP_UNBIND, &k.id, &serde_json::json!({}))
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
                    &paths::at(paths::EIP, &[&id]),
                    &UpdateEip {
                        bandwidth_mbps: bandwidth,
                        algs,
                    },
                )
                .await?;
            print_one(&e, ctx.output)
        }
        EipCmd::Release(k) => ctx.delete(paths::EIP, &k.id).await,
    }
}

pub(super) fn target_of(t: TargetArgs) -> Option<EipTarget> {
    t.server
        .map(EipTarget::Server)
        .or(t.nic.map(EipTarget::Nic))
        .or(t.vip.map(EipTarget::Vip))
}

pub(super) fn mode_of(m: Mode) -> EipMode {
    match m {
        Mode::Nat => EipMode::Nat,
        Mode::Visible => EipMode::Visible,
    }
}
