//! The wire format: message types and the signed envelope around them. Every byte is
//! specified in `docs/FORMAT.md` (format version [`FORMAT_VERSION`]); the golden
//! vectors in `crates/core/test_data/` pin it.
//!
//! # Envelope
//! ```text
//! offset  size  field
//! 0       4     magic "RVCB"
//! 4       1     format version (5)
//! 5       1     kind (1 snapshot, 2 delta, 3 heartbeat, 4 confirm request, 5 confirm response)
//! 6       1     namespace length n (1..=64)
//! 7       n     namespace (ASCII)
//! 7+n     4     body length b (u32, little endian)
//! 11+n    b     body (bincode 2, standard configuration)
//! 11+n+b  64    Ed25519 signature over bytes 0..11+n+b (absent for confirm requests)
//! ```
//! Everything the publisher sends is signed by its key, and subscribers pin the public
//! key; a [`Verifier`] accepts the keys of its [`KeyRing`], which follows the
//! namespace's key rollovers ([`crate::rollover`]). Confirm *requests* come from services, which hold no publisher key: they are
//! unsigned, carry a nonce, and the signed response echoes it, so a replayed or forged
//! answer cannot pass for the authority's.
//!
//! Decoding checks, in order: size limit, magic, format version, kind, framing,
//! signature, namespace, body; each failure is its own [`DecodeError`] variant. A
//! build reads exactly one format version and refuses the others
//! ([`DecodeError::UnsupportedVersion`]).

use std::sync::{Arc, PoisonError, RwLock};

use bincode::{Decode, Encode};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _};

use crate::codec::bincode_config;
use crate::error::{DecodeError, RolloverError};
use crate::filter::{Delta, Digest, FilterState};
use crate::keys::PublicKey;
use crate::rollover::{Followed, KeyRing, KeyRingStatus, Rollover, SignedRollover};
use crate::subjects::Namespace;

/// First four bytes of every revocast message.
pub const MAGIC: [u8; 4] = *b"RVCB";
/// The envelope format this build writes and reads.
pub const FORMAT_VERSION: u8 = 5;
/// Default largest message a decoder accepts (snapshots of tens of millions of entries).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 << 20;
/// Memory a confirm request's body may claim while it decodes.
const MAX_REQUEST_BODY_BYTES: usize = 64 << 10;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Fixed header bytes before the namespace.
const HEADER_LEN: usize = 7;

/// The whole filter at a version.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct Snapshot {
    /// When the publisher took it, unix milliseconds.
    pub taken_at_ms: u64,
    /// The stream sequence of the last log message the state covers (0: none). A
    /// reader replays the log from the next one.
    pub log_seq: u64,
    /// The state.
    pub state: FilterState,
}

/// The publisher's pulse: where it is and what its filter hashes to.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct Heartbeat {
    /// The namespace's epoch.
    pub epoch: u64,
    /// The publisher's filter version.
    pub version: u64,
    /// The heartbeat's number within this publisher's life, from 1. A publisher that
    /// takes over a namespace commits a delta first, so that `(version, beat)` orders
    /// every heartbeat of an epoch ([`Heartbeat::order`]) whatever the clocks say.
    pub beat: u64,
    /// The publisher's clock, unix milliseconds (for lag figures only).
    pub time_ms: u64,
    /// Digest of the publisher's filter at `version`.
    pub digest: Digest,
}

impl Heartbeat {
    /// The order of heartbeats within an epoch: a replica drops one that does not come
    /// after the last it accepted (a replayed or delayed copy).
    pub fn order(&self) -> (u64, u64) {
        (self.version, self.beat)
    }
}

/// A service asks the authority whether a filter hit is really revoked.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ConfirmRequest {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`, if known.
    pub exp: Option<u64>,
    /// Random; echoed in the signed response.
    pub nonce: u64,
    /// The token's `sub`, if any: the authority applies subject cutoffs with it.
    pub sub: Option<String>,
    /// The token's `iat`, if any: the authority compares it with the cutoffs (without
    /// it, `exp - max_token_lifetime` stands in, as on replicas).
    pub iat: Option<u64>,
    /// The token's session id (`sid`), if any: the authority applies session cutoffs.
    pub sid: Option<String>,
}

/// The authority's signed answer.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ConfirmResponse {
    /// The `jti` asked about.
    pub jti: String,
    /// The request's nonce.
    pub nonce: u64,
    /// Whether the authority holds a revocation for `jti`.
    pub revoked: bool,
    /// The namespace's epoch the answer was computed in.
    pub epoch: u64,
    /// The authority's filter version when it answered.
    pub version: u64,
    /// The revoked token's `exp`.
    pub exp: Option<u64>,
    /// When it was revoked, unix seconds.
    pub revoked_at: Option<u64>,
    /// Why, as given to the revoke call. The publisher leaves it out (anyone allowed
    /// on the confirm subject may ask); kept in the format for other authorities.
    pub reason: Option<String>,
}

