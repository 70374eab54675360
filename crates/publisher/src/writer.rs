//! The single writer: group commit of revocations into signed deltas.
//!
//! API handlers send commands over a channel. The writer takes the first, gathers
//! whatever else is queued (and, with a `batch.max_wait` window, whatever arrives
//! within it), up to the batch limits; revocations that arrive while a commit awaits
//! its ack form the next batch. It stages one delta, signs it, and publishes it with
//! `Nats-Expected-Last-Sequence: V` and `Nats-Msg-Id: <ns>:<V+1>`. Only after JetStream acknowledged sequence `V+1` does it
//! apply the delta to the ledger and answer every caller of the batch.
//!
//! When a publish fails or its ack is lost, the writer does not guess: it reads the
//! stream back until it knows whether `V+1` was stored (applying it if so) before it
//! commits anything else. A caller hears "success" only for what is in the stream.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use revocast_core::{Delta, FilterError, MAX_REASON_LEN, Message, check_jti, check_sub};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::Error;
use crate::nats::{self, Storage};
use crate::state::Shared;
use crate::stats;

/// One revocation as the API received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`, unix seconds.
    pub exp: u64,
    /// The token's `sub`.
    pub sub: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

impl Revocation {
    /// Checks the limits every component shares.
    pub fn validate(&self) -> Result<(), FilterError> {
        check_jti(&self.jti)?;
        if let Some(sub) = &self.sub {
            check_sub(sub)?;
        }
        if let Some(reason) = &self.reason
            && reason.len() > MAX_REASON_LEN
        {
            return Err(FilterError::ReasonTooLong(reason.len()));
        }
        Ok(())
    }

    fn cost(&self) -> usize {
        self.jti.len()
            + self.sub.as_ref().map_or(0, String::len)
            + self.reason.as_ref().map_or(0, String::len)
            + 24
    }
}

/// What a committed call did. `version` is a filter version at which everything the
/// call asked for is durable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Committed {
    /// Filter version (= stream sequence) holding the call's changes.
    pub version: u64,
    /// Entries this call added.
    pub revoked: u64,
    /// `jti`s that were already revoked (success, no new entry).
    pub duplicates: u64,
    /// Tokens already expired, beyond leeway: nothing to revoke (no-op).
    pub expired: u64,
    /// True when the call changed nothing (everything was a duplicate or expired).
    pub noop: bool,
}

/// Why a call was not committed. Retrying the call is always safe.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// NATS did not store the delta (unreachable, refused, or another delta won).
    #[error("not stored: {0}")]
    NotStored(String),
    /// The command was malformed (the API validates first, so this is a bug).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The command alone would make a delta larger than NATS accepts.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The writer has stopped.
    #[error("the publisher is shutting down")]
    Stopped,
}

type Reply = oneshot::Sender<Result<Committed, CommitError>>;

/// A request to the writer.
#[derive(Debug)]
pub(crate) enum Command {
    Revoke {
        items: Vec<Revocation>,
        reply: Reply,
    },
    Cutoff {
        sub: Option<String>,
        not_before: u64,
        reply: Reply,
    },
}

impl Command {
    /// (adds, rough encoded bytes) this command puts in a delta.
    fn cost(&self) -> (usize, usize) {
        match self {
            Command::Revoke { items, .. } => (
                items.len(),
                items.iter().map(Revocation::cost).sum::<usize>() + 64,
            ),
            Command::Cutoff { sub, .. } => (1, sub.as_ref().map_or(0, String::len) + 24),
        }
    }

    fn validate(&self) -> Result<(), CommitError> {
        let invalid = |e: FilterError| CommitError::Invalid(e.to_string());
        match self {
            Command::Revoke { items, .. } => items
                .iter()
                .try_for_each(Revocation::validate)
                .map_err(invalid),
            Command::Cutoff { sub, .. } => {
                sub.as_deref().map_or(Ok(()), check_sub).map_err(invalid)
            }
        }
    }

    fn answer(self, result: Result<Committed, CommitError>) {
        let reply = match self {
            Command::Revoke { reply, .. } | Command::Cutoff { reply, .. } => reply,
        };
        // The caller may have given up (timeout); nothing to do then.
        let _ = reply.send(result);
    }
}

/// With no gather window, how often the writer yields for more commands.
const GATHER_YIELDS: u32 = 2;

enum Next {
    Command(Command),
    Expire,
    Stop,
}

/// The writer task's state.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    storage: Storage,
    rx: mpsc::Receiver<Command>,
    stop: watch::Receiver<bool>,
    snapshot_due: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// A batch's plan: the delta to publish and each command's counts.
