//! What a publisher is told: [`Config`], built by the CLI or by tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use revocast_core::{FilterParams, Namespace};

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::keys::KeySource;
use crate::pause::PausePoint;

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
            .field("url", &revocast_core::subjects::redact_urls(&self.url))
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

/// An OAuth client allowed to call `/oauth/revoke` and `/oauth/introspect` with its
/// own credentials (`client_secret_basic` or `client_secret_post`). It may revoke only
/// tokens issued to it (their `client_id` or `azp`).
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// The client id.
    pub id: String,
    /// The client secret.
    pub secret: String,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("id", &self.id)
            .field("secret", &"..")
            .finish()
    }
}

impl std::str::FromStr for OAuthClient {
    type Err = String;

    /// `ID:SECRET`: the id up to the first `:`, the secret after it (it may hold `:`).
    fn from_str(s: &str) -> Result<OAuthClient, String> {
        let Some((id, secret)) = s.split_once(':') else {
            return Err("expected ID:SECRET (the client id, a colon, the secret)".to_owned());
        };
        let (id, secret) = (id.trim(), secret.trim());
        if id.is_empty() {
            return Err("the client id before ':' is empty".to_owned());
        }
        if secret.is_empty() {
            return Err(format!("client {id:?} has an empty secret"));
        }
        if id.chars().any(char::is_control) || secret.chars().any(char::is_control) {
            return Err(format!("client {id:?}: control characters in id or secret"));
        }
        Ok(OAuthClient {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

/// An identity provider whose OpenID Connect back-channel logout tokens the publisher
/// accepts: keys by OpenID discovery from `issuer`, tokens addressed to one of
/// `audiences` (the client ids the IdP sends logout tokens for).
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The issuer URL, exactly as the IdP's discovery document and tokens name it.
    pub issuer: String,
    /// The `aud` values accepted (at least one).
    pub audiences: Vec<String>,
    /// The bearer token its Shared Signals transmitter pushes events with (RFC 8935);
    /// `None`: no Shared Signals from this issuer.
    #[serde(default)]
    pub ssf_token: Option<String>,
}

impl TrustedIssuer {
    /// An issuer whose logout tokens are addressed to `audience`, without Shared
    /// Signals.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> TrustedIssuer {
        TrustedIssuer {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            ssf_token: None,
        }
    }
}

impl std::fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedIssuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish()
    }
}

/// The trusted issuers file (`--trust-config`): several identity providers, each with
/// its audiences and, optionally, its Shared Signals token.
///
/// ```json
/// {"issuers": [
///   {"issuer": "https://idp.example.com/realms/main", "audiences": ["revocast-rp"],
///    "ssf_token": "a long random token"},
///   {"issuer": "https://login.partner.example", "audiences": ["revocast"]}
/// ]}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// The issuers.
    pub issuers: Vec<TrustedIssuer>,
}

