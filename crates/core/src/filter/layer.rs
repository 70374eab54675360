//! One layer of a bucket: a blocked Bloom filter. [`LayerSpec`] plans it (size and
//! bits per key for a capacity and a false-positive rate), and [`Bucket`] stacks the
//! layers of one expiry bucket behind one hash seed.

use bincode::{Decode, Encode};

use super::block::{self, BLOCK_BYTES, Bitmap, MAX_HASHES, Mask};
use super::saturating_sum;
use super::state::LayerState;
use super::stats::LayerStats;
use crate::error::FilterError;

/// Largest bitmap of one layer, in bytes (256 MiB).
pub const MAX_LAYER_BYTES: u64 = 256 << 20;
/// Most blocks in one layer.
pub const MAX_BLOCKS: u32 = (MAX_LAYER_BYTES / BLOCK_BYTES as u64) as u32;

/// A layer about to be opened: everything a replica needs to build the same empty
/// layer without repeating the publisher's floating-point sizing.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct LayerSpec {
    /// Bucket index the layer belongs to.
    pub bucket: u64,
    /// The bucket's hash seed. The first layer of a bucket sets it; every later layer
    /// must carry the same one.
    pub seed: u64,
    /// Entries the layer takes before the next one opens.
    pub capacity: u64,
    /// Number of 64-byte blocks, `1..=`[`MAX_BLOCKS`].
    pub blocks: u32,
    /// Bits a key sets in its block, `1..=16`.
    pub hashes: u8,
}

