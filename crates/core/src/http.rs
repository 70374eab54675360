//! The publisher's HTTP API as types: the routes, every request and answer body, the
//! one error body, and the one reader of the authority's answer.
//!
//! The publisher's handlers, its CLI client, the subscriber's HTTP authority, the
//! benchmarks and the tests all use these types, so the JSON on each side of a route
//! is defined once (the NATS side of the contract is [`crate::wire`]).
//!
//! | route | request | answer |
//! | --- | --- | --- |
//! | `POST` [`REVOCATIONS`] | [`Revocation`] or [`RevocationBatch`] | [`Committed`] |
//! | `GET` [`revocation_path`] | | [`RevocationStatus`] (200 revoked, 404 not) |
//! | `POST` [`OAUTH_REVOKE`] (RFC 7009 form) | [`OAuthRevokeForm`] | [`Committed`] |
//! | `POST` [`OAUTH_INTROSPECT`] (RFC 7662 form) | [`OAuthRevokeForm`] | [`Introspection`] |
//! | `GET` [`OAUTH_METADATA`] (RFC 8414) | | [`AuthorizationServerMetadata`] |
//! | `POST` [`OIDC_BACKCHANNEL_LOGOUT`] (form) | [`LogoutForm`] | [`Committed`] |
//! | `POST` [`SSF_EVENTS`] (`application/secevent+jwt`) | a SET | 202, empty ([`SsfErrorBody`] on 400) |
//! | `POST` [`CUTOFFS`] | [`CutoffRequest`] | [`Committed`] |
//! | `GET` [`STATS`] | | [`PublisherStats`] |
//! | `GET` [`HEALTHZ`] | | [`Health`] |
//! | `GET` [`READYZ`] | | [`Readiness`] (200 ready, 503 not) |
//! | `GET` [`METRICS`] | | OpenMetrics text |
//!
//! Every error, on every route, is an [`ErrorBody`]: `{"error", "error_description"}`,
//! the shape of RFC 6749 section 5.2 that RFC 7009 (`/oauth/revoke`) and RFC 6750 (the
//! bearer-token 401 of the subscriber's tower layer) use, so that one shape serves all.

use serde::{Deserialize, Serialize};

use crate::error::FilterError;
use crate::filter::{FilterStats, MAX_REASON_LEN, check_jti, check_sub};

/// `POST`: one [`Revocation`] or a [`RevocationBatch`]. `GET /v1/revocations/{jti}`
/// (see [`revocation_path`]): the authority's [`RevocationStatus`].
pub const REVOCATIONS: &str = "/v1/revocations";
/// The route pattern of one revocation, as the router names it.
pub const REVOCATION_ROUTE: &str = "/v1/revocations/{jti}";
/// `POST`: an RFC 7009 revocation of the JWT in the form's `token`.
pub const OAUTH_REVOKE: &str = "/oauth/revoke";
/// `POST`: an RFC 7662 introspection of the JWT in the form's `token`.
pub const OAUTH_INTROSPECT: &str = "/oauth/introspect";
/// `GET`: RFC 8414 authorization server metadata (the OAuth endpoints and their
/// client authentication methods).
pub const OAUTH_METADATA: &str = "/.well-known/oauth-authorization-server";
/// `POST`: an OpenID Connect back-channel logout ([`LogoutForm`]).
pub const OIDC_BACKCHANNEL_LOGOUT: &str = "/oidc/backchannel-logout";
/// `POST`: a security event token pushed by a Shared Signals transmitter (RFC 8935),
/// `Content-Type: application/secevent+jwt`; answered 202, or 400 with an
/// [`SsfErrorBody`].
pub const SSF_EVENTS: &str = "/ssf/events";
/// `POST`: a [`CutoffRequest`].
pub const CUTOFFS: &str = "/v1/cutoffs";
/// `GET`: the [`PublisherStats`].
pub const STATS: &str = "/v1/stats";
/// `POST`: rotate the publisher's signing key (admin).
pub const KEYS_ROTATE: &str = "/v1/keys/rotate";
/// `GET`: Prometheus / OpenMetrics text.
pub const METRICS: &str = "/metrics";
/// `GET`: [`Health`], 200 while the process runs.
pub const HEALTHZ: &str = "/healthz";
/// `GET`: [`Readiness`], 200 once the state is loaded and NATS connected.
pub const READYZ: &str = "/readyz";

