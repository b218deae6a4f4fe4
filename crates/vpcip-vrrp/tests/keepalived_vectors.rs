//! The codec against packets keepalived 2.2.7 really sent (captured by
//! `scripts/capture-vrrp` into tests/vectors/): every one decodes to what
//! its configuration says, carries keepalived's pseudo-header checksum, and
//! encodes back byte for byte.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::net::Ipv4Addr;

use vpcip_vrrp::packet::{Advert, ChecksumMode, DecodeError, GROUP};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

struct Vector {
    config: String,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    bytes: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    include_str!("vectors/keepalived-2.2.7-v3.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Vector {
                config: f[0].into(),
                src: f[1].parse().unwrap(),
                dst: f[2].parse().unwrap(),
                ttl: f[3].parse().unwrap(),
                bytes: hex(f[4]),
            }
        })
        .collect()
}

/// What each capture's keepalived.conf said: VRID, priority, advert_int in
/// centiseconds, addresses.
fn expected(config: &str) -> (u8, u8, u16, Vec<Ipv4Addr>) {
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    match config {
        "two-vips" => (51, 200, 50, vec![ip("192.0.2.100"), ip("192.0.2.101")]),
        "one-vip-1s" => (7, 100, 100, vec![ip("192.0.2.50")]),
        "fast-10ms" => (200, 254, 1, vec![ip("192.0.2.60")]),
        "low-prio" => (
            1,
            1,
            20,
            vec![ip("192.0.2.70"), ip("192.0.2.71"), ip("192.0.2.72")],
        ),
        other => panic!("no expectation for capture {other}"),
    }
}

#[test]
fn keepalived_packets_decode_and_encode_back_byte_for_byte() {
    let vs = vectors();
    assert!(vs.len() >= 8, "the vectors file holds {} packets", vs.len());
    let mut stops = 0;
    for v in &vs {
        assert_eq!(v.dst, GROUP);
        assert_eq!(v.ttl, 255, "VRRP is sent with TTL 255");
        let (adv, mode) = Advert::decode(&v.bytes, v.src, v.dst).unwrap();
        assert_eq!(
            mode,
            ChecksumMode::PseudoHeader,
            "keepalived 2.2.7's checksum"
        );
        let (vrid, prio, cs, addrs) = expected(&v.config);
        assert_eq!(adv.vrid, vrid, "{}", v.config);
        assert!(adv.priority == prio || adv.priority == 0, "{}", v.config);
        stops += usize::from(adv.priority == 0);
        assert_eq!(adv.max_advert_cs, cs, "{}", v.config);
        assert_eq!(adv.addrs, addrs, "{}", v.config);
        assert_eq!(
            adv.encode(v.src, v.dst, ChecksumMode::PseudoHeader),
            v.bytes,
            "{}: our encoding differs from keepalived's",
            v.config
        );
    }
    assert!(
        stops >= 1,
        "a stopping master's priority-0 advert was captured"
    );
}

#[test]
fn the_other_checksum_is_accepted_and_garbage_is_refused() {
    let v = &vectors()[0];
    let (adv, _) = Advert::decode(&v.bytes, v.src, v.dst).unwrap();
    let other = adv.encode(v.src, v.dst, ChecksumMode::MessageOnly);
    assert_ne!(other, v.bytes);
    assert_eq!(
        Advert::decode(&other, v.src, v.dst).unwrap(),
        (adv.clone(), ChecksumMode::MessageOnly)
    );
    let mut bad = v.bytes.clone();
    bad[2] ^= 1;
    assert!(matches!(
        Advert::decode(&bad, v.src, v.dst),
        Err(DecodeError::Checksum { .. })
    ));
    // A wrong source address breaks the pseudo-header sum (but not the
    // message-only one, which the speaker would then report).
    assert!(Advert::decode(&v.bytes, "192.0.2.99".parse().unwrap(), v.dst).is_err());
    assert_eq!(
        Advert::decode(&v.bytes[..5], v.src, v.dst),
        Err(DecodeError::Short(5))
    );
    let mut v2 = v.bytes.clone();
    v2[0] = 0x21;
    assert_eq!(
        Advert::decode(&v2, v.src, v.dst),
        Err(DecodeError::Version(2))
    );
}
