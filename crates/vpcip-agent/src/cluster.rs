//! The gateway cluster, on one gateway node: a VRRP election per slot
//! among the gateways (unicast over the underlay, 50 ms adverts), won by
//! the slot's owner while it lives and is not drained. Every gateway holds
//! every VPC router with the same maps, so an election decides only where
//! traffic goes: the winner answers ARP for the slot's subnets' routers,
//! announces their EIPs, and when it wins, tells every host of those
//! subnets at once by a gratuitous ARP sent through VXLAN from its own
//! VTEP (the hosts learn the router's MAC there).
//!
//! The elections run on a thread of their own, so that a long reconcile
//! pass never delays an advert; they start after the agent's first pass
//! (a gateway takes traffic only with a data plane ready for it).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use vpcip_dataplane::gateway::Roles;
use vpcip_dataplane::links::router_mac;
use vpcip_model::desired::GatewayState;
use vpcip_vrrp::machine::{Action, Config, Machine, State};
use vpcip_vrrp::packet::{Advert, ChecksumMode, IPPROTO_VRRP, garp_frame, parse_ip};

/// VXLAN's UDP port.
const VXLAN_PORT: u16 = 4789;

/// One subnet a slot's winner announces itself in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpTarget {
    pub vni: u32,
    /// The subnet's router address.
    pub ip: Ipv4Addr,
    /// The hosts (and other gateways) of the subnet.
    pub vteps: Vec<Ipv4Addr>,
}

/// What the elections need of the desired state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    pub advert_cs: u16,
    pub peers: Vec<Ipv4Addr>,
    /// Slot → this gateway's priority.
    pub slots: BTreeMap<u8, u8>,
    /// Slot → its VPCs' subnets.
    pub garp: BTreeMap<u8, Vec<GarpTarget>>,
}

impl View {
    pub fn of(state: &GatewayState) -> View {
        let c = &state.cluster;
        let mut garp: BTreeMap<u8, Vec<GarpTarget>> = BTreeMap::new();
        for r in &state.routers {
            let targets = garp.entry(r.slot).or_default();
            for s in &r.subnets {
                if let Some(ip) = s.gateway {
                    targets.push(GarpTarget {
                        vni: s.l2.vni,
                        ip,
                        vteps: s.l2.vteps.clone(),
                    });
                }
            }
        }
        View {
            advert_cs: c.advert_cs.max(1),
            peers: c.peers.clone(),
            slots: c.slots.iter().map(|s| (s.vrid, s.priority)).collect(),
            garp,
        }
    }
}

#[derive(Default)]
struct Shared {
    view: Option<View>,
    states: BTreeMap<u8, State>,
    /// When the elections started (they settle after a master-down
    /// interval).
    started: Option<Instant>,
    /// What failed last (the socket), for the report.
    error: Option<String>,
}

/// The elections of one gateway node.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Mutex<Shared>>,
    /// Wakes the agent's loop when a role changed.
    pub changed: Arc<tokio::sync::Notify>,
}

