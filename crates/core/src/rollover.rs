//! Key rotation: the [`Rollover`] a publisher signs with its current key to hand the
//! namespace over to a new one, the chain of them a namespace keeps in its state, and
//! the [`KeyRing`] a [`Verifier`](crate::Verifier) checks signatures with.
//!
//! # The chain
//! A rollover names the key it hands over from, the key it hands over to, its place in
//! the namespace's chain (from 1, per epoch) and how long the old key stays accepted
//! (`at_ms + overlap_ms`, by the publisher's clock). It is signed by the old key over
//! [`ROLLOVER_CONTEXT`] followed by its bincode encoding, so its proof travels with it:
//! a delta carries it as [`Change::Rollover`](crate::Change::Rollover) and every
//! snapshot carries the whole chain ([`FilterState::key_chain`](crate::FilterState)).
//! A replica that pins an old key walks the chain from its pinned key to the key that
//! signs today, whenever it starts.
//!
//! # Who is trusted
//! A [`KeyRing`] holds the keys an operator pinned and, unless it is pin-only, the keys
//! it followed through rollovers. A key stops being accepted once a rollover away from
//! it is past its overlap. A pin-only ring never trusts a key it was not given: it
//! refuses rollovers to keys outside its pins (the compromise procedure: pin the new key
//! on every service before the publisher switches to it).

use bincode::{Decode, Encode};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::codec::bincode_config;
use crate::error::RolloverError;
use crate::keys::PublicKey;

/// The bytes a rollover's signature covers start with these.
pub const ROLLOVER_CONTEXT: &[u8] = b"revocast key rollover v1\0";
/// Most rollovers one epoch of a namespace may hold.
pub const MAX_ROLLOVERS: usize = 1024;

/// A publisher hands the namespace over from key `from` to key `to`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Rollover {
    /// The namespace's epoch (a rollover never applies in another life of it).
    pub epoch: u64,
    /// Its place in the epoch's chain, from 1.
    pub index: u64,
    /// The filter version of the delta carrying it: `from` signed the deltas up to this
    /// version, `to` signs the ones after it.
    pub version: u64,
    /// The key handing over (the one signing this rollover).
    pub from: [u8; 32],
    /// The key taking over.
    pub to: [u8; 32],
    /// When the publisher made it, unix milliseconds.
    pub at_ms: u64,
    /// How long after `at_ms` messages signed by `from` stay accepted.
    pub overlap_ms: u64,
}

/// A [`Rollover`] with the signature of its `from` key.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SignedRollover {
    /// The statement.
    pub rollover: Rollover,
    /// Ed25519 signature by `rollover.from` over [`Rollover::signed_bytes`].
    pub signature: [u8; 64],
}

impl Rollover {
    /// The bytes its signature covers: [`ROLLOVER_CONTEXT`], then its bincode encoding.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = ROLLOVER_CONTEXT.to_vec();
        // Encoding plain data into a Vec cannot fail.
        out.extend(bincode::encode_to_vec(self, bincode_config()).unwrap_or_default());
        out
    }

    /// Signs it with `key`, which must be the key it hands over from.
    pub fn sign(self, key: &SigningKey) -> Result<SignedRollover, RolloverError> {
        if key.verifying_key().to_bytes() != self.from {
            return Err(RolloverError::NotFromSigner);
        }
        let signature = key.sign(&self.signed_bytes()).to_bytes();
        Ok(SignedRollover {
            rollover: self,
            signature,
        })
    }

    /// Unix milliseconds from which `from` is no longer accepted.
    pub fn retires_at_ms(&self) -> u64 {
        self.at_ms.saturating_add(self.overlap_ms)
    }
}

impl SignedRollover {
    /// The key handing over.
    pub fn from_key(&self) -> Result<PublicKey, RolloverError> {
        public(&self.rollover.from, self.rollover.index)
    }

    /// The key taking over.
    pub fn to_key(&self) -> Result<PublicKey, RolloverError> {
        public(&self.rollover.to, self.rollover.index)
    }

