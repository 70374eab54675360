//! Paths around the one promise (a revocation acknowledged is rejected by every
//! replica in sync), each held at the exact step where it used to break.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

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
