use super::*;
use crate::resources::SubnetKind;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn hn(name: &str, cidr: &str) -> HostNetwork {
    HostNetwork {
        id: format!("hostnet-{name}"),
        name: name.into(),
        cidr: cidr.parse().unwrap(),
    }
}

fn gw(name: &str, addr: &str) -> Gateway {
    Gateway {
        id: format!("gw-{name}"),
        name: name.into(),
        underlay_ip: ip(addr),
        snat_ip: None,
        slot: 0,
        drained: false,
        bgp: None,
    }
}

#[test]
fn bgp_needs_usable_as_numbers_and_one_to_sixteen_distinct_peers() {
    let peer = |ip: &str, peer_as| crate::BgpPeer {
        ip: self::ip(ip),
        peer_as,
    };
    let bgp = |local_as, peers| BgpConfig {
        local_as,
        peers,
        bfd: true,
    };
    assert!(check_bgp(&bgp(64513, vec![peer("192.0.2.1", 64512)])).is_ok());
    let msg = |b: &BgpConfig| check_bgp(b).unwrap_err().to_string();
    assert!(msg(&bgp(0, vec![peer("192.0.2.1", 64512)])).contains("AS 0 cannot be used"));
    assert!(msg(&bgp(64513, vec![peer("192.0.2.1", 23456)])).contains("AS_TRANS"));
    assert!(msg(&bgp(64513, vec![])).contains("1 to 16 BGP peers, 0 given"));
    assert!(msg(&bgp(64513, vec![peer("224.0.0.5", 1)])).contains("not a unicast address"));
    let twice = vec![peer("192.0.2.1", 1), peer("192.0.2.1", 2)];
    assert!(msg(&bgp(64513, twice)).contains("given twice"));
}

#[test]
fn the_last_undrained_gateway_cannot_be_drained() {
    let (a, mut b) = (gw("a", "192.0.2.21"), gw("b", "192.0.2.22"));
    assert!(check_drain(&a, &[a.clone(), b.clone()]).is_ok());
    b.drained = true;
    let e = check_drain(&a, &[a.clone(), b]).unwrap_err().to_string();
    assert!(e.contains("only undrained gateway"), "{e}");
}

fn agent(name: &str, role: AgentRole, addr: &str) -> Agent {
    Agent {
        id: format!("agent-{name}"),
        name: name.into(),
        role,
        underlay_ip: ip(addr),
        applied_revision: 0,
        last_seen: 0,
        error: None,
        missing_ports: vec![],
        cluster: None,
    }
}

fn segment(cidr: &str) -> Subnet {
    let c: Ipv4Net = cidr.parse().unwrap();
    Subnet {
        id: "subnet-seg".into(),
        tenant: crate::SYSTEM_TENANT.into(),
        name: "eip-seg".into(),
        vpc_id: "vpc-default".into(),
        zone_id: None,
        kind: SubnetKind::Eip,
        cidr: c,
        range_start: c.network(),
        range_end: c.broadcast(),
        gateway: None,
        total: 0,
        used: 0,
        vni: 0,
        dns_servers: vec![],
        host_routes: vec![],
    }
}

struct World {
    hns: Vec<HostNetwork>,
    segs: Vec<Subnet>,
    agents: Vec<Agent>,
    gws: Vec<Gateway>,
}

fn world() -> World {
    World {
        hns: vec![hn("underlay", "192.168.201.0/24")],
        segs: vec![segment("192.168.202.0/24")],
        agents: vec![
            agent("gw1", AgentRole::Gateway, "192.168.201.20"),
            agent("h1", AgentRole::Host, "192.168.201.11"),
        ],
        gws: vec![gw("gw1", "192.168.201.20")],
    }
}

fn check(w: &World, addr: &str, claim: UnderlayClaim<'_>) -> Result<(), RuleError> {
    check_underlay(ip(addr), claim, &w.hns, &w.segs, &w.agents, &w.gws)
}

fn refusal(r: Result<(), RuleError>) -> (&'static str, String) {
    let e = r.unwrap_err();
    (e.code(), e.to_string())
}

const NEW_HOST: UnderlayClaim<'static> = UnderlayClaim {
    agent: Some("h9"),
    gateway: None,
};

