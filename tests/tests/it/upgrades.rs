//! A fleet mid-upgrade: messages in a newer wire format than this build reads, signed
//! with the pinned key as a newer publisher would sign them. Running replicas drop
//! them (counted by reason, logged), go stale and follow their policy; a replica
//! starting on a newer snapshot never becomes ready; a publisher refuses a newer
//! snapshot with a message that says what to do. Never a crash, never a silent
//! accept.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ed25519_dalek::Signer as _;
use prometheus_client::registry::Registry;
use revocast_core::wire::{FORMAT_VERSION, SIGNATURE_LEN};
use revocast_core::{
    Change, Delta, Digest, Filter, Heartbeat, Message, Namespace, Signer, SigningKey, Snapshot,
    subjects,
};
use revocast_publisher::{Config, KeySource, Publisher};
use revocast_subscriber::{Policy, Source, Subscriber, TokenClaims, Verdict};
use revocast_testkit::{DEADLINE, NatsServer, Stack, eventually_within, now_ms, now_secs};

const WAIT: Duration = Duration::from_secs(20);

/// `message` signed by `key` as a publisher one format version ahead would send it:
/// the same envelope with the next version byte, signed over.
fn newer_format(key: &SigningKey, namespace: &Namespace, message: &Message) -> Vec<u8> {
    in_format(FORMAT_VERSION + 1, key, namespace, message)
}

/// `message` in the envelope of format `version`, signed by `key`.
fn in_format(version: u8, key: &SigningKey, namespace: &Namespace, message: &Message) -> Vec<u8> {
    let signed = Signer::new(key.clone(), namespace.clone()).encode(message);
    let mut bytes = signed[..signed.len() - SIGNATURE_LEN].to_vec();
    assert_eq!(bytes[4], FORMAT_VERSION, "byte 4 is the format version");
    bytes[4] = version;
    let signature = key.sign(&bytes);
    bytes.extend_from_slice(&signature.to_bytes());
    bytes
}

fn key() -> SigningKey {
    revocast_core::signing_key_from_seed([42; 32])
}

fn config(nats: &NatsServer) -> Config {
    let mut config = Config::for_tests(nats.url()).unwrap();
    config.signing_key = KeySource::Key(key());
    config
}

fn unsupported(subscriber: &Subscriber) -> u64 {
    subscriber
        .stats()
        .rejected_messages
        .get("unsupported_version")
        .copied()
        .unwrap_or(0)
}

