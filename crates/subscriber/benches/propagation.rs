//! Propagation: from the moment a delta is durable (JetStream acknowledged it, which
//! is when the publisher's revoke call answers) until each of 100 replicas, each on
//! its own NATS connection, would reject the token. Prints p50 / p99 / max.
//!
//! `cargo bench -p revocast-subscriber --bench propagation`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/common.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{FakePublisher, now_secs};
use revocast_subscriber::{ConfirmReason, LocalCheck, Policy, TokenClaims};
use revocast_testkit::NatsServer;

const REPLICAS: usize = 100;
const ROUNDS: usize = 50;

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name us skips the run.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "propagation".contains(a.as_str())) {
        return;
    }
    let server = NatsServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut publisher = FakePublisher::start(&server.url(), "propagation").await;
        let mut replicas = Vec::with_capacity(REPLICAS);
        for _ in 0..REPLICAS {
            let sub = publisher
                .options()
                .policy(Policy::FailClosed)
                .max_staleness(Duration::from_secs(3600))
                .connect(&server.url())
                .await
                .unwrap();
            replicas.push(sub);
        }
        for sub in &replicas {
            common::within("ready", sub.ready()).await;
        }
        let exp = now_secs() + 3600;
        let mut lags = Vec::with_capacity(REPLICAS * ROUNDS);
        for round in 0..ROUNDS {
            let jti = format!("propagated-{round}");
            let claims = TokenClaims::new(jti.clone(), exp);
            publisher.revoke(&[jti], exp).await;
            let acked = Instant::now();
            let mut pending: Vec<usize> = (0..REPLICAS).collect();
            let deadline = acked + Duration::from_secs(10);
            while !pending.is_empty() {
                assert!(Instant::now() < deadline, "replicas did not converge");
                pending.retain(|&i| {
                    let hit = replicas[i].check_local(&claims)
                        == LocalCheck::NeedsConfirm(ConfirmReason::FilterHit);
                    if hit {
                        lags.push(acked.elapsed());
                    }
                    !hit
                });
                tokio::task::yield_now().await;
            }
        }
        lags.sort();
        let pct = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)];
        println!(
            "propagation to {REPLICAS} replicas over {ROUNDS} revocations ({} samples): \
             p50 {:.2?}, p99 {:.2?}, max {:.2?}",
            lags.len(),
            pct(0.50),
            pct(0.99),
            lags[lags.len() - 1]
        );
    });
}
