//! A real nginx (`auth_request`, with deploy/nginx/revocast.conf) in front of a small
//! upstream, asking the sidecar: a good token passes with its identity headers, a
//! revoked one gets 401 once the revocation arrives, a stale replica gets 503 under
//! fail-closed. Skipped, with a message, where nginx is not installed.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use revocast_sidecar::{App, Config};
use revocast_subscriber::Policy;
use revocast_testkit::{
    Nginx, OpenIdProvider, Proxy, Stack, eventually, free_port, nginx_bin, now_secs,
};
use revocast_verifier::IssuerOptions;
use serde_json::Value;

use crate::common::{AUD, echo, serve};

/// deploy/nginx/revocast.conf with the test's ports.
fn nginx_conf(listen: u16, sidecar: u16, upstream: u16) -> String {
    let conf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/nginx/revocast.conf"
    ))
    .expect("deploy/nginx/revocast.conf");
    for needle in ["127.0.0.1:8080", "127.0.0.1:8090", "127.0.0.1:3000"] {
        assert!(
            conf.contains(needle),
            "the deploy config no longer names {needle}"
        );
    }
    conf.replace("127.0.0.1:8080", &format!("127.0.0.1:{listen}"))
        .replace("127.0.0.1:8090", &format!("127.0.0.1:{sidecar}"))
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{upstream}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_passes_refuses_and_fails_closed() {
    let Some(bin) = nginx_bin() else {
        eprintln!(
            "SKIPPED nginx_auth_request_passes_refuses_and_fails_closed: nginx is not installed (Debian: apt-get install nginx, or set NGINX_BIN)"
        );
        return;
    };
    let stack = Stack::start().await;
    let idp = OpenIdProvider::start().await;
    let proxy = Proxy::start(stack.nats.port());
    let mut config = Config::new(
        proxy.url(),
        stack.publisher.public_key(),
        vec![
            IssuerOptions::discover(idp.issuer())
                .audience(AUD)
                .require_at_jwt(true),
        ],
    );
    config.namespace = stack.publisher.namespace().clone();
    config.policy = Policy::FailClosed;
    config.max_staleness = Duration::from_millis(800);
    config.confirm_timeout = Duration::from_millis(200);
    let app = App::start(config).await.unwrap();
    eventually("the sidecar is ready", || {
        std::future::ready(app.is_ready())
    })
    .await;
    let sidecar = serve(revocast_sidecar::app::router(app.clone())).await;
    let upstream = serve(axum::Router::new().fallback(echo)).await;
    let listen = free_port();
    let nginx = Nginx::start(&bin, &nginx_conf(listen, sidecar, upstream), listen);
    let http = revocast_verifier::http_client().unwrap();
    let get = |token: Option<String>| {
        let mut request = http
            .get(format!("{}/orders/7?x=1", nginx.url()))
            .header("x-auth-subject", "spoofed");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    // A good token: upstream reached, identity headers set by nginx from the sidecar.
    let token = idp.access_token("alice", AUD, "ngx-1", 600);
    let response = get(Some(token.clone())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", nginx.error_log());
    let seen: BTreeMap<String, String> = response.json().await.unwrap();
    assert_eq!(seen["x-auth-subject"], "alice", "{seen:?}");
    assert_eq!(seen["x-auth-jti"], "ngx-1");
    assert_eq!(seen["x-auth-client-id"], "test-client");
    assert_eq!(seen["x-auth-scope"], "read write");

    // A token without scope or client id: the client's own headers do not get through.
    let bare = idp.token(
        serde_json::json!({"sub": "bob", "aud": AUD, "jti": "ngx-0", "exp": now_secs() + 600}),
    );
    let response = http
        .get(format!("{}/orders/7", nginx.url()))
        .header("x-auth-scope", "admin")
        .bearer_auth(&bare)
        .send()
        .await
        .unwrap();
    let seen: BTreeMap<String, String> = response.json().await.unwrap();
    assert_eq!(seen.get("x-auth-subject").map(String::as_str), Some("bob"));
    assert_eq!(
        seen.get("x-auth-scope").map_or("", String::as_str),
        "",
        "{seen:?}"
    );

    // No token, a bad token: 401 with the sidecar's challenge.
    let response = get(None).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = get(Some("not-a-jwt".into())).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Revoked: 401 within the propagation bound.
    stack.revoke("ngx-1", now_secs() + 600).await;
    let response = eventually("nginx refuses the revoked token", || async {
        let response = get(Some(token.clone())).await.unwrap();
        (response.status() == StatusCode::UNAUTHORIZED).then_some(response)
    })
    .await;
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );

    // Stale (NATS cut) under fail-closed: 503 from nginx, never 500.
    let fresh = idp.access_token("bob", AUD, "ngx-2", 600);
    assert_eq!(
        get(Some(fresh.clone())).await.unwrap().status(),
        StatusCode::OK
    );
    proxy.cut();
    let response = eventually("nginx answers 503 once the replica is stale", || async {
        let response = get(Some(fresh.clone())).await.unwrap();
        assert_ne!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
    })
    .await;
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "revocation_status_unavailable");
}
