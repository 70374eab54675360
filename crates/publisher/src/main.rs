//! `revocast-publisher`: parses the command line, sets up logging and calls the
//! library. Every flag can also be set with an environment variable `REVOCAST_*`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use revocast_core::Namespace;
use revocast_publisher::client::{self, ApiClient, ImportFormat};
use revocast_publisher::{Config, KeySource, Revocation, parse_duration};

#[derive(Debug, Parser)]
#[command(
    name = "revocast-publisher",
    version,
    about = "revocast publisher: durable JWT revocations broadcast over NATS"
)]
struct Cli {
    /// Log JSON lines instead of text (logs go to stderr).
    #[arg(long, global = true, env = "REVOCAST_LOG_JSON", value_parser = BoolishValueParser::new(), default_value_t = false)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Serve(Box<ServeArgs>),
    /// Write a new Ed25519 signing key file (mode 0600); print its public key last.
    Keygen {
        /// Where to write the key; never overwritten.
        #[arg(long, env = "REVOCAST_KEYGEN_OUT")]
        out: PathBuf,
    },
    /// Revoke one token through the HTTP API.
    Revoke(RevokeArgs),
    /// Reject every token of a subject (or every token) issued before a time.
    Cutoff(CutoffArgs),
    /// Print the publisher's stats (JSON).
    Stats(ApiArgs),
    /// Revoke tokens in bulk from JSON lines or CSV (`jti,exp[,sub,reason]`).
    Import(ImportArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// NATS server URL(s), comma separated.
    #[arg(long, env = "REVOCAST_NATS", default_value = revocast_publisher::config::DEFAULT_NATS_URL)]
    nats: String,
    /// HTTP listen address.
    #[arg(long, env = "REVOCAST_LISTEN", default_value = revocast_publisher::config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Namespace (1-64 of a-z A-Z 0-9 - _): which stream, bucket and subjects.
    #[arg(long, env = "REVOCAST_NAMESPACE", default_value = "default")]
    namespace: Namespace,
    /// Directory for local files (the signing key by default).
    #[arg(long, env = "REVOCAST_DATA_DIR", default_value = "./revocast-data")]
    data_dir: PathBuf,
    /// Signing key file [default: <data-dir>/signing.key, created on first start].
    #[arg(long, env = "REVOCAST_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// Bearer token required by mutating routes.
    #[arg(long, env = "REVOCAST_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Allow a non-loopback listen address without an admin token.
    #[arg(long, env = "REVOCAST_INSECURE_NO_AUTH", value_parser = BoolishValueParser::new(), default_value_t = false)]
    insecure_no_auth: bool,
    /// NATS user (with --nats-password).
    #[arg(long, env = "REVOCAST_NATS_USER")]
    nats_user: Option<String>,
    /// NATS password.
    #[arg(long, env = "REVOCAST_NATS_PASSWORD", hide_env_values = true)]
    nats_password: Option<String>,
    /// NATS token.
    #[arg(long, env = "REVOCAST_NATS_TOKEN", hide_env_values = true)]
    nats_token: Option<String>,
    /// NATS credentials file (JWT + nkey).
    #[arg(long, env = "REVOCAST_NATS_CREDS")]
    nats_creds: Option<PathBuf>,
    /// CA certificate (PEM) for TLS to NATS.
    #[arg(long, env = "REVOCAST_NATS_TLS_CA")]
    nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS to NATS.
    #[arg(long, env = "REVOCAST_NATS_TLS_CERT")]
    nats_tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS to NATS.
    #[arg(long, env = "REVOCAST_NATS_TLS_KEY")]
    nats_tls_key: Option<PathBuf>,
    /// Width of an expiry bucket (new namespaces only).
    #[arg(long, env = "REVOCAST_BUCKET_WIDTH", default_value = "1h", value_parser = parse_duration)]
    bucket_width: Duration,
    /// Target false-positive rate (new namespaces only).
    #[arg(long, env = "REVOCAST_TARGET_FPR", default_value_t = 0.001)]
    target_fpr: f64,
    /// Longest token lifetime the issuer hands out (new namespaces only).
    #[arg(long, env = "REVOCAST_MAX_TOKEN_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    max_token_lifetime: Duration,
    /// Clock leeway (new namespaces only).
    #[arg(long, env = "REVOCAST_LEEWAY", default_value = "5m", value_parser = parse_duration)]
    leeway: Duration,
    /// Heartbeat period.
    #[arg(long, env = "REVOCAST_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// Write a snapshot after this many deltas.
    #[arg(long, env = "REVOCAST_SNAPSHOT_EVERY_DELTAS", default_value_t = 10_000)]
    snapshot_every_deltas: u64,
    /// Write a snapshot at least this often (when something changed).
    #[arg(long, env = "REVOCAST_SNAPSHOT_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    snapshot_interval: Duration,
    /// How often expired buckets are looked for (and dropped in a delta).
    #[arg(long, env = "REVOCAST_EXPIRY_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    expiry_interval: Duration,
    /// JetStream replicas of the stream and the snapshot bucket (3 in a cluster).
    #[arg(long, env = "REVOCAST_STREAM_REPLICAS", default_value_t = 1)]
    stream_replicas: usize,
    /// Key for verifying tokens given to /oauth/revoke: PEM text, a PEM file, or an HS256 secret.
    #[arg(long, env = "REVOCAST_JWT_VERIFY_KEY", hide_env_values = true)]
    jwt_verify_key: Option<String>,
    /// Extra window for gathering revocations into one delta (0: commit what is queued at once).
    #[arg(long, env = "REVOCAST_BATCH_WAIT", default_value = "0ms", value_parser = parse_duration)]
    batch_wait: Duration,
    /// Most revocations in one delta.
    #[arg(long, env = "REVOCAST_BATCH_MAX", default_value_t = 2_000)]
    batch_max: usize,
    /// How long an API call waits for durability before answering 503.
    #[arg(long, env = "REVOCAST_COMMIT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    commit_timeout: Duration,
    /// Bound on a graceful shutdown.
    #[arg(long, env = "REVOCAST_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
}

#[derive(Debug, Args)]
struct ApiArgs {
    /// The publisher's HTTP API.
    #[arg(long, env = "REVOCAST_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin token.
    #[arg(long, env = "REVOCAST_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The token's jti.
    #[arg(long, env = "REVOCAST_JTI")]
    jti: String,
    /// The token's exp: unix seconds, or `+DURATION` from now (e.g. `+1h`).
    #[arg(long, env = "REVOCAST_EXP", value_parser = parse_time, allow_hyphen_values = true)]
    exp: u64,
    /// The token's sub.
    #[arg(long, env = "REVOCAST_SUB")]
    sub: Option<String>,
    /// Why (kept with the revocation; the authority returns it).
    #[arg(long, env = "REVOCAST_REASON")]
    reason: Option<String>,
}

#[derive(Debug, Args)]
struct CutoffArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Subject whose tokens are cut off; without it, every token.
    #[arg(long, env = "REVOCAST_SUB")]
    sub: Option<String>,
    /// Tokens issued before this are rejected: unix seconds, `now`, or `-DURATION`.
    #[arg(
        long,
        env = "REVOCAST_NOT_BEFORE",
        default_value = "now",
        value_parser = parse_time,
        allow_hyphen_values = true
    )]
    not_before: u64,
}