    /// Checks its signature against its `from` key.
    pub fn verify(&self) -> Result<(), RolloverError> {
        let index = self.rollover.index;
        let from = self.from_key()?;
        self.to_key()?;
        let signature = Signature::from_bytes(&self.signature);
        from.0
            .verify_strict(&self.rollover.signed_bytes(), &signature)
            .map_err(|_| RolloverError::BadSignature { index })
    }
}

fn public(bytes: &[u8; 32], index: u64) -> Result<PublicKey, RolloverError> {
    VerifyingKey::from_bytes(bytes)
        .map(PublicKey)
        .map_err(|_| RolloverError::InvalidKey { index })
}

/// Checks that `next` extends `chain` (a valid chain of `epoch`): the next index,
/// signed by the key the chain handed over to last, to a key the chain never used.
pub fn check_extension(
    chain: &[SignedRollover],
    epoch: u64,
    next: &SignedRollover,
) -> Result<(), RolloverError> {
    let r = &next.rollover;
    if r.epoch != epoch {
        return Err(RolloverError::OtherEpoch {
            index: r.index,
            epoch: r.epoch,
        });
    }
    if chain.len() >= MAX_ROLLOVERS {
        return Err(RolloverError::TooMany(MAX_ROLLOVERS));
    }
    let expected = chain.len() as u64 + 1;
    if r.index != expected {
        return Err(RolloverError::OutOfOrder {
            expected,
            got: r.index,
        });
    }
    if let Some(last) = chain.last()
        && last.rollover.to != r.from
    {
        return Err(RolloverError::Broken { index: r.index });
    }
    let used = |key: &[u8; 32]| {
        chain
            .iter()
            .any(|s| s.rollover.from == *key || s.rollover.to == *key)
    };
    if r.from == r.to || used(&r.to) {
        return Err(RolloverError::KeyReused { index: r.index });
    }
    next.verify()
}

/// Checks a whole chain of `epoch` at filter version `version`, as a snapshot
/// carries it: each rollover extends the ones before it, at a version above theirs
/// and not above the filter's.
pub fn check_chain(
    chain: &[SignedRollover],
    epoch: u64,
    version: u64,
) -> Result<(), RolloverError> {
    let mut previous = 0;
    for (i, next) in chain.iter().enumerate() {
        check_extension(&chain[..i], epoch, next)?;
        let at = next.rollover.version;
        if at <= previous || at > version {
            return Err(RolloverError::WrongVersion {
                index: next.rollover.index,
                version: at,
            });
        }
        previous = at;
    }
    Ok(())
}

/// What a [`KeyRing`] did with a rollover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Followed {
    /// It knew this rollover already.
    Known,
    /// It now trusts the new key (followed, or pinned already).
    Trusted(PublicKey),
    /// It is pin-only and the new key is not pinned: the new key is not trusted.
    Refused(PublicKey),
    /// It hands over between keys this ring does not trust: nothing changes.
    Unrelated,
}

/// The keys a verifier accepts signatures from. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct KeyRing {
    pinned: Vec<VerifyingKey>,
    pin_only: bool,
    followed: Vec<VerifyingKey>,
    /// Keys handed over from: the unix millisecond from which they are refused, and
    /// the last delta version they signed.
    retired: Vec<Retired>,
    /// The epoch whose chain `chain` is.
    chain_epoch: u64,
    /// The rollovers of `chain_epoch` seen, in order (a following ring's).
    chain: Vec<SignedRollover>,
    /// The hand-overs (old key, new key) a pin-only ring saw.
    seen_pinned: Vec<([u8; 32], [u8; 32])>,
}

/// A key a rollover handed over from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Retired {
    key: [u8; 32],
    /// Messages it signs are refused from this unix millisecond on...
    at_ms: u64,
    /// ...except deltas up to this version (and snapshots of the filter up to it):
    /// the log's history, which it signed while it was current.
    last_version: u64,
}