fn scrape(subscriber: &Subscriber) -> String {
    let mut registry = Registry::default();
    revocast_subscriber::metrics::register(&mut registry, subscriber);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_replica_meets_a_newer_format_and_stays_stale_loudly() {
    let nats = NatsServer::start();
    let cfg = config(&nats);
    let stack = Stack::start_with(nats, cfg).await;
    let stack_ns = stack.publisher.namespace().clone();
    let exp = now_secs() + 3600;
    let version = stack.revoke("before-upgrade", exp).await;
    let options = stack
        .subscriber_options()
        .max_staleness(Duration::from_secs(2));
    let closed = options
        .clone()
        .policy(Policy::FailClosed)
        .connect(&stack.nats.url())
        .await
        .unwrap();
    let open = options
        .policy(Policy::FailOpen)
        .connect(&stack.nats.url())
        .await
        .unwrap();
    for replica in [&closed, &open] {
        revocast_testkit::within("the replica is ready", replica.ready()).await;
        assert_eq!(replica.stats().version, version);
    }

    // The publisher is replaced by one that writes the next format: it sends a delta
    // revoking a new token and heartbeats, all signed with the pinned key.
    let Stack {
        nats, publisher, ..
    } = stack;
    publisher.shutdown().await.unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let delta = newer_format(
        &key(),
        &stack_ns,
        &Message::Delta(Delta {
            epoch: 0,
            version: version + 1,
            committed_at_ms: now_ms(),
            changes: vec![Change::Add {
                jti: "after-upgrade".into(),
                exp,
                sub: None,
                reason: None,
            }],
        }),
    );
    let heartbeat_ns = stack_ns.clone();
    let heartbeat = move |at: u64| {
        newer_format(
            &key(),
            &heartbeat_ns,
            &Message::Heartbeat(Heartbeat {
                epoch: 0,
                beat: 1,
                version: version + 1,
                time_ms: at,
                digest: Digest([0; 32]),
            }),
        )
    };
    let sender = {
        let client = client.clone();
        let ns = stack_ns.clone();
        tokio::spawn(async move {
            loop {
                let _ = client
                    .publish(ns.delta_subject(), delta.clone().into())
                    .await;
                let _ = client
                    .publish(ns.heartbeat_subject(), heartbeat(now_ms()).into())
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Both replicas drop every message (counted as unsupported_version), go stale
    // once max_staleness passes without a heartbeat they can read, and keep the
    // version they had: the newer delta is never applied.
    for replica in [&closed, &open] {
        eventually_within("stale, with newer messages counted", WAIT, || async {
            replica.stats().stale && unsupported(replica) >= 4
        })
        .await;
        let stats = replica.stats();
        assert_eq!(stats.version, version, "{stats:?}");
        assert!(stats.ready);
        let metrics = scrape(replica);
        assert!(
            metrics.contains(&format!(
                "revocast_replica_rejected_messages_total{{namespace=\"{stack_ns}\",reason=\"unsupported_version\"}}"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "revocast_replica_stale{{namespace=\"{stack_ns}\"}} 1"
            )),
            "{metrics}"
        );
    }
    // Their policies answer: fail-closed refuses to decide, fail-open accepts and
    // says so. The token revoked in the newer format is not silently known either way.
    let claims = TokenClaims::new("after-upgrade", exp);
    let refused = closed.check(&claims).await;
    assert!(
        matches!(refused, Err(revocast_subscriber::Error::Unavailable(_))),
        "{refused:?}"
    );
    let accepted = open.check(&claims).await.unwrap();
    assert!(
        matches!(
            accepted,
            Verdict::Accepted {
                source: Source::FailOpen
            }
        ),
        "{accepted:?}"
    );
    sender.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_in_a_newer_format_is_refused_by_replicas_and_the_publisher() {
    let nats = NatsServer::start();
    let publisher = revocast_testkit::start_publisher(config(&nats)).await;
    let namespace = publisher.namespace().clone();
    let public_key = publisher.public_key();
    publisher.shutdown().await.unwrap();

    // A newer publisher wrote the snapshot.
    let params = Config::for_tests(nats.url()).unwrap().filter;
    let snapshot = |version: u8| {
        in_format(
            version,
            &key(),
            &namespace,
            &Message::Snapshot(Snapshot {
                log_seq: 0,
                taken_at_ms: now_ms(),
                state: Filter::new(params.clone()).unwrap().to_state(),
            }),
        )
    };
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let bucket = js
        .get_object_store(namespace.snapshot_bucket())
        .await
        .unwrap();
    bucket
        .put(
            subjects::SNAPSHOT_OBJECT,
            &mut snapshot(FORMAT_VERSION + 1).as_slice(),
        )
        .await
        .unwrap();

    // A replica of this build starting now never becomes ready, counts why, and its
    // fail-closed policy answers.
    let replica = revocast_subscriber::SubscriberOptions::new(public_key)
        .namespace(namespace.clone())
        .policy(Policy::FailClosed)
        .connect(&nats.url())
        .await
        .unwrap();
    eventually_within("the newer snapshot is counted", WAIT, || async {
        unsupported(&replica) >= 2
    })
    .await;
    assert!(!replica.stats().ready);
    let answer = replica
        .check(&TokenClaims::new("any", now_secs() + 60))
        .await;
    assert!(
        matches!(answer, Err(revocast_subscriber::Error::Unavailable(_))),
        "{answer:?}"
    );

    // This build's publisher refuses it, saying what happened and what to do.
    let publisher = Publisher::start(config(&nats)).await.unwrap();
    assert!(publisher.wait_ready(DEADLINE).await.is_err());
    let err = publisher.shutdown().await.unwrap_err().to_string();
    for expected in [
        &format!("format version {}", FORMAT_VERSION + 1),
        "a newer release",
        "run that release",
    ] {
        assert!(err.contains(expected), "{expected:?} in: {err}");
    }
    assert!(!err.contains("another key"), "{err}");

    // One written by an older release: export with it, import into this one.
    bucket
        .put(
            subjects::SNAPSHOT_OBJECT,
            &mut snapshot(FORMAT_VERSION - 1).as_slice(),
        )
        .await
        .unwrap();
    let publisher = Publisher::start(config(&nats)).await.unwrap();
    assert!(publisher.wait_ready(DEADLINE).await.is_err());
    let err = publisher.shutdown().await.unwrap_err().to_string();
    for expected in [
        &format!("format version {}", FORMAT_VERSION - 1),
        "an older release",
        "revocast-publisher export",
        "revocast-publisher import",
    ] {
        assert!(err.contains(expected), "{expected:?} in: {err}");
    }
}
