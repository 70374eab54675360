//! The revocation filter: blocked Bloom filters partitioned by expiry, growing by
//! layers. `docs/FORMAT.md` specifies every bit of it.
//!
//! # Shape
//! A [`Filter`] holds one [`Bucket`] per `bucket_width` seconds of token `exp`. A bucket
//! is a stack of layers (a scalable Bloom filter, Almeida et al. 2007) sharing one
//! seed; each layer is a blocked Bloom filter: a check hashes the `jti` once (XXH3-64,
//! XORed with the seed of each bucket it looks in) and reads one 64-byte block per
//! layer. When the newest layer
//! reaches its capacity the publisher opens a larger one, and the layers share the
//! target false-positive rate so that the bucket stays below it however many entries
//! it receives, without a rebuild (see [`growth`]).
//!
//! # One mutation path
//! The only way to change a filter is [`Filter::apply`] with a [`Delta`]. The publisher
//! plans a delta with [`Staging`] (which decides when layers open and with which seed),
//! publishes it, and applies it once it is durable; replicas apply the same delta. Both
//! run the same code on the same input, which is why their states are equal byte for
//! byte and their [`Digest`]s match.
//!
//! `apply` validates the whole delta before it touches anything: a delta that does not
//! fit (wrong version, an entry for a bucket without a layer, a malformed layer) leaves
//! the filter exactly as it was.
//!
//! # Layout
//! - `params`: [`FilterParams`], their defaults and the limits every component shares.
//! - `block`: the bit positions: the hash, block choice, bits in a block, [`Bitmap`].
//! - `layer`: one layer ([`LayerSpec`] plans it) and the [`Bucket`] that stacks them.
//! - `buckets`: the buckets by index.
//! - `delta`: [`Delta`] and [`Change`].
//! - `state`: [`FilterState`] (what snapshots carry) and the [`Digest`].
//! - `staging`: [`Staging`], and the overlay `apply` validates against.
//! - `stats`: [`FilterStats`] and its parts.
//! - here: [`Filter`], its lookup and `apply`.

mod block;
mod buckets;
mod delta;
mod layer;
mod params;
mod staging;
mod state;
mod stats;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::error::{FilterError, RolloverError};
use crate::rollover::{SignedRollover, check_extension};

pub use block::{Bitmap, MAX_HASHES};
pub use delta::{Change, Delta};
pub use layer::{Bucket, LayerSpec, MAX_BLOCKS, MAX_LAYER_BYTES, expected_fpr};
pub use params::{
    DEFAULT_BUCKET_WIDTH_SECS, DEFAULT_INITIAL_CAPACITY, DEFAULT_LEEWAY_SECS,
    DEFAULT_MAX_TOKEN_LIFETIME_SECS, DEFAULT_TARGET_FPR, FilterParams, MAX_JTI_LEN,
    MAX_LAYERS_PER_BUCKET, MAX_REASON_LEN, MAX_SUB_LEN, check_jti, check_sid, check_sub,
};
pub use staging::{Staging, growth};
pub use state::{BucketState, Digest, FilterState, LayerState};
pub use stats::{BucketStats, FilterStats, LayerStats, optimal_bits_per_entry};

use buckets::Buckets;
use params::Divisor;
use staging::Overlay;

/// What the filter says about a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lookup {
    /// Definitely not revoked by `jti`, and no cutoff matches.
    Clear,
    /// The Bloom filter holds the `jti`: revoked, or a false positive. Confirm it.
    FilterHit,
    /// The token's subject was cut off after the token was issued (exact).
    SubjectCutoff,
    /// Every token issued before the global cutoff is revoked (exact).
    GlobalCutoff,
    /// The token's session was logged out after the token was issued (exact).
    SessionCutoff,
}

/// The claims of a token that a check looks at.
#[derive(Clone, Copy, Debug)]
pub struct Probe<'a> {
    /// The token's `jti`.
    pub jti: &'a str,
    /// The token's `exp`; without it every bucket is searched.
    pub exp: Option<u64>,
    /// The token's `sub`, for subject cutoffs.
    pub sub: Option<&'a str>,
    /// The token's `iat`; when missing, `exp - max_token_lifetime` stands in for it.
    pub iat: Option<u64>,
    /// The token's session id (`sid`), for session cutoffs.
    pub sid: Option<&'a str>,
}

