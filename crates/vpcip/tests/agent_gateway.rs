//! End to end with real processes: `vpcip server` and a `vpcip agent --role
//! gateway` program a VPC router namespace from the API. An EIP bound through
//! the API carries TCP from an outside client to the VM; an established
//! connection survives the agent being killed with SIGKILL and restarted; a
//! map element deleted by hand comes back on the next resync; unbinding
//! stops the EIP.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use vpcip_client::Client;
use vpcip_lab::{Conn, World, ask_once, echo_server, eventually};
use vpcip_model::desired::Agent;
use vpcip_model::*;

const OPERATOR: &str = "agent-test-operator";
const CLIENT: &str = vpcip_lab::OUTSIDE_CLIENT;

fn vpcip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vpcip"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_agent(w: &mut World, url: &str) -> usize {
    let child = vpcip()
        .args([
            "agent",
            "--role",
            "gateway",
            "--name",
            "gw1",
            "--underlay-ip",
            "192.0.2.20",
        ])
        .args(["--netns-prefix", &w.prefix, "--resync", "1"])
        .env("VPCIP_URL", url)
        .env("VPCIP_TOKEN", OPERATOR)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    w.adopt(child)
}

fn router_map(w: &World, router: &str) -> String {
    w.try_exec(
        router,
        &["nft", "list", "map", "ip", "vpcip_nat", "eip_dnat"],
    )
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_agent_programs_eips_from_the_api() {
    let mut w = World::new("vpa");
    let dir = std::env::temp_dir().join(format!("{}db", w.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let server = vpcip()
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(format!("sqlite://{}/vpcip.db", dir.display()))
        .env("VPCIP_OPERATOR_TOKEN", OPERATOR)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    w.adopt(server);
    let op = Client::new(&url, Some(OPERATOR));
    let mut up = false;
    for _ in 0..100 {
        if op.get::<serde_json::Value>("/healthz").await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "vpcip server did not start");

    // The tenant's world through the API.
    let _: Zone = op
        .post("/v1/zones", &CreateZone { name: "z1".into() })
        .await
        .unwrap();
    op.create_subnet(&CreateSubnet {
        name: "seg".into(),
        kind: SubnetKind::Eip,
        cidr: Some("203.0.113.0/24".parse().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let vpc: Vpc = op
        .post(
            "/v1/vpcs",
            &CreateVpc {
                name: "v1".into(),
                cidr: "10.0.0.0/16".parse().unwrap(),
                secondary_cidrs: vec![],
                tenant: Some("acme".into()),
                client_token: None,
            },
        )
        .await
        .unwrap();
    op.create_subnet(&CreateSubnet {
        name: "sw1".into(),
        vpc: Some("v1".into()),
        zone: Some("z1".into()),
        cidr: Some("10.0.0.0/24".parse().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let vm: vpcip_model::Server = op
        .post(
            "/v1/servers",
            &CreateServer {
                name: "vm-1".into(),
                subnet: "sw1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let nic: Nic = op.show("nics", &vm.nic_ids[0]).await.unwrap();
    assert_eq!(nic.ip.to_string(), "10.0.0.2");

    // The world: client — VPC router — VM. (The agent owns the router's NAT
    // maps; the links are the lab's until the agent builds routers.)
    let router = format!("vpcr-{}", vpc.id);
    vpcip_lab::client_router_vm(&mut w, &router, "203.0.113.0/24");
    let _vm_server = echo_server(&w.ns("vm"), 8080, Duration::from_secs(60));

    let agent = start_agent(&mut w, &url);
    let eip = op
        .create_eip(&CreateEip {
            bandwidth_mbps: 10,
            bind: Some(BindEip {
                target: EipTarget::Server(vm.id.clone()),
                mode: EipMode::Nat,
                allow_reassociation: false,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let to = SocketAddr::new(eip.ip.into(), 8080);
    let client = w.ns("client");
    let expect = |s: &str| Some(format!("{CLIENT} {s}"));
    assert!(
        eventually(Duration::from_secs(10), || ask_once(&client, to, "first")
            == expect("first")),
        "the EIP never answered"
    );

    // The agent is healthy and has applied the current revision.
    let agents: Vec<Agent> = op.get("/v1/agents").await.unwrap();
    assert_eq!(agents.len(), 1);
    assert!(agents[0].error.is_none(), "{:?}", agents[0].error);
    assert!(agents[0].applied_revision > 0);
    let gateways: Vec<Gateway> = op.list_all("gateways", None).await.unwrap();
    assert_eq!(
        gateways[0].underlay_ip.to_string(),
        "192.0.2.20",
        "the agent registered its gateway"
    );

    // An established connection survives the agent's crash and restart.
    let mut conn = Conn::open(&client, to, Duration::from_secs(1)).unwrap();
    assert_eq!(conn.ask("before"), expect("before"));
    w.kill(agent);
    assert_eq!(
        conn.ask("agent down"),
        expect("agent down"),
        "the data plane keeps forwarding"
    );
    let _agent = start_agent(&mut w, &url);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(conn.ask("after restart"), expect("after restart"));
    assert!(router_map(&w, &router).contains(&eip.ip.to_string()));

    // Drift: an element deleted by hand comes back on the next resync.
    w.exec(
        &router,
        &[
            "nft",
            "delete",
            "element",
            "ip",
            "vpcip_nat",
            "eip_dnat",
            &format!("{{ {} }}", eip.ip),
        ],
    );
    assert!(!router_map(&w, &router).contains(&eip.ip.to_string()));
    assert!(
        eventually(Duration::from_secs(10), || router_map(&w, &router)
            .contains(&eip.ip.to_string())),
        "the resync did not repair the map"
    );
    assert_eq!(ask_once(&client, to, "repaired"), expect("repaired"));

    // Unbind through the API: the EIP stops answering new connections, and
    // established ones too (their conntrack entries are forgotten).
    let mut established = Conn::open(&client, to, Duration::from_secs(1)).unwrap();
    assert_eq!(established.ask("still bound"), expect("still bound"));
    let _: Eip = op
        .action("eips", &eip.id, "unbind", &serde_json::json!({}))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !router_map(&w, &router)
            .contains(&eip.ip.to_string())),
        "unbind never reached the router"
    );
    assert_eq!(ask_once(&client, to, "unbound"), None);
    assert_eq!(
        established.ask("after unbind"),
        None,
        "an established flow kept the old mapping"
    );
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}
