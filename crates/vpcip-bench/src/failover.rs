//! VIP failover: the gap a client sees when the VRRP master dies, for
//! keepalived and `vpcip vrrp` side by side, at 1 s, 100 ms and 10 ms
//! advertisement intervals, measured both on the subnet (a VM sending to the
//! VIP) and through the EIP bound to the VIP (the outside client), in the
//! lab's whole cloud. Each probe is a UDP request every 10 ms answered by
//! whichever VM holds the VIP; the gap is from the last answer of the dying
//! master to the first answer of the new one. "The master dies": its speaker
//! is killed with SIGKILL and its NIC goes down.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use vpcip_lab::cloud;
use vpcip_lab::{World, eventually};
use vpcip_model::*;
use vpcip_sys::netns::{in_netns, named};

const PORT: u16 = 7777;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Keepalived,
    Vpcip,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Keepalived => "keepalived",
            Kind::Vpcip => "vpcip vrrp",
        }
    }
}

/// A UDP responder in `ns` answering every datagram with `name`, for
/// `limit`.
fn responder(ns: String, name: String, limit: Duration) {
    std::thread::spawn(move || {
        let _ = in_netns(&named(&ns), move || {
            let Ok(s) = UdpSocket::bind(("0.0.0.0", PORT)) else {
                return;
            };
            let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
            let end = Instant::now() + limit;
            let mut buf = [0u8; 64];
            while Instant::now() < end {
                if let Ok((_, peer)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(name.as_bytes(), peer);
                }
            }
        });
    });
}

