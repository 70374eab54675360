//! The end-to-end tests, one binary, so one link instead of one per file: the publisher,
//! subscribers and real `nats-server` processes together.
//! - `replicas`: a protected service, bulk loads, cutoffs, fan-out, restarts.
//! - `permissions`: what a NATS account may and may not do to a replica.
//! - `monitoring`: the alert rules (promtool), the dashboard, and a real Prometheus
//!   firing and resolving the staleness alert.
//! - `upgrades`: messages and snapshots in a newer wire format than this build reads.
//! - `idp`: an identity provider's back-channel logout reaching replicas and the sidecar.
//! - `guarantee`: the paths around invariant 1, each held at the step where it broke.
//! - `rotation`: signing key rotation with replicas running, and a stolen key.
//! - `faults`: the reliability suite of RELIABILITY.md, whose long version runs with
//!   `REVOCAST_FAULTS_LONG=1 cargo test -p revocast-tests --test it faults -- --nocapture --test-threads 1`.

mod faults;
mod guarantee;
mod idp;
mod monitoring;
mod permissions;
mod replicas;
mod rotation;
mod upgrades;
