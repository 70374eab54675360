//! The revocation filter: Bloom filters partitioned by expiry, growing by layers.
//!
//! # Shape
//! A [`Filter`] holds one [`Bucket`] per `bucket_width` seconds of token `exp`. A bucket
//! is a stack of Bloom filter layers (a scalable Bloom filter, Almeida et al. 2007):
//! when the newest layer reaches its capacity the publisher opens a new one with half
//! the false-positive rate (a quarter of the first layer's capacity, then doubling), so
//! a bucket's false-positive rate stays below the target however many entries it
//! receives, without a rebuild.
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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use bincode::{Decode, Encode};
use bloomfilter::Bloom;
use serde::Serialize;

use crate::error::FilterError;

/// Default width of an expiry bucket: one hour of `exp`.
pub const DEFAULT_BUCKET_WIDTH_SECS: u64 = 3600;
/// Default target false-positive rate of a check with a known `exp`.
pub const DEFAULT_TARGET_FPR: f64 = 0.001;
/// Default capacity of the first layer of a bucket.
pub const DEFAULT_INITIAL_CAPACITY: u64 = 4096;
/// Default longest token lifetime the issuer hands out (24 h).
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;
/// Default clock leeway: a bucket lives this long after its last possible `exp`.
///
/// It must cover what services themselves tolerate past `exp` (jsonwebtoken's default
/// validation leeway is 60 s) plus the clock skew between the publisher and any
/// service; 5 minutes covers 60 s of leeway and up to 4 minutes of skew for the price
/// of keeping each bucket 5 minutes longer.
pub const DEFAULT_LEEWAY_SECS: u64 = 300;

/// Longest accepted `jti`, in bytes.
pub const MAX_JTI_LEN: usize = 256;
/// Longest accepted `sub`, in bytes.
pub const MAX_SUB_LEN: usize = 256;
/// Longest accepted revocation reason, in bytes.
pub const MAX_REASON_LEN: usize = 1024;
/// Most layers a bucket may have. With doubling capacities this is never reached by a
/// sane workload; it bounds what a malformed delta can ask for.
pub const MAX_LAYERS_PER_BUCKET: usize = 32;
/// Largest Bloom bitmap of one layer, in bytes (256 MiB).
pub const MAX_LAYER_BYTES: u64 = 256 << 20;
/// Largest hash count of one layer.
pub const MAX_HASHES: u32 = 64;

/// Size of the header that `bloomfilter` puts before the bits (version, length, hash
/// count, seed).
const BLOOM_HEADER_LEN: usize = 1 + 8 + 4 + 32;
/// The only `bloomfilter` bitmap format version we build by hand.
const BLOOM_FORMAT_VERSION: u8 = 1;

/// Parameters fixed when a namespace is created; carried in every snapshot.
#[derive(Clone, Debug, PartialEq, Encode, Decode, Serialize)]
pub struct FilterParams {
    /// Width of an expiry bucket in seconds.
    pub bucket_width: u64,
    /// Target false-positive rate of a check with a known `exp`, in (0, 0.5).
    pub target_fpr: f64,
    /// Capacity of the first layer of a new bucket.
    pub initial_capacity: u64,
    /// Longest token lifetime the issuer hands out, in seconds. Bounds `iat` for tokens
    /// that lack it and tells when a cutoff can no longer match a live token.
    pub max_token_lifetime: u64,
    /// Clock leeway in seconds: nothing is dropped until `exp + leeway < now`.
    pub leeway: u64,
}

impl Default for FilterParams {
    fn default() -> Self {
        FilterParams {
            bucket_width: DEFAULT_BUCKET_WIDTH_SECS,
            target_fpr: DEFAULT_TARGET_FPR,
            initial_capacity: DEFAULT_INITIAL_CAPACITY,
            max_token_lifetime: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
            leeway: DEFAULT_LEEWAY_SECS,
        }
    }
}

impl FilterParams {
    /// Checks that the parameters make a usable filter.
    pub fn validate(&self) -> Result<(), FilterError> {
        let bad = |what: &str| Err(FilterError::InvalidParams(what.to_owned()));
        if self.bucket_width == 0 {
            return bad("bucket_width must be at least 1 second");
        }
        if !(self.target_fpr > 0.0 && self.target_fpr < 0.5) {
            return bad("target_fpr must be in (0, 0.5)");
        }
        if self.initial_capacity == 0 || self.initial_capacity > u64::from(u32::MAX) {
            return bad("initial_capacity must be in 1..=4294967295");
        }
        if self.max_token_lifetime == 0 {
            return bad("max_token_lifetime must be at least 1 second");
        }
        Ok(())
    }