/// Where a delta stands relative to a filter ([`Filter::succession`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Succession {
    /// It carries the next version of the filter's epoch: it applies.
    Next,
    /// The filter holds its version already (a duplicate or a replayed copy).
    Applied,
    /// Versions are missing between the filter and it.
    Ahead,
    /// It belongs to another epoch of the namespace.
    OtherEpoch,
}

/// A revocation filter at a version.
#[derive(Debug)]
pub struct Filter {
    params: FilterParams,
    /// `params.bucket_width`, for the hot path.
    width: Divisor,
    epoch: u64,
    version: u64,
    buckets: Buckets,
    subject_cutoffs: BTreeMap<String, u64>,
    session_cutoffs: BTreeMap<String, u64>,
    global_cutoff: Option<u64>,
    /// The epoch's key rollovers ([`crate::rollover`]); shared between copies.
    key_chain: Arc<Vec<SignedRollover>>,
    digest: OnceLock<Digest>,
}

impl Clone for Filter {
    fn clone(&self) -> Self {
        Filter {
            params: self.params.clone(),
            width: self.width,
            epoch: self.epoch,
            version: self.version,
            buckets: self.buckets.clone(),
            subject_cutoffs: self.subject_cutoffs.clone(),
            session_cutoffs: self.session_cutoffs.clone(),
            global_cutoff: self.global_cutoff,
            key_chain: Arc::clone(&self.key_chain),
            digest: self.digest.clone(),
        }
    }
}

impl PartialEq for Filter {
    fn eq(&self, other: &Self) -> bool {
        self.to_state() == other.to_state()
    }
}

impl Filter {
    /// An empty filter at version 0, in epoch 0 (see [`Filter::with_epoch`]).
    pub fn new(params: FilterParams) -> Result<Filter, FilterError> {
        params.validate()?;
        Ok(Filter {
            width: Divisor::new(params.bucket_width),
            params,
            epoch: 0,
            version: 0,
            buckets: Buckets::default(),
            subject_cutoffs: BTreeMap::new(),
            session_cutoffs: BTreeMap::new(),
            global_cutoff: None,
            key_chain: Arc::default(),
            digest: OnceLock::new(),
        })
    }

    /// The filter's parameters.
    pub fn params(&self) -> &FilterParams {
        &self.params
    }

    /// The version: the number of deltas applied since version 0.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The epoch: the random id of the namespace's life this filter belongs to. A
    /// namespace deleted and created again starts a new epoch at version 0; deltas
    /// apply only within their own epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The epoch's key rollovers, oldest first (see [`crate::rollover`]).
    pub fn key_chain(&self) -> &[SignedRollover] {
        &self.key_chain
    }

    /// The key the chain handed over to last, if the namespace's key ever rotated.
    pub fn chain_head(&self) -> Option<[u8; 32]> {
        self.key_chain.last().map(|r| r.rollover.to)
    }

    /// This empty filter in `epoch` (a namespace's first filter).
    pub fn with_epoch(mut self, epoch: u64) -> Filter {
        self.epoch = epoch;
        self.digest = OnceLock::new();
        self
    }

    /// Where `delta` stands relative to this filter: the next one, one applied
    /// already, one after a gap, or one of another epoch. A log may hold messages of
    /// every kind (a stored copy of an old delta, a delta of an earlier life of the
    /// namespace); readers skip all but [`Succession::Next`] and [`Succession::Ahead`].
    pub fn succession(&self, delta: &Delta) -> Succession {
        if delta.epoch != self.epoch {
            Succession::OtherEpoch
        } else if delta.version <= self.version {
            Succession::Applied
        } else if delta.version == self.version + 1 {
            Succession::Next
        } else {
            Succession::Ahead
        }
    }

    /// Number of entries added to live buckets.
    pub fn live_entries(&self) -> u64 {
        saturating_sum(self.buckets.values().map(Bucket::entries))
    }

