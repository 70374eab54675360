//! The single writer: group commit of revocations into signed deltas.
//!
//! API handlers send commands over a channel. The writer takes the first, gathers
//! whatever else is queued (and, with a `batch.max_wait` window, whatever arrives
//! within it), up to the batch limits; revocations that arrive while a commit awaits
//! its ack form the next batch. It stages delta `V+1` of the namespace's epoch `E`,
//! signs it, and publishes it with `Nats-Expected-Last-Sequence: S` (the last log
//! message it knows) and `Nats-Msg-Id: <ns>:<E>:<V+1>`. Only after JetStream
//! acknowledged it does it apply the delta to the ledger (so the authority knows it),
//! then send it live to the replicas, then answer every caller of the batch. A replica
//! can never hold a delta the authority does not.
//!
//! A delta's version is its own, not its stream sequence: anyone allowed to publish on
//! the log subject can store garbage, another key's message or a copy of an old delta
//! there. When a publish fails or its ack is lost, the writer does not guess: it reads
//! the log back from `S` until it knows whether its delta was stored (applying it if
//! so), skipping and counting everything that is not a delta of this publisher's next
//! version; when only such messages came first, it publishes the same delta again on
//! top of them. A caller hears "success" only for what is in the stream.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use revocast_core::http::{Committed, KeyRotated};
use revocast_core::{Change, Delta, FilterError, KeyFile, Message, PublicKey, Signer};
use revocast_nats::{Backoff, LogEntry};
use tokio::sync::{mpsc, watch};

use crate::commit::{Command, CommitError, CutoffOf, Rotate, RotateError};
use crate::error::{Cause, Error};
use crate::keys::{self, BucketSeeds, KeySource};
use crate::nats::{self, Followed, Storage, follow};
use crate::state::Shared;
use crate::stats;

/// Attempts to store one delta when other messages keep landing on the log first.
const STORE_ATTEMPTS: u32 = 8;
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

/// Commands gathered for one delta, with what they cost so far.
struct Batch {
    commands: Vec<Command>,
    adds: usize,
    bytes: usize,
}

impl Batch {
    fn new(first: Command) -> Batch {
        let (adds, bytes) = first.cost();
        Batch {
            commands: vec![first],
            adds,
            bytes,
        }
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
        // After the take-over delta: NATS's time of it is as fresh as can be.
        self.observe_nats_time().await;
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
            if let Command::Rotate(rotate) = first {
                self.rotate(rotate).await?;
                continue;
            }
            let (batch, next) = self.gather(first).await;
            held = next;
            self.commit(batch, None, false).await?;
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
            if let Command::Rotate(_) = first {
                // A new key is not started while stopping.
                first.answer(Err(CommitError::Stopped));
                continue;
            }
            let (batch, next) = self.gather_now(first);
            held = next;
            self.commit(batch, None, false).await?;
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

    /// Adds `next` to `batch` if it fits the limits; gives it back if not.
    fn add(&self, batch: &mut Batch, next: Command) -> Result<(), Command> {
        if let Command::Rotate(_) = next {
            // Alone in its delta, signed by the key it hands over from.
            return Err(next);
        }
        let (adds, bytes) = next.cost();
        if batch.adds + adds > self.shared.config.batch.max_adds
            || batch.bytes + bytes > self.byte_budget()
        {
            return Err(next);
        }
        batch.adds += adds;
        batch.bytes += bytes;
        batch.commands.push(next);
        Ok(())
    }

    /// Gathers commands for up to `max_wait` after the first, within the limits.
    /// Returns the batch and a command that did not fit, if any.
    async fn gather(&mut self, first: Command) -> (Vec<Command>, Option<Command>) {
        let max_wait = self.shared.config.batch.max_wait;
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut batch = Batch::new(first);
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
            if let Err(next) = self.add(&mut batch, next) {
                return (batch.commands, Some(next));
            }
        }
        (batch.commands, None)
    }

