//! The rendered guest files pass the real tools: the netplan file of `vpcip
//! vip guest-config --os ubuntu` through `netplan generate` (which turns it
//! into NetworkManager's connection, checked here for the VIP). (The
//! keepalived.conf goes through `keepalived -t` and runs in the lab test
//! `cloud::an_eip_on_a_vip_follows_the_keepalived_master`.)

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use vpcip_model::guest::{GuestNic, GuestOs, vip_config};

#[test]
fn the_netplan_file_is_valid_netplan() {
    let nic = GuestNic {
        ifname: "eth0",
        connection: "System eth0",
        ip: "172.16.0.210".parse().unwrap(),
        subnet: "172.16.0.0/24".parse().unwrap(),
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
