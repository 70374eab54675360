//! [`SubscriberOptions`]: how a replica connects, what it trusts and what it does
//! when it cannot know.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use revocast_core::{KeyRing, Namespace, PublicKey, Verifier};

use crate::authority::{Authority, NatsAuthority};
use crate::error::ConnectError;
use crate::subscriber::Subscriber;

/// Default `max_staleness`.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(5);
/// Default confirm timeout.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_millis(500);
/// Default lifetime of a cached authority answer.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Default number of cached authority answers.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// What a check does when the replica cannot vouch for a token: while it is not
/// ready or is stale (no heartbeat for `max_staleness`), and when the authority does
/// not answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Confirm every token with the authority; if it cannot answer, refuse (503).
    /// Revocations are never missed; availability depends on the authority.
    #[default]
    FailClosed,
    /// Accept the token and count it (`fail_open_accepts`). Availability never
    /// depends on revocast; a revocation may be missed while it cannot sync.
    FailOpen,
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail-closed" | "fail_closed" | "closed" => Ok(Policy::FailClosed),
            "fail-open" | "fail_open" | "open" => Ok(Policy::FailOpen),
            other => Err(format!(
                "unknown policy {other:?}: use fail-closed or fail-open"
            )),
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::FailClosed => "fail-closed",
            Policy::FailOpen => "fail-open",
        })
    }
}

/// Builds a [`Subscriber`], in the style of `async_nats::ConnectOptions`.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use revocast_subscriber::{Policy, SubscriberOptions};
///
/// let key = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik".parse()?;
/// let subscriber = SubscriberOptions::new(key)
///     .namespace("prod".parse()?)
///     .policy(Policy::FailClosed)
///     .max_staleness(Duration::from_secs(5))
///     .connect("nats://127.0.0.1:4222")
///     .await?;
/// subscriber.ready().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SubscriberOptions {
    /// The pinned publisher keys, the first one given first.
    pub(crate) keys: Vec<PublicKey>,
    pub(crate) pin_only: bool,
    pub(crate) namespace: Namespace,
    pub(crate) policy: Policy,
    pub(crate) max_staleness: Duration,
    pub(crate) confirm_timeout: Duration,
    pub(crate) cache_ttl: Duration,
    pub(crate) cache_capacity: usize,
    pub(crate) authority: Option<Arc<dyn Authority>>,
    nats: async_nats::ConnectOptions,
    credentials_file: Option<PathBuf>,
}

impl std::fmt::Debug for SubscriberOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberOptions")
            .field("keys", &self.keys)
            .field("pin_only", &self.pin_only)
            .field("namespace", &self.namespace)
            .field("policy", &self.policy)
            .field("max_staleness", &self.max_staleness)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_capacity", &self.cache_capacity)
            .field("authority", &self.authority)
            .field("credentials_file", &self.credentials_file)
            .finish_non_exhaustive()
    }
}

impl SubscriberOptions {
    /// Options that trust only snapshots, deltas, heartbeats and answers signed by
    /// `publisher_key` (the public key `revocast-publisher keygen` prints), and by the
    /// keys the publisher rotates to from it (see [`SubscriberOptions::pin_only`]).
    pub fn new(publisher_key: PublicKey) -> SubscriberOptions {
        SubscriberOptions {
            keys: vec![publisher_key],
            pin_only: false,
            namespace: Namespace::default(),
            policy: Policy::default(),
            max_staleness: DEFAULT_MAX_STALENESS,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            authority: None,
            nats: async_nats::ConnectOptions::new().name("revocast-subscriber"),
            credentials_file: None,
        }
    }

    /// Pins one more publisher key (a key the publisher will rotate to, or one it
    /// rotated to since the first was pinned).
    pub fn trust_key(mut self, key: PublicKey) -> Self {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
        self
    }

    /// With `true`, the replica trusts the pinned keys only and refuses every key
    /// rollover to a key it does not pin (counted in
    /// [`Stats::rollovers_refused`](crate::Stats)). Default `false`: a rollover signed
    /// by a trusted key is followed, so a planned key rotation needs no change on
    /// services. Use it when a publisher key may be stolen: whoever holds it can sign
    /// a rollover to a key of their own. Either way a key rotated away from is
    /// refused once the rollover's overlap ends.
    pub fn pin_only(mut self, pin_only: bool) -> Self {
        self.pin_only = pin_only;
        self
    }

