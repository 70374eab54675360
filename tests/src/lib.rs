//! Shared setup of the end-to-end tests in `tests/tests/`: a real `nats-server`, a
//! publisher started in-process through its library, subscribers, and tokens.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

pub mod fault;
pub mod process;

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use revocast_publisher::{Config, Publisher};
use revocast_subscriber::{Subscriber, SubscriberOptions};
use revocast_testkit::NatsServer;
use serde::Serialize;

/// HS256 secret of the test tokens.
pub const JWT_SECRET: &[u8] = b"end-to-end-test-secret";

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends logs to the test output when `RUST_LOG` is set.
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A NATS server and a ready publisher in front of it.
pub struct Stack {
    pub nats: NatsServer,
    pub publisher: Publisher,
    pub http: reqwest::Client,
}

impl Stack {
    /// Starts a NATS server and a publisher with test settings.
    pub async fn start() -> Stack {
        init_logs();
        let nats = NatsServer::start();
        let config = Config::for_tests(nats.url()).unwrap();
        Stack::start_with(nats, config).await
    }

    /// Starts a publisher with `config` in front of `nats`.
    pub async fn start_with(nats: NatsServer, config: Config) -> Stack {
        let publisher = Publisher::start(config).await.unwrap();
        publisher.wait_ready(Duration::from_secs(20)).await.unwrap();
        Stack {
            nats,
            publisher,
            http: reqwest::Client::new(),
        }
    }

    /// Options for a subscriber pinned to this publisher's key.
    pub fn subscriber_options(&self) -> SubscriberOptions {
        SubscriberOptions::new(self.publisher.public_key())
            .namespace(self.publisher.namespace().clone())
            .max_staleness(Duration::from_secs(3))
    }

    /// A ready subscriber connected straight to NATS.
    pub async fn subscriber(&self) -> Subscriber {
        self.subscriber_at(&self.nats.url()).await
    }

    /// A ready subscriber connected to `url` (for example through a proxy).
    pub async fn subscriber_at(&self, url: &str) -> Subscriber {
        let subscriber = self.subscriber_options().connect(url).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), subscriber.ready())
            .await
            .expect("subscriber ready within 20 s");
        subscriber
    }

    /// `POST /v1/revocations` with one revocation; returns the version.
    pub async fn revoke(&self, jti: &str, exp: u64) -> u64 {
        self.post(
            "/v1/revocations",
            serde_json::json!({"jti": jti, "exp": exp}),
        )
        .await
    }

    /// `POST /v1/revocations` in bulk; returns the version.
    pub async fn revoke_many(&self, items: &[(String, u64)]) -> u64 {
        let revocations: Vec<_> = items
            .iter()
            .map(|(jti, exp)| serde_json::json!({"jti": jti, "exp": exp}))
            .collect();
        self.post(
            "/v1/revocations",
            serde_json::json!({ "revocations": revocations }),
        )
        .await
    }

    /// `POST <path>` with a JSON body, expecting 200 and a `version`.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> u64 {
        let response = self
            .http
            .post(format!("{}{path}", self.publisher.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, 200, "POST {path}: {body}");
        body["version"].as_u64().expect("a version in the answer")
    }
}

/// Claims of a test token.
#[derive(Debug, Clone, Serialize)]
pub struct Claims {
    pub jti: String,
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
}

impl Claims {
    /// A token of `sub` issued now, valid for an hour.
    pub fn new(jti: &str, sub: &str) -> Claims {
        let iat = now();
        Claims {
            jti: jti.to_owned(),
            sub: sub.to_owned(),
            iat,
            exp: iat + 3600,
        }
    }

    /// The signed JWT (HS256 with [`JWT_SECRET`]).
    pub fn jwt(&self) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            self,
            &EncodingKey::from_secret(JWT_SECRET),
        )
        .unwrap()
    }
}