/// The path of one `jti`'s authority answer: `/v1/revocations/<jti, percent-encoded>`.
///
/// ```
/// assert_eq!(revocast_core::http::revocation_path("a b/ü"), "/v1/revocations/a%20b%2F%C3%BC");
/// ```
pub fn revocation_path(jti: &str) -> String {
    format!("{REVOCATIONS}/{}", encode_path_segment(jti))
}

/// Percent-encodes every byte but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _
/// ~`), so that any `jti` is one path segment. Takes bytes, so that tests can send
/// what is not UTF-8.
pub fn encode_path_segment(segment: impl AsRef<[u8]>) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let segment = segment.as_ref();
    let mut out = String::with_capacity(segment.len());
    for &b in segment {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// One revocation: the body of `POST /v1/revocations`, and one item of a
/// [`RevocationBatch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`, unix seconds. Absent when unknown (a `jti` from a log line):
    /// the revocation then goes into every bucket a live token's `exp` can fall in,
    /// from the oldest not yet dropped to now plus the longest token lifetime
    /// ([`Committed::buckets`] says how many). A wrong `exp` puts the entry in the
    /// wrong bucket, where a check with the token's real `exp` never looks: leave it
    /// out rather than guess.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// The token's `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Why (kept with the revocation; the authority returns it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Revocation {
    /// A revocation of `jti` expiring at `exp`, without `sub` or reason.
    pub fn new(jti: impl Into<String>, exp: u64) -> Revocation {
        Revocation {
            jti: jti.into(),
            exp: Some(exp),
            sub: None,
            reason: None,
        }
    }

    /// A revocation of `jti` whose `exp` is unknown: every live bucket gets it.
    pub fn without_exp(jti: impl Into<String>) -> Revocation {
        Revocation {
            jti: jti.into(),
            exp: None,
            sub: None,
            reason: None,
        }
    }

    /// Checks the limits every component shares (`jti`, `sub` and reason lengths).
    pub fn validate(&self) -> Result<(), FilterError> {
        check_jti(&self.jti)?;
        if let Some(sub) = &self.sub {
            check_sub(sub)?;
        }
        if let Some(reason) = &self.reason
            && reason.len() > MAX_REASON_LEN
        {
            return Err(FilterError::ReasonTooLong(reason.len()));
        }
        Ok(())
    }
}

/// Several revocations in one call (and one delta): `{"revocations": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationBatch {
    /// The revocations, at most the publisher's bulk limit (1,000 by default).
    pub revocations: Vec<Revocation>,
}

/// The answer of every committed call. `version` is a filter version at which
/// everything the call asked for is durable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Committed {
    /// Filter version holding the call's changes.
    pub version: u64,
    /// Revocations this call added.
    pub revoked: u64,
    /// Filter entries this call added: one per revocation with an `exp`, one per live
    /// bucket for a revocation without.
    pub buckets: u64,
    /// `jti`s that were already revoked (success, no new entry).
    pub duplicates: u64,
    /// Tokens already expired, beyond leeway: nothing to revoke (no-op).
    pub expired: u64,
    /// True when the call changed nothing (everything was a duplicate or expired).
    pub noop: bool,
}

/// The body of `POST /v1/cutoffs`: reject every token of `sub` (every token at all
/// when `sub` is absent) issued before `not_before`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoffRequest {
    /// The subject; absent (and no `sid`): every token (key compromise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// A session id: every token carrying it in its `sid` claim (not with `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Unix seconds.
    pub not_before: u64,
}

/// The body of `POST /v1/keys/rotate`. Both fields are optional: `{}` rotates to a key
/// the publisher generates, with the configured overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// A signing key file on the publisher's host holding the new key (made with
    /// `revocast-publisher keygen`, its public key pinned on services first: the
    /// compromise procedure). Absent: the publisher generates the new key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// How long replicas keep accepting the old key, seconds (default: the
    /// publisher's `--key-overlap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_secs: Option<u64>,
}

