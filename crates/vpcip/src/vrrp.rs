//! `vpcip vrrp`: a VRRPv3 speaker for guests, interoperating with
//! keepalived. The state machine and codec are `vpcip-vrrp` (pure); here
//! are the sockets: VRRP over a raw IPv4 socket (protocol 112, TTL 255,
//! group 224.0.0.18), the VIPs added and removed over rtnetlink, gratuitous
//! ARP over a packet socket, notify hooks, and tracking.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ipnet::Ipv4Net;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use vpcip_sys::link::Net;
use vpcip_sys::netns::in_netns;
use vpcip_vrrp::machine::{Action, Config, Machine, State};
use vpcip_vrrp::packet::{Advert, ChecksumMode, GROUP, IPPROTO_VRRP, garp_frame, parse_ip};

use crate::cli::{Checksum, VrrpArgs};

/// Runs `f` with rtnetlink in this process's network namespace.
fn net<T: Send>(
    f: impl FnOnce(&Net) -> Result<T, vpcip_sys::SysError> + Send,
) -> anyhow::Result<T> {
    Ok(in_netns(Path::new("/proc/self/ns/net"), || {
        f(&Net::open()?)
    })??)
}

struct Iface {
    index: u32,
    mac: [u8; 6],
    primary: Ipv4Net,
}

fn iface(name: &str) -> anyhow::Result<Iface> {
    let (index, addrs) = net(|n| {
        let l = n
            .link(name)?
            .ok_or(vpcip_sys::SysError::Parse("no such interface"))?;
        Ok((l.index, n.addrs(l.index)?))
    })
    .with_context(|| format!("interface {name}"))?;
    let primary = *addrs
        .first()
        .with_context(|| format!("interface {name} has no IPv4 address"))?;
    let mac = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .and_then(|i| i.mac)
        .map(|m| m.octets())
        .with_context(|| format!("interface {name} has no MAC address"))?;
    Ok(Iface {
        index,
        mac,
        primary,
    })
}

fn vrrp_socket(ifname: &str, primary: Ipv4Addr) -> anyhow::Result<Socket> {
    let s = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )
    .context("open a raw VRRP socket (needs CAP_NET_RAW)")?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.join_multicast_v4(&GROUP, &primary)?;
    s.set_multicast_if_v4(&primary)?;
    s.set_multicast_ttl_v4(255)?;
    s.set_multicast_loop_v4(false)?;
    s.set_ttl_v4(255)?;
    Ok(s)
}

/// A packet socket on the interface, opened once, for gratuitous ARP.
fn garp_sender(ifname: &str) -> anyhow::Result<Box<dyn pnet_datalink::DataLinkSender>> {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == ifname)
        .with_context(|| format!("no interface {ifname}"))?;
    let config = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    match pnet_datalink::channel(&iface, config).context("open a packet socket")? {
        pnet_datalink::Channel::Ethernet(tx, _rx) => Ok(tx),
        _ => bail!("no Ethernet channel on {ifname}"),
    }
}

fn garp(
    tx: &mut dyn pnet_datalink::DataLinkSender,
    mac: [u8; 6],
    vips: &[Ipv4Net],
    count: u32,
) -> anyhow::Result<()> {
    for _ in 0..count {
        for v in vips {
            if let Some(r) = tx.send_to(&garp_frame(mac, v.addr()), None) {
                r.context("send gratuitous ARP")?;
            }
        }
    }
    Ok(())
}

/// keepalived's notify arguments: INSTANCE <name> <MASTER|BACKUP|FAULT> <priority>.
fn notify(cmd: &str, name: &str, state: &str, priority: u8) {
    let r = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{cmd} INSTANCE {name} {state} {priority}"))
        .status();
    if let Err(e) = r {
        tracing::warn!(error = %e, "notify hook failed");
    }
}

/// Whether the speaker's own interface and the tracked one are up (and
/// have carrier), and the tracked script succeeds. Like keepalived, a
/// speaker whose interface is down goes to FAULT: it cannot be heard, so it
/// must not keep the VIP.
fn healthy(args: &VrrpArgs) -> bool {
    let link_ok =
        |name: &str| net(|n| Ok(n.link(name)?.is_some_and(|l| l.up && l.carrier))).unwrap_or(false);
    for name in std::iter::once(&args.interface).chain(&args.track_interface) {
        if !link_ok(name) {
            return false;
        }
    }
    if let Some(script) = &args.track_script {
        let ok = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return false;
        }
    }
    true
}

