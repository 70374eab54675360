//! Typed errors of the filter and the codec.

/// Why a filter operation was refused. The filter is unchanged whenever one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The delta's version is not above the filter's: it was applied already.
    #[error("duplicate delta: filter is at version {have}, delta is version {got}")]
    Duplicate {
        /// The filter's version.
        have: u64,
        /// The delta's version.
        got: u64,
    },
    /// The delta's version skips at least one version.
    #[error("gap: filter is at version {have}, delta is version {got}")]
    Gap {
        /// The filter's version.
        have: u64,
        /// The delta's version.
        got: u64,
    },
    /// The delta belongs to another epoch of the namespace.
    #[error("the delta is of epoch {got:016x}, the filter of epoch {have:016x}")]
    OtherEpoch {
        /// The filter's epoch.
        have: u64,
        /// The delta's epoch.
        got: u64,
    },
    /// Parameters that do not make a usable filter.
    #[error("invalid filter parameters: {0}")]
    InvalidParams(&'static str),
    /// A layer's size, bits per key, seed or bitmap is malformed.
    #[error("invalid layer: {0}")]
    InvalidLayer(&'static str),
    /// A snapshot's state is malformed.
    #[error("invalid filter state: {0}")]
    InvalidState(&'static str),
    /// An entry names a bucket that has no layer to take it.
    #[error("bucket {0} has no layer")]
    NoLayer(u64),
    /// A bucket would exceed the layer limit.
    #[error("bucket {0} would exceed the layer limit")]
    TooManyLayers(u64),
    /// `jti` is empty.
    #[error("jti is empty")]
    EmptyJti,
    /// `jti` is longer than [`crate::MAX_JTI_LEN`] bytes.
    #[error("jti is {0} bytes long; the limit is 256")]
    JtiTooLong(usize),
    /// `reason` is longer than [`crate::filter::MAX_REASON_LEN`] bytes.
    #[error("reason is {0} bytes long; the limit is 1024")]
    ReasonTooLong(usize),
    /// `sub` is empty.
    #[error("sub is empty")]
    EmptySub,
    /// `sub` is longer than [`crate::MAX_SUB_LEN`] bytes.
    #[error("sub is {0} bytes long; the limit is 256")]
    SubTooLong(usize),
    /// `sid` is empty.
    #[error("sid is empty")]
    EmptySid,
    /// `sid` is longer than [`crate::MAX_SUB_LEN`] bytes.
    #[error("sid is {0} bytes long; the limit is 256")]
    SidTooLong(usize),
    /// A key rollover does not extend the namespace's key chain.
    #[error("key rollover: {0}")]
    Rollover(#[from] RolloverError),
}

/// Why a key rollover was refused (see [`crate::rollover`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloverError {
    /// Its signature does not verify against the key it hands over from.
    #[error("rollover {index} is not signed by the key it hands over from")]
    BadSignature {
        /// Its place in the chain.
        index: u64,
    },
    /// One of its keys is not a valid Ed25519 public key.
    #[error("rollover {index} names an invalid Ed25519 key")]
    InvalidKey {
        /// Its place in the chain.
        index: u64,
    },
    /// Not the next place in the chain.
    #[error("rollover {got} out of order: the chain's next is {expected}")]
    OutOfOrder {
        /// The next place.
        expected: u64,
        /// Its place.
        got: u64,
    },
    /// It hands over from another key than the one the chain handed over to last.
    #[error("rollover {index} does not start from the key the chain handed over to last")]
    Broken {
        /// Its place in the chain.
        index: u64,
    },
    /// It hands over to a key the chain used before (or to its own key).
    #[error("rollover {index} hands over to a key the chain used before")]
    KeyReused {
        /// Its place in the chain.
        index: u64,
    },
    /// It belongs to another epoch of the namespace.
    #[error("rollover {index} belongs to epoch {epoch:016x}")]
    OtherEpoch {
        /// Its place in the chain.
        index: u64,
        /// Its epoch.
        epoch: u64,
    },
    /// It differs from the rollover this replica followed at the same place.
    #[error("rollover {index} differs from the one followed at that place (a forked chain)")]
    Fork {
        /// Its place in the chain.
        index: u64,
    },
    /// The chain is full.
    #[error("the key chain holds {0} rollovers already")]
    TooMany(usize),
    /// Its version is not the version of the delta carrying it (or, in a chain, not
    /// above the previous rollover's and within the filter's).
    #[error("rollover {index} names version {version}, not the version of the delta carrying it")]
    WrongVersion {
        /// Its place in the chain.
        index: u64,
        /// The version it names.
        version: u64,
    },
    /// Signing asked for with a key that is not the one the rollover hands over from.
    #[error("a rollover must be signed by the key it hands over from")]
    NotFromSigner,
}

/// Why bytes were not accepted as a revocast message. Checked in this order: size,
/// magic, format version, kind, framing, signature, namespace, body.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Larger than the decoder's size limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Message size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Shorter than its header or than the lengths it declares.
    #[error("message is truncated")]
    Truncated,
    /// Does not start with the revocast magic bytes.
    #[error("not a revocast message (bad magic bytes)")]
    BadMagic,
    /// A format version this build does not read: an older or newer publisher.
    #[error(
        "unsupported wire format version {found}: this build reads version {supported} \
         (publisher and subscribers must run releases with the same format version)"
    )]
    UnsupportedVersion {
        /// The message's format version.
        found: u8,
        /// The one this build reads ([`crate::wire::FORMAT_VERSION`]).
        supported: u8,
    },
    /// A message kind this build does not know.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A known kind, but not the one expected here.
    #[error("expected a {expected} message, got {found}")]
    UnexpectedKind {
        /// What the caller wanted.
        expected: &'static str,
        /// What the message is.
        found: &'static str,
    },
    /// The signature does not verify against any key the verifier accepts.
    #[error("bad signature: not signed by a publisher key this replica accepts")]
    BadSignature,
    /// Signed for another namespace.
    #[error("message is for namespace {found:?}, expected {expected:?}")]
    WrongNamespace {
        /// The decoder's namespace.
        expected: String,
        /// The message's namespace.
        found: String,
    },
    /// The body does not decode.
    #[error("malformed body")]
    Body(#[source] bincode::error::DecodeError),
    /// The body decodes but leaves bytes over.
    #[error("malformed body: {0} bytes left over after it")]
    BodyTrailingBytes(usize),
    /// Bytes left over after the signature.
    #[error("trailing bytes after the message")]
    TrailingBytes,
    /// A snapshot's key chain does not extend the one this verifier followed.
    #[error("snapshot key chain refused: {0}")]
    KeyChain(#[source] RolloverError),
}

impl DecodeError {
    /// A short, stable label for counters and logs (`bad_signature`, `truncated`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Truncated => "truncated",
            DecodeError::BadMagic => "bad_magic",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
            DecodeError::UnknownKind(_) => "unknown_kind",
            DecodeError::UnexpectedKind { .. } => "unexpected_kind",
            DecodeError::BadSignature => "bad_signature",
            DecodeError::WrongNamespace { .. } => "wrong_namespace",
            DecodeError::Body(_) | DecodeError::BodyTrailingBytes(_) => "malformed_body",
            DecodeError::TrailingBytes => "trailing_bytes",
            DecodeError::KeyChain(_) => "key_chain",
        }
    }
}

/// A key or key file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64url.
    #[error("key is not valid base64url")]
    Encoding(#[source] base64::DecodeError),
    /// Not 32 bytes.
    #[error("key must be 32 bytes, got {0}")]
    Length(usize),
    /// Not a valid Ed25519 public key.
    #[error("not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// The key file does not have the expected header.
    #[error("not a revocast signing key file (expected a line `{0}`)")]
    BadFile(&'static str),
    /// A line after the secret that is not `retired <public key>`.
    #[error("unexpected line in the key file: {0:?} (expected `retired <public key>`)")]
    BadLine(String),
}

/// A namespace that cannot be used in subject, stream and bucket names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid namespace {0:?}: use 1 to 64 characters from a-z, A-Z, 0-9, '-' and '_'")]
pub struct NamespaceError(pub String);
