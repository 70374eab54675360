//! The whole system: a real nats-server, the publisher (in-process, through its
//! library) and subscribers, checked the way services use them.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use revocast_core::{Namespace, Verifier};
use revocast_publisher::Config;
use revocast_subscriber::{RevocastLayer, TokenClaims};
use revocast_testkit::{NatsServer, Proxy};
use revocast_testkit::{Stack, eventually_within, now_secs};
use revocast_tests::{Claims, JWT_SECRET};

const WAIT: Duration = Duration::from_secs(20);

async fn whoami(Extension(claims): Extension<TokenClaims>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "jti": claims.jti, "sub": claims.sub }))
}

/// Serves an axum app protected by the revocast layer, like the example service.
async fn protected_service(subscriber: revocast_subscriber::Subscriber) -> String {
    let layer = RevocastLayer::new(
        subscriber,
        DecodingKey::from_secret(JWT_SECRET),
        Validation::new(Algorithm::HS256),
    );
    let app = Router::new().route("/whoami", get(whoami)).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_rejected_by_a_protected_service() {
    let stack = Stack::start().await;
    let service = protected_service(stack.subscriber().await).await;
    let http = reqwest::Client::new();
    let token = Claims::new("e2e-token-1", "alice");
    let whoami = || {
        http.get(format!("{service}/whoami"))
            .bearer_auth(token.jwt())
            .send()
    };

    let response = whoami().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["sub"], "alice");

    stack.revoke(&token.jti, token.exp).await;
    eventually_within("the service rejects the revoked token", WAIT, || async {
        whoami().await.unwrap().status() == 401
    })
    .await;
    let response = whoami().await.unwrap();
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "revoked", "{body}");

    // Another token of the same user is untouched.
    let other = Claims::new("e2e-token-2", "alice");
    let response = http
        .get(format!("{service}/whoami"))
        .bearer_auth(other.jwt())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_after_10000_revocations_converges_on_the_digest() {
    let stack = Stack::start().await;
    let exp = now_secs() + 1800;
    let items: Vec<(String, u64)> = (0..10_000)
        .map(|i| (format!("bulk-{i}"), exp + i % 600))
        .collect();
    let mut version = 0;
    for chunk in items.chunks(1_000) {
        version = stack.revoke_many(chunk).await;
    }

    let replica = stack.subscriber().await;
    assert!(
        replica.version() >= version,
        "ready means caught up to the acknowledged version"
    );

    // The digest in the publisher's signed heartbeat matches the replica's.
    let client = async_nats::connect(stack.nats.url()).await.unwrap();
    let namespace: Namespace = stack.publisher.namespace().clone();
    let mut heartbeats = client
        .subscribe(namespace.heartbeat_subject())
        .await
        .unwrap();
    let verifier = Verifier::new(stack.publisher.public_key(), namespace);
    let matched = tokio::time::timeout(WAIT, async {
        use futures::StreamExt as _;
        while let Some(message) = heartbeats.next().await {
            let heartbeat = verifier.decode_heartbeat(&message.payload).unwrap();
            if heartbeat.version == replica.version() {
                return heartbeat.digest == replica.digest();
            }
        }
        false
    })
    .await
    .expect("a heartbeat at the replica's version");
    assert!(matched, "digests differ at the same version");

    for (jti, exp) in items.iter().step_by(97) {
        let verdict = replica
            .check(&TokenClaims::new(jti.clone(), *exp))
            .await
            .unwrap();
        assert!(verdict.is_revoked(), "{jti} accepted");
    }
    assert_eq!(replica.stats().live_entries, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_during_1000_revocations_catches_up_from_the_stream() {
    let stack = Stack::start().await;
    let proxy = Proxy::start(stack.nats.port());
    let replica = stack.subscriber_at(&proxy.url()).await;
    let snapshots_at_start = replica.stats().snapshots_loaded;

    proxy.cut();
    let exp = now_secs() + 1800;
    let items: Vec<(String, u64)> = (0..1_000).map(|i| (format!("cut-{i}"), exp)).collect();
    // Single revocations, many in flight: a stream of deltas, not one.
    let mut version = 0;
    for chunk in items.chunks(50) {
        let calls = chunk.iter().map(|(jti, exp)| stack.revoke(jti, *exp));
        version = futures::future::join_all(calls)
            .await
            .into_iter()
            .max()
            .unwrap_or(version);
    }
    assert!(version >= 20, "expected many deltas, got version {version}");
    proxy.restore();

    eventually_within("the replica catches up", WAIT, || async {
        replica.version() >= version
    })
    .await;
    for (jti, exp) in &items {
        let verdict = replica
            .check(&TokenClaims::new(jti.clone(), *exp))
            .await
            .unwrap();
        assert!(verdict.is_revoked(), "{jti} missed");
    }
    let stats = replica.stats();
    assert_eq!(
        stats.resyncs, 0,
        "caught up without a full resync: {stats:?}"
    );
    assert_eq!(
        stats.snapshots_loaded, snapshots_at_start,
        "caught up from the stream, not from a snapshot"
    );
}

/// A replica applies most deltas live, where the log's sequence numbers are not
/// seen. A catch-up after a short cut must read the log from where the replica's
/// version is, not again from where it last read the log (its bootstrap): each
/// message read again costs a read from JetStream and a signature check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_reads_only_what_the_replica_missed_not_what_it_applied_live() {
    let stack = Stack::start().await;
    let proxy = Proxy::start(stack.nats.port());
    let replica = stack.subscriber_at(&proxy.url()).await;

    let exp = now_secs() + 1800;
    let mut version = 0;
    for i in 0..200 {
        version = stack.revoke(&format!("live-{i}"), exp).await;
    }
    eventually_within("the replica applies the deltas live", WAIT, || async {
        replica.version() >= version
    })
    .await;
    let live = replica.stats();

    proxy.cut();
    let missed = stack.revoke("missed-while-cut", exp).await;
    proxy.restore();
    eventually_within("the replica catches up", WAIT, || async {
        replica.version() >= missed
    })
    .await;
    assert!(
        replica
            .check(&TokenClaims::new("missed-while-cut", exp))
            .await
            .unwrap()
            .is_revoked()
    );

    let stats = replica.stats();
    let read_again =
        |s: &revocast_subscriber::Stats| s.rejected_messages.get("replayed").copied().unwrap_or(0);
    assert_eq!(stats.resyncs, 0, "{stats:?}");
    assert!(
        stats.deltas_from_stream > live.deltas_from_stream,
        "the missed delta came from the stream: {stats:?}"
    );
    // A few messages before the missed one may be read to find where to start.
    let again = read_again(&stats) - read_again(&live);
    assert!(
        again <= 16,
        "the catch-up read {again} deltas the replica had applied live (of {version})"
    );

    // A longer cut: the heartbeats did not say how far behind the replica is, so the
    // catch-up may start too late and go back further, never to the bootstrap.
    proxy.cut();
    let mut last = missed;
    for i in 0..50 {
        last = stack.revoke(&format!("cut-{i}"), exp).await;
    }
    proxy.restore();
    eventually_within("the replica catches up again", WAIT, || async {
        replica.version() >= last
    })
    .await;
    let after = replica.stats();
    assert_eq!(after.resyncs, 0, "{after:?}");
    let again = read_again(&after) - read_again(&stats);
    assert!(
        again <= 64,
        "the second catch-up read {again} deltas the replica had applied (of {missed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_and_global_cutoffs_reject_exactly_the_tokens_they_should() {
    let stack = Stack::start().await;
    let replica = stack.subscriber().await;
    let t = now_secs();
    let version = stack.cutoff(Some("alice"), t).await;
    eventually_within("cutoff applied", WAIT, || async {
        replica.version() >= version
    })
    .await;

    let claims = |jti: &str, sub: &str, iat: u64| {
        TokenClaims::new(jti, iat + 3600)
            .with_sub(sub)
            .with_iat(iat)
    };
    let revoked = |c: TokenClaims| {
        let replica = replica.clone();
        async move { replica.check(&c).await.unwrap().is_revoked() }
    };
    assert!(revoked(claims("a-old", "alice", t - 1)).await);
    assert!(!revoked(claims("a-new", "alice", t)).await);
    assert!(!revoked(claims("b-old", "bob", t - 1)).await);

    let version = stack.cutoff(None, t - 10).await;
    eventually_within("global cutoff applied", WAIT, || async {
        replica.version() >= version
    })
    .await;
    assert!(revoked(claims("b-older", "bob", t - 11)).await);
    assert!(!revoked(claims("b-old", "bob", t - 10)).await);
    assert!(revoked(claims("a-old", "alice", t - 1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_replicas_all_reject_a_revoked_token() {
    let stack = Stack::start().await;
    let mut replicas = Vec::new();
    for _ in 0..10 {
        replicas.push(stack.subscriber().await);
    }
    let exp = now_secs() + 600;
    let version = stack.revoke("fan-out", exp).await;
    for replica in &replicas {
        eventually_within("every replica applies the delta", WAIT, || async {
            replica.version() >= version
        })
        .await;
        let verdict = replica
            .check(&TokenClaims::new("fan-out", exp))
            .await
            .unwrap();
        assert!(verdict.is_revoked());
        assert!(verdict.authority_asked(), "a filter hit is confirmed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_a_publisher_restart_without_a_gap() {
    let nats = NatsServer::start();
    let config = Config::for_tests(nats.url()).unwrap();
    let stack = Stack::start_with(nats, config.clone()).await;
    let replica = stack.subscriber().await;
    let exp = now_secs() + 600;
    let before = stack.revoke("before-restart", exp).await;

    let stack = stack.restart_publisher(config).await;
    assert_eq!(
        stack.publisher.version(),
        before + 1,
        "the restarted publisher resumes at its version and takes the namespace over \
         with one delta"
    );

    let after = stack.revoke("after-restart", exp).await;
    assert_eq!(after, before + 2, "no gap, no duplicate version");
    eventually_within("the replica follows", WAIT, || async {
        replica.version() >= after
    })
    .await;
    for jti in ["before-restart", "after-restart"] {
        let verdict = replica.check(&TokenClaims::new(jti, exp)).await.unwrap();
        assert!(verdict.is_revoked(), "{jti}");
    }
    assert_eq!(replica.stats().resyncs, 0);
}
