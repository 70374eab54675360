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
