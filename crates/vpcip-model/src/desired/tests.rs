use super::*;

#[test]
fn an_agent_is_healthy_while_it_reports() {
    let mut a = Agent {
        id: "agent-1".into(),
        name: "h1".into(),
        role: AgentRole::Host,
        underlay_ip: Ipv4Addr::new(192, 0, 2, 11),
        applied_revision: 0,
        last_seen: 0,
        error: None,
        missing_ports: vec![],
        cluster: None,
    };
    assert_eq!(a.health(1_000), "registered, not reported yet");
    a.last_seen = 990;
    assert_eq!(a.health(1_000), "healthy");
    assert_eq!(a.health(990 + AGENT_HEALTH_SECONDS + 1), "silent for 16s");
    a.error = Some("setns failed".into());
    assert_eq!(a.health(1_000), "error: setns failed");
}

fn gateway(name: &str, slot: u8, drained: bool) -> Gateway {
    Gateway {
        id: format!("gw-{name}"),
        name: name.into(),
        underlay_ip: Ipv4Addr::new(192, 0, 2, 20 + slot),
        snat_ip: Some(Ipv4Addr::new(203, 0, 113, 250 + slot)),
        slot,
        drained,
        bgp: None,
    }
}

#[test]
fn bgp_problems_name_the_gateway_the_peer_and_what_is_wrong() {
    let mut g = gateway("a", 1, false);
    g.bgp = Some(crate::BgpConfig {
        local_as: 64513,
        peers: vec![
            crate::BgpPeer {
                ip: Ipv4Addr::new(192, 0, 2, 1),
                peer_as: 64512,
            },
            crate::BgpPeer {
                ip: Ipv4Addr::new(192, 0, 2, 9),
                peer_as: 64512,
            },
        ],
        bfd: true,
    });
    let mut a = agent("a", AgentRole::Gateway, "192.0.2.21");
    let session = |last: u8, state: &str, info: &str, received| BgpSession {
        peer: Ipv4Addr::new(192, 0, 2, last),
        state: state.into(),
        info: info.into(),
        received,
        exported: 3,
        drops: 0,
    };
    a.cluster = Some(ClusterReport {
        carrying: vec![1],
        bgp: vec![
            session(1, "established", "", 2),
            session(9, "active", "Socket: Connection refused", 0),
        ],
        bgp_error: None,
        announced: 3,
    });
    let p = bgp_problems(std::slice::from_ref(&g), std::slice::from_ref(&a));
    let text: Vec<String> = p.iter().map(|p| p.problem.clone()).collect();
    assert_eq!(p.len(), 2, "{text:?}");
    assert!(text[0].contains("announces 2 routes"), "{text:?}");
    assert_eq!(text[1], "session active (Socket: Connection refused)");
    // None up: said too.
    a.cluster.as_mut().unwrap().bgp[0].state = "idle".into();
    let p = bgp_problems(std::slice::from_ref(&g), std::slice::from_ref(&a));
    assert!(
        p.iter()
            .any(|p| p.problem.starts_with("no BGP session is up"))
    );
    // Without BGP, nothing to say.
    g.bgp = None;
    assert!(bgp_problems(&[g], &[a]).is_empty());
}

#[test]
fn slots_are_kept_and_the_unnumbered_get_the_lowest_free() {
    let gws = [
        gateway("a", 2, false),
        gateway("b", 0, false),
        gateway("c", 0, false),
    ];
    let s = gateway_slots(&gws);
    assert_eq!((s["gw-a"], s["gw-b"], s["gw-c"]), (2, 1, 3));
}

#[test]
fn placement_spreads_vpcs_and_moves_only_the_share_of_a_new_gateway() {
    let two = [gateway("a", 1, false), gateway("b", 2, false)];
    let three = [
        gateway("a", 1, false),
        gateway("b", 2, false),
        gateway("c", 3, false),
    ];
    let (s2, s3) = (gateway_slots(&two), gateway_slots(&three));
    let vpcs: Vec<String> = (0..300).map(|i| format!("vpc-{i:05}")).collect();
    let on = |v: &str, g: &[Gateway], s: &BTreeMap<&str, u8>| placement(v, g, s).unwrap();
    let per_slot = |slot| vpcs.iter().filter(|v| on(v, &two, &s2) == slot).count();
    assert!(
        per_slot(1) > 100 && per_slot(2) > 100,
        "{} / {}",
        per_slot(1),
        per_slot(2)
    );
    for v in &vpcs {
        let before = on(v, &two, &s2);
        let after = on(v, &three, &s3);
        assert!(
            after == before || after == 3,
            "{v} moved from {before} to {after}"
        );
    }
}