/// The kinds of message, as the envelope's kind byte says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`Snapshot`].
    Snapshot = 1,
    /// [`Delta`].
    Delta = 2,
    /// [`Heartbeat`].
    Heartbeat = 3,
    /// [`ConfirmRequest`] (unsigned).
    ConfirmRequest = 4,
    /// [`ConfirmResponse`].
    ConfirmResponse = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Result<Kind, DecodeError> {
        Ok(match b {
            1 => Kind::Snapshot,
            2 => Kind::Delta,
            3 => Kind::Heartbeat,
            4 => Kind::ConfirmRequest,
            5 => Kind::ConfirmResponse,
            other => return Err(DecodeError::UnknownKind(other)),
        })
    }

    /// The kind's name in errors and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Delta => "delta",
            Kind::Heartbeat => "heartbeat",
            Kind::ConfirmRequest => "confirm request",
            Kind::ConfirmResponse => "confirm response",
        }
    }

    /// Whether messages of this kind carry the publisher's signature.
    pub fn is_signed(self) -> bool {
        self != Kind::ConfirmRequest
    }
}

/// A decoded message of any kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// See [`Snapshot`].
    Snapshot(Snapshot),
    /// See [`Delta`].
    Delta(Delta),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// See [`ConfirmRequest`].
    ConfirmRequest(ConfirmRequest),
    /// See [`ConfirmResponse`].
    ConfirmResponse(ConfirmResponse),
}

impl Message {
    /// This message's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Snapshot(_) => Kind::Snapshot,
            Message::Delta(_) => Kind::Delta,
            Message::Heartbeat(_) => Kind::Heartbeat,
            Message::ConfirmRequest(_) => Kind::ConfirmRequest,
            Message::ConfirmResponse(_) => Kind::ConfirmResponse,
        }
    }

    fn encode_body(&self) -> Vec<u8> {
        let cfg = bincode_config();
        // Encoding plain data into a Vec cannot fail.
        match self {
            Message::Snapshot(m) => bincode::encode_to_vec(m, cfg),
            Message::Delta(m) => bincode::encode_to_vec(m, cfg),
            Message::Heartbeat(m) => bincode::encode_to_vec(m, cfg),
            Message::ConfirmRequest(m) => bincode::encode_to_vec(m, cfg),
            Message::ConfirmResponse(m) => bincode::encode_to_vec(m, cfg),
        }
        .unwrap_or_default()
    }

    fn decode_body(kind: Kind, body: &[u8]) -> Result<Message, DecodeError> {
        Ok(match kind {
            Kind::Snapshot => Message::Snapshot(body_of(body, kind)?),
            Kind::Delta => Message::Delta(body_of(body, kind)?),
            Kind::Heartbeat => Message::Heartbeat(body_of(body, kind)?),
            Kind::ConfirmRequest => Message::ConfirmRequest(body_of(body, kind)?),
            Kind::ConfirmResponse => Message::ConfirmResponse(body_of(body, kind)?),
        })
    }
}

macro_rules! message_from {
    ($($ty:ident),*) => {$(
        impl From<$ty> for Message {
            fn from(m: $ty) -> Message {
                Message::$ty(m)
            }
        }
    )*};
}
message_from!(Snapshot, Delta, Heartbeat, ConfirmRequest, ConfirmResponse);

/// Decodes a body of type `T`. bincode's limit counts the memory a length prefix
/// claims (in decoded size), so it stops a forged prefix from allocating more than the
/// limit: unsigned requests, which anyone can send, get a small one; signed messages,
/// verified before this point, the message size limit.
fn body_of<T: Decode<()>>(body: &[u8], kind: Kind) -> Result<T, DecodeError> {
    let result = if kind.is_signed() {
        let cfg = bincode_config().with_limit::<DEFAULT_MAX_MESSAGE_BYTES>();
        bincode::decode_from_slice::<T, _>(body, cfg)
    } else {
        let cfg = bincode_config().with_limit::<MAX_REQUEST_BODY_BYTES>();
        bincode::decode_from_slice::<T, _>(body, cfg)
    };
    let (value, used) = result.map_err(DecodeError::Body)?;
    if used != body.len() {
        return Err(DecodeError::BodyTrailingBytes(body.len() - used));
    }
    Ok(value)
}

