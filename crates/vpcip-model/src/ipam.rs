//! IPAM arithmetic: allocation ranges and the free-range set that makes an
//! allocation cost O(log n) whatever the number of taken addresses.
//!
//! The store keeps the same free ranges as rows (`ip_free_ranges`) and applies
//! the [`Take`] and [`Give`] plans computed here, so what is property-tested
//! below is exactly what the database does.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

use crate::error::RuleError;

/// An inclusive range of IPv4 addresses as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrRange {
    pub first: u32,
    pub last: u32,
}

impl AddrRange {
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Self {
        AddrRange {
            first: u32::from(first),
            last: u32::from(last),
        }
    }

    pub fn contains(&self, addr: u32) -> bool {
        self.first <= addr && addr <= self.last
    }

    pub fn len(&self) -> u64 {
        u64::from(self.last) - u64::from(self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn start(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first)
    }

    pub fn end(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last)
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start(), self.end())
    }
}

impl FromStr for AddrRange {
    type Err = RuleError;

    /// Parses `192.168.202.1-192.168.202.254` (the vendor manuals' notation).
    fn from_str(s: &str) -> Result<Self, RuleError> {
        let (a, b) = s.split_once('-').ok_or_else(|| {
            RuleError::invalid("range", format!("{s:?} is not of the form FIRST-LAST"))
        })?;
        let parse = |t: &str| {
            t.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| RuleError::invalid("range", format!("{t:?} is not an IPv4 address")))
        };
        let (first, last) = (parse(a)?, parse(b)?);
        if u32::from(first) > u32::from(last) {
            return Err(RuleError::InvalidRange {
                start: first,
                end: last,
                reason: "the first address is above the last".into(),
            });
        }
        Ok(AddrRange::new(first, last))
    }
}

/// The addresses of `net` a host may use: all but the network and broadcast
/// addresses (for /31 and /32 every address is usable, RFC 3021).
pub fn usable(net: &Ipv4Net) -> AddrRange {
    let first = u32::from(net.network());
    let last = u32::from(net.broadcast());
    if net.prefix_len() >= 31 {
        AddrRange { first, last }
    } else {
        AddrRange {
            first: first + 1,
            last: last - 1,
        }
    }
}

/// The smallest network of prefix length `prefix_len` holding `addr`.
pub fn net_of(addr: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Net, RuleError> {
    Ipv4Net::new(addr, prefix_len)
        .map(|n| n.trunc())
        .map_err(|_| RuleError::invalid("prefix_len", format!("{prefix_len} is not 0..=32")))
}

pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// What taking one address does to the free range that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    pub addr: u32,
    /// The range the address came from (to be removed).
    pub from: AddrRange,
    /// What remains of it, below and above the address.
    pub below: Option<AddrRange>,
    pub above: Option<AddrRange>,
}

/// Plans taking `addr` out of the free range `from`, which must hold it.
pub fn take(from: AddrRange, addr: u32) -> Take {
    debug_assert!(from.contains(addr));
    Take {
        addr,
        from,
        below: (addr > from.first).then(|| AddrRange {
            first: from.first,
            last: addr - 1,
        }),
        above: (addr < from.last).then(|| AddrRange {
            first: addr + 1,
            last: from.last,
        }),
    }
}

/// What giving one address back does: the neighbouring free ranges it joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Give {
    /// Free ranges to remove (the neighbours that merge into `merged`).
    pub absorbed_below: Option<AddrRange>,
    pub absorbed_above: Option<AddrRange>,
    /// The free range to add.
    pub merged: AddrRange,
}

/// Plans giving `addr` back, given the free range ending just below it and
/// the one starting just above it, if any.
pub fn give(addr: u32, below: Option<AddrRange>, above: Option<AddrRange>) -> Give {
    let below = below.filter(|r| addr > 0 && r.last == addr - 1);
    let above = above.filter(|r| addr < u32::MAX && r.first == addr + 1);
    Give {
        absorbed_below: below,
        absorbed_above: above,
        merged: AddrRange {
            first: below.map_or(addr, |r| r.first),
            last: above.map_or(addr, |r| r.last),
        },
    }
}

/// An in-memory free-range set with the same plans as the store; used by the
/// property tests and the IPAM benchmark.
#[derive(Debug, Clone, Default)]
pub struct FreeRanges {
    /// first → last
    ranges: BTreeMap<u32, u32>,
}

impl FreeRanges {
    pub fn new(range: AddrRange) -> Self {
        let mut ranges = BTreeMap::new();
        ranges.insert(range.first, range.last);
        FreeRanges { ranges }
    }

    pub fn free_count(&self) -> u64 {
        self.ranges
            .iter()
            .map(|(&f, &l)| u64::from(l) - u64::from(f) + 1)
            .sum()
    }

    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    fn apply_take(&mut self, t: Take) -> u32 {
        self.ranges.remove(&t.from.first);
        for r in [t.below, t.above].into_iter().flatten() {
            self.ranges.insert(r.first, r.last);
        }
        t.addr
    }

