//! Paths around the one promise (a revocation acknowledged is rejected by every
//! replica in sync), each held at the exact step where it used to break.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use revocast_core::http::CutoffRequest;
use revocast_publisher::{Config, Revocation};
use revocast_subscriber::{NatsAuthority, Policy, TokenClaims};
use revocast_testkit::{NatsServer, Proxy, Stack, eventually, init_logs, now_secs, within};

/// A replica that applies a delta evicts its cached answer and asks the authority on
/// the next hit: the authority must already know the revocation then. The writer is
/// held right after the live broadcast, the one moment a replica can be ahead of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authority_knows_a_revocation_before_any_replica_does() {
    init_logs();
    let nats = NatsServer::start();
    let config = Config::for_tests(nats.url()).unwrap();
    let pause = config.pause_after_broadcast.clone();
    let stack = Stack::start_with(nats, config).await;
    let replica = stack.subscriber().await;
    let exp = now_secs() + 3600;
    let claims = TokenClaims::new("seen-early", exp);
    assert!(replica.check(&claims).await.unwrap().is_accepted());
    let before = replica.version();

    pause.arm();
    let api = stack.api.clone();
    let revoke = tokio::spawn(async move { api.revoke(&Revocation::new("seen-early", exp)).await });
    within("the writer to hold after its broadcast", pause.reached()).await;
    eventually("the replica to apply the live delta", || async {
        replica.version() > before
    })
    .await;
    let verdict = replica.check(&claims).await.unwrap();
    assert!(
        verdict.is_revoked(),
        "a replica at version {} was told {verdict:?} by the authority",
        replica.version()
    );

    pause.release();
    within("the revocation to be acknowledged", revoke)
        .await
        .unwrap()
        .unwrap();
    // Nothing wrong was cached either.
    assert!(replica.check(&claims).await.unwrap().is_revoked());
}

/// A heartbeat never announces a version before that version's delta went out live:
/// every replica receiving it first would take it for a gap and read the log at once
/// (with a fleet, a burst of JetStream requests at every such heartbeat). The writer
/// is held between the commit entering its state and the live broadcast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_heartbeat_announces_a_delta_before_it_is_sent_live() {
    use futures::StreamExt as _;
    let nats = NatsServer::start();
    let config = Config::for_tests(nats.url()).unwrap();
    let interval = config.heartbeat_interval;
    let pause = config.pause_before_broadcast.clone();
    let stack = Stack::start_with(nats, config).await;
    let namespace = stack.publisher.namespace().clone();
    let verifier = revocast_core::Verifier::new(stack.publisher.public_key(), namespace.clone());
    let watcher = async_nats::connect(stack.nats.url()).await.unwrap();
    let mut heartbeats = watcher
        .subscribe(namespace.heartbeat_subject())
        .await
        .unwrap();
    let mut deltas = watcher.subscribe(namespace.delta_subject()).await.unwrap();
    let before = stack.revoke("first", now_secs() + 3600).await;

    pause.arm();
    let api = stack.api.clone();
    let exp = now_secs() + 3600;
    let revoke = tokio::spawn(async move { api.revoke(&Revocation::new("held", exp)).await });
    within("the writer to hold before its broadcast", pause.reached()).await;
    // Several heartbeat periods with the delta stored but not yet sent live.
    let held = tokio::time::Instant::now() + interval * 4;
    while let Ok(Some(message)) = tokio::time::timeout_at(held, heartbeats.next()).await {
        let beat = verifier.decode_heartbeat(&message.payload).unwrap();
        assert!(
            beat.version <= before,
            "a heartbeat announced version {} while its delta was not sent live",
            beat.version
        );
    }
    pause.release();
    let committed = within("the revocation to be acknowledged", revoke)
        .await
        .unwrap()
        .unwrap();
    within("the live delta", async {
        while let Some(message) = deltas.next().await {
            if verifier.decode_delta(&message.payload).unwrap().version >= committed.version {
                return;
            }
        }
        panic!("the delta subscription ended");
    })
    .await;
    // And heartbeats go on, announcing it.
    within("a heartbeat announcing the delta", async {
        while let Some(message) = heartbeats.next().await {
            if verifier
                .decode_heartbeat(&message.payload)
                .is_ok_and(|beat| beat.version >= committed.version)
            {
                return;
            }
        }
        panic!("the heartbeat subscription ended");
    })
    .await;
}