#[test]
fn the_owner_wins_its_slot_one_backup_is_next_and_a_drained_gateway_last() {
    let gws = [
        gateway("a", 1, false),
        gateway("b", 2, false),
        gateway("c", 3, true),
    ];
    let (a, b, c) = (&gws[0], &gws[1], &gws[2]);
    assert_eq!(slot_priority(a, a, 1, &gws), 250);
    assert_eq!(
        slot_priority(b, a, 1, &gws),
        200,
        "the only undrained other"
    );
    assert_eq!(slot_priority(c, a, 1, &gws), 1, "drained");
    assert_eq!(slot_priority(c, c, 3, &gws), 1, "drained, even for its own");
    let p = [slot_priority(a, c, 3, &gws), slot_priority(b, c, 3, &gws)];
    assert!(p.contains(&200) && p.contains(&199), "{p:?}: distinct");
}

#[test]
fn classes_follow_the_low_bits_and_probe_past_collisions() {
    let ips: Vec<Ipv4Addr> = ["203.0.113.5", "198.51.100.0", "10.1.113.5", "10.2.255.255"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        assign_classes(&ips),
        vec![
            Some(0x7105),
            Some(0x6400),
            Some(0x7106), // 113.5 again: the next free class
            Some(0xfffe), // 0xffff is not a class: clamped
        ]
    );
    // Class 0 is not a class either.
    assert_eq!(
        assign_classes(&["10.0.0.0".parse().unwrap()]),
        vec![Some(1)]
    );
    // 65,534 classes, then none.
    let many: Vec<Ipv4Addr> = (0..65_536u32)
        .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
        .collect();
    let got = assign_classes(&many);
    assert_eq!(got.iter().filter(|c| c.is_some()).count(), 65_534);
    let distinct: BTreeSet<u16> = got.iter().flatten().copied().collect();
    assert_eq!(distinct.len(), 65_534);
}

fn vpc(id: &str, default: bool) -> Vpc {
    Vpc {
        id: id.into(),
        tenant: "t".into(),
        name: id.into(),
        cidr: "10.0.0.0/8".parse().unwrap(),
        secondary_cidrs: vec![],
        is_default: default,
        router_index: if default { 0 } else { 1 },
    }
}

fn eip(ip: &str, vpc: Option<&str>, private: Option<&str>, mode: EipMode) -> Eip {
    Eip {
        id: format!("eip-{ip}"),
        tenant: "t".into(),
        name: String::new(),
        subnet_id: "seg".into(),
        ip: ip.parse().unwrap(),
        bandwidth_mbps: 1,
        binding: match (vpc, private) {
            (Some(vpc), Some(private)) => EipBinding::Nic {
                nic_id: format!("nic-{private}"),
                server_id: None,
                vpc_id: vpc.into(),
                private_ip: private.parse().unwrap(),
                mode,
            },
            _ => EipBinding::Unbound,
        },
        algs: vec![],
    }
}

fn subnet(id: &str, vpc: &str, cidr: &str, vni: u32, kind: SubnetKind) -> Subnet {
    let cidr: Ipv4Net = cidr.parse().unwrap();
    Subnet {
        id: id.into(),
        tenant: "t".into(),
        name: id.into(),
        vpc_id: vpc.into(),
        zone_id: None,
        kind,
        cidr,
        range_start: cidr.network(),
        range_end: cidr.broadcast(),
        gateway: None,
        total: 0,
        used: 0,
        vni,
        dns_servers: vec![],
        host_routes: vec![],
    }
}

fn agent(name: &str, role: AgentRole, ip: &str) -> Agent {
    Agent {
        id: format!("agent-{name}"),
        name: name.into(),
        role,
        underlay_ip: ip.parse().unwrap(),
        applied_revision: 0,
        last_seen: 0,
        error: None,
        missing_ports: vec![],
        cluster: None,
    }
}

fn server(id: &str, host: &str, nics: &[&str]) -> Server {
    Server {
        id: id.into(),
        tenant: "t".into(),
        name: id.into(),
        zone_id: "z".into(),
        nic_ids: nics.iter().map(|n| n.to_string()).collect(),
        host: Some(host.into()),
    }
}

fn nic(id: &str, subnet: &str, ip: &str) -> Nic {
    Nic {
        id: id.into(),
        tenant: "t".into(),
        name: id.into(),
        vpc_id: "v1".into(),
        subnet_id: subnet.into(),
        zone_id: "z".into(),
        ip: ip.parse().unwrap(),
        mac: "00:16:3e:00:00:01".into(),
        server_id: None,
        primary: true,
        security_group_ids: vec![],
        source_dest_check: true,
        vip_ids: vec![],
    }
}

