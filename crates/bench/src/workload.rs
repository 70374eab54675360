//! The tokens every scenario uses: deterministic, UUID-shaped `jti`s (36 bytes, what
//! most issuers put in `jti`) and `exp`s spread over the coming day, drawn from
//! [`revocast_testkit::tokens`] (the pool the subscriber's benches use too).

use std::time::{SystemTime, UNIX_EPOCH};

use revocast_testkit::tokens;
pub use revocast_testkit::tokens::{exp, is_revoked_pick};

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Token families that never share a `jti`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Tokens revoked while loading a size.
    Revoked = 1,
    /// Tokens never revoked.
    Valid = 2,
    /// Tokens revoked by the propagation and ingest scenarios.
    Extra = 3,
}

/// The `i`th `jti` of a family, UUID v4 shaped, with an exact-size heap buffer.
pub fn jti(family: Family, i: u64) -> String {
    tokens::uuid_jti(family as u64, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_never_share_a_jti() {
        assert_ne!(jti(Family::Revoked, 1), jti(Family::Valid, 1));
        assert_ne!(jti(Family::Valid, 1), jti(Family::Extra, 1));
        assert_eq!(jti(Family::Extra, 7), tokens::uuid_jti(3, 7));
    }
}
