//! An identity provider revokes by itself, end to end: a real OpenID provider on
//! loopback sends a back-channel logout to the publisher, and both an embedded replica
//! and the forward-auth sidecar (verifying the provider's own RFC 9068 tokens with
//! keys found by discovery) reject that user's older tokens within the propagation
//! bound, while tokens issued after the logout, and other users' tokens, pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use revocast_publisher::{Config, TrustedIssuer};
use revocast_subscriber::TokenClaims;
use revocast_testkit::{NatsServer, OpenIdProvider, Stack, eventually, now_secs};
use revocast_verifier::IssuerOptions;
use serde_json::json;

/// The client id the provider addresses logout tokens to.
const RP: &str = "revocast-rp";
/// The audience of the provider's access tokens.
const API: &str = "orders-api";
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_logout_reaches_every_replica_and_the_sidecar() {
    let idp = OpenIdProvider::start().await;
    let nats = NatsServer::start();
    let mut config = Config::for_tests(nats.url()).unwrap();
    config.trusted_issuers = vec![TrustedIssuer::new(idp.issuer(), RP)];
    let stack = Stack::start_with(nats, config).await;
    let replica = stack.subscriber().await;

    // The sidecar: keys by discovery from the provider, the publisher's replica.
    let mut sidecar_config = revocast_sidecar::Config::new(
        stack.nats.url(),
        stack.publisher.public_key(),
        vec![IssuerOptions::discover(idp.issuer()).audience(API)],
    );
    sidecar_config.namespace = stack.publisher.namespace().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sidecar = format!("http://{}/check", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(revocast_sidecar::run(
        sidecar_config,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();
    let check = |token: String| {
        let http = http.clone();
        let sidecar = sidecar.clone();
        async move {
            http.get(&sidecar)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let access = |sub: &str, jti: &str, iat: u64| {
        idp.token(json!({
            "sub": sub, "aud": API, "iat": iat, "exp": now_secs() + 600, "jti": jti,
            "client_id": "web", "scope": "orders",
        }))
    };
    let before = now_secs() - 60;
    let alice_old = access("alice", "alice-old", before);
    let bob = access("bob", "bob-1", before);
    eventually("the sidecar accepts alice's token", || async {
        (check(alice_old.clone()).await == 200).then_some(())
    })
    .await;

    // The provider ends alice's sessions.
    let logout_token = idp.token_with_typ(
        Some("logout+jwt"),
        json!({
            "aud": RP, "iat": now_secs(), "exp": now_secs() + 120, "jti": "logout-1",
            "sub": "alice", "sid": "s-1", "events": {LOGOUT_EVENT: {}},
        }),
    );
    let logout = format!("{}/oidc/backchannel-logout", stack.publisher.url());
    eventually("the publisher applies the logout", || async {
        let response = http
            .post(&logout)
            .form(&[("logout_token", &logout_token)])
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => Some(()),
            503 => None, // the provider's keys are still being fetched: it retries
            status => panic!("{status}: {}", response.text().await.unwrap()),
        }
    })
    .await;

    // Within the propagation bound: refused by the sidecar and by the replica.
    eventually("the sidecar refuses alice's older token", || async {
        (check(alice_old.clone()).await == 401).then_some(())
    })
    .await;
    let claims = TokenClaims {
        sub: Some("alice".into()),
        iat: Some(before),
        ..TokenClaims::new("alice-old", now_secs() + 600)
    };
    eventually("the replica refuses it too", || async {
        replica
            .check(&claims)
            .await
            .unwrap()
            .is_revoked()
            .then_some(())
    })
    .await;
    // A token issued after the logout, and another user's, pass.
    let alice_new = access("alice", "alice-new", now_secs() + 2);
    assert_eq!(check(alice_new).await, 200);
    assert_eq!(check(bob.clone()).await, 200);

    // The provider ends one session of carol's only (a logout token with a sid and no
    // sub): the tokens of that session are refused, her other session's pass.
    let in_session = |jti: &str, sid: &str| {
        idp.token(json!({
            "sub": "carol", "aud": API, "iat": before, "exp": now_secs() + 600, "jti": jti,
            "client_id": "web", "scope": "orders", "sid": sid,
        }))
    };
    let (carol_1, carol_2) = (in_session("carol-1", "c-1"), in_session("carol-2", "c-2"));
    assert_eq!(check(carol_1.clone()).await, 200);
    let session_logout = idp.token_with_typ(
        Some("logout+jwt"),
        json!({
            "aud": RP, "iat": now_secs(), "exp": now_secs() + 120, "jti": "logout-2",
            "sid": "c-1", "events": {LOGOUT_EVENT: {}},
        }),
    );
    let response = http
        .post(&logout)
        .form(&[("logout_token", &session_logout)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    eventually(
        "the sidecar refuses the logged-out session's token",
        || async { (check(carol_1.clone()).await == 401).then_some(()) },
    )
    .await;
    assert_eq!(check(carol_2).await, 200);
    assert_eq!(check(bob).await, 200);

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
