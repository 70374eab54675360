//! Everything the publisher stores in NATS: connecting, the delta stream, the
//! snapshot object, and rebuilding the ledger from them at start (core's
//! "# Protocol" section is the contract followed here).

use std::time::Duration;

use async_nats::jetstream::{self, object_store, stream};
use futures::StreamExt as _;
use revocast_core::{
    Delta, Filter, FilterParams, Message, Namespace, Snapshot, Verifier, subjects,
};
use tokio::io::AsyncReadExt as _;

use crate::config::{Config, NatsOptions};
use crate::error::Error;
use crate::ledger::Ledger;

/// Timeout of JetStream API calls and publish acks.
const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest snapshot accepted when loading.
const MAX_SNAPSHOT_BYTES: usize = revocast_core::wire::DEFAULT_MAX_MESSAGE_BYTES;

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
        opts = opts.credentials_file(creds).await.map_err(|e| {
            Error::Config(format!("NATS credentials file {}: {e}", creds.display()))
        })?;
    }
    if let Some(ca) = &options.tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    opts.connect(server_list(&options.url))
        .await
        .map_err(|e| Error::Config(format!("NATS URL {:?}: {e}", options.url)))
}

/// `nats://a:4222,nats://b:4222` as a list (async-nats parses one URL per string).
pub(crate) use revocast_core::subjects::server_urls as server_list;

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
        .map_err(|e| Error::Nats(format!("create stream {name}: {e}")))?;
    let info = stream
        .info()
        .await
        .map_err(|e| Error::Nats(format!("stream info {name}: {e}")))?
        .clone();
    if info.config.subjects != wanted.subjects {
        return Err(Error::Inconsistent(format!(
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
            .map_err(|e| Error::Nats(format!("update stream {name}: {e}")))?;
    }
    Ok(stream)
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
            .map_err(|e| Error::Nats(format!("create object store {bucket}: {e}"))),
    }
}

/// Reads the snapshot object, if there is one.
pub(crate) async fn load_snapshot(
    store: &object_store::ObjectStore,
    verifier: &Verifier,
) -> Result<Option<Snapshot>, Error> {
    let mut object = match store.get(subjects::SNAPSHOT_OBJECT).await {
        Ok(object) => object,
        Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Nats(format!("read snapshot: {e}"))),
    };
    let mut bytes = Vec::new();
    (&mut object)
        .take(MAX_SNAPSHOT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| Error::Nats(format!("read snapshot: {e}")))?;
    let snapshot = verifier.decode_snapshot(&bytes).map_err(|e| {
        Error::Inconsistent(format!(
            "snapshot object in bucket {} does not verify with this publisher's key: {e} \
             (another key wrote this namespace?)",
            verifier.namespace().snapshot_bucket()
        ))
    })?;
    Ok(Some(snapshot))
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
        .map_err(|e| Error::Nats(format!("write snapshot: {e}")))?;
    Ok(())
}

/// First and last sequence of the stream (0, 0 when it never held anything).
pub(crate) async fn stream_bounds(stream: &stream::Stream) -> Result<(u64, u64), Error> {
    let info = stream
        .get_info()
        .await
        .map_err(|e| Error::Nats(format!("stream info: {e}")))?;
    Ok((info.state.first_sequence, info.state.last_sequence))
}

/// Reads and verifies the delta stored at `seq`; returns it with its raw bytes.
pub(crate) async fn read_delta(
    stream: &stream::Stream,
    verifier: &Verifier,
    seq: u64,
) -> Result<(Delta, bytes::Bytes), Error> {
    let message = stream
        .get_raw_message(seq)
        .await
        .map_err(|e| Error::Nats(format!("read delta {seq}: {e}")))?;
    let delta = decode_stored(verifier, &message.payload, seq)?;
    Ok((delta, message.payload))
}

fn decode_stored(verifier: &Verifier, payload: &[u8], seq: u64) -> Result<Delta, Error> {
    let delta = verifier.decode_delta(payload).map_err(|e| {
        Error::Inconsistent(format!(
            "stream message {seq} is not a delta of this publisher: {e}"
        ))
    })?;
    if delta.version != seq {
        return Err(Error::Inconsistent(format!(
            "stream message {seq} carries delta version {}",
            delta.version
        )));
    }
    Ok(delta)
}

