//! A stand-in publisher that speaks the revocast protocol with revocast-core on a
//! real nats-server (the real publisher crate is tested on its own). The proxy and
//! the waits are the testkit's.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage as Publish};
use futures::StreamExt as _;
use revocast_core::subjects::SNAPSHOT_OBJECT;
use revocast_core::{
    ConfirmResponse, Delta, Digest, Filter, FilterParams, Heartbeat, Message, Namespace, PublicKey,
    Signer, Snapshot, Staging, decode_request, signing_key_from_seed,
};
use revocast_subscriber::{Policy, Subscriber, SubscriberOptions};
pub use revocast_testkit::{eventually, init_logs, now_ms, now_secs, within};

/// How the fake authority answers confirm requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Responder {
    /// Signed, correct answers.
    Honest,
    /// No answer at all.
    Silent,
    /// Correct answers after a delay.
    Slow(Duration),
    /// Answers signed by another key.
    Forged,
    /// Answers that do not echo the nonce.
    WrongNonce,
    /// "Not revoked", computed one version before the publisher's (an authority
    /// that has not applied its newest delta yet).
    Behind,
}

#[derive(Debug)]
struct Pulse {
    version: u64,
    digest: Digest,
    last_time_ms: u64,
    /// The last heartbeat's `beat`.
    beat: u64,
}

