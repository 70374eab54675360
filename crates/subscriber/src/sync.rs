//! The background task that keeps a replica in sync.
//!
//! It subscribes to the delta and heartbeat subjects first (core NATS buffers what
//! arrives meanwhile), bootstraps from the snapshot and the stream, then loops:
//! - a delta at `version + 1` applies; older ones are duplicates; newer ones wait in
//!   `pending` while the gap is repaired from the stream (or, if the stream no longer
//!   holds it, from the newest snapshot);
//! - a heartbeat ahead of the replica triggers a catch-up, one at the same version
//!   with another digest a full resync, one that agrees proves the replica in sync;
//! - a gap, a digest mismatch or a heartbeat ahead marks the replica behind at once:
//!   checks stop trusting filter misses until a heartbeat proves agreement again;
//! - after a NATS reconnect, it catches up from the stream.
//!
//! A supervisor ([`supervise`]) runs the task and watches the clock apart from it:
//! past `max_staleness` since the last proven agreement it marks the replica stale,
//! however busy the task is (a catch-up or a resync may take minutes); when the task
//! ends or panics, the replica is stale at once and the task starts again with
//! backoff.
//!
//! The task and the readers share one `Arc<Filter>`: a batch of changes clones it
//! once (`Arc::make_mut`), applies them, and publishes the new `Arc` through the
//! `ArcSwap`; the old copy is freed when the last in-flight check lets go of it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use revocast_core::{
    Change, Delta, Filter, FilterError, Followed, Namespace, Succession, Verifier,
};
use revocast_nats::{Backoff, LogEntry, ReadError, StreamBounds};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};

use crate::options::SubscriberOptions;
use crate::stats::bump;
use crate::subscriber::Shared;

/// How often the task looks at the connection state and retries failed repairs.
const TICK: Duration = Duration::from_millis(250);
/// Pause before a tick retries a failed catch-up or resync.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Most out-of-order deltas held while a gap is repaired.
const MAX_PENDING: usize = 4096;
/// Most live messages handled before readers see the new filter.
const MAX_BATCH: usize = 1024;
/// A sync task that ran this long before it ended restarts without waiting.
const RESTART_RESET: Duration = Duration::from_secs(60);
/// How often fetching a snapshot that is older than the stream's start is retried.
const SNAPSHOT_ATTEMPTS: u32 = 5;
/// How long heartbeats may stay behind the replica without moving before it resyncs.
/// Briefly is normal (a delta can overtake the heartbeat sent just before it); for
/// longer, the publisher's log lost what the replica holds.
const AHEAD_GRACE: Duration = Duration::from_secs(3);
/// Fingerprints of applied deltas kept, to tell a copy of one from another delta of
/// the same version.
const RECENT_DELTAS: usize = 4096;
/// Epochs remembered as not the namespace's current one.
const MAX_REFUTED_EPOCHS: usize = 64;
/// Log messages a catch-up reads before the first one it expects to be missing: room
/// for messages that are not the next deltas (garbage, copies, another key's).
const CATCH_UP_MARGIN: u64 = 4;
/// How much further back each retry of a catch-up that started too late begins.
const CATCH_UP_WIDENING: u64 = 16;

/// What the task needs from the options.
#[derive(Clone, Debug)]
pub(crate) struct SyncConfig {
    verifier: Verifier,
    namespace: Namespace,
    max_staleness: Duration,
}

impl SyncConfig {
    /// `verifier`: the replica's, shared with its authority client.
    pub(crate) fn new(options: &SubscriberOptions, verifier: Verifier) -> SyncConfig {
        SyncConfig {
            verifier,
            namespace: options.namespace.clone(),
            max_staleness: options.max_staleness,
        }
    }
}

