//! The end-to-end tests, one binary, so one link instead of one per file: the publisher,
//! subscribers and real `nats-server` processes together.
//! - `replicas`: a protected service, bulk loads, cutoffs, fan-out, restarts.
//! - `permissions`: what a NATS account may and may not do to a replica.
//! - `guarantee`: the paths around invariant 1, each held at the step where it broke.
//! - `faults`: the reliability suite of RELIABILITY.md, whose long version runs with
//!   `REVOCAST_FAULTS_LONG=1 cargo test -p revocast-tests --test it faults -- --nocapture --test-threads 1`.

mod faults;
mod guarantee;
mod permissions;
mod replicas;
