//! Property-based tests against every HTTP route of a real publisher (its own
//! `nats-server`, requests over a socket with reqwest): random JSON, wrong types,
//! huge and deeply nested bodies, invalid UTF-8, wrong content types, repeated
//! headers, random paths, methods and bearer tokens.
//!
//! What must hold whatever the request: the answer is never a 5xx (a bad request is
//! the caller's fault, and valid ones are committed), every error is the JSON
//! `{"error", "error_description"}` shape ([`ErrorBody`]), the daemon keeps serving, and every revocation it
//! acknowledged during the run is answered 200 by `GET /v1/revocations/{jti}` after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use revocast_core::http::{
    ErrorBody, REVOCATIONS, RevocationStatus, encode_path_segment, revocation_path,
};
use revocast_core::{ConfirmRequest, Verifier, encode_request};
use revocast_testkit::NatsServer;
use serde_json::{Value, json};

use crate::common::{Http, config, now, start};

/// Cases per property: enough to cover every generator branch many times, few
/// enough that the file runs in seconds in a debug build.
const CASES: u32 = 1_000;

/// Revocations acknowledged with an `exp` closer than this to now may legitimately
/// expire before the final check; they are not tracked.
const TRACK_MARGIN_SECS: u64 = 120;

/// Bodies larger than this may be refused unread (see `send`).
const UNREAD_BODY_BYTES: usize = 64 << 10;

/// One generated HTTP request.
#[derive(Clone, Debug)]
struct FuzzRequest {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Body,
}

/// The body, with what it would revoke if accepted (known when it is generated).
#[derive(Clone, Debug)]
struct Body {
    bytes: Vec<u8>,
    /// `(jti, exp)` that a 200 answer acknowledges.
    revokes: Vec<(String, u64)>,
}

impl Body {
    fn raw(bytes: Vec<u8>) -> Body {
        Body {
            bytes,
            revokes: Vec::new(),
        }
    }

    /// A JSON body; what it revokes is read from the value the way the API reads it.
    fn json(value: &Value) -> Body {
        Body {
            bytes: value.to_string().into_bytes(),
            revokes: revocations_in(value),
        }
    }
}

/// The `(jti, exp)` pairs that `POST /v1/revocations` commits for this body, if it
/// accepts it.
fn revocations_in(value: &Value) -> Vec<(String, u64)> {
    let one = |v: &Value| match (v.get("jti"), v.get("exp")) {
        (Some(Value::String(jti)), Some(exp)) => exp.as_u64().map(|exp| (jti.clone(), exp)),
        _ => None,
    };
    match value {
        Value::Object(map) if map.contains_key("revocations") => match &map["revocations"] {
            Value::Array(list) => list.iter().filter_map(one).collect(),
            _ => Vec::new(),
        },
        Value::Object(_) => one(value).into_iter().collect(),
        _ => Vec::new(),
    }
}

const ROUTES: &[&str] = &[
    "/v1/revocations",
    "/oauth/revoke",
    "/oauth/introspect",
    "/v1/cutoffs",
    "/v1/stats",
    "/metrics",
    "/healthz",
    "/readyz",
];

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
            .prop_map(str::to_owned),
        1 => "[A-Z]{1,12}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(ROUTES).prop_map(str::to_owned),
        3 => prop::collection::vec(any::<u8>(), 0..300)
            // Bytes, percent-encoded: invalid UTF-8 reaches the router too.
            .prop_map(|jti| format!("{REVOCATIONS}/{}", encode_path_segment(jti))),
        1 => "[a-zA-Z0-9/._~-]{0,40}".prop_map(|p| format!("/{p}")),
        1 => (prop::sample::select(ROUTES), "[a-z0-9/]{1,20}")
            .prop_map(|(route, tail)| format!("{route}/{tail}")),
        1 => (prop::sample::select(ROUTES), "[a-z=&%0-9]{0,30}")
            .prop_map(|(route, query)| format!("{route}?{query}")),
    ]
}

/// A header value: printable text, or any bytes HTTP allows in a value.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[ -~]{0,80}".prop_map(String::into_bytes),
        prop::collection::vec(
            any::<u8>().prop_filter("a valid header byte", |b| *b == b'\t'
                || (0x20..0x7f).contains(b)
                || *b >= 0x80),
            0..80
        ),
    ]
}

