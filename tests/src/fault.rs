//! The reliability checker: keeps issuing tokens, revoking some through the publisher's
//! API, cutting some subjects and sessions off, and asking several replicas about all
//! of them, while a scenario breaks something. It counts what users must never see.
//!
//! Every token has a `sub` and an `iat`, and a third of them a `sid`. Every other token
//! is revoked by `jti`; one operation in [`CUTOFF_EVERY`] is a cutoff instead: of one
//! of a few subjects, or of one of a few sessions, at the current second (tokens issued
//! in an earlier second are covered).
//!
//! Definitions (they match RELIABILITY.md). An acknowledgement is "at version `V`" of
//! the namespace's epoch `E`: the version its answer named.
//! - **false negative**: a token whose revocation was acknowledged at version `V`, or
//!   that a cutoff acknowledged at version `V` covers, accepted by a replica that was
//!   not stale and already held version `V` (of the same epoch) or later when it
//!   answered. Must be 0.
//! - **in-flight accept**: the same, by a replica that had not yet received `V` (the
//!   normal propagation window, milliseconds; or a replica still on the namespace's
//!   previous epoch after a reset). Reported, not an error.
//! - **lost revocation**: acknowledged, but after recovery the authority does not know
//!   it, or a converged replica accepts it. Must be 0.
//! - **wrongful rejection**: a token never revoked and covered by no cutoff, rejected
//!   as revoked. Must be 0 (false positives are confirmed with the authority, never
//!   rejected on the filter). A call that failed may have been stored: its token, and
//!   every token its cutoff would cover, counts as neither.
//! - **policy rejection**: the replica could not decide and its fail-closed policy said
//!   no (authority unreachable while stale or on a filter hit). Reported.
//! - **forgotten by reset**: acknowledged before the namespace was deleted and created
//!   again ([`Checker::begin_reset`]). A new namespace holds none of them, by design:
//!   from then on they are neither false negatives nor lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use revocast_core::http::{CutoffRequest, TokenQuery};
use revocast_core::{Digest, Namespace, PublicKey, Verifier};
use revocast_publisher::Revocation;
use revocast_publisher::client::ApiClient;
use revocast_subscriber::{Subscriber, TokenClaims};
use tokio::sync::Mutex;

use revocast_testkit::now_secs;

/// One operation in this many is a cutoff.
pub const CUTOFF_EVERY: u64 = 50;
/// Subjects of the tokens; cutoffs name only the first [`CUT_SUBJECTS`].
const SUBJECTS: u64 = 16;
const CUT_SUBJECTS: u64 = 4;
/// Sessions of the tokens that have one; cutoffs name only the first [`CUT_SESSIONS`].
const SESSIONS: u64 = 64;
const CUT_SESSIONS: u64 = 16;
/// Acknowledged revocations checked at once after recovery.
const SWEEP_CONCURRENCY: usize = 16;

/// Counters of one scenario run.
#[derive(Debug, Default)]
pub struct Counts {
    pub revocations_acked: AtomicU64,
    pub revocations_failed: AtomicU64,
    pub cutoffs_acked: AtomicU64,
    pub cutoffs_failed: AtomicU64,
    pub checks: AtomicU64,
    pub false_negatives: AtomicU64,
    pub in_flight_accepts: AtomicU64,
    pub wrongful_rejections: AtomicU64,
    pub policy_rejections: AtomicU64,
    pub forgotten_by_reset: AtomicU64,
}

/// Where an acknowledged change is: the life of the namespace it was made in (the
/// checker's count of resets, and the epoch of that life when known) and the version
/// its answer named.
#[derive(Debug, Clone, Copy)]
struct Ack {
    life: u64,
    /// `None` in the first life, whose epoch the checker was not told: every replica
    /// is in it.
    epoch: Option<u64>,
    version: u64,
}

/// A token the checker issued.
#[derive(Debug, Clone)]
struct Token {
    jti: String,
    sub: String,
    sid: Option<String>,
    iat: u64,
    exp: u64,
    /// Where the acknowledged revocation of its `jti` is.
    revoked: Option<Ack>,
}

impl Token {
    fn claims(&self) -> TokenClaims {
        let claims = TokenClaims::new(self.jti.clone(), self.exp)
            .with_sub(self.sub.clone())
            .with_iat(self.iat);
        match &self.sid {
            Some(sid) => claims.with_sid(sid.clone()),
            None => claims,
        }
    }

