//! Counters of one replica, in the style of `async_nats::Statistics`: plain
//! `AtomicU64`s updated with relaxed ordering, read into a [`Stats`] value that
//! serialises to JSON.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// The live counters. Shared by the handle and the background task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub checks: AtomicU64,
    pub filter_hits: AtomicU64,
    pub cutoff_rejections: AtomicU64,
    pub confirms: AtomicU64,
    pub confirms_revoked: AtomicU64,
    pub confirms_not_revoked: AtomicU64,
    pub confirm_cache_hits: AtomicU64,
    pub confirm_errors: AtomicU64,
    pub confirms_behind: AtomicU64,
    pub stale_checks: AtomicU64,
    pub fail_open_accepts: AtomicU64,
    pub fail_closed_rejects: AtomicU64,
    pub deltas_applied: AtomicU64,
    pub deltas_from_stream: AtomicU64,
    pub duplicates: AtomicU64,
    pub gaps_repaired: AtomicU64,
    pub resyncs: AtomicU64,
    pub snapshots_loaded: AtomicU64,
    pub heartbeats: AtomicU64,
    pub digest_mismatches: AtomicU64,
    pub reconnects: AtomicU64,
    pub sync_errors: AtomicU64,
    pub sync_restarts: AtomicU64,
    pub rollovers_followed: AtomicU64,
    pub rollovers_refused: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Rejected messages by [`revocast_core::DecodeError::reason`] (plus `replayed`).
    pub rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl Counters {
    pub(crate) fn reject(&self, reason: &'static str) -> u64 {
        let mut map = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(reason).or_insert(0);
        *n += 1;
        *n
    }
}

/// Adds one to a counter.
#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// A point-in-time copy of a replica's figures; what `GET /revocast/stats` serves.
///
/// Counters count since the [`crate::Subscriber`] was created.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Namespace of the replica.
    pub namespace: String,
    /// Whether the replica finished its bootstrap.
    pub ready: bool,
    /// Whether the replica is past `max_staleness` (the staleness policy applies).
    pub stale: bool,
    /// Seconds since the replica last knew itself in sync with a heartbeat (or since
    /// bootstrap); `None` before the replica is ready.
    pub staleness_seconds: Option<f64>,
    /// The replica's filter version.
    pub version: u64,
    /// The publisher's version in its last valid heartbeat.
    pub publisher_version: u64,
    /// Entries in live buckets of the replica's filter.
    pub live_entries: u64,
    /// Bytes of Bloom bitmaps in the replica's filter.
    pub filter_bytes: u64,
    /// Payload bytes received from NATS (deltas, heartbeats, snapshots).
    pub bytes_received: u64,
    /// Calls to `check`, `check_local` and `check_jwt` that reached the filter.
    pub checks: u64,
    /// Checks whose `jti` the Bloom filter holds.
    pub filter_hits: u64,
    /// Checks rejected by a subject or global cutoff.
    pub cutoff_rejections: u64,
    /// Questions sent to the authority (after the cache and single-flight).
    pub confirms: u64,
    /// Authority answers "revoked".
    pub confirms_revoked: u64,
    /// Authority answers "not revoked": on filter hits, these are false positives.
    pub confirms_not_revoked: u64,
    /// Checks answered from the confirm cache or by another caller's request.
    pub confirm_cache_hits: u64,
    /// Authority calls that failed or timed out.
    pub confirm_errors: u64,
    /// Authority answers of "not revoked" at a version older than the replica's: not
    /// trusted, asked again until the confirm timeout.
    pub confirms_behind: u64,
    /// Answers on the confirm subject that did not verify or did not answer the
    /// request (a rogue responder, garbage): skipped while waiting for a valid one.
    pub confirm_invalid_answers: u64,
    /// Checks made while not ready or stale.
    pub stale_checks: u64,
    /// Checks accepted only because the policy is fail-open.
    pub fail_open_accepts: u64,
    /// Checks refused (503) because the policy is fail-closed.
    pub fail_closed_rejects: u64,
    /// Deltas applied (live and from the stream).
    pub deltas_applied: u64,
    /// Deltas read back from the stream (bootstrap and repairs).
    pub deltas_from_stream: u64,
    /// Deltas received again and ignored.
    pub duplicates: u64,
    /// Catch-ups from the stream after a gap, a heartbeat ahead or a reconnect.
    pub gaps_repaired: u64,
    /// Full reloads from the snapshot after the bootstrap.
    pub resyncs: u64,
    /// Snapshots loaded (bootstrap included).
    pub snapshots_loaded: u64,
    /// Valid heartbeats received.
    pub heartbeats: u64,
    /// Heartbeats whose digest disagreed at the same version.
    pub digest_mismatches: u64,
    /// NATS reconnections seen.
    pub reconnects: u64,
    /// Failed bootstrap, catch-up or resync attempts (retried).
    pub sync_errors: u64,
    /// Times the sync task ended (or panicked) and was started again; the replica is
    /// stale from the moment it ends until a heartbeat proves it in sync.
    pub sync_restarts: u64,
    /// Messages dropped, by reason (`bad_signature`, `truncated`, `replayed`, ...).
    pub rejected_messages: BTreeMap<String, u64>,
    /// Publisher keys accepted now (base64url), the newest first.
    pub signing_keys: Vec<String>,
    /// Key rollovers in the namespace's chain that the replica has seen.
    pub key_rollovers: u64,
    /// Key rollovers followed: the replica trusts the new key.
    pub rollovers_followed: u64,
    /// Key rollovers refused (pin-only, to a key not pinned): once the publisher signs
    /// with the new key, this replica goes stale until the key is pinned.
    pub rollovers_refused: u64,
}

