//! The replica against a real nats-server: bootstrap, live deltas, convergence,
//! catching up after a cut, resync, and messages that must change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::ready;
use std::time::Duration;

use crate::common::{FakePublisher, eventually, jtis, now_secs, within};
use revocast_core::{Heartbeat, Message, Namespace, Signer, signing_key_from_seed};
use revocast_subscriber::{
    ConfirmReason, LocalCheck, Policy, RevokedBy, Source, Subscriber, TokenClaims, Verdict,
};
use revocast_testkit::{NatsServer, Proxy};

const LONG: Duration = Duration::from_secs(60);

fn in_sync(sub: &Subscriber, publisher: &FakePublisher) -> bool {
    sub.version() == publisher.version() && sub.digest() == publisher.filter.digest()
}

fn hits_all(sub: &Subscriber, jtis: &[String], exp: u64) -> bool {
    jtis.iter().all(|j| {
        sub.check_local(&TokenClaims::new(j.clone(), exp))
            == LocalCheck::NeedsConfirm(ConfirmReason::FilterHit)
    })
}

/// A single-replica stream that lost its tail and was written again: the publisher is
/// back at an older version and commits new deltas with versions the replica holds.
/// Its heartbeats are held back, so that only the new delta itself can tell the
/// replica (before, it was dropped as a duplicate and the replica kept accepting it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_lost_its_tail_and_was_written_again_is_followed() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "tail").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailOpen, Duration::from_secs(60))
        .await;
    let exp = now_secs() + 3600;
    publisher.revoke(&jtis("kept", 3), exp).await;
    let kept = publisher.filter.clone();
    publisher.revoke(&jtis("lost", 2), exp).await;
    eventually("in sync", || ready(in_sync(&sub, &publisher))).await;

    publisher
        .heartbeats_paused
        .store(true, std::sync::atomic::Ordering::SeqCst);
    publisher.lose_tail(kept).await;
    let fresh = jtis("after-loss", 2);
    publisher.revoke(&fresh, exp).await;
    eventually("the replica follows the log written again", || {
        ready(sub.version() == publisher.version() && sub.digest() == publisher.filter.digest())
    })
    .await;
    assert!(hits_all(&sub, &fresh, exp));
    assert!(sub.stats().resyncs >= 1, "{:?}", sub.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstraps_from_snapshot_then_stream() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "boot").await;
    let exp = now_secs() + 3600;
    let before = jtis("before", 50);
    publisher.revoke(&before, exp).await;
    publisher.revoke(&jtis("before-b", 50), exp).await;
    publisher.snapshot().await;
    let after = jtis("after", 30);
    for chunk in after.chunks(10) {
        publisher.revoke(chunk, exp).await;
    }

    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    assert!(sub.is_ready());
    assert!(
        in_sync(&sub, &publisher),
        "version {} vs {}",
        sub.version(),
        publisher.version()
    );
    let stats = sub.stats();
    assert_eq!(stats.snapshots_loaded, 1);
    assert_eq!(
        stats.deltas_from_stream, 3,
        "only the deltas after the snapshot"
    );
    assert!(hits_all(&sub, &before, exp) && hits_all(&sub, &after, exp));

    // A revoked token: the filter hits and the authority confirms.
    let verdict = sub
        .check(&TokenClaims::new(after[3].clone(), exp))
        .await
        .unwrap();
    assert_eq!(
        verdict,
        Verdict::Revoked {
            by: RevokedBy::Jti,
            source: Source::Authority
        }
    );
    // A token never revoked: a local answer.
    let verdict = sub
        .check(&TokenClaims::new("never-revoked", exp))
        .await
        .unwrap();
    assert_eq!(
        verdict,
        Verdict::Accepted {
            source: Source::Local
        }
    );
    assert_eq!(
        publisher
            .confirm_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_a_valid_snapshot_exists() {
    let server = NatsServer::start();
    let publisher = FakePublisher::start(&server.url(), "notready").await;
    // Replace snapshot 0 with one signed by another key.
    let forger = Signer::new(signing_key_from_seed([9; 32]), publisher.namespace.clone());
    let forged = forger.encode(&Message::Snapshot(revocast_core::Snapshot {
        log_seq: 0,
        taken_at_ms: 0,
        state: publisher.filter.to_state(),
    }));
    publisher.put_snapshot_bytes(&forged).await;
    let sub = publisher.options().connect(&server.url()).await.unwrap();
    eventually("forged snapshot rejected", || {
        ready({
            sub.stats()
                .rejected_messages
                .get("bad_signature")
                .copied()
                .unwrap_or(0)
                >= 1
        })
    })
    .await;
    assert!(!sub.is_ready());
    // Not ready + fail-closed: every check goes to the authority.
    assert_eq!(
        sub.check_local(&TokenClaims::new("x", now_secs() + 60)),
        LocalCheck::NeedsConfirm(ConfirmReason::Stale)
    );
    publisher.snapshot().await;
    within("ready after a valid snapshot", sub.ready()).await;
    assert!(in_sync(&sub, &publisher));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_deltas_apply_and_evict_cached_answers() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "live").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let exp = now_secs() + 3600;

    let first = jtis("live", 20);
    publisher.revoke(&first, exp).await;
    eventually("live delta applied", || ready(in_sync(&sub, &publisher))).await;
    assert!(hits_all(&sub, &first, exp));

    // "suspect" is in the filter but the authority does not (yet) hold it: a false
    // positive, answered and then cached.
    let delta = publisher.plan(|s, seed| s.revoke("suspect", exp, &mut *seed).unwrap());
    publisher.store(&delta).await;
    eventually("suspect in filter", || ready(in_sync(&sub, &publisher))).await;
    let claims = TokenClaims::new("suspect", exp);
    assert_eq!(
        sub.check(&claims).await.unwrap(),
        Verdict::Accepted {
            source: Source::Authority
        }
    );
    assert_eq!(
        sub.check(&claims).await.unwrap(),
        Verdict::Accepted {
            source: Source::Cache
        }
    );
    assert_eq!(sub.stats().confirms_not_revoked, 1);

    // Now it is revoked for real: the delta naming it evicts the cached answer.
    publisher.revoke(&["suspect".to_owned()], exp).await;
    eventually("second delta applied", || ready(in_sync(&sub, &publisher))).await;
    assert_eq!(
        sub.check(&claims).await.unwrap(),
        Verdict::Revoked {
            by: RevokedBy::Jti,
            source: Source::Authority
        }
    );
    let stats = sub.stats();
    assert_eq!(stats.confirms_revoked, 1);
    assert_eq!(stats.resyncs, 0);
    assert_eq!(stats.deltas_applied, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_started_after_10000_revocations_converges() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "tenk").await;
    let exp = now_secs() + 3600;
    let all = jtis("tenk", 10_000);
    for (i, chunk) in all.chunks(100).enumerate() {
        publisher.revoke(chunk, exp + i as u64 * 60).await;
        if i == 49 {
            publisher.snapshot().await;
        }
    }
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    assert!(in_sync(&sub, &publisher));
    assert_eq!(sub.stats().live_entries, 10_000);
    for (i, chunk) in all.chunks(100).enumerate() {
        assert!(hits_all(&sub, chunk, exp + i as u64 * 60));
    }
    // Heartbeats agree: the replica is proven in sync and not stale.
    let heartbeats = sub.stats().heartbeats;
    eventually("a heartbeat after ready", || {
        ready(sub.stats().heartbeats > heartbeats)
    })
    .await;
    let stats = sub.stats();
    assert!(!stats.stale);
    assert_eq!(stats.digest_mismatches, 0);
    assert_eq!(stats.resyncs, 0);
}

