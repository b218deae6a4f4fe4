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
//!   toggled in one world, and the same for iptables in another;
//! - the time to program 10,000 NICs × 20 rules into an empty host: the
//!   planner and the kernel's transactions, vpcip against
//!   `iptables-legacy-restore` of the equivalent chains.
//!
//! `rules.rs` makes the filters' shapes (vpcip's desired state, the
//! equivalent iptables chains), `latency.rs` measures how fast a change
//! reaches the data path.

mod latency;
mod rules;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use vpcip_dataplane::fastpath::fastpath_for;
use vpcip_dataplane::filter::filter_for;
use vpcip_dataplane::isolation::port_guards;
use vpcip_dataplane::links::vxlan_ifname;
use vpcip_lab::World;
use vpcip_sys::fastpath::{FastPath, links_of};
use vpcip_sys::link::Net;
use vpcip_sys::netns::{in_netns, named};
use vpcip_sys::nft::NatTable;

pub use latency::change_latency;
use rules::{host_state, iptables_script};

const VM1: &str = "10.0.1.2";
const VM2: &str = "10.0.1.3";

/// The shape of the filter on h1.
#[derive(Clone, Copy, Debug)]
enum Filter {
    Off,
    Vpcip { rules: u32, nics: u32 },
    Iptables { rules: u32, nics: u32 },
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
/// throughput runs cross two filters). vpcip's comes with its fast path,
/// as the host agent programs it (returned: its packet counts).
fn apply(w: &World, f: Filter) -> anyhow::Result<Vec<FastPath>> {
    let mut fast = vec![];
    for (host, vm, ip) in [("h1", "vm1", VM1), ("h2", "vm2", VM2)] {
        match f {
            Filter::Off => bridge_nf(w, host, false),
            Filter::Vpcip { rules, nics } => {
                bridge_nf(w, host, true);
                let mac = w.exec(vm, &["cat", "/sys/class/net/eth0/address"]);
                let state = host_state(rules, nics, ip, mac.trim());
                let want = filter_for(&state, None);
                fast.push(in_netns(
                    &named(&w.ns(host)),
                    move || -> anyhow::Result<FastPath> {
                        NatTable::open()?.make_filter(&want)?;
                        let net = Net::open()?;
                        let (seen, index) = links_of(&net.links()?);
                        let guards = port_guards(&state, vxlan_ifname);
                        let mut fast = FastPath::load()?;
                        fast.apply(&net, &fastpath_for(&state, &seen, &guards), &index)?;
                        Ok(fast)
                    },
                )??);
            }
            Filter::Iptables { rules, nics } => {
                bridge_nf(w, host, true);
                restore(w, host, &iptables_script(rules, nics))?;
            }
        }
    }
    Ok(fast)
}

/// Takes `f` off again (vpcip's fast path goes when its `FastPath` is
/// dropped). Only what `f` put there is touched: an iptables
/// command in a namespace registers iptables' tables there for good (every
/// packet then walks them, empty), so vpcip's world never sees one.
fn remove(w: &World, f: Filter) {
    for host in ["h1", "h2"] {
        match f {
            Filter::Off => {}
            Filter::Vpcip { .. } => {
                let _ = w.try_exec(host, &["nft", "delete", "table", "ip", "vpcip_sg"]);
                let _ = w.try_exec(host, &["nft", "delete", "table", "bridge", "vpcip_sgmark"]);
            }
            Filter::Iptables { .. } => {
                let _ = w.try_exec(host, &["iptables-legacy", "-F"]);
                let _ = w.try_exec(host, &["iptables-legacy", "-X"]);
            }
        }
    }
}

fn cps_run(f: Filter) -> anyhow::Result<f64> {
    let w = crate::isolation::world(false)?;
    let _fast = apply(&w, f)?;
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
            let fast = apply(&w, *f)?;
            // The filter filters: vm2 takes nothing on tcp/7 from vm1 (no
            // rule lets it in), so vm1's connection goes unanswered where
            // without a filter vm2's kernel refuses it at once.
            let answered = answers(&w, "vm1", SocketAddr::new(to.into(), 7))?;
            anyhow::ensure!(
                answered == matches!(f, Filter::Off),
                "{f:?}: vm2 answered on tcp/7: {answered}"
            );
            out[i].push(crate::shaping::iperf(&w, "vm1", to, 2)?);
            // And its fast path took the connection's packets (on both
            // hosts).
            for (h, f) in fast.iter().enumerate() {
                anyhow::ensure!(f.taken()? > 0, "host {}: the fast path took nothing", h + 1);
            }
            remove(&w, *f);
        }
    }
    Ok(out)
}