fn frame(namespace: &Namespace, kind: Kind, body: &[u8]) -> Vec<u8> {
    let ns = namespace.as_str().as_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + ns.len() + 4 + body.len() + SIGNATURE_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    // Namespace::new guarantees 1..=64 bytes.
    out.push(ns.len() as u8);
    out.extend_from_slice(ns);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Encodes a confirm request (the one unsigned kind).
pub fn encode_request(namespace: &Namespace, request: &ConfirmRequest) -> Vec<u8> {
    frame(
        namespace,
        Kind::ConfirmRequest,
        &Message::ConfirmRequest(request.clone()).encode_body(),
    )
}

/// Signs messages for one namespace with the publisher's key.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    namespace: Namespace,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public_key", &self.public_key().to_string())
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Signer {
    /// A signer for `namespace` holding `key`.
    pub fn new(key: SigningKey, namespace: Namespace) -> Signer {
        Signer { key, namespace }
    }

    /// The public key subscribers pin.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// The namespace messages are signed for.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Signs a rollover handing the namespace's `epoch` over from this key to `to`, at
    /// place `index` of the chain, carried by the delta of `version`, made at `at_ms`,
    /// the old key accepted for `overlap_ms` more.
    pub fn rollover(
        &self,
        to: PublicKey,
        epoch: u64,
        (index, version): (u64, u64),
        at_ms: u64,
        overlap_ms: u64,
    ) -> SignedRollover {
        let rollover = Rollover {
            epoch,
            index,
            version,
            from: self.key.verifying_key().to_bytes(),
            to: to.0.to_bytes(),
            at_ms,
            overlap_ms,
        };
        let signature = self.key.sign(&rollover.signed_bytes()).to_bytes();
        SignedRollover {
            rollover,
            signature,
        }
    }

    /// Encodes and signs a message. Confirm requests are framed without a signature.
    pub fn encode(&self, message: &Message) -> Vec<u8> {
        let kind = message.kind();
        let mut out = frame(&self.namespace, kind, &message.encode_body());
        if kind.is_signed() {
            let signature = self.key.sign(&out);
            out.extend_from_slice(&signature.to_bytes());
        }
        out
    }
}

/// The clock a [`Verifier`] retires keys by: unix milliseconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Decodes messages for one namespace, verifying them against the keys of its
/// [`KeyRing`]. Clones share the ring: a rollover one of them follows (the sync task,
/// applying a delta) is followed by all (the store replaying the log, the authority
/// client checking answers).
#[derive(Clone)]
pub struct Verifier {
    ring: Arc<RwLock<KeyRing>>,
    namespace: Namespace,
    max_size: usize,
    clock: Clock,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.status())
            .field("namespace", &self.namespace)
            .field("max_size", &self.max_size)
            .finish()
    }
}

/// The envelope's parts, before the signature is checked.
struct Parts<'a> {
    kind: Kind,
    namespace: &'a [u8],
    signed: &'a [u8],
    body: &'a [u8],
    signature: &'a [u8],
}

