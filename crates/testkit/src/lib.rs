//! # revocast-testkit
//!
//! Test support, shared by every test suite of the workspace (and the bench):
//! - [`nats`]: real `nats-server` processes with JetStream ([`NatsServer`],
//!   [`NatsCluster`]), each on a random loopback port with its own store, stopped on
//!   drop; [`try_nats_server_bin`] finds the binary.
//! - [`caddy`]: [`Caddy`], the same for a real caddy.
//! - [`prometheus`]: a real Prometheus server ([`Prometheus`]) on a random loopback
//!   port with a generated configuration, and [`promtool`].
//! - [`nginx`]: [`Nginx`], a real nginx with a generated configuration on a loopback
//!   port, killed on drop; [`nginx_bin`] is `None` when it is not installed.
//! - [`proxy`]: [`Proxy`], a TCP proxy that cuts a client off from NATS on demand.
//! - [`wait`]: [`eventually`] and [`within`], waits with a deadline instead of sleeps;
//!   [`now_secs`], [`init_logs`].
//! - [`tokens`]: the deterministic UUID-shaped `jti`s and `exp`s the benchmarks check.
//! - `idp` (feature `idp`): [`OpenIdProvider`], OpenID discovery, a JWKS and RFC 9068
//!   access tokens on a loopback port; the test rotates keys and takes it down.
//! - `stack` (feature `stack`): [`Stack`], a server and a ready publisher with its API
//!   client and subscribers; its `try_*` forms return a [`StackError`] instead of
//!   panicking (for the bench). A publisher started with `Stack::start_killable` runs
//!   on a runtime of its own, which `Stack::kill_publisher` shuts down as SIGKILL
//!   stops a process.
//!
//! The binary is found through `NATS_SERVER_BIN`, then `PATH`, then `/usr/sbin` and
//! `/usr/local/bin`. When it is missing, [`NatsServer::start`] panics with install
//! instructions: a test cannot run without it.
//!
//! ```no_run
//! let server = revocast_testkit::NatsServer::start();
//! println!("connect to {}", server.url());
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod caddy;
#[cfg(feature = "idp")]
mod idp;
pub mod nats;
pub mod nginx;
mod program;
pub mod prometheus;
pub mod proxy;
#[cfg(feature = "stack")]
mod stack;
pub mod tokens;
pub mod wait;

pub use caddy::{Caddy, caddy_bin};
#[cfg(feature = "idp")]
pub use idp::OpenIdProvider;
pub use nats::{
    NatsCluster, NatsServer, NatsServerBuilder, NatsServerMissing, free_port, nats_server_bin,
    ping, try_nats_server_bin,
};
pub use nginx::{Nginx, nginx_bin};
pub use prometheus::{
    Prometheus, PrometheusBuilder, PrometheusMissing, promtool, try_prometheus_bin,
    try_promtool_bin,
};
pub use proxy::Proxy;
#[cfg(feature = "stack")]
pub use stack::{Stack, StackError, start_publisher, try_connect_subscriber, try_start_publisher};
pub use wait::{DEADLINE, eventually, eventually_within, init_logs, now_ms, now_secs, within};
