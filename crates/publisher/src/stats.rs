//! [`Counters`]: what the publisher did, live, as a plain struct of atomics that every
//! task updates. `GET /v1/stats` copies them into the JSON answer
//! ([`revocast_core::http::PublisherStats`]) and `GET /metrics` renders them as
//! Prometheus text. (The subscriber names its own the same way: `Counters` live,
//! `Stats` the copy.)

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use revocast_core::FilterStats;
use revocast_core::http::{ConfirmCounts, PublishedCounts, RevocationCounts, SnapshotCounts};
use revocast_core::wire::FORMAT_VERSION;
use revocast_nats::store::MAX_SNAPSHOT_BYTES;

use crate::state::Shared;

/// Live event counters. Every field only grows, except the `last_*` ones.
#[derive(Debug)]
pub(crate) struct Counters {
    /// Revocations that added an entry.
    pub(crate) revocations_added: AtomicU64,
    /// Revocations of a `jti` that was already revoked.
    pub(crate) revocations_duplicate: AtomicU64,
    /// Revocations of an already expired token (answered as a no-op).
    pub(crate) revocations_expired: AtomicU64,
    /// Cutoffs committed.
    pub(crate) cutoffs_set: AtomicU64,
    /// Deltas stored in JetStream.
    pub(crate) deltas_published: AtomicU64,
    /// Bytes of all deltas stored.
    pub(crate) delta_bytes: AtomicU64,
    /// When the last delta was stored, unix milliseconds.
    pub(crate) last_delta_at_ms: AtomicU64,
    /// Size of the last delta, bytes.
    pub(crate) last_delta_bytes: AtomicU64,
    /// Commits whose outcome needed reading the stream back.
    pub(crate) commits_reconciled: AtomicU64,
    /// Commits answered with an error (nothing stored).
    pub(crate) commits_failed: AtomicU64,
    /// Log messages that are not this publisher's next delta, skipped.
    pub(crate) log_messages_skipped: AtomicU64,
    /// Snapshots written.
    pub(crate) snapshots_published: AtomicU64,
    pub(crate) snapshots_refused: AtomicU64,
    pub(crate) expiries_clamped: AtomicU64,
    /// Signing key rotations done by this process.
    pub(crate) key_rotations: AtomicU64,
    pub(crate) snapshot_limit_bytes: AtomicU64,
    /// When the last snapshot was written, unix milliseconds.
    pub(crate) last_snapshot_at_ms: AtomicU64,
    /// Size of the last snapshot, bytes.
    pub(crate) last_snapshot_bytes: AtomicU64,
    /// Version of the last snapshot.
    pub(crate) last_snapshot_version: AtomicU64,
    /// Heartbeats sent.
    pub(crate) heartbeats_sent: AtomicU64,
    /// Confirms answered "revoked".
    pub(crate) confirms_revoked: AtomicU64,
    /// Confirms answered "not revoked": the filter hits that were false positives.
    pub(crate) confirms_not_revoked: AtomicU64,
    /// Confirm requests that did not decode.
    pub(crate) confirms_malformed: AtomicU64,
    /// API requests refused as client mistakes (4xx).
    pub(crate) requests_rejected: AtomicU64,
    /// Tokens given to the OAuth endpoints that were not JWTs or did not verify
    /// (answered as RFC 7009 and RFC 7662 say: 200, nothing revoked or inactive).
    pub(crate) oauth_invalid_tokens: AtomicU64,
    /// Back-channel logouts applied (subject cutoffs committed).
    pub(crate) logouts_applied: AtomicU64,
    /// Back-channel logout requests refused (invalid, replayed, untrusted).
    pub(crate) logouts_refused: AtomicU64,
    /// Shared Signals events applied (subject cutoffs committed).
    pub(crate) ssf_events_applied: AtomicU64,
    /// Shared Signals events of types revocast does not apply (accepted, counted).
    pub(crate) ssf_events_ignored: AtomicU64,
    /// Security event tokens refused (RFC 8935 400 answers).
    pub(crate) ssf_sets_refused: AtomicU64,
    /// Time from the start of a commit to the JetStream ack.
    pub(crate) commit_seconds: Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            revocations_added: AtomicU64::new(0),
            revocations_duplicate: AtomicU64::new(0),
            revocations_expired: AtomicU64::new(0),
            cutoffs_set: AtomicU64::new(0),
            deltas_published: AtomicU64::new(0),
            delta_bytes: AtomicU64::new(0),
            last_delta_at_ms: AtomicU64::new(0),
            last_delta_bytes: AtomicU64::new(0),
            commits_reconciled: AtomicU64::new(0),
            log_messages_skipped: AtomicU64::new(0),
            commits_failed: AtomicU64::new(0),
            snapshots_published: AtomicU64::new(0),
            snapshots_refused: AtomicU64::new(0),
            expiries_clamped: AtomicU64::new(0),
            key_rotations: AtomicU64::new(0),
            snapshot_limit_bytes: AtomicU64::new(0),
            last_snapshot_at_ms: AtomicU64::new(0),
            last_snapshot_bytes: AtomicU64::new(0),
            last_snapshot_version: AtomicU64::new(0),
            heartbeats_sent: AtomicU64::new(0),
            confirms_revoked: AtomicU64::new(0),
            confirms_not_revoked: AtomicU64::new(0),
            confirms_malformed: AtomicU64::new(0),
            requests_rejected: AtomicU64::new(0),
            oauth_invalid_tokens: AtomicU64::new(0),
            logouts_applied: AtomicU64::new(0),
            logouts_refused: AtomicU64::new(0),
            ssf_events_applied: AtomicU64::new(0),
            ssf_events_ignored: AtomicU64::new(0),
            ssf_sets_refused: AtomicU64::new(0),
            commit_seconds: Histogram::new([
                0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        }
    }
}

