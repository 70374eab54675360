//! A real Caddy (`forward_auth`, with deploy/caddy/Caddyfile) in front of a small
//! upstream, asking the sidecar: a good token passes with identity headers (a client's
//! own are dropped), a bad one gets the sidecar's 401, a stale replica its 503.
//! Skipped, with a message, where caddy is not installed.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use revocast_sidecar::{App, Config};
use revocast_subscriber::Policy;
use revocast_testkit::{
    Caddy, OpenIdProvider, Proxy, Stack, caddy_bin, eventually, free_port, now_secs,
};
use revocast_verifier::IssuerOptions;

use crate::common::{AUD, echo, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_passes_refuses_and_fails_closed() {
    let Some(bin) = caddy_bin() else {
        eprintln!(
            "SKIPPED caddy_forward_auth_passes_refuses_and_fails_closed: caddy is not installed (Debian: apt-get install caddy, or set CADDY_BIN)"
        );
        return;
    };
    let stack = Stack::start().await;
    let idp = OpenIdProvider::start().await;
    let proxy = Proxy::start(stack.nats.port());
    let mut config = Config::new(
        proxy.url(),
        stack.publisher.public_key(),
        vec![IssuerOptions::discover(idp.issuer()).audience(AUD)],
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
    let caddyfile = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/caddy/Caddyfile"
    ))
    .unwrap();
    for needle in [":8080 {", "127.0.0.1:8090", "127.0.0.1:3000"] {
        assert!(
            caddyfile.contains(needle),
            "the deploy Caddyfile no longer names {needle}"
        );
    }
    let caddyfile = caddyfile
        .replace(":8080 {", &format!("http://127.0.0.1:{listen} {{"))
        .replace("127.0.0.1:8090", &format!("127.0.0.1:{sidecar}"))
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{upstream}"));
    let caddy = Caddy::start(&bin, &caddyfile, listen);
    let http = revocast_verifier::http_client().unwrap();
    let get = |token: &str| {
        http.get(format!("{}/orders/7", caddy.url()))
            .header("x-auth-subject", "spoofed")
            .header("x-auth-scope", "admin")
            .bearer_auth(token)
            .send()
    };

    let token = idp.access_token("alice", AUD, "caddy-1", 600);
    let response = get(&token).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", caddy.log());
    let seen: BTreeMap<String, String> = response.json().await.unwrap();
    assert_eq!(
        seen.get("x-auth-subject").map(String::as_str),
        Some("alice"),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("x-auth-scope").map(String::as_str),
        Some("read write"),
        "{seen:?}"
    );

    // A token without scope: the client's own X-Auth-Scope must not reach the upstream.
    let no_scope = idp.token(
        serde_json::json!({"sub": "bob", "aud": AUD, "jti": "caddy-2", "exp": now_secs() + 600}),
    );
    let seen: BTreeMap<String, String> = get(&no_scope).await.unwrap().json().await.unwrap();
    assert_eq!(seen.get("x-auth-subject").map(String::as_str), Some("bob"));
    assert_eq!(
        seen.get("x-auth-scope").map_or("", String::as_str),
        "",
        "{seen:?}"
    );
    assert_eq!(
        seen.get("x-auth-client-id").map_or("", String::as_str),
        "",
        "{seen:?}"
    );

    let response = get("not-a-jwt").await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );

    proxy.cut();
    let response = eventually("caddy passes the sidecar's 503 once stale", || async {
        let response = get(&token).await.unwrap();
        (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
    })
    .await;
    assert_eq!(response.headers()["retry-after"], "1");
}
