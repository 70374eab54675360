//! Filter benchmarks, side by side in one run: checks against an exact
//! `HashSet<String>` of the same jtis at 100k, 1M and 10M live entries, the batch
//! check, a bucket grown from a far too small first layer against one sized right,
//! inserts, snapshots and the digest.
//!
//! `cargo bench -p revocast-core --bench filter`
//! (`REVOCAST_BENCH_SIZES=100000,1000000` for fewer sizes; criterion's own filter
//! arguments work as usual: `-- check/1000000`).
//!
//! The filters are built as the publisher builds them in steady state: 24 hourly
//! buckets, each first layer sized by a capacity hint (the entries a bucket ends up
//! holding). `jti`s are 36-byte UUID strings, as most issuers make them; each check
//! benchmark cycles through 100,000 distinct tokens (`REVOCAST_BENCH_POOL`). Size
//! figures (bits per live entry, layers, measured false-positive rate) are printed
//! before the timings. `check_cost` counts the instructions of the same checks.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::HashSet;
use std::hint::black_box;

use common::{
    BUCKETS, build, exp_of, insiders, jti_of, members, one_bucket, outsiders, probe, sizes,
    splitmix,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use revocast_core::{
    Delta, Filter, Lookup, Message, Namespace, Probe, Signer, Snapshot, Verifier,
    signing_key_from_seed,
};

/// Distinct tokens each check benchmark cycles through: `REVOCAST_BENCH_POOL`, or
/// 100,000. A pool this large touches every block of a filter of up to a few million
/// entries, as a service's traffic does; a pool of a few thousand tokens would keep
/// the blocks it touches in the L2 cache and time checks that never wait on memory.
fn pool_size() -> usize {
    std::env::var("REVOCAST_BENCH_POOL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// The share of `trials` outsiders the filter says "maybe" to.
fn measured_fpr(filter: &Filter, trials: u64, exp: impl Fn(u64) -> u64) -> f64 {
    let hits = (0..trials)
        .filter(|&i| filter.contains(&jti_of(3, i), Some(exp(i))))
        .count();
    hits as f64 / trials as f64
}

fn report(name: &str, filter: &Filter, fpr: f64) {
    let s = filter.stats();
    let layers: usize = s.buckets.iter().map(|b| b.layers.len()).sum();
    println!(
        "size/{name}: {} live entries, {} buckets, {layers} layers, {:.2} MiB, {:.2} bits/entry \
         (optimal {:.2}, ratio {:.2}); FPR measured {fpr:.6} over 1,000,000 outsiders, \
         estimated {:.6} (target {})",
        s.live_entries,
        s.buckets.len(),
        s.bitmap_bytes as f64 / (1 << 20) as f64,
        s.bits_per_entry,
        s.optimal_bits_per_entry,
        s.bits_per_entry / s.optimal_bits_per_entry,
        s.estimated_fpr,
        s.target_fpr,
    );
}

fn checks(c: &mut Criterion) {
    for live in sizes() {
        let filter = build(members(live), live.div_ceil(BUCKETS));
        report(
            &format!("sized/{live}"),
            &filter,
            measured_fpr(&filter, 1_000_000, exp_of),
        );
        let set: HashSet<String> = members(live).map(|(jti, _)| jti).collect();
        let pool = pool_size();
        let outsiders = outsiders(pool, exp_of);
        let inside = insiders(pool, live);

        let mut group = c.benchmark_group(format!("check/{live}"));
        group.throughput(Throughput::Elements(pool as u64));
        group.bench_function("filter_miss", |b| {
            b.iter(|| {
                for (jti, exp) in &outsiders {
                    black_box(filter.lookup(&probe(jti, *exp)));
                }
            })
        });
        group.bench_function("hashset_miss", |b| {
            b.iter(|| {
                for (jti, _) in &outsiders {
                    black_box(set.contains(jti.as_str()));
                }
            })
        });
        group.bench_function("filter_hit", |b| {
            b.iter(|| {
                for (jti, exp) in &inside {
                    black_box(filter.lookup(&probe(jti, *exp)));
                }
            })
        });
        group.bench_function("hashset_hit", |b| {
            b.iter(|| {
                for (jti, _) in &inside {
                    black_box(set.contains(jti.as_str()));
                }
            })
        });
        let probes: Vec<Probe<'_>> = outsiders.iter().map(|(j, e)| probe(j, *e)).collect();
        let mut answers: Vec<Lookup> = Vec::with_capacity(pool);
        group.bench_function("filter_miss_many", |b| {
            b.iter(|| {
                filter.lookup_many(probes.iter().copied(), &mut answers);
                black_box(&answers);
            })
        });
        group.finish();
    }
}

/// One bucket of 100,000 entries whose first layer was sized for 4,096 (the default
/// initial capacity: a publisher with no usable hint), or by a hint 4 times too small,
/// against one sized right.
fn growth(c: &mut Criterion) {
    const ENTRIES: u64 = 100_000;
    let items = || (0..ENTRIES).map(|i| (jti_of(1, i), one_bucket(i)));
    let filters = [
        ("sized_right", build(items(), ENTRIES)),
        ("grown_from_4096", build(items(), 4096)),
        (
            "grown_from_a_hint_4x_too_small",
            build(items(), ENTRIES / 4),
        ),
    ];
    // The same comparison at other sizes: where a size falls against the layers'
    // capacities (4,096, then 5 times the total per layer) decides the bits.
    for entries in [
        8_192u64, 16_384, 32_768, 50_000, 200_000, 500_000, 1_000_000,
    ] {
        let items = || (0..entries).map(|i| (jti_of(1, i), one_bucket(i)));
        let right = build(items(), entries).stats();
        let grown = build(items(), 4096).stats();
        println!(
            "growth/sweep/{entries}: grown from 4,096: {} layers, {:.2}x the bits of one sized right",
            grown.buckets[0].layers.len(),
            grown.bitmap_bytes as f64 / right.bitmap_bytes as f64
        );
    }
    let right_bits = filters[0].1.stats().bitmap_bytes;
    for (name, filter) in &filters {
        let fpr = measured_fpr(filter, 1_000_000, one_bucket);
        report(&format!("growth/{name}"), filter, fpr);
        println!(
            "growth/{name}: {:.2}x the bits of the bucket sized right",
            filter.stats().bitmap_bytes as f64 / right_bits as f64
        );
    }
    let pool = pool_size();
    let outsiders = outsiders(pool, one_bucket);
    let mut group = c.benchmark_group("growth");
    group.throughput(Throughput::Elements(pool as u64));
    for (name, filter) in &filters {
        group.bench_function(format!("miss/{name}"), |b| {
            b.iter(|| {
                for (jti, exp) in &outsiders {
                    black_box(filter.lookup(&probe(jti, *exp)));
                }
            })
        });
    }
    group.finish();
}

fn insert_and_snapshot(c: &mut Criterion) {
    const LIVE: u64 = 1_000_000;
    let sized = build(members(LIVE), LIVE.div_ceil(BUCKETS));
    let mut group = c.benchmark_group("insert");
    group.throughput(Throughput::Elements(1_000));
    let mut next = LIVE;
    group.bench_function("stage_and_apply_1000/1000000", |b| {
        b.iter_batched(
            || sized.clone(),
            |mut filter| {
                let mut staging = filter.stage();
                for j in next..next + 1_000 {
                    staging
                        .revoke(&jti_of(1, j), exp_of(j), || splitmix(j))
                        .unwrap();
                }
                let delta = Delta {
                    epoch: 0,
                    version: filter.version() + 1,
                    committed_at_ms: 0,
                    changes: staging.finish(),
                };
                filter.apply(&delta).unwrap();
                next += 1_000;
                filter
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();

    let ns = Namespace::new("bench").unwrap();
    let signer = Signer::new(signing_key_from_seed([3; 32]), ns.clone());
    let verifier = Verifier::new(signer.public_key(), ns);

    // What one live delta of one revocation costs a replica, step by step.
    let mut staging = sized.stage();
    staging
        .revoke(&jti_of(1, 2 * LIVE), exp_of(2 * LIVE), || 1)
        .unwrap();
    let delta = Delta {
        epoch: 0,
        version: sized.version() + 1,
        committed_at_ms: 0,
        changes: staging.finish(),
    };
    let delta_bytes = signer.encode(&Message::Delta(delta.clone()));
    let mut group = c.benchmark_group("delta_of_one_revocation");
    group.bench_function("verify_and_decode", |b| {
        b.iter(|| black_box(verifier.decode_delta(&delta_bytes).unwrap()))
    });
    group.bench_function("apply/1000000", |b| {
        b.iter_batched(
            || sized.clone(),
            |mut filter| {
                filter.apply(&delta).unwrap();
                filter
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(20);
    group.bench_function("encode_and_sign/1000000", |b| {
        b.iter(|| {
            black_box(signer.encode(&Message::Snapshot(Snapshot {
                log_seq: 0,
                taken_at_ms: 0,
                state: sized.to_state(),
            })))
        })
    });
    let bytes = signer.encode(&Message::Snapshot(Snapshot {
        log_seq: 0,
        taken_at_ms: 0,
        state: sized.to_state(),
    }));
    println!(
        "snapshot/1000000: {:.2} MiB signed envelope",
        bytes.len() as f64 / (1 << 20) as f64
    );
    group.bench_function("verify_decode_and_load/1000000", |b| {
        b.iter(|| {
            let snapshot = verifier.decode_snapshot(&bytes).unwrap();
            black_box(Filter::from_state(snapshot.state).unwrap())
        })
    });
    group.bench_function("digest/1000000", |b| {
        b.iter_batched(
            || sized.clone(),
            |f| black_box(f.digest()),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, checks, growth, insert_and_snapshot);
criterion_main!(benches);