    /// Bytes held by Bloom bitmaps.
    pub fn bitmap_bytes(&self) -> u64 {
        self.buckets
            .values()
            .flat_map(|b| &b.layers)
            .map(|l| l.bitmap.byte_len() as u64)
            .sum()
    }

    /// The subject cutoffs, by subject.
    pub fn subject_cutoffs(&self) -> &BTreeMap<String, u64> {
        &self.subject_cutoffs
    }

    /// The session cutoffs, by session id.
    pub fn session_cutoffs(&self) -> &BTreeMap<String, u64> {
        &self.session_cutoffs
    }

    /// The global cutoff, if any.
    pub fn global_cutoff(&self) -> Option<u64> {
        self.global_cutoff
    }

    /// Whether any cutoff exists (the exact part of a check has work to do).
    #[inline]
    fn has_cutoffs(&self) -> bool {
        self.global_cutoff.is_some()
            || !self.subject_cutoffs.is_empty()
            || !self.session_cutoffs.is_empty()
    }

    /// Checks a token against cutoffs (exact) and the Bloom filter.
    ///
    /// This is the hot path of every service: no allocation, one bucket when `exp` is
    /// known. Always inlined: a check is a few dozen instructions besides the hash,
    /// and a call would add a tenth to them.
    #[inline(always)]
    pub fn lookup(&self, probe: &Probe<'_>) -> Lookup {
        if self.outlives_cutoffs(probe) {
            return Lookup::GlobalCutoff;
        }
        if self.has_cutoffs() {
            return self.lookup_with_cutoffs(*probe);
        }
        self.bloom(probe.jti, probe.exp)
    }

    /// [`Filter::lookup`] when cutoffs exist, out of line: the common path without
    /// them keeps the probe in registers. The Bloom filter is read first, so that its
    /// block is on its way while the cutoffs are searched; an exact cutoff answers
    /// before a filter hit.
    #[inline(never)]
    fn lookup_with_cutoffs(&self, probe: Probe<'_>) -> Lookup {
        let bloom = self.bloom(probe.jti, probe.exp);
        self.cutoff_lookup(&probe).unwrap_or(bloom)
    }

    #[inline(always)]
    fn bloom(&self, jti: &str, exp: Option<u64>) -> Lookup {
        if self.contains(jti, exp) {
            Lookup::FilterHit
        } else {
            Lookup::Clear
        }
    }

    /// Only the exact part of [`Filter::lookup`]: whether a subject cutoff or the
    /// global cutoff rejects the token. The authority uses it beside its exact
    /// records, where a Bloom hit would be a false positive.
    pub fn cutoff(&self, probe: &Probe<'_>) -> Option<Lookup> {
        if !self.has_cutoffs() {
            return None;
        }
        self.cutoff_lookup(probe)
    }

    /// Bloom lookup of a `jti`: in its `exp` bucket, or in every bucket without `exp`.
    #[inline(always)]
    pub fn contains(&self, jti: &str, exp: Option<u64>) -> bool {
        // One hash per check, whatever the number of buckets and layers looked in.
        let key = block::key(jti.as_bytes());
        match exp {
            Some(exp) => self
                .buckets
                .get(self.width.divide(exp))
                .is_some_and(|b| b.contains(key)),
            None => self.contains_anywhere(key),
        }
    }

    /// A `jti` without `exp`: every bucket is searched.
    #[inline(never)]
    fn contains_anywhere(&self, key: u64) -> bool {
        self.buckets.values().any(|b| b.contains(key))
    }

