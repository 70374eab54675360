//! An axum service protected by revocast.
//!
//! ```text
//! cargo run -p revocast-subscriber --example protected_api -- \
//!     --nats nats://127.0.0.1:4222 --namespace default \
//!     --publisher-key <public key printed by `revocast-publisher keygen`> \
//!     --issuer https://idp.example.com/realms/main --audience orders-api
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8081/whoami
//! ```
//!
//! With `--issuer` (repeatable), keys come from each issuer's OpenID discovery and
//! follow its rotations; `--issuer-namespace ISSUER=NAMESPACE` checks that issuer's
//! tokens against its own namespace. `--jwt-hs256-secret` or `--jwt-public-key` (a
//! PEM file) verify tokens without `iss` or of other issuers with a static key.
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
use revocast_core::duration::HumanDuration;
use revocast_subscriber::options::DEFAULT_MAX_STALENESS;
use revocast_subscriber::{
    Gate, Namespace, Policy, PublicKey, RevocastLayer, Stats, Subscriber, SubscriberOptions,
    TokenClaims,
};
use revocast_verifier::{IssuerOptions, StaticKey, Verifier};

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
    /// Issuer URL whose keys come from OpenID discovery (repeatable; comma-separated
    /// in the environment variable).
    #[arg(
        long = "issuer",
        env = "REVOCAST_ISSUER",
        value_delimiter = ',',
        requires = "audience"
    )]
    issuers: Vec<String>,
    /// `ISSUER=NAMESPACE`: check that issuer's tokens against this namespace's replica
    /// (repeatable). Other issuers use `--namespace`.
    #[arg(long = "issuer-namespace", env = "REVOCAST_ISSUER_NAMESPACE", value_delimiter = ',', value_parser = parse_issuer_namespace)]
    issuer_namespaces: Vec<(String, Namespace)>,
    /// Expected `aud` claim (required with `--issuer`).
    #[arg(long, env = "REVOCAST_AUDIENCE", alias = "jwt-audience")]
    audience: Option<String>,
    /// HS256 secret that signs the access tokens.
    #[arg(
        long,
        env = "REVOCAST_JWT_HS256_SECRET",
        conflicts_with = "jwt_public_key",
        required_unless_present_any = ["jwt_public_key", "issuers"]
    )]
    jwt_hs256_secret: Option<String>,
    /// PEM file with the public key that signs the access tokens (RSA, EC P-256 or Ed25519).
    #[arg(long, env = "REVOCAST_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
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
    subscribers: Vec<Subscriber>,
    registry: Arc<prometheus_client::registry::Registry>,
}

/// The service's routes: `/whoami` behind the layer, `/revocast/stats` and `/metrics` open.
fn router(layer: RevocastLayer) -> Router {
    let subscribers = layer.gate().subscribers();
    let mut registry = prometheus_client::registry::Registry::default();
    revocast_subscriber::metrics::register_all(&mut registry, &subscribers);
    let state = AppState {
        subscribers,
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

/// One entry per replica (one per namespace).
async fn stats(State(state): State<AppState>) -> Json<Vec<Stats>> {
    Json(state.subscribers.iter().map(Subscriber::stats).collect())
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

fn parse_issuer_namespace(value: &str) -> std::result::Result<(String, Namespace), String> {
    let (issuer, namespace) = value
        .rsplit_once('=')
        .ok_or_else(|| format!("{value:?} is not ISSUER=NAMESPACE"))?;
    let namespace = namespace
        .parse()
        .map_err(|e| format!("{namespace:?}: {e}"))?;
    Ok((issuer.to_owned(), namespace))
}

/// The issuers (discovery) and the static key, if any, as one verifier.
fn verifier(cli: &Cli) -> Result<Verifier> {
    let mut issuers = Vec::new();
    for issuer in &cli.issuers {
        let mut options = IssuerOptions::discover(issuer);
        if let Some(aud) = &cli.audience {
            options = options.audience(aud);
        }
        issuers.push(options);
    }
    let key = match (&cli.jwt_hs256_secret, &cli.jwt_public_key) {
        (Some(secret), _) => Some(StaticKey::hs256(secret.as_bytes())),
        (None, Some(path)) => {
            let pem = std::fs::read(path).context(&format!("reading {}", path.display()))?;
            Some(StaticKey::from_pem(&pem).context("parsing the JWT public key")?)
        }
        (None, None) => None,
    };
    if let Some(key) = key {
        let mut options = IssuerOptions::static_keys(None, vec![key]);
        if let Some(aud) = &cli.audience {
            options = options.audience(aud);
        }
        issuers.push(options);
    }
    Verifier::new(issuers).context("configuring token verification")
}

async fn replica(cli: &Cli, namespace: &Namespace) -> Result<Subscriber> {
    SubscriberOptions::new(cli.publisher_key)
        .namespace(namespace.clone())
        .policy(cli.policy)
        .max_staleness(cli.max_staleness.0)
        .connect(&cli.nats)
        .await
        .context("connecting to NATS")
}

#[tokio::main]
async fn main() -> Result<()> {
    revocast_daemon::init_logging(revocast_daemon::LogFormat::Text, "info");
    let cli = Cli::parse();
    if cli.max_staleness.0.is_zero() {
        return Err("--max-staleness must be above 0".into());
    }
    let verifier = verifier(&cli)?;
    let subscriber = replica(&cli, &cli.namespace).await?;
    let mut gate = Gate::with_verifier(verifier, subscriber.clone());
    for (issuer, namespace) in &cli.issuer_namespaces {
        let replica = replica(&cli, namespace).await?;
        gate = gate
            .replica_for(issuer, replica)
            .context("--issuer-namespace")?;
    }
    let layer = RevocastLayer::from_gate(gate);
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .context("binding")?;
    tracing::info!(listen = %cli.listen, namespace = %cli.namespace, policy = %cli.policy, "serving; checks follow the policy until the replica is ready");
    axum::serve(listener, router(layer))
        .with_graceful_shutdown(revocast_daemon::shutdown_signal())
        .await
        .context("serving")?;
    Ok(())
}
