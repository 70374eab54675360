//! The routes: the forward-auth check, RFC 7662 introspection, health, readiness,
//! metrics and stats. [`router`] builds them around an [`App`], so tests call them
//! with or without a socket.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use prometheus_client::registry::Registry;
use revocast_core::http::{
    ErrorBody, HEALTHZ, Health, Introspection, IntrospectionForm, METRICS, READYZ, Readiness,
};
use revocast_subscriber::{Gate, Rejection, Stats, Subscriber, SubscriberOptions, TokenClaims};
use revocast_verifier::{IssuerStatus, Verifier};
use serde::Serialize;
use subtle::ConstantTimeEq as _;

use crate::config::{ClientCredentials, Config};
use crate::counters::{CounterValues, Counters, SidecarCollector};
use crate::error::Error;

/// `/check` and everything below it, any method.
pub const CHECK: &str = "/check";
/// `POST`: RFC 7662 introspection.
pub const INTROSPECT: &str = "/introspect";
/// `GET`: [`SidecarStats`].
pub const STATS: &str = "/stats";

/// Introspection bodies above this are refused (a form with one JWT).
const MAX_FORM: usize = 64 * 1024;

/// The identity header names, built once from the prefix.
#[derive(Clone, Debug)]
struct IdentityHeaders {
    subject: HeaderName,
    jti: HeaderName,
    client_id: HeaderName,
    scope: HeaderName,
}

impl IdentityHeaders {
    fn new(prefix: &str) -> Result<IdentityHeaders, Error> {
        let name = |suffix: &str| {
            HeaderName::from_bytes(format!("{prefix}{suffix}").as_bytes())
                .map_err(|_| Error::HeaderPrefix(prefix.to_owned()))
        };
        Ok(IdentityHeaders {
            subject: name("Subject")?,
            jti: name("Jti")?,
            client_id: name("Client-Id")?,
            scope: name("Scope")?,
        })
    }
}

/// The running sidecar: gate (verifier + replicas), counters, metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    gate: Gate,
    verifier: Verifier,
    headers: Arc<IdentityHeaders>,
    client: Option<Arc<ClientCredentials>>,
    counters: Arc<Counters>,
    registry: Arc<Registry>,
}

/// What `GET /stats` answers.
#[derive(Debug, Serialize)]
pub struct SidecarStats {
    /// Whether `/readyz` says ready.
    pub ready: bool,
    /// Each replica (one per namespace).
    pub replicas: Vec<Stats>,
    /// Each issuer's keys.
    pub issuers: Vec<IssuerStatus>,
    /// Answers so far.
    pub answers: CounterValues,
}

impl App {
    /// Checks the configuration, starts the verifier and connects the replicas.
    /// Serving may start at once: until the replicas are ready, checks follow the
    /// policy, and `/readyz` says 503.
    pub async fn start(config: Config) -> Result<App, Error> {
        let headers = IdentityHeaders::new(&config.header_prefix)?;
        if config.max_staleness.is_zero() {
            return Err(Error::ZeroStaleness);
        }
        if config.issuers.is_empty() {
            return Err(Error::NoKeys);
        }
        for (issuer, _) in &config.issuer_namespaces {
            if !config
                .issuers
                .iter()
                .any(|i| i.issuer() == Some(issuer.as_str()))
            {
                return Err(Error::UnknownIssuer(issuer.clone()));
            }
        }
        let verifier = Verifier::new(config.issuers.clone())?;
        let options = |namespace| {
            config
                .also_trust_keys
                .iter()
                .fold(SubscriberOptions::new(config.publisher_key), |o, key| {
                    o.trust_key(*key)
                })
                .pin_only(config.pin_only)
                .namespace(namespace)
                .policy(config.policy)
                .max_staleness(config.max_staleness)
                .confirm_timeout(config.confirm_timeout)
        };
        let main = options(config.namespace.clone())
            .connect(&config.nats)
            .await?;
        let mut replicas: Vec<Subscriber> = vec![main.clone()];
        let mut gate = Gate::with_verifier(verifier.clone(), main);
        for (issuer, namespace) in &config.issuer_namespaces {
            let replica = match replicas.iter().find(|r| r.namespace() == namespace) {
                Some(existing) => existing.clone(),
                None => {
                    let replica = options(namespace.clone()).connect(&config.nats).await?;
                    replicas.push(replica.clone());
                    replica
                }
            };
            gate = gate
                .replica_for(issuer, replica)
                .map_err(|e| Error::UnknownIssuer(e.0))?;
        }
        let counters = Arc::new(Counters::default());
        let mut registry = Registry::default();
        revocast_subscriber::metrics::register_all(&mut registry, &replicas);
        registry.register_collector(Box::new(SidecarCollector {
            counters: counters.clone(),
            verifier: verifier.clone(),
        }));
        tracing::info!(
            issuers = ?verifier.issuers().collect::<Vec<_>>(),
            namespaces = ?replicas.iter().map(|r| r.namespace().to_string()).collect::<Vec<_>>(),
            policy = %config.policy,
            "sidecar started; checks follow the policy until the replicas are ready"
        );
        Ok(App {
            gate,
            verifier,
            headers: Arc::new(headers),
            client: config.introspection_client.map(Arc::new),
            counters,
            registry: Arc::new(registry),
        })
    }

