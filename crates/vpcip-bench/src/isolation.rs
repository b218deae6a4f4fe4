//! What the isolation guards cost on the data path, measured side by side
//! in fresh worlds of the same shape:
//!
//! ```text
//!  client ── gw (EIP NAT 203.0.113.1 → vm1; vx100 10.0.1.1) ══ VXLAN over ul ══ h1 (br100) ── vm1 10.0.1.2
//!                                                                             ══ h2 (br100) ── vm2 10.0.1.3
//! ```
//!
//! The guards are vpcip's own (`vpcip_sys::spoof` and `vpcip_sys::guard`,
//! as the agents program them): on h1 and h2 the port guards and the VTEP
//! check, on gw the VTEP check and the infrastructure guard. Variants:
//! no guards; guards with only the cloud's own ports and VTEPs; with 10,000
//! guarded ports on each host; with 1,000 VTEPs known on every node. New TCP
//! connections per second from the client through the EIP to vm1 (the
//! guards see each connection's packets in both directions, the VXLAN
//! check every encapsulated one), and TCP throughput vm1 → vm2 across the
//! hosts (iperf3).

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use vpcip_dataplane::isolation::{PortGuards, gateway_guard, host_guard, port_guards};
use vpcip_dataplane::nat::{MapChange, NatPlan};
use vpcip_lab::World;
use vpcip_model::desired::{
    GatewayState, HostPort, HostState, L2Domain, ROUTER_IFPREFIX, RouterSubnet, VpcRouter,
};
use vpcip_sys::guard::GuardRole;
use vpcip_sys::netns::{in_netns, named};
use vpcip_sys::nft::NatTable;

const VNI: u32 = 100;
const EIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const NODES: [(&str, &str); 3] = [
    ("gw", "192.0.2.2"),
    ("h1", "192.0.2.11"),
    ("h2", "192.0.2.12"),
];
const VMS: [(&str, &str, &str); 2] = [("vm1", "h1", "10.0.1.2"), ("vm2", "h2", "10.0.1.3")];

#[derive(Clone, Copy)]
struct Guards {
    /// Guarded ports on each host (the VM's own among them).
    ports: u32,
    /// VTEPs each node knows (the cloud's own among them).
    vteps: u32,
    /// Which guards: the hosts' port guards, every node's VTEP and
    /// infrastructure guard.
    ports_on: bool,
    vteps_on: bool,
}

impl Guards {
    const fn all(ports: u32, vteps: u32) -> Guards {
        Guards {
            ports,
            vteps,
            ports_on: true,
            vteps_on: true,
        }
    }
}

/// The world; `gro`: the underlay's links aggregate received packets, as
/// physical NICs do by default (veths do not unless told).
pub(crate) fn world(gro: bool) -> anyhow::Result<World> {
    let mut w = World::new("vbi");
    for n in ["client", "ul", "gw", "h1", "h2", "vm1", "vm2"] {
        w.add_node(n);
    }
    w.link(
        "client",
        "eth0",
        "198.51.100.10/24",
        "gw",
        "cl0",
        "198.51.100.1/24",
    );
    w.exec(
        "client",
        &["ip", "route", "add", "default", "via", "198.51.100.1"],
    );
    w.exec("ul", &["ip", "link", "add", "ul", "type", "bridge"]);
    w.exec("ul", &["ip", "link", "set", "ul", "up"]);
    for (node, ip) in NODES {
        let peer = w.ns(node);
        let port = format!("u-{node}");
        w.exec(
            "ul",
            &[
                "ip", "link", "add", &port, "type", "veth", "peer", "name", "phy0", "netns", &peer,
            ],
        );
        w.exec("ul", &["ip", "link", "set", &port, "master", "ul", "up"]);
        w.exec(
            node,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "phy0"],
        );
        w.exec(node, &["ip", "link", "set", "phy0", "up"]);
        if gro {
            w.exec(node, &["ethtool", "-K", "phy0", "gro", "on"]);
            w.exec("ul", &["ethtool", "-K", &port, "gro", "on"]);
        }
        let vni = VNI.to_string();
        w.exec(
            node,
            &[
                "ip", "link", "add", "vx100", "type", "vxlan", "id", &vni, "local", ip, "dstport",
                "4789",
            ],
        );
        for (other, oip) in NODES {
            if other != node {
                w.exec(
                    node,
                    &[
                        "bridge",
                        "fdb",
                        "append",
                        "00:00:00:00:00:00",
                        "dev",
                        "vx100",
                        "dst",
                        oip,
                    ],
                );
            }
        }
        w.exec(node, &["ip", "link", "set", "vx100", "up"]);
    }
    w.exec("gw", &["ip", "addr", "add", "10.0.1.1/24", "dev", "vx100"]);
    w.exec("gw", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (vm, host, ip) in VMS {
        let peer = w.ns(vm);
        w.exec(host, &["ip", "link", "add", "br100", "type", "bridge"]);
        w.exec(host, &["ip", "link", "set", "vx100", "master", "br100"]);
        w.exec(
            host,
            &[
                "ip", "link", "add", "t1", "type", "veth", "peer", "name", "eth0", "netns", &peer,
            ],
        );
        w.exec(host, &["ip", "link", "set", "t1", "master", "br100", "up"]);
        w.exec(host, &["ip", "link", "set", "br100", "up"]);
        w.exec(vm, &["ip", "link", "set", "eth0", "mtu", "1450"]);
        w.exec(
            vm,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        );
        w.exec(vm, &["ip", "link", "set", "eth0", "up"]);
        w.exec(vm, &["ip", "route", "add", "default", "via", "10.0.1.1"]);
        // The VM's port as the host agent makes it: no unknown unicast out
        // of it, the VM's MAC pinned to it.
        let mac = w.exec(vm, &["cat", "/sys/class/net/eth0/address"]);
        w.exec(
            host,
            &["bridge", "link", "set", "dev", "t1", "flood", "off"],
        );
        w.exec(
            host,
            &[
                "bridge",
                "fdb",
                "replace",
                mac.trim(),
                "dev",
                "t1",
                "master",
                "static",
                "sticky",
            ],
        );
    }
    // The EIP's NAT, as a router does it.
    let vm1: Ipv4Addr = VMS[0].2.parse()?;
    in_netns(&named(&w.ns("gw")), move || -> anyhow::Result<()> {
        let mut t = NatTable::open()?;
        t.ensure()?;
        t.apply(&NatPlan {
            dnat: MapChange {
                remove: vec![],
                add: vec![(EIP, vm1)],
            },
            snat: MapChange {
                remove: vec![],
                add: vec![(vm1, EIP)],
            },
        })?;
        Ok(())
    })??;
    Ok(w)
}

