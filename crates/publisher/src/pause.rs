//! [`PausePoint`]: stops the writer at one exact step of a commit, so that a test can
//! look at the system inside a window that is otherwise microseconds wide (what the
//! authority answers while replicas already hold a delta, say). Unarmed, passing one
//! costs an atomic load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use tokio::sync::{Semaphore, watch};

/// A step the writer can be held at. Cheap to clone; clones share the point.
///
/// ```no_run
/// # async fn example(config: &revocast_publisher::Config) {
/// let pause = config.pause_after_broadcast.clone();
/// pause.arm(); // the next commit stops after its live broadcast
/// // ... start a revocation in another task ...
/// pause.reached().await; // the writer is held here now
/// // ... look at replicas and the authority ...
/// pause.release();
/// # }
/// ```
#[derive(Clone, Default)]
pub struct PausePoint {
    inner: Arc<Inner>,
}

struct Inner {
    armed: AtomicBool,
    held: watch::Sender<bool>,
    release: Semaphore,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            armed: AtomicBool::new(false),
            held: watch::Sender::new(false),
            release: Semaphore::new(0),
        }
    }
}

impl std::fmt::Debug for PausePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PausePoint")
            .field("armed", &self.inner.armed.load(SeqCst))
            .field("held", &*self.inner.held.borrow())
            .finish()
    }
}

impl PausePoint {
    /// The next pass through this point holds the writer until [`PausePoint::release`].
    pub fn arm(&self) {
        self.inner.armed.store(true, SeqCst);
    }

    /// Resolves once the writer is held at this point.
    pub async fn reached(&self) {
        let mut held = self.inner.held.subscribe();
        // The sender lives in `inner`, which `self` keeps alive.
        let _ = held.wait_for(|held| *held).await;
    }

    /// Lets a held writer go on (or the next one through, if none is held yet).
    pub fn release(&self) {
        self.inner.release.add_permits(1);
    }

    /// Called by the writer at this point: returns at once unless armed.
    pub(crate) async fn pass(&self) {
        if !self.inner.armed.swap(false, SeqCst) {
            return;
        }
        self.inner.held.send_replace(true);
        // The semaphore is never closed, so `acquire` only fails if it were.
        if let Ok(permit) = self.inner.release.acquire().await {
            permit.forget();
        }
        self.inner.held.send_replace(false);
    }
}
