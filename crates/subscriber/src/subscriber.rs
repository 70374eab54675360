//! [`Subscriber`]: the handle services hold, and the checks it answers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::{DecodingKey, Validation};
use revocast_core::{Digest, Filter, FilterParams, Lookup, Namespace, check_jti};
use tokio::sync::{oneshot, watch};

use crate::authority::{Authority, ConfirmQuery};
use crate::cache::{Asked, ConfirmCache, Via};
use crate::claims::{ConfirmReason, LocalCheck, RevokedBy, Source, TokenClaims, Verdict};
use crate::error::Error;
use crate::options::{Policy, SubscriberOptions};
use crate::stats::{Counters, Stats, bump};
use crate::sync;
use crate::view::{self, Views};

/// State shared by the handles and the background task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub namespace: Namespace,
    /// The replica, replaced whole after each batch of deltas; checks load it without
    /// locking.
    pub filter: ArcSwap<Filter>,
    /// Ready, within `max_staleness` of the last proven agreement, and not known to
    /// be behind: the one flag the miss path reads. Changed only under `transitions`.
    pub fresh: AtomicBool,
    pub ready: AtomicBool,
    /// Past `max_staleness` since the last proven agreement (or the sync task died).
    pub stale: AtomicBool,
    /// Known behind the publisher: a gap, a digest mismatch or a heartbeat ahead,
    /// until a heartbeat proves agreement again.
    pub behind: AtomicBool,
    /// Serialises the changes of `fresh`, `ready`, `stale` and `behind`, which come
    /// from the sync task and its supervisor.
    pub transitions: Mutex<()>,
    pub max_staleness: Duration,
    pub ready_tx: watch::Sender<bool>,
    /// The version of the filter checks see, sent each time it changes.
    pub version_tx: watch::Sender<u64>,
    /// The same version, stored after `views` were told of the new filter: whoever
    /// reads version `V` here and then checks sees a filter at `V` or later. (The
    /// filter's own version is stored first, before the thread-local views know it
    /// changed: a check in between answers from the previous filter.)
    pub version: AtomicU64,
    /// The epoch of the filter at `version`, stored after it: whoever reads epoch `E`
    /// here, then the version, reads a version of `E` (or of a later epoch).
    pub namespace_epoch: AtomicU64,
    pub publisher_version: AtomicU64,
    /// Milliseconds since `epoch` when the replica last knew itself in sync.
    pub in_sync_ms: AtomicU64,
    pub epoch: Instant,
    pub counters: Counters,
    pub cache: ConfirmCache,
    /// The threads that check this replica (see [`crate::view`]).
    pub views: Views,
}

