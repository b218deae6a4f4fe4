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
                "/v1/servers",
                &CreateServer {
                    name: name.into(),
                    subnet: subnet.id.clone(),
                    host: Some(host.into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let nic: Nic = lab.op.show("nics", &server.nic_ids[0]).await.unwrap();
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
            &format!("vpcip.peer={}", peer.ip),
            &dir,
        ));
    }
    for (g, (name, _, _, nic)) in guests.iter().zip(&made) {
        let Some(lease) = g.wait_for("dhcp=bound", BOOT) else {
            panic!("{name} got no DHCP lease:\n{}", g.console_text());
        };
        assert_eq!(lease["ip"], nic.ip.to_string(), "{name}");
        assert_eq!(lease["mask"], "24");
        let gw = if *name == "g1" { "10.0.1.1" } else { "10.0.2.1" };
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
            panic!("{name} did not fetch its peer's page:\n{}", g.console_text());
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
