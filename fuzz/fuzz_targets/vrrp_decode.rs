//! The VRRPv3 decoder on arbitrary bytes from arbitrary sources: it never
//! panics, and whatever it accepts encodes back to a packet it accepts
//! again as the same advertisement.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use vpcip_vrrp::packet::{Advert, ChecksumMode};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let src = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
    let group = Ipv4Addr::new(224, 0, 0, 18);
    if let Ok((adv, _)) = Advert::decode(&data[4..], src, group) {
        for mode in [ChecksumMode::PseudoHeader, ChecksumMode::MessageOnly] {
            let bytes = adv.encode(src, group, mode);
            let (back, _) = Advert::decode(&bytes, src, group).expect("our own encoding");
            assert_eq!(back, adv);
        }
    }
});
