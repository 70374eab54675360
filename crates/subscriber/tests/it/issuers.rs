//! The tower layer with keys from real OpenID providers on loopback (the testkit's
//! `OpenIdProvider`): rotation while the service runs, a provider down at startup,
//! unconfigured issuers, and one replica per issuer.
#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use crate::common::{FakePublisher, eventually, now_secs, within};
use http::{Request, Response, StatusCode};
use revocast_subscriber::{Gate, Policy, RevocastLayer, TokenClaims};
use revocast_testkit::{NatsServer, OpenIdProvider};
use revocast_verifier::{IssuerOptions, Verifier};
use serde_json::Value;
use tower::{Layer as _, ServiceExt as _};

const AUD: &str = "orders-api";
const LONG: Duration = Duration::from_secs(60);

fn discover(idp: &OpenIdProvider) -> IssuerOptions {
    IssuerOptions::discover(idp.issuer())
        .audience(AUD)
        .require_at_jwt(true)
        .cooldown(Duration::ZERO)
        .retry(Duration::from_millis(20), Duration::from_millis(100))
}

/// One request through the layer: status and body (the handler echoes the claims).
async fn call(layer: &RevocastLayer, token: &str) -> (StatusCode, Value) {
    let inner = tower::service_fn(|req: Request<String>| async move {
        let claims = req.extensions().get::<TokenClaims>().cloned().unwrap();
        Ok::<_, Infallible>(Response::new(serde_json::to_string(&claims).unwrap()))
    });
    let request = Request::builder()
        .uri("/whoami")
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let response = within("layer answers", layer.layer(inner).oneshot(request))
        .await
        .unwrap();
    let status = response.status();
    (status, serde_json::from_str(response.body()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_url_is_enough_across_a_key_rotation() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "idp").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let idp = OpenIdProvider::start().await;
    let other = OpenIdProvider::start().await;
    let layer = RevocastLayer::with_verifier(sub, Verifier::new(vec![discover(&idp)]).unwrap());

    let (status, claims) = call(&layer, &idp.access_token("alice", AUD, "rot-1", 600)).await;
    assert_eq!(status, StatusCode::OK, "{claims}");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "test-client");

    idp.rotate();
    let (status, claims) = call(&layer, &idp.access_token("bob", AUD, "rot-2", 600)).await;
    assert_eq!(
        (status, claims["sub"].as_str()),
        (StatusCode::OK, Some("bob"))
    );

    // Revoked: 401 whatever key signed it.
    publisher
        .revoke(&["rot-2".to_owned()], now_secs() + 600)
        .await;
    let token = idp.access_token("bob", AUD, "rot-2", 600);
    eventually("the revocation reaches the layer", || async {
        call(&layer, &token).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(call(&layer, &token).await.1["error"], "revoked");

    // A provider that is not configured: 401 invalid_token.
    let (status, body) = call(&layer, &other.access_token("eve", AUD, "rot-3", 600)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_token"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_down_at_startup_gives_503_until_it_answers() {
    let server = NatsServer::start();
    let publisher = FakePublisher::start(&server.url(), "down").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, LONG)
        .await;
    let idp = OpenIdProvider::start().await;
    idp.set_up(false);
    let layer = RevocastLayer::with_verifier(sub, Verifier::new(vec![discover(&idp)]).unwrap());
    let token = idp.access_token("alice", AUD, "down-1", 600);
    eventually("a failed fetch", || {
        std::future::ready(idp.discovery_fetches() >= 1)
    })
    .await;
    let (status, body) = call(&layer, &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "revocation_status_unavailable");
    assert!(!layer.gate().is_ready());

    idp.set_up(true);
    eventually("200 once the provider answers", || async {
        call(&layer, &token).await.0 == StatusCode::OK
    })
    .await;
    assert!(layer.gate().is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_issuer_is_checked_against_its_own_namespace() {
    let server = NatsServer::start();
    let mut pub_a = FakePublisher::start(&server.url(), "tenant-a").await;
    let pub_b = FakePublisher::start(&server.url(), "tenant-b").await;
    let sub_a = pub_a.replica(&server.url(), Policy::FailClosed, LONG).await;
    let sub_b = pub_b.replica(&server.url(), Policy::FailClosed, LONG).await;
    let (idp_a, idp_b) = (OpenIdProvider::start().await, OpenIdProvider::start().await);
    let verifier = Verifier::new(vec![discover(&idp_a), discover(&idp_b)]).unwrap();
    let gate = Gate::with_verifier(verifier, sub_a.clone())
        .replica_for(&idp_b.issuer(), sub_b.clone())
        .unwrap();
    assert!(
        Gate::with_verifier(
            Verifier::new(vec![discover(&idp_a)]).unwrap(),
            sub_a.clone()
        )
        .replica_for("https://nobody.example", sub_b.clone())
        .is_err()
    );
    assert_eq!(gate.subscribers().len(), 2);
    let layer = RevocastLayer::from_gate(gate);

    // The same jti, revoked in tenant A only.
    pub_a
        .revoke(&["shared-jti".to_owned()], now_secs() + 600)
        .await;
    eventually("tenant A's replica has it", || {
        std::future::ready(sub_a.version() == pub_a.version())
    })
    .await;
    let (status, body) = call(&layer, &idp_a.access_token("a", AUD, "shared-jti", 600)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("revoked"))
    );
    let (status, body) = call(&layer, &idp_b.access_token("b", AUD, "shared-jti", 600)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sub_b.stats().checks, 1);
}