fn split(bytes: &[u8], max_size: usize) -> Result<Parts<'_>, DecodeError> {
    if bytes.len() > max_size {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: max_size,
        });
    }
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) {
            DecodeError::Truncated
        } else {
            DecodeError::BadMagic
        });
    }
    if bytes[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = *bytes.get(4).ok_or(DecodeError::Truncated)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let kind = Kind::from_byte(*bytes.get(5).ok_or(DecodeError::Truncated)?)?;
    let ns_len = usize::from(*bytes.get(6).ok_or(DecodeError::Truncated)?);
    let ns_end = HEADER_LEN + ns_len;
    let namespace = bytes
        .get(HEADER_LEN..ns_end)
        .ok_or(DecodeError::Truncated)?;
    let len_bytes: [u8; 4] = bytes
        .get(ns_end..ns_end + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or(DecodeError::Truncated)?;
    let body_len = u32::from_le_bytes(len_bytes) as usize;
    let body_start = ns_end + 4;
    let body_end = body_start
        .checked_add(body_len)
        .ok_or(DecodeError::Truncated)?;
    let body = bytes
        .get(body_start..body_end)
        .ok_or(DecodeError::Truncated)?;
    let sig_len = if kind.is_signed() { SIGNATURE_LEN } else { 0 };
    let signature = bytes
        .get(body_end..body_end + sig_len)
        .ok_or(DecodeError::Truncated)?;
    if bytes.len() > body_end + sig_len {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(Parts {
        kind,
        namespace,
        signed: &bytes[..body_end],
        body,
        signature,
    })
}

fn check_namespace(expected: &Namespace, found: &[u8]) -> Result<(), DecodeError> {
    if found != expected.as_str().as_bytes() {
        return Err(DecodeError::WrongNamespace {
            expected: expected.to_string(),
            found: String::from_utf8_lossy(found).into_owned(),
        });
    }
    Ok(())
}

impl Verifier {
    /// A verifier for messages signed by `key` for `namespace`, following the
    /// namespace's key rollovers from it.
    pub fn new(key: PublicKey, namespace: Namespace) -> Verifier {
        Verifier::with_ring(KeyRing::new([key], false), namespace)
    }

    /// A verifier whose keys are `ring`'s.
    pub fn with_ring(ring: KeyRing, namespace: Namespace) -> Verifier {
        Verifier {
            ring: Arc::new(RwLock::new(ring)),
            namespace,
            max_size: DEFAULT_MAX_MESSAGE_BYTES,
            clock: Arc::new(system_clock),
        }
    }

    /// Retires keys by `clock` (unix milliseconds) instead of the system clock.
    pub fn clock(mut self, clock: Clock) -> Verifier {
        self.clock = clock;
        self
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, KeyRing> {
        // The ring is changed only by whole-value operations: a panic elsewhere
        // cannot leave it half changed.
        self.ring.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn ring_mut(&self) -> std::sync::RwLockWriteGuard<'_, KeyRing> {
        self.ring.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows one rollover (from a delta the caller applied) on every clone.
    pub fn follow(&self, rollover: &SignedRollover) -> Result<Followed, RolloverError> {
        self.ring_mut().follow(rollover)
    }

    /// Follows a chain (from a snapshot the caller loaded) on every clone.
    pub fn follow_chain(&self, chain: &[SignedRollover]) -> Result<Vec<Followed>, RolloverError> {
        self.ring_mut().follow_chain(chain)
    }

    /// Pins one more key on every clone.
    pub fn pin(&self, key: PublicKey) {
        self.ring_mut().pin(key);
    }

    /// The keys accepted now and those retired, for stats.
    pub fn status(&self) -> KeyRingStatus {
        self.ring().status((self.clock)())
    }

    /// Sets the largest message accepted (default 256 MiB).
    pub fn max_size(mut self, bytes: usize) -> Verifier {
        self.max_size = bytes;
        self
    }

    /// The namespace this verifier accepts.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Decodes a signed message of any kind.
    pub fn decode(&self, bytes: &[u8]) -> Result<Message, DecodeError> {
        let parts = split(bytes, self.max_size)?;
        if !parts.kind.is_signed() {
            return Err(DecodeError::UnexpectedKind {
                expected: "signed",
                found: parts.kind.name(),
            });
        }
        let parts = self.verify(parts)?;
        Message::decode_body(parts.kind, parts.body)
    }

    /// Decodes a message that must be of kind `expected`.
    pub fn decode_kind(&self, bytes: &[u8], expected: Kind) -> Result<Message, DecodeError> {
        let parts = self.verified(bytes, expected)?;
        Message::decode_body(parts.kind, parts.body)
    }

    /// Decodes a [`Delta`]: signed by a key accepted now, or by a key a rollover
    /// retired if the delta is of the history that key signed (its version not above
    /// the rollover's). A reader of the log reads a rotated namespace's old deltas
    /// that way, and nobody holding a retired key can add a new one.
    pub fn decode_delta(&self, bytes: &[u8]) -> Result<Delta, DecodeError> {
        let (parts, signature) = self.signed_parts(bytes, Kind::Delta)?;
        let last = self.signed_as_history(&parts, &signature)?;
        check_namespace(&self.namespace, parts.namespace)?;
        let delta: Delta = body_of(parts.body, Kind::Delta)?;
        match last {
            Some(last) if delta.version > last => Err(DecodeError::BadSignature),
            _ => Ok(delta),
        }
    }

    /// The parts of a message of kind `expected` and its signature, not checked yet.
    fn signed_parts<'a>(
        &self,
        bytes: &'a [u8],
        expected: Kind,
    ) -> Result<(Parts<'a>, Signature), DecodeError> {
        let parts = split(bytes, self.max_size)?;
        if parts.kind != expected {
            return Err(DecodeError::UnexpectedKind {
                expected: expected.name(),
                found: parts.kind.name(),
            });
        }
        let signature =
            Signature::from_slice(parts.signature).map_err(|_| DecodeError::BadSignature)?;
        Ok((parts, signature))
    }

    /// `None` when a key accepted now signed `parts`; `Some(v)` when a retired key did,
    /// which signed the history up to version `v`.
    fn signed_as_history(
        &self,
        parts: &Parts<'_>,
        signature: &Signature,
    ) -> Result<Option<u64>, DecodeError> {
        if self.signed_by_accepted(parts, signature) {
            return Ok(None);
        }
        self.ring()
            .historical((self.clock)())
            .iter()
            .find(|(key, _)| key.verify(parts.signed, signature).is_ok())
            .map(|&(_, last)| Some(last))
            .ok_or(DecodeError::BadSignature)
    }

    /// Decodes a [`Snapshot`] and follows the key chain it carries. A snapshot signed
    /// by a key this verifier does not accept yet is read once more through its chain:
    /// if the chain leads from an accepted key to the snapshot's signer, the snapshot
    /// is accepted and the ring follows the chain (a replica that pins an old key,
    /// started after a rotation).
    pub fn decode_snapshot(&self, bytes: &[u8]) -> Result<Snapshot, DecodeError> {
        let (parts, signature) = self.signed_parts(bytes, Kind::Snapshot)?;
        if let Ok(last) = self.signed_as_history(&parts, &signature) {
            check_namespace(&self.namespace, parts.namespace)?;
            let snapshot: Snapshot = body_of(parts.body, Kind::Snapshot)?;
            if last.is_some_and(|last| snapshot.state.version > last) {
                return Err(DecodeError::BadSignature);
            }
            self.follow_chain(&snapshot.state.key_chain)
                .map_err(DecodeError::KeyChain)?;
            return Ok(snapshot);
        }
        // Not signed by a key accepted now: read the chain the body carries (its
        // rollovers prove themselves) and try the keys it leads to, on a copy of the
        // ring that replaces the ring only if the snapshot then verifies.
        check_namespace(&self.namespace, parts.namespace)?;
        let snapshot: Snapshot = body_of(parts.body, Kind::Snapshot)?;
        let mut ring = self.ring().clone();
        ring.follow_chain(&snapshot.state.key_chain)
            .map_err(|_| DecodeError::BadSignature)?;
        let verified = ring
            .accepted((self.clock)())
            .iter()
            .any(|key| key.verify(parts.signed, &signature).is_ok());
        if !verified {
            return Err(DecodeError::BadSignature);
        }
        *self.ring_mut() = ring;
        Ok(snapshot)
    }

    fn signed_by_accepted(&self, parts: &Parts<'_>, signature: &Signature) -> bool {
        self.ring()
            .accepted((self.clock)())
            .iter()
            .any(|key| key.verify(parts.signed, signature).is_ok())
    }

    /// Decodes a [`Heartbeat`].
    pub fn decode_heartbeat(&self, bytes: &[u8]) -> Result<Heartbeat, DecodeError> {
        body_of(self.verified(bytes, Kind::Heartbeat)?.body, Kind::Heartbeat)
    }

    /// Decodes a [`ConfirmResponse`].
    pub fn decode_confirm_response(&self, bytes: &[u8]) -> Result<ConfirmResponse, DecodeError> {
        let kind = Kind::ConfirmResponse;
        body_of(self.verified(bytes, kind)?.body, kind)
    }

    /// The parts of a message of kind `expected` whose signature and namespace check.
    fn verified<'a>(&self, bytes: &'a [u8], expected: Kind) -> Result<Parts<'a>, DecodeError> {
        let parts = split(bytes, self.max_size)?;
        if parts.kind != expected {
            return Err(DecodeError::UnexpectedKind {
                expected: expected.name(),
                found: parts.kind.name(),
            });
        }
        self.verify(parts)
    }

    fn verify<'a>(&self, parts: Parts<'a>) -> Result<Parts<'a>, DecodeError> {
        let signature =
            Signature::from_slice(parts.signature).map_err(|_| DecodeError::BadSignature)?;
        if !self.signed_by_accepted(&parts, &signature) {
            return Err(DecodeError::BadSignature);
        }
        check_namespace(&self.namespace, parts.namespace)?;
        Ok(parts)
    }
}

/// Decodes an (unsigned) confirm request for `namespace`; the authority's side.
pub fn decode_request(
    bytes: &[u8],
    namespace: &Namespace,
    max_size: usize,
) -> Result<ConfirmRequest, DecodeError> {
    let parts = split(bytes, max_size)?;
    if parts.kind != Kind::ConfirmRequest {
        return Err(DecodeError::UnexpectedKind {
            expected: Kind::ConfirmRequest.name(),
            found: parts.kind.name(),
        });
    }
    check_namespace(namespace, parts.namespace)?;
    body_of(parts.body, parts.kind)
}
