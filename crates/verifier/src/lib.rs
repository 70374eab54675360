//! # revocast-verifier
//!
//! Verifies JWT access tokens with keys from their issuer, so that a service (or the
//! `revocast-sidecar`) is configured with an issuer URL alone and keeps working
//! across key rotations.
//!
//! - **Keys**: OpenID discovery (`<issuer>/.well-known/openid-configuration`, whose
//!   `issuer` must equal the configured one exactly) then its `jwks_uri`; or a JWKS URL;
//!   or static keys (PEM, HS256).
//! - **Rotation**: a token with an unknown `kid` triggers one refetch, at most once
//!   per cooldown (30 s); keys are refreshed in the background after `Cache-Control:
//!   max-age`, clamped to 60 s ..= 24 h; a failed fetch keeps the last good set; one
//!   fetch runs at a time, and verifications of known keys never wait for it; the
//!   first fetch starts at once and is retried with backoff while the endpoint is down.
//! - **Checks**: the algorithm comes from the key (never `none`); `exp`, `nbf`, `iss`
//!   and `aud`; optionally `typ: at+jwt` (RFC 9068). A token verified before is
//!   answered from a cache (10,000 entries) until its `exp`, while the key set that
//!   verified it is still the current one: the signature (hundreds of microseconds
//!   for ES256) is checked once per token, not once per request.
//! - **Several issuers**: the token's `iss`, read before verification only to pick
//!   the issuer, selects its keys; an issuer that is not configured is refused.
//!
//! ```no_run
//! # async fn example(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use revocast_verifier::{IssuerOptions, Verifier};
//! let verifier = Verifier::new(vec![
//!     IssuerOptions::discover("https://idp.example.com").audience("orders-api").require_at_jwt(true),
//!     IssuerOptions::discover("https://partner.example.org").audience("orders-api"),
//! ])?;
//! let verified = verifier.verify::<serde_json::Value>(token).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`verifier`]: [`Verifier`], the handle, and [`Verified`].
//! - [`issuer`]: [`IssuerOptions`] (one issuer) and [`KeySource`].
//! - `remote`: keys fetched by discovery or from a JWKS URL: the cache, the refresher.
//! - [`keys`]: [`StaticKey`] and key sets, with the algorithms each key allows.
//! - [`client`]: [`http_client`], the one place that builds HTTP clients.
//! - [`error`]: typed errors.

pub mod client;
pub mod error;
pub mod issuer;
pub mod keys;
mod remote;
pub mod verifier;

pub use client::http_client;
pub use error::{ConfigError, FetchError, VerifyError};
pub use issuer::{IssuerOptions, IssuerStatus, KeySource};
pub use keys::StaticKey;
pub use remote::{DISCOVERY_PATH, Refresh};
pub use verifier::{Verified, Verifier};

/// Re-exported so that callers build static keys and name algorithms without an
/// extra dependency.
pub use jsonwebtoken;

/// Whether `url` is an absolute `http://` or `https://` URL with a host.
pub(crate) fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}
