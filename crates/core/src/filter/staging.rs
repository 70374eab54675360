//! [`Staging`], which plans the next delta on the publisher, and the overlay that
//! `Filter::apply` validates a delta against before it changes anything.

use std::collections::HashMap;

use super::Filter;
use super::delta::Change;
use super::layer::LayerSpec;
use super::params::{
    FilterParams, MAX_LAYERS_PER_BUCKET, MAX_REASON_LEN, check_jti, check_sid, check_sub,
};
use crate::error::FilterError;

/// How buckets grow: the size and false-positive rate of each layer.
///
/// A bucket's false-positive rate is at most the sum of its layers' rates, so the
/// layers share the target. The first layer takes a share of it; every later layer
/// takes half of what the layers before it leave (their rates at full capacity, from
/// their sizes), so the sum stays below the target however many layers open.
///
/// - A first layer **sized by the publisher's hint** (the entries its live buckets
///   hold, when that is more than `initial_capacity`) is expected to hold the whole
///   bucket: it takes most of the target ([`growth::HINTED_SHARE`]). Steady traffic
///   overflows it by a little, if at all, so its first overflow layer is small (a
///   [`growth::SMALL_OVERFLOW`]th of it); a bucket that outgrows that was hinted
///   too small, and each further layer is [`growth::HINTED_GROWTH`] times the
///   bucket's capacity so far.
/// - A first layer **without a hint** (`initial_capacity`) says nothing about the
///   bucket's size: it takes a small share ([`growth::UNHINTED_SHARE`]) and leaves
///   most of the target to the layers that growth brings, each
///   [`growth::UNHINTED_GROWTH`] times the bucket's capacity so far: a bucket 25 times
///   larger than its first layer ends with three layers.
///
/// Whatever the layer count, a check hashes its `jti` once.
pub mod growth {
    /// Share of the target rate of a first layer sized by the hint.
    pub const HINTED_SHARE: f64 = 0.85;
    /// Share of the target rate of a first layer opened without a hint.
    pub const UNHINTED_SHARE: f64 = 0.25;
    /// The first overflow of a hinted layer is this many times smaller than it.
    pub const SMALL_OVERFLOW: u64 = 16;
    /// Later layers of a hinted bucket: this many times its capacity so far.
    pub const HINTED_GROWTH: u64 = 3;
    /// Later layers of a bucket without a hint: this many times its capacity so far.
    pub const UNHINTED_GROWTH: u64 = 4;
}

/// What pass 1 of `apply` and [`Staging`] track per touched bucket.
#[derive(Clone, Copy, Debug)]
struct Tail {
    seed: u64,
    layers: usize,
    first_capacity: u64,
    total_capacity: u64,
    last_count: u64,
    last_capacity: u64,
    /// Sum of the layers' false-positive rates at full capacity.
    design_fpr: f64,
    /// The first layer's rate at full capacity.
    first_fpr: f64,
}

impl Tail {
    /// Capacity and false-positive rate of the next layer of this bucket, or of its
    /// first layer when `tail` is `None`.
    fn next_layer(tail: Option<&Tail>, params: &FilterParams, hint: u64) -> (u64, f64) {
        let target = params.target_fpr;
        let Some(t) = tail else {
            let share = if hint > params.initial_capacity {
                growth::HINTED_SHARE
            } else {
                growth::UNHINTED_SHARE
            };
            return (params.initial_capacity.max(hint), target * share);
        };
        let fpr = ((target - t.design_fpr) / 2.0).max(f64::MIN_POSITIVE);
        // A first layer that took most of the target was sized by a hint (the
        // bucket's layers do not record it otherwise).
        let hinted = t.first_fpr > target / 2.0;
        let capacity = match (hinted, t.layers) {
            (true, 1) => t.first_capacity / growth::SMALL_OVERFLOW,
            (true, _) => t.total_capacity.saturating_mul(growth::HINTED_GROWTH),
            (false, _) => t.total_capacity.saturating_mul(growth::UNHINTED_GROWTH),
        };
        (capacity.clamp(1, u64::from(u32::MAX)), fpr)
    }
}