    /// The bucket that holds tokens expiring at `exp`.
    pub fn bucket_of(&self, exp: u64) -> u64 {
        exp / self.bucket_width
    }

    /// Buckets below this index hold only tokens with `exp + leeway < now`.
    pub fn first_live_bucket(&self, now: u64) -> u64 {
        now.saturating_sub(self.leeway) / self.bucket_width
    }

    /// A token expiring at `exp` is past its leeway at `now`: nothing can accept it,
    /// so there is nothing to revoke.
    pub fn is_expired(&self, exp: u64, now: u64) -> bool {
        exp.saturating_add(self.leeway) < now
    }

    /// A cutoff set at `not_before` can still match a live token at `now`.
    pub fn cutoff_is_live(&self, not_before: u64, now: u64) -> bool {
        // A token issued before `not_before` expires before `not_before + lifetime`.
        not_before
            .saturating_add(self.max_token_lifetime)
            .saturating_add(self.leeway)
            >= now
    }
}

/// A layer about to be opened: everything a replica needs to build the same empty
/// Bloom filter without repeating the publisher's floating-point sizing.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct LayerSpec {
    /// Bucket index the layer belongs to.
    pub bucket: u64,
    /// Entries the layer takes before the next one opens.
    pub capacity: u64,
    /// Size of the bitmap in bytes.
    pub bitmap_bytes: u64,
    /// Number of hash functions.
    pub hashes: u32,
    /// Random SipHash seed; its two halves must differ.
    pub seed: [u8; 32],
}

impl LayerSpec {
    /// Sizes layer number `index` (0-based) of a bucket for `capacity` entries. Layer
    /// `i` gets a false-positive rate of `target / 2^(i+1)`, so the rates of all layers
    /// of a bucket add up to less than `target`.
    pub fn plan(
        params: &FilterParams,
        bucket: u64,
        index: usize,
        capacity: u64,
        seed: [u8; 32],
    ) -> LayerSpec {
        let exponent = i32::try_from(index + 1).unwrap_or(i32::MAX);
        let fpr = (params.target_fpr * 0.5f64.powi(exponent)).max(f64::MIN_POSITIVE);
        let capacity = capacity.max(1);
        let items = usize::try_from(capacity).unwrap_or(usize::MAX);
        let bitmap_bytes = Bloom::<[u8]>::compute_bitmap_size(items, fpr).max(1) as u64;
        let bits = bitmap_bytes as f64 * 8.0;
        let hashes = ((bits / capacity as f64) * std::f64::consts::LN_2).round() as u32;
        LayerSpec {
            bucket,
            capacity,
            bitmap_bytes: bitmap_bytes.min(MAX_LAYER_BYTES),
            hashes: hashes.clamp(1, MAX_HASHES),
            seed,
        }
    }

    fn validate(&self) -> Result<(), FilterError> {
        let bad = |why: &str| Err(FilterError::InvalidLayer(why.to_owned()));
        if self.capacity == 0 {
            return bad("capacity is 0");
        }
        if self.bitmap_bytes == 0 || self.bitmap_bytes > MAX_LAYER_BYTES {
            return bad("bitmap size out of range");
        }
        if self.hashes == 0 || self.hashes > MAX_HASHES {
            return bad("hash count out of range");
        }
        check_seed(&self.seed)
    }

    fn build(&self) -> Result<Layer, FilterError> {
        self.validate()?;
        let len = usize::try_from(self.bitmap_bytes)
            .map_err(|_| FilterError::InvalidLayer("bitmap too large".into()))?;
        let mut bytes = vec![0u8; BLOOM_HEADER_LEN + len];
        bytes[0] = BLOOM_FORMAT_VERSION;
        bytes[1..9].copy_from_slice(&self.bitmap_bytes.to_le_bytes());
        bytes[9..13].copy_from_slice(&self.hashes.to_le_bytes());
        bytes[13..45].copy_from_slice(&self.seed);
        let bloom =
            Bloom::from_bytes(bytes).map_err(|e| FilterError::InvalidLayer(e.to_owned()))?;
        Ok(Layer {
            bloom,
            capacity: self.capacity,
            count: 0,
        })
    }
}

