//! Staleness and the authority: what each policy does when the replica cannot vouch
//! for a token or the authority cannot answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::ready;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use crate::common::{FakePublisher, Responder, eventually, jtis, now_ms, now_secs, within};
use futures::StreamExt as _;
use futures::future::join_all;
use revocast_core::{Heartbeat, Message};
use revocast_subscriber::{
    AuthorityError, ConfirmReason, Error, LocalCheck, Policy, RevokedBy, Source, TokenClaims,
    Verdict,
};
use revocast_testkit::NatsServer;

const STALE_AFTER: Duration = Duration::from_millis(600);
const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_stop_fail_closed_confirms_everything() {
    let server = NatsServer::start();
    let publisher = FakePublisher::start(&server.url(), "stale-closed").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, STALE_AFTER)
        .await;
    let exp = now_secs() + 3600;
    let fresh_claims = TokenClaims::new("fresh-token", exp);
    eventually("in sync by heartbeat", || {
        ready(sub.stats().heartbeats > 0 && !sub.is_stale())
    })
    .await;
    assert_eq!(
        sub.check(&fresh_claims).await.unwrap(),
        Verdict::Accepted {
            source: Source::Local
        }
    );

    publisher.heartbeats_paused.store(true, SeqCst);
    eventually("stale", || ready(sub.is_stale())).await;
    let stats = sub.stats();
    assert!(
        stats.stale && stats.staleness_seconds.unwrap() >= 0.5,
        "{stats:?}"
    );
    // Stale: even a filter miss goes to the authority, which answers.
    assert_eq!(
        sub.check_local(&fresh_claims),
        LocalCheck::NeedsConfirm(ConfirmReason::Stale)
    );
    assert_eq!(
        sub.check(&fresh_claims).await.unwrap(),
        Verdict::Accepted {
            source: Source::Authority
        }
    );
    // Again: a cached "not revoked" answer is not trusted while stale.
    assert_eq!(
        sub.check(&fresh_claims).await.unwrap(),
        Verdict::Accepted {
            source: Source::Authority
        }
    );
    assert_eq!(publisher.confirm_requests.load(SeqCst), 2);
    // The authority is gone too: refuse.
    publisher.set_responder(Responder::Silent);
    let err = sub
        .check(&TokenClaims::new("other", exp))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unavailable(AuthorityError::Timeout(_))
                | Error::Unavailable(AuthorityError::Unreachable(_))
        ),
        "{err:?}"
    );
    assert!(sub.stats().fail_closed_rejects >= 1);

    publisher.heartbeats_paused.store(false, SeqCst);
    eventually("fresh again", || ready(!sub.is_stale())).await;
    assert_eq!(
        sub.check(&fresh_claims).await.unwrap(),
        Verdict::Accepted {
            source: Source::Local
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_stop_fail_open_accepts_and_counts() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "stale-open").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailOpen, STALE_AFTER)
        .await;
    let exp = now_secs() + 3600;
    let revoked = jtis("rev", 3);
    publisher.revoke(&revoked, exp).await;
    eventually("synced", || ready(sub.version() == publisher.version())).await;

    publisher.heartbeats_paused.store(true, SeqCst);
    eventually("stale", || ready(sub.is_stale())).await;
    let before = publisher.confirm_requests.load(SeqCst);
    assert_eq!(
        sub.check(&TokenClaims::new("unknown", exp)).await.unwrap(),
        Verdict::Accepted {
            source: Source::FailOpen
        }
    );
    assert_eq!(
        publisher.confirm_requests.load(SeqCst),
        before,
        "no authority call"
    );
    assert!(sub.stats().fail_open_accepts >= 1);
    // A filter hit is still confirmed, so a known revocation is still rejected.
    assert_eq!(
        sub.check(&TokenClaims::new(revoked[0].clone(), exp))
            .await
            .unwrap(),
        Verdict::Revoked {
            by: RevokedBy::Jti,
            source: Source::Authority
        }
    );
    // ... unless the authority is gone too.
    publisher.set_responder(Responder::Silent);
    assert_eq!(
        sub.check(&TokenClaims::new(revoked[1].clone(), exp))
            .await
            .unwrap(),
        Verdict::Accepted {
            source: Source::FailOpen
        }
    );
}

