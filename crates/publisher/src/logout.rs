//! OpenID Connect Back-Channel Logout 1.0: what makes a logout token valid (section
//! 2.6), once its signature, `iss`, `aud` and `exp` have been verified against a
//! trusted issuer's keys, and the replay guard.
//!
//! A valid logout token becomes a subject cutoff: every token of its `sub` issued
//! before the logout token's `iat` is revoked. Its own `jti` is never revoked as an
//! access token: it names the logout token, not a session's tokens.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

/// The event a logout token must carry (section 2.4).
pub(crate) const BACKCHANNEL_LOGOUT_EVENT: &str =
    "http://schemas.openid.net/event/backchannel-logout";

/// The `typ` header a logout token may carry (section 2.4; when present it must be
/// this).
pub(crate) const LOGOUT_TYP: &str = "logout+jwt";

/// How far in the past a logout token's `iat` may be (beyond the clock leeway).
/// An IdP sends it at once; an old one is a replay or a lost request.
pub(crate) const MAX_AGE_SECS: u64 = 300;

/// Most logout `jti`s remembered against replays (oldest forgotten first, and every
/// one as soon as its token is too old to be accepted anyway).
pub(crate) const REPLAY_CAPACITY: usize = 100_000;

/// The claims of a logout token that the checks read.
#[derive(Debug, Deserialize)]
pub(crate) struct LogoutClaims {
    #[serde(default)]
    pub(crate) iss: Option<String>,
    #[serde(default)]
    pub(crate) sub: Option<String>,
    #[serde(default)]
    pub(crate) sid: Option<String>,
    #[serde(default)]
    pub(crate) iat: Option<Value>,
    #[serde(default)]
    pub(crate) jti: Option<String>,
    #[serde(default)]
    pub(crate) events: Option<Value>,
    #[serde(default)]
    pub(crate) nonce: Option<Value>,
}

/// What a valid logout token asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logout {
    /// The logout token's own `jti` (for the replay guard only).
    pub(crate) jti: String,
    /// The subject logged out.
    pub(crate) sub: Option<String>,
    /// The session logged out.
    pub(crate) sid: Option<String>,
    /// Tokens issued before this are cut off.
    pub(crate) iat: u64,
    /// The issuer.
    pub(crate) iss: String,
}

/// Why a logout token is refused (answered 400 `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LogoutError {
    #[error("typ is {0:?}; a logout token's typ is logout+jwt")]
    WrongTyp(String),
    #[error("no events claim with {BACKCHANNEL_LOGOUT_EVENT}")]
    NoEvent,
    #[error("the backchannel-logout event must be a JSON object")]
    EventNotObject,
    #[error("neither sub nor sid: a logout token names a subject or a session")]
    NoSubject,
    #[error("a logout token must not carry a nonce (it would be an ID token)")]
    Nonce,
    #[error("no jti: a logout token must carry one (replays are refused by it)")]
    NoJti,
    #[error("no iat, or iat is not unix seconds")]
    NoIat,
    #[error("iat {iat} is too old (more than {max} s before now, {now})")]
    TooOld { iat: u64, now: u64, max: u64 },
    #[error("iat {iat} is in the future (now {now})")]
    InFuture { iat: u64, now: u64 },
    #[error("no iss")]
    NoIssuer,
    #[error("sub is not a valid subject: {0}")]
    BadSubject(String),
    #[error("this logout token was already received (jti {0:?})")]
    Replayed(String),
}

