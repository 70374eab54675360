//! Everything the publisher stores in NATS: connecting, creating the delta stream and
//! the snapshot bucket, writing snapshots, and rebuilding the ledger at start. Reads
//! go through [`revocast_nats::Store`], the read path replicas use too (core's
//! "# Protocol" section is the contract followed here).

use std::time::Duration;

use async_nats::jetstream::{self, object_store, stream};
use revocast_core::{
    DecodeError, Filter, FilterParams, Message, Namespace, Snapshot, Succession, Verifier, subjects,
};
use revocast_nats::{LogEntry, ReadError, Store, StreamBounds};

use crate::config::{Config, NatsOptions};
use crate::error::Error;
use crate::ledger::Ledger;
use crate::stats::Counters;

/// Timeout of JetStream API calls and publish acks: the read path's.
const JETSTREAM_TIMEOUT: Duration = revocast_nats::store::TIMEOUT;

/// Connects to NATS. With `retry_on_initial_connect` the client comes back at once
/// and keeps trying in the background, so a publisher started before NATS waits for
/// it (with `/readyz` false) instead of exiting.
pub(crate) async fn connect(options: &NatsOptions) -> Result<async_nats::Client, Error> {
    let mut opts = async_nats::ConnectOptions::new()
        .name("revocast-publisher")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            // Quick at first (a NATS restart takes well under a second), 2 s at most.
            Duration::from_millis((attempts as u64).saturating_mul(100).min(2_000))
        })
        .event_callback(|event| async move {
            // async-nats logs every event at info; a lost connection deserves more.
            if let async_nats::Event::Disconnected = event {
                tracing::warn!("disconnected from NATS; reconnecting");
            }
        });
    if let (Some(user), Some(password)) = (&options.user, &options.password) {
        opts = opts.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &options.token {
        opts = opts.token(token.clone());
    }
    if let Some(creds) = &options.creds_file {
        opts = opts
            .credentials_file(creds)
            .await
            .map_err(|e| Error::NatsOptions {
                what: format!("credentials file {}", creds.display()),
                source: std::sync::Arc::new(e),
            })?;
    }
    if let Some(ca) = &options.tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    opts.connect(revocast_core::subjects::server_urls(&options.url))
        .await
        .map_err(|e| Error::NatsOptions {
            what: format!(
                "NATS URL {:?}",
                revocast_core::subjects::redact_urls(&options.url)
            ),
            source: std::sync::Arc::new(e),
        })
}

/// The JetStream context with the publisher's timeouts.
pub(crate) fn jetstream(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(JETSTREAM_TIMEOUT)
        .build(client)
}

/// How long deltas stay in the stream: every delta whose entries may still be live
/// must be there, so that a restart rebuilds the exact records from the stream. An
/// entry lives until its bucket ends plus leeway; `exp` may be `now + lifetime +
/// leeway` when it is revoked.
pub(crate) fn stream_max_age(params: &FilterParams) -> Duration {
    let secs = params
        .max_token_lifetime
        .saturating_add(params.leeway.saturating_mul(2))
        .saturating_add(params.bucket_width)
        .saturating_add(3600);
    Duration::from_secs(secs)
}

