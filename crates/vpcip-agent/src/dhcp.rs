//! The host agent's DHCP server: it answers the guests on its own ports,
//! as OVN's native DHCP does, with what the controller says each NIC is
//! (`HostPort::dhcp`). The port guards copy a VM's requests to the agent
//! (nfnetlink_log) and let them go no further; the answer goes straight
//! out of the port the request came in on. An answer is only for the MAC of
//! the NIC behind the port: a request from another MAC, for another
//! address or to another server gets none (or a NAK).
//!
//! [`answer`] is the protocol, pure; [`spawn`] the thread that listens and
//! sends.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use dhcproto::v4::{
    DhcpOption, DhcpOptions, Flags, HType, Message, MessageType, Opcode, OptionCode,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use vpcip_model::desired::DhcpLease;

use crate::metrics::{AgentMetrics, KindLabels};

/// What one port's requests are answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortLease {
    /// The NIC's MAC: the only one answered.
    pub mac: [u8; 6],
    pub lease: DhcpLease,
    /// The overlay's MTU on this host (option 26).
    pub mtu: u16,
}

/// What the server knows, by port name; the agent's loop replaces it after
/// each pass.
pub type Leases = Arc<RwLock<BTreeMap<String, PortLease>>>;

const SERVER_PORT: u16 = 67;
const CLIENT_PORT: u16 = 68;
const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// A request as the port guards copied it: the frame's source MAC and the
/// IP packet.
pub struct Request<'a> {
    pub src_mac: [u8; 6],
    pub ip_packet: &'a [u8],
}

/// What the server does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send this Ethernet frame out of the port.
    Reply { kind: MessageType, frame: Vec<u8> },
    /// Nothing to answer (not DHCP, not the port's MAC, a release, a
    /// request for another server), and why.
    Ignored(&'static str),
}

/// The answer to `req` from the port whose NIC is `port`.
pub fn answer(req: &Request<'_>, port: &PortLease) -> Outcome {
    use Outcome::Ignored;
    if req.src_mac != port.mac {
        return Ignored("the frame's source MAC is not the NIC's");
    }
    let Ok(packet) = SlicedPacket::from_ip(req.ip_packet) else {
        return Ignored("not an IPv4 packet");
    };
    let (Some(NetSlice::Ipv4(_)), Some(TransportSlice::Udp(udp))) =
        (&packet.net, &packet.transport)
    else {
        return Ignored("not UDP over IPv4");
    };
    if udp.destination_port() != SERVER_PORT {
        return Ignored("not to the DHCP server port");
    }
    let Ok(msg) = Message::decode(&mut Decoder::new(udp.payload())) else {
        return Ignored("not a DHCP message");
    };
    if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth {
        return Ignored("not an Ethernet BOOTREQUEST");
    }
    if msg.chaddr().get(..6) != Some(&port.mac[..]) {
        return Ignored("the client hardware address is not the NIC's");
    }
    let lease = &port.lease;
    let kind = match msg.opts().msg_type() {
        Some(MessageType::Discover) => MessageType::Offer,
        Some(MessageType::Request) => {
            match msg.opts().get(OptionCode::ServerIdentifier) {
                // SELECTING another server's offer: not ours to answer.
                Some(DhcpOption::ServerIdentifier(s)) if *s != lease.server => {
                    return Ignored("the client chose another server");
                }
                _ => {}
            }
            // SELECTING and INIT-REBOOT name the address; RENEWING and
            // REBINDING hold it in ciaddr.
            let wanted = match msg.opts().get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(ip)) => *ip,
                _ => msg.ciaddr(),
            };
            if wanted == lease.ip {
                MessageType::Ack
            } else {
                MessageType::Nak
            }
        }
        Some(MessageType::Inform) => MessageType::Ack,
        Some(MessageType::Release | MessageType::Decline) => {
            return Ignored("a release or decline: the address stays the NIC's");
        }
        _ => return Ignored("not a message a server answers"),
    };
    let inform = msg.opts().msg_type() == Some(MessageType::Inform);
    let reply = reply_message(&msg, kind, inform, port);
    let mut payload = Vec::new();
    if reply.encode(&mut Encoder::new(&mut payload)).is_err() {
        return Ignored("the answer does not encode");
    }
    // Where it goes (RFC 2131 4.1): to a client that has its address, at
    // that address; a NAK, or to a client that asked for broadcast, to
    // everyone on the port; otherwise to the offered address at the
    // client's MAC.
    let (dst_mac, dst_ip) = if kind == MessageType::Nak {
        (BROADCAST_MAC, Ipv4Addr::BROADCAST)
    } else if !msg.ciaddr().is_unspecified() {
        (port.mac, msg.ciaddr())
    } else if msg.flags().broadcast() {
        (BROADCAST_MAC, Ipv4Addr::BROADCAST)
    } else {
        (port.mac, lease.ip)
    };
    let src_mac = server_mac(lease.server);
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(lease.server.octets(), dst_ip.octets(), 64)
        .udp(SERVER_PORT, CLIENT_PORT);
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    if builder.write(&mut frame, &payload).is_err() {
        return Ignored("the answer does not fit a frame");
    }
    Outcome::Reply { kind, frame }
}

