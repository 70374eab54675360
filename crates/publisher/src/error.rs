//! Typed errors of the publisher library. Each keeps its cause (`source()`); the
//! message includes the cause's, so that a log line or the CLI's one line says all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use revocast_core::FilterError;
use revocast_nats::ReadError;

/// A cause of any type, shareable (a commit's error goes to every caller of its
/// batch).
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// `": <cause>"`, or nothing.
pub(crate) fn and_cause<E: std::fmt::Display>(cause: &Option<E>) -> String {
    cause.as_ref().map(|c| format!(": {c}")).unwrap_or_default()
}

/// Why the publisher could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The filter parameters do not validate.
    #[error("invalid filter parameters: {0}")]
    Filter(#[source] FilterError),
    /// A NATS URL or credentials file is not usable.
    #[error("NATS options: {what}: {source}")]
    NatsOptions {
        /// Which option.
        what: String,
        /// The cause.
        source: Cause,
    },
    /// Refused: writes would be open to the network.
    #[error(
        "refusing to listen on {0} without an admin token: set --admin-token \
         (REVOCAST_ADMIN_TOKEN), listen on a loopback address, or pass --insecure-no-auth"
    )]
    InsecureListen(SocketAddr),
    /// The signing key file could not be read or written.
    #[error("signing key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The signing key file does not parse.
    #[error("signing key file {path}: {source}")]
    KeyParse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: revocast_core::KeyError,
    },
    /// The operating system gave no randomness.
    #[error("no randomness available: {0}")]
    Random(#[source] getrandom::Error),
    /// The JWT verification key is not usable.
    #[error("JWT verification key: {reason}{}", and_cause(.source))]
    JwtKey {
        /// What is wrong.
        reason: String,
        /// The cause, when reading a file failed.
        source: Option<std::io::Error>,
    },
    /// NATS could not be reached or refused a request (usually transient).
    #[error("NATS: {what}: {source}")]
    Nats {
        /// What was asked.
        what: String,
        /// The client's error.
        source: Cause,
    },
    /// Reading the stream or the snapshot failed for a transient reason.
    #[error("NATS: {0}")]
    Read(#[source] ReadError),
    /// What NATS holds contradicts this publisher: wrong key, missing or reordered
    /// deltas, a stream that went backwards. The publisher stops rather than guess.
    #[error("inconsistent state in NATS: {what}{}", and_cause(.source))]
    Inconsistent {
        /// What contradicts what.
        what: String,
        /// The cause, when one error says it (a delta that does not verify or apply).
        source: Option<Cause>,
    },
    /// The namespace's key was rotated away from the key this publisher holds.
    #[error(
        "this namespace's signing key was rotated to {head} (rollover {rollover}); this \
         publisher holds {own}: start it with the new key's file (a rotation rewrites the \
         key file in place, and leaves the new key in `<key file>.next` if it could not)"
    )]
    KeyRotated {
        /// The key the namespace's chain handed over to last (base64url).
        head: String,
        /// The number of rollovers in the chain.
        rollover: u64,
        /// This publisher's key (base64url).
        own: String,
    },
    /// Binding or serving HTTP failed.
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
    /// A bounded wait ran out.
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// The bound.
        after: Duration,
    },
    /// A task stopped when it should not have.
    #[error("{0}")]
    Stopped(&'static str),
    /// A background task panicked or was cancelled.
    #[error("publisher task {task} failed: {source}")]
    Task {
        /// Which task.
        task: &'static str,
        /// How it ended.
        source: tokio::task::JoinError,
    },
}

impl Error {
    /// An inconsistency described by `what` alone.
    pub(crate) fn inconsistent(what: impl Into<String>) -> Error {
        Error::Inconsistent {
            what: what.into(),
            source: None,
        }
    }

    /// An inconsistency with the error that revealed it.
    pub(crate) fn inconsistent_by(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Inconsistent {
            what: what.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// A failed NATS request.
    pub(crate) fn nats(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Nats {
            what: what.into(),
            source: Cause::from(source.into()),
        }
    }

    /// Whether starting again may work: NATS away, not what it holds or the
    /// configuration.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, Error::Nats { .. } | Error::Read(_))
    }
}

/// Maps a read of the store: NATS away is transient (the caller retries), anything
/// about what NATS holds is an inconsistency.
impl From<ReadError> for Error {
    fn from(e: ReadError) -> Error {
        if e.is_transient() {
            Error::Read(e)
        } else {
            Error::inconsistent_by("reading the stream or the snapshot", e)
        }
    }
}
