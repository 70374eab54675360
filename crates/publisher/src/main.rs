//! `revocast-publisher`: parses the command line, sets up logging and calls the
//! library. Every flag can also be set with an environment variable `REVOCAST_*`;
//! every default is the library's ([`revocast_publisher::config::defaults`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use revocast_core::PublicKey;
use revocast_core::duration::{HumanDuration, parse_duration};
use revocast_core::{FilterParams, Namespace};
use revocast_daemon::LogFormat;
use revocast_publisher::backup::{self, BackupLine};
use revocast_publisher::client::{self, ApiClient, ImportFormat, ImportLine};
use revocast_publisher::config::defaults;
use revocast_publisher::{
    BatchLimits, Config, KeySource, NatsOptions, OAuthClient, Revocation, TrustConfig,
    TrustedIssuer,
};

/// What a command failed with: printed once, by `main`.
type Failure = Box<dyn std::error::Error>;

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
    /// Rotate the running publisher's signing key: it announces the new key in a
    /// rollover signed by the current one, then signs with the new key; replicas that
    /// pin the old key follow. Rewrites the publisher's key file.
    RotateKey(RotateKeyArgs),
    /// Revoke tokens in bulk from JSON lines or CSV (`jti,exp[,sub,reason]`), or
    /// restore an export (revocations and cutoffs).
    Import(ImportArgs),
    /// Write a namespace's live revocations and cutoffs, read from NATS, as JSON lines.
    Export(Box<ExportArgs>),
}

#[derive(Debug, Args)]
struct NatsArgs {
    /// NATS server URL(s), comma separated.
    #[arg(long, env = "REVOCAST_NATS", default_value = defaults::NATS_URL)]
    nats: String,
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
}

