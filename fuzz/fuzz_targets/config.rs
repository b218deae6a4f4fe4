//! The server's configuration file (TOML, `vpcip_model::config`): never a
//! panic, unknown keys refused cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = vpcip_model::config::ServerConfig::parse(s) {
        // The allow-list's entries are checked one by one.
        let _ = c.isolation.services();
    }
});
