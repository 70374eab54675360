//! The publisher's integration tests, one binary, so one link instead of one per file:
//! each module starts its own `nats-server` per test and drives a real publisher,
//! in this process or as the `revocast-publisher` binary.

mod api_errors;
mod api_fuzz;
mod backup;
mod cli;
mod cluster;
mod common;
mod durability;
mod end_to_end;
mod logout;
mod oauth;
mod ssf;
