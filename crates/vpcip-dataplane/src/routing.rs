//! Routes, policy rules and HTB classes as the agents plan them: what is
//! observed of vpcip's own (routes and rules of protocol 240, vpcip's HTB
//! qdiscs) and the typed changes that make it what is desired. Links are
//! named, not numbered: the kernel side resolves names when it applies.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// A route's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteType {
    Unicast,
    Unreachable,
    /// Any other type (blackhole, prohibit, …), by its number: vpcip makes
    /// none, but removes one of its own protocol that it finds.
    Other(u8),
}

/// One of vpcip's IPv4 routes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteSpec {
    pub table: u32,
    pub dst: Ipv4Net,
    pub via: Option<Ipv4Addr>,
    /// The link it leaves by, by name.
    pub dev: Option<String>,
    pub kind: RouteType,
}

/// `ip rule add fwmark MARK lookup TABLE priority PRIORITY proto 240`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FwRule {
    pub mark: u32,
    pub table: u32,
    pub priority: u32,
}

/// Changes of one set of objects: removals first, then additions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff<T> {
    pub remove: Vec<T>,
    pub add: Vec<T>,
}

impl<T> Diff<T> {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }
}

/// What turns `have` into `want`.
pub fn diff<T: Ord + Clone>(have: &BTreeSet<T>, want: &BTreeSet<T>) -> Diff<T> {
    Diff {
        remove: have.difference(want).cloned().collect(),
        add: want.difference(have).cloned().collect(),
    }
}

/// One change to the HTB classes of a link (`1:<minor>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassChange {
    /// Made, or its rate changed: bytes per second.
    Set {
        minor: u16,
        rate: u64,
    },
    Remove {
        minor: u16,
    },
}

/// What a link's HTB holds: None without vpcip's qdisc, else each class's
/// rate (bytes per second).
pub type Htb = Option<BTreeMap<u16, u64>>;

/// The changes that give a link vpcip's HTB qdisc with exactly the classes
/// `want`: whether the qdisc must be made, and the class changes.
pub fn plan_htb(have: &Htb, want: &BTreeMap<u16, u64>) -> (bool, Vec<ClassChange>) {
    let empty = BTreeMap::new();
    let (make, have) = match have {
        None => (true, &empty),
        Some(h) => (false, h),
    };
    let mut changes: Vec<ClassChange> = have
        .keys()
        .filter(|c| !want.contains_key(c))
        .map(|&minor| ClassChange::Remove { minor })
        .collect();
    changes.extend(
        want.iter()
            .filter(|(c, rate)| have.get(c) != Some(rate))
            .map(|(&minor, &rate)| ClassChange::Set { minor, rate }),
    );
    (make, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htb_plans_make_change_and_remove() {
        let want: BTreeMap<u16, u64> = [(1, 125_000), (2, 250_000)].into();
        let (make, c) = plan_htb(&None, &want);
        assert!(make);
        assert_eq!(c.len(), 2);
        let have: Htb = Some([(1, 125_000), (2, 1), (3, 5)].into());
        let (make, c) = plan_htb(&have, &want);
        assert!(!make);
        assert_eq!(
            c,
            vec![
                ClassChange::Remove { minor: 3 },
                ClassChange::Set {
                    minor: 2,
                    rate: 250_000
                }
            ]
        );
        assert_eq!(plan_htb(&Some(want.clone()), &want), (false, vec![]));
    }
}
