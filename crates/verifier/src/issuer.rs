//! [`IssuerOptions`]: one issuer, where its keys come from, and what its tokens must
//! carry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Header, Validation};
use serde::de::DeserializeOwned;

use crate::error::{ConfigError, VerifyError};
use crate::keys::{KeySet, StaticKey};
use crate::remote::{Location, Refresh, RemoteKeys};

/// Where an issuer's keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// OpenID discovery under the issuer URL, then its `jwks_uri`.
    Discovery,
    /// A JWKS URL.
    JwksUri(String),
    /// Keys given in the configuration.
    Static(Vec<StaticKey>),
}

/// One issuer whose tokens a [`crate::Verifier`] accepts.
///
/// ```
/// use revocast_verifier::IssuerOptions;
/// let options = IssuerOptions::discover("https://idp.example.com/realms/main")
///     .audience("orders-api")
///     .require_at_jwt(true);
/// assert_eq!(options.issuer(), Some("https://idp.example.com/realms/main"));
/// ```
#[derive(Clone, Debug)]
pub struct IssuerOptions {
    issuer: Option<String>,
    source: KeySource,
    audiences: Vec<String>,
    require_at_jwt: bool,
    require_exp: bool,
    leeway: u64,
    refresh: Refresh,
}

impl IssuerOptions {
    /// Keys by OpenID discovery: `<issuer>/.well-known/openid-configuration` must name
    /// exactly this `issuer`, and its `jwks_uri` gives the keys.
    pub fn discover(issuer: impl Into<String>) -> IssuerOptions {
        IssuerOptions::new(Some(issuer.into()), KeySource::Discovery)
    }

    /// Keys from a JWKS URL; tokens must carry `iss` = `issuer`.
    pub fn jwks_uri(issuer: impl Into<String>, jwks_uri: impl Into<String>) -> IssuerOptions {
        IssuerOptions::new(Some(issuer.into()), KeySource::JwksUri(jwks_uri.into()))
    }

    /// Keys given here. With `issuer: None`, tokens need no `iss` (and one that has
    /// an `iss` matching no other configured issuer is still verified with these keys).
    pub fn static_keys(issuer: Option<String>, keys: Vec<StaticKey>) -> IssuerOptions {
        IssuerOptions::new(issuer, KeySource::Static(keys))
    }

    fn new(issuer: Option<String>, source: KeySource) -> IssuerOptions {
        IssuerOptions {
            issuer,
            source,
            audiences: Vec::new(),
            require_at_jwt: false,
            require_exp: true,
            leeway: 30,
            refresh: Refresh::default(),
        }
    }

    /// Accepts tokens whose `aud` holds this value (call again for more). Without any,
    /// `aud` is not checked.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Requires `typ: at+jwt` (RFC 9068 access tokens), which keeps ID tokens of the
    /// same issuer out.
    pub fn require_at_jwt(mut self, required: bool) -> Self {
        self.require_at_jwt = required;
        self
    }

    /// Whether tokens must carry `exp` (default true). Security event tokens (RFC
    /// 8417) usually have none; an `exp` that is there is checked either way.
    pub fn require_exp(mut self, required: bool) -> Self {
        self.require_exp = required;
        self
    }

    /// Clock skew allowed on `exp` and `nbf`, seconds (default 30).
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// At most one refetch per `cooldown` for unknown `kid`s (default 30 s).
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.refresh.cooldown = cooldown;
        self
    }

    /// Bounds of the refresh period taken from `Cache-Control: max-age` (default
    /// 60 s ..= 24 h), and the period without one (default 5 min, clamped too).
    pub fn refresh_period(mut self, min: Duration, max: Duration, default: Duration) -> Self {
        self.refresh.min = min;
        self.refresh.max = max.max(min);
        self.refresh.default = default;
        self
    }

    /// Backoff of failed fetches (default 500 ms doubling to 30 s).
    pub fn retry(mut self, initial: Duration, max: Duration) -> Self {
        self.refresh.retry_initial = initial;
        self.refresh.retry_max = max;
        self
    }

    /// The issuer, if any.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    pub(crate) fn build(self, client: &reqwest::Client) -> Result<IssuerVerifier, ConfigError> {
        if let Some(issuer) = &self.issuer
            && matches!(self.source, KeySource::Discovery)
            && !crate::is_http_url(issuer)
        {
            return Err(ConfigError::BadUrl {
                what: "issuer",
                url: issuer.clone(),
            });
        }
        let mut base = Validation {
            leeway: self.leeway,
            ..Validation::default()
        };
        let mut required = if self.require_exp {
            vec!["exp"]
        } else {
            Vec::new()
        };
        match &self.issuer {
            Some(issuer) => {
                base.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => base.iss = None,
        }
        if self.audiences.is_empty() {
            base.validate_aud = false;
        } else {
            base.set_audience(&self.audiences);
            required.push("aud");
        }
        base.set_required_spec_claims(&required);
        let name = self.issuer.clone().unwrap_or_default();
        let keys = match self.source {
            KeySource::Static(keys) => {
                if keys.is_empty() {
                    return Err(ConfigError::NoStaticKey(name));
                }
                Keys::Static(Arc::new(KeySet::from_static(&keys, &base)))
            }
            KeySource::Discovery => Keys::Remote(RemoteKeys::start(
                name.clone(),
                Location::Discovery,
                client.clone(),
                base,
                self.refresh,
            )),
            KeySource::JwksUri(uri) => {
                if !crate::is_http_url(&uri) {
                    return Err(ConfigError::BadUrl {
                        what: "jwks_uri",
                        url: uri,
                    });
                }
                Keys::Remote(RemoteKeys::start(
                    name.clone(),
                    Location::Jwks(uri),
                    client.clone(),
                    base,
                    self.refresh,
                ))
            }
        };
        Ok(IssuerVerifier {
            issuer: self.issuer,
            require_at_jwt: self.require_at_jwt,
            keys,
            cache: Mutex::new(HashMap::new()),
        })
    }
}