fn authorization() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let one = prop_oneof![
        3 => Just(b"Bearer tok".to_vec()),
        2 => "[ -~]{0,40}".prop_map(|t| format!("Bearer {t}").into_bytes()),
        1 => prop::sample::select(vec!["bearer  tok ", "Bearer", "Bearer ", "tok", "Basic dG9rOnRvaw==", "Bearer tok tok", "Bearer to", "Bearer tok2"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => header_bytes(),
    ];
    prop::collection::vec(one, 0..3)
}

fn content_type() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let one = prop_oneof![
        4 => Just(b"application/json".to_vec()),
        2 => Just(b"application/x-www-form-urlencoded".to_vec()),
        3 => prop::sample::select(vec![
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/problem+json",
            "application/+json",
            "text/plain",
            "application/xml",
            "multipart/form-data; boundary=x",
            ";",
            "",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => header_bytes(),
    ];
    prop::collection::vec(one, 0..3)
}

/// Other headers, some repeated, some that the server reads.
fn extra_headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop::sample::select(vec![
        "x-request-id",
        "accept",
        "accept-encoding",
        "x-forwarded-for",
        "user-agent",
        "cookie",
        "expect",
    ]);
    prop::collection::vec((name.prop_map(str::to_owned), header_bytes()), 0..4)
}

/// Any JSON value, nested a few levels, with the API's field names among the keys.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        "[a-z]{0,300}".prop_map(Value::from),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "jti",
            "exp",
            "sub",
            "reason",
            "revocations",
            "not_before",
            "token"
        ])
        .prop_map(str::to_owned),
        ".{0,10}",
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A revocation with every field right or wrong in turn.
fn revocation_json() -> impl Strategy<Value = Value> {
    let now = now();
    let jti = prop_oneof![
        10 => "[a-zA-Z0-9._:-]{1,40}".prop_map(Value::from),
        // Dot segments and characters that URLs treat specially.
        1 => prop::sample::select(vec![".", "..", "a/b", "%2e", "?x", "#", " "]).prop_map(Value::from),
        1 => ".{0,300}".prop_map(Value::from),
        1 => any_json(),
    ];
    let exp = prop_oneof![
        10 => (TRACK_MARGIN_SECS + 1..86_400).prop_map(move |d| Value::from(now + d)),
        1 => (0..now + 200_000).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any_json(),
    ];
    let optional = || {
        prop_oneof![
            8 => Just(None),
            2 => ".{0,40}".prop_map(|s| Some(Value::from(s))),
            1 => any_json().prop_map(Some),
        ]
    };
    (
        prop::option::weighted(0.97, jti),
        prop::option::weighted(0.97, exp),
        optional(),
        optional(),
    )
        .prop_map(|(jti, exp, sub, reason)| {
            let mut map = serde_json::Map::new();
            for (k, v) in [("jti", jti), ("exp", exp), ("sub", sub), ("reason", reason)] {
                if let Some(v) = v {
                    map.insert(k.to_owned(), v);
                }
            }
            Value::Object(map)
        })
}

/// An unsigned JWT with these claims (the test publisher has no verification key).
fn jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.c2ln")
}

