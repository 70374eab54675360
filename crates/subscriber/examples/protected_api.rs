//! An axum service protected by revocast.
//!
//! ```text
//! cargo run -p revocast-subscriber --example protected_api -- \
//!     --nats nats://127.0.0.1:4222 --namespace default \
//!     --publisher-key <public key printed by `revocast-publisher keygen`> \
//!     --jwt-hs256-secret dev-secret
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8081/whoami
//! ```
//!
//! Routes: `GET /whoami` (the token's claims, or the layer's 401/503),
//! `GET /revocast/stats` (the replica's counters, unauthenticated) and `GET /metrics`
//! (the same in the Prometheus text format).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow_like::{Context as _, Result};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use clap::Parser;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use revocast_core::duration::HumanDuration;
use revocast_subscriber::options::DEFAULT_MAX_STALENESS;
use revocast_subscriber::{
    Namespace, Policy, PublicKey, RevocastLayer, Stats, Subscriber, SubscriberOptions, TokenClaims,
};

/// An example API whose bearer tokens are checked against revocast.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "REVOCAST_NATS", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Revocation namespace.
    #[arg(long, env = "REVOCAST_NAMESPACE", default_value = "default")]
    namespace: Namespace,
    /// Address to serve HTTP on.
    #[arg(long, env = "REVOCAST_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The publisher's public key (base64url, as `revocast-publisher keygen` prints it).
    #[arg(long, env = "REVOCAST_PUBLISHER_KEY")]
    publisher_key: PublicKey,
    /// HS256 secret that signs the access tokens.
    #[arg(
        long,
        env = "REVOCAST_JWT_HS256_SECRET",
        conflicts_with = "jwt_public_key",
        required_unless_present = "jwt_public_key"
    )]
    jwt_hs256_secret: Option<String>,
    /// PEM file with the public key that signs the access tokens (RSA, EC P-256 or Ed25519).
    #[arg(long, env = "REVOCAST_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
    /// Expected `aud` claim, if any.
    #[arg(long, env = "REVOCAST_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// What to do when the replica is stale or the authority cannot answer.
    #[arg(long, env = "REVOCAST_POLICY", default_value = "fail-closed")]
    policy: Policy,
    /// How long the replica trusts itself without a heartbeat (`5s`, `500ms`, `1m`).
    #[arg(long, env = "REVOCAST_MAX_STALENESS", default_value_t = HumanDuration(DEFAULT_MAX_STALENESS))]
    max_staleness: HumanDuration,
}

/// Tiny stand-in for anyhow: this example keeps its dependencies to the crate's own.
mod anyhow_like {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

    pub trait Context<T> {
        fn context(self, what: &str) -> Result<T>;
    }

    impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
        fn context(self, what: &str) -> Result<T> {
            self.map_err(|e| format!("{what}: {e}").into())
        }
    }
}

#[derive(Clone)]
struct AppState {
    subscriber: Subscriber,
    registry: Arc<prometheus_client::registry::Registry>,
}

/// The service's routes: `/whoami` behind the layer, `/revocast/stats` and `/metrics` open.
fn router(subscriber: Subscriber, layer: RevocastLayer) -> Router {
    let mut registry = prometheus_client::registry::Registry::default();
    revocast_subscriber::metrics::register(&mut registry, &subscriber);
    let state = AppState {
        subscriber,
        registry: Arc::new(registry),
    };
    Router::new()
        .route("/whoami", get(whoami).layer(layer))
        .route("/revocast/stats", get(stats))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn whoami(Extension(claims): Extension<TokenClaims>) -> Json<TokenClaims> {
    Json(claims)
}

async fn stats(State(state): State<AppState>) -> Json<Stats> {
    Json(state.subscriber.stats())
}

async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn jwt_key(cli: &Cli) -> Result<(DecodingKey, Validation)> {
    let (key, algorithm) = match (&cli.jwt_hs256_secret, &cli.jwt_public_key) {
        (Some(secret), _) => (
            DecodingKey::from_secret(secret.as_bytes()),
            Algorithm::HS256,
        ),
        (None, Some(path)) => {
            let pem = std::fs::read(path).context(&format!("reading {}", path.display()))?;
            if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                (key, Algorithm::RS256)
            } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                (key, Algorithm::ES256)
            } else {
                (
                    DecodingKey::from_ed_pem(&pem).context("parsing the JWT public key")?,
                    Algorithm::EdDSA,
                )
            }
        }
        (None, None) => return Err("give --jwt-hs256-secret or --jwt-public-key".into()),
    };
    let mut validation = Validation::new(algorithm);
    match &cli.jwt_audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    Ok((key, validation))
}

#[tokio::main]
async fn main() -> Result<()> {
    revocast_daemon::init_logging(revocast_daemon::LogFormat::Text, "info");
    let cli = Cli::parse();
    let (key, validation) = jwt_key(&cli)?;
    if cli.max_staleness.0.is_zero() {
        return Err("--max-staleness must be above 0".into());
    }
    let subscriber = SubscriberOptions::new(cli.publisher_key)
        .namespace(cli.namespace.clone())
        .policy(cli.policy)
        .max_staleness(cli.max_staleness.0)
        .connect(&cli.nats)
        .await
        .context("connecting to NATS")?;
    let layer = RevocastLayer::new(subscriber.clone(), key, validation);
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .context("binding")?;
    tracing::info!(listen = %cli.listen, namespace = %cli.namespace, policy = %cli.policy, "serving; checks follow the policy until the replica is ready");
    axum::serve(listener, router(subscriber, layer))
        .with_graceful_shutdown(revocast_daemon::shutdown_signal())
        .await
        .context("serving")?;
    Ok(())
}