/// The answer of `POST /v1/keys/rotate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotated {
    /// The key the publisher signs with now (base64url).
    pub public_key: String,
    /// The key it signed with before.
    pub previous_public_key: String,
    /// The filter version of the delta carrying the rollover.
    pub version: u64,
    /// The rollover's place in the namespace's key chain, from 1.
    pub rollover: u64,
    /// Replicas accept the previous key until this time, unix milliseconds.
    pub previous_accepted_until_ms: u64,
    /// The key file now holding the new key (the publisher's own, rewritten), or why
    /// it could not be written (then see the publisher's log: restart it only with the
    /// new key's file).
    pub key_file: String,
}

/// The form of `POST /oauth/revoke` (RFC 7009 section 2.1) and of `POST
/// /oauth/introspect` (RFC 7662 section 2.1).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthRevokeForm {
    /// The JWT to revoke or introspect.
    pub token: String,
    /// Accepted and ignored: the token is always read as a JWT access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type_hint: Option<String>,
    /// `client_secret_post` (RFC 6749 section 2.3.1): the client's id...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// ...and its secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl OAuthRevokeForm {
    /// A form with only `token`.
    pub fn new(token: impl Into<String>) -> OAuthRevokeForm {
        OAuthRevokeForm {
            token: token.into(),
            token_type_hint: None,
            client_id: None,
            client_secret: None,
        }
    }
}

impl std::fmt::Debug for OAuthRevokeForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the token nor the secret belongs in a log.
        f.debug_struct("OAuthRevokeForm")
            .field("token", &"..")
            .field("token_type_hint", &self.token_type_hint)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| ".."))
            .finish()
    }
}

/// The answer of `POST /oauth/introspect` (RFC 7662 section 2.2). An inactive token
/// (invalid, expired, revoked, cut off) is exactly `{"active": false}`: nothing else
/// is said about it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Introspection {
    /// Whether the token verifies, is unexpired and is not revoked or cut off.
    pub active: bool,
    /// The token's `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The client the token was issued to (its `client_id`, else its `azp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Space-separated scopes (`scope`, or `scp` as a list joined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The token's `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// The token's `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The token's `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The token's `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Always `Bearer` for an active token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

impl Introspection {
    /// `{"active": false}`.
    pub fn inactive() -> Introspection {
        Introspection::default()
    }
}

/// The form of `POST /oidc/backchannel-logout` (OpenID Connect Back-Channel Logout
/// 1.0, section 2.5).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutForm {
    /// The logout token: a JWT signed by a trusted identity provider.
    pub logout_token: String,
}

impl std::fmt::Debug for LogoutForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutForm")
            .field("logout_token", &"..")
            .finish()
    }
}

/// The error body of RFC 8935 section 2.3 (`/ssf/events`): `err` is one of
/// `invalid_request`, `invalid_key`, `invalid_issuer`, `invalid_audience`,
/// `authentication_failed`, `access_denied`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsfErrorBody {
    /// The error code.
    pub err: String,
    /// Why, for people.
    pub description: String,
}

/// RFC 8414 authorization server metadata, as `GET` [`OAUTH_METADATA`] serves it:
/// where to revoke and introspect, and how clients authenticate there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationServerMetadata {
    /// The publisher's public base URL.
    pub issuer: String,
    /// `<issuer>/oauth/revoke`.
    pub revocation_endpoint: String,
    /// `client_secret_basic` and `client_secret_post`.
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    /// `<issuer>/oauth/introspect`, when the publisher can verify tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// As for revocation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    /// Empty: the publisher has no authorization endpoint (RFC 8414 makes the field
    /// required).
    pub response_types_supported: Vec<String>,
}

/// The form of an RFC 7662 introspection request (section 2.1), as the
/// `revocast-sidecar`'s `POST /introspect` reads it: the same fields as RFC 7009's.
pub type IntrospectionForm = OAuthRevokeForm;