fn body() -> impl Strategy<Value = Body> {
    let now = now();
    prop_oneof![
        // Revocations, single and bulk, right and wrong.
        4 => revocation_json().prop_map(|v| Body::json(&v)),
        3 => prop::collection::vec(revocation_json(), 0..8)
            .prop_map(|list| Body::json(&json!({ "revocations": list }))),
        2 => any_json().prop_map(|v| Body::json(&v)),
        // Cutoffs.
        2 => (prop::option::of(".{0,30}"), prop_oneof![
                (0..now + 1_000).prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any_json(),
            ])
            .prop_map(|(sub, not_before)| Body::json(&json!({"sub": sub, "not_before": not_before}))),
        // Forms for /oauth/revoke: a JWT with random claims, or any text.
        2 => (revocation_json(), any::<bool>()).prop_map(|(claims, hint)| {
            let mut form = format!("token={}", jwt(&claims));
            if hint {
                form.push_str("&token_type_hint=access_token");
            }
            Body { bytes: form.into_bytes(), revokes: Vec::new() }
        }),
        1 => "[a-zA-Z0-9=&%+._-]{0,200}".prop_map(|s| Body::raw(s.into_bytes())),
        // Invalid UTF-8, alone or inside otherwise valid JSON.
        2 => prop::collection::vec(any::<u8>(), 0..512).prop_map(Body::raw),
        1 => (revocation_json(), prop::collection::vec(128u8.., 1..8)).prop_map(|(v, junk)| {
            let text = v.to_string();
            let at = text.find(':').map_or(0, |i| i + 1);
            let mut bytes = text.into_bytes();
            bytes.splice(at..at, junk);
            Body::raw(bytes)
        }),
        // Deeply nested arrays and objects (serde_json stops at 128 levels).
        1 => (1usize..20_000, any::<bool>()).prop_map(|(depth, object)| {
            let (open, close) = if object { ("{\"a\":", "}") } else { ("[", "]") };
            let mut text = open.repeat(depth);
            text.push('1');
            text.push_str(&close.repeat(depth));
            Body::raw(text.into_bytes())
        }),
        // Huge bodies, under and over the 512 KiB limit.
        1 => (400usize << 10..1200 << 10, any::<bool>()).prop_map(|(size, json)| {
            if json {
                Body::raw(format!(r#"{{"jti":"huge","exp":1,"reason":"{}"}}"#, "r".repeat(size)).into_bytes())
            } else {
                Body::raw(vec![b'['; size])
            }
        }),
        1 => Just(Body::raw(Vec::new())),
    ]
}

/// A request: headers in the order given (repeats included).
fn build(
    method: String,
    path: String,
    auth: Vec<Vec<u8>>,
    content_type: Vec<Vec<u8>>,
    extra: Vec<(String, Vec<u8>)>,
    body: Body,
) -> FuzzRequest {
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    headers.extend(auth.into_iter().map(|v| ("authorization".to_owned(), v)));
    headers.extend(
        content_type
            .into_iter()
            .map(|v| ("content-type".to_owned(), v)),
    );
    headers.extend(extra);
    FuzzRequest {
        method,
        path,
        headers,
        body,
    }
}

/// Requests aimed at a route with its own method, mostly with the right token and
/// content type, so that bodies reach the handlers (and some get committed).
fn aimed() -> impl Strategy<Value = FuzzRequest> {
    let route = prop::sample::select(vec![
        ("POST", "/v1/revocations"),
        ("POST", "/v1/revocations"),
        ("POST", "/v1/revocations"),
        ("POST", "/v1/cutoffs"),
        ("POST", "/oauth/revoke"),
        ("POST", "/oauth/introspect"),
        ("GET", "/.well-known/oauth-authorization-server"),
        ("GET", "/v1/stats"),
        ("GET", "/metrics"),
    ]);
    let auth = prop_oneof![
        4 => Just(vec![b"Bearer tok".to_vec()]),
        1 => authorization(),
    ];
    (route, auth, extra_headers(), body(), any::<u8>()).prop_map(
        |((method, path), auth, extra, body, pick)| {
            let right = if path.starts_with("/oauth/") {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            };
            let content_type = match pick % 8 {
                0 => Vec::new(),
                1 => vec![b"text/plain".to_vec()],
                2 => vec![right.as_bytes().to_vec(), b"text/plain".to_vec()],
                _ => vec![right.as_bytes().to_vec()],
            };
            build(method.into(), path.into(), auth, content_type, extra, body)
        },
    )
}

/// Anything: method, path, headers and body drawn independently.
fn wild() -> impl Strategy<Value = FuzzRequest> {
    (
        method(),
        path(),
        authorization(),
        content_type(),
        extra_headers(),
        body(),
    )
        .prop_map(|(method, path, auth, ct, extra, body)| {
            build(method, path, auth, ct, extra, body)
        })
}

fn request() -> impl Strategy<Value = FuzzRequest> {
    prop_oneof![3 => aimed(), 2 => wild()]
}

/// What a request got: status and body (status 0: refused unread).
struct Answer {
    status: u16,
    body: Vec<u8>,
}

async fn send(http: &Http, r: &FuzzRequest) -> Answer {
    let mut builder = http.client.request(
        r.method.parse().expect("a method token"),
        format!("{}{}", http.base, r.path),
    );
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &r.headers {
        headers.append(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        );
    }
    builder = builder.headers(headers).body(r.body.bytes.clone());
    let response = match builder.send().await {
        Ok(response) => response,
        // A route that does not read the body (a 404, a 405, a GET) answers at once
        // and closes the connection while a large body is still being written; the
        // client sees a broken pipe, not the answer. The daemon must still serve.
        Err(e) if r.body.bytes.len() > UNREAD_BODY_BYTES => {
            let (status, _) = http.get("/healthz").await;
            assert_eq!(status, 200, "not serving after {e}");
            return Answer {
                status: 0,
                body: Vec::new(),
            };
        }
        Err(e) => panic!("{} {} got no answer: {e:?}", r.method, r.path),
    };
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("a whole body").to_vec();
    Answer { status, body }
}

/// Checks one answer; returns what it acknowledged.
fn check(r: &FuzzRequest, answer: &Answer) -> Result<Vec<(String, u64)>, TestCaseError> {
    let Answer { status, body } = answer;
    if *status == 0 {
        return Ok(Vec::new());
    }
    let text = String::from_utf8_lossy(body);
    prop_assert!(
        *status < 500,
        "{} {} answered {status}: {text}",
        r.method,
        r.path
    );
    prop_assert!(
        (200..300).contains(status) || (400..500).contains(status),
        "{} {} answered {status}: {text}",
        r.method,
        r.path
    );
    if *status >= 400 && r.method != "HEAD" {
        // The authority's "not revoked" is a 404 answer, not an error.
        let not_revoked = *status == 404
            && serde_json::from_slice::<RevocationStatus>(body).is_ok_and(|a| !a.revoked);
        prop_assert!(
            not_revoked || serde_json::from_slice::<ErrorBody>(body).is_ok(),
            "{} {} answered {status} without the JSON error shape: {text}",
            r.method,
            r.path
        );
    }
    let revoked = *status == 200 && r.method == "POST" && r.path == "/v1/revocations";
    let horizon = now() + TRACK_MARGIN_SECS;
    Ok(if revoked {
        r.body
            .revokes
            .iter()
            .filter(|(_, exp)| *exp > horizon)
            .cloned()
            .collect()
    } else {
        Vec::new()
    })
}

#[test]
fn random_requests_get_4xx_never_5xx_and_lose_no_acknowledged_revocation() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = NatsServer::start();
    let publisher = rt.block_on(start(config(&server)));
    // A fresh connection per request: a route that answers without reading a large
    // body closes its connection, and a pooled client may race that close with the
    // next request (a client-side error that says nothing about the daemon).
    let http = Http {
        base: publisher.url(),
        client: reqwest::Client::builder()
            .timeout(crate::common::DEADLINE)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
    };

    // The runner takes a `Fn`: what the cases record goes through cells.
    let acknowledged: RefCell<Vec<(String, u64)>> = RefCell::default();
    let statuses: RefCell<BTreeMap<u16, u32>> = RefCell::default();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        // A failing case is replayed against the same publisher; shrinking stays short.
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&request(), |r| {
        let answer = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), send(&http, &r))
                .await
                .map_err(|_| TestCaseError::fail(format!("{} {} hung", r.method, r.path)))
        })?;
        *statuses.borrow_mut().entry(answer.status).or_default() += 1;
        acknowledged.borrow_mut().extend(check(&r, &answer)?);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (acknowledged, statuses) = (acknowledged.into_inner(), statuses.into_inner());
    // The run exercised both sides: requests refused and revocations committed.
    eprintln!(
        "answers by status: {statuses:?}; {} revocations acknowledged",
        acknowledged.len()
    );
    assert!(statuses.keys().any(|s| *s >= 400), "{statuses:?}");
    assert!(!acknowledged.is_empty(), "{statuses:?}");

    rt.block_on(async {
        // The daemon keeps serving: a valid revoke works...
        let version = http.revoke("after-the-fuzz").await;
        assert!(version >= 1);
        // Stats and metrics count revocations; they never name one.
        for path in ["/v1/stats", "/metrics"] {
            let (status, body) = http.get(path).await;
            assert_eq!(status, 200);
            let text = body.to_string();
            assert!(
                !text.contains("after-the-fuzz"),
                "{path} reveals a jti: {text}"
            );
        }
        // ...and every revocation acknowledged during the run is there.
        let nats = async_nats::connect(server.url()).await.unwrap();
        let verifier = Verifier::new(publisher.public_key(), publisher.namespace().clone());
        for (jti, exp) in &acknowledged {
            if jti == "." || jti == ".." {
                // Dot segments: URL normalisation removes them, so no HTTP client
                // can name them in a path; the NATS authority answers for them.
                let request = ConfirmRequest {
                    jti: jti.clone(),
                    exp: Some(*exp),
                    nonce: 7,
                    sub: None,
                    iat: None,
                    sid: None,
                };
                let reply = nats
                    .request(
                        publisher.namespace().confirm_subject(),
                        encode_request(publisher.namespace(), &request).into(),
                    )
                    .await
                    .unwrap();
                let answer = verifier.decode_confirm_response(&reply.payload).unwrap();
                assert!(answer.revoked, "acknowledged {jti:?} (exp {exp}) lost");
                continue;
            }
            let (status, body) = http.get(&revocation_path(jti)).await;
            assert_eq!(status, 200, "acknowledged {jti:?} (exp {exp}) lost: {body}");
            assert_eq!(body["revoked"], json!(true), "{body}");
        }
        publisher.shutdown().await.unwrap();
    });
}