/// A ready replica whose NATS connection goes through `proxy`, reconnecting quickly.
async fn replica_behind(proxy: &Proxy, publisher: &FakePublisher) -> Subscriber {
    let client = async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .ignore_discovered_servers()
        .connect(proxy.url())
        .await
        .unwrap();
    let sub = publisher.options().max_staleness(LONG).with_client(client);
    within("ready", sub.ready()).await;
    sub
}

/// Cuts the proxy and waits until the replica knows it is disconnected.
async fn cut_off(proxy: &Proxy, sub: &Subscriber) {
    proxy.cut();
    eventually("replica disconnected", || {
        ready(sub.client().connection_state() != async_nats::connection::State::Connected)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_replica_catches_up_from_the_stream() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "cut").await;
    let proxy = Proxy::start(server.port());
    let sub = replica_behind(&proxy, &publisher).await;
    let exp = now_secs() + 3600;
    publisher.revoke(&jtis("pre", 10), exp).await;
    eventually("pre-cut delta", || ready(in_sync(&sub, &publisher))).await;

    cut_off(&proxy, &sub).await;
    let missed = jtis("missed", 1000);
    for jti in &missed {
        publisher.revoke(std::slice::from_ref(jti), exp).await;
    }
    assert!(sub.version() < publisher.version());
    proxy.restore();

    eventually("caught up after reconnect", || {
        ready(in_sync(&sub, &publisher))
    })
    .await;
    assert!(hits_all(&sub, &missed, exp), "no revocation missed");
    let stats = sub.stats();
    assert_eq!(stats.resyncs, 0, "caught up without a snapshot: {stats:?}");
    assert_eq!(stats.snapshots_loaded, 1);
    assert!(stats.gaps_repaired >= 1, "{stats:?}");
    assert!(stats.deltas_from_stream >= 1000, "{stats:?}");
    eventually("reconnect counted", || ready(sub.stats().reconnects >= 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_older_than_the_stream_is_repaired_from_the_snapshot() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "purged").await;
    let proxy = Proxy::start(server.port());
    let sub = replica_behind(&proxy, &publisher).await;
    cut_off(&proxy, &sub).await;
    let exp = now_secs() + 3600;
    let missed = jtis("aged", 100);
    for chunk in missed.chunks(10) {
        publisher.revoke(chunk, exp).await;
    }
    publisher.snapshot().await;
    publisher.revoke(&jtis("after-snap", 5), exp).await;
    // The stream ages out everything up to the snapshot.
    let stream = publisher
        .js
        .get_stream(publisher.namespace.stream_name())
        .await
        .unwrap();
    stream
        .purge()
        .sequence(publisher.version() - 1)
        .await
        .unwrap();
    proxy.restore();
    eventually("resynced", || ready(in_sync(&sub, &publisher))).await;
    assert!(hits_all(&sub, &missed, exp));
    assert!(sub.stats().resyncs >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_live_deltas_converge() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "reorder").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let exp = now_secs() + 3600;
    publisher.revoke(&jtis("base", 5), exp).await;
    eventually("base", || ready(in_sync(&sub, &publisher))).await;

    // Plan v+1 and v+2 on a scratch copy so both exist before either is stored.
    let v1 = publisher.plan(|s, seed| s.revoke("r1", exp, &mut *seed).unwrap());
    let mut scratch = publisher.filter.clone();
    scratch.apply(&v1).unwrap();
    let mut v2 = v1.clone();
    v2.version += 1;
    v2.changes = vec![revocast_core::Change::Add {
        jti: "r2".into(),
        exp,
        sub: None,
        reason: None,
    }];
    scratch.apply(&v2).unwrap();
    // v+2 arrives first (live only: the stream refuses it), then v+1, then v+2 again.
    publisher.send_unstored_delta(publisher.encode(&v2)).await;
    publisher.store(&v1).await;
    publisher.store(&v2).await;
    assert_eq!(publisher.filter.digest(), scratch.digest());
    eventually("converged", || ready(in_sync(&sub, &publisher))).await;
    eventually("duplicate seen", || ready(sub.stats().duplicates >= 1)).await;
    assert!(hits_all(&sub, &["r1".to_owned(), "r2".to_owned()], exp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_garbage_replayed_and_foreign_messages_change_nothing() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "hostile").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let exp = now_secs() + 3600;
    let old = publisher.revoke(&jtis("old", 3), exp).await;
    eventually("old", || ready(in_sync(&sub, &publisher))).await;
    let version = sub.version();
    let digest = sub.digest();

    let forger = Signer::new(signing_key_from_seed([7; 32]), publisher.namespace.clone());
    let foreign = Signer::new(
        signing_key_from_seed([42; 32]),
        Namespace::new("other").unwrap(),
    );
    let evil = publisher.plan(|s, seed| s.revoke("innocent", exp, &mut *seed).unwrap());
    let evil_msg = Message::Delta(evil.clone());
    let real = publisher.encode(&evil);
    let deltas: Vec<Vec<u8>> = vec![
        b"garbage".to_vec(),
        Vec::new(),
        real[..real.len() - 10].to_vec(), // truncated
        forger.encode(&evil_msg),         // wrong key
        foreign.encode(&evil_msg),        // right key, other namespace
        {
            let mut tampered = real.clone(); // flipped body byte
            let i = tampered.len() - 70;
            tampered[i] ^= 1;
            tampered
        },
        publisher.encode(&old), // replayed
        publisher.signer.encode(&Message::Heartbeat(Heartbeat {
            epoch: 0,
            beat: 1,
            version: 99,
            time_ms: u64::MAX,
            digest,
        })), // wrong kind
    ];
    for bytes in deltas {
        publisher.send_unstored_delta(bytes).await;
    }
    let forged_hb = |signer: &Signer, version: u64| {
        signer.encode(&Message::Heartbeat(Heartbeat {
            epoch: 0,
            beat: 1,
            version,
            time_ms: crate::common::now_ms() + 3_600_000,
            digest: revocast_core::Digest([1; 32]),
        }))
    };
    let replayed_hb = publisher.heartbeat_bytes();
    let hb_subject = publisher.namespace.heartbeat_subject();
    for bytes in [
        b"\x00\x01".to_vec(),
        forged_hb(&forger, version + 5),
        forged_hb(&foreign, version + 5),
        forged_hb(&forger, version), // wrong digest, wrong key: must not trigger a resync
        replayed_hb.clone(),
        replayed_hb,
    ] {
        publisher.send_raw(hb_subject.clone(), bytes).await;
    }

    eventually("every bad message counted", || {
        ready({
            let s = sub.stats();
            let r = |k: &str| s.rejected_messages.get(k).copied().unwrap_or(0);
            r("bad_magic") >= 2
                && r("truncated") >= 2
                && r("bad_signature") >= 4
                && r("wrong_namespace") >= 2
                && r("unexpected_kind") >= 1
                && r("replayed") >= 1
                && s.duplicates >= 1
        })
    })
    .await;
    assert_eq!(sub.version(), version);
    assert_eq!(sub.digest(), digest);
    let stats = sub.stats();
    assert_eq!(stats.resyncs, 0, "{stats:?}");
    assert_eq!(stats.digest_mismatches, 0, "{stats:?}");
    let want: std::collections::BTreeMap<String, u64> = [
        ("bad_magic", 2),
        ("bad_signature", 4),
        ("replayed", 1),
        ("truncated", 2),
        ("unexpected_kind", 1),
        ("wrong_namespace", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(stats.rejected_messages, want);
    assert_eq!(
        sub.check_local(&TokenClaims::new("innocent", exp)),
        LocalCheck::Decided(Verdict::Accepted {
            source: Source::Local
        })
    );
    // The genuine next delta still applies.
    publisher.store(&evil).await;
    eventually("genuine delta after the junk", || {
        ready(in_sync(&sub, &publisher))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_mismatch_triggers_a_resync() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "digest").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let exp = now_secs() + 3600;
    publisher.revoke(&jtis("d", 5), exp).await;
    publisher.snapshot().await;
    eventually("synced", || ready(in_sync(&sub, &publisher))).await;
    // A correctly signed heartbeat at the same version with another digest.
    let bytes = publisher.signer.encode(&Message::Heartbeat(Heartbeat {
        epoch: 0,
        beat: publisher.next_beat(),
        version: publisher.version(),
        time_ms: crate::common::now_ms() + 60_000,
        digest: revocast_core::Digest([3; 32]),
    }));
    publisher
        .send_raw(publisher.namespace.heartbeat_subject(), bytes)
        .await;
    eventually("resync", || ready(sub.stats().resyncs >= 1)).await;
    eventually("synced again", || ready(in_sync(&sub, &publisher))).await;
    let stats = sub.stats();
    assert!(stats.digest_mismatches >= 1);
    assert_eq!(stats.snapshots_loaded, 2);
    assert!(in_sync(&sub, &publisher));
}

/// A token that lives longer than the namespace's `max_token_lifetime` (plus leeway)
/// would outlive every cutoff issued after it (cutoffs are dropped once the longest
/// lifetime has passed): it is rejected, as if before the global cutoff. A fresh
/// token within the bound is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_living_longer_than_the_namespace_allows_are_rejected() {
    let server = NatsServer::start();
    let publisher = FakePublisher::start(&server.url(), "lifetime").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    eventually("in sync", || ready(in_sync(&sub, &publisher))).await;
    let now = now_secs();
    let params = publisher.filter.params().clone();
    let too_long = TokenClaims::new("refresh-ish", now + 3600)
        .with_iat(now + 3600 - params.max_token_lifetime - params.leeway - 1);
    assert_eq!(
        sub.check(&too_long).await.unwrap(),
        Verdict::Revoked {
            by: RevokedBy::GlobalCutoff,
            source: Source::Local
        }
    );
    let longest = TokenClaims::new("day-long", now + 3600)
        .with_iat(now + 3600 - params.max_token_lifetime - params.leeway);
    assert!(sub.check(&longest).await.unwrap().is_accepted());
    let fresh = TokenClaims::new("fresh", now + 3600).with_iat(now);
    assert!(sub.check(&fresh).await.unwrap().is_accepted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutoffs_reject_exactly_the_tokens_they_should() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "cutoffs").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let now = now_secs();
    let exp = now + 3600;
    publisher.subject_cutoff("alice", now - 100).await;
    eventually("subject cutoff", || ready(in_sync(&sub, &publisher))).await;

    let check = |claims: TokenClaims| {
        let sub = sub.clone();
        async move { sub.check(&claims).await.unwrap() }
    };
    let revoked = |by| Verdict::Revoked {
        by,
        source: Source::Local,
    };
    let accepted = Verdict::Accepted {
        source: Source::Local,
    };
    assert_eq!(
        check(
            TokenClaims::new("a1", exp)
                .with_sub("alice")
                .with_iat(now - 200)
        )
        .await,
        revoked(RevokedBy::SubjectCutoff)
    );
    assert_eq!(
        check(
            TokenClaims::new("a2", exp)
                .with_sub("alice")
                .with_iat(now - 100)
        )
        .await,
        accepted
    );
    assert_eq!(
        check(TokenClaims::new("a3", exp).with_sub("alice").with_iat(now)).await,
        accepted
    );
    assert_eq!(
        check(
            TokenClaims::new("b1", exp)
                .with_sub("bob")
                .with_iat(now - 200)
        )
        .await,
        accepted
    );
    // Without iat, exp - max_token_lifetime (24 h) stands in: as old as can be.
    assert_eq!(
        check(TokenClaims::new("a4", exp).with_sub("alice")).await,
        revoked(RevokedBy::SubjectCutoff)
    );
    assert_eq!(
        check(TokenClaims::new("a5", now + 90_000).with_sub("alice")).await,
        accepted
    );

    publisher.global_cutoff(now - 50).await;
    eventually("global cutoff", || ready(in_sync(&sub, &publisher))).await;
    assert_eq!(
        check(
            TokenClaims::new("c1", exp)
                .with_sub("carol")
                .with_iat(now - 60)
        )
        .await,
        revoked(RevokedBy::GlobalCutoff)
    );
    assert_eq!(
        check(TokenClaims::new("c2", exp).with_iat(now - 60)).await,
        revoked(RevokedBy::GlobalCutoff)
    );
    assert_eq!(
        check(
            TokenClaims::new("c3", exp)
                .with_sub("carol")
                .with_iat(now - 50)
        )
        .await,
        accepted
    );
    assert_eq!(
        check(
            TokenClaims::new("a6", exp)
                .with_sub("alice")
                .with_iat(now - 10)
        )
        .await,
        accepted
    );
    assert_eq!(sub.stats().cutoff_rejections, 4);
    assert_eq!(
        publisher
            .confirm_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// Checks from several threads, one by one and in batches, see every published
/// filter (each thread keeps its own view of it) and are all counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_from_many_threads_see_new_deltas_and_are_all_counted() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "views").await;
    let exp = now_secs() + 3600;
    let first = jtis("first", 20);
    publisher.revoke(&first, exp).await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let other = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let before = sub.stats().checks;

    let claims = |names: &[String]| -> Vec<TokenClaims> {
        names
            .iter()
            .map(|j| TokenClaims::new(j.clone(), exp))
            .collect()
    };
    let hit = LocalCheck::NeedsConfirm(ConfirmReason::FilterHit);
    // The same four threads check before and after the new delta: each has a view of
    // `sub` by then, which must follow.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (sub, other, done) = (sub.clone(), other.clone(), done_tx.clone());
            let (next_tx, next_rx) = std::sync::mpsc::channel::<(Vec<TokenClaims>, usize)>();
            let thread = std::thread::spawn(move || {
                let mut out = Vec::new();
                while let Ok((claims, rounds)) = next_rx.recv() {
                    for _ in 0..rounds {
                        // This thread's view is `sub`'s; `other` takes the shared path.
                        assert!(claims.iter().all(|c| sub.check_local(c) == hit));
                        assert!(claims.iter().all(|c| other.check_local(c) == hit));
                        sub.check_local_many(&claims, &mut out);
                        assert!(out.iter().all(|c| *c == hit));
                    }
                    done.send(()).unwrap();
                }
            });
            (thread, next_tx)
        })
        .collect();
    for (_, next) in &threads {
        next.send((claims(&first), 25)).unwrap();
    }
    for _ in &threads {
        done_rx.recv_timeout(LONG).unwrap();
    }
    let second = jtis("second", 20);
    publisher.revoke(&second, exp).await;
    let version = publisher.version();
    eventually("both replicas apply the new delta", || {
        ready(sub.version() == version && other.version() == version)
    })
    .await;
    for (_, next) in &threads {
        next.send((claims(&second), 5)).unwrap();
    }
    for _ in &threads {
        done_rx.recv_timeout(LONG).unwrap();
    }
    for (thread, next) in threads {
        drop(next);
        thread.join().unwrap();
    }
    // Per thread and round: 20 single checks and 20 in a batch.
    assert_eq!(sub.stats().checks - before, (4 * 25 + 4 * 5) * 40);
}

/// `versions()` tells each version as checks start to see it, without polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_tell_each_applied_version() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "told").await;
    let exp = now_secs() + 3600;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let mut versions = sub.versions();
    for i in 0..3 {
        let names = jtis(&format!("told-{i}"), 2);
        publisher.revoke(&names, exp).await;
        let version = publisher.version();
        within("the replica tells the new version", async {
            while *versions.borrow_and_update() < version {
                versions.changed().await.unwrap();
            }
        })
        .await;
        // Told only once checks see it.
        assert!(hits_all(&sub, &names, exp));
        assert_eq!(sub.version(), version);
    }
}
