//! Periodic work: heartbeats and snapshots.

use std::sync::Arc;

use revocast_core::{Heartbeat, Message};
use tokio::sync::{Notify, watch};

use crate::nats::{self, Storage};
use crate::state::Shared;
use crate::stats;

/// Publishes a signed heartbeat every `heartbeat_interval` until `stop`.
pub(crate) async fn heartbeats(
    shared: Arc<Shared>,
    client: async_nats::Client,
    mut stop: watch::Receiver<bool>,
) {
    let subject = shared.config.namespace.heartbeat_subject();
    let mut tick = tokio::time::interval(shared.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beat = 0;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        beat += 1;
        // After the live copy of the version it announces (see `Shared::live`).
        let live = shared.live.lock().await;
        // The digest is computed once per version, outside the ledger lock.
        let filter = shared.filter();
        let beat = Heartbeat {
            epoch: filter.epoch(),
            version: filter.version(),
            beat,
            time_ms: shared.now_ms(),
            digest: filter.digest(),
        };
        drop(filter);
        let bytes = shared.signer().encode(&Message::Heartbeat(beat));
        match client.publish(subject.clone(), bytes.into()).await {
            Ok(()) => stats::add(&shared.counters.heartbeats_sent, 1),
            Err(e) => tracing::debug!(error = %e, "heartbeat not sent"),
        }
        drop(live);
    }
}

/// Writes the current filter as the snapshot object unless the last snapshot already
/// has this version. Returns whether one was written.
pub(crate) async fn write_snapshot(
    shared: &Shared,
    storage: &Storage,
) -> Result<bool, crate::Error> {
    let (version, log_seq, state) = {
        let (filter, log_seq) = {
            let ledger = shared.ledger();
            (ledger.filter.clone(), ledger.seq)
        };
        let version = filter.version();
        if stats::get(&shared.counters.snapshots_published) > 0
            && stats::get(&shared.counters.last_snapshot_version) == version
        {
            return Ok(false);
        }
        // Copy, encode and sign outside the ledger lock.
        (version, log_seq, filter.to_state())
    };
    let bytes = nats::encode_snapshot(&shared.signer(), state, log_seq, shared.now_ms());
    if !nats::within_snapshot_limit(&shared.config, bytes.len()) {
        stats::add(&shared.counters.snapshots_refused, 1);
        return Ok(false);
    }
    nats::put_snapshot(&storage.objects, &bytes).await?;
    record_snapshot(shared, version, bytes.len() as u64);
    tracing::debug!(version, bytes = bytes.len(), "snapshot written");
    Ok(true)
}

pub(crate) fn record_snapshot(shared: &Shared, version: u64, bytes: u64) {
    let s = &shared.counters;
    stats::add(&s.snapshots_published, 1);
    stats::set(&s.last_snapshot_version, version);
    stats::set(&s.last_snapshot_bytes, bytes);
    stats::set(&s.last_snapshot_at_ms, shared.now_ms());
}

/// Writes a snapshot every `snapshot_interval`, or when the writer says enough deltas
/// piled up, until `stop`.
pub(crate) async fn snapshots(
    shared: Arc<Shared>,
    storage: Storage,
    due: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(shared.config.snapshot_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
            _ = due.notified() => {}
        }
        if let Err(e) = write_snapshot(&shared, &storage).await {
            tracing::warn!(error = %e, "snapshot not written; will retry");
        }
    }
}
