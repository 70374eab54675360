//! Shared Signals: what a verified security event token (RFC 8417) pushed by a
//! trusted transmitter (RFC 8935) asks of revocast. CAEP `session-revoked` and RISC
//! `sessions-revoked`, `account-disabled`, `account-purged` and
//! `credential-compromise` about a user become a subject cutoff at the event's time,
//! and about one token (a `jwt_id` subject) a revocation of that `jti` in every live
//! bucket; other event types are accepted and counted, not applied.

use serde::Deserialize;
use serde_json::{Map, Value};

/// Events that end every session of their subject.
pub(crate) const CUTOFF_EVENTS: [&str; 5] = [
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
    "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked",
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
    "https://schemas.openid.net/secevent/risc/event-type/account-purged",
    "https://schemas.openid.net/secevent/risc/event-type/credential-compromise",
];

/// The `typ` of a security event token (RFC 8417 section 2.3).
pub(crate) const SET_TYP: &str = "secevent+jwt";

/// An RFC 8935 error: `{"err", "description"}`, answered with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{err}: {description}")]
pub(crate) struct SsfError {
    pub(crate) err: &'static str,
    pub(crate) description: String,
}

impl SsfError {
    pub(crate) fn new(err: &'static str, description: impl Into<String>) -> SsfError {
        SsfError {
            err,
            description: description.into(),
        }
    }

    fn request(description: impl Into<String>) -> SsfError {
        SsfError::new("invalid_request", description)
    }
}

/// The claims of a SET that the receiver reads.
#[derive(Debug, Deserialize)]
pub(crate) struct SetClaims {
    #[serde(default)]
    pub(crate) iat: Option<Value>,
    #[serde(default)]
    pub(crate) jti: Option<String>,
    #[serde(default)]
    pub(crate) events: Option<Value>,
    /// The subject (SSF 1.0); older CAEP and RISC drafts put it in each event.
    #[serde(default)]
    pub(crate) sub_id: Option<Value>,
}

/// What a SET asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Subject cutoffs: `(sub, not_before)`.
    pub(crate) cutoffs: Vec<(String, u64)>,
    /// Session cutoffs: `(sid, not_before)`.
    pub(crate) sessions: Vec<(String, u64)>,
    /// Tokens revoked by `jti` (their `exp` unknown: every live bucket).
    pub(crate) tokens: Vec<String>,
    /// Event types accepted but not applied.
    pub(crate) ignored: Vec<String>,
}

/// How far ahead of the publisher's clock an event's time may cut off tokens.
const EVENT_CLOCK_SKEW_SECS: u64 = 60;

/// Reads a verified SET (signature, `iss` and `aud` were checked by the verifier).
/// All or nothing: a SET whose known event cannot be applied is refused whole.
pub(crate) fn interpret(
    typ: Option<&str>,
    claims: SetClaims,
    issuer: &str,
    now: u64,
) -> Result<Effects, SsfError> {
    if !typ.is_some_and(|t| {
        t.eq_ignore_ascii_case(SET_TYP) || t.eq_ignore_ascii_case("application/secevent+jwt")
    }) {
        return Err(SsfError::request(format!(
            "typ is {typ:?}; a security event token's typ is {SET_TYP}"
        )));
    }
    if claims.jti.as_deref().is_none_or(str::is_empty) {
        return Err(SsfError::request("no jti"));
    }
    let iat = claims
        .iat
        .as_ref()
        .and_then(Value::as_u64)
        .ok_or_else(|| SsfError::request("no iat, or iat is not unix seconds"))?;
    let events = claims
        .events
        .as_ref()
        .and_then(Value::as_object)
        .filter(|events| !events.is_empty())
        .ok_or_else(|| SsfError::request("no events object"))?;
    let mut effects = Effects::default();
    for (event_type, payload) in events {
        let Some(payload) = payload.as_object() else {
            return Err(SsfError::request(format!(
                "event {event_type} is not a JSON object"
            )));
        };
        if !CUTOFF_EVENTS.contains(&event_type.as_str()) {
            effects.ignored.push(event_type.clone());
            continue;
        }
        let subject = claims
            .sub_id
            .as_ref()
            .or_else(|| payload.get("subject"))
            .ok_or_else(|| {
                SsfError::request(format!("event {event_type} has no subject (sub_id)"))
            })?;
        let target = target_of(subject, issuer)
            .map_err(|why| SsfError::request(format!("event {event_type}: {why}")))?;
        let (sub, session) = match target {
            Target::User(sub) => (sub, false),
            Target::Session(sid) => (sid, true),
            Target::Token(jti) => {
                revocast_core::check_jti(&jti).map_err(|e| {
                    SsfError::request(format!("event {event_type}: jwt_id subject {e}"))
                })?;
                effects.tokens.push(jti);
                continue;
            }
        };
        if session {
            revocast_core::check_sid(&sub)
                .map_err(|e| SsfError::request(format!("event {event_type}: session {e}")))?;
        } else {
            revocast_core::check_sub(&sub)
                .map_err(|e| SsfError::request(format!("event {event_type}: subject {e}")))?;
        }
        let at = payload
            .get("event_timestamp")
            .map(|t| {
                t.as_u64().ok_or_else(|| {
                    SsfError::request(format!(
                        "event {event_type}: event_timestamp is not unix seconds"
                    ))
                })
            })
            .transpose()?
            .unwrap_or(iat);
        // Tokens issued up to the event, by the issuer's clock (the one their `iat`s
        // come from), are cut off; an event time far ahead of ours is bounded so that
        // it cannot cut off tokens issued long after it.
        let at = at.min(now.saturating_add(EVENT_CLOCK_SKEW_SECS));
        if session {
            effects.sessions.push((sub, at));
        } else {
            effects.cutoffs.push((sub, at));
        }
    }
    Ok(effects)
}

