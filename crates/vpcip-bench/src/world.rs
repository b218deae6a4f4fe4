//! What the benchmarks share: a fresh database, the `vpcip controller` under
//! test, the lab's whole cloud, and the common world made through the API.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use vpcip_client::Client;
use vpcip_model::*;

use crate::{OPERATOR, rand_u32};

/// A fresh database URL for one benchmark run.
pub(crate) async fn fresh_url(backend: &str, dir: &std::path::Path) -> anyhow::Result<String> {
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

/// The `vpcip controller` process under test, ended by PID on drop.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) url: String,
}

impl ServerProcess {
    pub(crate) async fn start(db: &str) -> anyhow::Result<Self> {
        // A port picked at random may be taken by the time the controller
        // binds it (CI once lost a run that way): a controller that exits
        // before answering is started again on another port.
        let mut last = None;
        for _ in 0..5 {
            match Self::start_on(db, random_port()).await? {
                Ok(server) => return Ok(server),
                Err(exited) => last = Some(exited),
            }
        }
        bail!(
            "vpcip controller did not come up: {}",
            last.unwrap_or_default()
        )
    }

    /// Starts a controller on `port`: the inner error says how it exited
    /// before answering (tried again on another port).
    async fn start_on(db: &str, port: u16) -> anyhow::Result<Result<Self, String>> {
        let exe = std::env::current_exe()?.with_file_name("vpcip");
        // The benchmarks make more than a tenant's default quotas allow.
        let config = std::env::temp_dir().join(format!("vpcip-bench-{port}.toml"));
        std::fs::write(&config, HIGH_QUOTAS)?;
        let mut child = Command::new(&exe)
            .args([
                "controller",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--db",
                db,
            ])
            .arg("--config")
            .arg(&config)
            .env("VPCIP_OPERATOR_TOKEN", OPERATOR)
            .env("RUST_LOG", "warn,vpcip_store::watch=info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", exe.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let probe = Client::new(&url, None);
        for _ in 0..200 {
            if probe.get::<serde_json::Value>("/healthz").await.is_ok() {
                return Ok(Ok(ServerProcess { child, url }));
            }
            if let Some(status) = child.try_wait()? {
                return Ok(Err(format!("on {url} it exited ({status})")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("vpcip controller did not come up on {url}")
    }
}

/// A loopback port for a controller: below Linux's ephemeral range
/// (32768–60999), where the benchmarks' own connections take theirs.
fn random_port() -> u16 {
    20000 + (rand_u32() % 12000) as u16
}

impl ServerProcess {
    /// The controller's process ID (its CPU time and memory are read from
    /// /proc).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lab's whole cloud as the benchmarks use it: the physical world with
/// `segment` routed to the gateway, a real `vpcip controller` and the three
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

/// A real server on a fresh store of `backend` with the bench world, and
/// a token of tenant `bench`: the server, the tenant's client and the
/// token's secret.
pub(crate) async fn tenant_bench_server(
    backend: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(ServerProcess, Client, String)> {
    let db = fresh_url(backend, dir).await?;
    let server = ServerProcess::start(&db).await?;
    let op = Client::new(&server.url, Some(crate::OPERATOR));
    bench_world(&op, "100.64.0.0/16", "10.0.0.0/8", "10.0.0.0/16").await?;
    let tok: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "bench".into(),
                description: "bench".into(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await?;
    let secret = tok.secret.context("token secret")?;
    Ok((server, op.with_token(&secret), secret))
}

/// `n` servers `vm-0`… in the bench world's subnet `sw`, through
/// `tenant`: one EIP target each.
pub(crate) async fn bench_servers(tenant: &Client, n: usize) -> anyhow::Result<Vec<Server>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(
            tenant
                .create::<Server, _, _>(&CreateServer {
                    name: format!("vm-{i}"),
                    subnet: "sw".into(),
                    ..Default::default()
                })
                .await?,
        );
    }
    Ok(out)
}
