//! Figures of a filter for stats endpoints: [`FilterStats`], [`BucketStats`],
//! [`LayerStats`].

use serde::Serialize;

use super::{Filter, saturating_sum};

impl Filter {
    /// Figures for stats endpoints.
    pub fn stats(&self) -> FilterStats {
        let width = self.params.bucket_width;
        let buckets: Vec<BucketStats> = self
            .buckets
            .iter()
            .map(|(index, bucket)| {
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
            session_cutoffs: self.session_cutoffs.len() as u64,
            global_cutoff: self.global_cutoff,
            buckets,
        }
    }
}

/// 1.44 * log2(1/eps): bits per entry of a perfectly sized Bloom filter.
pub fn optimal_bits_per_entry(fpr: f64) -> f64 {
    (1.0 / fpr).log2() / std::f64::consts::LN_2
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
    /// Bits a key sets in its block.
    pub hashes: u8,
    /// Share of bits set.
    pub fill_ratio: f64,
    /// False-positive rate of the layer as it is: per block, the share of set bits in
    /// each word to the power of the key's bits in that word, averaged over blocks.
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
    /// Bytes of Bloom bitmaps.
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
    /// Number of session cutoffs.
    pub session_cutoffs: u64,
    /// Global cutoff.
    pub global_cutoff: Option<u64>,
    /// Per bucket.
    pub buckets: Vec<BucketStats>,
}
