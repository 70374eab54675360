//! `POST /oidc/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0 from a
//! trusted identity provider. The logout token's signature, `iss`, `aud` and `exp`
//! are verified with the issuer's keys (OpenID discovery and its JWKS, as services
//! verify access tokens); [`crate::logout::validate`] checks the rest. The effect is a
//! subject cutoff at the logout token's `iat`, answered 200 only once durable.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use revocast_core::http::LogoutForm;

use super::{ApiError, ApiResult, commit_cutoff, require_ready};
use crate::commit::CutoffOf;
use crate::logout::{self, LogoutClaims};
use crate::state::Shared;
use crate::stats;

/// Largest logout token accepted: a few claims and a signature fit in far less.
const MAX_LOGOUT_TOKEN_BYTES: usize = 16 << 10;

fn invalid(description: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// Counts a refused logout token and says why.
fn refused(shared: &Shared, description: impl Into<String>) -> ApiError {
    stats::add(&shared.counters.logouts_refused, 1);
    let description = description.into();
    tracing::info!(reason = %description, "back-channel logout refused");
    invalid(description)
}

pub(super) async fn backchannel_logout(
    State(shared): State<Arc<Shared>>,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> ApiResult {
    let Some(idp) = &shared.idp else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "back-channel logout is off: no trusted identity provider (--trust-issuer and \
             --trust-audience)",
        ));
    };
    let Form(form) = form.map_err(|rejection| {
        let error = ApiError::from_form(rejection);
        if error.status == StatusCode::BAD_REQUEST {
            refused(
                &shared,
                format!("{}; expected logout_token=<JWT>", error.description),
            )
        } else {
            error
        }
    })?;
    let token = form.logout_token.trim();
    if token.len() > MAX_LOGOUT_TOKEN_BYTES {
        return Err(refused(
            &shared,
            format!(
                "the logout token is {} bytes, more than the {MAX_LOGOUT_TOKEN_BYTES} a logout token needs",
                token.len()
            ),
        ));
    }
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| refused(&shared, format!("not a JWT: {e}")))?;
    let verified = idp
        .verifier
        .verify::<LogoutClaims>(token)
        .await
        .map_err(|e| {
            if e.is_unavailable() {
                // The IdP's keys cannot be fetched right now: the IdP retries.
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    format!("cannot verify the logout token now: {e}"),
                )
            } else {
                refused(&shared, format!("the logout token does not verify: {e}"))
            }
        })?;
    let (now, leeway) = (shared.now_secs(), shared.ledger().filter.params().leeway);
    let logout = logout::validate(header.typ.as_deref(), verified.claims, now, leeway)
        .map_err(|e| refused(&shared, e.to_string()))?;
    // A subject cutoff when the token names the user, a session cutoff when it names
    // the session; both when it names both.
    let cutoffs: Vec<CutoffOf> = [
        logout.sub.clone().map(CutoffOf::Subject),
        logout.sid.clone().map(CutoffOf::Session),
    ]
    .into_iter()
    .flatten()
    .collect();
    require_ready(&shared)?;
    idp.replays
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .admit(&logout, now, leeway)
        .map_err(|e| refused(&shared, e.to_string()))?;
    let mut done = None;
    for of in cutoffs {
        match commit_cutoff(&shared, of, logout.iat).await {
            Ok(committed) => done = Some(committed),
            Err(e) => {
                // Not durable: the IdP's retry of the same token must be accepted (a
                // cutoff committed already is committed again, harmlessly).
                idp.replays
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .forget(&logout);
                return Err(e);
            }
        }
    }
    // `validate` guarantees a sub or a sid.
    let done = done.unwrap_or_default();
    stats::add(&shared.counters.logouts_applied, 1);
    tracing::info!(
        iss = %logout.iss,
        sid = logout.sid.as_deref().unwrap_or(""),
        not_before = logout.iat,
        version = done.version,
        "back-channel logout: subject or session cut off"
    );
    let mut response = axum::Json(done).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
