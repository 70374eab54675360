//! The subscriber's integration tests, one binary, so one link instead of one per file:
//! replicas against a stand-in publisher ([`common::FakePublisher`]) on a real
//! `nats-server` per test, the tower layer, the policies and the HTTP authorities.

mod common;
mod http_authority;
mod issuers;
mod layer;
mod metrics;
mod policy;
mod replica;
