//! The EIP 1:1 NAT maps: EIP → private address (DNAT) and private address →
//! EIP (SNAT), one pair per VPC router, so private addresses are unique in
//! them. A plan touches only the entries that differ, map by map, so a
//! resync never disturbs what is already right.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Key → value of one map.
pub type NatMap = BTreeMap<Ipv4Addr, Ipv4Addr>;

/// What to change in one map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapChange {
    /// Elements to remove (as the kernel holds them).
    pub remove: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Elements to add.
    pub add: Vec<(Ipv4Addr, Ipv4Addr)>,
}

impl MapChange {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }
}

/// What to change in both maps, applied as one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatPlan {
    pub dnat: MapChange,
    pub snat: MapChange,
}

impl NatPlan {
    pub fn is_empty(&self) -> bool {
        self.dnat.is_empty() && self.snat.is_empty()
    }
}

/// Desired against actual for one map: a changed element is a removal and
/// an addition (the kernel refuses to overwrite one).
pub fn plan_map(desired: &NatMap, actual: &NatMap) -> MapChange {
    let mut change = MapChange::default();
    for (k, have) in actual {
        if desired.get(k) != Some(have) {
            change.remove.push((*k, *have));
        }
    }
    for (k, want) in desired {
        if actual.get(k) != Some(want) {
            change.add.push((*k, *want));
        }
    }
    change
}

/// The SNAT map that goes with a DNAT map.
pub fn snat_of(dnat: &NatMap) -> NatMap {
    dnat.iter().map(|(eip, private)| (*private, *eip)).collect()
}

/// The plan that takes the kernel's two maps to `desired` (EIP → private).
pub fn plan_nat(desired: &NatMap, actual_dnat: &NatMap, actual_snat: &NatMap) -> NatPlan {
    NatPlan {
        dnat: plan_map(desired, actual_dnat),
        snat: plan_map(&snat_of(desired), actual_snat),
    }
}

/// A map with a change applied: what a plan promises the kernel will hold.
pub fn apply(actual: &NatMap, change: &MapChange) -> NatMap {
    let mut out = actual.clone();
    for (k, _) in &change.remove {
        out.remove(k);
    }
    for (k, v) in &change.add {
        out.insert(*k, *v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, n)
    }

    #[test]
    fn only_differences_are_touched() {
        let desired: NatMap = [(ip(1), ip(101)), (ip(2), ip(102)), (ip(3), ip(103))].into();
        let actual: NatMap = [(ip(1), ip(101)), (ip(2), ip(199)), (ip(4), ip(104))].into();
        let c = plan_map(&desired, &actual);
        assert_eq!(c.remove, vec![(ip(2), ip(199)), (ip(4), ip(104))]);
        assert_eq!(c.add, vec![(ip(2), ip(102)), (ip(3), ip(103))]);
        assert!(plan_map(&desired, &desired).is_empty());
    }

    #[test]
    fn a_half_deleted_binding_is_repaired_on_its_own_side() {
        let desired: NatMap = [(ip(1), ip(101))].into();
        let p = plan_nat(&desired, &NatMap::new(), &snat_of(&desired));
        assert_eq!(p.dnat.add, vec![(ip(1), ip(101))]);
        assert!(p.snat.is_empty());
    }

    proptest! {
        #[test]
        fn applying_the_plan_converges(
            desired in proptest::collection::btree_map(0u8..40, 100u8..140, 0..30),
            actual in proptest::collection::btree_map(0u8..40, 100u8..140, 0..30),
        ) {
            let d: NatMap = desired.into_iter().map(|(a, b)| (ip(a), ip(b))).collect();
            let a: NatMap = actual.into_iter().map(|(a, b)| (ip(a), ip(b))).collect();
            let c = plan_map(&d, &a);
            prop_assert_eq!(apply(&a, &c), d.clone());
            // Nothing already right is removed.
            for (k, v) in &c.remove {
                prop_assert_ne!(d.get(k), Some(v));
            }
            prop_assert!(plan_map(&d, &apply(&a, &c)).is_empty());
        }
    }
}
