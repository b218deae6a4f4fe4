//! Frames to and from a host's VM ports, for the services the host agent
//! answers itself (DHCP): packets an nftables rule copied to an
//! nfnetlink_log group ([`LogListener`]), and frames sent straight out of a
//! port ([`FrameSender`]).
//!
//! Neither costs the data path anything: the kernel copies only what the
//! `log` rule matched, and the sending socket is bound with protocol 0, so
//! it receives nothing (an `ETH_P_ALL` socket would see, and clone, every
//! frame of the port).

use std::collections::BTreeMap;
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    ConfigCmd, ConfigMode, PacketNla, Timeout, ULogMessage, config_request,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{Socket, constants::NETLINK_NETFILTER};

use crate::SysError;
use crate::netns::in_netns;

/// One packet a `log group` rule copied.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The interface it came in on (in the bridge family, the bridge's
    /// port).
    pub indev: u32,
    /// The frame's source MAC.
    pub src_mac: [u8; 6],
    /// The packet from its network header on.
    pub payload: Vec<u8>,
}

/// A listener on one nfnetlink_log group of a namespace.
pub struct LogListener {
    sock: Socket,
    buf: Vec<u8>,
    netns: PathBuf,
    names: BTreeMap<u32, String>,
}

impl LogListener {
    /// Listens on `group` in the namespace at `netns`: whole packets, each
    /// as soon as it is logged.
    pub fn open(netns: &Path, group: u16) -> Result<Self, SysError> {
        let sock = in_netns(netns, || -> Result<Socket, SysError> {
            let mut s = Socket::new(NETLINK_NETFILTER).map_err(SysError::io("open nflog"))?;
            s.bind_auto().map_err(SysError::io("bind nflog"))?;
            Ok(s)
        })??;
        let bind = config_request(
            NetfilterProtoFamily::Unspec,
            group,
            vec![
                ConfigCmd::Bind.into(),
                ConfigMode::new_packet(0xffff).into(),
                Timeout::new(0).into(),
                netlink_packet_netfilter::nflog::ConfigNla::QThresh(1),
            ],
        );
        let mut out = vec![0; bind.header.length as usize];
        bind.serialize(&mut out);
        sock.send(&out, 0).map_err(SysError::io("nflog bind"))?;
        let mut buf = vec![0; 65536];
        let n = sock
            .recv(&mut &mut buf[..], 0)
            .map_err(SysError::io("nflog bind answer"))?;
        let answer = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[..n])
            .map_err(|_| SysError::Parse("nflog bind answer"))?;
        if let NetlinkPayload::Error(e) = answer.payload
            && let Some(code) = e.code
        {
            return Err(SysError::Kernel {
                what: "nflog bind",
                errno: -code.get(),
            });
        }
        sock.set_rx_buf_sz(4usize << 20)
            .map_err(SysError::io("set nflog receive buffer"))?;
        Ok(LogListener {
            sock,
            buf,
            netns: netns.to_path_buf(),
            names: BTreeMap::new(),
        })
    }

    /// The packets of the next datagram (blocks until one comes).
    pub fn recv(&mut self) -> Result<Vec<Logged>, SysError> {
        let n = self
            .sock
            .recv(&mut &mut self.buf[..], 0)
            .map_err(SysError::io("nflog receive"))?;
        let mut out = Vec::new();
        let mut at = 0;
        while at < n {
            let Ok(msg) = NetlinkMessage::<NetfilterMessage>::deserialize(&self.buf[at..n]) else {
                break;
            };
            let len = msg.header.length as usize;
            if let NetlinkPayload::InnerMessage(NetfilterMessage {
                inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
                ..
            }) = &msg.payload
                && let Some(p) = logged(nlas)
            {
                out.push(p);
            }
            if len == 0 {
                break;
            }
            at += len.next_multiple_of(4);
        }
        Ok(out)
    }

    /// The name of interface `index` of the namespace (looked up again
    /// when unknown).
    pub fn ifname(&mut self, index: u32) -> Option<String> {
        if !self.names.contains_key(&index) {
            let names = in_netns(&self.netns, || {
                nix::net::if_::if_nameindex().map(|list| {
                    list.iter()
                        .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
                        .collect::<BTreeMap<u32, String>>()
                })
            });
            if let Ok(Ok(names)) = names {
                self.names = names;
            }
        }
        self.names.get(&index).cloned()
    }
}

fn logged(nlas: &[PacketNla]) -> Option<Logged> {
    let mut indev = None;
    let mut port = None;
    let mut src_mac = None;
    let mut payload = None;
    for nla in nlas {
        match nla {
            PacketNla::IfIndexInDev(i) => indev = Some(*i),
            // Bridge family: the input device is the bridge, the port is
            // the "physical" one.
            PacketNla::IfIndexPhysInDev(i) => port = Some(*i),
            // Ethernet: destination, source, type.
            PacketNla::HwHeader(h) => {
                src_mac = h.get(6..12).and_then(|m| <[u8; 6]>::try_from(m).ok())
            }
            PacketNla::Payload(p) => payload = Some(p.clone()),
            _ => {}
        }
    }
    Some(Logged {
        indev: port.or(indev)?,
        src_mac: src_mac?,
        payload: payload?,
    })
}

/// Sends whole Ethernet frames out of one interface.
pub struct FrameSender {
    tx: Box<dyn pnet_datalink::DataLinkSender>,
}

impl FrameSender {
    /// A sender on interface `ifname` of the namespace at `netns`.
    pub fn open(netns: &Path, ifname: &str) -> Result<Self, SysError> {
        let ifname = ifname.to_string();
        in_netns(netns, move || -> Result<Self, SysError> {
            let index = nix::net::if_::if_nametoindex(ifname.as_str())
                .map_err(|e| SysError::Io("find the port", std::io::Error::from(e)))?;
            // Protocol 0: bound to the port, it receives nothing.
            let sock = socket2::Socket::new(
                socket2::Domain::PACKET,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(0)),
            )
            .map_err(SysError::io("open a packet socket"))?;
            let iface = pnet_datalink::NetworkInterface {
                name: ifname.clone(),
                description: String::new(),
                index,
                mac: None,
                ips: vec![],
                flags: 0,
            };
            let config = pnet_datalink::Config {
                channel_type: pnet_datalink::ChannelType::Layer3(0),
                socket_fd: Some(sock.into_raw_fd()),
                write_timeout: Some(std::time::Duration::from_millis(100)),
                ..Default::default()
            };
            match pnet_datalink::channel(&iface, config)
                .map_err(SysError::io("bind to the port"))?
            {
                pnet_datalink::Channel::Ethernet(tx, _rx) => Ok(FrameSender { tx }),
                _ => Err(SysError::Parse("not an Ethernet channel")),
            }
        })?
    }

    /// Sends `frame` (from its Ethernet header on).
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SysError> {
        match self.tx.send_to(frame, None) {
            Some(r) => r.map_err(SysError::io("send a frame")),
            None => Err(SysError::Parse("frame larger than the send buffer")),
        }
    }
}
