//! The verifier against a real OpenID provider on loopback (the testkit's
//! [`OpenIdProvider`]: discovery, a JWKS, ES256 RFC 9068 tokens).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::ready;
use std::time::Duration;

use revocast_testkit::{OpenIdProvider, eventually, now_secs};
use revocast_verifier::jsonwebtoken::{Algorithm, EncodingKey, Header};
use revocast_verifier::{ConfigError, IssuerOptions, StaticKey, Verifier, VerifyError};
use serde_json::{Value, json};

const AUD: &str = "orders-api";
const HOUR: Duration = Duration::from_secs(3600);

/// Discovery with fast retries; the cooldown as given.
fn options(idp: &OpenIdProvider, cooldown: Duration) -> IssuerOptions {
    IssuerOptions::discover(idp.issuer())
        .audience(AUD)
        .require_at_jwt(true)
        .cooldown(cooldown)
        .retry(Duration::from_millis(20), Duration::from_millis(100))
}

async fn ready_verifier(options: Vec<IssuerOptions>) -> Verifier {
    let verifier = Verifier::new(options).unwrap();
    eventually("keys fetched", || ready(verifier.is_ready())).await;
    verifier
}

async fn verify(verifier: &Verifier, token: &str) -> Result<Value, VerifyError> {
    verifier.verify::<Value>(token).await.map(|v| v.claims)
}

#[tokio::test]
async fn discovers_the_keys_and_verifies_access_tokens() {
    let idp = OpenIdProvider::start().await;
    let verifier = ready_verifier(vec![options(&idp, HOUR)]).await;

    let claims = verify(&verifier, &idp.access_token("alice", AUD, "t-1", 600))
        .await
        .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "test-client");
    assert_eq!(idp.discovery_fetches(), 1);

    // aud, exp and the signature are checked.
    let other_aud = verify(&verifier, &idp.access_token("alice", "billing", "t-2", 600)).await;
    assert!(
        matches!(other_aud, Err(VerifyError::Jwt(_))),
        "{other_aud:?}"
    );
    let expired = idp.token(json!({"sub": "a", "aud": AUD, "jti": "t-3", "exp": now_secs() - 120}));
    let expired = verify(&verifier, &expired).await.unwrap_err();
    assert!(expired.is_expired(), "{expired}");
    let token = idp.access_token("alice", AUD, "t-4", 600);
    let at = token.rfind('.').unwrap() + 1;
    let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
    assert!(verify(&verifier, &tampered).await.is_err());
    // A token without aud when one is required.
    let no_aud = idp.token(json!({"sub": "a", "jti": "t-5", "exp": now_secs() + 60}));
    assert!(verify(&verifier, &no_aud).await.is_err());
}

