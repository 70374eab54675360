//! Who confirms a filter hit: the [`Authority`] trait and its implementations.
//!
//! - [`NatsAuthority`] (the default): a NATS request to the publisher's confirm
//!   endpoint, answered with a signed [`revocast_core::ConfirmResponse`] that must echo
//!   the request's nonce.
//! - `HttpAuthority` (feature `http-authority`): the publisher's
//!   `GET /v1/revocations/{jti}`, 200 = revoked, 404 = not revoked.
//! - `IntrospectionAuthority` (feature `http-authority`): an RFC 7662 endpoint of an
//!   identity provider; needs the token itself.
//!
//! The subscriber applies the confirm timeout, single-flight and the cache around any
//! authority, so implementations only answer one question.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use async_nats::StatusCode;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use revocast_core::{ConfirmRequest, Namespace, PublicKey, Verifier, encode_request};

use crate::error::AuthorityError;

/// A question to the authority.
#[derive(Clone, Copy, Debug)]
pub struct ConfirmQuery<'a> {
    /// The token's `jti`.
    pub jti: &'a str,
    /// The token's `exp`.
    pub exp: Option<u64>,
    /// The token's `sub`: the authority applies subject cutoffs with it.
    pub sub: Option<&'a str>,
    /// The token's `iat`: the authority compares it with the cutoffs.
    pub iat: Option<u64>,
    /// The token's `sid`: the authority applies session cutoffs with it.
    pub sid: Option<&'a str>,
    /// The raw token, when the check started from one (introspection needs it).
    pub token: Option<&'a str>,
}

/// The authority's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirmation {
    /// Whether the token is revoked.
    pub revoked: bool,
    /// The authority's filter version when it answered, if it says.
    pub version: Option<u64>,
    /// The namespace's epoch the answer was computed in, if it says. A version is
    /// comparable with the replica's only within the same epoch.
    pub epoch: Option<u64>,
}

/// Answers whether a token is really revoked.
///
/// ```no_run
/// use futures::future::BoxFuture;
/// use revocast_subscriber::{Authority, AuthorityError, ConfirmQuery, Confirmation};
///
/// #[derive(Debug)]
/// struct Everything;
///
/// impl Authority for Everything {
///     fn confirm<'a>(&'a self, _q: ConfirmQuery<'a>) -> BoxFuture<'a, Result<Confirmation, AuthorityError>> {
///         Box::pin(async { Ok(Confirmation { revoked: true, version: None, epoch: None }) })
///     }
/// }
/// ```
pub trait Authority: Send + Sync + std::fmt::Debug + 'static {
    /// Asks about one token.
    fn confirm<'a>(
        &'a self,
        query: ConfirmQuery<'a>,
    ) -> BoxFuture<'a, Result<Confirmation, AuthorityError>>;
}

/// The publisher's confirm endpoint over NATS; verifies the signed answer against the
/// pinned key and checks that it echoes the nonce and the `jti`.
///
/// Anyone allowed to subscribe to the confirm subject can answer too, and may answer
/// first: the request gets its own reply inbox, and every answer that arrives there
/// is read until one verifies. Answers that do not (garbage, another key, another
/// request's nonce, an unsigned service error) are counted
/// ([`NatsAuthority::invalid_answers`]) and skipped; if none verifies, the confirm
/// timeout ends the wait.
#[derive(Clone, Debug)]
pub struct NatsAuthority {
    client: async_nats::Client,
    namespace: Namespace,
    subject: String,
    verifier: Verifier,
    invalid: Arc<AtomicU64>,
}

impl NatsAuthority {
    /// The authority of `namespace`, answering for the publisher whose key is `key`.
    pub fn new(client: async_nats::Client, namespace: Namespace, key: PublicKey) -> NatsAuthority {
        NatsAuthority::with_verifier(client, Verifier::new(key, namespace))
    }

    /// The authority of `verifier`'s namespace, trusting the keys `verifier` trusts
    /// (a replica shares its verifier, so answers signed by a key it rotated to pass).
    pub fn with_verifier(client: async_nats::Client, verifier: Verifier) -> NatsAuthority {
        let namespace = verifier.namespace().clone();
        NatsAuthority {
            client,
            subject: namespace.confirm_subject(),
            verifier: verifier.max_size(64 << 10),
            namespace,
            invalid: Arc::default(),
        }
    }