/// The query of `GET /v1/revocations/{jti}`: what else the caller knows of the token,
/// so that the authority applies the subject and global cutoffs too (a replica that
/// cannot vouch for a token sends them all). Every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenQuery {
    /// The token's `exp`, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// The token's `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The token's `iat`, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The token's session id (`sid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl TokenQuery {
    /// The query string (without `?`), percent-encoded; empty when nothing is known.
    ///
    /// ```
    /// use revocast_core::http::TokenQuery;
    /// let q = TokenQuery { exp: Some(9), sub: Some("a b".into()), iat: None, sid: Some("s/1".into()) };
    /// assert_eq!(q.to_query_string(), "exp=9&sub=a%20b&sid=s%2F1");
    /// ```
    pub fn to_query_string(&self) -> String {
        let mut parts = Vec::new();
        if let Some(exp) = self.exp {
            parts.push(format!("exp={exp}"));
        }
        if let Some(sub) = &self.sub {
            parts.push(format!("sub={}", encode_path_segment(sub)));
        }
        if let Some(iat) = self.iat {
            parts.push(format!("iat={iat}"));
        }
        if let Some(sid) = &self.sid {
            parts.push(format!("sid={}", encode_path_segment(sid)));
        }
        parts.join("&")
    }
}

/// The authority's answer for one `jti` (`GET /v1/revocations/{jti}`): HTTP 200 with
/// `revoked: true`, or HTTP 404 with `revoked: false`. The record's details (`exp`,
/// `sub`, `revoked_at`, `reason`) come only with the admin token. Read it with
/// [`RevocationStatus::from_answer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationStatus {
    /// The `jti` asked about, echoed.
    pub jti: String,
    /// Whether it is revoked.
    pub revoked: bool,
    /// The token's `exp` (revoked, admin token only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// The token's `sub`, when the revocation gave one (admin token only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// When it was committed, unix seconds (revoked, admin token only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// Why, when the revocation said (admin token only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The authority's filter version when it answered.
    pub version: u64,
    /// The namespace's epoch the answer was computed in, 16 hex digits (absent from
    /// authorities that predate epochs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// Why a response is not the authority's answer about a `jti`.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The publisher refused the request (bad `jti`, not ready, no such route...).
    #[error("HTTP {status} {}: {}", .body.error, .body.error_description)]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error body.
        body: ErrorBody,
    },
    /// A 200 or 404 whose body is not an answer (a wrong base URL, a proxy's page).
    #[error("HTTP {status} is not the authority's answer: {source}")]
    Malformed {
        /// The HTTP status.
        status: u16,
        /// Why the body does not parse.
        source: serde_json::Error,
    },
    /// An answer about another `jti`, or whose `revoked` contradicts its status.
    #[error(
        "HTTP {status} is not the authority's answer for {asked:?}: it says {:?} is {}",
        .found.jti,
        if .found.revoked { "revoked" } else { "not revoked" }
    )]
    Mismatch {
        /// The HTTP status.
        status: u16,
        /// The `jti` asked about.
        asked: String,
        /// What the body says.
        found: Box<RevocationStatus>,
    },
    /// Any other status, without an error body.
    #[error("HTTP {status} without an error body")]
    Unexpected {
        /// The HTTP status.
        status: u16,
    },
}

impl RevocationStatus {
    /// Reads a response to `GET /v1/revocations/{jti}` asked about `jti`. Only the
    /// authority's own answers count: 200 with `revoked: true` or 404 with
    /// `revoked: false`, naming the same `jti`. Any other 404 (a wrong base URL, a
    /// proxy, a `jti` of `.` or `..` that URL normalisation turns into another path)
    /// is an error, never a "not revoked" for a revoked token.
    pub fn from_answer(
        jti: &str,
        status: u16,
        body: &[u8],
    ) -> Result<RevocationStatus, AnswerError> {
        let revoked = match status {
            200 => true,
            404 => false,
            _ => {
                return Err(match serde_json::from_slice::<ErrorBody>(body) {
                    Ok(body) => AnswerError::Refused { status, body },
                    Err(_) => AnswerError::Unexpected { status },
                });
            }
        };
        let answer: RevocationStatus = match serde_json::from_slice(body) {
            Ok(answer) => answer,
            Err(source) => {
                return Err(match serde_json::from_slice::<ErrorBody>(body) {
                    Ok(body) => AnswerError::Refused { status, body },
                    Err(_) => AnswerError::Malformed { status, source },
                });
            }
        };
        if answer.jti != jti || answer.revoked != revoked {
            return Err(AnswerError::Mismatch {
                status,
                asked: jti.to_owned(),
                found: Box::new(answer),
            });
        }
        Ok(answer)
    }
}