impl NatsArgs {
    fn into_options(self) -> NatsOptions {
        NatsOptions {
            url: self.nats,
            user: self.nats_user,
            password: self.nats_password,
            token: self.nats_token,
            creds_file: self.nats_creds,
            tls_ca: self.nats_tls_ca,
            tls_cert: self.nats_tls_cert,
            tls_key: self.nats_tls_key,
        }
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// HTTP listen address.
    #[arg(long, env = "REVOCAST_LISTEN", default_value_t = defaults::LISTEN)]
    listen: SocketAddr,
    /// Namespace (1-64 of a-z A-Z 0-9 - _): which stream, bucket and subjects.
    #[arg(long, env = "REVOCAST_NAMESPACE", default_value_t = Namespace::default())]
    namespace: Namespace,
    /// Directory for local files (the signing key by default).
    #[arg(long, env = "REVOCAST_DATA_DIR", default_value = defaults::DATA_DIR)]
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
    /// Width of an expiry bucket (new namespaces only).
    #[arg(long, env = "REVOCAST_BUCKET_WIDTH", default_value_t = HumanDuration::from_secs(FilterParams::default().bucket_width))]
    bucket_width: HumanDuration,
    /// Target false-positive rate (new namespaces only).
    #[arg(long, env = "REVOCAST_TARGET_FPR", default_value_t = FilterParams::default().target_fpr)]
    target_fpr: f64,
    /// Longest token lifetime the issuer hands out (new namespaces only).
    #[arg(long, env = "REVOCAST_MAX_TOKEN_LIFETIME", default_value_t = HumanDuration::from_secs(FilterParams::default().max_token_lifetime))]
    max_token_lifetime: HumanDuration,
    /// Clock leeway (new namespaces only).
    #[arg(long, env = "REVOCAST_LEEWAY", default_value_t = HumanDuration::from_secs(FilterParams::default().leeway))]
    leeway: HumanDuration,
    /// Heartbeat period.
    #[arg(long, env = "REVOCAST_HEARTBEAT_INTERVAL", default_value_t = HumanDuration(defaults::HEARTBEAT_INTERVAL))]
    heartbeat_interval: HumanDuration,
    /// Write a snapshot after this many deltas.
    #[arg(long, env = "REVOCAST_SNAPSHOT_EVERY_DELTAS", default_value_t = defaults::SNAPSHOT_EVERY_DELTAS)]
    snapshot_every_deltas: u64,
    /// Write a snapshot at least this often (when something changed).
    #[arg(long, env = "REVOCAST_SNAPSHOT_INTERVAL", default_value_t = HumanDuration(defaults::SNAPSHOT_INTERVAL))]
    snapshot_interval: HumanDuration,
    /// How often expired buckets are looked for (and dropped in a delta).
    #[arg(long, env = "REVOCAST_EXPIRY_INTERVAL", default_value_t = HumanDuration(defaults::EXPIRY_INTERVAL))]
    expiry_interval: HumanDuration,
    /// JetStream replicas of the stream and the snapshot bucket (3 in a cluster).
    #[arg(long, env = "REVOCAST_STREAM_REPLICAS", default_value_t = defaults::STREAM_REPLICAS)]
    stream_replicas: usize,
    /// Key for verifying tokens given to /oauth/revoke: PEM text, a PEM file, or an HS256 secret.
    #[arg(long, env = "REVOCAST_JWT_VERIFY_KEY", hide_env_values = true)]
    jwt_verify_key: Option<String>,
    /// An OAuth client of /oauth/revoke and /oauth/introspect, as ID:SECRET (repeat
    /// the flag; in the environment, comma-separated). Needs --jwt-verify-key.
    #[arg(
        long = "oauth-client",
        value_name = "ID:SECRET",
        env = "REVOCAST_OAUTH_CLIENTS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    oauth_clients: Vec<OAuthClient>,
    /// An identity provider whose OpenID Connect back-channel logout tokens are
    /// accepted at /oidc/backchannel-logout (its issuer URL; keys by discovery).
    #[arg(long, env = "REVOCAST_TRUST_ISSUER", requires = "trust_audiences")]
    trust_issuer: Option<String>,
    /// The client id(s) that issuer addresses its logout tokens to (repeat the flag;
    /// in the environment, comma-separated).
    #[arg(
        long = "trust-audience",
        value_name = "ID",
        env = "REVOCAST_TRUST_AUDIENCES",
        value_delimiter = ',',
        requires = "trust_issuer"
    )]
    trust_audiences: Vec<String>,
    /// Bearer token of the trusted issuer's Shared Signals transmitter: turns on
    /// POST /ssf/events (RFC 8935 push).
    #[arg(
        long,
        env = "REVOCAST_SSF_TOKEN",
        hide_env_values = true,
        requires = "trust_issuer"
    )]
    ssf_token: Option<String>,
    /// A JSON file of trusted issuers, for several identity providers:
    /// {"issuers": [{"issuer": URL, "audiences": [ID], "ssf_token": TOKEN}]}.
    #[arg(long, env = "REVOCAST_TRUST_CONFIG")]
    trust_config: Option<PathBuf>,
    /// Public base URL of this publisher, advertised by the OAuth metadata
    /// [default: http://<the request's Host header>].
    #[arg(long, env = "REVOCAST_PUBLIC_URL")]
    public_url: Option<String>,
    /// Extra window for gathering revocations into one delta (0: commit what is queued at once).
    #[arg(long, env = "REVOCAST_BATCH_WAIT", default_value_t = HumanDuration(defaults::BATCH_WAIT))]
    batch_wait: HumanDuration,
    /// Most revocations in one delta.
    #[arg(long, env = "REVOCAST_BATCH_MAX", default_value_t = defaults::BATCH_MAX)]
    batch_max: usize,
    /// How long an API call waits for durability before answering 503.
    #[arg(long, env = "REVOCAST_COMMIT_TIMEOUT", default_value_t = HumanDuration(defaults::COMMIT_TIMEOUT))]
    commit_timeout: HumanDuration,
    /// After a key rotation, how long replicas keep accepting the old key (the default
    /// of `rotate-key`).
    #[arg(long, env = "REVOCAST_KEY_OVERLAP", default_value_t = HumanDuration(defaults::KEY_OVERLAP))]
    key_overlap: HumanDuration,
    /// Bound on a graceful shutdown.
    #[arg(long, env = "REVOCAST_SHUTDOWN_TIMEOUT", default_value_t = HumanDuration(defaults::SHUTDOWN_TIMEOUT))]
    shutdown_timeout: HumanDuration,
    /// Largest snapshot written or read, bytes (at most 256 MiB, the default: about 130
    /// million live entries). Over half of it warns; over it, no snapshot is written.
    #[arg(long, env = "REVOCAST_MAX_SNAPSHOT_BYTES", default_value_t = defaults::MAX_SNAPSHOT_BYTES)]
    max_snapshot_bytes: usize,
}

