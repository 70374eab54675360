//! [`Gate`]: from a bearer token to "admitted" or a [`Rejection`]: verify the JWT
//! (static keys, or the issuers of a [`Verifier`]), pick the replica of its issuer,
//! check it. The tower layer and the `revocast-sidecar` both answer through it, so
//! they refuse the same tokens with the same status, challenge and body.
//!
//! | case | status | `WWW-Authenticate` | body `error` |
//! | --- | --- | --- | --- |
//! | no bearer token | 401 | `Bearer` | `missing_token` |
//! | JWT does not verify, unknown issuer or key | 401 | `Bearer error="invalid_token", ...` | `invalid_token` |
//! | JWT expired | 401 | `Bearer error="invalid_token", ...` | `expired` |
//! | revoked | 401 | `Bearer error="invalid_token", ...` | `revoked` |
//! | policy cannot decide, or no keys yet | 503 | (none), `Retry-After: 1` | `revocation_status_unavailable` |

use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};
use jsonwebtoken::{DecodingKey, Validation};
use revocast_core::http::ErrorBody;
use revocast_verifier::{Verifier, VerifyError};

use crate::claims::{RevokedBy, TokenClaims, Verdict};
use crate::error::Error;
use crate::subscriber::Subscriber;

/// Held once, behind the gate's `Arc`: the size of the static variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Keys {
    Static(DecodingKey, Validation),
    Issuers(Verifier),
}

/// Verifies bearer tokens and checks them against the replica of their issuer.
/// Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    keys: Arc<Keys>,
    /// Index = issuer index of the verifier; `None` = the default replica.
    by_issuer: Arc<Vec<Option<Subscriber>>>,
    default: Subscriber,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Gate");
        match &*self.keys {
            Keys::Static(_, validation) => d.field("validation", validation),
            Keys::Issuers(verifier) => d.field("verifier", verifier),
        };
        d.field("replicas", &self.subscribers().len()).finish()
    }
}

/// A token that may pass: its claims, the verdict, and the replica that gave it.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The verified claims.
    pub claims: TokenClaims,
    /// Always [`Verdict::Accepted`].
    pub verdict: Verdict,
    /// The `iss` of the issuer whose keys verified it (`None` for static keys).
    pub issuer: Option<String>,
}

/// [`Gate::replica_for`] was given an issuer the verifier does not know.
#[derive(Debug, thiserror::Error)]
#[error("issuer {0:?} is not one of the verifier's")]
pub struct UnknownIssuer(pub String);

impl Gate {
    /// Verifies with one key and `validation` (tokens must carry `jti` and `exp`),
    /// checks with `subscriber`.
    pub fn new(subscriber: Subscriber, key: DecodingKey, validation: Validation) -> Gate {
        Gate {
            keys: Arc::new(Keys::Static(key, validation)),
            by_issuer: Arc::new(Vec::new()),
            default: subscriber,
        }
    }

    /// Verifies with `verifier`'s issuers; checks with `subscriber` unless
    /// [`Gate::replica_for`] names another replica for the token's issuer.
    pub fn with_verifier(verifier: Verifier, subscriber: Subscriber) -> Gate {
        let issuers = verifier.issuers().count();
        Gate {
            keys: Arc::new(Keys::Issuers(verifier)),
            by_issuer: Arc::new(vec![None; issuers]),
            default: subscriber,
        }
    }

    /// Tokens of `issuer` are checked against `subscriber` (its own namespace).
    pub fn replica_for(
        mut self,
        issuer: &str,
        subscriber: Subscriber,
    ) -> Result<Gate, UnknownIssuer> {
        let Keys::Issuers(verifier) = &*self.keys else {
            return Err(UnknownIssuer(issuer.to_owned()));
        };
        let index = verifier
            .issuers()
            .position(|i| i == Some(issuer))
            .ok_or_else(|| UnknownIssuer(issuer.to_owned()))?;
        Arc::make_mut(&mut self.by_issuer)[index] = Some(subscriber);
        Ok(self)
    }

    /// The verifier, if the gate has one.
    pub fn verifier(&self) -> Option<&Verifier> {
        match &*self.keys {
            Keys::Issuers(verifier) => Some(verifier),
            Keys::Static(..) => None,
        }
    }

