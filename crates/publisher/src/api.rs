//! The HTTP API (axum): revocations, cutoffs, the authority over HTTP, stats,
//! metrics and health. See the crate README for the routes and their answers.
//!
//! Every client mistake is answered with a 4xx and the contract's error body
//! ([`ErrorBody`]: `{"error", "error_description"}`), including axum's own rejections
//! (bad JSON, wrong content type, huge body). Every body is a type of
//! [`revocast_core::http`].

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FormRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use revocast_core::http::{
    self, Committed, CutoffRequest, ErrorBody, Health, NatsReport, PublisherStats, Readiness,
    Revocation, RevocationStatus, RotateKeyRequest, TokenQuery,
};
use serde_json::Value;
use subtle::ConstantTimeEq as _;
use tokio::sync::oneshot;

use crate::authority;
use crate::commit::{Command, CommitError, CutoffOf, Rotate, RotateError};
use crate::error::and_cause;
use crate::keys::KeySource;
use crate::state::Shared;
use crate::stats::{self, Gauges};

mod logout;
mod oauth;
mod ssf;

/// How far in the future a cutoff may be set (clock skew); anything later would lock
/// out tokens not issued yet, which is always a mistake (often milliseconds for seconds).
const CUTOFF_FUTURE_SLACK_SECS: u64 = 300;

/// An API error: status, a stable machine-readable code and a human description.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: &'static str,
    description: String,
    /// The `WWW-Authenticate` challenge of a 401 (`Bearer` unless set).
    challenge: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            description: description.into(),
            challenge: None,
        }
    }

    /// A 401 with this `WWW-Authenticate` challenge instead of `Bearer`.
    fn challenge(mut self, challenge: &'static str) -> ApiError {
        self.challenge = Some(challenge);
        self
    }

    fn unprocessable(error: &'static str, description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error, description)
    }

    fn from_bytes(rejection: BytesRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                rejection.body_text(),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                rejection.body_text(),
            )
        }
    }

    fn from_form(rejection: FormRejection) -> ApiError {
        match rejection.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/x-www-form-urlencoded",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                rejection.body_text(),
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                rejection.body_text(),
            ),
        }
    }
}

impl From<CommitError> for ApiError {
    fn from(e: CommitError) -> ApiError {
        match e {
            CommitError::NotStored { reason, source } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_durable",
                format!("{reason}{}", and_cause(&source)),
            ),
            CommitError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the publisher is shutting down; retry against the new instance",
            ),
            CommitError::Invalid(why) => {
                ApiError::unprocessable("invalid_revocation", why.to_string())
            }
            CommitError::TooLarge(why) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", why)
            }
        }
    }
}

impl From<RotateError> for ApiError {
    fn from(e: RotateError) -> ApiError {
        match e {
            RotateError::Commit(e) => e.into(),
            RotateError::KeyReused => {
                ApiError::new(StatusCode::CONFLICT, "key_reused", e.to_string())
            }
            RotateError::NoKeyFile => {
                ApiError::new(StatusCode::CONFLICT, "no_key_file", e.to_string())
            }
            RotateError::KeyFile(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "key_file_not_written",
                e.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, error = self.error, description = %self.description, "request failed");
        }
        let body = axum::Json(ErrorBody::new(self.error, self.description));
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = self.challenge.unwrap_or("Bearer");
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 here is passing (not ready yet, NATS unreachable, shutting
            // down): retrying soon is right, and safe.
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

type ApiResult = Result<Response, ApiError>;

/// The API router. Tests drive it with `tower::ServiceExt::oneshot`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.config.max_body_bytes;
    Router::new()
        .route(http::REVOCATIONS, post(post_revocations))
        .route(http::REVOCATION_ROUTE, get(get_revocation))
        .route(http::OAUTH_REVOKE, post(oauth::revoke))
        .route(http::OAUTH_INTROSPECT, post(oauth::introspect))
        .route(http::OAUTH_METADATA, get(oauth::metadata))
        .route(
            http::OIDC_BACKCHANNEL_LOGOUT,
            post(logout::backchannel_logout),
        )
        .route(http::SSF_EVENTS, post(ssf::events))
        .route(http::CUTOFFS, post(post_cutoff))
        .route(http::KEYS_ROTATE, post(post_rotate_key))
        .route(http::STATS, get(get_stats))
        .route(http::METRICS, get(get_metrics))
        .route(http::HEALTHZ, get(healthz))
        .route(http::READYZ, get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response_with_state(
            shared.clone(),
            count_rejections,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

/// Marks a 4xx that is an answer, not a rejection (the authority's "not revoked").
#[derive(Clone, Copy, Debug)]
struct Answer;

async fn count_rejections(State(shared): State<Arc<Shared>>, response: Response) -> Response {
    if response.status().is_client_error() && response.extensions().get::<Answer>().is_none() {
        stats::add(&shared.counters.requests_rejected, 1);
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Mutating routes need `Authorization: Bearer <admin token>` when one is configured.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &shared.config.admin_token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs Authorization: Bearer <admin token>",
        )),
        Some(token) if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong admin token",
        )),
    }
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ))
    }
}