/// A seed whose halves are equal makes both SipHash keys equal, and the filter's
/// double hashing then degenerates (about 20 times the target false-positive rate).
fn check_seed(seed: &[u8; 32]) -> Result<(), FilterError> {
    if seed[..16] == seed[16..] {
        return Err(FilterError::WeakSeed);
    }
    Ok(())
}

/// One change inside a delta. Changes apply in order.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub enum Change {
    /// Open a new, empty layer on top of a bucket (creating the bucket if needed).
    OpenLayer(LayerSpec),
    /// Add a revoked `jti` to the newest layer of the bucket of `exp`.
    ///
    /// `sub` and `reason` do not touch the filter: they ride along so that the
    /// publisher can rebuild its exact records (the authority's answers) from the
    /// stream alone after a crash.
    Add {
        /// The token's `jti`.
        jti: String,
        /// The token's `exp`, unix seconds.
        exp: u64,
        /// The token's `sub`, if the revoke call gave it.
        sub: Option<String>,
        /// Why, as given to the revoke call.
        reason: Option<String>,
    },
    /// Reject every token of `sub` issued before `not_before` (kept as the maximum).
    SubjectCutoff {
        /// The subject.
        sub: String,
        /// Unix seconds.
        not_before: u64,
    },
    /// Reject every token issued before `not_before` (kept as the maximum).
    GlobalCutoff {
        /// Unix seconds.
        not_before: u64,
    },
    /// Drop the buckets and cutoffs that can no longer match a live token at `now`.
    Expire {
        /// The publisher's clock, unix seconds.
        now: u64,
    },
}

/// A versioned list of changes: the unit of replication.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct Delta {
    /// The filter version this delta produces; it applies on top of `version - 1`.
    pub version: u64,
    /// When the publisher committed it, unix milliseconds (for lag figures only).
    pub committed_at_ms: u64,
    /// The changes, applied in order.
    pub changes: Vec<Change>,
}

/// A BLAKE3 digest of a filter's whole state.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Digest(pub [u8; 32]);

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Digest {
    /// The full digest in lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Debug)]
struct Layer {
    bloom: Bloom<[u8]>,
    capacity: u64,
    count: u64,
}

impl Clone for Layer {
    fn clone(&self) -> Self {
        // `Bloom<[u8]>` is not `Clone` (`[u8]` is unsized); its own bytes rebuild it.
        let bloom = Bloom::from_slice(self.bloom.as_slice())
            .unwrap_or_else(|_| unreachable!("a built layer serialises validly"));
        Layer {
            bloom,
            capacity: self.capacity,
            count: self.count,
        }
    }
}

impl Layer {
    fn bits(&self) -> &[u8] {
        &self.bloom.as_slice()[BLOOM_HEADER_LEN..]
    }

    fn stats(&self) -> LayerStats {
        let bits = self.bits();
        let set: u64 = bits.iter().map(|b| u64::from(b.count_ones())).sum();
        let total = bits.len() as u64 * 8;
        let fill = if total == 0 {
            0.0
        } else {
            set as f64 / total as f64
        };
        let hashes = self.bloom.number_of_hash_functions();
        LayerStats {
            capacity: self.capacity,
            entries: self.count,
            bits: total,
            hashes,
            fill_ratio: fill,
            estimated_fpr: fill.powi(i32::try_from(hashes).unwrap_or(i32::MAX)),
        }
    }
}

/// The layers holding the revoked tokens of one expiry bucket.
///
/// Layers are shared (`Arc`): cloning a filter copies no bitmap, and applying a delta
/// to a clone copies only the layers it writes to. Replicas clone-and-swap on every
/// batch of deltas, so this keeps their cost proportional to the change, not to the
/// filter.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    layers: Vec<Arc<Layer>>,
}

impl Bucket {
    #[inline]
    fn contains(&self, jti: &[u8]) -> bool {
        self.layers.iter().any(|l| l.bloom.check(jti))
    }

    fn entries(&self) -> u64 {
        saturating_sum(self.layers.iter().map(|l| l.count))
    }
}

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
}

/// The whole state of a filter as a plain value: what snapshots carry and what the
/// digest is computed over.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct FilterState {
    /// Parameters.
    pub params: FilterParams,
    /// Version.
    pub version: u64,
    /// Buckets in index order.
    pub buckets: Vec<BucketState>,
    /// Subject cutoffs in subject order.
    pub subject_cutoffs: Vec<(String, u64)>,
    /// The global cutoff.
    pub global_cutoff: Option<u64>,
}

