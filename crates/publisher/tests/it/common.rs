//! What the publisher's tests share beyond the testkit: their configuration, a raw
//! HTTP client (to send what the typed client never would), and readers of what the
//! publisher stored and sent.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt as _;
use revocast_core::http::{self, Committed, Revocation};
use revocast_core::{Delta, Namespace, PublicKey, Verifier};
use revocast_publisher::Config;
use revocast_testkit::NatsServer;
pub use revocast_testkit::{
    DEADLINE, eventually, free_port, now_secs as now, start_publisher as start, within,
};
use serde_json::Value;

/// A test configuration with admin token `tok`.
pub fn config(server: &NatsServer) -> Config {
    let mut config = Config::for_tests(server.url()).unwrap();
    config.admin_token = Some("tok".into());
    config
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

    /// GET with the admin token `tok`.
    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn get_admin(&self, path: &str) -> (u16, Value) {
        self.send(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth("tok"),
        )
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
        let revocation = Revocation {
            reason: Some("test".into()),
            ..Revocation::new(jti, now() + 3600)
        };
        let body = serde_json::to_value(&revocation).unwrap();
        let (status, body) = self.post(http::REVOCATIONS, body).await;
        assert_eq!(status, 200, "{body}");
        let done: Committed = serde_json::from_value(body).unwrap();
        done.version
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

/// The lines a child process writes to its piped stderr, as they come. A thread reads
/// until the child closes it, even after the receiver is gone, so that the child never
/// blocks on a full pipe.
pub fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    rx
}

/// A replica's view of a token of `sub` issued at `iat`, expiring in ten minutes.
pub fn claims_of(sub: &str, jti: &str, iat: u64) -> revocast_subscriber::TokenClaims {
    revocast_subscriber::TokenClaims {
        sub: Some(sub.into()),
        iat: Some(iat),
        ..revocast_subscriber::TokenClaims::new(jti, now() + 600)
    }
}
