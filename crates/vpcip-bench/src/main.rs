//! vpcip's control-plane benchmarks (run them with `bench/run`):
//!
//! - `api`: EIP allocate+bind operations per second through the HTTP API
//!   (`POST /v1/eips` with a server target), 1, 8 and 32 concurrent clients,
//!   against a real `vpcip controller` process on SQLite and on PostgreSQL.
//! - `ipam`: the cost of one EIP allocation from a /8 segment with 1,000,000
//!   addresses taken (scattered: one free range per gap) against an empty /8,
//!   measured side by side in one run, through the store, on both back ends;
//!   and the same ratio for the in-memory free-range set of the model.

//!
//! `world.rs` holds what the benchmarks share (the server under test, the
//! lab's cloud, the common world), `api.rs` and `ipam.rs` the two above;
//! the others one benchmark each.

mod api;
mod bind;
mod console;
mod controllers;
mod cps;
mod dataplane;
mod dhcp;
mod failover;
mod gateways;
mod ipam;
mod isolation;
mod openstack;
mod scale;
mod secgroups;
mod shaping;
mod world;

use std::process::Command;

use clap::Parser;

use api::api_bench;
use ipam::{ipam_bench, ipam_model_bench};
pub(crate) use world::{LabCloud, bench_vm, bench_world, lab_cloud, lab_cluster};

#[derive(Parser)]
struct Args {
    /// What to run: scale (the control plane with 1,000 simulated agents), api, openstack (the Neutron facade beside the API), controllers (three on one PostgreSQL: a bind on one seen by an agent watching another), ipam, dataplane, bind, cps, failover, gateways, shaping,
    /// isolation, console (the web console's render time with 10,000 EIPs),
    /// secgroups (secgroups-latency: its control-plane part
    /// only), dhcp (taps, DHCP, a QEMU guest's boot) or all.
    #[arg(default_value = "all")]
    what: String,
    /// Repeats of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Allocate+bind operations per API run.
    #[arg(long, default_value_t = 2000)]
    ops: usize,
    /// Addresses taken in the IPAM benchmark's full pool.
    #[arg(long, default_value_t = 1_000_000)]
    taken: u32,
    /// Binds measured by the bind-to-first-packet benchmark (and the
    /// gateway cluster's bind → route at the physical router).
    #[arg(long, default_value_t = 100)]
    binds: usize,
    /// EIP bindings in the data-plane programming benchmark (and EIPs
    /// announced from empty in the gateway cluster's).
    #[arg(long, default_value_t = 100_000)]
    bindings: u32,
    /// Limited EIPs in the shaping benchmark.
    #[arg(long, default_value_t = 10_000)]
    limits: u32,
    /// Runs of each failover measurement.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Advertisement intervals of the failover benchmark, centiseconds.
    #[arg(long, value_delimiter = ',', default_values_t = [100u16, 10, 1])]
    adverts: Vec<u16>,
    /// Guarded ports on each host in the isolation benchmark.
    #[arg(long, default_value_t = 10_000)]
    guarded_ports: u32,
    /// VTEPs every node knows in the isolation benchmark.
    #[arg(long, default_value_t = 1_000)]
    vteps: u32,
    /// Rules in the VM's group in the security-group benchmark.
    #[arg(long, default_value_t = 1_000)]
    sg_rules: u32,
    /// NICs on the host in the security-group benchmark.
    #[arg(long, default_value_t = 10_000)]
    sg_nics: u32,
    /// The tenant's EIPs in the console benchmark (a tenth bound to
    /// servers in the VPC it draws).
    #[arg(long, default_value_t = 10_000)]
    console_eips: usize,
    /// Host agents the `scale` simulator runs (two gateway agents too).
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// VMs in the `scale` world (20 per VPC).
    #[arg(long, default_value_t = 20_000)]
    vms: usize,
    /// NICs per VM in the `scale` world, each with a bound EIP.
    #[arg(long, default_value_t = 5)]
    nics_per_vm: usize,
    /// Seconds of sustained binds in `scale` (0: none).
    #[arg(long, default_value_t = 60)]
    sustain: u64,
    /// `scale`: the agents' former protocol (whole snapshots) measured
    /// beside the watch on the same world.
    #[arg(long)]
    baseline: bool,
    /// Back ends: sqlite, postgres (needs VPCIP_TEST_PG_URL), or both.
    #[arg(long, default_value = "both")]
    backends: String,
}

