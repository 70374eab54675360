//! Durable ingest: revocations per second answered 200 by the HTTP API, each one
//! acknowledged by JetStream (file storage) before the answer.
//!
//! Starts its own `nats-server` and an in-process publisher, then measures:
//! - concurrent single revocations (`POST /v1/revocations` with one entry), and
//! - bulk calls (`{"revocations": [...]}` of 1,000 entries).
//!
//! Run: `cargo bench -p revocast-publisher --bench ingest`. Environment:
//! `INGEST_RUNS` (default 5), `INGEST_SINGLES` (revocations per single run, default
//! 40,000), `INGEST_BULK` (revocations per bulk run, default 400,000),
//! `INGEST_BATCH_WAIT_US` (gather window, default 0).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use revocast_publisher::{Config, Publisher};
use revocast_testkit::NatsServer;
use serde_json::json;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `total` single revocations from `concurrency` callers; returns revocations/s and
/// the per-call latencies.
async fn singles(url: &str, run: u64, total: u64, concurrency: u64) -> (f64, Vec<Duration>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let exp = now() + 3600;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let next = next.clone();
        let url = format!("{url}/v1/revocations");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return latencies;
                }
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .json(&json!({"jti": format!("s{run}-{i}"), "exp": exp + i % 3600}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    (total as f64 / start.elapsed().as_secs_f64(), latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// `total` revocations in bulk calls of `size` from `concurrency` callers.
async fn bulk(url: &str, run: u64, total: u64, size: u64, concurrency: u64) -> f64 {
    let client = reqwest::Client::new();
    let calls = total / size;
    let next = Arc::new(AtomicU64::new(0));
    let exp = now() + 3600;
    // Bodies are built before the clock starts.
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..calls)
            .map(|c| {
                let list: Vec<_> = (0..size)
                    .map(|i| json!({"jti": format!("b{run}-{c}-{i}"), "exp": exp + i % 3600}))
                    .collect();
                json!({ "revocations": list }).to_string()
            })
            .collect(),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let next = next.clone();
        let bodies = bodies.clone();
        let url = format!("{url}/v1/revocations");
        tasks.push(tokio::spawn(async move {
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(body) = bodies.get(c) else { return };
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (calls * size) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and
    // expects a quick smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let runs = if smoke { 1 } else { env("INGEST_RUNS", 5) };
    let singles_total = if smoke {
        500
    } else {
        env("INGEST_SINGLES", 40_000)
    };
    let bulk_total = if smoke {
        2_000
    } else {
        env("INGEST_BULK", 400_000)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = NatsServer::start();
        let mut config = Config::for_tests(server.url()).unwrap();
        config.heartbeat_interval = Duration::from_secs(1);
        config.max_bulk = 1_000;
        config.batch.max_wait = Duration::from_micros(env("INGEST_BATCH_WAIT_US", 0));
        println!("gather window {:?}", config.batch.max_wait);
        let publisher = Publisher::start(config).await.unwrap();
        publisher.wait_ready(Duration::from_secs(20)).await.unwrap();
        let url = publisher.url();
        for concurrency in [1, 64, 256] {
            // One caller shows the latency of a lone revocation; fewer calls suffice.
            let n = if concurrency == 1 { singles_total.min(5_000) } else { singles_total };
            let mut rates = Vec::new();
            let mut all = Vec::new();
            for run in 0..runs {
                let (rate, latencies) = singles(&url, concurrency * 100 + run, n, concurrency).await;
                eprintln!("singles c={concurrency} run {run}: {rate:.0}/s");
                rates.push(rate);
                all.extend(latencies);
            }
            all.sort();
            println!(
                "ingest/single concurrency={concurrency}: median {:.0} durable revocations/s over {runs} runs of {n}; call latency p50 {:?} p99 {:?}",
                median(rates),
                percentile(&all, 0.5),
                percentile(&all, 0.99)
            );
        }
        let mut rates = Vec::new();
        for run in 0..runs {
            let rate = bulk(&url, run, bulk_total, 1_000, 4).await;
            eprintln!("bulk run {run}: {rate:.0}/s");
            rates.push(rate);
        }
        println!(
            "ingest/bulk 1000 per call, 4 callers: median {:.0} durable revocations/s over {runs} runs of {bulk_total}",
            median(rates)
        );
        let stats = publisher.stats();
        println!(
            "deltas {} (avg {:.0} revocations each), live entries {}, bits/entry {:.1}",
            stats.deltas.count,
            stats.revocations.added as f64 / stats.deltas.count.max(1) as f64,
            stats.filter.live_entries,
            stats.filter.bits_per_entry
        );
        publisher.shutdown().await.unwrap();
    });
}
