//! [`Clock`]: where the publisher reads the time. Every timestamp it signs (deltas,
//! heartbeats, snapshots) and every expiry decision comes from the clock in its
//! [`crate::Config`], so that tests can run a publisher ahead of or behind the
//! machine's clock (the fault suite's clock-skew scenario) without touching the
//! production path. Decisions that drop live state use it bounded by what the
//! publisher can vouch for apart from it (`TimeBound`): a clock far ahead cannot
//! expire what every other clock holds live.

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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

/// How far the clock may run ahead of the time the publisher can vouch for before a
/// decision that drops live state uses the bound instead (NTP slews stay well within
/// it).
pub(crate) const SLACK_SECS: u64 = 60;

/// The latest time the publisher can vouch for apart from its own clock, for the
/// decisions that drop what replicas hold: an `Expire`, a revocation or a cutoff found
/// already expired. Two bounds, each plus [`SLACK_SECS`]:
/// - the clock when the publisher started, plus the monotonic time since: a clock
///   that jumps ahead while it runs;
/// - the latest time the NATS server stamped on the log, plus the monotonic time
///   since it was read: a clock that was already ahead when it started.
///
/// Before NATS's time was read, only the first applies.
#[derive(Debug)]
pub(crate) struct TimeBound {
    started_secs: u64,
    started: Instant,
    /// NATS's time (unix seconds) and the monotonic instant it was read.
    observed: Mutex<Option<(u64, Instant)>>,
}

/// A time read from the clock, bounded by [`TimeBound`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounded {
    /// The time to act on: the clock's, or the bound when the clock is past it.
    pub(crate) now: u64,
    /// The clock's time, when it was past the bound.
    pub(crate) clock_ahead: Option<u64>,
}

impl TimeBound {
    /// Anchors the first bound at `clock_secs`, the clock now.
    pub(crate) fn new(clock_secs: u64) -> TimeBound {
        TimeBound {
            started_secs: clock_secs,
            started: Instant::now(),
            observed: Mutex::new(None),
        }
    }

    /// Notes `nats_secs`, a time the NATS server stamped (on a log message, or on the
    /// stream's creation), read just now. Keeps whichever reading vouches for the
    /// later time.
    pub(crate) fn observe(&self, nats_secs: u64) {
        let mut observed = self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let later = observed.is_none_or(|(secs, at)| {
            nats_secs > secs.saturating_add(now.duration_since(at).as_secs())
        });
        if later {
            *observed = Some((nats_secs, now));
        }
    }

    /// Whether NATS's time was read.
    pub(crate) fn is_observed(&self) -> bool {
        self.observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// `clock_secs`, bounded by both bounds.
    pub(crate) fn bounded(&self, clock_secs: u64) -> Bounded {
        let observed = *self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let vouched = observed.map(|(secs, at)| secs.saturating_add(at.elapsed().as_secs()));
        let bound = vouched
            .map_or(self.since_start(), |v| v.min(self.since_start()))
            .saturating_add(SLACK_SECS);
        if clock_secs <= bound {
            Bounded {
                now: clock_secs,
                clock_ahead: None,
            }
        } else {
            Bounded {
                now: bound,
                clock_ahead: Some(clock_secs),
            }
        }
    }

    /// `clock_secs`, bounded by the first bound only: how far ahead the `exp` of a
    /// live token may lie. A bound below the real time here would leave the latest
    /// buckets out of a revocation without `exp`, so NATS's time (which can be late,
    /// never early) does not lower it.
    pub(crate) fn horizon(&self, clock_secs: u64) -> u64 {
        clock_secs.min(self.since_start().saturating_add(SLACK_SECS))
    }

    fn since_start(&self) -> u64 {
        self.started_secs
            .saturating_add(self.started.elapsed().as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_within_the_bounds_is_used_as_it_is() {
        let bound = TimeBound::new(1_000);
        assert_eq!(bound.bounded(1_000 + SLACK_SECS).clock_ahead, None);
        bound.observe(1_000);
        assert_eq!(
            bound.bounded(1_030),
            Bounded {
                now: 1_030,
                clock_ahead: None
            }
        );
    }

    #[test]
    fn a_clock_ahead_at_start_is_bounded_by_nats_time() {
        // Started a day ahead: the first bound alone would let it through.
        let day = 86_400;
        let bound = TimeBound::new(1_000 + day);
        assert_eq!(bound.bounded(1_000 + day).clock_ahead, None);
        bound.observe(1_000);
        let b = bound.bounded(1_000 + day);
        assert_eq!(b.clock_ahead, Some(1_000 + day));
        assert!(b.now <= 1_000 + SLACK_SECS + 1, "{b:?}");
        // Neither bound lowers the horizon of live tokens below the clock at start.
        assert_eq!(bound.horizon(1_000 + day), 1_000 + day);
    }

    #[test]
    fn the_later_reading_of_nats_time_wins() {
        let bound = TimeBound::new(5_000);
        bound.observe(4_000);
        bound.observe(3_000); // an older message read later: ignored
        assert_eq!(bound.bounded(5_000).now, 4_000 + SLACK_SECS);
        bound.observe(4_900);
        assert_eq!(bound.bounded(5_000).now, 4_960);
    }
}
