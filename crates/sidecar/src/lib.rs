//! # revocast-sidecar
//!
//! A daemon that embeds revocast replicas and a token verifier, and answers the
//! forward-auth contract shared by nginx `auth_request`, Envoy `ext_authz` (HTTP),
//! Istio, Traefik `ForwardAuth`, Caddy `forward_auth` and APISIX, so that services
//! in any language refuse revoked tokens with no code of their own:
//!
//! | route | answer |
//! | --- | --- |
//! | any method, `/check` and below | 200 + identity headers, 401 + RFC 6750 challenge, or 503; never another status |
//! | `POST /introspect` | RFC 7662 introspection (HTTP Basic client authentication) |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 once every replica is ready and every issuer's keys are loaded |
//! | `GET /metrics` | OpenMetrics: `revocast_replica_*`, `revocast_sidecar_*`, `revocast_verifier_*` |
//! | `GET /stats` | JSON: replicas, issuers, counters |
//!
//! The identity headers of a 200 are `<prefix>Subject`, `<prefix>Jti`,
//! `<prefix>Client-Id` and `<prefix>Scope` (prefix `X-Auth-` by default), always sent,
//! empty when the token lacks the claim (`sub`, `jti`, `client_id` or `azp`, `scope` or
//! `scp`).
//!
//! # Layout
//! - [`config`]: [`Config`], what `main` builds from flags.
//! - [`app`]: the routes and their handlers ([`app::router`]).
//! - [`counters`]: the sidecar's counters, served by `/stats` and `/metrics`.
//! - [`error`]: typed errors.
//! - `main.rs`: flags (each with a `REVOCAST_*` variable), logging, signals.

pub mod app;
pub mod config;
pub mod counters;
pub mod error;

use std::future::Future;

use tokio::net::TcpListener;

pub use app::App;
pub use config::Config;
pub use error::Error;

/// Connects the replicas, starts the verifier, and serves on `listener` until
/// `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let app = App::start(config).await?;
    tracing::info!(listen = %listener.local_addr().map_err(Error::Io)?, "serving the forward-auth contract");
    axum::serve(listener, app::router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Io)
}