/// Bucket tails as they would be after the changes seen so far, without copying the
/// filter.
#[derive(Debug)]
pub(super) struct Overlay<'f> {
    filter: &'f Filter,
    touched: HashMap<u64, Tail>,
    expired_below: u64,
}

impl<'f> Overlay<'f> {
    pub(super) fn new(filter: &'f Filter) -> Self {
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
        let b = self.filter.buckets.get(bucket)?;
        let (first, last) = (b.layers.first()?, b.layers.last()?);
        Some(Tail {
            seed: b.seed,
            layers: b.layers.len(),
            first_capacity: first.capacity,
            total_capacity: b.capacity(),
            last_count: last.count,
            last_capacity: last.capacity,
            design_fpr: b.layers.iter().map(|l| l.design_fpr).sum(),
            first_fpr: first.design_fpr,
        })
    }

    /// Opens the layer `spec` describes. Later layers of a bucket must carry the seed
    /// of its first.
    pub(super) fn open(&mut self, spec: &LayerSpec, design_fpr: f64) -> Result<(), FilterError> {
        let tail = match self.tail(spec.bucket) {
            Some(t) if t.seed != spec.seed => {
                return Err(FilterError::InvalidLayer(
                    "seed differs from the bucket's first layer",
                ));
            }
            Some(t) if t.layers >= MAX_LAYERS_PER_BUCKET => {
                return Err(FilterError::TooManyLayers(spec.bucket));
            }
            Some(t) => Tail {
                layers: t.layers + 1,
                total_capacity: t.total_capacity.saturating_add(spec.capacity),
                last_count: 0,
                last_capacity: spec.capacity,
                design_fpr: t.design_fpr + design_fpr,
                ..t
            },
            None => Tail {
                seed: spec.seed,
                layers: 1,
                first_capacity: spec.capacity,
                total_capacity: spec.capacity,
                last_count: 0,
                last_capacity: spec.capacity,
                design_fpr,
                first_fpr: design_fpr,
            },
        };
        self.touched.insert(spec.bucket, tail);
        Ok(())
    }

    pub(super) fn add(&mut self, bucket: u64) -> Result<(), FilterError> {
        let mut tail = self.tail(bucket).ok_or(FilterError::NoLayer(bucket))?;
        tail.last_count = tail.last_count.saturating_add(1);
        self.touched.insert(bucket, tail);
        Ok(())
    }

    pub(super) fn expire(&mut self, first_live: u64) {
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
/// staging
///     .revoke("token-1", 1_767_225_600, || 0x243F_6A88_85A3_08D3) // use real randomness
///     .unwrap();
/// let delta = Delta {
///     epoch: filter.epoch(),
///     version: filter.version() + 1,
///     committed_at_ms: 0,
///     changes: staging.finish(),
/// };
/// filter.apply(&delta).unwrap();
/// assert!(filter.contains("token-1", Some(1_767_225_600)));
/// ```
#[derive(Debug)]
pub struct Staging<'f> {
    pub(super) filter: &'f Filter,
    pub(super) overlay: Overlay<'f>,
    pub(super) changes: Vec<Change>,
    pub(super) capacity_hint: u64,
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
    /// bucket opens and must return a random 64-bit seed for its hash.
    pub fn revoke(
        &mut self,
        jti: &str,
        exp: u64,
        seed: impl FnOnce() -> u64,
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
        seed: impl FnOnce() -> u64,
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
            let (capacity, fpr) = Tail::next_layer(tail.as_ref(), params, self.capacity_hint);
            let seed = tail.map_or_else(seed, |t| t.seed);
            let spec = LayerSpec::plan(bucket, seed, capacity, fpr);
            self.overlay.open(&spec, spec.design_fpr())?;
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

    /// Stages a session cutoff: every token carrying `sid` issued before `not_before`.
    pub fn session_cutoff(&mut self, sid: &str, not_before: u64) -> Result<(), FilterError> {
        check_sid(sid)?;
        self.changes.push(Change::SessionCutoff {
            sid: sid.to_owned(),
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

    /// The staged changes, to be wrapped in a [`Delta`](super::Delta).
    pub fn finish(self) -> Vec<Change> {
        self.changes
    }
}
