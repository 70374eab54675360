//! # revocast-publisher
//!
//! The auth team's daemon: it holds the authoritative set of revoked tokens, commits
//! every change as a signed, versioned delta on a JetStream stream, broadcasts it to
//! every subscriber, answers confirm requests (the authority), and serves the admin
//! API. The `revocast-publisher` binary is a thin CLI over this library; tests start
//! a publisher in-process with [`Publisher::start`] or [`run`].
//!
//! The NATS side follows the "# Protocol" section of [`revocast_core`] exactly.
//!
//! # Layout
//! - [`config`]: [`Config`] and its parts; [`parse_duration`] for human durations.
//! - `server`: [`run`] and the [`Publisher`] handle: starts HTTP, loads state, starts
//!   the tasks below, shuts them down in order within a bound.
//! - `nats`: connection, stream and snapshot bucket; rebuilding the ledger from the
//!   snapshot plus the stream at start.
//! - `ledger`: the filter plus the exact records (`jti` -> exp, sub, reason,
//!   revoked_at) the authority answers from. Changes only through stored deltas.
//! - [`writer`]: the single writer: group commit of revocations into signed deltas,
//!   published with expected-last-sequence; callers hear success only once stored.
//! - `authority`: the confirm endpoint as a NATS micro service.
//! - `tasks`: heartbeats and snapshots.
//! - `api`: the HTTP API (axum) with JSON errors.
//! - [`stats`]: counters for `/v1/stats` and `/metrics`.
//! - [`client`]: the HTTP client behind the `revoke`, `cutoff`, `stats` and `import`
//!   commands.
//! - [`keys`]: the signing key file (`keygen`, created on first start).
//! - `jwt`: claims of a JWT for `/oauth/revoke`.
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod api;
mod authority;
pub mod client;
mod clock;
pub mod config;
mod error;
mod jwt;
pub mod keys;
mod ledger;
mod nats;
mod server;
mod state;
pub mod stats;
mod tasks;
pub mod writer;

pub use config::{BatchLimits, Config, KeySource, NatsOptions, parse_duration};
pub use error::Error;
pub use ledger::Record;
pub use server::{Publisher, run};
pub use stats::StatsReport;
pub use writer::{CommitError, Committed, Revocation};