    fn query(&self) -> TokenQuery {
        TokenQuery {
            exp: Some(self.exp),
            sub: Some(self.sub.clone()),
            iat: Some(self.iat),
            sid: self.sid.clone(),
        }
    }
}

/// A cutoff the checker asked for: every token of its subject or session issued
/// before `not_before`.
#[derive(Debug, Clone, Copy)]
struct Cutoff {
    not_before: u64,
    /// `None` until acknowledged (and for good when the call failed: it may have been
    /// stored all the same).
    ack: Option<Ack>,
}

/// The cutoffs asked for, by subject (`sub:<sub>`) and by session (`sid:<sid>`).
type Cutoffs = HashMap<String, Vec<Cutoff>>;

fn subject_key(sub: &str) -> String {
    format!("sub:{sub}")
}

fn session_key(sid: &str) -> String {
    format!("sid:{sid}")
}

/// What a check of one token must find, from what was acknowledged and asked.
#[derive(Debug, Default)]
struct Expected {
    /// The revocation and the cutoffs covering the token, acknowledged in the current
    /// life of the namespace.
    acks: Vec<Ack>,
    /// Whether any revocation or cutoff covering it was asked for, in any life
    /// (acknowledged or not): a rejection of it is no wrongful rejection.
    asked: bool,
}

impl Expected {
    fn of(token: &Token, cutoffs: &Cutoffs, life: u64) -> Expected {
        let mut expected = Expected {
            acks: token
                .revoked
                .into_iter()
                .filter(|a| a.life == life)
                .collect(),
            asked: token.revoked.is_some(),
        };
        let keys = [
            Some(subject_key(&token.sub)),
            token.sid.as_deref().map(session_key),
        ];
        for key in keys.iter().flatten() {
            for cutoff in cutoffs.get(key).into_iter().flatten() {
                if token.iat < cutoff.not_before {
                    expected.asked = true;
                    if let Some(ack) = cutoff.ack.filter(|a| a.life == life) {
                        expected.acks.push(ack);
                    }
                }
            }
        }
        expected
    }
}

/// The publisher's HTTP API, as the checker uses it: every failure is "no answer".
#[derive(Debug, Clone)]
pub struct PublisherApi {
    api: ApiClient,
}

impl PublisherApi {
    /// A client of the API at `url`, giving up on a call after 5 s.
    pub fn new(url: impl Into<String>) -> PublisherApi {
        let api = ApiClient::builder(url)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        PublisherApi { api }
    }

    /// Revokes one token; `Some(version)` once durable, `None` on any failure.
    pub async fn revoke(&self, jti: &str, exp: u64) -> Option<u64> {
        let done = self.api.revoke(&Revocation::new(jti, exp)).await.ok()?;
        Some(done.version)
    }

    /// Sets a cutoff; `Some(version)` once durable, `None` on any failure.
    pub async fn cutoff(&self, request: &CutoffRequest) -> Option<u64> {
        let done = self.api.cutoff_of(request).await.ok()?;
        Some(done.version)
    }

    /// Whether the authority answers "revoked" for `jti` (`None`: no answer).
    pub async fn is_revoked(&self, jti: &str) -> Option<bool> {
        self.api.lookup(jti).await.ok().map(|a| a.revoked)
    }

    /// Whether the authority answers "revoked" for a token it is told the `exp`,
    /// `sub`, `iat` and `sid` of, cutoffs applied (`None`: no answer).
    async fn is_token_revoked(&self, token: &Token) -> Option<bool> {
        let answer = self.api.lookup_token(&token.jti, &token.query()).await;
        answer.ok().map(|a| a.revoked)
    }
}

/// The checker.
#[derive(Debug)]
pub struct Checker {
    api: PublisherApi,
    replicas: Vec<Subscriber>,
    tokens: Mutex<Vec<Token>>,
    cutoffs: RwLock<Cutoffs>,
    pub counts: Counts,
    next: AtomicU64,
    stop: AtomicBool,
    prefix: String,
    /// Held (shared) by every revoking call from before it is sent until its answer
    /// is recorded; a namespace reset holds it alone.
    calls: tokio::sync::RwLock<()>,
    /// Resets so far: the life of the namespace that acknowledgements belong to.
    life: AtomicU64,
    /// The epoch of the current life, once a reset told it (0: not known).
    epoch: AtomicU64,
}