impl TrustConfig {
    /// Reads and parses the file at `path`.
    pub fn load(path: &std::path::Path) -> Result<TrustConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the trusted issuers file {}: {e}",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Config(format!(
                "trusted issuers file {}: {e} (expected {{\"issuers\": [{{\"issuer\": URL, \
                 \"audiences\": [ID, ...], \"ssf_token\": TOKEN (optional)}}]}})",
                path.display()
            ))
        })
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
            max_wait: defaults::BATCH_WAIT,
            max_adds: defaults::BATCH_MAX,
            max_bytes: defaults::BATCH_MAX_BYTES,
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
    /// OAuth clients of `/oauth/revoke` and `/oauth/introspect` (they need
    /// `jwt_verify_key`: a client's right to revoke is read from the token's claims).
    pub oauth_clients: Vec<OAuthClient>,
    /// Identity providers trusted for back-channel logout and Shared Signals.
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// The publisher's public base URL (`https://revocast.example.com`), which the RFC
    /// 8414 metadata advertises. `None`: taken from each request's `Host` header.
    pub public_url: Option<String>,
    /// Group commit limits.
    pub batch: BatchLimits,
    /// Most revocations in one bulk call.
    pub max_bulk: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long an API call waits for its revocation to become durable before it
    /// answers 503 (retrying is always safe).
    pub commit_timeout: Duration,
    /// How long replicas keep accepting the old key after a key rotation (the default
    /// of `POST /v1/keys/rotate`): long enough for every publisher instance answering
    /// confirms to restart with the new key file.
    pub key_overlap: Duration,
    /// Bound on a graceful shutdown: stop HTTP, commit what is queued, then a final
    /// snapshot if time is left (best effort: the stream holds every commit).
    pub shutdown_timeout: Duration,
    /// Where the publisher reads the time ([`SystemClock`] by default; tests inject
    /// a skewed one).
    pub clock: Arc<dyn Clock>,
    /// Largest snapshot written or read, bytes (at most, and by default, the wire
    /// format's 256 MiB, which replicas enforce too). A snapshot over half of it is
    /// logged as a warning; one over it is not written.
    pub max_snapshot_bytes: usize,
    /// Holds the writer right after a commit's live broadcast, when armed (tests
    /// only: it lets them look inside the window between the commit's steps).
    pub pause_after_broadcast: PausePoint,
    /// Holds the writer between a commit's stored delta entering the publisher's state
    /// and its live broadcast, when armed (tests only).
    pub pause_before_broadcast: PausePoint,
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
            .field("oauth_clients", &self.oauth_clients)
            .field("trusted_issuers", &self.trusted_issuers)
            .field("public_url", &self.public_url)
            .field("batch", &self.batch)
            .field("max_bulk", &self.max_bulk)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("commit_timeout", &self.commit_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("clock", &self.clock)
            .field("pause_after_broadcast", &self.pause_after_broadcast)
            .field("pause_before_broadcast", &self.pause_before_broadcast)
            .field("max_snapshot_bytes", &self.max_snapshot_bytes)
            .finish()
    }
}

/// The documented defaults, written once: [`Config::new`] and the CLI's flags both
/// read them. The filter's defaults are [`FilterParams::default`]'s.
pub mod defaults {
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use std::time::Duration;

    /// NATS server URL.
    pub const NATS_URL: &str = "nats://127.0.0.1:4222";
    /// HTTP listen address.
    pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
    /// Directory for local files (the signing key).
    pub const DATA_DIR: &str = "./revocast-data";
    /// Name of the signing key file inside the data directory.
    pub const KEY_FILE: &str = "signing.key";
    /// Heartbeat period.
    pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
    /// A snapshot after this many deltas...
    pub const SNAPSHOT_EVERY_DELTAS: u64 = 10_000;
    /// ...or this long, whichever comes first.
    pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(60);
    /// How often expired buckets are looked for.
    pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(10);
    /// JetStream replicas of the stream and the snapshot bucket.
    pub const STREAM_REPLICAS: usize = 1;
    /// Group commit window (none: commit what is queued at once).
    pub const BATCH_WAIT: Duration = Duration::ZERO;
    /// Most revocations in one delta.
    pub const BATCH_MAX: usize = 2_000;
    /// Rough bound of one delta's encoded size.
    pub const BATCH_MAX_BYTES: usize = 640 << 10;
    /// Most revocations in one bulk call.
    pub const MAX_BULK: usize = 1_000;
    /// Largest request body.
    pub const MAX_BODY_BYTES: usize = 512 << 10;
    /// How long a call waits for durability before it answers 503.
    pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long replicas keep accepting the old key after a key rotation.
    pub const KEY_OVERLAP: Duration = Duration::from_secs(600);
    /// Bound on a graceful shutdown.
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
    /// Largest snapshot: the wire format's limit, which replicas enforce too. About
    /// 130 million live entries at the default 0.1% target (16.2 bits per entry).
    pub const MAX_SNAPSHOT_BYTES: usize = revocast_nats::store::MAX_SNAPSHOT_BYTES;
}