    /// Every replica, the default first, each once.
    pub fn subscribers(&self) -> Vec<Subscriber> {
        let mut all = vec![self.default.clone()];
        for sub in self.by_issuer.iter().flatten() {
            if !all.iter().any(|s| s.namespace() == sub.namespace()) {
                all.push(sub.clone());
            }
        }
        all
    }

    /// Whether every replica is ready and the verifier (if any) has keys for every
    /// issuer.
    pub fn is_ready(&self) -> bool {
        self.subscribers().iter().all(Subscriber::is_ready)
            && self.verifier().is_none_or(Verifier::is_ready)
    }

    /// Reads `Authorization: Bearer` and checks the token.
    pub async fn check_headers(&self, headers: &HeaderMap) -> Result<Admitted, Rejection> {
        let token = bearer_token(headers).ok_or(Rejection::Missing)?;
        self.check(token).await
    }

    /// Verifies `token` and checks it against its issuer's replica.
    pub async fn check(&self, token: &str) -> Result<Admitted, Rejection> {
        let (claims, issuer, subscriber) = match &*self.keys {
            Keys::Static(key, validation) => {
                let data = jsonwebtoken::decode::<TokenClaims>(token, key, validation)
                    .map_err(|e| Rejection::from(&Error::Jwt(e)))?;
                (data.claims, None, &self.default)
            }
            Keys::Issuers(verifier) => {
                let verified = verifier
                    .verify::<TokenClaims>(token)
                    .await
                    .map_err(|e| Rejection::from_verify(&e))?;
                let issuer = verifier
                    .issuers()
                    .nth(verified.issuer)
                    .flatten()
                    .map(str::to_owned);
                let subscriber = self
                    .by_issuer
                    .get(verified.issuer)
                    .and_then(Option::as_ref)
                    .unwrap_or(&self.default);
                (verified.claims, issuer, subscriber)
            }
        };
        match subscriber.check_with_token(&claims, Some(token)).await {
            Ok(verdict @ Verdict::Accepted { .. }) => Ok(Admitted {
                claims,
                verdict,
                issuer,
            }),
            Ok(Verdict::Revoked { by, .. }) => Err(Rejection::Revoked(by)),
            Err(error) => Err(Rejection::from(&error)),
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Why a request is refused: 401 (with an RFC 6750 challenge) or 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No bearer token.
    Missing,
    /// The token does not verify (or names an unknown issuer or key).
    Invalid,
    /// The token has expired.
    Expired,
    /// The token is revoked.
    Revoked(RevokedBy),
    /// Nobody can decide now: the policy is fail-closed and the replica is stale or
    /// the authority is down, or the issuer's keys were never fetched.
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
    fn from_verify(error: &VerifyError) -> Self {
        tracing::debug!(%error, "token refused");
        if error.is_expired() {
            Rejection::Expired
        } else if error.is_unavailable() {
            Rejection::Unavailable
        } else {
            Rejection::Invalid
        }
    }

    /// 401 or 503.
    pub fn status(self) -> StatusCode {
        self.parts().0
    }

    /// The body's `error`: `missing_token`, `invalid_token`, `expired`, `revoked` or
    /// `revocation_status_unavailable`.
    pub fn error_code(self) -> &'static str {
        self.parts().1
    }

    /// The body's `error_description` (also in the challenge).
    pub fn description(self) -> &'static str {
        self.parts().2
    }

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
            Rejection::Revoked(RevokedBy::SessionCutoff) => (
                StatusCode::UNAUTHORIZED,
                "revoked",
                "the session of this token has been logged out",
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

    /// The response: status, `WWW-Authenticate` (RFC 6750 section 3) or
    /// `Retry-After`, and an [`ErrorBody`].
    pub fn into_response<B: From<String>>(self) -> Response<B> {
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

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer_token(&with_auth("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&with_auth("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&with_auth("BEARER abc")), Some("abc"));
        assert_eq!(bearer_token(&with_auth("Basic abc")), None);
        assert_eq!(bearer_token(&with_auth("Bearer ")), None);
        assert_eq!(bearer_token(&with_auth("Bearer")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
        let mut binary = HeaderMap::new();
        binary.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        );
        assert_eq!(bearer_token(&binary), None);
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