    /// The verifier of this replica: its clones share one key ring, which follows
    /// the namespace's rollovers.
    pub(crate) fn verifier(&self) -> Verifier {
        Verifier::with_ring(
            KeyRing::new(self.keys.iter().copied(), self.pin_only),
            self.namespace.clone(),
        )
    }

    /// The namespace to replicate (default `default`).
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// The staleness policy (default [`Policy::FailClosed`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long the replica trusts itself without a heartbeat proving it in sync
    /// (default 5 s).
    pub fn max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// How long a check waits for the authority (default 500 ms); past it the policy
    /// decides.
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// How long an authority answer is reused (default 60 s). An applied delta naming
    /// the `jti` evicts it sooner.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How many authority answers are kept (default 100,000). When full, the cache
    /// evicts a few answers by the S3-FIFO policy of `quick_cache`; answers asked for
    /// again stay longest.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Who confirms filter hits (default: [`NatsAuthority`] on the same connection).
    pub fn authority(mut self, authority: impl Authority) -> Self {
        self.authority = Some(Arc::new(authority));
        self
    }

    /// NATS user and password (for [`SubscriberOptions::connect`]).
    pub fn user_and_password(mut self, user: String, password: String) -> Self {
        self.nats = self.nats.user_and_password(user, password);
        self
    }

    /// NATS token (for [`SubscriberOptions::connect`]).
    pub fn token(mut self, token: String) -> Self {
        self.nats = self.nats.token(token);
        self
    }

    /// A NATS `.creds` file, read when connecting.
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials_file = Some(path.into());
        self
    }

    /// Requires TLS.
    pub fn require_tls(mut self, required: bool) -> Self {
        self.nats = self.nats.require_tls(required);
        self
    }

    /// Trusts the CA certificates in this PEM file.
    pub fn add_root_certificates(mut self, path: impl Into<PathBuf>) -> Self {
        self.nats = self.nats.add_root_certificates(path.into());
        self
    }

    /// Presents this client certificate and key (PEM files).
    pub fn add_client_certificate(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.nats = self.nats.add_client_certificate(cert.into(), key.into());
        self
    }

    /// Replaces the NATS connection options wholesale, for anything not mirrored here
    /// (reconnect delays, NKeys, callbacks).
    pub fn nats_options(mut self, options: async_nats::ConnectOptions) -> Self {
        self.nats = options;
        self
    }

    /// Connects to NATS at `url` (comma-separated for several servers) and starts the
    /// replica. Returns once connected; await [`Subscriber::ready`] for the bootstrap.
    pub async fn connect(self, url: &str) -> Result<Subscriber, ConnectError> {
        let mut nats = self.nats.clone();
        if let Some(path) = &self.credentials_file {
            nats = nats
                .credentials_file(path)
                .await
                .map_err(|source| ConnectError::File {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        let client = nats
            .connect(revocast_core::subjects::server_urls(url))
            .await?;
        Ok(self.with_client(client))
    }

    /// Starts the replica on an existing connection. Must be called within a tokio
    /// runtime (it spawns the background task).
    pub fn with_client(self, client: async_nats::Client) -> Subscriber {
        let verifier = self.verifier();
        let (authority, invalid_answers) = match self.authority.clone() {
            Some(authority) => (authority, None),
            None => {
                let nats = NatsAuthority::with_verifier(client.clone(), verifier.clone());
                let invalid = nats.invalid_counter();
                (Arc::new(nats) as Arc<dyn Authority>, Some(invalid))
            }
        };
        Subscriber::start(self, client, authority, invalid_answers, verifier)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn policies_parse_and_print() {
        for p in [Policy::FailClosed, Policy::FailOpen] {
            assert_eq!(p.to_string().parse::<Policy>().unwrap(), p);
        }
        assert_eq!("fail_open".parse::<Policy>().unwrap(), Policy::FailOpen);
        assert!("maybe".parse::<Policy>().is_err());
        assert_eq!(Policy::default(), Policy::FailClosed);
    }
}
