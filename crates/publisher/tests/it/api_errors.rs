//! Bad requests for every route, and the auth rules: each gets its 4xx with a JSON
//! `{"error", "error_description"}` body ([`ErrorBody`]), and the publisher keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use revocast_core::http::ErrorBody;
use revocast_testkit::NatsServer;
use serde_json::{Value, json};

use crate::common::{Http, config, now, start};

/// One request of the table.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    auth: Option<&'static str>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
}

fn case(name: &'static str, method: &'static str, path: &str) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        auth: Some("Bearer tok"),
        content_type: Some("application/json"),
        body: Vec::new(),
        status: 0,
        error: "",
    }
}

impl Case {
    fn json(mut self, v: Value) -> Case {
        self.body = v.to_string().into_bytes();
        self
    }
    fn raw(mut self, body: &[u8]) -> Case {
        self.body = body.to_vec();
        self
    }
    fn form(mut self, body: &str) -> Case {
        self.content_type = Some("application/x-www-form-urlencoded");
        self.body = body.as_bytes().to_vec();
        self
    }
    fn auth(mut self, auth: Option<&'static str>) -> Case {
        self.auth = auth;
        self
    }
    fn content_type(mut self, ct: Option<&'static str>) -> Case {
        self.content_type = ct;
        self
    }
    fn expect(mut self, status: u16, error: &'static str) -> Case {
        self.status = status;
        self.error = error;
        self
    }
}

