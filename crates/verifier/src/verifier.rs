//! [`Verifier`]: several issuers behind one handle; the token's `iss` picks one.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{ConfigError, VerifyError};
use crate::issuer::{IssuerOptions, IssuerStatus, IssuerVerifier};

/// Verifies JWT access tokens of the configured issuers. Cheap to clone; the key
/// refreshers stop when the last clone is dropped.
///
/// ```no_run
/// # async fn example(token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// use revocast_verifier::{IssuerOptions, Verifier};
/// let verifier = Verifier::new(vec![
///     IssuerOptions::discover("https://idp.example.com").audience("orders-api"),
/// ])?;
/// let verified = verifier.verify::<serde_json::Value>(token).await?;
/// println!("{} from issuer #{}", verified.claims["sub"], verified.issuer);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Verifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    issuers: Vec<IssuerVerifier>,
    by_iss: HashMap<String, usize>,
    anonymous: Option<usize>,
}

/// A verified token.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified<T> {
    /// Its claims.
    pub claims: T,
    /// The index, in configuration order, of the issuer whose keys verified it.
    pub issuer: usize,
}

/// Only `iss`, read before verification to pick the issuer.
#[derive(Deserialize)]
struct Unverified {
    iss: Option<serde_json::Value>,
}

impl Verifier {
    /// Builds the issuers and starts fetching remote keys in the background (must run
    /// inside a tokio runtime). A JWKS endpoint that is down is retried with backoff;
    /// until it answers, its tokens get [`VerifyError::KeysUnavailable`].
    pub fn new(issuers: Vec<IssuerOptions>) -> Result<Verifier, ConfigError> {
        if issuers.is_empty() {
            return Err(ConfigError::NoIssuer);
        }
        let client = crate::http_client()?;
        let mut by_iss = HashMap::new();
        let mut anonymous = None;
        for (i, options) in issuers.iter().enumerate() {
            match options.issuer() {
                Some(iss) => {
                    if by_iss.insert(iss.to_owned(), i).is_some() {
                        return Err(ConfigError::DuplicateIssuer(iss.to_owned()));
                    }
                }
                None if anonymous.is_some() => return Err(ConfigError::SeveralAnonymous),
                None => anonymous = Some(i),
            }
        }
        let issuers = issuers
            .into_iter()
            .map(|options| options.build(&client))
            .collect::<Result<_, _>>()?;
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuers,
                by_iss,
                anonymous,
            }),
        })
    }

    /// Verifies `token` (signature, `exp`, `nbf`, `iss`, `aud`, `typ` as configured)
    /// and deserialises its claims.
    pub async fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<Verified<T>, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(VerifyError::Malformed)?;
        let unverified: Unverified = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(VerifyError::Malformed)?;
        let index = match unverified.iss {
            Some(serde_json::Value::String(iss)) => match self.inner.by_iss.get(&iss) {
                Some(&i) => i,
                None => self
                    .inner
                    .anonymous
                    .ok_or(VerifyError::UnknownIssuer(iss))?,
            },
            Some(other) => {
                return Err(VerifyError::UnknownIssuer(other.to_string()));
            }
            None => self.inner.anonymous.ok_or(VerifyError::MissingIssuer)?,
        };
        let claims = self.inner.issuers[index].verify(token, &header).await?;
        Ok(Verified {
            claims,
            issuer: index,
        })
    }

    /// The configured issuers, in order (`None` for keys configured without one).
    pub fn issuers(&self) -> impl Iterator<Item = Option<&str>> {
        self.inner.issuers.iter().map(|i| i.issuer.as_deref())
    }

    /// Whether every issuer has keys.
    pub fn is_ready(&self) -> bool {
        self.inner.issuers.iter().all(|i| i.status().ready)
    }

    /// Each issuer's key status, for `/stats` and logs.
    pub fn status(&self) -> Vec<IssuerStatus> {
        self.inner
            .issuers
            .iter()
            .map(IssuerVerifier::status)
            .collect()
    }
}
