//! Wiring: start HTTP, load the state from NATS, start the writer, the authority and
//! the periodic tasks, then shut all of it down in order, within a bound.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use revocast_core::{PublicKey, Signer};
use revocast_nats::Backoff;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::commit::Command;
use crate::config::Config;
use crate::error::Error;
use crate::jwt::JwtKey;
use crate::keys::KeySource;
use crate::nats::{self, Storage};
use crate::state::Shared;
use crate::writer::Writer;
use crate::{api, authority, keys, tasks};
use revocast_core::http::PublisherStats;

/// Runs a publisher on `listener` until `shutdown` completes, then stops taking
/// requests, commits what is queued, writes a final snapshot if the bound leaves time
/// for one, and returns, all within `config.shutdown_timeout`.
///
/// ```no_run
/// # async fn example() -> Result<(), revocast_publisher::Error> {
/// use revocast_publisher::{Config, KeySource};
/// let mut config = Config::new(KeySource::File("revocast-data/signing.key".into()));
/// config.admin_token = Some("s3cret".into());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// revocast_publisher::run(config, listener, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await
/// # }
/// ```
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    check_listen(&config, listener.local_addr()?)?;
    Server::new(config)?.run(listener, shutdown).await
}

/// Refuses open writes on a non-loopback address (before anything is created).
fn check_listen(config: &Config, addr: SocketAddr) -> Result<(), Error> {
    if !addr.ip().is_loopback() && config.admin_token.is_none() && !config.insecure_no_auth {
        return Err(Error::InsecureListen(addr));
    }
    Ok(())
}

/// A publisher ready to run: key loaded, configuration checked.
struct Server {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Command>,
}

impl Server {
    fn new(config: Config) -> Result<Server, Error> {
        config.validate()?;
        // Everything that can be refused is checked before a key file is created.
        let jwt = config
            .jwt_verify_key
            .as_deref()
            .map(JwtKey::parse)
            .transpose()?;
        let (keys, created) = keys::load_or_create(&config.signing_key)?;
        let signer = Signer::new(keys.signing.clone(), config.namespace.clone());
        if created && let KeySource::File(path) = &config.signing_key {
            tracing::info!(
                path = %path.display(),
                public_key = %signer.public_key(),
                "created a new signing key; subscribers pin the public key"
            );
        }
        let (shared, rx) = Shared::new(config, signer, &keys.retired, jwt)?;
        Ok(Server { shared, rx })
    }

    async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let Server { shared, rx } = self;
        let config = &shared.config;
        let addr = listener.local_addr()?;
        check_listen(config, addr)?;
        if config.admin_token.is_none() {
            tracing::warn!(
                "no admin token: mutating routes are open to anyone who can reach {addr}"
            );
        }
        tracing::info!(
            %addr,
            namespace = %config.namespace,
            public_key = %shared.signer().public_key(),
            nats = %revocast_core::subjects::redact_urls(&config.nats.url),
            "revocast publisher starting"
        );
        tokio::pin!(shutdown);

