//! Medians, percentiles and bounded timing loops.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Several runs of one figure; tables quote the median.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Spread {
    /// Median of `runs`.
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
    /// Every run, in order.
    pub runs: Vec<f64>,
}

impl Spread {
    /// The spread of `runs` (empty gives zeros).
    pub fn of(runs: Vec<f64>) -> Spread {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        Spread {
            median: median_of_sorted(&sorted),
            min: sorted.first().copied().unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
            runs,
        }
    }
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Latency percentiles of a sample, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile (nearest rank: with fewer than 100 samples, the largest or
    /// second largest).
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Percentiles {
    /// Percentiles of `samples`.
    pub fn of(samples: &[Duration]) -> Percentiles {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            if ms.is_empty() {
                return 0.0;
            }
            let k = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
            ms[k - 1]
        };
        Percentiles {
            count: ms.len(),
            p50_ms: median_of_sorted(&ms),
            p99_ms: rank(0.99),
            max_ms: ms.last().copied().unwrap_or(0.0),
            mean_ms: if ms.is_empty() {
                0.0
            } else {
                ms.iter().sum::<f64>() / ms.len() as f64
            },
        }
    }
}

/// What a timed loop did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    /// Operations done.
    pub ops: u64,
    /// Of which answered "revoked".
    pub revoked: u64,
    /// Of which failed (the authority did not answer in time); counted, not fatal.
    pub errors: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Tally {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Most operations of one timed loop, whatever the time (a bound, not a target).
pub const MAX_OPS: u64 = 2_000_000_000;

/// Calls `op(i)` for `i = 0, 1, ...` until `budget` has passed (checked every 256
/// calls) or [`MAX_OPS`]; `op` returns whether the answer was "revoked".
pub fn timed_loop<E>(
    budget: Duration,
    mut op: impl FnMut(u64) -> Result<bool, E>,
) -> Result<Tally, E> {
    let started = Instant::now();
    let mut tally = Tally::default();
    while tally.ops < MAX_OPS {
        for _ in 0..256 {
            tally.revoked += u64::from(op(tally.ops)?);
            tally.ops += 1;
        }
        if started.elapsed() >= budget {
            break;
        }
    }
    tally.elapsed = started.elapsed();
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_percentiles() {
        let s = Spread::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(vec![1.0, 2.0]).median, 1.5);
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(&samples);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        assert_eq!(p.p50_ms, 50.5);
    }

    #[test]
    fn timed_loop_is_bounded_by_time() {
        let tally =
            timed_loop::<()>(Duration::from_millis(20), |i| Ok(i % 2 == 0)).unwrap_or_default();
        assert!(tally.ops > 0 && tally.revoked * 2 == tally.ops);
        assert!(tally.elapsed >= Duration::from_millis(20));
    }
}
