//! The integration tests of revocast-core, one binary (one link on small machines):
//! - `filter`: lookups, cutoffs, expiry, versions, growth, false-positive rate;
//! - `codec`: the envelope's round trips and malformed input;
//! - `golden`: the golden vectors in `test_data/` and refused format versions;
//! - `fuzz_decode`: the fuzz target's decode paths as property tests;
//! - `replication`: replicas fed through the wire format equal the publisher;
//! - `reference`: the Python reference reader answers exactly as the filter;
//! - `rotation`: key rollovers in the filter's chain and in the verifier's key ring.
#![allow(clippy::unwrap_used)]

mod codec;
mod common;
mod filter;
mod fuzz_decode;
mod golden;
mod reference;
mod replication;
mod rotation;
