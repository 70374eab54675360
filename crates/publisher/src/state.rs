//! What every task of a running publisher shares.

use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use arc_swap::ArcSwap;
use revocast_core::{KeyRing, PublicKey, Signer, Verifier};
use tokio::sync::{mpsc, watch};

use crate::clock::{Bounded, TimeBound};
use crate::commit::Command;
use crate::config::Config;
use crate::jwt::JwtKey;
use crate::ledger::Ledger;
use crate::stats::Counters;

/// Capacity of the writer's command queue: enough for bursts of concurrent callers;
/// beyond it callers wait (bounded by their commit timeout).
pub(crate) const COMMAND_QUEUE: usize = 16_384;

/// State shared by the HTTP handlers, the authority, the writer and the periodic
/// tasks. Only the writer changes the ledger.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// The key everything is signed with; a key rotation replaces it.
    signer: ArcSwap<Signer>,
    /// Reads the namespace back: pins the signing key and the keys it retired (the
    /// key file's), pin-only (a publisher knows its own keys).
    pub(crate) verifier: Verifier,
    ledger: RwLock<Ledger>,
    /// Orders what goes out live: an acknowledged commit holds it from the moment its
    /// delta enters the ledger until the delta's live copy is sent, and a heartbeat
    /// holds it while it reads the version it announces and sends it. So no heartbeat
    /// announces a version before that version's delta went out on the same
    /// connection, which every replica would take for a gap to read from the log. (A
    /// commit found by reading the log back, after an ack that did not arrive, is the
    /// exception: replicas may then read that one delta from the log.)
    pub(crate) live: tokio::sync::Mutex<()>,
    pub(crate) counters: Counters,
    pub(crate) ready: watch::Sender<bool>,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) nats: OnceLock<async_nats::Client>,
    pub(crate) started: Instant,
    /// What the clock is bounded by when live state would be dropped.
    pub(crate) time: TimeBound,
    pub(crate) jwt: Option<JwtKey>,
    /// Trusted identity providers (back-channel logout), when configured.
    pub(crate) idp: Option<Idp>,
}

/// The verifier of the trusted identity providers' tokens and the logout replay guard.
#[derive(Debug)]
pub(crate) struct Idp {
    pub(crate) verifier: revocast_verifier::Verifier,
    /// Security event tokens carry no `exp`: their own verifier, when Shared Signals
    /// are on.
    pub(crate) sets: Option<revocast_verifier::Verifier>,
    pub(crate) replays: std::sync::Mutex<crate::logout::ReplayGuard>,
}

impl Idp {
    /// Starts fetching the trusted issuers' keys (inside a tokio runtime); `None`
    /// without trusted issuers.
    fn new(config: &Config) -> Result<Option<Idp>, crate::Error> {
        if config.trusted_issuers.is_empty() {
            return Ok(None);
        }
        let options = |require_exp: bool| {
            config
                .trusted_issuers
                .iter()
                .map(|trusted| {
                    trusted.audiences.iter().fold(
                        revocast_verifier::IssuerOptions::discover(&trusted.issuer)
                            .require_exp(require_exp),
                        |options, audience| options.audience(audience),
                    )
                })
                .collect()
        };
        let build = |issuers| {
            revocast_verifier::Verifier::new(issuers)
                .map_err(|e| crate::Error::Config(format!("trusted issuers: {e}")))
        };
        let verifier = build(options(true))?;
        let sets = if config.trusted_issuers.iter().any(|t| t.ssf_token.is_some()) {
            Some(build(options(false))?)
        } else {
            None
        };
        Ok(Some(Idp {
            verifier,
            sets,
            replays: std::sync::Mutex::default(),
        }))
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("namespace", &self.config.namespace)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Builds the shared state with an empty ledger (not ready yet) and returns the
    /// receiving end of the writer's queue. `retired`: the keys `signer`'s key took
    /// over from (the key file's), to read older messages with.
    pub(crate) fn new(
        config: Config,
        signer: Signer,
        retired: &[PublicKey],
        jwt: Option<JwtKey>,
    ) -> Result<(Arc<Shared>, mpsc::Receiver<Command>), crate::Error> {
        let ring = KeyRing::new(
            std::iter::once(signer.public_key()).chain(retired.iter().copied()),
            true,
        );
        let clock = config.clock.clone();
        let verifier = Verifier::with_ring(ring, config.namespace.clone())
            .clock(Arc::new(move || clock.now_ms()));
        let idp = Idp::new(&config)?;
        let filter =
            revocast_core::Filter::new(config.filter.clone()).map_err(crate::Error::Filter)?;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (ready, _) = watch::channel(false);
        let counters = Counters::default();
        let time = TimeBound::new(config.clock.now_secs());
        crate::stats::set(
            &counters.snapshot_limit_bytes,
            config.max_snapshot_bytes as u64,
        );
        Ok((
            Arc::new(Shared {
                config,
                signer: ArcSwap::from_pointee(signer),
                verifier,
                ledger: RwLock::new(Ledger::new(filter)),
                live: tokio::sync::Mutex::new(()),
                counters,
                ready,
                commands: tx,
                nats: OnceLock::new(),
                started: Instant::now(),
                time,
                jwt,
                idp,
            }),
            rx,
        ))
    }

    /// The signer of everything the publisher sends now.
    pub(crate) fn signer(&self) -> Arc<Signer> {
        self.signer.load_full()
    }

    /// Signs with `signer` from now on, and reads messages signed by its key.
    pub(crate) fn set_signer(&self, signer: Signer) {
        self.verifier.pin(signer.public_key());
        self.signer.store(Arc::new(signer));
    }

    /// Reads the ledger. A panic while holding the lock cannot leave it half
    /// changed (the writer applies validated deltas only), so poisoning is ignored.
    pub(crate) fn ledger(&self) -> RwLockReadGuard<'_, Ledger> {
        self.ledger
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The filter at the current version, for work proportional to its size: the
    /// ledger lock is held only to clone the `Arc`, so the writer is never held up.
    pub(crate) fn filter(&self) -> Arc<revocast_core::Filter> {
        self.ledger().filter.clone()
    }

    pub(crate) fn ledger_mut(&self) -> RwLockWriteGuard<'_, Ledger> {
        self.ledger
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Unix milliseconds by the configured clock.
    pub(crate) fn now_ms(&self) -> u64 {
        self.config.clock.now_ms()
    }

    /// Unix seconds by the configured clock.
    pub(crate) fn now_secs(&self) -> u64 {
        self.config.clock.now_secs()
    }

    /// Unix seconds by the configured clock, bounded by what the publisher can vouch
    /// for apart from it ([`TimeBound`]): the time of every decision that drops live
    /// state.
    pub(crate) fn bounded_now_secs(&self) -> Bounded {
        self.time.bounded(self.now_secs())
    }

    pub(crate) fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub(crate) fn nats_state(&self) -> &'static str {
        match self.nats.get().map(async_nats::Client::connection_state) {
            Some(async_nats::connection::State::Connected) => "connected",
            Some(async_nats::connection::State::Disconnected) => "disconnected",
            Some(async_nats::connection::State::Pending) | None => "pending",
        }
    }
}
