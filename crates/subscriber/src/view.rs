//! The per-thread view of a replica's filter: what the check path reads, without an
//! atomic read-modify-write per check.
//!
//! The sync task replaces the replica's filter whole (`ArcSwap`) after each batch of
//! deltas. Loading it through `ArcSwap` costs two atomic read-modify-writes per check
//! (take and pay back a debt), and counting the check a third: on x86 each is a full
//! barrier, which also stops the CPU from overlapping one check's memory reads with the
//! next one's. So each thread keeps, for one replica:
//! - the `Arc<Filter>` it last loaded and the replica's generation at that time: a
//!   check compares the generation (a plain load) and loads the filter again only
//!   when the sync task published a new one;
//! - its own check counter, which only it writes (a plain load and store), and which
//!   [`Views::checks`] sums for stats.
//!
//! A thread views one replica (the first it checks); checks of other replicas from the
//! same thread take the `ArcSwap` path, so nothing grows with the number of replicas. A
//! thread's view keeps the filter it last used alive until its next check (or until the
//! thread ends), after the replica is dropped too: in a service, threads check all the
//! time; an idle thread holds at most one old version.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use revocast_core::{Filter, Lookup};

use crate::claims::TokenClaims;
use crate::subscriber::Shared;

/// A process-wide id per replica, so a view is never taken for another replica that
/// happens to live at the same address.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a replica keeps about the threads viewing it.
#[derive(Debug)]
pub(crate) struct Views {
    id: u64,
    /// Bumped (release) after every filter the sync task publishes.
    generation: AtomicU64,
    /// Every viewing thread's check counter.
    checks: Mutex<Vec<Arc<AtomicU64>>>,
}

impl Default for Views {
    fn default() -> Self {
        Views {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            checks: Mutex::new(Vec::new()),
        }
    }
}

impl Views {
    /// Tells the viewing threads that the replica's filter changed. Call it after
    /// storing the new filter.
    pub(crate) fn published(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Checks counted by viewing threads.
    pub(crate) fn checks(&self) -> u64 {
        let threads = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        threads.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

struct View {
    id: u64,
    replica: Weak<Shared>,
    generation: u64,
    filter: Arc<Filter>,
    checks: Arc<AtomicU64>,
}

thread_local! {
    static VIEW: RefCell<Option<View>> = const { RefCell::new(None) };
}

/// Looks `claims` up in `shared`'s current filter, counting one check: the check
/// path. The lookup is inlined into the thread's view (its probe made there, from
/// the claims in place); the replica's `ArcSwap` is read out of line, in the rare
/// case the view cannot serve.
#[inline(always)]
pub(crate) fn lookup(shared: &Arc<Shared>, claims: &TokenClaims) -> Lookup {
    match viewed(shared, 1, |filter| filter.lookup(&claims.probe())) {
        Some(answer) => answer,
        None => shared_path(shared, 1, &mut |filter| filter.lookup(&claims.probe())),
    }
}

/// Counts `checks` checks of `shared` and runs `f` on its current filter.
#[inline]
pub(crate) fn with_filter<R>(
    shared: &Arc<Shared>,
    checks: u64,
    mut f: impl FnMut(&Filter) -> R,
) -> R {
    match viewed(shared, checks, &mut f) {
        Some(answer) => answer,
        None => shared_path(shared, checks, &mut f),
    }
}

/// Runs `f` on the filter of this thread's view of `shared` (made on the first check,
/// refreshed when the sync task published a new filter), counting `checks` checks;
/// `None` (and `f` not run) if the thread views another replica, or its view is busy
/// or gone. `f` is called from this one place: the compiler inlines it here.
#[inline(always)]
fn viewed<R>(shared: &Arc<Shared>, checks: u64, f: impl FnOnce(&Filter) -> R) -> Option<R> {
    let views = &shared.views;
    let generation = views.generation.load(Ordering::Acquire);
    VIEW.try_with(|cell| {
        // Busy only if `f` checks again on this thread: take the shared path.
        let mut view = cell.try_borrow_mut().ok()?;
        let v = match &mut *view {
            Some(v) if v.id == views.id => v,
            other => adopt(other, shared, generation)?,
        };
        if v.generation != generation {
            v.filter = shared.filter.load_full();
            v.generation = generation;
        }
        // Only this thread writes its counter.
        let counted = v.checks.load(Ordering::Relaxed) + checks;
        v.checks.store(counted, Ordering::Relaxed);
        Some(f(&v.filter))
    })
    .ok()
    .flatten()
}

/// Makes `view` this thread's view of `shared`, unless it views another live replica.
#[cold]
#[inline(never)]
fn adopt<'v>(
    view: &'v mut Option<View>,
    shared: &Arc<Shared>,
    generation: u64,
) -> Option<&'v mut View> {
    if view.as_ref().is_some_and(|v| v.replica.strong_count() > 0) {
        return None;
    }
    let views = &shared.views;
    let counter = Arc::new(AtomicU64::new(0));
    views
        .checks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(counter.clone());
    Some(view.insert(View {
        id: views.id,
        replica: Arc::downgrade(shared),
        generation,
        filter: shared.filter.load_full(),
        checks: counter,
    }))
}

/// A check from a thread that views another replica (or whose view is busy or gone):
/// through the replica's `ArcSwap`, counted in the shared counter.
#[cold]
#[inline(never)]
fn shared_path<R>(shared: &Shared, checks: u64, f: &mut impl FnMut(&Filter) -> R) -> R {
    shared.counters.checks.fetch_add(checks, Ordering::Relaxed);
    f(&shared.filter.load())
}
