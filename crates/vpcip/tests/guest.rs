//! The rendered guest files pass the real tools: the netplan file of `vpcip
//! vip guest-config --os ubuntu` through `netplan generate` (which turns it
//! into NetworkManager's connection, checked here for the VIP), and the
//! secondary ENI's file of `vpcip nic guest-config --os ubuntu` (turned
//! into systemd-networkd's, checked for the source routing). (The
//! keepalived.conf goes through `keepalived -t` and runs in the lab test
//! `cloud::an_eip_on_a_vip_follows_the_keepalived_master`.)

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use vpcip_model::guest::{GuestNic, GuestOs, nic_config, vip_config};

#[test]
fn the_netplan_file_is_valid_netplan() {
    let nic = GuestNic {
        ifname: "eth0",
        connection: "System eth0",
        ip: "172.16.0.210".parse().unwrap(),
        subnet: "172.16.0.0/24".parse().unwrap(),
        gateway: Some("172.16.0.1".parse().unwrap()),
        device: 0,
    };
    let root = std::env::temp_dir().join(format!("vpcip-netplan-{}", std::process::id()));
    let dir = root.join("etc/netplan");
    std::fs::create_dir_all(&dir).unwrap();
    for (remove, want) in [(false, true), (true, false)] {
        let text = vip_config(
            GuestOs::Ubuntu,
            &nic,
            "172.16.0.26".parse().unwrap(),
            remove,
        );
        let file = dir.join("01-netcfg.yaml");
        std::fs::write(&file, &text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = Command::new("netplan")
            .args(["generate", "--root-dir"])
            .arg(&root)
            .output()
            .expect("netplan is needed (.ci/run installs netplan.io)");
        assert!(
            out.status.success(),
            "netplan refuses:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nm = std::fs::read_to_string(
            root.join("run/NetworkManager/system-connections/netplan-eth0.nmconnection"),
        )
        .unwrap();
        assert_eq!(nm.contains("172.16.0.26/32"), want, "{nm}");
        let _ = std::fs::remove_dir_all(root.join("run"));
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_secondary_eni_netplan_file_gives_source_routing() {
    let eni = GuestNic {
        ifname: "eth1",
        connection: "System eth1",
        ip: "203.0.113.20".parse().unwrap(),
        subnet: "203.0.113.0/24".parse().unwrap(),
        gateway: Some("203.0.113.1".parse().unwrap()),
        device: 1,
    };
    let root = std::env::temp_dir().join(format!("vpcip-netplan-eni-{}", std::process::id()));
    let dir = root.join("etc/netplan");
    std::fs::create_dir_all(&dir).unwrap();
    let text = nic_config(GuestOs::Ubuntu, &eni, false);
    let name = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# /etc/netplan/"))
        .unwrap();
    let file = dir.join(name);
    std::fs::write(&file, &text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("netplan")
        .args(["generate", "--root-dir"])
        .arg(&root)
        .output()
        .expect("netplan is needed (.ci/run installs netplan.io)");
    assert!(
        out.status.success(),
        "netplan refuses:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let networkd =
        std::fs::read_to_string(root.join("run/systemd/network/10-netplan-eth1.network")).unwrap();
    let flat: String = networkd.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "Address=203.0.113.20/24",
        "[RoutingPolicyRule] From=203.0.113.0/24 Table=1001 Priority=1001",
        "Gateway=203.0.113.1",
        "Table=1001",
    ] {
        assert!(flat.contains(want), "{want} not in:\n{networkd}");
    }
    let _ = std::fs::remove_dir_all(&root);
}