/// What a subject identifier (RFC 9493) names.
enum Target {
    /// A user: the `sub` of their tokens.
    User(String),
    /// One session of a user: the `sid` of its tokens.
    Session(String),
    /// One token: its `jti`.
    Token(String),
}

fn target_of(subject: &Value, issuer: &str) -> Result<Target, String> {
    if subject.get("format").and_then(Value::as_str) == Some("jwt_id") {
        let subject = subject
            .as_object()
            .ok_or("the subject is not a JSON object")?;
        let iss = subject
            .get("iss")
            .and_then(Value::as_str)
            .ok_or("the subject has no iss")?;
        if iss != issuer {
            return Err(format!(
                "the token is of issuer {iss:?}, not of the transmitter {issuer:?}"
            ));
        }
        let jti = subject
            .get("jti")
            .and_then(Value::as_str)
            .ok_or("the subject has no jti")?;
        return Ok(Target::Token(jti.to_owned()));
    }
    if let Some(session) = subject.get("session") {
        // A complex subject naming a user's session (RFC 9493 section 3.3): the
        // session's id is the `sid` of its tokens.
        if let Some(user) = subject.get("user") {
            user_of(user, issuer)?;
        }
        let id = session
            .get("id")
            .and_then(Value::as_str)
            .ok_or("the session subject has no id")?;
        if !matches!(
            session.get("format").and_then(Value::as_str),
            Some("opaque")
        ) {
            return Err("a session subject's format must be opaque".to_owned());
        }
        return Ok(Target::Session(id.to_owned()));
    }
    user_of(subject, issuer).map(Target::User)
}

