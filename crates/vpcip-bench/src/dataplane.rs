//! Data-plane programming benchmark: loading N EIP bindings into an empty
//! gateway, vpcip (nftables maps over netlink, one transaction) beside the
//! ways other EIP gateways do it: per-EIP iptables rules loaded with
//! iptables-restore (legacy and nft flavours, as Neutron's L3 agent and
//! Kube-OVN's NAT gateway do) and the same nftables maps loaded with
//! `nft -f`. Each run gets a fresh namespace of its own; no packet is sent.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Instant;

use vpcip_dataplane::nat::{MapChange, NatPlan};
use vpcip_lab::World;
use vpcip_sys::netns::{in_netns, named};
use vpcip_sys::nft::NatTable;

/// EIP i → private i, both in 10.0.0.0/8 (inside the benchmark's own
/// namespace only).
fn bindings(n: u32) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    (0..n)
        .map(|i| {
            (
                Ipv4Addr::from(0x0a80_0000 + i),
                Ipv4Addr::from(0x0a00_0000 + i),
            )
        })
        .collect()
}

fn timed_command(w: &World, node: &str, cmd: &[&str]) -> anyhow::Result<f64> {
    let ns = w.ns(node);
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns])
        .args(cmd)
        .output()?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(secs)
}

fn vpcip_netlink(n: u32) -> anyhow::Result<f64> {
    let mut w = World::new("vpb");
    w.add_node("gw");
    let pairs = bindings(n);
    let plan = NatPlan {
        dnat: MapChange {
            remove: vec![],
            add: pairs.clone(),
        },
        snat: MapChange {
            remove: vec![],
            add: pairs.iter().map(|(e, p)| (*p, *e)).collect(),
        },
    };
    let secs = in_netns(&named(&w.ns("gw")), move || -> anyhow::Result<f64> {
        let mut t = NatTable::open()?;
        t.ensure()?;
        let start = Instant::now();
        t.apply(&plan)?;
        let secs = start.elapsed().as_secs_f64();
        let (d, s) = t.read_settled()?;
        anyhow::ensure!(
            d.len() == n as usize && s.len() == n as usize,
            "maps hold {} and {}",
            d.len(),
            s.len()
        );
        Ok(secs)
    })??;
    Ok(secs)
}

/// The benchmarks' gateway state: one VPC router holding `nat`.
pub(crate) fn one_router(
    nat: Vec<vpcip_model::desired::NatEntry>,
) -> vpcip_model::desired::GatewayState {
    vpcip_model::desired::GatewayState {
        routers: vec![vpcip_model::desired::VpcRouter {
            slot: 0,
            vpc_id: "vpc-bench00001".into(),
            index: 1,
            subnets: vec![],
            nat,
            visible: vec![],
            vips: vec![],
        }],
        ..Default::default()
    }
}

/// A gateway agent's reconciler working on node `gw` of `w`.
pub(crate) fn gateway_agent(w: &World) -> vpcip_agent::gateway::GatewayReconciler {
    vpcip_agent::gateway::GatewayReconciler::new(
        &w.prefix,
        &named(&w.ns("gw")),
        Ipv4Addr::new(192, 0, 2, 2),
    )
}

/// Seconds of `r`'s first pass for `state`, and of a second pass, which
/// must find nothing to do.
pub(crate) fn first_and_idle(
    r: &mut vpcip_agent::gateway::GatewayReconciler,
    state: &vpcip_model::desired::GatewayState,
) -> anyhow::Result<(f64, f64)> {
    let start = Instant::now();
    r.reconcile(state).map_err(anyhow::Error::msg)?;
    let first = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let again = r.reconcile(state).map_err(anyhow::Error::msg)?;
    let idle = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        again.changed == 0,
        "a second pass changed {}",
        again.changed
    );
    Ok((first, idle))
}

