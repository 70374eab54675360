//! Durable ingest of single revocations: many callers, one revocation per call, each
//! answered only once JetStream stored its delta. (Bulk ingest is measured while
//! loading each size, see `sized`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::measure::{Percentiles, Spread};
use crate::options::Options;
use crate::report::SinglesIngest;
use crate::stack::{Stack, revocation};
use crate::workload::Family;

/// Runs `--runs` rounds of `--singles` revocations on a fresh stack.
pub async fn run(options: &Options) -> Result<SinglesIngest, BenchError> {
    let stack = Stack::start().await?;
    let result = singles(options, &stack).await;
    stack.stop().await;
    result
}

async fn singles(options: &Options, stack: &Stack) -> Result<SinglesIngest, BenchError> {
    let mut rates = Vec::new();
    let mut latencies = Vec::new();
    for run in 0..options.runs as u64 {
        let total = options.singles;
        let base = run * total;
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..options.singles_concurrency.max(1) {
            let api = stack.api().clone();
            let next = next.clone();
            let start = stack.start;
            tasks.push(tokio::spawn(async move {
                let mut took: Vec<Duration> = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<_, BenchError>(took);
                    }
                    let item = revocation(Family::Extra, start, base + i);
                    let sent = Instant::now();
                    api.revoke(&item).await?;
                    took.push(sent.elapsed());
                }
            }));
        }
        for task in tasks {
            latencies.extend(
                task.await
                    .map_err(|e| BenchError::Setup(format!("ingest task: {e}")))??,
            );
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        eprintln!("[ingest] singles run {run}: {rate:.0} revocations/s");
        rates.push(rate);
    }
    Ok(SinglesIngest {
        concurrency: options.singles_concurrency,
        per_run: options.singles,
        per_second: Spread::of(rates),
        latency: Percentiles::of(&latencies),
    })
}