    /// Answers skipped because they did not verify or did not answer the request
    /// (shared by clones).
    pub fn invalid_answers(&self) -> u64 {
        self.invalid.load(Relaxed)
    }

    pub(crate) fn invalid_counter(&self) -> Arc<AtomicU64> {
        self.invalid.clone()
    }

    /// Reads one message from the reply inbox.
    fn read(
        &self,
        reply: &async_nats::Message,
        jti: &str,
        nonce: u64,
    ) -> Result<Confirmation, AuthorityError> {
        if let Some(status) = reply.status
            && status.is_server_error()
        {
            return Err(AuthorityError::failed(format!(
                "status {status}: {}",
                reply.description.clone().unwrap_or_default()
            )));
        }
        if let Some(headers) = &reply.headers
            && let Some(err) = headers.get("Nats-Service-Error")
        {
            return Err(AuthorityError::failed(err.to_string()));
        }
        let answer = self
            .verifier
            .decode_confirm_response(&reply.payload)
            .map_err(AuthorityError::invalid_answer)?;
        if answer.nonce != nonce || answer.jti != jti {
            return Err(AuthorityError::invalid_answer(
                "answer does not echo the request's nonce and jti",
            ));
        }
        Ok(Confirmation {
            revoked: answer.revoked,
            version: Some(answer.version),
            epoch: Some(answer.epoch),
        })
    }
}

impl Authority for NatsAuthority {
    fn confirm<'a>(
        &'a self,
        query: ConfirmQuery<'a>,
    ) -> BoxFuture<'a, Result<Confirmation, AuthorityError>> {
        Box::pin(async move {
            let nonce = getrandom::u64().map_err(|e| {
                AuthorityError::unreachable(format!("no randomness for a nonce: {e}"))
            })?;
            let request = ConfirmRequest {
                jti: query.jti.to_owned(),
                exp: query.exp,
                nonce,
                sub: query.sub.map(str::to_owned),
                iat: query.iat,
                sid: query.sid.map(str::to_owned),
            };
            let payload = encode_request(&self.namespace, &request);
            let inbox = self.client.new_inbox();
            let mut replies = self
                .client
                .subscribe(inbox.clone())
                .await
                .map_err(AuthorityError::unreachable)?;
            self.client
                .publish_with_reply(self.subject.clone(), inbox, payload.into())
                .await
                .map_err(AuthorityError::unreachable)?;
            let mut last_invalid = None;
            while let Some(reply) = replies.next().await {
                if reply.status == Some(StatusCode::NO_RESPONDERS) {
                    // Nobody at all listens: no valid answer can come.
                    return Err(last_invalid.unwrap_or_else(|| {
                        AuthorityError::unreachable("no responders on the confirm subject")
                    }));
                }
                match self.read(&reply, query.jti, nonce) {
                    Ok(confirmation) => return Ok(confirmation),
                    Err(e) => {
                        let n = self.invalid.fetch_add(1, Relaxed) + 1;
                        if n.is_power_of_two() {
                            tracing::warn!(error = %e, count = n, "skipped an authority answer that does not verify; waiting for a valid one");
                        }
                        last_invalid = Some(e);
                    }
                }
            }
            Err(last_invalid
                .unwrap_or_else(|| AuthorityError::unreachable("the reply subscription ended")))
        })
    }
}

#[cfg(feature = "http-authority")]
pub use http_authorities::{HttpAuthority, IntrospectionAuthority};

#[cfg(feature = "http-authority")]
mod http_authorities {
    use revocast_core::http::{self, RevocationStatus};

    use super::*;

    /// The publisher's HTTP authority: `GET {base}/v1/revocations/{jti}`, read with
    /// [`RevocationStatus::from_answer`]: 200 naming the `jti` means revoked, a 404
    /// naming it with `"revoked": false` not revoked. Anything else is an error, left
    /// to the policy.
    ///
    /// The answer is not signed: use it over TLS, from a network you trust.
    #[derive(Clone, Debug)]
    pub struct HttpAuthority {
        client: reqwest::Client,
        base: String,
        bearer: Option<String>,
    }

