//! The one place that builds HTTP clients.

use std::time::Duration;

use crate::error::ConfigError;

/// Connect timeout of every request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout of every request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds an HTTP client for key fetches (and any other HTTP this crate's users need):
/// timeouts, at most 5 redirects, https through rustls.
///
/// reqwest is built with its `rustls` feature, whose crypto provider (aws-lc-rs) is
/// compiled in, so building a client cannot panic for want of a process-wide rustls
/// provider (the `rustls-no-provider` feature would). async-nats uses the same
/// provider, so rustls has exactly one and resolves it from its crate features.
pub fn http_client() -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("revocast/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ConfigError::HttpClient)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_builds_without_a_runtime_or_a_provider_installed() {
        assert!(super::http_client().is_ok());
    }
}
