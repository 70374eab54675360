//! What one check through the replica's API costs in instructions and cache-line
//! loads, counted by callgrind (repeatable on a loaded machine, where wall-clock
//! figures are not), beside an exact `HashSet<String>` probed with the same claims.
//!
//! A replica of `REVOCAST_BENCH_SIZES` (one size, default 1,000,000) live entries
//! against a real nats-server, 36-byte UUID `jti`s with `exp`s over the next 23 hours
//! (24 hourly buckets), each bucket sized by the publisher's hint. Each `cost_*` function runs one pass over a pool of
//! `REVOCAST_COST_POOL` (default 100,000) distinct claims, after an uncounted pass over
//! the same pool:
//! - `check_local_miss`, `check_miss`: tokens never revoked, through
//!   `Subscriber::check_local` and `Subscriber::check`;
//! - `check_mix`: the pool of `revocast-bench`, 1% of it revoked, through `check` with
//!   the confirm cache warm (a hit is answered from it);
//! - `check_cached_hit`: only the revoked tokens of that pool, answered from the cache;
//! - `hashset_miss`, `hashset_mix`: the `HashSet<String>` with the same claims.
//!
//! ```sh
//! cargo bench -p revocast-subscriber --bench check_cost --no-run
//! scripts/check-cost.sh 1000000 subscriber
//! ```
//!
//! Run natively, it prints nanoseconds per check of one pass each (noisy).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/common.rs"]
mod common;

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{FakePublisher, now_secs};
use revocast_subscriber::{LocalCheck, Policy, Subscriber, TokenClaims};
use revocast_testkit::NatsServer;
use revocast_testkit::tokens::{exp, is_revoked_pick, uuid_jti as jti};
use tokio::runtime::Runtime;

/// The share of revoked tokens in the mix, as in `revocast-bench`.
const REVOKED_SHARE: f64 = 0.01;

const PER_DELTA: u64 = 10_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.split(',').next().and_then(|n| n.trim().parse().ok()))
        .unwrap_or(default)
}

#[inline(always)]
fn local_pass(sub: &Subscriber, claims: &[TokenClaims]) -> usize {
    claims
        .iter()
        .filter(|c| matches!(black_box(sub.check_local(c)), LocalCheck::Decided(_)))
        .count()
}

#[inline(always)]
fn check_pass(rt: &Runtime, sub: &Subscriber, claims: &[TokenClaims]) -> usize {
    rt.block_on(async {
        let mut revoked = 0;
        for c in claims {
            revoked += usize::from(black_box(sub.check(c).await.unwrap()).is_revoked());
        }
        revoked
    })
}

#[inline(always)]
fn set_pass(set: &HashSet<String>, claims: &[TokenClaims]) -> usize {
    claims
        .iter()
        .filter(|c| black_box(set.contains(c.jti.as_str())))
        .count()
}

// Every function below has a body of its own (the `black_box` of a number): identical
// functions would be merged into one and their counts with them.

#[inline(never)]
fn warm_local(sub: &Subscriber, claims: &[TokenClaims]) -> usize {
    black_box(1);
    local_pass(sub, claims)
}

#[inline(never)]
fn warm_check(rt: &Runtime, sub: &Subscriber, claims: &[TokenClaims]) -> usize {
    black_box(2);
    check_pass(rt, sub, claims)
}

#[inline(never)]
fn warm_set(set: &HashSet<String>, claims: &[TokenClaims]) -> usize {
    black_box(3);
    set_pass(set, claims)
}

#[inline(never)]
fn cost_check_local_miss(sub: &Subscriber, claims: &[TokenClaims]) -> usize {
    black_box(4);
    local_pass(sub, claims)
}

#[inline(never)]
fn cost_check_miss(rt: &Runtime, sub: &Subscriber, claims: &[TokenClaims]) -> usize {
    black_box(5);
    check_pass(rt, sub, claims)
}

#[inline(never)]
fn cost_check_mix(rt: &Runtime, sub: &Subscriber, claims: &[TokenClaims]) -> usize {
    black_box(6);
    check_pass(rt, sub, claims)
}

#[inline(never)]
fn cost_check_cached_hit(rt: &Runtime, sub: &Subscriber, claims: &[TokenClaims]) -> usize {
    black_box(7);
    check_pass(rt, sub, claims)
}