#[test]
fn an_agent_token_acts_for_its_own_agent_only() {
    let me = AgentIdentity {
        name: "gw1".into(),
        role: AgentRole::Gateway,
    };
    me.check_acts_for("gw1", Some(AgentRole::Gateway)).unwrap();
    me.check_acts_for("gw1", None).unwrap();
    let e = me
        .check_acts_for("other-gw", Some(AgentRole::Gateway))
        .unwrap_err();
    assert_eq!(e.code(), "agent_identity");
    assert_eq!(e.class(), crate::ErrorClass::Forbidden);
    assert_eq!(
        e.to_string(),
        "this agent token acts for agent gw1 (gateway) only, not other-gw (gateway)"
    );
    let e = me.check_acts_for("gw1", Some(AgentRole::Host)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "this agent token acts for agent gw1 (gateway) only, not gw1 (host)"
    );
    let e = me.check_acts_for("agent-xyz", None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "this agent token acts for agent gw1 (gateway) only, not agent-xyz"
    );
}

#[test]
fn underlay_inside_a_host_network_and_free() {
    let w = world();
    check(&w, "192.168.201.21", NEW_HOST).unwrap();
    // Re-registering with its own address is fine: a gateway agent is
    // its agent and its gateway.
    check(
        &w,
        "192.168.201.20",
        UnderlayClaim {
            agent: Some("gw1"),
            gateway: Some("gw1"),
        },
    )
    .unwrap();
    check(
        &w,
        "192.168.201.11",
        UnderlayClaim {
            agent: Some("h1"),
            gateway: None,
        },
    )
    .unwrap();
    // /31 and /32 networks have no network or broadcast address.
    let mut w = world();
    w.hns.push(hn("p2p", "10.9.0.0/31"));
    w.hns.push(hn("one", "10.9.1.7/32"));
    check(&w, "10.9.0.0", NEW_HOST).unwrap();
    check(&w, "10.9.1.7", NEW_HOST).unwrap();
}

#[test]
fn underlay_outside_every_host_network() {
    let w = world();
    assert_eq!(
        refusal(check(&w, "10.1.2.3", NEW_HOST)),
        (
            "underlay_outside_host_networks",
            "underlay address 10.1.2.3 lies in no host network (registered: underlay 192.168.201.0/24): register its network first (vpcip host-network create)".into()
        )
    );
    let none = World {
        hns: vec![],
        ..world()
    };
    let (code, msg) = refusal(check(&none, "192.168.201.21", NEW_HOST));
    assert_eq!(code, "underlay_outside_host_networks");
    assert!(msg.contains("(none is registered)"), "{msg}");
    let e = check(&none, "192.168.201.21", NEW_HOST).unwrap_err();
    assert_eq!(e.class(), crate::ErrorClass::Invalid);
}

#[test]
fn underlay_in_an_eip_segment() {
    let w = world();
    assert_eq!(
        refusal(check(&w, "192.168.202.9", NEW_HOST)),
        (
            "underlay_in_eip_segment",
            "underlay address 192.168.202.9 lies in EIP segment 192.168.202.0/24, which the physical network routes to the gateways".into()
        )
    );
}

#[test]
fn underlay_never_a_reserved_address() {
    // Even inside a (careless) host network that holds them.
    let mut w = world();
    w.hns.push(hn("all", "0.0.0.0/0"));
    for (addr, reason) in [
        ("0.0.0.0", "in 0.0.0.0/8 (\"this network\")"),
        ("0.1.2.3", "in 0.0.0.0/8 (\"this network\")"),
        ("127.0.0.1", "a loopback address (127.0.0.0/8)"),
        ("127.9.9.9", "a loopback address (127.0.0.0/8)"),
        ("224.0.0.18", "a multicast address (224.0.0.0/4)"),
        ("239.255.255.250", "a multicast address (224.0.0.0/4)"),
        ("255.255.255.255", "the limited broadcast address"),
        ("240.0.0.1", "in the reserved block 240.0.0.0/4"),
    ] {
        assert_eq!(
            refusal(check(&w, addr, NEW_HOST)),
            (
                "underlay_reserved",
                format!("underlay address {addr} is {reason}: no node is reachable at it")
            ),
            "{addr}"
        );
    }
    let w = world();
    assert_eq!(
        refusal(check(&w, "192.168.201.255", NEW_HOST)).1,
        "underlay address 192.168.201.255 is the broadcast address of host network underlay (192.168.201.0/24): no node is reachable at it"
    );
    assert_eq!(
        refusal(check(&w, "192.168.201.0", NEW_HOST)).1,
        "underlay address 192.168.201.0 is the network address of host network underlay (192.168.201.0/24): no node is reachable at it"
    );
}

