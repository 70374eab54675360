//! Keys fetched from an issuer: OpenID discovery, then the JWKS; refreshed in the
//! background and on an unknown `kid`.
//!
//! The current key set sits in an [`ArcSwap`]: verifications load it without a lock.
//! Fetches take a tokio mutex, so one runs at a time; only a verification whose `kid`
//! is unknown waits for one (it needs its answer), and it refetches at most once per
//! cooldown. A failed fetch keeps the last good set.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::Validation;
use revocast_nats::Backoff;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::error::FetchError;
use crate::keys::KeySet;

/// The path of the OpenID Provider Configuration document under the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Documents above this size are refused.
pub const MAX_BODY: usize = 1 << 20;

/// When keys are fetched again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh {
    /// At most one refetch for unknown `kid`s per this period.
    pub cooldown: Duration,
    /// Lower bound of the refresh period taken from `Cache-Control: max-age`.
    pub min: Duration,
    /// Upper bound of the same.
    pub max: Duration,
    /// The refresh period when the answer has no `max-age`.
    pub default: Duration,
    /// First delay before retrying a failed fetch (doubling).
    pub retry_initial: Duration,
    /// Longest delay between retries.
    pub retry_max: Duration,
}

impl Default for Refresh {
    fn default() -> Self {
        Refresh {
            cooldown: Duration::from_secs(30),
            min: Duration::from_secs(60),
            max: Duration::from_secs(24 * 3600),
            default: Duration::from_secs(300),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Where the key set comes from.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    /// `issuer` + [`DISCOVERY_PATH`], whose `jwks_uri` gives the keys.
    Discovery,
    /// The JWKS URL itself.
    Jwks(String),
}

/// What verifications read.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The last good set; `None` until a fetch succeeds.
    pub set: Option<Arc<KeySet>>,
    /// The last fetch error, cleared by a success.
    pub error: Option<String>,
    /// Bumped on every fetch attempt, so a waiter sees whether one happened.
    pub generation: u64,
}

#[derive(Debug, Default)]
struct FetchState {
    jwks_uri: Option<String>,
    last_attempt: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct RemoteKeys {
    issuer: String,
    location: Location,
    client: reqwest::Client,
    base: Validation,
    refresh: Refresh,
    loaded: ArcSwap<Loaded>,
    fetch: Mutex<FetchState>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl RemoteKeys {
    /// Starts the background refresher (a fetch at once, retried with backoff); it
    /// stops when the returned value is dropped.
    pub fn start(
        issuer: String,
        location: Location,
        client: reqwest::Client,
        base: Validation,
        refresh: Refresh,
    ) -> Arc<RemoteKeys> {
        let keys = Arc::new(RemoteKeys {
            issuer,
            location,
            client,
            base,
            refresh,
            loaded: ArcSwap::from_pointee(Loaded::default()),
            fetch: Mutex::new(FetchState::default()),
        });
        tokio::spawn(refresher(Arc::downgrade(&keys)));
        keys
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn loaded(&self) -> arc_swap::Guard<Arc<Loaded>> {
        self.loaded.load()
    }

    /// For a `kid` missing from the set of `generation`: refetches unless another
    /// fetch already ran since, or the last one is younger than the cooldown.
    pub async fn refetch_for_unknown_kid(&self, generation: u64) {
        let mut state = self.fetch.lock().await;
        if self.loaded.load().generation != generation {
            return;
        }
        if state
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.refresh.cooldown)
        {
            return;
        }
        if let Err(error) = self.fetch_locked(&mut state).await {
            tracing::warn!(issuer = %self.issuer, %error, "refetch for an unknown kid failed; keeping the last key set");
        }
    }

    /// One fetch (discovery if needed, then the JWKS), with the lock held; stores the
    /// result and gives the refresh period.
    async fn fetch_locked(&self, state: &mut FetchState) -> Result<Duration, FetchError> {
        state.last_attempt = Some(Instant::now());
        let result = self.fetch_set(state).await;
        let previous = self.loaded.load();
        let next = match &result {
            Ok((set, _)) => Loaded {
                set: Some(set.clone()),
                error: None,
                generation: previous.generation + 1,
            },
            Err(error) => Loaded {
                set: previous.set.clone(),
                error: Some(error.to_string()),
                generation: previous.generation + 1,
            },
        };
        self.loaded.store(Arc::new(next));
        result.map(|(_, ttl)| ttl)
    }

    async fn fetch_set(
        &self,
        state: &mut FetchState,
    ) -> Result<(Arc<KeySet>, Duration), FetchError> {
        let jwks_uri = match (&self.location, &state.jwks_uri) {
            (Location::Jwks(uri), _) => uri.clone(),
            (Location::Discovery, Some(uri)) => uri.clone(),
            (Location::Discovery, None) => {
                let uri = self.discover().await?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let fetched = self.get(&jwks_uri).await;
        if fetched.is_err() && matches!(self.location, Location::Discovery) {
            // The provider may have moved its keys: discover again next time.
            state.jwks_uri = None;
        }
        let (body, max_age) = fetched?;
        let set = KeySet::from_jwks(&body, &self.base).map_err(|source| FetchError::Body {
            url: jwks_uri.clone(),
            what: "JWK set",
            source,
        })?;
        if set.is_empty() {
            return Err(FetchError::NoKeys { url: jwks_uri });
        }
        let ttl = max_age
            .unwrap_or(self.refresh.default)
            .clamp(self.refresh.min, self.refresh.max);
        tracing::info!(issuer = %self.issuer, keys = set.len(), refresh_in = ?ttl, "key set fetched");
        Ok((Arc::new(set), ttl))
    }

    async fn discover(&self) -> Result<String, FetchError> {
        let url = format!("{}{DISCOVERY_PATH}", self.issuer.trim_end_matches('/'));
        let (body, _) = self.get(&url).await?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|source| FetchError::Body {
            url: url.clone(),
            what: "discovery document",
            source,
        })?;
        if doc.issuer != self.issuer {
            return Err(FetchError::IssuerMismatch {
                url,
                expected: self.issuer.clone(),
                found: doc.issuer,
            });
        }
        if !crate::is_http_url(&doc.jwks_uri) {
            return Err(FetchError::BadJwksUri {
                url,
                jwks_uri: doc.jwks_uri,
            });
        }
        Ok(doc.jwks_uri)
    }

    /// GET with a size limit; gives the body and the `Cache-Control` max-age.
    async fn get(&self, url: &str) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        let http = |source| FetchError::Http {
            url: url.to_owned(),
            source,
        };
        let mut response = self.client.get(url).send().await.map_err(http)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let max_age = response
            .headers()
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(FetchError::TooLarge {
                    url: url.to_owned(),
                    limit: MAX_BODY,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }
}

/// `max-age=N` in a `Cache-Control` value (`no-store`/`no-cache` mean 0: the lower
/// bound of the refresh period applies).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Some(Duration::ZERO);
        }
        let (name, secs) = directive.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| secs.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

/// Fetches at once, then every refresh period; failures are retried with backoff.
/// Holds only a weak reference while it sleeps, so it ends with its verifier.
async fn refresher(keys: Weak<RemoteKeys>) {
    let mut backoff = None;
    loop {
        let Some(strong) = keys.upgrade() else { return };
        let refresh = strong.refresh;
        let backoff =
            backoff.get_or_insert_with(|| Backoff::new(refresh.retry_initial, refresh.retry_max));
        let result = {
            let mut state = strong.fetch.lock().await;
            strong.fetch_locked(&mut state).await
        };
        let delay = match result {
            Ok(ttl) => {
                backoff.reset();
                ttl
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(issuer = %strong.issuer, %error, retry_in = ?delay, "key fetch failed; keeping the last key set");
                delay
            }
        };
        drop(strong);
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("MAX-AGE = 7"), Some(Duration::from_secs(7)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("max-age=-1"), None);
        assert_eq!(max_age("max-age=abc, private"), None);
        assert_eq!(max_age("private"), None);
        assert_eq!(max_age(""), None);
    }
}
