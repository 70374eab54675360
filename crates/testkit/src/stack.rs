//! [`Stack`]: a `nats-server` and a ready publisher in front of it, with the typed
//! API client and subscribers pinned to its key (feature `stack`).
//!
//! Every step has a fallible form (`try_*`, [`Stack::shutdown_publisher`]) that
//! returns a [`StackError`], for tools that report failures (the bench); the
//! panicking forms are thin wrappers over them with [`DEADLINE`] as the bound, for
//! tests.
//!
//! A stack started with [`Stack::start_killable`] runs its publisher on a tokio
//! runtime of its own, as a process of its own would, so that
//! [`Stack::kill_publisher`] can stop it the way SIGKILL stops a process.

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
    /// The publisher's own runtime could not be built.
    #[error("a runtime for the publisher: {0}")]
    Runtime(#[source] std::io::Error),
    /// The task starting or killing the publisher panicked or was cancelled.
    #[error("the publisher's start or kill did not finish: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// [`Stack::kill_publisher`] on a stack that was not started with
    /// [`Stack::start_killable`]: its publisher shares the caller's runtime.
    #[error("this stack's publisher cannot be killed (start it with Stack::start_killable)")]
    NotKillable,
}

/// How long a kill waits for the publisher's runtime threads to drop its tasks.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// The publisher's own tokio runtime: dropping it (at the latest with the [`Stack`])
/// drops every task still on it.
#[derive(Debug)]
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    /// A new runtime and a handle to spawn on it.
    fn new() -> Result<(OwnRuntime, tokio::runtime::Handle), StackError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("publisher")
            .enable_all()
            .build()
            .map_err(StackError::Runtime)?;
        let handle = runtime.handle().clone();
        Ok((OwnRuntime(Some(runtime)), handle))
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
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
    /// The publisher's own runtime, when it has one ([`Stack::start_killable`]).
    runtime: Option<OwnRuntime>,
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
        Stack::around(nats, publisher, token, bound, None)
    }

    /// A publisher with `config` in front of `nats`, on a tokio runtime of its own (two
    /// worker threads), as in a process of its own: [`Stack::kill_publisher`] can stop
    /// it the way SIGKILL stops a process, and [`Stack::restart_publisher`] starts the
    /// next one on a runtime of its own too.
    pub async fn start_killable(nats: NatsServer, config: Config) -> Stack {
        or_panic(Stack::try_start_killable(nats, config, DEADLINE).await)
    }

    /// [`Stack::start_killable`], ready within `bound`; `bound` is also the timeout of
    /// each call of [`Stack::api`].
    pub async fn try_start_killable(
        nats: NatsServer,
        config: Config,
        bound: Duration,
    ) -> Result<Stack, StackError> {
        let token = config.admin_token.clone();
        let (runtime, handle) = OwnRuntime::new()?;
        let publisher = handle
            .spawn(try_start_publisher(config, bound))
            .await
            .map_err(StackError::Task)??;
        Stack::around(nats, publisher, token, bound, Some(runtime))
    }

    fn around(
        nats: NatsServer,
        publisher: Publisher,
        token: Option<String>,
        bound: Duration,
        runtime: Option<OwnRuntime>,
    ) -> Result<Stack, StackError> {
        let api = ApiClient::builder(publisher.url())
            .admin_token_opt(token)
            .timeout(bound)
            .build()?;
        Ok(Stack {
            nats,
            publisher,
            api,
            runtime,
        })
    }

    /// Shuts the publisher down gracefully and starts one with `config` in front of
    /// the same server (killable if this one was).
    pub async fn restart_publisher(self, config: Config) -> Stack {
        or_panic(self.try_restart_publisher(config, DEADLINE).await)
    }

    /// [`Stack::shutdown_publisher`], then [`Stack::try_start_with`] (or
    /// [`Stack::try_start_killable`]) on the same server.
    pub async fn try_restart_publisher(
        self,
        config: Config,
        bound: Duration,
    ) -> Result<Stack, StackError> {
        let killable = self.runtime.is_some();
        let nats = self.shutdown_publisher().await?;
        Stack::start_again(nats, config, bound, killable).await
    }

    async fn start_again(
        nats: NatsServer,
        config: Config,
        bound: Duration,
        killable: bool,
    ) -> Result<Stack, StackError> {
        if killable {
            Stack::try_start_killable(nats, config, bound).await
        } else {
            Stack::try_start_with(nats, config, bound).await
        }
    }

    /// Shuts the publisher down gracefully (it writes a final snapshot) and hands
    /// back the server, still running.
    pub async fn shutdown_publisher(self) -> Result<NatsServer, StackError> {
        let Stack {
            nats,
            publisher,
            runtime,
            ..
        } = self;
        publisher.shutdown().await.map_err(StackError::Shutdown)?;
        drop(runtime);
        Ok(nats)
    }

    /// Stops the publisher the way SIGKILL stops a process, and hands back the
    /// server, still running. Its runtime is shut down: every task of the publisher
    /// (HTTP, the writer, heartbeats, snapshots, the authority, its NATS connection) is
    /// dropped wherever it stands, and none of its shutdown steps runs: no queued
    /// commit, no final snapshot, no flush. Callers waiting on it get an error (their
    /// connection closes) whether or not JetStream stored their delta; what JetStream
    /// stored stays stored. Returns once its threads have dropped every task (its port
    /// and NATS connection are closed). The stack must come from
    /// [`Stack::start_killable`] (else [`StackError::NotKillable`]).
    pub async fn kill_publisher(self) -> Result<NatsServer, StackError> {
        let Stack {
            nats,
            publisher,
            runtime,
            ..
        } = self;
        let Some(mut runtime) = runtime else {
            return Err(StackError::NotKillable);
        };
        if let Some(runtime) = runtime.0.take() {
            // Off this runtime's workers: the wait blocks.
            tokio::task::spawn_blocking(move || runtime.shutdown_timeout(KILL_WAIT))
                .await
                .map_err(StackError::Task)?;
        }
        // The handle's shutdown signal now reaches nothing.
        drop(publisher);
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
