//! Crash safety: 32 clients of four tenants drive random EIP and VIP
//! operations (allocate, bind, rebind, unbind, release; VIP create, bind,
//! unbind, delete) against a real `vpcip controller` process while it is
//! killed with SIGKILL at random moments, 20 times (more, up to 60, until
//! enough has happened between the kills on a slow machine), and started again on
//! the same database. While it is down, the store's invariants are checked
//! straight from the database (`vpcip_store::testing::invariants`: no
//! address allocated twice or lost, no binding to something deleted, no
//! limit or quota exceeded), and every acknowledged creation is still
//! there unless a later release or delete of it was sent. Each client acts
//! only on its own EIPs, NICs and VIPs, so what it was told last about an
//! EIP is what the store must hold: every acknowledged bind, rebind, unbind
//! and release is checked at the end (an operation whose answer was lost in
//! a kill leaves that EIP unknown until the next acknowledged one). Real
//! agents (the lab's gateway and hosts, in namespaces) run throughout; at
//! the end each VPC router's NAT maps on the gateway node hold exactly the
//! store's bindings (EIP → private address, and back), read from the
//! kernel. On SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vpcip_client::{Client, ClientError};
use vpcip_model::*;

const OPERATOR: &str = "crash-test-operator";
const KILLS: usize = 20;
const CLIENTS: usize = 32;

struct Controller {
    child: Option<Child>,
    port: u16,
    db: String,
    log: std::path::PathBuf,
}