    /// Like `gather` but takes only what is queued already.
    fn gather_now(&mut self, first: Command) -> (Vec<Command>, Option<Command>) {
        let mut batch = Batch::new(first);
        while let Ok(next) = self.rx.try_recv() {
            if let Err(next) = self.add(&mut batch, next) {
                return (batch.commands, Some(next));
            }
        }
        (batch.commands, None)
    }

    /// Reads the time NATS stamped on the log into the publisher's
    /// [`crate::clock::TimeBound`]; a failure keeps what was read before.
    async fn observe_nats_time(&self) {
        let namespace = &self.shared.config.namespace;
        match nats::read_stamped_secs(&self.storage.js, namespace).await {
            Ok(secs) => self.shared.time.observe(secs),
            Err(e) => tracing::debug!(error = %e, "NATS's time not read; keeping the last reading"),
        }
    }

    /// The clock's time for an expiry, bounded ([`Shared::bounded_now_secs`]),
    /// counting and reporting a clamp.
    fn expiry_now(&self) -> u64 {
        let crate::clock::Bounded {
            now: bound,
            clock_ahead,
        } = self.shared.bounded_now_secs();
        let Some(now) = clock_ahead else { return bound };
        let n = self
            .shared
            .counters
            .expiries_clamped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if n.is_power_of_two() {
            tracing::error!(
                clock = now,
                bound,
                ahead_secs = now - bound,
                "the clock is ahead of the time this publisher can vouch for (its clock at \
                 start and NATS's time, plus the time seen pass since); expiring at the \
                 bound instead (fix the clock)"
            );
        }
        bound
    }

    async fn expire_if_due(&mut self) -> Result<(), Error> {
        // Never on the clock alone: NATS's time, read again (the latest reading wins).
        self.observe_nats_time().await;
        if !self.shared.time.is_observed() {
            tracing::warn!("NATS's time is not known yet; no expiry until it is");
            return Ok(());
        }
        let now = self.expiry_now();
        let due = self.shared.ledger().filter.has_expired(now);
        if due {
            tracing::info!(now, "expiring buckets and cutoffs");
            self.commit(Vec::new(), Some(now), false).await?;
        }
        Ok(())
    }

    /// Stages a delta for the batch. Commands that do not validate are answered and
    /// dropped here.
    fn plan(
        &self,
        batch: &mut Vec<Command>,
        expire: Option<u64>,
        force: bool,
        mut seeds: BucketSeeds,
    ) -> Result<Plan, FilterError> {
        // A clock that is ahead must not make live tokens look expired either; the
        // latest bucket a live token can fall in follows the clock seen pass.
        let now = self.shared.bounded_now_secs().now;
        let horizon = self.shared.time.horizon(self.shared.now_secs());
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
        for command in batch.iter() {
            let mut c = Committed::default();
            match command {
                Command::Revoke { items, .. } => {
                    for item in items {
                        let Some(exp) = item.exp else {
                            // Unknown exp: one entry in every bucket a live token's exp
                            // can fall in, each with that bucket's last second as exp.
                            let first = params.first_live_bucket(now);
                            let last = params.bucket_of(
                                horizon
                                    .saturating_add(params.max_token_lifetime)
                                    .saturating_add(params.leeway),
                            );
                            let mut added = 0;
                            for bucket in first..=last {
                                let exp = bucket
                                    .saturating_add(1)
                                    .saturating_mul(params.bucket_width)
                                    .saturating_sub(1);
                                // A filter hit on a jti the authority holds is a hit
                                // answered "revoked": nothing to add there.
                                let known = ledger.records.contains_key(&item.jti)
                                    && ledger.filter.contains(&item.jti, Some(exp));
                                if known || !seen.insert((item.jti.as_str(), bucket)) {
                                    continue;
                                }
                                staging.revoke_with(
                                    &item.jti,
                                    exp,
                                    item.sub.as_deref(),
                                    item.reason.as_deref(),
                                    || seeds.next(),
                                )?;
                                added += 1;
                            }
                            if added == 0 {
                                c.duplicates += 1;
                            } else {
                                c.revoked += 1;
                                c.buckets += added;
                            }
                            continue;
                        };
                        if params.is_expired(exp, now) {
                            c.expired += 1;
                        } else if ledger.holds(&item.jti, exp)
                            || !seen.insert((item.jti.as_str(), params.bucket_of(exp)))
                        {
                            c.duplicates += 1;
                        } else {
                            staging.revoke_with(
                                &item.jti,
                                exp,
                                item.sub.as_deref(),
                                item.reason.as_deref(),
                                || seeds.next(),
                            )?;
                            c.revoked += 1;
                            c.buckets += 1;
                        }
                    }
                    c.noop = c.revoked == 0;
                }
                Command::Cutoff { of, not_before, .. } => match of {
                    CutoffOf::Subject(sub) => staging.subject_cutoff(sub, *not_before)?,
                    CutoffOf::Session(sid) => staging.session_cutoff(sid, *not_before)?,
                    CutoffOf::Everyone => staging.global_cutoff(*not_before),
                },
                // Never gathered into a batch (see `add`).
                Command::Rotate(_) => {}
            }
            counts.push(c);
        }
        if let Some(now) = expire {
            staging.expire(now);
        }
        let version = ledger.filter.version();
        let changes = staging.finish();
        let delta = (force || !changes.is_empty()).then(|| Delta {
            epoch: ledger.filter.epoch(),
            version: version + 1,
            committed_at_ms: self.shared.now_ms(),
            changes,
        });
        for c in &mut counts {
            c.version = delta.as_ref().map_or(version, |d| d.version);
        }
        Ok(Plan { delta, counts })
    }

