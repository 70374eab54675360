//! [`Store`]: reading what the publisher keeps in NATS for one namespace, verified.
//!
//! Every call is bounded ([`TIMEOUT`] per JetStream request and per replayed message;
//! a snapshot's chunks get [`SNAPSHOT_READ_TIMEOUT`]), and everything read is checked
//! against the pinned key before anyone uses it.

use std::ops::RangeInclusive;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::{self, object_store};
use bytes::Bytes;
use futures::StreamExt as _;
use revocast_core::subjects::SNAPSHOT_OBJECT;
use revocast_core::{DecodeError, Delta, Namespace, Snapshot, Verifier};
use tokio::io::AsyncReadExt as _;

/// Longest wait for one JetStream answer or one replayed message.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for all of a snapshot's chunks.
pub const SNAPSHOT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest snapshot read: the wire format's own limit on one message. Enforced from
/// the object's recorded size before reading, and again while reading.
pub const MAX_SNAPSHOT_BYTES: usize = revocast_core::wire::DEFAULT_MAX_MESSAGE_BYTES;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why reading the store failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// NATS refused a request or the connection failed (usually transient).
    #[error("NATS: {what}: {source}")]
    Nats {
        /// What was asked.
        what: &'static str,
        /// The client's error.
        source: BoxError,
    },
    /// No answer in time (usually transient).
    #[error("NATS did not answer {what} within {after:?}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// The bound.
        after: Duration,
    },
    /// The replay consumer ended before the range did (the connection dropped).
    #[error("the replay ended before stream message {expected}")]
    Ended {
        /// The next sequence that was expected.
        expected: u64,
    },
    /// The snapshot object is larger than [`MAX_SNAPSHOT_BYTES`].
    #[error("the snapshot is {size} bytes, more than the {limit} accepted")]
    TooLarge {
        /// Its size (at least).
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// The snapshot does not verify with the pinned key and namespace.
    #[error("the snapshot does not verify: {source}")]
    BadSnapshot {
        /// Why.
        source: DecodeError,
    },
}

impl ReadError {
    /// NATS was away or slow: the same read may work later. Every other error is
    /// about what NATS holds.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ReadError::Nats { .. } | ReadError::Timeout { .. } | ReadError::Ended { .. }
        )
    }

    /// The reason a message did not verify, when that is the error.
    pub fn decode_error(&self) -> Option<&DecodeError> {
        match self {
            ReadError::BadSnapshot { source } => Some(source),
            _ => None,
        }
    }

    fn nats(what: &'static str) -> impl FnOnce(BoxError) -> ReadError {
        move |source| ReadError::Nats { what, source }
    }
}

/// Runs a NATS request with [`TIMEOUT`].
async fn bounded<T, E>(
    what: &'static str,
    after: Duration,
    request: impl Future<Output = Result<T, E>>,
) -> Result<T, ReadError>
where
    E: Into<BoxError>,
{
    match tokio::time::timeout(after, request).await {
        Ok(result) => result.map_err(|e| ReadError::Nats {
            what,
            source: e.into(),
        }),
        Err(_) => Err(ReadError::Timeout { what, after }),
    }
}

/// Reads at most `limit` bytes of `reader` to its end, failing when a read makes no
/// progress for [`TIMEOUT`]: a snapshot replaced while it is read (the publisher
/// writes a new one, purging the old chunks) would otherwise keep the reader waiting
/// for chunks that are gone until the whole [`SNAPSHOT_READ_TIMEOUT`] ran out. The
/// caller reads the new snapshot on its next attempt.
async fn read_progressing(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: u64,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut reader = reader.take(limit);
    let mut chunk = vec![0u8; 128 << 10];
    loop {
        match tokio::time::timeout(TIMEOUT, reader.read(&mut chunk)).await {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no chunk for {TIMEOUT:?} after {} bytes (the snapshot was replaced \
                         while it was read?)",
                        out.len()
                    ),
                ));
            }
        }
    }
}

/// The stream's first and last sequence (`0, 0` when it never held anything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamBounds {
    /// First sequence still held.
    pub first: u64,
    /// Last sequence stored: the publisher's version.
    pub last: u64,
}

/// A verified snapshot and its size on the wire.
#[derive(Clone, Debug)]
pub struct SnapshotRead {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Its signed envelope's size, bytes.
    pub bytes: usize,
}

/// A verified delta read from the stream, with the bytes that were stored.
#[derive(Clone, Debug)]
pub struct StoredDelta {
    /// Its stream sequence (not its version: a log may hold other messages too).
    pub seq: u64,
    /// The delta.
    pub delta: Delta,
    /// The stored envelope.
    pub payload: Bytes,
}

