//! What a publisher is told: [`Config`], built by the CLI or by tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use revocast_core::{FilterParams, Namespace, SigningKey};

use crate::error::Error;

/// Where the publisher's Ed25519 signing key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// A key file (see [`revocast_core::signing_key_to_file`]); created with a fresh
    /// key, mode 0600, when it does not exist yet.
    File(PathBuf),
    /// A key held in memory (tests, embedding).
    Key(SigningKey),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => f.debug_tuple("File").field(path).finish(),
            // Never print the secret.
            KeySource::Key(_) => f.write_str("Key(..)"),
        }
    }
}

/// How to reach and authenticate to NATS.
#[derive(Clone, Default)]
pub struct NatsOptions {
    /// Server URL(s), comma separated: `nats://127.0.0.1:4222`.
    pub url: String,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// Credentials file (JWT + nkey seed), as `nsc` writes it.
    pub creds_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server; implies TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS, with `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("creds_file", &self.creds_file)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

/// Group commit limits: how many revocations become one delta.
#[derive(Clone, Debug)]
pub struct BatchLimits {
    /// How long the writer waits for more revocations after the first of a batch.
    /// Zero (the default) means no window: the writer takes what is queued (yielding
    /// briefly for callers about to send) and commits at once; batches still form
    /// while the previous commit awaits its ack, which gives both the lowest latency
    /// and the highest rate (see BENCHMARKS.md).
    pub max_wait: Duration,
    /// Most `Add` changes in one delta.
    pub max_adds: usize,
    /// Rough upper bound of one delta's encoded size, in bytes. Kept well under the
    /// NATS `max_payload` (1 MiB by default).
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_wait: Duration::ZERO,
            max_adds: 2_000,
            max_bytes: 640 << 10,
        }
    }
}

/// Everything `serve` needs. [`Config::new`] gives the documented defaults.
#[derive(Clone)]
pub struct Config {
    /// NATS connection.
    pub nats: NatsOptions,
    /// HTTP listen address (used by [`crate::Publisher::start`]; [`crate::run`] takes
    /// a bound listener instead).
    pub listen: SocketAddr,
    /// Namespace: which stream, bucket and subjects.
    pub namespace: Namespace,
    /// The signing key.
    pub signing_key: KeySource,
    /// Bearer token that mutating routes require. `None` leaves them open, which
    /// [`crate::run`] only accepts on a loopback address or with `insecure_no_auth`.
    pub admin_token: Option<String>,
    /// Accept a non-loopback listen address without an admin token.
    pub insecure_no_auth: bool,
    /// Filter parameters for a new namespace. An existing namespace keeps the
    /// parameters of its snapshot.
    pub filter: FilterParams,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// Write a snapshot after this many deltas...
    pub snapshot_every_deltas: u64,
    /// ...or after this long, whichever comes first (only when something changed).
    pub snapshot_interval: Duration,
    /// How often the writer checks whether a bucket or cutoff expired.
    pub expiry_interval: Duration,
    /// JetStream replicas of the stream and the object store (1, or 3 in a cluster).
    pub stream_replicas: usize,
    /// Key that `/oauth/revoke` verifies tokens with: a PEM public key (RSA, EC or
    /// Ed25519), a path to one, or an HS256 secret. `None`: claims are read unverified.
    pub jwt_verify_key: Option<String>,
    /// Group commit limits.
    pub batch: BatchLimits,
    /// Most revocations in one bulk call.
    pub max_bulk: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long an API call waits for its revocation to become durable before it
    /// answers 503 (retrying is always safe).
    pub commit_timeout: Duration,
    /// Bound on a graceful shutdown (drain, last commit, snapshot).
    pub shutdown_timeout: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("nats", &self.nats)
            .field("listen", &self.listen)
            .field("namespace", &self.namespace)
            .field("signing_key", &self.signing_key)
            .field("admin_token", &self.admin_token.as_ref().map(|_| ".."))
            .field("insecure_no_auth", &self.insecure_no_auth)
            .field("filter", &self.filter)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("snapshot_every_deltas", &self.snapshot_every_deltas)
            .field("snapshot_interval", &self.snapshot_interval)
            .field("expiry_interval", &self.expiry_interval)
            .field("stream_replicas", &self.stream_replicas)
            .field(
                "jwt_verify_key",
                &self.jwt_verify_key.as_ref().map(|_| ".."),
            )
            .field("batch", &self.batch)
            .field("max_bulk", &self.max_bulk)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("commit_timeout", &self.commit_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

/// Default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default NATS URL.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

impl Config {
    /// The documented defaults, with the given key source.
    pub fn new(signing_key: KeySource) -> Config {
        Config {
            nats: NatsOptions {
                url: DEFAULT_NATS_URL.to_owned(),
                ..NatsOptions::default()
            },
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            namespace: Namespace::default(),
            signing_key,
            admin_token: None,
            insecure_no_auth: false,
            filter: FilterParams::default(),
            heartbeat_interval: Duration::from_secs(1),
            snapshot_every_deltas: 10_000,
            snapshot_interval: Duration::from_secs(60),
            expiry_interval: Duration::from_secs(10),
            stream_replicas: 1,
            jwt_verify_key: None,
            batch: BatchLimits::default(),
            max_bulk: 1_000,
            max_body_bytes: 512 << 10,
            commit_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
        }
    }

    /// A configuration for tests and embedding: NATS at `nats_url`, a fresh random
    /// in-memory key, HTTP on `127.0.0.1:0`, namespace `default`, fast heartbeats.
    pub fn for_tests(nats_url: impl Into<String>) -> Result<Config, Error> {
        let key = revocast_core::signing_key_from_seed(crate::keys::random_bytes()?);
        let mut config = Config::new(KeySource::Key(key));
        config.nats.url = nats_url.into();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.heartbeat_interval = Duration::from_millis(200);
        config.shutdown_timeout = Duration::from_secs(5);
        Ok(config)
    }

    /// Checks what clap cannot: ranges and combinations.
    pub fn validate(&self) -> Result<(), Error> {
        self.filter
            .validate()
            .map_err(|e| Error::Config(e.to_string()))?;
        let bad = |what: &str| Err(Error::Config(what.to_owned()));
        if self.stream_replicas == 0 || self.stream_replicas > 5 {
            return bad("stream replicas must be 1 to 5");
        }
        if self.heartbeat_interval.is_zero() {
            return bad("heartbeat interval must be above 0");
        }
        if self.snapshot_interval.is_zero() || self.snapshot_every_deltas == 0 {
            return bad("snapshot interval and snapshot-every-deltas must be above 0");
        }
        if self.expiry_interval.is_zero() {
            return bad("expiry interval must be above 0");
        }
        if self.batch.max_adds == 0 || self.max_bulk == 0 {
            return bad("batch and bulk limits must be above 0");
        }
        let servers = crate::nats::server_list(&self.nats.url);
        if servers.is_empty() {
            return bad("no NATS URL given");
        }
        for url in servers {
            if let Err(e) = url.parse::<async_nats::ServerAddr>() {
                return Err(Error::Config(format!("invalid NATS URL {url:?}: {e}")));
            }
        }
        if self.nats.user.is_some() != self.nats.password.is_some() {
            return bad("NATS user and password go together");
        }
        if self.nats.tls_cert.is_some() != self.nats.tls_key.is_some() {
            return bad("NATS TLS client certificate and key go together");
        }
        if self.admin_token.as_deref().is_some_and(str::is_empty) {
            return bad("admin token must not be empty");
        }
        Ok(())
    }
}

/// Parses a human duration: `500ms`, `2s`, `5m`, `24h`, `7d`, or plain seconds
/// (`90`). Compound forms such as `1h30m` are accepted too.
///
/// ```
/// use std::time::Duration;
/// use revocast_publisher::parse_duration;
/// assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "bad duration {text:?}: expected a number, e.g. 30s, 5m, 24h"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" | "sec" | "secs" => Duration::from_secs(number),
            "m" | "min" | "mins" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            "" => {
                return Err(format!(
                    "bad duration {text:?}: missing unit (ms, s, m, h, d)"
                ));
            }
            other => {
                return Err(format!(
                    "bad duration {text:?}: unknown unit {other:?} (use ms, s, m, h, d)"
                ));
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("1s", 1_000),
            ("24h", 86_400_000),
            ("90", 90_000),
            ("2m30s", 150_000),
            ("15ms", 15),
            ("7d", 604_800_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in ["", "s", "1x", "h1", "1.5s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_validate() {
        let config = Config::for_tests("nats://127.0.0.1:4222").unwrap();
        config.validate().unwrap();
        let mut bad = config.clone();
        bad.stream_replicas = 0;
        assert!(bad.validate().is_err());
        let mut bad = config.clone();
        bad.nats.user = Some("u".into());
        assert!(bad.validate().is_err());
        let mut many = config.clone();
        many.nats.url = "nats://127.0.0.1:4222, nats://127.0.0.1:4223".into();
        many.validate().unwrap();
        for url in ["", "nats://127.0.0.1:port", ","] {
            let mut bad = config.clone();
            bad.nats.url = url.into();
            assert!(bad.validate().is_err(), "{url:?}");
        }
    }
}
