//! The replica's figures at 1,000,000 live entries, through the public API, against
//! a real nats-server (started by the test kit):
//! - `check_local/miss`: a filter miss (target: at least 50 million per second per
//!   core), cycling through `REVOCAST_BENCH_POOL` (default 100,000) distinct tokens;
//! - `cold_start/ready`: connect to ready, loading the snapshot (target: under 1 s);
//! - memory: the replica's bitmaps against a `HashSet<String>` of the same jtis
//!   (printed before the benchmarks run).
//!
//! `cargo bench -p revocast-subscriber --bench check`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/common.rs"]
mod common;

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{FakePublisher, now_secs};
use criterion::{Criterion, Throughput};
use revocast_subscriber::{LocalCheck, Policy, Source, Subscriber, TokenClaims, Verdict};
use revocast_testkit::NatsServer;

const LIVE: usize = 1_000_000;
const PER_DELTA: usize = 10_000;

fn main() {
    let server = NatsServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = now_secs();
    let exp_of = |i: usize| now + 600 + (i as u64 % 24) * 3600;
    let jti_of = |i: usize| format!("tok-{i:08x}-revoked");

    // "sized": first layers sized for what buckets end up holding, as the publisher
    // does in steady state (`Staging::capacity_hint`); "grown": every bucket grew by
    // layers from the default 4096 (a publisher's first day).
    let mut replicas = Vec::new();
    for (name, hint) in [("sized", LIVE.div_ceil(24) as u64), ("grown", 0)] {
        replicas.push(rt.block_on(async {
            let mut publisher = FakePublisher::start(&server.url(), name).await;
            let started = Instant::now();
            for chunk in (0..LIVE).collect::<Vec<_>>().chunks(PER_DELTA) {
                // One delta per chunk; jtis spread over 24 hourly buckets.
                let delta = publisher.plan(|s, seed| {
                    s.capacity_hint(hint);
                    for &i in chunk {
                        s.revoke(&jti_of(i), exp_of(i), &mut *seed).unwrap();
                    }
                });
                publisher.store(&delta).await;
            }
            publisher.snapshot().await;
            eprintln!(
                "setup {name}: {LIVE} revocations in {} deltas, snapshot at version {}, in {:.1?}",
                LIVE / PER_DELTA,
                publisher.version(),
                started.elapsed()
            );
            let sub = publisher
                .replica(&server.url(), Policy::FailClosed, Duration::from_secs(3600))
                .await;
            assert_eq!(sub.stats().live_entries, LIVE as u64);
            (name, publisher, sub)
        }));
    }

    let jtis: Vec<String> = (0..LIVE).map(jti_of).collect();
    for (name, _, sub) in &replicas {
        memory_report(name, sub, &jtis);
    }
    drop(jtis);

    let mut c = Criterion::default().configure_from_args();
    for (name, _, sub) in &replicas {
        miss(&mut c, name, sub, exp_of);
    }
    let (_, publisher, _) = &replicas[0];
    cold_start(&mut c, &rt, publisher, &server.url());
    c.final_summary();
    drop(replicas);
}

/// Distinct tokens the check benchmark cycles through: `REVOCAST_BENCH_POOL`, or
/// 100,000. A pool this large touches every block of the replica's filter, as a
/// service's traffic does; a pool of a few thousand tokens keeps the blocks it touches
/// in the L2 cache.
fn pool_size() -> usize {
    std::env::var("REVOCAST_BENCH_POOL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

fn miss(c: &mut Criterion, name: &str, sub: &Subscriber, exp_of: impl Fn(usize) -> u64) {
    let pool = pool_size();
    let claims: Vec<TokenClaims> = (0..pool)
        .map(|i| TokenClaims::new(format!("tok-{i:08x}-valid"), exp_of(i)).with_sub("alice"))
        .collect();
    let misses = claims
        .iter()
        .filter(|c| {
            sub.check_local(c)
                == LocalCheck::Decided(Verdict::Accepted {
                    source: Source::Local,
                })
        })
        .count();
    assert!(misses > pool * 99 / 100, "nearly all should miss: {misses}");
    let mut group = c.benchmark_group("check_local");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function(format!("miss_1m_live/{name}"), |b| {
        b.iter(|| {
            i = if i + 1 == pool { 0 } else { i + 1 };
            black_box(sub.check_local(black_box(&claims[i])))
        })
    });
    group.finish();
}

fn cold_start(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    publisher: &FakePublisher,
    url: &str,
) {
    let mut group = c.benchmark_group("cold_start");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("connect_to_ready_1m_live/sized", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let sub = publisher.options().connect(url).await.unwrap();
                    common::within("ready", sub.ready()).await;
                    total += started.elapsed();
                    assert_eq!(sub.version(), publisher.version());
                }
                total
            })
        })
    });
    group.finish();
}

fn memory_report(name: &str, sub: &Subscriber, jtis: &[String]) {
    let stats = sub.stats();
    let set: HashSet<String> = jtis.iter().cloned().collect();
    // hashbrown: one control byte and one `String` per bucket, plus each string's heap
    // buffer; allocator overhead not counted, so this is a lower bound.
    let set_bytes = set.capacity() * (std::mem::size_of::<String>() + 1)
        + set.iter().map(|s| s.capacity()).sum::<usize>();
    let filter = stats.filter_bytes as f64;
    println!(
        "memory ({name}) at {} live entries: replica bitmaps {:.2} MiB ({:.1} bits/entry); \
         HashSet<String> of the same jtis >= {:.2} MiB; ratio {:.1}x",
        stats.live_entries,
        filter / (1 << 20) as f64,
        filter * 8.0 / stats.live_entries as f64,
        set_bytes as f64 / (1 << 20) as f64,
        set_bytes as f64 / filter,
    );
}