/// Why a bootstrap, catch-up or resync attempt failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    #[error("reading the store: {0}")]
    Read(#[from] ReadError),
    #[error("no snapshot in the bucket yet (has the publisher started?)")]
    NoSnapshot,
    #[error("filter refused {what}: {source}")]
    Filter {
        what: &'static str,
        source: FilterError,
    },
    #[error("snapshot covers the log up to message {snapshot}; the stream starts at {first}")]
    SnapshotTooOld { snapshot: u64, first: u64 },
    #[error("the stream ends at message {last}, before message {seq} the replica read")]
    StreamWentBack { seq: u64, last: u64 },
    #[error("stream message {seq} holds delta {version}; the replica is at {have}")]
    LogGap { seq: u64, version: u64, have: u64 },
    #[error("delta {version} differs from the delta {version} the replica applied")]
    Conflict { version: u64 },
}

struct Task {
    shared: Arc<Shared>,
    client: async_nats::Client,
    /// The read path shared with the publisher.
    store: revocast_nats::Store,
    config: SyncConfig,
    /// The replica; the same `Arc` readers load between batches, so one copy lives
    /// in memory. The first change after a publication clones it (`Arc::make_mut`).
    filter: Arc<Filter>,
    /// The stream sequence of the last log message `filter` has read.
    seq: u64,
    /// The filter's version when it read that message. Deltas applied live move the
    /// version on but not `seq` (a live message does not carry its place in the log).
    seq_version: u64,
    /// Verified deltas ahead of `filter` (with their fingerprints), waiting for the
    /// gap before them.
    pending: BTreeMap<u64, (Delta, u64)>,
    /// Fingerprints of the deltas applied since the last load.
    recent: Recent,
    /// A delta conflicting with one applied arrived: resync.
    conflict: bool,
    /// [`revocast_core::Heartbeat::order`] of the newest heartbeat accepted in this
    /// epoch: older or equal ones are replays.
    last_heartbeat: Option<(u64, u64)>,
    /// Since when the heartbeats are behind the replica, and the newest such
    /// heartbeat's version.
    ahead: Option<(Instant, u64)>,
    /// Epochs known not to be the namespace's current one (the replica left them, or a
    /// resync found another): their heartbeats are dropped without a resync.
    refuted_epochs: HashSet<u64>,
    /// The filter changed since readers last saw it.
    dirty: bool,
    /// Do a catch-up at the next tick (set when one failed or the connection returned).
    catch_up_due: bool,
    /// Ticks do not retry a failed catch-up or resync before this.
    retry_at: Instant,
}

/// Runs the sync task, restarting it when it ends, and marks the replica stale when
/// `max_staleness` passes without a proven agreement. Stops when `shutdown` fires
/// or its sender is dropped (the last handle went away).
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    client: async_nats::Client,
    config: SyncConfig,
    mut shutdown: oneshot::Receiver<()>,
) {
    let namespace = config.namespace.clone();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let started = Instant::now();
        let mut task = tokio::spawn(run(shared.clone(), client.clone(), config.clone()));
        let ended = loop {
            let now = std::time::Instant::now();
            let wake = match shared.stale_at() {
                Some(at) if !shared.stale.load(Relaxed) => at.max(now),
                // Not ready, or stale already: look again soon.
                _ => now + TICK,
            };
            tokio::select! {
                _ = &mut shutdown => {
                    task.abort();
                    tracing::debug!(%namespace, "revocast replica task stopped");
                    return;
                }
                ended = &mut task => break ended,
                _ = sleep_until(Instant::from_std(wake)) => {
                    if shared.mark_stale_if_due() {
                        tracing::warn!(
                            %namespace,
                            version = shared.filter.load().version(),
                            max_staleness = ?config.max_staleness,
                            "revocast replica is stale: no heartbeat proved it in sync"
                        );
                    }
                }
            }
        };
        shared.mark_stale();
        bump(&shared.counters.sync_restarts);
        match ended {
            Err(e) if e.is_panic() => {
                tracing::error!(%namespace, error = %e, "revocast sync task panicked; the replica is stale until it is back");
            }
            _ => {
                tracing::warn!(%namespace, "revocast sync task ended; the replica is stale until it is back");
            }
        }
        if started.elapsed() > RESTART_RESET {
            backoff.reset();
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = backoff.wait() => {}
        }
    }
}