/// An L2 domain of the bench world.
fn domain(vni: u32, vteps: Vec<Ipv4Addr>) -> L2Domain {
    L2Domain {
        subnet_id: format!("subnet-{vni}"),
        vni,
        vteps,
    }
}

/// The guards `g` on every node: the desired states an agent would get for
/// this world (plus `g`'s made-up ports and VTEPs), planned and programmed
/// by the agents' own code.
fn guard(w: &World, g: Guards) -> anyhow::Result<()> {
    let node_ip = |n: &str| -> Ipv4Addr {
        NODES
            .iter()
            .find(|(m, _)| *m == n)
            .and_then(|(_, ip)| ip.parse().ok())
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    };
    for (node, _) in NODES {
        let others: Vec<Ipv4Addr> = NODES
            .iter()
            .filter(|(m, _)| *m != node)
            .map(|(m, _)| node_ip(m))
            .collect();
        // Made-up VTEPs in 198.18.0.0/15 (benchmark addresses), each in a
        // segment of its own.
        let mut domains = vec![domain(VNI, others.clone())];
        domains.extend(
            (0..g
                .vteps
                .saturating_sub(u32::try_from(others.len()).unwrap_or(u32::MAX)))
                .map(|i| domain(1000 + i, vec![Ipv4Addr::from(0xc612_0000 + i)])),
        );
        let is_gw = node == "gw";
        let (role, want, ports) = if is_gw {
            let subnets = domains
                .into_iter()
                .map(|l2| RouterSubnet {
                    l2,
                    cidr: "10.0.1.0/24".parse().unwrap_or_default(),
                    gateway: None,
                })
                .collect();
            let state = GatewayState {
                routers: vec![VpcRouter {
                    slot: 0,
                    vpc_id: "vpc-bench".into(),
                    index: 1,
                    subnets,
                    nat: vec![],
                    visible: vec![],
                    vips: vec![],
                }],
                infrastructure: vec!["192.0.2.0/24".parse()?],
                ..Default::default()
            };
            let role = GuardRole::Gateway {
                router_ifprefix: ROUTER_IFPREFIX,
            };
            (role, gateway_guard(&state), PortGuards::default())
        } else {
            let mut ports = Vec::new();
            if let Some((vm, _, ip)) = VMS.iter().find(|(_, h, _)| *h == node) {
                let mac = w.exec(vm, &["cat", "/sys/class/net/eth0/address"]);
                let port = |ifname: String, mac: String, ip: Ipv4Addr| HostPort {
                    nic_id: ifname.clone(),
                    ifname,
                    vni: VNI,
                    mac,
                    ips: vec![ip],
                    source_dest_check: true,
                    security_groups: vec![],
                    vrrp_peers: vec![],
                    zone: 0,
                    dhcp: None,
                };
                ports.push(port("t1".into(), mac.trim().to_string(), ip.parse()?));
                ports.extend((1..g.ports).map(|i| {
                    let b = i.to_be_bytes();
                    port(
                        format!("tf{i}"),
                        format!("fa:16:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3]),
                        Ipv4Addr::from(0x0a80_0000 + i),
                    )
                }));
            }
            let state = HostState {
                domains,
                ports,
                groups: vec![],
            };
            let ports = port_guards(&state, |vni| format!("vx{vni}"));
            (GuardRole::Host, host_guard(&state), ports)
        };
        in_netns(&named(&w.ns(node)), move || -> anyhow::Result<()> {
            let mut t = NatTable::open()?;
            if g.vteps_on {
                t.ensure_guard(role, &want)?;
                t.apply_guard(role, &want)?;
            }
            if g.ports_on && !is_gw {
                t.ensure_spoof(&ports)?;
                t.apply_spoof(&ports)?;
            }
            Ok(())
        })??;
    }
    Ok(())
}

/// Removes every guard from every node.
fn unguard(w: &World) {
    for (node, _) in NODES {
        let _ = w.try_exec(node, &["nft", "delete", "table", "bridge", "vpcip_spoof"]);
        let _ = w.try_exec(node, &["nft", "delete", "table", "ip", "vpcip_guard"]);
    }
}

/// Connections per second through the EIP in a fresh world with `g`.
fn cps_run(g: Option<Guards>) -> anyhow::Result<f64> {
    let w = world(false)?;
    if let Some(g) = g {
        guard(&w, g)?;
    }
    reachable(&w)?;
    let _server = crate::cps::accept_and_close(&w.ns("vm1"), Duration::from_secs(10));
    crate::cps::measure(&w, 0.2)?; // warm-up
    crate::cps::measure(&w, 2.0)
}

pub(crate) fn reachable(w: &World) -> anyhow::Result<()> {
    let ok = vpcip_lab::eventually(Duration::from_secs(10), || {
        w.try_exec("vm1", &["ping", "-c1", "-W1", "10.0.1.3"])
            .is_some()
            && w.try_exec("client", &["ping", "-c1", "-W1", &EIP.to_string()])
                .is_some()
    });
    anyhow::ensure!(ok, "the bench world does not forward");
    Ok(())
}

/// TCP throughput vm1 → vm2 (Gbit/s) in one world, the guards `g` put on
/// and taken off between runs (so that both sides of each ratio share the
/// world and the moment): (without, with) per repeat.
fn throughput_pairs(g: Guards, gro: bool, repeats: usize) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut w = world(gro)?;
    reachable(&w)?;
    let child = Command::new("ip")
        .args(["netns", "exec", &w.ns("vm2"), "iperf3", "-s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    w.adopt(child);
    std::thread::sleep(Duration::from_millis(300));
    let to: Ipv4Addr = VMS[1].2.parse()?;
    let _ = crate::shaping::iperf(&w, "vm1", to, 1)?; // warm-up
    let mut out = Vec::new();
    for _ in 0..repeats {
        unguard(&w);
        let off = crate::shaping::iperf(&w, "vm1", to, 2)?;
        guard(&w, g)?;
        let on = crate::shaping::iperf(&w, "vm1", to, 2)?;
        out.push((off, on));
    }
    Ok(out)
}

pub fn isolation(ports: u32, vteps: u32, repeats: usize) -> anyhow::Result<()> {
    let cps_variants: [(&str, Option<Guards>); 4] = [
        ("no guards", None),
        ("guards, 1 port, 3 VTEPs", Some(Guards::all(1, 2))),
        ("guards, N ports", Some(Guards::all(ports, 2))),
        ("guards, M VTEPs", Some(Guards::all(1, vteps))),
    ];
    let mut cps: Vec<Vec<f64>> = vec![vec![]; cps_variants.len()];
    for _ in 0..repeats {
        for (i, (_, g)) in cps_variants.iter().enumerate() {
            cps[i].push(cps_run(*g)?);
        }
    }
    let med = |v: &[f64]| crate::median(v.to_vec());
    for (i, (name, _)) in cps_variants.iter().enumerate() {
        println!(
            "isolation new connections/s via EIP, {name:26} {:7.0}  runs: {}",
            med(&cps[i]),
            crate::fmt_runs(&cps[i], 0),
        );
    }
    println!(
        "isolation cps ratios: N={ports} ports / 1 port {:.2}, M={vteps} VTEPs / 3 VTEPs {:.2}, guards / none {:.2}",
        med(&cps[2]) / med(&cps[1]),
        med(&cps[3]) / med(&cps[1]),
        med(&cps[1]) / med(&cps[0]),
    );
    let tput_variants: [(&str, Guards); 3] = [
        ("all guards (N ports, M VTEPs)", Guards::all(ports, vteps)),
        (
            "port guards only",
            Guards {
                vteps_on: false,
                ..Guards::all(ports, 2)
            },
        ),
        (
            "VTEP/infra guards only",
            Guards {
                ports_on: false,
                ..Guards::all(1, vteps)
            },
        ),
    ];
    for (gro, (name, g)) in tput_variants
        .iter()
        .map(|v| (false, v))
        .chain([(true, &tput_variants[0])])
    {
        let name = if gro {
            format!("{name}, underlay GRO")
        } else {
            name.to_string()
        };
        let pairs = throughput_pairs(*g, gro, repeats.max(3) * 2)?;
        let ratios: Vec<f64> = pairs.iter().map(|(off, on)| on / off).collect();
        let offs: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let ons: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        println!(
            "isolation vm→vm Gbit/s, {name:42} off {:5.2} on {:5.2}  ratio on/off {:.2}  (ratios: {})",
            med(&offs),
            med(&ons),
            med(&ratios),
            crate::fmt_runs(&ratios, 2),
        );
    }
    Ok(())
}
