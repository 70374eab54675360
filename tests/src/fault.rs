//! The reliability checker: keeps issuing tokens, revoking some through the publisher's
//! API, and asking several replicas about all of them, while a scenario breaks
//! something. It counts what users must never see.
//!
//! Definitions (they match RELIABILITY.md):
//! - **false negative**: a token whose revocation was acknowledged at version `V`,
//!   accepted by a replica that was not stale and already held version `V` or later
//!   when it answered. Must be 0.
//! - **in-flight accept**: the same, by a replica that had not yet received `V` (the
//!   normal propagation window, milliseconds). Reported, not an error.
//! - **lost revocation**: acknowledged, but after recovery the authority does not know
//!   it, or a converged replica accepts it. Must be 0.
//! - **wrongful rejection**: a token never revoked, rejected as revoked. Must be 0
//!   (false positives are confirmed with the authority, never rejected on the filter).
//! - **policy rejection**: the replica could not decide and its fail-closed policy said
//!   no (authority unreachable while stale or on a filter hit). Reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use revocast_core::{Digest, Namespace, PublicKey, Verifier};
use revocast_publisher::Revocation;
use revocast_publisher::client::ApiClient;
use revocast_subscriber::{Subscriber, TokenClaims};
use tokio::sync::Mutex;

use revocast_testkit::now_secs;

/// Counters of one scenario run.
#[derive(Debug, Default)]
pub struct Counts {
    pub revocations_acked: AtomicU64,
    pub revocations_failed: AtomicU64,
    pub checks: AtomicU64,
    pub false_negatives: AtomicU64,
    pub in_flight_accepts: AtomicU64,
    pub wrongful_rejections: AtomicU64,
    pub policy_rejections: AtomicU64,
}

/// A token the checker issued.
#[derive(Debug, Clone)]
struct Token {
    jti: String,
    exp: u64,
    /// Version whose delta holds the acknowledged revocation.
    revoked_at_version: Option<u64>,
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

    /// Whether the authority answers "revoked" for `jti` (`None`: no answer).
    pub async fn is_revoked(&self, jti: &str) -> Option<bool> {
        self.api.lookup(jti).await.ok().map(|a| a.revoked)
    }
}

/// The checker.
#[derive(Debug)]
pub struct Checker {
    api: PublisherApi,
    replicas: Vec<Subscriber>,
    tokens: Mutex<Vec<Token>>,
    pub counts: Counts,
    next: AtomicU64,
    stop: AtomicBool,
    prefix: String,
}

