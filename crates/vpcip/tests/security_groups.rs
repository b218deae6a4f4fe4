//! Security groups in the whole cloud, as a tenant uses them and as an
//! attacker probes them: real server, real agents, real packets. The
//! default group lets in only its members; rules added and removed through
//! the API take effect live (a removed rule cuts what it let in); a NIC's
//! groups can be changed; another group's VM, the outside world and a
//! port without a rule are refused; bad rules are refused with the rule
//! named.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

mod common;

use std::time::Duration;

use vpcip_lab::{Conn, ask_once, echo_server, eventually, udp_ask, udp_echo_server};
use vpcip_model::desired;
use vpcip_model::*;

use common::*;

fn rules(written: &[&str]) -> Vec<SgRule> {
    written.iter().map(|r| r.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_groups_filter_live_in_both_directions() {
    let mut lab = Lab::up("vsg").await;
    let vpc = lab.closed_vpc("v1", "10.0.0.0/16").await;
    let sa = lab.subnet(&vpc, "v1-a", "10.0.1.0/24").await;
    let sb = lab.subnet(&vpc, "v1-b", "10.0.2.0/24").await;
    let (web_s, web) = lab.vm("web", &sa, "h1").await;
    let (_, peer) = lab.vm("peer", &sb, "h2").await; // default group too, other subnet and host
    let (_, near) = lab.vm("near", &sa, "h1").await; // same subnet and host
    // A VM in an advanced group of its own, no rules: nothing reaches it,
    // it reaches nothing.
    let iso: SecurityGroup = lab
        .op
        .post(
            paths::SECURITY_GROUPS,
            &CreateSecurityGroup {
                name: "iso".into(),
                vpc: vpc.id.clone(),
                kind: SgKind::Advanced,
                rules: vec![],
                managed: false,
                client_token: None,
            },
        )
        .await
        .unwrap();
    let (_, lone) = lab.vm("lone", &sa, "h2").await;
    let _: Nic = lab
        .op
        .patch(
            &paths::at(paths::NIC, &[&lone.id]),
            &UpdateNic {
                security_groups: Some(vec![iso.id.clone()]),
                source_dest_check: None,
            },
        )
        .await
        .unwrap();
    for vm in ["web", "lone"] {
        echo_server(&lab.ns(vm), 8080, Duration::from_secs(120));
        udp_echo_server(&lab.ns(vm), 5353, Duration::from_secs(120));
    }
    let eip = lab.eip_for(&web_s).await;
    let client = lab.ns("client");

    // Members of the default group reach each other, across subnets and
    // hosts and on one host.
    assert!(
        eventually(Duration::from_secs(15), || ask_once(
            &lab.ns("peer"),
            at(web.ip, 8080),
            "m"
        )
        .is_some()),
        "a member of the default group cannot reach another"
    );
    assert!(ask_once(&lab.ns("near"), at(web.ip, 8080), "m").is_some());
    assert!(lab.pings("near", web.ip));
    assert!(lab.pings("web", near.ip) && lab.pings("web", peer.ip));
    // Nothing else comes in: the outside world through the EIP, a VM of
    // another group (in both directions).
    assert_eq!(ask_once(&client, at(eip.ip, 8080), "x"), None);
    assert!(!lab.pings("client", eip.ip));
    assert_eq!(ask_once(&lab.ns("lone"), at(web.ip, 8080), "x"), None);
    assert_eq!(ask_once(&lab.ns("web"), at(lone.ip, 8080), "x"), None);
    // What web's ingress refused is counted: in the API (`vpcip nic show`)
    // and on its host agent's /metrics.
    assert!(
        eventually(Duration::from_secs(10), || {
            let drops: desired::NicDrops = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current()
                    .block_on(lab.op.get(&paths::at(paths::NIC_DROPS, &[&web.id])))
            })
            .unwrap();
            drops.packets_in > 0
        }),
        "web's drops never reached the API"
    );
    let metrics = vpcip_lab::cloud::agent_metrics_url(&lab.w, "h1").unwrap();
    let page = scrape(&metrics);
    assert!(
        sample(
            &page,
            "vpcip_agent_nic_dropped_packets",
            &[&format!("nic=\"{}\"", web.id), "direction=\"in\""]
        )
        .is_some_and(|n| n > 0.0),
        "{page}"
    );
    // Their established connections' packets go around h1's bridge (the
    // fast path; crates/vpcip-lab/tests/fastpath.rs shows what it refuses).
    let fast = |page: &str| sample(page, "vpcip_agent_fastpath_packets", &[]).unwrap_or(0.0);
    let before = fast(&page);
    let mut conn = Conn::open(&lab.ns("peer"), at(web.ip, 8080), Duration::from_secs(2)).unwrap();
    for i in 0..10 {
        assert!(conn.ask(&i.to_string()).is_some());
    }
    assert!(
        eventually(Duration::from_secs(10), || fast(&scrape(&metrics))
            >= before + 10.0),
        "h1's fast path took none of an established connection's packets: {}",
        scrape(&metrics)
    );
    // Everything may leave, and the answers come back without a rule.
    let _out = echo_server(&client, 7001, Duration::from_secs(120));
    assert_eq!(
        ask_once(&lab.ns("web"), at(CLIENT_IP, 7001), "out"),
        Some(format!("{} out", eip.ip))
    );

    // A rule added: TCP 8080 from anywhere. The client sees the VM, the
    // rule sees the client's real address (a rule for another address
    // would not do).
    let sg = lab.op.default_sg(&vpc).await.unwrap();
    lab.op
        .add_sg_rules(&sg.id, &rules(&["ingress:tcp:8080:100.64.0.0/10"]))
        .await
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        ask_once(&client, at(eip.ip, 8080), "x"),
        None,
        "a rule for another prefix than the client's lets nothing in"
    );
    let sg = lab
        .op
        .add_sg_rules(
            &sg.id,
            &rules(&[&format!("ingress:tcp:8080:{CLIENT_IP}/32")]),
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || ask_once(
            &client,
            at(eip.ip, 8080),
            "x"
        ) == Some(format!(
            "{CLIENT_IP} x"
        ))),
        "the added rule never let the client in"
    );
    assert_eq!(
        udp_ask(&client, at(eip.ip, 5353), "u"),
        None,
        "UDP has no rule"
    );

    // Removed: an open connection it let in is cut, new ones refused;
    // members still reach web.
    let mut open = Conn::open(&client, at(eip.ip, 8080), Duration::from_secs(2)).unwrap();
    assert!(open.ask("1").is_some());
    let rule = sg
        .rules
        .iter()
        .find(|r| r.remote_cidr.map(|c| c.addr()) == Some(CLIENT_IP))
        .unwrap();
    lab.op.remove_sg_rule(&sg.id, &rule.id).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || ask_once(
            &client,
            at(eip.ip, 8080),
            "x"
        )
        .is_none()),
        "the removed rule still lets the client in"
    );
    assert_eq!(
        open.ask("2"),
        None,
        "the established connection was not cut"
    );
    assert!(ask_once(&lab.ns("peer"), at(web.ip, 8080), "m").is_some());

    // The NIC's groups changed: web now only in a group allowing tcp/22.
    let ssh: SecurityGroup = lab
        .op
        .post(
            paths::SECURITY_GROUPS,
            &CreateSecurityGroup {
                name: "ssh".into(),
                vpc: vpc.id.clone(),
                kind: SgKind::Basic,
                rules: rules(&["ingress:tcp:22:0.0.0.0/0", "egress:all:0.0.0.0/0"]),
                managed: false,
                client_token: None,
            },
        )
        .await
        .unwrap();
    let _: Nic = lab
        .op
        .patch(
            &paths::at(paths::NIC, &[&web.id]),
            &UpdateNic {
                security_groups: Some(vec![ssh.id.clone()]),
                source_dest_check: None,
            },
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || ask_once(
            &lab.ns("peer"),
            at(web.ip, 8080),
            "m"
        )
        .is_none()),
        "web left the default group, yet its members still reach it"
    );
    assert!(!lab.pings("near", web.ip));

    // Refused with the rule named; nothing half-applied.
    let refusal = lab
        .op
        .add_sg_rules(
            &ssh.id,
            &rules(&["ingress:tcp:80:0.0.0.0/0", "ingress:icmp:8:0.0.0.0/0"]),
        )
        .await
        .unwrap_err();
    assert_eq!(refusal.code(), Some("sg_rule_invalid"), "{refusal}");
    assert!(
        refusal.to_string().contains("ingress:icmp:8:0.0.0.0/0"),
        "{refusal}"
    );
    let after: SecurityGroup = lab.op.show(&ssh.id).await.unwrap();
    assert_eq!(
        after.rules.len(),
        2,
        "nothing of the refused request was kept"
    );
    let other = lab.closed_vpc("v2", "10.9.0.0/16").await;
    let foreign = lab.op.default_sg(&other).await.unwrap();
    let refusal = lab
        .op
        .add_sg_rules(&ssh.id, &rules(&[&format!("ingress:all:{}", foreign.id)]))
        .await
        .unwrap_err();
    assert_eq!(refusal.code(), Some("sg_rule_invalid"), "{refusal}");
    assert!(
        refusal.to_string().contains("not in the group's VPC"),
        "{refusal}"
    );
    let refusal = lab
        .op
        .remove::<vpcip_model::SecurityGroup>(&ssh.id)
        .await
        .unwrap_err();
    assert_eq!(refusal.code(), Some("resource_in_use"), "{refusal}");
}

