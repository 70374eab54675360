//! # revocast-core
//!
//! The parts of revocast that the publisher and every subscriber share: the revocation
//! filter, the wire format and the NATS names. Pure and synchronous: no I/O, no
//! randomness of its own (callers pass the seeds), and no clock but one: a
//! [`Verifier`] retires a rotated-away key by the system clock unless given its own.
//!
//! # Layout
//! - [`duration`]: durations as operators write them (`30s`, `1h30m`), for every
//!   binary's flags.
//! - [`filter`]: [`Filter`], Bloom filters partitioned by expiry that grow by layers;
//!   [`Delta`] and [`Change`], the unit of replication; [`Staging`], which plans a delta
//!   on the publisher; [`Digest`], which proves two replicas equal.
//! - [`wire`]: message types ([`Snapshot`], [`Heartbeat`], [`ConfirmRequest`],
//!   [`ConfirmResponse`]) and the signed, versioned envelope ([`Signer`], [`Verifier`]).
//! - [`http`]: the publisher's HTTP API as types: routes, bodies, the error body.
//! - [`codec`]: the bincode configuration of every body and of the digest.
//! - [`keys`]: the publisher's Ed25519 key as operators see it.
//! - [`rollover`]: key rotation: the signed hand-over from one key to the next, the
//!   chain of them, and the [`KeyRing`] a verifier checks signatures with.
//! - [`subjects`]: [`Namespace`] and every subject, stream and bucket name.
//! - [`error`]: typed errors.
//!
//! # Protocol (what the publisher and subscribers agree on)
//! All names come from [`Namespace`]; all payloads are envelopes from [`wire`].
//! - **Deltas**: JetStream stream [`Namespace::stream_name`] captures
//!   [`Namespace::log_subject`]. Each signed [`Delta`] carries its namespace's epoch
//!   and its own version; its stream sequence is only its place in the log, which may
//!   also hold messages that are not deltas of this publisher (anyone allowed to
//!   publish there can store one). The publisher is the single writer: it publishes
//!   with `Nats-Expected-Last-Sequence: <last sequence it read>` and `Nats-Msg-Id:
//!   <ns>:<epoch>:<version>`. File storage, `max_age` at least the longest token
//!   lifetime plus leeway, so every delta whose entries may still be live is in the
//!   stream. Only once JetStream acknowledged it does the publisher send the same bytes
//!   on [`Namespace::delta_subject`] (core NATS), where replicas receive it live. Two
//!   subjects, because core subscribers of a stream's own subject also receive
//!   publishes that JetStream then refuses or loses in a failover: a replica would hold
//!   a version that the stream does not. Every reader of the log takes the next delta
//!   of its epoch and skips (and counts) everything else ([`Filter::succession`];
//!   `docs/FORMAT.md`, section 8).
//! - **Snapshots**: object store bucket [`Namespace::snapshot_bucket`], object
//!   [`subjects::SNAPSHOT_OBJECT`], holding one signed [`Snapshot`] envelope. The
//!   publisher writes version 0 before it first reports ready, so a replica always
//!   finds one, then every N deltas or T seconds and on shutdown.
//! - **Heartbeats**: signed [`Heartbeat`] on [`Namespace::heartbeat_subject`] (core
//!   NATS, not stored), every second by default, ordered by `(version, beat)` within
//!   an epoch: a publisher that takes a namespace over commits a delta first.
//! - **Authority**: NATS micro service [`subjects::AUTHORITY_SERVICE`] with endpoint
//!   [`subjects::CONFIRM_ENDPOINT`] on [`Namespace::confirm_subject`]. Request: an
//!   unsigned [`ConfirmRequest`] ([`encode_request`]); answer: a signed
//!   [`ConfirmResponse`] echoing the nonce.
//! - **Bootstrap**: load the snapshot (covering the log up to message `S`, its
//!   `log_seq`), then read stream messages `S+1..=last`. If the stream's first
//!   sequence is above `S+1`, the snapshot is too old: fetch it again (the publisher
//!   snapshots far more often than `max_age`).

pub mod codec;
pub mod duration;
pub mod error;
pub mod filter;
pub mod http;
pub mod keys;
pub mod rollover;
pub mod subjects;
pub mod wire;

pub use error::{DecodeError, FilterError, KeyError, NamespaceError, RolloverError};
pub use filter::{
    Bitmap, BucketStats, Change, Delta, Digest, Filter, FilterParams, FilterState, FilterStats,
    LayerSpec, LayerStats, Lookup, MAX_BLOCKS, MAX_JTI_LEN, MAX_REASON_LEN, MAX_SUB_LEN, Probe,
    Staging, Succession, check_jti, check_sid, check_sub, optimal_bits_per_entry,
};
pub use keys::{
    KeyFile, PublicKey, signing_key_from_file, signing_key_from_seed, signing_key_to_file,
};
pub use rollover::{Followed, KeyRing, KeyRingStatus, Rollover, SignedRollover};
pub use subjects::Namespace;
pub use wire::{
    ConfirmRequest, ConfirmResponse, Heartbeat, Kind, Message, Signer, Snapshot, Verifier,
    decode_request, encode_request,
};

/// Re-exported so that callers name key types without depending on ed25519-dalek.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