/// The error body of every route: a stable code and a human description (RFC 6749
/// section 5.2's shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable, machine-readable code (`invalid_jti`, `not_durable`, ...).
    pub error: String,
    /// What went wrong, for people.
    pub error_description: String,
}

impl ErrorBody {
    /// An error body.
    pub fn new(error: impl Into<String>, error_description: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            error_description: error_description.into(),
        }
    }
}

/// The answer of `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// The answer of `GET /readyz`: 200 when ready, 503 with a reason when not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// Whether the publisher takes revocations.
    pub ready: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The filter version.
    pub version: u64,
}

/// The answer of `GET /v1/stats`.
#[derive(Clone, Debug, Serialize)]
pub struct PublisherStats {
    /// Namespace.
    pub namespace: String,
    /// Public key subscribers pin.
    pub public_key: String,
    /// Key rollovers in the namespace's key chain (this epoch).
    #[serde(default)]
    pub key_rollovers: u64,
    /// Whether the publisher finished loading its state.
    pub ready: bool,
    /// Filter version: deltas committed in this epoch.
    pub version: u64,
    /// The namespace's epoch, 16 hex digits: a new one when the namespace is created
    /// again.
    #[serde(default)]
    pub epoch: String,
    /// The stream sequence of the last log message read or written.
    #[serde(default)]
    pub log_seq: u64,
    /// Messages in the log that are not this publisher's next delta (garbage, another
    /// key, copies of old deltas, another epoch), skipped and counted. Alert on it.
    #[serde(default)]
    pub log_messages_skipped: u64,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Exact revocation records the authority holds.
    pub records: u64,
    /// The filter: entries, buckets, sizes, false-positive rates, cutoffs.
    pub filter: FilterStats,
    /// Revocation calls by outcome.
    pub revocations: RevocationCounts,
    /// Deltas published.
    pub deltas: PublishedCounts,
    /// Snapshots written.
    pub snapshots: SnapshotCounts,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Confirms served, by answer.
    pub confirms: ConfirmCounts,
    /// NATS connection.
    pub nats: NatsReport,
    /// Expiry checks whose clock was ahead of the time the publisher has seen pass
    /// (a clock jump): expiry used the bound instead. Alert on it.
    #[serde(default)]
    pub expiries_clamped: u64,
}

/// Revocations by outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationCounts {
    /// Entries added.
    pub added: u64,
    /// Already revoked.
    pub duplicates: u64,
    /// Already expired (no-op).
    pub expired: u64,
    /// Cutoffs set.
    pub cutoffs: u64,
    /// Requests refused as client mistakes.
    pub requests_rejected: u64,
}

/// Delta figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedCounts {
    /// Deltas stored by this process.
    pub count: u64,
    /// Bytes of those deltas.
    pub bytes: u64,
    /// When the last one was stored, unix milliseconds (0: none yet).
    pub last_at_ms: u64,
    /// Size of the last one, bytes.
    pub last_bytes: u64,
    /// Commits whose outcome was learned by reading the stream back.
    pub reconciled: u64,
    /// Commits that failed (callers got an error; nothing stored).
    pub failed: u64,
}

/// Snapshot figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCounts {
    /// Snapshots written by this process.
    pub count: u64,
    /// When the last one was written, unix milliseconds (0: none yet).
    pub last_at_ms: u64,
    /// Size of the last one, bytes.
    pub last_bytes: u64,
    /// Version of the last one.
    pub last_version: u64,
    /// The largest snapshot written or read (`--max-snapshot-bytes`).
    #[serde(default)]
    pub limit_bytes: u64,
    /// Snapshots not written because they were over the limit (the previous one
    /// stays; replicas bootstrap from it and the stream). Alert on it.
    #[serde(default)]
    pub refused: u64,
}