fn require_ready(shared: &Shared) -> Result<(), ApiError> {
    if shared.is_ready() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the publisher is still loading its state from NATS",
        ))
    }
}

/// What every mutating JSON route checks first, in this order: the admin token, the
/// content type, the body (size), readiness; then the body parsed as JSON.
fn admit_json(
    shared: &Shared,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    authorize(shared, headers)?;
    require_json(headers)?;
    let body = body.map_err(ApiError::from_bytes)?;
    require_ready(shared)?;
    parse_json(&body)
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("body is not JSON: {e}"),
        )
    })
}

/// Turns a body item into a revocation, checking what a caller can get wrong.
fn revocation(limits: &ExpLimits, value: Value, at: &str) -> Result<Revocation, ApiError> {
    let revocation: Revocation = serde_json::from_value(value)
        .map_err(|e| ApiError::unprocessable("invalid_revocation", format!("{at}{e}")))?;
    check_revocation(limits, &revocation).map_err(|mut e| {
        e.description = format!("{at}{}", e.description);
        e
    })?;
    Ok(revocation)
}

/// What bounds a revocation's `exp`, read once per request.
#[derive(Debug)]
struct ExpLimits {
    now: u64,
    lifetime: u64,
    leeway: u64,
}

impl ExpLimits {
    fn of(shared: &Shared) -> ExpLimits {
        let ledger = shared.ledger();
        let params = ledger.filter.params();
        ExpLimits {
            now: shared.now_secs(),
            lifetime: params.max_token_lifetime,
            leeway: params.leeway,
        }
    }
}

fn check_revocation(limits: &ExpLimits, r: &Revocation) -> Result<(), ApiError> {
    r.validate().map_err(|e| {
        let code = match e {
            revocast_core::FilterError::EmptyJti | revocast_core::FilterError::JtiTooLong(_) => {
                "invalid_jti"
            }
            _ => "invalid_revocation",
        };
        ApiError::unprocessable(code, e.to_string())
    })?;
    let ExpLimits {
        now,
        lifetime,
        leeway,
    } = *limits;
    let latest = now.saturating_add(lifetime).saturating_add(leeway);
    if let Some(exp) = r.exp
        && exp > latest
    {
        return Err(ApiError::unprocessable(
            "exp_too_far",
            format!(
                "exp {exp} is {} s from now, beyond the longest token lifetime of {lifetime} s \
                 (--max-token-lifetime); exp is unix seconds, not milliseconds",
                exp - now
            ),
        ));
    }
    Ok(())
}

/// Hands a command to the writer and waits (bounded) for the commit.
async fn submit(
    shared: &Shared,
    command: impl FnOnce(oneshot::Sender<Result<Committed, CommitError>>) -> Command,
) -> Result<Committed, ApiError> {
    let (tx, rx) = oneshot::channel();
    let wait = async {
        shared
            .commands
            .send(command(tx))
            .await
            .map_err(|_| CommitError::Stopped)?;
        rx.await.map_err(|_| CommitError::Stopped)?
    };
    match tokio::time::timeout(shared.config.commit_timeout, wait).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_durable",
            format!(
                "not confirmed durable within {:?} (NATS unavailable?); retrying is safe",
                shared.config.commit_timeout
            ),
        )),
    }
}

fn committed(c: Committed) -> Response {
    axum::Json(c).into_response()
}

