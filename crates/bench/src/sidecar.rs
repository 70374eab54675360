//! `revocast-bench-sidecar`: `/check` of the forward-auth sidecar on loopback, alone
//! and through a real nginx (`auth_request` with deploy/nginx/revocast.conf) in front
//! of a trivial upstream.
//!
//! Everything runs on this machine: nats-server, the publisher, the sidecar, nginx,
//! the upstream and the load generator share its cores, so the figures are an upper
//! bound on latency for the machine, not for the sidecar alone. Two measures per
//! target: the most checks per second a fixed number of connections gets (closed
//! loop), and the latency at a fixed offered rate (open loop: requests leave on a
//! schedule whether or not earlier ones came back, and each latency counts from its
//! scheduled time, so a stall is not hidden).

use std::sync::Arc;
use std::time::{Duration, Instant};

use revocast_publisher::Config as PublisherConfig;
use revocast_sidecar::{App, Config};
use revocast_testkit::{NatsServer, Nginx, OpenIdProvider, free_port, nginx_bin, start_publisher};
use revocast_verifier::{IssuerOptions, StaticKey};
use tokio::sync::Semaphore;

use crate::error::BenchError;

/// What to measure.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "revocast-bench-sidecar",
    about = "checks/s and p50/p99 of the sidecar's /check, direct and through nginx"
)]
pub struct SidecarOptions {
    /// Seconds per measure.
    #[arg(long, env = "BENCH_SECS", default_value_t = 5.0)]
    pub secs: f64,
    /// Connections (and requests in flight) of the closed-loop measure.
    #[arg(long, env = "BENCH_CONNECTIONS", default_value_t = 32)]
    pub connections: usize,
    /// Offered rates (checks per second) of the open-loop measure.
    #[arg(
        long,
        env = "BENCH_RATES",
        value_delimiter = ',',
        default_value = "1000,10000"
    )]
    pub rates: Vec<u64>,
    /// Token algorithm: `es256` (an OpenID provider's key by discovery) or `hs256`.
    #[arg(long, env = "BENCH_ALG", default_value = "es256")]
    pub alg: String,
}

