//! Crash safety: 32 clients of four tenants drive random EIP and VIP
//! operations (allocate, bind, rebind, unbind, release; VIP create, bind,
//! unbind, delete) against a real `vpcip server` process while it is
//! killed with SIGKILL at random moments, 20 times, and started again on
//! the same database. While it is down, the store's invariants are checked
//! straight from the database (`vpcip_store::testing::invariants`: no
//! address allocated twice or lost, no binding to something deleted, no
//! limit or quota exceeded), and every acknowledged creation is still
//! there unless a later release or delete of it was sent. Real agents
//! (the lab's gateway and hosts, in namespaces) run throughout; at the end
//! the gateway's data plane holds exactly the bound EIPs (`GET
//! /v1/status`: no EIP differs, no agent lags). On SQLite and on
//! PostgreSQL.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vpcip_client::Client;
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
            .args(["server", "--listen", &format!("127.0.0.1:{}", self.port)])
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
        panic!("vpcip server did not come up");
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
}

fn rng(seed: &AtomicU64) -> u64 {
    // xorshift, one state for all clients: enough for picking operations.
    let mut x = seed.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    seed.store(x, Ordering::Relaxed);
    x
}

async fn one_op(c: &Client, ledger: &Mutex<Ledger>, seed: &AtomicU64, nics: &[String]) {
    let pick = |n: usize| usize::try_from(rng(seed) % n.max(1) as u64).unwrap();
    match rng(seed) % 8 {
        0 | 1 => {
            if let Ok(e) = c
                .create_eip(&CreateEip {
                    bandwidth_mbps: 1,
                    ..Default::default()
                })
                .await
            {
                ledger.lock().unwrap().created.insert(e.id);
            }
        }
        2 | 3 => {
            // Bind (or move) one of this tenant's EIPs to a NIC or VIP.
            let Ok(eips) = c.list_all::<Eip>("eips", None).await else {
                return;
            };
            if eips.is_empty() {
                return;
            }
            let eip = &eips[pick(eips.len())];
            let target = if rng(seed).is_multiple_of(3) {
                let Ok(vips) = c.list_all::<Vip>("vips", None).await else {
                    return;
                };
                if vips.is_empty() {
                    return;
                }
                EipTarget::Vip(vips[pick(vips.len())].id.clone())
            } else {
                EipTarget::Nic(nics[pick(nics.len())].clone())
            };
            let _ = c
                .bind_eip(
                    &eip.id,
                    &BindEip {
                        target,
                        mode: EipMode::Nat,
                        allow_reassociation: true,
                    },
                )
                .await;
        }
        4 => {
            let Ok(eips) = c.list_all::<Eip>("eips", None).await else {
                return;
            };
            if let Some(e) = eips.get(pick(eips.len())) {
                if e.nic_id.is_some() || e.vip_id.is_some() {
                    let _ = c
                        .action::<_, Eip>("eips", &e.id, "unbind", &serde_json::json!({}))
                        .await;
                } else {
                    ledger.lock().unwrap().removal_sent.insert(e.id.clone());
                    let _ = c.remove("eips", &e.id).await;
                }
            }
        }
        5 => {
            if let Ok(v) = c
                .post::<_, Vip>(
                    "/v1/vips",
                    &CreateVip {
                        name: format!("vip-{}", rng(seed) % 1_000_000),
                        subnet: "sw1".into(),
                        ip: None,
                        client_token: None,
                    },
                )
                .await
            {
                ledger.lock().unwrap().created.insert(v.id);
            }
        }
        6 => {
            let Ok(vips) = c.list_all::<Vip>("vips", None).await else {
                return;
            };
            if let Some(v) = vips.get(pick(vips.len())) {
                let nic = nics[pick(nics.len())].clone();
                let verb = if v.nic_ids.contains(&nic) {
                    "unbind"
                } else {
                    "bind"
                };
                let _ = c
                    .action::<_, serde_json::Value>("vips", &v.id, verb, &VipNic { nic })
                    .await;
            }
        }
        _ => {
            let Ok(vips) = c.list_all::<Vip>("vips", None).await else {
                return;
            };
            if let Some(v) = vips.get(pick(vips.len())) {
                for nic in &v.nic_ids {
                    let _ = c
                        .action::<_, Vip>("vips", &v.id, "unbind", &VipNic { nic: nic.clone() })
                        .await;
                }
                if let Some(e) = &v.eip_id {
                    let _ = c
                        .action::<_, Eip>("eips", e, "unbind", &serde_json::json!({}))
                        .await;
                }
                ledger.lock().unwrap().removal_sent.insert(v.id.clone());
                let _ = c.remove("vips", &v.id).await;
            }
        }
    }
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
        .post("/v1/zones", &CreateZone { name: "z1".into() })
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
    for t in ["t0", "t1", "t2", "t3"] {
        let tok: Token = op
            .post(
                "/v1/tokens",
                &CreateToken {
                    tenant: t.into(),
                    description: "crash".into(),
                    agent: false,
                    agent_role: None,
                },
            )
            .await
            .unwrap();
        let c = Client::new(&url, tok.secret.as_deref());
        let _: Vpc = c
            .post(
                "/v1/vpcs",
                &CreateVpc {
                    name: "vpc1".into(),
                    cidr: "10.0.0.0/16".parse().unwrap(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        c.create_subnet(&CreateSubnet {
            name: "sw1".into(),
            vpc: Some("vpc1".into()),
            zone: Some("z1".into()),
            cidr: Some("10.0.1.0/24".parse().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut nics = Vec::new();
        for i in 0..3 {
            let s: vpcip_model::Server = c
                .post(
                    "/v1/servers",
                    &CreateServer {
                        name: format!("vm-{i}"),
                        subnet: "sw1".into(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            nics.push(s.nic_ids[0].clone());
        }
        tenants.push((c, nics));
    }

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (c, nics) = tenants[i % tenants.len()].clone();
        let (ledger, stop, ops) = (ledger.clone(), stop.clone(), ops.clone());
        clients.push(tokio::spawn(async move {
            let seed = AtomicU64::new(0x9e37_79b9_7f4a_7c15 ^ ((i as u64 + 1) * 0x1000_0001));
            while !stop.load(Ordering::Relaxed) {
                one_op(&c, &ledger, &seed, &nics).await;
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let seed = AtomicU64::new(0x2545_f491_4f6c_dd1d);
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(150 + rng(&seed) % 350)).await;
        ctl.kill();
        let bad = vpcip_store::testing::invariants(&check).await.unwrap();
        assert!(bad.is_empty(), "after kill {}: {bad:#?}", kill + 1);
        ctl.start();
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
    // The agents converge on what the store holds: the gateway's data plane
    // has exactly the bound EIPs, and no agent lags.
    ctl.start();
    let mut last = None;
    let mut converged = false;
    for _ in 0..100 {
        if let Ok(st) = op
            .get::<vpcip_model::desired::SystemStatus>("/v1/status")
            .await
        {
            let done = st.differing.is_empty()
                && st.agents.iter().all(|a| a.lag == 0)
                && st.programmed_eips == st.bound_eips;
            last = Some(st);
            if done {
                converged = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(converged, "the agents did not converge: {last:#?}");
    let bound = last.map_or(0, |s| s.bound_eips);
    ctl.kill();
    let n = ops.load(Ordering::Relaxed);
    assert!(
        n > 500 && ledger.created.len() > 50,
        "too little happened: {n} operations, {} created",
        ledger.created.len()
    );
    eprintln!(
        "{n} operations, {} acknowledged creations, {} removals sent, {KILLS} kills survived, nothing lost; the gateway converged on {bound} bound EIPs",
        ledger.created.len(),
        ledger.removal_sent.len()
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
