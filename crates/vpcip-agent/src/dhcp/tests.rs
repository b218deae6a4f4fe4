#![allow(clippy::unwrap_used)]

use super::*;
use vpcip_model::HostRoute;

const MAC: [u8; 6] = [0xfa, 0x16, 10, 0, 1, 5];

fn port(router: bool) -> PortLease {
    PortLease {
        mac: MAC,
        lease: DhcpLease {
            ip: "10.0.1.5".parse().unwrap(),
            prefix_len: 24,
            server: "10.0.1.1".parse().unwrap(),
            router: router.then(|| "10.0.1.1".parse().unwrap()),
            dns_servers: vec!["192.0.2.53".parse().unwrap()],
            routes: if router {
                vec![
                    HostRoute {
                        destination: "10.9.0.0/16".parse().unwrap(),
                        next_hop: "10.0.1.7".parse().unwrap(),
                    },
                    HostRoute {
                        destination: "0.0.0.0/0".parse().unwrap(),
                        next_hop: "10.0.1.1".parse().unwrap(),
                    },
                ]
            } else {
                vec![]
            },
            hostname: Some("web-1".into()),
            lease_seconds: 86_400,
        },
        mtu: 1450,
    }
}

/// A client's message as it leaves the guest: UDP 68 → 67 from
/// `src`, broadcast.
fn request(kind: MessageType, chaddr: [u8; 6], opts: Vec<DhcpOption>, ciaddr: Ipv4Addr) -> Vec<u8> {
    let mut m = Message::new_with_id(
        0x1234_5678,
        ciaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &chaddr,
    );
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o);
    }
    let mut payload = Vec::new();
    m.encode(&mut Encoder::new(&mut payload)).unwrap();
    let dst = if ciaddr.is_unspecified() {
        Ipv4Addr::BROADCAST
    } else {
        "10.0.1.1".parse().unwrap()
    };
    let b = PacketBuilder::ipv4(ciaddr.octets(), dst.octets(), 64).udp(68, 67);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

/// The reply's frame taken apart: destination MAC, destination IP, the
/// DHCP message.
fn parse(frame: &[u8]) -> ([u8; 6], Ipv4Addr, Message) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!("not Ethernet")
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!((udp.source_port(), udp.destination_port()), (67, 68));
    assert_eq!(
        ip.header().source_addr(),
        "10.0.1.1".parse::<Ipv4Addr>().unwrap()
    );
    (
        eth.destination(),
        ip.header().destination_addr(),
        Message::decode(&mut Decoder::new(udp.payload())).unwrap(),
    )
}

fn reply(
    kind: MessageType,
    chaddr: [u8; 6],
    opts: Vec<DhcpOption>,
    ciaddr: Ipv4Addr,
    p: &PortLease,
) -> Outcome {
    let packet = request(kind, chaddr, opts, ciaddr);
    answer(
        &Request {
            src_mac: chaddr,
            ip_packet: &packet,
        },
        p,
    )
}

#[test]
fn a_discover_gets_the_whole_lease() {
    let out = reply(
        MessageType::Discover,
        MAC,
        vec![],
        Ipv4Addr::UNSPECIFIED,
        &port(true),
    );
    let Outcome::Reply { kind, frame } = out else {
        panic!("{out:?}")
    };
    assert_eq!(kind, MessageType::Offer);
    let (mac, ip, m) = parse(&frame);
    // Unicast to the offered address at the NIC's MAC (no broadcast flag).
    assert_eq!((mac, ip), (MAC, "10.0.1.5".parse().unwrap()));
    assert_eq!(m.opcode(), Opcode::BootReply);
    assert_eq!(m.xid(), 0x1234_5678);
    assert_eq!(m.yiaddr(), "10.0.1.5".parse::<Ipv4Addr>().unwrap());
    let o = m.opts();
    assert_eq!(o.msg_type(), Some(MessageType::Offer));
    let get = |c| o.get(c).cloned();
    assert_eq!(
        get(OptionCode::SubnetMask),
        Some(DhcpOption::SubnetMask("255.255.255.0".parse().unwrap()))
    );
    assert_eq!(
        get(OptionCode::Router),
        Some(DhcpOption::Router(vec!["10.0.1.1".parse().unwrap()]))
    );
    assert_eq!(
        get(OptionCode::DomainNameServer),
        Some(DhcpOption::DomainNameServer(vec![
            "192.0.2.53".parse().unwrap()
        ]))
    );
    assert_eq!(
        get(OptionCode::InterfaceMtu),
        Some(DhcpOption::InterfaceMtu(1450))
    );
    assert_eq!(
        get(OptionCode::Hostname),
        Some(DhcpOption::Hostname("web-1".into()))
    );
    assert_eq!(
        get(OptionCode::AddressLeaseTime),
        Some(DhcpOption::AddressLeaseTime(86_400))
    );
    assert_eq!(get(OptionCode::Renewal), Some(DhcpOption::Renewal(43_200)));
    assert_eq!(
        get(OptionCode::ServerIdentifier),
        Some(DhcpOption::ServerIdentifier("10.0.1.1".parse().unwrap()))
    );
    let Some(DhcpOption::ClasslessStaticRoute(routes)) = get(OptionCode::ClasslessStaticRoute)
    else {
        panic!("no classless static routes")
    };
    assert_eq!(routes.len(), 2);
    assert!(routes.contains(&("0.0.0.0/0".parse().unwrap(), "10.0.1.1".parse().unwrap())));
}