impl Shared {
    fn transition(&self, change: impl FnOnce()) {
        let _serial = self.transitions.lock().unwrap_or_else(|e| e.into_inner());
        change();
        let fresh =
            self.ready.load(Relaxed) && !self.stale.load(Relaxed) && !self.behind.load(Relaxed);
        self.fresh.store(fresh, Relaxed);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// A heartbeat proved the replica in sync now.
    pub(crate) fn mark_in_sync(&self) {
        self.transition(|| {
            self.in_sync_ms.store(self.now_ms(), Relaxed);
            self.stale.store(false, Relaxed);
            self.behind.store(false, Relaxed);
        });
    }

    /// The replica cannot vouch for anything (its sync task ended).
    pub(crate) fn mark_stale(&self) {
        self.transition(|| self.stale.store(true, Relaxed));
    }

    /// Marks the replica stale if `max_staleness` has passed since the last proven
    /// agreement; returns whether it did.
    pub(crate) fn mark_stale_if_due(&self) -> bool {
        let mut marked = false;
        self.transition(|| {
            if self.ready.load(Relaxed)
                && !self.stale.load(Relaxed)
                && self.stale_at().is_some_and(|at| Instant::now() >= at)
            {
                self.stale.store(true, Relaxed);
                marked = true;
            }
        });
        marked
    }

    /// The replica knows it is behind the publisher (a gap, a digest mismatch, a
    /// heartbeat ahead): checks stop trusting filter misses until a heartbeat proves
    /// agreement again.
    pub(crate) fn mark_behind(&self) {
        self.transition(|| self.behind.store(true, Relaxed));
    }

    pub(crate) fn mark_ready(&self) {
        self.transition(|| self.ready.store(true, Relaxed));
        self.mark_in_sync();
        self.ready_tx.send_replace(true);
    }

    /// When the last proven agreement runs out, once ready.
    pub(crate) fn stale_at(&self) -> Option<Instant> {
        match self.in_sync_ms.load(Relaxed) {
            u64::MAX => None,
            ms => Some(self.epoch + Duration::from_millis(ms) + self.max_staleness),
        }
    }

    /// Ready, yet checks follow the policy (stale or known behind).
    pub(crate) fn is_unfit(&self) -> bool {
        self.ready.load(Relaxed) && !self.fresh.load(Relaxed)
    }
}

struct Inner {
    shared: Arc<Shared>,
    authority: Arc<dyn Authority>,
    policy: Policy,
    confirm_timeout: Duration,
    /// The default authority's count of answers that did not verify.
    invalid_answers: Option<Arc<AtomicU64>>,
    /// The publisher keys the replica trusts (shared with the sync task).
    verifier: revocast_core::Verifier,
    client: async_nats::Client,
    /// Dropped with the last handle, which stops the background task.
    _shutdown: oneshot::Sender<()>,
}

/// A live replica of a namespace's revocation filter. Cheap to clone; the background
/// task that keeps it in sync stops when the last clone is dropped.
///
/// ```no_run
/// # async fn example(subscriber: revocast_subscriber::Subscriber) -> Result<(), revocast_subscriber::Error> {
/// use revocast_subscriber::TokenClaims;
///
/// let claims = TokenClaims::new("9f1c2d", 1_767_225_600).with_sub("alice");
/// let verdict = subscriber.check(&claims).await?;
/// if verdict.is_revoked() {
///     // answer 401
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Subscriber {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = &self.inner.shared;
        f.debug_struct("Subscriber")
            .field("namespace", &shared.namespace.as_str())
            .field("version", &shared.filter.load().version())
            .field("ready", &shared.ready.load(Relaxed))
            .field("stale", &shared.is_unfit())
            .field("policy", &self.inner.policy)
            .field("authority", &self.inner.authority)
            .finish()
    }
}