impl ServeArgs {
    /// The one conversion from flags to a [`Config`]; what no flag sets keeps
    /// [`Config::new`]'s default.
    fn into_config(self) -> Config {
        let key = self
            .signing_key
            .unwrap_or_else(|| self.data_dir.join(defaults::KEY_FILE));
        let defaults = Config::new(KeySource::File(key));
        let mut filter = defaults.filter.clone();
        filter.bucket_width = self.bucket_width.0.as_secs();
        filter.target_fpr = self.target_fpr;
        filter.max_token_lifetime = self.max_token_lifetime.0.as_secs();
        filter.leeway = self.leeway.0.as_secs();
        Config {
            nats: self.nats.into_options(),
            listen: self.listen,
            namespace: self.namespace,
            admin_token: self.admin_token,
            insecure_no_auth: self.insecure_no_auth,
            filter,
            heartbeat_interval: self.heartbeat_interval.0,
            snapshot_every_deltas: self.snapshot_every_deltas,
            snapshot_interval: self.snapshot_interval.0,
            expiry_interval: self.expiry_interval.0,
            stream_replicas: self.stream_replicas,
            jwt_verify_key: self.jwt_verify_key,
            oauth_clients: self.oauth_clients,
            trusted_issuers: self
                .trust_issuer
                .map(|issuer| TrustedIssuer {
                    issuer,
                    audiences: self.trust_audiences,
                    ssf_token: self.ssf_token,
                })
                .into_iter()
                .collect(),
            public_url: self.public_url,
            batch: BatchLimits {
                max_wait: self.batch_wait.0,
                max_adds: self.batch_max,
                ..defaults.batch.clone()
            },
            commit_timeout: self.commit_timeout.0,
            key_overlap: self.key_overlap.0,
            shutdown_timeout: self.shutdown_timeout.0,
            max_snapshot_bytes: self.max_snapshot_bytes,
            ..defaults
        }
    }
}