/// A replica that cannot vouch for a token (cut off from its stream, so stale) asks
/// the authority about every token: the authority must apply the cutoffs the replica
/// has not received, not only the `jti` records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_replica_learns_a_cutoff_from_the_authority() {
    let stack = Stack::start().await;
    let proxy = Proxy::start(stack.nats.port());
    // The replica's own connection goes through the proxy; its authority does not.
    let direct = async_nats::connect(stack.nats.url()).await.unwrap();
    let replica = stack
        .subscriber_options()
        .policy(Policy::FailClosed)
        .max_staleness(Duration::from_millis(600))
        .authority(NatsAuthority::new(
            direct,
            stack.publisher.namespace().clone(),
            stack.publisher.public_key(),
        ))
        .connect(&proxy.url())
        .await
        .unwrap();
    within("the replica to be ready", replica.ready()).await;

    proxy.cut();
    let issued = now_secs() - 60;
    stack.cutoff(Some("mallory"), now_secs()).await;
    eventually("the replica to turn stale", || async { replica.is_stale() }).await;
    let token = TokenClaims::new("mallorys-token", now_secs() + 3600)
        .with_sub("mallory")
        .with_iat(issued);
    let verdict = replica.check(&token).await.unwrap();
    assert!(verdict.is_revoked(), "{verdict:?}");
    let other = TokenClaims::new("alices-token", now_secs() + 3600)
        .with_sub("alice")
        .with_iat(issued);
    assert!(replica.check(&other).await.unwrap().is_accepted());
}

/// A namespace deleted and created again under running replicas (an operator starting
/// afresh) starts over at version 0 in a new epoch: replicas ahead of it must notice
/// and follow, not count themselves in sync until the new namespace passes their old
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_a_namespace_deleted_and_created_again() {
    init_logs();
    let nats = NatsServer::start();
    let config = Config::for_tests(nats.url()).unwrap();
    let stack = Stack::start_with(nats, config.clone()).await;
    let replica = stack.subscriber().await;
    let exp = now_secs() + 3600;
    for i in 0..5 {
        stack.revoke(&format!("old-{i}"), exp).await;
    }
    eventually("the replica to reach version 5", || async {
        replica.version() >= 5
    })
    .await;

    let Stack {
        nats, publisher, ..
    } = stack;
    let ns = publisher.namespace().clone();
    publisher.shutdown().await.unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.delete_stream(ns.stream_name()).await.unwrap();
    js.delete_object_store(ns.snapshot_bucket()).await.unwrap();
    let stack = Stack::start_with(nats, config).await;
    assert_eq!(stack.revoke("after-reset", exp).await, 1, "a new namespace");

    // Within the staleness bound (3 s) plus the time to resync.
    eventually(
        "the replica to reject the revocation of the new namespace",
        || async {
            replica
                .check(&TokenClaims::new("after-reset", exp))
                .await
                .unwrap()
                .is_revoked()
        },
    )
    .await;
    eventually(
        "the replica to be in sync with the new namespace",
        || async { !replica.is_stale() && replica.version() == stack.publisher.version() },
    )
    .await;
    // What the old namespace held is gone with it.
    assert!(
        replica
            .check(&TokenClaims::new("old-0", exp))
            .await
            .unwrap()
            .is_accepted()
    );
}

