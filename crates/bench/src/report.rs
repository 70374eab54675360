//! Every figure of a run ([`Results`], written as JSON) and the Markdown tables
//! printed from it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::machine::Machine;
use crate::measure::{Percentiles, Spread};
use crate::options::Options;

/// Everything a run measured.
#[derive(Debug, Serialize)]
pub struct Results {
    /// Where it ran.
    pub machine: Machine,
    /// How it was asked to run (after `--quick`).
    pub options: Options,
    /// What could not be measured, and why.
    pub notes: Vec<String>,
    /// Per-size figures (checks, authority load, memory, cold start, bulk ingest).
    pub sizes: Vec<SizeResults>,
    /// Propagation by number of replicas.
    pub propagation: Vec<PropagationRow>,
    /// Concurrent single revocations.
    pub singles: Option<SinglesIngest>,
}

/// Figures at one number of live revocations.
#[derive(Debug, Default, Serialize)]
pub struct SizeResults {
    /// Live revocations.
    pub live_entries: u64,
    /// `/proc/loadavg` before the checks ran (other work on the shared machine).
    pub load_average: String,
    /// Loading them in bulk calls.
    pub bulk_ingest: Option<BulkIngest>,
    /// Publisher restart (final snapshot, then load it and the stream) to ready, ms.
    pub publisher_restart_ms: Option<f64>,
    /// Bytes of the signed snapshot a new replica downloads.
    pub snapshot_bytes: Option<u64>,
    /// New replica, connect to ready, ms.
    pub cold_start_ms: Option<Spread>,
    /// Memory per replica.
    pub memory: Option<MemoryRow>,
    /// Checks per second by method.
    pub checks: Vec<CheckRow>,
    /// Confirming calls on non-revoked tokens.
    pub authority: Option<AuthorityRow>,
}

/// Durable bulk ingest while loading a size.
#[derive(Debug, Serialize)]
pub struct BulkIngest {
    /// Revocations per bulk call.
    pub per_call: u64,
    /// Bulk calls in flight.
    pub concurrency: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Durable revocations per second (retries included).
    pub per_second: f64,
    /// Calls answered 503 (not durable within the commit timeout) and retried.
    pub retried_calls: u64,
}

/// Concurrent single revocations, one per call.
#[derive(Debug, Serialize)]
pub struct SinglesIngest {
    /// Calls in flight.
    pub concurrency: usize,
    /// Revocations per run.
    pub per_run: u64,
    /// Durable revocations per second, per run.
    pub per_second: Spread,
    /// Call latency over every run.
    pub latency: Percentiles,
}

/// Memory of one replica holding the set.
#[derive(Debug, Default, Serialize)]
pub struct MemoryRow {
    /// Target false-positive rate.
    pub target_fpr: f64,
    /// Bloom bitmaps of the replica (`Stats::filter_bytes`).
    pub revocast_filter_bytes: u64,
    /// Heap bytes a new replica kept after becoming ready (counting allocator: the
    /// filter, its index, the NATS client and the sync task).
    pub revocast_replica_heap_bytes: i64,
    /// `filter_bytes * 8 / live entries`.
    pub revocast_bits_per_entry: f64,
    /// `1.44 * log2(1 / target_fpr)`: a perfectly sized Bloom filter.
    pub optimal_bits_per_entry: f64,
    /// Every live bucket, as the publisher sized and grew it.
    pub buckets: Vec<BucketRow>,
    /// Heap bytes of a `HashSet<String>` of the same jtis (counting allocator:
    /// requested bytes, without the allocator's own overhead).
    pub hashset_heap_bytes: Option<i64>,
    /// Redis `used_memory` with the set loaded minus an empty server's.
    pub redis_used_memory_bytes: Option<u64>,
}

/// One expiry bucket of the filter.
#[derive(Debug, Serialize)]
pub struct BucketRow {
    /// Entries.
    pub entries: u64,
    /// Layers: 1 when the bucket was opened at the right size, more when it grew.
    pub layers: usize,
    /// Bits (all layers) per entry.
    pub bits_per_entry: f64,
}

