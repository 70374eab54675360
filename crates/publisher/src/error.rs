//! Typed errors of the publisher library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why the publisher could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
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
    Random(String),
    /// The JWT verification key does not parse.
    #[error("JWT verification key: {0}")]
    JwtKey(String),
    /// NATS could not be reached or refused a request (usually transient).
    #[error("NATS: {0}")]
    Nats(String),
    /// What NATS holds contradicts this publisher: wrong key, missing or reordered
    /// deltas, a stream that went backwards. The publisher stops rather than guess.
    #[error("inconsistent state in NATS: {0}")]
    Inconsistent(String),
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
    /// A background task panicked or was cancelled.
    #[error("publisher task failed: {0}")]
    Task(String),
}