pub(crate) fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn set(counter: &AtomicU64, n: u64) {
    counter.store(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn revocations(&self) -> RevocationCounts {
        RevocationCounts {
            added: get(&self.revocations_added),
            duplicates: get(&self.revocations_duplicate),
            expired: get(&self.revocations_expired),
            cutoffs: get(&self.cutoffs_set),
            requests_rejected: get(&self.requests_rejected),
        }
    }

    pub(crate) fn deltas(&self) -> PublishedCounts {
        PublishedCounts {
            count: get(&self.deltas_published),
            bytes: get(&self.delta_bytes),
            last_at_ms: get(&self.last_delta_at_ms),
            last_bytes: get(&self.last_delta_bytes),
            reconciled: get(&self.commits_reconciled),
            failed: get(&self.commits_failed),
        }
    }

    pub(crate) fn snapshots(&self) -> SnapshotCounts {
        SnapshotCounts {
            count: get(&self.snapshots_published),
            last_at_ms: get(&self.last_snapshot_at_ms),
            last_bytes: get(&self.last_snapshot_bytes),
            last_version: get(&self.last_snapshot_version),
            limit_bytes: get(&self.snapshot_limit_bytes),
            refused: get(&self.snapshots_refused),
        }
    }

    pub(crate) fn confirms(&self) -> ConfirmCounts {
        ConfirmCounts {
            revoked: get(&self.confirms_revoked),
            not_revoked: get(&self.confirms_not_revoked),
            malformed: get(&self.confirms_malformed),
        }
    }
}

type Labels = Vec<(String, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g: Gauge<f64, AtomicU64> = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn labelled(registry: &mut Registry, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
    let family: Family<Labels, Counter> = Family::default();
    for (value, n) in values {
        family
            .get_or_create(&vec![(label.to_owned(), (*value).to_owned())])
            .inc_by(*n);
    }
    registry.register(name, help, family);
}

/// What `/metrics` shows besides the counters: figures read from the ledger.
#[derive(Debug)]
pub(crate) struct Gauges {
    pub(crate) namespace: String,
    pub(crate) ready: bool,
    pub(crate) connected: bool,
    pub(crate) records: u64,
    pub(crate) filter: FilterStats,
    pub(crate) uptime_seconds: f64,
}

impl Gauges {
    /// Reads the gauges of a running publisher (holds the ledger's read lock briefly).
    pub(crate) fn read(shared: &Shared) -> Gauges {
        let ledger = shared.ledger();
        Gauges {
            namespace: shared.config.namespace.to_string(),
            ready: shared.is_ready(),
            connected: shared.nats_state() == "connected",
            records: ledger.records.len() as u64,
            filter: ledger.filter.stats(),
            uptime_seconds: shared.started.elapsed().as_secs_f64(),
        }
    }
}

/// A gauge family with one label, one sample per value.
fn labelled_gauges(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (String, f64)>,
) {
    let family: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
    for (value, n) in values {
        family
            .get_or_create(&vec![(label.to_owned(), value)])
            .set(n);
    }
    registry.register(name, help, family);
}

/// Prometheus text exposition of the stats and gauges.
pub(crate) fn render_metrics(stats: &Counters, g: &Gauges) -> String {
    let mut r = Registry::default();
    let revocations = stats.revocations();
    labelled(
        &mut r,
        "revocast_revocations",
        "Revocations received, by outcome",
        "outcome",
        &[
            ("added", revocations.added),
            ("duplicate", revocations.duplicates),
            ("expired", revocations.expired),
        ],
    );
    counter(
        &mut r,
        "revocast_cutoffs",
        "Cutoffs committed",
        revocations.cutoffs,
    );
    counter(
        &mut r,
        "revocast_requests_rejected",
        "API requests refused as client mistakes",
        revocations.requests_rejected,
    );
    counter(
        &mut r,
        "revocast_key_rotations",
        "Signing key rotations done by this publisher process",
        get(&stats.key_rotations),
    );
    counter(
        &mut r,
        "revocast_oauth_invalid_tokens",
        "Tokens given to /oauth/revoke or /oauth/introspect that did not verify",
        get(&stats.oauth_invalid_tokens),
    );
    labelled(
        &mut r,
        "revocast_backchannel_logouts",
        "OpenID Connect back-channel logout requests, by outcome",
        "outcome",
        &[
            ("applied", get(&stats.logouts_applied)),
            ("refused", get(&stats.logouts_refused)),
        ],
    );
    labelled(
        &mut r,
        "revocast_ssf_events",
        "Shared Signals events received in valid SETs, by outcome",
        "outcome",
        &[
            ("applied", get(&stats.ssf_events_applied)),
            ("ignored", get(&stats.ssf_events_ignored)),
        ],
    );
    counter(
        &mut r,
        "revocast_ssf_sets_refused",
        "Security event tokens refused (invalid, unauthenticated, untrusted)",
        get(&stats.ssf_sets_refused),
    );
    let deltas = stats.deltas();
    counter(
        &mut r,
        "revocast_deltas_published",
        "Deltas stored in JetStream",
        deltas.count,
    );
    counter(
        &mut r,
        "revocast_delta_bytes",
        "Bytes of deltas stored",
        deltas.bytes,
    );
    counter(
        &mut r,
        "revocast_commits_reconciled",
        "Commits whose outcome was learned by reading the stream back",
        deltas.reconciled,
    );
    counter(
        &mut r,
        "revocast_log_messages_skipped",
        "Log messages that are not this publisher's next delta (garbage, another key, \
         copies of old deltas, another epoch), skipped",
        get(&stats.log_messages_skipped),
    );
    counter(
        &mut r,
        "revocast_expiries_clamped",
        "Expiries done at the time the publisher can vouch for, because its clock was \
         ahead of it",
        get(&stats.expiries_clamped),
    );
    counter(
        &mut r,
        "revocast_commits_failed",
        "Commits answered with an error",
        deltas.failed,
    );
    let snapshots = stats.snapshots();
    counter(
        &mut r,
        "revocast_snapshots_published",
        "Snapshots written",
        snapshots.count,
    );
    gauge(
        &mut r,
        "revocast_last_snapshot_bytes",
        "Size of the last snapshot",
        snapshots.last_bytes as f64,
    );
    gauge(
        &mut r,
        "revocast_snapshot_limit_bytes",
        "Largest snapshot written or read",
        snapshots.limit_bytes as f64,
    );
    counter(
        &mut r,
        "revocast_snapshots_refused",
        "Snapshots not written because they were over the limit",
        snapshots.refused,
    );
    counter(
        &mut r,
        "revocast_heartbeats_sent",
        "Heartbeats sent",
        get(&stats.heartbeats_sent),
    );
    let confirms = stats.confirms();
    labelled(
        &mut r,
        "revocast_confirms",
        "Confirm requests answered, by answer (not_revoked = filter false positives)",
        "answer",
        &[
            ("revoked", confirms.revoked),
            ("not_revoked", confirms.not_revoked),
            ("malformed", confirms.malformed),
        ],
    );
    r.register(
        "revocast_commit_seconds",
        "Time from the start of a group commit to the JetStream ack",
        stats.commit_seconds.clone(),
    );
    gauge(
        &mut r,
        "revocast_ready",
        "1 once state is loaded",
        f64::from(u8::from(g.ready)),
    );
    gauge(
        &mut r,
        "revocast_nats_connected",
        "1 while connected to NATS",
        f64::from(u8::from(g.connected)),
    );
    gauge(
        &mut r,
        "revocast_filter_version",
        "Filter version",
        g.filter.version as f64,
    );
    gauge(
        &mut r,
        "revocast_live_entries",
        "Entries in live buckets",
        g.filter.live_entries as f64,
    );
    gauge(
        &mut r,
        "revocast_records",
        "Exact revocation records held",
        g.records as f64,
    );
    gauge(
        &mut r,
        "revocast_filter_bitmap_bytes",
        "Bytes of Bloom bitmaps",
        g.filter.bitmap_bytes as f64,
    );
    gauge(
        &mut r,
        "revocast_subject_cutoffs",
        "Subject cutoffs held",
        g.filter.subject_cutoffs as f64,
    );
    gauge(
        &mut r,
        "revocast_filter_target_fpr",
        "Target false-positive rate of a check",
        g.filter.target_fpr,
    );
    gauge(
        &mut r,
        "revocast_filter_estimated_fpr",
        "Estimated false-positive rate of the worst bucket (a check with exp)",
        g.filter.estimated_fpr,
    );
    // Buckets are named by their first exp (unix seconds): a handful of live ones,
    // each replaced by the next as time passes.
    labelled_gauges(
        &mut r,
        "revocast_bucket_estimated_fpr",
        "Estimated false-positive rate of a check with an exp in this bucket",
        "bucket",
        g.filter
            .buckets
            .iter()
            .map(|b| (b.exp_from.to_string(), b.estimated_fpr)),
    );
    labelled_gauges(
        &mut r,
        "revocast_bucket_entries",
        "Entries in this expiry bucket",
        "bucket",
        g.filter
            .buckets
            .iter()
            .map(|b| (b.exp_from.to_string(), b.entries as f64)),
    );
    gauge(
        &mut r,
        "revocast_snapshot_limit_bytes",
        "Largest snapshot a replica accepts: past it, new replicas cannot start",
        MAX_SNAPSHOT_BYTES as f64,
    );
    let info: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
    info.get_or_create(&vec![
        ("namespace".to_owned(), g.namespace.clone()),
        ("format_version".to_owned(), FORMAT_VERSION.to_string()),
    ])
    .set(1.0);
    r.register(
        "revocast_publisher_info",
        "1, labelled with the namespace and the wire format version this build writes",
        info,
    );
    gauge(
        &mut r,
        "revocast_uptime_seconds",
        "Seconds since start",
        g.uptime_seconds,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}