/// One bucket inside a [`FilterState`].
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct BucketState {
    /// Bucket index (`exp / bucket_width`).
    pub index: u64,
    /// Layers, oldest first.
    pub layers: Vec<LayerState>,
}

/// One layer inside a [`BucketState`].
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct LayerState {
    /// Capacity.
    pub capacity: u64,
    /// Entries added.
    pub count: u64,
    /// The `bloomfilter` crate's own serialisation: header (hash count, seed) and bits.
    pub bloom: Vec<u8>,
}

/// [`FilterState`] borrowed from a filter: encodes to the same bytes.
#[derive(Encode)]
struct StateRef<'a> {
    params: &'a FilterParams,
    version: u64,
    buckets: Vec<BucketRef<'a>>,
    subject_cutoffs: Vec<(&'a str, u64)>,
    global_cutoff: Option<u64>,
}

#[derive(Encode)]
struct BucketRef<'a> {
    index: u64,
    layers: Vec<LayerRef<'a>>,
}

#[derive(Encode)]
struct LayerRef<'a> {
    capacity: u64,
    count: u64,
    bloom: &'a [u8],
}

/// A revocation filter at a version.
#[derive(Debug)]
pub struct Filter {
    params: FilterParams,
    version: u64,
    buckets: BTreeMap<u64, Bucket>,
    subject_cutoffs: BTreeMap<String, u64>,
    global_cutoff: Option<u64>,
    digest: OnceLock<Digest>,
}

