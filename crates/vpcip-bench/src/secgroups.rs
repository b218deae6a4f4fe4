//! What security groups cost on the data path and how fast they are
//! programmed, measured side by side with the filter off and with the
//! per-port iptables chains of Neutron's `iptables_hybrid` driver, in the
//! isolation benchmark's world (client → EIP on gw → VXLAN → h1 → vm1;
//! vm1 → vm2 across h1 and h2):
//!
//! - new TCP connections/s from the client to vm1 through the EIP (each
//!   SYN is judged by vm1's ingress rules on h1): no filter; vpcip with 1
//!   rule, with 1,000 rules in vm1's group, with 10,000 NICs of 20 rules
//!   each on h1; iptables with the same three shapes (vm1's port last in
//!   the per-port jump list, as the newest port would be);
//! - TCP throughput vm1 → vm2 (iperf3) with vpcip's filter on and off,
//!   toggled in one world;
//! - the time to program 10,000 NICs × 20 rules into an empty host: the
//!   planner and the kernel's transactions, vpcip against
//!   `iptables-legacy-restore` of the equivalent chains.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use vpcip_dataplane::filter::filter_for;
use vpcip_lab::World;
use vpcip_model::desired::{HostPort, HostState};
use vpcip_model::filter::{FilterElement, GroupFilter, PROTO_ICMP, PROTO_TCP};
use vpcip_sys::netns::{in_netns, named};
use vpcip_sys::nft::NatTable;

const VM1: &str = "10.0.1.2";
const VM2: &str = "10.0.1.3";

/// The shape of the filter on h1.
#[derive(Clone, Copy, Debug)]
enum Filter {
    Off,
    Vpcip { rules: u32, nics: u32 },
    Iptables { rules: u32, nics: u32 },
}

/// `n` rules of which the last lets the client's connections to vm1 in
/// (tcp 8080 from anywhere); the others are tcp ports 10000+ from made-up
/// /24s, as a group with many rules would hold.
fn elements(n: u32) -> Vec<FilterElement> {
    let mut out: Vec<FilterElement> = (1..n)
        .map(|i| {
            let port = u16::try_from(10_000 + i % 50_000).unwrap_or(u16::MAX);
            let net = Ipv4Addr::from(0x6440_0000 + (i << 8)); // 100.64/10
            FilterElement::new(
                (PROTO_TCP, PROTO_TCP),
                (port, port),
                format!("{net}/24").parse().unwrap_or_default(),
            )
        })
        .collect();
    out.push(FilterElement::new(
        (PROTO_TCP, PROTO_TCP),
        (8080, 8080),
        "0.0.0.0/0".parse().unwrap_or_default(),
    ));
    out.push(FilterElement::new(
        (PROTO_TCP, PROTO_TCP),
        (5201, 5201),
        "10.0.1.0/24".parse().unwrap_or_default(),
    ));
    // Ping, for the world's reachability check.
    out.push(FilterElement::new(
        (PROTO_ICMP, PROTO_ICMP),
        (0, 65535),
        "0.0.0.0/0".parse().unwrap_or_default(),
    ));
    vpcip_model::filter::disjoint(out.into_iter().collect())
}

/// A host's desired state: port `t1` (the real VM) in group `sg-vm` with
/// `rules` rules, and `nics - 1` made-up ports in groups of 20 rules (20
/// ports per group).
fn host_state(rules: u32, nics: u32, vm_ip: &str) -> HostState {
    let all = FilterElement::new(
        (0, 255),
        (0, 65535),
        "0.0.0.0/0".parse().unwrap_or_default(),
    );
    let port = |ifname: String, ip: Ipv4Addr, group: String| HostPort {
        nic_id: ifname.clone(),
        ifname,
        vni: 100,
        mac: String::new(),
        ips: vec![ip],
        source_dest_check: true,
        security_groups: vec![group],
        vrrp_peers: vec![],
        zone: 1,
        dhcp: None,
    };
    let mut ports = vec![port(
        "t1".into(),
        vm_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
        "sg-vm".into(),
    )];
    let mut groups = vec![GroupFilter {
        id: "sg-vm".into(),
        ingress: elements(rules),
        egress: vec![all],
    }];
    let fake_groups = nics.saturating_sub(1).div_ceil(20);
    for g in 0..fake_groups {
        groups.push(GroupFilter {
            id: format!("sg-f{g}"),
            ingress: elements(20),
            egress: vec![all],
        });
    }
    ports.extend((1..nics).map(|i| {
        port(
            format!("tf{i}"),
            Ipv4Addr::from(0x0a80_0000 + i),
            format!("sg-f{}", (i - 1) / 20),
        )
    }));
    HostState {
        domains: vec![],
        ports,
        groups,
    }
}

