//! vpcip's control-plane benchmarks (run them with `bench/run`):
//!
//! - `api`: EIP allocate+bind operations per second through the HTTP API
//!   (`POST /v1/eips` with a server target), 1, 8 and 32 concurrent clients,
//!   against a real `vpcip server` process on SQLite and on PostgreSQL.
//! - `ipam`: the cost of one EIP allocation from a /8 segment with 1,000,000
//!   addresses taken (scattered: one free range per gap) against an empty /8,
//!   measured side by side in one run, through the store, on both back ends;
//!   and the same ratio for the in-memory free-range set of the model.

mod bind;
mod cps;
mod dataplane;
mod dhcp;
mod failover;
mod gateways;
mod isolation;
mod secgroups;
mod shaping;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use vpcip_client::Client;
use vpcip_model::ipam::{AddrRange, FreeRanges};
use vpcip_model::*;
use vpcip_store::{Scope, Store};

#[derive(Parser)]
struct Args {
    /// What to run: api, ipam, dataplane, bind, cps, failover, gateways, shaping,
    /// isolation, secgroups (secgroups-latency: its control-plane part
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
    /// Back ends: sqlite, postgres (needs VPCIP_TEST_PG_URL), or both.
    #[arg(long, default_value = "both")]
    backends: String,
}

pub(crate) const OPERATOR: &str = "bench-operator-token";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A fresh database URL for one benchmark run.
async fn fresh_url(backend: &str, dir: &std::path::Path) -> anyhow::Result<String> {
    let name = format!(
        "vpcipbench{}{:06x}",
        std::process::id(),
        rand_u32() & 0xffffff
    );
    match backend {
        "sqlite" => Ok(format!("sqlite://{}/{name}.db", dir.display())),
        "postgres" => {
            let admin = std::env::var("VPCIP_TEST_PG_URL")
                .context("postgres runs need VPCIP_TEST_PG_URL (bench/run starts one)")?;
            Ok(vpcip_store::sql::create_pg_database(&admin, &name).await?)
        }
        other => bail!("unknown backend {other}"),
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

/// Server `name` in the bench world's subnet `sw`, on `host`, in the
/// security groups given (the VPC's default when none), and its VM plugged
/// as the hypervisor would: the server and its primary NIC.
pub(crate) async fn bench_vm(
    w: &mut vpcip_lab::World,
    op: &Client,
    name: &str,
    host: &str,
    security_groups: Vec<String>,
) -> anyhow::Result<(Server, Nic)> {
    let server: Server = op
        .post(
            paths::SERVERS,
            &CreateServer {
                name: name.into(),
                subnet: "sw".into(),
                host: Some(host.into()),
                security_groups,
                ..Default::default()
            },
        )
        .await?;
    let nic: Nic = op.show(&server.nic_ids[0]).await?;
    let subnet: Subnet = op.show(&nic.subnet_id).await?;
    vpcip_lab::cloud::plug_vm(
        w,
        name,
        host,
        &vpcip_lab::cloud::VmNic {
            nic_id: &nic.id,
            mac: &nic.mac,
            ip: nic.ip,
            prefix_len: subnet.cidr.prefix_len(),
            gateway: subnet.gateway,
        },
    );
    Ok((server, nic))
}

pub(crate) fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.subsec_nanos() ^ std::process::id().rotate_left(16)
}

/// The `vpcip server` process under test, ended by PID on drop.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) url: String,
}

