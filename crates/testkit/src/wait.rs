//! Waiting in tests without sleeping "to let things settle": every wait polls a
//! condition and gives up, failing the test, after a deadline.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a test waits for anything by default.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(10);

/// What a condition returns: `true` or `Some(value)` when it holds.
pub trait Outcome {
    /// What [`eventually`] returns once the condition holds.
    type Value;
    /// `Some` once the condition holds.
    fn value(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn value(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn value(self) -> Option<T> {
        self
    }
}

/// Polls `condition` until it holds (`true` or `Some`), failing the test after
/// [`DEADLINE`]. A synchronous check reads `|| std::future::ready(check())`.
///
/// ```no_run
/// # async fn example(replica: &std::sync::atomic::AtomicU64) {
/// use std::sync::atomic::Ordering;
/// revocast_testkit::eventually("version 3", || async { replica.load(Ordering::SeqCst) >= 3 }).await;
/// # }
/// ```
pub async fn eventually<F, Fut>(what: &str, condition: F) -> <Fut::Output as Outcome>::Value
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Outcome,
{
    eventually_within(what, DEADLINE, condition).await
}

/// [`eventually`] with another deadline.
pub async fn eventually_within<F, Fut>(
    what: &str,
    deadline: Duration,
    mut condition: F,
) -> <Fut::Output as Outcome>::Value
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Outcome,
{
    let start = Instant::now();
    loop {
        if let Some(value) = condition().await.value() {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Awaits `future`, failing the test after [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?}: {what}"))
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Sends logs to the test's output when `RUST_LOG` is set (for example
/// `RUST_LOG=revocast_subscriber=debug`).
pub fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn waits_for_true_or_some() {
        let n = AtomicU32::new(0);
        eventually("three polls", || async {
            n.fetch_add(1, Ordering::SeqCst) >= 2
        })
        .await;
        let got = eventually("a value", || async {
            let v = n.fetch_add(1, Ordering::SeqCst);
            (v >= 5).then_some(v)
        })
        .await;
        assert_eq!(got, 5);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting for: never")]
    async fn gives_up_at_the_deadline() {
        eventually_within("never", Duration::from_millis(50), || async { false }).await;
    }
}
