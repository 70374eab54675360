//! OpenID Connect Back-Channel Logout from a real OpenID provider on loopback (its
//! discovery document and JWKS): a logout token cuts its subject off on every replica
//! within the propagation bound, tokens issued after the logout pass, and every
//! malformed, forged, replayed or misaddressed logout token gets its 400 and changes
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use revocast_core::http::Committed;
use revocast_publisher::TrustedIssuer;
use revocast_testkit::{NatsServer, OpenIdProvider, Stack};
use serde_json::{Value, json};

use crate::common::{Http, claims_of, config, eventually, now};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const AUDIENCE: &str = "revocast-rp";

fn logout_claims(sub: Option<&str>, jti: &str) -> Value {
    let mut claims = json!({
        "aud": AUDIENCE, "iat": now(), "exp": now() + 120, "jti": jti,
        "events": {EVENT: {}}, "sid": "session-1",
    });
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    claims
}

async fn send(http: &Http, body: &[(&str, &str)]) -> (u16, Value, Option<String>) {
    let response = http
        .client
        .post(format!("{}/oidc/backchannel-logout", http.base))
        .form(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap_or(Value::Null), cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_from_the_idp_cuts_the_subject_off_on_every_replica() {
    let idp = OpenIdProvider::start().await;
    let nats = NatsServer::start();
    let mut cfg = config(&nats);
    cfg.trusted_issuers = vec![TrustedIssuer::new(idp.issuer(), AUDIENCE)];
    let stack = Stack::start_with(nats, cfg).await;
    let http = Http::new(stack.publisher.url());
    let replica = stack.subscriber().await;
    let before = now() - 30;
    // The IdP's keys may still be loading: the first answer can be a 503 the IdP
    // retries; the same token then succeeds.
    let token = idp.token_with_typ(Some("logout+jwt"), logout_claims(Some("alice"), "l-1"));
    let done: Committed = eventually("the logout is applied", || async {
        let (status, body, cache) = send(&http, &[("logout_token", &token)]).await;
        match status {
            200 => {
                assert_eq!(cache.as_deref(), Some("no-store"));
                Some(serde_json::from_value(body).unwrap())
            }
            503 => None,
            _ => panic!("{status}: {body}"),
        }
    })
    .await;
    assert!(!done.noop && done.version >= 1, "{done:?}");
    eventually("the replica holds the cutoff", || async {
        (replica.version() >= done.version).then_some(())
    })
    .await;
    // alice's tokens issued before the logout are rejected, later ones pass; bob's pass.
    let old = replica
        .check(&claims_of("alice", "a-old", before))
        .await
        .unwrap();
    assert!(old.is_revoked(), "{old:?}");
    let new = replica
        .check(&claims_of("alice", "a-new", now() + 2))
        .await
        .unwrap();
    assert!(!new.is_revoked(), "{new:?}");
    let bob = replica.check(&claims_of("bob", "b", before)).await.unwrap();
    assert!(!bob.is_revoked(), "{bob:?}");
    // The logout token's own jti was not revoked as an access token.
    assert_eq!(http.get("/v1/revocations/l-1").await.0, 404);

    // Every bad logout token: 400 invalid_request, nothing committed.
    let version = stack.publisher.version();
    let other_idp = OpenIdProvider::start().await;
    let mut nonce = logout_claims(Some("carol"), "l-nonce");
    nonce["nonce"] = json!("n");
    let mut no_events = logout_claims(Some("carol"), "l-events");
    no_events.as_object_mut().unwrap().remove("events");
    let mut expired = logout_claims(Some("carol"), "l-expired");
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 4000);
    let mut stale = logout_claims(Some("carol"), "l-stale");
    stale["iat"] = json!(now() - 3600);
    let mut wrong_aud = logout_claims(Some("carol"), "l-aud");
    wrong_aud["aud"] = json!("someone-else");
    let unsigned = {
        use base64::Engine as _;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let mut claims = logout_claims(Some("carol"), "l-none");
        claims["iss"] = json!(idp.issuer());
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "logout+jwt"})),
            b64(&claims)
        )
    };
    let cases: Vec<(&str, String)> = vec![
        ("replayed", token.clone()),
        ("not a JWT", "garbage".into()),
        ("unsigned (alg none)", unsigned),
        (
            "another issuer",
            other_idp.token_with_typ(Some("logout+jwt"), logout_claims(Some("carol"), "l-other")),
        ),
        (
            "wrong typ",
            idp.token_with_typ(Some("at+jwt"), logout_claims(Some("carol"), "l-typ")),
        ),
        ("no events", idp.token_with_typ(None, no_events)),
        ("a nonce", idp.token_with_typ(None, nonce)),
        ("expired", idp.token_with_typ(None, expired)),
        ("iat too old", idp.token_with_typ(None, stale)),
        ("wrong audience", idp.token_with_typ(None, wrong_aud)),
        ("oversized", "a".repeat(20_000)),
    ];
    for (name, token) in &cases {
        let (status, body, _) = send(&http, &[("logout_token", token)]).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"], "invalid_request", "{name}: {body}");
        assert!(
            !body["error_description"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{name}: {body}"
        );
    }
    let (status, body, _) = send(&http, &[("token", "x")]).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_request"))
    );
    assert_eq!(stack.publisher.version(), version, "nothing was committed");
    let carol = replica
        .check(&claims_of("carol", "c", before))
        .await
        .unwrap();
    assert!(!carol.is_revoked());
    let metrics = http.metrics().await;
    assert!(
        metrics.contains("revocast_backchannel_logouts_total{outcome=\"applied\"} 1"),
        "{metrics}"
    );
    let refused = format!(
        "revocast_backchannel_logouts_total{{outcome=\"refused\"}} {}",
        cases.len() + 1
    );
    assert!(metrics.contains(&refused), "{refused} in {metrics}");

    // A logout token with only a sid logs that session out, and nothing else.
    let mut session_only = logout_claims(None, "l-sid");
    session_only["sid"] = json!("session-9");
    let token = idp.token_with_typ(Some("logout+jwt"), session_only);
    let (status, body, _) = send(&http, &[("logout_token", &token)]).await;
    assert_eq!(status, 200, "{body}");
    let done: Committed = serde_json::from_value(body).unwrap();
    eventually("the replica holds the session cutoff", || async {
        (replica.version() >= done.version).then_some(())
    })
    .await;
    let in_session = |jti: &str, sid: &str| claims_of("dave", jti, before).with_sid(sid);
    let logged_out = replica
        .check(&in_session("d-1", "session-9"))
        .await
        .unwrap();
    assert!(logged_out.is_revoked(), "{logged_out:?}");
    for other in [
        in_session("d-2", "session-8"),
        claims_of("dave", "d-3", before),
    ] {
        let verdict = replica.check(&other).await.unwrap();
        assert!(!verdict.is_revoked(), "{other:?}: {verdict:?}");
    }
    // The authority knows it too (a stale replica asks it).
    let (status, body) = http
        .get(&format!(
            "/v1/revocations/d-1?exp={}&sub=dave&iat={before}&sid=session-9",
            now() + 600
        ))
        .await;
    assert_eq!(
        (status, body["revoked"].clone()),
        (200, json!(true)),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trusted_issuer_the_route_says_how_to_turn_it_on() {
    let nats = NatsServer::start();
    let cfg = config(&nats);
    let stack = Stack::start_with(nats, cfg).await;
    let http = Http::new(stack.publisher.url());
    let (status, body, _) = send(&http, &[("logout_token", "x")]).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("--trust-issuer")
    );
}