#[test]
fn a_request_for_the_nics_address_is_acked_and_any_other_naked() {
    let p = port(true);
    let ok = reply(
        MessageType::Request,
        MAC,
        vec![
            DhcpOption::RequestedIpAddress("10.0.1.5".parse().unwrap()),
            DhcpOption::ServerIdentifier("10.0.1.1".parse().unwrap()),
        ],
        Ipv4Addr::UNSPECIFIED,
        &p,
    );
    assert!(
        matches!(
            ok,
            Outcome::Reply {
                kind: MessageType::Ack,
                ..
            }
        ),
        "{ok:?}"
    );
    // INIT-REBOOT with an address from elsewhere: NAK, broadcast.
    let Outcome::Reply { kind, frame } = reply(
        MessageType::Request,
        MAC,
        vec![DhcpOption::RequestedIpAddress("10.0.1.99".parse().unwrap())],
        Ipv4Addr::UNSPECIFIED,
        &p,
    ) else {
        panic!()
    };
    assert_eq!(kind, MessageType::Nak);
    let (mac, ip, m) = parse(&frame);
    assert_eq!((mac, ip), ([0xff; 6], Ipv4Addr::BROADCAST));
    assert!(m.yiaddr().is_unspecified());
    assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
    // Another server chosen: not ours to answer.
    let other = reply(
        MessageType::Request,
        MAC,
        vec![
            DhcpOption::RequestedIpAddress("10.0.1.5".parse().unwrap()),
            DhcpOption::ServerIdentifier("10.0.1.254".parse().unwrap()),
        ],
        Ipv4Addr::UNSPECIFIED,
        &p,
    );
    assert!(matches!(other, Outcome::Ignored(_)), "{other:?}");
}

#[test]
fn a_renewal_is_answered_at_the_clients_address() {
    let Outcome::Reply { kind, frame } = reply(
        MessageType::Request,
        MAC,
        vec![],
        "10.0.1.5".parse().unwrap(),
        &port(true),
    ) else {
        panic!()
    };
    assert_eq!(kind, MessageType::Ack);
    let (mac, ip, m) = parse(&frame);
    assert_eq!((mac, ip), (MAC, "10.0.1.5".parse().unwrap()));
    assert_eq!(m.ciaddr(), "10.0.1.5".parse::<Ipv4Addr>().unwrap());
    // Renewing an address that is not the NIC's: NAK.
    let nak = reply(
        MessageType::Request,
        MAC,
        vec![],
        "10.0.1.77".parse().unwrap(),
        &port(true),
    );
    assert!(
        matches!(
            nak,
            Outcome::Reply {
                kind: MessageType::Nak,
                ..
            }
        ),
        "{nak:?}"
    );
}

#[test]
fn a_secondary_nic_gets_no_default_route() {
    let Outcome::Reply { frame, .. } = reply(
        MessageType::Discover,
        MAC,
        vec![],
        Ipv4Addr::UNSPECIFIED,
        &port(false),
    ) else {
        panic!()
    };
    let (_, _, m) = parse(&frame);
    assert!(m.opts().get(OptionCode::Router).is_none());
    assert!(m.opts().get(OptionCode::ClasslessStaticRoute).is_none());
    assert!(m.opts().get(OptionCode::SubnetMask).is_some());
}

#[test]
fn only_the_nics_mac_is_answered() {
    let p = port(true);
    let stranger = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];
    // Another MAC in the frame and in chaddr.
    let out = reply(
        MessageType::Discover,
        stranger,
        vec![],
        Ipv4Addr::UNSPECIFIED,
        &p,
    );
    assert!(matches!(out, Outcome::Ignored(_)), "{out:?}");
    // The NIC's MAC in the frame, another in chaddr (a VM asking for a
    // lease in another's name).
    let packet = request(
        MessageType::Discover,
        stranger,
        vec![],
        Ipv4Addr::UNSPECIFIED,
    );
    let out = answer(
        &Request {
            src_mac: MAC,
            ip_packet: &packet,
        },
        &p,
    );
    assert!(matches!(out, Outcome::Ignored(_)), "{out:?}");
    // Release and garbage: nothing.
    let out = reply(
        MessageType::Release,
        MAC,
        vec![],
        "10.0.1.5".parse().unwrap(),
        &p,
    );
    assert!(matches!(out, Outcome::Ignored(_)), "{out:?}");
    for junk in [&b""[..], &[0x45; 40][..], &[0u8; 300][..]] {
        let out = answer(
            &Request {
                src_mac: MAC,
                ip_packet: junk,
            },
            &p,
        );
        assert!(matches!(out, Outcome::Ignored(_)), "{out:?}");
    }
}

#[test]
fn the_broadcast_flag_is_honoured() {
    let mut m = Message::new_with_id(
        7,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &MAC,
    );
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let mut payload = Vec::new();
    m.encode(&mut Encoder::new(&mut payload)).unwrap();
    let mut packet = Vec::new();
    PacketBuilder::ipv4([0; 4], [255; 4], 64)
        .udp(68, 67)
        .write(&mut packet, &payload)
        .unwrap();
    let Outcome::Reply { frame, .. } = answer(
        &Request {
            src_mac: MAC,
            ip_packet: &packet,
        },
        &port(true),
    ) else {
        panic!()
    };
    let (mac, ip, _) = parse(&frame);
    assert_eq!((mac, ip), ([0xff; 6], Ipv4Addr::BROADCAST));
}
