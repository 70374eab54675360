//! [`Delta`] and [`Change`]: the unit of replication.

use bincode::{Decode, Encode};

use super::layer::LayerSpec;
use crate::rollover::SignedRollover;

/// One change inside a delta. Changes apply in order.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub enum Change {
    /// Open a new, empty layer on top of a bucket (creating the bucket if needed).
    OpenLayer(LayerSpec),
    /// Add a revoked `jti` to the newest layer of the bucket of `exp`.
    ///
    /// `sub` and `reason` do not touch the filter: they ride along so that the
    /// publisher can rebuild its exact records (the authority's answers) from the
    /// stream alone after a crash.
    Add {
        /// The token's `jti`.
        jti: String,
        /// The token's `exp`, unix seconds.
        exp: u64,
        /// The token's `sub`, if the revoke call gave it.
        sub: Option<String>,
        /// Why, as given to the revoke call.
        reason: Option<String>,
    },
    /// Reject every token of `sub` issued before `not_before` (kept as the maximum).
    SubjectCutoff {
        /// The subject.
        sub: String,
        /// Unix seconds.
        not_before: u64,
    },
    /// Reject every token issued before `not_before` (kept as the maximum).
    GlobalCutoff {
        /// Unix seconds.
        not_before: u64,
    },
    /// Drop the buckets and cutoffs that can no longer match a live token at `now`.
    Expire {
        /// The publisher's clock, unix seconds.
        now: u64,
    },
    /// Reject every token carrying the session id `sid` issued before `not_before`
    /// (kept as the maximum): an OpenID Connect logout of one session.
    SessionCutoff {
        /// The session id (the tokens' `sid` claim).
        sid: String,
        /// Unix seconds.
        not_before: u64,
    },
    /// The publisher hands the namespace over to a new signing key: the rollover joins
    /// the namespace's key chain, and the publisher signs everything after this delta
    /// with the new key (see [`crate::rollover`]).
    Rollover(SignedRollover),
}

/// A versioned list of changes: the unit of replication.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct Delta {
    /// The epoch of the namespace it belongs to (see [`crate::Filter::epoch`]).
    pub epoch: u64,
    /// The filter version this delta produces; it applies on top of `version - 1`.
    pub version: u64,
    /// When the publisher committed it, unix milliseconds (for lag figures only).
    pub committed_at_ms: u64,
    /// The changes, applied in order.
    pub changes: Vec<Change>,
}
