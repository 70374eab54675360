//! The bit positions of the blocked Bloom filter, exactly as `docs/FORMAT.md` specifies
//! them: one hash of the `jti` per check, one 64-byte block per layer.
//!
//! - `key = XXH3-64(jti bytes)`, once per check; in a bucket, `hash = key ^ seed`
//!   with the bucket's seed, for every layer of the bucket.
//! - The block: `((hash >> 32) * blocks) >> 32` (multiply-shift, no division).
//! - The bits: with `x = hash as u32`, bit `i` (for `i < k`) is bit
//!   `(x * SALT[i]) >> 26` (32-bit wrapping product) of word `i % 8` of the block, a
//!   word being 8 bytes read little-endian. Words get one bit each, two when `k > 8`.
//!
//! Nothing here depends on the platform: the hash is specified byte for byte, the
//! arithmetic is on fixed-width integers, and bitmaps are stored in little-endian
//! words, so a replica on any machine (or in any language) sets and tests the same bits.

use std::sync::Arc;

use bincode::de::read::Reader as _;
use bincode::enc::write::Writer as _;
use bincode::{Decode, Encode};

/// Bytes in a block: one cache line.
pub const BLOCK_BYTES: usize = 64;
/// Words (64-bit) in a block.
const WORDS: usize = 8;
/// Most bits a key sets in a block (two per word).
pub const MAX_HASHES: u8 = 16;

/// Odd multipliers that turn the low 32 bits of the hash into one 6-bit position per
/// bit: the upper 32 bits of `splitmix64(i + 1)`, made odd (see `docs/FORMAT.md`).
const SALT: [u32; MAX_HASHES as usize] = [
    0x910A_2DED,
    0x9758_35DF,
    0x1D0B_14E5,
    0x6E73_E373,
    0x6303_3B0D,
    0xBD64_A5D9,
    0x63CB_E1E5,
    0x9E56_51B1,
    0xAEAF_52FF,
    0x0887_12BF,
    0x50F5_647D,
    0x943F_F9FD,
    0xC4CA_37B7,
    0x6AA9_D615,
    0x875B_9307,
    0x5DE1_86DD,
];

/// The one hash of a `jti` a check computes (XXH3-64, seed 0). A bucket mixes its
/// own seed in with [`in_bucket`].
#[inline]
pub(crate) fn key(jti: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(jti)
}

/// The hash of a key in a bucket with `seed`: where its bits are in every layer of
/// the bucket.
#[inline(always)]
pub(crate) fn in_bucket(key: u64, seed: u64) -> u64 {
    key ^ seed
}

/// A key's bits inside whichever block it lands in: word `w` of the block must hold
/// every bit of `mask[w]`. Computed once per check and reused for every layer that
/// has the same `k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mask([u64; WORDS]);

impl Mask {
    /// The mask of `k` bits (1..=16) for `hash`.
    #[inline(always)]
    pub(crate) fn new(hash: u64, k: u8) -> Mask {
        let x = hash as u32;
        let bit = |i: usize| 1u64 << (x.wrapping_mul(SALT[i]) >> 26);
        // What the planner picks almost always, written out word by word.
        let one = [
            bit(0),
            bit(1),
            bit(2),
            bit(3),
            bit(4),
            bit(5),
            bit(6),
            bit(7),
        ];
        if k == 8 {
            return Mask(one);
        }
        let k = usize::from(k);
        let mut mask = [0u64; WORDS];
        for w in 0..WORDS {
            let first = if w < k { one[w] } else { 0 };
            let second = if w + WORDS < k { bit(w + WORDS) } else { 0 };
            mask[w] = first | second;
        }
        Mask(mask)
    }
}

/// A key's bit positions inside whichever block a layer selects: bit `i` at
/// `(x * SALT[i]) >> 26` of word `i % 8`, for every `i` a layer may use. The layers of
/// a bucket share the hash, so a bucket with several layers computes them once per
/// check rather than once per layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Positions([u32; MAX_HASHES as usize]);

impl Positions {
    #[inline]
    pub(crate) fn new(hash: u64) -> Positions {
        let x = hash as u32;
        Positions(SALT.map(|salt| x.wrapping_mul(salt) >> 26))
    }
}

/// Which block of a layer of `blocks` blocks a hash selects.
#[inline]
pub(crate) fn block_index(hash: u64, blocks: u32) -> usize {
    (((hash >> 32) * u64::from(blocks)) >> 32) as usize
}