impl MemoryRow {
    /// Bits per entry over the buckets that needed one layer (sized from what earlier
    /// buckets held: the steady state), or `None` when every bucket grew.
    pub fn single_layer_bits_per_entry(&self) -> Option<f64> {
        let (bits, entries) = self
            .buckets
            .iter()
            .filter(|b| b.layers == 1)
            .fold((0.0, 0u64), |(bits, n), b| {
                (bits + b.bits_per_entry * b.entries as f64, n + b.entries)
            });
        (entries > 0).then(|| bits / entries as f64)
    }

    /// `(buckets, of which grown beyond one layer)`.
    pub fn bucket_counts(&self) -> (usize, usize) {
        (
            self.buckets.len(),
            self.buckets.iter().filter(|b| b.layers > 1).count(),
        )
    }
}

/// Throughput of one check method.
#[derive(Debug, Serialize)]
pub struct CheckRow {
    /// What was measured.
    pub method: String,
    /// Checks per second, per run.
    pub per_second: Spread,
    /// Median over revocast's median (warm cache).
    pub ratio_to_revocast: f64,
    /// Checks of the last run.
    pub checks: u64,
    /// Of which answered "revoked" (a sanity check against `expected_revoked`).
    pub revoked: u64,
    /// Revoked tokens among the checks of the last run.
    pub expected_revoked: u64,
    /// Failed checks over every run (authority timeouts).
    pub errors: u64,
}

/// Confirming calls on tokens that are not revoked.
#[derive(Debug, Serialize)]
pub struct AuthorityRow {
    /// Checks of distinct non-revoked tokens.
    pub checks: u64,
    /// Filter hits (each one a false positive).
    pub filter_hits: u64,
    /// Calls to the authority.
    pub confirms: u64,
    /// Confirms per 1,000,000 checks.
    pub confirms_per_million: f64,
    /// What the target rate allows per 1,000,000 checks.
    pub target_per_million: f64,
    /// The publisher's own estimate of the worst bucket's rate.
    pub estimated_fpr: f64,
    /// Checks per second of this run (confirms included).
    pub checks_per_second: f64,
    /// Accepted verdicts (`checks` minus `errors`).
    pub accepted: u64,
    /// Checks whose confirming call failed or timed out.
    pub errors: u64,
}

/// Propagation to N replicas.
#[derive(Debug, Serialize)]
pub struct PropagationRow {
    /// Replicas asked for.
    pub replicas: usize,
    /// Worker processes they ran in.
    pub processes: usize,
    /// Replicas that connected and became ready (each its own NATS connection).
    pub ready: usize,
    /// Time to connect and bootstrap them all, seconds.
    pub setup_seconds: f64,
    /// Revoke call answered -> the last replica holds it (0 when every replica had it
    /// before the answer arrived).
    pub all_after_answer: Percentiles,
    /// Revoke call sent -> the last replica holds it.
    pub all_after_call: Percentiles,
    /// Revoke call sent -> answered (durable in JetStream).
    pub call: Percentiles,
    /// Revocations not seen by every replica within the bound.
    pub timeouts: usize,
    /// CPU time one delta cost each replica (receive, verify, decode, apply), in
    /// microseconds: the worker processes' CPU while the revocations ran, minus their
    /// idle rate (heartbeats, timers), per delta and replica.
    pub cpu_per_delta_per_replica_us: f64,
    /// The same for the whole fleet, in milliseconds of CPU per delta.
    pub fleet_cpu_per_delta_ms: f64,
    /// CPU the idle fleet used, in cores.
    pub idle_cpu_share: f64,
    /// How often the replicas read the log instead of the live subject once ready:
    /// 0 when every delta reached every replica live.
    #[serde(default)]
    pub synced: crate::fleet::Synced,
    /// `/proc/loadavg` when the replicas were ready.
    pub load_average: String,
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / f64::from(1u32 << 20))
}

fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M/s", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1} k/s", per_second / 1e3)
    } else {
        format!("{per_second:.0} /s")
    }
}