/// A view of a [`KeyRing`] for stats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRingStatus {
    /// Keys accepted now, the newest first.
    pub accepted: Vec<PublicKey>,
    /// Keys retired by a rollover, with the unix millisecond from which they are (or
    /// were) refused.
    pub retired: Vec<(PublicKey, u64)>,
    /// Whether rollovers to keys outside the pins are refused.
    pub pin_only: bool,
    /// Rollovers of the current epoch seen.
    pub rollovers: u64,
}

impl KeyRing {
    /// A ring trusting `pinned`; with `pin_only` it never trusts another key.
    pub fn new(pinned: impl IntoIterator<Item = PublicKey>, pin_only: bool) -> KeyRing {
        let mut keys: Vec<VerifyingKey> = Vec::new();
        for key in pinned {
            if !keys.contains(&key.0) {
                keys.push(key.0);
            }
        }
        KeyRing {
            pinned: keys,
            pin_only,
            followed: Vec::new(),
            retired: Vec::new(),
            chain_epoch: 0,
            chain: Vec::new(),
            seen_pinned: Vec::new(),
        }
    }

    /// Whether `key` is pinned or was followed (retired or not).
    pub fn trusts(&self, key: &[u8; 32]) -> bool {
        self.pinned
            .iter()
            .chain(&self.followed)
            .any(|k| k.as_bytes() == key)
    }

    /// Pins one more key (the publisher pins the key it rotates to).
    pub fn pin(&mut self, key: PublicKey) {
        if !self.pinned.contains(&key.0) {
            self.pinned.push(key.0);
        }
    }

    fn retires_at(&self, key: &[u8; 32]) -> Option<u64> {
        self.retired
            .iter()
            .filter(|r| r.key == *key)
            .map(|r| r.at_ms)
            .min()
    }

    /// The keys retired at `now_ms`, each with the last delta version it signed: a
    /// delta (or a snapshot) up to that version signed by it is history, read as such.
    pub fn historical(&self, now_ms: u64) -> Vec<(VerifyingKey, u64)> {
        self.pinned
            .iter()
            .chain(&self.followed)
            .filter_map(|k| {
                let retired = self.retired.iter().filter(|r| r.key == *k.as_bytes());
                let last = retired.clone().map(|r| r.last_version).min()?;
                retired
                    .map(|r| r.at_ms)
                    .min()
                    .filter(|&at| now_ms >= at)
                    .map(|_| (*k, last))
            })
            .collect()
    }

    /// The keys accepted at `now_ms`, the most recently trusted first.
    pub fn accepted(&self, now_ms: u64) -> Vec<VerifyingKey> {
        self.followed
            .iter()
            .rev()
            .chain(self.pinned.iter().rev())
            .filter(|k| self.retires_at(k.as_bytes()).is_none_or(|at| now_ms < at))
            .copied()
            .collect()
    }

    /// Follows one rollover: it must be the next of its epoch's chain (or one seen
    /// already), correctly signed by its old key. If the ring trusts the old key, that
    /// key is retired from `at_ms + overlap_ms` and the new key is trusted, unless the
    /// ring is pin-only and does not pin it. Trust flows only from a trusted key: a
    /// rollover between keys the ring never trusted changes nothing.
    pub fn follow(&mut self, next: &SignedRollover) -> Result<Followed, RolloverError> {
        if self.pin_only {
            return self.follow_pinned(next);
        }
        let r = &next.rollover;
        if r.epoch != self.chain_epoch {
            if r.index != 1 {
                return Err(RolloverError::OutOfOrder {
                    expected: 1,
                    got: r.index,
                });
            }
            self.chain_epoch = r.epoch;
            self.chain.clear();
        }
        let seen = usize::try_from(r.index.saturating_sub(1))
            .ok()
            .and_then(|i| self.chain.get(i));
        if let Some(seen) = seen {
            return if seen == next {
                Ok(Followed::Known)
            } else {
                Err(RolloverError::Fork { index: r.index })
            };
        }
        check_extension(&self.chain, self.chain_epoch, next)?;
        self.chain.push(next.clone());
        let to = next.to_key()?;
        if !self.trusts(&r.from) {
            // A hand-over between keys this ring never trusted (it pins a later key):
            // kept for the chain's continuity, it changes no trust.
            return Ok(Followed::Unrelated);
        }
        self.retire(r);
        if self.trusts(&r.to) {
            Ok(Followed::Trusted(to))
        } else {
            self.followed.push(to.0);
            Ok(Followed::Trusted(to))
        }
    }

