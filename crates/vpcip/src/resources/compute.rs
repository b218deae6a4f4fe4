//! Servers and NICs.

use super::*;

pub(super) async fn vm(ctx: &Ctx, c: VmCmd) -> anyhow::Result<()> {
    match c {
        VmCmd::List => ctx.list::<Server>(None).await,
        VmCmd::Show(k) => ctx.show::<Server>(&k.id).await,
        VmCmd::Create {
            name,
            subnet,
            zone,
            ip,
            security_groups,
            host,
            client_token,
        } => ctx
            .create::<_, Server>(&CreateServer {
                name,
                subnet,
                zone,
                ip,
                security_groups,
                host,
                client_token,
            })
            .await
            .map(drop),
        VmCmd::Delete(k) => vm_delete(ctx, &k.id).await,
        VmCmd::Nics(k) => {
            let nics: Vec<Nic> = ctx
                .client
                .get(&paths::at(paths::SERVER_NICS, &[&k.id]))
                .await?;
            ctx.print_named(&nics).await
        }
    }
}

pub(super) async fn nic(ctx: &Ctx, c: NicCmd) -> anyhow::Result<()> {
    match c {
        NicCmd::List(l) => ctx.list::<Nic>(l.parent.as_deref()).await,
        NicCmd::Show(k) => nic_show(ctx, &k.id).await,
        NicCmd::Create {
            name,
            subnet,
            ip,
            security_groups,
            source_dest_check,
            no_source_dest_check,
            client_token,
        } => ctx
            .create::<_, Nic>(&CreateNic {
                name,
                subnet,
                ip,
                security_groups,
                source_dest_check: Some(
                    !no_source_dest_check && source_dest_check != Some(OnOff::Off),
                ),
                client_token,
            })
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
            let nic: Nic = ctx
                .client
                .patch(&paths::at(paths::NIC, &[&id]), &req)
                .await?;
            print_one(&nic, ctx.output)
        }
        NicCmd::HypervisorConfig {
            nic,
            libvirt,
            qemu,
            mtu,
        } => {
            let nic: Nic = ctx.client.show(&nic).await?;
            let port = vpcip_model::desired::port_ifname(&nic.id);
            let both = !libvirt && !qemu;
            if libvirt || both {
                print!("{}", libvirt_interface(&port, &nic.mac, mtu));
            }
            if qemu || both {
                println!("{}", qemu_netdev(&port, &nic.mac, mtu));
            }
            Ok(())
        }
        NicCmd::GuestConfig { nic, guest, remove } => {
            nic_guest_config(ctx, &nic, guest, remove).await
        }
        NicCmd::Attach { id, server } => ctx
            .action::<_, Nic>(paths::NIC_ATTACH, &id, &AttachNic { server })
            .await
            .map(drop),
        NicCmd::Detach(k) => ctx
            .action::<_, Nic>(paths::NIC_DETACH, &k.id, &serde_json::json!({}))
            .await
            .map(drop),
        NicCmd::Delete(k) => ctx.delete(paths::NIC, &k.id).await,
    }
}

/// libvirt's element for a NIC whose tap libvirt makes under the name
/// the host agent waits for (`virsh attach-device DOMAIN FILE`, or in the
/// domain's `<devices>`).
fn libvirt_interface(port: &str, mac: &str, mtu: u16) -> String {
    format!(
        "<interface type='ethernet'>\n  <mac address='{mac}'/>\n  <target dev='{port}'/>\n  <model type='virtio'/>\n  <mtu size='{mtu}'/>\n</interface>\n"
    )
}

/// QEMU's arguments for the same NIC (QEMU makes the tap; no scripts).
fn qemu_netdev(port: &str, mac: &str, mtu: u16) -> String {
    format!(
        "-netdev tap,id=n0,ifname={port},script=no,downscript=no -device virtio-net-pci,netdev=n0,mac={mac},host_mtu={mtu}"
    )
}

