//! `vpcip lab up`: the lab built step by step, and the tour through it.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use vpcip_client::Client;
use vpcip_lab::World;
use vpcip_lab::cloud;
use vpcip_model::guest;
use vpcip_model::*;

use super::net::{http_get, poll_get, route_on, w_ns};
use super::{LabState, prefix_of, print_hints, spawn_detached, state_dir, step};

pub(super) async fn up(name: &str) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("vpcip lab builds network namespaces: run it as root");
    }
    let dir = state_dir(name);
    if dir.join("state.json").exists() {
        bail!("lab {name:?} is already up: `vpcip lab down --name {name}` first");
    }
    let prefix = prefix_of(name);
    World::remove_all(&prefix); // leftovers of a crashed lab
    std::fs::create_dir_all(&dir)?;
    let operator_token = format!("lab-{}", std::process::id());
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}");
    let mut state = LabState {
        prefix: prefix.clone(),
        url: url.clone(),
        operator_token: operator_token.clone(),
        tenant_token: String::new(),
        pids: vec![],
        nodes: vec![],
    };
    let save = |s: &LabState| -> anyhow::Result<()> {
        std::fs::write(dir.join("state.json"), serde_json::to_string_pretty(s)?)?;
        Ok(())
    };

    step(&format!(
        "controller: vpcip controller on {url}, SQLite in {}",
        dir.display()
    ));
    let db = format!("sqlite://{}/vpcip.db", dir.display());
    let listen = format!("127.0.0.1:{port}");
    state.pids.push(spawn_detached(
        &["controller", "--listen", &listen, "--db", &db],
        &dir.join("server.log"),
        &[("VPCIP_OPERATOR_TOKEN", &operator_token)],
    )?);
    save(&state)?;
    let op = Client::new(&url, Some(&operator_token));
    let mut ok = false;
    for _ in 0..100 {
        if op.get::<serde_json::Value>("/healthz").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !ok {
        bail!(
            "the controller did not start; see {}",
            dir.join("server.log").display()
        );
    }

    step(
        "physical network: router phy 192.0.2.1 running BIRD (BGP AS 64512, BFD), client 198.51.100.10, gateway nodes gw1 192.0.2.21 and gw2 192.0.2.22 each running BIRD, hosts h1 192.0.2.11 and h2 192.0.2.12",
    );
    let mut w = World::with_prefix(&prefix);
    let birds = cloud::cluster(&mut w);
    state.pids.extend(birds.iter().filter_map(|&i| w.pid(i)));
    for n in [cloud::CLIENT, cloud::PHYSICAL_ROUTER]
        .into_iter()
        .chain(cloud::CLUSTER_AGENTS.iter().map(|a| a.1))
    {
        state.nodes.push((n.into(), w.ns(n)));
    }
    save(&state)?;

    step(
        "agents: vpcip agent --role gateway on gw1 and gw2 (driving their BIRD), --role host on h1 and h2 (netlink only)",
    );
    let underlay = CreateHostNetwork {
        name: "underlay".into(),
        cidr: cloud::UNDERLAY.parse()?,
    };
    let _: HostNetwork = op.post(paths::HOST_NETWORKS, &underlay).await?;
    let agents = cloud::CLUSTER_AGENTS;
    for (role, node, ip) in agents {
        let args = cloud::agent_args(&w, role, node, ip, 5, &dir);
        state.pids.push(spawn_detached(
            &args,
            &dir.join(format!("agent-{node}.log")),
            &[("VPCIP_URL", &url), ("VPCIP_TOKEN", &operator_token)],
        )?);
        save(&state)?;
    }
    let registered = op
        .wait_for_agents(agents.len(), Duration::from_secs(10))
        .await;
    if registered != agents.len() {
        bail!(
            "only {registered} of {} agents registered; see {}",
            agents.len(),
            dir.display()
        );
    }

    step(&format!(
        "operator: vpcip gateway update gw1|gw2 --bgp-peer {} --peer-as {} --local-as {} (BFD on)",
        cloud::PHYSICAL_UNDERLAY,
        cloud::PHYSICAL_AS,
        cloud::GATEWAY_AS
    ));
    for (gw, _) in cloud::CLUSTER_GATEWAYS {
        let req = UpdateGateway {
            bgp: Some(Some(cloud::gateway_bgp())),
            drained: None,
        };
        let _: Gateway = op.patch(&paths::at(paths::GATEWAY, &[gw]), &req).await?;
    }

    step("operator: zone z1, EIP segment 203.0.113.0/24, a token for tenant acme");
    let _: Zone = op
        .post(paths::ZONES, &CreateZone { name: "z1".into() })
        .await?;
    op.create_subnet(&CreateSubnet {
        name: "eip-seg".into(),
        kind: SubnetKind::Eip,
        range: Some("203.0.113.1-203.0.113.254".into()),
        prefix_len: Some(24),
        ..Default::default()
    })
    .await?;
    let tok: Token = op
        .post(
            paths::TOKENS,
            &CreateToken {
                tenant: "acme".into(),
                description: "lab".into(),
                agent: false,
                agent_role: None,
                ec2: false,
            },
        )
        .await?;
    state.tenant_token = tok.secret.clone().unwrap_or_default();
    save(&state)?;
    let t = Client::new(&url, tok.secret.as_deref());

    step(
        "tenant acme: VPC vpc1 10.0.0.0/16, subnets sw1 10.0.1.0/24 and sw2 10.0.2.0/24, servers web-1 (sw1) and app-1 (sw2), and a pair vip-a (h1) / vip-b (h2) in sw1",
    );
    let vpc: Vpc = t
        .post(
            paths::VPCS,
            &CreateVpc {
                name: "vpc1".into(),
                cidr: "10.0.0.0/16".parse()?,
                ..Default::default()
            },
        )
        .await?;
    step(
        "tenant acme: vpcip sg rule add vpc1-default ingress:tcp:80:0.0.0.0/0 ingress:icmp:0.0.0.0/0 (the default group lets in only its members)",
    );
    let sg = t.default_sg(&vpc).await?;
    let open: Vec<SgRule> = ["ingress:tcp:80:0.0.0.0/0", "ingress:icmp:0.0.0.0/0"]
        .iter()
        .map(|r| r.parse().map_err(|e: String| anyhow::anyhow!(e)))
        .collect::<anyhow::Result<_>>()?;
    t.add_sg_rules(&sg.id, &open).await?;
    let mut subnets = Vec::new();
    for (n, cidr) in [("sw1", "10.0.1.0/24"), ("sw2", "10.0.2.0/24")] {
        let s = t
            .create_subnet(&CreateSubnet {
                name: n.into(),
                vpc: Some("vpc1".into()),
                zone: Some("z1".into()),
                cidr: Some(cidr.parse()?),
                ..Default::default()
            })
            .await?
            .subnet;
        subnets.push(s);
    }
    for (gw, _) in cloud::CLUSTER_GATEWAYS {
        state.nodes.push((
            format!("vpc1-router-{gw}"),
            format!("{}vpcr-{}", cloud::netns_prefix(&w, gw), vpc.id),
        ));
    }
    let mut vms = Vec::new();
    for (name, subnet, host) in [
        ("web-1", &subnets[0], None),
        ("app-1", &subnets[1], None),
        ("vip-a", &subnets[0], Some(cloud::HOSTS[0])),
        ("vip-b", &subnets[0], Some(cloud::HOSTS[1])),
    ] {
        // (A pair is spread over two hosts: only the operator chooses
        // where a server runs.)
        let by = if host.is_some() { &op } else { &t };
        let server: vpcip_model::Server = by
            .post(
                paths::SERVERS,
                &CreateServer {
                    name: name.into(),
                    subnet: subnet.id.clone(),
                    host: host.map(str::to_string),
                    ..Default::default()
                },
            )
            .await?;
        let nic: Nic = t.show(&server.nic_ids[0]).await?;
        let host = server
            .host
            .clone()
            .context("the controller placed the server on no host")?;
        step(&format!(
            "hypervisor on {host}: VM {name} ({}, VNI {}) plugged as {}",
            nic.ip,
            subnet.vni,
            vpcip_model::desired::port_ifname(&nic.id)
        ));
        cloud::plug_vm(
            &mut w,
            name,
            &host,
            &cloud::VmNic {
                nic_id: &nic.id,
                mac: &nic.mac,
                ip: nic.ip,
                prefix_len: subnet.cidr.prefix_len(),
                gateway: subnet.gateway,
            },
        );
        state.nodes.push((name.into(), w.ns(name)));
        save(&state)?;
        vms.push((server, nic));
    }
    w.keep();
    let web_ns = format!("{prefix}web-1");
    state.pids.push(spawn_detached(
        &["lab", "httpd", "--netns", &web_ns, "--port", "80"],
        &dir.join("httpd.log"),
        &[],
    )?);
    save(&state)?;

    let web_ip = vms[0].1.ip;
    step(&format!(
        "app-1 (h2, sw2) → web-1 (h1, sw1): GET http://{web_ip}/ across hosts and subnets"
    ));
    let app_ns = format!("{prefix}app-1");
    match poll_get(&app_ns, SocketAddr::new(web_ip.into(), 80)).await {
        Some(body) => println!("    {}", body.trim()),
        None => bail!("web-1 is not reachable from app-1; see {}", dir.display()),
    }

    step("tenant acme: vpcip eip create --bandwidth 10 --server web-1");
    let eip = t.eip_for_server("web-1", 10).await?;
    println!("    EIP {} → {web_ip} (web-1)", eip.ip);
    let phy_ns = w_ns(&prefix, cloud::PHYSICAL_ROUTER);
    let mut learnt = None;
    for _ in 0..100 {
        learnt = route_on(&phy_ns, eip.ip);
        if learnt.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match learnt {
        Some(r) => println!("    phy learnt by BGP: {r}"),
        None => bail!(
            "phy learnt no route to {} by BGP; see {}",
            eip.ip,
            dir.display()
        ),
    }

    step(&format!("outside client: GET http://{}/", eip.ip));
    let client_ns = w_ns(&prefix, cloud::CLIENT);
    match poll_get(&client_ns, SocketAddr::new(eip.ip.into(), 80)).await {
        Some(body) => println!("    {}", body.trim()),
        None => bail!("the EIP did not answer; see the logs in {}", dir.display()),
    }
    // A VIP shared by vip-a and vip-b, each running `vpcip vrrp` (the
    // command `vpcip vip guest-config --vrrp` prints), with an EIP on it.
    step(
        "tenant acme: VIP 10.0.1.100 bound to vip-a and vip-b, an EIP on it; vpcip vrrp in both VMs",
    );
    let vip: Vip = t
        .post(
            paths::VIPS,
            &CreateVip {
                name: "vip-1".into(),
                subnet: "sw1".into(),
                ip: Some("10.0.1.100".parse()?),
                client_token: None,
            },
        )
        .await?;
    t.bind_vip_to(&vip.id, &[&vms[2].1.id, &vms[3].1.id])
        .await?;
    let vip_eip = t.eip_for_vip(&vip.id, 10).await?;
    let subnet = &subnets[0];
    let mut speakers = Vec::new();
    for (rank, (vm, (_, nic))) in ["vip-a", "vip-b"].iter().zip(&vms[2..]).enumerate() {
        let ns = format!("{prefix}{vm}");
        state.pids.push(spawn_detached(
            &["lab", "httpd", "--netns", &ns, "--port", "80"],
            &dir.join(format!("httpd-{vm}.log")),
            &[],
        )?);
        let me = guest::GuestNic {
            ifname: "eth0",
            connection: "System eth0",
            ip: nic.ip,
            subnet: subnet.cidr,
            gateway: subnet.gateway,
            device: 0,
        };
        let line = guest::vrrp_command(
            &vip.name,
            vip.ip,
            subnet.cidr,
            &me,
            &guest::VrrpParams {
                rank,
                vrid: guest::vrid_of(vip.ip),
                advert_cs: 100,
            },
        );
        println!("    {vm}: {}", line.trim());
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        let log = std::fs::File::create(dir.join(format!("vrrp-{vm}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(std::env::current_exe()?)
            .args(&words)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        state.pids.push(child.id());
        speakers.push(child.id());
    }
    save(&state)?;
    let vip_to = SocketAddr::new(vip_eip.ip.into(), 80);
    step(&format!(
        "outside client: GET http://{}/ (the EIP on the VIP): the master answers",
        vip_eip.ip
    ));
    let served_by = |vm: &str| {
        let want = format!("hello from {prefix}{vm}");
        move |b: &Option<String>| b.as_deref().is_some_and(|b| b.starts_with(&want))
    };
    let mut body = None;
    for _ in 0..100 {
        body = http_get(&client_ns, vip_to);
        if served_by("vip-a")(&body) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !served_by("vip-a")(&body) {
        bail!(
            "the VIP's EIP did not reach vip-a: {body:?}; see {}",
            dir.display()
        );
    }
    println!("    {}", body.unwrap_or_default().trim());
    step(
        "vip-a's speaker stops (it hands over with priority 0): vip-b takes the VIP, the EIP follows",
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(speakers[0].cast_signed()),
        nix::sys::signal::Signal::SIGTERM,
    );
    state.pids.retain(|p| *p != speakers[0]);
    save(&state)?;
    let mut body = None;
    for _ in 0..100 {
        body = http_get(&client_ns, vip_to);
        if served_by("vip-b")(&body) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !served_by("vip-b")(&body) {
        bail!(
            "the VIP's EIP did not follow to vip-b: {body:?}; see {}",
            dir.display()
        );
    }
    println!("    {}", body.unwrap_or_default().trim());

    print_hints(name, &url, &operator_token, &state, &eip);
    Ok(())
}