impl Controller {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vpcip"))
            .args([
                "controller",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .args(["--db", &self.db])
            .env("VPCIP_OPERATOR_TOKEN", OPERATOR)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("vpcip controller did not come up");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id().cast_signed()),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = c.wait();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the clients were told, and what they tried.
#[derive(Default)]
struct Ledger {
    /// EIPs and VIPs whose creation was acknowledged.
    created: BTreeSet<String>,
    /// Those whose release or deletion was sent (acknowledged or not).
    removal_sent: BTreeSet<String>,
    /// Each EIP's state as its client was last told it.
    eips: BTreeMap<String, Told>,
    /// Acknowledged binds, rebinds, unbinds and releases.
    acknowledged_changes: usize,
}

/// An EIP's state as its (only) client knows it.
#[derive(Clone, Debug, PartialEq)]
enum Told {
    /// Bound to this NIC or VIP ID, or unbound.
    Bound(Option<String>),
    /// Released.
    Released,
    /// The last change's answer was lost (the server was killed).
    Unknown,
}

fn rng(seed: &AtomicU64) -> u64 {
    // xorshift, one state per client: enough for picking operations.
    let mut x = seed.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    seed.store(x, Ordering::Relaxed);
    x
}

/// What one client owns: it alone acts on these, one operation at a time.
struct Own {
    c: Client,
    nics: Vec<String>,
    eips: Vec<String>,
    vips: Vec<String>,
}

/// What an answer says of the change: made, refused (a 4xx: nothing
/// changed), or unknown (no answer, or a 5xx).
fn outcome<T>(r: &Result<T, ClientError>) -> Option<bool> {
    match r {
        Ok(_) => Some(true),
        Err(e) if e.status().is_some_and(|s| (400..500).contains(&s)) => Some(false),
        Err(_) => None,
    }
}

fn told(ledger: &Mutex<Ledger>, eip: &str, done: Option<bool>, then: Told) {
    let mut l = ledger.lock().unwrap();
    match done {
        Some(true) => {
            l.acknowledged_changes += 1;
            l.eips.insert(eip.to_string(), then);
        }
        Some(false) => {}
        None => {
            l.eips.insert(eip.to_string(), Told::Unknown);
        }
    }
}

async fn one_op(o: &mut Own, ledger: &Mutex<Ledger>, seed: &AtomicU64) {
    let pick = |n: usize| usize::try_from(rng(seed) % n.max(1) as u64).unwrap();
    let c = o.c.clone();
    match rng(seed) % 8 {
        0 | 1 => {
            if let Ok(e) = c
                .create_eip(&CreateEip {
                    bandwidth_mbps: 1,
                    ..Default::default()
                })
                .await
            {
                let mut l = ledger.lock().unwrap();
                l.created.insert(e.id.clone());
                l.eips.insert(e.id.clone(), Told::Bound(None));
                o.eips.push(e.id);
            }
        }
        2 | 3 => {
            // Bind (or move) one of this client's EIPs to a NIC or VIP.
            if o.eips.is_empty() {
                return;
            }
            let eip = o.eips[pick(o.eips.len())].clone();
            let target = if rng(seed).is_multiple_of(3) {
                if o.vips.is_empty() {
                    return;
                }
                EipTarget::Vip(o.vips[pick(o.vips.len())].clone())
            } else {
                EipTarget::Nic(o.nics[pick(o.nics.len())].clone())
            };
            let (EipTarget::Vip(to) | EipTarget::Nic(to) | EipTarget::Server(to)) = target.clone();
            let r = c
                .bind_eip(
                    &eip,
                    &BindEip {
                        target,
                        mode: EipMode::Nat,
                        allow_reassociation: true,
                    },
                )
                .await;
            told(ledger, &eip, outcome(&r), Told::Bound(Some(to)));
        }
        4 => {
            if o.eips.is_empty() {
                return;
            }
            let i = pick(o.eips.len());
            let eip = o.eips[i].clone();
            if rng(seed).is_multiple_of(2) {
                let r = c
                    .action::<_, Eip>(paths::EIP_UNBIND, &eip, &serde_json::json!({}))
                    .await;
                told(ledger, &eip, outcome(&r), Told::Bound(None));
            } else {
                ledger.lock().unwrap().removal_sent.insert(eip.clone());
                let r = c.remove::<vpcip_model::Eip>(&eip).await;
                let done = outcome(&r);
                told(ledger, &eip, done, Told::Released);
                if done == Some(true) {
                    o.eips.remove(i);
                }
            }
        }
        5 => {
            if let Ok(v) = c
                .post::<_, Vip>(
                    paths::VIPS,
                    &CreateVip {
                        name: format!("vip-{}", rng(seed) % 1_000_000),
                        subnet: "sw1".into(),
                        ip: None,
                        client_token: None,
                    },
                )
                .await
            {
                ledger.lock().unwrap().created.insert(v.id.clone());
                o.vips.push(v.id);
            }
        }
        6 => {
            if o.vips.is_empty() {
                return;
            }
            let vip = o.vips[pick(o.vips.len())].clone();
            let Ok(v) = c.show::<Vip>(&vip).await else {
                return;
            };
            let nic = o.nics[pick(o.nics.len())].clone();
            let verb = if v.nic_ids.contains(&nic) {
                paths::VIP_UNBIND
            } else {
                paths::VIP_BIND
            };
            let _ = c
                .action::<_, serde_json::Value>(verb, &v.id, &VipNic { nic })
                .await;
        }
        _ => {
            // Empty one of this client's VIPs and delete it.
            if o.vips.is_empty() {
                return;
            }
            let i = pick(o.vips.len());
            let Ok(v) = c.show::<Vip>(&o.vips[i]).await else {
                return;
            };
            for nic in &v.nic_ids {
                let _ = c
                    .action::<_, Vip>(paths::VIP_UNBIND, &v.id, &VipNic { nic: nic.clone() })
                    .await;
            }
            if let Some(e) = &v.eip_id {
                let r = c
                    .action::<_, Eip>(paths::EIP_UNBIND, e, &serde_json::json!({}))
                    .await;
                told(ledger, e, outcome(&r), Told::Bound(None));
            }
            ledger.lock().unwrap().removal_sent.insert(v.id.clone());
            if c.remove::<vpcip_model::Vip>(&v.id).await.is_ok() {
                o.vips.remove(i);
            }
        }
    }
}

type NatMap = BTreeMap<Ipv4Addr, Ipv4Addr>;

/// Each VPC router's NAT maps on the gateway node, as the kernel holds
/// them: VPC ID → (EIP → private, private → EIP).
fn gateway_maps(w: &vpcip_lab::World, vpcs: &[String]) -> BTreeMap<String, (NatMap, NatMap)> {
    let prefix = vpcip_lab::cloud::netns_prefix(w, "gw");
    vpcs.iter()
        .map(|vpc| {
            let ns = vpcip_sys::netns::named(&vpcip_agent::gateway::router_netns(&prefix, vpc));
            let maps = vpcip_sys::netns::in_netns(&ns, || {
                let mut t = vpcip_sys::nft::NatTable::open()?;
                t.read_settled()
            })
            .and_then(|r| r)
            .unwrap_or_default();
            (vpc.clone(), maps)
        })
        .collect()
}

async fn crash_safety(db: &str, check: vpcip_store::Store) {
    let dir = std::env::temp_dir().join(vpcip_store::testing::unique("vpcip-crash-"));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ctl = Controller {
        child: None,
        port,
        db: db.to_string(),
        log: dir.join("server.log"),
    };
    ctl.start();
    let url = format!("http://127.0.0.1:{port}");
    let op = Client::new(&url, Some(OPERATOR));
    // The lab's gateway and host agents, working through the kills.
    let mut world = vpcip_lab::World::new("vcx");
    vpcip_lab::cloud::physical(&mut world, &["198.51.100.0/26"]);
    vpcip_lab::cloud::start_agents(
        &mut world,
        std::path::Path::new(env!("CARGO_BIN_EXE_vpcip")),
        &url,
        OPERATOR,
        1,
    );
    assert_eq!(
        op.wait_for_agents(vpcip_lab::cloud::AGENTS.len(), Duration::from_secs(10))
            .await,
        vpcip_lab::cloud::AGENTS.len()
    );
    let _: Zone = op
        .post(paths::ZONES, &CreateZone { name: "z1".into() })
        .await
        .unwrap();
    // A small segment, so that the clients contend for its addresses.
    op.create_subnet(&CreateSubnet {
        name: "seg".into(),
        kind: SubnetKind::Eip,
        cidr: Some("198.51.100.0/26".parse().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut tenants = Vec::new();
    let mut vpcs = Vec::new();
    for t in ["t0", "t1", "t2", "t3"] {
        let tok: Token = op
            .post(
                paths::TOKENS,
                &CreateToken {
                    tenant: t.into(),
                    description: "crash".into(),
                    agent: false,
                    agent_role: None,
                    ec2: false,
                },
            )
            .await
            .unwrap();
        let c = Client::new(&url, tok.secret.as_deref());
        let vpc: Vpc = c
            .post(
                paths::VPCS,
                &CreateVpc {
                    name: "vpc1".into(),
                    cidr: "10.0.0.0/16".parse().unwrap(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        vpcs.push(vpc.id);
        c.create_subnet(&CreateSubnet {
            name: "sw1".into(),
            vpc: Some("vpc1".into()),
            zone: Some("z1".into()),
            cidr: Some("10.0.1.0/24".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
        tenants.push(c);
    }
    // Each client owns two servers' NICs of its tenant.
    let mut owners = Vec::new();
    for i in 0..CLIENTS {
        let c = tenants[i % tenants.len()].clone();
        let mut nics = Vec::new();
        for j in 0..2 {
            let s: vpcip_model::Server = c
                .post(
                    paths::SERVERS,
                    &CreateServer {
                        name: format!("vm-{i}-{j}"),
                        subnet: "sw1".into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            nics.push(s.nic_ids[0].clone());
        }
        owners.push(Own {
            c,
            nics,
            eips: Vec::new(),
            vips: Vec::new(),
        });
    }

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    // Whether the controller runs: while it is down the clients wait a
    // little between tries, as clients do, instead of spinning on refused
    // connections (which took the two cores from the restarting
    // controller and PostgreSQL).
    let up = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    for (i, mut own) in owners.into_iter().enumerate() {
        let (ledger, stop, ops, up) = (ledger.clone(), stop.clone(), ops.clone(), up.clone());
        clients.push(tokio::spawn(async move {
            let seed = AtomicU64::new(0x9e37_79b9_7f4a_7c15 ^ ((i as u64 + 1) * 0x1000_0001));
            while !stop.load(Ordering::Relaxed) {
                if !up.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                one_op(&mut own, &ledger, &seed).await;
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let seed = AtomicU64::new(0x2545_f491_4f6c_dd1d);
    // At least KILLS kills, and on until enough has happened between them
    // (a slow machine gets more, never more than 3 × KILLS).
    let enough = |l: &Ledger| l.created.len() > 50 && l.acknowledged_changes > 100;
    let mut kill = 0;
    while kill < KILLS || (kill < 3 * KILLS && !enough(&ledger.lock().unwrap())) {
        tokio::time::sleep(Duration::from_millis(150 + rng(&seed) % 350)).await;
        up.store(false, Ordering::Relaxed);
        ctl.kill();
        kill += 1;
        let bad = vpcip_store::testing::invariants(&check).await.unwrap();
        assert!(bad.is_empty(), "after kill {kill}: {bad:#?}");
        ctl.start();
        up.store(true, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    ctl.kill();
    let bad = vpcip_store::testing::invariants(&check).await.unwrap();
    assert!(bad.is_empty(), "at the end: {bad:#?}");
    // Every acknowledged creation is there, unless its removal was sent.
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let mut tx = check.db().begin_read().await.unwrap();
    let present: BTreeSet<String> = tx
        .rows("SELECT id FROM resources", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect();
    tx.commit().await.unwrap();
    let lost: Vec<&String> = ledger
        .created
        .difference(&ledger.removal_sent)
        .filter(|id| !present.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged, never removed, gone: {lost:?}"
    );
    // Every acknowledged bind, rebind, unbind and release holds (as the
    // restarted server shows every tenant's EIPs to the operator).
    ctl.start();
    let eips: BTreeMap<String, Eip> = op
        .list::<Eip>(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect();
    let mut checked = 0;
    for (id, t) in &ledger.eips {
        let held = eips.get(id).map(|e| e.target_id().map(str::to_string));
        let ok = match t {
            Told::Unknown => continue,
            Told::Released => held.is_none(),
            Told::Bound(target) => held.as_ref() == Some(target),
        };
        assert!(
            ok,
            "EIP {id}: its client was told {t:?}; the store holds {held:?}"
        );
        checked += 1;
    }
    // The agents converge on what the store holds: each VPC router's NAT
    // maps on the gateway node hold exactly the bound EIPs, both ways.
    let mut want: BTreeMap<String, BTreeMap<Ipv4Addr, Ipv4Addr>> =
        vpcs.iter().map(|v| (v.clone(), BTreeMap::new())).collect();
    for e in eips.values() {
        if let (Some(vpc), Some(private)) = (e.vpc_id(), e.private_ip()) {
            assert_eq!(e.mode(), EipMode::Nat, "{e:?}");
            want.get_mut(vpc).unwrap().insert(e.ip, private);
        }
    }
    let bound: usize = want.values().map(BTreeMap::len).sum();
    let mut seen = BTreeMap::new();
    let mut status = None;
    let mut converged = false;
    for _ in 0..100 {
        seen = gateway_maps(&world, &vpcs);
        converged = seen.iter().all(|(vpc, (dnat, snat))| {
            let w = &want[vpc];
            dnat == w && *snat == w.iter().map(|(e, p)| (*p, *e)).collect()
        });
        // And the agents say so: no EIP differs, none lags.
        if let Ok(st) = op
            .get::<vpcip_model::desired::SystemStatus>(paths::STATUS)
            .await
        {
            converged &= st.differing.is_empty()
                && st.agents.iter().all(|a| a.lag == 0)
                && st.programmed_eips == st.bound_eips;
            status = Some(st);
        }
        if converged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        converged,
        "the gateway's NAT maps or status differ from the store's bindings:\nwant {want:#?}\nsee (dnat, snat) {seen:#?}\nstatus {status:#?}"
    );
    ctl.kill();
    let n = ops.load(Ordering::Relaxed);
    assert!(
        n > 500 && ledger.created.len() > 50 && ledger.acknowledged_changes > 100 && bound > 0,
        "too little happened: {n} operations, {} created, {} binds/unbinds/releases acknowledged, {bound} bound at the end",
        ledger.created.len(),
        ledger.acknowledged_changes
    );
    eprintln!(
        "{n} operations, {} acknowledged creations, {} removals sent, {} acknowledged binds/unbinds/releases ({checked} EIPs checked), {kill} kills survived, nothing lost; the gateway's NAT maps hold the {bound} bindings",
        ledger.created.len(),
        ledger.removal_sent.len(),
        ledger.acknowledged_changes
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_survives_sigkills_under_load() {
    let path = std::env::temp_dir().join(format!(
        "{}.db",
        vpcip_store::testing::unique("vpcip-crash-")
    ));
    let db = format!("sqlite://{}", path.display());
    // The checker opens the same file between runs (the server is down).
    vpcip_store::Store::open(&db).await.unwrap();
    let check = vpcip_store::Store::open(&db).await.unwrap();
    crash_safety(&db, check).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_survives_sigkills_under_load() {
    let name = vpcip_store::testing::unique("vpcip_crash");
    let db = vpcip_store::sql::create_pg_database(&vpcip_store::testing::pg_admin_url(), &name)
        .await
        .unwrap();
    let check = vpcip_store::Store::open(&db).await.unwrap();
    crash_safety(&db, check).await;
}
