//! # revocast-core
//!
//! The parts of revocast that the publisher and every subscriber share: the revocation
//! filter, the wire format and the NATS names. Pure and synchronous: no I/O, no
//! clock, no randomness of its own (callers pass the time and the seeds).
//!
//! # Layout
//! - [`filter`]: [`Filter`], Bloom filters partitioned by expiry that grow by layers;
//!   [`Delta`] and [`Change`], the unit of replication; [`Staging`], which plans a delta
//!   on the publisher; [`Digest`], which proves two replicas equal.
//! - [`wire`]: message types ([`Snapshot`], [`Heartbeat`], [`ConfirmRequest`],
//!   [`ConfirmResponse`]) and the signed, versioned envelope ([`Signer`], [`Verifier`]).
//! - [`keys`]: the publisher's Ed25519 key as operators see it.
//! - [`subjects`]: [`Namespace`] and every subject, stream and bucket name.
//! - [`error`]: typed errors.

pub mod error;
pub mod filter;
pub mod keys;
pub mod subjects;
pub mod wire;

pub use error::{DecodeError, FilterError, KeyError, NamespaceError};
pub use filter::{
    BucketStats, Change, Delta, Digest, Filter, FilterParams, FilterState, FilterStats,
    LayerSpec, LayerStats, Lookup, MAX_JTI_LEN, MAX_SUB_LEN, Probe, Staging, check_jti,
    check_sub, optimal_bits_per_entry,
};
pub use keys::{PublicKey, signing_key_from_file, signing_key_from_seed, signing_key_to_file};
pub use subjects::Namespace;
pub use wire::{
    ConfirmRequest, ConfirmResponse, Heartbeat, Kind, Message, Signer, Snapshot, Verifier,
    decode_request, encode_request,
};

/// Re-exported so that callers name key types without depending on ed25519-dalek.
pub use ed25519_dalek::SigningKey;
