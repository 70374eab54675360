//! What the filter benchmarks share: the tokens, the filters built as the publisher
//! builds them, and the probes.
#![allow(dead_code, clippy::unwrap_used)]

use revocast_core::{Delta, Filter, FilterParams, Probe};

/// Hourly buckets of a filter.
pub const BUCKETS: u64 = 24;
/// The `exp` of the first bucket.
pub const T0: u64 = 1_767_225_600;

pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `i`th token of a family: a UUID-shaped `jti`.
pub fn jti_of(family: u64, i: u64) -> String {
    let hi = splitmix(i ^ (family << 56));
    let lo = splitmix(hi);
    let h = format!("{hi:016x}{lo:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The `exp` of the `i`th token: one of the 24 hourly buckets.
pub fn exp_of(i: u64) -> u64 {
    T0 + (i % BUCKETS) * 3600 + splitmix(i) % 3600
}

/// The `exp` of the `i`th token of a one-bucket filter.
pub fn one_bucket(i: u64) -> u64 {
    T0 + splitmix(i) % 3600
}

/// The sizes to measure: `REVOCAST_BENCH_SIZES`, or 100k, 1M and 10M.
pub fn sizes() -> Vec<u64> {
    std::env::var("REVOCAST_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000, 10_000_000])
}

/// Revokes `items` in deltas of 10,000, passing `hint` as the capacity hint.
pub fn build(items: impl Iterator<Item = (String, u64)>, hint: u64) -> Filter {
    let mut filter = Filter::new(FilterParams::default()).unwrap();
    let mut seed = hint;
    let items: Vec<(String, u64)> = items.collect();
    for chunk in items.chunks(10_000) {
        let mut staging = filter.stage();
        staging.capacity_hint(hint);
        for (jti, exp) in chunk {
            staging
                .revoke(jti, *exp, || {
                    seed += 1;
                    splitmix(seed)
                })
                .unwrap();
        }
        let delta = Delta {
            epoch: 0,
            version: filter.version() + 1,
            committed_at_ms: 0,
            changes: staging.finish(),
        };
        filter.apply(&delta).unwrap();
    }
    filter
}

/// The revoked tokens of a filter of `live` entries.
pub fn members(live: u64) -> impl Iterator<Item = (String, u64)> {
    (0..live).map(|i| (jti_of(1, i), exp_of(i)))
}

/// `n` tokens that were never revoked.
pub fn outsiders(n: usize, exp: impl Fn(u64) -> u64) -> Vec<(String, u64)> {
    (0..n as u64).map(|i| (jti_of(2, i), exp(i))).collect()
}

/// `n` revoked tokens, picked at random among `live`.
pub fn insiders(n: usize, live: u64) -> Vec<(String, u64)> {
    (0..n as u64)
        .map(|i| {
            let k = splitmix(i) % live;
            (jti_of(1, k), exp_of(k))
        })
        .collect()
}

/// A check of `jti` with a known `exp`, as services make it.
pub fn probe(jti: &str, exp: u64) -> Probe<'_> {
    Probe {
        jti,
        exp: Some(exp),
        sub: None,
        iat: None,
        sid: None,
    }
}
