//! EIP routes at the physical router, learnt by BGP: a new EIP's bind →
//! its route, and 100,000 EIPs announced from an empty node.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::bail;
use vpcip_lab::cloud;
use vpcip_lab::{World, eventually};
use vpcip_model::*;
use vpcip_sys::netns::{in_netns, named};

use super::ms;

/// A new EIP bound to a server → its /32 at the physical router (learnt by
/// BGP), from the API's answer; `n` binds.
pub(super) async fn bind_to_route(
    w: &World,
    op: &vpcip_client::Client,
    n: usize,
) -> anyhow::Result<()> {
    let subnet: Subnet = op.show("sw").await?;
    let server: Server = op
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "bindee".into(),
                subnet: subnet.id.clone(),
                host: Some(cloud::HOSTS[1].into()),
                ..Default::default()
            },
        )
        .await?;
    let phy = named(&w.ns(cloud::PHYSICAL_ROUTER));
    let mut times = Vec::new();
    for _ in 0..n {
        let eip = op.eip_for_server(&server.id, 10).await?;
        let answered = Instant::now();
        let dst = vpcip_model::ipam::net_of(eip.ip, 32)?;
        let seen = in_netns(&phy, || -> anyhow::Result<bool> {
            let net = vpcip_sys::link::Net::open()?;
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if net.routes()?.iter().any(|r| r.dst == dst) {
                    return Ok(true);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(false)
        })??;
        if !seen {
            bail!("{} never reached the physical router", eip.ip);
        }
        times.push(ms(answered.elapsed()));
        let _: Eip = op
            .action(paths::EIP_UNBIND, &eip.id, &serde_json::json!({}))
            .await?;
        op.remove::<vpcip_model::Eip>(&eip.id).await?;
        // The next bind may take the same address: its route must be gone
        // first, or the next measure would find the old one.
        let gone = in_netns(&phy, || -> anyhow::Result<bool> {
            let net = vpcip_sys::link::Net::open()?;
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if !net.routes()?.iter().any(|r| r.dst == dst) {
                    return Ok(true);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(false)
        })??;
        if !gone {
            bail!(
                "the route to {} stayed at the physical router after its release",
                eip.ip
            );
        }
    }
    times.sort_by(f64::total_cmp);
    let p = |q: f64| crate::secgroups::quantile(&times, q);
    println!(
        "a new EIP bound → its route at the physical router (BGP): p50 {:.0} ms, p99 {:.0} ms over {n} binds",
        p(0.5),
        p(0.99)
    );
    Ok(())
}

/// 100,000 EIPs announced from an empty gateway node: the agent's first
/// pass (routers, maps, announcement table) until the physical router's
/// kernel holds every /32, learnt from the node's BIRD.
pub(super) fn announce_many(n: u32) -> anyhow::Result<()> {
    use vpcip_dataplane::gateway::Roles;
    let mut w = World::new("vpan");
    cloud::physical(&mut w, &[]);
    let gw_ip: Ipv4Addr = cloud::GATEWAY_UNDERLAY.parse()?;
    let bgp = cloud::gateway_bgp();
    cloud::start_bird(
        &mut w,
        cloud::GATEWAY,
        &vpcip_agent::bgp::render(gw_ip, &bgp),
    );
    let phy = format!(
        "router id {ip};\nprotocol device {{}}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; }}\n\
         protocol bgp node_gw {{ local {ip} as {pas}; neighbor {gw_ip} as {gas}; connect delay time 1; ipv4 {{ import all; export none; }}; }}\n",
        ip = cloud::PHYSICAL_UNDERLAY,
        pas = cloud::PHYSICAL_AS,
        gas = cloud::GATEWAY_AS
    );
    cloud::start_bird(&mut w, cloud::PHYSICAL_ROUTER, &phy);
    let (_, sock) = cloud::bird_paths(&w, cloud::GATEWAY);
    let bird = vpcip_agent::bgp::Bird {
        socket: sock,
        config: cloud::bird_paths(&w, cloud::GATEWAY).0,
    };
    if !eventually(Duration::from_secs(15), || {
        bird.sessions(&[bgp.peers[0].ip])
            .is_ok_and(|s| s.iter().all(|b| b.state == "established"))
    }) {
        bail!("the BGP session did not come up");
    }
    let nat: Vec<vpcip_model::desired::NatEntry> = (0..n)
        .map(|i| {
            let eip = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i);
            vpcip_model::desired::NatEntry {
                eip,
                private_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i),
                eip_id: format!("eip-{i}"),
                shaping: None,
                algs: vec![],
            }
        })
        .collect();
    let mut state = crate::dataplane::one_router(nat);
    state.cluster.bgp = Some(bgp);
    state.cluster.slots = vec![vpcip_model::desired::Slot {
        vrid: 1,
        owner: cloud::GATEWAY.into(),
        priority: 250,
        snat_ip: None,
    }];
    state.routers[0].slot = 1;
    let roles = Roles {
        master: [1].into(),
        backup: Default::default(),
    };
    let mut agent = crate::dataplane::gateway_agent(&w);
    let phy_ns = named(&w.ns(cloud::PHYSICAL_ROUTER));
    let started = Instant::now();
    agent
        .reconcile_with(&state, Some(&roles))
        .map_err(|e| anyhow::anyhow!(e))?;
    let pass = started.elapsed();
    let all = in_netns(&phy_ns, || -> anyhow::Result<bool> {
        let net = vpcip_sys::link::Net::open()?;
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            let have = net
                .routes()?
                .iter()
                .filter(|r| r.dst.prefix_len() == 32 && r.dst.addr().octets()[0] == 100)
                .count();
            if have >= n as usize {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(false)
    })??;
    if !all {
        bail!("the physical router did not learn all {n} routes in 60 s");
    }
    println!(
        "{n} EIPs announced from an empty node: in the physical router's kernel {:.2} s after the agent's pass began (the pass itself {:.2} s: routers, NAT maps, announcement table)",
        started.elapsed().as_secs_f64(),
        pass.as_secs_f64()
    );
    Ok(())
}
