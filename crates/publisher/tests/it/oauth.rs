//! The standard OAuth endpoints against a real publisher and NATS: RFC 7009
//! revocation and RFC 7662 introspection with client authentication, RFC 8414
//! metadata, every malformed request, and a real OAuth client library (Python's
//! authlib) as the caller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use revocast_core::http::{Committed, ErrorBody, Introspection};
use revocast_publisher::{Config, OAuthClient};
use revocast_testkit::NatsServer;
use serde_json::{Value, json};

use crate::common::{Http, config, now, start};

const KEY: &[u8] = b"issuer-secret";

fn oauth_config(server: &NatsServer) -> Config {
    let mut cfg = config(server);
    cfg.jwt_verify_key = Some(String::from_utf8(KEY.to_vec()).unwrap());
    cfg.oauth_clients = vec![
        "app-1:secret-1".parse::<OAuthClient>().unwrap(),
        "app-2:se:cret 2".parse::<OAuthClient>().unwrap(),
    ];
    cfg
}

fn token(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY),
    )
    .unwrap()
}

/// A token for `client` (in `client_id`), subject `sub`, issued a minute ago.
fn issued(jti: &str, client: &str, sub: &str) -> String {
    token(json!({
        "jti": jti, "exp": now() + 600, "iat": now() - 60, "sub": sub,
        "client_id": client, "scope": "read write", "iss": "https://idp.example",
    }))
}