#[test]
fn routers_carry_their_bound_eips() {
    let eips = [
        eip("203.0.113.2", Some("v1"), Some("10.0.0.3"), EipMode::Nat),
        eip("203.0.113.1", Some("v1"), Some("10.0.0.2"), EipMode::Nat),
        eip("203.0.113.3", None, None, EipMode::Nat),
        eip(
            "203.0.113.4",
            Some("v2"),
            Some("203.0.113.4"),
            EipMode::Visible,
        ),
    ];
    let world = World {
        vpcs: &[vpc("d", true), vpc("v1", false), vpc("v2", false)],
        subnets: &[subnet("seg", "d", "203.0.113.0/24", 0, SubnetKind::Eip)],
        eips: &eips,
        servers: &[],
        nics: &[],
        vips: &[],
        agents: &[],
        host_networks: &[],
        gateways: &[Gateway {
            id: "gw-1".into(),
            name: "gw".into(),
            underlay_ip: "192.0.2.2".parse().unwrap(),
            snat_ip: Some("203.0.113.254".parse().unwrap()),
            slot: 0,
            drained: false,
            bgp: None,
        }],
        security_groups: &[],
        dhcp: &DhcpDefaults::default(),
    };
    let s = world.gateway(&agent("gw", AgentRole::Gateway, "192.0.2.2"));
    assert_eq!(
        s.snat_ip,
        Some("203.0.113.254".parse().unwrap()),
        "its own gateway's default SNAT address"
    );
    let other = world.gateway(&agent("gw2", AgentRole::Gateway, "192.0.2.3"));
    assert_eq!(other.snat_ip, None, "not another gateway's");
    assert_eq!(s.routers.len(), 2, "the default VPC has no router");
    assert_eq!(s.routers[0].nat.len(), 2);
    assert_eq!(s.routers[0].nat[0].eip.to_string(), "203.0.113.1", "sorted");
    assert_eq!(s.routers[1].visible.len(), 1);
    assert_eq!(
        s.routers[1].nat[0].private_ip, s.routers[1].nat[0].eip,
        "a visible EIP is an identity entry"
    );
    assert_eq!(s.eip_segments.len(), 1);
}

#[test]
fn l2_domains_list_the_other_vteps_with_a_port_in_the_subnet() {
    let agents = [
        agent("gw", AgentRole::Gateway, "192.0.2.2"),
        agent("h1", AgentRole::Host, "192.0.2.11"),
        agent("h2", AgentRole::Host, "192.0.2.12"),
    ];
    let subnets = [
        subnet("a", "v1", "10.0.1.0/24", 10, SubnetKind::Guest),
        subnet("b", "v1", "10.0.2.0/24", 11, SubnetKind::Guest),
    ];
    let servers = [
        server("s1", "h1", &["nic-1"]),
        server("s2", "h2", &["nic-2"]),
        server("s3", "h2", &["nic-3"]),
    ];
    let nics = [
        nic("nic-1", "a", "10.0.1.2"),
        nic("nic-2", "a", "10.0.1.3"),
        nic("nic-3", "b", "10.0.2.2"),
    ];
    let vips = [Vip {
        id: "vip-1".into(),
        tenant: "t".into(),
        name: "v".into(),
        vpc_id: "v1".into(),
        subnet_id: "a".into(),
        ip: "10.0.1.100".parse().unwrap(),
        nic_ids: vec!["nic-1".into()],
        eip_id: None,
    }];
    let world = World {
        vpcs: &[vpc("v1", false)],
        subnets: &subnets,
        eips: &[],
        servers: &servers,
        nics: &nics,
        vips: &vips,
        agents: &agents,
        host_networks: &[],
        gateways: &[],
        security_groups: &[],
        dhcp: &DhcpDefaults::default(),
    };
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    // Every agent's address is infrastructure to the gateway, a host
    // network registered or not.
    let g = world.gateway(&agents[0]);
    let want: Vec<Ipv4Net> = ["192.0.2.2/32", "192.0.2.11/32", "192.0.2.12/32"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(g.infrastructure, want);
    let h1 = world.host(&agents[1]);
    assert_eq!(h1.domains.len(), 1);
    assert_eq!(h1.domains[0].vteps, vec![ip("192.0.2.2"), ip("192.0.2.12")]);
    assert_eq!(h1.ports[0].ifname, "t1");
    assert_eq!(
        h1.ports[0].ips,
        vec![ip("10.0.1.2"), ip("10.0.1.100")],
        "its VIP too"
    );
    let h2 = world.host(&agents[2]);
    assert_eq!(h2.domains.len(), 2);
    assert_eq!(h2.domains[0].vteps, vec![ip("192.0.2.2"), ip("192.0.2.11")]);
    assert_eq!(h2.domains[1].vteps, vec![ip("192.0.2.2")]);
    let gw = world.gateway(&agents[0]);
    let r = &gw.routers[0];
    assert_eq!(
        r.subnets[0].l2.vteps,
        vec![ip("192.0.2.11"), ip("192.0.2.12")]
    );
    assert_eq!(r.subnets[1].l2.vteps, vec![ip("192.0.2.12")]);
}

#[test]
fn router_links_are_distinct_slash_31s() {
    assert_eq!(
        router_link(1),
        (Ipv4Addr::new(169, 254, 0, 2), Ipv4Addr::new(169, 254, 0, 3))
    );
    assert_eq!(router_link(MAX_ROUTERS).1, Ipv4Addr::new(169, 254, 250, 1));
    assert_eq!(router_ifname("vpc-abcdefghjk"), "vrabcdefghjk");
    assert!(port_ifname("nic-abcdefghjk").len() <= 15);
}
