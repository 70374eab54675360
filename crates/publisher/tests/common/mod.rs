//! Helpers shared by the publisher's integration tests: a real nats-server per test,
//! an in-process publisher, a plain HTTP client, and waiting with a deadline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use revocast_core::{Delta, Namespace, PublicKey, Verifier};
use revocast_publisher::{Config, Publisher};
use revocast_testkit::NatsServer;
use serde_json::Value;

/// Every wait in these tests gives up after this long.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `condition` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = condition().await {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `future` with [`DEADLINE`], failing the test when it runs out.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?}: {what}"))
}

/// A test configuration with admin token `tok`.
pub fn config(server: &NatsServer) -> Config {
    let mut config = Config::for_tests(server.url()).unwrap();
    config.admin_token = Some("tok".into());
    config
}

/// Starts a publisher and waits until it is ready.
pub async fn start(config: Config) -> Publisher {
    let publisher = Publisher::start(config).await.unwrap();
    publisher.wait_ready(DEADLINE).await.unwrap();
    publisher
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A small HTTP client that returns (status, JSON body).
#[derive(Clone, Debug)]
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
}

impl Http {
    pub fn new(base: impl Into<String>) -> Http {
        Http {
            base: base.into(),
            client: reqwest::Client::builder()
                .timeout(DEADLINE)
                .build()
                .unwrap(),
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    /// POST JSON with the admin token `tok`.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth("tok")
                .json(&body),
        )
        .await
    }

    /// Revokes `jti` (exp in an hour); returns the version.
    pub async fn revoke(&self, jti: &str) -> u64 {
        let (status, body) = self
            .post(
                "/v1/revocations",
                serde_json::json!({"jti": jti, "exp": now() + 3600, "reason": "test"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["version"].as_u64().unwrap()
    }
}

/// Reads every delta in the namespace's stream and checks that message `n` is the
/// signed delta with version `n`, with no gap. Returns the deltas.
pub async fn stream_deltas(nats_url: &str, namespace: &Namespace, key: PublicKey) -> Vec<Delta> {
    try_stream_deltas(nats_url, namespace, key).await.unwrap()
}

/// [`stream_deltas`], with NATS errors returned (a cluster may be electing a leader).
pub async fn try_stream_deltas(
    nats_url: &str,
    namespace: &Namespace,
    key: PublicKey,
) -> Result<Vec<Delta>, String> {
    let client = async_nats::connect(nats_url)
        .await
        .map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(namespace.stream_name())
        .await
        .map_err(|e| e.to_string())?;
    let info = stream.info().await.map_err(|e| e.to_string())?.clone();
    let verifier = Verifier::new(key, namespace.clone());
    let mut deltas = Vec::new();
    for seq in info.state.first_sequence.max(1)..=info.state.last_sequence {
        let message = stream
            .get_raw_message(seq)
            .await
            .map_err(|e| e.to_string())?;
        let delta = verifier.decode_delta(&message.payload).unwrap();
        assert_eq!(
            delta.version, seq,
            "stream message {seq} holds delta {}",
            delta.version
        );
        deltas.push(delta);
    }
    Ok(deltas)
}

/// Subscribes to the delta subject and returns a stream of verified deltas.
pub async fn delta_subscription(
    nats_url: &str,
    namespace: &Namespace,
    key: PublicKey,
) -> impl futures::Stream<Item = Delta> + Unpin + use<> {
    let client = async_nats::connect(nats_url).await.unwrap();
    let subscriber = client.subscribe(namespace.delta_subject()).await.unwrap();
    client.flush().await.unwrap();
    let verifier = Verifier::new(key, namespace.clone());
    // Keep the client alive as long as the stream.
    Box::pin(subscriber.map(move |m| {
        let _ = &client;
        verifier
            .decode_delta(&m.payload)
            .expect("a delta signed by the publisher")
    }))
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    revocast_testkit::free_port()
}
