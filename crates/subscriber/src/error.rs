//! Typed errors of the subscriber. Each keeps its cause (`source()`); its message
//! includes the cause's.

use std::sync::Arc;
use std::time::Duration;

/// The error behind an [`AuthorityError`], shared: one answer goes to every check
/// that waited on the same `jti`.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why a [`crate::SubscriberOptions::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The NATS connection could not be made.
    #[error("cannot connect to NATS: {0}")]
    Nats(#[from] async_nats::ConnectError),
    /// A credentials or certificate file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Why the authority could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthorityError {
    /// No answer within the confirm timeout.
    #[error("authority did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be sent or nobody answers on the subject or URL.
    #[error("authority unreachable: {0}")]
    Unreachable(#[source] Cause),
    /// An answer that does not verify (bad signature, wrong nonce, wrong `jti`) or that
    /// does not parse.
    #[error("invalid authority answer: {0}")]
    InvalidAnswer(#[source] Cause),
    /// The authority answered with an error.
    #[error("authority error: {0}")]
    Failed(#[source] Cause),
    /// Until the confirm timeout, the authority only answered "not revoked" at a
    /// version older than the replica's: it has not applied a delta the replica holds,
    /// so its answer may predate the revocation that caused the filter hit.
    #[error("authority answered at version {answered}, behind the replica's {replica}")]
    Behind {
        /// The version of the authority's newest answer.
        answered: u64,
        /// The replica's version when it asked.
        replica: u64,
    },
}

impl AuthorityError {
    /// [`AuthorityError::Unreachable`] from an error or a message.
    pub fn unreachable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        AuthorityError::Unreachable(Cause::from(cause.into()))
    }

    /// [`AuthorityError::InvalidAnswer`] from an error or a message.
    pub fn invalid_answer(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        AuthorityError::InvalidAnswer(Cause::from(cause.into()))
    }

    /// [`AuthorityError::Failed`] from an error or a message.
    pub fn failed(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        AuthorityError::Failed(Cause::from(cause.into()))
    }
}

/// Why a check has no verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy is fail-closed and the authority could not answer (while stale, or on
    /// a filter hit). Services answer 503.
    #[error("revocation status unknown: {0}")]
    Unavailable(#[source] AuthorityError),
    /// The claims cannot name a revocable token (empty or oversized `jti`).
    #[error("invalid claims: {0}")]
    InvalidClaims(#[from] revocast_core::FilterError),
    /// The JWT does not verify (signature, `exp`, `aud`, ...) or lacks `jti`/`exp`.
    #[error("invalid token: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

impl Error {
    /// The token's `exp` is past (per the `Validation` given).
    pub fn is_expired(&self) -> bool {
        matches!(self, Error::Jwt(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature))
    }

    /// The policy could not decide: a 503, not a 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}