impl Results {
    /// The Markdown tables of every figure measured.
    pub fn tables(&self) -> String {
        let mut t = String::new();
        let runs = self.options.runs;
        let _ = writeln!(t, "Machine: {}", self.machine.summary());
        let _ = writeln!(
            t,
            "Timed figures: median of {runs} run(s) (min..max in brackets); the machine is shared."
        );
        for note in &self.notes {
            let _ = writeln!(t, "Note: {note}");
        }
        for size in &self.sizes {
            if size.checks.is_empty() {
                continue;
            }
            let _ = writeln!(
                t,
                "\n### Checks per second, one caller, {} live revocations\n",
                count(size.live_entries)
            );
            let _ = writeln!(
                t,
                "| method | checks/s (median) | min..max | ratio to revocast | revoked seen / expected |"
            );
            let _ = writeln!(t, "| --- | ---: | ---: | ---: | ---: |");
            for row in &size.checks {
                let _ = writeln!(
                    t,
                    "| {} | {} | {}..{} | {:.4} | {} / {} |",
                    row.method,
                    rate(row.per_second.median),
                    rate(row.per_second.min),
                    rate(row.per_second.max),
                    row.ratio_to_revocast,
                    count(row.revoked),
                    count(row.expected_revoked)
                );
                if row.errors > 0 {
                    let _ = writeln!(
                        t,
                        "| ^ of which failed (authority timeout) | {} | | | |",
                        count(row.errors)
                    );
                }
            }
        }
        if !self.propagation.is_empty() {
            let _ = writeln!(
                t,
                "\n### Propagation: revoke call answered -> every replica holds it\n"
            );
            let _ = writeln!(
                t,
                "| replicas (processes) | revocations | p50 | p99 | max | from call sent p50 / p99 | call p50 | CPU per delta per replica | fleet CPU per delta | idle fleet CPU | read from the log: deltas (catch-ups, resyncs) | setup |"
            );
            let _ = writeln!(
                t,
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            );
            for row in &self.propagation {
                let a = &row.all_after_answer;
                let _ = writeln!(
                    t,
                    "| {} ({}) | {}{} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} / {:.2} ms | {:.2} ms | {:.1} us | {:.2} ms | {:.2} cores | {} ({}, {}) | {:.1} s |",
                    row.replicas,
                    row.processes,
                    a.count,
                    if row.timeouts > 0 {
                        format!(" ({} timed out)", row.timeouts)
                    } else {
                        String::new()
                    },
                    a.p50_ms,
                    a.p99_ms,
                    a.max_ms,
                    row.all_after_call.p50_ms,
                    row.all_after_call.p99_ms,
                    row.call.p50_ms,
                    row.cpu_per_delta_per_replica_us,
                    row.fleet_cpu_per_delta_ms,
                    row.idle_cpu_share,
                    row.synced.deltas_from_log,
                    row.synced.gaps_repaired,
                    row.synced.resyncs,
                    row.setup_seconds
                );
            }
        }
        let authority: Vec<_> = self
            .sizes
            .iter()
            .filter_map(|s| s.authority.as_ref().map(|a| (s.live_entries, a)))
            .collect();
        if !authority.is_empty() {
            let _ = writeln!(
                t,
                "\n### Authority load: checks of tokens that are not revoked\n"
            );
            let _ = writeln!(
                t,
                "| live revocations | checks | filter hits | confirming calls | per 1,000,000 | target per 1,000,000 | publisher's estimated FPR |"
            );
            let _ = writeln!(t, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            for (live, a) in authority {
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {:.0} | {:.0} | {:.5} |",
                    count(live),
                    count(a.checks),
                    count(a.filter_hits),
                    count(a.confirms),
                    a.confirms_per_million,
                    a.target_per_million,
                    a.estimated_fpr
                );
            }
        }
        let memory: Vec<_> = self
            .sizes
            .iter()
            .filter_map(|s| s.memory.as_ref().map(|m| (s.live_entries, m)))
            .collect();
        if !memory.is_empty() {
            let _ = writeln!(t, "\n### Memory per replica\n");
            let _ = writeln!(
                t,
                "| live entries | revocast filter | bits/entry | single-layer buckets: bits/entry | optimal | buckets (grown) | revocast replica heap | HashSet<String> | bits/entry | Redis used_memory | bytes/entry |"
            );
            let _ = writeln!(
                t,
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            );
            for (live, m) in memory {
                let per = |b: f64| b * 8.0 / live.max(1) as f64;
                let set = m
                    .hashset_heap_bytes
                    .map_or("not measured".into(), |b| mib(b as f64));
                let set_bits = m
                    .hashset_heap_bytes
                    .map_or("-".into(), |b| format!("{:.0}", per(b as f64)));
                let redis = m
                    .redis_used_memory_bytes
                    .map_or("no redis-server".into(), |b| mib(b as f64));
                let redis_per = m.redis_used_memory_bytes.map_or("-".into(), |b| {
                    format!("{:.0}", b as f64 / live.max(1) as f64)
                });
                let (buckets, grown) = m.bucket_counts();
                let _ = writeln!(
                    t,
                    "| {} | {} | {:.1} | {} | {:.1} | {} ({}) | {} | {} | {} | {} | {} |",
                    count(live),
                    mib(m.revocast_filter_bytes as f64),
                    m.revocast_bits_per_entry,
                    m.single_layer_bits_per_entry()
                        .map_or("-".into(), |b| format!("{b:.1}")),
                    m.optimal_bits_per_entry,
                    buckets,
                    grown,
                    mib(m.revocast_replica_heap_bytes as f64),
                    set,
                    set_bits,
                    redis,
                    redis_per
                );
            }
        }
        let starts: Vec<_> = self
            .sizes
            .iter()
            .filter(|s| s.cold_start_ms.is_some() || s.bulk_ingest.is_some())
            .collect();
        if !starts.is_empty() {
            let _ = writeln!(t, "\n### Cold start and bulk ingest\n");
            let _ = writeln!(
                t,
                "| live entries | snapshot | replica connect -> ready (median) | min..max | publisher restart -> ready | bulk ingest (durable) |"
            );
            let _ = writeln!(t, "| ---: | ---: | ---: | ---: | ---: | ---: |");
            for s in starts {
                let cold = s.cold_start_ms.as_ref();
                let _ = writeln!(
                    t,
                    "| {} | {} | {} | {} | {} | {} |",
                    count(s.live_entries),
                    s.snapshot_bytes.map_or("-".into(), |b| mib(b as f64)),
                    cold.map_or("-".into(), |c| format!("{:.0} ms", c.median)),
                    cold.map_or("-".into(), |c| format!("{:.0}..{:.0} ms", c.min, c.max)),
                    s.publisher_restart_ms
                        .map_or("-".into(), |ms| format!("{ms:.0} ms")),
                    s.bulk_ingest.as_ref().map_or("-".into(), |b| format!(
                        "{} ({} per call, {} in flight, {:.1} s{})",
                        rate(b.per_second),
                        b.per_call,
                        b.concurrency,
                        b.seconds,
                        if b.retried_calls > 0 {
                            format!(", {} calls answered 503 and retried", b.retried_calls)
                        } else {
                            String::new()
                        }
                    )),
                );
            }
        }
        if let Some(s) = &self.singles {
            let _ = writeln!(t, "\n### Ingest of single revocations\n");
            let _ = writeln!(
                t,
                "| calls in flight | revocations per run | durable revocations/s (median) | min..max | call p50 | call p99 |"
            );
            let _ = writeln!(t, "| ---: | ---: | ---: | ---: | ---: | ---: |");
            let _ = writeln!(
                t,
                "| {} | {} | {} | {}..{} | {:.2} ms | {:.2} ms |",
                s.concurrency,
                count(s.per_run),
                rate(s.per_second.median),
                rate(s.per_second.min),
                rate(s.per_second.max),
                s.latency.p50_ms,
                s.latency.p99_ms
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(999), "999");
        assert_eq!(rate(12_345_678.0), "12.35 M/s");
    }
}