/// `$this.$test::<K>($arg)` for the `K` equal to `$k`, in code written for each `k`
/// (1 to 16); `true` for any other `k`. No layer has another `k`
/// (`LayerSpec::validate`), and "maybe" is the answer that cannot let a revoked token
/// through.
macro_rules! for_each_k {
    ($k:expr, $this:ident . $test:ident ($arg:expr)) => {
        match $k {
            1 => $this.$test::<1>($arg),
            2 => $this.$test::<2>($arg),
            3 => $this.$test::<3>($arg),
            4 => $this.$test::<4>($arg),
            5 => $this.$test::<5>($arg),
            6 => $this.$test::<6>($arg),
            7 => $this.$test::<7>($arg),
            8 => $this.$test::<8>($arg),
            9 => $this.$test::<9>($arg),
            10 => $this.$test::<10>($arg),
            11 => $this.$test::<11>($arg),
            12 => $this.$test::<12>($arg),
            13 => $this.$test::<13>($arg),
            14 => $this.$test::<14>($arg),
            15 => $this.$test::<15>($arg),
            16 => $this.$test::<16>($arg),
            _ => true,
        }
    };
}

/// One cache line of bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Block([u64; WORDS]);

impl Block {
    /// Whether every bit a key with `hash` sets (`k` of them) is set here. The test
    /// reads the bits in place, without building a mask and without a branch per
    /// bit, in code written for each `k`: for the `k = 8` the planner almost always
    /// picks, eight multiplies, shifts and ANDs inlined into the caller; any other `k`
    /// takes one call and one jump.
    #[inline(always)]
    pub(crate) fn holds(&self, hash: u64, k: u8) -> bool {
        if k == 8 {
            self.holds_k::<8>(hash as u32)
        } else {
            self.holds_any(hash as u32, k)
        }
    }

    #[inline(never)]
    fn holds_any(&self, x: u32, k: u8) -> bool {
        for_each_k!(k, self.holds_k(x))
    }

    /// [`Block::holds`] with the bit positions computed already (a bucket of several
    /// layers): `k` loads, shifts and ANDs, in code written for each `k`.
    #[inline]
    pub(crate) fn holds_at(&self, at: &Positions, k: u8) -> bool {
        for_each_k!(k, self.at(at))
    }

    #[inline(always)]
    fn at<const K: usize>(&self, at: &Positions) -> bool {
        let mut all = 1u64;
        for (i, shift) in at.0.iter().enumerate().take(K) {
            all &= self.0[i % WORDS] >> shift;
        }
        all & 1 == 1
    }

    /// [`Block::holds`] for a `k` known at compile time: bit `i` is bit
    /// `(x * SALT[i]) >> 26` of word `i % 8`.
    #[inline(always)]
    fn holds_k<const K: usize>(&self, x: u32) -> bool {
        let mut all = 1u64;
        for (i, salt) in SALT.iter().enumerate().take(K) {
            all &= self.0[i % WORDS] >> (x.wrapping_mul(*salt) >> 26);
        }
        all & 1 == 1
    }

    /// [`Block::holds`] through a mask, for the tests.
    #[cfg(test)]
    fn covers(&self, mask: &Mask) -> bool {
        // OR of the missing bits, so the compiler can test all words at once.
        let mut missing = 0;
        for w in 0..WORDS {
            missing |= mask.0[w] & !self.0[w];
        }
        missing == 0
    }

    #[inline]
    fn insert(&mut self, mask: &Mask) {
        for w in 0..WORDS {
            self.0[w] |= mask.0[w];
        }
    }

    fn count_ones(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// The probability that a key not in the block is found in it: the share of set
    /// bits in each word, to the power of the bits a key sets in that word.
    fn false_positive_rate(&self, k: u8) -> f64 {
        let k = usize::from(k);
        let mut p = 1.0;
        for (w, word) in self.0.iter().enumerate() {
            let bits = i32::from(w < k) + i32::from(w + WORDS < k);
            p *= (f64::from(word.count_ones()) / 64.0).powi(bits);
        }
        p
    }
}

/// A layer's bits: whole blocks, each aligned to a cache line, shared between the
/// clones of a filter (a replica swaps in a new filter after each batch of deltas);
/// the first write to a shared bitmap copies it.
///
/// Encoded as a bincode byte string (length, then the bytes): block after block, each
/// word little-endian, so bit `b` of a block is bit `b % 8` of its byte `b / 8`.
#[derive(Clone, PartialEq, Eq)]
pub struct Bitmap(Arc<[Block]>);

impl std::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Bitmap({} blocks, {} bits set)",
            self.0.len(),
            self.count_ones()
        )
    }
}

