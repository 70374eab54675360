//! What the revocast rows run against: a `nats-server` of our own (JetStream, file
//! storage, random loopback port) and a publisher started in-process through its
//! library, fed through its HTTP API like an auth team's tooling would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use revocast_publisher::client::ApiClient;
use revocast_publisher::{Config, Publisher, Revocation};
use revocast_subscriber::{Subscriber, SubscriberOptions};
use revocast_testkit::NatsServer;

use crate::error::BenchError;
use crate::workload::{self, Family};

/// Revocations per bulk call (the API's default limit).
pub const BULK: u64 = 1_000;
/// Retries of a bulk call answered 503 (retrying is safe: the API says so).
const LOAD_RETRIES: u32 = 5;
/// Bound on one replica's bootstrap, on a publisher start and on one API call.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Finds `nats-server` or says how to install it.
pub fn nats_server_bin() -> Result<std::path::PathBuf, BenchError> {
    Ok(revocast_testkit::try_nats_server_bin()?)
}

/// The testkit's [`revocast_testkit::Stack`] (a NATS server and a ready publisher)
/// with the bench's settings: production heartbeat period, [`READY_TIMEOUT`] as the
/// bound, a publisher restart that is timed, and loading through the HTTP API.
#[derive(Debug)]
pub struct Stack {
    // `None` only while the publisher restarts, or after a restart failed.
    inner: Option<revocast_testkit::Stack>,
    config: Config,
    /// When the tokens of this stack were made (their `exp`s count from it).
    pub start: u64,
}

impl Stack {
    /// Starts a server and a publisher with its documented defaults, except a fresh
    /// in-memory key and HTTP on a random loopback port.
    pub async fn start() -> Result<Stack, BenchError> {
        // Production heartbeat period, not the tests' fast one.
        Stack::start_with_heartbeats(Duration::from_secs(1)).await
    }

    /// [`Stack::start`] with heartbeats every `interval`.
    pub async fn start_with_heartbeats(interval: Duration) -> Result<Stack, BenchError> {
        let nats = NatsServer::start();
        let mut config = Config::for_tests(nats.url())?;
        config.heartbeat_interval = interval;
        let inner =
            revocast_testkit::Stack::try_start_with(nats, config.clone(), READY_TIMEOUT).await?;
        Ok(Stack {
            inner: Some(inner),
            config,
            start: workload::now(),
        })
    }

    fn inner(&self) -> &revocast_testkit::Stack {
        match &self.inner {
            Some(inner) => inner,
            None => unreachable!("a stack is not used after its publisher failed to restart"),
        }
    }

    /// The server.
    pub fn nats(&self) -> &NatsServer {
        &self.inner().nats
    }

    /// The running publisher.
    pub fn publisher(&self) -> &Publisher {
        &self.inner().publisher
    }

    /// The publisher's HTTP API.
    pub fn api(&self) -> &ApiClient {
        &self.inner().api
    }

    /// Stops the publisher gracefully (it writes a final snapshot) and starts it
    /// again with the same key; returns how long the new one took to be ready.
    pub async fn restart_publisher(&mut self) -> Result<Duration, BenchError> {
        let Some(inner) = self.inner.take() else {
            return Err(BenchError::Setup("no publisher to restart".into()));
        };
        let nats = inner.shutdown_publisher().await?;
        let started = Instant::now();
        let inner =
            revocast_testkit::Stack::try_start_with(nats, self.config.clone(), READY_TIMEOUT)
                .await?;
        let took = started.elapsed();
        self.inner = Some(inner);
        Ok(took)
    }

    /// Shuts the publisher down gracefully, then the server.
    pub async fn stop(self) {
        if let Some(inner) = self.inner {
            let _ = inner.shutdown_publisher().await;
        }
    }

