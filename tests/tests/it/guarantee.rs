//! Paths around the one promise (a revocation acknowledged is rejected by every
//! replica in sync), each held at the exact step where it used to break.
#![allow(clippy::unwrap_used)]

use revocast_publisher::{Config, Revocation};
use revocast_subscriber::TokenClaims;
use revocast_testkit::{NatsServer, Stack, eventually, init_logs, now_secs, within};

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