#[test]
fn underlay_unique_among_agents_and_gateways() {
    let mut w = world();
    // Another agent's address.
    let e = check(&w, "192.168.201.11", NEW_HOST).unwrap_err();
    assert_eq!(e.code(), "underlay_in_use");
    assert_eq!(e.class(), crate::ErrorClass::Conflict);
    assert_eq!(
        e.to_string(),
        "underlay address 192.168.201.11 is already held by agent h1 (host)"
    );
    // Another gateway's, by a new gateway agent.
    assert_eq!(
        refusal(check(
            &w,
            "192.168.201.20",
            UnderlayClaim {
                agent: Some("other-gw"),
                gateway: Some("other-gw"),
            },
        ))
        .1,
        "underlay address 192.168.201.20 is already held by agent gw1 (gateway)"
    );
    // A gateway the operator registered (no agent yet) holds its
    // address too; a host agent of the same name does not inherit it.
    w.gws.push(gw("gw2", "192.168.201.30"));
    assert_eq!(
        refusal(check(
            &w,
            "192.168.201.30",
            UnderlayClaim {
                agent: Some("gw2"),
                gateway: None,
            },
        ))
        .1,
        "underlay address 192.168.201.30 is already held by gateway gw2"
    );
    check(
        &w,
        "192.168.201.30",
        UnderlayClaim {
            agent: Some("gw2"),
            gateway: Some("gw2"),
        },
    )
    .unwrap();
}

#[test]
fn a_host_network_in_use_stays() {
    let w = world();
    let e = check_host_network_delete(&w.hns[0], &w.hns, &w.agents, &w.gws).unwrap_err();
    assert_eq!(e.code(), "resource_in_use");
    assert_eq!(e.class(), crate::ErrorClass::Conflict);
    assert_eq!(
        e.to_string(),
        "host network underlay (192.168.201.0/24) is in use: the underlay addresses of gateway gw1 (192.168.201.20), agent h1 (host, 192.168.201.11) lie in it and in no other host network"
    );
    // Another network holding them all: free to go.
    let mut both = w.hns.clone();
    both.push(hn("wide", "192.168.0.0/16"));
    check_host_network_delete(&w.hns[0], &both, &w.agents, &w.gws).unwrap();
    // An unused one.
    let spare = hn("spare", "10.0.0.0/24");
    check_host_network_delete(&spare, std::slice::from_ref(&spare), &w.agents, &w.gws).unwrap();
    // Only an agent in it.
    let e = check_host_network_delete(&w.hns[0], &w.hns, &w.agents[1..], &[]).unwrap_err();
    assert!(
        e.to_string()
            .contains("agent h1 (host, 192.168.201.11) lies in it"),
        "{e}"
    );
}

#[test]
fn the_last_gateway_of_bound_eips_stays_unless_forced() {
    let one = [gw("gw1", "192.168.201.20")];
    let e = check_gateway_delete(&one[0], &one, 3, false).unwrap_err();
    assert_eq!(e.code(), "last_gateway");
    assert_eq!(e.class(), crate::ErrorClass::Conflict);
    assert_eq!(
        e.to_string(),
        "gateway gw1 is the last gateway and 3 EIPs are bound: deleting it makes them unreachable; pass --force (API: force=true) to delete anyway"
    );
    assert!(
        check_gateway_delete(&one[0], &one, 1, false)
            .unwrap_err()
            .to_string()
            .contains("and 1 EIP is bound")
    );
    check_gateway_delete(&one[0], &one, 3, true).unwrap();
    check_gateway_delete(&one[0], &one, 0, false).unwrap();
    let two = [gw("gw1", "192.168.201.20"), gw("gw2", "192.168.201.21")];
    check_gateway_delete(&two[0], &two, 3, false).unwrap();
}