/// The protocol side of a publisher, driven by the test.
pub struct FakePublisher {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub namespace: Namespace,
    pub signer: Signer,
    pub filter: Filter,
    /// What the authority answers "revoked" for.
    pub revoked: Arc<Mutex<HashSet<String>>>,
    pub responder: Arc<Mutex<Responder>>,
    /// Confirm requests received.
    pub confirm_requests: Arc<AtomicU64>,
    pub heartbeats_paused: Arc<AtomicBool>,
    pulse: Arc<Mutex<Pulse>>,
    seeds: u64,
    /// The stream sequence of the last delta stored.
    seq: u64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakePublisher {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A deterministic bucket seed (tests only; the publisher's are random).
pub fn seed(n: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5A5A_5A5A_5A5A_5A5A
}

impl FakePublisher {
    /// Creates the stream and the object store, stores snapshot 0, and starts the
    /// confirm responder and heartbeats every 100 ms.
    pub async fn start(url: &str, namespace: &str) -> FakePublisher {
        Self::start_with(url, namespace, FilterParams::default()).await
    }

    pub async fn start_with(url: &str, namespace: &str, params: FilterParams) -> FakePublisher {
        init_logs();
        let client = async_nats::connect(url).await.unwrap();
        let js = jetstream::new(client.clone());
        let namespace = Namespace::new(namespace).unwrap();
        js.create_stream(jetstream::stream::Config {
            name: namespace.stream_name(),
            subjects: vec![namespace.log_subject()],
            storage: jetstream::stream::StorageType::File,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .unwrap();
        js.create_object_store(jetstream::object_store::Config {
            bucket: namespace.snapshot_bucket(),
            ..Default::default()
        })
        .await
        .unwrap();
        let signer = Signer::new(signing_key_from_seed([42; 32]), namespace.clone());
        let filter = Filter::new(params).unwrap();
        let pulse = Arc::new(Mutex::new(Pulse {
            version: 0,
            digest: filter.digest(),
            last_time_ms: 0,
            beat: 0,
        }));
        let mut publisher = FakePublisher {
            client,
            js,
            namespace,
            signer,
            filter,
            revoked: Arc::default(),
            responder: Arc::new(Mutex::new(Responder::Honest)),
            confirm_requests: Arc::default(),
            heartbeats_paused: Arc::default(),
            pulse,
            seeds: 0,
            seq: 0,
            tasks: Vec::new(),
        };
        publisher.snapshot().await;
        publisher.spawn_responder().await;
        publisher.spawn_heartbeats();
        publisher
    }

    pub fn key(&self) -> PublicKey {
        self.signer.public_key()
    }

    /// Options pinning this publisher's key, for its namespace.
    pub fn options(&self) -> SubscriberOptions {
        SubscriberOptions::new(self.key()).namespace(self.namespace.clone())
    }

    /// A ready replica on its own connection to `url`.
    pub async fn replica(&self, url: &str, policy: Policy, max_staleness: Duration) -> Subscriber {
        let sub = self
            .options()
            .policy(policy)
            .max_staleness(max_staleness)
            .connect(url)
            .await
            .unwrap();
        within("replica ready", sub.ready()).await;
        sub
    }

    pub fn version(&self) -> u64 {
        self.filter.version()
    }

    /// Plans the next delta without storing it.
    pub fn plan(&mut self, stage: impl FnOnce(&mut Staging<'_>, &mut dyn FnMut() -> u64)) -> Delta {
        let mut seeds = self.seeds;
        let changes = {
            let mut staging = self.filter.stage();
            let mut next_seed = || {
                seeds += 1;
                seed(seeds)
            };
            stage(&mut staging, &mut next_seed);
            staging.finish()
        };
        self.seeds = seeds;
        Delta {
            epoch: 0,
            version: self.filter.version() + 1,
            committed_at_ms: now_ms(),
            changes,
        }
    }

    pub fn encode(&self, delta: &Delta) -> Vec<u8> {
        self.signer.encode(&Message::Delta(delta.clone()))
    }

    /// Stores `delta` (which must be next) in the stream, then sends it live, as the
    /// publisher does, and applies it.
    pub async fn store(&mut self, delta: &Delta) {
        let bytes = self.encode(delta);
        let ack = self
            .js
            .send_publish(
                self.namespace.log_subject(),
                Publish::build()
                    .payload(bytes.clone().into())
                    .expected_last_sequence(self.seq)
                    .message_id(format!("{}:{}:{}", self.namespace, delta.version, self.seq)),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, self.seq + 1, "the next stream message");
        self.seq = ack.sequence;
        self.client
            .publish(self.namespace.delta_subject(), bytes.into())
            .await
            .unwrap();
        self.filter.apply(delta).unwrap();
        let mut pulse = self.pulse.lock().unwrap();
        pulse.version = self.filter.version();
        pulse.digest = self.filter.digest();
    }

    /// Revokes `jtis` (all expiring at `exp`) in one delta; the authority knows them.
    pub async fn revoke(&mut self, jtis: &[String], exp: u64) -> Delta {
        let delta = self.plan(|s, seed| {
            for jti in jtis {
                s.revoke(jti, exp, &mut *seed).unwrap();
            }
        });
        self.revoked.lock().unwrap().extend(jtis.iter().cloned());
        self.store(&delta).await;
        delta
    }

    pub async fn subject_cutoff(&mut self, sub: &str, not_before: u64) {
        let delta = self.plan(|s, _| s.subject_cutoff(sub, not_before).unwrap());
        self.store(&delta).await;
    }

    pub async fn global_cutoff(&mut self, not_before: u64) {
        let delta = self.plan(|s, _| s.global_cutoff(not_before));
        self.store(&delta).await;
    }

    /// Comes back as a publisher whose single-replica stream lost its tail: at
    /// `filter` (an older state of its own), with the stream purged and a snapshot of
    /// `filter` covering it. Its next deltas take versions replicas already hold.
    pub async fn lose_tail(&mut self, filter: Filter) {
        let stream = self
            .js
            .get_stream(self.namespace.stream_name())
            .await
            .unwrap();
        stream.purge().await.unwrap();
        self.filter = filter;
        {
            let mut pulse = self.pulse.lock().unwrap();
            pulse.version = self.filter.version();
            pulse.digest = self.filter.digest();
        }
        self.snapshot().await;
    }

    /// Stores the current filter as the snapshot.
    pub async fn snapshot(&self) {
        let bytes = self.signer.encode(&Message::Snapshot(Snapshot {
            log_seq: self.seq,
            taken_at_ms: now_ms(),
            state: self.filter.to_state(),
        }));
        self.put_snapshot_bytes(&bytes).await;
    }

    pub async fn put_snapshot_bytes(&self, bytes: &[u8]) {
        let store = self
            .js
            .get_object_store(self.namespace.snapshot_bucket())
            .await
            .unwrap();
        store.put(SNAPSHOT_OBJECT, &mut &bytes[..]).await.unwrap();
    }

    /// A correctly signed heartbeat for the current version, with a fresh time.
    pub fn heartbeat_bytes(&self) -> Vec<u8> {
        heartbeat_from(&self.signer, &self.pulse)
    }

    /// The next heartbeat number, for a heartbeat a test makes itself.
    pub fn next_beat(&self) -> u64 {
        let mut pulse = self.pulse.lock().unwrap();
        pulse.beat += 1;
        pulse.beat
    }

    /// Publishes raw bytes on a subject through core NATS, and flushes.
    pub async fn send_raw(&self, subject: String, bytes: Vec<u8>) {
        self.client.publish(subject, bytes.into()).await.unwrap();
        self.client.flush().await.unwrap();
    }

    /// Publishes on the live delta subject only (the stream does not capture it).
    pub async fn send_unstored_delta(&self, bytes: Vec<u8>) {
        self.client
            .publish(self.namespace.delta_subject(), bytes.into())
            .await
            .unwrap();
        self.client.flush().await.unwrap();
    }

    fn spawn_heartbeats(&mut self) {
        let signer = self.signer.clone();
        let pulse = self.pulse.clone();
        let client = self.client.clone();
        let paused = self.heartbeats_paused.clone();
        let subject = self.namespace.heartbeat_subject();
        self.tasks.push(tokio::spawn(async move {
            loop {
                if !paused.load(SeqCst) {
                    let bytes = heartbeat_from(&signer, &pulse);
                    let _ = client.publish(subject.clone(), bytes.into()).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    async fn spawn_responder(&mut self) {
        let mut requests = self
            .client
            .subscribe(self.namespace.confirm_subject())
            .await
            .unwrap();
        self.client.flush().await.unwrap();
        let client = self.client.clone();
        let signer = self.signer.clone();
        let forger = Signer::new(signing_key_from_seed([13; 32]), self.namespace.clone());
        let namespace = self.namespace.clone();
        let revoked = self.revoked.clone();
        let mode = self.responder.clone();
        let count = self.confirm_requests.clone();
        let pulse = self.pulse.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(msg) = requests.next().await {
                count.fetch_add(1, SeqCst);
                let Some(reply) = msg.reply.clone() else {
                    continue;
                };
                let Ok(request) = decode_request(&msg.payload, &namespace, 64 << 10) else {
                    continue;
                };
                let mode = *mode.lock().unwrap();
                let is_revoked = revoked.lock().unwrap().contains(&request.jti);
                let version = pulse.lock().unwrap().version;
                let client = client.clone();
                let signer = signer.clone();
                let forger = forger.clone();
                tokio::spawn(async move {
                    let mut answer = ConfirmResponse {
                        epoch: 0,
                        jti: request.jti.clone(),
                        nonce: request.nonce,
                        revoked: is_revoked,
                        version,
                        exp: request.exp,
                        revoked_at: None,
                        reason: None,
                    };
                    let bytes = match mode {
                        Responder::Silent => return,
                        Responder::Honest => signer.encode(&answer.into()),
                        Responder::Slow(d) => {
                            tokio::time::sleep(d).await;
                            signer.encode(&answer.into())
                        }
                        Responder::Forged => forger.encode(&answer.into()),
                        Responder::Behind => {
                            answer.revoked = false;
                            answer.version = answer.version.saturating_sub(1);
                            signer.encode(&answer.into())
                        }
                        Responder::WrongNonce => {
                            answer.nonce = answer.nonce.wrapping_add(1);
                            signer.encode(&answer.into())
                        }
                    };
                    let _ = client.publish(reply, bytes.into()).await;
                });
            }
        }));
    }

    /// Sets how the authority answers.
    pub fn set_responder(&self, mode: Responder) {
        *self.responder.lock().unwrap() = mode;
    }
}

fn heartbeat_from(signer: &Signer, pulse: &Mutex<Pulse>) -> Vec<u8> {
    let mut pulse = pulse.lock().unwrap();
    let time_ms = now_ms().max(pulse.last_time_ms + 1);
    pulse.last_time_ms = time_ms;
    pulse.beat += 1;
    signer.encode(&Message::Heartbeat(Heartbeat {
        epoch: 0,
        beat: pulse.beat,
        version: pulse.version,
        time_ms,
        digest: pulse.digest,
    }))
}

/// `n` distinct jtis with a prefix.
pub fn jtis(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:06}")).collect()
}
