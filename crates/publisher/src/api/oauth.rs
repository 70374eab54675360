//! The standard OAuth endpoints: RFC 7009 revocation, RFC 7662 introspection and the
//! RFC 8414 metadata that advertises them, so that any OAuth client library can
//! revoke and introspect with no glue code.
//!
//! Who may call: the admin bearer token (any token), or a configured client
//! authenticated by `client_secret_basic` (RFC 6749 section 2.3.1: HTTP Basic over the
//! form-encoded id and secret) or `client_secret_post` (`client_id` and
//! `client_secret` in the form), never both at once. A client revokes only tokens
//! issued to it (`client_id`, else `azp`). With neither an admin token nor clients
//! configured the routes are open, like every route of a publisher on loopback.
//!
//! Answers follow the RFCs: an invalid, unknown or expired token is revoked "with
//! success" (RFC 7009 section 2.2: 200, nothing changes); errors are RFC 6749 section
//! 5.2 bodies; 503 carries `Retry-After`.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;
use revocast_core::Probe;
use revocast_core::http::{self, AuthorizationServerMetadata, Introspection, OAuthRevokeForm};
use subtle::ConstantTimeEq as _;

use super::{ApiError, ApiResult, ExpLimits, check_revocation, committed, require_ready, submit};
use crate::commit::Command;
use crate::jwt::{self, TokenClaims};
use crate::state::Shared;
use crate::stats;

/// The client authentication methods both endpoints take.
const AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// Who is calling.
#[derive(Debug, PartialEq, Eq)]
enum Caller {
    /// The admin token, or an open publisher: any token.
    Admin,
    /// A configured client: only its own tokens.
    Client(String),
}

/// Authenticates the caller of an OAuth endpoint.
fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    form: &OAuthRevokeForm,
) -> Result<Caller, ApiError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().map(str::trim))
        .transpose()
        .map_err(|_| invalid_request("the Authorization header is not ASCII"))?;
    let (scheme, credentials) = match authorization {
        Some(value) => {
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            (Some(scheme.to_ascii_lowercase()), rest.trim())
        }
        None => (None, ""),
    };
    let posted = form.client_id.is_some() || form.client_secret.is_some();
    match scheme.as_deref() {
        Some("basic") if posted => Err(invalid_request(
            "client credentials both in Authorization and in the form; use one method",
        )),
        Some("basic") => {
            let (id, secret) = basic_credentials(credentials)?;
            client(shared, &id, &secret, true)
        }
        Some("bearer") => {
            if posted {
                return Err(invalid_request(
                    "an admin bearer token and client credentials at once; use one",
                ));
            }
            match &shared.config.admin_token {
                Some(expected) if bool::from(credentials.as_bytes().ct_eq(expected.as_bytes())) => {
                    Ok(Caller::Admin)
                }
                Some(_) => Err(invalid_client("wrong admin token", false)),
                None => Ok(Caller::Admin),
            }
        }
        Some(other) => Err(invalid_client(
            &format!("unsupported authorization scheme {other:?}; use Basic or Bearer"),
            true,
        )),
        None if posted => {
            let id = form.client_id.as_deref().unwrap_or_default();
            let secret = form
                .client_secret
                .as_deref()
                .ok_or_else(|| invalid_client("client_id without client_secret", false))?;
            client(shared, id, secret, false)
        }
        None if shared.config.admin_token.is_none() && shared.config.oauth_clients.is_empty() => {
            Ok(Caller::Admin)
        }
        None => Err(invalid_client(
            "client authentication required: HTTP Basic with the client's id and secret, \
             client_id and client_secret in the form, or the admin bearer token",
            true,
        )),
    }
}

