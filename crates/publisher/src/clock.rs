//! Wall-clock time as the wire format counts it.
//!
//! The fault suite runs publisher processes whose clock is off by a set number of
//! seconds: `REVOCAST_TEST_CLOCK_OFFSET_SECS` (signed, read once). Never set it in
//! production.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The test-only clock offset in milliseconds.
fn offset_ms() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("REVOCAST_TEST_CLOCK_OFFSET_SECS")
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map_or(0, |secs| secs.saturating_mul(1000))
    })
}

/// Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    real.saturating_add_signed(offset_ms())
}

/// Unix seconds.
pub(crate) fn now_secs() -> u64 {
    now_ms() / 1000
}