/// One message of the log, as [`Replay`] reads it.
#[derive(Debug)]
pub enum LogEntry {
    /// A delta signed by the pinned key for this namespace. Whether it is the next
    /// one is for the reader to say ([`revocast_core::Filter::succession`]): the
    /// stream may also hold stored copies of old deltas.
    Delta(StoredDelta),
    /// A message that is not a delta of this publisher (garbage, another key, another
    /// namespace, another format): every reader skips it.
    Skipped {
        /// Its stream sequence.
        seq: u64,
        /// Why it does not verify.
        reason: DecodeError,
    },
}

impl LogEntry {
    /// The entry's stream sequence.
    pub fn seq(&self) -> u64 {
        match self {
            LogEntry::Delta(d) => d.seq,
            LogEntry::Skipped { seq, .. } => *seq,
        }
    }
}

/// The read path of one namespace: the snapshot bucket and the delta stream, read
/// and verified with one [`Verifier`].
#[derive(Clone, Debug)]
pub struct Store {
    js: jetstream::Context,
    verifier: Verifier,
    snapshot_limit: usize,
}

impl Store {
    /// Reads the namespace of `verifier` through `js`, trusting what `verifier`
    /// trusts.
    pub fn new(js: jetstream::Context, verifier: Verifier) -> Store {
        Store {
            js,
            verifier,
            snapshot_limit: MAX_SNAPSHOT_BYTES,
        }
    }

    /// Lowers the snapshot size limit below [`MAX_SNAPSHOT_BYTES`] (tests use it to
    /// check the limit without writing 256 MiB).
    pub fn snapshot_limit(mut self, bytes: usize) -> Store {
        self.snapshot_limit = bytes.min(MAX_SNAPSHOT_BYTES);
        self
    }

