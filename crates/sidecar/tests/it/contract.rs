//! The sidecar over HTTP, with a real nats-server and publisher (the testkit's
//! `Stack`) and a real OpenID provider on loopback: the forward-auth contract,
//! introspection, staleness, and every malformed input (headers, bodies,
//! credentials, flags).

use std::time::Duration;

use reqwest::StatusCode;
use revocast_sidecar::config::ClientCredentials;
use revocast_sidecar::{App, Config, Error};
use revocast_subscriber::Policy;
use revocast_testkit::{OpenIdProvider, Proxy, Stack, eventually, now_secs};
use revocast_verifier::IssuerOptions;
use serde_json::{Value, json};

const AUD: &str = "orders-api";

/// A sidecar serving on a loopback port; stopped on drop.
struct Sidecar {
    url: String,
    app: App,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Sidecar {
    async fn start(config: Config) -> Sidecar {
        let app = App::start(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = revocast_sidecar::app::router(app.clone());
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Sidecar {
            url,
            app,
            http: revocast_verifier::http_client().unwrap(),
            _stop: stop,
        }
    }

    async fn ready(&self) {
        eventually("the sidecar is ready", || {
            std::future::ready(self.app.is_ready())
        })
        .await;
    }

    async fn check(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", "/orders/7")
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }
}

fn issuer(idp: &OpenIdProvider) -> IssuerOptions {
    IssuerOptions::discover(idp.issuer())
        .audience(AUD)
        .require_at_jwt(true)
        .retry(Duration::from_millis(20), Duration::from_millis(200))
}

fn config(stack: &Stack, nats: String, idp: &OpenIdProvider) -> Config {
    let mut config = Config::new(nats, stack.publisher.public_key(), vec![issuer(idp)]);
    config.namespace = stack.publisher.namespace().clone();
    config
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_answers_200_with_identity_401_or_nothing_else() {
    let stack = Stack::start().await;
    let idp = OpenIdProvider::start().await;
    let other = OpenIdProvider::start().await;
    let sidecar = Sidecar::start(config(&stack, stack.nats.url(), &idp)).await;
    sidecar.ready().await;
    let good = format!("Bearer {}", idp.access_token("alice", AUD, "side-1", 600));

    for (method, path) in [
        (reqwest::Method::GET, "/check"),
        (reqwest::Method::POST, "/check/"),
        (reqwest::Method::DELETE, "/check/orders/7"),
        (reqwest::Method::PUT, "/check/a/b/c?x=1"),
        (reqwest::Method::PATCH, "/check"),
        (reqwest::Method::OPTIONS, "/check/x"),
        (reqwest::Method::HEAD, "/check"),
    ] {
        let response = sidecar.check(method.clone(), path, Some(&good)).await;
        assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
        assert_eq!(header(&response, "x-auth-subject"), Some("alice"));
        assert_eq!(header(&response, "x-auth-jti"), Some("side-1"));
        assert_eq!(header(&response, "x-auth-client-id"), Some("test-client"));
        assert_eq!(header(&response, "x-auth-scope"), Some("read write"));
    }

    // Missing: a bare challenge. Everything else wrong: invalid_token.
    let response = sidecar.check(reqwest::Method::GET, "/check", None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "www-authenticate"), Some("Bearer"));
    let other_issuer = format!("Bearer {}", other.access_token("eve", AUD, "side-2", 600));
    let wrong_aud = format!(
        "Bearer {}",
        idp.access_token("alice", "billing", "side-3", 600)
    );
    let expired = format!(
        "Bearer {}",
        idp.token(json!({"sub": "a", "aud": AUD, "jti": "side-4", "exp": now_secs() - 300}))
    );
    for (auth, code) in [
        ("Basic dXNlcjpwYXNz", "missing_token"),
        ("Bearer", "missing_token"),
        ("Bearer    ", "missing_token"),
        ("Token abc", "missing_token"),
        ("Bearer not-a-jwt", "invalid_token"),
        ("Bearer a.b.c", "invalid_token"),
        ("Bearer eyJhbGciOiJub25lIn0.e30.", "invalid_token"),
        (other_issuer.as_str(), "invalid_token"),
        (wrong_aud.as_str(), "invalid_token"),
        (expired.as_str(), "expired"),
    ] {
        let response = sidecar
            .check(reqwest::Method::GET, "/check", Some(auth))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth}");
        let challenge = header(&response, "www-authenticate").unwrap().to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        if code != "missing_token" {
            assert!(
                challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
                "{challenge}"
            );
        }
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{auth}");
    }
    // Bytes that are not text in the header.
    let response = sidecar
        .http
        .get(format!("{}/check", sidecar.url))
        .header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Revoked through the publisher: 401 revoked once the delta arrives.
    stack.revoke("side-1", now_secs() + 600).await;
    eventually("the revocation reaches the sidecar", || async {
        sidecar
            .check(reqwest::Method::GET, "/check", Some(&good))
            .await
            .status()
            == StatusCode::UNAUTHORIZED
    })
    .await;
    let body: Value = sidecar
        .check(reqwest::Method::GET, "/check", Some(&good))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"], "revoked");

    // Health, readiness, stats, metrics.
    assert_eq!(sidecar.get("/healthz").await.status(), StatusCode::OK);
    let ready = sidecar.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let stats: Value = sidecar.get("/stats").await.json().await.unwrap();
    assert_eq!(stats["ready"], true);
    // Seven checks were answered 200 on purpose; a poll of the wait above that ran
    // before the revocation arrived was answered 200 too.
    let allowed = stats["answers"]["allowed"].as_u64().unwrap();
    assert!(allowed >= 7, "{stats}");
    assert_eq!(stats["issuers"][0]["issuer"], idp.issuer().as_str());
    assert!(stats["replicas"][0]["checks"].as_u64().unwrap() >= 8);
    let metrics = sidecar.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!(
            "revocast_sidecar_checks_total{{result=\"allowed\"}} {allowed}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("revocast_replica_ready{namespace="),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "revocast_verifier_ready{{issuer=\"{}\"}} 1",
            idp.issuer()
        )),
        "{metrics}"
    );
    // No introspection credentials: no introspection route.
    let response = sidecar
        .http
        .post(format!("{}/introspect", sidecar.url))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_take_the_configured_prefix() {
    let stack = Stack::start().await;
    let idp = OpenIdProvider::start().await;
    let mut config = config(&stack, stack.nats.url(), &idp);
    config.header_prefix = "X-User-".into();
    let sidecar = Sidecar::start(config).await;
    sidecar.ready().await;
    let token = idp.token(json!({
        "sub": "bob", "aud": AUD, "jti": "pfx-1", "exp": now_secs() + 60,
        "azp": "spa-client", "scp": ["orders:read", "orders:write"],
    }));
    let response = sidecar
        .check(
            reqwest::Method::GET,
            "/check",
            Some(&format!("Bearer {token}")),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-user-subject"), Some("bob"));
    assert_eq!(header(&response, "x-user-client-id"), Some("spa-client"));
    assert_eq!(
        header(&response, "x-user-scope"),
        Some("orders:read orders:write")
    );
    assert_eq!(header(&response, "x-auth-subject"), None);
    // A subject that cannot be a header value is sent empty, the rest stays.
    let token = idp
        .token(json!({"sub": "line\nbreak", "aud": AUD, "jti": "pfx-2", "exp": now_secs() + 60}));
    let response = sidecar
        .check(
            reqwest::Method::GET,
            "/check",
            Some(&format!("Bearer {token}")),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-user-subject"), Some(""));
    assert_eq!(header(&response, "x-user-jti"), Some("pfx-2"));
    // Claims the token lacks: empty headers, never absent.
    assert_eq!(header(&response, "x-user-scope"), Some(""));
    assert_eq!(header(&response, "x-user-client-id"), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_answers_rfc7662_to_authenticated_clients_only() {
    let stack = Stack::start().await;
    let idp = OpenIdProvider::start().await;
    let mut config = config(&stack, stack.nats.url(), &idp);
    config.introspection_client = Some(ClientCredentials {
        id: "kong".into(),
        secret: "s3cret".into(),
    });
    let sidecar = Sidecar::start(config).await;
    sidecar.ready().await;
    let url = format!("{}/introspect", sidecar.url);
    let token = idp.access_token("alice", AUD, "intro-1", 600);

    // Client authentication.
    for (user, pass) in [
        (Some("kong"), Some("wrong")),
        (Some("other"), Some("s3cret")),
        (Some("kong"), None),
        (None, None),
    ] {
        let mut request = sidecar.http.post(&url).form(&[("token", token.as_str())]);
        if let Some(user) = user {
            request = request.basic_auth(user, pass);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{user:?}:{pass:?}"
        );
        assert_eq!(
            header(&response, "www-authenticate"),
            Some("Basic realm=\"revocast\"")
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
    }
    let response = sidecar
        .http
        .post(&url)
        .bearer_auth(&token)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Malformed bodies.
    let post = || sidecar.http.post(&url).basic_auth("kong", Some("s3cret"));
    let bad_bodies = [
        post().form(&[("token_type_hint", "access_token")]),
        post().form(&[("token", "")]),
        post().json(&json!({"token": token})),
        post().body("token=abc"),
        post()
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![0xff, 0xfe, b'=', 0x00]),
        post()
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![b'a'; 70 * 1024]),
    ];
    for request in bad_bodies {
        let response = request.send().await.unwrap();
        let status = response.status();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
            "{status}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{body}");
    }
    let response = sidecar
        .http
        .get(&url)
        .basic_auth("kong", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

    // Active.
    let response = post()
        .form(&[
            ("token", token.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["jti"], "intro-1");
    assert_eq!(body["iss"], idp.issuer().as_str());
    assert_eq!(body["client_id"], "test-client");
    assert_eq!(body["scope"], "read write");
    assert!(body["exp"].as_u64().unwrap() > now_secs());
    assert!(body["iat"].as_u64().is_some());

    // Inactive is exactly {"active": false}: garbage, other issuers, revoked.
    let other = OpenIdProvider::start().await;
    let foreign = other.access_token("eve", AUD, "intro-2", 600);
    stack.revoke("intro-1", now_secs() + 600).await;
    eventually("the revocation reaches the sidecar", || async {
        let body: Value = post()
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body == json!({"active": false})
    })
    .await;
    for t in ["garbage", "a.b.c", foreign.as_str()] {
        let body: Value = post()
            .form(&[("token", t)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body, json!({"active": false}), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_replica_answers_503_under_fail_closed() {
    let stack = Stack::start().await;
    let idp = OpenIdProvider::start().await;
    let proxy = Proxy::start(stack.nats.port());
    let mut config = config(&stack, proxy.url(), &idp);
    config.policy = Policy::FailClosed;
    config.max_staleness = Duration::from_millis(800);
    config.confirm_timeout = Duration::from_millis(200);
    let sidecar = Sidecar::start(config).await;
    sidecar.ready().await;
    let good = format!("Bearer {}", idp.access_token("alice", AUD, "stale-1", 600));
    assert_eq!(
        sidecar
            .check(reqwest::Method::GET, "/check", Some(&good))
            .await
            .status(),
        StatusCode::OK
    );

    proxy.cut();
    let response = eventually("503 once stale", || async {
        let response = sidecar
            .check(reqwest::Method::GET, "/check", Some(&good))
            .await;
        (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
    })
    .await;
    assert_eq!(header(&response, "retry-after"), Some("1"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "revocation_status_unavailable");
    let metrics = sidecar.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("revocast_replica_stale{namespace="),
        "{metrics}"
    );

    proxy.restore();
    eventually("200 once back in sync", || async {
        sidecar
            .check(reqwest::Method::GET, "/check", Some(&good))
            .await
            .status()
            == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn bad_configurations_fail_at_start() {
    let key = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik"
        .parse()
        .unwrap();
    let issuer = || IssuerOptions::discover("https://idp.example.com").audience(AUD);
    let mut prefix = Config::new("nats://127.0.0.1:1", key, vec![issuer()]);
    prefix.header_prefix = "X Auth".into();
    let mut staleness = Config::new("nats://127.0.0.1:1", key, vec![issuer()]);
    staleness.max_staleness = Duration::ZERO;
    let mut unknown = Config::new("nats://127.0.0.1:1", key, vec![issuer()]);
    unknown.issuer_namespaces = vec![("https://other.example".into(), "b".parse().unwrap())];
    let none = Config::new("nats://127.0.0.1:1", key, vec![]);
    let bad_url = Config::new(
        "nats://127.0.0.1:1",
        key,
        vec![IssuerOptions::discover("idp.example.com")],
    );
    for (config, want) in [
        (prefix, "header prefix"),
        (staleness, "above 0"),
        (unknown, "not an --issuer"),
        (none, "at least one"),
        (bad_url, "not an http"),
    ] {
        let error: Error = App::start(config).await.unwrap_err();
        assert!(error.to_string().contains(want), "{error} lacks {want:?}");
    }
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    let key = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik";
    let cases: &[(&[&str], &str)] = &[
        (&["--issuer", "https://idp.example.com"], "--publisher-key"),
        (
            &[
                "--publisher-key",
                "nope",
                "--issuer",
                "https://i.example",
                "--audience",
                "a",
            ],
            "publisher-key",
        ),
        (
            &["--publisher-key", key, "--issuer", "https://i.example"],
            "--audience",
        ),
        (
            &[
                "--publisher-key",
                key,
                "--issuer",
                "https://i.example",
                "--audience",
                "a",
                "--policy",
                "maybe",
            ],
            "policy",
        ),
        (
            &[
                "--publisher-key",
                key,
                "--issuer",
                "https://i.example",
                "--audience",
                "a",
                "--max-staleness",
                "soon",
            ],
            "max-staleness",
        ),
        (
            &[
                "--publisher-key",
                key,
                "--issuer",
                "https://i.example",
                "--audience",
                "a",
                "--issuer-namespace",
                "no-equals",
            ],
            "ISSUER=NAMESPACE",
        ),
        (
            &[
                "--publisher-key",
                key,
                "--issuer",
                "https://i.example",
                "--audience",
                "a",
                "--issuer-namespace",
                "https://i.example=bad ns!",
            ],
            "issuer-namespace",
        ),
        (
            &[
                "--publisher-key",
                key,
                "--issuer",
                "https://i.example",
                "--audience",
                "a",
                "--listen",
                "nowhere",
            ],
            "listen",
        ),
        (
            &[
                "--publisher-key",
                key,
                "--issuer",
                "https://i.example",
                "--audience",
                "a",
                "--introspection-client-id",
                "x",
            ],
            "introspection-client-secret",
        ),
        (
            &[
                "--publisher-key",
                key,
                "--jwt-public-key",
                "/nonexistent/key.pem",
            ],
            "/nonexistent/key.pem",
        ),
        (
            &[
                "--publisher-key",
                key,
                "--issuer",
                "ftp://i.example",
                "--audience",
                "a",
                "--nats",
                "nats://127.0.0.1:1",
            ],
            "not an http",
        ),
        (
            &[
                "--publisher-key",
                key,
                "--issuer",
                "https://i.example",
                "--audience",
                "a",
                "--header-prefix",
                "X Y",
                "--nats",
                "nats://127.0.0.1:1",
            ],
            "header prefix",
        ),
    ];
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_revocast-sidecar"));
        for (name, _) in std::env::vars() {
            if name.starts_with("REVOCAST_") {
                command.env_remove(name);
            }
        }
        command
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap()
    };
    // Empty variables name nothing: here the static key is the only key set, and the
    // sidecar gets as far as NATS (nobody listens on port 1).
    let output = run(
        &[
            "--publisher-key",
            key,
            "--jwt-hs256-secret",
            "s",
            "--nats",
            "nats://127.0.0.1:1",
        ],
        &[("REVOCAST_ISSUER", ""), ("REVOCAST_AUDIENCE", "")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("NATS"),
        "{stderr}"
    );
    for (args, want) in cases {
        let output = run(args, &[]);
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
