//! # revocast-nats
//!
//! The NATS side that the publisher and every subscriber share, so that both read
//! what the publisher stores in one way (`revocast-core` stays free of I/O; this
//! crate is its asynchronous counterpart):
//! - [`store`]: [`Store`], the read path of a namespace: the snapshot object (one
//!   size limit, enforced before and while reading), the stream's bounds, and
//!   [`Replay`], a verified `replay(from..=to)` of the log that hands every message
//!   over as a [`LogEntry`]: a signed delta, or a message to skip.
//! - [`backoff`]: [`Backoff`], the delays of every retry loop.
//!
//! The names and the protocol are core's (see the "# Protocol" section of
//! [`revocast_core`]).

pub mod backoff;
pub mod store;

pub use backoff::Backoff;
pub use store::{LogEntry, ReadError, Replay, SnapshotRead, Store, StoredDelta, StreamBounds};
