//! What a check takes ([`TokenClaims`]) and what it answers ([`Verdict`]).

use serde::{Deserialize, Serialize};

/// The claims of an access token that revocation looks at, plus every other claim.
///
/// [`crate::Subscriber::check_jwt`] deserialises tokens into this type, and the tower
/// layer puts it into the request's extensions, so handlers read `sub` or custom
/// claims from it.
///
/// ```
/// use revocast_subscriber::TokenClaims;
/// let claims = TokenClaims::new("token-1", 1_767_225_600).with_sub("alice").with_iat(1_767_222_000);
/// assert_eq!(claims.sub.as_deref(), Some("alice"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The token's unique id (`jti`).
    pub jti: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Subject (`sub`), for subject cutoffs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Issued at (`iat`), for cutoffs; without it `exp - max_token_lifetime` stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Session id (`sid`, OpenID Connect), for session cutoffs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Every other claim, as JSON.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl TokenClaims {
    /// Claims with a `jti` and an `exp` only.
    pub fn new(jti: impl Into<String>, exp: u64) -> TokenClaims {
        TokenClaims {
            jti: jti.into(),
            exp,
            sub: None,
            iat: None,
            sid: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Sets `sub`.
    pub fn with_sub(mut self, sub: impl Into<String>) -> TokenClaims {
        self.sub = Some(sub.into());
        self
    }

    /// Sets `iat`.
    pub fn with_iat(mut self, iat: u64) -> TokenClaims {
        self.iat = Some(iat);
        self
    }

    /// Sets `sid`.
    pub fn with_sid(mut self, sid: impl Into<String>) -> TokenClaims {
        self.sid = Some(sid.into());
        self
    }

    #[inline(always)]
    pub(crate) fn probe(&self) -> revocast_core::Probe<'_> {
        revocast_core::Probe {
            jti: &self.jti,
            exp: Some(self.exp),
            sub: self.sub.as_deref(),
            iat: self.iat,
            sid: self.sid.as_deref(),
        }
    }
}

/// Why a token is revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokedBy {
    /// Its `jti` was revoked (confirmed by the authority).
    Jti,
    /// Its subject was cut off after it was issued.
    SubjectCutoff,
    /// Its session was logged out after it was issued.
    SessionCutoff,
    /// It was issued before the global cutoff.
    GlobalCutoff,
}

/// Where a verdict came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The replica alone: a filter miss or a cutoff. No I/O.
    Local,
    /// The authority, asked for this check (or by a concurrent check of the same `jti`).
    Authority,
    /// A cached authority answer.
    Cache,
    /// Nobody could answer and the policy is fail-open: accepted without proof.
    FailOpen,
}

/// The answer of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The token is not revoked (or the fail-open policy accepted it).
    Accepted {
        /// Where the answer came from.
        source: Source,
    },
    /// The token is revoked.
    Revoked {
        /// Why.
        by: RevokedBy,
        /// Where the answer came from.
        source: Source,
    },
}

impl Verdict {
    /// The token may be used.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted { .. })
    }

    /// The token is revoked.
    pub fn is_revoked(&self) -> bool {
        matches!(self, Verdict::Revoked { .. })
    }

    /// Where the answer came from.
    pub fn source(&self) -> Source {
        match self {
            Verdict::Accepted { source } | Verdict::Revoked { source, .. } => *source,
        }
    }

    /// Whether the check involved the authority (asked now, or answered from its cache).
    pub fn authority_asked(&self) -> bool {
        matches!(self.source(), Source::Authority | Source::Cache)
    }
}

/// Why a check cannot be answered locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmReason {
    /// The Bloom filter holds the `jti`: revoked or a false positive.
    FilterHit,
    /// The replica is not ready or is stale, and the policy is fail-closed.
    Stale,
}

/// The answer of [`crate::Subscriber::check_local`]: decided, or the authority must be
/// asked (call [`crate::Subscriber::check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocalCheck {
    /// Decided without I/O.
    Decided(Verdict),
    /// Only the authority can answer.
    NeedsConfirm(ConfirmReason),
}