/// `vpcip server delete`: deletes the server and says what went with it (its
/// primary NIC and address, the EIP and VIPs unbound from it) and what
/// stays (its ENIs, detached; the EIP, allocated).
async fn vm_delete(ctx: &Ctx, key: &str) -> anyhow::Result<()> {
    let server: Server = ctx.client.show(key).await?;
    let nics: Vec<Nic> = ctx
        .client
        .get(&paths::at(paths::SERVER_NICS, &[&server.id]))
        .await?;
    let eips: Vec<Eip> = ctx.client.list(None).await?;
    let vips: Vec<Vip> = ctx.client.list(None).await?;
    ctx.client.remove::<vpcip_model::Server>(&server.id).await?;
    if ctx.output != Output::Table {
        return Ok(());
    }
    println!("deleted {} ({})", server.name, server.id);
    for n in &nics {
        if n.primary {
            println!(
                "  deleted its primary NIC {} ({}), {} is free again",
                n.name, n.id, n.ip
            );
            for e in eips.iter().filter(|e| e.nic_id() == Some(n.id.as_str())) {
                println!(
                    "  unbound EIP {} (still allocated: `vpcip eip release {}` frees it)",
                    e.ip, e.ip
                );
            }
            for v in vips.iter().filter(|v| n.vip_ids.contains(&v.id)) {
                println!("  unbound VIP {} ({}) from it", v.name, v.ip);
            }
        } else {
            println!(
                "  detached ENI {} ({}, {}): it stays; attach it elsewhere or delete it",
                n.name, n.id, n.ip
            );
        }
    }
    Ok(())
}

/// `vpcip nic guest-config`: the guest side of a (secondary) NIC.
pub(super) async fn nic_guest_config(
    ctx: &Ctx,
    key: &str,
    args: GuestArgs,
    remove: bool,
) -> anyhow::Result<()> {
    let nic: Nic = ctx.client.show(key).await?;
    let subnet: Subnet = ctx.client.show(&nic.subnet_id).await?;
    let (os, ifname, connection, device) = guest_names(ctx, &nic, args).await?;
    let me = vpcip_model::guest::GuestNic {
        ifname: &ifname,
        connection: &connection,
        ip: nic.ip,
        subnet: subnet.cidr,
        gateway: subnet.gateway,
        device,
    };
    let text = vpcip_model::guest::nic_config(os, &me, remove);
    ctx.print_config(
        &nic.name,
        &nic.name,
        &ifname,
        &format!("{os:?}").to_lowercase(),
        &text,
    )
}

/// A NIC as `nic show` prints it: with the port the hypervisor must make
/// for it, the host, and whether the host agent has found the port.
#[derive(Serialize)]
struct NicShow {
    #[serde(flatten)]
    nic: Nic,
    /// The link the hypervisor makes for the NIC on its host: `t` and the
    /// part of the NIC ID after the last `-`.
    port: String,
    host: Option<String>,
    plugged: String,
    /// Packets its security groups dropped, in (ingress) and out (egress).
    dropped_in: u64,
    dropped_out: u64,
}

/// `vpcip nic show`.
pub(super) async fn nic_show(ctx: &Ctx, key: &str) -> anyhow::Result<()> {
    use vpcip_model::desired::{SystemStatus, port_ifname};
    let nic: Nic = ctx.client.show(key).await?;
    let port = port_ifname(&nic.id);
    let server: Option<Server> = match &nic.server_id {
        Some(id) => Some(ctx.client.show(id).await?),
        None => None,
    };
    let host = server.as_ref().and_then(|s| s.host.clone());
    let plugged = match (&server, &host) {
        (None, _) => "no: not attached to a server".to_string(),
        (Some(_), None) => "no: its server is not placed on a host".to_string(),
        (Some(_), Some(h)) => match ctx.client.get::<SystemStatus>(paths::STATUS).await {
            Ok(s) if s.missing_ports.iter().any(|m| m.nic_id == nic.id) => {
                format!("no: the hypervisor has not made {port} on {h}")
            }
            Ok(s) if s.agents.iter().any(|a| a.agent.name == *h && a.healthy) => {
                format!("yes: {h}'s agent found {port}")
            }
            Ok(_) => format!("unknown: {h} has no healthy agent"),
            Err(_) => "unknown: only the operator sees the hosts' reports".to_string(),
        },
    };
    let drops: vpcip_model::desired::NicDrops = ctx
        .client
        .get(&paths::at(paths::NIC_DROPS, &[&nic.id]))
        .await?;
    print_one(
        &NicShow {
            nic,
            port,
            host,
            plugged,
            dropped_in: drops.packets_in,
            dropped_out: drops.packets_out,
        },
        ctx.output,
    )
}
