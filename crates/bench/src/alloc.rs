//! The counting global allocator: heap bytes that a replica or a `HashSet` keeps,
//! measured rather than estimated. Counts requested bytes (what the program asked
//! for), not the allocator's own overhead, so its figures are lower bounds.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A window over every allocation of the process (all threads).
#[derive(Debug)]
pub struct Region(stats_alloc::Region<'static, System>);

impl Region {
    /// Starts counting now.
    pub fn start() -> Region {
        Region(stats_alloc::Region::new(GLOBAL))
    }

    /// Bytes allocated minus bytes freed since the start. `stats_alloc` already
    /// counts a `realloc` that grows as bytes allocated (and one that shrinks as bytes
    /// freed); its `bytes_reallocated` is the same change again and is not added.
    /// Other threads' allocations count too: measure while the process is otherwise
    /// quiet.
    pub fn net_bytes(&self) -> i64 {
        let change = self.0.change();
        let allocated = i64::try_from(change.bytes_allocated).unwrap_or(i64::MAX);
        let freed = i64::try_from(change.bytes_deallocated).unwrap_or(i64::MAX);
        allocated - freed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, MutexGuard};

    use super::*;

    /// The counter is process-wide and the test harness runs tests on parallel
    /// threads: a test that frees a buffer inside another test's window would shift
    /// that test's figure by the buffer's size. Every test here holds this lock.
    static QUIET: Mutex<()> = Mutex::new(());

    fn quiet() -> MutexGuard<'static, ()> {
        QUIET
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[test]
    fn counts_what_is_kept() {
        let _quiet = quiet();
        let region = Region::start();
        let kept: Vec<u8> = Vec::with_capacity(1 << 20);
        let bytes = region.net_bytes();
        assert!(bytes >= 1 << 20, "{bytes}");
        drop(kept);
    }

    /// A buffer grown by `realloc` counts once (it counted twice before: a replica's
    /// heap read 3.7 times its bitmaps at 1M entries instead of 1.1).
    #[test]
    fn growth_by_realloc_counts_once() {
        let _quiet = quiet();
        let mut grown: Vec<u8> = Vec::with_capacity(1 << 20);
        let region = Region::start();
        grown.reserve_exact(3 << 20); // from 1 MiB of capacity to 3 MiB
        let bytes = region.net_bytes();
        assert!(
            (2 << 20..(2 << 20) + (1 << 19)).contains(&bytes),
            "{bytes} bytes for 2 MiB more"
        );
        drop(grown);
        let freed = region.net_bytes();
        assert!(freed.abs() < 1 << 20, "{freed} bytes left after freeing it");
    }
}
