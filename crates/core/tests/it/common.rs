//! Helpers shared by the core integration tests.

use revocast_core::{
    Delta, Filter, FilterParams, Namespace, Signer, Verifier, signing_key_from_seed,
};

/// A deterministic seed source (tests only: production seeds are random). Each call
/// gives another seed.
pub struct Seeds(u64);

impl Seeds {
    pub fn new(start: u64) -> Self {
        Seeds(start)
    }

    /// splitmix64 of a counter.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

pub fn namespace() -> Namespace {
    Namespace::new("test").unwrap()
}

pub fn signer() -> Signer {
    Signer::new(signing_key_from_seed([42; 32]), namespace())
}

/// The key the reference filter's chain hands over to first, then the one after it.
pub fn next_signer(n: u8) -> Signer {
    Signer::new(signing_key_from_seed([42 + n; 32]), namespace())
}

pub fn verifier() -> Verifier {
    Verifier::new(signer().public_key(), namespace())
}

/// Stages revocations of `(jti, exp)` into one delta and applies it.
pub fn revoke_all(filter: &mut Filter, items: &[(String, u64)], seeds: &mut Seeds) -> Delta {
    let mut staging = filter.stage();
    for (jti, exp) in items {
        staging.revoke(jti, *exp, || seeds.next()).unwrap();
    }
    let delta = Delta {
        epoch: filter.epoch(),
        version: filter.version() + 1,
        committed_at_ms: 0,
        changes: staging.finish(),
    };
    filter.apply(&delta).unwrap();
    delta
}

pub fn small_params(initial_capacity: u64) -> FilterParams {
    FilterParams {
        initial_capacity,
        ..FilterParams::default()
    }
}