/// Checks the claims of a verified logout token (OIDC Back-Channel Logout 1.0,
/// section 2.6, steps 3 to 6 and 8; the signature, `iss`, `aud` and `exp` were
/// checked by the verifier), `typ` being its header's.
pub(crate) fn validate(
    typ: Option<&str>,
    claims: LogoutClaims,
    now: u64,
    leeway: u64,
) -> Result<Logout, LogoutError> {
    if let Some(typ) = typ
        && !typ.eq_ignore_ascii_case(LOGOUT_TYP)
        && !typ.eq_ignore_ascii_case("application/logout+jwt")
    {
        return Err(LogoutError::WrongTyp(typ.to_owned()));
    }
    let event = claims
        .events
        .as_ref()
        .and_then(Value::as_object)
        .and_then(|events| events.get(BACKCHANNEL_LOGOUT_EVENT))
        .ok_or(LogoutError::NoEvent)?;
    if !event.is_object() {
        return Err(LogoutError::EventNotObject);
    }
    if claims.nonce.is_some() {
        return Err(LogoutError::Nonce);
    }
    if claims.sub.is_none() && claims.sid.is_none() {
        return Err(LogoutError::NoSubject);
    }
    if let Some(sub) = &claims.sub {
        revocast_core::check_sub(sub).map_err(|e| LogoutError::BadSubject(e.to_string()))?;
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty())
        .ok_or(LogoutError::NoJti)?;
    let iat = claims
        .iat
        .as_ref()
        .and_then(Value::as_u64)
        .ok_or(LogoutError::NoIat)?;
    if iat > now.saturating_add(leeway) {
        return Err(LogoutError::InFuture { iat, now });
    }
    if iat.saturating_add(MAX_AGE_SECS + leeway) < now {
        return Err(LogoutError::TooOld {
            iat,
            now,
            max: MAX_AGE_SECS + leeway,
        });
    }
    let iss = claims.iss.ok_or(LogoutError::NoIssuer)?;
    Ok(Logout {
        jti,
        sub: claims.sub,
        sid: claims.sid,
        // The IdP's own time: tokens carry `iat`s of the same clock, so every token
        // issued before the logout is cut off, and none after it, whichever way the
        // publisher's clock is off (`iat` is at most `leeway` ahead of it, see above).
        iat,
        iss,
    })
}

/// The logout `jti`s seen, per issuer, until their tokens are too old to be accepted:
/// a replayed logout token is refused. In memory: after a restart, a replay inside
/// the [`MAX_AGE_SECS`] window is applied again, which is harmless (the same cutoff,
/// idempotent).
#[derive(Debug, Default)]
pub(crate) struct ReplayGuard {
    seen: HashMap<(String, String), u64>,
    by_age: BTreeMap<(u64, String, String), ()>,
}

impl ReplayGuard {
    /// Records `logout`'s `jti`; an error if it was seen. Forgets what can no longer
    /// be accepted, and the oldest beyond [`REPLAY_CAPACITY`].
    pub(crate) fn admit(
        &mut self,
        logout: &Logout,
        now: u64,
        leeway: u64,
    ) -> Result<(), LogoutError> {
        let horizon = now.saturating_sub(MAX_AGE_SECS + leeway);
        while let Some((&(iat, ref iss, ref jti), ())) = self.by_age.first_key_value() {
            if iat >= horizon && self.seen.len() < REPLAY_CAPACITY {
                break;
            }
            let key = (iss.clone(), jti.clone());
            self.by_age.pop_first();
            self.seen.remove(&key);
        }
        let key = (logout.iss.clone(), logout.jti.clone());
        if self.seen.contains_key(&key) {
            return Err(LogoutError::Replayed(logout.jti.clone()));
        }
        self.seen.insert(key, logout.iat);
        self.by_age
            .insert((logout.iat, logout.iss.clone(), logout.jti.clone()), ());
        Ok(())
    }

