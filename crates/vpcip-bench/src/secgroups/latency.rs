//! How fast a security-group change reaches the data path, in the lab's
//! whole cloud.

use std::time::{Duration, Instant};

use super::quantile;

fn report(what: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "secgroups {what} over {} changes: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        quantile(&samples, 0.5),
        quantile(&samples, 0.9),
        quantile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

/// From the API's answer to the packet allowed or refused, in the lab's
/// whole cloud (real `vpcip controller` and agents): a rule for the outside
/// client added to and removed from the group of a VM with an EIP; a VM
/// of another host made a member of the group a rule names (remote group)
/// and taken out again. `n` changes of each kind.
pub async fn change_latency(n: usize) -> anyhow::Result<()> {
    use std::net::SocketAddr;
    use vpcip_lab::cloud;
    use vpcip_lab::{Conn, echo_server, eventually};
    use vpcip_model::*;

    let crate::LabCloud { mut w, op, .. } = crate::lab_cloud("vbsl", "203.0.113.0/24").await?;
    let vpc = crate::bench_world(&op, "203.0.113.0/24", "10.0.0.0/16", "10.0.0.0/24").await?;
    let group = |name: &str, rules: Vec<SgRule>| CreateSecurityGroup {
        name: name.into(),
        vpc: vpc.id.clone(),
        kind: SgKind::Advanced,
        rules,
        managed: false,
        client_token: None,
    };
    let parse = |r: &str| r.parse::<SgRule>().map_err(|e| anyhow::anyhow!(e));
    let egress = parse("egress:all:0.0.0.0/0")?;
    let clients: SecurityGroup = op
        .post(
            paths::SECURITY_GROUPS,
            &group("clients", vec![egress.clone()]),
        )
        .await?;
    let others: SecurityGroup = op
        .post(
            paths::SECURITY_GROUPS,
            &group("others", vec![egress.clone()]),
        )
        .await?;
    let web_sg: SecurityGroup = op
        .post(
            paths::SECURITY_GROUPS,
            &group("web", vec![egress, parse("ingress:tcp:8080:clients")?]),
        )
        .await?;
    let mut plugged = Vec::new();
    for (name, host, sg) in [
        ("web", cloud::HOSTS[0], &web_sg),
        ("peer", cloud::HOSTS[1], &others),
    ] {
        plugged.push(crate::bench_vm(&mut w, &op, name, host, vec![sg.id.clone()]).await?);
    }
    let (web, web_nic) = &plugged[0];
    let peer_nic = &plugged[1].1;
    let eip = op.eip_for_server(&web.id, 100).await?;
    let _echo = echo_server(&w.ns("web"), 8080, Duration::from_secs(900));
    let (client, peer) = (w.ns("client"), w.ns("peer"));
    let via_eip = SocketAddr::new(eip.ip.into(), 8080);
    let direct = SocketAddr::new(web_nic.ip.into(), 8080);
    let reaches = |ns: &str, to: SocketAddr, timeout| {
        Conn::open(ns, to, timeout)
            .and_then(|mut c| c.ask("x"))
            .is_some()
    };
    // The world works: the client in through a rule, then out again.
    let rule = parse(&format!(
        "ingress:tcp:8080:{}/32",
        vpcip_lab::OUTSIDE_CLIENT
    ))?;
    op.add_sg_rules(&web_sg.id, std::slice::from_ref(&rule))
        .await?;
    if !eventually(Duration::from_secs(20), || {
        reaches(&client, via_eip, Duration::from_millis(200))
    }) {
        anyhow::bail!("the client never reached the VM through its EIP");
    }
    op.remove_sg_rule(&web_sg.id, &rule.to_string()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Each probe costs at most its timeout when refused (the SYN is
    // dropped): the figures' resolution.
    let probe = Duration::from_millis(3);
    let until = |ns: &str, to: SocketAddr, want: bool, start: Instant| -> anyhow::Result<f64> {
        let deadline = start + Duration::from_secs(5);
        while reaches(ns, to, probe) != want {
            anyhow::ensure!(Instant::now() < deadline, "no change after 5 s");
        }
        Ok(start.elapsed().as_secs_f64() * 1000.0)
    };
    let (mut added, mut removed, mut joined, mut left) = (vec![], vec![], vec![], vec![]);
    let member = |sg: &SecurityGroup| UpdateNic {
        security_groups: Some(vec![sg.id.clone()]),
        source_dest_check: None,
    };
    for _ in 0..n {
        let start = Instant::now();
        op.add_sg_rules(&web_sg.id, std::slice::from_ref(&rule))
            .await?;
        added.push(until(&client, via_eip, true, start)?);
        let start = Instant::now();
        op.remove_sg_rule(&web_sg.id, &rule.to_string()).await?;
        removed.push(until(&client, via_eip, false, start)?);
        let start = Instant::now();
        let _: Nic = op
            .patch(&paths::at(paths::NIC, &[&peer_nic.id]), &member(&clients))
            .await?;
        joined.push(until(&peer, direct, true, start)?);
        let start = Instant::now();
        let _: Nic = op
            .patch(&paths::at(paths::NIC, &[&peer_nic.id]), &member(&others))
            .await?;
        left.push(until(&peer, direct, false, start)?);
    }
    report("rule added → client allowed", added);
    report("rule removed → client refused", removed);
    report("remote-group member added → allowed", joined);
    report("remote-group member removed → refused", left);
    Ok(())
}
