//! The OpenStack client in the lab: a floating IP it creates on a port
//! carries the outside client's traffic to the VM through the gateway, is
//! ACTIVE once the gateway programmed it, and stops carrying it when the
//! client disassociates it (the facade's own tests are in openstack.rs).

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use vpcip_lab::{eventually, http_get};
use vpcip_model::*;

use common::*;

fn openstack(lab: &Lab, password: &str, args: &[&str]) -> Output {
    let venv = std::env::var_os("VPCIP_OPENSTACK_VENV").expect(
        "VPCIP_OPENSTACK_VENV is not set: run scripts/openstack-clients (scripts/test does) and point it there",
    );
    Command::new(std::path::Path::new(&venv).join("bin/openstack"))
        .args(args)
        .env("OS_AUTH_URL", format!("{}/v3", lab.url))
        .env("OS_USERNAME", "acme")
        .env("OS_PASSWORD", password)
        .env("OS_PROJECT_NAME", "acme")
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .output()
        .unwrap()
}

fn json_of(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_floating_ip_made_with_the_openstack_client_carries_traffic() {
    let mut lab = Lab::up("osf").await;
    let v1 = lab.vpc("v1", "10.0.0.0/16").await;
    let sa = lab.subnet(&v1, "v1-a", "10.0.1.0/24").await;
    let (_, web) = lab.vm("web", &sa, "h1").await;
    lab.httpd("web");
    let token: Token = lab
        .op
        .post(
            vpcip_model::paths::TOKENS,
            &CreateToken {
                tenant: "acme".into(),
                description: String::new(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await
        .unwrap();
    let secret = token.secret.unwrap();
    let fip = json_of(&openstack(
        &lab,
        &secret,
        &[
            "floating", "ip", "create", "seg", "--port", &web.name, "-f", "json",
        ],
    ));
    let ip: std::net::Ipv4Addr = fip["floating_ip_address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    if let Err(last) = lab.wait_served_by(at(ip, 80), "web", Duration::from_secs(20)) {
        panic!("the floating IP does not reach web: {last:?}");
    }
    let active = eventually(Duration::from_secs(10), || {
        json_of(&openstack(
            &lab,
            &secret,
            &["floating", "ip", "show", &ip.to_string(), "-f", "json"],
        ))["status"]
            == "ACTIVE"
    });
    assert!(active, "the floating IP never became ACTIVE");
    json_of(&openstack(
        &lab,
        &secret,
        &["floating", "ip", "list", "-f", "json"],
    ));
    let unset = openstack(
        &lab,
        &secret,
        &["floating", "ip", "unset", "--port", &ip.to_string()],
    );
    assert!(
        unset.status.success(),
        "{}",
        String::from_utf8_lossy(&unset.stderr)
    );
    let client = lab.ns("client");
    let stopped = eventually(Duration::from_secs(10), || {
        http_get(&client, at(ip, 80)).is_none()
    });
    assert!(stopped, "the disassociated floating IP still reaches web");
}