#[derive(Debug, Args)]
struct ApiArgs {
    /// The publisher's HTTP API.
    #[arg(long, env = "REVOCAST_URL", default_value_t = format!("http://{}", defaults::LISTEN))]
    url: String,
    /// Admin token.
    #[arg(long, env = "REVOCAST_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

impl ApiArgs {
    fn client(&self) -> Result<ApiClient, client::ClientError> {
        ApiClient::new(&self.url, self.admin_token.clone())
    }
}

#[derive(Debug, Args)]
struct RevokeArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The token's jti.
    #[arg(long, env = "REVOCAST_JTI")]
    jti: String,
    /// The token's exp: unix seconds, or `+DURATION` from now (e.g. `+1h`). Without
    /// it the jti goes into every bucket a live token's exp can fall in.
    #[arg(long, env = "REVOCAST_EXP", value_parser = parse_time, allow_hyphen_values = true)]
    exp: Option<u64>,
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
    /// Subject whose tokens are cut off; without it (and without --sid), every token.
    #[arg(long, env = "REVOCAST_SUB", conflicts_with = "sid")]
    sub: Option<String>,
    /// Session id (`sid` claim) whose tokens are cut off.
    #[arg(long, env = "REVOCAST_SID")]
    sid: Option<String>,
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
struct RotateKeyArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// A key file on the publisher's host holding the new key (from `keygen`, its
    /// public key pinned on services first: the compromise procedure). Without it,
    /// the publisher generates the new key.
    #[arg(long, env = "REVOCAST_NEW_KEY_FILE")]
    new_key_file: Option<PathBuf>,
    /// How long replicas keep accepting the old key [default: the publisher's
    /// --key-overlap, 10m].
    #[arg(long, env = "REVOCAST_KEY_OVERLAP")]
    overlap: Option<HumanDuration>,
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
    /// Send nothing unless every line parses (always on for an export's file, which
    /// is restored whole).
    #[arg(long, env = "REVOCAST_IMPORT_STRICT", value_parser = BoolishValueParser::new(), default_value_t = false)]
    strict: bool,
    /// Revocations per bulk call.
    #[arg(
        long,
        env = "REVOCAST_IMPORT_BATCH_SIZE",
        default_value_t = defaults::MAX_BULK as u64,
        value_parser = clap::value_parser!(u64).range(1..=defaults::MAX_BULK as u64)
    )]
    batch_size: u64,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Namespace to export.
    #[arg(long, env = "REVOCAST_NAMESPACE", default_value_t = Namespace::default())]
    namespace: Namespace,
    /// The publisher's public key (base64url), to verify what NATS holds
    /// [default: the public half of --signing-key].
    #[arg(long, env = "REVOCAST_PUBLISHER_KEY", allow_hyphen_values = true)]
    publisher_key: Option<PublicKey>,
    /// The publisher's signing key file, when --publisher-key is not given
    /// [default: <data-dir>/signing.key].
    #[arg(long, env = "REVOCAST_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// Directory of the publisher's local files.
    #[arg(long, env = "REVOCAST_DATA_DIR", default_value = defaults::DATA_DIR)]
    data_dir: PathBuf,
    /// Where to write the JSON lines (`-`: standard output). A file is written
    /// whole or not at all.
    #[arg(long, env = "REVOCAST_EXPORT_OUT", default_value = "-")]
    out: PathBuf,
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
    let offset = |rest: &str| {
        parse_duration(rest)
            .map(|d| d.as_secs())
            .map_err(|e| e.to_string())
    };
    if let Some(rest) = text.strip_prefix('+') {
        return Ok(now.saturating_add(offset(rest)?));
    }
    if let Some(rest) = text.strip_prefix('-') {
        return Ok(now.saturating_sub(offset(rest)?));
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not unix seconds, `now`, `+1h` or `-10m`"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    revocast_daemon::init_logging(
        LogFormat::json_if(cli.log_json),
        if serving { "info" } else { "warn" },
    );
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Keygen { out } => keygen(out),
            Command::Revoke(args) => revoke(args).await,
            Command::Cutoff(args) => cutoff(args).await,
            Command::Stats(args) => stats(args).await,
            Command::RotateKey(args) => rotate_key(args).await,
            Command::Import(args) => import(args).await,
            Command::Export(args) => export(*args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<ExitCode, Failure> {
    let trust_config = args.trust_config.clone();
    let mut config = args.into_config();
    if let Some(path) = trust_config {
        config
            .trusted_issuers
            .extend(TrustConfig::load(&path)?.issuers);
    }
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    revocast_publisher::run(config, listener, revocast_daemon::shutdown_signal())
        .await
        .inspect_err(|e| tracing::error!(error = %e, "publisher stopped"))?;
    Ok(ExitCode::SUCCESS)
}

fn keygen(out: PathBuf) -> Result<ExitCode, Failure> {
    let key = revocast_publisher::keys::generate_key_file(&out)?;
    let public = revocast_core::PublicKey(key.verifying_key());
    println!(
        "wrote signing key to {} (mode 0600); public key:",
        out.display()
    );
    println!("{public}");
    Ok(ExitCode::SUCCESS)
}

/// Prints an answer as one line of JSON.
fn print_json(answer: &impl serde::Serialize) -> Result<ExitCode, Failure> {
    println!("{}", serde_json::to_string(answer)?);
    Ok(ExitCode::SUCCESS)
}

async fn revoke(args: RevokeArgs) -> Result<ExitCode, Failure> {
    let revocation = Revocation {
        jti: args.jti,
        exp: args.exp,
        sub: args.sub,
        reason: args.reason,
    };
    print_json(&args.api.client()?.revoke(&revocation).await?)
}

async fn cutoff(args: CutoffArgs) -> Result<ExitCode, Failure> {
    let done = args
        .api
        .client()?
        .cutoff_of(&revocast_core::http::CutoffRequest {
            sub: args.sub,
            sid: args.sid,
            not_before: args.not_before,
        })
        .await?;
    print_json(&done)
}

async fn rotate_key(args: RotateKeyArgs) -> Result<ExitCode, Failure> {
    let new_key_file = match args.new_key_file {
        // The publisher reads the path on its own host: send it absolute.
        Some(path) => Some(
            std::path::absolute(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .display()
                .to_string(),
        ),
        None => None,
    };
    let done = args
        .api
        .client()?
        .rotate_key(&revocast_core::http::RotateKeyRequest {
            key_file: new_key_file,
            overlap_secs: args.overlap.map(|d| d.0.as_secs()),
        })
        .await?;
    print_json(&done)
}

async fn stats(args: ApiArgs) -> Result<ExitCode, Failure> {
    let stats = args.client()?.stats().await?;
    println!("{}", serde_json::to_string_pretty(&stats)?);
    Ok(ExitCode::SUCCESS)
}

/// Exit code of an import where some lines were rejected.
const EXIT_SOME_REJECTED: u8 = 2;

async fn import(args: ImportArgs) -> Result<ExitCode, Failure> {
    let api = args.api.client()?;
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let format = match args.format.as_str() {
        "jsonl" => ImportFormat::JsonLines,
        "csv" => ImportFormat::Csv,
        _ => ImportFormat::Auto,
    };
    let lines = client::parse_import(&text, format, Some(&args.file));
    let export = lines.iter().find_map(|l| match &l.item {
        Ok(BackupLine::Header(h)) => Some(h.clone()),
        _ => None,
    });
    let bad: Vec<&ImportLine> = lines.iter().filter(|l| l.item.is_err()).collect();
    let whole = export.is_some() || backup::is_export(&text);
    if (args.strict || whole) && !bad.is_empty() {
        for line in &bad {
            if let Err(why) = &line.item {
                eprintln!("{}:{}: {why}", args.file.display(), line.line);
            }
        }
        return Err(format!(
            "nothing imported: {} of {} lines in {} do not parse ({}); fix or remove them",
            bad.len(),
            lines.len(),
            args.file.display(),
            if whole {
                "an export is restored whole"
            } else {
                "--strict"
            }
        )
        .into());
    }
    if let Some(header) = &export {
        eprintln!(
            "restoring an export of namespace {} at version {} ({} revocations, {} cutoffs)",
            header.namespace, header.version, header.revocations, header.cutoffs
        );
    }
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
    let cutoffs = match summary.cutoffs {
        0 => String::new(),
        n => format!(", {n} cutoffs set"),
    };
    println!(
        "accepted {} lines ({} revoked, {} already revoked, {} already expired{cutoffs}), rejected {}; version {}",
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
        return Err(format!("import stopped early: {why}").into());
    }
    Ok(if summary.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SOME_REJECTED)
    })
}