/// Confirms served, by answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmCounts {
    /// Answered "revoked".
    pub revoked: u64,
    /// Answered "not revoked": observed filter false positives.
    pub not_revoked: u64,
    /// Requests that did not decode.
    pub malformed: u64,
}

/// NATS connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsReport {
    /// `connected`, `disconnected` or `pending`.
    pub state: String,
    /// Server URL(s) configured.
    pub url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inactive_introspection_is_exactly_active_false() {
        assert_eq!(
            serde_json::to_string(&Introspection::inactive())
                .ok()
                .as_deref(),
            Some(r#"{"active":false}"#)
        );
    }

    fn status(jti: &str, revoked: bool) -> Vec<u8> {
        serde_json::to_vec(&RevocationStatus {
            jti: jti.to_owned(),
            revoked,
            exp: revoked.then_some(10),
            sub: None,
            revoked_at: revoked.then_some(5),
            reason: None,
            version: 3,
            epoch: None,
        })
        .unwrap()
    }

    #[test]
    fn the_authoritys_answers_are_read() {
        let yes = RevocationStatus::from_answer("a", 200, &status("a", true)).unwrap();
        assert!(yes.revoked);
        assert_eq!(
            (yes.exp, yes.revoked_at, yes.version),
            (Some(10), Some(5), 3)
        );
        let no = RevocationStatus::from_answer("a", 404, &status("a", false)).unwrap();
        assert!(!no.revoked);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&status("a", false)).unwrap(),
            serde_json::json!({"jti": "a", "revoked": false, "version": 3})
        );
    }

    /// The case the CLI client and the subscriber used to read differently: a 404
    /// that says "not revoked" about another `jti` (`..` normalised away, a proxy's
    /// cached page). It is not an answer about this `jti`.
    #[test]
    fn a_404_about_another_jti_is_not_a_not_revoked() {
        let err = RevocationStatus::from_answer("..", 404, &status("other", false)).unwrap_err();
        assert!(
            matches!(err, AnswerError::Mismatch { status: 404, .. }),
            "{err}"
        );
    }

    #[test]
    fn anything_else_is_an_error() {
        let route = serde_json::to_vec(&ErrorBody::new("not_found", "no such route")).unwrap();
        let cases: [(u16, &[u8]); 7] = [
            (404, &route),
            (404, b"<html>Not Found</html>"),
            (404, b"{\"revoked\":false}"),
            (200, b"OK"),
            (200, &status("a", false)),
            (404, &status("a", true)),
            (503, b""),
        ];
        for (code, body) in cases {
            let result = RevocationStatus::from_answer("a", code, body);
            assert!(
                result.is_err(),
                "{code} {:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            RevocationStatus::from_answer("a", 404, &route),
            Err(AnswerError::Refused { status: 404, .. })
        ));
    }

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(encode_path_segment("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(encode_path_segment("A-z.0_9~"), "A-z.0_9~");
        assert_eq!(revocation_path(".."), "/v1/revocations/..");
    }

    #[test]
    fn bodies_have_their_documented_shape() {
        let r = Revocation::new("a", 5);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"jti": "a", "exp": 5})
        );
        let batch: RevocationBatch =
            serde_json::from_str(r#"{"revocations":[{"jti":"a","exp":5,"sub":"s"}]}"#).unwrap();
        assert_eq!(batch.revocations[0].sub.as_deref(), Some("s"));
        assert_eq!(
            serde_json::to_value(CutoffRequest {
                sub: None,
                sid: None,
                not_before: 7
            })
            .unwrap(),
            serde_json::json!({"not_before": 7})
        );
        assert_eq!(
            serde_json::to_value(ErrorBody::new("x", "y")).unwrap(),
            serde_json::json!({"error": "x", "error_description": "y"})
        );
        assert!(serde_json::from_str::<Committed>("{\"version\":1}").is_ok());
    }
}