impl Stats {
    pub(crate) fn from_counters(c: &Counters) -> Stats {
        let get = |a: &AtomicU64| a.load(Relaxed);
        let rejected = c
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        Stats {
            checks: get(&c.checks),
            filter_hits: get(&c.filter_hits),
            cutoff_rejections: get(&c.cutoff_rejections),
            confirms: get(&c.confirms),
            confirms_revoked: get(&c.confirms_revoked),
            confirms_not_revoked: get(&c.confirms_not_revoked),
            confirm_cache_hits: get(&c.confirm_cache_hits),
            confirm_errors: get(&c.confirm_errors),
            confirms_behind: get(&c.confirms_behind),
            stale_checks: get(&c.stale_checks),
            fail_open_accepts: get(&c.fail_open_accepts),
            fail_closed_rejects: get(&c.fail_closed_rejects),
            deltas_applied: get(&c.deltas_applied),
            deltas_from_stream: get(&c.deltas_from_stream),
            duplicates: get(&c.duplicates),
            gaps_repaired: get(&c.gaps_repaired),
            resyncs: get(&c.resyncs),
            snapshots_loaded: get(&c.snapshots_loaded),
            heartbeats: get(&c.heartbeats),
            digest_mismatches: get(&c.digest_mismatches),
            reconnects: get(&c.reconnects),
            sync_errors: get(&c.sync_errors),
            sync_restarts: get(&c.sync_restarts),
            rollovers_followed: get(&c.rollovers_followed),
            rollovers_refused: get(&c.rollovers_refused),
            bytes_received: get(&c.bytes_received),
            rejected_messages: rejected,
            ..Stats::default()
        }
    }

    /// Total of [`Stats::rejected_messages`].
    pub fn rejected_total(&self) -> u64 {
        self.rejected_messages.values().sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn stats_serialise_with_rejections_by_reason() {
        let counters = Counters::default();
        bump(&counters.checks);
        counters.reject("bad_signature");
        counters.reject("bad_signature");
        counters.reject("truncated");
        let stats = Stats::from_counters(&counters);
        assert_eq!(stats.rejected_total(), 3);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["checks"], 1);
        assert_eq!(json["rejected_messages"]["bad_signature"], 2);
        assert_eq!(json["staleness_seconds"], serde_json::Value::Null);
    }
}