impl LayerSpec {
    /// Sizes a layer for `capacity` entries at false-positive rate `fpr`: the fewest
    /// blocks, over every `k`, whose expected rate at full capacity is at most `fpr`.
    ///
    /// The expected rate counts the uneven load of blocks: a block receives a Poisson
    /// number of keys, and a crowded block answers "maybe" far more often than the
    /// average fill suggests (see [`expected_fpr`]).
    pub fn plan(bucket: u64, seed: u64, capacity: u64, fpr: f64) -> LayerSpec {
        let capacity = capacity.max(1);
        // A classical Bloom filter needs 1.44 log2(1/fpr) bits per key with
        // k = log2(1/fpr) hashes; a blocked one a little more bits, so no block can
        // take more than twice that load.
        let classical = (1.0 / fpr).log2() / std::f64::consts::LN_2;
        let most = (2.0 * 512.0 / classical.max(1.0)).min(MAX_LOAD);
        // The largest load (keys per block) that keeps the rate with `k` bits per key,
        // by bisection: the rate grows with the load.
        let load = |k: u8| {
            let (mut lo, mut hi) = (0.0f64, most);
            for _ in 0..30 {
                let mid = (lo + hi) / 2.0;
                if load_fpr(mid, k) <= fpr {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        // The best `k` (the largest load): climb from the classical one. The load is
        // unimodal in `k`; each step costs one bisection.
        let start = ((classical * std::f64::consts::LN_2).round() as u8).clamp(1, MAX_HASHES);
        let (mut k, mut best) = (start, load(start));
        for step in [1i8, -1] {
            loop {
                let next = k.saturating_add_signed(step);
                if !(1..=MAX_HASHES).contains(&next) || next == k {
                    break;
                }
                let l = load(next);
                if l <= best {
                    break;
                }
                (k, best) = (next, l);
            }
        }
        let blocks = if best > 0.0 {
            (capacity as f64 / best).ceil() as u64
        } else {
            u64::MAX
        };
        LayerSpec {
            bucket,
            seed,
            capacity,
            blocks: blocks.clamp(1, u64::from(MAX_BLOCKS)) as u32,
            hashes: k,
        }
    }

    pub(super) fn validate(&self) -> Result<(), FilterError> {
        let bad = |why| Err(FilterError::InvalidLayer(why));
        if self.capacity == 0 {
            return bad("capacity is 0");
        }
        if self.blocks == 0 || self.blocks > MAX_BLOCKS {
            return bad("block count out of range");
        }
        if self.hashes == 0 || self.hashes > MAX_HASHES {
            return bad("bits per key out of range");
        }
        Ok(())
    }

    /// The layer's false-positive rate once it holds `capacity` entries.
    pub fn design_fpr(&self) -> f64 {
        expected_fpr(self.capacity, self.blocks, self.hashes)
    }

    pub(super) fn build(&self) -> Result<Layer, FilterError> {
        self.validate()?;
        Ok(Layer {
            bitmap: Bitmap::zeroed(self.blocks as usize),
            hashes: self.hashes,
            capacity: self.capacity,
            count: 0,
            design_fpr: self.design_fpr(),
        })
    }
}

/// Above this many keys per 512-bit block every bit is set whatever `k`: the rate is 1.
/// (It also keeps `e^-load` below, where the sum starts, far from underflow.)
const MAX_LOAD: f64 = 600.0;

/// The false-positive rate of a layer of `blocks` blocks holding `entries` keys that
/// set `hashes` bits each, in expectation.
pub fn expected_fpr(entries: u64, blocks: u32, hashes: u8) -> f64 {
    if blocks == 0 {
        return 1.0;
    }
    load_fpr(entries as f64 / f64::from(blocks), hashes)
}

/// The rate at `load` keys per block on average. A block holds `j` keys with
/// probability `Poisson(load)(j)`; with `j` keys, a word that takes `m` bits of each
/// key has each of its bits set with probability `1 - (63/64)^(j m)`, and an outside
/// key is found when all of its bits are set. The terms are computed by recurrence
/// (the publisher plans a layer with a few thousand evaluations).
fn load_fpr(load: f64, hashes: u8) -> f64 {
    if load <= 0.0 {
        return 0.0;
    }
    if load >= MAX_LOAD {
        return 1.0;
    }
    let k = u32::from(hashes);
    // Words taking two bits of each key, and words taking one.
    let two = k.saturating_sub(8);
    let one = k.min(8) - two;
    let q = 63.0f64 / 64.0;
    let last = (load + 12.0 * load.sqrt() + 20.0).ceil() as u32;
    let (mut p, mut q1, mut q2) = ((-load).exp(), 1.0f64, 1.0f64);
    let mut total = 0.0;
    for j in 0..=last {
        if j > 0 {
            p *= load / f64::from(j);
            q1 *= q;
            q2 *= q * q;
        }
        total += p * pow(1.0 - q1, one) * pow(1.0 - q2, 2 * two);
    }
    total.min(1.0)
}

/// `x^n` for the small `n` above, by squaring (`powi` is a library call per use).
#[inline]
fn pow(mut x: f64, mut n: u32) -> f64 {
    let mut out = 1.0;
    while n > 0 {
        if n & 1 == 1 {
            out *= x;
        }
        x *= x;
        n >>= 1;
    }
    out
}

/// One layer: cheap to clone (the bitmap is shared, see [`Bitmap`]).
#[derive(Clone, Debug)]
pub(super) struct Layer {
    pub(super) bitmap: Bitmap,
    pub(super) hashes: u8,
    pub(super) capacity: u64,
    pub(super) count: u64,
    /// [`LayerSpec::design_fpr`], kept for planning the bucket's next layer.
    pub(super) design_fpr: f64,
}

impl Layer {
    /// Whether this layer holds the key whose hash in the bucket is `hash`.
    #[inline(always)]
    pub(super) fn holds(&self, hash: u64) -> bool {
        self.bitmap.block(hash).holds(hash, self.hashes)
    }

    pub(super) fn insert(&mut self, hash: u64) {
        self.bitmap.insert(hash, &Mask::new(hash, self.hashes));
        self.count = self.count.saturating_add(1);
    }

    pub(super) fn stats(&self) -> LayerStats {
        let total = self.bitmap.byte_len() as u64 * 8;
        let set = self.bitmap.count_ones();
        LayerStats {
            capacity: self.capacity,
            entries: self.count,
            bits: total,
            hashes: self.hashes,
            fill_ratio: set as f64 / total.max(1) as f64,
            estimated_fpr: self.bitmap.false_positive_rate(self.hashes),
        }
    }

    pub(super) fn from_state(layer: LayerState) -> Result<Layer, FilterError> {
        let spec = LayerSpec {
            bucket: 0,
            seed: 0,
            capacity: layer.capacity,
            blocks: u32::try_from(layer.bitmap.blocks()).unwrap_or(u32::MAX),
            hashes: layer.hashes,
        };
        spec.validate()?;
        Ok(Layer {
            bitmap: layer.bitmap,
            hashes: layer.hashes,
            capacity: layer.capacity,
            count: layer.count,
            design_fpr: spec.design_fpr(),
        })
    }
}

/// The layers holding the revoked tokens of one expiry bucket, and the seed that
/// places a key's bits in all of them.
///
/// Bitmaps are shared: cloning a filter copies no bitmap, and applying a delta to a
/// clone copies only the bitmaps it writes to. Replicas clone-and-swap on every batch
/// of deltas, so this keeps their cost proportional to the change, not to the filter.
/// The layers themselves sit in the bucket's own vector: a check goes from the bucket
/// to the layer's blocks in two reads, not three.
#[derive(Clone, Debug)]
pub struct Bucket {
    pub(super) seed: u64,
    pub(super) layers: Vec<Layer>,
}

impl Bucket {
    pub(super) fn new(seed: u64) -> Bucket {
        Bucket {
            seed,
            layers: Vec::new(),
        }
    }

    /// Where the key (see [`block::key`]) of a `jti` is in this bucket's layers.
    #[inline(always)]
    pub(super) fn hash(&self, key: u64) -> u64 {
        block::in_bucket(key, self.seed)
    }

    /// Whether a layer of this bucket holds the key.
    #[inline(always)]
    pub(super) fn contains(&self, key: u64) -> bool {
        self.contains_hash(self.hash(key))
    }

    /// A bucket of one layer, as most are, is tested inline; one with several
    /// computes the key's bit positions once for all its layers (out of line).
    #[inline(always)]
    pub(super) fn contains_hash(&self, hash: u64) -> bool {
        match self.layers.as_slice() {
            [only] => only.holds(hash),
            [] => false,
            layers => in_any(layers, hash),
        }
    }

    pub(super) fn entries(&self) -> u64 {
        saturating_sum(self.layers.iter().map(|l| l.count))
    }

    pub(super) fn capacity(&self) -> u64 {
        saturating_sum(self.layers.iter().map(|l| l.capacity))
    }
}

/// Whether any of `layers` (a bucket's, when it has several) holds the key.
#[inline(never)]
fn in_any(layers: &[Layer], hash: u64) -> bool {
    let at = block::Positions::new(hash);
    layers
        .iter()
        .any(|layer| layer.bitmap.block(hash).holds_at(&at, layer.hashes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_layers_meet_their_rate_with_few_bits() {
        for (fpr, most_bits) in [(1e-2, 10.5), (1e-3, 16.0), (5e-4, 18.0), (1e-4, 23.0)] {
            let spec = LayerSpec::plan(0, 1, 100_000, fpr);
            let bits = f64::from(spec.blocks) * 512.0 / 100_000.0;
            assert!(expected_fpr(100_000, spec.blocks, spec.hashes) <= fpr);
            assert!(bits <= most_bits, "{fpr}: {bits} bits per entry");
            // One block fewer would miss the rate, for the chosen k.
            assert!(expected_fpr(100_000, spec.blocks - 1, spec.hashes) > fpr * 0.999);
        }
    }

    /// The climb over `k` finds what trying every `k` finds.
    #[test]
    fn the_planned_k_is_the_best_k() {
        for fpr in [0.3, 0.05, 1e-2, 3e-3, 1e-3, 4e-4, 1e-4, 3e-5, 1e-6, 1e-9] {
            let spec = LayerSpec::plan(0, 1, 1_000_000, fpr);
            for k in 1..=MAX_HASHES {
                // The fewest blocks that meet the rate with this k.
                let (mut lo, mut hi) = (1u32, MAX_BLOCKS);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if expected_fpr(1_000_000, mid, k) <= fpr {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                assert!(
                    u64::from(lo) >= u64::from(spec.blocks) * 999 / 1000,
                    "fpr {fpr}: k={k} needs {lo} blocks, the plan (k={}) {}",
                    spec.hashes,
                    spec.blocks
                );
            }
        }
    }

    #[test]
    fn extreme_plans_stay_in_range() {
        let tiny = LayerSpec::plan(0, 1, 1, 0.4);
        assert_eq!(tiny.blocks, 1);
        let huge = LayerSpec::plan(0, 1, u64::from(u32::MAX), f64::MIN_POSITIVE);
        assert_eq!(huge.blocks, MAX_BLOCKS);
        assert!(huge.validate().is_ok() && tiny.validate().is_ok());
    }
}
