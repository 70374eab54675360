//! [`Stack`]: a `nats-server` and a ready publisher in front of it, with the typed
//! API client and subscribers pinned to its key (feature `stack`).
//!
//! Every step has a fallible form (`try_*`, [`Stack::shutdown_publisher`]) that
//! returns a [`StackError`], for tools that report failures (the bench); the
//! panicking forms are thin wrappers over them with [`DEADLINE`] as the bound, for
//! tests.

use std::time::Duration;

use revocast_publisher::client::{ApiClient, ClientError};
use revocast_publisher::{Committed, Config, Publisher, Revocation};
use revocast_subscriber::{ConnectError, Subscriber, SubscriberOptions};

use crate::{DEADLINE, NatsServer};

/// Why a step of a [`Stack`] failed; keeps the cause.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The publisher did not start.
    #[error("the publisher does not start: {0}")]
    Start(#[source] revocast_publisher::Error),
    /// The publisher started but was not ready within the bound.
    #[error("the publisher is not ready: {0}")]
    NotReady(#[source] revocast_publisher::Error),
    /// The publisher's graceful shutdown failed.
    #[error("the publisher does not shut down cleanly: {0}")]
    Shutdown(#[source] revocast_publisher::Error),
    /// The client of the publisher's API could not be built.
    #[error("an API client: {0}")]
    Client(#[from] ClientError),
    /// A subscriber could not connect.
    #[error("the subscriber does not connect: {0}")]
    Connect(#[from] ConnectError),
    /// A subscriber connected but was not ready within the bound.
    #[error("the subscriber is not ready within {0:?}")]
    SubscriberNotReady(Duration),
}

/// Starts a publisher in this process and waits until it is ready.
pub async fn start_publisher(config: Config) -> Publisher {
    or_panic(try_start_publisher(config, DEADLINE).await)
}

/// Starts a publisher in this process and waits, at most `ready_within`, until it is
/// ready.
pub async fn try_start_publisher(
    config: Config,
    ready_within: Duration,
) -> Result<Publisher, StackError> {
    let publisher = Publisher::start(config).await.map_err(StackError::Start)?;
    publisher
        .wait_ready(ready_within)
        .await
        .map_err(StackError::NotReady)?;
    Ok(publisher)
}

/// Connects a subscriber with `options` to `url` and waits, at most `ready_within`,
/// until it is ready.
pub async fn try_connect_subscriber(
    options: SubscriberOptions,
    url: &str,
    ready_within: Duration,
) -> Result<Subscriber, StackError> {
    let subscriber = options.connect(url).await?;
    tokio::time::timeout(ready_within, subscriber.ready())
        .await
        .map_err(|_| StackError::SubscriberNotReady(ready_within))?;
    Ok(subscriber)
}

/// A NATS server, a ready publisher in front of it and a client of its API.
#[derive(Debug)]
pub struct Stack {
    /// The server (killed with its store on drop).
    pub nats: NatsServer,
    /// The publisher, in this process.
    pub publisher: Publisher,
    /// The publisher's HTTP API, with the admin token of its configuration.
    pub api: ApiClient,
}

impl Stack {
    /// A new server and a publisher with test settings ([`Config::for_tests`]).
    pub async fn start() -> Stack {
        crate::init_logs();
        let nats = NatsServer::start();
        let config = Config::for_tests(nats.url()).expect("a test configuration");
        Stack::start_with(nats, config).await
    }

    /// A publisher with `config` in front of `nats`.
    pub async fn start_with(nats: NatsServer, config: Config) -> Stack {
        or_panic(Stack::try_start_with(nats, config, DEADLINE).await)
    }

    /// A publisher with `config` in front of `nats`, ready within `bound`; `bound` is
    /// also the timeout of each call of [`Stack::api`].
    pub async fn try_start_with(
        nats: NatsServer,
        config: Config,
        bound: Duration,
    ) -> Result<Stack, StackError> {
        let token = config.admin_token.clone();
        let publisher = try_start_publisher(config, bound).await?;
        let api = ApiClient::builder(publisher.url())
            .admin_token_opt(token)
            .timeout(bound)
            .build()?;
        Ok(Stack {
            nats,
            publisher,
            api,
        })
    }

    /// Shuts the publisher down gracefully and starts one with `config` in front of
    /// the same server.
    pub async fn restart_publisher(self, config: Config) -> Stack {
        or_panic(self.try_restart_publisher(config, DEADLINE).await)
    }

    /// [`Stack::shutdown_publisher`], then [`Stack::try_start_with`] on the same
    /// server.
    pub async fn try_restart_publisher(
        self,
        config: Config,
        bound: Duration,
    ) -> Result<Stack, StackError> {
        let nats = self.shutdown_publisher().await?;
        Stack::try_start_with(nats, config, bound).await
    }

    /// Shuts the publisher down gracefully (it writes a final snapshot) and hands
    /// back the server, still running.
    pub async fn shutdown_publisher(self) -> Result<NatsServer, StackError> {
        let Stack {
            nats, publisher, ..
        } = self;
        publisher.shutdown().await.map_err(StackError::Shutdown)?;
        Ok(nats)
    }

    /// Options for a subscriber pinned to this publisher's key and namespace.
    pub fn subscriber_options(&self) -> SubscriberOptions {
        SubscriberOptions::new(self.publisher.public_key())
            .namespace(self.publisher.namespace().clone())
            .max_staleness(Duration::from_secs(3))
    }

    /// A ready subscriber connected straight to the server.
    pub async fn subscriber(&self) -> Subscriber {
        self.subscriber_at(&self.nats.url()).await
    }

    /// A ready subscriber connected to `url` (through a [`crate::Proxy`], say).
    pub async fn subscriber_at(&self, url: &str) -> Subscriber {
        or_panic(try_connect_subscriber(self.subscriber_options(), url, DEADLINE).await)
    }

    /// `POST /v1/revocations` with one revocation; returns the version.
    pub async fn revoke(&self, jti: &str, exp: u64) -> u64 {
        version(self.api.revoke(&Revocation::new(jti, exp)).await)
    }

    /// `POST /v1/revocations` in bulk; returns the version.
    pub async fn revoke_many(&self, items: &[(String, u64)]) -> u64 {
        let items: Vec<Revocation> = items
            .iter()
            .map(|(jti, exp)| Revocation::new(jti.clone(), *exp))
            .collect();
        version(self.api.revoke_bulk(&items).await)
    }

    /// `POST /v1/cutoffs`; returns the version.
    pub async fn cutoff(&self, sub: Option<&str>, not_before: u64) -> u64 {
        version(self.api.cutoff(sub, not_before).await)
    }
}

/// The value, or a panic that tells the test why not.
fn or_panic<T>(done: Result<T, StackError>) -> T {
    done.unwrap_or_else(|e| panic!("{e}"))
}

fn version(done: Result<Committed, ClientError>) -> u64 {
    match done {
        Ok(c) => c.version,
        Err(e) => panic!("the publisher refused: {e}"),
    }
}