pub(crate) const OPERATOR: &str = "bench-operator-token";

/// The median: of an even number of samples, the mean of the middle two
/// (until session 17 the upper one, which read ratios high).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n.is_multiple_of(2) && n > 0 {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    } else {
        v[n / 2]
    }
}

/// `vpcip ARGS` as the operator against the API at `url`; its output, or
/// an error with what it said.
pub(crate) fn vpcip_cli(exe: &std::path::Path, url: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(exe)
        .args(args)
        .env("VPCIP_URL", url)
        .env("VPCIP_TOKEN", OPERATOR)
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "vpcip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ std::process::id().rotate_left(16)
}

fn fmt_runs(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let backends: Vec<&str> = match args.backends.as_str() {
        "both" => vec!["sqlite", "postgres"],
        b => vec![b],
    };
    let dir = std::env::temp_dir().join(format!("vpcip-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = async {
        if matches!(args.what.as_str(), "ipam" | "all") {
            ipam_model_bench(&args);
            for b in &backends {
                ipam_bench(b, &args, &dir).await?;
            }
        }
        if matches!(args.what.as_str(), "dataplane" | "all") {
            dataplane::program(args.bindings, args.repeats, &dir)?;
        }
        if matches!(args.what.as_str(), "cps" | "all") {
            cps::connections(args.bindings, args.repeats, &dir)?;
        }
        if matches!(args.what.as_str(), "bind" | "all") {
            bind::bind_latency(args.binds, &dir).await?;
        }
        if matches!(args.what.as_str(), "shaping" | "all") {
            shaping::shaping(args.limits, args.repeats, &dir).await?;
        }
        if matches!(args.what.as_str(), "isolation" | "all") {
            isolation::isolation(args.guarded_ports, args.vteps, args.repeats)?;
        }
        if matches!(args.what.as_str(), "secgroups" | "all") {
            secgroups::secgroups(args.sg_rules, args.sg_nics, args.repeats)?;
        }
        if matches!(
            args.what.as_str(),
            "secgroups" | "secgroups-latency" | "all"
        ) {
            secgroups::change_latency(args.binds).await?;
        }
        if matches!(args.what.as_str(), "dhcp" | "all") {
            dhcp::dhcp(args.binds).await?;
        }
        if matches!(args.what.as_str(), "gateways" | "all") {
            gateways::gateways(args.runs, args.binds, args.bindings, &dir).await?;
        }
        if matches!(args.what.as_str(), "failover" | "all") {
            failover::failover(args.runs, &args.adverts, &dir).await?;
        }
        if matches!(args.what.as_str(), "api" | "all") {
            for b in &backends {
                api_bench(b, &args, &dir).await?;
            }
        }
        if matches!(args.what.as_str(), "scale" | "all") {
            scale::scale(
                &scale::Scale {
                    hosts: args.hosts,
                    vms: args.vms,
                    nics_per_vm: args.nics_per_vm,
                    binds: args.binds,
                    sustain: args.sustain,
                    baseline: args.baseline,
                },
                &dir,
            )
            .await?;
        }
        if matches!(args.what.as_str(), "controllers" | "all") && backends.contains(&"postgres") {
            controllers::controllers(args.binds, &dir).await?;
        }
        if matches!(args.what.as_str(), "console" | "all") {
            console::console_bench(args.console_eips, args.repeats, &dir).await?;
        }
        if matches!(args.what.as_str(), "openstack" | "all") {
            for b in &backends {
                openstack::openstack_bench(b, &args, &dir).await?;
            }
        }
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert!((super::median(vec![0.9, 0.8, 1.0]) - 0.9).abs() < 1e-12);
        assert!((super::median(vec![0.86, 0.95, 0.88, 0.90]) - 0.89).abs() < 1e-12);
        assert!((super::median(vec![2.0]) - 2.0).abs() < 1e-12);
    }
}