        let (http_stop, http_stopped) = oneshot::channel::<()>();
        let app = api::router(shared.clone());
        let mut http = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = http_stopped.await;
                })
                .into_future(),
        );

        // Load the state, then (a namespace that existed) take it over with one delta
        // before the first heartbeat: see `Heartbeat::beat`.
        let start = async {
            let (client, storage, took_over) = boot(&shared).await?;
            let (stop_tx, stop) = watch::channel(false);
            let snapshot_due = Arc::new(Notify::new());
            let mut writer = Writer::new(
                shared.clone(),
                storage.clone(),
                rx,
                stop.clone(),
                snapshot_due.clone(),
            );
            if took_over {
                writer.take_over().await?;
            }
            Ok::<_, Error>((client, storage, writer, (stop_tx, stop), snapshot_due))
        };
        let (client, storage, writer, (stop_tx, stop), snapshot_due) = tokio::select! {
            started = start => match started {
                Ok(started) => started,
                Err(e) => {
                    http.abort();
                    return Err(e);
                }
            },
            _ = &mut shutdown => {
                let _ = http_stop.send(());
                let _ = tokio::time::timeout(config.shutdown_timeout, &mut http).await;
                http.abort();
                return Ok(());
            }
        };
        let mut writer = tokio::spawn(writer.run());
        let authority = tokio::spawn(authority::serve(
            shared.clone(),
            client.clone(),
            stop.clone(),
        ));
        let heartbeats = tokio::spawn(tasks::heartbeats(
            shared.clone(),
            client.clone(),
            stop.clone(),
        ));
        let snapshots = tokio::spawn(tasks::snapshots(
            shared.clone(),
            storage.clone(),
            snapshot_due,
            stop.clone(),
        ));
        shared.ready.send_replace(true);
        {
            let ledger = shared.ledger();
            tracing::info!(
                version = ledger.filter.version(),
                records = ledger.records.len(),
                "ready"
            );
        }

        let mut writer_result = None;
        let mut failure = None;
        tokio::select! {
            _ = &mut shutdown => tracing::info!("shutting down"),
            r = &mut writer => writer_result = Some(r),
            r = &mut http => {
                failure = Some(match r {
                    Ok(Ok(())) => Error::Stopped("the HTTP server stopped"),
                    Ok(Err(e)) => Error::Http(e),
                    Err(source) => Error::Task { task: "http", source },
                });
            }
        }
        shared.ready.send_replace(false);

        let bound = config.shutdown_timeout;
        let deadline = tokio::time::Instant::now() + bound;
        // 1. Stop taking requests; in-flight calls still get their commit.
        let _ = http_stop.send(());
        if failure.is_none() {
            let _ = tokio::time::timeout(bound / 2, &mut http).await;
        }
        http.abort();
        // 2. The writer commits what is queued; the other tasks stop. Only the writer
        //    is essential: what it commits is what callers were promised.
        stop_tx.send_replace(true);
        let writer_result = match writer_result.take() {
            Some(r) => Ok(r),
            None => tokio::time::timeout_at(deadline, &mut writer).await,
        };
        let result = match writer_result {
            Ok(r) => r
                .map_err(|source| Error::Task {
                    task: "writer",
                    source,
                })
                .and_then(|r| r),
            Err(_) => {
                writer.abort();
                Err(Error::Timeout {
                    what: "shutdown",
                    after: bound,
                })
            }
        };
        for mut task in [authority, heartbeats, snapshots] {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        // 3. A last snapshot, so the next start replays nothing. Best effort within
        //    what is left of the bound (less a tenth for the flush): every committed
        //    delta is in the stream already, so a bucket that cannot take it (no
        //    quorum, NATS away) must not hold the shutdown.
        if result.is_ok() {
            let snapshot_by = deadline - bound / 10;
            match tokio::time::timeout_at(snapshot_by, tasks::write_snapshot(&shared, &storage))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(
                    error = %e,
                    "final snapshot not written; the next start replays the stream from the last one"
                ),
                Err(_) => tracing::warn!(
                    within = ?bound,
                    "final snapshot not written within the shutdown bound; the next start \
                     replays the stream from the last one"
                ),
            }
        }
        let _ = tokio::time::timeout_at(deadline, client.flush()).await;
        match failure {
            Some(e) => Err(e),
            None => {
                if result.is_ok() {
                    tracing::info!(version = shared.ledger().filter.version(), "stopped");
                }
                result
            }
        }
    }
}

/// A publisher that stopped between committing a rollover and renaming the new key
/// file in place finds the new key beside its key file: it finishes the rotation.
/// `Err` when the key the namespace rotated to is not there.
fn finish_rotation(shared: &Shared, head: &str) -> Result<(), ()> {
    let KeySource::File(path) = &shared.config.signing_key else {
        return Err(());
    };
    let next = keys::next_key_path(path);
    let Ok(file) = keys::read_key_file(&next) else {
        return Err(());
    };
    if file.public_key().to_string() != head {
        return Err(());
    }
    if let Err(e) = keys::install_next_key_file(path) {
        tracing::error!(error = %e, "could not put the rotated key file in place");
        return Err(());
    }
    for key in &file.retired {
        shared.verifier.pin(*key);
    }
    shared.set_signer(Signer::new(file.signing, shared.config.namespace.clone()));
    tracing::warn!(
        public_key = %head,
        path = %path.display(),
        "finished a key rotation that was interrupted after its rollover was stored"
    );
    Ok(())
}

/// A new key file left beside the key file by a rotation whose rollover was never
/// stored: the rotation failed, and the file is removed.
fn remove_unused_next_key(shared: &Shared) {
    let KeySource::File(path) = &shared.config.signing_key else {
        return;
    };
    let next = keys::next_key_path(path);
    if next.exists() {
        match std::fs::remove_file(&next) {
            Ok(()) => {
                tracing::warn!(path = %next.display(), "removed the key file of a rotation that did not happen")
            }
            Err(e) => {
                tracing::warn!(path = %next.display(), error = %e, "could not remove the key file of a rotation that did not happen")
            }
        }
    }
}

