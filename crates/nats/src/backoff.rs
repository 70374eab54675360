//! [`Backoff`]: how long to wait before the next attempt of something that failed.

use std::time::Duration;

/// Doubling delays from `initial` up to `max`, for retry loops: a NATS server that
/// restarts is back within a second, one that is down for longer is not asked
/// more than once per `max`.
///
/// ```
/// use std::time::Duration;
/// use revocast_nats::Backoff;
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
/// let delays: Vec<_> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
/// assert_eq!(delays, [100, 200, 300, 300]);
/// assert_eq!(backoff.attempts(), 4);
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    attempts: u32,
}

impl Backoff {
    /// Delays starting at `initial`, doubling, never above `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial.min(max),
            attempts: 0,
        }
    }

    /// The delay to wait now; the next one is twice as long (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        delay
    }

    /// The delay [`Backoff::next_delay`] will give, without taking it (for logs).
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Sleeps for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// How many delays were taken since the start or the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let ms: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.peek(), Duration::from_millis(50));
        assert_eq!(b.attempts(), 0);
        let mut capped = Backoff::new(Duration::from_secs(9), Duration::from_secs(1));
        assert_eq!(capped.next_delay(), Duration::from_secs(1));
    }
}