#[tokio::test]
async fn follows_a_key_rotation_while_running() {
    let idp = OpenIdProvider::start().await;
    let verifier = ready_verifier(vec![options(&idp, Duration::ZERO)]).await;
    let before = idp.access_token("alice", AUD, "r-1", 600);
    verify(&verifier, &before).await.unwrap();

    let kid = idp.rotate();
    assert_eq!(kid, "key-1");
    let after = idp.access_token("bob", AUD, "r-2", 600);
    assert_eq!(verify(&verifier, &after).await.unwrap()["sub"], "bob");
    // The old key is still published: its tokens still verify.
    verify(&verifier, &before).await.unwrap();

    // The old key retired: its tokens are refused once the set is fetched again.
    idp.publish(&[1]);
    let unknown = idp.sign_with(2, json!({"aud": AUD, "jti": "r-3", "exp": now_secs() + 60}));
    assert!(matches!(
        verify(&verifier, &unknown).await,
        Err(VerifyError::UnknownKey { .. })
    ));
    assert!(verify(&verifier, &before).await.is_err());
    verify(&verifier, &after).await.unwrap();
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_cooldown() {
    let idp = OpenIdProvider::start().await;
    // No refetch on the verifier's own schedule during the test.
    let verifier = ready_verifier(vec![options(&idp, HOUR).refresh_period(HOUR, HOUR, HOUR)]).await;
    let start = idp.jwks_fetches();
    // The first fetch is younger than the cooldown: no refetch at all.
    let unknown = idp.sign_with(2, json!({"aud": AUD, "jti": "u-1", "exp": now_secs() + 60}));
    for _ in 0..5 {
        let error = verify(&verifier, &unknown).await.unwrap_err();
        assert!(
            matches!(&error, VerifyError::UnknownKey { kid: Some(k), .. } if k == "key-2"),
            "{error}"
        );
    }
    assert_eq!(idp.jwks_fetches(), start);

    // With a cooldown of zero, each unknown kid refetches once, and concurrent ones
    // share the fetch or skip it.
    let verifier = ready_verifier(vec![options(&idp, Duration::ZERO)]).await;
    let start = idp.jwks_fetches();
    let checks: Vec<_> = (0..8)
        .map(|_| {
            let (verifier, unknown) = (verifier.clone(), unknown.clone());
            tokio::spawn(async move { verify(&verifier, &unknown).await })
        })
        .collect();
    for check in checks {
        let result = check.await.unwrap();
        assert!(
            matches!(result, Err(VerifyError::UnknownKey { .. })),
            "{result:?}"
        );
    }
    let fetched = idp.jwks_fetches() - start;
    assert!((1..=8).contains(&fetched), "{fetched} fetches");
    // Known kids never wait for a fetch and never cause one.
    let start = idp.jwks_fetches();
    verify(&verifier, &idp.access_token("a", AUD, "u-2", 60))
        .await
        .unwrap();
    assert_eq!(idp.jwks_fetches(), start);
}

#[tokio::test]
async fn a_jwks_down_at_startup_is_retried_until_it_answers() {
    let idp = OpenIdProvider::start().await;
    idp.set_up(false);
    let verifier = Verifier::new(vec![options(&idp, Duration::ZERO)]).unwrap();
    let token = idp.access_token("alice", AUD, "d-1", 600);
    eventually("a failed fetch", || ready(idp.discovery_fetches() >= 2)).await;
    let error = verify(&verifier, &token).await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(error.to_string().contains("status 503"), "{error}");
    assert!(!verifier.is_ready());

    idp.set_up(true);
    eventually("the token verifies once the provider is up", || async {
        verify(&verifier, &token).await.is_ok()
    })
    .await;
    assert!(verifier.is_ready());
}

#[tokio::test]
async fn the_last_good_key_set_stays_when_a_fetch_fails() {
    let idp = OpenIdProvider::start().await;
    let verifier = ready_verifier(vec![options(&idp, Duration::ZERO)]).await;
    let token = idp.access_token("alice", AUD, "l-1", 600);
    verify(&verifier, &token).await.unwrap();

    idp.set_up(false);
    let unknown = idp.sign_with(2, json!({"aud": AUD, "jti": "l-2", "exp": now_secs() + 60}));
    let before = idp.jwks_fetches();
    assert!(verify(&verifier, &unknown).await.is_err());
    assert!(
        idp.jwks_fetches() > before,
        "the unknown kid caused a fetch"
    );
    let status = &verifier.status()[0];
    assert!(status.ready && status.keys == 1, "{status:?}");
    assert!(
        status.last_error.as_deref().unwrap().contains("503"),
        "{status:?}"
    );
    verify(&verifier, &token).await.unwrap();
}

#[tokio::test]
async fn keys_are_refreshed_in_the_background_after_max_age() {
    let idp = OpenIdProvider::start().await;
    idp.set_max_age(Some(0));
    let verifier = ready_verifier(vec![options(&idp, HOUR).refresh_period(
        Duration::from_millis(50),
        Duration::from_secs(1),
        HOUR,
    )])
    .await;
    idp.publish(&[0, 2]);
    let token = idp.sign_with(2, json!({"aud": AUD, "jti": "b-1", "exp": now_secs() + 60}));
    // The cooldown (an hour) rules out a refetch for the kid: only the refresher can
    // bring key-2.
    eventually("key-2 arrives with a scheduled refresh", || async {
        verify(&verifier, &token).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let idp = OpenIdProvider::start().await;
    idp.advertise_issuer("https://evil.example");
    let verifier = Verifier::new(vec![options(&idp, Duration::ZERO)]).unwrap();
    let token = idp.access_token("alice", AUD, "m-1", 600);
    eventually("discovery tried", || ready(idp.discovery_fetches() >= 1)).await;
    let error = verify(&verifier, &token).await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("names issuer \"https://evil.example\"") && text.contains("expected exactly"),
        "{text}"
    );
    assert_eq!(idp.jwks_fetches(), 0, "no keys from a mismatched document");
}

#[tokio::test]
async fn the_tokens_issuer_picks_the_keys_and_unknown_issuers_are_refused() {
    let a = OpenIdProvider::start().await;
    let b = OpenIdProvider::start().await;
    let c = OpenIdProvider::start().await;
    let verifier = ready_verifier(vec![
        options(&a, HOUR),
        IssuerOptions::jwks_uri(b.issuer(), b.jwks_uri()).audience(AUD),
    ])
    .await;
    let from_a = verifier
        .verify::<Value>(&a.access_token("alice", AUD, "i-1", 60))
        .await
        .unwrap();
    assert_eq!(from_a.issuer, 0);
    let from_b = verifier
        .verify::<Value>(&b.access_token("bob", AUD, "i-2", 60))
        .await
        .unwrap();
    assert_eq!(from_b.issuer, 1);
    assert_eq!(
        b.discovery_fetches(),
        0,
        "a jwks_uri issuer needs no discovery"
    );

    let error = verify(&verifier, &c.access_token("carol", AUD, "i-3", 60))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, VerifyError::UnknownIssuer(iss) if *iss == c.issuer()),
        "{error}"
    );
    // A token claiming issuer A but signed by C's key (same kid name) does not verify.
    let forged =
        c.token(json!({"iss": a.issuer(), "aud": AUD, "jti": "i-4", "exp": now_secs() + 60}));
    assert!(verify(&verifier, &forged).await.is_err());
    // No iss at all.
    let no_iss = a.token(json!({"iss": null, "aud": AUD, "jti": "i-5", "exp": now_secs() + 60}));
    assert!(verify(&verifier, &no_iss).await.is_err());
}