/// Runs one sync task until its subscriptions end.
async fn run(shared: Arc<Shared>, client: async_nats::Client, config: SyncConfig) {
    let filter = shared.filter.load_full();
    let store = revocast_nats::Store::new(
        async_nats::jetstream::new(client.clone()),
        config.verifier.clone(),
    );
    let mut task = Task {
        store,
        shared,
        client,
        config,
        filter,
        seq: 0,
        seq_version: 0,
        pending: BTreeMap::new(),
        last_heartbeat: None,
        ahead: None,
        recent: Recent::default(),
        conflict: false,
        refuted_epochs: HashSet::new(),
        dirty: false,
        catch_up_due: false,
        retry_at: Instant::now(),
    };
    task.run().await;
}

impl Task {
    async fn run(&mut self) {
        let ns = self.config.namespace.clone();
        let mut deltas = self.subscribe(ns.delta_subject()).await;
        let mut heartbeats = self.subscribe(ns.heartbeat_subject()).await;

        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match self.load().await {
                Ok((filter, seq)) => {
                    self.install(filter, seq);
                    break;
                }
                Err(e) => {
                    bump(&self.shared.counters.sync_errors);
                    tracing::warn!(namespace = %ns, error = %e, "revocast bootstrap failed; retrying");
                    backoff.wait().await;
                }
            }
        }
        self.publish();
        self.shared.mark_ready();
        tracing::info!(namespace = %ns, version = self.filter.version(), "revocast replica ready");

        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Every (re)connection bumps the client's `connects`, however short the outage.
        let nats_stats = self.client.statistics();
        let mut connects = nats_stats.connects.load(Relaxed);
        loop {
            tokio::select! {
                msg = deltas.next() => {
                    let Some(msg) = msg else { return };
                    self.on_delta(&msg.payload);
                    // Take what else is already buffered before readers see the result.
                    self.take_buffered(&mut deltas);
                    if self.conflict {
                        self.resync().await;
                    } else if !self.pending.is_empty() {
                        self.catch_up().await;
                    }
                }
                msg = heartbeats.next() => {
                    let Some(msg) = msg else { return };
                    // The deltas buffered were sent before this heartbeat (one
                    // connection keeps the publisher's order, the two subscriptions do
                    // not): apply them first, or the heartbeat finds the replica behind
                    // and starts a catch-up from the log for what is already here.
                    self.take_buffered(&mut deltas);
                    if self.conflict {
                        self.resync().await;
                    }
                    self.on_heartbeat(&msg.payload).await;
                }
                _ = tick.tick() => {
                    let connected = self.client.connection_state() == async_nats::connection::State::Connected;
                    let now_connects = nats_stats.connects.load(Relaxed);
                    if now_connects != connects {
                        connects = now_connects;
                        bump(&self.shared.counters.reconnects);
                        tracing::info!(namespace = %ns, "NATS reconnected; catching up from the stream");
                        self.catch_up_due = true;
                    }
                    let behind = self.shared.publisher_version.load(Relaxed) > self.filter.version();
                    let wanted = self.catch_up_due || behind || !self.pending.is_empty();
                    if connected && wanted && Instant::now() >= self.retry_at {
                        self.catch_up().await;
                    }
                }
            }
            self.publish();
        }
    }

    /// Handles the deltas already buffered on the subscription, up to [`MAX_BATCH`].
    fn take_buffered(&mut self, deltas: &mut async_nats::Subscriber) {
        for _ in 0..MAX_BATCH {
            match deltas.next().now_or_never() {
                Some(Some(msg)) => self.on_delta(&msg.payload),
                _ => break,
            }
        }
    }

    async fn subscribe(&self, subject: String) -> async_nats::Subscriber {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match self.client.subscribe(subject.clone()).await {
                Ok(sub) => return sub,
                Err(e) => {
                    bump(&self.shared.counters.sync_errors);
                    tracing::warn!(%subject, error = %e, "cannot subscribe; retrying");
                    backoff.wait().await;
                }
            }
        }
    }

    /// Makes the filter visible to checks if it changed.
    fn publish(&mut self) {
        if self.dirty {
            self.shared.filter.store(self.filter.clone());
            self.shared.views.published();
            // Last: a reader of this version then finds the views told (see
            // `Shared::version`).
            self.shared
                .version
                .store(self.filter.version(), std::sync::atomic::Ordering::Release);
            self.shared
                .namespace_epoch
                .store(self.filter.epoch(), std::sync::atomic::Ordering::Release);
            self.shared.version_tx.send_replace(self.filter.version());
            self.dirty = false;
        }
    }

    /// Replaces the master filter with a freshly loaded one, which has read the log up
    /// to message `seq`.
    fn install(&mut self, filter: Filter, seq: u64) {
        let old_epoch = self.filter.epoch();
        let new_epoch = filter.epoch();
        self.filter = Arc::new(filter);
        self.seq = seq;
        self.seq_version = self.filter.version();
        self.dirty = true;
        self.ahead = None;
        self.recent = Recent::default();
        self.conflict = false;
        self.shared.cache.clear();
        if new_epoch != old_epoch {
            // A new life of the namespace: what was pending or heard belongs to the
            // old one, which is over.
            self.pending.clear();
            self.last_heartbeat = None;
            if self.refuted_epochs.len() < MAX_REFUTED_EPOCHS {
                self.refuted_epochs.insert(old_epoch);
            }
            self.refuted_epochs.remove(&new_epoch);
        }
        let version = self.filter.version();
        self.pending = self.pending.split_off(&(version + 1));
        self.drain_pending();
    }

    fn reject(&self, what: &'static str, error: &revocast_core::DecodeError) {
        let n = self.shared.counters.reject(error.reason());
        if n == 1 || n.is_power_of_two() {
            tracing::warn!(kind = what, reason = error.reason(), %error, count = n, "dropped a message that does not verify");
        } else {
            tracing::debug!(kind = what, reason = error.reason(), %error, "dropped a message that does not verify");
        }
    }

    fn on_delta(&mut self, payload: &[u8]) {
        bump_bytes(&self.shared, payload.len());
        match self.config.verifier.decode_delta(payload) {
            Ok(delta) => self.offer(delta, fingerprint(payload), false),
            Err(e) => self.reject("delta", &e),
        }
    }

    /// Applies a verified delta if it is next, holds it if it is ahead, drops it if
    /// it is old.
    fn offer(&mut self, delta: Delta, fingerprint: u64, from_stream: bool) {
        match self.filter.succession(&delta) {
            Succession::Next => {}
            Succession::Applied => {
                if self.recent.conflicts(delta.version, fingerprint) {
                    self.on_conflict(delta.version);
                } else {
                    bump(&self.shared.counters.duplicates);
                }
                return;
            }
            Succession::OtherEpoch => {
                // A copy from another life of the namespace, or the first sign of a
                // new one: the heartbeats tell which.
                self.shared.counters.reject("other_epoch");
                return;
            }
            Succession::Ahead => {
                // A gap: what the filter misses may be in the deltas before this one.
                self.shared.mark_behind();
                if self.pending.len() >= MAX_PENDING {
                    // Keep the nearest ones; the far ones come back from the stream.
                    self.pending.pop_last();
                }
                self.pending.insert(delta.version, (delta, fingerprint));
                return;
            }
        }
        self.apply(&delta, fingerprint, from_stream);
        self.drain_pending();
    }

    fn drain_pending(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            let version = self.filter.version();
            if *entry.key() <= version {
                entry.remove();
                bump(&self.shared.counters.duplicates);
            } else if *entry.key() == version + 1 {
                let (delta, fingerprint) = entry.remove();
                self.apply(&delta, fingerprint, false);
            } else {
                break;
            }
        }
    }

    /// Another delta of a version this replica applied: the publisher's log lost the
    /// deltas this replica holds from there on and was written again (a stream that
    /// lost its tail). What the replica holds is not the publisher's: resync.
    fn on_conflict(&mut self, version: u64) {
        self.shared.mark_behind();
        if !self.conflict {
            tracing::warn!(
                version,
                "a delta differs from the one this replica applied at the same version: \
                 the publisher's log lost deltas; resyncing"
            );
        }
        self.conflict = true;
    }

    fn apply(&mut self, delta: &Delta, fingerprint: u64, from_stream: bool) {
        match Arc::make_mut(&mut self.filter).apply(delta) {
            Ok(()) => {
                self.recent.insert(delta.version, fingerprint);
                self.dirty = true;
                let counters = &self.shared.counters;
                bump(&counters.deltas_applied);
                if from_stream {
                    bump(&counters.deltas_from_stream);
                }
                evict_named(&self.shared, delta);
                follow_rollovers(&self.shared, &self.config.verifier, delta);
            }
            Err(error) => {
                // Signed by the publisher yet refused: a publisher bug. The replica
                // stays at its version and turns stale; the heartbeat digest will
                // tell operators.
                bump(&self.shared.counters.sync_errors);
                tracing::error!(version = delta.version, %error, "a signed delta does not apply");
            }
        }
    }

    async fn on_heartbeat(&mut self, payload: &[u8]) {
        bump_bytes(&self.shared, payload.len());
        let hb = match self.config.verifier.decode_heartbeat(payload) {
            Ok(hb) => hb,
            Err(e) => return self.reject("heartbeat", &e),
        };
        if hb.epoch != self.filter.epoch() {
            if self.refuted_epochs.contains(&hb.epoch) {
                let n = self.shared.counters.reject("other_epoch");
                tracing::debug!(epoch = %format_args!("{:016x}", hb.epoch), count = n, "dropped a heartbeat of another epoch");
                return;
            }
            // The namespace was created again (or this is a copy from an old life of
            // it): behind until the snapshot says which.
            self.shared.mark_behind();
            tracing::warn!(
                ours = %format_args!("{:016x}", self.filter.epoch()),
                theirs = %format_args!("{:016x}", hb.epoch),
                "heartbeat of another epoch: was the namespace created again? resyncing"
            );
            self.resync().await;
            if hb.epoch != self.filter.epoch() {
                if self.refuted_epochs.len() < MAX_REFUTED_EPOCHS {
                    self.refuted_epochs.insert(hb.epoch);
                }
                return;
            }
        }
        if self.last_heartbeat.is_some_and(|last| hb.order() <= last) {
            let n = self.shared.counters.reject("replayed");
            tracing::debug!(
                version = hb.version,
                beat = hb.beat,
                count = n,
                "dropped a replayed heartbeat"
            );
            return;
        }
        self.last_heartbeat = Some(hb.order());
        bump(&self.shared.counters.heartbeats);
        if hb.version > self.filter.version() {
            // Behind from this moment, not from when the catch-up is done.
            self.shared.mark_behind();
        }
        self.shared.publisher_version.store(hb.version, Relaxed);
        if hb.version > self.filter.version() {
            self.catch_up().await;
        }
        if hb.version == self.filter.version() && self.filter.digest() != hb.digest {
            self.shared.mark_behind();
            bump(&self.shared.counters.digest_mismatches);
            tracing::warn!(
                version = hb.version,
                ours = %self.filter.digest(),
                theirs = %hb.digest,
                "replica digest differs from the publisher's; resyncing"
            );
            self.resync().await;
        }
        let version = self.filter.version();
        if version == hb.version && self.filter.digest() == hb.digest {
            self.ahead = None;
            self.shared.mark_in_sync();
        } else if version > hb.version {
            // Briefly ahead is normal: a delta overtook the heartbeat sent just before
            // it. Ahead for longer with the publisher standing still means its log lost
            // what this replica holds (a single-replica stream that lost its tail).
            let now = Instant::now();
            let since = match self.ahead {
                Some((since, seen)) if hb.version <= seen => since,
                _ => now,
            };
            self.ahead = Some((since, hb.version));
            if now.duration_since(since) < AHEAD_GRACE {
                self.shared.mark_in_sync();
            } else {
                self.shared.mark_behind();
                tracing::warn!(
                    version,
                    publisher = hb.version,
                    "replica stays ahead of the publisher's heartbeats; resyncing"
                );
                self.resync().await;
            }
        }
    }

    /// Brings the replica to the end of the stream; falls back to a resync when the
    /// stream no longer holds the next delta.
    async fn catch_up(&mut self) {
        self.publish();
        match self.try_catch_up().await {
            Ok(true) => {
                self.catch_up_due = false;
                bump(&self.shared.counters.gaps_repaired);
            }
            Ok(false) => self.catch_up_due = false,
            Err(
                e @ (SyncError::SnapshotTooOld { .. }
                | SyncError::StreamWentBack { .. }
                | SyncError::LogGap { .. }
                | SyncError::Conflict { .. }),
            ) => {
                tracing::warn!(error = %e, "the stream cannot bring the replica up to date; resyncing");
                self.resync().await;
            }
            Err(e) => {
                self.catch_up_due = true;
                self.retry_at = Instant::now() + RETRY_DELAY;
                bump(&self.shared.counters.sync_errors);
                tracing::warn!(error = %e, "catch-up from the stream failed; will retry");
            }
        }
    }

    /// Ok(true) if anything was read from the stream.
    async fn try_catch_up(&mut self) -> Result<bool, SyncError> {
        let StreamBounds { first, last } = self.store.bounds().await?;
        let version = self.filter.version();
        if last < self.seq {
            return Err(SyncError::StreamWentBack {
                seq: self.seq,
                last,
            });
        }
        if last == self.seq {
            return Ok(false);
        }
        // Deltas applied live since the log was last read are in the log after `seq`:
        // read only the end of the log, where the missing ones are, going further
        // back only while that proves too late.
        let mut window = self.missing_at_most().saturating_add(CATCH_UP_MARGIN);
        while self.seq_version != version && last - self.seq > window {
            let start = (last - window + 1).max(first);
            match self.read_log(start - 1, last, true).await {
                Ok(true) => return Ok(true),
                // Started after the filter's place: the first delta read was ahead of
                // it, or none could be placed (all signed by a key a rollover before
                // the window hands over to, say). Nothing was applied; go further back.
                Ok(false) | Err(SyncError::LogGap { .. }) if self.filter.version() == version => {
                    window = window.saturating_mul(CATCH_UP_WIDENING);
                }
                result => return result.map(|_| true),
            }
        }
        if self.seq + 1 < first {
            return Err(SyncError::SnapshotTooOld {
                snapshot: self.seq,
                first,
            });
        }
        self.read_log(self.seq, last, false).await.map(|_| true)
    }

    /// How many deltas the replica misses at most, as far as it knows: up to the
    /// newest version a heartbeat announced or a live delta held back carries.
    fn missing_at_most(&self) -> u64 {
        let announced = self.shared.publisher_version.load(Relaxed);
        let held = self.pending.last_key_value().map_or(0, |(v, _)| *v);
        announced.max(held).saturating_sub(self.filter.version())
    }

    /// Reads the log messages after `from` up to `last` into the filter. On success
    /// the filter has read the log up to `last`; on an error, up to where it stopped.
    /// With `find_place`, a read that met no delta of the filter's epoch it could place
    /// (one held already, or the next) counts for nothing and answers `false`: a read
    /// that starts after the filter's place cannot tell what it missed before.
    async fn read_log(
        &mut self,
        from: u64,
        last: u64,
        find_place: bool,
    ) -> Result<bool, SyncError> {
        let version = self.filter.version();
        let mut seq = from;
        let filter = Arc::make_mut(&mut self.filter);
        let result = replay(
            &self.store,
            &self.shared,
            filter,
            &mut seq,
            last,
            &mut self.recent,
        )
        .await;
        if self.filter.version() != version {
            self.dirty = true;
        }
        // A replay that stopped before applying anything, or found no place for the
        // filter when it had to, leaves the filter where it was: `seq` then says
        // nothing about it.
        let found = match &result {
            Ok(placed) => *placed || !find_place,
            Err(_) => self.filter.version() != version,
        };
        if found {
            self.seq = seq;
            self.seq_version = self.filter.version();
        }
        result?;
        self.drain_pending();
        Ok(found)
    }

    /// Reloads from the newest snapshot and the stream.
    async fn resync(&mut self) {
        match self.load().await {
            Ok((filter, seq)) => {
                bump(&self.shared.counters.resyncs);
                tracing::info!(
                    version = filter.version(),
                    epoch = %format_args!("{:016x}", filter.epoch()),
                    "revocast replica resynced"
                );
                self.install(filter, seq);
                self.catch_up_due = false;
            }
            Err(e) => {
                self.catch_up_due = true;
                self.retry_at = Instant::now() + RETRY_DELAY;
                bump(&self.shared.counters.sync_errors);
                tracing::warn!(error = %e, "resync failed; will retry");
            }
        }
    }

    /// The snapshot plus every delta after it in the stream, and the sequence of the
    /// last log message read.
    async fn load(&self) -> Result<(Filter, u64), SyncError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        loop {
            let (mut filter, mut seq) = self.load_snapshot().await?;
            let StreamBounds { first, last } = self.store.bounds().await?;
            if seq + 1 < first && seq < last {
                // The publisher snapshots far more often than the stream ages out;
                // a newer snapshot is on its way.
                if backoff.attempts() + 1 >= SNAPSHOT_ATTEMPTS {
                    return Err(SyncError::SnapshotTooOld {
                        snapshot: seq,
                        first,
                    });
                }
                backoff.wait().await;
                continue;
            }
            replay(
                &self.store,
                &self.shared,
                &mut filter,
                &mut seq,
                last,
                &mut Recent::default(),
            )
            .await?;
            return Ok((filter, seq));
        }
    }

    async fn load_snapshot(&self) -> Result<(Filter, u64), SyncError> {
        let read = match self.store.snapshot().await {
            Ok(Some(read)) => read,
            Ok(None) => return Err(SyncError::NoSnapshot),
            Err(e) => {
                if let Some(error) = e.decode_error() {
                    self.reject("snapshot", error);
                }
                return Err(e.into());
            }
        };
        bump_bytes(&self.shared, read.bytes);
        let seq = read.snapshot.log_seq;
        let filter =
            Filter::from_state(read.snapshot.state).map_err(|source| SyncError::Filter {
                what: "snapshot",
                source,
            })?;
        bump(&self.shared.counters.snapshots_loaded);
        tracing::debug!(
            version = filter.version(),
            bytes = read.bytes,
            "loaded snapshot"
        );
        Ok((filter, seq))
    }
}

