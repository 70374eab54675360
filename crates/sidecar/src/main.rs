//! `revocast-sidecar`: parses the command line (every flag also reads a `REVOCAST_*`
//! variable), sets up logging, binds, and calls [`revocast_sidecar::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use clap::builder::BoolishValueParser;
use revocast_core::duration::HumanDuration;
use revocast_daemon::LogFormat;
use revocast_sidecar::Config;
use revocast_sidecar::config::{ClientCredentials, DEFAULT_HEADER_PREFIX};
use revocast_subscriber::options::{DEFAULT_CONFIRM_TIMEOUT, DEFAULT_MAX_STALENESS};
use revocast_subscriber::{Namespace, Policy, PublicKey};
use revocast_verifier::{IssuerOptions, StaticKey};

/// revocast sidecar: forward-auth (nginx, Envoy, Traefik, Caddy) and RFC 7662
/// introspection, answered from a local revocast replica.
#[derive(Debug, Parser)]
#[command(name = "revocast-sidecar", version, about)]
struct Cli {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "REVOCAST_NATS", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Revocation namespace (of issuers without --issuer-namespace).
    #[arg(long, env = "REVOCAST_NAMESPACE", default_value_t = Namespace::default())]
    namespace: Namespace,
    /// The publisher's public key (base64url, as `revocast-publisher keygen` prints it).
    /// The replicas follow the publisher's key rotations from it.
    #[arg(long, env = "REVOCAST_PUBLISHER_KEY")]
    publisher_key: PublicKey,
    /// One more publisher key to trust (repeatable; comma-separated in the variable):
    /// the key a rotation will switch to, before it happens.
    #[arg(
        long = "also-trust-key",
        env = "REVOCAST_ALSO_TRUST_KEYS",
        value_delimiter = ','
    )]
    also_trust_keys: Vec<PublicKey>,
    /// Trust the pinned keys only: refuse every key rollover to a key not pinned
    /// (when a publisher key may be stolen; see the key compromise procedure).
    #[arg(long, env = "REVOCAST_PIN_ONLY")]
    pin_only: bool,
    /// Issuer URL; keys by OpenID discovery (repeatable; comma-separated in the variable).
    #[arg(long = "issuer", env = "REVOCAST_ISSUER", value_delimiter = ',')]
    issuers: Vec<String>,
    /// `ISSUER=NAMESPACE`: that issuer's tokens are checked against that namespace.
    #[arg(long = "issuer-namespace", env = "REVOCAST_ISSUER_NAMESPACE", value_delimiter = ',', value_parser = parse_issuer_namespace)]
    issuer_namespaces: Vec<(String, Namespace)>,
    /// Accepted `aud` (repeatable). Required with --issuer.
    #[arg(long = "audience", env = "REVOCAST_AUDIENCE", value_delimiter = ',')]
    audiences: Vec<String>,
    /// Require `typ: at+jwt` (RFC 9068 access tokens; keeps ID tokens out).
    #[arg(long, env = "REVOCAST_REQUIRE_AT_JWT", value_parser = BoolishValueParser::new(), default_value_t = false)]
    require_at_jwt: bool,
    /// HS256 secret for tokens without `iss` (tests and simple setups).
    #[arg(
        long,
        env = "REVOCAST_JWT_HS256_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    jwt_hs256_secret: Option<String>,
    /// PEM public key for tokens without `iss` (RSA, EC or Ed25519).
    #[arg(long, env = "REVOCAST_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
    /// Address to serve HTTP on.
    #[arg(long, env = "REVOCAST_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// fail-closed (503 when nobody can decide) or fail-open.
    #[arg(long, env = "REVOCAST_POLICY", default_value = "fail-closed")]
    policy: Policy,
    /// How long a replica trusts itself without a heartbeat (`5s`, `500ms`).
    #[arg(long, env = "REVOCAST_MAX_STALENESS", default_value_t = HumanDuration(DEFAULT_MAX_STALENESS))]
    max_staleness: HumanDuration,
    /// How long a check waits for the authority.
    #[arg(long, env = "REVOCAST_CONFIRM_TIMEOUT", default_value_t = HumanDuration(DEFAULT_CONFIRM_TIMEOUT))]
    confirm_timeout: HumanDuration,
    /// Prefix of the identity headers of a 200.
    #[arg(long, env = "REVOCAST_HEADER_PREFIX", default_value = DEFAULT_HEADER_PREFIX)]
    header_prefix: String,
    /// Client id that `POST /introspect` requires (HTTP Basic); without it the route is off.
    #[arg(
        long,
        env = "REVOCAST_INTROSPECTION_CLIENT_ID",
        requires = "introspection_client_secret"
    )]
    introspection_client_id: Option<String>,
    /// Its secret.
    #[arg(
        long,
        env = "REVOCAST_INTROSPECTION_CLIENT_SECRET",
        hide_env_values = true,
        requires = "introspection_client_id"
    )]
    introspection_client_secret: Option<String>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "REVOCAST_LOG_JSON", value_parser = BoolishValueParser::new(), default_value_t = false)]
    log_json: bool,
}

