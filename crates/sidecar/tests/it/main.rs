//! The sidecar's integration tests, one binary (one link): real nats-server,
//! publisher and OpenID provider processes on loopback.
//! - `contract`: the forward-auth contract, introspection, staleness and every
//!   malformed input (headers, bodies, credentials, flags), over HTTP.
//! - `nginx`, `caddy`: the deploy configurations run by a real nginx and Caddy in
//!   front of a small upstream (skipped, saying so, where the binary is missing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod caddy;
mod common;
mod contract;
mod nginx;