impl ServerProcess {
    async fn start(db: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("vpcip");
        let port = 20000 + (rand_u32() % 20000) as u16;
        // The benchmarks make more than a tenant's default quotas allow.
        let config = std::env::temp_dir().join(format!("vpcip-bench-{port}.toml"));
        std::fs::write(&config, HIGH_QUOTAS)?;
        let child = Command::new(&exe)
            .args([
                "server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--db",
                db,
            ])
            .arg("--config")
            .arg(&config)
            .env("VPCIP_OPERATOR_TOKEN", OPERATOR)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", exe.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let probe = Client::new(&url, None);
        for _ in 0..200 {
            if probe.get::<serde_json::Value>("/healthz").await.is_ok() {
                return Ok(ServerProcess { child, url });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("vpcip server did not come up on {url}")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lab's whole cloud as the benchmarks use it: the physical world with
/// `segment` routed to the gateway, a real `vpcip server` and the three
/// agents as processes (resync 10 s), all registered.
pub(crate) struct LabCloud {
    pub w: vpcip_lab::World,
    pub op: Client,
    /// The controller's API.
    pub url: String,
    /// The controller's and the agents' processes among the world's.
    pub controller: usize,
    pub agents: Vec<usize>,
    /// A cluster's BIRDs (gw1's, gw2's, phy's); empty otherwise.
    pub birds: Vec<usize>,
}

/// A server configuration with quotas no benchmark reaches.
const HIGH_QUOTAS: &str =
    "[quotas]\nvpcs = 100000\nnics = 10000000\nvips = 1000000\neips = 10000000\n";

pub(crate) async fn lab_cloud(tag: &str, segment: &str) -> anyhow::Result<LabCloud> {
    let mut w = vpcip_lab::World::new(tag);
    vpcip_lab::cloud::physical(&mut w, &[segment]);
    start_cloud(w, &vpcip_lab::cloud::AGENTS, vec![]).await
}

/// [`lab_cloud`] as a gateway cluster: gw1 and gw2 with BIRD, BGP to the
/// physical router's BIRD configured on both.
pub(crate) async fn lab_cluster(tag: &str, _segment: &str) -> anyhow::Result<LabCloud> {
    use vpcip_lab::cloud;
    let mut w = vpcip_lab::World::new(tag);
    let birds = cloud::cluster(&mut w);
    let lab = start_cloud(w, &cloud::CLUSTER_AGENTS, birds).await?;
    for (gw, _) in cloud::CLUSTER_GATEWAYS {
        let req = UpdateGateway {
            bgp: Some(Some(cloud::gateway_bgp())),
            drained: None,
        };
        let _: Gateway = lab
            .op
            .patch(&paths::at(paths::GATEWAY, &[gw]), &req)
            .await?;
    }
    Ok(lab)
}

async fn start_cloud(
    mut w: vpcip_lab::World,
    agents_of: &[(&str, &str, &str)],
    birds: Vec<usize>,
) -> anyhow::Result<LabCloud> {
    use vpcip_lab::cloud;
    let exe = std::env::current_exe()?.with_file_name("vpcip");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    // The benchmarks make more than a tenant's default quotas allow.
    let url = cloud::start_controller_with(&mut w, &exe, port, OPERATOR, HIGH_QUOTAS);
    let controller = w.processes() - 1;
    let agents = cloud::start_agents_of(&mut w, &exe, &url, OPERATOR, 10, agents_of);
    let op = Client::new(&url, Some(OPERATOR));
    let registered = op
        .wait_for_agents(agents.len(), Duration::from_secs(20))
        .await;
    if registered != agents.len() {
        bail!("only {registered} of {} agents registered", agents.len());
    }
    Ok(LabCloud {
        w,
        op,
        url,
        controller,
        agents,
        birds,
    })
}

/// Through the API: zone `z1`, an EIP segment `seg`, and tenant `bench`'s
/// VPC `v` with one subnet `sw` in `z1` (the benchmarks' common world).
pub(crate) async fn bench_world(
    op: &Client,
    segment: &str,
    vpc_cidr: &str,
    subnet_cidr: &str,
) -> anyhow::Result<Vpc> {
    let _: Zone = op
        .post(paths::ZONES, &CreateZone { name: "z1".into() })
        .await?;
    op.create_subnet(&CreateSubnet {
        name: "seg".into(),
        kind: SubnetKind::Eip,
        cidr: Some(segment.parse()?),
        ..Default::default()
    })
    .await?;
    let vpc: Vpc = op
        .post(
            paths::VPCS,
            &CreateVpc {
                name: "v".into(),
                cidr: vpc_cidr.parse()?,
                secondary_cidrs: vec![],
                tenant: Some("bench".into()),
                client_token: None,
            },
        )
        .await?;
    op.create_subnet(&CreateSubnet {
        name: "sw".into(),
        vpc: Some("v".into()),
        zone: Some("z1".into()),
        cidr: Some(subnet_cidr.parse()?),
        ..Default::default()
    })
    .await?;
    // The benchmarks' services listen on many ports: the default group lets
    // the outside world in (as a user would open it for them).
    let sg = op.default_sg(&vpc).await?;
    let open: Vec<SgRule> = [
        "ingress:icmp:0.0.0.0/0",
        "ingress:tcp:1-65535:0.0.0.0/0",
        "ingress:udp:1-65535:0.0.0.0/0",
    ]
    .iter()
    .map(|r| r.parse().map_err(|e: String| anyhow::anyhow!(e)))
    .collect::<anyhow::Result<_>>()?;
    op.add_sg_rules(&sg.id, &open).await?;
    Ok(vpc)
}

async fn api_bench(
    backend: &str,
    args: &Args,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<(usize, f64, Vec<f64>)>> {
    let db = fresh_url(backend, dir).await?;
    let server = ServerProcess::start(&db).await?;
    let op = Client::new(&server.url, Some(OPERATOR));
    bench_world(&op, "100.64.0.0/16", "10.0.0.0/8", "10.0.0.0/16").await?;
    let tok: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "bench".into(),
                description: "bench".into(),
                agent: false,
                agent_role: None,
            },
        )
        .await?;
    let tenant = op.with_token(tok.secret.as_deref().context("token secret")?);
    // One server per operation: each EIP needs its own target.
    let mut servers = Vec::with_capacity(args.ops);
    for i in 0..args.ops {
        let s: vpcip_model::Server = tenant
            .post(
                paths::SERVERS,
                &CreateServer {
                    name: format!("vm-{i}"),
                    subnet: "sw".into(),
                    ..Default::default()
                },
            )
            .await?;
        servers.push(s.id);
    }
    let mut out = vec![];
    for clients in [1usize, 8, 32] {
        let mut rates = vec![];
        for _ in 0..args.repeats {
            let chunks: Vec<Vec<String>> = servers
                .chunks(servers.len().div_ceil(clients))
                .map(|c| c.to_vec())
                .collect();
            let start = Instant::now();
            let mut tasks = vec![];
            for chunk in chunks {
                let c = tenant.clone();
                tasks.push(tokio::spawn(async move {
                    let mut ids = vec![];
                    for server in chunk {
                        let e = c.eip_for_server(&server, 10).await?;
                        ids.push(e.id);
                    }
                    Ok::<_, vpcip_client::ClientError>(ids)
                }));
            }
            let mut eips = vec![];
            for t in tasks {
                eips.extend(t.await??);
            }
            let secs = start.elapsed().as_secs_f64();
            rates.push(eips.len() as f64 / secs);
            // Not timed: unbind and release, so the next run starts alike.
            for id in eips {
                let _: Eip = tenant
                    .action(paths::EIP_UNBIND, &id, &serde_json::json!({}))
                    .await?;
                tenant.remove::<vpcip_model::Eip>(&id).await?;
            }
        }
        let m = median(rates.clone());
        println!(
            "api {backend:8} clients={clients:2}  {m:8.0} ops/s  (runs: {})",
            fmt_runs(&rates, 0)
        );
        out.push((clients, m, rates));
    }
    Ok(out)
}

fn fmt_runs(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

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

async fn ipam_bench(
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
fn ipam_model_bench(args: &Args) -> f64 {
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
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