#[tokio::test]
async fn algorithms_come_from_the_key_and_malformed_tokens_are_refused() {
    let idp = OpenIdProvider::start().await;
    let verifier = ready_verifier(vec![options(&idp, HOUR)]).await;
    let b64 = |s: &str| {
        use std::fmt::Write as _;
        // base64url without padding, by hand: the test needs no base64 crate.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = s.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                let _ = out.write_char(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    };
    let payload = b64(
        &json!({"iss": idp.issuer(), "aud": AUD, "jti": "n", "exp": now_secs() + 60}).to_string(),
    );
    let none = format!(
        "{}.{payload}.",
        b64(r#"{"alg":"none","typ":"at+jwt","kid":"key-0"}"#)
    );
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c",
        none.as_str(),
        &format!("{}.{payload}.sig", b64("not json")),
        &format!("{}.%%%.sig", b64(r#"{"alg":"ES256"}"#)),
    ] {
        let error = verify(&verifier, token).await.unwrap_err();
        assert!(
            matches!(error, VerifyError::Malformed(_)),
            "{token:?}: {error}"
        );
    }

    // HS256 with the provider's public key as the secret: the key is ES256 only.
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("key-0".into());
    let confused = revocast_verifier::jsonwebtoken::encode(
        &header,
        &json!({"iss": idp.issuer(), "aud": AUD, "jti": "c", "exp": now_secs() + 60}),
        &EncodingKey::from_secret(b"public key bytes"),
    )
    .unwrap();
    let error = verify(&verifier, &confused).await.unwrap_err();
    assert!(
        matches!(
            error,
            VerifyError::AlgorithmNotAllowed {
                alg: Algorithm::HS256,
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn static_keys_and_the_at_jwt_type() {
    let secret = b"a-test-secret-of-some-length-here";
    let verifier = Verifier::new(vec![
        IssuerOptions::static_keys(None, vec![StaticKey::hs256(secret)]).require_at_jwt(true),
    ])
    .unwrap();
    assert!(verifier.is_ready());
    let sign = |typ: Option<&str>| {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = typ.map(str::to_owned);
        revocast_verifier::jsonwebtoken::encode(
            &header,
            &json!({"sub": "s", "jti": "j", "exp": now_secs() + 60}),
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    verify(&verifier, &sign(Some("at+jwt"))).await.unwrap();
    verify(&verifier, &sign(Some("application/at+jwt")))
        .await
        .unwrap();
    for typ in [Some("JWT"), None] {
        let error = verify(&verifier, &sign(typ)).await.unwrap_err();
        assert!(matches!(error, VerifyError::WrongType(_)), "{error}");
    }
}

#[tokio::test]
async fn bad_configurations_are_typed_errors() {
    let cases: Vec<(Vec<IssuerOptions>, &str)> = vec![
        (vec![], "no issuer"),
        (
            vec![
                IssuerOptions::discover("https://a.example"),
                IssuerOptions::discover("https://a.example"),
            ],
            "twice",
        ),
        (
            vec![IssuerOptions::discover("idp.example.com")],
            "not an http",
        ),
        (vec![IssuerOptions::discover("https://")], "not an http"),
        (
            vec![IssuerOptions::jwks_uri(
                "https://a.example",
                "file:///etc/jwks",
            )],
            "jwks_uri",
        ),
        (
            vec![IssuerOptions::static_keys(Some("x".into()), vec![])],
            "empty",
        ),
        (
            vec![
                IssuerOptions::static_keys(None, vec![StaticKey::hs256(b"a")]),
                IssuerOptions::static_keys(None, vec![StaticKey::hs256(b"b")]),
            ],
            "only one key set",
        ),
    ];
    for (options, want) in cases {
        let error: ConfigError = Verifier::new(options).unwrap_err();
        assert!(error.to_string().contains(want), "{error} lacks {want:?}");
    }
}

#[tokio::test]
async fn a_token_verified_before_still_expires() {
    let idp = OpenIdProvider::start().await;
    let verifier = ready_verifier(vec![options(&idp, HOUR).leeway(0)]).await;
    let token = idp.token(json!({"sub": "a", "aud": AUD, "jti": "x-1", "exp": now_secs() + 2}));
    // Verified, then answered again (from the cache of verified tokens).
    verify(&verifier, &token).await.unwrap();
    verify(&verifier, &token).await.unwrap();
    eventually(
        "the token expires even though it was verified before",
        || async { matches!(verify(&verifier, &token).await, Err(e) if e.is_expired()) },
    )
    .await;
}
