//! Prometheus metrics of replicas (feature `metrics`, on by default), read from
//! [`crate::Subscriber::stats`] at scrape time: nothing is counted twice and nothing
//! runs between scrapes.
//!
//! Every sample carries the label `namespace`; `revocast_replica_rejected_messages_total`
//! also carries `reason` (see [`crate::Stats::rejected_messages`]).
//!
//! | metric | type | meaning |
//! | --- | --- | --- |
//! | `revocast_replica_ready` | gauge | 1 once the bootstrap finished |
//! | `revocast_replica_stale` | gauge | 1 while past `max_staleness` |
//! | `revocast_replica_staleness_seconds` | gauge | seconds since last known in sync (absent before ready) |
//! | `revocast_replica_version` | gauge | the replica's filter version |
//! | `revocast_replica_publisher_version` | gauge | the publisher's version in its last heartbeat |
//! | `revocast_replica_live_entries` | gauge | entries in live buckets |
//! | `revocast_replica_filter_bytes` | gauge | bytes of Bloom bitmaps |
//! | `revocast_replica_checks_total` | counter | checks that reached the filter |
//! | `revocast_replica_filter_hits_total` | counter | checks the filter holds |
//! | `revocast_replica_confirms_total` | counter | questions sent to the authority |
//! | `revocast_replica_confirm_errors_total` | counter | authority calls that failed |
//! | `revocast_replica_stale_checks_total` | counter | checks made while not ready or stale |
//! | `revocast_replica_digest_mismatches_total` | counter | heartbeats whose digest disagreed |
//! | `revocast_replica_resyncs_total` | counter | full reloads after the bootstrap |
//! | `revocast_replica_gaps_repaired_total` | counter | catch-ups from the stream |
//! | `revocast_replica_rejected_messages_total` | counter | messages dropped, by `reason` |
//! | `revocast_replica_rollovers_followed_total` | counter | key rollovers followed |
//! | `revocast_replica_rollovers_refused_total` | counter | key rollovers refused (pin-only) |
//!
//! ```no_run
//! # fn example(subscriber: &revocast_subscriber::Subscriber) {
//! let mut registry = prometheus_client::registry::Registry::default();
//! revocast_subscriber::metrics::register(&mut registry, subscriber);
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String");
//! # }
//! ```

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::stats::Stats;
use crate::subscriber::Subscriber;

/// Registers the metrics of one replica.
///
/// For several replicas behind one registry, use [`register_all`]: one collector for
/// all of them, so each metric family is described once.
pub fn register(registry: &mut Registry, subscriber: &Subscriber) {
    register_all(registry, std::slice::from_ref(subscriber));
}

/// Registers the metrics of several replicas (one `namespace` label value each).
pub fn register_all(registry: &mut Registry, subscribers: &[Subscriber]) {
    registry.register_collector(Box::new(ReplicaCollector {
        subscribers: subscribers.to_vec(),
    }));
}

/// Reads the replicas' [`Stats`] on each scrape.
#[derive(Debug)]
struct ReplicaCollector {
    subscribers: Vec<Subscriber>,
}

type Gauge = (&'static str, &'static str, fn(&Stats) -> Option<f64>);
type Counter = (&'static str, &'static str, fn(&Stats) -> u64);

fn flag(on: bool) -> Option<f64> {
    Some(if on { 1.0 } else { 0.0 })
}

const GAUGES: &[Gauge] = &[
    (
        "revocast_replica_ready",
        "1 once the replica finished its bootstrap.",
        |s| flag(s.ready),
    ),
    (
        "revocast_replica_stale",
        "1 while the replica is past max_staleness (the staleness policy applies).",
        |s| flag(s.stale),
    ),
    (
        "revocast_replica_staleness_seconds",
        "Seconds since the replica last knew itself in sync (absent before ready).",
        |s| s.staleness_seconds,
    ),
    (
        "revocast_replica_version",
        "The replica's filter version.",
        |s| Some(s.version as f64),
    ),
    (
        "revocast_replica_publisher_version",
        "The publisher's filter version in its last valid heartbeat.",
        |s| Some(s.publisher_version as f64),
    ),
    (
        "revocast_replica_live_entries",
        "Entries in live buckets of the replica's filter.",
        |s| Some(s.live_entries as f64),
    ),
    (
        "revocast_replica_filter_bytes",
        "Bytes of Bloom bitmaps in the replica's filter.",
        |s| Some(s.filter_bytes as f64),
    ),
];

/// Counter names without `_total`: the encoder appends it.
const COUNTERS: &[Counter] = &[
    (
        "revocast_replica_checks",
        "Checks that reached the filter.",
        |s| s.checks,
    ),
    (
        "revocast_replica_filter_hits",
        "Checks whose jti the Bloom filter holds.",
        |s| s.filter_hits,
    ),
    (
        "revocast_replica_confirms",
        "Questions sent to the authority.",
        |s| s.confirms,
    ),
    (
        "revocast_replica_confirm_errors",
        "Authority calls that failed or timed out.",
        |s| s.confirm_errors,
    ),
    (
        "revocast_replica_stale_checks",
        "Checks made while the replica was not ready or stale.",
        |s| s.stale_checks,
    ),
    (
        "revocast_replica_digest_mismatches",
        "Heartbeats whose digest disagreed at the same version.",
        |s| s.digest_mismatches,
    ),
    (
        "revocast_replica_resyncs",
        "Full reloads from the snapshot after the bootstrap.",
        |s| s.resyncs,
    ),
    (
        "revocast_replica_gaps_repaired",
        "Catch-ups from the stream after a gap, a heartbeat ahead or a reconnect.",
        |s| s.gaps_repaired,
    ),
    (
        "revocast_replica_rollovers_followed",
        "Key rollovers followed: the replica trusts the publisher's new key.",
        |s| s.rollovers_followed,
    ),
    (
        "revocast_replica_rollovers_refused",
        "Key rollovers refused by a pin-only replica (the new key is not pinned).",
        |s| s.rollovers_refused,
    ),
];

impl Collector for ReplicaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all: Vec<Stats> = self.subscribers.iter().map(Subscriber::stats).collect();
        for (name, help, value) in GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for stats in &all {
                if let Some(v) = value(stats) {
                    let labels = [("namespace", stats.namespace.as_str())];
                    ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        for (name, help, value) in COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for stats in &all {
                let labels = [("namespace", stats.namespace.as_str())];
                ConstCounter::new(value(stats)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "revocast_replica_rejected_messages",
            "Messages dropped, by reason.",
            None,
            MetricType::Counter,
        )?;
        for stats in &all {
            for (reason, n) in &stats.rejected_messages {
                let labels = [
                    ("namespace", stats.namespace.as_str()),
                    ("reason", reason.as_str()),
                ];
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
