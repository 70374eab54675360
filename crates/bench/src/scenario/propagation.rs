//! Revoke call answered -> every one of N replicas holds the revocation, for each N.
//! Every replica has its own NATS connection, all in this process.

use std::future::Future;
use std::time::{Duration, Instant};

use revocast_subscriber::Subscriber;

use crate::error::BenchError;
use crate::measure::Percentiles;
use crate::options::Options;
use crate::report::PropagationRow;
use crate::stack::{Stack, revocation};
use crate::workload::Family;
use tokio::task::JoinSet;

/// How long one revocation may take to reach every replica before it counts as a
/// timeout.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);
/// Replicas bootstrapping at once.
const CONNECT_CONCURRENCY: usize = 32;

/// Runs the propagation scenario for every `--replicas` count.
pub async fn run(
    options: &Options,
    notes: &mut Vec<String>,
) -> Result<Vec<PropagationRow>, BenchError> {
    let stack = Stack::start().await?;
    let result = measure(options, notes, &stack).await;
    stack.stop().await;
    result
}

async fn measure(
    options: &Options,
    notes: &mut Vec<String>,
    stack: &Stack,
) -> Result<Vec<PropagationRow>, BenchError> {
    let mut rows = Vec::new();
    let mut serial = 0u64;
    for &n in &options.replicas {
        eprintln!("[propagation] starting {n} replicas");
        let started = Instant::now();
        let url = stack.nats.url();
        let results = join_bounded(n, CONNECT_CONCURRENCY, |_| {
            let options = stack.options();
            let url = url.clone();
            async move {
                let replica = options.connect(&url).await?;
                tokio::time::timeout(Duration::from_secs(60), replica.ready())
                    .await
                    .map_err(|_| BenchError::Setup("replica not ready within 60 s".into()))?;
                Ok::<Subscriber, BenchError>(replica)
            }
        })
        .await;
        let mut replicas = Vec::with_capacity(n);
        let mut first_error = None;
        for r in results {
            match r {
                Ok(s) => replicas.push(s),
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        let setup = started.elapsed();
        if let Some(e) = &first_error {
            notes.push(format!(
                "propagation: {} of {n} replicas became ready in one process (first error: {e}); \
                 the row measures those",
                replicas.len()
            ));
        }
        if replicas.is_empty() {
            continue;
        }

        let mut after_answer = Vec::new();
        let mut after_call = Vec::new();
        let mut calls = Vec::new();
        let mut timeouts = 0;
        for _ in 0..options.propagation_revocations {
            serial += 1;
            let item = revocation(Family::Extra, stack.start, serial);
            let sent = Instant::now();
            let committed = stack.api().revoke(&item).await?;
            let answered = Instant::now();
            let watched = replicas.clone();
            let reached = tokio::task::spawn_blocking(move || {
                last_reached(&watched, committed.version, REACH_TIMEOUT)
            })
            .await
            .map_err(|e| BenchError::Setup(format!("watcher: {e}")))?;
            calls.push(answered - sent);
            match reached {
                Some(last) => {
                    after_answer.push(last.saturating_duration_since(answered));
                    after_call.push(last - sent);
                }
                None => timeouts += 1,
            }
        }
        let row = PropagationRow {
            replicas: n,
            ready: replicas.len(),
            setup_seconds: setup.as_secs_f64(),
            all_after_answer: Percentiles::of(&after_answer),
            all_after_call: Percentiles::of(&after_call),
            call: Percentiles::of(&calls),
            timeouts,
            load_average: crate::machine::load_average(),
        };
        eprintln!(
            "[propagation] {n} replicas: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            row.all_after_answer.p50_ms, row.all_after_answer.p99_ms, row.all_after_answer.max_ms
        );
        rows.push(row);
        drop(replicas);
    }
    Ok(rows)
}

/// Polls every replica's version (a lock-free load) until each is at `version` or
/// later; returns when the last one got there, or `None` after `timeout`. Runs on
/// its own thread, sleeping 50 us between passes, so the replicas' tasks keep the
/// runtime's threads.
fn last_reached(replicas: &[Subscriber], version: u64, timeout: Duration) -> Option<Instant> {
    let started = Instant::now();
    let mut pending: Vec<&Subscriber> = replicas.iter().collect();
    let mut last = started;
    while !pending.is_empty() {
        let now = Instant::now();
        let before = pending.len();
        pending.retain(|r| r.version() < version);
        if pending.len() < before {
            last = now;
        }
        if pending.is_empty() {
            break;
        }
        if now - started > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    Some(last)
}

/// Runs `make(i)` for `i in 0..n`, `limit` at a time; results in completion order.
async fn join_bounded<T, F, Fut>(n: usize, limit: usize, mut make: F) -> Vec<T>
where
    T: Send + 'static,
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let mut set = JoinSet::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if set.len() >= limit
            && let Some(Ok(v)) = set.join_next().await
        {
            out.push(v);
        }
        set.spawn(make(i));
    }
    while let Some(r) = set.join_next().await {
        if let Ok(v) = r {
            out.push(v);
        }
    }
    out
}
