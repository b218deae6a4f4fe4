//! Real guests (QEMU under TCG, Debian's cloud kernel, a busybox
//! initramfs) on the lab's hosts, plugged as a hypervisor plugs them: QEMU
//! makes each NIC's tap under the name `vpcip nic hypervisor-config`
//! prints, with the NIC's MAC; the host agent adopts the tap and answers
//! the guest's DHCP. Nothing is configured inside the guests by hand.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

mod common;

use std::time::Duration;

use vpcip_lab::{cloud, qemu};
use vpcip_model::desired::port_ifname;
use vpcip_model::*;

use common::*;

/// Boots under TCG take some seconds each, more beside other tests.
const BOOT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_guests_get_dhcp_reach_each_other_and_serve_through_an_eip() {
    let image = qemu::guest_image().unwrap_or_else(|e| panic!("{e}"));
    let mut lab = Lab::up("vqm").await;
    let vpc = lab.vpc("v1", "10.0.0.0/16").await;
    let sa = lab.subnet(&vpc, "v1-a", "10.0.1.0/24").await;
    let sb = lab.subnet(&vpc, "v1-b", "10.0.2.0/24").await;
    let mut made = Vec::new();
    for (name, subnet, host) in [("g1", &sa, "h1"), ("g2", &sb, "h2")] {
        let server: Server = lab
            .op
            .post(
                paths::SERVERS,
                &CreateServer {
                    name: name.into(),
                    subnet: subnet.id.clone(),
                    host: Some(host.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let nic: Nic = lab.op.show(&server.nic_ids[0]).await.unwrap();
        made.push((name, host, server, nic));
    }
    let dir = cloud::state_dir(&lab.w);
    let mut guests = Vec::new();
    for (i, (name, host, _, nic)) in made.iter().enumerate() {
        let peer = &made[1 - i].3;
        guests.push(qemu::boot(
            &mut lab.w,
            &image,
            host,
            name,
            &port_ifname(&nic.id),
            &nic.mac,
            &qemu::Boot {
                append: &format!("vpcip.peer={}", peer.ip),
                ..Default::default()
            },
            &dir,
        ));
    }
    for (g, (name, _, _, nic)) in guests.iter().zip(&made) {
        let Some(lease) = g.wait_for("dhcp=bound", BOOT) else {
            panic!("{name} got no DHCP lease:\n{}", g.console_text());
        };
        assert_eq!(lease["ip"], nic.ip.to_string(), "{name}");
        assert_eq!(lease["mask"], "24");
        let gw = if *name == "g1" {
            "10.0.1.1"
        } else {
            "10.0.2.1"
        };
        assert_eq!(lease["router"], gw);
        assert_eq!(lease["mtu"], "1450");
        assert_eq!(lease["hostname"], *name);
        let ready = g.wait_for("ready", BOOT).unwrap();
        assert_eq!(ready["mtu"], "1450", "{name}: {ready:?}");
    }
    // Each fetched the other's 200 KB page across hosts and subnets: TCP
    // segments as large as the overlay's MTU allows.
    for (g, (name, _, _, _)) in guests.iter().zip(&made) {
        let Some(got) = g.wait_for("peer=", Duration::from_secs(120)) else {
            panic!(
                "{name} did not fetch its peer's page:\n{}",
                g.console_text()
            );
        };
        assert_eq!(got["lines"], "1600", "{name}: {got:?}");
    }
    // The outside client reaches g1 through an EIP and sees its page.
    let eip = lab.eip_for(&made[0].2).await;
    let client = lab.ns("client");
    let mut page = None;
    vpcip_lab::eventually(Duration::from_secs(20), || {
        page = http_get(&client, at(eip.ip, 80));
        page.is_some()
    });
    assert_eq!(page.as_deref(), Some("hello from g1\n"));
}

/// Two guests running keepalived with the configuration `vpcip vip
/// guest-config --keepalived` renders for each NIC share a VIP with an
/// EIP: the outside client reaches the master; the master guest is
/// killed (QEMU ends, its tap goes) and the EIP follows to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_guests_running_keepalived_share_a_vip_with_an_eip() {
    let image = qemu::guest_image().unwrap_or_else(|e| panic!("{e}"));
    let mut lab = Lab::up("vqk").await;
    let vpc = lab.vpc("v1", "10.0.0.0/16").await;
    let sa = lab.subnet(&vpc, "v1-a", "10.0.1.0/24").await;
    let mut made = Vec::new();
    for (name, host) in [("k1", "h1"), ("k2", "h2")] {
        let server: Server = lab
            .op
            .post(
                paths::SERVERS,
                &CreateServer {
                    name: name.into(),
                    subnet: sa.id.clone(),
                    host: Some(host.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let nic: Nic = lab.op.show(&server.nic_ids[0]).await.unwrap();
        made.push((name, host, nic));
    }
    let (vip, eip) = lab
        .vip_with_eip("vip-1", &sa, &[&made[0].2, &made[1].2])
        .await;
    let dir = cloud::state_dir(&lab.w);
    let mut guests = Vec::new();
    for (name, host, nic) in &made {
        let conf = cli(
            &lab,
            &[
                "vip",
                "guest-config",
                &vip.id,
                "--nic",
                &nic.id,
                "--keepalived",
            ],
        );
        assert!(conf.status.success());
        let files = [(
            "/etc/keepalived/keepalived.conf",
            String::from_utf8_lossy(&conf.stdout).into_owned(),
        )];
        guests.push(qemu::boot(
            &mut lab.w,
            &image,
            host,
            name,
            &port_ifname(&nic.id),
            &nic.mac,
            &qemu::Boot {
                files: &files,
                ..Default::default()
            },
            &dir,
        ));
    }
    for (g, (name, _, _)) in guests.iter().zip(&made) {
        assert!(
            g.wait_for("keepalived=started", BOOT).is_some(),
            "{name}:\n{}",
            g.console_text()
        );
    }
    let to = at(eip.ip, 80);
    let client = lab.ns("client");
    let served_by = |want: &str, limit| {
        let want = format!("hello from {want}\n");
        let mut last = None;
        let ok = vpcip_lab::eventually(limit, || {
            last = http_get(&client, to);
            last.as_deref() == Some(want.as_str())
        });
        (ok, last)
    };
    let (ok, last) = served_by("k1", Duration::from_secs(60));
    assert!(
        ok,
        "the EIP on the VIP does not reach the master k1: {last:?}"
    );
    // k1 dies: QEMU is ended, as a crashed hypervisor process would be.
    lab.w.kill(guests[0].process);
    let (ok, last) = served_by("k2", Duration::from_secs(30));
    assert!(ok, "the EIP did not follow the VIP to k2: {last:?}");
}