async fn authority_fails(policy: Policy, mode: Responder) -> Result<Verdict, Error> {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "authority").await;
    let sub = publisher
        .options()
        .policy(policy)
        .max_staleness(LONG)
        .confirm_timeout(Duration::from_millis(200))
        .connect(&server.url())
        .await
        .unwrap();
    within("ready", sub.ready()).await;
    let exp = now_secs() + 3600;
    publisher.revoke(&["hit".to_owned()], exp).await;
    eventually("synced", || ready(sub.version() == publisher.version())).await;
    publisher.set_responder(mode);
    let result = sub.check(&TokenClaims::new("hit", exp)).await;
    let stats = sub.stats();
    assert_eq!(stats.confirm_errors, 1, "{stats:?}");
    assert_eq!(stats.filter_hits, 1);
    let invalid = u64::from(matches!(mode, Responder::Forged | Responder::WrongNonce));
    assert_eq!(stats.confirm_invalid_answers, invalid, "{stats:?}");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_timeout_fail_closed_refuses() {
    let err = authority_fails(Policy::FailClosed, Responder::Slow(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unavailable(AuthorityError::Timeout(_))),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_timeout_fail_open_accepts() {
    let verdict = authority_fails(Policy::FailOpen, Responder::Slow(Duration::from_secs(2)))
        .await
        .unwrap();
    assert_eq!(
        verdict,
        Verdict::Accepted {
            source: Source::FailOpen
        }
    );
}

/// Forged answers are skipped, counted, and never decide: with nothing valid, the
/// wait ends at the confirm timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_authority_answers_are_not_trusted() {
    for mode in [Responder::Forged, Responder::WrongNonce] {
        let err = authority_fails(Policy::FailClosed, mode).await.unwrap_err();
        assert!(
            matches!(err, Error::Unavailable(AuthorityError::Timeout(_))),
            "{mode:?}: {err:?}"
        );
    }
}

/// An authority that has not applied the delta that made the filter hit answers
/// from the past: its "not revoked" is neither believed nor cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_older_than_the_replica_is_not_trusted() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "behind").await;
    let sub = publisher
        .options()
        .policy(Policy::FailClosed)
        .max_staleness(LONG)
        .confirm_timeout(Duration::from_millis(300))
        .connect(&server.url())
        .await
        .unwrap();
    within("ready", sub.ready()).await;
    let exp = now_secs() + 3600;
    publisher.revoke(&["just-revoked".to_owned()], exp).await;
    eventually("synced", || ready(sub.version() == publisher.version())).await;
    let claims = TokenClaims::new("just-revoked", exp);

    publisher.set_responder(Responder::Behind);
    let err = sub.check(&claims).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unavailable(AuthorityError::Behind { answered, replica })
                if answered + 1 == replica
        ),
        "{err:?}"
    );
    let stats = sub.stats();
    assert!(stats.confirms_behind >= 2, "asked again: {stats:?}");

    // Nothing was cached: once the authority catches up, its answer counts.
    publisher.set_responder(Responder::Honest);
    let verdict = sub.check(&claims).await.unwrap();
    assert!(verdict.is_revoked(), "{verdict:?}");
}