fn bump_bytes(shared: &Shared, n: usize) {
    shared.counters.bytes_received.fetch_add(n as u64, Relaxed);
}

/// A delta that revokes a `jti` evicts any cached answer about it.
fn evict_named(shared: &Shared, delta: &Delta) {
    if shared.cache.is_empty() {
        return;
    }
    for change in &delta.changes {
        if let Change::Add { jti, .. } = change {
            shared.cache.evict(jti);
        }
    }
}

/// Reads log messages `*seq + 1 ..= last` into `filter`, moving `seq` past each: the
/// next delta applies, anything else (garbage, another key, a copy of an old delta,
/// another epoch) is skipped and counted; a delta after a missing one is an error
/// (the caller resyncs). Returns whether a delta of the filter's epoch was read (one
/// it held already, or the next): the place in the log where the filter stands.
async fn replay(
    store: &revocast_nats::Store,
    shared: &Shared,
    filter: &mut Filter,
    seq: &mut u64,
    last: u64,
    recent: &mut Recent,
) -> Result<bool, SyncError> {
    let mut placed = false;
    let mut replay = store.replay(*seq + 1..=last).await?;
    while let Some(entry) = replay.next().await {
        let entry = entry?;
        let stored = match entry {
            LogEntry::Delta(stored) => stored,
            LogEntry::Skipped { seq: at, reason } => {
                *seq = at;
                let n = shared.counters.reject(reason.reason());
                if n == 1 || n.is_power_of_two() {
                    tracing::warn!(seq = at, reason = reason.reason(), %reason, count = n, "skipped a log message that does not verify");
                }
                continue;
            }
        };
        bump_bytes(shared, stored.payload.len());
        let print = fingerprint(&stored.payload);
        match filter.succession(&stored.delta) {
            Succession::Next => {}
            Succession::Applied => {
                if recent.conflicts(stored.delta.version, print) {
                    return Err(SyncError::Conflict {
                        version: stored.delta.version,
                    });
                }
                placed = true;
                *seq = stored.seq;
                shared.counters.reject("replayed");
                continue;
            }
            Succession::OtherEpoch => {
                *seq = stored.seq;
                shared.counters.reject("other_epoch");
                continue;
            }
            Succession::Ahead => {
                return Err(SyncError::LogGap {
                    seq: stored.seq,
                    version: stored.delta.version,
                    have: filter.version(),
                });
            }
        }
        filter
            .apply(&stored.delta)
            .map_err(|source| SyncError::Filter {
                what: "stored delta",
                source,
            })?;
        placed = true;
        *seq = stored.seq;
        recent.insert(stored.delta.version, print);
        bump(&shared.counters.deltas_applied);
        bump(&shared.counters.deltas_from_stream);
        evict_named(shared, &stored.delta);
        follow_rollovers(shared, store.verifier(), &stored.delta);
    }
    Ok(placed)
}

