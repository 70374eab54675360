//! What the end-to-end tests in `tests/tests/it/` share beyond the testkit (whose
//! [`revocast_testkit::Stack`] starts a `nats-server` and a publisher): test tokens,
//! the reliability checker of the fault suite, and the publisher as a process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

pub mod fault;
pub mod process;

use jsonwebtoken::{EncodingKey, Header};
use revocast_testkit::now_secs;
use serde::Serialize;

/// HS256 secret of the test tokens.
pub const JWT_SECRET: &[u8] = b"end-to-end-test-secret";

/// Claims of a test token.
#[derive(Debug, Clone, Serialize)]
pub struct Claims {
    pub jti: String,
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
}

impl Claims {
    /// A token of `sub` issued now, valid for an hour.
    pub fn new(jti: &str, sub: &str) -> Claims {
        let iat = now_secs();
        Claims {
            jti: jti.to_owned(),
            sub: sub.to_owned(),
            iat,
            exp: iat + 3600,
        }
    }

    /// The signed JWT (HS256 with [`JWT_SECRET`]).
    pub fn jwt(&self) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            self,
            &EncodingKey::from_secret(JWT_SECRET),
        )
        .unwrap()
    }
}