    /// The replicas, one per namespace.
    pub fn subscribers(&self) -> Vec<Subscriber> {
        self.gate.subscribers()
    }

    /// Whether every replica is ready and every issuer has keys.
    pub fn is_ready(&self) -> bool {
        self.gate.is_ready()
    }

    /// What `/stats` serves.
    pub fn stats(&self) -> SidecarStats {
        SidecarStats {
            ready: self.is_ready(),
            replicas: self.subscribers().iter().map(Subscriber::stats).collect(),
            issuers: self.verifier.status(),
            answers: self.counters.values(),
        }
    }
}

/// The sidecar's routes.
pub fn router(app: App) -> Router {
    let mut router = Router::new()
        .route(CHECK, any(check))
        .route(&format!("{CHECK}/"), any(check))
        .route(&format!("{CHECK}/{{*rest}}"), any(check))
        .route(HEALTHZ, get(healthz))
        .route(READYZ, get(readyz))
        .route(METRICS, get(metrics))
        .route(STATS, get(stats));
    // Without client credentials the route does not exist: never an open oracle.
    if app.client.is_some() {
        router = router.route(
            INTROSPECT,
            post(introspect).layer(DefaultBodyLimit::max(MAX_FORM)),
        );
    }
    router.with_state(app)
}

/// The forward-auth check: 200 with identity headers, 401 or 503. The body is not
/// read; the forwarded method and URI are logged only.
async fn check(State(app): State<App>, method: Method, headers: HeaderMap) -> Response {
    let result = app.gate.check_headers(&headers).await;
    let forwarded = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    match result {
        Ok(admitted) => {
            Counters::bump(&app.counters.allowed);
            tracing::debug!(
                %method,
                forwarded_method = forwarded("x-forwarded-method"),
                forwarded_uri = forwarded("x-forwarded-uri"),
                original_uri = forwarded("x-original-uri"),
                jti = %admitted.claims.jti,
                "allowed"
            );
            let mut response = StatusCode::OK.into_response();
            let out = response.headers_mut();
            let h = &app.headers;
            let identity = Identity::of(&admitted.claims);
            for (name, value) in [
                (&h.subject, identity.sub),
                (&h.jti, Some(admitted.claims.jti.clone())),
                (&h.client_id, identity.client_id),
                (&h.scope, identity.scope),
            ] {
                // Always sent, empty when the token lacks the claim (or when it cannot be
                // a header value): proxies that copy only the headers present (or, like
                // Caddy 2.6, copy a placeholder for a missing one) cannot let a client's
                // own header through.
                let value = value
                    .and_then(|v| HeaderValue::from_str(&v).ok())
                    .unwrap_or_else(|| HeaderValue::from_static(""));
                out.insert(name.clone(), value);
            }
            response
        }
        Err(rejection) => {
            let counter = if rejection == Rejection::Unavailable {
                &app.counters.unavailable
            } else {
                &app.counters.unauthorized
            };
            Counters::bump(counter);
            tracing::debug!(
                %method,
                forwarded_method = forwarded("x-forwarded-method"),
                forwarded_uri = forwarded("x-forwarded-uri"),
                original_uri = forwarded("x-original-uri"),
                error = rejection.error_code(),
                "refused"
            );
            rejection.into_response::<Body>()
        }
    }
}

/// The identity claims of a token, as strings.
struct Identity {
    sub: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
}

impl Identity {
    fn of(claims: &TokenClaims) -> Identity {
        let text = |name: &str| {
            claims
                .extra
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        // `scope` (RFC 9068, space-separated) or `scp` (a list, as some providers send).
        let scope = text("scope").or_else(|| {
            let list = claims.extra.get("scp")?.as_array()?;
            let words: Vec<&str> = list.iter().filter_map(|v| v.as_str()).collect();
            Some(words.join(" "))
        });
        Identity {
            sub: claims.sub.clone(),
            client_id: text("client_id").or_else(|| text("azp")),
            scope,
        }
    }
}

fn error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(ErrorBody::new(error, description))).into_response()
}