/// Creates the delta stream, or checks and (if needed) lengthens the existing one.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    namespace: &Namespace,
    params: &FilterParams,
    replicas: usize,
) -> Result<stream::Stream, Error> {
    let name = namespace.stream_name();
    let wanted = stream::Config {
        name: name.clone(),
        description: Some(format!("revocast deltas of namespace {namespace}")),
        subjects: vec![namespace.log_subject()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        max_age: stream_max_age(params),
        num_replicas: replicas,
        allow_direct: true,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let mut stream = js
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| Error::nats(format!("create stream {name}"), e))?;
    let info = stream
        .info()
        .await
        .map_err(|e| Error::nats(format!("stream info {name}"), e))?
        .clone();
    if info.config.subjects != wanted.subjects {
        return Err(Error::inconsistent(format!(
            "stream {name} captures {:?}, expected {:?}",
            info.config.subjects, wanted.subjects
        )));
    }
    if info.config.storage != stream::StorageType::File {
        tracing::warn!(stream = %name, "stream does not use file storage: revocations will not survive a NATS restart");
    }
    let max_age = info.config.max_age;
    if !max_age.is_zero() && max_age < wanted.max_age {
        tracing::warn!(stream = %name, from = ?max_age, to = ?wanted.max_age, "lengthening stream max_age");
        let mut config = info.config.clone();
        config.max_age = wanted.max_age;
        js.update_stream(config)
            .await
            .map_err(|e| Error::nats(format!("update stream {name}"), e))?;
    }
    Ok(stream)
}

/// The latest time the NATS server stamped on the namespace's stream, unix seconds:
/// its last message's, or its creation's when that is later (an empty stream). A time
/// of the server's clock, not the publisher's, and one that has passed: what
/// [`crate::clock::TimeBound`] bounds the publisher's clock by.
pub(crate) fn stamped_secs(info: &stream::Info) -> u64 {
    let last = info.state.last_timestamp.unix_timestamp();
    u64::try_from(last.max(info.created.unix_timestamp())).unwrap_or(0)
}

/// Reads [`stamped_secs`] from NATS, within the JetStream timeout.
pub(crate) async fn read_stamped_secs(
    js: &jetstream::Context,
    namespace: &Namespace,
) -> Result<u64, Error> {
    let name = namespace.stream_name();
    let read = async {
        let stream = js
            .get_stream(&name)
            .await
            .map_err(|e| Error::nats(format!("stream info {name}"), e))?;
        Ok::<_, Error>(stamped_secs(stream.cached_info()))
    };
    tokio::time::timeout(JETSTREAM_TIMEOUT, read)
        .await
        .map_err(|_| Error::Timeout {
            what: "stream info",
            after: JETSTREAM_TIMEOUT,
        })?
}

/// Opens (or creates) the snapshot bucket.
pub(crate) async fn ensure_object_store(
    js: &jetstream::Context,
    namespace: &Namespace,
    replicas: usize,
) -> Result<object_store::ObjectStore, Error> {
    let bucket = namespace.snapshot_bucket();
    match js.get_object_store(&bucket).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: bucket.clone(),
                description: Some(format!("revocast snapshots of namespace {namespace}")),
                storage: stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::nats(format!("create object store {bucket}"), e)),
    }
}

/// Writes the snapshot object; returns its size.
pub(crate) async fn put_snapshot(
    store: &object_store::ObjectStore,
    bytes: &[u8],
) -> Result<(), Error> {
    let mut reader = bytes;
    store
        .put(subjects::SNAPSHOT_OBJECT, &mut reader)
        .await
        .map_err(|e| Error::nats("write the snapshot", e))?;
    Ok(())
}

/// Reads the log messages `from..=to` into the ledger ([`follow`] each).
pub(crate) async fn replay(
    store: &Store,
    ledger: &mut Ledger,
    counters: &Counters,
    from: u64,
    to: u64,
) -> Result<(), Error> {
    let mut replay = store.replay(from..=to).await?;
    while let Some(entry) = replay.next().await {
        follow(ledger, counters, store.verifier(), &entry?)?;
    }
    Ok(())
}

/// What [`follow`] did with a log message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Followed {
    /// The next delta: applied to the filter and the records.
    Applied,
    /// A delta the filter holds already, seen for the first time since the start:
    /// its records noted.
    Noted,
    /// Anything else: skipped and counted.
    Skipped,
}

