//! Wall-clock time as the wire format counts it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Unix seconds.
pub(crate) fn now_secs() -> u64 {
    now_ms() / 1000
}