/// RFC 7662: client authentication first, then the form, then the token.
async fn introspect(
    State(app): State<App>,
    headers: HeaderMap,
    form: Result<Form<IntrospectionForm>, FormRejection>,
) -> Response {
    let Some(expected) = &app.client else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !client_authenticated(&headers, expected) {
        Counters::bump(&app.counters.introspect_refused);
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"revocast\""),
        );
        return response;
    }
    let form = match form {
        Ok(Form(form)) if !form.token.is_empty() => form,
        Ok(_) => {
            Counters::bump(&app.counters.introspect_refused);
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the token is empty",
            );
        }
        Err(rejection) => {
            Counters::bump(&app.counters.introspect_refused);
            // RFC 7662 2.1 / RFC 6749 5.2: a bad request is a 400 (413 when too large).
            let status = match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            let description = format!("a form with a token is required: {}", rejection.body_text());
            return error(status, "invalid_request", &description);
        }
    };
    let answer = match app.gate.check(&form.token).await {
        Ok(admitted) => {
            Counters::bump(&app.counters.active);
            let claims = admitted.claims;
            let identity = Identity::of(&claims);
            Introspection {
                active: true,
                sub: identity.sub,
                exp: Some(claims.exp),
                iat: claims.iat,
                iss: admitted.issuer.or_else(|| {
                    claims
                        .extra
                        .get("iss")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                }),
                client_id: identity.client_id,
                scope: identity.scope,
                jti: Some(claims.jti),
                token_type: Some("Bearer".to_owned()),
            }
        }
        Err(Rejection::Unavailable) => {
            Counters::bump(&app.counters.introspect_unavailable);
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the token's revocation status cannot be established; retry later",
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        Err(_) => {
            Counters::bump(&app.counters.inactive);
            Introspection::inactive()
        }
    };
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// HTTP Basic credentials equal to the expected ones, compared in constant time.
fn client_authenticated(headers: &HeaderMap, expected: &ClientCredentials) -> bool {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (id, secret) = (&decoded[..colon], &decoded[colon + 1..]);
    let same = id.ct_eq(expected.id.as_bytes()) & secret.ct_eq(expected.secret.as_bytes());
    bool::from(same)
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

async fn readyz(State(app): State<App>) -> Response {
    let ready = app.is_ready();
    let reason = (!ready).then(|| {
        let waiting: Vec<String> = app
            .subscribers()
            .iter()
            .filter(|s| !s.is_ready())
            .map(|s| format!("replica {}", s.namespace()))
            .chain(
                app.verifier
                    .status()
                    .into_iter()
                    .filter(|s| !s.ready)
                    .map(|s| format!("keys of {}", s.issuer)),
            )
            .collect();
        format!("waiting for {}", waiting.join(", "))
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let version = app.subscribers().first().map_or(0, Subscriber::version);
    (
        status,
        Json(Readiness {
            ready,
            reason,
            version,
        }),
    )
        .into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &app.registry) {
        Ok(()) => (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the metrics could not be encoded",
        ),
    }
}

async fn stats(State(app): State<App>) -> Json<SidecarStats> {
    Json(app.stats())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn creds() -> ClientCredentials {
        ClientCredentials {
            id: "kong".into(),
            secret: "s3cret".into(),
        }
    }

    fn basic(raw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(raw).unwrap());
        h
    }

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn client_credentials_must_match_exactly() {
        assert!(client_authenticated(
            &basic(&format!("Basic {}", b64(b"kong:s3cret"))),
            &creds()
        ));
        assert!(client_authenticated(
            &basic(&format!("basic  {}", b64(b"kong:s3cret"))),
            &creds()
        ));
        for bad in [
            format!("Basic {}", b64(b"kong:s3cre")),
            format!("Basic {}", b64(b"kong:s3cret2")),
            format!("Basic {}", b64(b"kon:s3cret")),
            format!("Basic {}", b64(b"kongs3cret")),
            format!("Basic {}", b64(b":")),
            format!("Basic {}", b64(b"kong:s3cret\xff")),
            "Basic !!!not-base64".to_owned(),
            format!("Bearer {}", b64(b"kong:s3cret")),
            "Basic".to_owned(),
            String::new(),
        ] {
            assert!(!client_authenticated(&basic(&bad), &creds()), "{bad:?}");
        }
        assert!(!client_authenticated(&HeaderMap::new(), &creds()));
    }

    #[test]
    fn prefixes_that_cannot_make_header_names_are_refused() {
        assert!(IdentityHeaders::new("X-Auth-").is_ok());
        assert!(IdentityHeaders::new("").is_ok());
        for bad in ["X Auth-", "X-Auth:", "X-Äuth-", "X-Auth-\n"] {
            assert!(
                matches!(IdentityHeaders::new(bad), Err(Error::HeaderPrefix(_))),
                "{bad:?}"
            );
        }
    }
}
