//! The OpenStack and AWS clients, unmodified from PyPI (`openstack`,
//! openstacksdk and `aws`, pinned by scripts/openstack-clients), against a
//! real `vpcip controller`: Keystone tokens from vpcip tokens, Neutron floating
//! IPs and EC2 addresses that are vpcip's EIPs (each step checked through
//! vpcip's own API), and what a user must not get: a wrong password or
//! signature, another tenant's floating IP or address, an address in use.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

mod support;
use support::{OPERATOR, Server, cli, ok, start, start_configured};

/// The virtualenv holding the clients; the tier fails, loudly, without it.
fn venv() -> PathBuf {
    let v = std::env::var_os("VPCIP_OPENSTACK_VENV").expect(
        "VPCIP_OPENSTACK_VENV is not set: run scripts/openstack-clients (scripts/test does) and point it there",
    );
    let v = PathBuf::from(v);
    assert!(
        v.join("bin/openstack").exists(),
        "{} has no bin/openstack: run scripts/openstack-clients",
        v.display()
    );
    v
}

/// The world: an EIP segment `public`, tenants `acme` (VPC, subnet, vm1
/// and vm2) and `other`; their tokens.
struct World {
    server: Server,
    acme: String,
    other: String,
}

fn world() -> World {
    world_of(start())
}

fn world_of(server: Server) -> World {
    let op = |args: &[&str]| ok(&cli(&server, OPERATOR, args));
    op(&["zone", "create", "z1"]);
    op(&["host-network", "create", "underlay", "192.168.201.0/24"]);
    op(&["gateway", "register", "gw1", "--address", "192.168.201.20"]);
    op(&[
        "subnet",
        "create",
        "public",
        "--type",
        "eip",
        "--range",
        "203.0.113.1-203.0.113.254",
        "--prefix-len",
        "24",
    ]);
    let token = |tenant: &str| {
        ok(&cli(
            &server,
            OPERATOR,
            &["token", "create", "--tenant", tenant, "--field", "secret"],
        ))
        .trim()
        .to_string()
    };
    let (acme, other) = (token("acme"), token("other"));
    let t = |args: &[&str]| ok(&cli(&server, &acme, args));
    t(&["vpc", "create", "vpc1", "--cidr", "10.0.0.0/8"]);
    t(&[
        "subnet",
        "create",
        "sw1",
        "--vpc",
        "vpc1",
        "--zone",
        "z1",
        "--cidr",
        "10.0.0.0/24",
    ]);
    t(&["vm", "create", "vm1", "--subnet", "sw1"]);
    t(&["vm", "create", "vm2", "--subnet", "sw1"]);
    World {
        server,
        acme,
        other,
    }
}

/// `openstack ARGS` as `user` with `password` (a vpcip token), by the
/// environment a `clouds.yaml`-less user sets.
fn openstack(w: &World, user: &str, password: &str, args: &[&str]) -> Output {
    Command::new(venv().join("bin/openstack"))
        .args(args)
        .env("OS_AUTH_URL", format!("{}/v3", w.server.url))
        .env("OS_USERNAME", user)
        .env("OS_PASSWORD", password)
        .env("OS_PROJECT_NAME", user)
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("OS_IDENTITY_API_VERSION", "3")
        .env("HOME", &w.server.dir)
        .output()
        .unwrap()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap()
}

