//! A tower layer that rejects revoked tokens: [`RevocastLayer`] wraps a service in
//! [`Revocast`].
//!
//! For each request it reads `Authorization: Bearer <jwt>`, verifies the JWT with the
//! configured key and [`Validation`], checks it against the replica, and either calls
//! the inner service with the [`crate::TokenClaims`] (and the [`Verdict`]) in the request's
//! extensions, or answers itself:
//!
//! | case | status | `WWW-Authenticate` | body `error` |
//! | --- | --- | --- | --- |
//! | no bearer token | 401 | `Bearer` | `missing_token` |
//! | JWT does not verify | 401 | `Bearer error="invalid_token", ...` | `invalid_token` |
//! | JWT expired | 401 | `Bearer error="invalid_token", ...` | `expired` |
//! | revoked | 401 | `Bearer error="invalid_token", ...` | `revoked` |
//! | policy cannot decide | 503 | (none), `Retry-After: 1` | `revocation_status_unavailable` |
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

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use jsonwebtoken::{DecodingKey, Validation};
use revocast_core::http::ErrorBody;

pub use self::future::ResponseFuture;
use crate::claims::{RevokedBy, Verdict};
use crate::error::Error;
use crate::subscriber::Subscriber;

/// Wraps services in [`Revocast`].
#[derive(Clone)]
pub struct RevocastLayer {
    subscriber: Subscriber,
    keys: Arc<(DecodingKey, Validation)>,
}

impl std::fmt::Debug for RevocastLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocastLayer")
            .field("subscriber", &self.subscriber)
            .field("validation", &self.keys.1)
            .finish_non_exhaustive()
    }
}

impl RevocastLayer {
    /// A layer that verifies JWTs with `key` and `validation`, then checks them with
    /// `subscriber`. The tokens must carry `jti` and `exp`.
    pub fn new(subscriber: Subscriber, key: DecodingKey, validation: Validation) -> RevocastLayer {
        RevocastLayer {
            subscriber,
            keys: Arc::new((key, validation)),
        }
    }
}

impl<S> tower::Layer<S> for RevocastLayer {
    type Service = Revocast<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Revocast {
            inner,
            layer: self.clone(),
        }
    }
}

/// The middleware built by [`RevocastLayer`].
#[derive(Clone, Debug)]
pub struct Revocast<S> {
    inner: S,
    layer: RevocastLayer,
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
        let layer = self.layer.clone();
        ResponseFuture::new(async move {
            let token = match bearer_token(&request) {
                Some(token) => token.to_owned(),
                None => return Ok(Rejection::Missing.into_response()),
            };
            let (key, validation) = &*layer.keys;
            match layer.subscriber.check_jwt(&token, key, validation).await {
                Ok((claims, verdict @ Verdict::Accepted { .. })) => {
                    request.extensions_mut().insert(claims);
                    request.extensions_mut().insert(verdict);
                    inner.call(request).await
                }
                Ok((_, Verdict::Revoked { by, .. })) => Ok(Rejection::Revoked(by).into_response()),
                Err(error) => Ok(Rejection::from(&error).into_response()),
            }
        })
    }
}

fn bearer_token<B>(request: &Request<B>) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Why the layer answered instead of the inner service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rejection {
    Missing,
    Invalid,
    Expired,
    Revoked(RevokedBy),
    Unavailable,
}

impl From<&Error> for Rejection {
    fn from(error: &Error) -> Self {
        if error.is_expired() {
            Rejection::Expired
        } else if error.is_unavailable() {
            Rejection::Unavailable
        } else {
            Rejection::Invalid
        }
    }
}

impl Rejection {
    fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Rejection::Missing => (
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "a bearer token is required",
            ),
            Rejection::Invalid => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the token is malformed or does not verify",
            ),
            Rejection::Expired => (StatusCode::UNAUTHORIZED, "expired", "the token has expired"),
            Rejection::Revoked(RevokedBy::Jti) => (
                StatusCode::UNAUTHORIZED,
                "revoked",
                "the token has been revoked",
            ),
            Rejection::Revoked(RevokedBy::SubjectCutoff) => (
                StatusCode::UNAUTHORIZED,
                "revoked",
                "every token of this subject issued before a cutoff has been revoked",
            ),
            Rejection::Revoked(RevokedBy::GlobalCutoff) => (
                StatusCode::UNAUTHORIZED,
                "revoked",
                "every token issued before a cutoff has been revoked",
            ),
            Rejection::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "revocation_status_unavailable",
                "the token's revocation status cannot be established; retry later",
            ),
        }
    }

    fn into_response<B: From<String>>(self) -> Response<B> {
        let (status, error, description) = self.parts();
        let body = ErrorBody::new(error, description);
        // Two strings always serialise.
        let body = serde_json::to_string(&body).unwrap_or_default();
        let mut response = Response::new(B::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            // RFC 6750 3.1: a request without credentials gets no error code.
            Rejection::Missing => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Rejection::Unavailable => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {
                let challenge =
                    format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(WWW_AUTHENTICATE, value);
                }
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn with_auth(value: &str) -> Request<()> {
        Request::builder()
            .header(AUTHORIZATION, value)
            .body(())
            .unwrap()
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer_token(&with_auth("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&with_auth("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&with_auth("BEARER abc")), Some("abc"));
        assert_eq!(bearer_token(&with_auth("Basic abc")), None);
        assert_eq!(bearer_token(&with_auth("Bearer ")), None);
        assert_eq!(bearer_token(&with_auth("Bearer")), None);
        assert_eq!(bearer_token(&Request::new(())), None);
    }

    #[test]
    fn rejections_have_status_challenge_and_body() {
        let r: Response<String> = Rejection::Revoked(RevokedBy::SubjectCutoff).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let challenge = r.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""));
        let body: ErrorBody = serde_json::from_str(r.body()).unwrap();
        assert_eq!(body.error, "revoked");
        let r: Response<String> = Rejection::Unavailable.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