/// A group of the given kind and rules in `vpc`.
async fn group(lab: &Lab, vpc: &Vpc, name: &str, kind: SgKind, written: &[&str]) -> SecurityGroup {
    lab.op
        .post(
            paths::SECURITY_GROUPS,
            &CreateSecurityGroup {
                name: name.into(),
                vpc: vpc.id.clone(),
                kind,
                rules: rules(written),
                managed: false,
                client_token: None,
            },
        )
        .await
        .unwrap()
}

/// NIC `nic` in exactly `groups`.
async fn set_groups(lab: &Lab, nic: &Nic, groups: &[&SecurityGroup]) {
    let _: Nic = lab
        .op
        .patch(
            &paths::at(paths::NIC, &[&nic.id]),
            &UpdateNic {
                security_groups: Some(groups.iter().map(|g| g.id.clone()).collect()),
                source_dest_check: None,
            },
        )
        .await
        .unwrap();
}

/// The cases a keepalived pair, a hairpin and a second NIC bring: two VMs
/// in an advanced group whose only ingress rule is the web port from the
/// outside client share a VIP with an EIP; VRRP between them passes with
/// no rule written for it (the group lets a VIP's bound NICs hear each
/// other's adverts), so the backup stays backup and takes over when the
/// master dies. A VM of the VPC reaching the VIP through its EIP (hairpin)
/// is judged by the address the VM sees (its own EIP). A secondary ENI is
/// filtered by its own groups, not by its server's primary NIC's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vrrp_hairpin_and_enis_under_advanced_groups() {
    let mut lab = Lab::up("vsv").await;
    let vpc = lab.closed_vpc("v1", "10.0.0.0/16").await;
    let sa = lab.subnet(&vpc, "v1-a", "10.0.1.0/24").await;
    let sb = lab.subnet(&vpc, "v1-b", "10.0.2.0/24").await;
    let ha = group(
        &lab,
        &vpc,
        "ha",
        SgKind::Advanced,
        &[
            &format!("ingress:tcp:80:{CLIENT_IP}/32"),
            "egress:all:0.0.0.0/0",
        ],
    )
    .await;
    let (_, a) = lab.vm("a", &sa, "h1").await;
    let (server_b, b) = lab.vm("b", &sa, "h2").await;
    set_groups(&lab, &a, &[&ha]).await;
    set_groups(&lab, &b, &[&ha]).await;
    let (vip, eip) = lab.vip_with_eip("vip-1", &sa, &[&a, &b]).await;
    for vm in ["a", "b"] {
        lab.httpd(vm);
    }
    let ka = keepalived(&mut lab, "a", 1, &vip.id, &a.id);
    keepalived(&mut lab, "b", 1, &vip.id, &b.id);
    let to = at(eip.ip, 80);
    if let Err(last) = lab.wait_served_by(to, "a", Duration::from_secs(20)) {
        panic!("the EIP on the VIP does not reach the master a: {last:?}");
    }
    // b hears a's adverts: it stays backup, without the VIP. (Were VRRP
    // refused, b would turn master within three advert intervals and take
    // the VIP too.)
    let holds_vip = |lab: &Lab, vm: &str| {
        lab.w
            .exec(vm, &["ip", "-br", "addr", "show", "dev", "eth0"])
            .contains(&format!("{}/", vip.ip))
    };
    for _ in 0..20 {
        assert!(
            !holds_vip(&lab, "b"),
            "b took the VIP while a is master: VRRP between them is refused"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(holds_vip(&lab, "a"));
    // Nothing else is let in: a's own address, from a VM of the VPC.
    let (server_y, _) = lab.vm("y", &sb, "h2").await;
    assert!(http_get(&lab.ns("y"), at(a.ip, 80)).is_none());

    // Hairpin: y reaches the VIP through its EIP only once a rule lets in
    // the address a sees, y's own EIP.
    let eip_y = lab.eip_for(&server_y).await;
    assert!(
        http_get(&lab.ns("y"), to).is_none(),
        "the hairpin got in without a rule"
    );
    lab.op
        .add_sg_rules(
            &ha.id,
            &rules(&[&format!("ingress:tcp:80:{}/32", eip_y.ip)]),
        )
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || lab
            .answered_by(&http_get(&lab.ns("y"), to), "a")),
        "the hairpin from y's EIP is refused though a rule allows it"
    );

    // The master dies: b takes the VIP, the EIP follows.
    lab.w.kill(ka);
    let vrrp_pid = std::fs::read_to_string(
        vpcip_lab::cloud::state_dir(&lab.w)
            .join("keepalived-a-1")
            .join("vrrp.pid"),
    );
    if let Ok(pid) = vrrp_pid {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid.trim().parse().unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    lab.w.exec("a", &["ip", "link", "set", "eth0", "down"]);
    if let Err(last) = lab.wait_served_by(to, "b", Duration::from_secs(20)) {
        panic!("the EIP did not follow the VIP to b: {last:?}");
    }

    echo_server(&lab.ns("b"), 8080, Duration::from_secs(120));
    assert_eq!(ask_once(&lab.ns("y"), at(b.ip, 8080), "x"), None);
    // A second NIC of b, in subnet v1-b, in a group of its own that lets
    // in tcp/8080 from v1-b: y reaches it there, not on port 80 (which
    // b's primary NIC lets in from the client); b's primary NIC, in `ha`,
    // does not let y in on 8080.
    let web = group(
        &lab,
        &vpc,
        "eni-web",
        SgKind::Advanced,
        &["ingress:tcp:8080:10.0.2.0/24", "egress:all:0.0.0.0/0"],
    )
    .await;
    let eni = lab
        .attached_eni("b-second", &sb, &server_b, std::slice::from_ref(&web.id))
        .await;
    vpcip_lab::cloud::plug_nic(
        &mut lab.w,
        "b",
        "h2",
        "eth1",
        &vpcip_lab::cloud::VmNic {
            nic_id: &eni.id,
            mac: &eni.mac,
            ip: eni.ip,
            prefix_len: 24,
            gateway: None,
        },
    );
    assert!(
        eventually(Duration::from_secs(15), || ask_once(
            &lab.ns("y"),
            at(eni.ip, 8080),
            "eni"
        )
        .is_some()),
        "y cannot reach b's second NIC on the port its group allows"
    );
    assert!(
        http_get(&lab.ns("y"), at(eni.ip, 80)).is_none(),
        "the second NIC let in a port only its server's primary NIC allows"
    );
}