/// The `sub` of the user a subject identifier (RFC 9493) names.
fn user_of(subject: &Value, issuer: &str) -> Result<String, String> {
    let subject = subject
        .as_object()
        .ok_or("the subject is not a JSON object")?;
    let text = |map: &Map<String, Value>, key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(format!("the subject has no {key}"))
    };
    match subject.get("format").and_then(Value::as_str) {
        Some("iss_sub") => {
            let iss = text(subject, "iss")?;
            if iss != issuer {
                return Err(format!(
                    "the subject is of issuer {iss:?}, not of the transmitter {issuer:?}"
                ));
            }
            text(subject, "sub")
        }
        Some("opaque") => text(subject, "id"),
        Some("complex") | None if subject.contains_key("user") => user_of(&subject["user"], issuer),
        Some("jwt_id") => Err("a jwt_id subject names a token, not a user".to_owned()),
        Some(other) => Err(format!(
            "subject format {other:?} does not name a token's sub (use iss_sub or opaque)"
        )),
        None => Err("the subject has no format".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISS: &str = "https://idp.example";
    const NOW: u64 = 1_800_000_000;
    const REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

    fn set(events: Value, sub_id: Option<Value>) -> SetClaims {
        let mut claims = json!({"iss": ISS, "iat": NOW - 10, "jti": "set-1", "events": events});
        if let Some(sub_id) = sub_id {
            claims["sub_id"] = sub_id;
        }
        serde_json::from_value(claims).unwrap()
    }

    fn user(sub: &str) -> Value {
        json!({"format": "iss_sub", "iss": ISS, "sub": sub})
    }

    #[test]
    fn user_events_become_subject_cutoffs_at_the_event_time() {
        let effects = interpret(
            Some("secevent+jwt"),
            set(
                json!({REVOKED: {"event_timestamp": NOW - 60}, "https://example.com/other": {}}),
                Some(user("alice")),
            ),
            ISS,
            NOW,
        )
        .unwrap();
        assert_eq!(effects.cutoffs, vec![("alice".to_owned(), NOW - 60)]);
        assert_eq!(
            effects.ignored,
            vec!["https://example.com/other".to_owned()]
        );
        // A subject inside the event (older drafts), opaque and complex subjects, iat
        // as the time.
        for subject in [
            json!({"format": "opaque", "id": "bob"}),
            json!({"format": "complex", "user": {"format": "opaque", "id": "bob"}}),
            json!({"user": user("bob")}),
        ] {
            let event = CUTOFF_EVENTS[2];
            let effects = interpret(
                Some("secevent+jwt"),
                set(json!({event: {"subject": subject}}), None),
                ISS,
                NOW,
            )
            .unwrap();
            assert_eq!(effects.cutoffs, vec![("bob".to_owned(), NOW - 10)]);
        }
    }

    #[test]
    fn a_session_subject_becomes_a_session_cutoff() {
        for subject in [
            json!({"format": "complex", "user": user("bob"), "session": {"format": "opaque", "id": "s-9"}}),
            json!({"session": {"format": "opaque", "id": "s-9"}}),
        ] {
            let effects = interpret(
                Some("secevent+jwt"),
                set(
                    json!({REVOKED: {"event_timestamp": NOW - 5}}),
                    Some(subject),
                ),
                ISS,
                NOW,
            )
            .unwrap();
            assert_eq!(effects.sessions, vec![("s-9".to_owned(), NOW - 5)]);
            assert!(effects.cutoffs.is_empty(), "the session only, not the user");
        }
    }

    #[test]
    fn a_jwt_id_subject_revokes_that_token() {
        let effects = interpret(
            Some("secevent+jwt"),
            set(
                json!({CUTOFF_EVENTS[4]: {}}),
                Some(json!({"format": "jwt_id", "iss": ISS, "jti": "tok-1"})),
            ),
            ISS,
            NOW,
        )
        .unwrap();
        assert_eq!(effects.tokens, vec!["tok-1".to_owned()]);
        assert!(effects.cutoffs.is_empty());
    }

    #[test]
    fn every_malformed_set_is_refused_whole_with_its_reason() {
        let typ = Some("secevent+jwt");
        let cases: Vec<(Option<&str>, SetClaims)> = vec![
            (Some("JWT"), set(json!({REVOKED: {}}), Some(user("a")))),
            (None, set(json!({REVOKED: {}}), Some(user("a")))),
            (
                typ,
                serde_json::from_value(json!({"iat": NOW, "events": {REVOKED: {}}})).unwrap(),
            ),
            (
                typ,
                serde_json::from_value(json!({"jti": "j", "events": {REVOKED: {}}})).unwrap(),
            ),
            (typ, set(json!({}), Some(user("a")))),
            (typ, set(json!([REVOKED]), Some(user("a")))),
            (typ, set(json!({REVOKED: "yes"}), Some(user("a")))),
            (typ, set(json!({REVOKED: {}}), None)),
            (
                typ,
                set(
                    json!({REVOKED: {"event_timestamp": "today"}}),
                    Some(user("a")),
                ),
            ),
            (
                typ,
                set(
                    json!({REVOKED: {}}),
                    Some(json!({"format": "iss_sub", "iss": "https://other", "sub": "a"})),
                ),
            ),
            (
                typ,
                set(
                    json!({REVOKED: {}}),
                    Some(json!({"format": "email", "email": "a@example.com"})),
                ),
            ),
            (
                typ,
                set(
                    json!({REVOKED: {}}),
                    Some(json!({"format": "jwt_id", "iss": "https://other", "jti": "t"})),
                ),
            ),
            (
                typ,
                set(
                    json!({REVOKED: {}}),
                    Some(json!({"format": "jwt_id", "iss": ISS})),
                ),
            ),
            (
                typ,
                set(
                    json!({REVOKED: {"subject": {"user": {"format": "jwt_id", "iss": ISS, "jti": "t"}}}}),
                    None,
                ),
            ),
            (
                typ,
                set(
                    json!({REVOKED: {}}),
                    Some(json!({"user": user("a"), "session": {"format": "email", "id": "s"}})),
                ),
            ),
            (
                typ,
                set(
                    json!({REVOKED: {}}),
                    Some(json!({"user": user("a"), "session": {"format": "opaque", "id": ""}})),
                ),
            ),
            (typ, set(json!({REVOKED: {}}), Some(json!({"id": "a"})))),
            (typ, set(json!({REVOKED: {}}), Some(json!("alice")))),
            (typ, set(json!({REVOKED: {}}), Some(user("")))),
            (
                typ,
                set(
                    json!({"https://example.com/other": {}, REVOKED: {}}),
                    Some(json!({"format": "opaque"})),
                ),
            ),
        ];
        for (i, (typ, claims)) in cases.into_iter().enumerate() {
            let error = interpret(typ, claims, ISS, NOW).unwrap_err();
            assert_eq!(error.err, "invalid_request", "case {i}");
            assert!(!error.description.is_empty(), "case {i}");
        }
    }
}