/// `iptables-legacy-restore` input: Neutron's shape, one jump per port
/// and direction in a shared chain (`t1` last), a chain per port with the
/// state check, the rules and a drop.
fn iptables_script(rules: u32, nics: u32) -> String {
    let mut s = String::from("*filter\n:FORWARD ACCEPT [0:0]\n:sg-chain - [0:0]\n");
    let ports: Vec<String> = (1..nics)
        .map(|i| format!("tf{i}"))
        .chain(["t1".into()])
        .collect();
    for p in &ports {
        let _ = writeln!(s, ":i-{p} - [0:0]\n:o-{p} - [0:0]");
    }
    s.push_str("-A FORWARD -m physdev --physdev-is-bridged -j sg-chain\n");
    for p in &ports {
        let _ = writeln!(
            s,
            "-A sg-chain -m physdev --physdev-out {p} --physdev-is-bridged -j i-{p}\n-A sg-chain -m physdev --physdev-in {p} --physdev-is-bridged -j o-{p}"
        );
    }
    for p in &ports {
        let n = if p == "t1" { rules } else { 20 };
        let _ = writeln!(s, "-A i-{p} -m state --state RELATED,ESTABLISHED -j RETURN");
        for i in 1..n {
            let port = 10_000 + i % 50_000;
            let net = Ipv4Addr::from(0x6440_0000 + (i << 8));
            let _ = writeln!(s, "-A i-{p} -s {net}/24 -p tcp --dport {port} -j RETURN");
        }
        let _ = writeln!(s, "-A i-{p} -p tcp --dport 8080 -j RETURN");
        let _ = writeln!(s, "-A i-{p} -s 10.0.1.0/24 -p tcp --dport 5201 -j RETURN");
        let _ = writeln!(s, "-A i-{p} -p icmp -j RETURN");
        let _ = writeln!(s, "-A i-{p} -j DROP");
        let _ = writeln!(
            s,
            "-A o-{p} -m state --state RELATED,ESTABLISHED -j RETURN\n-A o-{p} -j RETURN"
        );
    }
    s.push_str("COMMIT\n");
    s
}

fn restore(w: &World, node: &str, script: &str) -> anyhow::Result<Duration> {
    use std::io::Write;
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &w.ns(node), "iptables-legacy-restore"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(script.as_bytes())?;
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "iptables-legacy-restore failed");
    Ok(started.elapsed())
}

fn bridge_nf(w: &World, node: &str, on: bool) {
    let v = if on { "1" } else { "0" };
    w.exec(
        node,
        &[
            "sysctl",
            "-qw",
            &format!("net.bridge.bridge-nf-call-iptables={v}"),
        ],
    );
}

/// Puts `f` on h1 (and on h2 the same shape with vm2's port, so that the
/// throughput runs cross two filters).
fn apply(w: &World, f: Filter) -> anyhow::Result<()> {
    for (host, ip) in [("h1", VM1), ("h2", VM2)] {
        let _ = w.try_exec(host, &["nft", "delete", "table", "ip", "vpcip_sg"]);
        let _ = w.try_exec(host, &["nft", "delete", "table", "bridge", "vpcip_sgmark"]);
        let _ = w.try_exec(host, &["iptables-legacy", "-F"]);
        let _ = w.try_exec(host, &["iptables-legacy", "-X"]);
        match f {
            Filter::Off => bridge_nf(w, host, false),
            Filter::Vpcip { rules, nics } => {
                bridge_nf(w, host, true);
                let want = filter_for(&host_state(rules, nics, ip), None);
                in_netns(&named(&w.ns(host)), move || -> anyhow::Result<()> {
                    NatTable::open()?.make_filter(&want)?;
                    Ok(())
                })??;
            }
            Filter::Iptables { rules, nics } => {
                bridge_nf(w, host, true);
                restore(w, host, &iptables_script(rules, nics))?;
            }
        }
    }
    Ok(())
}

fn cps_run(f: Filter) -> anyhow::Result<f64> {
    let w = crate::isolation::world(false)?;
    apply(&w, f)?;
    if let Err(e) = crate::isolation::reachable(&w) {
        if std::env::var_os("VPCIP_BENCH_KEEP").is_some() {
            eprintln!("kept: {}", w.keep());
        }
        return Err(e);
    }
    let _server = crate::cps::accept_and_close(&w.ns("vm1"), Duration::from_secs(10));
    crate::cps::measure(&w, 0.2)?; // warm-up
    crate::cps::measure(&w, 2.0)
}

