//! [`FilterState`], the whole filter as a plain value (what snapshots carry), and
//! [`Digest`], which proves two replicas equal.

use std::sync::Arc;

use bincode::{Decode, Encode};

use super::Filter;
use super::block::Bitmap;
use super::layer::{Bucket, Layer};
use super::params::{FilterParams, MAX_LAYERS_PER_BUCKET, check_sid, check_sub};
use crate::error::FilterError;
use crate::rollover::{SignedRollover, check_chain};

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

/// The whole state of a filter as a plain value: what snapshots carry and what the
/// digest is computed over.
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct FilterState {
    /// Parameters.
    pub params: FilterParams,
    /// The namespace's epoch (see [`Filter::epoch`]).
    pub epoch: u64,
    /// Version.
    pub version: u64,
    /// Buckets in index order.
    pub buckets: Vec<BucketState>,
    /// Subject cutoffs in subject order.
    pub subject_cutoffs: Vec<(String, u64)>,
    /// Session cutoffs in session id order.
    pub session_cutoffs: Vec<(String, u64)>,
    /// The global cutoff.
    pub global_cutoff: Option<u64>,
    /// The epoch's key rollovers, in order (see [`crate::rollover`]).
    pub key_chain: Vec<SignedRollover>,
}

/// One bucket inside a [`FilterState`].
#[derive(Clone, Debug, PartialEq, Encode, Decode)]
pub struct BucketState {
    /// Bucket index (`exp / bucket_width`).
    pub index: u64,
    /// The seed of the bucket's hash.
    pub seed: u64,
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
    /// Bits a key sets in its block.
    pub hashes: u8,
    /// The blocks.
    pub bitmap: Bitmap,
}

/// [`FilterState`] borrowed from a filter: encodes to the same bytes.
#[derive(Encode)]
struct StateRef<'a> {
    params: &'a FilterParams,
    epoch: u64,
    version: u64,
    buckets: Vec<BucketRef<'a>>,
    subject_cutoffs: Vec<(&'a str, u64)>,
    session_cutoffs: Vec<(&'a str, u64)>,
    global_cutoff: Option<u64>,
    key_chain: &'a [SignedRollover],
}

#[derive(Encode)]
struct BucketRef<'a> {
    index: u64,
    seed: u64,
    layers: Vec<LayerRef<'a>>,
}

#[derive(Encode)]
struct LayerRef<'a> {
    capacity: u64,
    count: u64,
    hashes: u8,
    bitmap: &'a Bitmap,
}

impl Filter {
    /// The whole state as a plain value (its bitmaps shared with the filter, not copied).
    pub fn to_state(&self) -> FilterState {
        FilterState {
            params: self.params.clone(),
            epoch: self.epoch,
            version: self.version,
            buckets: self
                .buckets
                .iter()
                .map(|(index, bucket)| BucketState {
                    index,
                    seed: bucket.seed,
                    layers: bucket
                        .layers
                        .iter()
                        .map(|l| LayerState {
                            capacity: l.capacity,
                            count: l.count,
                            hashes: l.hashes,
                            bitmap: l.bitmap.clone(),
                        })
                        .collect(),
                })
                .collect(),
            subject_cutoffs: self
                .subject_cutoffs
                .iter()
                .map(|(s, &t)| (s.clone(), t))
                .collect(),
            session_cutoffs: self
                .session_cutoffs
                .iter()
                .map(|(s, &t)| (s.clone(), t))
                .collect(),
            global_cutoff: self.global_cutoff,
            key_chain: self.key_chain.to_vec(),
        }
    }

    /// Rebuilds a filter from a state, validating every part of it.
    pub fn from_state(state: FilterState) -> Result<Filter, FilterError> {
        let mut filter = Filter::new(state.params)?;
        filter.epoch = state.epoch;
        filter.version = state.version;
        for bucket in state.buckets {
            if bucket.layers.is_empty() || bucket.layers.len() > MAX_LAYERS_PER_BUCKET {
                return Err(FilterError::InvalidState("bucket layer count"));
            }
            let mut layers = Vec::with_capacity(bucket.layers.len());
            for layer in bucket.layers {
                layers.push(Layer::from_state(layer)?);
            }
            let seed = bucket.seed;
            if !filter
                .buckets
                .push_above(bucket.index, Bucket { seed, layers })
            {
                return Err(FilterError::InvalidState("buckets out of order"));
            }
        }
        let mut previous: Option<String> = None;
        for (sub, not_before) in state.subject_cutoffs {
            check_sub(&sub)?;
            if previous.as_ref().is_some_and(|p| *p >= sub) {
                return Err(FilterError::InvalidState("cutoffs out of order"));
            }
            previous = Some(sub.clone());
            filter.subject_cutoffs.insert(sub, not_before);
        }
        let mut previous: Option<String> = None;
        for (sid, not_before) in state.session_cutoffs {
            check_sid(&sid)?;
            if previous.as_ref().is_some_and(|p| *p >= sid) {
                return Err(FilterError::InvalidState("session cutoffs out of order"));
            }
            previous = Some(sid.clone());
            filter.session_cutoffs.insert(sid, not_before);
        }
        filter.global_cutoff = state.global_cutoff;
        check_chain(&state.key_chain, state.epoch, state.version)?;
        filter.key_chain = Arc::new(state.key_chain);
        Ok(filter)
    }

    /// BLAKE3 over the canonical (bincode) encoding of [`Filter::to_state`], computed
    /// in place (no bitmap is copied) and cached until the next change.
    pub fn digest(&self) -> Digest {
        *self.digest.get_or_init(|| {
            let view = StateRef {
                params: &self.params,
                epoch: self.epoch,
                version: self.version,
                buckets: self
                    .buckets
                    .iter()
                    .map(|(index, bucket)| BucketRef {
                        index,
                        seed: bucket.seed,
                        layers: bucket
                            .layers
                            .iter()
                            .map(|l| LayerRef {
                                capacity: l.capacity,
                                count: l.count,
                                hashes: l.hashes,
                                bitmap: &l.bitmap,
                            })
                            .collect(),
                    })
                    .collect(),
                subject_cutoffs: self
                    .subject_cutoffs
                    .iter()
                    .map(|(s, &t)| (s.as_str(), t))
                    .collect(),
                session_cutoffs: self
                    .session_cutoffs
                    .iter()
                    .map(|(s, &t)| (s.as_str(), t))
                    .collect(),
                global_cutoff: self.global_cutoff,
                key_chain: &self.key_chain,
            };
            let mut hasher = blake3::Hasher::new();
            {
                // Large writes let BLAKE3 hash many chunks at once.
                let mut writer = std::io::BufWriter::with_capacity(1 << 16, &mut hasher);
                // Encoding into a hasher cannot fail: the writer never errors.
                let _ = bincode::encode_into_std_write(
                    view,
                    &mut writer,
                    crate::codec::bincode_config(),
                );
                let _ = std::io::Write::flush(&mut writer);
            }
            Digest(*hasher.finalize().as_bytes())
        })
    }
}
