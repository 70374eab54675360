//! Revoke call answered -> every one of N replicas holds the revocation, for each N,
//! with the replicas spread over several processes as a fleet runs them
//! ([`crate::fleet`]): each replica tells the observer when its checks see a new
//! version; nothing polls. Also the CPU one delta costs each replica.

use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::fleet::{Fleet, unix_ns};
use crate::measure::Percentiles;
use crate::options::Options;
use crate::report::PropagationRow;
use crate::stack::{Stack, revocation};
use crate::workload::Family;

/// How long one revocation may take to reach every replica before it counts as a
/// timeout.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);
/// The idle window whose CPU (heartbeats, timers) is subtracted from the deltas'.
const IDLE_WINDOW: Duration = Duration::from_secs(3);

/// Runs the propagation scenario for every `--replicas` count.
pub async fn run(
    options: &Options,
    notes: &mut Vec<String>,
) -> Result<Vec<PropagationRow>, BenchError> {
    let stack = Stack::start_with_heartbeats(options.heartbeat_interval.into()).await?;
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
    let publisher = stack.publisher();
    for &n in &options.replicas {
        let processes = options.replica_processes.clamp(1, n.max(1));
        eprintln!("[propagation] starting {n} replicas in {processes} processes");
        let started = Instant::now();
        let fleet = match Fleet::start(
            &stack.nats().url(),
            &publisher.public_key(),
            publisher.namespace(),
            n,
            processes,
        )
        .await
        {
            Ok(fleet) => fleet,
            Err(e) => {
                notes.push(format!("propagation: {n} replicas not measured: {e}"));
                eprintln!("WARNING: {n} replicas not measured: {e}");
                continue;
            }
        };
        let setup = started.elapsed();

        // What the fleet costs doing nothing (heartbeats, timers), per second.
        let (idle_cpu, idle_wall) = (fleet.cpu_ns(), Instant::now());
        tokio::time::sleep(IDLE_WINDOW).await;
        let idle_rate = (fleet.cpu_ns() - idle_cpu) as f64 / idle_wall.elapsed().as_secs_f64();

        let mut after_answer = Vec::new();
        let mut after_call = Vec::new();
        let mut calls = Vec::new();
        let mut timeouts = 0;
        let (busy_cpu, busy_wall) = (fleet.cpu_ns(), Instant::now());
        for _ in 0..options.propagation_revocations {
            serial += 1;
            let item = revocation(Family::Extra, stack.start, serial);
            let sent = unix_ns();
            let committed = stack.api().revoke(&item).await?;
            let answered = unix_ns();
            calls.push(nanos(answered.saturating_sub(sent)));
            match fleet.last_to_hold(committed.version, REACH_TIMEOUT).await {
                Some(last) => {
                    after_answer.push(nanos(last.saturating_sub(answered)));
                    after_call.push(nanos(last.saturating_sub(sent)));
                }
                None => timeouts += 1,
            }
        }
        let busy_seconds = busy_wall.elapsed().as_secs_f64();
        let busy = (fleet.cpu_ns() - busy_cpu) as f64 - idle_rate * busy_seconds;
        let deltas = options.propagation_revocations.max(1) as f64;
        let synced = fleet.stop().await;

        let row = PropagationRow {
            replicas: n,
            processes,
            ready: n,
            setup_seconds: setup.as_secs_f64(),
            all_after_answer: Percentiles::of(&after_answer),
            all_after_call: Percentiles::of(&after_call),
            call: Percentiles::of(&calls),
            timeouts,
            cpu_per_delta_per_replica_us: (busy / deltas / n as f64 / 1e3).max(0.0),
            fleet_cpu_per_delta_ms: (busy / deltas / 1e6).max(0.0),
            idle_cpu_share: idle_rate / 1e9,
            synced,
            load_average: crate::machine::load_average(),
        };
        eprintln!(
            "[propagation] {n} replicas: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             {:.1} us of CPU per delta per replica",
            row.all_after_answer.p50_ms,
            row.all_after_answer.p99_ms,
            row.all_after_answer.max_ms,
            row.cpu_per_delta_per_replica_us
        );
        rows.push(row);
    }
    Ok(rows)
}

fn nanos(ns: u128) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}