/// One row of results.
#[derive(Debug)]
struct Row {
    target: &'static str,
    mode: String,
    sent: u64,
    per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    errors: u64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the measures and prints a Markdown table.
pub async fn run(options: SidecarOptions) -> Result<(), BenchError> {
    let nats = NatsServer::start();
    let publisher = start_publisher(PublisherConfig::for_tests(nats.url())?).await;
    let idp = OpenIdProvider::start().await;
    let secret = b"bench-secret-bench-secret-bench!";
    let (issuer, token) = match options.alg.as_str() {
        "hs256" => (
            IssuerOptions::static_keys(None, vec![StaticKey::hs256(secret)]),
            hs256_token(secret),
        ),
        _ => (
            IssuerOptions::discover(idp.issuer()).audience("bench"),
            idp.access_token("alice", "bench", "bench-jti", 3600),
        ),
    };
    let mut config = Config::new(nats.url(), publisher.public_key(), vec![issuer]);
    config.namespace = publisher.namespace().clone();
    let app = App::start(config)
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.is_ready() {
        if Instant::now() > deadline {
            return Err(BenchError::Setup("the sidecar did not get ready".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sidecar = serve(revocast_sidecar::app::router(app.clone())).await?;
    let upstream = serve(axum::Router::new().fallback(|| async { "ok" })).await?;
    let mut targets = vec![(
        "sidecar /check",
        format!("http://127.0.0.1:{sidecar}/check"),
    )];
    let _nginx = match nginx_bin() {
        Some(bin) => {
            let listen = free_port();
            let conf = std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../deploy/nginx/revocast.conf"
            ))?
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{listen}"))
            .replace("127.0.0.1:8090", &format!("127.0.0.1:{sidecar}"))
            .replace("127.0.0.1:3000", &format!("127.0.0.1:{upstream}"));
            let nginx = Nginx::start(&bin, &conf, listen);
            targets.push(("nginx auth_request", format!("{}/orders/7", nginx.url())));
            Some(nginx)
        }
        None => {
            eprintln!("nginx not installed: only the direct /check is measured");
            None
        }
    };

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.connections.max(256))
        .build()?;
    let auth = format!("Bearer {token}");
    let mut rows = Vec::new();
    for (target, url) in &targets {
        // Warm the connections and the caches.
        closed_loop(&client, url, &auth, options.connections, 1.0).await;
        rows.push(
            closed_loop(&client, url, &auth, options.connections, options.secs)
                .await
                .named(
                    target,
                    format!("closed loop, {} connections", options.connections),
                ),
        );
        for &rate in &options.rates {
            rows.push(
                open_loop(&client, url, &auth, rate, options.secs)
                    .await
                    .named(target, format!("open loop, {rate}/s offered")),
            );
        }
    }
    println!(
        "machine: {} cores, load average {}; token {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        crate::machine::load_average(),
        options.alg
    );
    println!("| target | mode | requests | checks/s | p50 µs | p99 µs | p99.9 µs | errors |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            r.target, r.mode, r.sent, r.per_sec, r.p50_us, r.p99_us, r.p999_us, r.errors
        );
    }
    Ok(())
}

struct Measure {
    latencies: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

impl Measure {
    fn named(mut self, target: &'static str, mode: String) -> Row {
        self.latencies.sort_unstable();
        let sent = self.latencies.len() as u64 + self.errors;
        Row {
            target,
            mode,
            sent,
            per_sec: self.latencies.len() as f64 / self.elapsed.as_secs_f64(),
            p50_us: percentile(&self.latencies, 0.50),
            p99_us: percentile(&self.latencies, 0.99),
            p999_us: percentile(&self.latencies, 0.999),
            errors: self.errors,
        }
    }
}

async fn one(client: &reqwest::Client, url: &str, auth: &str) -> bool {
    match client.get(url).header("authorization", auth).send().await {
        Ok(response) => {
            response.status() == reqwest::StatusCode::OK && response.bytes().await.is_ok()
        }
        Err(_) => false,
    }
}

async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    auth: &str,
    connections: usize,
    secs: f64,
) -> Measure {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url, auth) = (client.clone(), url.to_owned(), auth.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                while Instant::now() < end {
                    let t = Instant::now();
                    if one(&client, &url, &auth).await {
                        latencies.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut measure = Measure {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        if let Ok((latencies, errors)) = worker.await {
            measure.latencies.extend(latencies);
            measure.errors += errors;
        }
    }
    measure.elapsed = start.elapsed();
    measure
}

async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    auth: &str,
    rate: u64,
    secs: f64,
) -> Measure {
    let total = (rate as f64 * secs) as u64;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let in_flight = Arc::new(Semaphore::new(4096));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + gap * i as u32;
        let now = Instant::now();
        if due > now + Duration::from_millis(1) {
            tokio::time::sleep(due - now).await;
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (client, url, auth) = (client.clone(), url.to_owned(), auth.to_owned());
        tasks.push(tokio::spawn(async move {
            let ok = one(&client, &url, &auth).await;
            drop(permit);
            // From the scheduled time: a late start counts as latency.
            (ok, due.elapsed().as_micros() as u64)
        }));
    }
    let mut measure = Measure {
        latencies: Vec::with_capacity(tasks.len()),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        match task.await {
            Ok((true, us)) => measure.latencies.push(us),
            _ => measure.errors += 1,
        }
    }
    measure.elapsed = start.elapsed();
    measure
}

async fn serve(router: axum::Router) -> Result<u16, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(port)
}

/// An HS256 token with `jti` and `exp`, signed with `secret`.
fn hs256_token(secret: &[u8]) -> String {
    use revocast_verifier::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let claims = serde_json::json!({
        "sub": "alice",
        "jti": "bench-jti",
        "exp": crate::workload::now() + 3600,
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}