/// The gateway agent's whole reconcile into an empty node: the router
/// namespace and its link, its NAT maps, the node's steering map, counter
/// sets, rule and table.
fn vpcip_gateway(n: u32) -> anyhow::Result<f64> {
    use vpcip_model::desired::NatEntry;
    let mut w = World::new("vpb");
    w.add_node("gw");
    let state = one_router(
        bindings(n)
            .into_iter()
            .map(|(eip, private_ip)| NatEntry {
                eip,
                private_ip,
                eip_id: String::new(),
                shaping: None,
                algs: vec![],
            })
            .collect(),
    );
    let memory = std::env::temp_dir().join(format!("{}memory", w.prefix));
    let reconciler = || gateway_agent(&w);
    let mut r = reconciler().remember_in(&memory);
    let (secs, idle) = first_and_idle(&mut r, &state)?;
    // A restarted agent with its memory skips the reads; without it
    // (memory lost), it reads everything.
    let timed_restart = |mut fresh: vpcip_agent::gateway::GatewayReconciler| {
        let start = Instant::now();
        let restart = fresh.reconcile(&state).map_err(anyhow::Error::msg)?;
        let secs = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            restart.changed == 0,
            "a restarted agent changed {}",
            restart.changed
        );
        anyhow::Ok(secs)
    };
    let remembered = timed_restart(reconciler().remember_in(&memory))?;
    let forgotten = timed_restart(reconciler())?;
    let _ = std::fs::remove_dir_all(&memory);
    println!(
        "dataplane gateway agent with {n} bindings: pass with nothing to do {idle:.3} s; first pass after a restart {remembered:.3} s (memory kept), {forgotten:.3} s (memory lost)"
    );
    Ok(secs)
}

fn nft_file(n: u32, dir: &std::path::Path) -> anyhow::Result<f64> {
    let mut w = World::new("vpb");
    w.add_node("gw");
    let mut f = String::from(
        "table ip nft_nat {\n map eip_dnat { type ipv4_addr : ipv4_addr; }\n map eip_snat { type ipv4_addr : ipv4_addr; }\n chain pre { type nat hook prerouting priority dstnat; dnat to ip daddr map @eip_dnat; }\n chain post { type nat hook postrouting priority srcnat; snat to ip saddr map @eip_snat; }\n}\n",
    );
    let pairs = bindings(n);
    for (map, flip) in [("eip_dnat", false), ("eip_snat", true)] {
        let _ = write!(f, "add element ip nft_nat {map} {{ ");
        for (i, (e, p)) in pairs.iter().enumerate() {
            let (k, v) = if flip { (p, e) } else { (e, p) };
            let _ = write!(f, "{}{k} : {v}", if i == 0 { "" } else { ", " });
        }
        f += " }\n";
    }
    let path = dir.join("maps.nft");
    std::fs::write(&path, f)?;
    timed_command(&w, "gw", &["nft", "-f", &path.display().to_string()])
}

fn iptables_file(n: u32, dir: &std::path::Path, restore: &str) -> anyhow::Result<f64> {
    let mut w = World::new("vpb");
    w.add_node("gw");
    let mut f = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    for (e, p) in bindings(n) {
        let _ = writeln!(f, "-A PREROUTING -d {e}/32 -j DNAT --to-destination {p}");
        let _ = writeln!(f, "-A POSTROUTING -s {p}/32 -j SNAT --to-source {e}");
    }
    f += "COMMIT\n";
    let path = dir.join(format!("{restore}.rules"));
    std::fs::write(&path, f)?;
    timed_command(&w, "gw", &[restore, &path.display().to_string()])
}

/// Runs every method `repeats` times and prints medians and ratios.
pub fn program(n: u32, repeats: usize, dir: &std::path::Path) -> anyhow::Result<()> {
    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("vpcip (nftables maps over netlink)", vec![]),
        ("vpcip gateway agent, whole reconcile", vec![]),
        ("nft -f (same maps)", vec![]),
        ("iptables-legacy-restore (per-EIP rules)", vec![]),
        ("iptables-nft-restore (per-EIP rules)", vec![]),
    ];
    for _ in 0..repeats {
        // Interleaved, so that the machine's noise falls on all alike.
        rows[0].1.push(vpcip_netlink(n)?);
        rows[1].1.push(vpcip_gateway(n)?);
        rows[2].1.push(nft_file(n, dir)?);
        rows[3]
            .1
            .push(iptables_file(n, dir, "iptables-legacy-restore")?);
        rows[4]
            .1
            .push(iptables_file(n, dir, "iptables-nft-restore")?);
    }
    let base = crate::median(rows[0].1.clone());
    for (name, v) in &rows {
        let m = crate::median(v.clone());
        println!(
            "dataplane program {n} bindings  {name:42} {m:7.3} s  ({:5.1}x vpcip)  runs: {}",
            m / base,
            crate::fmt_runs(v, 3)
        );
    }
    Ok(())
}
