//! The confirm cache: answers kept for a TTL in a bounded cache, and one call in
//! flight per `jti` shared by concurrent checks (single-flight).
//!
//! - Answers live in a [`quick_cache`] cache bounded by `cache_capacity`: when full it
//!   evicts a few entries by its S3-FIFO policy (answers asked for again stay), never
//!   everything at once. An answer older than the TTL is not used.
//! - A flight is an `Arc<OnceCell>` in a map: the first check of a `jti` inserts it
//!   and runs the authority call inside `get_or_init`; concurrent checks find it and
//!   wait on the same cell. If the first caller is cancelled, a waiter takes over the
//!   call. Each check holds a ticket; the last ticket to leave a flight that never got
//!   an answer removes it, so cancelled calls leave nothing behind. The caller that
//!   made the call removes the flight and caches the answer, unless a delta evicted
//!   the `jti` meanwhile (the answer may predate the delta: it is given to the
//!   flight's waiters but not kept). Errors are shared with the waiters of that
//!   flight but never cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use crate::authority::{Authority, ConfirmQuery, Confirmation};
use crate::error::AuthorityError;
use crate::stats::{Counters, bump};

type Flight = OnceCell<Result<Confirmation, AuthorityError>>;
type Flights = HashMap<String, Arc<Flight>>;

/// `behind` before any answer from the past arrived.
const NONE_BEHIND: u64 = u64::MAX;
/// Pauses between questions to an authority that answered from an older version.
const BEHIND_RETRY_FIRST: Duration = Duration::from_millis(5);
const BEHIND_RETRY_MAX: Duration = Duration::from_millis(200);

/// The replica's position when it asked: its epoch and version.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Asked {
    pub(crate) epoch: u64,
    pub(crate) version: u64,
}

impl Asked {
    /// Whether `answer` was computed in another epoch than the replica's: then its
    /// version says nothing about the replica's, and it is used but never cached.
    fn other_epoch(self, answer: &Confirmation) -> bool {
        answer.epoch.is_some_and(|e| e != self.epoch)
    }
}

/// Asks until the answer is "revoked", carries no version, comes from another epoch,
/// or was computed at the replica's version or later. An authority behind the
/// replica has not applied a delta the replica holds (the one that made the filter
/// hit, maybe): its "not revoked" proves nothing. Records the newest such version in
/// `behind`.
async fn ask_until_current(
    authority: &dyn Authority,
    query: ConfirmQuery<'_>,
    asked: Asked,
    behind: &AtomicU64,
    counters: &Counters,
) -> Result<Confirmation, AuthorityError> {
    let replica_version = asked.version;
    let mut pause = BEHIND_RETRY_FIRST;
    loop {
        let answer = authority.confirm(query).await?;
        match answer.version {
            Some(version)
                if !answer.revoked && version < replica_version && !asked.other_epoch(&answer) =>
            {
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

/// How a confirmation was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// This check made the call.
    Call,
    /// Another check's call, or a cached answer.
    Shared,
}

pub(crate) struct ConfirmCache {
    /// Answers and when they were given.
    answers: quick_cache::sync::Cache<String, (Confirmation, Instant)>,
    /// Calls in flight, one per `jti`.
    flights: Mutex<Flights>,
    ttl: Duration,
}

impl std::fmt::Debug for ConfirmCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmCache")
            .field("answers", &self.answers.len())
            .field("flights", &self.flights().len())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A check's place in a flight; leaving it (answered or cancelled) may end the flight.
struct Ticket<'a> {
    cache: &'a ConfirmCache,
    jti: &'a str,
    flight: Option<Arc<Flight>>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut flights = self.cache.flights();
        if let Some(flight) = self.flight.take() {
            // Every clone is made and dropped under this lock, so the count is exact:
            // the map's and this ticket's mean nobody else waits.
            if Arc::strong_count(&flight) == 2
                && flights
                    .get(self.jti)
                    .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                flights.remove(self.jti);
            }
            drop(flight);
        }
    }
}