/// Anyone allowed to publish on the log subject can store a message there: garbage, a
/// delta signed by another key, a copy of an old delta. None of them stops the writer,
/// a restarted publisher or a replica, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_foreign_and_replayed_log_messages_stop_nothing() {
    init_logs();
    let nats = NatsServer::start();
    let config = Config::for_tests(nats.url()).unwrap();
    let stack = Stack::start_with(nats, config.clone()).await;
    let replica = stack.subscriber().await;
    let exp = now_secs() + 3600;
    let ns = stack.publisher.namespace().clone();
    let js = async_nats::jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
    let inject = |payload: Vec<u8>| {
        let js = js.clone();
        let subject = ns.log_subject();
        async move {
            js.publish(subject, payload.into())
                .await
                .unwrap()
                .await
                .unwrap()
                .sequence
        }
    };

    stack.revoke("first", exp).await;
    let stream = js.get_stream(ns.stream_name()).await.unwrap();
    let first_delta = stream.get_raw_message(1).await.unwrap().payload.to_vec();
    let foreign =
        revocast_core::Signer::new(revocast_core::signing_key_from_seed([7; 32]), ns.clone());
    let forged = foreign.encode(&revocast_core::Message::Delta(revocast_core::Delta {
        epoch: 0,
        version: 2,
        committed_at_ms: 1,
        changes: Vec::new(),
    }));

    let mut revoked = vec!["first".to_owned()];
    for (i, poison) in [b"garbage".to_vec(), forged, first_delta]
        .into_iter()
        .enumerate()
    {
        inject(poison).await;
        let jti = format!("after-poison-{i}");
        within(
            "a revocation after a poisoned message",
            stack.api.revoke(&Revocation::new(&jti, exp)),
        )
        .await
        .unwrap();
        revoked.push(jti);
    }
    let version = stack.publisher.version();
    assert_eq!(version, 4, "four revocations, four versions");
    eventually(
        "the replica to follow past the poisoned messages",
        || async { replica.version() == version && !replica.is_stale() },
    )
    .await;
    for jti in &revoked {
        let verdict = replica.check(&TokenClaims::new(jti, exp)).await.unwrap();
        assert!(verdict.is_revoked(), "{jti}: {verdict:?}");
    }
    let skipped = stack.publisher.stats().log_messages_skipped;
    assert!(
        skipped >= 3,
        "the writer counted {skipped} skipped messages"
    );

    // A publisher restarted on the poisoned stream boots, and a replica started on it
    // loads it.
    let stack = stack.restart_publisher(config).await;
    // It read the whole log again for its records, and skipped the same three.
    let skipped = stack.publisher.stats().log_messages_skipped;
    assert!(skipped >= 3, "the restarted publisher skipped {skipped}");
    stack.revoke("after-restart", exp).await;
    revoked.push("after-restart".to_owned());
    let late = stack.subscriber().await;
    for replica in [&replica, &late] {
        eventually("the replica to reach the publisher", || async {
            replica.version() == stack.publisher.version()
        })
        .await;
        for jti in &revoked {
            let verdict = replica.check(&TokenClaims::new(jti, exp)).await.unwrap();
            assert!(verdict.is_revoked(), "{jti}: {verdict:?}");
        }
    }
}

/// A clock that runs `offset_ms` behind the machine's.
#[derive(Debug)]
struct Behind(u64);

impl revocast_publisher::Clock for Behind {
    fn now_ms(&self) -> u64 {
        revocast_publisher::SystemClock
            .now_ms()
            .saturating_sub(self.0)
    }
}

/// Heartbeats are ordered within a namespace's epoch, not by the publisher's clock: a
/// publisher restarted with its clock behind (a host with a wrong clock taking over)
/// keeps every replica fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_restarted_with_its_clock_behind_keeps_replicas_fresh() {
    init_logs();
    let nats = NatsServer::start();
    let config = Config::for_tests(nats.url()).unwrap();
    let stack = Stack::start_with(nats, config.clone()).await;
    let replica = stack.subscriber().await;
    let exp = now_secs() + 3600;
    stack.revoke("before", exp).await;
    eventually("the replica to hear the publisher", || async {
        replica.version() == 1 && replica.stats().heartbeats >= 3 && !replica.is_stale()
    })
    .await;

    let mut behind = config;
    behind.clock = std::sync::Arc::new(Behind(600_000));
    let stack = stack.restart_publisher(behind).await;
    let heard = replica.stats().heartbeats;
    eventually(
        "the replica to accept the new publisher's heartbeats",
        || async { replica.stats().heartbeats >= heard + 10 },
    )
    .await;
    assert!(!replica.is_stale(), "{:?}", replica.stats());
    stack.revoke("after", exp).await;
    eventually("the replica to follow", || async {
        replica.version() == stack.publisher.version() && !replica.is_stale()
    })
    .await;
    let verdict = replica
        .check(&TokenClaims::new("after", exp))
        .await
        .unwrap();
    assert!(verdict.is_revoked(), "{verdict:?}");
}