/// Connects to NATS and rebuilds the ledger, retrying what is transient (NATS not up
/// yet) and giving up on what is not (wrong key, inconsistent stream).
async fn boot(shared: &Arc<Shared>) -> Result<(async_nats::Client, Storage, bool), Error> {
    let config = &shared.config;
    let client = nats::connect(&config.nats).await?;
    let _ = shared.nats.set(client.clone());
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let booted = nats::bootstrap(
            &client,
            config,
            &shared.verifier,
            &shared.signer(),
            &shared.counters,
        )
        .await;
        match booted {
            Ok(booted) => {
                let version = booted.ledger.filter.version();
                tracing::info!(
                    version,
                    epoch = %format_args!("{:016x}", booted.ledger.filter.epoch()),
                    log_seq = booted.ledger.seq,
                    "state loaded from NATS"
                );
                *shared.ledger_mut() = booted.ledger;
                remove_unused_next_key(shared);
                if let Some(bytes) = booted.snapshot_written {
                    tasks::record_snapshot(shared, version, bytes);
                } else {
                    crate::stats::set(&shared.counters.last_snapshot_version, version);
                }
                return Ok((client, booted.storage, booted.took_over));
            }
            Err(Error::KeyRotated {
                head,
                rollover,
                own,
            }) => {
                finish_rotation(shared, &head).map_err(|()| Error::KeyRotated {
                    head,
                    rollover,
                    own,
                })?;
            }
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff.peek(), "loading state from NATS failed; retrying");
                backoff.wait().await;
            }
        }
    }
}

/// A publisher running in the background of this process: for tests and for
/// embedding. Dropping it shuts the publisher down.
///
/// ```no_run
/// # async fn example() -> Result<(), revocast_publisher::Error> {
/// use std::time::Duration;
/// use revocast_publisher::{Config, Publisher};
/// let publisher = Publisher::start(Config::for_tests("nats://127.0.0.1:4222")?).await?;
/// publisher.wait_ready(Duration::from_secs(10)).await?;
/// println!("API at {}, pin key {}", publisher.url(), publisher.public_key());
/// publisher.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Publisher {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
}

impl Publisher {
    /// Binds `config.listen` and starts the publisher in the background.
    pub async fn start(config: Config) -> Result<Publisher, Error> {
        let listener = TcpListener::bind(config.listen).await?;
        Publisher::start_with_listener(config, listener)
    }

    /// Starts the publisher on an already bound listener.
    pub fn start_with_listener(config: Config, listener: TcpListener) -> Result<Publisher, Error> {
        let local_addr = listener.local_addr()?;
        check_listen(&config, local_addr)?;
        let server = Server::new(config)?;
        let shared = server.shared.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async {
            // A dropped handle stops the publisher too.
            let _ = rx.await;
        }));
        Ok(Publisher {
            local_addr,
            shared,
            shutdown: Some(tx),
            task,
        })
    }

    /// The HTTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<local_addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The public key the publisher signs with now (subscribers pin it; a key
    /// rotation changes it).
    pub fn public_key(&self) -> PublicKey {
        self.shared.signer().public_key()
    }

    /// The namespace.
    pub fn namespace(&self) -> &revocast_core::Namespace {
        &self.shared.config.namespace
    }

    /// Whether the state is loaded and the API takes revocations.
    pub fn is_ready(&self) -> bool {
        self.shared.is_ready()
    }

    /// The filter version.
    pub fn version(&self) -> u64 {
        self.shared.ledger().filter.version()
    }

    /// The namespace's epoch (a new one when the namespace is created again).
    pub fn epoch(&self) -> u64 {
        self.shared.ledger().filter.epoch()
    }

    /// What `GET /v1/stats` would answer.
    pub fn stats(&self) -> PublisherStats {
        api::report(&self.shared)
    }

    /// Waits until the publisher is ready, or fails if it stopped or `timeout` passed.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let mut ready = self.shared.ready.subscribe();
        let wait = async {
            loop {
                if *ready.borrow_and_update() {
                    return Ok(());
                }
                if self.task.is_finished() {
                    return Err(Error::Stopped(
                        "the publisher stopped before it was ready (see the log, or \
                         Publisher::shutdown for the cause)",
                    ));
                }
                tokio::select! {
                    _ = ready.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout {
                what: "publisher start",
                after: timeout,
            })?
    }

    /// Shuts down gracefully and returns how the run ended. Bounded by the
    /// configured shutdown timeout (plus a margin).
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let bound = self.shared.config.shutdown_timeout + Duration::from_secs(5);
        match tokio::time::timeout(bound, &mut self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(source)) => Err(Error::Task {
                task: "publisher",
                source,
            }),
            Err(_) => {
                self.task.abort();
                Err(Error::Timeout {
                    what: "shutdown",
                    after: bound,
                })
            }
        }
    }
}