impl Clone for Filter {
    fn clone(&self) -> Self {
        Filter {
            params: self.params.clone(),
            version: self.version,
            buckets: self.buckets.clone(),
            subject_cutoffs: self.subject_cutoffs.clone(),
            global_cutoff: self.global_cutoff,
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
    /// An empty filter at version 0.
    pub fn new(params: FilterParams) -> Result<Filter, FilterError> {
        params.validate()?;
        Ok(Filter {
            params,
            version: 0,
            buckets: BTreeMap::new(),
            subject_cutoffs: BTreeMap::new(),
            global_cutoff: None,
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

    /// Number of entries added to live buckets.
    pub fn live_entries(&self) -> u64 {
        saturating_sum(self.buckets.values().map(Bucket::entries))
    }

    /// Bytes held by Bloom bitmaps.
    pub fn bitmap_bytes(&self) -> u64 {
        self.buckets
            .values()
            .flat_map(|b| &b.layers)
            .map(|l| l.bloom.as_slice().len() as u64)
            .sum()
    }

    /// The subject cutoffs, by subject.
    pub fn subject_cutoffs(&self) -> &BTreeMap<String, u64> {
        &self.subject_cutoffs
    }

    /// The global cutoff, if any.
    pub fn global_cutoff(&self) -> Option<u64> {
        self.global_cutoff
    }

    /// Checks a token against cutoffs (exact) and the Bloom filter.
    ///
    /// This is the hot path of every service: no allocation, one bucket when `exp` is
    /// known.
    #[inline]
    pub fn lookup(&self, probe: &Probe<'_>) -> Lookup {
        if (self.global_cutoff.is_some() || !self.subject_cutoffs.is_empty())
            && let Some(hit) = self.cutoff_lookup(probe)
        {
            return hit;
        }
        if self.contains(probe.jti, probe.exp) {
            Lookup::FilterHit
        } else {
            Lookup::Clear
        }
    }

    /// Bloom lookup of a `jti`: in its `exp` bucket, or in every bucket without `exp`.
    #[inline]
    pub fn contains(&self, jti: &str, exp: Option<u64>) -> bool {
        let key = jti.as_bytes();
        match exp {
            Some(exp) => self
                .buckets
                .get(&self.params.bucket_of(exp))
                .is_some_and(|b| b.contains(key)),
            None => self.buckets.values().any(|b| b.contains(key)),
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
        let sub = probe.sub?;
        match self.subject_cutoffs.get(sub) {
            Some(&nb) if issued < nb => Some(Lookup::SubjectCutoff),
            _ => None,
        }
    }

    /// Applies `delta`, which must carry version `self.version() + 1`. On any error the
    /// filter is unchanged.
    pub fn apply(&mut self, delta: &Delta) -> Result<(), FilterError> {
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
        for change in &delta.changes {
            match change {
                Change::OpenLayer(spec) => {
                    overlay.open(spec.bucket, spec.capacity)?;
                    layers.push(spec.build()?);
                }
                Change::Add { jti, exp, .. } => {
                    check_jti(jti)?;
                    overlay.add(self.params.bucket_of(*exp))?;
                }
                Change::SubjectCutoff { sub, .. } => check_sub(sub)?,
                Change::GlobalCutoff { .. } => {}
                Change::Expire { now } => overlay.expire(self.params.first_live_bucket(*now)),
            }
        }
        let mut layers = layers.into_iter();
        for change in &delta.changes {
            match change {
                Change::OpenLayer(spec) => {
                    if let Some(layer) = layers.next() {
                        self.buckets
                            .entry(spec.bucket)
                            .or_default()
                            .layers
                            .push(Arc::new(layer));
                    }
                }
                Change::Add { jti, exp, .. } => {
                    let bucket = self.params.bucket_of(*exp);
                    if let Some(layer) = self
                        .buckets
                        .get_mut(&bucket)
                        .and_then(|b| b.layers.last_mut())
                    {
                        let layer = Arc::make_mut(layer);
                        layer.bloom.set(jti.as_bytes());
                        layer.count = layer.count.saturating_add(1);
                    }
                }
                Change::SubjectCutoff { sub, not_before } => {
                    let entry = self.subject_cutoffs.entry(sub.clone()).or_insert(0);
                    *entry = (*entry).max(*not_before);
                }
                Change::GlobalCutoff { not_before } => {
                    self.global_cutoff = Some(self.global_cutoff.unwrap_or(0).max(*not_before));
                }
                Change::Expire { now } => self.expire(*now),
            }
        }
        self.version = delta.version;
        self.digest = OnceLock::new();
        Ok(())
    }

    fn expire(&mut self, now: u64) {
        let first_live = self.params.first_live_bucket(now);
        self.buckets = self.buckets.split_off(&first_live);
        let params = &self.params;
        self.subject_cutoffs
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
        self.buckets.keys().next().is_some_and(|&b| b < first_live)
            || self
                .subject_cutoffs
                .values()
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

    /// The whole state as a plain value (copies the bitmaps).
    pub fn to_state(&self) -> FilterState {
        FilterState {
            params: self.params.clone(),
            version: self.version,
            buckets: self
                .buckets
                .iter()
                .map(|(&index, bucket)| BucketState {
                    index,
                    layers: bucket
                        .layers
                        .iter()
                        .map(|l| LayerState {
                            capacity: l.capacity,
                            count: l.count,
                            bloom: l.bloom.as_slice().to_vec(),
                        })
                        .collect(),
                })
                .collect(),
            subject_cutoffs: self
                .subject_cutoffs
                .iter()
                .map(|(s, &t)| (s.clone(), t))
                .collect(),
            global_cutoff: self.global_cutoff,
        }
    }

    /// Rebuilds a filter from a state, validating every part of it.
    pub fn from_state(state: FilterState) -> Result<Filter, FilterError> {
        let mut filter = Filter::new(state.params)?;
        filter.version = state.version;
        let mut previous = None;
        for bucket in state.buckets {
            if previous.is_some_and(|p| p >= bucket.index) {
                return Err(FilterError::InvalidState("buckets out of order".into()));
            }
            previous = Some(bucket.index);
            if bucket.layers.is_empty() || bucket.layers.len() > MAX_LAYERS_PER_BUCKET {
                return Err(FilterError::InvalidState("bucket layer count".into()));
            }
            let mut layers = Vec::with_capacity(bucket.layers.len());
            for layer in bucket.layers {
                layers.push(Arc::new(layer_from_state(layer)?));
            }
            filter.buckets.insert(bucket.index, Bucket { layers });
        }
        let mut previous: Option<String> = None;
        for (sub, not_before) in state.subject_cutoffs {
            check_sub(&sub)?;
            if previous.as_ref().is_some_and(|p| *p >= sub) {
                return Err(FilterError::InvalidState("cutoffs out of order".into()));
            }
            previous = Some(sub.clone());
            filter.subject_cutoffs.insert(sub, not_before);
        }
        filter.global_cutoff = state.global_cutoff;
        Ok(filter)
    }

    /// BLAKE3 over the canonical (bincode) encoding of [`Filter::to_state`], computed
    /// in place (no bitmap is copied) and cached until the next change.
    pub fn digest(&self) -> Digest {
        *self.digest.get_or_init(|| {
            let view = StateRef {
                params: &self.params,
                version: self.version,
                buckets: self
                    .buckets
                    .iter()
                    .map(|(&index, bucket)| BucketRef {
                        index,
                        layers: bucket
                            .layers
                            .iter()
                            .map(|l| LayerRef {
                                capacity: l.capacity,
                                count: l.count,
                                bloom: l.bloom.as_slice(),
                            })
                            .collect(),
                    })
                    .collect(),
                subject_cutoffs: self
                    .subject_cutoffs
                    .iter()
                    .map(|(s, &t)| (s.as_str(), t))
                    .collect(),
                global_cutoff: self.global_cutoff,
            };
            let mut hasher = blake3::Hasher::new();
            // Encoding into a hasher cannot fail: the writer never errors.
            let _ =
                bincode::encode_into_std_write(view, &mut hasher, crate::wire::bincode_config());
            Digest(*hasher.finalize().as_bytes())
        })
    }

    /// Figures for stats endpoints.
    pub fn stats(&self) -> FilterStats {
        let width = self.params.bucket_width;
        let buckets: Vec<BucketStats> = self
            .buckets
            .iter()
            .map(|(&index, bucket)| {
                let layers: Vec<LayerStats> = bucket.layers.iter().map(|l| l.stats()).collect();
                let miss: f64 = layers.iter().map(|l| 1.0 - l.estimated_fpr).product();
                BucketStats {
                    index,
                    exp_from: index.saturating_mul(width),
                    exp_until: index.saturating_add(1).saturating_mul(width),
                    entries: bucket.entries(),
                    bits: saturating_sum(layers.iter().map(|l| l.bits)),
                    estimated_fpr: 1.0 - miss,
                    layers,
                }
            })
            .collect();
        let live_entries = saturating_sum(buckets.iter().map(|b| b.entries));
        let bits = saturating_sum(buckets.iter().map(|b| b.bits));
        let miss_all: f64 = buckets.iter().map(|b| 1.0 - b.estimated_fpr).product();
        FilterStats {
            version: self.version,
            live_entries,
            bitmap_bytes: self.bitmap_bytes(),
            bits_per_entry: if live_entries == 0 {
                0.0
            } else {
                bits as f64 / live_entries as f64
            },
            optimal_bits_per_entry: optimal_bits_per_entry(self.params.target_fpr),
            target_fpr: self.params.target_fpr,
            estimated_fpr: buckets.iter().map(|b| b.estimated_fpr).fold(0.0, f64::max),
            estimated_fpr_without_exp: 1.0 - miss_all,
            subject_cutoffs: self.subject_cutoffs.len() as u64,
            global_cutoff: self.global_cutoff,
            buckets,
        }
    }
}

fn layer_from_state(layer: LayerState) -> Result<Layer, FilterError> {
    let header = layer
        .bloom
        .get(..BLOOM_HEADER_LEN)
        .ok_or_else(|| FilterError::InvalidLayer("bitmap shorter than its header".into()))?;
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&header[13..45]);
    let mut hashes = [0u8; 4];
    hashes.copy_from_slice(&header[9..13]);
    let spec = LayerSpec {
        bucket: 0,
        capacity: layer.capacity,
        bitmap_bytes: (layer.bloom.len() - BLOOM_HEADER_LEN) as u64,
        hashes: u32::from_le_bytes(hashes),
        seed,
    };
    spec.validate()?;
    let bloom =
        Bloom::from_bytes(layer.bloom).map_err(|e| FilterError::InvalidLayer(e.to_owned()))?;
    Ok(Layer {
        bloom,
        capacity: layer.capacity,
        count: layer.count,
    })
}

/// Counts come from snapshots: a sum saturates rather than overflows.
fn saturating_sum(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0, u64::saturating_add)
}

/// 1.44 * log2(1/eps): bits per entry of a perfectly sized Bloom filter.
pub fn optimal_bits_per_entry(fpr: f64) -> f64 {
    (1.0 / fpr).log2() / std::f64::consts::LN_2
}

/// Checks a `jti` for the limits every component shares.
pub fn check_jti(jti: &str) -> Result<(), FilterError> {
    if jti.is_empty() {
        return Err(FilterError::EmptyJti);
    }
    if jti.len() > MAX_JTI_LEN {
        return Err(FilterError::JtiTooLong(jti.len()));
    }
    Ok(())
}

/// Checks a `sub` for the limits every component shares.
pub fn check_sub(sub: &str) -> Result<(), FilterError> {
    if sub.is_empty() {
        return Err(FilterError::EmptySub);
    }
    if sub.len() > MAX_SUB_LEN {
        return Err(FilterError::SubTooLong(sub.len()));
    }
    Ok(())
}

/// What pass 1 of `apply` and [`Staging`] track per touched bucket.
#[derive(Clone, Copy, Debug)]
struct Tail {
    layers: usize,
    last_count: u64,
    last_capacity: u64,
}

/// Bucket tails as they would be after the changes seen so far, without copying the
/// filter.
#[derive(Debug)]
struct Overlay<'f> {
    filter: &'f Filter,
    touched: HashMap<u64, Tail>,
    expired_below: u64,
}

impl<'f> Overlay<'f> {
    fn new(filter: &'f Filter) -> Self {
        Overlay {
            filter,
            touched: HashMap::new(),
            expired_below: 0,
        }
    }

    fn tail(&self, bucket: u64) -> Option<Tail> {
        if let Some(t) = self.touched.get(&bucket) {
            return Some(*t);
        }
        if bucket < self.expired_below {
            return None;
        }
        let b = self.filter.buckets.get(&bucket)?;
        let last = b.layers.last()?;
        Some(Tail {
            layers: b.layers.len(),
            last_count: last.count,
            last_capacity: last.capacity,
        })
    }

    fn open(&mut self, bucket: u64, capacity: u64) -> Result<(), FilterError> {
        let layers = self.tail(bucket).map_or(0, |t| t.layers);
        if layers >= MAX_LAYERS_PER_BUCKET {
            return Err(FilterError::TooManyLayers(bucket));
        }
        self.touched.insert(
            bucket,
            Tail {
                layers: layers + 1,
                last_count: 0,
                last_capacity: capacity,
            },
        );
        Ok(())
    }

    fn add(&mut self, bucket: u64) -> Result<(), FilterError> {
        let mut tail = self.tail(bucket).ok_or(FilterError::NoLayer(bucket))?;
        tail.last_count = tail.last_count.saturating_add(1);
        self.touched.insert(bucket, tail);
        Ok(())
    }

    fn expire(&mut self, first_live: u64) {
        self.expired_below = self.expired_below.max(first_live);
        self.touched.retain(|&b, _| b >= first_live);
    }
}

/// Plans the next delta on the publisher: decides when a bucket needs a new layer and
/// records every change, without touching the filter.
///
/// ```
/// use revocast_core::{Delta, Filter, FilterParams};
///
/// let mut filter = Filter::new(FilterParams::default()).unwrap();
/// let mut staging = filter.stage();
/// let mut n = 0u8;
/// staging
///     .revoke("token-1", 1_767_225_600, || {
///         n += 1;
///         std::array::from_fn(|i| (i as u8).wrapping_mul(n)) // use real randomness
///     })
///     .unwrap();
/// let delta = Delta { version: filter.version() + 1, committed_at_ms: 0, changes: staging.finish() };
/// filter.apply(&delta).unwrap();
/// assert!(filter.contains("token-1", Some(1_767_225_600)));
/// ```
#[derive(Debug)]
pub struct Staging<'f> {
    filter: &'f Filter,
    overlay: Overlay<'f>,
    changes: Vec<Change>,
    capacity_hint: u64,
}

impl Staging<'_> {
    /// Sizes the first layer of buckets opened from now on for at least `entries`
    /// (the publisher passes what recent buckets ended up holding). Never below the
    /// filter's `initial_capacity`.
    pub fn capacity_hint(&mut self, entries: u64) -> &mut Self {
        self.capacity_hint = entries.min(u64::from(u32::MAX));
        self
    }

    /// Stages the revocation of `jti` expiring at `exp`. `seed` is called when a new
    /// layer opens and must return 32 random bytes.
    pub fn revoke(
        &mut self,
        jti: &str,
        exp: u64,
        seed: impl FnOnce() -> [u8; 32],
    ) -> Result<(), FilterError> {
        self.revoke_with(jti, exp, None, None, seed)
    }

    /// Like [`Staging::revoke`], carrying the token's `sub` and the reason along.
    pub fn revoke_with(
        &mut self,
        jti: &str,
        exp: u64,
        sub: Option<&str>,
        reason: Option<&str>,
        seed: impl FnOnce() -> [u8; 32],
    ) -> Result<(), FilterError> {
        check_jti(jti)?;
        if let Some(sub) = sub {
            check_sub(sub)?;
        }
        if let Some(reason) = reason
            && reason.len() > MAX_REASON_LEN
        {
            return Err(FilterError::ReasonTooLong(reason.len()));
        }
        let params = &self.filter.params;
        let bucket = params.bucket_of(exp);
        let tail = self.overlay.tail(bucket);
        let needs_layer = tail.is_none_or(|t| t.last_count >= t.last_capacity);
        if needs_layer {
            let (index, capacity) = match tail {
                None => (0, params.initial_capacity.max(self.capacity_hint)),
                // A first layer sized by the hint usually overflows by a little: the
                // first extra layer is a quarter of it, then layers double (C, C/4,
                // C/2, C, 2C, ...), so a small overflow costs few bits and a burst
                // still grows geometrically.
                Some(t) if t.layers == 1 => (1, (t.last_capacity / 4).max(1)),
                Some(t) => (t.layers, t.last_capacity.saturating_mul(2)),
            };
            let seed = seed();
            check_seed(&seed)?;
            let spec = LayerSpec::plan(params, bucket, index, capacity, seed);
            self.overlay.open(bucket, spec.capacity)?;
            self.changes.push(Change::OpenLayer(spec));
        }
        self.overlay.add(bucket)?;
        self.changes.push(Change::Add {
            jti: jti.to_owned(),
            exp,
            sub: sub.map(str::to_owned),
            reason: reason.map(str::to_owned),
        });
        Ok(())
    }

    /// Stages a subject cutoff.
    pub fn subject_cutoff(&mut self, sub: &str, not_before: u64) -> Result<(), FilterError> {
        check_sub(sub)?;
        self.changes.push(Change::SubjectCutoff {
            sub: sub.to_owned(),
            not_before,
        });
        Ok(())
    }

    /// Stages a global cutoff.
    pub fn global_cutoff(&mut self, not_before: u64) {
        self.changes.push(Change::GlobalCutoff { not_before });
    }

    /// Stages dropping what expired at `now`.
    pub fn expire(&mut self, now: u64) {
        self.overlay
            .expire(self.filter.params.first_live_bucket(now));
        self.changes.push(Change::Expire { now });
    }

    /// Number of changes staged so far.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Nothing staged yet.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The staged changes, to be wrapped in a [`Delta`].
    pub fn finish(self) -> Vec<Change> {
        self.changes
    }
}

/// Figures of one Bloom layer.
#[derive(Clone, Debug, Serialize)]
pub struct LayerStats {
    /// Entries the layer was sized for.
    pub capacity: u64,
    /// Entries added.
    pub entries: u64,
    /// Bitmap size in bits.
    pub bits: u64,
    /// Hash functions.
    pub hashes: u32,
    /// Share of bits set.
    pub fill_ratio: f64,
    /// `fill_ratio ^ hashes`.
    pub estimated_fpr: f64,
}

/// Figures of one expiry bucket.
#[derive(Clone, Debug, Serialize)]
pub struct BucketStats {
    /// Bucket index.
    pub index: u64,
    /// First `exp` of the bucket (unix seconds).
    pub exp_from: u64,
    /// End of the bucket (exclusive).
    pub exp_until: u64,
    /// Entries.
    pub entries: u64,
    /// Bits over all layers.
    pub bits: u64,
    /// False-positive rate of a check with an `exp` in this bucket.
    pub estimated_fpr: f64,
    /// Layers, oldest first.
    pub layers: Vec<LayerStats>,
}

/// Figures of a whole filter, for stats endpoints.
#[derive(Clone, Debug, Serialize)]
pub struct FilterStats {
    /// Version.
    pub version: u64,
    /// Entries in live buckets.
    pub live_entries: u64,
    /// Bytes of Bloom bitmaps (with their headers).
    pub bitmap_bytes: u64,
    /// Bits per live entry.
    pub bits_per_entry: f64,
    /// 1.44 * log2(1/target): the perfectly sized filter.
    pub optimal_bits_per_entry: f64,
    /// Target false-positive rate.
    pub target_fpr: f64,
    /// Worst bucket's estimated false-positive rate (a check with `exp`).
    pub estimated_fpr: f64,
    /// Estimated false-positive rate of a check without `exp` (all buckets).
    pub estimated_fpr_without_exp: f64,
    /// Number of subject cutoffs.
    pub subject_cutoffs: u64,
    /// Global cutoff.
    pub global_cutoff: Option<u64>,
    /// Per bucket.
    pub buckets: Vec<BucketStats>,
}