#[derive(Debug, Args)]
struct ImportArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// JSON lines or CSV file.
    #[arg(env = "REVOCAST_IMPORT_FILE")]
    file: PathBuf,
    /// Input format.
    #[arg(long, env = "REVOCAST_IMPORT_FORMAT", default_value = "auto", value_parser = ["auto", "jsonl", "csv"])]
    format: String,
    /// Revocations per bulk call.
    #[arg(
        long,
        env = "REVOCAST_IMPORT_BATCH_SIZE",
        default_value_t = 1_000,
        value_parser = clap::value_parser!(u64).range(1..=1000)
    )]
    batch_size: u64,
}

/// Unix seconds, `now`, `+DURATION` (from now) or `-DURATION` (before now).
fn parse_time(text: &str) -> Result<u64, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    if text == "now" {
        return Ok(now);
    }
    if let Some(rest) = text.strip_prefix('+') {
        return Ok(now.saturating_add(parse_duration(rest)?.as_secs()));
    }
    if let Some(rest) = text.strip_prefix('-') {
        return Ok(now.saturating_sub(parse_duration(rest)?.as_secs()));
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not unix seconds, `now`, `+1h` or `-10m`"))
}

fn init_logging(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REVOCAST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    init_logging(cli.log_json, if serving { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Keygen { out } => keygen(&out),
            Command::Revoke(args) => revoke(args).await,
            Command::Cutoff(args) => cutoff(args).await,
            Command::Stats(args) => stats(args).await,
            Command::Import(args) => import(args).await,
        }
    })
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