/// A clock that runs `offset_ms` ahead of the machine's.
#[derive(Debug)]
struct Ahead(u64);

impl revocast_publisher::Clock for Ahead {
    fn now_ms(&self) -> u64 {
        revocast_publisher::SystemClock
            .now_ms()
            .saturating_add(self.0)
    }
}

/// A publisher started with its clock two days ahead (a host with a wrong clock
/// taking the namespace over) must not expire what is live by every other clock: not
/// the revocations and cutoffs it found, not the ones it is asked for. Its clock is
/// bounded by what it can observe apart from it (the time NATS stamps on the log);
/// each expiry it refuses is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_started_with_its_clock_far_ahead_expires_nothing_live() {
    init_logs();
    let nats = NatsServer::start();
    let mut config = Config::for_tests(nats.url()).unwrap();
    config.expiry_interval = Duration::from_millis(100);
    let stack = Stack::start_with(nats, config.clone()).await;
    let replica = stack.subscriber().await;
    let now = now_secs();
    let exp = now + 1800;
    let issued = now - 60;
    stack.revoke("before", exp).await;
    stack.cutoff(Some("mallory"), now).await;
    let tokens = [
        TokenClaims::new("before", exp),
        TokenClaims::new("mallorys-token", exp)
            .with_sub("mallory")
            .with_iat(issued),
        TokenClaims::new("after", exp),
        TokenClaims::new("trudys-token", exp)
            .with_sid("trudys-session")
            .with_iat(issued),
    ];
    let rejects = |claims: &TokenClaims| {
        let (replica, claims) = (&replica, claims.clone());
        async move { replica.check(&claims).await.unwrap().is_revoked() }
    };
    eventually(
        "the replica to reject what the first publisher revoked",
        || async { rejects(&tokens[0]).await && rejects(&tokens[1]).await },
    )
    .await;

    let mut ahead = config;
    ahead.clock = std::sync::Arc::new(Ahead(2 * 86_400_000));
    let stack = stack.restart_publisher(ahead).await;
    let revoked = stack
        .api
        .revoke(&Revocation::new("after", exp))
        .await
        .unwrap();
    assert_eq!(
        (revoked.revoked, revoked.expired),
        (1, 0),
        "a token live by the real clock is not expired: {revoked:?}"
    );
    let cut = stack
        .api
        .cutoff_of(&CutoffRequest {
            sub: None,
            sid: Some("trudys-session".to_owned()),
            not_before: now,
        })
        .await
        .unwrap();
    assert!(!cut.noop, "a cutoff of live tokens is committed: {cut:?}");

    // Expiries are due every 100 ms: one at the publisher's clock is refused and
    // counted (or, the failure, a live revocation is dropped).
    eventually("an expiry at the publisher's clock", || async {
        stack.publisher.stats().expiries_clamped >= 1 || !rejects(&tokens[0]).await
    })
    .await;
    eventually("the replica to follow the publisher", || async {
        replica.version() == stack.publisher.version() && !replica.is_stale()
    })
    .await;
    for claims in &tokens {
        assert!(rejects(claims).await, "{claims:?} accepted");
    }
    for jti in ["before", "after"] {
        let known = stack.api.lookup(jti).await.unwrap();
        assert!(known.revoked, "the authority forgot {jti}: {known:?}");
    }
}