impl Bitmap {
    /// `blocks` empty blocks.
    pub(crate) fn zeroed(blocks: usize) -> Bitmap {
        // An exact-size iterator: one allocation, written in place.
        Bitmap(std::iter::repeat_n(Block::default(), blocks).collect())
    }

    /// Reads a bitmap from its bytes; their length must be a whole number of blocks.
    pub fn from_bytes(bytes: &[u8]) -> Option<Bitmap> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(BLOCK_BYTES) {
            return None;
        }
        let blocks = bytes
            .chunks_exact(BLOCK_BYTES)
            .map(|chunk| {
                let mut block = Block::default();
                for (word, b) in block.0.iter_mut().zip(chunk.chunks_exact(8)) {
                    *word = u64::from_le_bytes(b.try_into().unwrap_or_default());
                }
                block
            })
            .collect();
        Some(Bitmap(blocks))
    }

    /// The bytes, as the wire carries them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len());
        for block in self.0.iter() {
            for word in block.0 {
                out.extend_from_slice(&word.to_le_bytes());
            }
        }
        out
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.0.len()
    }

    /// Size in bytes.
    pub fn byte_len(&self) -> usize {
        self.0.len() * BLOCK_BYTES
    }

    /// Bits set.
    pub fn count_ones(&self) -> u64 {
        self.0.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// The false-positive rate of a key that sets `k` bits, averaged over the blocks
    /// as they are (so uneven block loads count).
    pub(crate) fn false_positive_rate(&self, k: u8) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.iter().map(|b| b.false_positive_rate(k)).sum::<f64>() / self.0.len() as f64
    }

    #[inline(always)]
    pub(crate) fn block(&self, hash: u64) -> &Block {
        // `blocks` fits in u32: a layer has at most MAX_LAYER_BYTES / 64 blocks, and
        // `block_index` is below it.
        &self.0[block_index(hash, self.0.len() as u32)]
    }

    /// Sets a key's bits; copies the bitmap first if a clone of the filter shares it.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64, mask: &Mask) {
        let i = block_index(hash, self.0.len() as u32);
        Arc::make_mut(&mut self.0)[i].insert(mask);
    }
}

impl Encode for Bitmap {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        (self.byte_len() as u64).encode(encoder)?;
        // 64 blocks per write: few calls into the writer (a hasher, a Vec).
        let mut buf = [0u8; 64 * BLOCK_BYTES];
        for blocks in self.0.chunks(64) {
            let bytes = &mut buf[..blocks.len() * BLOCK_BYTES];
            for (chunk, word) in bytes
                .chunks_exact_mut(8)
                .zip(blocks.iter().flat_map(|b| b.0))
            {
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            encoder.writer().write(bytes)?;
        }
        Ok(())
    }
}

impl<Context> Decode<Context> for Bitmap {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let len = u64::decode(decoder)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n > 0 && n.is_multiple_of(BLOCK_BYTES))
            .ok_or(bincode::error::DecodeError::Other(
                "bitmap length is not a positive multiple of 64 bytes",
            ))?;
        // Counts against the decoder's memory limit before anything is allocated.
        decoder.claim_bytes_read(len)?;
        // Read straight into the shared allocation (an exact-size iterator: one
        // allocation, no copy); after a failed read the rest is zeros, then dropped.
        let mut failed = None;
        let mut buf = [0u8; BLOCK_BYTES];
        let blocks: Arc<[Block]> = (0..len / BLOCK_BYTES)
            .map(|_| {
                let mut block = Block::default();
                if failed.is_none() {
                    match decoder.reader().read(&mut buf) {
                        Ok(()) => {
                            for (word, chunk) in block.0.iter_mut().zip(buf.chunks_exact(8)) {
                                *word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
                            }
                        }
                        Err(e) => failed = Some(e),
                    }
                }
                block
            })
            .collect();
        match failed {
            Some(e) => Err(e),
            None => Ok(Bitmap(blocks)),
        }
    }
}

