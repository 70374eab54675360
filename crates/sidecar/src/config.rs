//! [`Config`]: everything the sidecar needs; `main` builds it from flags.

use std::time::Duration;

use revocast_subscriber::options::{DEFAULT_CONFIRM_TIMEOUT, DEFAULT_MAX_STALENESS};
use revocast_subscriber::{Namespace, Policy, PublicKey};
use revocast_verifier::IssuerOptions;

/// The default prefix of the identity headers.
pub const DEFAULT_HEADER_PREFIX: &str = "X-Auth-";

/// Client credentials that `POST /introspect` requires (HTTP Basic).
#[derive(Clone)]
pub struct ClientCredentials {
    /// The client id.
    pub id: String,
    /// The client secret.
    pub secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The sidecar's configuration.
#[derive(Debug)]
pub struct Config {
    /// NATS server URL(s), comma-separated.
    pub nats: String,
    /// The namespace of tokens whose issuer has no namespace of its own.
    pub namespace: Namespace,
    /// The publisher's public key.
    pub publisher_key: PublicKey,
    /// More publisher keys to trust (a key a rotation will switch to).
    pub also_trust_keys: Vec<PublicKey>,
    /// Refuse key rollovers to keys not pinned.
    pub pin_only: bool,
    /// The issuers (and static keys) tokens are verified with.
    pub issuers: Vec<IssuerOptions>,
    /// `(issuer, namespace)`: that issuer's tokens are checked against that namespace.
    pub issuer_namespaces: Vec<(String, Namespace)>,
    /// Fail-closed (503 when nobody can decide) or fail-open.
    pub policy: Policy,
    /// How long a replica trusts itself without a heartbeat.
    pub max_staleness: Duration,
    /// How long a check waits for the authority on a filter hit or while stale.
    pub confirm_timeout: Duration,
    /// Prefix of the identity headers (`X-Auth-` gives `X-Auth-Subject`, ...).
    pub header_prefix: String,
    /// Credentials of the introspection client; `None` turns `/introspect` off (404).
    pub introspection_client: Option<ClientCredentials>,
}

impl Config {
    /// Defaults for everything but what must be given.
    pub fn new(
        nats: impl Into<String>,
        publisher_key: PublicKey,
        issuers: Vec<IssuerOptions>,
    ) -> Config {
        Config {
            nats: nats.into(),
            namespace: Namespace::default(),
            publisher_key,
            also_trust_keys: Vec::new(),
            pin_only: false,
            issuers,
            issuer_namespaces: Vec::new(),
            policy: Policy::FailClosed,
            max_staleness: DEFAULT_MAX_STALENESS,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
            header_prefix: DEFAULT_HEADER_PREFIX.to_owned(),
            introspection_client: None,
        }
    }
}
