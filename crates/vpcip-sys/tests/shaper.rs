//! The HTB shaper against the kernel, in a namespace of its own (root).

#![allow(clippy::unwrap_used)] // tests panic on the unexpected, by design

use vpcip_sys::link::Net;
use vpcip_sys::netns::{create_named, delete_named, in_netns};
use vpcip_sys::shaper::ClassChange;

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = delete_named(&self.0);
    }
}

#[test]
fn classes_are_made_read_back_changed_and_removed() {
    let ns = Ns(format!("vpsh{}x", std::process::id()));
    let path = create_named(&ns.0).expect("namespaces need root (scripts/test runs as root)");
    in_netns(&path, || {
        let net = Net::open().unwrap();
        net.add_veth("sh0", "sh1").unwrap();
        let l = net.link("sh0").unwrap().unwrap();
        assert!(!net.has_htb(l.index).unwrap());
        net.add_htb(l.index).unwrap();
        assert!(net.has_htb(l.index).unwrap());
        // 1,000 classes in one go; 10 Mbit/s and 100 Gbit/s (over 32 bits
        // of bytes per second) among them.
        let changes: Vec<ClassChange> = (1..=1000u16)
            .map(|minor| ClassChange::Set {
                minor,
                rate: match minor {
                    1 => 12_500_000_000,
                    _ => 1_250_000 * u64::from(minor),
                },
            })
            .collect();
        net.htb_apply(l.index, &changes).unwrap();
        let have = net.htb_classes(l.index).unwrap();
        assert_eq!(have.len(), 1000);
        assert_eq!(have[&1].rate, 12_500_000_000);
        assert_eq!(have[&7].rate, 8_750_000);
        // Changed live, and removed.
        net.htb_apply(
            l.index,
            &[
                ClassChange::Set {
                    minor: 7,
                    rate: 125_000,
                },
                ClassChange::Remove { minor: 8 },
            ],
        )
        .unwrap();
        let have = net.htb_classes(l.index).unwrap();
        assert_eq!(have[&7].rate, 125_000);
        assert!(!have.contains_key(&8));
        assert_eq!(have.len(), 999);
        // Putting the qdisc back starts from nothing.
        net.add_htb(l.index).unwrap();
        assert!(net.htb_classes(l.index).unwrap().is_empty());
    })
    .unwrap();
}
