//! [`FilterParams`], the limits every component shares, and their defaults.

use bincode::{Decode, Encode};
use serde::Serialize;

use crate::error::FilterError;

/// Default width of an expiry bucket: one hour of `exp`.
pub const DEFAULT_BUCKET_WIDTH_SECS: u64 = 3600;
/// Default target false-positive rate of a check with a known `exp`.
pub const DEFAULT_TARGET_FPR: f64 = 0.001;
/// Default capacity of the first layer of a bucket.
pub const DEFAULT_INITIAL_CAPACITY: u64 = 4096;
/// Default longest token lifetime the issuer hands out (24 h).
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;
/// Default clock leeway: a bucket lives this long after its last possible `exp`.
///
/// It must cover what services themselves tolerate past `exp` (jsonwebtoken's default
/// validation leeway is 60 s) plus the clock skew between the publisher and any
/// service; 5 minutes covers 60 s of leeway and up to 4 minutes of skew for the price
/// of keeping each bucket 5 minutes longer.
pub const DEFAULT_LEEWAY_SECS: u64 = 300;

/// Longest accepted `jti`, in bytes.
pub const MAX_JTI_LEN: usize = 256;
/// Longest accepted `sub`, in bytes.
pub const MAX_SUB_LEN: usize = 256;
/// Longest accepted revocation reason, in bytes.
pub const MAX_REASON_LEN: usize = 1024;
/// Most layers a bucket may have. Layers grow geometrically, so a sane workload never
/// gets near it; it bounds what a malformed delta can ask for.
pub const MAX_LAYERS_PER_BUCKET: usize = 32;

/// Parameters fixed when a namespace is created; carried in every snapshot.
#[derive(Clone, Debug, PartialEq, Encode, Decode, Serialize)]
pub struct FilterParams {
    /// Width of an expiry bucket in seconds.
    pub bucket_width: u64,
    /// Target false-positive rate of a check with a known `exp`, in (0, 0.5).
    pub target_fpr: f64,
    /// Capacity of the first layer of a new bucket.
    pub initial_capacity: u64,
    /// Longest token lifetime the issuer hands out, in seconds. Bounds `iat` for tokens
    /// that lack it and tells when a cutoff can no longer match a live token.
    pub max_token_lifetime: u64,
    /// Clock leeway in seconds: nothing is dropped until `exp + leeway < now`.
    pub leeway: u64,
}

impl Default for FilterParams {
    fn default() -> Self {
        FilterParams {
            bucket_width: DEFAULT_BUCKET_WIDTH_SECS,
            target_fpr: DEFAULT_TARGET_FPR,
            initial_capacity: DEFAULT_INITIAL_CAPACITY,
            max_token_lifetime: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
            leeway: DEFAULT_LEEWAY_SECS,
        }
    }
}

impl FilterParams {
    /// Checks that the parameters make a usable filter.
    pub fn validate(&self) -> Result<(), FilterError> {
        let bad = |what| Err(FilterError::InvalidParams(what));
        if self.bucket_width == 0 {
            return bad("bucket_width must be at least 1 second");
        }
        if !(self.target_fpr > 0.0 && self.target_fpr < 0.5) {
            return bad("target_fpr must be in (0, 0.5)");
        }
        if self.initial_capacity == 0 || self.initial_capacity > u64::from(u32::MAX) {
            return bad("initial_capacity must be in 1..=4294967295");
        }
        if self.max_token_lifetime == 0 {
            return bad("max_token_lifetime must be at least 1 second");
        }
        Ok(())
    }

    /// The bucket that holds tokens expiring at `exp`.
    pub fn bucket_of(&self, exp: u64) -> u64 {
        exp / self.bucket_width
    }

    /// Buckets below this index hold only tokens with `exp + leeway < now`.
    pub fn first_live_bucket(&self, now: u64) -> u64 {
        now.saturating_sub(self.leeway) / self.bucket_width
    }

    /// A token expiring at `exp` is past its leeway at `now`: nothing can accept it,
    /// so there is nothing to revoke.
    pub fn is_expired(&self, exp: u64, now: u64) -> bool {
        exp.saturating_add(self.leeway) < now
    }

    /// A cutoff set at `not_before` can still match a live token at `now`.
    pub fn cutoff_is_live(&self, not_before: u64, now: u64) -> bool {
        // A token issued before `not_before` expires before `not_before + lifetime`.
        not_before
            .saturating_add(self.max_token_lifetime)
            .saturating_add(self.leeway)
            >= now
    }
}

/// Checks a `jti` for the limits every component shares.
pub fn check_jti(jti: &str) -> Result<(), FilterError> {
    if jti.is_empty() {
        return Err(FilterError::EmptyJti);
    }
    if jti.len() > MAX_JTI_LEN {
        return Err(FilterError::JtiTooLong(jti.len()));
    }
    Ok(())
}

/// Checks a `sub` for the limits every component shares.
pub fn check_sub(sub: &str) -> Result<(), FilterError> {
    if sub.is_empty() {
        return Err(FilterError::EmptySub);
    }
    if sub.len() > MAX_SUB_LEN {
        return Err(FilterError::SubTooLong(sub.len()));
    }
    Ok(())
}

/// Checks a session id (`sid`) for the limits every component shares (those of `sub`).
pub fn check_sid(sid: &str) -> Result<(), FilterError> {
    if sid.is_empty() {
        return Err(FilterError::EmptySid);
    }
    if sid.len() > MAX_SUB_LEN {
        return Err(FilterError::SidTooLong(sid.len()));
    }
    Ok(())
}

/// Division by a bucket width without a division instruction on the hot path: for
/// numerators below 2^32 (every `exp` until 2106), `n / d == (n * c) >> 64` with
/// `c = ceil(2^64 / d)` (Lemire, Kaser and Kurz, "Faster Remainder by Direct
/// Computation", 2019). Larger numerators divide.
#[derive(Clone, Copy, Debug)]
pub(super) struct Divisor {
    d: u64,
    c: u64,
}

impl Divisor {
    pub(super) fn new(d: u64) -> Divisor {
        let d = d.max(1);
        // For d == 1, c would be 2^64: the fast path is not used (see `divide`).
        let c = if d == 1 { 0 } else { u64::MAX / d + 1 };
        Divisor { d, c }
    }

    #[inline(always)]
    pub(super) fn divide(&self, n: u64) -> u64 {
        if n <= u64::from(u32::MAX) && self.c != 0 {
            ((u128::from(n) * u128::from(self.c)) >> 64) as u64
        } else {
            n / self.d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_divisor_divides_exactly() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut divisors = vec![1, 2, 3, 7, 60, 3600, 86_400, u64::from(u32::MAX), u64::MAX];
        divisors.extend((0..200).map(|_| next() % 1_000_000 + 1));
        for d in divisors {
            let divisor = Divisor::new(d);
            let mut numerators = vec![
                0,
                1,
                d - 1,
                d,
                d.saturating_add(1),
                u64::from(u32::MAX),
                u64::MAX,
            ];
            numerators.extend((0..500).map(|_| next() >> 32));
            numerators.extend((0..50).map(|_| next()));
            for n in numerators {
                assert_eq!(divisor.divide(n), n / d, "{n} / {d}");
            }
        }
    }
}
