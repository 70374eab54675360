//! What one check costs in instructions and cache-line loads, counted by callgrind
//! (repeatable on a loaded machine, where wall-clock figures are not).
//!
//! Each `cost_*` function below runs one pass of checks over a pool of distinct
//! tokens, after an uncounted pass over the same pool (so caches hold what a running
//! service's would). Run it under callgrind, collecting only inside those functions:
//!
//! ```sh
//! cargo bench -p revocast-core --bench check_cost --no-run
//! scripts/check-cost.sh 1000000          # every figure, per check, at 1M live entries
//! ```
//!
//! or by hand: `REVOCAST_BENCH_SIZES=1000000 valgrind --tool=callgrind
//! --toggle-collect='check_cost::cost_*' --cache-sim=yes target/release/deps/check_cost-*`,
//! then `callgrind_annotate --inclusive=yes` and divide by the pool size
//! (`REVOCAST_COST_POOL`, default 100,000). Run natively, it prints nanoseconds per
//! check of one pass each (noisy; criterion's `filter` bench is the timing).
//!
//! The filters and tokens are those of the `filter` bench: 24 hourly buckets sized by
//! the publisher's hint, 36-byte UUID `jti`s; the `HashSet<String>` holds the same
//! `jti`s. `growth_*` is the bucket of 100,000 entries sized right, or grown from a
//! first layer of 4,096.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::HashSet;
use std::hint::black_box;
use std::time::Instant;

use common::{build, exp_of, insiders, jti_of, members, one_bucket, outsiders, probe, sizes};
use revocast_core::{Filter, Lookup};

fn pool_size() -> usize {
    std::env::var("REVOCAST_COST_POOL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// One check per token; returns how many were filter hits.
#[inline(always)]
fn lookups(filter: &Filter, tokens: &[(String, u64)]) -> usize {
    tokens
        .iter()
        .filter(|(jti, exp)| black_box(filter.lookup(&probe(jti, *exp))) != Lookup::Clear)
        .count()
}

#[inline(always)]
fn set_lookups(set: &HashSet<String>, tokens: &[(String, u64)]) -> usize {
    tokens
        .iter()
        .filter(|(jti, _)| black_box(set.contains(jti.as_str())))
        .count()
}

#[inline(always)]
fn lookups_many(filter: &Filter, tokens: &[(String, u64)], out: &mut Vec<Lookup>) -> usize {
    filter.lookup_many(tokens.iter().map(|(j, e)| probe(j, *e)), out);
    out.iter().filter(|l| **l != Lookup::Clear).count()
}

#[inline(never)]
fn warm_filter(filter: &Filter, tokens: &[(String, u64)]) -> usize {
    // A body of its own: identical functions would be merged into one.
    black_box(8);
    lookups(filter, tokens)
}

#[inline(never)]
fn warm_set(set: &HashSet<String>, tokens: &[(String, u64)]) -> usize {
    // A body of its own: identical functions would be merged into one.
    black_box(9);
    set_lookups(set, tokens)
}

#[inline(never)]
fn cost_filter_miss(filter: &Filter, tokens: &[(String, u64)]) -> usize {
    // A body of its own: identical functions would be merged into one.
    black_box(1);
    lookups(filter, tokens)
}

#[inline(never)]
fn cost_hashset_miss(set: &HashSet<String>, tokens: &[(String, u64)]) -> usize {
    // A body of its own: identical functions would be merged into one.
    black_box(2);
    set_lookups(set, tokens)
}

#[inline(never)]
fn cost_filter_hit(filter: &Filter, tokens: &[(String, u64)]) -> usize {
    // A body of its own: identical functions would be merged into one.
    black_box(3);
    lookups(filter, tokens)
}

#[inline(never)]
fn cost_hashset_hit(set: &HashSet<String>, tokens: &[(String, u64)]) -> usize {
    // A body of its own: identical functions would be merged into one.
    black_box(4);
    set_lookups(set, tokens)
}

#[inline(never)]
fn cost_filter_miss_many(
    filter: &Filter,
    tokens: &[(String, u64)],
    out: &mut Vec<Lookup>,
) -> usize {
    // A body of its own: identical functions would be merged into one.
    black_box(5);
    lookups_many(filter, tokens, out)
}

#[inline(never)]
fn cost_growth_sized_miss(filter: &Filter, tokens: &[(String, u64)]) -> usize {
    // A body of its own: identical functions would be merged into one.
    black_box(6);
    lookups(filter, tokens)
}

#[inline(never)]
fn cost_growth_grown_miss(filter: &Filter, tokens: &[(String, u64)]) -> usize {
    // A body of its own: identical functions would be merged into one.
    black_box(7);
    lookups(filter, tokens)
}

/// The bits per key (`k`) of each layer, by bucket.
fn layers_k(name: &str, filter: &Filter) {
    let ks: Vec<Vec<u8>> = filter
        .stats()
        .buckets
        .iter()
        .map(|b| b.layers.iter().map(|l| l.hashes).collect())
        .collect();
    println!("{name}: k of each layer, by bucket: {ks:?}");
}

/// Runs `f` once and prints its time per token.
fn timed(name: &str, n: usize, f: impl FnOnce() -> usize) {
    let started = Instant::now();
    let hits = f();
    let ns = started.elapsed().as_secs_f64() * 1e9 / n as f64;
    println!("{name}: {ns:.1} ns per check ({hits} of {n} not clear)");
}

fn main() {
    let n = pool_size();
    for live in sizes() {
        let filter = build(members(live), live.div_ceil(common::BUCKETS));
        layers_k(&live.to_string(), &filter);
        let set: HashSet<String> = members(live).map(|(jti, _)| jti).collect();
        let misses = outsiders(n, exp_of);
        let hits = insiders(n, live);
        let mut out = Vec::with_capacity(n);
        warm_filter(&filter, &misses);
        warm_set(&set, &misses);
        timed(&format!("{live}/filter_miss"), n, || {
            cost_filter_miss(&filter, &misses)
        });
        timed(&format!("{live}/hashset_miss"), n, || {
            cost_hashset_miss(&set, &misses)
        });
        warm_filter(&filter, &hits);
        warm_set(&set, &hits);
        timed(&format!("{live}/filter_hit"), n, || {
            cost_filter_hit(&filter, &hits)
        });
        timed(&format!("{live}/hashset_hit"), n, || {
            cost_hashset_hit(&set, &hits)
        });
        warm_filter(&filter, &misses);
        timed(&format!("{live}/filter_miss_many"), n, || {
            cost_filter_miss_many(&filter, &misses, &mut out)
        });
    }

    const ENTRIES: u64 = 100_000;
    let items = || (0..ENTRIES).map(|i| (jti_of(1, i), one_bucket(i)));
    let sized = build(items(), ENTRIES);
    let grown = build(items(), 4096);
    layers_k("growth/sized_right", &sized);
    layers_k("growth/grown_from_4096", &grown);
    let misses = outsiders(n, one_bucket);
    warm_filter(&sized, &misses);
    timed("growth_sized_miss", n, || {
        cost_growth_sized_miss(&sized, &misses)
    });
    warm_filter(&grown, &misses);
    timed("growth_grown_miss", n, || {
        cost_growth_grown_miss(&grown, &misses)
    });
}