/// Takes one log message into the ledger. The next delta of the ledger's epoch
/// applies; a delta the filter holds already (older than the snapshot the ledger
/// started from) updates the records once; garbage, another key's messages, copies of
/// old deltas and other epochs' deltas are skipped, counted and logged, so that
/// nothing written to the log can stop the publisher. Only a delta of this epoch
/// *after* a missing version is an error: the log lost a delta.
pub(crate) fn follow(
    ledger: &mut Ledger,
    counters: &Counters,
    verifier: &Verifier,
    entry: &LogEntry,
) -> Result<Followed, Error> {
    ledger.seq = ledger.seq.max(entry.seq());
    let delta = match entry {
        LogEntry::Delta(stored) => &stored.delta,
        LogEntry::Skipped { seq, reason } => {
            skipped(counters, *seq, reason.reason(), reason);
            return Ok(Followed::Skipped);
        }
    };
    let seq = entry.seq();
    match ledger.filter.succession(delta) {
        Succession::Next => {
            ledger.apply(delta).map_err(|e| {
                Error::inconsistent_by(format!("delta {} does not apply", delta.version), e)
            })?;
            follow_rollovers(verifier, delta);
            Ok(Followed::Applied)
        }
        Succession::Applied if delta.version > ledger.noted => {
            ledger.note(delta);
            ledger.noted = delta.version;
            Ok(Followed::Noted)
        }
        Succession::Applied => {
            skipped(
                counters,
                seq,
                "replayed",
                &format!("a copy of delta {}", delta.version),
            );
            Ok(Followed::Skipped)
        }
        Succession::OtherEpoch => {
            skipped(
                counters,
                seq,
                "other_epoch",
                &format!("a delta of epoch {:016x}", delta.epoch),
            );
            Ok(Followed::Skipped)
        }
        Succession::Ahead => Err(Error::inconsistent(format!(
            "stream message {seq} holds delta {} but the ledger is at version {}: the \
             deltas between are missing from stream {}",
            delta.version,
            ledger.filter.version(),
            "of this namespace"
        ))),
    }
}

/// Follows the key rollovers of an applied delta: the key handed over from stops being
/// accepted when its overlap ends, so that nobody holding a retired key can write the
/// log for this publisher.
pub(crate) fn follow_rollovers(verifier: &Verifier, delta: &revocast_core::Delta) {
    for change in &delta.changes {
        if let revocast_core::Change::Rollover(rollover) = change
            && let Err(e) = verifier.follow(rollover)
        {
            tracing::error!(
                version = delta.version,
                error = %e,
                "an applied rollover does not extend the publisher's key ring"
            );
        }
    }
}

/// Counts and logs a log message that is not the next delta (every one at debug, the
/// 1st, 2nd, 4th, 8th... at warn).
fn skipped(counters: &Counters, seq: u64, reason: &'static str, what: &dyn std::fmt::Display) {
    let n = counters
        .log_messages_skipped
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    if n.is_power_of_two() {
        tracing::warn!(
            seq,
            reason,
            %what,
            skipped = n,
            "skipped a log message that is not this publisher's next delta"
        );
    } else {
        tracing::debug!(seq, reason, %what, "skipped a log message");
    }
}

/// Where NATS keeps things, opened and checked: the JetStream context the writer
/// publishes with, the bucket snapshots go to, and the shared read path.
#[derive(Clone)]
pub(crate) struct Storage {
    pub(crate) js: jetstream::Context,
    pub(crate) objects: object_store::ObjectStore,
    pub(crate) store: Store,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}

/// What [`bootstrap`] found and did.
#[derive(Debug)]
pub(crate) struct Booted {
    pub(crate) storage: Storage,
    pub(crate) ledger: Ledger,
    /// The size of the snapshot written at start, if one was.
    pub(crate) snapshot_written: Option<u64>,
    /// The namespace existed already (another life of a publisher wrote it): the
    /// writer commits a delta before the first heartbeat, so that this life's
    /// heartbeats order after every earlier one's.
    pub(crate) took_over: bool,
}

