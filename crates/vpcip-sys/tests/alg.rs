//! The ALG table against the kernel, in a namespace of its own (root):
//! what `nft` lists is the ruleset the module documents.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use vpcip_sys::netns::{create_named, delete_named, in_netns};
use vpcip_sys::nft::NatTable;

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = delete_named(&self.0);
    }
}

#[test]
fn helpers_are_attached_by_set_and_port() {
    let ns = Ns(format!("vpal{}x", std::process::id()));
    let path = create_named(&ns.0).expect("namespaces need root (scripts/test runs as root)");
    let eip: Ipv4Addr = "203.0.113.7".parse().unwrap();
    let private: Ipv4Addr = "10.0.1.7".parse().unwrap();
    in_netns(&path, || {
        let mut t = NatTable::open().unwrap();
        assert!(t.ensure_alg().unwrap());
        assert!(!t.ensure_alg().unwrap());
        let want = BTreeMap::from([("ftp".to_string(), BTreeSet::from([eip, private]))]);
        assert_eq!(t.apply_algs(&BTreeMap::new(), &want).unwrap(), 2);
        assert_eq!(t.read_algs().unwrap(), want);
        assert_eq!(t.apply_algs(&want, &want).unwrap(), 0);
    })
    .unwrap();
    let listed = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "nft",
            "list",
            "table",
            "ip",
            "vpcip_alg",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    for want in [
        "ct helper ftp {",
        "type \"ftp\" protocol tcp",
        "type \"sip\" protocol udp",
        "type \"Q.931\" protocol tcp",
        "elements = { 10.0.1.7, 203.0.113.7 }",
        "tcp dport 21 ip daddr @alg_ftp ct helper set \"ftp\"",
        "udp dport 5060 ip saddr @alg_sip ct helper set \"sip\"",
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
}
