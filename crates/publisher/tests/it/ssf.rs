//! Shared Signals push (RFC 8935) from a real OpenID provider's keys: CAEP and RISC
//! events about a user cut that user off on every replica; unknown events are accepted
//! and counted; every bad SET or request gets RFC 8935's 400 and changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use revocast_publisher::TrustedIssuer;
use revocast_testkit::{NatsServer, OpenIdProvider, Stack};
use serde_json::{Value, json};

use crate::common::{Http, claims_of, config, eventually, now};

const AUDIENCE: &str = "https://revocast.example/ssf";
const STREAM_TOKEN: &str = "stream-token-1";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const CREDENTIAL_COMPROMISE: &str =
    "https://schemas.openid.net/secevent/risc/event-type/credential-compromise";

fn set(jti: &str, sub: &str, events: Value) -> Value {
    json!({
        "aud": AUDIENCE, "iat": now(), "jti": jti, "events": events,
        "sub_id": {"format": "opaque", "id": sub},
    })
}

async fn push(http: &Http, auth: Option<&str>, content_type: &str, body: &str) -> (u16, Value) {
    let mut request = http
        .client
        .post(format!("{}/ssf/events", http.base))
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_events_cut_users_off_and_bad_ones_change_nothing() {
    let idp = OpenIdProvider::start().await;
    // A second trusted issuer with its own stream.
    let partner = OpenIdProvider::start().await;
    let nats = NatsServer::start();
    let mut cfg = config(&nats);
    cfg.trusted_issuers = vec![
        TrustedIssuer {
            ssf_token: Some(STREAM_TOKEN.into()),
            ..TrustedIssuer::new(idp.issuer(), AUDIENCE)
        },
        TrustedIssuer {
            ssf_token: Some("stream-token-2".into()),
            ..TrustedIssuer::new(partner.issuer(), AUDIENCE)
        },
    ];
    let stack = Stack::start_with(nats, cfg).await;
    let http = Http::new(stack.publisher.url());
    let replica = stack.subscriber().await;
    let bearer = format!("Bearer {STREAM_TOKEN}");
    let auth = Some(bearer.as_str());
    let ct = "application/secevent+jwt";
    let before = now() - 30;

    // A CAEP session-revoked and an unknown event in one SET: 202, empty body.
    let good = idp.token_with_typ(
        Some("secevent+jwt"),
        set(
            "set-1",
            "alice",
            json!({SESSION_REVOKED: {"event_timestamp": now()}, "https://example.com/unknown": {}}),
        ),
    );
    eventually("the SET is accepted", || async {
        let (status, body) = push(&http, auth, ct, &good).await;
        match status {
            202 => {
                assert_eq!(body, Value::String(String::new()), "an empty body");
                Some(())
            }
            503 => None, // the IdP's keys are still loading: the transmitter retries
            _ => panic!("{status}: {body}"),
        }
    })
    .await;
    // A RISC credential-compromise with the subject inside the event (older drafts).
    let risc = idp.token_with_typ(
        Some("secevent+jwt"),
        json!({
            "aud": AUDIENCE, "iat": now(), "jti": "set-2",
            "events": {CREDENTIAL_COMPROMISE: {"subject": {"format": "iss_sub", "iss": idp.issuer(), "sub": "bob"}}},
        }),
    );
    assert_eq!(push(&http, auth, ct, &risc).await.0, 202);
    // One token (a jwt_id subject): revoked by its jti, in every live bucket.
    let one_token = idp.token_with_typ(
        Some("secevent+jwt"),
        json!({
            "aud": AUDIENCE, "iat": now(), "jti": "set-3",
            "events": {CREDENTIAL_COMPROMISE: {}},
            "sub_id": {"format": "jwt_id", "iss": idp.issuer(), "jti": "stolen-token"},
        }),
    );
    assert_eq!(push(&http, auth, ct, &one_token).await.0, 202);
    assert_eq!(http.get("/v1/revocations/stolen-token").await.0, 200);
    // The partner's transmitter, on its own stream.
    let partner_set = partner.token_with_typ(
        Some("secevent+jwt"),
        set("set-p", "dave", json!({SESSION_REVOKED: {}})),
    );
    eventually("the partner's SET is accepted", || async {
        let (status, body) = push(&http, Some("Bearer stream-token-2"), ct, &partner_set).await;
        match status {
            202 => Some(()),
            503 => None,
            _ => panic!("{status}: {body}"),
        }
    })
    .await;
    // A CAEP session-revoked for one session of erin (a complex subject): that
    // session's tokens only.
    let session = idp.token_with_typ(
        Some("secevent+jwt"),
        json!({
            "aud": AUDIENCE, "iat": now(), "jti": "set-s",
            "events": {SESSION_REVOKED: {}},
            "sub_id": {
                "format": "complex",
                "user": {"format": "opaque", "id": "erin"},
                "session": {"format": "opaque", "id": "erin-s1"},
            },
        }),
    );
    assert_eq!(push(&http, auth, ct, &session).await.0, 202);
    let version = stack.publisher.version();
    eventually("the replica holds every cutoff", || async {
        (replica.version() >= version).then_some(())
    })
    .await;
    for sub in ["alice", "bob", "dave"] {
        let old = replica.check(&claims_of(sub, "old", before)).await.unwrap();
        assert!(old.is_revoked(), "{sub}: {old:?}");
        let new = replica
            .check(&claims_of(sub, "new", now() + 2))
            .await
            .unwrap();
        assert!(!new.is_revoked(), "{sub}: {new:?}");
    }

    let in_session = |sid: &str| claims_of("erin", "e", before).with_sid(sid);
    let logged_out = replica.check(&in_session("erin-s1")).await.unwrap();
    assert!(logged_out.is_revoked(), "{logged_out:?}");
    let other = replica.check(&in_session("erin-s2")).await.unwrap();
    assert!(!other.is_revoked(), "{other:?}");

    // Every bad request: 400 with {"err", "description"}.
    let other_idp = OpenIdProvider::start().await;
    let mut wrong_aud = set("set-aud", "carol", json!({SESSION_REVOKED: {}}));
    wrong_aud["aud"] = json!("https://elsewhere");
    let email = json!({
        "aud": AUDIENCE, "iat": now(), "jti": "set-email", "events": {SESSION_REVOKED: {}},
        "sub_id": {"format": "email", "email": "carol@example.com"},
    });
    let carol = set("set-c", "carol", json!({SESSION_REVOKED: {}}));
    let signed = |typ: Option<&str>, claims: Value| idp.token_with_typ(typ, claims);
    let cases: Vec<(&str, Option<&str>, &str, String, &str)> = vec![
        (
            "no bearer",
            None,
            ct,
            signed(Some("secevent+jwt"), carol.clone()),
            "authentication_failed",
        ),
        (
            "wrong bearer",
            Some("Bearer nope"),
            ct,
            signed(Some("secevent+jwt"), carol.clone()),
            "access_denied",
        ),
        (
            "wrong content type",
            auth,
            "application/jwt",
            signed(Some("secevent+jwt"), carol.clone()),
            "invalid_request",
        ),
        ("not a JWT", auth, ct, "garbage".into(), "invalid_request"),
        (
            "another issuer",
            auth,
            ct,
            other_idp.token_with_typ(Some("secevent+jwt"), carol.clone()),
            "invalid_issuer",
        ),
        (
            "the partner's SET on this stream",
            auth,
            ct,
            partner.token_with_typ(Some("secevent+jwt"), carol.clone()),
            "invalid_issuer",
        ),
        (
            "wrong audience",
            auth,
            ct,
            signed(Some("secevent+jwt"), wrong_aud),
            "invalid_audience",
        ),
        (
            "wrong typ",
            auth,
            ct,
            signed(Some("at+jwt"), carol.clone()),
            "invalid_request",
        ),
        (
            "no typ",
            auth,
            ct,
            signed(None, carol.clone()),
            "invalid_request",
        ),
        (
            "an email subject",
            auth,
            ct,
            signed(Some("secevent+jwt"), email),
            "invalid_request",
        ),
        ("oversized", auth, ct, "a".repeat(70_000), "invalid_request"),
    ];
    let version = stack.publisher.version();
    for (name, auth, content_type, body, err) in &cases {
        let (status, answer) = push(&http, *auth, content_type, body).await;
        assert_eq!(status, 400, "{name}: {answer}");
        assert_eq!(answer["err"], *err, "{name}: {answer}");
        assert!(
            !answer["description"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{name}"
        );
    }
    assert_eq!(stack.publisher.version(), version, "nothing was committed");
    let check = replica
        .check(&claims_of("carol", "c", before))
        .await
        .unwrap();
    assert!(!check.is_revoked());
    let metrics = http.metrics().await;
    for line in [
        "revocast_ssf_events_total{outcome=\"applied\"} 5".to_owned(),
        "revocast_ssf_events_total{outcome=\"ignored\"} 1".to_owned(),
        format!("revocast_ssf_sets_refused_total {}", cases.len()),
    ] {
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}