async fn serve(args: ServeArgs) -> ExitCode {
    let key_path = args
        .signing_key
        .clone()
        .unwrap_or_else(|| args.data_dir.join("signing.key"));
    let mut config = Config::new(KeySource::File(key_path));
    config.nats.url = args.nats;
    config.nats.user = args.nats_user;
    config.nats.password = args.nats_password;
    config.nats.token = args.nats_token;
    config.nats.creds_file = args.nats_creds;
    config.nats.tls_ca = args.nats_tls_ca;
    config.nats.tls_cert = args.nats_tls_cert;
    config.nats.tls_key = args.nats_tls_key;
    config.listen = args.listen;
    config.namespace = args.namespace;
    config.admin_token = args.admin_token;
    config.insecure_no_auth = args.insecure_no_auth;
    config.filter.bucket_width = args.bucket_width.as_secs();
    config.filter.target_fpr = args.target_fpr;
    config.filter.max_token_lifetime = args.max_token_lifetime.as_secs();
    config.filter.leeway = args.leeway.as_secs();
    config.heartbeat_interval = args.heartbeat_interval;
    config.snapshot_every_deltas = args.snapshot_every_deltas;
    config.snapshot_interval = args.snapshot_interval;
    config.expiry_interval = args.expiry_interval;
    config.stream_replicas = args.stream_replicas;
    config.jwt_verify_key = args.jwt_verify_key;
    config.batch.max_wait = args.batch_wait;
    config.batch.max_adds = args.batch_max;
    config.commit_timeout = args.commit_timeout;
    config.shutdown_timeout = args.shutdown_timeout;
    if let Err(e) = config.validate() {
        return fail(e);
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {}: {e}", config.listen)),
    };
    match revocast_publisher::run(config, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "publisher stopped");
            fail(e)
        }
    }
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

fn keygen(out: &Path) -> ExitCode {
    match revocast_publisher::keys::generate_key_file(out) {
        Ok(key) => {
            let public = revocast_core::PublicKey(key.verifying_key());
            println!(
                "wrote signing key to {} (mode 0600); public key:",
                out.display()
            );
            println!("{public}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn api(args: &ApiArgs) -> Result<ApiClient, ExitCode> {
    ApiClient::new(&args.url, args.admin_token.clone()).map_err(fail)
}

async fn revoke(args: RevokeArgs) -> ExitCode {
    let api = match api(&args.api) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let revocation = Revocation {
        jti: args.jti,
        exp: args.exp,
        sub: args.sub,
        reason: args.reason,
    };
    match api.revoke(&revocation).await {
        Ok(done) => {
            println!("{}", serde_json::json!(done));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn cutoff(args: CutoffArgs) -> ExitCode {
    let api = match api(&args.api) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match api.cutoff(args.sub.as_deref(), args.not_before).await {
        Ok(done) => {
            println!("{}", serde_json::json!(done));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn stats(args: ApiArgs) -> ExitCode {
    let api = match api(&args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match api.stats().await {
        Ok(stats) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&stats).unwrap_or_else(|_| stats.to_string())
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Exit code of an import where some lines were rejected.
const EXIT_SOME_REJECTED: u8 = 2;

async fn import(args: ImportArgs) -> ExitCode {
    let api = match api(&args.api) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: {e}", args.file.display())),
    };
    let format = match args.format.as_str() {
        "jsonl" => ImportFormat::JsonLines,
        "csv" => ImportFormat::Csv,
        _ => ImportFormat::Auto,
    };
    let lines = client::parse_import(&text, format, Some(&args.file));
    let bar = indicatif::ProgressBar::new(lines.len() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} lines ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    let summary = client::import(&api, lines, args.batch_size as usize, |n| {
        bar.set_position(n)
    })
    .await;
    bar.finish_and_clear();
    println!(
        "accepted {} lines ({} revoked, {} already revoked, {} already expired), rejected {}; version {}",
        summary.accepted,
        summary.added,
        summary.duplicates,
        summary.expired,
        summary.rejected.len(),
        summary.version
    );
    for (line, why) in &summary.rejected {
        println!("line {line}: {why}");
    }
    if let Some(why) = &summary.aborted {
        return fail(format!("import stopped early: {why}"));
    }
    if summary.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SOME_REJECTED)
    }
}
