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
            "/v1/security-groups",
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
            &format!("/v1/nics/{}", lone.id),
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
                    .block_on(lab.op.get(&format!("/v1/nics/{}/drops", web.id)))
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
            "/v1/security-groups",
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
            &format!("/v1/nics/{}", web.id),
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
    let after: SecurityGroup = lab.op.show("security-groups", &ssh.id).await.unwrap();
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
    let refusal = lab.op.remove("security-groups", &ssh.id).await.unwrap_err();
    assert_eq!(refusal.code(), Some("resource_in_use"), "{refusal}");
}