/// Opens the stream and the bucket and rebuilds the ledger: snapshot, then the stream
/// after it for the filter and the whole stream for the records. Writes snapshot 0
/// (in a new epoch) when there is none, so that a replica always finds one.
pub(crate) async fn bootstrap(
    client: &async_nats::Client,
    config: &Config,
    verifier: &Verifier,
    signer: &revocast_core::Signer,
    counters: &Counters,
) -> Result<Booted, Error> {
    let js = jetstream(client.clone());
    let namespace = &config.namespace;
    let store = Store::new(js.clone(), verifier.clone()).snapshot_limit(config.max_snapshot_bytes);
    let snapshot_store = ensure_object_store(&js, namespace, config.stream_replicas).await?;
    let snapshot = read_snapshot(&store, namespace, signer.public_key()).await?;
    let params = snapshot
        .as_ref()
        .map_or_else(|| config.filter.clone(), |s| s.state.params.clone());
    if snapshot.is_some() && params != config.filter {
        tracing::warn!(
            stored = ?params,
            configured = ?config.filter,
            "namespace exists with other filter parameters; keeping the stored ones"
        );
    }
    let stream = ensure_stream(&js, namespace, &params, config.stream_replicas).await?;
    let stamped = stamped_secs(stream.cached_info());
    let (filter, snapshot_seq) = match snapshot {
        Some(s) => (
            Filter::from_state(s.state)
                .map_err(|e| Error::inconsistent_by("the snapshot's filter state", e))?,
            Some(s.log_seq),
        ),
        None => (Filter::new(params).map_err(Error::Filter)?, None),
    };
    let had_snapshot = snapshot_seq.is_some();
    let snapshot_version = filter.version();
    let mut ledger = rebuild(&store, namespace, filter, snapshot_seq, counters).await?;
    // Nothing is signed before the key is known to be the namespace's.
    if let Some(head) = ledger.filter.chain_head()
        && head != signer.public_key().0.to_bytes()
    {
        return Err(Error::KeyRotated {
            head: revocast_core::VerifyingKey::from_bytes(&head)
                .map(|key| revocast_core::PublicKey(key).to_string())
                .map_err(|_| Error::inconsistent("the key chain ends in an invalid key"))?,
            rollover: ledger.filter.key_chain().len() as u64,
            own: signer.public_key().to_string(),
        });
    }
    // Records go with their buckets, which only an `Expire` drops. A clock far ahead
    // must not make the authority forget what replicas hold: no later than NATS's
    // time (the replayed `Expire` changes already dropped what expired before it).
    let now = config
        .clock
        .now_secs()
        .min(stamped.saturating_add(crate::clock::SLACK_SECS));
    let params = ledger.filter.params().clone();
    ledger.forget_expired(&params, now);
    let storage = Storage {
        js,
        objects: snapshot_store,
        store,
    };
    let mut written = None;
    if !had_snapshot || ledger.filter.version() > snapshot_version {
        let bytes = encode_snapshot(
            signer,
            ledger.filter.to_state(),
            ledger.seq,
            config.clock.now_ms(),
        );
        if within_snapshot_limit(config, bytes.len()) {
            put_snapshot(&storage.objects, &bytes).await?;
            written = Some(bytes.len() as u64);
        }
    }
    let took_over = had_snapshot || ledger.filter.version() > 0;
    Ok(Booted {
        storage,
        ledger,
        snapshot_written: written,
        took_over,
    })
}

/// The namespace's snapshot, verified, or `None` when there is none yet.
/// When the snapshot is signed by a key the namespace's chain rotated to from `own`:
/// the error that says so (and lets the boot finish an interrupted rotation).
async fn rotated_away(store: &Store, own: revocast_core::PublicKey) -> Option<Error> {
    let follower = Store::new(
        store.jetstream().clone(),
        Verifier::new(own, store.namespace().clone()),
    );
    let snapshot = follower.snapshot().await.ok()??.snapshot;
    let chain = &snapshot.state.key_chain;
    let head = chain.last()?.to_key().ok()?;
    Some(Error::KeyRotated {
        head: head.to_string(),
        rollover: chain.len() as u64,
        own: own.to_string(),
    })
}

pub(crate) async fn read_snapshot(
    store: &Store,
    namespace: &Namespace,
    own: revocast_core::PublicKey,
) -> Result<Option<Snapshot>, Error> {
    let read = store.snapshot().await;
    if let Err(ReadError::BadSnapshot {
        source: DecodeError::BadSignature,
    }) = &read
        && let Some(rotated) = rotated_away(store, own).await
    {
        return Err(rotated);
    }
    match read {
        Ok(read) => Ok(read.map(|r| r.snapshot)),
        Err(
            e @ ReadError::BadSnapshot {
                source: DecodeError::UnsupportedVersion { found, supported },
            },
        ) => {
            let bucket = namespace.snapshot_bucket();
            let what = if found > supported {
                format!(
                    "the snapshot in bucket {bucket} is in wire format version {found}, \
                     written by a newer release of revocast; this release reads version \
                     {supported}: run that release (or a later one) of the publisher. A \
                     publisher cannot be rolled back past a format change"
                )
            } else {
                format!(
                    "the snapshot in bucket {bucket} is in wire format version {found}, \
                     written by an older release of revocast; this release reads version \
                     {supported}: with the older release, `revocast-publisher export` the \
                     namespace, then start this release in a new namespace (or on a new \
                     NATS) and `revocast-publisher import` the file (docs/OPERATIONS.md, \
                     Upgrades)"
                )
            };
            Err(Error::inconsistent_by(what, e))
        }
        Err(e @ ReadError::BadSnapshot { .. }) => Err(Error::inconsistent_by(
            format!(
                "the snapshot object in bucket {} does not verify with this publisher's \
                 key (another key wrote this namespace?)",
                namespace.snapshot_bucket()
            ),
            e,
        )),
        Err(e) => Err(e.into()),
    }
}