/// Gbit/s vm1 → vm2 per repeat for each of `variants`, toggled in one
/// world (each repeat runs every variant once, in turn).
fn throughput_runs(
    variants: &[Filter],
    gro: bool,
    repeats: usize,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut w = crate::isolation::world(gro)?;
    crate::isolation::reachable(&w)?;
    let child = Command::new("ip")
        .args(["netns", "exec", &w.ns("vm2"), "iperf3", "-s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    w.adopt(child);
    std::thread::sleep(Duration::from_millis(300));
    let to: Ipv4Addr = VM2.parse()?;
    let _ = crate::shaping::iperf(&w, "vm1", to, 1)?; // warm-up
    let mut out = vec![Vec::new(); variants.len()];
    for _ in 0..repeats {
        for (i, f) in variants.iter().enumerate() {
            apply(&w, *f)?;
            out[i].push(crate::shaping::iperf(&w, "vm1", to, 2)?);
        }
    }
    Ok(out)
}

/// Seconds to program `nics` NICs × 20 rules into an empty host: vpcip's
/// planner, vpcip's transactions, iptables-legacy-restore.
fn program_run(nics: u32) -> anyhow::Result<(f64, f64, f64)> {
    let mut w = World::new("vbs");
    w.add_node("h");
    let state = host_state(20, nics, VM1);
    let started = Instant::now();
    let want = filter_for(&state, None);
    let plan = started.elapsed().as_secs_f64();
    let kernel = in_netns(&named(&w.ns("h")), move || -> anyhow::Result<f64> {
        let started = Instant::now();
        NatTable::open()?.make_filter(&want)?;
        Ok(started.elapsed().as_secs_f64())
    })??;
    let ipt = restore(&w, "h", &iptables_script(20, nics))?.as_secs_f64();
    Ok((plan, kernel, ipt))
}

pub fn secgroups(rules: u32, nics: u32, repeats: usize) -> anyhow::Result<()> {
    let variants = [
        ("no filter", Filter::Off),
        ("vpcip, 1 rule, 1 NIC", Filter::Vpcip { rules: 1, nics: 1 }),
        ("vpcip, R rules", Filter::Vpcip { rules, nics: 1 }),
        (
            "vpcip, N NICs x 20 rules",
            Filter::Vpcip { rules: 20, nics },
        ),
        (
            "iptables, 1 rule, 1 port",
            Filter::Iptables { rules: 1, nics: 1 },
        ),
        ("iptables, R rules", Filter::Iptables { rules, nics: 1 }),
        (
            "iptables, N ports x 20 rules",
            Filter::Iptables { rules: 20, nics },
        ),
    ];
    let mut cps: Vec<Vec<f64>> = vec![vec![]; variants.len()];
    for _ in 0..repeats {
        for (i, (_, f)) in variants.iter().enumerate() {
            cps[i].push(cps_run(*f)?);
        }
    }
    let med = |v: &[f64]| crate::median(v.to_vec());
    for (i, (name, _)) in variants.iter().enumerate() {
        println!(
            "secgroups new connections/s via EIP, {name:30} {:7.0}  runs: {}",
            med(&cps[i]),
            crate::fmt_runs(&cps[i], 0),
        );
    }
    println!(
        "secgroups cps ratios (R={rules}, N={nics}): vpcip R rules / 1 rule {:.2}, N NICs / 1 NIC {:.2}, vpcip 1 rule / no filter {:.2}; iptables R rules / 1 rule {:.2}, N ports / 1 port {:.2}",
        med(&cps[2]) / med(&cps[1]),
        med(&cps[3]) / med(&cps[1]),
        med(&cps[1]) / med(&cps[0]),
        med(&cps[5]) / med(&cps[4]),
        med(&cps[6]) / med(&cps[4]),
    );
    let tput = [
        ("no filter", Filter::Off),
        ("vpcip, 20 rules", Filter::Vpcip { rules: 20, nics: 1 }),
        (
            "iptables, 20 rules",
            Filter::Iptables { rules: 20, nics: 1 },
        ),
    ];
    for gro in [false, true] {
        let runs = throughput_runs(&tput.map(|t| t.1), gro, repeats.max(3) * 2)?;
        let underlay = if gro { "underlay GRO" } else { "no GRO" };
        for (i, (name, _)) in tput.iter().enumerate() {
            let ratios: Vec<f64> = runs[i]
                .iter()
                .zip(&runs[0])
                .map(|(x, off)| x / off)
                .collect();
            println!(
                "secgroups vm→vm Gbit/s ({underlay}), {name:20} {:5.2}  ratio to no filter {:.2}  (ratios: {})",
                med(&runs[i]),
                med(&ratios),
                crate::fmt_runs(&ratios, 2),
            );
        }
    }
    let mut runs = Vec::new();
    for _ in 0..repeats {
        runs.push(program_run(nics)?);
    }
    let col = |f: fn(&(f64, f64, f64)) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    println!(
        "secgroups programming {nics} NICs x 20 rules into an empty host: vpcip plan {:.3} s + kernel {:.3} s (runs: {}); iptables-legacy-restore {:.3} s (runs: {})",
        med(&col(|r| r.0)),
        med(&col(|r| r.1)),
        crate::fmt_runs(&col(|r| r.0 + r.1), 3),
        med(&col(|r| r.2)),
        crate::fmt_runs(&col(|r| r.2), 3),
    );
    Ok(())
}

/// p-th quantile (p in [0, 1]) of sorted samples.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    // p in [0, 1]: the index is within the samples.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

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
/// whole cloud (real `vpcip server` and agents): a rule for the outside
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