fn parse_issuer_namespace(value: &str) -> Result<(String, Namespace), String> {
    let (issuer, namespace) = value
        .rsplit_once('=')
        .ok_or_else(|| format!("{value:?} is not ISSUER=NAMESPACE"))?;
    let namespace = namespace
        .parse()
        .map_err(|e| format!("{namespace:?}: {e}"))?;
    Ok((issuer.to_owned(), namespace))
}

fn config(mut cli: Cli) -> Result<Config, String> {
    // An empty variable (`REVOCAST_ISSUER=` in a compose file) names no issuer.
    cli.issuers.retain(|s| !s.trim().is_empty());
    cli.audiences.retain(|s| !s.trim().is_empty());
    if !cli.issuers.is_empty() && cli.audiences.is_empty() {
        return Err("--issuer needs --audience: tokens for other services must not pass".into());
    }
    let with_rules = |mut options: IssuerOptions| {
        for aud in &cli.audiences {
            options = options.audience(aud);
        }
        options.require_at_jwt(cli.require_at_jwt)
    };
    let mut issuers: Vec<IssuerOptions> = cli
        .issuers
        .iter()
        .map(|url| with_rules(IssuerOptions::discover(url)))
        .collect();
    let key = match (&cli.jwt_hs256_secret, &cli.jwt_public_key) {
        (Some(secret), _) => Some(StaticKey::hs256(secret.as_bytes())),
        (None, Some(path)) => {
            let pem =
                std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            Some(StaticKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        (None, None) => None,
    };
    if let Some(key) = key {
        issuers.push(with_rules(IssuerOptions::static_keys(None, vec![key])));
    }
    let mut config = Config::new(cli.nats, cli.publisher_key, issuers);
    config.namespace = cli.namespace;
    config.also_trust_keys = cli.also_trust_keys;
    config.pin_only = cli.pin_only;
    config.issuer_namespaces = cli.issuer_namespaces;
    config.policy = cli.policy;
    config.max_staleness = cli.max_staleness.0;
    config.confirm_timeout = cli.confirm_timeout.0;
    config.header_prefix = cli.header_prefix;
    config.introspection_client = cli
        .introspection_client_id
        .zip(cli.introspection_client_secret)
        .map(|(id, secret)| ClientCredentials { id, secret });
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    revocast_daemon::init_logging(LogFormat::json_if(cli.log_json), "info");
    let listen = cli.listen;
    let config = match config(cli) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("revocast-sidecar: {message}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("revocast-sidecar: binding {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match revocast_sidecar::run(config, listener, revocast_daemon::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("revocast-sidecar: {e}");
            ExitCode::FAILURE
        }
    }
}