pub fn run(args: VrrpArgs) -> anyhow::Result<()> {
    if args.vip.is_empty() {
        bail!("give at least one --vip");
    }
    if args.priority == 0 {
        bail!("--priority is 1 to 255 (0 is reserved for a stopping master)");
    }
    if !(1..=4095).contains(&args.advert_int) {
        bail!(
            "--advert-int is 1 to 4095 centiseconds, {} given",
            args.advert_int
        );
    }
    let ifc = iface(&args.interface)?;
    let sock = vrrp_socket(&args.interface, ifc.primary.addr())?;
    let mode = match args.checksum {
        Checksum::Pseudo => ChecksumMode::PseudoHeader,
        Checksum::Message => ChecksumMode::MessageOnly,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let mut m = Machine::new(Config {
        vrid: args.vrid,
        priority: args.priority,
        advert_cs: args.advert_int,
        preempt: !args.no_preempt,
        preempt_delay: Duration::from_secs(args.preempt_delay),
        addrs: args.vip.iter().map(|v| v.addr()).collect(),
        primary_ip: ifc.primary.addr(),
    });
    let name = args.name.clone();
    let dst = SockAddr::from(SocketAddrV4::new(GROUP, 0));
    // Opened once: taking over is then a netlink request and a few frames.
    // (This thread is in the guest's namespace and outside any runtime.)
    let rtnl = Net::open()?;
    let mut arp = garp_sender(&args.interface)?;
    let mut act = |m: &Machine, mut actions: Vec<Action>| -> anyhow::Result<()> {
        // The VIPs first, so that the new master answers as soon as anyone
        // hears of it.
        actions.sort_by_key(|a| !matches!(a, Action::TakeAddresses));
        for a in actions {
            match a {
                Action::Send { priority } => {
                    let bytes = m.advert(priority).encode(ifc.primary.addr(), GROUP, mode);
                    if let Err(e) = sock.send_to(&bytes, &dst) {
                        tracing::warn!(error = %e, "cannot send an advertisement");
                    }
                }
                Action::TakeAddresses => {
                    let have = rtnl.addrs(ifc.index)?;
                    for v in &args.vip {
                        if !have.contains(v) {
                            rtnl.add_addr(ifc.index, *v)?;
                        }
                    }
                    // A packet socket reports a link flap once, as ENETDOWN on
                    // its next send: try again, and never die of it.
                    if let Err(e) = garp(arp.as_mut(), ifc.mac, &args.vip, args.garp)
                        .or_else(|_| garp(arp.as_mut(), ifc.mac, &args.vip, args.garp))
                    {
                        tracing::warn!(error = %e, "cannot send gratuitous ARP");
                    }
                }
                Action::ReleaseAddresses => {
                    let have = rtnl.addrs(ifc.index)?;
                    for v in &args.vip {
                        if have.contains(v) {
                            rtnl.del_addr(ifc.index, *v)?;
                        }
                    }
                }
                Action::Became(s) => {
                    let label = match s {
                        State::Master => "MASTER",
                        State::Backup => "BACKUP",
                        State::Initialize => "FAULT",
                    };
                    tracing::info!(instance = %name, state = s.as_str(), "({name}) Entering {label} STATE");
                    println!("({name}) Entering {label} STATE");
                    if let Some(cmd) = &args.notify {
                        notify(cmd, &name, label, args.priority);
                    }
                }
            }
        }
        Ok(())
    };
    // A leftover VIP from an unclean stop is not ours until we are master.
    act(&m, vec![Action::ReleaseAddresses])?;
    let mut up = healthy(&args);
    if up {
        let acts = m.start(Instant::now());
        act(&m, acts)?;
    }
    let mut last_track = Instant::now();
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Tracking, checked every second.
        if now.duration_since(last_track) >= Duration::from_secs(1) {
            last_track = now;
            let ok = healthy(&args);
            if ok != up {
                up = ok;
                let acts = if ok { m.start(now) } else { m.stop() };
                act(&m, acts)?;
            }
        }
        let wait = m
            .deadline()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(200))
            .clamp(Duration::from_millis(1), Duration::from_millis(200));
        sock.set_read_timeout(Some(wait))?;
        match (&sock).read(&mut buf) {
            Ok(n) => {
                if let Some((src, ttl, payload)) = parse_ip(&buf[..n]) {
                    if ttl != 255 {
                        tracing::debug!(%src, ttl, "dropped a VRRP packet whose TTL is not 255");
                    } else {
                        match Advert::decode(payload, src, GROUP) {
                            Ok((adv, _)) => {
                                let acts = m.receive(Instant::now(), &adv, src);
                                act(&m, acts)?;
                            }
                            Err(e) => tracing::debug!(%src, error = %e, "dropped a VRRP packet"),
                        }
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("receive VRRP"),
        }
        let acts = m.tick(Instant::now());
        act(&m, acts)?;
    }
    let acts = m.stop();
    act(&m, acts)
}