/// `POST /v1/revocations`: one revocation, or `{"revocations": [...]}`.
async fn post_revocations(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let value = admit_json(&shared, &headers, body)?;
    let limits = ExpLimits::of(&shared);
    let items = match value {
        Value::Object(mut map) if map.contains_key("revocations") => {
            let list = match map.remove("revocations") {
                Some(Value::Array(list)) => list,
                _ => {
                    return Err(ApiError::unprocessable(
                        "invalid_revocation",
                        "`revocations` must be an array",
                    ));
                }
            };
            if list.is_empty() {
                return Err(ApiError::unprocessable(
                    "invalid_revocation",
                    "`revocations` is empty",
                ));
            }
            if list.len() > shared.config.max_bulk {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_revocations",
                    format!(
                        "{} revocations in one call; the limit is {}",
                        list.len(),
                        shared.config.max_bulk
                    ),
                ));
            }
            list.into_iter()
                .enumerate()
                .map(|(i, v)| revocation(&limits, v, &format!("revocations[{i}]: ")))
                .collect::<Result<Vec<_>, _>>()?
        }
        value @ Value::Object(_) => vec![revocation(&limits, value, "")?],
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_revocation",
                "expected a JSON object",
            ));
        }
    };
    let done = submit(&shared, |reply| Command::Revoke { items, reply }).await?;
    Ok(committed(done))
}

/// `GET /v1/revocations/{jti}`: the authority's answer over HTTP.
/// `GET /v1/revocations/{jti}`: the authority's answer. Anyone may ask whether a
/// `jti` is revoked; the record's details (`exp`, `sub`, `reason`, `revoked_at`) are
/// only for callers with the admin token (or when none is configured).
async fn get_revocation(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    jti: Result<Path<String>, PathRejection>,
    token: Result<Query<TokenQuery>, QueryRejection>,
) -> ApiResult {
    let Path(jti) =
        jti.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_jti", e.body_text()))?;
    revocast_core::check_jti(&jti)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_jti", e.to_string()))?;
    require_ready(&shared)?;
    let Query(token) = token
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let answer = authority::lookup(
        &shared,
        &revocast_core::Probe {
            jti: &jti,
            exp: token.exp,
            sub: token.sub.as_deref(),
            iat: token.iat,
            sid: token.sid.as_deref(),
        },
    );
    let revoked = answer.revoked();
    let (version, epoch) = (answer.version, answer.epoch);
    let mut record = answer.record;
    if authorize(&shared, &headers).is_err() {
        record = None;
    }
    let answer = axum::Json(RevocationStatus {
        jti,
        revoked,
        exp: record.as_ref().map(|r| r.exp),
        sub: record.as_ref().and_then(|r| r.sub.clone()),
        revoked_at: record.as_ref().map(|r| r.revoked_at),
        reason: record.and_then(|r| r.reason),
        version,
        epoch: Some(format!("{epoch:016x}")),
    });
    Ok(if revoked {
        answer.into_response()
    } else {
        (StatusCode::NOT_FOUND, axum::Extension(Answer), answer).into_response()
    })
}

/// `POST /v1/cutoffs`: reject tokens of `sub`, of session `sid`, or all tokens, issued
/// before `not_before`.
async fn post_cutoff(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: CutoffRequest = serde_json::from_value(admit_json(&shared, &headers, body)?)
        .map_err(|e| ApiError::unprocessable("invalid_cutoff", e.to_string()))?;
    let of = match (body.sub, body.sid) {
        (Some(_), Some(_)) => {
            return Err(ApiError::unprocessable(
                "invalid_cutoff",
                "give sub or sid, not both: a cutoff is of a subject, of a session, or of \
                 everyone",
            ));
        }
        (Some(sub), None) => {
            revocast_core::check_sub(&sub)
                .map_err(|e| ApiError::unprocessable("invalid_cutoff", e.to_string()))?;
            CutoffOf::Subject(sub)
        }
        (None, Some(sid)) => {
            revocast_core::check_sid(&sid)
                .map_err(|e| ApiError::unprocessable("invalid_cutoff", e.to_string()))?;
            CutoffOf::Session(sid)
        }
        (None, None) => CutoffOf::Everyone,
    };
    let now = shared.now_secs();
    if body.not_before > now + CUTOFF_FUTURE_SLACK_SECS {
        return Err(ApiError::unprocessable(
            "not_before_in_future",
            format!(
                "not_before {} is in the future; it would reject tokens not issued yet \
                 (unix seconds, not milliseconds)",
                body.not_before
            ),
        ));
    }
    Ok(committed(
        commit_cutoff(&shared, of, body.not_before).await?,
    ))
}

