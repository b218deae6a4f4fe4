//! The filters' shapes: a group's rules, a host's desired state, and the
//! equivalent `iptables-legacy-restore` input.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use vpcip_model::desired::{HostPort, HostState, L2Domain};
use vpcip_model::filter::{FilterElement, GroupFilter, PROTO_ICMP, PROTO_TCP};

/// `n` rules of which the last lets the client's connections to vm1 in
/// (tcp 8080 from anywhere); the others are tcp ports 10000+ from made-up
/// /24s, as a group with many rules would hold.
fn elements(n: u32) -> Vec<FilterElement> {
    let mut out: Vec<FilterElement> = (1..n)
        .map(|i| {
            let port = u16::try_from(10_000 + i % 50_000).unwrap_or(u16::MAX);
            let net = Ipv4Addr::from(0x6440_0000 + (i << 8)); // 100.64/10
            FilterElement::new(
                (PROTO_TCP, PROTO_TCP),
                (port, port),
                format!("{net}/24").parse().unwrap_or_default(),
            )
        })
        .collect();
    out.push(FilterElement::new(
        (PROTO_TCP, PROTO_TCP),
        (8080, 8080),
        "0.0.0.0/0".parse().unwrap_or_default(),
    ));
    out.push(FilterElement::new(
        (PROTO_TCP, PROTO_TCP),
        (5201, 5201),
        "10.0.1.0/24".parse().unwrap_or_default(),
    ));
    // Ping, for the world's reachability check.
    out.push(FilterElement::new(
        (PROTO_ICMP, PROTO_ICMP),
        (0, 65535),
        "0.0.0.0/0".parse().unwrap_or_default(),
    ));
    vpcip_model::filter::disjoint(out.into_iter().collect())
}

/// A host's desired state: port `t1` (the real VM) in group `sg-vm` with
/// `rules` rules, and `nics - 1` made-up ports in groups of 20 rules (20
/// ports per group).
pub(super) fn host_state(rules: u32, nics: u32, vm_ip: &str, vm_mac: &str) -> HostState {
    let all = FilterElement::new(
        (0, 255),
        (0, 65535),
        "0.0.0.0/0".parse().unwrap_or_default(),
    );
    let port = |ifname: String, mac: String, ip: Ipv4Addr, group: String| HostPort {
        nic_id: ifname.clone(),
        ifname,
        vni: 100,
        mac,
        ips: vec![ip],
        source_dest_check: true,
        security_groups: vec![group],
        vrrp_peers: vec![],
        zone: 1,
        dhcp: None,
    };
    let mut ports = vec![port(
        "t1".into(),
        vm_mac.into(),
        vm_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
        "sg-vm".into(),
    )];
    let mut groups = vec![GroupFilter {
        id: "sg-vm".into(),
        ingress: elements(rules),
        egress: vec![all],
    }];
    let fake_groups = nics.saturating_sub(1).div_ceil(20);
    for g in 0..fake_groups {
        groups.push(GroupFilter {
            id: format!("sg-f{g}"),
            ingress: elements(20),
            egress: vec![all],
        });
    }
    ports.extend((1..nics).map(|i| {
        let [_, a, b, c] = i.to_be_bytes();
        port(
            format!("tf{i}"),
            format!("02:00:00:{a:02x}:{b:02x}:{c:02x}"),
            Ipv4Addr::from(0x0a80_0000 + i),
            format!("sg-f{}", (i - 1) / 20),
        )
    }));
    // The world's one domain (its bridge `br100`, its tunnel `vx100`).
    let domain = L2Domain {
        subnet_id: "subnet-100".into(),
        vni: 100,
        vteps: vec![],
    };
    HostState {
        domains: vec![domain],
        ports,
        groups,
    }
}

/// `iptables-legacy-restore` input: Neutron's shape, one jump per port
/// and direction in a shared chain (`t1` last), a chain per port with the
/// state check, the rules and a drop.
pub(super) fn iptables_script(rules: u32, nics: u32) -> String {
    let mut s = String::from("*filter\n:FORWARD ACCEPT [0:0]\n:sg-chain - [0:0]\n");
    let ports: Vec<String> = (1..nics)
        .map(|i| format!("tf{i}"))
        .chain(["t1".into()])
        .collect();
    for p in &ports {
        let _ = writeln!(s, ":i-{p} - [0:0]\n:o-{p} - [0:0]");
    }
    s.push_str("-A FORWARD -m physdev --physdev-is-bridged -j sg-chain\n");
    for p in &ports {
        let _ = writeln!(
            s,
            "-A sg-chain -m physdev --physdev-out {p} --physdev-is-bridged -j i-{p}\n-A sg-chain -m physdev --physdev-in {p} --physdev-is-bridged -j o-{p}"
        );
    }
    for p in &ports {
        let n = if p == "t1" { rules } else { 20 };
        let _ = writeln!(s, "-A i-{p} -m state --state RELATED,ESTABLISHED -j RETURN");
        for i in 1..n {
            let port = 10_000 + i % 50_000;
            let net = Ipv4Addr::from(0x6440_0000 + (i << 8));
            let _ = writeln!(s, "-A i-{p} -s {net}/24 -p tcp --dport {port} -j RETURN");
        }
        let _ = writeln!(s, "-A i-{p} -p tcp --dport 8080 -j RETURN");
        let _ = writeln!(s, "-A i-{p} -s 10.0.1.0/24 -p tcp --dport 5201 -j RETURN");
        let _ = writeln!(s, "-A i-{p} -p icmp -j RETURN");
        let _ = writeln!(s, "-A i-{p} -j DROP");
        let _ = writeln!(
            s,
            "-A o-{p} -m state --state RELATED,ESTABLISHED -j RETURN\n-A o-{p} -j RETURN"
        );
    }
    s.push_str("COMMIT\n");
    s
}