/// `Authorization: Basic` for `id` and `secret`, form-encoded first (RFC 6749 2.3.1).
fn basic(id: &str, secret: &str) -> String {
    let encode = |s: &str| revocast_core::http::encode_path_segment(s);
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

async fn post_form(
    http: &Http,
    path: &str,
    auth: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = http.client.post(format!("{}{path}", http.base)).form(form);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// An authentication mistake: name, `Authorization`, extra form fields, the status,
/// the error and the `WWW-Authenticate` challenge expected.
type AuthCase = (
    &'static str,
    Option<String>,
    Vec<(&'static str, &'static str)>,
    u16,
    &'static str,
    Option<&'static str>,
);

fn error_of(body: &Value) -> String {
    let error: ErrorBody = serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("not an RFC 6749 error body ({e}): {body}"));
    assert!(!error.error_description.is_empty(), "{body}");
    error.error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_authenticate_and_revoke_only_their_own_tokens() {
    let server = NatsServer::start();
    let publisher = start(oauth_config(&server)).await;
    let http = Http::new(publisher.url());
    let app1 = basic("app-1", "secret-1");
    let revoke = "/oauth/revoke";

    // client_secret_basic, the client's own token.
    let mine = issued("t-basic", "app-1", "alice");
    let (status, body, headers) = post_form(
        &http,
        revoke,
        Some(&app1),
        &[("token", &mine), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let done: Committed = serde_json::from_value(body).unwrap();
    assert_eq!((done.version, done.revoked), (1, 1));
    assert_eq!(headers["cache-control"], "no-store");
    let (status, record) = http.get_admin("/v1/revocations/t-basic").await;
    assert_eq!(status, 200);
    assert_eq!(record["reason"], "oauth_revoke by app-1");

    // client_secret_post, and `azp` names the client as well as `client_id` does.
    let by_azp = token(json!({"jti": "t-post", "exp": now() + 600, "azp": "app-2"}));
    let (status, body, _) = post_form(
        &http,
        revoke,
        None,
        &[
            ("token", &by_azp),
            ("client_id", "app-2"),
            ("client_secret", "se:cret 2"),
        ],
    )
    .await;
    assert_eq!((status, body["revoked"].clone()), (200, json!(1)), "{body}");

    // Another client's token, or a token that names no client: refused, not revoked.
    let theirs = issued("t-theirs", "app-2", "bob");
    let anonymous = token(json!({"jti": "t-anon", "exp": now() + 600}));
    for token in [&theirs, &anonymous] {
        let (status, body, _) = post_form(&http, revoke, Some(&app1), &[("token", token)]).await;
        assert_eq!(
            (status, error_of(&body).as_str()),
            (400, "unauthorized_client")
        );
    }
    assert_eq!(http.get("/v1/revocations/t-theirs").await.0, 404);
    // The admin token revokes any token.
    let (status, _, _) = post_form(&http, revoke, Some("Bearer tok"), &[("token", &theirs)]).await;
    assert_eq!(status, 200);
    assert_eq!(http.get("/v1/revocations/t-theirs").await.0, 200);

    // Invalid tokens are "revoked with success" and change nothing (RFC 7009 2.2).
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"jti": "victim", "exp": now() + 600, "client_id": "app-1"}),
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    let expired = token(json!({"jti": "old", "exp": 1000, "client_id": "app-1"}));
    for token in ["garbage", "a.b.c", forged.as_str(), expired.as_str()] {
        let (status, body, _) = post_form(&http, revoke, Some(&app1), &[("token", token)]).await;
        assert_eq!(
            (status, body["noop"].clone()),
            (200, json!(true)),
            "{token}: {body}"
        );
    }
    assert_eq!(http.get("/v1/revocations/victim").await.0, 404);

    // A verified token the filter cannot hold: unsupported_token_type.
    let no_exp = token(json!({"jti": "no-exp", "client_id": "app-1"}));
    let no_jti = token(json!({"exp": now() + 600, "client_id": "app-1"}));
    let too_long = token(json!({"jti": "x", "exp": now() + 400 * 86_400, "client_id": "app-1"}));
    for token in [&no_exp, &no_jti, &too_long] {
        let (status, body, _) = post_form(&http, revoke, Some(&app1), &[("token", token)]).await;
        assert_eq!(
            (status, error_of(&body).as_str()),
            (400, "unsupported_token_type")
        );
    }

    // Authentication mistakes: RFC 6749 section 5.2.
    let valid = issued("t-auth", "app-1", "alice");
    let cases: [AuthCase; 9] = [
        (
            "no credentials",
            None,
            vec![],
            401,
            "invalid_client",
            Some("Basic realm=\"revocast\""),
        ),
        (
            "wrong secret",
            Some(basic("app-1", "nope")),
            vec![],
            401,
            "invalid_client",
            Some("Basic realm=\"revocast\""),
        ),
        (
            "unknown client",
            Some(basic("app-9", "secret-1")),
            vec![],
            401,
            "invalid_client",
            Some("Basic realm=\"revocast\""),
        ),
        (
            "not base64",
            Some("Basic !!!".into()),
            vec![],
            401,
            "invalid_client",
            Some("Basic realm=\"revocast\""),
        ),
        (
            "no colon",
            Some(format!("Basic {}", STANDARD.encode("app-1"))),
            vec![],
            401,
            "invalid_client",
            None,
        ),
        (
            "wrong admin token",
            Some("Bearer nope".into()),
            vec![],
            401,
            "invalid_client",
            Some("Bearer"),
        ),
        (
            "other scheme",
            Some("Digest x".into()),
            vec![],
            401,
            "invalid_client",
            None,
        ),
        (
            "post without secret",
            None,
            vec![("client_id", "app-1")],
            401,
            "invalid_client",
            None,
        ),
        (
            "both methods",
            Some(app1.clone()),
            vec![("client_id", "app-1"), ("client_secret", "secret-1")],
            400,
            "invalid_request",
            None,
        ),
    ];
    for (name, auth, extra, want_status, want_error, challenge) in cases {
        let mut form = vec![("token", valid.as_str())];
        form.extend(extra);
        let (status, body, headers) = post_form(&http, revoke, auth.as_deref(), &form).await;
        assert_eq!(status, want_status, "{name}: {body}");
        assert_eq!(error_of(&body), want_error, "{name}");
        if let Some(challenge) = challenge {
            assert_eq!(headers["www-authenticate"], challenge, "{name}");
        }
    }
    // Malformed forms.
    for (name, content_type, body, want) in [
        (
            "no token",
            "application/x-www-form-urlencoded",
            "token_type_hint=access_token",
            400,
        ),
        ("JSON", "application/json", "{\"token\":\"x\"}", 415),
        (
            "bad encoding",
            "application/x-www-form-urlencoded",
            "token=%zz&token=1",
            400,
        ),
    ] {
        let response = http
            .client
            .post(format!("{}{revoke}", http.base))
            .header("authorization", &app1)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, want, "{name}: {body}");
        error_of(&body);
    }
    assert_eq!(
        http.get("/v1/revocations/t-auth").await.0,
        404,
        "nothing above revoked it"
    );
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_answers_from_records_cutoffs_and_claims() {
    let server = NatsServer::start();
    let publisher = start(oauth_config(&server)).await;
    let http = Http::new(publisher.url());
    let app2 = basic("app-2", "se:cret 2");
    let introspect = |token: String| {
        let http = http.clone();
        let app2 = app2.clone();
        async move {
            let (status, body, headers) = post_form(
                &http,
                "/oauth/introspect",
                Some(&app2),
                &[("token", &token)],
            )
            .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(headers["cache-control"], "no-store");
            serde_json::from_value::<Introspection>(body.clone())
                .map(|i| (i, body))
                .unwrap()
        }
    };

    // Active: every claim RFC 7662 names, from the token (issued to another client:
    // a resource server introspects tokens that were not issued to it).
    let good = issued("i-good", "app-1", "alice");
    let (answer, _) = introspect(good.clone()).await;
    assert!(answer.active);
    assert_eq!(answer.sub.as_deref(), Some("alice"));
    assert_eq!(answer.client_id.as_deref(), Some("app-1"));
    assert_eq!(answer.scope.as_deref(), Some("read write"));
    assert_eq!(answer.iss.as_deref(), Some("https://idp.example"));
    assert_eq!(answer.jti.as_deref(), Some("i-good"));
    assert_eq!(answer.token_type.as_deref(), Some("Bearer"));
    // `scp` as a list is joined.
    let scp = token(json!({"jti": "i-scp", "exp": now() + 600, "scp": ["a", "b"]}));
    assert_eq!(introspect(scp).await.0.scope.as_deref(), Some("a b"));

    // Revoked, cut off, expired, not yet valid, forged, garbage: exactly {"active": false}.
    http.revoke("i-good").await;
    let (status, _) = http
        .post("/v1/cutoffs", json!({"sub": "bob", "not_before": now()}))
        .await;
    assert_eq!(status, 200);
    let cut = issued("i-cut", "app-1", "bob");
    let fresh_bob =
        token(json!({"jti": "i-new", "exp": now() + 600, "iat": now() + 5, "sub": "bob"}));
    let expired = token(json!({"jti": "i-old", "exp": now() - 3600}));
    let early = token(json!({"jti": "i-early", "exp": now() + 900, "nbf": now() + 600}));
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"jti": "i-forged", "exp": now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    for token in [good, cut, expired, early, forged, "garbage".to_owned()] {
        let (answer, body) = introspect(token.clone()).await;
        assert!(!answer.active, "{token}");
        assert_eq!(body, json!({"active": false}), "{token}");
    }
    // A token of the cut-off subject issued after the cutoff is active.
    assert!(introspect(fresh_bob).await.0.active);

    // Introspection needs client authentication too.
    let (status, body, _) = post_form(&http, "/oauth/introspect", None, &[("token", "x")]).await;
    assert_eq!((status, error_of(&body).as_str()), (401, "invalid_client"));
    publisher.shutdown().await.unwrap();

    // Without a verification key the publisher cannot tell a forged token: no
    // introspection at all, said plainly. (A namespace keeps its signing key: another
    // publisher with a new key gets its own server.)
    let server = NatsServer::start();
    let publisher = start(config(&server)).await;
    let http = Http::new(publisher.url());
    let (status, body, _) = post_form(
        &http,
        "/oauth/introspect",
        Some("Bearer tok"),
        &[("token", "x")],
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("--jwt-verify-key")
    );
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_advertises_the_endpoints() {
    let server = NatsServer::start();
    let mut cfg = oauth_config(&server);
    cfg.public_url = Some("https://revocast.example.com/".into());
    let publisher = start(cfg).await;
    let http = Http::new(publisher.url());
    let (status, body) = http.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "issuer": "https://revocast.example.com",
            "revocation_endpoint": "https://revocast.example.com/oauth/revoke",
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint": "https://revocast.example.com/oauth/introspect",
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": [],
        })
    );
    publisher.shutdown().await.unwrap();

    // Without a public URL: the request's Host; without a key: no introspection.
    let server = NatsServer::start();
    let publisher = start(config(&server)).await;
    let http = Http::new(publisher.url());
    let (status, body) = http.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["revocation_endpoint"],
        format!("{}/oauth/revoke", publisher.url())
    );
    assert!(body.get("introspection_endpoint").is_none(), "{body}");
    publisher.shutdown().await.unwrap();
}

