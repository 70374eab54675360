//! A tower layer that rejects revoked tokens: [`RevocastLayer`] wraps a service in
//! [`Revocast`].
//!
//! For each request it reads `Authorization: Bearer <jwt>`, verifies the JWT (with a
//! key and a `Validation`, or with the issuers of a `revocast_verifier::Verifier`),
//! checks it against the replica of its issuer (a [`crate::gate::Gate`]), and either calls
//! the inner service with the [`crate::TokenClaims`] (and the [`crate::Verdict`]) in the
//! request's extensions, or answers itself:
//!
//! | case | status | `WWW-Authenticate` | body `error` |
//! | --- | --- | --- | --- |
//! | no bearer token | 401 | `Bearer` | `missing_token` |
//! | JWT does not verify, unknown issuer or key | 401 | `Bearer error="invalid_token", ...` | `invalid_token` |
//! | JWT expired | 401 | `Bearer error="invalid_token", ...` | `expired` |
//! | revoked | 401 | `Bearer error="invalid_token", ...` | `revoked` |
//! | policy cannot decide, or no keys yet | 503 | (none), `Retry-After: 1` | `revocation_status_unavailable` |
//!
//! ```no_run
//! # async fn example(subscriber: revocast_subscriber::Subscriber) {
//! use axum::{Extension, Router, routing::get};
//! use jsonwebtoken::{DecodingKey, Validation};
//! use revocast_subscriber::{RevocastLayer, TokenClaims};
//!
//! async fn whoami(Extension(claims): Extension<TokenClaims>) -> String {
//!     claims.sub.unwrap_or_default()
//! }
//!
//! let layer = RevocastLayer::new(
//!     subscriber,
//!     DecodingKey::from_secret(b"secret"),
//!     Validation::new(jsonwebtoken::Algorithm::HS256),
//! );
//! let app: Router = Router::new().route("/whoami", get(whoami)).layer(layer);
//! # }
//! ```

mod future;

use std::task::{Context, Poll};

use http::{Request, Response};
use jsonwebtoken::{DecodingKey, Validation};

pub use self::future::ResponseFuture;
use crate::gate::Gate;
use crate::subscriber::Subscriber;

/// Wraps services in [`Revocast`].
#[derive(Clone, Debug)]
pub struct RevocastLayer {
    gate: Gate,
}

impl RevocastLayer {
    /// A layer that verifies JWTs with `key` and `validation`, then checks them with
    /// `subscriber`. The tokens must carry `jti` and `exp`.
    pub fn new(subscriber: Subscriber, key: DecodingKey, validation: Validation) -> RevocastLayer {
        RevocastLayer {
            gate: Gate::new(subscriber, key, validation),
        }
    }

    /// A layer that verifies JWTs with the issuers of `verifier` (keys by discovery,
    /// rotation followed) and checks them with `subscriber`.
    pub fn with_verifier(
        subscriber: Subscriber,
        verifier: revocast_verifier::Verifier,
    ) -> RevocastLayer {
        RevocastLayer {
            gate: Gate::with_verifier(verifier, subscriber),
        }
    }

    /// A layer around any [`Gate`] (one replica per issuer, ...).
    pub fn from_gate(gate: Gate) -> RevocastLayer {
        RevocastLayer { gate }
    }

    /// The gate that decides.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

impl<S> tower::Layer<S> for RevocastLayer {
    type Service = Revocast<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Revocast {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The middleware built by [`RevocastLayer`].
#[derive(Clone, Debug)]
pub struct Revocast<S> {
    inner: S,
    gate: Gate,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for Revocast<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone is not ready yet; keep the one that is (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        ResponseFuture::new(async move {
            match gate.check_headers(request.headers()).await {
                Ok(admitted) => {
                    request.extensions_mut().insert(admitted.claims);
                    request.extensions_mut().insert(admitted.verdict);
                    inner.call(request).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}