bincode::impl_borrow_decode!(Bitmap);

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of `docs/FORMAT.md` ("Where a key's bits are"); the Python
    /// reference reader checks the same numbers (`--selftest`).
    #[test]
    fn the_worked_example_of_the_format_document() {
        assert_eq!(key(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(key(b"abc"), 0x78AF_5F94_892F_3950);
        let k = key(b"8f14e45f-ceea-467f-a0e7-000000000042");
        let h = in_bucket(k, 0x0123_4567_89AB_CDEF);
        assert_eq!(k, 0x78AF_6389_F2AA_34A1);
        assert_eq!(h, 0x798C_26EE_7B01_F94E);
        assert_eq!(block_index(h, 1000), 474);
        let mask = Mask::new(h, 8);
        let bits = |m: &Mask| -> Vec<usize> {
            (0..512)
                .filter(|&p| m.0[p / 64] >> (p % 64) & 1 == 1)
                .collect()
        };
        assert_eq!(bits(&mask), vec![9, 81, 175, 224, 306, 352, 423, 484]);
        assert_eq!(
            bits(&Mask::new(h, 10)),
            vec![9, 38, 81, 116, 175, 224, 306, 352, 423, 484]
        );
        let mut bitmap = Bitmap::zeroed(1000);
        bitmap.insert(h, &mask);
        assert!(bitmap.block(h).holds(h, 8));
        assert!(!bitmap.block(h).holds(h, 10));
        let bytes = bitmap.to_bytes();
        let set: Vec<(usize, u32)> = bytes
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                (0..8)
                    .filter(move |bit| b >> bit & 1 == 1)
                    .map(move |bit| (i, bit))
            })
            .collect();
        assert_eq!(
            set,
            vec![
                (30337, 1),
                (30346, 1),
                (30357, 7),
                (30364, 0),
                (30374, 2),
                (30380, 0),
                (30388, 7),
                (30396, 4)
            ]
        );
    }

    #[test]
    fn testing_in_place_agrees_with_the_mask_for_every_k() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let h = next();
            // Blocks from empty to nearly full, and the key's own bits.
            let density = next() % 64;
            let block = Block(std::array::from_fn(|_| {
                let mut w = 0;
                for _ in 0..density {
                    w |= 1 << (next() % 64);
                }
                w
            }));
            let at = Positions::new(h);
            for k in 1..=MAX_HASHES {
                let mask = Mask::new(h, k);
                assert_eq!(block.holds(h, k), block.covers(&mask), "k={k}");
                assert_eq!(block.holds_at(&at, k), block.covers(&mask), "k={k}");
                let mut with_key = block;
                with_key.insert(&mask);
                assert!(with_key.holds(h, k), "k={k}");
                assert!(with_key.holds_at(&at, k), "k={k}");
            }
            // Outside the planner's range the answer is "maybe".
            assert!(block.holds_at(&at, 0) && block.holds_at(&at, MAX_HASHES + 1));
        }
    }

    #[test]
    fn block_choice_spreads_over_every_block_and_stays_in_range() {
        for blocks in [1u32, 2, 3, 1000, 4_194_304] {
            assert_eq!(block_index(0, blocks), 0);
            assert_eq!(block_index(u64::MAX, blocks), blocks as usize - 1);
        }
        assert_eq!(block_index(1 << 63, 10), 5);
    }

    #[test]
    fn masks_set_k_bits_one_or_two_per_word() {
        for k in 1..=MAX_HASHES {
            for h in [0u64, 1, 0xDEAD_BEEF, u64::MAX, 0x0123_4567_89AB_CDEF] {
                let m = Mask::new(h, k);
                let set: u32 = m.0.iter().map(|w| w.count_ones()).sum();
                assert!(set <= u32::from(k) && set >= u32::from(k.min(8)), "k={k}");
                for (w, word) in m.0.iter().enumerate() {
                    assert_eq!(*word != 0, w < usize::from(k), "k={k} w={w}");
                }
            }
        }
    }

    #[test]
    fn bitmap_bytes_round_trip_little_endian() {
        let mut blocks = [Block::default(); 2];
        blocks[1].0[0] = 1; // bit 0 of block 1: byte 64, bit 0
        blocks[0].0[7] = 1 << 63; // bit 511 of block 0: byte 63, bit 7
        let bitmap = Bitmap(blocks.into_iter().collect());
        let bytes = bitmap.to_bytes();
        assert_eq!(bytes.len(), 128);
        assert_eq!(bytes[64], 1);
        assert_eq!(bytes[63], 0x80);
        assert_eq!(bytes.iter().filter(|b| **b != 0).count(), 2);
        assert_eq!(Bitmap::from_bytes(&bytes), Some(bitmap));
        assert_eq!(Bitmap::from_bytes(&bytes[..100]), None);
        assert_eq!(Bitmap::from_bytes(&[]), None);
    }
}