impl ConfirmCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> ConfirmCache {
        ConfirmCache {
            answers: quick_cache::sync::Cache::new(capacity.max(1)),
            flights: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    fn flights(&self) -> MutexGuard<'_, Flights> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
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
        asked: Asked,
        counters: &Counters,
    ) -> (Result<Confirmation, AuthorityError>, Via) {
        let replica_version = asked.version;
        if let Some(answer) = self.cached(query.jti, fresh_only, counters) {
            return (Ok(answer), Via::Shared);
        }
        let ticket = self.join(query.jti);
        let Some(flight) = ticket.flight.as_ref() else {
            unreachable!("a ticket holds its flight until dropped")
        };
        let called = AtomicBool::new(false);
        let answer = flight
            .get_or_init(|| async {
                called.store(true, Relaxed);
                bump(&counters.confirms);
                let behind = AtomicU64::new(NONE_BEHIND);
                let asking = ask_until_current(authority, query, asked, &behind, counters);
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
                result
            })
            .await
            .clone();
        let called = called.load(Relaxed);
        if called {
            self.land(query.jti, flight, &answer, asked);
        } else {
            bump(&counters.confirm_cache_hits);
        }
        (answer, if called { Via::Call } else { Via::Shared })
    }

    /// The cached answer about `jti`, if one is kept and younger than the TTL (with
    /// `fresh_only`, only a "revoked"), counted as a cache hit.
    pub(crate) fn cached(
        &self,
        jti: &str,
        fresh_only: bool,
        counters: &Counters,
    ) -> Option<Confirmation> {
        let (answer, at) = self.answers.get(jti)?;
        if at.elapsed() < self.ttl && (answer.revoked || !fresh_only) {
            bump(&counters.confirm_cache_hits);
            Some(answer)
        } else {
            None
        }
    }

    /// The flight for `jti`: the one in the air, or a new one.
    fn join<'a>(&'a self, jti: &'a str) -> Ticket<'a> {
        let mut flights = self.flights();
        let flight = flights
            .entry(jti.to_owned())
            .or_insert_with(|| Arc::new(Flight::new()))
            .clone();
        Ticket {
            cache: self,
            jti,
            flight: Some(flight),
        }
    }