/// The ledger at the end of the log: `filter` (from the snapshot, or empty) brought
/// up to date from the log after `snapshot_seq`, and the records from every stored
/// delta. Refuses a stream that cannot hold what the snapshot says (purged, or
/// messages missing after the snapshot). With no snapshot, the epoch is the one of
/// the log's first delta, or a new one for an empty log.
pub(crate) async fn rebuild(
    store: &Store,
    namespace: &Namespace,
    filter: Filter,
    snapshot_seq: Option<u64>,
    counters: &Counters,
) -> Result<Ledger, Error> {
    let StreamBounds { first, last } = store.bounds().await?;
    let from_seq = snapshot_seq.unwrap_or(0);
    if from_seq > last {
        return Err(Error::inconsistent(format!(
            "the snapshot covers the log up to message {from_seq} but stream {} ends at \
             {last}: the stream was deleted or purged; delete the snapshot bucket {} too to \
             start the namespace afresh",
            namespace.stream_name(),
            namespace.snapshot_bucket()
        )));
    }
    // The filter needs what follows the snapshot; the records need every stored delta.
    let first = if last == 0 { 1 } else { first.max(1) };
    if first > from_seq + 1 {
        return Err(Error::inconsistent(format!(
            "stream {} starts at message {first} but the snapshot covers it up to message \
             {from_seq}: messages {}..{first} are gone",
            namespace.stream_name(),
            from_seq + 1
        )));
    }
    let filter = match snapshot_seq {
        Some(_) => filter,
        None => filter.with_epoch(
            first_epoch(store, first, last)
                .await?
                .map_or_else(new_epoch, Ok)?,
        ),
    };
    let mut ledger = Ledger::new(filter);
    ledger.seq = from_seq;
    replay(store, &mut ledger, counters, first, last).await?;
    Ok(ledger)
}

/// The epoch of the log's first delta of version 1, if the log holds one.
async fn first_epoch(store: &Store, first: u64, last: u64) -> Result<Option<u64>, Error> {
    let mut replay = store.replay(first..=last).await?;
    while let Some(entry) = replay.next().await {
        if let LogEntry::Delta(stored) = entry?
            && stored.delta.version == 1
        {
            return Ok(Some(stored.delta.epoch));
        }
    }
    Ok(None)
}

/// A random epoch for a namespace created now.
pub(crate) fn new_epoch() -> Result<u64, Error> {
    let bytes = crate::keys::random_bytes()?;
    let mut epoch = [0u8; 8];
    epoch.copy_from_slice(&bytes[..8]);
    Ok(u64::from_le_bytes(epoch))
}

/// Whether a snapshot of `bytes` may be written: warns past half the limit (the alert
/// comes long before the refusal), refuses past it. A snapshot over the limit would
/// stop every new replica's bootstrap; the previous one stays instead, and replicas
/// replay the stream after it.
pub(crate) fn within_snapshot_limit(config: &Config, bytes: usize) -> bool {
    let limit = config.max_snapshot_bytes;
    if bytes > limit {
        tracing::error!(
            bytes,
            limit,
            "snapshot over the size limit; not written (the previous one stays): \
             raise --max-snapshot-bytes, shorten --max-token-lifetime or split the namespace"
        );
        return false;
    }
    if bytes > limit / 2 {
        tracing::warn!(bytes, limit, "snapshot over half of the size limit");
    }
    true
}

/// Encodes and signs a snapshot of a filter state that covers the log up to message
/// `log_seq`, taken at `now_ms`.
pub(crate) fn encode_snapshot(
    signer: &revocast_core::Signer,
    state: revocast_core::FilterState,
    log_seq: u64,
    now_ms: u64,
) -> Vec<u8> {
    signer.encode(&Message::Snapshot(Snapshot {
        taken_at_ms: now_ms,
        log_seq,
        state,
    }))
}