    /// Checks several tokens at once: the answers to `probes`, in order, replace the
    /// contents of `out`. The same answers as [`Filter::lookup`] one after the other,
    /// but it works on groups of tokens in steps (hash them all, find their blocks,
    /// then test them), so that the memory reads of a group overlap instead of
    /// waiting for each other.
    pub fn lookup_many<'p>(
        &self,
        probes: impl IntoIterator<Item = Probe<'p>>,
        out: &mut Vec<Lookup>,
    ) {
        const GROUP: usize = 16;
        out.clear();
        let cutoffs = self.has_cutoffs();
        let mut probes = probes.into_iter();
        let mut buffer = [None; GROUP];
        loop {
            let mut len = 0;
            for (slot, probe) in buffer.iter_mut().zip(probes.by_ref()) {
                *slot = Some(probe);
                len += 1;
            }
            if len == 0 {
                break;
            }
            let group: &[Option<Probe<'p>>] = &buffer[..len];
            let mut keys = [0u64; GROUP];
            for (key, probe) in keys.iter_mut().zip(group.iter().flatten()) {
                *key = block::key(probe.jti.as_bytes());
            }
            let mut pending: [Option<(&Bucket, u64)>; GROUP] = [None; GROUP];
            for ((slot, probe), key) in pending.iter_mut().zip(group.iter().flatten()).zip(keys) {
                let cut = if self.outlives_cutoffs(probe) {
                    Some(Lookup::GlobalCutoff)
                } else if cutoffs {
                    self.cutoff_lookup(probe)
                } else {
                    None
                };
                let answer = match (cut, probe.exp) {
                    (Some(hit), _) => hit,
                    (None, Some(exp)) => {
                        if let Some(bucket) = self.buckets.get(self.width.divide(exp)) {
                            *slot = Some((bucket, bucket.hash(key)));
                        }
                        Lookup::Clear
                    }
                    (None, None) if self.buckets.values().any(|b| b.contains(key)) => {
                        Lookup::FilterHit
                    }
                    (None, None) => Lookup::Clear,
                };
                out.push(answer);
            }
            let first = out.len() - len;
            for (answer, slot) in out[first..].iter_mut().zip(&pending) {
                if let Some((bucket, hash)) = slot
                    && bucket.contains_hash(*hash)
                {
                    *answer = Lookup::FilterHit;
                }
            }
        }
    }

    /// A token whose `iat` and `exp` are further apart than `max_token_lifetime` plus
    /// the leeway: it would outlive the cutoffs issued after it (a cutoff is dropped
    /// once every token it can match has expired, by that bound), so no replica can
    /// vouch for it. It is answered [`Lookup::GlobalCutoff`]: rejected, as if issued
    /// before the namespace's floor. Without `iat` nothing is known (the cutoffs
    /// compare `exp - max_token_lifetime` instead).
    #[inline]
    fn outlives_cutoffs(&self, probe: &Probe<'_>) -> bool {
        match (probe.iat, probe.exp) {
            (Some(iat), Some(exp)) => {
                exp.saturating_sub(iat)
                    > self
                        .params
                        .max_token_lifetime
                        .saturating_add(self.params.leeway)
            }
            _ => false,
        }
    }

    fn cutoff_lookup(&self, probe: &Probe<'_>) -> Option<Lookup> {
        // Without `iat`, the earliest issue time the token can have stands in for it; a
        // token with neither `iat` nor `exp` is assumed to be as old as can be.
        let issued = probe.iat.unwrap_or_else(|| {
            probe
                .exp
                .map_or(0, |exp| exp.saturating_sub(self.params.max_token_lifetime))
        });
        if self.global_cutoff.is_some_and(|nb| issued < nb) {
            return Some(Lookup::GlobalCutoff);
        }
        if let Some(sub) = probe.sub
            && self.subject_cutoffs.get(sub).is_some_and(|&nb| issued < nb)
        {
            return Some(Lookup::SubjectCutoff);
        }
        if let Some(sid) = probe.sid
            && self.session_cutoffs.get(sid).is_some_and(|&nb| issued < nb)
        {
            return Some(Lookup::SessionCutoff);
        }
        None
    }

    /// Applies `delta`, which must carry version `self.version() + 1`. On any error the
    /// filter is unchanged.
    pub fn apply(&mut self, delta: &Delta) -> Result<(), FilterError> {
        if delta.epoch != self.epoch {
            return Err(FilterError::OtherEpoch {
                have: self.epoch,
                got: delta.epoch,
            });
        }
        let expected = self.version + 1;
        if delta.version <= self.version {
            return Err(FilterError::Duplicate {
                have: self.version,
                got: delta.version,
            });
        }
        if delta.version != expected {
            return Err(FilterError::Gap {
                have: self.version,
                got: delta.version,
            });
        }
        // Pass 1: validate against a light overlay; pass 2 cannot fail.
        let mut layers = Vec::new();
        let mut overlay = Overlay::new(self);
        let mut chain: Option<Vec<SignedRollover>> = None;
        for change in &delta.changes {
            match change {
                Change::OpenLayer(spec) => {
                    let layer = spec.build()?;
                    overlay.open(spec, layer.design_fpr)?;
                    layers.push(layer);
                }
                Change::Add { jti, exp, .. } => {
                    check_jti(jti)?;
                    overlay.add(self.params.bucket_of(*exp))?;
                }
                Change::SubjectCutoff { sub, .. } => check_sub(sub)?,
                Change::SessionCutoff { sid, .. } => check_sid(sid)?,
                Change::GlobalCutoff { .. } => {}
                Change::Expire { now } => overlay.expire(self.params.first_live_bucket(*now)),
                Change::Rollover(next) => {
                    let chain = chain.get_or_insert_with(|| self.key_chain.to_vec());
                    check_extension(chain, self.epoch, next)?;
                    if next.rollover.version != delta.version {
                        return Err(FilterError::Rollover(RolloverError::WrongVersion {
                            index: next.rollover.index,
                            version: next.rollover.version,
                        }));
                    }
                    chain.push(next.clone());
                }
            }
        }
        let mut layers = layers.into_iter();
        for change in &delta.changes {
            match change {
                Change::OpenLayer(spec) => {
                    if let Some(layer) = layers.next() {
                        self.buckets
                            .get_or_insert_with(spec.bucket, || Bucket::new(spec.seed))
                            .layers
                            .push(layer);
                    }
                }
                Change::Add { jti, exp, .. } => {
                    if let Some(bucket) = self.buckets.get_mut(self.params.bucket_of(*exp)) {
                        let hash = bucket.hash(block::key(jti.as_bytes()));
                        if let Some(layer) = bucket.layers.last_mut() {
                            layer.insert(hash);
                        }
                    }
                }
                Change::SubjectCutoff { sub, not_before } => {
                    let entry = self.subject_cutoffs.entry(sub.clone()).or_insert(0);
                    *entry = (*entry).max(*not_before);
                }
                Change::SessionCutoff { sid, not_before } => {
                    let entry = self.session_cutoffs.entry(sid.clone()).or_insert(0);
                    *entry = (*entry).max(*not_before);
                }
                Change::GlobalCutoff { not_before } => {
                    self.global_cutoff = Some(self.global_cutoff.unwrap_or(0).max(*not_before));
                }
                Change::Expire { now } => self.expire(*now),
                Change::Rollover(_) => {}
            }
        }
        if let Some(chain) = chain {
            self.key_chain = Arc::new(chain);
        }
        self.version = delta.version;
        self.digest = OnceLock::new();
        Ok(())
    }

    fn expire(&mut self, now: u64) {
        let first_live = self.params.first_live_bucket(now);
        self.buckets.drop_below(first_live);
        let params = &self.params;
        self.subject_cutoffs
            .retain(|_, nb| params.cutoff_is_live(*nb, now));
        self.session_cutoffs
            .retain(|_, nb| params.cutoff_is_live(*nb, now));
        if self
            .global_cutoff
            .is_some_and(|nb| !params.cutoff_is_live(nb, now))
        {
            self.global_cutoff = None;
        }
    }

    /// Whether an `Expire { now }` change would drop anything.
    pub fn has_expired(&self, now: u64) -> bool {
        let first_live = self.params.first_live_bucket(now);
        self.buckets.first_index().is_some_and(|b| b < first_live)
            || self
                .subject_cutoffs
                .values()
                .chain(self.session_cutoffs.values())
                .any(|&nb| !self.params.cutoff_is_live(nb, now))
            || self
                .global_cutoff
                .is_some_and(|nb| !self.params.cutoff_is_live(nb, now))
    }

    /// Starts planning the next delta. See [`Staging`].
    pub fn stage(&self) -> Staging<'_> {
        Staging {
            filter: self,
            overlay: Overlay::new(self),
            changes: Vec::new(),
            capacity_hint: 0,
        }
    }
}

/// Counts come from snapshots: a sum saturates rather than overflows.
fn saturating_sum(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0, u64::saturating_add)
}