/// Whether `to` answers a TCP connection from `vm` (accepts or refuses it)
/// within 300 ms.
fn answers(w: &World, vm: &str, to: SocketAddr) -> anyhow::Result<bool> {
    let r = in_netns(&named(&w.ns(vm)), move || {
        std::net::TcpStream::connect_timeout(&to, Duration::from_millis(300))
    })?;
    Ok(match r {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    })
}

/// Seconds to program `nics` NICs × 20 rules into an empty host: vpcip's
/// planner, vpcip's transactions, the fast path on the NICs' links (its
/// plan, load, maps and attachments), iptables-legacy-restore.
fn program_run(nics: u32) -> anyhow::Result<(f64, f64, f64, f64)> {
    use std::fmt::Write as _;
    let mut w = World::new("vbs");
    w.add_node("h");
    let state = host_state(20, nics, VM1, "02:00:0a:00:01:02");
    let started = Instant::now();
    let want = filter_for(&state, None);
    let plan = started.elapsed().as_secs_f64();
    let kernel = in_netns(&named(&w.ns("h")), move || -> anyhow::Result<f64> {
        let started = Instant::now();
        NatTable::open()?.make_filter(&want)?;
        Ok(started.elapsed().as_secs_f64())
    })??;
    // The NICs' links (veths, as the hypervisor would have made them; not
    // timed), the domain's bridge and tunnel.
    let mut batch =
        String::from("link add br100 type bridge\nlink add vx100 type vxlan id 100 dstport 4789\n");
    for p in &state.ports {
        let _ = writeln!(
            batch,
            "link add {} type veth peer name p{}",
            p.ifname, p.ifname
        );
    }
    let path = std::env::temp_dir().join(format!("{}-links", w.ns("h")));
    std::fs::write(&path, batch)?;
    w.exec("h", &["ip", "-batch", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    // (the link list is the agent's, from its pass's observation: not
    // timed, as the filter's observation is not)
    let fast = in_netns(&named(&w.ns("h")), move || -> anyhow::Result<f64> {
        let net = Net::open()?;
        let links = net.links()?;
        let started = Instant::now();
        let (seen, index) = links_of(&links);
        let want = fastpath_for(&state, &seen, &port_guards(&state, vxlan_ifname));
        anyhow::ensure!(
            want.ports.len() == state.ports.len() + 1,
            "every NIC's link and the tunnel"
        );
        FastPath::load()?.apply(&net, &want, &index)?;
        Ok(started.elapsed().as_secs_f64())
    })??;
    let ipt = restore(&w, "h", &iptables_script(20, nics))?.as_secs_f64();
    Ok((plan, kernel, fast, ipt))
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
    // Each filter against no filter in a world of its own: what one
    // leaves in the kernel does not weigh on the other.
    let tput = [
        ("vpcip, 20 rules", Filter::Vpcip { rules: 20, nics: 1 }),
        (
            "iptables, 20 rules",
            Filter::Iptables { rules: 20, nics: 1 },
        ),
    ];
    for gro in [false, true] {
        let underlay = if gro { "underlay GRO" } else { "no GRO" };
        for (name, f) in tput {
            let runs = throughput_runs(&[Filter::Off, f], gro, repeats.max(3) * 2)?;
            let ratios: Vec<f64> = runs[1]
                .iter()
                .zip(&runs[0])
                .map(|(x, off)| x / off)
                .collect();
            println!(
                "secgroups vm→vm Gbit/s ({underlay}), {name:20} {:5.2}  no filter {:5.2}  ratio {:.2}  (ratios: {})",
                med(&runs[1]),
                med(&runs[0]),
                med(&ratios),
                crate::fmt_runs(&ratios, 2),
            );
        }
    }
    let mut runs = Vec::new();
    for _ in 0..repeats {
        runs.push(program_run(nics)?);
    }
    let col = |f: fn(&(f64, f64, f64, f64)) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    println!(
        "secgroups programming {nics} NICs x 20 rules into an empty host: vpcip plan {:.3} s + kernel {:.3} s + fast path {:.3} s (runs, all three: {}); iptables-legacy-restore {:.3} s (runs: {})",
        med(&col(|r| r.0)),
        med(&col(|r| r.1)),
        med(&col(|r| r.2)),
        crate::fmt_runs(&col(|r| r.0 + r.1 + r.2), 3),
        med(&col(|r| r.3)),
        crate::fmt_runs(&col(|r| r.3), 3),
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