fn kind_name(kind: MessageType) -> &'static str {
    match kind {
        MessageType::Offer => "offer",
        MessageType::Ack => "ack",
        MessageType::Nak => "nak",
        _ => "other",
    }
}

/// The MAC the answers come from: a locally administered one made from the
/// server's (the subnet gateway's) address, as NICs' MACs are.
fn server_mac(server: Ipv4Addr) -> [u8; 6] {
    let o = server.octets();
    [0xfa, 0x16, o[0], o[1], o[2], o[3]]
}

fn reply_message(req: &Message, kind: MessageType, inform: bool, port: &PortLease) -> Message {
    let lease = &port.lease;
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_xid(req.xid())
        .set_flags(if req.flags().broadcast() {
            Flags::default().set_broadcast()
        } else {
            Flags::default()
        })
        .set_ciaddr(req.ciaddr())
        .set_giaddr(req.giaddr())
        .set_chaddr(&port.mac);
    let mut opts = DhcpOptions::default();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(lease.server));
    if kind == MessageType::Nak {
        m.set_opts(opts);
        return m;
    }
    if !inform {
        m.set_yiaddr(lease.ip);
        opts.insert(DhcpOption::AddressLeaseTime(lease.lease_seconds));
        opts.insert(DhcpOption::Renewal(lease.lease_seconds / 2));
        opts.insert(DhcpOption::Rebinding(lease.lease_seconds / 8 * 7));
    }
    let net = ipnet::Ipv4Net::new(lease.ip, lease.prefix_len).unwrap_or_default();
    opts.insert(DhcpOption::SubnetMask(net.netmask()));
    opts.insert(DhcpOption::BroadcastAddr(net.broadcast()));
    if let Some(r) = lease.router {
        opts.insert(DhcpOption::Router(vec![r]));
    }
    if !lease.dns_servers.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(lease.dns_servers.clone()));
    }
    if !lease.routes.is_empty() {
        opts.insert(DhcpOption::ClasslessStaticRoute(
            lease
                .routes
                .iter()
                .map(|r| (r.destination, r.next_hop))
                .collect(),
        ));
    }
    opts.insert(DhcpOption::InterfaceMtu(port.mtu));
    if let Some(h) = &lease.hostname {
        opts.insert(DhcpOption::Hostname(h.clone()));
    }
    m.set_opts(opts);
    m
}

/// Starts the DHCP server of the host whose namespace is `node`: a thread
/// that listens for the requests the port guards copy and answers them
/// from `leases`. A failure to listen is logged and retried every second.
pub fn spawn(node: PathBuf, leases: Leases, metrics: Arc<AgentMetrics>) {
    std::thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || serve(&node, &leases, &metrics))
        .map(drop)
        .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the DHCP server"));
}

fn serve(node: &std::path::Path, leases: &Leases, metrics: &AgentMetrics) {
    use vpcip_sys::frames::{FrameSender, LogListener};
    let group = vpcip_sys::spoof::DHCP_LOG_GROUP;
    let mut senders: BTreeMap<String, FrameSender> = BTreeMap::new();
    loop {
        let mut listener = match LogListener::open(node, group) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "DHCP: cannot listen; again in a second");
                std::thread::sleep(std::time::Duration::from_secs(1));
                continue;
            }
        };
        tracing::info!(group, "DHCP server listening");
        loop {
            let logged = match listener.recv() {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "DHCP: listening failed; starting again");
                    break;
                }
            };
            let arrived = std::time::Instant::now();
            for pkt in logged {
                let Some(port) = listener.ifname(pkt.indev) else {
                    continue;
                };
                let Some(lease) = leases.read().ok().and_then(|l| l.get(&port).cloned()) else {
                    continue;
                };
                let req = Request {
                    src_mac: pkt.src_mac,
                    ip_packet: &pkt.payload,
                };
                match answer(&req, &lease) {
                    Outcome::Ignored(why) => {
                        tracing::info!(port, why, "DHCP request not answered");
                    }
                    Outcome::Reply { kind, frame } => {
                        if !senders.contains_key(&port) {
                            match FrameSender::open(node, &port) {
                                Ok(s) => {
                                    senders.insert(port.clone(), s);
                                }
                                Err(e) => {
                                    tracing::warn!(port, error = %e, "DHCP: cannot send on the port");
                                    continue;
                                }
                            }
                        }
                        let sent = senders.get_mut(&port).map(|s| s.send(&frame));
                        if let Some(Err(e)) = sent {
                            // The port went, or came back as another link.
                            tracing::warn!(port, error = %e, "DHCP: answer not sent");
                            senders.remove(&port);
                        } else {
                            metrics
                                .dhcp_answer_seconds
                                .observe(arrived.elapsed().as_secs_f64());
                            metrics
                                .dhcp_answers
                                .get_or_create(&KindLabels {
                                    kind: kind_name(kind),
                                })
                                .inc();
                            tracing::info!(port, ?kind, ip = %lease.lease.ip, "DHCP answered");
                        }
                    }
                }
            }
            // Ports that are gone: their senders too.
            if let Ok(l) = leases.read() {
                senders.retain(|p, _| l.contains_key(p));
            }
        }
    }
}

#[cfg(test)]
mod tests;