impl Subscriber {
    pub(crate) fn start(
        options: SubscriberOptions,
        client: async_nats::Client,
        authority: Arc<dyn Authority>,
        invalid_answers: Option<Arc<AtomicU64>>,
        verifier: revocast_core::Verifier,
    ) -> Subscriber {
        // Placeholder until the snapshot arrives; default parameters always validate.
        let empty = Filter::new(FilterParams::default())
            .unwrap_or_else(|_| unreachable!("default filter parameters are valid"));
        let (ready_tx, _) = watch::channel(false);
        let (version_tx, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            namespace: options.namespace.clone(),
            filter: ArcSwap::from_pointee(empty),
            fresh: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            behind: AtomicBool::new(false),
            transitions: Mutex::new(()),
            max_staleness: options.max_staleness,
            ready_tx,
            version_tx,
            publisher_version: AtomicU64::new(0),
            in_sync_ms: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
            counters: Counters::default(),
            cache: ConfirmCache::new(options.cache_ttl, options.cache_capacity),
            views: Views::default(),
            version: AtomicU64::new(0),
            namespace_epoch: AtomicU64::new(0),
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        tokio::spawn(sync::supervise(
            shared.clone(),
            client.clone(),
            sync::SyncConfig::new(&options, verifier.clone()),
            shutdown_rx,
        ));
        Subscriber {
            inner: Arc::new(Inner {
                shared,
                authority,
                policy: options.policy,
                confirm_timeout: options.confirm_timeout,
                invalid_answers,
                verifier,
                client,
                _shutdown: shutdown_tx,
            }),
        }
    }

    /// Resolves once the replica has loaded the snapshot and replayed the stream.
    ///
    /// The bootstrap retries until it succeeds (a publisher that has not started yet,
    /// a snapshot that does not verify), so bound the wait with a timeout if the
    /// service must start regardless: until then checks follow the policy.
    pub async fn ready(&self) {
        let mut rx = self.inner.shared.ready_tx.subscribe();
        // The sender lives in `Shared`, which this handle keeps alive.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Whether the bootstrap is done.
    pub fn is_ready(&self) -> bool {
        self.inner.shared.ready.load(Relaxed)
    }

    /// Whether the policy applies to every check: the replica is ready but past
    /// `max_staleness` without a heartbeat proving it in sync, or it knows it is
    /// behind the publisher (a gap, a digest mismatch, a heartbeat ahead), or its
    /// sync task ended and is being restarted.
    pub fn is_stale(&self) -> bool {
        self.inner.shared.is_unfit()
    }

    /// The replica's filter version.
    pub fn version(&self) -> u64 {
        self.inner
            .shared
            .version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The epoch of the namespace the replica holds: a random id drawn when the
    /// namespace was created, within which [`Subscriber::version`] counts (a namespace
    /// deleted and created again starts over at version 0 in another epoch). Stored
    /// after the version: whoever reads epoch `E` here and then the version reads a
    /// version of `E` (or of an epoch the replica moved to since).
    pub fn epoch(&self) -> u64 {
        self.inner
            .shared
            .namespace_epoch
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Tells each version the replica's checks start to see, as it happens: for
    /// services and tests that wait for a revocation to arrive, and for measuring
    /// propagation without polling. Versions applied in one batch arrive as the last
    /// of them.
    ///
    /// ```no_run
    /// # async fn example(subscriber: revocast_subscriber::Subscriber) {
    /// let mut versions = subscriber.versions();
    /// while versions.changed().await.is_ok() {
    ///     println!("now at version {}", *versions.borrow_and_update());
    /// }
    /// # }
    /// ```
    pub fn versions(&self) -> watch::Receiver<u64> {
        self.inner.shared.version_tx.subscribe()
    }

    /// The digest of the replica's filter (what heartbeats are compared with).
    pub fn digest(&self) -> Digest {
        self.inner.shared.filter.load().digest()
    }

    /// Figures of the replica's filter: buckets, layers, bits per entry, estimated
    /// false-positive rates.
    pub fn filter_stats(&self) -> revocast_core::FilterStats {
        self.inner.shared.filter.load().stats()
    }

    /// The namespace replicated.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.shared.namespace
    }

    /// The staleness policy.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// The NATS connection the replica uses.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// A copy of the replica's counters and gauges.
    pub fn stats(&self) -> Stats {
        let shared = &self.inner.shared;
        let filter = shared.filter.load();
        let mut stats = Stats::from_counters(&shared.counters);
        stats.checks += shared.views.checks();
        let ready = shared.ready.load(Relaxed);
        let in_sync = shared.in_sync_ms.load(Relaxed);
        stats.namespace = shared.namespace.to_string();
        stats.ready = ready;
        stats.stale = shared.is_unfit();
        stats.staleness_seconds = (ready && in_sync != u64::MAX).then(|| {
            let now = shared.epoch.elapsed().as_millis() as f64;
            ((now - in_sync as f64) / 1000.0).max(0.0)
        });
        stats.confirm_invalid_answers = self
            .inner
            .invalid_answers
            .as_ref()
            .map_or(0, |n| n.load(Relaxed));
        let keys = self.inner.verifier.status();
        stats.signing_keys = keys.accepted.iter().map(ToString::to_string).collect();
        stats.key_rollovers = keys.rollovers;
        stats.version = filter.version();
        stats.publisher_version = shared.publisher_version.load(Relaxed);
        stats.live_entries = filter.live_entries();
        stats.filter_bytes = filter.bitmap_bytes();
        stats
    }

    /// Checks a token against the replica alone: no I/O, no allocation, no await.
    ///
    /// [`LocalCheck::NeedsConfirm`] means only the authority can answer (a filter hit,
    /// or a stale replica under [`Policy::FailClosed`]): call [`Subscriber::check`].
    #[inline]
    pub fn check_local(&self, claims: &TokenClaims) -> LocalCheck {
        let lookup = view::lookup(&self.inner.shared, claims);
        self.local_verdict(lookup)
    }

    /// [`Subscriber::check_local`] for several tokens at once: the answers, in order,
    /// replace the contents of `out`. Services that verify several tokens per request
    /// (a batch API, a gateway) save the per-call overhead and let the filter's memory
    /// reads overlap (see [`revocast_core::Filter::lookup_many`]).
    pub fn check_local_many(&self, claims: &[TokenClaims], out: &mut Vec<LocalCheck>) {
        let mut lookups = Vec::with_capacity(claims.len());
        view::with_filter(&self.inner.shared, claims.len() as u64, |f| {
            f.lookup_many(claims.iter().map(TokenClaims::probe), &mut lookups)
        });
        out.clear();
        out.extend(lookups.into_iter().map(|l| self.local_verdict(l)));
    }

    /// What a lookup means for the caller. A miss on a fresh replica, the answer to
    /// almost every check, is inlined; the rest is out of line.
    #[inline]
    fn local_verdict(&self, lookup: Lookup) -> LocalCheck {
        if lookup == Lookup::Clear && self.inner.shared.fresh.load(Relaxed) {
            return LocalCheck::Decided(Verdict::Accepted {
                source: Source::Local,
            });
        }
        self.local_verdict_slow(lookup)
    }

    #[inline(never)]
    fn local_verdict_slow(&self, lookup: Lookup) -> LocalCheck {
        let shared = &*self.inner.shared;
        match lookup {
            Lookup::Clear => {
                if shared.fresh.load(Relaxed) {
                    return LocalCheck::Decided(Verdict::Accepted {
                        source: Source::Local,
                    });
                }
                bump(&shared.counters.stale_checks);
                match self.inner.policy {
                    Policy::FailClosed => LocalCheck::NeedsConfirm(ConfirmReason::Stale),
                    Policy::FailOpen => {
                        bump(&shared.counters.fail_open_accepts);
                        LocalCheck::Decided(Verdict::Accepted {
                            source: Source::FailOpen,
                        })
                    }
                }
            }
            Lookup::FilterHit => {
                bump(&shared.counters.filter_hits);
                LocalCheck::NeedsConfirm(ConfirmReason::FilterHit)
            }
            Lookup::SubjectCutoff => {
                bump(&shared.counters.cutoff_rejections);
                LocalCheck::Decided(Verdict::Revoked {
                    by: RevokedBy::SubjectCutoff,
                    source: Source::Local,
                })
            }
            Lookup::GlobalCutoff => {
                bump(&shared.counters.cutoff_rejections);
                LocalCheck::Decided(Verdict::Revoked {
                    by: RevokedBy::GlobalCutoff,
                    source: Source::Local,
                })
            }
            Lookup::SessionCutoff => {
                bump(&shared.counters.cutoff_rejections);
                LocalCheck::Decided(Verdict::Revoked {
                    by: RevokedBy::SessionCutoff,
                    source: Source::Local,
                })
            }
        }
    }

    /// Checks claims that the caller already verified (signature, `exp`, `aud`).
    ///
    /// A filter miss answers at once; a hit (or a stale replica under fail-closed)
    /// asks the authority, through the cache and single-flight.
    pub async fn check(&self, claims: &TokenClaims) -> Result<Verdict, Error> {
        // One state machine, not one inside another: a check the replica decides
        // alone steps through one.
        match self.decide(claims)? {
            LocalCheck::Decided(verdict) => Ok(verdict),
            LocalCheck::NeedsConfirm(reason) => self.confirm(claims, None, reason).await,
        }
    }

    /// Verifies `token` with jsonwebtoken, then checks its claims. The token must
    /// carry `jti` and `exp`.
    pub async fn check_jwt(
        &self,
        token: &str,
        key: &DecodingKey,
        validation: &Validation,
    ) -> Result<(TokenClaims, Verdict), Error> {
        let data = jsonwebtoken::decode::<TokenClaims>(token, key, validation)?;
        let verdict = self.check_with_token(&data.claims, Some(token)).await?;
        Ok((data.claims, verdict))
    }

    /// [`Subscriber::check`], with the token for authorities that introspect it.
    pub(crate) async fn check_with_token(
        &self,
        claims: &TokenClaims,
        token: Option<&str>,
    ) -> Result<Verdict, Error> {
        match self.decide(claims)? {
            LocalCheck::Decided(verdict) => Ok(verdict),
            LocalCheck::NeedsConfirm(reason) => self.confirm(claims, token, reason).await,
        }
    }

    /// The part of a check that needs no authority.
    #[inline(always)]
    fn decide(&self, claims: &TokenClaims) -> Result<LocalCheck, Error> {
        check_jti(&claims.jti)?;
        Ok(self.check_local(claims))
    }

    async fn confirm(
        &self,
        claims: &TokenClaims,
        token: Option<&str>,
        reason: ConfirmReason,
    ) -> Result<Verdict, Error> {
        let inner = &*self.inner;
        let shared = &*inner.shared;
        let query = ConfirmQuery {
            jti: &claims.jti,
            exp: Some(claims.exp),
            sub: claims.sub.as_deref(),
            iat: claims.iat,
            sid: claims.sid.as_deref(),
            token,
        };
        // While not in sync, a cached "not revoked" may predate a missed delta.
        let fresh_only = reason == ConfirmReason::Stale || !shared.fresh.load(Relaxed);
        // A cached answer first: it needs not the replica's position, whose read from
        // the `ArcSwap` costs two atomic read-modify-writes.
        let cached = shared
            .cache
            .cached(&claims.jti, fresh_only, &shared.counters);
        let (answer, via) = match cached {
            Some(answer) => (Ok(answer), Via::Shared),
            None => {
                let asked = {
                    let filter = shared.filter.load();
                    Asked {
                        epoch: filter.epoch(),
                        version: filter.version(),
                    }
                };
                shared
                    .cache
                    .confirm(
                        query,
                        &*inner.authority,
                        inner.confirm_timeout,
                        fresh_only,
                        asked,
                        &shared.counters,
                    )
                    .await
            }
        };
        let source = match via {
            Via::Call => Source::Authority,
            Via::Shared => Source::Cache,
        };
        match answer {
            Ok(c) if c.revoked => Ok(Verdict::Revoked {
                by: RevokedBy::Jti,
                source,
            }),
            Ok(_) => Ok(Verdict::Accepted { source }),
            Err(e) => match inner.policy {
                Policy::FailClosed => {
                    bump(&shared.counters.fail_closed_rejects);
                    tracing::debug!(jti = %claims.jti, error = %e, "authority cannot answer; fail-closed");
                    Err(Error::Unavailable(e))
                }
                Policy::FailOpen => {
                    bump(&shared.counters.fail_open_accepts);
                    tracing::debug!(jti = %claims.jti, error = %e, "authority cannot answer; fail-open");
                    Ok(Verdict::Accepted {
                        source: Source::FailOpen,
                    })
                }
            },
        }
    }
}