/// `POST /v1/keys/rotate`: sign with a new key from now on (see `Writer::rotate`).
/// The new key comes from a key file on the publisher's host, or is generated.
async fn post_rotate_key(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let body: RotateKeyRequest = serde_json::from_value(admit_json(&shared, &headers, body)?)
        .map_err(|e| ApiError::unprocessable("invalid_rotation", e.to_string()))?;
    if !matches!(shared.config.signing_key, KeySource::File(_)) {
        return Err(RotateError::NoKeyFile.into());
    }
    let key = match &body.key_file {
        Some(path) => {
            crate::keys::read_key_file(std::path::Path::new(path))
                .map_err(|e| ApiError::unprocessable("invalid_key_file", e.to_string()))?
                .signing
        }
        None => crate::keys::generate_key().map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no_randomness",
                e.to_string(),
            )
        })?,
    };
    let overlap = body
        .overlap_secs
        .map_or(shared.config.key_overlap, std::time::Duration::from_secs);
    let (reply, answer) = oneshot::channel();
    let wait = async {
        shared
            .commands
            .send(Command::Rotate(Box::new(Rotate {
                key,
                overlap_ms: overlap.as_millis().try_into().unwrap_or(u64::MAX),
                reply,
            })))
            .await
            .map_err(|_| RotateError::Commit(CommitError::Stopped))?;
        answer
            .await
            .map_err(|_| RotateError::Commit(CommitError::Stopped))?
    };
    match tokio::time::timeout(shared.config.commit_timeout, wait).await {
        Ok(result) => Ok(axum::Json(result?).into_response()),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_durable",
            format!(
                "the rotation was not confirmed within {:?}: read `public_key` in                  GET /v1/stats to learn whether it happened before asking again",
                shared.config.commit_timeout
            ),
        )),
    }
}

/// Commits a cutoff: a no-op success when every token it could catch has expired.
async fn commit_cutoff(
    shared: &Shared,
    of: CutoffOf,
    not_before: u64,
) -> Result<Committed, ApiError> {
    // Bounded: a clock far ahead must not find a live cutoff expired.
    let now = shared.bounded_now_secs().now;
    let (live, version) = {
        let ledger = shared.ledger();
        let p = ledger.filter.params();
        (p.cutoff_is_live(not_before, now), ledger.filter.version())
    };
    if !live {
        // Every token issued before it has expired already.
        return Ok(Committed {
            version,
            noop: true,
            ..Committed::default()
        });
    }
    submit(shared, |reply| Command::Cutoff {
        of,
        not_before,
        reply,
    })
    .await
}

/// Builds the stats report.
pub(crate) fn report(shared: &Shared) -> PublisherStats {
    let (records, epoch, log_seq, key_rollovers) = {
        let ledger = shared.ledger();
        (
            ledger.records.len() as u64,
            ledger.filter.epoch(),
            ledger.seq,
            ledger.filter.key_chain().len() as u64,
        )
    };
    // Counting set bits is proportional to the filter: outside the ledger lock.
    let filter = shared.filter().stats();
    let s = &shared.counters;
    PublisherStats {
        namespace: shared.config.namespace.to_string(),
        public_key: shared.signer().public_key().to_string(),
        key_rollovers,
        ready: shared.is_ready(),
        version: filter.version,
        epoch: format!("{epoch:016x}"),
        log_seq,
        log_messages_skipped: stats::get(&s.log_messages_skipped),
        uptime_seconds: shared.started.elapsed().as_secs(),
        records,
        filter,
        revocations: s.revocations(),
        deltas: s.deltas(),
        snapshots: s.snapshots(),
        heartbeats_sent: stats::get(&s.heartbeats_sent),
        confirms: s.confirms(),
        nats: NatsReport {
            state: shared.nats_state().to_owned(),
            url: revocast_core::subjects::redact_urls(&shared.config.nats.url),
        },
        expiries_clamped: stats::get(&s.expiries_clamped),
    }
}

async fn get_stats(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(report(&shared)).into_response()
}

