//! [`OpenIdProvider`]: a real OpenID provider on a random loopback port, for tests of
//! key discovery and rotation: OpenID discovery and a JWKS over HTTP (axum), RFC 9068
//! access tokens (`typ: at+jwt`, ES256, a `kid` in the header).
//!
//! The test drives it: [`OpenIdProvider::rotate`] signs with the next key (and
//! publishes it beside the old one), [`OpenIdProvider::set_up`] makes discovery and
//! the JWKS answer 503, [`OpenIdProvider::advertise_issuer`] makes discovery name
//! another issuer. [`OpenIdProvider::jwks_fetches`] counts key-set requests.
//!
//! ```no_run
//! # async fn example() {
//! let idp = revocast_testkit::OpenIdProvider::start().await;
//! let token = idp.access_token("alice", "orders-api", "jti-1", 3600);
//! idp.rotate(); // later tokens carry the next kid
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Test keys per provider: distinct between providers, so that one provider's
/// tokens never verify with another's keys.
const KEY_COUNT: usize = 3;

/// A random P-256 private key as PKCS#8 DER (RFC 5915 `ECPrivateKey` without the
/// optional public key, inside RFC 5208's `PrivateKeyInfo`).
fn random_p256_key() -> Vec<u8> {
    const PREFIX: [u8; 35] = [
        0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
        0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25,
        0x02, 0x01, 0x01, 0x04, 0x20,
    ];
    let mut scalar = [0u8; 32];
    getrandom::fill(&mut scalar).expect("the OS random source");
    // Below the group order (above 2^255) whatever the draw, and never zero.
    scalar[0] &= 0x7f;
    scalar[31] |= 1;
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(&scalar);
    der
}

#[derive(Debug)]
struct Config {
    /// The key that signs new tokens.
    signing: usize,
    /// The keys in the JWKS.
    published: Vec<usize>,
    /// Discovery and JWKS answer 503 while false.
    up: bool,
    /// The `issuer` the discovery document names (the real one unless set).
    advertised_issuer: Option<String>,
    /// `Cache-Control: max-age` of the JWKS, if any.
    max_age: Option<u64>,
}

struct Shared {
    issuer: String,
    keys: Vec<EncodingKey>,
    config: Mutex<Config>,
    jwks_fetches: AtomicU64,
    discovery_fetches: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("issuer", &self.issuer)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// An OpenID provider on `127.0.0.1:<random>`, stopped on drop.
#[derive(Debug)]
pub struct OpenIdProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn kid(i: usize) -> String {
    format!("key-{i}")
}

impl OpenIdProvider {
    /// Serves discovery and a JWKS publishing key 0, which signs.
    pub async fn start() -> OpenIdProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            keys: (0..KEY_COUNT)
                .map(|_| EncodingKey::from_ec_der(&random_p256_key()))
                .collect(),
            config: Mutex::new(Config {
                signing: 0,
                published: vec![0],
                up: true,
                advertised_issuer: None,
                max_age: None,
            }),
            jwks_fetches: AtomicU64::new(0),
            discovery_fetches: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OpenIdProvider { addr, shared, task }
    }

    fn config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.shared.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The issuer URL (`http://127.0.0.1:<port>`, no trailing slash).
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// The `kid` that signs new tokens.
    pub fn kid(&self) -> String {
        kid(self.config().signing)
    }

    /// Signs `claims` (with `iss` added if absent) with the current key.
    pub fn token(&self, claims: Value) -> String {
        let signing = self.config().signing;
        self.sign_with(signing, claims)
    }

    /// Signs `claims` (with `iss` added if absent) with this provider's key `key` (0, 1
    /// or 2), published or not.
    pub fn sign_with(&self, key: usize, mut claims: Value) -> String {
        if let Some(map) = claims.as_object_mut() {
            map.entry("iss")
                .or_insert_with(|| Value::String(self.issuer()));
        }
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(kid(key));
        jsonwebtoken::encode(&header, &claims, &self.shared.keys[key])
            .expect("signing with a test key")
    }

