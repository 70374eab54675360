//! `POST /ssf/events`: security event tokens pushed by the trusted issuer's Shared
//! Signals transmitter (RFC 8935 push delivery, RFC 8417 SETs, CAEP and RISC events).
//! Authenticated by the stream's bearer token; the SET is verified with the issuer's
//! keys; [`crate::ssf::interpret`] says what it asks for. Answered 202 with an empty
//! body once every cutoff it asks for is durable; 400 with RFC 8935's
//! `{"err", "description"}` when refused.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use revocast_core::http::SsfErrorBody;
use revocast_verifier::VerifyError;
use subtle::ConstantTimeEq as _;

use super::{ApiError, commit_cutoff, require_ready, submit};
use crate::commit::{Command, CutoffOf};
use crate::ssf::{self, SetClaims, SsfError};
use crate::state::Shared;
use crate::stats;

/// Largest SET accepted.
const MAX_SET_BYTES: usize = 64 << 10;

/// The answer: 202, an RFC 8935 refusal, or one of the API's own errors (off, not
/// ready, not durable).
enum Answer {
    Refused(SsfError),
    Api(ApiError),
}

impl From<ApiError> for Answer {
    fn from(e: ApiError) -> Answer {
        Answer::Api(e)
    }
}

pub(super) async fn events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match receive(&shared, &headers, body).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(Answer::Api(e)) => e.into_response(),
        Err(Answer::Refused(e)) => {
            stats::add(&shared.counters.ssf_sets_refused, 1);
            tracing::info!(err = e.err, reason = %e.description, "security event refused");
            let body = SsfErrorBody {
                err: e.err.to_owned(),
                description: e.description,
            };
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        }
    }
}

async fn receive(
    shared: &Shared,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(), Answer> {
    let sets = shared.idp.as_ref().and_then(|idp| idp.sets.as_ref());
    let Some(sets) = sets else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Shared Signals are off: give a trusted issuer a Shared Signals token \
             (--trust-issuer, --trust-audience and --ssf-token, or --trust-config)",
        )
        .into());
    };
    let refuse =
        |err: &'static str, description: String| Answer::Refused(SsfError::new(err, description));
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(bearer) = bearer else {
        return Err(refuse(
            "authentication_failed",
            "Authorization: Bearer <the stream's token> is required".into(),
        ));
    };
    // Which issuer's stream: compare with every token, in constant time each.
    let mut stream = None;
    for (i, trusted) in shared.config.trusted_issuers.iter().enumerate() {
        if let Some(expected) = &trusted.ssf_token
            && bool::from(bearer.as_bytes().ct_eq(expected.as_bytes()))
        {
            stream = Some(i);
        }
    }
    let Some(stream) = stream else {
        return Err(refuse(
            "access_denied",
            "no stream has this bearer token".into(),
        ));
    };
    let issuer = shared.config.trusted_issuers[stream].issuer.as_str();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/secevent+jwt") {
        return Err(refuse(
            "invalid_request",
            format!("Content-Type is {content_type:?}; a pushed SET is application/secevent+jwt"),
        ));
    }
    let body = body.map_err(|e| refuse("invalid_request", e.body_text()))?;
    if body.len() > MAX_SET_BYTES {
        return Err(refuse(
            "invalid_request",
            format!("the SET is {} bytes, more than {MAX_SET_BYTES}", body.len()),
        ));
    }
    let token = std::str::from_utf8(&body)
        .map_err(|_| refuse("invalid_request", "the SET is not UTF-8 text".into()))?
        .trim();
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| refuse("invalid_request", format!("not a JWT: {e}")))?;
    let verified = sets
        .verify::<SetClaims>(token)
        .await
        .map_err(|e| match &e {
            VerifyError::KeysUnavailable { .. } => Answer::Api(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                format!("cannot verify the SET now: {e}"),
            )),
            VerifyError::MissingIssuer | VerifyError::UnknownIssuer(_) => {
                refuse("invalid_issuer", e.to_string())
            }
            VerifyError::UnknownKey { .. } | VerifyError::AlgorithmNotAllowed { .. } => {
                refuse("invalid_key", e.to_string())
            }
            VerifyError::Jwt(inner) => match inner.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    refuse("invalid_audience", e.to_string())
                }
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => {
                    refuse("invalid_audience", e.to_string())
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    refuse("invalid_issuer", e.to_string())
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    refuse("invalid_key", e.to_string())
                }
                _ => refuse("invalid_request", e.to_string()),
            },
            _ => refuse("invalid_request", e.to_string()),
        })?;
    if verified.issuer != stream {
        // Signed by another trusted issuer than the stream's transmitter.
        return Err(refuse(
            "invalid_issuer",
            format!("the SET is not from {issuer}, the issuer of this stream"),
        ));
    }
    let effects = ssf::interpret(
        header.typ.as_deref(),
        verified.claims,
        issuer,
        shared.now_secs(),
    )
    .map_err(Answer::Refused)?;
    require_ready(shared)?;
    if !effects.tokens.is_empty() {
        let items = effects
            .tokens
            .iter()
            .map(|jti| revocast_core::http::Revocation {
                jti: jti.clone(),
                exp: None,
                sub: None,
                reason: Some("shared signals".to_owned()),
            })
            .collect();
        submit(shared, |reply| Command::Revoke { items, reply }).await?;
        stats::add(
            &shared.counters.ssf_events_applied,
            effects.tokens.len() as u64,
        );
    }
    for (sub, not_before) in effects.cutoffs {
        commit_cutoff(shared, CutoffOf::Subject(sub), not_before).await?;
        stats::add(&shared.counters.ssf_events_applied, 1);
    }
    for (sid, not_before) in effects.sessions {
        commit_cutoff(shared, CutoffOf::Session(sid), not_before).await?;
        stats::add(&shared.counters.ssf_events_applied, 1);
    }
    for event in &effects.ignored {
        stats::add(&shared.counters.ssf_events_ignored, 1);
        tracing::info!(event = %event, "security event type not applied (accepted and counted)");
    }
    Ok(())
}