    /// Commits a delta with no change as this publisher's first, retrying until it is
    /// stored: a publisher taking over a namespace moves it to a new version before
    /// its first heartbeat, so that replicas order this life's heartbeats after every
    /// earlier life's by `(version, beat)`, whatever the clocks say.
    pub(crate) async fn take_over(&mut self) -> Result<(), Error> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let before = self.shared.ledger().filter.version();
            self.commit(Vec::new(), None, true).await?;
            let version = self.shared.ledger().filter.version();
            if version > before {
                tracing::debug!(version, "took the namespace over");
                return Ok(());
            }
            tracing::warn!("the take-over delta was not stored; retrying");
            backoff.wait().await;
        }
    }

    /// Rotates the signing key: writes the new key file beside the current one
    /// (`<key file>.next`, the old public key listed as retired), commits a delta
    /// holding the rollover signed by the current key, then signs everything with the
    /// new key, renames the new file in place and writes a snapshot signed by it.
    /// Replicas that follow the chain trust the new key from that delta on and the
    /// old one until the overlap ends. Fails with nothing changed unless the rollover
    /// was stored.
    async fn rotate(&mut self, rotate: Box<Rotate>) -> Result<(), Error> {
        let Rotate {
            key,
            overlap_ms,
            reply,
        } = *rotate;
        let result = self.try_rotate(key, overlap_ms).await?;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "key rotation refused");
        }
        let _ = reply.send(result);
        Ok(())
    }

    async fn try_rotate(
        &mut self,
        key: revocast_core::SigningKey,
        overlap_ms: u64,
    ) -> Result<Result<KeyRotated, RotateError>, Error> {
        let started = Instant::now();
        let KeySource::File(path) = &self.shared.config.signing_key else {
            return Ok(Err(RotateError::NoKeyFile));
        };
        let path = path.clone();
        let signer = self.shared.signer();
        let old = signer.public_key();
        let new = PublicKey(key.verifying_key());
        let (epoch, version, index, reused) = {
            let ledger = self.shared.ledger();
            let chain = ledger.filter.key_chain();
            let bytes = new.0.to_bytes();
            let reused = new == old
                || chain
                    .iter()
                    .any(|r| r.rollover.from == bytes || r.rollover.to == bytes);
            (
                ledger.filter.epoch(),
                ledger.filter.version(),
                chain.len() as u64 + 1,
                reused,
            )
        };
        if reused {
            return Ok(Err(RotateError::KeyReused));
        }
        // The new key file first: once the rollover is stored, the new key must
        // survive a crash.
        let retired = match keys::read_key_file(&path) {
            Ok(current) => current.retired,
            Err(e) => return Ok(Err(RotateError::KeyFile(Arc::new(e)))),
        };
        let file = KeyFile {
            signing: key.clone(),
            retired: std::iter::once(old).chain(retired).collect(),
        };
        let next = match keys::write_next_key_file(&path, &file) {
            Ok(next) => next,
            Err(e) => return Ok(Err(RotateError::KeyFile(Arc::new(e)))),
        };
        let at_ms = self.shared.now_ms();
        let rollover = signer.rollover(new, epoch, (index, version + 1), at_ms, overlap_ms);
        let delta = Delta {
            epoch,
            version: version + 1,
            committed_at_ms: at_ms,
            changes: vec![Change::Rollover(rollover.clone())],
        };
        let bytes = bytes::Bytes::from(signer.encode(&Message::Delta(delta.clone())));
        if let Err(e) = self.store(&delta, &bytes).await? {
            stats::add(&self.shared.counters.commits_failed, 1);
            if let Err(remove) = std::fs::remove_file(&next) {
                tracing::warn!(path = %next.display(), error = %remove, "could not remove the unused new key file");
            }
            return Ok(Err(RotateError::Commit(e)));
        }
        self.record_commit(&delta, bytes.len(), started);
        // Stored: from here on the new key signs.
        if let Err(e) = self.shared.verifier.follow(&rollover) {
            tracing::error!(error = %e, "the publisher's own rollover does not extend its key ring");
        }
        self.shared
            .set_signer(Signer::new(key, self.shared.config.namespace.clone()));
        stats::add(&self.shared.counters.key_rotations, 1);
        let key_file = match keys::install_next_key_file(&path) {
            Ok(()) => path.display().to_string(),
            Err(e) => {
                tracing::error!(
                    path = %path.display(),
                    next = %next.display(),
                    error = %e,
                    "the key rotated but the new key file is not in place: move it there                      before the publisher restarts (a restart also finishes this)"
                );
                format!("not in place: {e}; the new key is in {}", next.display())
            }
        };
        tracing::info!(
            public_key = %new,
            previous_public_key = %old,
            version = delta.version,
            rollover = index,
            overlap_ms,
            "signing key rotated; replicas that pin the previous key follow the rollover"
        );
        if let Err(e) = crate::tasks::write_snapshot(&self.shared, &self.storage).await {
            tracing::warn!(error = %e, "no snapshot signed by the new key yet; the snapshot task retries");
            self.snapshot_due.notify_one();
        }
        Ok(Ok(KeyRotated {
            public_key: new.to_string(),
            previous_public_key: old.to_string(),
            version: delta.version,
            rollover: index,
            previous_accepted_until_ms: rollover.rollover.retires_at_ms(),
            key_file,
        }))
    }

    /// Counts a stored delta.
    fn record_commit(&self, delta: &Delta, bytes: usize, started: Instant) {
        let s = &self.shared.counters;
        stats::add(&s.deltas_published, 1);
        stats::add(&s.delta_bytes, bytes as u64);
        stats::set(&s.last_delta_bytes, bytes as u64);
        stats::set(&s.last_delta_at_ms, delta.committed_at_ms);
        s.commit_seconds.observe(started.elapsed().as_secs_f64());
    }

    /// Commits one batch (and an expiry, if asked; a delta even with no change, if
    /// `force`). Returns an error only when the publisher must stop.
    async fn commit(
        &mut self,
        mut batch: Vec<Command>,
        expire: Option<u64>,
        force: bool,
    ) -> Result<(), Error> {
        let started = Instant::now();
        if !self.shared.time.is_observed() {
            self.observe_nats_time().await;
        }
        let seeds = match BucketSeeds::draw() {
            Ok(seeds) => seeds,
            Err(e) => {
                tracing::error!(error = %e, "no randomness for bucket seeds");
                let cause: Cause = Arc::new(e);
                for command in batch {
                    command.answer(Err(CommitError::NotStored {
                        reason: "no randomness for bucket seeds",
                        source: Some(cause.clone()),
                    }));
                }
                return Ok(());
            }
        };
        let plan = match self.plan(&mut batch, expire, force, seeds) {
            Ok(plan) => plan,
            Err(e) => {
                tracing::error!(error = %e, "could not stage a delta");
                for command in batch {
                    command.answer(Err(CommitError::NotStored {
                        reason: "staging the delta failed",
                        source: Some(Arc::new(e.clone())),
                    }));
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
        let bytes = bytes::Bytes::from(self.shared.signer().encode(&message));
        let Message::Delta(delta) = message else {
            unreachable!("built as a delta above")
        };
        let outcome = self.store(&delta, &bytes).await?;
        match outcome {
            Ok(()) => {
                self.record_commit(&delta, bytes.len(), started);
                let s = &self.shared.counters;
                if version.saturating_sub(stats::get(&s.last_snapshot_version))
                    >= self.shared.config.snapshot_every_deltas
                {
                    self.snapshot_due.notify_one();
                }
                self.answer_all(batch, plan.counts, Ok(()));
            }
            Err(e) => {
                stats::add(&self.shared.counters.commits_failed, 1);
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
        let s = &self.shared.counters;
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

    /// Stores `delta` (encoded as `bytes`) on top of the log as the ledger knows it,
    /// then applies it to the ledger and sends it live. When something else landed on
    /// the log first (a message the writer did not write), it reads the log back:
    /// skipped messages move the base, and the same delta is tried again on top.
    async fn store(
        &self,
        delta: &Delta,
        bytes: &bytes::Bytes,
    ) -> Result<Result<(), CommitError>, Error> {
        let version = delta.version;
        for _ in 0..STORE_ATTEMPTS {
            let base = self.shared.ledger().seq;
            match self.publish(delta, base, bytes.clone()).await {
                Ok(seq) => {
                    // No heartbeat announces this version before its live copy is sent.
                    let live = self.shared.live.lock().await;
                    // The authority's state first: a replica that applies the live copy
                    // evicts its cached answers and asks the authority, which must
                    // already know.
                    {
                        let mut ledger = self.shared.ledger_mut();
                        ledger.apply(delta).map_err(|e| {
                            Error::inconsistent_by(format!("own delta {version} does not apply"), e)
                        })?;
                        ledger.seq = seq;
                    }
                    self.shared.config.pause_before_broadcast.pass().await;
                    self.broadcast(bytes).await;
                    drop(live);
                    self.shared.config.pause_after_broadcast.pass().await;
                    return Ok(Ok(()));
                }
                Err(why) => {
                    tracing::warn!(version, base, error = %why, "publish outcome unknown; reading the log back");
                    stats::add(&self.shared.counters.commits_reconciled, 1);
                    match self.reconcile(base, bytes).await? {
                        Reconciled::Stored => return Ok(Ok(())),
                        Reconciled::NotStored(e) => return Ok(Err(e)),
                        Reconciled::OnlySkipped => continue,
                    }
                }
            }
        }
        Ok(Err(CommitError::NotStored {
            reason: "messages kept landing on the log ahead of the delta; retrying is safe",
            source: None,
        }))
    }

    /// Publishes `delta` expecting the log to end at `base`; returns its sequence.
    async fn publish(&self, delta: &Delta, base: u64, bytes: bytes::Bytes) -> Result<u64, Error> {
        let namespace = &self.shared.config.namespace;
        let version = delta.version;
        let publish = PublishMessage::build()
            .payload(bytes)
            .message_id(format!("{namespace}:{:016x}:{version}", delta.epoch))
            .expected_last_sequence(base);
        let ack = self
            .storage
            .js
            .send_publish(namespace.log_subject(), publish)
            .await
            .map_err(|e| Error::nats(format!("publish delta {version}"), e))?
            .await
            .map_err(|e| Error::nats(format!("the ack of delta {version}"), e))?;
        if ack.duplicate {
            // Stored before, by an earlier attempt whose ack was lost: the read-back
            // finds it.
            return Err(Error::nats(
                format!("delta {version}"),
                std::io::Error::other("JetStream reports it as a duplicate"),
            ));
        }
        if ack.sequence <= base {
            return Err(Error::inconsistent(format!(
                "delta {version} stored at sequence {} on a log that ended at {base}",
                ack.sequence
            )));
        }
        Ok(ack.sequence)
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

    /// After an uncertain publish on top of `base`: learns from the log whether our
    /// delta (`sent`) was stored, taking whatever was stored after `base` into the
    /// ledger (deltas of another writer apply, everything else is skipped).
    async fn reconcile(&self, base: u64, sent: &bytes::Bytes) -> Result<Reconciled, Error> {
        let store = &self.storage.store;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let last = loop {
            match store.bounds().await {
                Ok(bounds) => break bounds.last,
                Err(e) => {
                    if *self.stop.borrow() {
                        return Ok(Reconciled::NotStored(CommitError::NotStored {
                            reason: "NATS unreachable while stopping",
                            source: Some(Arc::new(e)),
                        }));
                    }
                    tracing::warn!(error = %e, "waiting for NATS to learn a commit's outcome");
                    backoff.wait().await;
                }
            }
        };
        if last < base {
            return Err(Error::inconsistent(format!(
                "stream {} went back from {base} to {last}: it was purged or recreated",
                self.shared.config.namespace.stream_name()
            )));
        }
        if last == base {
            return Ok(Reconciled::NotStored(CommitError::NotStored {
                reason: "NATS did not store the delta; retrying is safe",
                source: None,
            }));
        }
        let (mut ours, mut theirs) = (false, 0u64);
        let mut next = base + 1;
        while next <= last {
            let mut replay = match store.replay(next..=last).await {
                Ok(replay) => replay,
                Err(e) if !e.is_transient() || *self.stop.borrow() => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, "retrying the read-back of the log");
                    backoff.wait().await;
                    continue;
                }
            };
            let mut interrupted = false;
            while let Some(entry) = replay.next().await {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) if !e.is_transient() || *self.stop.borrow() => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(error = %e, "retrying the read-back of the log");
                        backoff.wait().await;
                        interrupted = true;
                        break;
                    }
                };
                next = entry.seq() + 1;
                let followed = follow(
                    &mut self.shared.ledger_mut(),
                    &self.shared.counters,
                    &self.shared.verifier,
                    &entry,
                )?;
                if followed == Followed::Applied {
                    match &entry {
                        LogEntry::Delta(stored) if stored.payload == *sent => ours = true,
                        _ => theirs += 1,
                    }
                }
            }
            if !interrupted {
                // Read to the end (which comes early when the tail was deleted).
                break;
            }
        }
        if theirs > 0 {
            tracing::error!(
                base,
                last,
                deltas = theirs,
                "the log holds deltas this writer did not publish: is a second publisher \
                 writing this namespace with the same key?"
            );
        }
        Ok(if ours {
            self.broadcast(sent).await;
            Reconciled::Stored
        } else if theirs > 0 {
            Reconciled::NotStored(CommitError::NotStored {
                reason: "another delta took this version; retrying is safe",
                source: None,
            })
        } else {
            Reconciled::OnlySkipped
        })
    }
}

/// What reading the log back after an uncertain publish found.
enum Reconciled {
    /// Our delta is stored (and applied).
    Stored,
    /// It is not, and the callers hear why.
    NotStored(CommitError),
    /// It is not, and only skipped messages landed ahead of it: try again on top.
    OnlySkipped,
}
