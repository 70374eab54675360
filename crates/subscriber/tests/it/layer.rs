//! The tower layer's answers, through `oneshot` (no socket), with a real replica.
#![cfg(feature = "tower")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::future::ready;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use crate::common::{FakePublisher, Responder, eventually, now_secs};
use http::{Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use revocast_subscriber::{Policy, RevocastLayer, Subscriber, TokenClaims, Verdict};
use revocast_testkit::NatsServer;
use serde_json::{Value, json};
use tower::{Layer as _, ServiceExt as _};

const SECRET: &[u8] = b"test-secret-test-secret-test-secret";

fn token(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn layer(sub: &Subscriber) -> RevocastLayer {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    RevocastLayer::new(sub.clone(), DecodingKey::from_secret(SECRET), validation)
}

/// Sends a request through the layer to a handler that echoes the claims it got.
async fn call(
    sub: &Subscriber,
    authorization: Option<String>,
) -> (StatusCode, http::HeaderMap, Value) {
    let inner = tower::service_fn(|req: Request<String>| async move {
        let claims = req.extensions().get::<TokenClaims>().cloned().unwrap();
        let verdict = req.extensions().get::<Verdict>().copied().unwrap();
        let body = json!({ "claims": claims, "verdict": verdict }).to_string();
        Ok::<_, Infallible>(Response::new(body))
    });
    let service = layer(sub).layer(inner);
    let mut request = Request::builder().uri("/whoami");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = crate::common::within(
        "layer answers",
        service.oneshot(request.body(String::new()).unwrap()),
    )
    .await
    .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body: Value = serde_json::from_str(response.body()).unwrap();
    (status, headers, body)
}

fn bearer(t: &str) -> Option<String> {
    Some(format!("Bearer {t}"))
}

fn challenge(headers: &http::HeaderMap) -> &str {
    headers.get("www-authenticate").unwrap().to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_answers_401_with_rfc6750_challenges() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "layer").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailClosed, Duration::from_secs(60))
        .await;
    let exp = now_secs() + 3600;

    // A good token reaches the handler with its claims.
    let good = token(json!({ "jti": "good", "exp": exp, "sub": "alice", "aud_x": "extra" }));
    let (status, _, body) = call(&sub, bearer(&good)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["claims"]["sub"], "alice");
    assert_eq!(body["claims"]["aud_x"], "extra");
    assert_eq!(body["verdict"]["verdict"], "accepted");
    // The scheme is case-insensitive.
    let (status, _, _) = call(&sub, Some(format!("bearer {good}"))).await;
    assert_eq!(status, StatusCode::OK);

    // No token: a bare challenge (RFC 6750 3.1).
    let (status, headers, body) = call(&sub, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&headers), "Bearer");
    assert_eq!(body["error"], "missing_token");
    let (status, _, body) = call(&sub, Some("Basic dXNlcjpwYXNz".into())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_token"))
    );

    // Garbage, a wrong key, a missing jti: invalid_token.
    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({ "jti": "x", "exp": exp }),
        &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
    )
    .unwrap();
    for bad in [
        "not-a-jwt".to_owned(),
        wrong_key,
        token(json!({ "exp": exp })),
    ] {
        let (status, headers, body) = call(&sub, bearer(&bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(
            challenge(&headers).starts_with("Bearer error=\"invalid_token\""),
            "{headers:?}"
        );
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
    }

    // Expired.
    let expired = token(json!({ "jti": "old", "exp": now_secs() - 10 }));
    let (status, headers, body) = call(&sub, bearer(&expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&headers).starts_with("Bearer error=\"invalid_token\""));
    assert_eq!(body["error"], "expired");

    // Revoked by jti, confirmed by the authority.
    publisher.revoke(&["stolen".to_owned()], exp).await;
    eventually("revocation applied", || {
        ready(sub.version() == publisher.version())
    })
    .await;
    let stolen = token(json!({ "jti": "stolen", "exp": exp, "sub": "alice" }));
    let (status, headers, body) = call(&sub, bearer(&stolen)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&headers).contains("error=\"invalid_token\""));
    assert_eq!(body["error"], "revoked");

    // Revoked by a subject cutoff.
    publisher.subject_cutoff("mallory", now_secs()).await;
    eventually("cutoff applied", || {
        ready(sub.version() == publisher.version())
    })
    .await;
    let cut = token(json!({ "jti": "m1", "exp": exp, "sub": "mallory", "iat": now_secs() - 60 }));
    let (status, _, body) = call(&sub, bearer(&cut)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("revoked"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_answers_503_when_fail_closed_cannot_decide() {
    let server = NatsServer::start();
    let mut publisher = FakePublisher::start(&server.url(), "layer503").await;
    let sub = publisher
        .options()
        .policy(Policy::FailClosed)
        .max_staleness(Duration::from_millis(500))
        .confirm_timeout(Duration::from_millis(200))
        .connect(&server.url())
        .await
        .unwrap();
    crate::common::within("ready", sub.ready()).await;
    let exp = now_secs() + 3600;
    publisher.revoke(&["hit".to_owned()], exp).await;
    eventually("synced", || ready(sub.version() == publisher.version())).await;
    publisher.set_responder(Responder::Silent);

    // A filter hit the authority cannot confirm.
    let (status, headers, body) =
        call(&sub, bearer(&token(json!({ "jti": "hit", "exp": exp })))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    assert!(headers.get("www-authenticate").is_none());
    assert_eq!(body["error"], "revocation_status_unavailable");

    // Stale: every token needs the authority.
    publisher.heartbeats_paused.store(true, SeqCst);
    eventually("stale", || ready(sub.is_stale())).await;
    let (status, _, _) = call(&sub, bearer(&token(json!({ "jti": "miss", "exp": exp })))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    publisher.set_responder(Responder::Honest);
    let (status, _, body) = call(&sub, bearer(&token(json!({ "jti": "miss", "exp": exp })))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["verdict"]["source"], "authority");
}
