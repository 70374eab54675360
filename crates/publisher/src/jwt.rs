//! Reading `jti`, `exp` and `sub` out of a JWT for `POST /oauth/revoke`.
//!
//! With a verification key the token's signature must verify (any `exp`: revoking an
//! expired token is a documented no-op). Without one the claims are read unverified,
//! which is only sound behind the admin token.

use jsonwebtoken::{AlgorithmFamily, DecodingKey, Validation};
use serde_json::Value;

use crate::error::Error;

/// A key that `/oauth/revoke` verifies tokens with.
#[derive(Clone)]
pub(crate) struct JwtKey {
    key: DecodingKey,
    family: AlgorithmFamily,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("family", &self.family)
            .finish()
    }
}

impl JwtKey {
    /// Parses `--jwt-verify-key`: PEM text (RSA, EC or Ed25519 public key), a path to
    /// a PEM file, or else an HMAC secret (HS256/384/512).
    pub(crate) fn parse(value: &str) -> Result<JwtKey, Error> {
        let looks_like_path = value.starts_with('/') || value.starts_with("./");
        let text = if value.trim_start().starts_with("-----BEGIN") {
            value.to_owned()
        } else if std::path::Path::new(value).is_file() {
            std::fs::read_to_string(value).map_err(|e| Error::JwtKey {
                reason: format!("cannot read {value}"),
                source: Some(e),
            })?
        } else if looks_like_path {
            return Err(jwt_key(format!("{value}: no such file")));
        } else {
            if value.is_empty() {
                return Err(jwt_key("empty secret"));
            }
            return Ok(JwtKey {
                key: DecodingKey::from_secret(value.as_bytes()),
                family: AlgorithmFamily::Hmac,
            });
        };
        if !text.trim_start().starts_with("-----BEGIN") {
            // A file that is not PEM holds a secret.
            let secret = text.trim();
            if secret.is_empty() {
                return Err(jwt_key(format!("{value}: empty secret")));
            }
            return Ok(JwtKey {
                key: DecodingKey::from_secret(secret.as_bytes()),
                family: AlgorithmFamily::Hmac,
            });
        }
        let pem = text.as_bytes();
        let attempts = [
            (DecodingKey::from_rsa_pem(pem), AlgorithmFamily::Rsa),
            (DecodingKey::from_ec_pem(pem), AlgorithmFamily::Ec),
            (DecodingKey::from_ed_pem(pem), AlgorithmFamily::Ed),
        ];
        for (key, family) in attempts {
            if let Ok(key) = key {
                return Ok(JwtKey { key, family });
            }
        }
        Err(jwt_key("PEM is not an RSA, EC or Ed25519 public key"))
    }
}

fn jwt_key(reason: impl Into<String>) -> Error {
    Error::JwtKey {
        reason: reason.into(),
        source: None,
    }
}

/// The claims a revocation or an introspection needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenClaims {
    pub(crate) jti: Option<String>,
    pub(crate) exp: Option<u64>,
    pub(crate) sub: Option<String>,
    pub(crate) iat: Option<u64>,
    /// The session id (OpenID Connect `sid`).
    pub(crate) sid: Option<String>,
    pub(crate) nbf: Option<u64>,
    pub(crate) iss: Option<String>,
    /// `client_id` (RFC 9068), else `azp` (OpenID Connect).
    pub(crate) client_id: Option<String>,
    /// `scope` (RFC 9068, space-separated), else `scp` (a list, joined).
    pub(crate) scope: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// Not a JWT, or its claims are not a JSON object.
    #[error("not a JWT: {0}")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    /// `exp`, `iat` or `nbf` is there but is not a whole, non-negative number of seconds.
    #[error("not a JWT: {0} is not a unix time")]
    BadTime(&'static str),
    /// The signature does not verify, or the algorithm does not fit the key.
    #[error("token does not verify with the configured key: {0}")]
    Unverified(#[source] jsonwebtoken::errors::Error),
}

/// Reads the claims of `token`, verifying it when `key` is given.
pub(crate) fn claims(key: Option<&JwtKey>, token: &str) -> Result<TokenClaims, TokenError> {
    let map: serde_json::Map<String, Value> = match key {
        Some(key) => {
            let mut validation = Validation::new_for_family(key.family);
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.validate_aud = false;
            validation.required_spec_claims.clear();
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &validation)
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidToken
                    | jsonwebtoken::errors::ErrorKind::Base64(_)
                    | jsonwebtoken::errors::ErrorKind::Json(_)
                    | jsonwebtoken::errors::ErrorKind::Utf8(_) => TokenError::Malformed(e),
                    _ => TokenError::Unverified(e),
                })?
                .claims
        }
        None => {
            jsonwebtoken::dangerous::insecure_decode::<serde_json::Map<String, Value>>(token)
                .map_err(TokenError::Malformed)?
                .claims
        }
    };
    let time = |name: &'static str| -> Result<Option<u64>, TokenError> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 1e19)
                        .map(|f| f as u64)
                })
                .map(Some)
                .ok_or(TokenError::BadTime(name)),
        }
    };
    let string = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
    let scope = string("scope").or_else(|| {
        let list = map.get("scp")?.as_array()?;
        let words: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
        Some(words.join(" "))
    });
    Ok(TokenClaims {
        jti: string("jti"),
        exp: time("exp")?,
        sub: string("sub"),
        iat: time("iat")?,
        sid: string("sid"),
        nbf: time("nbf")?,
        iss: string("iss"),
        client_id: string("client_id").or_else(|| string("azp")),
        scope,
    })
}