#[inline(never)]
fn cost_hashset_miss(set: &HashSet<String>, claims: &[TokenClaims]) -> usize {
    black_box(8);
    set_pass(set, claims)
}

#[inline(never)]
fn cost_hashset_mix(set: &HashSet<String>, claims: &[TokenClaims]) -> usize {
    black_box(9);
    set_pass(set, claims)
}

/// Runs `f` once and prints its time per claim.
fn timed(name: &str, n: usize, f: impl FnOnce() -> usize) {
    let started = Instant::now();
    let answered = f();
    let ns = started.elapsed().as_secs_f64() * 1e9 / n.max(1) as f64;
    println!("{name}: {ns:.1} ns per check ({answered} of {n})");
}

fn main() {
    let live = env_or("REVOCAST_BENCH_SIZES", 1_000_000);
    let pool = env_or("REVOCAST_COST_POOL", 100_000);
    let server = NatsServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = now_secs();
    let exp_of = |i: u64| exp(now, i);

    let (publisher, sub) = rt.block_on(async {
        let mut publisher = FakePublisher::start(&server.url(), "cost").await;
        // `exp`s spread over 23 hours: 22 full hourly buckets and two partial ones. A
        // hint 5% over a full bucket's share keeps one layer per bucket, as the
        // publisher's hint does in steady state.
        let hint = live * 21 / 20 / 23;
        let mut from = 0;
        while from < live {
            let to = (from + PER_DELTA).min(live);
            let delta = publisher.plan(|s, seed| {
                s.capacity_hint(hint);
                for i in from..to {
                    s.revoke(&jti(1, i), exp_of(i), &mut *seed).unwrap();
                }
            });
            publisher.store(&delta).await;
            from = to;
        }
        publisher.snapshot().await;
        let sub = publisher
            .replica(&server.url(), Policy::FailClosed, Duration::from_secs(3600))
            .await;
        assert_eq!(sub.stats().live_entries, live);
        let layers: Vec<Vec<u8>> = sub
            .filter_stats()
            .buckets
            .iter()
            .map(|b| b.layers.iter().map(|l| l.hashes).collect())
            .collect();
        println!("k of each layer, by bucket: {layers:?}");
        (publisher, sub)
    });

    let misses: Vec<TokenClaims> = (0..pool)
        .map(|i| TokenClaims::new(jti(2, i), exp_of(i)))
        .collect();
    let mix: Vec<TokenClaims> = (0..pool)
        .map(|i| {
            if is_revoked_pick(i, REVOKED_SHARE) {
                let k = i % live;
                TokenClaims::new(jti(1, k), exp_of(k))
            } else {
                TokenClaims::new(jti(2, i), exp_of(i))
            }
        })
        .collect();
    let hits: Vec<TokenClaims> = (0..pool)
        .filter(|&i| is_revoked_pick(i, REVOKED_SHARE))
        .map(|i| {
            let k = i % live;
            TokenClaims::new(jti(1, k), exp_of(k))
        })
        .collect();
    publisher
        .revoked
        .lock()
        .unwrap()
        .extend(hits.iter().map(|c| c.jti.clone()));
    let set: HashSet<String> = (0..live).map(|i| jti(1, i)).collect();
    let n = pool as usize;

    warm_local(&sub, &misses);
    timed("check_local_miss", n, || {
        cost_check_local_miss(&sub, &misses)
    });
    warm_check(&rt, &sub, &misses);
    timed("check_miss", n, || cost_check_miss(&rt, &sub, &misses));
    // The first pass asks the authority about every hit and caches its answers.
    warm_check(&rt, &sub, &mix);
    timed("check_mix", n, || cost_check_mix(&rt, &sub, &mix));
    warm_check(&rt, &sub, &hits);
    timed("check_cached_hit", hits.len(), || {
        cost_check_cached_hit(&rt, &sub, &hits)
    });
    warm_set(&set, &misses);
    timed("hashset_miss", n, || cost_hashset_miss(&set, &misses));
    warm_set(&set, &mix);
    timed("hashset_mix", n, || cost_hashset_mix(&set, &mix));
    println!("{} hits in the mix", hits.len());
    drop(sub);
    drop(publisher);
}
