//! Typed errors of the verifier. Each keeps its cause (`source()`).

/// Why a verifier could not be built: the configuration is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No issuer was given.
    #[error("no issuer is configured")]
    NoIssuer,
    /// The same issuer twice.
    #[error("issuer {0:?} is configured twice")]
    DuplicateIssuer(String),
    /// Two static key sets without an issuer: a token without `iss` could not pick one.
    #[error("only one key set may be configured without an issuer")]
    SeveralAnonymous,
    /// An issuer or JWKS URL that is not `http://` or `https://`.
    #[error("{what} {url:?} is not an http:// or https:// URL")]
    BadUrl {
        /// `issuer` or `jwks_uri`.
        what: &'static str,
        /// The URL given.
        url: String,
    },
    /// A static key set with no key.
    #[error("the static key set of {0:?} is empty")]
    NoStaticKey(String),
    /// A PEM file that holds no RSA, EC or Ed25519 public key.
    #[error("not an RSA, EC or Ed25519 public key in PEM: {0}")]
    BadPem(#[source] jsonwebtoken::errors::Error),
    /// The HTTP client could not be built (TLS roots, ...).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Why a key set could not be fetched. The last good key set stays in use.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed (connection refused, timeout, TLS, ...).
    #[error("GET {url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not 200.
    #[error("GET {url}: status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// A body above the size limit.
    #[error("GET {url}: body larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// A body that is not the expected JSON document.
    #[error("GET {url}: not a {what}: {source}")]
    Body {
        /// The URL.
        url: String,
        /// `discovery document` or `JWK set`.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The discovery document names another issuer (OpenID Connect Discovery 1.0,
    /// section 4.3: it must be exactly the configured one).
    #[error("discovery at {url} names issuer {found:?}, expected exactly {expected:?}")]
    IssuerMismatch {
        /// The discovery URL.
        url: String,
        /// The configured issuer.
        expected: String,
        /// The document's `issuer`.
        found: String,
    },
    /// A `jwks_uri` that is not http(s).
    #[error("discovery at {url} gives jwks_uri {jwks_uri:?}, not an http(s) URL")]
    BadJwksUri {
        /// The discovery URL.
        url: String,
        /// The document's `jwks_uri`.
        jwks_uri: String,
    },
    /// A key set with no key usable for signatures.
    #[error("{url}: no usable signing key in the set")]
    NoKeys {
        /// The JWKS URL.
        url: String,
    },
}

/// Why a token does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Not three base64url parts with a JSON header (`alg: none` included: no such
    /// algorithm is accepted).
    #[error("the token is not a signed JWT: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    /// No `iss`, and no key set is configured without an issuer.
    #[error("the token has no iss claim")]
    MissingIssuer,
    /// An `iss` that is not configured.
    #[error("issuer {0:?} is not configured")]
    UnknownIssuer(String),
    /// No key with the token's `kid` (after one refetch, if the cooldown allowed it).
    #[error("no key {kid:?} in the key set of {issuer:?}")]
    UnknownKey {
        /// The issuer.
        issuer: String,
        /// The token's `kid`.
        kid: Option<String>,
    },
    /// The header's `alg` is not the key's.
    #[error("algorithm {alg:?} is not allowed for the key of {issuer:?}")]
    AlgorithmNotAllowed {
        /// The issuer.
        issuer: String,
        /// The header's `alg`.
        alg: jsonwebtoken::Algorithm,
    },
    /// `typ` is not `at+jwt` and the issuer requires RFC 9068 access tokens.
    #[error("token type {0:?} is not at+jwt")]
    WrongType(Option<String>),
    /// No key set was ever fetched for the issuer: nobody can tell whether the token
    /// is good. Services answer 503.
    #[error("no keys for issuer {issuer:?} yet: {cause}")]
    KeysUnavailable {
        /// The issuer.
        issuer: String,
        /// The last fetch error.
        cause: String,
    },
    /// Signature, `exp`, `nbf`, `iss` or `aud` (jsonwebtoken's checks), or claims that
    /// do not deserialise.
    #[error("invalid token: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

impl VerifyError {
    /// The token's `exp` is past.
    pub fn is_expired(&self) -> bool {
        matches!(self, VerifyError::Jwt(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature))
    }

    /// Nobody can decide now (no keys yet): a 503, not a 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, VerifyError::KeysUnavailable { .. })
    }
}
