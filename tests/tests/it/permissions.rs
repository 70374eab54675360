//! The example NATS permissions of `deploy/nats-auth.conf` (included by
//! `deploy/nats-server.conf`): the publisher, connected as user `publisher`, and a
//! replica, connected as user `service`, work end to end; the service user cannot
//! publish on the publisher's subjects (the log, live deltas, heartbeats): the
//! server refuses, nothing reaches the stream or the replicas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt as _;
use revocast_publisher::Config;
use revocast_subscriber::{Source, TokenClaims, Verdict};
use revocast_testkit::NatsServer;
use revocast_testkit::{Stack, eventually_within, now_secs};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);
const PUBLISHER_PASSWORD: &str = "publisher-secret";
const SERVICE_PASSWORD: &str = "service-secret";

/// The example's users, with the passwords it reads from variables defined here.
fn auth_config() -> String {
    format!(
        "REVOCAST_PUBLISHER_PASSWORD: \"{PUBLISHER_PASSWORD}\"\n\
         REVOCAST_SERVICE_PASSWORD: \"{SERVICE_PASSWORD}\"\n{}",
        include_str!("../../../deploy/nats-auth.conf")
    )
}

/// A client as the service user that reports the server's errors (permission
/// violations arrive asynchronously, as `-ERR`).
async fn service_client(url: &str) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::new()
        .user_and_password("service".into(), SERVICE_PASSWORD.into())
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap();
    (client, rx)
}

async fn last_sequence(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    let mut stream = js.get_stream(stream).await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_publisher_user_may_publish_revocast_subjects() {
    revocast_testkit::init_logs();
    let nats = NatsServer::builder().config(auth_config()).start();
    let url = nats.url();
    let mut config = Config::for_tests(nats.url()).unwrap();
    config.nats.user = Some("publisher".into());
    config.nats.password = Some(PUBLISHER_PASSWORD.into());
    let stack = Stack::start_with(nats, config).await;
    let ns = stack.publisher.namespace().clone();

    // Without credentials the server lets nobody in.
    assert!(async_nats::connect(&url).await.is_err());

    // A replica as the service user bootstraps (stream, snapshot bucket).
    let stolen = TokenClaims::new("perm-stolen", now_secs() + 3600);
    let first = stack.revoke(&stolen.jti, stolen.exp).await;
    let replica = stack
        .subscriber_options()
        .user_and_password("service".into(), SERVICE_PASSWORD.into())
        .connect(&url)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, replica.ready())
        .await
        .expect("the replica is ready within 20 s as the service user");
    assert_eq!(replica.version(), first);

    // Revocation end to end: a live delta, then a check confirmed by the authority
    // over NATS (a request the service user may send, answered by the publisher).
    let live = TokenClaims::new("perm-live", now_secs() + 3600);
    let version = stack.revoke(&live.jti, live.exp).await;
    eventually_within("the replica applies the live delta", WAIT, || async {
        replica.version() >= version
    })
    .await;
    for claims in [&stolen, &live] {
        let verdict = tokio::time::timeout(WAIT, replica.check(claims))
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(
                verdict,
                Verdict::Revoked {
                    source: Source::Authority,
                    ..
                }
            ),
            "{}: {verdict:?}",
            claims.jti
        );
    }
    let fine = TokenClaims::new("perm-fine", now_secs() + 3600);
    assert!(matches!(
        replica.check(&fine).await.unwrap(),
        Verdict::Accepted { .. }
    ));

    // The service user tries to publish on every publisher subject.
    let (client, mut errors) = service_client(&url).await;
    let js = async_nats::jetstream::new(client.clone());
    let mut watch = futures::stream::select(
        client.subscribe(ns.delta_subject()).await.unwrap(),
        client.subscribe(ns.heartbeat_subject()).await.unwrap(),
    );
    let stream_before = last_sequence(&js, &ns.stream_name()).await;
    let (version_before, digest_before) = (replica.version(), replica.digest());
    let rejected_before = replica.stats().rejected_messages;
    // Replays of real messages (a replica ignores those) and junk (a replica drops
    // and counts it): neither may get through.
    let subjects = [ns.log_subject(), ns.delta_subject(), ns.heartbeat_subject()];
    for subject in &subjects {
        client
            .publish(subject.clone(), b"forged by a service".as_slice().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let mut refused = Vec::new();
    while refused.len() < subjects.len() {
        let error = tokio::time::timeout(WAIT, errors.recv())
            .await
            .expect("a permissions violation per forged publish")
            .unwrap();
        refused.push(error);
    }
    for subject in &subjects {
        assert!(
            refused
                .iter()
                .any(|e| e.to_lowercase().contains("permissions violation")
                    && e.contains(subject.as_str())),
            "no refusal for {subject}: {refused:?}"
        );
    }

    // Nothing moved: the stream, the replica's version and digest.
    assert_eq!(last_sequence(&js, &ns.stream_name()).await, stream_before);
    assert_eq!(replica.version(), version_before);
    assert_eq!(replica.digest(), digest_before);

    // The next real revocation is the next version: the stream was not written by
    // anyone else. Everything sent before it, forged or not, reached the watcher
    // and the replica first, and none of it was forged.
    let next = TokenClaims::new("perm-next", now_secs() + 3600);
    let version = stack.revoke(&next.jti, next.exp).await;
    assert_eq!(version, version_before + 1);
    assert_eq!(last_sequence(&js, &ns.stream_name()).await, version);
    let delta = ns.delta_subject();
    loop {
        let message = tokio::time::timeout(WAIT, watch.next())
            .await
            .expect("the live delta reaches the service user")
            .unwrap();
        assert!(
            !message.payload.starts_with(b"forged"),
            "a forged message on {} got through",
            message.subject
        );
        if message.subject.as_str() == delta {
            break;
        }
    }
    eventually_within("the replica applies the real delta", WAIT, || async {
        replica.version() == version
    })
    .await;
    assert_eq!(replica.stats().rejected_messages, rejected_before);
    assert!(replica.check(&next).await.unwrap().is_revoked());
}

#[test]
fn the_example_server_configuration_is_valid() {
    // The file operators start from: listen, JetStream, then the users above.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
    let output = std::process::Command::new(revocast_testkit::nats_server_bin())
        .args(["-t", "-c", "nats-server.conf"])
        .current_dir(dir)
        .env("REVOCAST_PUBLISHER_PASSWORD", PUBLISHER_PASSWORD)
        .env("REVOCAST_SERVICE_PASSWORD", SERVICE_PASSWORD)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("is valid"), "{text}");
}