/// Applies stream messages `from..=to` in order: to the filter when it does not hold
/// them yet, to the records always. Uses an ordered consumer (one round trip per
/// batch of messages rather than per message).
pub(crate) async fn replay(
    stream: &stream::Stream,
    verifier: &Verifier,
    ledger: &mut Ledger,
    from: u64,
    to: u64,
) -> Result<(), Error> {
    if from > to {
        return Ok(());
    }
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Nats(format!("create replay consumer: {e}")))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| Error::Nats(format!("replay: {e}")))?;
    let mut expected = from;
    while expected <= to {
        let next = tokio::time::timeout(JETSTREAM_TIMEOUT, messages.next())
            .await
            .map_err(|_| {
                Error::Nats(format!(
                    "replay: no message {expected} within {JETSTREAM_TIMEOUT:?}"
                ))
            })?;
        let message = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(Error::Nats(format!("replay: {e}"))),
            None => return Err(Error::Nats("replay: consumer ended".into())),
        };
        let seq = message
            .info()
            .map_err(|e| Error::Nats(format!("replay: message info: {e}")))?
            .stream_sequence;
        if seq < expected {
            continue;
        }
        if seq > expected {
            return Err(Error::Inconsistent(format!(
                "stream skips from {expected} to {seq} while replaying"
            )));
        }
        let delta = decode_stored(verifier, &message.payload, seq)?;
        apply_stored(ledger, &delta)?;
        expected += 1;
    }
    Ok(())
}

/// Applies a stored delta to the ledger: to the filter if it is the next version, to
/// the records only if the filter holds it already (it predates the snapshot).
pub(crate) fn apply_stored(ledger: &mut Ledger, delta: &Delta) -> Result<(), Error> {
    if delta.version <= ledger.filter.version() {
        ledger.note(delta);
        return Ok(());
    }
    ledger
        .apply(delta)
        .map_err(|e| Error::Inconsistent(format!("delta {} does not apply: {e}", delta.version)))
}

/// Where NATS keeps things, opened and checked.
#[derive(Clone)]
pub(crate) struct Storage {
    pub(crate) js: jetstream::Context,
    pub(crate) stream: stream::Stream,
    pub(crate) objects: object_store::ObjectStore,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}

/// Opens the stream and the bucket and rebuilds the ledger: snapshot, then the stream
/// after it for the filter and the whole stream for the records. Writes snapshot 0
/// when there is none, so that a replica always finds one.
pub(crate) async fn bootstrap(
    client: &async_nats::Client,
    config: &Config,
    verifier: &Verifier,
    signer: &revocast_core::Signer,
) -> Result<(Storage, Ledger, Option<u64>), Error> {
    let js = jetstream(client.clone());
    let namespace = &config.namespace;
    let snapshot_store = ensure_object_store(&js, namespace, config.stream_replicas).await?;
    let snapshot = load_snapshot(&snapshot_store, verifier).await?;
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
    let (first, last) = stream_bounds(&stream).await?;
    let (filter, had_snapshot) = match snapshot {
        Some(s) => (
            Filter::from_state(s.state)
                .map_err(|e| Error::Inconsistent(format!("snapshot state: {e}")))?,
            true,
        ),
        None => (
            Filter::new(params).map_err(|e| Error::Config(e.to_string()))?,
            false,
        ),
    };
    let snapshot_version = filter.version();
    if snapshot_version > last {
        return Err(Error::Inconsistent(format!(
            "snapshot is at version {snapshot_version} but stream {} ends at {last}: \
             the stream was deleted or purged; delete the snapshot bucket {} too to start \
             the namespace afresh",
            namespace.stream_name(),
            namespace.snapshot_bucket()
        )));
    }
    // The filter needs S+1..=last; the records need every stored delta.
    let first = if last == 0 { 1 } else { first.max(1) };
    if first > snapshot_version + 1 {
        return Err(Error::Inconsistent(format!(
            "stream starts at {first} but the snapshot is at version {snapshot_version}: \
             deltas {}..{first} are gone",
            snapshot_version + 1
        )));
    }
    let mut ledger = Ledger::new(filter);
    replay(&stream, verifier, &mut ledger, first, last).await?;
    if ledger.filter.version() != last {
        return Err(Error::Inconsistent(format!(
            "after replay the filter is at version {} but the stream ends at {last}",
            ledger.filter.version()
        )));
    }
    let now = crate::clock::now_secs();
    let params = ledger.filter.params().clone();
    ledger.forget_expired(&params, now);
    let storage = Storage {
        js,
        stream,
        objects: snapshot_store,
    };
    let mut written = None;
    if !had_snapshot || ledger.filter.version() > snapshot_version {
        let bytes = encode_snapshot(signer, ledger.filter.to_state());
        put_snapshot(&storage.objects, &bytes).await?;
        written = Some(bytes.len() as u64);
    }
    Ok((storage, ledger, written))
}

/// Encodes and signs a snapshot of a filter state.
pub(crate) fn encode_snapshot(
    signer: &revocast_core::Signer,
    state: revocast_core::FilterState,
) -> Vec<u8> {
    signer.encode(&Message::Snapshot(Snapshot {
        taken_at_ms: crate::clock::now_ms(),
        state,
    }))
}