    /// A pin-only ring keeps no chain (whatever chain a stolen key signed cannot
    /// confuse it): a correctly signed rollover from a pinned key retires that key
    /// after the overlap, and says whether the new key is pinned.
    fn follow_pinned(&mut self, next: &SignedRollover) -> Result<Followed, RolloverError> {
        let r = &next.rollover;
        next.verify()?;
        if !self.trusts(&r.from) {
            return Ok(Followed::Unrelated);
        }
        let to = next.to_key()?;
        if self.seen_pinned.contains(&(r.from, r.to)) {
            return Ok(Followed::Known);
        }
        self.seen_pinned.push((r.from, r.to));
        self.retire(r);
        Ok(if self.trusts(&r.to) {
            Followed::Trusted(to)
        } else {
            Followed::Refused(to)
        })
    }

    fn retire(&mut self, r: &Rollover) {
        self.retired.push(Retired {
            key: r.from,
            at_ms: r.retires_at_ms(),
            last_version: r.version,
        });
    }

    /// Follows a whole chain (a snapshot's), skipping the rollovers seen already.
    pub fn follow_chain(
        &mut self,
        chain: &[SignedRollover],
    ) -> Result<Vec<Followed>, RolloverError> {
        chain.iter().map(|r| self.follow(r)).collect()
    }