    /// Takes the lowest free address.
    pub fn take_lowest(&mut self) -> Option<u32> {
        let (&first, &last) = self.ranges.iter().next()?;
        Some(self.apply_take(take(AddrRange { first, last }, first)))
    }

    /// Takes `addr`; false when it is not free.
    pub fn take_addr(&mut self, addr: u32) -> bool {
        match self.ranges.range(..=addr).next_back() {
            Some((&first, &last)) if last >= addr => {
                self.apply_take(take(AddrRange { first, last }, addr));
                true
            }
            _ => false,
        }
    }

    pub fn is_free(&self, addr: u32) -> bool {
        matches!(self.ranges.range(..=addr).next_back(), Some((_, &last)) if last >= addr)
    }

    /// Gives `addr` back; the caller guarantees it was taken.
    pub fn give_back(&mut self, addr: u32) {
        let below = addr
            .checked_sub(1)
            .and_then(|b| self.ranges.range(..=b).next_back())
            .map(|(&first, &last)| AddrRange { first, last });
        let above = addr.checked_add(1).and_then(|a| {
            self.ranges
                .get(&a)
                .map(|&last| AddrRange { first: a, last })
        });
        let g = give(addr, below, above);
        for r in [g.absorbed_below, g.absorbed_above].into_iter().flatten() {
            self.ranges.remove(&r.first);
        }
        self.ranges.insert(g.merged.first, g.merged.last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn parses_the_seeds_range() {
        let r: AddrRange = "192.168.202.1-192.168.202.254".parse().unwrap();
        assert_eq!(r.len(), 254);
        assert_eq!(r.to_string(), "192.168.202.1-192.168.202.254");
        let e = "192.168.202.9-192.168.202.1"
            .parse::<AddrRange>()
            .unwrap_err();
        assert_eq!(e.code(), "invalid_range");
        assert_eq!(
            e.to_string(),
            "allocation range 192.168.202.9-192.168.202.1 is invalid: the first address is above the last"
        );
        assert_eq!(
            "nope".parse::<AddrRange>().unwrap_err().code(),
            "invalid_argument"
        );
    }

    #[test]
    fn usable_excludes_network_and_broadcast() {
        let n: Ipv4Net = "192.168.202.0/24".parse().unwrap();
        assert_eq!(usable(&n).to_string(), "192.168.202.1-192.168.202.254");
        let n: Ipv4Net = "10.0.0.0/31".parse().unwrap();
        assert_eq!(usable(&n).len(), 2);
    }

    #[test]
    fn take_splits_and_give_merges() {
        let mut f = FreeRanges::new(AddrRange {
            first: 10,
            last: 20,
        });
        assert!(f.take_addr(15));
        assert_eq!(f.range_count(), 2);
        assert!(!f.take_addr(15));
        assert_eq!(f.take_lowest(), Some(10));
        f.give_back(15);
        assert_eq!(f.range_count(), 1);
        f.give_back(10);
        assert_eq!(f.range_count(), 1);
        assert_eq!(f.free_count(), 11);
    }

    #[test]
    fn exhaustion_is_none() {
        let mut f = FreeRanges::new(AddrRange { first: 1, last: 2 });
        assert_eq!(f.take_lowest(), Some(1));
        assert_eq!(f.take_lowest(), Some(2));
        assert_eq!(f.take_lowest(), None);
        f.give_back(2);
        assert_eq!(f.take_lowest(), Some(2));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Lowest,
        Addr(u32),
        Release(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Lowest),
            (0u32..70).prop_map(Op::Addr),
            any::<usize>().prop_map(Op::Release),
        ]
    }

    proptest! {
        /// Random allocate/release sequences never hand out an address twice,
        /// never hand out one outside the range, and the free set always
        /// equals the range minus what is taken.
        #[test]
        fn never_hands_out_twice(ops in proptest::collection::vec(op(), 1..400)) {
            let range = AddrRange { first: 5, last: 60 };
            let mut free = FreeRanges::new(range);
            let mut taken = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Lowest => {
                        if let Some(a) = free.take_lowest() {
                            prop_assert!(range.contains(a));
                            prop_assert!(taken.insert(a), "{a} handed out twice");
                        } else {
                            prop_assert_eq!(taken.len() as u64, range.len());
                        }
                    }
                    Op::Addr(a) => {
                        let ok = free.take_addr(a);
                        prop_assert_eq!(ok, range.contains(a) && !taken.contains(&a));
                        if ok { taken.insert(a); }
                    }
                    Op::Release(i) => {
                        if !taken.is_empty() {
                            let a = *taken.iter().nth(i % taken.len()).unwrap();
                            taken.remove(&a);
                            free.give_back(a);
                        }
                    }
                }
                prop_assert_eq!(free.free_count() + taken.len() as u64, range.len());
                for a in range.first..=range.last {
                    prop_assert_eq!(free.is_free(a), !taken.contains(&a));
                }
                // Ranges stay merged: no two free ranges touch.
                let v: Vec<_> = free.ranges.iter().collect();
                for w in v.windows(2) {
                    prop_assert!(*w[0].1 + 1 < *w[1].0);
                }
            }
        }
    }
}