struct Plan {
    delta: Option<Delta>,
    counts: Vec<Committed>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        storage: Storage,
        rx: mpsc::Receiver<Command>,
        stop: watch::Receiver<bool>,
        snapshot_due: Arc<tokio::sync::Notify>,
    ) -> Writer {
        Writer {
            shared,
            storage,
            rx,
            stop,
            snapshot_due,
        }
    }

    /// Runs until told to stop (then commits what is queued) or until the state in
    /// NATS contradicts the ledger (then returns the error: the publisher stops).
    pub(crate) async fn run(mut self) -> Result<(), Error> {
        let every = self.shared.config.expiry_interval;
        let mut next_expiry = tokio::time::Instant::now() + every;
        let mut held: Option<Command> = None;
        loop {
            // Checked on every turn, so that steady traffic cannot starve it.
            if tokio::time::Instant::now() >= next_expiry {
                self.expire_if_due().await?;
                next_expiry = tokio::time::Instant::now() + every;
            }
            let first = match held.take() {
                Some(c) => c,
                None => {
                    let mut stop = self.stop.clone();
                    let next = tokio::select! {
                        biased;
                        _ = stop.wait_for(|stop| *stop) => Next::Stop,
                        c = self.rx.recv() => c.map_or(Next::Stop, Next::Command),
                        _ = tokio::time::sleep_until(next_expiry) => Next::Expire,
                    };
                    match next {
                        Next::Command(c) => c,
                        Next::Stop => return self.drain().await,
                        Next::Expire => continue,
                    }
                }
            };
            let (batch, next) = self.gather(first).await;
            held = next;
            self.commit(batch, None).await?;
        }
    }

    /// Commits everything still queued, without waiting for more.
    async fn drain(mut self) -> Result<(), Error> {
        self.rx.close();
        let mut held = None;
        loop {
            let first = match held.take() {
                Some(c) => c,
                None => match self.rx.try_recv() {
                    Ok(c) => c,
                    Err(_) => return Ok(()),
                },
            };
            let (batch, next) = self.gather_now(first);
            held = next;
            self.commit(batch, None).await?;
        }
    }

    /// Rough bound of one delta's size: the configured one, and well under what the
    /// NATS server accepts (its `max_payload`).
    fn byte_budget(&self) -> usize {
        let configured = self.shared.config.batch.max_bytes;
        match self.storage.js.client().server_info().max_payload {
            0 => configured,
            server => configured.min(server / 10 * 6),
        }
    }

    fn fits(&self, adds: usize, bytes: usize, next: &Command) -> bool {
        let (a, b) = next.cost();
        adds + a <= self.shared.config.batch.max_adds && bytes + b <= self.byte_budget()
    }

    /// Gathers commands for up to `max_wait` after the first, within the limits.
    /// Returns the batch and a command that did not fit, if any.
    async fn gather(&mut self, first: Command) -> (Vec<Command>, Option<Command>) {
        let max_wait = self.shared.config.batch.max_wait;
        let deadline = tokio::time::Instant::now() + max_wait;
        let (mut adds, mut bytes) = first.cost();
        let mut batch = vec![first];
        let mut yields = 0;
        loop {
            let next = match self.rx.try_recv() {
                Ok(c) => c,
                Err(mpsc::error::TryRecvError::Empty) if max_wait.is_zero() => {
                    // No window: let callers that are about to send get in, then go.
                    // Batches still form while the previous commit awaits its ack.
                    if yields == GATHER_YIELDS {
                        break;
                    }
                    yields += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                        Ok(Some(c)) => c,
                        _ => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            if !self.fits(adds, bytes, &next) {
                return (batch, Some(next));
            }
            let (a, b) = next.cost();
            adds += a;
            bytes += b;
            batch.push(next);
        }
        (batch, None)
    }

    /// Like `gather` but takes only what is queued already.
    fn gather_now(&mut self, first: Command) -> (Vec<Command>, Option<Command>) {
        let (mut adds, mut bytes) = first.cost();
        let mut batch = vec![first];
        while let Ok(next) = self.rx.try_recv() {
            if !self.fits(adds, bytes, &next) {
                return (batch, Some(next));
            }
            let (a, b) = next.cost();
            adds += a;
            bytes += b;
            batch.push(next);
        }
        (batch, None)
    }

    async fn expire_if_due(&mut self) -> Result<(), Error> {
        let now = crate::clock::now_secs();
        let due = self.shared.ledger().filter.has_expired(now);
        if due {
            tracing::info!(now, "expiring buckets and cutoffs");
            self.commit(Vec::new(), Some(now)).await?;
        }
        Ok(())
    }

    /// Stages a delta for the batch. Commands that do not validate are answered and
    /// dropped here.
    fn plan(&self, batch: &mut Vec<Command>, expire: Option<u64>) -> Result<Plan, FilterError> {
        let now = crate::clock::now_secs();
        let budget = self.byte_budget();
        let mut valid = Vec::with_capacity(batch.len());
        for command in batch.drain(..) {
            let (_, bytes) = command.cost();
            let checked = command.validate().and_then(|()| {
                if bytes > budget {
                    Err(CommitError::TooLarge(format!(
                        "about {bytes} bytes in one delta; the NATS server takes {budget} \
                         (60% of its max_payload): send fewer revocations per call"
                    )))
                } else {
                    Ok(())
                }
            });
            match checked {
                Ok(()) => valid.push(command),
                Err(e) => command.answer(Err(e)),
            }
        }
        *batch = valid;
        let ledger = self.shared.ledger();
        let params = ledger.filter.params();
        let mut staging = ledger.filter.stage();
        staging.capacity_hint(ledger.capacity_hint());
        let mut seen: HashSet<(&str, u64)> = HashSet::new();
        let mut counts = Vec::with_capacity(batch.len());
        let draw = || match crate::keys::bloom_seed() {
            Ok(seed) => seed,
            Err(e) => {
                tracing::error!(error = %e, "no randomness for a Bloom seed");
                // Equal halves: staging refuses the seed, and the batch fails.
                [0; 32]
            }
        };
        for command in batch.iter() {
            let mut c = Committed::default();
            match command {
                Command::Revoke { items, .. } => {
                    for item in items {
                        if params.is_expired(item.exp, now) {
                            c.expired += 1;
                        } else if ledger.holds(&item.jti, item.exp)
                            || !seen.insert((item.jti.as_str(), params.bucket_of(item.exp)))
                        {
                            c.duplicates += 1;
                        } else {
                            staging.revoke_with(
                                &item.jti,
                                item.exp,
                                item.sub.as_deref(),
                                item.reason.as_deref(),
                                draw,
                            )?;
                            c.revoked += 1;
                        }
                    }
                    c.noop = c.revoked == 0;
                }
                Command::Cutoff {
                    sub: Some(sub),
                    not_before,
                    ..
                } => staging.subject_cutoff(sub, *not_before)?,
                Command::Cutoff {
                    sub: None,
                    not_before,
                    ..
                } => staging.global_cutoff(*not_before),
            }
            counts.push(c);
        }
        if let Some(now) = expire {
            staging.expire(now);
        }
        let version = ledger.filter.version();
        let changes = staging.finish();
        let delta = (!changes.is_empty()).then(|| Delta {
            version: version + 1,
            committed_at_ms: crate::clock::now_ms(),
            changes,
        });
        for c in &mut counts {
            c.version = delta.as_ref().map_or(version, |d| d.version);
        }
        Ok(Plan { delta, counts })
    }

    /// Commits one batch (and an expiry, if asked). Returns an error only when the
    /// publisher must stop.
    async fn commit(&mut self, mut batch: Vec<Command>, expire: Option<u64>) -> Result<(), Error> {
        let started = Instant::now();
        let plan = match self.plan(&mut batch, expire) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(error = %e, "could not stage a delta");
                for command in batch {
                    command.answer(Err(CommitError::NotStored(format!("staging failed: {e}"))));
                }
                return Ok(());
            }
        };
        let Some(delta) = plan.delta else {
            self.answer_all(batch, plan.counts, Ok(()));
            return Ok(());
        };
        let version = delta.version;
        let message = Message::Delta(delta);
        let bytes = bytes::Bytes::from(self.shared.signer.encode(&message));
        let Message::Delta(delta) = message else {
            unreachable!("built as a delta above")
        };
        let outcome = match self.publish(version, bytes.clone()).await {
            Ok(()) => {
                self.broadcast(&bytes).await;
                self.shared.ledger_mut().apply(&delta).map_err(|e| {
                    Error::Inconsistent(format!("own delta {version} does not apply: {e}"))
                })?;
                Ok(())
            }
            Err(why) => {
                tracing::warn!(version, error = %why, "publish outcome unknown; reading the stream back");
                stats::add(&self.shared.stats.commits_reconciled, 1);
                self.reconcile(version - 1, &bytes).await?
            }
        };
        match outcome {
            Ok(()) => {
                let s = &self.shared.stats;
                stats::add(&s.deltas_published, 1);
                stats::add(&s.delta_bytes, bytes.len() as u64);
                stats::set(&s.last_delta_bytes, bytes.len() as u64);
                stats::set(&s.last_delta_at_ms, delta.committed_at_ms);
                s.commit_seconds.observe(started.elapsed().as_secs_f64());
                if version.saturating_sub(stats::get(&s.last_snapshot_version))
                    >= self.shared.config.snapshot_every_deltas
                {
                    self.snapshot_due.notify_one();
                }
                self.answer_all(batch, plan.counts, Ok(()));
            }
            Err(e) => {
                stats::add(&self.shared.stats.commits_failed, 1);
                self.answer_all(batch, plan.counts, Err(e));
            }
        }
        Ok(())
    }

    fn answer_all(
        &self,
        batch: Vec<Command>,
        counts: Vec<Committed>,
        result: Result<(), CommitError>,
    ) {
        let s = &self.shared.stats;
        for (command, c) in batch.into_iter().zip(counts) {
            match &result {
                Ok(()) => {
                    if matches!(command, Command::Cutoff { .. }) {
                        stats::add(&s.cutoffs_set, 1);
                    }
                    stats::add(&s.revocations_added, c.revoked);
                    stats::add(&s.revocations_duplicate, c.duplicates);
                    stats::add(&s.revocations_expired, c.expired);
                    command.answer(Ok(c));
                }
                Err(e) => command.answer(Err(e.clone())),
            }
        }
    }

    /// Publishes delta `version` and waits for its ack.
    async fn publish(&self, version: u64, bytes: bytes::Bytes) -> Result<(), String> {
        let namespace = &self.shared.config.namespace;
        let publish = PublishMessage::build()
            .payload(bytes)
            .message_id(format!("{namespace}:{version}"))
            .expected_last_sequence(version - 1);
        let ack = self
            .storage
            .js
            .send_publish(namespace.log_subject(), publish)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        if ack.duplicate {
            return Err(format!(
                "JetStream reports message id {namespace}:{version} as a duplicate"
            ));
        }
        if ack.sequence != version {
            return Err(format!(
                "stored at sequence {} instead of {version}",
                ack.sequence
            ));
        }
        Ok(())
    }

    /// Sends a stored delta live on the delta subject. Only stored deltas go there:
    /// core subscribers of the log subject itself would also receive publishes that
    /// JetStream refuses or loses in a failover. A lost live copy is harmless:
    /// replicas repair the gap from the stream.
    async fn broadcast(&self, bytes: &bytes::Bytes) {
        let client = self.storage.js.client();
        let subject = self.shared.config.namespace.delta_subject();
        if let Err(e) = client.publish(subject, bytes.clone()).await {
            tracing::warn!(error = %e, "live copy of a stored delta not sent; replicas will repair the gap");
        }
    }

    /// After an uncertain publish on top of `base`: learns from the stream whether our
    /// delta (`sent`) was stored, applying whatever was stored after `base`.
    async fn reconcile(&self, base: u64, sent: &[u8]) -> Result<Result<(), CommitError>, Error> {
        let mut backoff = Duration::from_millis(50);
        let (_, last) = loop {
            match nats::stream_bounds(&self.storage.stream).await {
                Ok(bounds) => break bounds,
                Err(e) => {
                    if *self.stop.borrow() {
                        return Ok(Err(CommitError::NotStored(format!(
                            "NATS unreachable while stopping: {e}"
                        ))));
                    }
                    tracing::warn!(error = %e, "waiting for NATS to learn a commit's outcome");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        };
        if last < base {
            return Err(Error::Inconsistent(format!(
                "stream {} went back from {base} to {last}: it was purged or recreated",
                self.shared.config.namespace.stream_name()
            )));
        }
        if last == base {
            return Ok(Err(CommitError::NotStored(
                "NATS did not store the delta; retrying is safe".into(),
            )));
        }
        let mut ours = false;
        for seq in base + 1..=last {
            let (delta, payload) = loop {
                match nats::read_delta(&self.storage.stream, &self.shared.verifier, seq).await {
                    Ok(found) => break found,
                    Err(e @ Error::Inconsistent(_)) => return Err(e),
                    Err(e) => {
                        if *self.stop.borrow() {
                            return Err(e);
                        }
                        tracing::warn!(error = %e, seq, "retrying read of a stored delta");
                        tokio::time::sleep(backoff).await;
                    }
                }
            };
            if seq == base + 1 {
                ours = payload.as_ref() == sent;
            }
            self.shared.ledger_mut().apply(&delta).map_err(|e| {
                Error::Inconsistent(format!("stored delta {seq} does not apply: {e}"))
            })?;
        }
        if last > base + 1 || !ours {
            tracing::error!(
                base,
                last,
                "the stream holds deltas this writer did not publish: is a second publisher \
                 writing this namespace with the same key?"
            );
        }
        Ok(if ours {
            self.broadcast(&bytes::Bytes::copy_from_slice(sent)).await;
            Ok(())
        } else {
            Err(CommitError::NotStored(
                "another delta took this version; retrying is safe".into(),
            ))
        })
    }
}
