//! VIPs and the guest configuration of their members.

use super::*;

pub(super) async fn vip(ctx: &Ctx, c: VipCmd) -> anyhow::Result<()> {
    match c {
        c @ VipCmd::GuestConfig { .. } => guest_config(ctx, c).await,
        VipCmd::List(l) => ctx.list::<Vip>(l.parent.as_deref()).await,
        VipCmd::Show(k) => {
            let vip: Vip = ctx.client.show(&k.id).await?;
            let holding: VipHolding = ctx
                .client
                .get(&paths::at(paths::VIP_HOLDER, &[&vip.id]))
                .await?;
            match ctx.output {
                Output::Json | Output::Yaml => {
                    let mut v = serde_json::to_value(&vip)?;
                    v["holder"] = serde_json::to_value(&holding)?;
                    crate::table::print_value(&v, ctx.output)?;
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
            .create::<_, Vip>(&CreateVip {
                name,
                subnet,
                ip,
                client_token,
            })
            .await
            .map(drop),
        VipCmd::Bind { id, nic } => {
            let r: WithWarnings<Vip> = ctx.action(paths::VIP_BIND, &id, &VipNic { nic }).await?;
            ctx.warn(&r.warnings);
            Ok(())
        }
        VipCmd::Unbind { id, nic } => ctx
            .action::<_, Vip>(paths::VIP_UNBIND, &id, &VipNic { nic })
            .await
            .map(drop),
        VipCmd::Delete(k) => ctx.delete(paths::VIP, &k.id).await,
    }
}

/// `vpcip vip guest-config`: the vendor manuals' guest commands, or keepalived.conf.
pub(super) async fn guest_config(ctx: &Ctx, c: VipCmd) -> anyhow::Result<()> {
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
    let vip: Vip = ctx.client.show(&vip).await?;
    let nic: Nic = ctx.client.show(&nic).await?;
    let subnet: Subnet = ctx.client.show(&nic.subnet_id).await?;
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
            let b: Nic = ctx.client.show(key).await?;
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
        let text = guest::lvs_director_nft(vip.ip, &ifname, &ports, &ips);
        ctx.print_config(&vip.name, &nic.name, &ifname, "lvs-director", &text)?;
    } else if lvs_backend {
        check_off(&nic, "a backend answers from the VIP");
        let text = guest::lvs_backend(vip.ip, &ifname, remove);
        ctx.print_config(&vip.name, &nic.name, &ifname, "lvs-backend", &text)?;
    } else if vrrp {
        let text = guest::vrrp_command(&vip.name, vip.ip, subnet.cidr, &me, &params);
        ctx.print_config(&vip.name, &nic.name, &ifname, "vrrp", &text)?;
    } else if keepalived {
        let mut peers = Vec::new();
        for id in vip.nic_ids.iter().filter(|n| **n != nic.id) {
            let peer: Nic = ctx.client.show(id).await?;
            peers.push(peer.ip);
        }
        let text = guest::keepalived_conf(&vip.name, vip.ip, subnet.cidr, &me, &peers, &params);
        ctx.print_config(&vip.name, &nic.name, &ifname, "keepalived", &text)?;
    } else {
        let text = guest::vip_config(os, &me, vip.ip, remove);
        ctx.print_config(
            &vip.name,
            &nic.name,
            &ifname,
            &format!("{os:?}").to_lowercase(),
            &text,
        )?;
    }
    Ok(())
}

/// The guest's OS, interface, NetworkManager connection and the NIC's
/// place on its server (0 when it is not attached: say --ifname then).
pub(super) async fn guest_names(
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
            let server: Server = ctx.client.show(id).await?;
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
    let ifname = args.ifname.unwrap_or_else(|| os.ifname(device));
    let connection = args
        .connection
        .unwrap_or_else(|| format!("System {ifname}"));
    Ok((os, ifname, connection, device))
}