/// An unsigned JWT with these claims (the publisher has no verification key here).
fn jwt(claims: Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.c2ln")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_4xx_and_the_publisher_keeps_serving() {
    let server = NatsServer::start();
    let publisher = start(config(&server)).await;
    let http = Http::new(publisher.url());
    let exp = now() + 3600;
    let rev = "/v1/revocations";
    let long = "x".repeat(257);
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"jti": format!("m{i}"), "exp": exp}))
        .collect();
    let huge = json!({"jti": "big", "exp": exp, "reason": "r".repeat(600 << 10)});
    let cases = vec![
        // Auth rules on every mutating route.
        case("no token", "POST", rev)
            .auth(None)
            .json(json!({"jti": "a", "exp": exp}))
            .expect(401, "unauthorized"),
        case("wrong token", "POST", rev)
            .auth(Some("Bearer nope"))
            .json(json!({"jti": "a", "exp": exp}))
            .expect(401, "unauthorized"),
        case("token prefix", "POST", rev)
            .auth(Some("Bearer to"))
            .json(json!({"jti": "a", "exp": exp}))
            .expect(401, "unauthorized"),
        case("basic auth", "POST", rev)
            .auth(Some("Basic dG9rOnRvaw=="))
            .json(json!({"jti": "a", "exp": exp}))
            .expect(401, "unauthorized"),
        case("cutoff without token", "POST", "/v1/cutoffs")
            .auth(None)
            .json(json!({"not_before": 1}))
            .expect(401, "unauthorized"),
        case("oauth without token", "POST", "/oauth/revoke")
            .auth(None)
            .form("token=x")
            .expect(401, "invalid_client"),
        // POST /v1/revocations.
        case("no content type", "POST", rev)
            .content_type(None)
            .json(json!({"jti": "a", "exp": exp}))
            .expect(415, "unsupported_media_type"),
        case("text/plain", "POST", rev)
            .content_type(Some("text/plain"))
            .json(json!({"jti": "a", "exp": exp}))
            .expect(415, "unsupported_media_type"),
        case("bad JSON", "POST", rev)
            .raw(b"{\"jti\": ")
            .expect(400, "invalid_json"),
        case("not an object", "POST", rev)
            .json(json!(["a"]))
            .expect(422, "invalid_revocation"),
        case("iat not a number", "GET", "/v1/revocations/a?iat=soon").expect(400, "invalid_query"),
        case("exp not a number", "POST", rev)
            .json(json!({"jti": "a", "exp": "tomorrow"}))
            .expect(422, "invalid_revocation"),
        case("missing jti", "POST", rev)
            .json(json!({"exp": exp}))
            .expect(422, "invalid_revocation"),
        case("exp as text", "POST", rev)
            .json(json!({"jti": "a", "exp": "tomorrow"}))
            .expect(422, "invalid_revocation"),
        case("negative exp", "POST", rev)
            .json(json!({"jti": "a", "exp": -5}))
            .expect(422, "invalid_revocation"),
        case("empty jti", "POST", rev)
            .json(json!({"jti": "", "exp": exp}))
            .expect(422, "invalid_jti"),
        case("long jti", "POST", rev)
            .json(json!({"jti": long, "exp": exp}))
            .expect(422, "invalid_jti"),
        case("long sub", "POST", rev)
            .json(json!({"jti": "a", "exp": exp, "sub": long}))
            .expect(422, "invalid_revocation"),
        case("empty sub", "POST", rev)
            .json(json!({"jti": "a", "exp": exp, "sub": ""}))
            .expect(422, "invalid_revocation"),
        case("long reason", "POST", rev)
            .json(json!({"jti": "a", "exp": exp, "reason": "r".repeat(1025)}))
            .expect(422, "invalid_revocation"),
        case("exp in milliseconds", "POST", rev)
            .json(json!({"jti": "a", "exp": exp * 1000}))
            .expect(422, "exp_too_far"),
        case("bulk not a list", "POST", rev)
            .json(json!({"revocations": {"jti": "a"}}))
            .expect(422, "invalid_revocation"),
        case("bulk empty", "POST", rev)
            .json(json!({"revocations": []}))
            .expect(422, "invalid_revocation"),
        case("bulk bad item", "POST", rev)
            .json(json!({"revocations": [{"jti": "ok", "exp": exp}, {"exp": exp}]}))
            .expect(422, "invalid_revocation"),
        case("bulk too many", "POST", rev)
            .json(json!({"revocations": many}))
            .expect(413, "too_many_revocations"),
        case("huge body", "POST", rev)
            .json(huge)
            .expect(413, "payload_too_large"),
        // GET /v1/revocations/{jti}.
        case("long jti lookup", "GET", &format!("/v1/revocations/{long}"))
            .expect(400, "invalid_jti"),
        // POST /oauth/revoke.
        case("oauth JSON", "POST", "/oauth/revoke")
            .json(json!({"token": "x"}))
            .expect(415, "unsupported_media_type"),
        case("oauth no token", "POST", "/oauth/revoke")
            .form("token_type_hint=access_token")
            .expect(400, "invalid_request"),
        case("oauth no jti", "POST", "/oauth/revoke")
            .form(&format!("token={}", jwt(json!({"exp": exp}))))
            .expect(400, "unsupported_token_type"),
        case("introspect JSON", "POST", "/oauth/introspect")
            .json(json!({"token": "x"}))
            .expect(415, "unsupported_media_type"),
        case("introspect no token", "POST", "/oauth/introspect")
            .form("client_id=a")
            .expect(400, "invalid_request"),
        // POST /v1/cutoffs.
        case("cutoff bad JSON", "POST", "/v1/cutoffs")
            .raw(b"nope")
            .expect(400, "invalid_json"),
        case("cutoff no not_before", "POST", "/v1/cutoffs")
            .json(json!({"sub": "a"}))
            .expect(422, "invalid_cutoff"),
        case("cutoff empty sub", "POST", "/v1/cutoffs")
            .json(json!({"sub": "", "not_before": 1}))
            .expect(422, "invalid_cutoff"),
        case("cutoff empty sid", "POST", "/v1/cutoffs")
            .json(json!({"sid": "", "not_before": 1}))
            .expect(422, "invalid_cutoff"),
        case("cutoff of a subject and a session", "POST", "/v1/cutoffs")
            .json(json!({"sub": "a", "sid": "s", "not_before": 1}))
            .expect(422, "invalid_cutoff"),
        case("cutoff sid too long", "POST", "/v1/cutoffs")
            .json(json!({"sid": "s".repeat(257), "not_before": 1}))
            .expect(422, "invalid_cutoff"),
        case("cutoff in the future", "POST", "/v1/cutoffs")
            .json(json!({"not_before": now() * 1000}))
            .expect(422, "not_before_in_future"),
        case("cutoff form", "POST", "/v1/cutoffs")
            .form("not_before=1")
            .expect(415, "unsupported_media_type"),
        // Routing.
        case("unknown route", "GET", "/v2/nothing").expect(404, "not_found"),
        case("wrong method", "DELETE", rev).expect(405, "method_not_allowed"),
        case("wrong method on stats", "POST", "/v1/stats").expect(405, "method_not_allowed"),
    ];
    for c in &cases {
        let mut request = http.client.request(
            c.method.parse().unwrap(),
            format!("{}{}", http.base, c.path),
        );
        if let Some(auth) = c.auth {
            request = request.header("authorization", auth);
        }
        if let Some(ct) = c.content_type {
            request = request.header("content-type", ct);
        }
        let (status, body) = http.send(request.body(c.body.clone())).await;
        assert_eq!(status, c.status, "{}: {body}", c.name);
        let error: ErrorBody = serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("{}: not the error body ({e}): {body}", c.name));
        assert_eq!(error.error, c.error, "{}: {body}", c.name);
        assert!(!error.error_description.is_empty(), "{}: {body}", c.name);
    }
    // Nothing above was committed, and the publisher still serves.
    assert_eq!(publisher.version(), 0);
    assert_eq!(http.revoke("still-fine").await, 1);
    // The authority's "not revoked" is an answer, not a rejection.
    let (status, body) = http.get("/v1/revocations/unknown").await;
    assert_eq!((status, body["revoked"].clone()), (404, json!(false)));
    let rejected = publisher.stats().revocations.requests_rejected;
    assert_eq!(rejected, cases.len() as u64);
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_revoke_reads_the_token_and_verifies_it_when_a_key_is_set() {
    let server = NatsServer::start();
    let mut cfg = config(&server);
    cfg.jwt_verify_key = Some("issuer-secret".into());
    let publisher = start(cfg).await;
    let http = Http::new(publisher.url());
    let exp = now() + 600;
    let claims = json!({"jti": "oauth-1", "exp": exp, "sub": "carol"});
    let good = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"issuer-secret"),
    )
    .unwrap();
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"jti": "victim", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    let form = |token: &str| {
        http.client
            .post(format!("{}/oauth/revoke", http.base))
            .bearer_auth("tok")
            .form(&[("token", token), ("token_type_hint", "access_token")])
    };
    let (status, body) = http.send(form(&good)).await;
    assert_eq!((status, body["version"].clone()), (200, json!(1)), "{body}");
    // A token that does not verify is "revoked with success" and changes nothing
    // (RFC 7009 section 2.2).
    let (status, body) = http.send(form(&forged)).await;
    assert_eq!((status, body["noop"].clone()), (200, json!(true)), "{body}");
    let (status, body) = http.get_admin("/v1/revocations/oauth-1").await;
    assert_eq!(status, 200);
    assert_eq!(body["sub"], "carol");
    assert_eq!(body["exp"], exp);
    let (status, _) = http.get("/v1/revocations/victim").await;
    assert_eq!(status, 404);
    // An expired token: a no-op success (RFC 7009: the token is invalid already).
    let old = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"jti": "old", "exp": 1000}),
        &jsonwebtoken::EncodingKey::from_secret(b"issuer-secret"),
    )
    .unwrap();
    let (status, body) = http.send(form(&old)).await;
    assert_eq!((status, body["noop"].clone()), (200, json!(true)), "{body}");
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_loopback_is_open_and_other_addresses_are_refused() {
    let server = NatsServer::start();
    let mut cfg = config(&server);
    cfg.admin_token = None;
    let publisher = start(cfg.clone()).await;
    let http = Http::new(publisher.url());
    let (status, body) = http
        .send(
            http.client
                .post(format!("{}/v1/revocations", http.base))
                .json(&json!({"jti": "open", "exp": now() + 60})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    publisher.shutdown().await.unwrap();

    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let err = revocast_publisher::Publisher::start(cfg.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, revocast_publisher::Error::InsecureListen(_)),
        "{err}"
    );
    cfg.insecure_no_auth = true;
    let allowed = start(cfg).await;
    allowed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_and_a_late_nats() {
    let server = NatsServer::start();
    let publisher = start(config(&server)).await;
    let http = Http::new(publisher.url());
    assert_eq!(http.get("/healthz").await, (200, json!({"status": "ok"})));
    assert_eq!(
        http.get("/readyz").await,
        (200, json!({"ready": true, "version": 0}))
    );
    publisher.shutdown().await.unwrap();

    // Not ready while NATS is unreachable; healthy all the same.
    let port = crate::common::free_port();
    let cfg = revocast_publisher::Config::for_tests(format!("nats://127.0.0.1:{port}")).unwrap();
    let waiting = revocast_publisher::Publisher::start(cfg).await.unwrap();
    let http = Http::new(waiting.url());
    assert_eq!(http.get("/healthz").await.0, 200);
    let (status, body) = http.get("/readyz").await;
    assert_eq!((status, body["ready"].clone()), (503, json!(false)));
    let (status, body) = http
        .post(
            "/v1/revocations",
            json!({"jti": "early", "exp": now() + 60}),
        )
        .await;
    assert_eq!((status, body["error"].clone()), (503, json!("not_ready")));
    // The OAuth revocation endpoint says when to retry (RFC 7009 section 2.2.1).
    let response = http
        .client
        .post(format!("{}/oauth/revoke", http.base))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    // NATS comes up later (docker compose starts both at once): the publisher follows.
    let server = tokio::task::block_in_place(|| NatsServer::builder().port(port).start());
    crate::common::eventually("ready once NATS is up", || async {
        let (status, _) = http.get("/readyz").await;
        (status == 200).then_some(())
    })
    .await;
    assert_eq!(http.revoke("late-start").await, 1);
    within_bound(waiting.shutdown()).await.unwrap();
    drop(server);
}

async fn within_bound<T>(f: impl std::future::Future<Output = T>) -> T {
    crate::common::within("a bounded shutdown", f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_stay_under_the_servers_max_payload() {
    let server = NatsServer::builder().config("max_payload: 65536").start();
    let publisher = start(config(&server)).await;
    let http = Http::new(publisher.url());
    let exp = now() + 3600;
    let big: Vec<Value> = (0..500)
        .map(|i| json!({"jti": format!("big-{i}"), "exp": exp, "reason": "r".repeat(200)}))
        .collect();
    let (status, body) = http
        .post("/v1/revocations", json!({"revocations": big}))
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (413, json!("payload_too_large")),
        "{body}"
    );
    // Many concurrent calls that fit one by one are spread over several deltas.
    let calls = (0..40).map(|c| {
        let http = http.clone();
        async move {
            let list: Vec<Value> = (0..20)
                .map(|i| json!({"jti": format!("c{c}-{i}"), "exp": exp, "reason": "r".repeat(100)}))
                .collect();
            http.post("/v1/revocations", json!({"revocations": list}))
                .await
        }
    });
    for (status, body) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    let stats = publisher.stats();
    assert_eq!(stats.revocations.added, 800);
    assert_eq!(stats.deltas.failed, 0);
    publisher.shutdown().await.unwrap();
}