async fn export(args: ExportArgs) -> Result<ExitCode, Failure> {
    let public_key = match args.publisher_key {
        Some(key) => key,
        None => {
            let path = args
                .signing_key
                .unwrap_or_else(|| args.data_dir.join(defaults::KEY_FILE));
            revocast_publisher::keys::read_key_file(&path)?.public_key()
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let export =
        backup::export(&args.nats.into_options(), &args.namespace, public_key, now).await?;
    if args.out.as_os_str() == "-" {
        export.write_jsonl(std::io::stdout().lock())?;
    } else {
        // Written next to the target, then renamed: a failed export never leaves a
        // truncated file where the last good one was.
        let mut tmp = args.out.clone().into_os_string();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let file = std::fs::File::create(&tmp)?;
            let mut out = std::io::BufWriter::new(file);
            export.write_jsonl(&mut out)?;
            out.into_inner()
                .map_err(std::io::IntoInnerError::into_error)?
                .sync_all()?;
            std::fs::rename(&tmp, &args.out)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("{}: {e}", args.out.display())
        })?;
    }
    eprintln!(
        "exported namespace {} at version {}: {} revocations, {} cutoffs",
        export.header.namespace,
        export.header.version,
        export.header.revocations,
        export.header.cutoffs
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `serve` with no flags is [`Config::new`]: the defaults live in one place.
    #[test]
    fn serve_without_flags_is_the_library_default() {
        let Cli {
            command: Command::Serve(args),
            ..
        } = Cli::try_parse_from(["revocast-publisher", "serve"]).unwrap()
        else {
            unreachable!("parsed serve")
        };
        let from_flags = args.into_config();
        let key = PathBuf::from(defaults::DATA_DIR).join(defaults::KEY_FILE);
        let library = Config::new(KeySource::File(key));
        assert_eq!(format!("{from_flags:?}"), format!("{library:?}"));
    }

    #[test]
    fn durations_and_times_take_the_one_syntax() {
        let Cli {
            command: Command::Serve(args),
            ..
        } = Cli::try_parse_from([
            "revocast-publisher",
            "serve",
            "--leeway",
            "1h30m",
            "--batch-wait",
            "250ms",
        ])
        .unwrap()
        else {
            unreachable!("parsed serve")
        };
        let config = args.into_config();
        assert_eq!(config.filter.leeway, 5400);
        assert_eq!(config.batch.max_wait, std::time::Duration::from_millis(250));
        for bad in ["5.0s", "soon", "-1s"] {
            assert!(
                Cli::try_parse_from(["revocast-publisher", "serve", "--leeway", bad]).is_err(),
                "{bad}"
            );
        }
        assert!(parse_time("+1h").unwrap() > parse_time("now").unwrap());
        assert!(parse_time("+1x").is_err());
        assert_eq!(parse_time("12").unwrap(), 12);
    }
}