/// What a scenario reports (one row of RELIABILITY.md).
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    pub duration: Duration,
    pub revocations_acked: u64,
    pub revocations_failed: u64,
    pub cutoffs_acked: u64,
    pub cutoffs_failed: u64,
    pub checks: u64,
    pub false_negatives: u64,
    pub in_flight_accepts: u64,
    pub lost: u64,
    pub wrongful_rejections: u64,
    pub policy_rejections: u64,
    pub forgotten_by_reset: u64,
    pub convergence: Option<Duration>,
}

impl Report {
    /// The row, in the table format of RELIABILITY.md.
    pub fn row(&self) -> String {
        format!(
            "| {} | {:.1} s | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.scenario,
            self.duration.as_secs_f64(),
            self.revocations_acked,
            self.checks,
            self.false_negatives,
            self.lost,
            self.wrongful_rejections,
            self.policy_rejections,
            self.in_flight_accepts,
            self.convergence_text(),
        )
    }

    /// How long convergence took, as the tables show it.
    pub fn convergence_text(&self) -> String {
        self.convergence.map_or("did not converge".to_owned(), |d| {
            format!("{:.0} ms", d.as_secs_f64() * 1000.0)
        })
    }

    /// Prints the row and asserts every count that must be 0 is 0.
    pub fn assert_invariants(&self) {
        println!("RELIABILITY {}", self.row());
        println!(
            "RELIABILITY cutoffs acknowledged {} (failed {}), revocations failed {}, \
             acknowledgements forgotten by a namespace reset {}",
            self.cutoffs_acked,
            self.cutoffs_failed,
            self.revocations_failed,
            self.forgotten_by_reset
        );
        assert_eq!(self.false_negatives, 0, "false negatives: {self:?}");
        assert_eq!(self.lost, 0, "lost revocations: {self:?}");
        assert_eq!(self.wrongful_rejections, 0, "wrongful rejections: {self:?}");
        assert!(
            self.convergence.is_some(),
            "replicas did not converge: {self:?}"
        );
        assert!(
            self.revocations_acked > 0,
            "the scenario revoked nothing: {self:?}"
        );
        assert!(self.checks > 0, "the scenario checked nothing: {self:?}");
    }
}

/// A namespace reset under way ([`Checker::begin_reset`]): no revoking call is in
/// flight while it lives.
#[derive(Debug)]
pub struct Reset<'a> {
    checker: &'a Checker,
    _calls: tokio::sync::RwLockWriteGuard<'a, ()>,
}

impl Reset<'_> {
    /// The namespace was created again with `epoch`: calls resume, and their
    /// acknowledgements belong to it.
    pub fn done(self, epoch: u64) {
        self.checker.epoch.store(epoch, Ordering::SeqCst);
    }
}

impl Checker {
    /// A checker revoking through `api` and asking `replicas`.
    pub fn new(api: PublisherApi, replicas: Vec<Subscriber>, prefix: &str) -> Arc<Checker> {
        Arc::new(Checker {
            api,
            replicas,
            tokens: Mutex::new(Vec::new()),
            cutoffs: RwLock::new(HashMap::new()),
            counts: Counts::default(),
            next: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            prefix: prefix.to_owned(),
            calls: tokio::sync::RwLock::new(()),
            life: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
        })
    }

    /// The replicas.
    pub fn replicas(&self) -> &[Subscriber] {
        &self.replicas
    }

