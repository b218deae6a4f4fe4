//! DHCP for guests, in the whole cloud: real server, real agents, and a
//! real DHCP client (busybox's udhcpc, as small guest images run it) in
//! the VMs. A guest that knows only its MAC gets its address, mask,
//! router, DNS servers, MTU, host routes, hostname and lease; renews; a
//! secondary ENI gets its address without the default route; a rogue
//! server in one guest reaches no other, and no guest's request reaches
//! it.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use vpcip_lab::cloud;
use vpcip_lab::eventually;
use vpcip_model::desired;
use vpcip_model::*;

use common::*;

/// What the guest's udhcpc script records of each event, one line per
/// event: the event, then `key=value` for what udhcpc learnt.
const SCRIPT: &str = r#"#!/bin/sh
# udhcpc's hook: $1 is deconfig, bound, renew or nak.
case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    ip addr replace "$ip/$mask" dev "$interface"
    if [ -n "$router" ]; then
        ip route replace default via "${router%% *}" dev "$interface"
    fi
    set -- "$1" $staticroutes
    event="$1"; shift
    while [ $# -ge 2 ]; do
        [ "$1" != "0.0.0.0/0" ] && ip route replace "$1" via "$2" dev "$interface"
        shift 2
    done
    echo "$event ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu hostname=$hostname lease=$lease serverid=$serverid staticroutes=$staticroutes" >> "$LOG"
    ;;
*)
    echo "$1" >> "$LOG"
    ;;
esac
"#;

struct Guest {
    script: PathBuf,
    dir: PathBuf,
}

impl Guest {
    fn new(lab: &Lab) -> Guest {
        let dir = cloud::state_dir(&lab.w).join("dhcp");
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("udhcpc.sh");
        std::fs::write(&script, SCRIPT).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Guest { script, dir }
    }

    fn log(&self, vm: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{vm}-{ifname}.log"))
    }

    /// busybox's udhcpc in `vm` on `ifname`, recording into its log,
    /// asking for the MTU and classless routes too; `extra`: its mode.
    fn udhcpc(&self, lab: &Lab, vm: &str, ifname: &str, extra: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args([
            "netns",
            "exec",
            &lab.ns(vm),
            "busybox",
            "udhcpc",
            "-i",
            ifname,
        ])
        .args([
            "-f",
            "-t",
            "4",
            "-T",
            "1",
            "-O",
            "mtu",
            "-O",
            "staticroutes",
        ])
        .args(extra)
        .arg("-s")
        .arg(&self.script)
        .env("LOG", self.log(vm, ifname))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        c
    }

    /// udhcpc in `vm` on `ifname` until it holds a lease (or gives up
    /// after four tries a second apart); whether it got one.
    fn lease_once(&self, lab: &Lab, vm: &str, ifname: &str) -> bool {
        self.udhcpc(lab, vm, ifname, &["-q", "-n"])
            .status()
            .unwrap()
            .success()
    }

    /// udhcpc left running in `vm` on `ifname`: its PID.
    fn keep(&self, lab: &mut Lab, vm: &str, ifname: &str) -> (usize, i32) {
        let child = self.udhcpc(lab, vm, ifname, &[]).spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        (lab.w.adopt(child), pid)
    }

    /// The events recorded so far, each with what udhcpc learnt.
    fn events(&self, vm: &str, ifname: &str) -> Vec<(String, BTreeMap<String, String>)> {
        std::fs::read_to_string(self.log(vm, ifname))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let (event, rest) = l.split_once(' ').unwrap_or((l, ""));
                let mut kv = BTreeMap::new();
                // Values may hold spaces (lists): a key starts each field.
                let mut key: Option<String> = None;
                for word in rest.split(' ') {
                    match word.split_once('=') {
                        Some((k, v))
                            if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase()) =>
                        {
                            kv.insert(k.to_string(), v.to_string());
                            key = Some(k.to_string());
                        }
                        _ => {
                            if let Some(k) = &key {
                                let v = kv.get_mut(k).unwrap();
                                v.push(' ');
                                v.push_str(word);
                            }
                        }
                    }
                }
                (event.to_string(), kv)
            })
            .collect()
    }
}