fn failed(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An EIP as vpcip's own API shows it to `token`.
fn eip(w: &World, token: &str, key: &str) -> Value {
    json_of(&cli(&w.server, token, &["eip", "show", key, "-o", "json"]))
}

fn nic_id(w: &World, name: &str) -> String {
    eip_field(
        &json_of(&cli(
            &w.server,
            &w.acme,
            &["nic", "show", name, "-o", "json"],
        )),
        "id",
    )
}

fn eip_field(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

#[test]
fn the_openstack_client_manages_floating_ips_that_are_eips() {
    let w = world();
    let os = |args: &[&str]| openstack(&w, "acme", &w.acme, args);

    // Keystone: the token is the tenant's own vpcip token.
    let token = json_of(&os(&["token", "issue", "-f", "json"]));
    assert_eq!(token["id"], w.acme.as_str());
    assert_eq!(token["project_id"], "acme");
    assert_eq!(token["user_id"], "acme");

    // The EIP segment is the external network.
    let nets = json_of(&os(&["network", "list", "--external", "-f", "json"]));
    assert_eq!(nets.as_array().unwrap().len(), 1, "{nets}");
    assert_eq!(nets[0]["Name"], "public");

    // Create: an EIP of acme's in the segment, bound to nothing.
    let fip = json_of(&os(&["floating", "ip", "create", "public", "-f", "json"]));
    let (id, ip) = (
        eip_field(&fip, "id"),
        eip_field(&fip, "floating_ip_address"),
    );
    assert_eq!(fip["status"], "DOWN");
    let e = eip(&w, &w.acme, &id);
    assert_eq!(e["ip"], ip.as_str());
    assert_eq!(e["tenant"], "acme");
    assert!(e["nic_id"].is_null());

    // Associate with vm1's port, by name and by address, as users do.
    ok(&os(&["floating", "ip", "set", "--port", "vm1-eth0", &ip]));
    let vm1 = nic_id(&w, "vm1-eth0");
    let e = eip(&w, &w.acme, &id);
    assert_eq!(e["nic_id"], vm1.as_str());
    assert_eq!(e["mode"], "nat");
    let ports = json_of(&os(&["port", "list", "--server", "vm1", "-f", "json"]));
    assert_eq!(ports[0]["ID"], vm1.as_str(), "{ports}");

    // Moving it needs no flag, as in Neutron.
    ok(&os(&["floating", "ip", "set", "--port", "vm2-eth0", &ip]));
    let vm2 = nic_id(&w, "vm2-eth0");
    assert_eq!(eip(&w, &w.acme, &id)["nic_id"], vm2.as_str());
    let shown = json_of(&os(&["floating", "ip", "show", &ip, "-f", "json"]));
    assert_eq!(shown["port_id"], vm2.as_str());
    assert_eq!(
        shown["fixed_ip_address"],
        eip(&w, &w.acme, &id)["private_ip"]
    );
    let listed = json_of(&os(&[
        "floating", "ip", "list", "--port", "vm2-eth0", "-f", "json",
    ]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Another tenant sees nothing of it and cannot touch it.
    let other = |args: &[&str]| openstack(&w, "other", &w.other, args);
    let theirs = json_of(&other(&["floating", "ip", "list", "-f", "json"]));
    assert_eq!(theirs, serde_json::json!([]));
    let err = failed(&other(&["floating", "ip", "show", &id]));
    assert!(
        err.contains("No FloatingIP found") || err.contains("404"),
        "{err}"
    );
    let err = failed(&other(&["floating", "ip", "delete", &id]));
    assert!(err.contains("failed to delete"), "{err}");
    let err = failed(&other(&[
        "floating", "ip", "set", "--port", "vm1-eth0", &ip,
    ]));
    assert!(err.contains("No FloatingIP found"), "{err}");
    assert_eq!(eip(&w, &w.acme, &id)["nic_id"], vm2.as_str());
    // The operator (Keystone's admin) sees every tenant's.
    let all = json_of(&openstack(
        &w,
        "admin",
        OPERATOR,
        &["floating", "ip", "list", "-f", "json"],
    ));
    assert_eq!(all[0]["ID"], id.as_str());

    // An address in use is refused with Neutron's 409.
    let err = failed(&os(&[
        "floating",
        "ip",
        "create",
        "--floating-ip-address",
        &ip,
        "public",
    ]));
    assert!(err.contains("409"), "{err}");

    // Disassociate, then delete: gone from vpcip too.
    ok(&os(&["floating", "ip", "unset", "--port", &ip]));
    assert!(eip(&w, &w.acme, &id)["nic_id"].is_null());
    // Deleting an associated floating IP unbinds it, as Neutron does.
    ok(&os(&["floating", "ip", "set", "--port", "vm1-eth0", &ip]));
    ok(&os(&["floating", "ip", "delete", &ip]));
    let gone = cli(&w.server, &w.acme, &["eip", "show", &id]);
    assert_eq!(
        gone.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&gone.stdout)
    );
    assert_eq!(
        json_of(&os(&["floating", "ip", "list", "-f", "json"])),
        serde_json::json!([])
    );
}

#[test]
fn credentials_that_are_not_a_tenants_token_are_refused() {
    let w = world();
    // A wrong password, another tenant's token as this user's password, a
    // project that is not the user's own.
    let err = failed(&openstack(
        &w,
        "acme",
        "vpcip_not-a-token",
        &["token", "issue"],
    ));
    assert!(err.contains("401"), "{err}");
    let err = failed(&openstack(&w, "acme", &w.other, &["token", "issue"]));
    assert!(err.contains("401"), "{err}");
    let o = Command::new(venv().join("bin/openstack"))
        .args(["token", "issue"])
        .env("OS_AUTH_URL", format!("{}/v3", w.server.url))
        .env("OS_USERNAME", "acme")
        .env("OS_PASSWORD", &w.acme)
        .env("OS_PROJECT_NAME", "other")
        .env("OS_USER_DOMAIN_NAME", "Default")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("HOME", &w.server.dir)
        .output()
        .unwrap();
    assert!(failed(&o).contains("401"));
    // The vpcip token itself, as Keystone's token method.
    let o = Command::new(venv().join("bin/openstack"))
        .args(["floating", "ip", "list", "-f", "json"])
        .env("OS_AUTH_URL", format!("{}/v3", w.server.url))
        .env("OS_AUTH_TYPE", "token")
        .env("OS_TOKEN", &w.acme)
        .env("OS_PROJECT_NAME", "acme")
        .env("OS_PROJECT_DOMAIN_NAME", "Default")
        .env("HOME", &w.server.dir)
        .output()
        .unwrap();
    assert_eq!(json_of(&o), serde_json::json!([]));
}

/// openstacksdk's network proxy, as a script would drive it.
#[test]
fn openstacksdk_drives_the_same_floating_ips() {
    let w = world();
    let script = r#"
import json, sys, openstack
url, token = sys.argv[1], sys.argv[2]
conn = openstack.connect(auth_url=url + "/v3", username="acme", password=token,
    project_name="acme", user_domain_name="Default", project_domain_name="Default")
out = {}
ext = list(conn.network.networks(is_router_external=True))
ip = conn.network.create_ip(floating_network_id=ext[0].id)
out["created"] = [ip.id, ip.floating_ip_address, ip.status]
server = conn.compute.find_server("vm1")
port = list(conn.network.ports(device_id=server.id))[0]
ip = conn.network.update_ip(ip, port_id=port.id)
out["associated"] = [ip.port_id, ip.fixed_ip_address]
out["found"] = conn.network.find_ip(ip.floating_ip_address).id
out["listed"] = [i.id for i in conn.network.ips(floating_ip_address=ip.floating_ip_address)]
print(json.dumps(out), flush=True)
sys.stdin.readline()
ip = conn.network.update_ip(ip, port_id=None)
out["disassociated"] = ip.port_id
conn.network.delete_ip(ip)
try:
    conn.network.get_ip(ip.id)
    out["after_delete"] = "found"
except openstack.exceptions.NotFoundException:
    out["after_delete"] = "NotFound"
print(json.dumps(out), flush=True)
"#;
    use std::io::{BufRead, Write};
    let mut child = Command::new(venv().join("bin/python"))
        .args(["-c", script, &w.server.url, &w.acme])
        .env("HOME", &w.server.dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let id = first["created"][0].as_str().unwrap().to_string();
    // Midway, vpcip's own API shows the binding the SDK made.
    let e = eip(&w, &w.acme, &id);
    assert_eq!(first["associated"][0], nic_id(&w, "vm1-eth0").as_str());
    assert_eq!(e["nic_id"], first["associated"][0]);
    assert_eq!(e["private_ip"], first["associated"][1]);
    assert_eq!(first["found"], id.as_str());
    assert_eq!(first["listed"], serde_json::json!([id]));
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin).unwrap();
    let last: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(last["disassociated"].is_null(), "{last}");
    assert_eq!(last["after_delete"], "NotFound");
    assert_eq!(
        cli(&w.server, &w.acme, &["eip", "show", &id]).status.code(),
        Some(2)
    );
}

/// `aws ec2 ARGS` with `access_key`/`secret` against the server.
fn aws(w: &World, access_key: &str, secret: &str, args: &[&str]) -> Output {
    Command::new(venv().join("bin/aws"))
        .args(["--endpoint-url", &w.server.url, "--output", "json", "ec2"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("HOME", &w.server.dir)
        .output()
        .unwrap()
}

/// An EC2 credential of `tenant`: (access key, secret access key).
fn ec2_credential(w: &World, tenant: &str) -> (String, String) {
    let t = json_of(&cli(
        &w.server,
        OPERATOR,
        &["token", "create", "--tenant", tenant, "--ec2", "-o", "json"],
    ));
    (eip_field(&t, "id"), eip_field(&t, "ec2_secret"))
}

#[test]
fn the_aws_cli_allocates_associates_and_releases_eips() {
    let w = world();
    let (key, secret) = ec2_credential(&w, "acme");
    let ec2 = |args: &[&str]| aws(&w, &key, &secret, args);
    let server = |name: &str| {
        eip_field(
            &json_of(&cli(
                &w.server,
                &w.acme,
                &["vm", "show", name, "-o", "json"],
            )),
            "id",
        )
    };
    let (vm1, vm2) = (server("vm1"), server("vm2"));

    let a = json_of(&ec2(&["allocate-address", "--domain", "vpc"]));
    let (id, ip) = (eip_field(&a, "AllocationId"), eip_field(&a, "PublicIp"));
    assert_eq!(eip(&w, &w.acme, &id)["ip"], ip.as_str());

    let assoc = json_of(&ec2(&[
        "associate-address",
        "--allocation-id",
        &id,
        "--instance-id",
        &vm1,
    ]));
    assert!(
        eip_field(&assoc, "AssociationId").starts_with("eipassoc-"),
        "{assoc}"
    );
    assert_eq!(
        eip(&w, &w.acme, &id)["nic_id"],
        nic_id(&w, "vm1-eth0").as_str()
    );
    // Moving needs AllowReassociation, as in EC2.
    let err = failed(&ec2(&[
        "associate-address",
        "--allocation-id",
        &id,
        "--instance-id",
        &vm2,
    ]));
    assert!(err.contains("Resource.AlreadyAssociated"), "{err}");
    assert_eq!(eip(&w, &w.acme, &id)["server_id"], vm1.as_str());
    let eni = nic_id(&w, "vm2-eth0");
    ok(&ec2(&[
        "associate-address",
        "--allocation-id",
        &id,
        "--network-interface-id",
        &eni,
        "--allow-reassociation",
    ]));
    assert_eq!(eip(&w, &w.acme, &id)["nic_id"], eni.as_str());

    let d = json_of(&ec2(&[
        "describe-addresses",
        "--filters",
        &format!("Name=network-interface-id,Values={eni}"),
    ]));
    let addrs = d["Addresses"].as_array().unwrap();
    assert_eq!(addrs.len(), 1, "{d}");
    assert_eq!(addrs[0]["InstanceId"], vm2.as_str());
    assert_eq!(
        addrs[0]["PrivateIpAddress"],
        eip(&w, &w.acme, &id)["private_ip"]
    );
    let err = failed(&ec2(&[
        "describe-addresses",
        "--allocation-ids",
        "eip-nonesuch00",
    ]));
    assert!(err.contains("InvalidAllocationID.NotFound"), "{err}");
    let err = failed(&ec2(&["release-address", "--allocation-id", &id]));
    assert!(err.contains("InvalidIPAddress.InUse"), "{err}");

    // Another tenant's credential sees and touches nothing of it.
    let (okey, osecret) = ec2_credential(&w, "other");
    let theirs = json_of(&aws(&w, &okey, &osecret, &["describe-addresses"]));
    assert_eq!(theirs["Addresses"], serde_json::json!([]));
    let association = eip_field(&addrs[0], "AssociationId");
    let err = failed(&aws(
        &w,
        &okey,
        &osecret,
        &["disassociate-address", "--association-id", &association],
    ));
    assert!(err.contains("InvalidAssociationID.NotFound"), "{err}");
    let err = failed(&aws(
        &w,
        &okey,
        &osecret,
        &["release-address", "--allocation-id", &id],
    ));
    assert!(err.contains("InvalidAllocationID.NotFound"), "{err}");
    assert_eq!(eip(&w, &w.acme, &id)["nic_id"], eni.as_str());

    // Signatures: a wrong secret, an unknown key, a token that is no EC2
    // credential.
    let err = failed(&aws(&w, &key, "not-the-secret", &["describe-addresses"]));
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    let err = failed(&aws(&w, "tok-nonesuch", &secret, &["describe-addresses"]));
    assert!(err.contains("AuthFailure"), "{err}");
    let plain = json_of(&cli(
        &w.server,
        OPERATOR,
        &["token", "create", "--tenant", "acme", "-o", "json"],
    ));
    let err = failed(&aws(
        &w,
        &eip_field(&plain, "id"),
        &eip_field(&plain, "secret"),
        &["describe-addresses"],
    ));
    assert!(err.contains("AuthFailure"), "{err}");

    ok(&ec2(&[
        "disassociate-address",
        "--association-id",
        &association,
    ]));
    assert!(eip(&w, &w.acme, &id)["nic_id"].is_null());
    ok(&ec2(&["release-address", "--allocation-id", &id]));
    assert_eq!(
        cli(&w.server, &w.acme, &["eip", "show", &id]).status.code(),
        Some(2)
    );
}

/// The tenant's quota holds through both facades as through vpcip's API.
#[test]
fn quotas_hold_through_both_facades() {
    let w = world_of(start_configured("[quotas]\neips = 2\n"));
    ok(&cli(
        &w.server,
        &w.acme,
        &["eip", "create", "--bandwidth", "1"],
    ));
    ok(&openstack(
        &w,
        "acme",
        &w.acme,
        &["floating", "ip", "create", "public"],
    ));
    let err = failed(&openstack(
        &w,
        "acme",
        &w.acme,
        &["floating", "ip", "create", "public"],
    ));
    assert!(err.contains("quota") || err.contains("limit"), "{err}");
    let (key, secret) = ec2_credential(&w, "acme");
    let err = failed(&aws(
        &w,
        &key,
        &secret,
        &["allocate-address", "--domain", "vpc"],
    ));
    assert!(err.contains("AddressLimitExceeded"), "{err}");
    let listed = json_of(&cli(&w.server, &w.acme, &["eip", "list", "-o", "json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}