/// Probes `to` from `ns` every 10 ms until `until` answers (or `limit`
/// passes); returns each answer with its time.
fn probe(
    ns: String,
    to: SocketAddr,
    until: String,
    limit: Duration,
) -> std::thread::JoinHandle<Vec<(Instant, String)>> {
    std::thread::spawn(move || {
        in_netns(&named(&ns), move || {
            let mut out = Vec::new();
            let Ok(s) = UdpSocket::bind(("0.0.0.0", 0)) else {
                return out;
            };
            let _ = s.set_read_timeout(Some(Duration::from_millis(10)));
            let end = Instant::now() + limit;
            let mut buf = [0u8; 64];
            let mut seen_until = false;
            while Instant::now() < end && !seen_until {
                let sent = Instant::now();
                let _ = s.send_to(b"x", to);
                // Answers to this probe or late ones, for up to 10 ms.
                while let Ok((n, _)) = s.recv_from(&mut buf) {
                    let who = String::from_utf8_lossy(&buf[..n]).into_owned();
                    seen_until |= who == until;
                    out.push((Instant::now(), who));
                    if sent.elapsed() >= Duration::from_millis(10) {
                        break;
                    }
                }
                if let Some(rest) = Duration::from_millis(10).checked_sub(sent.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            out
        })
        .unwrap_or_default()
    })
}

/// The gap: from the last answer of `old` before `cut` to the first answer
/// of `new` after it.
fn gap(answers: &[(Instant, String)], cut: Instant, old: &str, new: &str) -> Option<Duration> {
    let last_old = answers
        .iter()
        .filter(|(t, w)| *t <= cut && w == old)
        .map(|(t, _)| *t)
        .max()
        .unwrap_or(cut);
    let first_new = answers
        .iter()
        .filter(|(t, w)| *t > cut && w == new)
        .map(|(t, _)| *t)
        .min()?;
    Some(first_new.duration_since(last_old))
}

struct Lab {
    w: World,
    url: String,
    exe: PathBuf,
    dir: PathBuf,
}

impl Lab {
    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        crate::vpcip_cli(&self.exe, &self.url, args)
    }

    /// Starts VM `vm`'s speaker; returns the PIDs to kill.
    fn speaker(
        &mut self,
        kind: Kind,
        vm: &str,
        vip: &str,
        nic: &str,
        cs: u16,
        run: usize,
    ) -> anyhow::Result<Vec<u32>> {
        // A directory per start: keepalived refuses to start over the PID
        // file of one killed before (still a zombie until the world ends).
        let dir = self
            .dir
            .join(format!("{vm}-{}-{cs}-{run}", kind.name().replace(' ', "-")));
        std::fs::create_dir_all(&dir)?;
        let cs_s = cs.to_string();
        let ns = self.w.ns(vm);
        match kind {
            Kind::Keepalived => {
                let conf = self.cli(&[
                    "vip",
                    "guest-config",
                    vip,
                    "--nic",
                    nic,
                    "--keepalived",
                    "--advert-int",
                    &cs_s,
                ])?;
                std::fs::write(dir.join("k.conf"), conf)?;
                let child = Command::new("ip")
                    .args(["netns", "exec", &ns, "keepalived", "-n", "-l", "-P", "-f"])
                    .arg(dir.join("k.conf"))
                    .arg("-p")
                    .arg(dir.join("k.pid"))
                    .arg("-r")
                    .arg(dir.join("v.pid"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("start keepalived")?;
                let pid = child.id();
                self.w.adopt(child);
                // Its VRRP child writes its PID file once it runs.
                let child_pid = dir.join("v.pid");
                eventually(Duration::from_secs(5), || child_pid.exists());
                let vrrp_pid = std::fs::read_to_string(&child_pid)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                Ok([Some(pid), vrrp_pid].into_iter().flatten().collect())
            }
            Kind::Vpcip => {
                let line = self.cli(&[
                    "vip",
                    "guest-config",
                    vip,
                    "--nic",
                    nic,
                    "--vrrp",
                    "--advert-int",
                    &cs_s,
                ])?;
                let words: Vec<&str> = line.split_whitespace().collect();
                let child = Command::new("ip")
                    .args(["netns", "exec", &ns])
                    .arg(&self.exe)
                    .args(&words[1..])
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("start vpcip vrrp")?;
                let pid = child.id();
                self.w.adopt(child);
                Ok(vec![pid])
            }
        }
    }
}

fn kill(pids: &[u32]) {
    for p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.cast_signed()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

pub async fn failover(runs: usize, adverts: &[u16], dir: &Path) -> anyhow::Result<()> {
    let crate::LabCloud { mut w, op, url, .. } = crate::lab_cloud("vpbf", "203.0.113.0/24").await?;
    let exe = std::env::current_exe()?.with_file_name("vpcip");
    crate::bench_world(&op, "203.0.113.0/24", "10.0.0.0/16", "10.0.1.0/24").await?;
    let subnet: Subnet = op.show("sw").await?;
    let mut nics = Vec::new();
    for (vm, host) in [
        ("a", cloud::HOSTS[0]),
        ("b", cloud::HOSTS[1]),
        ("c", cloud::HOSTS[1]),
    ] {
        let (_, nic) = crate::bench_vm(&mut w, &op, vm, host, vec![]).await?;
        nics.push(nic);
    }
    // The subnet client takes gratuitous ARP at once, as the routers do.
    w.exec("c", &["sysctl", "-qw", "net.ipv4.conf.eth0.arp_accept=1"]);
    w.exec("c", &["sysctl", "-qw", "net.ipv4.neigh.eth0.locktime=0"]);
    let vip: Vip = op
        .post(
            paths::VIPS,
            &CreateVip {
                name: "vip".into(),
                subnet: "sw".into(),
                ip: None,
                client_token: None,
            },
        )
        .await?;
    op.bind_vip_to(&vip.id, &[&nics[0].id, &nics[1].id]).await?;
    let eip = op.eip_for_vip(&vip.id, 100).await?;
    let total = Duration::from_secs(3600);
    responder(w.ns("a"), "a".into(), total);
    responder(w.ns("b"), "b".into(), total);
    let mut lab = Lab {
        w,
        url,
        exe,
        dir: dir.join("failover"),
    };
    let on_subnet = SocketAddr::new(vip.ip.into(), PORT);
    let via_eip = SocketAddr::new(eip.ip.into(), PORT);
    let (a_nic, b_nic) = (nics[0].id.clone(), nics[1].id.clone());
    let mut rows = Vec::new();
    for &cs in adverts {
        for kind in [Kind::Keepalived, Kind::Vpcip] {
            let mut subnet_gaps = Vec::new();
            let mut eip_gaps = Vec::new();
            for run in 0..runs {
                let pa = lab.speaker(kind, "a", &vip.id, &a_nic, cs, run)?;
                let pb = lab.speaker(kind, "b", &vip.id, &b_nic, cs, run)?;
                let (client, sub) = (lab.w.ns("client"), lab.w.ns("c"));
                let answered_by_a = |ns: &str, to| {
                    probe(ns.to_string(), to, "a".into(), Duration::from_millis(300))
                        .join()
                        .unwrap_or_default()
                        .iter()
                        .any(|(_, w)| w == "a")
                };
                if !eventually(Duration::from_secs(20), || {
                    answered_by_a(&sub, on_subnet) && answered_by_a(&client, via_eip)
                }) {
                    let seen = |ns: &str, to| {
                        probe(ns.to_string(), to, "-".into(), Duration::from_millis(200))
                            .join()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(_, w)| w)
                            .collect::<Vec<_>>()
                    };
                    bail!(
                        "{} at {cs} cs: a never became master (subnet answers {:?}, EIP answers {:?}; a: {}; b: {})",
                        kind.name(),
                        seen(&sub, on_subnet),
                        seen(&client, via_eip),
                        lab.w.exec("a", &["ip", "-br", "addr"]).trim(),
                        lab.w.exec("b", &["ip", "-br", "addr"]).trim()
                    );
                }
                // Settle: b has heard a few adverts.
                std::thread::sleep(
                    Duration::from_millis(300) + Duration::from_millis(30 * u64::from(cs)),
                );
                let limit = Duration::from_millis(2000 + 60 * u64::from(cs));
                let p_sub = probe(sub.clone(), on_subnet, "b".into(), limit);
                let p_eip = probe(client.clone(), via_eip, "b".into(), limit);
                // The master dies at a random point of its advertisement
                // cycle: otherwise the (deterministic) phase between its
                // last advert and the kill biases one speaker against the
                // other.
                let phase = u64::from(crate::rand_u32()) % (10 * u64::from(cs));
                std::thread::sleep(Duration::from_millis(100 + phase));
                let cut = Instant::now();
                kill(&pa);
                lab.w.exec("a", &["ip", "link", "set", "eth0", "down"]);
                let s = p_sub.join().unwrap_or_default();
                let e = p_eip.join().unwrap_or_default();
                match (gap(&s, cut, "a", "b"), gap(&e, cut, "a", "b")) {
                    (Some(gs), Some(ge)) => {
                        subnet_gaps.push(gs.as_secs_f64() * 1000.0);
                        eip_gaps.push(ge.as_secs_f64() * 1000.0);
                    }
                    other => bail!(
                        "{} at {cs} cs, run {run}: no failover seen ({other:?})",
                        kind.name()
                    ),
                }
                // Reset: b stops, a comes back, nobody holds the VIP.
                kill(&pb);
                std::thread::sleep(Duration::from_millis(200));
                let cidr = format!("{}/{}", vip.ip, subnet.cidr.prefix_len());
                for vm in ["a", "b"] {
                    let _ = lab
                        .w
                        .try_exec(vm, &["ip", "addr", "del", &cidr, "dev", "eth0"]);
                }
                lab.w.exec("a", &["ip", "link", "set", "eth0", "up"]);
                lab.w.exec(
                    "a",
                    &[
                        "ip",
                        "route",
                        "replace",
                        "default",
                        "via",
                        &subnet.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    ],
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            rows.push((kind, cs, subnet_gaps, eip_gaps));
        }
    }
    println!(
        "VIP failover gap (ms), median of {runs} runs, keepalived and vpcip vrrp side by side:"
    );
    for (kind, cs, s, e) in rows {
        let (ms, me) = (crate::median(s.clone()), crate::median(e.clone()));
        println!(
            "failover {:10} advert {:>5} ms  subnet {:8.1} ms  via EIP {:8.1} ms  (EIP adds {:+.1} ms)  runs subnet: {}  via EIP: {}",
            kind.name(),
            u32::from(cs) * 10,
            ms,
            me,
            me - ms,
            crate::fmt_runs(&s, 1),
            crate::fmt_runs(&e, 1)
        );
    }
    Ok(())
}