/// A server on `host` whose VM is plugged as the hypervisor would: the
/// NIC with its MAC and the MTU of a plain Ethernet, no address.
async fn bare_vm(lab: &mut Lab, name: &str, subnet: &Subnet, host: &str) -> (Server, Nic) {
    let server: Server = lab
        .op
        .post(
            paths::SERVERS,
            &CreateServer {
                name: name.into(),
                subnet: subnet.id.clone(),
                host: Some(host.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let nic: Nic = lab.op.show(&server.nic_ids[0]).await.unwrap();
    lab.w.add_node(name);
    cloud::attach_nic(&mut lab.w, name, host, "eth0", &nic.id, &nic.mac);
    lab.w
        .exec(name, &["ip", "link", "set", "eth0", "mtu", "1500", "up"]);
    (server, nic)
}

fn udp_socket(lab: &Lab, vm: &str, port: u16) -> UdpSocket {
    vpcip_sys::netns::in_netns(&vpcip_sys::netns::named(&lab.ns(vm)), move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
        s.set_broadcast(true).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s
    })
    .unwrap()
}

fn heard(s: &UdpSocket) -> Option<String> {
    let mut buf = [0u8; 2048];
    s.recv_from(&mut buf)
        .ok()
        .map(|(n, from)| format!("{n} bytes from {from}"))
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

fn wait_event(
    g: &Guest,
    vm: &str,
    ifname: &str,
    n: usize,
) -> Vec<(String, BTreeMap<String, String>)> {
    assert!(
        eventually(Duration::from_secs(10), || g.events(vm, ifname).len() >= n),
        "udhcpc in {vm} recorded {:?}",
        g.events(vm, ifname)
    );
    g.events(vm, ifname)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_get_their_addresses_by_dhcp_and_rogues_are_dropped() {
    let mut lab = Lab::up_with(
        "vdh",
        "[dhcp]\ndns_servers = [\"192.0.2.53\"]\nlease_seconds = 600\n",
    )
    .await;
    let vpc = lab.vpc("v1", "10.0.0.0/16").await;
    let sa: Subnet = lab
        .op
        .create_subnet(&CreateSubnet {
            name: "v1-a".into(),
            vpc: Some(vpc.id.clone()),
            zone: Some("z1".into()),
            cidr: Some("10.0.1.0/24".parse().unwrap()),
            host_routes: vec!["10.9.0.0/16,10.0.1.7".parse().unwrap()],
            ..Default::default()
        })
        .await
        .unwrap()
        .subnet;
    let sb = lab.subnet(&vpc, "v1-b", "10.0.2.0/24").await;
    let g = Guest::new(&lab);
    assert!(
        std::process::Command::new("busybox")
            .arg("udhcpc")
            .arg("--help")
            .output()
            .is_ok(),
        "busybox is needed (.ci/run installs busybox-static)"
    );

    // A guest that knows only its MAC.
    let (server_a, a) = bare_vm(&mut lab, "a", &sa, "h1").await;
    let (_, b) = lab.vm("b", &sb, "h2").await;
    assert!(
        g.lease_once(&lab, "a", "eth0"),
        "{:?}",
        g.events("a", "eth0")
    );
    let events = g.events("a", "eth0");
    let (event, got) = events.iter().find(|(e, _)| e == "bound").unwrap();
    assert_eq!(event, "bound");
    assert_eq!(got["ip"], a.ip.to_string());
    assert_eq!(got["mask"], "24");
    assert_eq!(got["router"], "10.0.1.1");
    assert_eq!(got["serverid"], "10.0.1.1");
    assert_eq!(got["dns"], "192.0.2.53");
    assert_eq!(got["mtu"], "1450");
    assert_eq!(got["hostname"], server_a.name);
    assert_eq!(got["lease"], "600");
    assert_eq!(
        got["staticroutes"],
        "10.9.0.0/16 10.0.1.7 0.0.0.0/0 10.0.1.1"
    );
    let link = lab.w.exec("a", &["ip", "link", "show", "eth0"]);
    assert!(link.contains("mtu 1450"), "{link}");
    // The address works: another subnet on another host, full-size
    // packets that must not be fragmented, and the outside world.
    assert!(eventually(Duration::from_secs(10), || lab.pings("a", b.ip)));
    let full = lab.w.try_exec(
        "a",
        &[
            "ping",
            "-c",
            "2",
            "-W",
            "1",
            "-M",
            "do",
            "-s",
            "1422",
            &b.ip.to_string(),
        ],
    );
    assert!(
        full.is_some(),
        "full-size packets from a DHCP guest are lost"
    );
    assert!(lab.pings("a", CLIENT_IP));

    // Renewal: udhcpc kept running is told to renew (SIGUSR1); the subnet's
    // DNS servers changed meanwhile, and the renewal brings them.
    let (_, pid) = g.keep(&mut lab, "a", "eth0");
    let before = wait_event(&g, "a", "eth0", events.len() + 1).len();
    let _: Subnet = lab
        .op
        .patch(
            &paths::at(paths::SUBNET, &[&sa.id]),
            &UpdateSubnet {
                dns_servers: Some(vec!["198.51.100.53".parse().unwrap()]),
                host_routes: None,
            },
        )
        .await
        .unwrap();
    // (The host agent has the change within its next pass.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(pid, nix::sys::signal::Signal::SIGUSR1);
    let after = wait_event(&g, "a", "eth0", before + 1);
    let (event, got) = after.last().unwrap();
    assert_eq!(event, "renew", "{after:?}");
    assert_eq!(got["ip"], a.ip.to_string());
    assert_eq!(got["dns"], "198.51.100.53");

    // A secondary ENI gets its address, and no default route.
    let eni = lab.attached_eni("a-second", &sb, &server_a, &[]).await;
    cloud::attach_nic(&mut lab.w, "a", "h1", "eth1", &eni.id, &eni.mac);
    assert!(
        g.lease_once(&lab, "a", "eth1"),
        "{:?}",
        g.events("a", "eth1")
    );
    let (_, got) = g
        .events("a", "eth1")
        .into_iter()
        .find(|(e, _)| e == "bound")
        .unwrap();
    assert_eq!(got["ip"], eni.ip.to_string());
    assert_eq!(got["router"], "");
    assert_eq!(got["staticroutes"], "");
    let default = lab.w.exec("a", &["ip", "route", "show", "default"]);
    assert!(default.contains("via 10.0.1.1 dev eth0"), "{default}");
    assert!(!default.contains("eth1"), "{default}");

    // A rogue DHCP server in r (same subnet as v, same host and not):
    // what it sends from port 67 reaches no one, while the same from
    // another port does (the control); v's requests never reach it.
    let (_, _r) = lab.vm("r", &sa, "h1").await;
    let (_, _v) = bare_vm(&mut lab, "v", &sa, "h1").await;
    let (_, w_nic) = lab.vm("w", &sa, "h2").await;
    let rogue = udp_socket(&lab, "r", 67);
    let control = udp_socket(&lab, "r", 1067);
    let victim = udp_socket(&lab, "w", 68);
    let offer = [0x02u8; 300];
    // (Once both VMs' ports are plugged.)
    let mut uni = None;
    eventually(Duration::from_secs(10), || {
        control.send_to(&offer, (w_nic.ip, 68)).unwrap();
        uni = heard(&victim);
        uni.is_some()
    });
    control.send_to(&offer, (Ipv4Addr::BROADCAST, 68)).unwrap();
    let broad = heard(&victim);
    assert!(
        uni.is_some() && broad.is_some(),
        "the control did not reach w (unicast {uni:?}, broadcast {broad:?}): the test proves nothing"
    );
    while heard(&victim).is_some() {} // the control's repeats
    for to in [Ipv4Addr::BROADCAST, w_nic.ip] {
        rogue.send_to(&offer, (to, 68)).unwrap();
        assert_eq!(
            heard(&victim),
            None,
            "a VM's DHCP answer to {to} reached another"
        );
    }
    assert!(
        g.lease_once(&lab, "v", "eth0"),
        "{:?}",
        g.events("v", "eth0")
    );
    let (_, got) = g
        .events("v", "eth0")
        .into_iter()
        .find(|(e, _)| e == "bound")
        .unwrap();
    assert_eq!(got["serverid"], "10.0.1.1");
    assert_eq!(
        heard(&rogue),
        None,
        "a VM's DHCP request reached another VM"
    );
}

/// A hypervisor's tap, made as libvirt's `<interface type='ethernet'>`
/// makes it (the name `vpcip nic hypervisor-config` prints, the NIC's MAC
/// on the guest side, up): the host agent adopts it into the subnet, at
/// the overlay's MTU, guarded; when it goes, the NIC shows as not plugged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hypervisors_tap_is_adopted_and_forgotten() {
    let lab = Lab::up("vdt").await;
    let vpc = lab.vpc("v1", "10.0.0.0/16").await;
    let sa = lab.subnet(&vpc, "v1-a", "10.0.1.0/24").await;
    let server: Server = lab
        .op
        .post(
            paths::SERVERS,
            &CreateServer {
                name: "guest".into(),
                subnet: sa.id.clone(),
                host: Some("h1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let nic: Nic = lab.op.show(&server.nic_ids[0]).await.unwrap();
    // What the hypervisor is told.
    let out = cli(&lab, &["nic", "hypervisor-config", &nic.id, "--libvirt"]);
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    let port = desired::port_ifname(&nic.id);
    assert!(out.status.success(), "{xml}");
    assert!(xml.contains("<interface type='ethernet'>"), "{xml}");
    assert!(xml.contains(&format!("<target dev='{port}'/>")), "{xml}");
    assert!(
        xml.contains(&format!("<mac address='{}'/>", nic.mac)),
        "{xml}"
    );
    assert!(xml.contains("<mtu size='1450'/>"), "{xml}");
    let out = cli(&lab, &["nic", "hypervisor-config", &nic.id, "--qemu"]);
    let qemu = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        qemu.contains(&format!(
            "-netdev tap,id=n0,ifname={port},script=no,downscript=no"
        )) && qemu.contains(&format!("mac={}", nic.mac))
            && qemu.contains("host_mtu=1450"),
        "{qemu}"
    );

    let host = lab.ns("h1");
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(["-n", &host])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        ip(&["tuntap", "add", "dev", &port, "mode", "tap"])
            .status
            .success()
    );
    assert!(ip(&["link", "set", &port, "up"]).status.success());
    let adopted = || {
        let l = String::from_utf8_lossy(&ip(&["-d", "link", "show", &port]).stdout).into_owned();
        l.contains("mtu 1450") && l.contains(" master ")
    };
    assert!(
        eventually(Duration::from_secs(5), adopted),
        "{}",
        String::from_utf8_lossy(&ip(&["-d", "link", "show", &port]).stdout)
    );
    let shown = |lab: &Lab| {
        let out = cli(lab, &["nic", "show", &nic.id]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        eventually(Duration::from_secs(5), || shown(&lab)
            .contains(&format!("yes: h1's agent found {port}"))),
        "{}",
        shown(&lab)
    );
    // Guarded from the start: the port is among the guards' VM ports.
    let guards = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &host,
            "nft",
            "list",
            "set",
            "bridge",
            "vpcip_spoof",
            "ports",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&guards.stdout).contains(&port),
        "{}",
        String::from_utf8_lossy(&guards.stdout)
    );
    // The VM stops: its tap goes, and the NIC shows as not plugged.
    assert!(ip(&["link", "del", &port]).status.success());
    assert!(
        eventually(Duration::from_secs(5), || !shown(&lab)
            .contains("yes: h1's agent found")),
        "{}",
        shown(&lab)
    );
}