/// The id and secret of `Authorization: Basic`: base64 of the form-encoded id, a
/// colon and the form-encoded secret.
fn basic_credentials(encoded: &str) -> Result<(String, String), ApiError> {
    let bad = |why: &str| invalid_client(&format!("malformed Basic credentials: {why}"), true);
    let bytes = STANDARD.decode(encoded).map_err(|_| bad("not base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
    let (id, secret) = text.split_once(':').ok_or_else(|| bad("no ':'"))?;
    let decode = |part: &str| {
        percent_decode_str(&part.replace('+', " "))
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| bad("percent-encoding is not UTF-8"))
    };
    Ok((decode(id)?, decode(secret)?))
}

/// Checks a client's id and secret against the configured ones.
fn client(shared: &Shared, id: &str, secret: &str, basic: bool) -> Result<Caller, ApiError> {
    let known = shared.config.oauth_clients.iter().find(|c| c.id == id);
    // Compare against something even for an unknown id, so that both take as long.
    let expected = known.map_or("", |c| c.secret.as_str());
    let matches = bool::from(secret.as_bytes().ct_eq(expected.as_bytes()));
    match known {
        Some(_) if matches => Ok(Caller::Client(id.to_owned())),
        _ => Err(invalid_client("unknown client or wrong secret", basic)),
    }
}

fn invalid_request(description: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// RFC 6749 section 5.2: 401 `invalid_client`, with a `Basic` challenge when the
/// client used (or should use) HTTP Basic.
fn invalid_client(description: &str, basic: bool) -> ApiError {
    let error = ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", description);
    if basic {
        error.challenge("Basic realm=\"revocast\"")
    } else {
        error
    }
}

/// The form, or RFC 6749's `invalid_request`.
fn form_of(
    form: Result<Form<OAuthRevokeForm>, FormRejection>,
) -> Result<OAuthRevokeForm, ApiError> {
    form.map(|Form(form)| form).map_err(|rejection| {
        let error = ApiError::from_form(rejection);
        if error.status == StatusCode::BAD_REQUEST {
            invalid_request(&format!(
                "{}; expected a form with token=<the JWT>",
                error.description
            ))
        } else {
            error
        }
    })
}

/// Reads the token's claims; `None` for a token that is not one of ours to judge
/// (malformed, or not signed by the configured key).
fn verified_claims(shared: &Shared, token: &str) -> Option<TokenClaims> {
    match jwt::claims(shared.jwt.as_ref(), token.trim()) {
        Ok(claims) => Some(claims),
        Err(e) => {
            tracing::debug!(error = %e, "OAuth endpoint: token refused");
            stats::add(&shared.counters.oauth_invalid_tokens, 1);
            None
        }
    }
}

/// `POST /oauth/revoke` (RFC 7009).
pub(super) async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<OAuthRevokeForm>, FormRejection>,
) -> ApiResult {
    let form = form_of(form)?;
    let caller = authenticate(&shared, &headers, &form)?;
    require_ready(&shared)?;
    // RFC 7009 section 2.2: "invalid tokens do not cause an error response".
    let Some(claims) = verified_claims(&shared, &form.token) else {
        return Ok(no_store(axum::Json(noop(&shared)).into_response()));
    };
    if let Caller::Client(id) = &caller
        && claims.client_id.as_deref() != Some(id.as_str())
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the token was not issued to this client (its client_id or azp names another); \
             a client revokes only its own tokens",
        ));
    }
    let Some(jti) = claims.jti else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_token_type",
            "revocast revokes JWTs by their jti; this token has none (revoke its subject \
             with POST /v1/cutoffs)",
        ));
    };
    // Without `exp` the revocation goes into every live bucket, as for the admin API.
    let item = http::Revocation {
        jti,
        exp: claims.exp,
        sub: claims.sub.filter(|s| revocast_core::check_sub(s).is_ok()),
        reason: Some(match caller {
            Caller::Admin => "oauth_revoke".to_owned(),
            Caller::Client(id) => format!("oauth_revoke by {id}")
                .chars()
                .take(revocast_core::MAX_REASON_LEN)
                .collect(),
        }),
    };
    if let Err(e) = check_revocation(&ExpLimits::of(&shared), &item) {
        // The token verified, but the filter cannot hold it (a jti over the length
        // limit, an exp beyond the namespace's longest lifetime).
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_token_type",
            e.description,
        ));
    }
    let done = submit(&shared, |reply| Command::Revoke {
        items: vec![item],
        reply,
    })
    .await?;
    Ok(no_store(committed(done)))
}

