//! Typed errors of the sidecar: all of them are configuration or startup errors;
//! requests never fail with an error, they get a status.

/// Why the sidecar cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The header prefix does not make valid header names.
    #[error("header prefix {0:?} does not make valid header names (letters, digits and - only)")]
    HeaderPrefix(String),
    /// `--max-staleness 0`.
    #[error("max staleness must be above 0")]
    ZeroStaleness,
    /// Neither an issuer nor a static key.
    #[error("give at least one --issuer (or a static key)")]
    NoKeys,
    /// An `--issuer-namespace` for an issuer that is not configured.
    #[error("--issuer-namespace names {0:?}, which is not an --issuer")]
    UnknownIssuer(String),
    /// The verifier's configuration.
    #[error(transparent)]
    Verifier(#[from] revocast_verifier::ConfigError),
    /// NATS.
    #[error(transparent)]
    Connect(#[from] revocast_subscriber::ConnectError),
    /// Binding or serving.
    #[error("serving: {0}")]
    Io(#[source] std::io::Error),
}
