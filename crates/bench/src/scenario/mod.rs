//! The scenarios. Each starts what it needs and returns its figures.
//! - [`sized`]: per number of live revocations: bulk ingest, cold start, memory,
//!   checks per second, authority load.
//! - [`propagation`]: revoke call answered -> N replicas (in several processes)
//!   reject, and the CPU one delta costs each.
//! - [`ingest`]: concurrent single revocations.

pub mod ingest;
pub mod propagation;
pub mod sized;