/// What a scenario reports (one row of RELIABILITY.md).
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: String,
    pub duration: Duration,
    pub revocations_acked: u64,
    pub revocations_failed: u64,
    pub checks: u64,
    pub false_negatives: u64,
    pub in_flight_accepts: u64,
    pub lost: u64,
    pub wrongful_rejections: u64,
    pub policy_rejections: u64,
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
            self.convergence
                .map_or("did not converge".to_owned(), |d| format!(
                    "{:.0} ms",
                    d.as_secs_f64() * 1000.0
                )),
        )
    }

    /// Prints the row and asserts every count that must be 0 is 0.
    pub fn assert_invariants(&self) {
        println!("RELIABILITY {}", self.row());
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

impl Checker {
    /// A checker revoking through `api` and asking `replicas`.
    pub fn new(api: PublisherApi, replicas: Vec<Subscriber>, prefix: &str) -> Arc<Checker> {
        Arc::new(Checker {
            api,
            replicas,
            tokens: Mutex::new(Vec::new()),
            counts: Counts::default(),
            next: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            prefix: prefix.to_owned(),
        })
    }

    /// The replicas.
    pub fn replicas(&self) -> &[Subscriber] {
        &self.replicas
    }

    /// Issues tokens and revokes every other one, `concurrency` calls in flight, until
    /// `target` revocations were acknowledged or `stop` is called. Failed calls (the
    /// publisher is down, say) are counted and the token stays "never revoked" only if
    /// the authority confirms it did not store it.
    pub async fn revoke_load(self: &Arc<Checker>, target: u64, concurrency: usize) {
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let this = Arc::clone(self);
            workers.push(tokio::spawn(async move {
                while !this.stop.load(Ordering::SeqCst)
                    && this.counts.revocations_acked.load(Ordering::SeqCst) < target
                {
                    this.issue_and_maybe_revoke().await;
                }
            }));
        }
        for worker in workers {
            let _ = worker.await;
        }
    }

    async fn issue_and_maybe_revoke(&self) {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let jti = format!("{}-{n}", self.prefix);
        let exp = now_secs() + 1800;
        if n % 2 == 1 {
            self.tokens.lock().await.push(Token {
                jti,
                exp,
                revoked_at_version: None,
            });
            return;
        }
        match self.api.revoke(&jti, exp).await {
            Some(version) => {
                self.counts.revocations_acked.fetch_add(1, Ordering::SeqCst);
                self.tokens.lock().await.push(Token {
                    jti,
                    exp,
                    revoked_at_version: Some(version),
                });
            }
            None => {
                // Not acknowledged: it may or may not be stored. Leave it out of the
                // "never revoked" set so an actual store is no wrongful rejection.
                self.counts
                    .revocations_failed
                    .fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
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
            for token in &tokens {
                if self.stop.load(Ordering::SeqCst) {
                    break;
                }
                self.check_one(replica, token).await;
            }
            round += 1;
            tokio::task::yield_now().await;
            if tokens.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    async fn check_one(&self, replica: &Subscriber, token: &Token) {
        let version_before = replica.version();
        let stale_before = replica.is_stale();
        let claims = TokenClaims::new(token.jti.clone(), token.exp);
        let verdict = replica.check(&claims).await;
        self.counts.checks.fetch_add(1, Ordering::Relaxed);
        match (verdict, token.revoked_at_version) {
            (Ok(v), Some(version)) if v.is_accepted() => {
                if !stale_before && !replica.is_stale() && version_before >= version {
                    self.counts.false_negatives.fetch_add(1, Ordering::SeqCst);
                    eprintln!(
                        "FALSE NEGATIVE: {} (revoked at v{version}) accepted by a replica at \
                         v{version_before}: {v:?}",
                        token.jti
                    );
                } else {
                    self.counts
                        .in_flight_accepts
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            (Ok(v), None) if v.is_revoked() => {
                self.counts
                    .wrongful_rejections
                    .fetch_add(1, Ordering::SeqCst);
                eprintln!("WRONGFUL REJECTION: {} ({v:?})", token.jti);
            }
            (Ok(_), _) => {}
            (Err(e), _) if e.is_unavailable() => {
                self.counts
                    .policy_rejections
                    .fetch_add(1, Ordering::Relaxed);
            }
            (Err(e), _) => panic!("unexpected check error for {}: {e}", token.jti),
        }
    }

    /// Stops the load loops.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// After recovery: every acknowledged revocation is known to the authority and
    /// rejected by every replica. Returns the number lost.
    pub async fn sweep_lost(&self) -> u64 {
        let tokens = self.tokens.lock().await.clone();
        let mut lost = 0;
        for token in tokens.iter().filter(|t| t.revoked_at_version.is_some()) {
            let known = self.api.is_revoked(&token.jti).await;
            let mut missing = known != Some(true);
            for replica in &self.replicas {
                let claims = TokenClaims::new(token.jti.clone(), token.exp);
                if !matches!(replica.check(&claims).await, Ok(v) if v.is_revoked()) {
                    missing = true;
                }
            }
            if missing {
                eprintln!("LOST: {} (authority says {known:?})", token.jti);
                lost += 1;
            }
        }
        lost
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
            checks: c.checks.load(Ordering::SeqCst),
            false_negatives: c.false_negatives.load(Ordering::SeqCst),
            in_flight_accepts: c.in_flight_accepts.load(Ordering::SeqCst),
            lost,
            wrongful_rejections: c.wrongful_rejections.load(Ordering::SeqCst),
            policy_rejections: c.policy_rejections.load(Ordering::SeqCst),
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