    /// Signs `claims` (with `iss` added if absent) with the current key and this `typ`
    /// header (none when `None`): logout tokens (`logout+jwt`), security event tokens
    /// (`secevent+jwt`), or a wrong one.
    pub fn token_with_typ(&self, typ: Option<&str>, mut claims: Value) -> String {
        if let Some(map) = claims.as_object_mut() {
            map.entry("iss")
                .or_insert_with(|| Value::String(self.issuer()));
        }
        let signing = self.config().signing;
        let mut header = Header::new(Algorithm::ES256);
        header.typ = typ.map(str::to_owned);
        header.kid = Some(kid(signing));
        jsonwebtoken::encode(&header, &claims, &self.shared.keys[signing])
            .expect("signing with a test key")
    }

    /// An RFC 9068 access token valid for `ttl_secs`: `iss`, `sub`, `aud`, `exp`,
    /// `iat`, `jti`, `client_id`, `scope`.
    pub fn access_token(&self, sub: &str, aud: &str, jti: &str, ttl_secs: u64) -> String {
        let now = crate::now_secs();
        self.token(json!({
            "sub": sub,
            "aud": aud,
            "exp": now + ttl_secs,
            "iat": now,
            "jti": jti,
            "client_id": "test-client",
            "scope": "read write",
        }))
    }

    /// Signs new tokens with the next key, published beside the current ones (the
    /// usual rotation); gives its `kid`.
    pub fn rotate(&self) -> String {
        let mut config = self.config();
        config.signing = (config.signing + 1) % KEY_COUNT;
        let signing = config.signing;
        if !config.published.contains(&signing) {
            config.published.push(signing);
        }
        kid(signing)
    }

    /// Publishes exactly these test keys.
    pub fn publish(&self, keys: &[usize]) {
        self.config().published = keys.to_vec();
    }

    /// Up (`true`) or answering 503 on discovery and JWKS (`false`).
    pub fn set_up(&self, up: bool) {
        self.config().up = up;
    }

    /// Makes discovery name `issuer` instead of the real one.
    pub fn advertise_issuer(&self, issuer: &str) {
        self.config().advertised_issuer = Some(issuer.to_owned());
    }

    /// Sets the JWKS's `Cache-Control: max-age`.
    pub fn set_max_age(&self, seconds: Option<u64>) {
        self.config().max_age = seconds;
    }

    /// JWKS requests answered so far (503s included).
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.jwks_fetches.load(SeqCst)
    }

    /// Discovery requests answered so far (503s included).
    pub fn discovery_fetches(&self) -> u64 {
        self.shared.discovery_fetches.load(SeqCst)
    }
}

fn down() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "down for the test").into_response()
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.discovery_fetches.fetch_add(1, SeqCst);
    let config = shared.config.lock().unwrap_or_else(|e| e.into_inner());
    if !config.up {
        return down();
    }
    let issuer = config
        .advertised_issuer
        .clone()
        .unwrap_or(shared.issuer.clone());
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", shared.issuer),
        "id_token_signing_alg_values_supported": ["ES256"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_fetches.fetch_add(1, SeqCst);
    let config = shared.config.lock().unwrap_or_else(|e| e.into_inner());
    if !config.up {
        return down();
    }
    let keys = config
        .published
        .iter()
        .map(|&i| {
            let mut jwk = Jwk::from_encoding_key(&shared.keys[i], Algorithm::ES256)
                .expect("a JWK from a test key");
            jwk.common.key_id = Some(kid(i));
            jwk.common.public_key_use = Some(PublicKeyUse::Signature);
            jwk
        })
        .collect();
    let body = axum::Json(JwkSet { keys });
    match config.max_age {
        Some(age) => (
            [(header::CACHE_CONTROL, format!("public, max-age={age}"))],
            body,
        )
            .into_response(),
        None => body.into_response(),
    }
}
