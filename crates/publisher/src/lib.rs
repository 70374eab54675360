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
//! - [`config`]: [`Config`], its parts and its [`config::defaults`].
//! - `server`: [`run`] and the [`Publisher`] handle: starts HTTP, loads state, starts
//!   the tasks below, shuts them down in order within a bound.
//! - `nats`: connection, stream and snapshot bucket; rebuilding the ledger from the
//!   snapshot plus the stream at start.
//! - `ledger`: the filter plus the exact records (`jti` -> exp, sub, reason,
//!   revoked_at) the authority answers from. Changes only through stored deltas.
//! - `commit`: what the API asks the writer ([`Revocation`]s, cutoffs) and what it
//!   hears back ([`Committed`] or [`CommitError`]).
//! - `writer`: the single writer: group commit of revocations into signed deltas,
//!   published with expected-last-sequence; callers hear success only once stored.
//! - `authority`: the confirm endpoint as a NATS micro service.
//! - `tasks`: heartbeats and snapshots.
//! - `api`: the HTTP API (axum) with JSON errors.
//! - `stats`: the live `Counters` behind `/v1/stats` and `/metrics`.
//! - [`client`]: the HTTP client behind the `revoke`, `cutoff`, `stats` and `import`
//!   commands.
//! - [`backup`]: `export` (a namespace's records read from NATS, as JSON lines) and
//!   the lines `import` reads back.
//! - [`keys`]: [`KeySource`] and the signing key file (`keygen`, created on first
//!   start).
//! - `jwt`: claims of a JWT for `/oauth/revoke`.
//! - [`pause`]: [`PausePoint`], where tests hold the writer at an exact step.
//! - [`clock`]: [`Clock`], the time every timestamp and expiry comes from (set in
//!   [`Config`]; tests inject a skewed one).
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod api;
mod authority;
pub mod backup;
pub mod client;
pub mod clock;
mod commit;
pub mod config;
mod error;
mod jwt;
pub mod keys;
mod ledger;
mod logout;
mod nats;
pub mod pause;
mod server;
mod ssf;
mod state;
mod stats;
mod tasks;
mod writer;

pub use clock::{Clock, SystemClock};
pub use commit::CommitError;
pub use config::{BatchLimits, Config, NatsOptions, OAuthClient, TrustConfig, TrustedIssuer};
pub use error::Error;
pub use keys::KeySource;
pub use ledger::Record;
pub use pause::PausePoint;
pub use revocast_core::http::{Committed, PublisherStats, Revocation};
pub use server::{Publisher, run};
