//! Verification keys: static keys ([`StaticKey`]) and key sets parsed from a JWKS,
//! each key with the algorithms it may verify.
//!
//! The algorithm comes from the key, never from the token alone: a JWK's `alg` when it
//! has one, else the only algorithms of its type and curve (`ES256` for P-256, `ES384`
//! for P-384, `EdDSA` for Ed25519, the RSA family for RSA). Symmetric keys (`kty:
//! oct`) are never taken from a URL, and `none` is not an algorithm here at all.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::ConfigError;

const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// A key given in the configuration: a PEM public key or an HS256 secret.
#[derive(Clone)]
pub struct StaticKey {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl StaticKey {
    /// An HS256 shared secret.
    pub fn hs256(secret: &[u8]) -> StaticKey {
        StaticKey {
            kid: None,
            key: DecodingKey::from_secret(secret),
            algorithms: vec![Algorithm::HS256],
        }
    }

    /// A PEM public key: RSA (RS* and PS*), EC (ES256, ES384) or Ed25519 (EdDSA).
    pub fn from_pem(pem: &[u8]) -> Result<StaticKey, ConfigError> {
        let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (key, RSA.to_vec())
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            (key, vec![Algorithm::ES256, Algorithm::ES384])
        } else {
            let key = DecodingKey::from_ed_pem(pem).map_err(ConfigError::BadPem)?;
            (key, vec![Algorithm::EdDSA])
        };
        Ok(StaticKey {
            kid: None,
            key,
            algorithms,
        })
    }

    /// Only tokens whose header names this `kid` use the key.
    pub fn with_kid(mut self, kid: impl Into<String>) -> StaticKey {
        self.kid = Some(kid.into());
        self
    }
}

/// One key ready to verify: its validation carries its algorithms and the issuer's
/// `iss`, `aud` and leeway rules.
pub(crate) struct VerificationKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub validation: Validation,
}

/// The keys of one issuer. Replaced as a whole on each fetch.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<VerificationKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, &k.validation.algorithms)))
            .finish()
    }
}

/// A JWKS whose keys are parsed one by one, so that one key of an unknown type does
/// not hide the others.
#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    pub fn from_static(keys: &[StaticKey], base: &Validation) -> KeySet {
        KeySet {
            keys: keys
                .iter()
                .map(|k| with_algorithms(k.kid.clone(), k.key.clone(), &k.algorithms, base))
                .collect(),
        }
    }

    /// Parses a JWKS document; keys that cannot verify signatures are left out (and
    /// logged).
    pub fn from_jwks(body: &[u8], base: &Validation) -> Result<KeySet, serde_json::Error> {
        let raw: RawSet = serde_json::from_slice(body)?;
        let mut keys = Vec::with_capacity(raw.keys.len());
        for value in raw.keys {
            let jwk: Jwk = match serde_json::from_value(value) {
                Ok(jwk) => jwk,
                Err(error) => {
                    tracing::debug!(%error, "JWKS: skipping a key that does not parse");
                    continue;
                }
            };
            let Some(algorithms) = jwk_algorithms(&jwk) else {
                tracing::debug!(kid = ?jwk.common.key_id, "JWKS: skipping a key that is not a signing key");
                continue;
            };
            match DecodingKey::from_jwk(&jwk) {
                Ok(key) => keys.push(with_algorithms(
                    jwk.common.key_id.clone(),
                    key,
                    &algorithms,
                    base,
                )),
                Err(error) => {
                    tracing::debug!(kid = ?jwk.common.key_id, %error, "JWKS: skipping an unusable key")
                }
            }
        }
        Ok(KeySet { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys a token with this `kid` may be verified with: the keys with that `kid`;
    /// without a `kid`, every key (each is tried).
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a VerificationKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
    }

    /// Whether a key names exactly this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

fn with_algorithms(
    kid: Option<String>,
    key: DecodingKey,
    algorithms: &[Algorithm],
    base: &Validation,
) -> VerificationKey {
    let mut validation = base.clone();
    validation.algorithms = algorithms.to_vec();
    VerificationKey {
        kid,
        key,
        validation,
    }
}

/// The algorithms a JWK may verify, or `None` if it is not a signing key we accept.
fn jwk_algorithms(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA.to_vec(),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        // Shared secrets are never fetched; unknown key types cannot verify.
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(family),
        Some(named) => {
            let alg = Algorithm::try_from(named).ok()?;
            family.contains(&alg).then(|| vec![alg])
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(json: &str) -> KeySet {
        KeySet::from_jwks(json.as_bytes(), &Validation::default()).unwrap()
    }

    const EC: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"ec1"}"#;

    #[test]
    fn algorithms_come_from_the_key() {
        let set = parse(&format!(r#"{{"keys":[{EC}]}}"#));
        assert_eq!(set.len(), 1);
        let key = set.candidates(Some("ec1")).next().unwrap();
        assert_eq!(key.validation.algorithms, [Algorithm::ES256]);
        assert!(set.candidates(Some("other")).next().is_none());
    }

    #[test]
    fn unusable_keys_are_left_out_and_the_rest_kept() {
        let json = format!(
            r#"{{"keys":[
                {{"kty":"oct","k":"c2VjcmV0","kid":"shared"}},
                {{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"broken"}},
                {{"kty":"XYZ","kid":"unknown"}},
                {{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"enc","use":"enc"}},
                {{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"rsa-alg","alg":"RS256"}},
                {EC}
            ]}}"#
        );
        let set = parse(&json);
        assert!(set.has_kid("ec1"));
        for kid in ["shared", "unknown", "enc", "rsa-alg"] {
            assert!(!set.has_kid(kid), "{kid} must be left out");
        }
    }

    #[test]
    fn documents_that_are_not_key_sets_are_errors() {
        for body in ["", "[]", r#"{"keys":5}"#, r#"{"other":[]}"#, "not json"] {
            assert!(
                KeySet::from_jwks(body.as_bytes(), &Validation::default()).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn bad_pem_is_a_typed_error() {
        assert!(matches!(
            StaticKey::from_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
            Err(ConfigError::BadPem(_))
        ));
        assert!(StaticKey::from_pem(b"garbage").is_err());
    }
}