#[derive(Debug)]
enum Keys {
    Static(Arc<KeySet>),
    Remote(Arc<RemoteKeys>),
}

/// One configured issuer, built.
#[derive(Debug)]
pub(crate) struct IssuerVerifier {
    pub issuer: Option<String>,
    require_at_jwt: bool,
    keys: Keys,
    cache: Mutex<HashMap<Box<str>, Cached>>,
}

/// Tokens verified before: a signature check costs hundreds of microseconds (ES256),
/// and a token is checked on every request it carries. An entry holds only while the
/// key set is the one that verified it (any fetch changes the generation) and until
/// the token's `exp`; tokens without `exp` are not kept.
#[derive(Debug)]
struct Cached {
    claims: serde_json::Value,
    generation: u64,
    exp: u64,
}

/// Entries before the cache is emptied (about 1 KiB each).
const CACHE_CAPACITY: usize = 10_000;

/// What [`crate::Verifier::status`] reports of one issuer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IssuerStatus {
    /// The issuer (empty for keys configured without one).
    pub issuer: String,
    /// Whether a key set is loaded.
    pub ready: bool,
    /// Keys in the current set.
    pub keys: usize,
    /// The last fetch error, if the last fetch failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl IssuerVerifier {
    fn name(&self) -> String {
        self.issuer.clone().unwrap_or_default()
    }

    pub fn status(&self) -> IssuerStatus {
        match &self.keys {
            Keys::Static(set) => IssuerStatus {
                issuer: self.name(),
                ready: true,
                keys: set.len(),
                last_error: None,
            },
            Keys::Remote(remote) => {
                let loaded = remote.loaded();
                IssuerStatus {
                    issuer: remote.issuer().to_owned(),
                    ready: loaded.set.is_some(),
                    keys: loaded.set.as_ref().map_or(0, |s| s.len()),
                    last_error: loaded.error.clone(),
                }
            }
        }
    }

    pub async fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        header: &Header,
    ) -> Result<T, VerifyError> {
        if self.require_at_jwt {
            let typ = header.typ.as_deref();
            let ok = typ.is_some_and(|t| {
                t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
            });
            if !ok {
                return Err(VerifyError::WrongType(header.typ.clone()));
            }
        }
        let kid = header.kid.as_deref();
        match &self.keys {
            Keys::Static(set) => self.verify_cached(set, 0, token, header),
            Keys::Remote(remote) => {
                let loaded = remote.loaded();
                let known = loaded
                    .set
                    .as_ref()
                    .is_some_and(|set| kid.is_none_or(|kid| set.has_kid(kid)));
                let loaded = if known {
                    loaded
                } else {
                    let generation = loaded.generation;
                    drop(loaded);
                    remote.refetch_for_unknown_kid(generation).await;
                    remote.loaded()
                };
                match &loaded.set {
                    Some(set) => self.verify_cached(set, loaded.generation, token, header),
                    None => Err(VerifyError::KeysUnavailable {
                        issuer: self.name(),
                        cause: loaded
                            .error
                            .clone()
                            .unwrap_or_else(|| "the first fetch has not finished".to_owned()),
                    }),
                }
            }
        }
    }

    /// [`IssuerVerifier::verify_with`] through the cache of verified tokens.
    fn verify_cached<T: DeserializeOwned>(
        &self,
        set: &KeySet,
        generation: u64,
        token: &str,
        header: &Header,
    ) -> Result<T, VerifyError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let hit = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(token)
                .filter(|c| c.generation == generation && now < c.exp)
                .map(|c| c.claims.clone())
        };
        let claims = match hit {
            Some(claims) => claims,
            None => {
                let claims: serde_json::Value = self.verify_with(set, token, header)?;
                if let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_u64) {
                    let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                    if cache.len() >= CACHE_CAPACITY {
                        cache.clear();
                    }
                    cache.insert(
                        token.into(),
                        Cached {
                            claims: claims.clone(),
                            generation,
                            exp,
                        },
                    );
                }
                claims
            }
        };
        serde_json::from_value(claims).map_err(|e| VerifyError::Jwt(e.into()))
    }

    fn verify_with<T: DeserializeOwned>(
        &self,
        set: &KeySet,
        token: &str,
        header: &Header,
    ) -> Result<T, VerifyError> {
        let mut last = None;
        for key in set.candidates(header.kid.as_deref()) {
            if !key.validation.algorithms.contains(&header.alg) {
                last.get_or_insert(VerifyError::AlgorithmNotAllowed {
                    issuer: self.name(),
                    alg: header.alg,
                });
                continue;
            }
            match jsonwebtoken::decode::<T>(token, &key.key, &key.validation) {
                Ok(data) => return Ok(data.claims),
                // Without a kid several keys are tried: another may be the signer.
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                    last = Some(VerifyError::Jwt(e));
                }
                Err(e) => return Err(VerifyError::Jwt(e)),
            }
        }
        Err(last.unwrap_or_else(|| VerifyError::UnknownKey {
            issuer: self.name(),
            kid: header.kid.clone(),
        }))
    }
}