/// Anyone may answer on the confirm subject; the first answer is not the one that
/// counts. A rogue responder that always answers first must not decide the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_responder_answering_first_does_not_decide() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "rogue").await;
    let rogue = async_nats::connect(server.url()).await.unwrap();
    let mut requests = rogue
        .subscribe(publisher.namespace.confirm_subject())
        .await
        .unwrap();
    rogue.flush().await.unwrap();
    let answering = rogue.clone();
    let _rogue_task = tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                let _ = answering.publish(reply, "not a signed answer".into()).await;
            }
        }
    });
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let exp = now_secs() + 3600;
    publisher.revoke(&["contested".to_owned()], exp).await;
    eventually("synced", || ready(sub.version() == publisher.version())).await;
    // The honest answer comes second.
    publisher.set_responder(Responder::Slow(Duration::from_millis(100)));
    let verdict = sub
        .check(&TokenClaims::new("contested", exp))
        .await
        .unwrap();
    assert!(verdict.is_revoked(), "{verdict:?}");
    let stats = sub.stats();
    assert_eq!(stats.confirm_invalid_answers, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_of_one_jti_make_one_call() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "flight").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let exp = now_secs() + 3600;
    publisher.revoke(&["popular".to_owned()], exp).await;
    eventually("synced", || ready(sub.version() == publisher.version())).await;
    publisher.set_responder(Responder::Slow(Duration::from_millis(300)));
    let claims = TokenClaims::new("popular", exp);
    let checks = (0..50).map(|_| {
        let sub = sub.clone();
        let claims = claims.clone();
        tokio::spawn(async move { sub.check(&claims).await.unwrap() })
    });
    let verdicts = within("50 checks", join_all(checks)).await;
    for v in verdicts {
        assert!(v.unwrap().is_revoked());
    }
    assert_eq!(publisher.confirm_requests.load(SeqCst), 1);
    let stats = sub.stats();
    assert_eq!(stats.confirms, 1);
    assert_eq!(stats.confirm_cache_hits, 49);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_stops_when_the_last_handle_is_dropped() {
    let server = NatsServer::start();
    let publisher = FakePublisher::start(&server.url(), "drop").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let client = sub.client().clone();
    let copy = sub.clone();
    drop(sub);
    // One handle left: the task still runs and answers.
    assert!(copy.is_ready());
    let subscriptions = || client.statistics().in_messages.load(SeqCst);
    let seen = subscriptions();
    eventually("heartbeats still arrive", || ready(subscriptions() > seen)).await;
    drop(copy);
    // The task drops its subscriptions: heartbeats stop arriving on this connection.
    let stopped = AtomicBool::new(false);
    let mut last = subscriptions();
    let mut quiet_ticks = 0;
    eventually("no more messages", || {
        ready({
            let now = subscriptions();
            if now == last {
                quiet_ticks += 1;
            } else {
                quiet_ticks = 0;
                last = now;
            }
            // Heartbeats come every 100 ms: 40 quiet polls of 10 ms mean they stopped.
            if quiet_ticks >= 40 {
                stopped.store(true, SeqCst);
            }
            stopped.load(SeqCst)
        })
    })
    .await;
}

/// A heartbeat ahead of the replica proves it behind: from that moment on a filter
/// miss is not vouched for, however long ago the last agreement was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_ahead_makes_the_replica_unfit_at_once() {
    let server = NatsServer::start();
    let publisher = FakePublisher::start(&server.url(), "ahead").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let claims = TokenClaims::new("never-revoked", now_secs() + 3600);
    eventually("in sync by heartbeat", || ready(sub.stats().heartbeats > 0)).await;
    assert_eq!(
        sub.check_local(&claims),
        LocalCheck::Decided(Verdict::Accepted {
            source: Source::Local
        })
    );

    publisher.heartbeats_paused.store(true, SeqCst);
    // The publisher is at a version the stream does not hold yet (its delta is on
    // the way): the replica cannot catch up.
    let ahead = publisher.signer.encode(&Message::Heartbeat(Heartbeat {
        epoch: 0,
        beat: publisher.next_beat(),
        version: publisher.version() + 1,
        time_ms: now_ms() + 60_000,
        digest: publisher.filter.digest(),
    }));
    publisher
        .send_raw(publisher.namespace.heartbeat_subject(), ahead)
        .await;
    eventually("the heartbeat to arrive", || {
        ready(sub.stats().publisher_version == publisher.version() + 1)
    })
    .await;
    assert_eq!(
        sub.check_local(&claims),
        LocalCheck::NeedsConfirm(ConfirmReason::Stale)
    );
}

/// A sync task that ends (here: its connection was drained) cannot prove anything
/// any more: the replica turns stale, and the task is started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_sync_task_leaves_the_replica_stale_and_is_restarted() {
    let server = NatsServer::start();
    let publisher = FakePublisher::start(&server.url(), "dead-task").await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let sub = publisher
        .options()
        .policy(Policy::FailClosed)
        .max_staleness(LONG)
        .with_client(client.clone());
    within("ready", sub.ready()).await;
    assert!(!sub.is_stale());

    client.drain().await.unwrap();
    eventually("the replica to turn stale", || ready(sub.is_stale())).await;
    let claims = TokenClaims::new("never-revoked", now_secs() + 3600);
    assert_eq!(
        sub.check_local(&claims),
        LocalCheck::NeedsConfirm(ConfirmReason::Stale)
    );
    eventually("the task to be restarted", || {
        ready(sub.stats().sync_restarts >= 1)
    })
    .await;
}