/// A success that changed nothing, at the current version.
fn noop(shared: &Shared) -> http::Committed {
    http::Committed {
        version: shared.ledger().filter.version(),
        noop: true,
        ..http::Committed::default()
    }
}

/// `POST /oauth/introspect` (RFC 7662): from the token's own claims, the exact
/// records and the cutoffs.
pub(super) async fn introspect(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<OAuthRevokeForm>, FormRejection>,
) -> ApiResult {
    let form = form_of(form)?;
    authenticate(&shared, &headers, &form)?;
    if shared.jwt.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "introspection is off: the publisher verifies no tokens (start it with \
             --jwt-verify-key)",
        ));
    }
    require_ready(&shared)?;
    let answer = verified_claims(&shared, &form.token)
        .and_then(|claims| active(&shared, claims))
        .unwrap_or_else(Introspection::inactive);
    Ok(no_store(axum::Json(answer).into_response()))
}

/// The introspection of a verified token: `None` when it is expired, not yet valid,
/// revoked or cut off.
fn active(shared: &Shared, claims: TokenClaims) -> Option<Introspection> {
    let ledger = shared.ledger();
    let params = ledger.filter.params();
    let now = shared.now_secs();
    if claims
        .exp
        .is_some_and(|exp| exp.saturating_add(params.leeway) <= now)
        || claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(params.leeway))
    {
        return None;
    }
    if let Some(jti) = &claims.jti
        && ledger.records.contains_key(jti)
    {
        return None;
    }
    let probe = Probe {
        jti: claims.jti.as_deref().unwrap_or_default(),
        exp: claims.exp,
        sub: claims.sub.as_deref(),
        iat: claims.iat,
        sid: claims.sid.as_deref(),
    };
    if ledger.filter.cutoff(&probe).is_some() {
        return None;
    }
    drop(ledger);
    Some(Introspection {
        active: true,
        sub: claims.sub,
        client_id: claims.client_id,
        scope: claims.scope,
        exp: claims.exp,
        iat: claims.iat,
        iss: claims.iss,
        jti: claims.jti,
        token_type: Some("Bearer".to_owned()),
    })
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub(super) async fn metadata(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> ApiResult {
    let base = match &shared.config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| h.parse::<axum::http::uri::Authority>().is_ok())
                .ok_or_else(|| {
                    invalid_request(
                        "no usable Host header, and no public URL configured (--public-url)",
                    )
                })?;
            format!("http://{host}")
        }
    };
    let methods: Vec<String> = AUTH_METHODS.iter().map(|m| (*m).to_owned()).collect();
    let introspection = shared.jwt.is_some();
    let metadata = AuthorizationServerMetadata {
        issuer: base.clone(),
        revocation_endpoint: format!("{base}{}", http::OAUTH_REVOKE),
        revocation_endpoint_auth_methods_supported: methods.clone(),
        introspection_endpoint: introspection.then(|| format!("{base}{}", http::OAUTH_INTROSPECT)),
        introspection_endpoint_auth_methods_supported: if introspection {
            methods
        } else {
            Vec::new()
        },
        response_types_supported: Vec::new(),
    };
    Ok(axum::Json(metadata).into_response())
}

/// RFC 6749 and RFC 7662: answers about tokens are never cached.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let encoded = STANDARD.encode("my%20app:p%3Ass+word");
        let (id, secret) = basic_credentials(&encoded).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("my app", "p:ss word"));
    }

    #[test]
    fn malformed_basic_credentials_are_invalid_client() {
        let cases = [
            "!!!".to_owned(),
            STANDARD.encode("no colon"),
            STANDARD.encode([0xff, b':', b'x']),
            STANDARD.encode("a:%ff"),
        ];
        for encoded in cases {
            let error = basic_credentials(&encoded).unwrap_err();
            assert_eq!(error.status, StatusCode::UNAUTHORIZED, "{encoded}");
            assert_eq!(error.error, "invalid_client");
        }
    }
}
