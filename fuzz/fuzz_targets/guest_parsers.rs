//! The parsers of what operators and tenants type: address ranges (the
//! seeds' `192.168.202.1-192.168.202.254`), LVS ports (`80/tcp`), NAT
//! helper names. Never a panic; what parses prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpcip_model::Alg;
use vpcip_model::guest::LvsPort;
use vpcip_model::ipam::AddrRange;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = s.parse::<AddrRange>() {
        assert_eq!(r.to_string().parse::<AddrRange>().ok(), Some(r));
        assert!(r.len() >= 1);
    }
    let _ = s.parse::<LvsPort>();
    if let Ok(a) = s.parse::<Alg>() {
        assert_eq!(a.as_str(), s);
    }
});
