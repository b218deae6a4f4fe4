//! New TCP connections per second through the EIP NAT, with 1 and with N
//! EIPs bound: vpcip's nftables maps beside per-EIP iptables rules (legacy
//! flavour), each run in a fresh world of its own (client — router — VM).
//! NAT is consulted on a connection's first packet, so this is where the
//! number of EIPs could show. For the rules, the measured EIP's rule comes
//! last (the worst case for a linear walk).

use std::fmt::Write as _;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use vpcip_dataplane::nat::{MapChange, NatPlan};
use vpcip_lab::World;
use vpcip_sys::netns::{in_netns, named};
use vpcip_sys::nft::NatTable;

const EIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// The measured binding last, after `n - 1` others (10.128/9 → 10.1/16…,
/// inside the world only).
fn bindings(n: u32) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let mut v: Vec<(Ipv4Addr, Ipv4Addr)> = (1..n)
        .map(|i| {
            (
                Ipv4Addr::from(0x0a80_0000 + i),
                Ipv4Addr::from(0x0a01_0000 + i),
            )
        })
        .collect();
    v.push((EIP, VM));
    v
}

#[derive(Clone, Copy)]
enum Nat {
    Maps,
    IptablesRules,
}

fn program(w: &World, nat: Nat, n: u32, dir: &std::path::Path) -> anyhow::Result<()> {
    let pairs = bindings(n);
    match nat {
        Nat::Maps => {
            let plan = NatPlan {
                dnat: MapChange {
                    remove: vec![],
                    add: pairs.clone(),
                },
                snat: MapChange {
                    remove: vec![],
                    add: pairs.iter().map(|(e, p)| (*p, *e)).collect(),
                },
            };
            in_netns(&named(&w.ns("router")), move || -> anyhow::Result<()> {
                let mut t = NatTable::open()?;
                t.ensure()?;
                t.apply(&plan)?;
                Ok(())
            })??;
        }
        Nat::IptablesRules => {
            let mut f = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
            for (e, p) in &pairs {
                let _ = writeln!(f, "-A PREROUTING -d {e}/32 -j DNAT --to-destination {p}");
                let _ = writeln!(f, "-A POSTROUTING -s {p}/32 -j SNAT --to-source {e}");
            }
            f += "COMMIT\n";
            let path = dir.join("cps.rules");
            std::fs::write(&path, f)?;
            let ns = w.ns("router");
            let out = Command::new("ip")
                .args(["netns", "exec", &ns, "iptables-legacy-restore"])
                .arg(&path)
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// A server in the VM that accepts and closes, until `limit`.
pub(crate) fn accept_and_close(ns: &str, limit: Duration) -> std::thread::JoinHandle<u64> {
    let path = named(ns);
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        let listener = std::fs::File::open(&path)
            .ok()
            .and_then(|f| nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).ok())
            .and_then(|_| TcpListener::bind(("0.0.0.0", 8080)).ok());
        let Some(l) = listener else {
            let _ = tx.send(false);
            return 0;
        };
        let _ = l.set_nonblocking(true);
        let _ = tx.send(true);
        let deadline = Instant::now() + limit;
        let mut n = 0;
        while Instant::now() < deadline {
            match l.accept() {
                Ok((s, _)) => {
                    drop(s);
                    n += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        n
    });
    let _ = rx.recv();
    h
}

/// Connections per second from the client to the EIP over `secs`.
pub(crate) fn measure(w: &World, secs: f64) -> anyhow::Result<f64> {
    let to = SocketAddr::new(EIP.into(), 8080);
    let client = named(&w.ns("client"));
    let done = in_netns(&client, move || -> anyhow::Result<u64> {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut n = 0;
        let mut buf = [0u8; 16];
        while Instant::now() < deadline {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(1))?;
            let _ = s.read(&mut buf); // the server closes
            n += 1;
        }
        Ok(n)
    })??;
    Ok(done as f64 / secs)
}

fn one_run(nat: Nat, n: u32, dir: &std::path::Path) -> anyhow::Result<f64> {
    let mut w = World::new("vpc");
    vpcip_lab::client_router_vm(&mut w, "router", "203.0.113.0/24");
    program(&w, nat, n, dir)?;
    let _server = accept_and_close(&w.ns("vm"), Duration::from_secs(10));
    measure(&w, 0.2)?; // warm-up
    measure(&w, 2.0)
}

pub fn connections(n: u32, repeats: usize, dir: &std::path::Path) -> anyhow::Result<()> {
    let variants = [
        ("vpcip maps, 1 EIP", Nat::Maps, 1),
        ("vpcip maps, N EIPs", Nat::Maps, n),
        ("iptables rules, 1 EIP", Nat::IptablesRules, 1),
        ("iptables rules, N EIPs", Nat::IptablesRules, n),
    ];
    let mut results: Vec<Vec<f64>> = vec![vec![]; variants.len()];
    for _ in 0..repeats {
        for (i, (_, nat, count)) in variants.iter().enumerate() {
            results[i].push(one_run(*nat, *count, dir)?);
        }
    }
    let med: Vec<f64> = results.iter().map(|r| crate::median(r.clone())).collect();
    for (i, (name, _, count)) in variants.iter().enumerate() {
        println!(
            "nat new connections/s  {name:24} ({count:6} bound) {:8.0}  runs: {}",
            med[i],
            crate::fmt_runs(&results[i], 0)
        );
    }
    println!(
        "nat ratio N/1: vpcip maps {:.2}, iptables rules {:.2} (N = {n})",
        med[1] / med[0],
        med[3] / med[2]
    );
    Ok(())
}