async fn get_metrics(State(shared): State<Arc<Shared>>) -> Response {
    let gauges = Gauges::read(&shared);
    let text = stats::render_metrics(&shared.counters, &gauges);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn healthz() -> Response {
    axum::Json(Health {
        status: "ok".to_owned(),
    })
    .into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let version = shared.ledger().filter.version();
    let reason = if !shared.is_ready() {
        Some("loading state from NATS")
    } else if shared.nats_state() != "connected" {
        Some("not connected to NATS")
    } else {
        None
    };
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        ready: reason.is_none(),
        reason: reason.map(str::to_owned),
        version,
    };
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use serde_json::json;

    use super::*;
    use crate::Clock as _;
    use crate::config::Config;

    /// A router over a ready state whose "writer" answers every revocation with
    /// version 7, without NATS.
    fn app(admin_token: Option<&str>) -> Router {
        let mut config = Config::for_tests("nats://127.0.0.1:1").unwrap();
        config.admin_token = admin_token.map(str::to_owned);
        let key = revocast_core::signing_key_from_seed([3; 32]);
        let signer = revocast_core::Signer::new(key, config.namespace.clone());
        let (shared, mut rx) = Shared::new(config, signer, &[], None).unwrap();
        shared.ready.send_replace(true);
        tokio::spawn(async move {
            while let Some(command) = rx.recv().await {
                if let Command::Revoke { items, reply } = command {
                    let _ = reply.send(Ok(Committed {
                        version: 7,
                        revoked: items.len() as u64,
                        ..Committed::default()
                    }));
                }
            }
        });
        router(shared)
    }

    async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn revoke(auth: Option<&str>, body: &str) -> Request<Body> {
        let mut request =
            Request::post("/v1/revocations").header("content-type", "application/json");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.body(Body::from(body.to_owned())).unwrap()
    }

    fn soon() -> u64 {
        crate::SystemClock.now_secs() + 60
    }

    #[tokio::test]
    async fn admin_token_rules() {
        let app = app(Some("s3cret"));
        let body = format!(r#"{{"jti":"a","exp":{}}}"#, soon());
        for (auth, want) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("Bearer nope"), StatusCode::UNAUTHORIZED),
            (Some("Bearer s3cret2"), StatusCode::UNAUTHORIZED),
            (Some("s3cret"), StatusCode::UNAUTHORIZED),
            (Some("Bearer s3cret"), StatusCode::OK),
            (Some("bearer  s3cret "), StatusCode::OK),
        ] {
            let (status, body) = call(&app, revoke(auth, &body)).await;
            assert_eq!(status, want, "{auth:?}: {body}");
        }
        // Reads need no token.
        let (status, _) = call(&app, Request::get("/v1/stats").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn answers_carry_the_committed_version() {
        let app = app(None);
        let body = format!(
            r#"{{"revocations":[{{"jti":"a","exp":{0}}},{{"jti":"b","exp":{0},"sub":"s"}}]}}"#,
            soon()
        );
        let (status, body) = call(&app, revoke(None, &body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"version": 7, "revoked": 2, "buckets": 0, "duplicates": 0, "expired": 0, "noop": false})
        );
    }

    #[tokio::test]
    async fn client_mistakes_are_json_4xx() {
        let app = app(None);
        let cases = [
            (revoke(None, "{"), StatusCode::BAD_REQUEST, "invalid_json"),
            (
                revoke(None, r#"{"exp":1}"#),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_revocation",
            ),
            (
                revoke(None, &format!(r#"{{"jti":"","exp":{}}}"#, soon())),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_jti",
            ),
            (
                Request::post("/v1/revocations")
                    .body(Body::from("{}"))
                    .unwrap(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                revoke(None, &"x".repeat(600 << 10)),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
            (
                Request::get("/nope").body(Body::empty()).unwrap(),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                Request::put("/v1/cutoffs").body(Body::empty()).unwrap(),
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
        ];
        for (request, status, error) in cases {
            let (got, body) = call(&app, request).await;
            assert_eq!(
                (got, body["error"].as_str()),
                (status, Some(error)),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn not_ready_is_503() {
        let app = app(None);
        let mut config = Config::for_tests("nats://127.0.0.1:1").unwrap();
        config.admin_token = None;
        let signer = revocast_core::Signer::new(
            revocast_core::signing_key_from_seed([4; 32]),
            config.namespace.clone(),
        );
        let (shared, _rx) = Shared::new(config, signer, &[], None).unwrap();
        let loading = router(shared);
        let body = format!(r#"{{"jti":"a","exp":{}}}"#, soon());
        let (status, json) = call(&loading, revoke(None, &body)).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready"))
        );
        let (status, _) = call(
            &loading,
            Request::get("/readyz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, _) = call(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
    }
}