    /// Forgets `logout` again (its cutoff could not be made durable: the IdP's retry
    /// must be accepted).
    pub(crate) fn forget(&mut self, logout: &Logout) {
        if let Some(iat) = self.seen.remove(&(logout.iss.clone(), logout.jti.clone())) {
            self.by_age
                .remove(&(iat, logout.iss.clone(), logout.jti.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn claims(value: Value) -> LogoutClaims {
        serde_json::from_value(value).unwrap()
    }

    fn good() -> Value {
        json!({
            "iss": "https://idp.example", "sub": "alice", "sid": "s-1", "iat": NOW - 2,
            "jti": "l-1", "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
        })
    }

    fn with(key: &str, value: Value) -> LogoutClaims {
        let mut v = good();
        v[key] = value;
        claims(v)
    }

    fn without(key: &str) -> LogoutClaims {
        let mut v = good();
        v.as_object_mut().unwrap().remove(key);
        claims(v)
    }

    #[test]
    fn a_valid_logout_token_cuts_off_at_its_iat() {
        let logout = validate(Some("logout+jwt"), claims(good()), NOW, 60).unwrap();
        assert_eq!(logout.sub.as_deref(), Some("alice"));
        assert_eq!(logout.sid.as_deref(), Some("s-1"));
        assert_eq!(logout.iat, NOW - 2);
        // typ is optional; an IdP clock a little ahead of the publisher's (or the
        // publisher's a little behind) cuts off at the IdP's time: a token the IdP
        // issued just before the logout is cut off too.
        let ahead = validate(None, with("iat", json!(NOW + 30)), NOW, 60).unwrap();
        assert_eq!(ahead.iat, NOW + 30);
    }

    #[test]
    fn every_malformed_logout_token_is_refused_with_its_reason() {
        type Case = (Option<&'static str>, LogoutClaims, fn(&LogoutError) -> bool);
        let cases: Vec<Case> = vec![
            (Some("JWT"), claims(good()), |e| {
                matches!(e, LogoutError::WrongTyp(_))
            }),
            (Some("at+jwt"), claims(good()), |e| {
                matches!(e, LogoutError::WrongTyp(_))
            }),
            (None, without("events"), |e| *e == LogoutError::NoEvent),
            (None, with("events", json!({"other": {}})), |e| {
                *e == LogoutError::NoEvent
            }),
            (
                None,
                with("events", json!([BACKCHANNEL_LOGOUT_EVENT])),
                |e| *e == LogoutError::NoEvent,
            ),
            (
                None,
                with("events", json!({BACKCHANNEL_LOGOUT_EVENT: "yes"})),
                |e| *e == LogoutError::EventNotObject,
            ),
            (None, with("nonce", json!("n")), |e| {
                *e == LogoutError::Nonce
            }),
            (
                None,
                claims(
                    json!({"iss": "i", "iat": NOW, "jti": "j", "events": {BACKCHANNEL_LOGOUT_EVENT: {}}}),
                ),
                |e| *e == LogoutError::NoSubject,
            ),
            (None, without("jti"), |e| *e == LogoutError::NoJti),
            (None, with("jti", json!("")), |e| *e == LogoutError::NoJti),
            (None, without("iat"), |e| *e == LogoutError::NoIat),
            (None, with("iat", json!("soon")), |e| {
                *e == LogoutError::NoIat
            }),
            (None, with("iat", json!(-5)), |e| *e == LogoutError::NoIat),
            (None, with("iat", json!(NOW - 3600)), |e| {
                matches!(e, LogoutError::TooOld { .. })
            }),
            (None, with("iat", json!(NOW + 3600)), |e| {
                matches!(e, LogoutError::InFuture { .. })
            }),
            (None, without("iss"), |e| *e == LogoutError::NoIssuer),
            (None, with("sub", json!("")), |e| {
                matches!(e, LogoutError::BadSubject(_))
            }),
        ];
        for (i, (typ, claims, expected)) in cases.into_iter().enumerate() {
            let error = validate(typ, claims, NOW, 60).unwrap_err();
            assert!(expected(&error), "case {i}: {error}");
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn replays_are_refused_until_the_token_is_too_old_anyway() {
        let mut guard = ReplayGuard::default();
        let logout = validate(None, claims(good()), NOW, 60).unwrap();
        guard.admit(&logout, NOW, 60).unwrap();
        assert_eq!(
            guard.admit(&logout, NOW + 1, 60),
            Err(LogoutError::Replayed("l-1".into()))
        );
        // The same jti from another issuer is another token.
        let other = Logout {
            iss: "https://other.example".into(),
            ..logout.clone()
        };
        guard.admit(&other, NOW, 60).unwrap();
        // A failed commit forgets it, so that the IdP's retry is accepted.
        guard.forget(&other);
        guard.admit(&other, NOW, 60).unwrap();
        // Once too old to pass `validate`, it is forgotten.
        guard.admit(&logout, NOW + MAX_AGE_SECS + 3600, 60).unwrap();
        assert!(guard.seen.len() <= 2, "{:?}", guard.seen);
    }
}