    impl HttpAuthority {
        /// An authority at `base` (for example `http://publisher:8080`).
        pub fn new(base: impl Into<String>) -> HttpAuthority {
            HttpAuthority {
                client: reqwest::Client::new(),
                base: base.into().trim_end_matches('/').to_owned(),
                bearer: None,
            }
        }

        /// Sends `Authorization: Bearer <token>` with every request.
        pub fn bearer_token(mut self, token: impl Into<String>) -> HttpAuthority {
            self.bearer = Some(token.into());
            self
        }
    }

    impl Authority for HttpAuthority {
        fn confirm<'a>(
            &'a self,
            query: ConfirmQuery<'a>,
        ) -> BoxFuture<'a, Result<Confirmation, AuthorityError>> {
            Box::pin(async move {
                let token = http::TokenQuery {
                    exp: query.exp,
                    sub: query.sub.map(str::to_owned),
                    iat: query.iat,
                    sid: query.sid.map(str::to_owned),
                };
                let mut url = format!("{}{}", self.base, http::revocation_path(query.jti));
                let params = token.to_query_string();
                if !params.is_empty() {
                    url = format!("{url}?{params}");
                }
                let mut request = self.client.get(url);
                if let Some(token) = &self.bearer {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.map_err(AuthorityError::unreachable)?;
                let status = response.status().as_u16();
                let body = response
                    .bytes()
                    .await
                    .map_err(AuthorityError::unreachable)?;
                // The contract's one reader: only the authority's own answer about
                // this jti counts, never any other 404.
                let answer = RevocationStatus::from_answer(query.jti, status, &body)
                    .map_err(AuthorityError::failed)?;
                Ok(Confirmation {
                    revoked: answer.revoked,
                    version: Some(answer.version),
                    epoch: answer
                        .epoch
                        .as_deref()
                        .and_then(|e| u64::from_str_radix(e, 16).ok()),
                })
            })
        }
    }

    /// RFC 7662 token introspection: `POST token=<jwt>` to the IdP's endpoint with the
    /// resource server's client credentials; `"active": false` means revoked (the
    /// signature and `exp` were checked locally before).
    #[derive(Clone, Debug)]
    pub struct IntrospectionAuthority {
        client: reqwest::Client,
        endpoint: String,
        client_id: String,
        client_secret: String,
    }

    impl IntrospectionAuthority {
        /// An introspection endpoint with HTTP Basic client authentication.
        pub fn new(
            endpoint: impl Into<String>,
            client_id: impl Into<String>,
            client_secret: impl Into<String>,
        ) -> IntrospectionAuthority {
            IntrospectionAuthority {
                client: reqwest::Client::new(),
                endpoint: endpoint.into(),
                client_id: client_id.into(),
                client_secret: client_secret.into(),
            }
        }
    }

    #[derive(serde::Deserialize)]
    struct Introspection {
        active: bool,
    }

    impl Authority for IntrospectionAuthority {
        fn confirm<'a>(
            &'a self,
            query: ConfirmQuery<'a>,
        ) -> BoxFuture<'a, Result<Confirmation, AuthorityError>> {
            Box::pin(async move {
                let token = query.token.ok_or_else(|| {
                    AuthorityError::failed(
                        "introspection needs the token: use check_jwt or the layer",
                    )
                })?;
                let response = self
                    .client
                    .post(&self.endpoint)
                    .basic_auth(&self.client_id, Some(&self.client_secret))
                    .form(&[("token", token), ("token_type_hint", "access_token")])
                    .send()
                    .await
                    .map_err(AuthorityError::unreachable)?;
                if !response.status().is_success() {
                    return Err(AuthorityError::failed(format!(
                        "HTTP status {}",
                        response.status()
                    )));
                }
                let body: Introspection = response
                    .json()
                    .await
                    .map_err(AuthorityError::invalid_answer)?;
                Ok(Confirmation {
                    revoked: !body.active,
                    version: None,
                    epoch: None,
                })
            })
        }
    }
}