    /// Ends an answered flight and keeps its answer, unless a delta evicted the `jti`
    /// while the call was in the air (then the flight is no longer in the map).
    fn land(
        &self,
        jti: &str,
        flight: &Arc<Flight>,
        answer: &Result<Confirmation, AuthorityError>,
        asked: Asked,
    ) {
        let mut flights = self.flights();
        if !flights.get(jti).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            return;
        }
        flights.remove(jti);
        if let Ok(confirmation) = answer
            && !self.ttl.is_zero()
            && !asked.other_epoch(confirmation)
        {
            // Under the flights lock, so that an eviction is ordered before or after.
            self.answers
                .insert(jti.to_owned(), (*confirmation, Instant::now()));
        }
    }

    /// Forgets any answer about `jti` and detaches a call in flight (a delta just
    /// revoked it).
    pub(crate) fn evict(&self, jti: &str) {
        let mut flights = self.flights();
        flights.remove(jti);
        self.answers.remove(jti);
    }

    /// Forgets every answer (after a resync).
    pub(crate) fn clear(&self) {
        let mut flights = self.flights();
        flights.clear();
        self.answers.clear();
    }

    /// Nothing cached and nothing in flight: deltas need not evict.
    pub(crate) fn is_empty(&self) -> bool {
        self.answers.is_empty() && self.flights().is_empty()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.answers.len() + self.flights().len()
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
        /// The epoch its answers say (at version 0), if any.
        epoch: Option<u64>,
    }

    const AT_0: Asked = Asked {
        epoch: 0,
        version: 0,
    };

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
                    version: self.epoch.map(|_| 0),
                    epoch: self.epoch,
                })
            })
        }
    }

    fn q(jti: &str) -> ConfirmQuery<'_> {
        ConfirmQuery {
            jti,
            exp: None,
            sub: None,
            iat: None,
            sid: None,
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
            join_all((0..20).map(|_| cache.confirm(q("r1"), &auth, T, false, AT_0, &counters)))
                .await;
        assert_eq!(auth.calls.load(SeqCst), 1);
        assert_eq!(
            results.iter().filter(|(_, via)| *via == Via::Call).count(),
            1
        );
        assert!(results.iter().all(|(r, _)| r.as_ref().unwrap().revoked));
        // Answered: later callers get the cached answer.
        let (_, via) = cache
            .confirm(q("r1"), &auth, T, false, AT_0, &counters)
            .await;
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
            let (r, via) = cache
                .confirm(q("e1"), &auth, T, false, AT_0, &counters)
                .await;
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
                AT_0,
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
        let _ = cache
            .confirm(q("n1"), &auth, T, false, AT_0, &counters)
            .await;
        let _ = cache
            .confirm(q("n1"), &auth, T, false, AT_0, &counters)
            .await;
        assert_eq!(auth.calls.load(SeqCst), 1);
        // A delta names it: the next check asks again.
        cache.evict("n1");
        let _ = cache
            .confirm(q("n1"), &auth, T, false, AT_0, &counters)
            .await;
        assert_eq!(auth.calls.load(SeqCst), 2);
        // Stale: "not revoked" is not trusted, "revoked" is.
        let _ = cache
            .confirm(q("n1"), &auth, T, true, AT_0, &counters)
            .await;
        assert_eq!(auth.calls.load(SeqCst), 3);
        let _ = cache
            .confirm(q("r1"), &auth, T, false, AT_0, &counters)
            .await;
        let _ = cache
            .confirm(q("r1"), &auth, T, true, AT_0, &counters)
            .await;
        assert_eq!(auth.calls.load(SeqCst), 4);
        // A zero TTL caches nothing.
        let cache = ConfirmCache::new(Duration::ZERO, 100);
        let _ = cache
            .confirm(q("n2"), &auth, T, false, AT_0, &counters)
            .await;
        let _ = cache
            .confirm(q("n2"), &auth, T, false, AT_0, &counters)
            .await;
        assert_eq!(auth.calls.load(SeqCst), 6);
    }

    #[tokio::test]
    async fn a_full_cache_evicts_some_answers_not_all() {
        let auth = Counting::default();
        let counters = Counters::default();
        // Small enough for one shard: eviction order does not depend on hashing.
        let cache = ConfirmCache::new(Duration::from_secs(60), 30);
        let revoked: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
        for jti in revoked.iter().chain(revoked.iter()) {
            let _ = cache
                .confirm(q(jti), &auth, T, false, AT_0, &counters)
                .await;
        }
        assert_eq!(auth.calls.load(SeqCst), 20);
        for i in 0..20 {
            let _ = cache
                .confirm(q(&format!("n{i}")), &auth, T, false, AT_0, &counters)
                .await;
        }
        assert!(cache.len() <= 30, "bounded: {}", cache.len());
        // The revoked answers asked for twice are still there.
        let before = auth.calls.load(SeqCst);
        for jti in &revoked {
            let (answer, _) = cache
                .confirm(q(jti), &auth, T, false, AT_0, &counters)
                .await;
            assert!(answer.unwrap().revoked);
        }
        let asked_again = auth.calls.load(SeqCst) - before;
        assert!(asked_again <= 5, "{asked_again} of 20 answers were dropped");
    }

    #[tokio::test]
    async fn a_cancelled_call_leaves_nothing_behind() {
        let auth = Counting {
            delay: Duration::from_secs(30),
            ..Default::default()
        };
        let counters = Counters::default();
        let cache = ConfirmCache::new(Duration::from_secs(60), 100);
        for i in 0..50 {
            let jti = format!("c{i}");
            let call = cache.confirm(q(&jti), &auth, T, false, AT_0, &counters);
            // The caller gives up (its request was cancelled) before the answer.
            assert!(
                tokio::time::timeout(Duration::from_millis(1), call)
                    .await
                    .is_err()
            );
        }
        assert!(cache.is_empty(), "{} slots leaked", cache.len());
    }

    #[tokio::test]
    async fn an_answer_of_another_epoch_is_used_but_never_cached() {
        let cache = ConfirmCache::new(Duration::from_secs(60), 100);
        let counters = Counters::default();
        // Computed at version 0 of epoch 9; the replica asked at version 5 of epoch 1.
        let auth = Counting {
            epoch: Some(9),
            ..Default::default()
        };
        let asked = Asked {
            epoch: 1,
            version: 5,
        };
        for calls in 1..=2 {
            let (answer, via) = cache
                .confirm(q("n1"), &auth, T, false, asked, &counters)
                .await;
            assert!(
                !answer.unwrap().revoked,
                "answered, not asked again until the timeout"
            );
            assert_eq!(via, Via::Call);
            assert_eq!(auth.calls.load(SeqCst), calls, "not cached");
        }
        // The same answer in the replica's epoch is behind it: asked again until the
        // timeout, never taken.
        let same = Counting {
            epoch: Some(1),
            ..Default::default()
        };
        let (answer, _) = cache
            .confirm(
                q("n2"),
                &same,
                Duration::from_millis(50),
                false,
                asked,
                &counters,
            )
            .await;
        assert!(
            matches!(answer, Err(AuthorityError::Behind { .. })),
            "{answer:?}"
        );
    }
}