impl Cluster {
    /// Starts the elections' thread on node `node`, whose VTEP (and VRRP)
    /// address is `underlay`; it waits for [`Cluster::update`].
    pub fn spawn(node: PathBuf, underlay: Ipv4Addr) -> Cluster {
        let c = Cluster {
            shared: Arc::default(),
            changed: Arc::new(tokio::sync::Notify::new()),
        };
        let run = c.clone();
        let spawned = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || run.elections(&node, underlay));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the gateway elections");
        }
        c
    }

    /// The desired state after a pass: the elections run on it.
    pub fn update(&self, state: &GatewayState) {
        let view = View::of(state);
        if let Ok(mut s) = self.shared.lock() {
            s.view = Some(view);
        }
    }

    /// Who carries what, once the elections have settled (None before:
    /// what depends on them stays as it is).
    pub fn roles(&self) -> Option<Roles> {
        let s = self.shared.lock().ok()?;
        let view = s.view.as_ref()?;
        let settle = Duration::from_millis(u64::from(view.advert_cs) * 10 * 4);
        if s.started.is_none_or(|t| t.elapsed() < settle) {
            return None;
        }
        let mut roles = Roles::default();
        for (slot, state) in &s.states {
            match state {
                State::Master => roles.master.insert(*slot),
                State::Backup => roles.backup.insert(*slot),
                State::Initialize => false,
            };
        }
        Some(roles)
    }

    /// The slots this gateway carries now.
    pub fn carrying(&self) -> Vec<u8> {
        self.shared.lock().map_or_else(
            |_| vec![],
            |s| {
                s.states
                    .iter()
                    .filter(|(_, st)| **st == State::Master)
                    .map(|(v, _)| *v)
                    .collect()
            },
        )
    }

    /// Why the elections do not run, if they do not.
    pub fn error(&self) -> Option<String> {
        self.shared.lock().ok().and_then(|s| s.error.clone())
    }

    fn set_error(&self, e: Option<String>) {
        if let Ok(mut s) = self.shared.lock() {
            s.error = e;
        }
    }

    fn elections(&self, node: &std::path::Path, underlay: Ipv4Addr) {
        loop {
            let opened = vpcip_sys::netns::in_netns(node, || sockets(underlay));
            let (vrrp, udp) = match opened {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    self.fail(&format!("open the gateway election sockets: {e}"));
                    continue;
                }
                Err(e) => {
                    self.fail(&format!("enter the node's namespace: {e}"));
                    continue;
                }
            };
            self.set_error(None);
            if let Err(e) = self.run(&vrrp, &udp, underlay) {
                self.fail(&format!("gateway elections: {e}"));
            }
        }
    }

    fn fail(&self, e: &str) {
        // Said once while it lasts (the agent's report carries it to
        // `vpcip status` all along); the retries every second at debug.
        let repeated = self
            .shared
            .lock()
            .ok()
            .is_some_and(|s| s.error.as_deref() == Some(e));
        if repeated {
            tracing::debug!(error = e, "the gateway elections are still stopped");
        } else {
            tracing::warn!(
                error = e,
                "the gateway elections stopped; trying again every second"
            );
        }
        self.set_error(Some(e.to_string()));
        if let Ok(mut s) = self.shared.lock() {
            s.states.clear();
            s.started = None;
        }
        self.changed.notify_one();
        std::thread::sleep(Duration::from_secs(1));
    }

    fn run(&self, vrrp: &Socket, udp: &UdpSocket, me: Ipv4Addr) -> std::io::Result<()> {
        let mut machines: BTreeMap<u8, Machine> = BTreeMap::new();
        let mut buf = [0u8; 1500];
        loop {
            let Some(view) = self.shared.lock().ok().and_then(|s| s.view.clone()) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let now = Instant::now();
            let mut acts: Vec<(u8, Action)> = Vec::new();
            // Slots gone, or whose priority changed (drained): the old
            // machine resigns (priority 0: the next in line takes over
            // at once), a new one starts.
            let stale: Vec<u8> = machines
                .iter()
                .filter(|(v, m)| view.slots.get(v) != Some(&m.config().priority))
                .map(|(v, _)| *v)
                .collect();
            for v in stale {
                if let Some(mut m) = machines.remove(&v) {
                    acts.extend(m.stop().into_iter().map(|a| (v, a)));
                }
            }
            for (&vrid, &priority) in &view.slots {
                if let std::collections::btree_map::Entry::Vacant(e) = machines.entry(vrid) {
                    let m = e.insert(Machine::new(Config {
                        vrid,
                        priority,
                        advert_cs: view.advert_cs,
                        preempt: true,
                        preempt_delay: Duration::ZERO,
                        addrs: vec![me],
                        primary_ip: me,
                    }));
                    acts.extend(m.start(now).into_iter().map(|a| (vrid, a)));
                }
            }
            if let Ok(mut s) = self.shared.lock()
                && s.started.is_none()
            {
                s.started = Some(now);
            }
            self.act(&machines, &view, acts, vrrp, udp, me)?;
            let wait = machines
                .values()
                .filter_map(Machine::deadline)
                .min()
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(100))
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            vrrp.set_read_timeout(Some(wait))?;
            let mut acts = Vec::new();
            match std::io::Read::read(&mut &*vrrp, &mut buf) {
                Ok(n) => {
                    if let Some((src, ttl, payload)) = parse_ip(&buf[..n]) {
                        // Only the other gateways, one hop away.
                        if ttl == 255
                            && view.peers.contains(&src)
                            && let Ok((adv, _)) = Advert::decode(payload, src, me)
                            && let Some(m) = machines.get_mut(&adv.vrid)
                        {
                            let vrid = adv.vrid;
                            acts.extend(
                                m.receive(Instant::now(), &adv, src)
                                    .into_iter()
                                    .map(|a| (vrid, a)),
                            );
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for (v, m) in &mut machines {
                acts.extend(m.tick(now).into_iter().map(|a| (*v, a)));
            }
            self.act(&machines, &view, acts, vrrp, udp, me)?;
        }
    }

    fn act(
        &self,
        machines: &BTreeMap<u8, Machine>,
        view: &View,
        acts: Vec<(u8, Action)>,
        vrrp: &Socket,
        udp: &UdpSocket,
        me: Ipv4Addr,
    ) -> std::io::Result<()> {
        let mut changed = false;
        for (vrid, a) in acts {
            match a {
                Action::Send { priority } => {
                    let advert = match machines.get(&vrid) {
                        Some(m) => m.advert(priority),
                        // A machine that resigned and is gone.
                        None => Advert {
                            vrid,
                            priority,
                            max_advert_cs: view.advert_cs,
                            addrs: vec![me],
                        },
                    };
                    for peer in &view.peers {
                        let msg = advert.encode(me, *peer, ChecksumMode::PseudoHeader);
                        let to = SockAddr::from(SocketAddrV4::new(*peer, 0));
                        if let Err(e) = vrrp.send_to(&msg, &to) {
                            // A peer's address unreachable is its problem.
                            tracing::debug!(%peer, error = %e, "advert not sent");
                        }
                    }
                }
                Action::Became(state) => {
                    tracing::info!(slot = vrid, state = state.as_str(), "gateway election");
                    if state == State::Master {
                        announce(udp, view.garp.get(&vrid).map_or(&[][..], |t| t));
                    }
                    if let Ok(mut s) = self.shared.lock() {
                        s.states.insert(vrid, state);
                    }
                    changed = true;
                }
                Action::TakeAddresses | Action::ReleaseAddresses => {}
            }
        }
        if changed {
            self.changed.notify_one();
        }
        Ok(())
    }
}

/// The VRRP socket (raw, unicast, TTL 255) and the VXLAN sender, in the
/// node's namespace.
fn sockets(underlay: Ipv4Addr) -> std::io::Result<(Socket, UdpSocket)> {
    let vrrp = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )?;
    vrrp.set_ttl_v4(255)?;
    vrrp.bind(&SockAddr::from(SocketAddrV4::new(underlay, 0)))?;
    let udp = UdpSocket::bind(SocketAddrV4::new(underlay, 0))?;
    Ok((vrrp, udp))
}

/// A frame in a VXLAN packet for `vni` (RFC 7348: flags with I set, the
/// VNI in the upper 24 bits of the second word).
pub fn vxlan_packet(vni: u32, frame: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + frame.len());
    p.extend_from_slice(&[0x08, 0, 0, 0]);
    p.extend_from_slice(&(vni << 8).to_be_bytes());
    p.extend_from_slice(frame);
    p
}

