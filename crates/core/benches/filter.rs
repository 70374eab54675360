//! Filter benchmarks at 1,000,000 live entries: checks (hit, miss, with and without
//! `exp`), staging + applying inserts, snapshot encode/decode and the digest.
//!
//! `cargo bench -p revocast-core --bench filter`
//!
//! Two filters are built from the same 1M revocations spread over 24 hourly buckets:
//! - `grown`: every bucket starts at the default first-layer capacity (4,096) and grows
//!   by layers, as a bucket does when revocations arrive faster than expected;
//! - `sized`: first layers sized by a capacity hint (what a publisher in steady state
//!   passes: entries its recent buckets ended with).
//!
//! Size figures (bits per live entry against 1.44 * log2(1/eps)) are printed before
//! the timings.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use revocast_core::{
    Delta, Filter, FilterParams, Message, Namespace, Probe, Signer, Snapshot, Verifier,
    signing_key_from_seed,
};

const LIVE: u64 = 1_000_000;
const BUCKETS: u64 = 24;
const T0: u64 = 1_767_225_600;

struct Seeds(u64);

impl Seeds {
    fn next(&mut self) -> [u8; 32] {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut seed = [0u8; 32];
        let mut x = self.0;
        for chunk in seed.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        seed
    }
}

fn exp_of(i: u64) -> u64 {
    T0 + (i % BUCKETS) * 3600 + (i * 7919) % 3600
}

fn jti_of(i: u64) -> String {
    format!("8f14e45f-ceea-467f-a0e7-{i:012}")
}

fn build(hint: u64) -> Filter {
    let mut filter = Filter::new(FilterParams::default()).unwrap();
    let mut seeds = Seeds(hint + 1);
    let mut i = 0;
    while i < LIVE {
        let mut staging = filter.stage();
        staging.capacity_hint(hint);
        for j in i..(i + 10_000).min(LIVE) {
            staging
                .revoke(&jti_of(j), exp_of(j), || seeds.next())
                .unwrap();
        }
        i += 10_000;
        let delta = Delta {
            version: filter.version() + 1,
            committed_at_ms: 0,
            changes: staging.finish(),
        };
        filter.apply(&delta).unwrap();
    }
    filter
}

fn report(name: &str, filter: &Filter) {
    let s = filter.stats();
    let layers: usize = s.buckets.iter().map(|b| b.layers.len()).sum();
    println!(
        "size/{name}: {} live entries, {} buckets, {layers} layers, {:.1} MiB, {:.2} bits/entry \
         (optimal {:.2}, ratio {:.2}), worst bucket est. FPR {:.5} (target {})",
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
    let grown = build(0);
    let sized = build(LIVE / BUCKETS + LIVE / BUCKETS / 10);
    report("grown", &grown);
    report("sized", &sized);

    let outsiders: Vec<(String, u64)> = (0..4096u64)
        .map(|i| (format!("0b5c1d2e-aaaa-4bbb-8ccc-{i:012}"), exp_of(i * 31)))
        .collect();
    let members: Vec<(String, u64)> = (0..4096u64)
        .map(|i| (jti_of(i * 97), exp_of(i * 97)))
        .collect();

    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(outsiders.len() as u64));
    for (name, filter) in [("grown", &grown), ("sized", &sized)] {
        group.bench_function(format!("miss_with_exp/{name}"), |b| {
            b.iter(|| {
                for (jti, exp) in &outsiders {
                    black_box(filter.lookup(&Probe {
                        jti,
                        exp: Some(*exp),
                        sub: None,
                        iat: None,
                    }));
                }
            })
        });
        group.bench_function(format!("hit_with_exp/{name}"), |b| {
            b.iter(|| {
                for (jti, exp) in &members {
                    black_box(filter.lookup(&Probe {
                        jti,
                        exp: Some(*exp),
                        sub: None,
                        iat: None,
                    }));
                }
            })
        });
    }
    group.throughput(Throughput::Elements(256));
    group.bench_function("miss_without_exp/sized", |b| {
        b.iter(|| {
            for (jti, _) in &outsiders[..256] {
                black_box(sized.lookup(&Probe {
                    jti,
                    exp: None,
                    sub: None,
                    iat: None,
                }));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("insert");
    group.throughput(Throughput::Elements(1_000));
    let mut seeds = Seeds(7);
    let mut next = LIVE;
    group.bench_function("stage_and_apply_1000/sized", |b| {
        b.iter_batched(
            || sized.clone(),
            |mut filter| {
                let mut staging = filter.stage();
                for j in next..next + 1_000 {
                    staging
                        .revoke(&jti_of(j), exp_of(j), || seeds.next())
                        .unwrap();
                }
                let delta = Delta {
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
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(20);
    group.bench_function("encode_and_sign/sized", |b| {
        b.iter(|| {
            black_box(signer.encode(&Message::Snapshot(Snapshot {
                taken_at_ms: 0,
                state: sized.to_state(),
            })))
        })
    });
    let bytes = signer.encode(&Message::Snapshot(Snapshot {
        taken_at_ms: 0,
        state: sized.to_state(),
    }));
    println!(
        "snapshot/sized: {:.1} MiB signed envelope",
        bytes.len() as f64 / (1 << 20) as f64
    );
    group.bench_function("verify_decode_and_load/sized", |b| {
        b.iter(|| {
            let snapshot = verifier.decode_snapshot(&bytes).unwrap();
            black_box(Filter::from_state(snapshot.state).unwrap())
        })
    });
    group.bench_function("digest/sized", |b| {
        b.iter_batched(
            || sized.clone(),
            |f| black_box(f.digest()),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);