fn python() -> PathBuf {
    let python = std::env::var_os("REVOCAST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let probe = Command::new(&python)
        .args(["-c", "import authlib, requests"])
        .output();
    match probe {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "{} with the authlib and requests packages is needed: this test drives the \
             publisher with a standard OAuth client library (`python3 -m pip install \
             authlib requests`; .ci/run installs them)",
            python.display()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_client_revokes_and_introspects() {
    let python = python();
    let server = NatsServer::start();
    let publisher = start(oauth_config(&server)).await;
    let http = Http::new(publisher.url());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oauth/authlib_client.py");
    let basic_token = issued("py-basic", "app-2", "alice");
    let post_token = issued("py-post", "app-2", "alice");
    let other_token = issued("py-other", "app-1", "bob");
    let base = publisher.url();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([
                &base,
                "app-2",
                "se:cret 2",
                &basic_token,
                &post_token,
                &other_token,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "authlib client failed:\n{stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));

    assert_eq!(seen["introspect_before"][0], 200);
    assert_eq!(seen["introspect_before"][1]["active"], true);
    assert_eq!(seen["introspect_before"][1]["client_id"], "app-2");
    assert_eq!(seen["revoke_basic"][0], 200, "{seen}");
    assert_eq!(seen["revoke_basic"][1]["revoked"], 1);
    assert_eq!(seen["revoke_basic"][2], "no-store");
    assert_eq!(seen["revoke_post"][0], 200, "{seen}");
    assert_eq!(seen["revoke_post"][1]["revoked"], 1);
    assert_eq!(seen["revoke_other"][0], 400);
    assert_eq!(seen["revoke_other"][1]["error"], "unauthorized_client");
    assert_eq!(seen["revoke_garbage"][0], 200);
    assert_eq!(seen["introspect_after"], json!([200, {"active": false}]));
    assert_eq!(seen["wrong_secret"][0], 401);
    assert_eq!(seen["wrong_secret"][1]["error"], "invalid_client");
    // What the library did is what the authority holds.
    assert_eq!(http.get("/v1/revocations/py-basic").await.0, 200);
    assert_eq!(http.get("/v1/revocations/py-post").await.0, 200);
    assert_eq!(http.get("/v1/revocations/py-other").await.0, 404);
    publisher.shutdown().await.unwrap();
}