/// Follows the key rollovers of an applied delta, before the next message is read:
/// the publisher signs everything after a rollover with the new key.
fn follow_rollovers(shared: &Shared, verifier: &Verifier, delta: &Delta) {
    for change in &delta.changes {
        let Change::Rollover(rollover) = change else {
            continue;
        };
        match verifier.follow(rollover) {
            Ok(Followed::Trusted(key)) => {
                bump(&shared.counters.rollovers_followed);
                tracing::info!(
                    public_key = %key,
                    rollover = rollover.rollover.index,
                    overlap_ms = rollover.rollover.overlap_ms,
                    "the publisher rotated its key; following the rollover"
                );
            }
            Ok(Followed::Refused(key)) => {
                bump(&shared.counters.rollovers_refused);
                tracing::error!(
                    public_key = %key,
                    rollover = rollover.rollover.index,
                    "the publisher rotated to a key this pin-only replica does not pin: \
                     it goes stale once the old key's overlap ends; pin the new key if \
                     the rotation is yours"
                );
            }
            Ok(Followed::Known | Followed::Unrelated) => {}
            Err(error) => {
                bump(&shared.counters.sync_errors);
                tracing::error!(%error, version = delta.version, "a key rollover was refused");
            }
        }
    }
}

/// A delta's fingerprint: the start of its Ed25519 signature (the envelope's last 64
/// bytes), which differs between two deltas of the same version.
fn fingerprint(payload: &[u8]) -> u64 {
    let start = payload
        .len()
        .saturating_sub(revocast_core::wire::SIGNATURE_LEN);
    payload
        .get(start..start + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Fingerprints of the last [`RECENT_DELTAS`] deltas applied, by version.
#[derive(Debug, Default)]
struct Recent(BTreeMap<u64, u64>);

impl Recent {
    fn insert(&mut self, version: u64, fingerprint: u64) {
        self.0.insert(version, fingerprint);
        if self.0.len() > RECENT_DELTAS {
            self.0.pop_first();
        }
    }

    /// Whether a delta of `version` with `fingerprint` is another one than the delta
    /// of that version applied (unknown versions never conflict).
    fn conflicts(&self, version: u64, fingerprint: u64) -> bool {
        self.0.get(&version).is_some_and(|&f| f != fingerprint)
    }
}
