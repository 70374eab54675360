//! The tokens benchmarks check: deterministic, UUID-shaped `jti`s (36 bytes, what
//! most issuers put in `jti`) and `exp`s spread over the coming day. `revocast-bench`
//! and the subscriber's benches draw from the same pool.

/// SplitMix64: the deterministic source of every token here.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The `i`th `jti` of `family` (families never share a `jti`), UUID v4 shaped, in an
/// exact-size heap buffer.
pub fn uuid_jti(family: u64, i: u64) -> String {
    let hi = splitmix64(i ^ (family << 56));
    let lo = splitmix64(hi ^ 0x5151_5151);
    let hex = format!("{hi:016x}{lo:016x}");
    let mut out = String::with_capacity(36);
    out.push_str(&hex[0..8]);
    out.push('-');
    out.push_str(&hex[8..12]);
    out.push_str("-4");
    out.push_str(&hex[13..16]);
    out.push_str("-8");
    out.push_str(&hex[17..20]);
    out.push('-');
    out.push_str(&hex[20..32]);
    out
}

/// `exp` of the `i`th token of a run that started at `start`: spread over the next
/// 23 hours (tokens of up to a day, the publisher's default longest lifetime), so the
/// set fills about 24 hourly buckets as it does in steady state.
pub fn exp(start: u64, i: u64) -> u64 {
    start + 300 + splitmix64(i) % (23 * 3_600)
}

/// Whether the `i`th check of a mix is on a revoked token (`share` of them).
pub fn is_revoked_pick(i: u64, share: f64) -> bool {
    (splitmix64(i ^ 0xC0FFEE) as f64 / u64::MAX as f64) < share
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jtis_are_uuid_shaped_distinct_and_exactly_sized() {
        let a = uuid_jti(1, 1);
        assert_eq!(a.len(), 36);
        assert_eq!(a.capacity(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert_ne!(a, uuid_jti(2, 1));
        assert_ne!(a, uuid_jti(1, 2));
        let n = 10_000;
        let set: std::collections::HashSet<String> = (0..n).map(|i| uuid_jti(1, i)).collect();
        assert_eq!(set.len() as u64, n);
    }

    #[test]
    fn the_mix_has_about_the_asked_share() {
        let hits = (0..100_000).filter(|&i| is_revoked_pick(i, 0.01)).count();
        assert!((800..1200).contains(&hits), "{hits}");
    }
}
