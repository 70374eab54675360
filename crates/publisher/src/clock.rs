//! [`Clock`]: where the publisher reads the time. Every timestamp it signs (deltas,
//! heartbeats, snapshots) and every expiry decision comes from the clock in its
//! [`crate::Config`], so that tests can run a publisher ahead of or behind the
//! machine's clock (the fault suite's clock-skew scenario) without touching the
//! production path.

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, in unix milliseconds.
///
/// ```
/// use revocast_publisher::{Clock, SystemClock};
/// /// A clock an hour ahead, as a test might inject through `Config::clock`.
/// #[derive(Debug)]
/// struct Ahead;
/// impl Clock for Ahead {
///     fn now_ms(&self) -> u64 {
///         SystemClock.now_ms() + 3_600_000
///     }
/// }
/// assert!(Ahead.now_secs() > SystemClock.now_secs());
/// ```
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Unix milliseconds now.
    fn now_ms(&self) -> u64;

    /// Unix seconds now.
    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }
}

/// The machine's clock: what a publisher uses unless told otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Unix milliseconds (0 if the clock is before 1970).
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}