    /// The verifier messages are read with (its clones share its key ring).
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The namespace read.
    pub fn namespace(&self) -> &Namespace {
        self.verifier.namespace()
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The snapshot object, verified; `None` when the bucket holds none yet.
    pub async fn snapshot(&self) -> Result<Option<SnapshotRead>, ReadError> {
        let bucket = self.namespace().snapshot_bucket();
        let store = bounded(
            "open the snapshot bucket",
            TIMEOUT,
            self.js.get_object_store(&bucket),
        )
        .await?;
        let mut object = match tokio::time::timeout(TIMEOUT, store.get(SNAPSHOT_OBJECT)).await {
            Ok(Ok(object)) => object,
            Ok(Err(e)) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Ok(Err(e)) => return Err(ReadError::nats("get the snapshot object")(e.into())),
            Err(_) => {
                return Err(ReadError::Timeout {
                    what: "get the snapshot object",
                    after: TIMEOUT,
                });
            }
        };
        let limit = self.snapshot_limit;
        if object.info.size > limit {
            return Err(ReadError::TooLarge {
                size: object.info.size as u64,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(object.info.size);
        bounded(
            "read the snapshot's chunks",
            SNAPSHOT_READ_TIMEOUT,
            read_progressing(&mut object, limit as u64 + 1, &mut bytes),
        )
        .await?;
        if bytes.len() > limit {
            return Err(ReadError::TooLarge {
                size: bytes.len() as u64,
                limit,
            });
        }
        let snapshot = self
            .verifier
            .decode_snapshot(&bytes)
            .map_err(|source| ReadError::BadSnapshot { source })?;
        Ok(Some(SnapshotRead {
            snapshot,
            bytes: bytes.len(),
        }))
    }

    /// The stream's first and last sequence.
    pub async fn bounds(&self) -> Result<StreamBounds, ReadError> {
        let stream = bounded(
            "the stream's info",
            TIMEOUT,
            self.js.get_stream(self.namespace().stream_name()),
        )
        .await?;
        let state = &stream.cached_info().state;
        Ok(StreamBounds {
            first: state.first_sequence,
            last: state.last_sequence,
        })
    }

    /// The log messages in the sequence `range`, in order, each verified: one ordered
    /// consumer, so one round trip per batch of messages rather than per message. A
    /// sequence with no message (deleted) is passed over; a message that does not
    /// verify comes as [`LogEntry::Skipped`], never as an error, so that nothing anyone
    /// writes to the log can stop its readers. An empty range asks NATS nothing.
    pub async fn replay(&self, range: RangeInclusive<u64>) -> Result<Replay, ReadError> {
        let (from, to) = range.into_inner();
        let mut replay = Replay {
            messages: None,
            next: from.max(1),
            end: to,
            verifier: self.verifier.clone(),
        };
        if replay.next > replay.end {
            return Ok(replay);
        }
        let stream = self.stream().await?;
        let consumer = bounded(
            "create a replay consumer",
            TIMEOUT,
            stream.create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: replay.next,
                },
                filter_subject: self.namespace().log_subject(),
                ..Default::default()
            }),
        )
        .await?;
        let messages = bounded("start the replay", TIMEOUT, consumer.messages()).await?;
        replay.messages = Some(Box::new(messages));
        Ok(replay)
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream<()>, ReadError> {
        self.js
            .get_stream_no_info(self.namespace().stream_name())
            .await
            .map_err(|e| ReadError::nats("name the stream")(e.into()))
    }
}

fn verify(verifier: &Verifier, seq: u64, payload: Bytes) -> LogEntry {
    match verifier.decode_delta(&payload) {
        Ok(delta) => LogEntry::Delta(StoredDelta {
            seq,
            delta,
            payload,
        }),
        Err(reason) => LogEntry::Skipped { seq, reason },
    }
}

/// A verified replay of a range of the stream, from [`Store::replay`].
pub struct Replay {
    messages: Option<Box<Ordered>>,
    next: u64,
    end: u64,
    verifier: Verifier,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl Replay {
    /// The next message of the range, `None` after the last one. After an error the
    /// replay is over (start a new one from [`Replay::next_sequence`]).
    pub async fn next(&mut self) -> Option<Result<LogEntry, ReadError>> {
        if self.next > self.end {
            return None;
        }
        let result = self.read().await;
        match &result {
            Ok((entry, pending)) => {
                self.next = entry.seq() + 1;
                if *pending == 0 {
                    // The stream holds nothing after it (the range's last messages
                    // were deleted): the range is done.
                    self.end = self.end.min(entry.seq());
                }
            }
            Err(_) => self.end = 0,
        }
        Some(result.map(|(entry, _)| entry))
    }

    /// The sequence the next call returns.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// The next message and how many the stream holds after it.
    async fn read(&mut self) -> Result<(LogEntry, u64), ReadError> {
        let expected = self.next;
        let Some(messages) = self.messages.as_mut() else {
            return Err(ReadError::Ended { expected });
        };
        loop {
            let message = match tokio::time::timeout(TIMEOUT, messages.next()).await {
                Err(_) => {
                    return Err(ReadError::Timeout {
                        what: "the next replayed delta",
                        after: TIMEOUT,
                    });
                }
                Ok(None) => return Err(ReadError::Ended { expected }),
                Ok(Some(Err(e))) => return Err(ReadError::nats("replay")(e.into())),
                Ok(Some(Ok(message))) => message,
            };
            let info = message
                .info()
                .map_err(ReadError::nats("read a replayed message's sequence"))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            // An ordered consumer that recreated itself may repeat what it sent.
            if seq < expected {
                continue;
            }
            return Ok((
                verify(&self.verifier, seq, message.message.payload),
                pending,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::message::PublishMessage;
    use revocast_core::{Filter, FilterParams, Message, Signer, signing_key_from_seed};
    use revocast_testkit::NatsServer;

    use super::*;

    struct Fixture {
        _server: NatsServer,
        js: jetstream::Context,
        signer: Signer,
        store: Store,
    }

    async fn fixture() -> Fixture {
        let server = NatsServer::start();
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = jetstream::new(client);
        let namespace = Namespace::new("store").unwrap();
        js.create_stream(jetstream::stream::Config {
            name: namespace.stream_name(),
            subjects: vec![namespace.log_subject()],
            ..Default::default()
        })
        .await
        .unwrap();
        js.create_object_store(object_store::Config {
            bucket: namespace.snapshot_bucket(),
            ..Default::default()
        })
        .await
        .unwrap();
        let signer = Signer::new(signing_key_from_seed([1; 32]), namespace.clone());
        let store = Store::new(js.clone(), Verifier::new(signer.public_key(), namespace));
        Fixture {
            _server: server,
            js,
            signer,
            store,
        }
    }

    impl Fixture {
        /// Stores a delta of `version` signed by `signer`; returns its sequence.
        async fn store_delta(&self, signer: &Signer, version: u64) -> u64 {
            let bytes = signer.encode(&Message::Delta(Delta {
                epoch: 0,
                version,
                committed_at_ms: 1,
                changes: Vec::new(),
            }));
            let subject = self.store.namespace().log_subject();
            let publish = PublishMessage::build().payload(bytes.into());
            let ack = self.js.send_publish(subject, publish).await.unwrap();
            ack.await.unwrap().sequence
        }

        /// What a replay of `range` yields: `Ok(version)` for a delta, `Err(reason)`
        /// for a skipped message, each with its sequence.
        async fn entries(
            &self,
            range: RangeInclusive<u64>,
        ) -> Result<Vec<(u64, Result<u64, &'static str>)>, ReadError> {
            let mut replay = self.store.replay(range).await?;
            let mut entries = Vec::new();
            while let Some(entry) = replay.next().await {
                entries.push(match entry? {
                    LogEntry::Delta(d) => (d.seq, Ok(d.delta.version)),
                    LogEntry::Skipped { seq, reason } => (seq, Err(reason.reason())),
                });
            }
            Ok(entries)
        }

        async fn store_raw(&self, payload: &[u8]) -> u64 {
            let subject = self.store.namespace().log_subject();
            let publish = PublishMessage::build().payload(payload.to_vec().into());
            let ack = self.js.send_publish(subject, publish).await.unwrap();
            ack.await.unwrap().sequence
        }
    }

    #[tokio::test]
    async fn replay_hands_over_every_message_and_skips_what_does_not_verify() {
        let f = fixture().await;
        for v in 1..=3 {
            assert_eq!(f.store_delta(&f.signer, v).await, v);
        }
        assert_eq!(
            f.store.bounds().await.unwrap(),
            StreamBounds { first: 1, last: 3 }
        );
        let versions = |entries: Vec<(u64, Result<u64, &'static str>)>| -> Vec<u64> {
            entries.into_iter().map(|(_, v)| v.unwrap()).collect()
        };
        assert_eq!(versions(f.entries(1..=3).await.unwrap()), [1, 2, 3]);
        assert_eq!(versions(f.entries(2..=3).await.unwrap()), [2, 3]);
        // An empty range asks NATS nothing.
        assert!(
            f.entries(RangeInclusive::new(4, 3))
                .await
                .unwrap()
                .is_empty()
        );

        // Garbage, a delta signed by another key, and a stored copy of delta 1: the
        // first two are skipped with their reason, the copy is for the reader to
        // recognise.
        assert_eq!(f.store_raw(b"not a revocast message").await, 4);
        let other = Signer::new(signing_key_from_seed([2; 32]), f.store.namespace().clone());
        assert_eq!(f.store_delta(&other, 4).await, 5);
        assert_eq!(f.store_delta(&f.signer, 1).await, 6);
        assert_eq!(f.store_delta(&f.signer, 4).await, 7);
        // A deleted message leaves a sequence with nothing in it.
        let stream =
            f.js.get_stream(f.store.namespace().stream_name())
                .await
                .unwrap();
        stream.delete_message(2).await.unwrap();
        assert_eq!(
            f.entries(1..=7).await.unwrap(),
            [
                (1, Ok(1)),
                (3, Ok(3)),
                (4, Err("bad_magic")),
                (5, Err("bad_signature")),
                (6, Ok(1)),
                (7, Ok(4)),
            ]
        );
        // The stream's last messages deleted: the replay ends with what is there.
        stream.delete_message(7).await.unwrap();
        let entries = f.entries(5..=7).await.unwrap();
        assert_eq!(entries, [(5, Err("bad_signature")), (6, Ok(1))]);
    }

    #[tokio::test]
    async fn snapshots_are_verified_and_bounded() {
        let f = fixture().await;
        assert!(f.store.snapshot().await.unwrap().is_none(), "none yet");
        let bucket =
            f.js.get_object_store(f.store.namespace().snapshot_bucket())
                .await
                .unwrap();
        let state = Filter::new(FilterParams::default()).unwrap().to_state();
        let snapshot = |signer: &Signer| {
            signer.encode(&Message::Snapshot(Snapshot {
                log_seq: 0,
                taken_at_ms: 1,
                state: state.clone(),
            }))
        };
        let good = snapshot(&f.signer);
        bucket.put(SNAPSHOT_OBJECT, &mut &good[..]).await.unwrap();
        let read = f.store.snapshot().await.unwrap().unwrap();
        assert_eq!(read.bytes, good.len());
        assert_eq!(read.snapshot.state.version, 0);

        let small = f.store.clone().snapshot_limit(good.len() - 1);
        let err = small.snapshot().await.unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { .. }), "{err}");

        let other = Signer::new(signing_key_from_seed([2; 32]), f.store.namespace().clone());
        let forged = snapshot(&other);
        bucket.put(SNAPSHOT_OBJECT, &mut &forged[..]).await.unwrap();
        let err = f.store.snapshot().await.unwrap_err();
        assert!(matches!(err, ReadError::BadSnapshot { .. }), "{err}");
    }
}
