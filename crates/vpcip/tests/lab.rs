//! The README's first command: `vpcip lab up` builds the world (physical
//! router, client, gateway node, two hosts), starts a controller, a gateway
//! agent and two host agents, and shows an EIP carrying HTTP from the client
//! to a VM, and an EIP on a VIP following its master from one VM to the
//! other; `lab exec` runs commands in its nodes; `lab down` leaves nothing
//! behind.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::process::Command;

fn vpcip(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vpcip"))
        .args(args)
        .output()
        .unwrap()
}

/// Takes the lab down even when an assertion fails.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = vpcip(&["lab", "down", "--name", &self.0]);
    }
}

#[test]
fn lab_up_exec_down() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab needs root (scripts/test runs as root)"
    );
    let name = format!("t{}", std::process::id());
    let _down = Down(name.clone());
    let up = vpcip(&["lab", "up", "--name", &name]);
    let out = String::from_utf8_lossy(&up.stdout);
    assert!(
        up.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(out.contains("hello from"), "{out}");
    assert!(
        out.contains("you are 198.51.100.10"),
        "the VM sees the client's address: {out}"
    );
    // The VIP pair: the EIP on the VIP reaches vip-a, then vip-b once
    // vip-a's speaker stops.
    let a = out
        .find("vip-a (")
        .unwrap_or_else(|| panic!("vip-a never answered: {out}"));
    let b = out
        .find("vip-b (")
        .unwrap_or_else(|| panic!("vip-b never answered: {out}"));
    assert!(a < b, "{out}");
    assert!(out.contains("vpcip vrrp --interface eth0"), "{out}");
    // A second `up` of the same lab is refused.
    assert!(!vpcip(&["lab", "up", "--name", &name]).status.success());
    // The physical router learnt the EIP by BGP from a gateway.
    assert!(
        out.contains("phy learnt by BGP: 203.0.113.1 via 192.0.2.2"),
        "{out}"
    );
    // exec in the VPC router, on both gateways: the NAT maps hold the EIP.
    for router in ["vpc1-router-gw1", "vpc1-router-gw2"] {
        let nft = vpcip(&[
            "lab",
            "exec",
            "--name",
            &name,
            router,
            "--",
            "nft",
            "list",
            "map",
            "ip",
            "vpcip_nat",
            "eip_dnat",
        ]);
        assert!(
            String::from_utf8_lossy(&nft.stdout).contains("203.0.113.1 : 10.0.1.2"),
            "{router}: {}",
            String::from_utf8_lossy(&nft.stdout)
        );
    }
    // The tour crossed hosts: web-1 and app-1 run on different hosts.
    assert!(
        out.contains("hypervisor on h1") && out.contains("hypervisor on h2"),
        "{out}"
    );
    // The client reaches the EIP again, by hand, as the README shows.
    let curl = vpcip(&[
        "lab",
        "exec",
        "--name",
        &name,
        "client",
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "203.0.113.1",
    ]);
    assert!(
        curl.status.success(),
        "{}",
        String::from_utf8_lossy(&curl.stdout)
    );
    assert!(
        !vpcip(&["lab", "exec", "--name", &name, "nowhere", "--", "true"])
            .status
            .success()
    );
    let down = vpcip(&["lab", "down", "--name", &name]);
    assert!(down.status.success());
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&left.stdout).contains(&format!("vl-{name}-")));
    assert!(!std::path::Path::new(&format!("/run/vpcip-lab/{name}")).exists());
}
