//! Bearer tokens already looked up, so that a client's requests after its
//! first do not each cost the database a statement (on PostgreSQL a round
//! trip and the pool's check of the connection: about a sixth of an
//! allocate+bind's work there).
//!
//! A revocation empties every controller's cache: this one's when its
//! transaction commits, the others' when they hear its notification
//! (`vpcip_tokens`, sent in that transaction, so with the commit). While a
//! controller cannot be sure to hear them (its LISTEN connection lost, not
//! yet heard from again) it keeps nothing; and nothing is kept longer than
//! [`TokenCache::MAX_AGE`], a bound should a connection die unnoticed.
//! Only tokens that exist are kept (an unknown one is looked up each time:
//! no flood of made-up tokens grows the cache), at most
//! [`TokenCache::MAX_ENTRIES`] of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Scope;

#[derive(Debug)]
pub(crate) struct TokenCache {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Bumped by every emptying: a look-up that began before one does not
    /// keep what it read.
    generation: u64,
    /// Whether every revocation is heard (see the module's text).
    trusted: bool,
    /// Token hash → whom it acts for, and since when that is known.
    known: HashMap<String, (Scope, Instant)>,
}

impl TokenCache {
    pub const MAX_AGE: Duration = Duration::from_secs(5);
    pub const MAX_ENTRIES: usize = 10_000;

    pub fn new(trusted: bool) -> Self {
        TokenCache {
            inner: Mutex::new(Inner {
                generation: 0,
                trusted,
                known: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whom the token of `hash` acts for, if known and young enough.
    pub fn get(&self, hash: &str) -> Option<Scope> {
        let inner = self.lock();
        let (scope, at) = inner.known.get(hash)?;
        (at.elapsed() < Self::MAX_AGE).then(|| scope.clone())
    }

    /// The generation a look-up begins in, or None when nothing may be
    /// kept.
    pub fn generation(&self) -> Option<u64> {
        let inner = self.lock();
        inner.trusted.then_some(inner.generation)
    }

    /// Keeps what a look-up begun in `generation` found, unless the cache
    /// was emptied since.
    pub fn put(&self, generation: u64, hash: String, scope: Scope) {
        let mut inner = self.lock();
        if !inner.trusted || inner.generation != generation {
            return;
        }
        if inner.known.len() >= Self::MAX_ENTRIES {
            inner
                .known
                .retain(|_, (_, at)| at.elapsed() < Self::MAX_AGE);
            if inner.known.len() >= Self::MAX_ENTRIES {
                inner.known.clear();
            }
        }
        inner.known.insert(hash, (scope, Instant::now()));
    }

    /// Forgets every token (a revocation here or elsewhere).
    pub fn forget_all(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.known.clear();
    }

    /// Whether revocations elsewhere are heard: when not, everything is
    /// forgotten and nothing kept until they are again.
    pub fn set_trusted(&self, trusted: bool) {
        let mut inner = self.lock();
        if inner.trusted != trusted {
            inner.trusted = trusted;
            inner.generation += 1;
            inner.known.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> Scope {
        Scope::Tenant(name.into())
    }

    #[test]
    fn a_look_up_begun_before_an_emptying_keeps_nothing() {
        let c = TokenCache::new(true);
        let g = c.generation().unwrap();
        c.put(g, "h1".into(), t("a"));
        assert_eq!(c.get("h1"), Some(t("a")));
        let g = c.generation().unwrap();
        c.forget_all();
        assert_eq!(c.get("h1"), None);
        c.put(g, "h1".into(), t("a"));
        assert_eq!(c.get("h1"), None, "kept across a revocation");
    }

    #[test]
    fn nothing_is_kept_while_revocations_may_go_unheard() {
        let c = TokenCache::new(true);
        let g = c.generation().unwrap();
        c.put(g, "h1".into(), t("a"));
        c.set_trusted(false);
        assert_eq!(c.get("h1"), None);
        assert_eq!(c.generation(), None);
        c.put(g, "h2".into(), t("b"));
        assert_eq!(c.get("h2"), None);
        c.set_trusted(true);
        let g = c.generation().unwrap();
        c.put(g, "h2".into(), t("b"));
        assert_eq!(c.get("h2"), Some(t("b")));
    }

    #[test]
    fn the_cache_holds_a_bounded_number_of_tokens() {
        let c = TokenCache::new(true);
        let g = c.generation().unwrap();
        for i in 0..TokenCache::MAX_ENTRIES + 10 {
            c.put(g, format!("h{i}"), t("a"));
        }
        assert!(c.lock().known.len() <= TokenCache::MAX_ENTRIES);
        assert_eq!(
            c.get(&format!("h{}", TokenCache::MAX_ENTRIES + 9)),
            Some(t("a"))
        );
    }
}
