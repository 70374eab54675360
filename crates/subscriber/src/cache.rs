//! The confirm cache: one slot per `jti`, shared by concurrent checks (single-flight)
//! and kept for a TTL once answered.
//!
//! A slot is an `Arc<OnceCell>`: the first check of a `jti` inserts it and runs the
//! authority call inside `get_or_init`; concurrent checks of the same `jti` find the
//! slot and wait on the same cell. If the first caller is cancelled, a waiter takes
//! over the call. Errors are shared with the waiters of that flight but not cached:
//! the slot is removed, so the next check asks again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::authority::{Authority, ConfirmQuery, Confirmation};
use crate::error::AuthorityError;
use crate::stats::{Counters, bump};

type Answer = (Result<Confirmation, AuthorityError>, Instant);

/// `behind` before any answer from the past arrived.
const NONE_BEHIND: u64 = u64::MAX;
/// Pauses between questions to an authority that answered from an older version.
const BEHIND_RETRY_FIRST: Duration = Duration::from_millis(5);
const BEHIND_RETRY_MAX: Duration = Duration::from_millis(200);

/// Asks until the answer is "revoked", carries no version, or was computed at
/// `replica_version` or later. An authority behind the replica has not applied a
/// delta the replica holds (the one that made the filter hit, maybe): its "not
/// revoked" proves nothing. Records the newest such version in `behind`.
async fn ask_until_current(
    authority: &dyn Authority,
    query: ConfirmQuery<'_>,
    replica_version: u64,
    behind: &AtomicU64,
    counters: &Counters,
) -> Result<Confirmation, AuthorityError> {
    let mut pause = BEHIND_RETRY_FIRST;
    loop {
        let answer = authority.confirm(query).await?;
        match answer.version {
            Some(version) if !answer.revoked && version < replica_version => {
                bump(&counters.confirms_behind);
                behind.store(version, Relaxed);
                tracing::debug!(
                    jti = query.jti,
                    version,
                    replica_version,
                    "authority behind the replica; asking again"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BEHIND_RETRY_MAX);
            }
            _ => return Ok(answer),
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    cell: OnceCell<Answer>,
}

/// How a confirmation was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// This check made the call.
    Call,
    /// Another check's call, or a cached answer.
    Shared,
}

#[derive(Debug)]
pub(crate) struct ConfirmCache {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    ttl: Duration,
    capacity: usize,
}

impl ConfirmCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> ConfirmCache {
        ConfirmCache {
            slots: Mutex::new(HashMap::new()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks `authority` about `query.jti`, through the cache. With `fresh_only`,
    /// cached "not revoked" answers are not trusted (the replica is stale). A "not
    /// revoked" computed at a version below `replica_version` (the replica's when it
    /// asked) is neither trusted nor cached: the authority is asked again until the
    /// timeout.
    pub(crate) async fn confirm(
        &self,
        query: ConfirmQuery<'_>,
        authority: &dyn Authority,
        timeout: Duration,
        fresh_only: bool,
        replica_version: u64,
        counters: &Counters,
    ) -> (Result<Confirmation, AuthorityError>, Via) {
        let slot = self.slot_for(query.jti, fresh_only);
        let called = AtomicBool::new(false);
        let (answer, _) = slot
            .cell
            .get_or_init(|| async {
                called.store(true, Relaxed);
                bump(&counters.confirms);
                let behind = AtomicU64::new(NONE_BEHIND);
                let asking =
                    ask_until_current(authority, query, replica_version, &behind, counters);
                let result = match tokio::time::timeout(timeout, asking).await {
                    Ok(result) => result,
                    Err(_) => match behind.load(Relaxed) {
                        NONE_BEHIND => Err(AuthorityError::Timeout(timeout)),
                        answered => Err(AuthorityError::Behind {
                            answered,
                            replica: replica_version,
                        }),
                    },
                };
                match &result {
                    Ok(c) if c.revoked => bump(&counters.confirms_revoked),
                    Ok(_) => bump(&counters.confirms_not_revoked),
                    Err(_) => bump(&counters.confirm_errors),
                }
                (result, Instant::now())
            })
            .await;
        let called = called.load(Relaxed);
        if called && answer.is_err() {
            let mut slots = self.lock();
            if slots.get(query.jti).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                slots.remove(query.jti);
            }
        }
        if !called {
            bump(&counters.confirm_cache_hits);
        }
        (answer.clone(), if called { Via::Call } else { Via::Shared })
    }

    fn slot_for(&self, jti: &str, fresh_only: bool) -> Arc<Slot> {
        let mut slots = self.lock();
        if let Some(slot) = slots.get(jti) {
            let usable = match slot.cell.get() {
                None => true,
                Some((Err(_), _)) => false,
                Some((Ok(c), at)) => at.elapsed() < self.ttl && (c.revoked || !fresh_only),
            };
            if usable {
                return slot.clone();
            }
        }
        if slots.len() >= self.capacity {
            let ttl = self.ttl;
            slots.retain(|_, s| match s.cell.get() {
                None => true,
                Some((Ok(_), at)) => at.elapsed() < ttl,
                Some((Err(_), _)) => false,
            });
            if slots.len() >= self.capacity {
                // Still full of fresh answers: drop them all rather than scan for the
                // oldest; in-flight slots stay so single-flight holds.
                slots.retain(|_, s| s.cell.get().is_none());
            }
        }
        let slot = Arc::new(Slot::default());
        slots.insert(jti.to_owned(), slot.clone());
        slot
    }

    /// Forgets any answer about `jti` (a delta just revoked it).
    pub(crate) fn evict(&self, jti: &str) {
        let mut slots = self.lock();
        if !slots.is_empty() {
            slots.remove(jti);
        }
    }

    /// Forgets every answer (after a resync).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

    use futures::future::{BoxFuture, join_all};

    use super::*;

    /// Answers "revoked" for jtis starting with `r`, fails for `e`, after `delay`.
    #[derive(Debug, Default)]
    struct Counting {
        calls: AtomicU64,
        delay: Duration,
    }

    impl Authority for Counting {
        fn confirm<'a>(
            &'a self,
            q: ConfirmQuery<'a>,
        ) -> BoxFuture<'a, Result<Confirmation, AuthorityError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, SeqCst);
                tokio::time::sleep(self.delay).await;
                if q.jti.starts_with('e') {
                    return Err(AuthorityError::failed("boom"));
                }
                Ok(Confirmation {
                    revoked: q.jti.starts_with('r'),
                    version: None,
                })
            })
        }
    }

    fn q(jti: &str) -> ConfirmQuery<'_> {
        ConfirmQuery {
            jti,
            exp: None,
            token: None,
        }
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn concurrent_callers_share_one_call() {
        let cache = ConfirmCache::new(Duration::from_secs(60), 100);
        let auth = Counting {
            delay: Duration::from_millis(50),
            ..Default::default()
        };
        let counters = Counters::default();
        let results =
            join_all((0..20).map(|_| cache.confirm(q("r1"), &auth, T, false, 0, &counters))).await;
        assert_eq!(auth.calls.load(SeqCst), 1);
        assert_eq!(
            results.iter().filter(|(_, via)| *via == Via::Call).count(),
            1
        );
        assert!(results.iter().all(|(r, _)| r.as_ref().unwrap().revoked));
        // Answered: later callers get the cached answer.
        let (_, via) = cache.confirm(q("r1"), &auth, T, false, 0, &counters).await;
        assert_eq!(via, Via::Shared);
        assert_eq!(auth.calls.load(SeqCst), 1);
        assert_eq!(counters.confirm_cache_hits.load(SeqCst), 20);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache = ConfirmCache::new(Duration::from_secs(60), 100);
        let auth = Counting::default();
        let counters = Counters::default();
        for _ in 0..3 {
            let (r, via) = cache.confirm(q("e1"), &auth, T, false, 0, &counters).await;
            assert!(r.is_err());
            assert_eq!(via, Via::Call);
        }
        assert_eq!(auth.calls.load(SeqCst), 3);
        assert_eq!(counters.confirm_errors.load(SeqCst), 3);
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn timeouts_become_errors() {
        let cache = ConfirmCache::new(Duration::from_secs(60), 100);
        let auth = Counting {
            delay: Duration::from_secs(10),
            ..Default::default()
        };
        let (r, _) = cache
            .confirm(
                q("n1"),
                &auth,
                Duration::from_millis(20),
                false,
                0,
                &Counters::default(),
            )
            .await;
        assert!(
            matches!(r, Err(AuthorityError::Timeout(d)) if d == Duration::from_millis(20)),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn eviction_ttl_and_fresh_only() {
        let auth = Counting::default();
        let counters = Counters::default();
        let cache = ConfirmCache::new(Duration::from_secs(60), 100);
        let _ = cache.confirm(q("n1"), &auth, T, false, 0, &counters).await;
        let _ = cache.confirm(q("n1"), &auth, T, false, 0, &counters).await;
        assert_eq!(auth.calls.load(SeqCst), 1);
        // A delta names it: the next check asks again.
        cache.evict("n1");
        let _ = cache.confirm(q("n1"), &auth, T, false, 0, &counters).await;
        assert_eq!(auth.calls.load(SeqCst), 2);
        // Stale: "not revoked" is not trusted, "revoked" is.
        let _ = cache.confirm(q("n1"), &auth, T, true, 0, &counters).await;
        assert_eq!(auth.calls.load(SeqCst), 3);
        let _ = cache.confirm(q("r1"), &auth, T, false, 0, &counters).await;
        let _ = cache.confirm(q("r1"), &auth, T, true, 0, &counters).await;
        assert_eq!(auth.calls.load(SeqCst), 4);
        // A zero TTL caches nothing.
        let cache = ConfirmCache::new(Duration::ZERO, 100);
        let _ = cache.confirm(q("n2"), &auth, T, false, 0, &counters).await;
        let _ = cache.confirm(q("n2"), &auth, T, false, 0, &counters).await;
        assert_eq!(auth.calls.load(SeqCst), 6);
    }

    #[tokio::test]
    async fn capacity_bounds_the_cache() {
        let auth = Counting::default();
        let counters = Counters::default();
        let cache = ConfirmCache::new(Duration::from_secs(60), 10);
        for i in 0..100 {
            let _ = cache
                .confirm(q(&format!("n{i}")), &auth, T, false, 0, &counters)
                .await;
            assert!(cache.lock().len() <= 10);
        }
    }
}