/// Tells every VTEP of each subnet that the router is here now: a
/// gratuitous ARP from the router's MAC, twice (one may be lost).
fn announce(udp: &UdpSocket, targets: &[GarpTarget]) {
    let mut sent = 0usize;
    for _ in 0..2 {
        for t in targets {
            let pkt = vxlan_packet(t.vni, &garp_frame(router_mac(t.vni), t.ip));
            let vteps: BTreeSet<&Ipv4Addr> = t.vteps.iter().collect();
            for v in vteps {
                match udp.send_to(&pkt, SocketAddrV4::new(*v, VXLAN_PORT)) {
                    Ok(_) => sent += 1,
                    Err(e) => tracing::debug!(vtep = %v, error = %e, "gratuitous ARP not sent"),
                }
            }
        }
    }
    tracing::debug!(sent, "gratuitous ARPs sent");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vxlan_packet_carries_the_vni_and_the_frame() {
        let f = garp_frame(router_mac(0x0a0b0c), Ipv4Addr::new(10, 0, 1, 1));
        let p = vxlan_packet(0x0a0b0c, &f);
        assert_eq!(&p[..8], &[0x08, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0]);
        assert_eq!(&p[8..14], &[0xff; 6], "broadcast");
        assert_eq!(&p[14..20], &router_mac(0x0a0b0c), "from the router's MAC");
        assert_eq!(&p[20..22], &[0x08, 0x06], "ARP");
        assert_eq!(&p[8 + 28..8 + 32], &[10, 0, 1, 1], "sender: the router");
        assert_eq!(&p[8 + 38..8 + 42], &[10, 0, 1, 1], "target: the router");
    }
}