    /// What the ring holds, at `now_ms`.
    pub fn status(&self, now_ms: u64) -> KeyRingStatus {
        KeyRingStatus {
            accepted: self.accepted(now_ms).into_iter().map(PublicKey).collect(),
            retired: self
                .retired
                .iter()
                .filter_map(|r| {
                    VerifyingKey::from_bytes(&r.key)
                        .ok()
                        .map(|k| (PublicKey(k), r.at_ms))
                })
                .collect(),
            pin_only: self.pin_only,
            rollovers: (self.chain.len() + self.seen_pinned.len()) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::signing_key_from_seed;

    fn key(seed: u8) -> SigningKey {
        signing_key_from_seed([seed; 32])
    }

    fn public(seed: u8) -> PublicKey {
        PublicKey(key(seed).verifying_key())
    }

    fn rollover(from: u8, to: u8, index: u64) -> SignedRollover {
        Rollover {
            epoch: 7,
            index,
            version: index * 10,
            from: public(from).0.to_bytes(),
            to: public(to).0.to_bytes(),
            at_ms: 1_000,
            overlap_ms: 500,
        }
        .sign(&key(from))
        .unwrap()
    }

    #[test]
    fn a_rollover_signed_by_another_key_is_refused() {
        let mut forged = rollover(1, 2, 1);
        forged.signature = key(3).sign(&forged.rollover.signed_bytes()).to_bytes();
        assert_eq!(
            forged.verify(),
            Err(RolloverError::BadSignature { index: 1 })
        );
        let not_from = Rollover {
            from: public(1).0.to_bytes(),
            ..rollover(1, 2, 1).rollover
        };
        assert_eq!(
            not_from.sign(&key(3)).unwrap_err(),
            RolloverError::NotFromSigner
        );
    }

    #[test]
    fn a_chain_must_be_continuous_and_never_reuse_a_key() {
        let good = [rollover(1, 2, 1), rollover(2, 3, 2)];
        check_chain(&good, 7, 20).unwrap();
        assert_eq!(
            check_chain(&good, 7, 19),
            Err(RolloverError::WrongVersion {
                index: 2,
                version: 20
            })
        );
        assert_eq!(
            check_chain(&[rollover(1, 2, 2)], 7, 100),
            Err(RolloverError::OutOfOrder {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(
            check_chain(&[rollover(1, 2, 1), rollover(3, 4, 2)], 7, 100),
            Err(RolloverError::Broken { index: 2 })
        );
        assert_eq!(
            check_chain(&[rollover(1, 2, 1), rollover(2, 1, 2)], 7, 100),
            Err(RolloverError::KeyReused { index: 2 })
        );
        assert_eq!(
            check_chain(&good, 8, 100),
            Err(RolloverError::OtherEpoch { index: 1, epoch: 7 })
        );
    }

    #[test]
    fn a_following_ring_trusts_the_new_key_and_retires_the_old_after_the_overlap() {
        let mut ring = KeyRing::new([public(1)], false);
        assert_eq!(ring.accepted(0), vec![public(1).0]);
        let r = rollover(1, 2, 1);
        assert_eq!(ring.follow(&r), Ok(Followed::Trusted(public(2))));
        assert_eq!(ring.follow(&r), Ok(Followed::Known));
        assert_eq!(ring.accepted(1_499), vec![public(2).0, public(1).0]);
        assert_eq!(ring.accepted(1_500), vec![public(2).0]);
        // Retired, key 1 still vouches for the history it signed: up to version 10.
        assert!(ring.historical(1_499).is_empty());
        assert_eq!(ring.historical(1_500), vec![(public(1).0, 10)]);
    }

    #[test]
    fn a_pin_only_ring_is_not_confused_by_a_stolen_keys_fork() {
        // The thief of key 1 hands over to key 3; the publisher then to key 2.
        let mut ring = KeyRing::new([public(1), public(2)], true);
        assert_eq!(
            ring.follow(&rollover(1, 3, 1)),
            Ok(Followed::Refused(public(3)))
        );
        assert_eq!(
            ring.follow(&rollover(1, 2, 1)),
            Ok(Followed::Trusted(public(2)))
        );
        assert_eq!(ring.accepted(2_000), vec![public(2).0]);
        let mut forged = rollover(1, 2, 1);
        forged.signature[0] ^= 1;
        assert_eq!(
            ring.follow(&forged),
            Err(RolloverError::BadSignature { index: 1 })
        );
    }

    #[test]
    fn a_pin_only_ring_refuses_keys_it_does_not_pin() {
        let mut ring = KeyRing::new([public(1)], true);
        assert_eq!(
            ring.follow(&rollover(1, 3, 1)),
            Ok(Followed::Refused(public(3)))
        );
        assert_eq!(ring.accepted(2_000), Vec::<VerifyingKey>::new());
        let mut ring = KeyRing::new([public(1), public(2)], true);
        assert_eq!(
            ring.follow(&rollover(1, 2, 1)),
            Ok(Followed::Trusted(public(2)))
        );
        assert_eq!(ring.accepted(2_000), vec![public(2).0]);
    }

    #[test]
    fn a_ring_refuses_forks_and_gaps_and_trusts_only_through_trusted_keys() {
        let mut ring = KeyRing::new([public(1)], false);
        ring.follow(&rollover(1, 2, 1)).unwrap();
        assert_eq!(
            ring.follow(&rollover(1, 4, 1)),
            Err(RolloverError::Fork { index: 1 })
        );
        assert_eq!(
            ring.follow(&rollover(2, 3, 3)),
            Err(RolloverError::OutOfOrder {
                expected: 2,
                got: 3
            })
        );
        // A ring that pins a later key walks the earlier hand-overs without trusting
        // anything new.
        let mut stranger = KeyRing::new([public(3)], false);
        assert_eq!(stranger.follow(&rollover(1, 2, 1)), Ok(Followed::Unrelated));
        assert!(!stranger.trusts(public(2).0.as_bytes()));
        assert_eq!(stranger.follow(&rollover(2, 3, 2)), Ok(Followed::Unrelated));
        assert_eq!(stranger.accepted(u64::MAX), vec![public(3).0]);
    }
}
