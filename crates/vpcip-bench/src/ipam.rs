//! `ipam`: the cost of one EIP allocation from a full /8 against an empty
//! one, through the store on both back ends and in the model's free-range
//! set.

use std::time::Instant;

use vpcip_model::ipam::{AddrRange, FreeRanges};
use vpcip_model::*;
use vpcip_store::{Scope, Store};

use crate::world::fresh_url;
use crate::{Args, fmt_runs, median};

/// Time per EIP allocation (create + release, so the pool's shape stays the
/// same) from `segment`, in microseconds, over `n` operations.
async fn alloc_cost(store: &Store, segment: &str, n: usize) -> anyhow::Result<f64> {
    let scope = Scope::Tenant("bench".into());
    let start = Instant::now();
    for _ in 0..n {
        let e = store
            .create_eip(
                &scope,
                &CreateEip {
                    bandwidth_mbps: 1,
                    subnet: Some(segment.into()),
                    ..Default::default()
                },
            )
            .await?;
        store.release_eip(&scope, &e.id).await?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

pub(crate) async fn ipam_bench(
    backend: &str,
    args: &Args,
    dir: &std::path::Path,
) -> anyhow::Result<(f64, f64, Vec<f64>)> {
    let url = fresh_url(backend, dir).await?;
    let store = Store::open(&url).await?;
    let op = Scope::Operator;
    for (name, cidr) in [("empty", "10.0.0.0/8"), ("full", "11.0.0.0/8")] {
        store
            .create_subnet(
                &op,
                &CreateSubnet {
                    name: name.into(),
                    kind: SubnetKind::Eip,
                    cidr: Some(cidr.parse()?),
                    ..Default::default()
                },
            )
            .await?;
    }
    let full: Subnet = store.show(&op, "full").await?;
    let t = Instant::now();
    vpcip_store::testing::take_every_other(&store, &full.id, args.taken).await?;
    println!(
        "ipam {backend:8} filled {} scattered addresses in {:.1} s",
        args.taken,
        t.elapsed().as_secs_f64()
    );
    let n = 500;
    alloc_cost(&store, "empty", 50).await?; // warm up both
    alloc_cost(&store, "full", 50).await?;
    let (mut empty, mut fullv, mut ratios) = (vec![], vec![], vec![]);
    for _ in 0..args.repeats {
        let e = alloc_cost(&store, "empty", n).await?;
        let f = alloc_cost(&store, "full", n).await?;
        empty.push(e);
        fullv.push(f);
        ratios.push(f / e);
    }
    let (e, f) = (median(empty), median(fullv));
    println!(
        "ipam {backend:8} allocate+release: empty /8 {e:.0} us, /8 with {} taken {f:.0} us, ratio {:.2} (runs: {})",
        args.taken,
        median(ratios.clone()),
        fmt_runs(&ratios, 2)
    );
    Ok((e, f, ratios))
}

/// The model's free-range set: the same arithmetic without a database.
pub(crate) fn ipam_model_bench(args: &Args) -> f64 {
    let range = AddrRange {
        first: 0x0b00_0001,
        last: 0x0bff_fffe,
    };
    let mut empty = FreeRanges::new(range);
    let mut full = FreeRanges::new(range);
    for i in 0..args.taken {
        full.take_addr(range.first + 2 * i);
    }
    let cost = |f: &mut FreeRanges| {
        let n = 200_000;
        let start = Instant::now();
        for _ in 0..n {
            if let Some(a) = f.take_lowest() {
                f.give_back(a);
            }
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
    };
    let mut ratios = vec![];
    for _ in 0..args.repeats.max(3) {
        let e = cost(&mut empty);
        let f = cost(&mut full);
        ratios.push(f / e);
    }
    let r = median(ratios.clone());
    println!(
        "ipam model    take+give lowest: {} free ranges vs 1, ratio {r:.2} (runs: {})",
        full.range_count(),
        fmt_runs(&ratios, 2)
    );
    r
}