    /// Waits until no revoking call is in flight and holds further ones, for a
    /// namespace reset (the publisher stopped, the stream and the snapshot bucket
    /// deleted, a publisher started on a new namespace). From here on, every
    /// acknowledgement made so far is forgotten (counted in `forgotten_by_reset`).
    /// Call [`Reset::done`] with the new namespace's epoch.
    pub async fn begin_reset(&self) -> Reset<'_> {
        let calls = self.calls.write().await;
        let ended = self.life.fetch_add(1, Ordering::SeqCst);
        let revocations = {
            let tokens = self.tokens.lock().await;
            tokens
                .iter()
                .filter(|t| t.revoked.is_some_and(|a| a.life == ended))
                .count() as u64
        };
        let cutoffs = {
            let cutoffs = self.cutoffs.read().unwrap_or_else(|e| e.into_inner());
            cutoffs
                .values()
                .flatten()
                .filter(|c| c.ack.is_some_and(|a| a.life == ended))
                .count() as u64
        };
        self.counts
            .forgotten_by_reset
            .fetch_add(revocations + cutoffs, Ordering::SeqCst);
        Reset {
            checker: self,
            _calls: calls,
        }
    }

    /// Where an acknowledgement at `version` made now is.
    fn ack(&self, version: u64) -> Ack {
        let life = self.life.load(Ordering::SeqCst);
        Ack {
            life,
            epoch: (life > 0).then(|| self.epoch.load(Ordering::SeqCst)),
            version,
        }
    }

    /// Issues tokens, revokes every other one and sets a cutoff every
    /// [`CUTOFF_EVERY`] operations, `concurrency` calls in flight, until `target`
    /// revocations were acknowledged or `stop` is called. A failed call (the
    /// publisher is down, say) is counted; its token is left out, and the tokens its
    /// cutoff covers are no wrongful rejections, since it may have been stored.
    pub async fn revoke_load(self: &Arc<Checker>, target: u64, concurrency: usize) {
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let this = Arc::clone(self);
            workers.push(tokio::spawn(async move {
                while !this.stop.load(Ordering::SeqCst)
                    && this.counts.revocations_acked.load(Ordering::SeqCst) < target
                {
                    if !this.next_operation().await {
                        // The call failed: give the publisher a moment.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
        for worker in workers {
            let _ = worker.await;
        }
    }

    /// One operation of the load; false when its call failed.
    async fn next_operation(&self) -> bool {
        let _call = self.calls.read().await;
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        if n % CUTOFF_EVERY == CUTOFF_EVERY / 2 {
            return self.cut_off(n / CUTOFF_EVERY).await;
        }
        let mut token = Token {
            jti: format!("{}-{n}", self.prefix),
            sub: format!("{}-u{}", self.prefix, n % SUBJECTS),
            sid: n
                .is_multiple_of(3)
                .then(|| format!("{}-s{}", self.prefix, (n / 3) % SESSIONS)),
            iat: now_secs(),
            exp: now_secs() + 1800,
            revoked: None,
        };
        if n % 2 == 1 {
            self.tokens.lock().await.push(token);
            return true;
        }
        match self.api.revoke(&token.jti, token.exp).await {
            Some(version) => {
                self.counts.revocations_acked.fetch_add(1, Ordering::SeqCst);
                token.revoked = Some(self.ack(version));
                self.tokens.lock().await.push(token);
                true
            }
            None => {
                // Not acknowledged: it may or may not be stored. Leave it out of the
                // "never revoked" set so an actual store is no wrongful rejection.
                self.counts
                    .revocations_failed
                    .fetch_add(1, Ordering::SeqCst);
                false
            }
        }
    }

    /// The `k`-th cutoff: of a subject when `k` is even, of a session when odd.
    async fn cut_off(&self, k: u64) -> bool {
        let not_before = now_secs();
        let (key, request) = if k.is_multiple_of(2) {
            let sub = format!("{}-u{}", self.prefix, (k / 2) % CUT_SUBJECTS);
            (
                subject_key(&sub),
                CutoffRequest {
                    sub: Some(sub),
                    sid: None,
                    not_before,
                },
            )
        } else {
            let sid = format!("{}-s{}", self.prefix, (k / 2) % CUT_SESSIONS);
            (
                session_key(&sid),
                CutoffRequest {
                    sub: None,
                    sid: Some(sid),
                    not_before,
                },
            )
        };
        // Noted before it is sent: a replica can apply it before the answer comes.
        let index = {
            let mut cutoffs = self.cutoffs.write().unwrap_or_else(|e| e.into_inner());
            let list = cutoffs.entry(key.clone()).or_default();
            list.push(Cutoff {
                not_before,
                ack: None,
            });
            list.len() - 1
        };
        let Some(version) = self.api.cutoff(&request).await else {
            self.counts.cutoffs_failed.fetch_add(1, Ordering::SeqCst);
            return false;
        };
        let ack = self.ack(version);
        let mut cutoffs = self.cutoffs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(cutoff) = cutoffs.get_mut(&key).and_then(|l| l.get_mut(index)) {
            cutoff.ack = Some(ack);
        }
        self.counts.cutoffs_acked.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Checks a sample of every token on every replica, over and over, until `stop`:
    /// one loop per replica, so that a replica waiting on its authority (stale,
    /// fail-closed) does not slow the checks of the others.
    pub async fn check_load(self: &Arc<Checker>) {
        let loops: Vec<_> = (0..self.replicas.len())
            .map(|i| {
                let this = Arc::clone(self);
                tokio::spawn(async move { this.check_replica(i).await })
            })
            .collect();
        for task in loops {
            let _ = task.await;
        }
    }

    async fn check_replica(&self, index: usize) {
        let replica = &self.replicas[index];
        let mut round = 0usize;
        while !self.stop.load(Ordering::SeqCst) {
            let tokens: Vec<Token> = {
                let tokens = self.tokens.lock().await;
                // The newest 200 (where propagation races are) and a stride of the rest.
                let len = tokens.len();
                let recent = tokens[len.saturating_sub(200)..].iter().cloned();
                let stride = tokens.iter().skip(round % 7).step_by(7).take(200).cloned();
                recent.chain(stride).collect()
            };
            let life = self.life.load(Ordering::SeqCst);
            let expected: Vec<Expected> = {
                let cutoffs = self.cutoffs.read().unwrap_or_else(|e| e.into_inner());
                tokens
                    .iter()
                    .map(|t| Expected::of(t, &cutoffs, life))
                    .collect()
            };
            for (token, expected) in tokens.iter().zip(&expected) {
                if self.stop.load(Ordering::SeqCst) {
                    break;
                }
                self.check_one(replica, token, expected, life).await;
            }
            round += 1;
            tokio::task::yield_now().await;
            if tokens.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Whether an acknowledgement of the namespace's current `life` is one a replica
    /// at `epoch` and `version` holds.
    fn holds(ack: &Ack, life: u64, epoch: u64, version: u64) -> bool {
        ack.life == life && ack.epoch.is_none_or(|e| e == epoch) && version >= ack.version
    }

    async fn check_one(&self, replica: &Subscriber, token: &Token, expected: &Expected, life: u64) {
        // The epoch is stored after the version: read around it, and trust the version
        // as one of that epoch only when both readings agree.
        let epoch_before = replica.epoch();
        let version_before = replica.version();
        let epoch_agrees = replica.epoch() == epoch_before;
        let stale_before = replica.is_stale();
        let verdict = replica.check(&token.claims()).await;
        self.counts.checks.fetch_add(1, Ordering::Relaxed);
        match verdict {
            Ok(v) if v.is_accepted() && !expected.acks.is_empty() => {
                let held = expected
                    .acks
                    .iter()
                    .find(|a| Self::holds(a, life, epoch_before, version_before));
                let fit = !stale_before && !replica.is_stale();
                // A reset since the sample was taken forgot every acknowledgement.
                let same_life = self.life.load(Ordering::SeqCst) == life;
                match held {
                    Some(ack) if fit && epoch_agrees && same_life => {
                        self.counts.false_negatives.fetch_add(1, Ordering::SeqCst);
                        eprintln!(
                            "FALSE NEGATIVE: {} (acknowledged at v{} of life {}) accepted by a \
                             replica at v{version_before} of epoch {epoch_before:016x}: {v:?}",
                            token.jti, ack.version, ack.life
                        );
                    }
                    _ => {
                        self.counts
                            .in_flight_accepts
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(v) if v.is_revoked() && !expected.asked && !self.asked_now(token) => {
                self.counts
                    .wrongful_rejections
                    .fetch_add(1, Ordering::SeqCst);
                eprintln!("WRONGFUL REJECTION: {} ({v:?})", token.jti);
            }
            Ok(_) => {}
            Err(e) if e.is_unavailable() => {
                self.counts
                    .policy_rejections
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("unexpected check error for {}: {e}", token.jti),
        }
    }

    /// Whether a cutoff covering `token` was asked for by now (after the sample of the
    /// round was taken: a replica may have applied it already).
    fn asked_now(&self, token: &Token) -> bool {
        let cutoffs = self.cutoffs.read().unwrap_or_else(|e| e.into_inner());
        Expected::of(token, &cutoffs, self.life.load(Ordering::SeqCst)).asked
    }

    /// Stops the load loops.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// After recovery: every revocation and cutoff acknowledged in the namespace's
    /// current life holds at the authority and on every replica. Returns the number of
    /// tokens for which one does not.
    pub async fn sweep_lost(&self) -> u64 {
        let tokens = self.tokens.lock().await.clone();
        let life = self.life.load(Ordering::SeqCst);
        // A token is covered by an acknowledged cutoff of this life when it was issued
        // before the latest one of its subject or session.
        let latest: HashMap<String, u64> = {
            let cutoffs = self.cutoffs.read().unwrap_or_else(|e| e.into_inner());
            cutoffs
                .iter()
                .filter_map(|(key, list)| {
                    list.iter()
                        .filter(|c| c.ack.is_some_and(|a| a.life == life))
                        .map(|c| c.not_before)
                        .max()
                        .map(|nb| (key.clone(), nb))
                })
                .collect()
        };
        let covered = |t: &Token| {
            let keys = [Some(subject_key(&t.sub)), t.sid.as_deref().map(session_key)];
            keys.iter()
                .flatten()
                .any(|k| latest.get(k).is_some_and(|&nb| t.iat < nb))
        };
        let due: Vec<(Token, bool)> = tokens
            .into_iter()
            .filter_map(|t| {
                let revoked = t.revoked.is_some_and(|a| a.life == life);
                let cut = covered(&t);
                (revoked || cut).then_some((t, cut))
            })
            .collect();
        futures::stream::iter(due)
            .map(|(token, cut)| async move { u64::from(!self.holds_after_recovery(&token, cut).await) })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .fold(0, |lost, one| async move { lost + one })
            .await
    }

    /// Whether the authority and every replica reject `token` (`cut`: a cutoff covers
    /// it, so the authority is told its `sub`, `iat` and `sid`).
    async fn holds_after_recovery(&self, token: &Token, cut: bool) -> bool {
        let known = if cut {
            self.api.is_token_revoked(token).await
        } else {
            self.api.is_revoked(&token.jti).await
        };
        let mut holds = known == Some(true);
        for replica in &self.replicas {
            if !matches!(replica.check(&token.claims()).await, Ok(v) if v.is_revoked()) {
                holds = false;
            }
        }
        if !holds {
            eprintln!(
                "LOST: {} (cut off: {cut}; authority says {known:?})",
                token.jti
            );
        }
        holds
    }

    /// Builds the report.
    pub async fn report(
        &self,
        scenario: &str,
        duration: Duration,
        convergence: Option<Duration>,
    ) -> Report {
        let lost = self.sweep_lost().await;
        let c = &self.counts;
        Report {
            scenario: scenario.to_owned(),
            duration,
            revocations_acked: c.revocations_acked.load(Ordering::SeqCst),
            revocations_failed: c.revocations_failed.load(Ordering::SeqCst),
            cutoffs_acked: c.cutoffs_acked.load(Ordering::SeqCst),
            cutoffs_failed: c.cutoffs_failed.load(Ordering::SeqCst),
            checks: c.checks.load(Ordering::SeqCst),
            false_negatives: c.false_negatives.load(Ordering::SeqCst),
            in_flight_accepts: c.in_flight_accepts.load(Ordering::SeqCst),
            lost,
            wrongful_rejections: c.wrongful_rejections.load(Ordering::SeqCst),
            policy_rejections: c.policy_rejections.load(Ordering::SeqCst),
            forgotten_by_reset: c.forgotten_by_reset.load(Ordering::SeqCst),
            convergence,
        }
    }
}

/// Waits until every replica holds the version and digest of the publisher's latest
/// signed heartbeat, and that version is `expected_version` or later; returns how long
/// it took, or `None` after `timeout`.
pub async fn converge(
    nats_url: &str,
    namespace: &Namespace,
    key: PublicKey,
    replicas: &[Subscriber],
    expected_version: u64,
    timeout: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let client = async_nats::connect(nats_url).await.ok()?;
    let mut heartbeats = client.subscribe(namespace.heartbeat_subject()).await.ok()?;
    let verifier = Verifier::new(key, namespace.clone());
    let mut latest: Option<(u64, Digest)> = None;
    loop {
        if let Some((version, digest)) = latest
            && version >= expected_version
            && replicas
                .iter()
                .all(|r| r.version() == version && r.digest() == digest && !r.is_stale())
        {
            return Some(start.elapsed());
        }
        let remaining = timeout.checked_sub(start.elapsed())?;
        let wait = remaining.min(Duration::from_millis(50));
        if let Ok(Some(message)) = tokio::time::timeout(wait, heartbeats.next()).await
            && let Ok(h) = verifier.decode_heartbeat(&message.payload)
        {
            latest = Some((h.version, h.digest));
        }
    }
}