impl Config {
    /// The documented defaults ([`defaults`]), with the given key source.
    pub fn new(signing_key: KeySource) -> Config {
        Config {
            nats: NatsOptions {
                url: defaults::NATS_URL.to_owned(),
                ..NatsOptions::default()
            },
            listen: defaults::LISTEN,
            namespace: Namespace::default(),
            signing_key,
            admin_token: None,
            insecure_no_auth: false,
            filter: FilterParams::default(),
            heartbeat_interval: defaults::HEARTBEAT_INTERVAL,
            snapshot_every_deltas: defaults::SNAPSHOT_EVERY_DELTAS,
            snapshot_interval: defaults::SNAPSHOT_INTERVAL,
            expiry_interval: defaults::EXPIRY_INTERVAL,
            stream_replicas: defaults::STREAM_REPLICAS,
            jwt_verify_key: None,
            oauth_clients: Vec::new(),
            trusted_issuers: Vec::new(),
            public_url: None,
            batch: BatchLimits::default(),
            max_bulk: defaults::MAX_BULK,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            commit_timeout: defaults::COMMIT_TIMEOUT,
            key_overlap: defaults::KEY_OVERLAP,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            clock: Arc::new(SystemClock),
            pause_after_broadcast: PausePoint::default(),
            pause_before_broadcast: PausePoint::default(),
            max_snapshot_bytes: defaults::MAX_SNAPSHOT_BYTES,
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
        self.filter.validate().map_err(Error::Filter)?;
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
        if self.max_snapshot_bytes == 0 || self.max_snapshot_bytes > defaults::MAX_SNAPSHOT_BYTES {
            return bad("max snapshot bytes must be 1 to 268435456 (256 MiB)");
        }
        if self.batch.max_adds == 0 || self.max_bulk == 0 {
            return bad("batch and bulk limits must be above 0");
        }
        let servers = revocast_core::subjects::server_urls(&self.nats.url);
        if servers.is_empty() {
            return bad("no NATS URL given");
        }
        for url in servers {
            if let Err(e) = url.parse::<async_nats::ServerAddr>() {
                return Err(Error::NatsOptions {
                    what: format!(
                        "invalid NATS URL {:?}",
                        revocast_core::subjects::redact_urls(url)
                    ),
                    source: std::sync::Arc::new(e),
                });
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
        if !self.oauth_clients.is_empty() && self.jwt_verify_key.is_none() {
            return bad(
                "OAuth clients need a token verification key (--jwt-verify-key): a client \
                 may revoke only tokens issued to it, and without verification it could \
                 name another client in a forged token",
            );
        }
        let mut ids = std::collections::HashSet::new();
        for client in &self.oauth_clients {
            if !ids.insert(client.id.as_str()) {
                return bad(&format!("OAuth client {:?} is configured twice", client.id));
            }
        }
        let mut issuers = std::collections::HashSet::new();
        for trusted in &self.trusted_issuers {
            if !issuers.insert(trusted.issuer.as_str()) {
                return bad(&format!(
                    "trusted issuer {} is configured twice",
                    trusted.issuer
                ));
            }
            check_public_url(&trusted.issuer)
                .map_err(|e| Error::Config(format!("trusted issuer {e}")))?;
            if trusted.audiences.is_empty() || trusted.audiences.iter().any(String::is_empty) {
                return bad(&format!(
                    "trusted issuer {} needs an audience (--trust-audience: the client id \
                     its logout tokens are addressed to)",
                    trusted.issuer
                ));
            }
        }
        let mut tokens = std::collections::HashSet::new();
        for trusted in &self.trusted_issuers {
            if let Some(token) = &trusted.ssf_token {
                if token.is_empty() {
                    return bad(&format!(
                        "trusted issuer {}: empty Shared Signals token",
                        trusted.issuer
                    ));
                }
                if !tokens.insert(token.as_str()) {
                    return bad("two trusted issuers share a Shared Signals token: each \
                                transmitter needs its own");
                }
            }
        }
        if let Some(url) = &self.public_url {
            check_public_url(url).map_err(|e| Error::Config(format!("public URL {e}")))?;
        }
        Ok(())
    }
}

/// A public base URL: `http` or `https`, a host, no query or fragment.
fn check_public_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{url:?}: {why}"));
    let uri: axum::http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return bad(&e.to_string()),
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return bad("must start with http:// or https://");
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return bad("has no host");
    }
    if uri.query().is_some() || url.contains('#') {
        return bad("must not carry a query or a fragment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for bytes in [0, defaults::MAX_SNAPSHOT_BYTES + 1] {
            let mut bad = config.clone();
            bad.max_snapshot_bytes = bytes;
            assert!(bad.validate().is_err(), "{bytes}");
        }
        let mut many = config.clone();
        many.nats.url = "nats://127.0.0.1:4222, nats://127.0.0.1:4223".into();
        many.validate().unwrap();
        let mut clients = config.clone();
        clients.oauth_clients = vec!["app:s3cret".parse().unwrap()];
        assert!(clients.validate().is_err(), "clients without a key");
        clients.jwt_verify_key = Some("secret".into());
        clients.validate().unwrap();
        clients.oauth_clients.push("app:other".parse().unwrap());
        assert!(clients.validate().is_err(), "the same id twice");
        for url in ["https://revocast.example.com", "http://127.0.0.1:8080/base"] {
            let mut good = config.clone();
            good.public_url = Some(url.into());
            good.validate().unwrap();
        }
        for url in [
            "revocast.example.com",
            "ftp://x",
            "https://x/?a=1",
            "https://x/#f",
            "",
        ] {
            let mut bad = config.clone();
            bad.public_url = Some(url.into());
            assert!(bad.validate().is_err(), "{url:?}");
        }
        for url in ["", "nats://127.0.0.1:port", ","] {
            let mut bad = config.clone();
            bad.nats.url = url.into();
            assert!(bad.validate().is_err(), "{url:?}");
        }
    }

    #[test]
    fn the_trusted_issuers_file_is_read_and_malformed_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        std::fs::write(
            &path,
            r#"{"issuers": [{"issuer": "https://a.example", "audiences": ["rp"], "ssf_token": "t"},
                            {"issuer": "https://b.example", "audiences": ["rp", "rp2"]}]}"#,
        )
        .unwrap();
        let loaded = TrustConfig::load(&path).unwrap();
        assert_eq!(loaded.issuers.len(), 2);
        assert_eq!(loaded.issuers[0].ssf_token.as_deref(), Some("t"));
        assert!(
            !format!("{loaded:?}").contains("\"t\""),
            "tokens are not printed"
        );
        let mut config = Config::for_tests("nats://127.0.0.1:4222").unwrap();
        config.trusted_issuers = loaded.issuers.clone();
        config.validate().unwrap();
        let bad_files = [
            "",
            "[]",
            r#"{"issuers": [{"issuer": "https://a.example"}]}"#,
            r#"{"issuers": [{"issuer": "https://a.example", "audiences": ["rp"], "typo": 1}]}"#,
            r#"{"issuers": "https://a.example"}"#,
        ];
        for text in bad_files {
            std::fs::write(&path, text).unwrap();
            let error = TrustConfig::load(&path).unwrap_err().to_string();
            assert!(
                error.contains("trust.json") && error.contains("expected"),
                "{text}: {error}"
            );
        }
        assert!(TrustConfig::load(&dir.path().join("missing.json")).is_err());
        // What parses but cannot work is refused by `validate`.
        let issuer = |issuer: &str, audiences: &[&str], token: Option<&str>| TrustedIssuer {
            issuer: issuer.into(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            ssf_token: token.map(str::to_owned),
        };
        let bad_sets = [
            vec![issuer("https://a.example", &[], None)],
            vec![issuer("https://a.example", &[""], None)],
            vec![issuer("a.example", &["rp"], None)],
            vec![issuer("https://a.example", &["rp"], Some(""))],
            vec![
                issuer("https://a.example", &["rp"], None),
                issuer("https://a.example", &["x"], None),
            ],
            vec![
                issuer("https://a.example", &["rp"], Some("t")),
                issuer("https://b.example", &["rp"], Some("t")),
            ],
        ];
        for set in bad_sets {
            config.trusted_issuers = set.clone();
            assert!(config.validate().is_err(), "{set:?}");
        }
    }

    #[test]
    fn oauth_clients_parse_and_refuse_what_is_malformed() {
        let client: OAuthClient = "app:hunter:2".parse().unwrap();
        assert_eq!(
            (client.id.as_str(), client.secret.as_str()),
            ("app", "hunter:2")
        );
        assert!(
            !format!("{client:?}").contains("hunter"),
            "the secret is not printed"
        );
        for bad in ["", "app", "app:", ":secret", " : ", "a\u{7}:b"] {
            assert!(bad.parse::<OAuthClient>().is_err(), "{bad:?}");
        }
    }
}