    /// Size of the signed snapshot a new replica downloads, from the object store.
    pub async fn snapshot_bytes(&self) -> Result<u64, BenchError> {
        let client = async_nats::connect(self.nats().url())
            .await
            .map_err(|e| BenchError::nats("connect", e))?;
        let store = async_nats::jetstream::new(client)
            .get_object_store(self.publisher().namespace().snapshot_bucket())
            .await
            .map_err(|e| BenchError::nats("open the snapshot bucket", e))?;
        let info = store
            .info(revocast_core::subjects::SNAPSHOT_OBJECT)
            .await
            .map_err(|e| BenchError::nats("the snapshot object's info", e))?;
        Ok(info.size as u64)
    }

    /// Options of a replica pinned to this publisher.
    pub fn options(&self) -> SubscriberOptions {
        self.inner()
            .subscriber_options()
            .max_staleness(Duration::from_secs(10))
            // The default 500 ms is for services; a loaded machine holding 10M entries
            // in one process can stall longer, and a timeout here is not a figure.
            .confirm_timeout(Duration::from_secs(5))
    }

    /// Connects a replica with `options` and waits until it is ready; returns it and
    /// the time from connect to ready.
    pub async fn replica_with(
        &self,
        options: SubscriberOptions,
    ) -> Result<(Subscriber, Duration), BenchError> {
        let started = Instant::now();
        let replica =
            revocast_testkit::try_connect_subscriber(options, &self.nats().url(), READY_TIMEOUT)
                .await?;
        Ok((replica, started.elapsed()))
    }

    /// A ready replica with the default options.
    pub async fn replica(&self) -> Result<(Subscriber, Duration), BenchError> {
        self.replica_with(self.options()).await
    }

    /// Revokes tokens `0..count` of `family` in bulk calls of [`BULK`], `concurrency`
    /// calls in flight, in `exp` order (as revocations arrive in steady state: a token
    /// revoked later expires later); returns the wall time. Every call is answered
    /// only once its delta is durable in JetStream.
    pub async fn load(
        &self,
        family: Family,
        count: u64,
        concurrency: usize,
    ) -> Result<Loaded, BenchError> {
        let start = self.start;
        let mut order: Vec<u64> = (0..count).collect();
        order.sort_unstable_by_key(|&i| workload::exp(start, i));
        let order = Arc::new(order);
        let next = Arc::new(AtomicU64::new(0));
        let retries = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let api = self.api().clone();
            let next = next.clone();
            let order = order.clone();
            let retries = retries.clone();
            tasks.push(tokio::spawn(async move {
                let mut added = 0;
                loop {
                    let from = next.fetch_add(BULK, Ordering::Relaxed);
                    if from >= count {
                        return Ok::<u64, BenchError>(added);
                    }
                    let items: Vec<Revocation> = order
                        [from as usize..(from + BULK).min(count) as usize]
                        .iter()
                        .map(|&i| revocation(family, start, i))
                        .collect();
                    let mut attempt = 0;
                    loop {
                        match api.revoke_bulk(&items).await {
                            // A retried call finds what its first attempt stored.
                            Ok(c) => {
                                added += c.revoked + c.duplicates;
                                break;
                            }
                            Err(e) if e.status() == Some(503) && attempt < LOAD_RETRIES => {
                                attempt += 1;
                                retries.fetch_add(1, Ordering::Relaxed);
                                eprintln!("bulk call answered 503 ({e}); retrying");
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }));
        }
        let mut added = 0;
        for task in tasks {
            added += task.await.map_err(|source| BenchError::Task {
                what: "load task",
                source,
            })??;
        }
        let took = started.elapsed();
        if added != count {
            return Err(BenchError::Setup(format!(
                "loading {count} revocations added {added}"
            )));
        }
        Ok(Loaded {
            took,
            retries: retries.load(Ordering::Relaxed),
        })
    }
}

/// What loading a set took.
#[derive(Clone, Copy, Debug)]
pub struct Loaded {
    /// Wall time.
    pub took: Duration,
    /// Bulk calls answered 503 (not durable in time) and retried.
    pub retries: u64,
}

/// The revocation of token `i` of `family`.
pub fn revocation(family: Family, start: u64, i: u64) -> Revocation {
    Revocation {
        jti: workload::jti(family, i),
        exp: Some(workload::exp(start, i)),
        sub: None,
        reason: None,
    }
}
