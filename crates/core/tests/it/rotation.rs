//! Key rotation in the filter and the verifier: rollovers join the key chain only when
//! they extend it, and a verifier follows the chain from the keys it pins.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use revocast_core::{
    Change, DecodeError, Delta, Filter, FilterError, Followed, KeyRing, Message, RolloverError,
    SignedRollover, Signer, Snapshot, Verifier,
};

use crate::common::{namespace, next_signer, signer, small_params};

const EPOCH: u64 = 0x5eed;
const AT_MS: u64 = 1_000_000;
const OVERLAP_MS: u64 = 60_000;

/// Key `n`: 0 is the test key, then `next_signer(n)`.
fn key(n: u8) -> Signer {
    if n == 0 { signer() } else { next_signer(n) }
}

/// Key `from` hands over to key `to` at place `index`, in the delta of version `index`.
fn rollover(from: u8, to: u8, index: u64) -> SignedRollover {
    key(from).rollover(
        key(to).public_key(),
        EPOCH,
        (index, index),
        AT_MS,
        OVERLAP_MS,
    )
}

fn delta(filter: &Filter, changes: Vec<Change>) -> Delta {
    Delta {
        epoch: filter.epoch(),
        version: filter.version() + 1,
        committed_at_ms: 0,
        changes,
    }
}

fn empty_filter() -> Filter {
    Filter::new(small_params(16)).unwrap().with_epoch(EPOCH)
}

/// A filter whose chain goes 0 -> 1 -> 2.
fn rotated_twice() -> Filter {
    let mut filter = empty_filter();
    for (i, (from, to)) in [(0, 1), (1, 2)].into_iter().enumerate() {
        let d = delta(
            &filter,
            vec![Change::Rollover(rollover(from, to, i as u64 + 1))],
        );
        filter.apply(&d).unwrap();
    }
    filter
}

/// A verifier pinning `pins`, whose clock reads the returned cell.
fn verifier_at(pins: &[u8], pin_only: bool) -> (Verifier, Arc<AtomicU64>) {
    let now = Arc::new(AtomicU64::new(AT_MS));
    let clock = Arc::clone(&now);
    let ring = KeyRing::new(pins.iter().map(|&n| key(n).public_key()), pin_only);
    let verifier = Verifier::with_ring(ring, namespace())
        .clock(Arc::new(move || clock.load(Ordering::Relaxed)));
    (verifier, now)
}

fn snapshot_by(signer: u8, filter: &Filter) -> Vec<u8> {
    key(signer).encode(&Message::Snapshot(Snapshot {
        taken_at_ms: AT_MS,
        log_seq: filter.version(),
        state: filter.to_state(),
    }))
}

#[test]
fn a_rollover_joins_the_chain_and_the_digest() {
    let mut filter = empty_filter();
    let before = filter.digest();
    let d = delta(&filter, vec![Change::Rollover(rollover(0, 1, 1))]);
    filter.apply(&d).unwrap();
    assert_eq!(filter.key_chain().len(), 1);
    assert_eq!(filter.chain_head(), Some(key(1).public_key().0.to_bytes()));
    assert_ne!(filter.digest(), before);
    let rebuilt = Filter::from_state(filter.to_state()).unwrap();
    assert_eq!(rebuilt.digest(), filter.digest());
    assert_eq!(rebuilt.key_chain(), filter.key_chain());
}

#[test]
fn a_rollover_that_does_not_extend_the_chain_leaves_the_filter_unchanged() {
    let filter = rotated_twice();
    let mut forged = rollover(2, 3, 3);
    forged.signature = [7; 64];
    let mut other_epoch = key(2).rollover(key(3).public_key(), EPOCH + 1, (3, 3), AT_MS, 0);
    other_epoch.rollover.epoch = EPOCH + 1;
    let cases = [
        (forged, RolloverError::BadSignature { index: 3 }),
        (
            rollover(2, 3, 4),
            RolloverError::OutOfOrder {
                expected: 3,
                got: 4,
            },
        ),
        (rollover(1, 3, 3), RolloverError::Broken { index: 3 }),
        (rollover(2, 0, 3), RolloverError::KeyReused { index: 3 }),
        (
            other_epoch,
            RolloverError::OtherEpoch {
                index: 3,
                epoch: EPOCH + 1,
            },
        ),
    ];
    for (bad, want) in cases {
        let mut copy = filter.clone();
        let d = delta(&copy, vec![Change::Rollover(bad)]);
        assert_eq!(copy.apply(&d), Err(FilterError::Rollover(want.clone())));
        assert_eq!(copy, filter, "{want}");
    }
    // A snapshot whose chain is broken does not load.
    let mut state = filter.to_state();
    state.key_chain.swap(0, 1);
    assert!(matches!(
        Filter::from_state(state),
        Err(FilterError::Rollover(_))
    ));
}

#[test]
fn a_replica_follows_a_rollover_and_retires_the_old_key_after_the_overlap() {
    let (verifier, now) = verifier_at(&[0], false);
    let filter = empty_filter();
    let by_new = key(1).encode(&Message::Delta(delta(&filter, vec![])));
    assert!(matches!(
        verifier.decode_delta(&by_new),
        Err(DecodeError::BadSignature)
    ));
    assert_eq!(
        verifier.follow(&rollover(0, 1, 1)),
        Ok(Followed::Trusted(key(1).public_key()))
    );
    let clone = verifier.clone();
    clone.decode_delta(&by_new).unwrap();
    // The rollover was carried by version 1: the old key signed up to it.
    let history = key(0).encode(&Message::Delta(delta(&filter, vec![])));
    let mut next = delta(&filter, vec![]);
    next.version = 2;
    let after = key(0).encode(&Message::Delta(next));
    clone.decode_delta(&after).unwrap();
    now.store(AT_MS + OVERLAP_MS, Ordering::Relaxed);
    assert!(matches!(
        clone.decode_delta(&after),
        Err(DecodeError::BadSignature)
    ));
    // Its history stays readable (a log replayed from an older snapshot).
    assert_eq!(clone.decode_delta(&history).unwrap().version, 1);
    clone.decode_delta(&by_new).unwrap();
    let status = verifier.status();
    assert_eq!(status.accepted, vec![key(1).public_key()]);
    assert_eq!(status.rollovers, 1);
}

#[test]
fn a_replica_that_pins_an_old_key_walks_a_snapshot_chain() {
    let filter = rotated_twice();
    let bytes = snapshot_by(2, &filter);
    let (verifier, _) = verifier_at(&[0], false);
    let snapshot = verifier.decode_snapshot(&bytes).unwrap();
    assert_eq!(snapshot.state.key_chain.len(), 2);
    // Past the overlaps only the key signing today is accepted.
    assert_eq!(
        verifier.status().accepted.first(),
        Some(&key(2).public_key())
    );
    // A replica that pins today's key reads it too: the older hand-overs change nothing.
    let (current, _) = verifier_at(&[2], false);
    current.decode_snapshot(&bytes).unwrap();
    assert_eq!(current.status().accepted, vec![key(2).public_key()]);
}

#[test]
fn a_pin_only_replica_refuses_the_chain_unless_it_pins_the_signer() {
    let filter = rotated_twice();
    let bytes = snapshot_by(2, &filter);
    let (pin_only, _) = verifier_at(&[0], true);
    assert!(matches!(
        pin_only.decode_snapshot(&bytes),
        Err(DecodeError::BadSignature)
    ));
    let (pinned, _) = verifier_at(&[0, 2], true);
    pinned.decode_snapshot(&bytes).unwrap();
    assert!(!pinned.status().accepted.contains(&key(1).public_key()));
}

#[test]
fn a_forged_chain_is_refused() {
    // Key 3 claims a hand-over from the test key that the test key never signed.
    let mut filter = empty_filter();
    let mut forged = rollover(0, 3, 1);
    forged.signature = [0; 64];
    let mut state = filter.to_state();
    state.key_chain = vec![forged];
    let bytes = key(3).encode(&Message::Snapshot(Snapshot {
        taken_at_ms: AT_MS,
        log_seq: 0,
        state,
    }));
    let (verifier, _) = verifier_at(&[0], false);
    assert!(matches!(
        verifier.decode_snapshot(&bytes),
        Err(DecodeError::BadSignature)
    ));
    assert_eq!(verifier.status().accepted, vec![key(0).public_key()]);

    // A replica that followed 0 -> 1 refuses a snapshot whose chain went 0 -> 3 (a
    // stolen key 0 handing over to its thief), and keeps its own chain.
    let (verifier, _) = verifier_at(&[0], false);
    verifier.follow(&rollover(0, 1, 1)).unwrap();
    let d = delta(&filter, vec![Change::Rollover(rollover(0, 3, 1))]);
    filter.apply(&d).unwrap();
    assert!(matches!(
        verifier.decode_snapshot(&snapshot_by(3, &filter)),
        Err(DecodeError::BadSignature)
    ));
    assert!(matches!(
        verifier.decode_snapshot(&snapshot_by(1, &filter)),
        Err(DecodeError::KeyChain(RolloverError::Fork { index: 1 }))
    ));
    assert!(!verifier.status().accepted.contains(&key(3).public_key()));
}

#[test]
fn a_replayed_rollover_is_known_and_changes_nothing() {
    let (verifier, now) = verifier_at(&[0], false);
    verifier.follow(&rollover(0, 1, 1)).unwrap();
    verifier.follow(&rollover(1, 2, 2)).unwrap();
    now.store(AT_MS + OVERLAP_MS, Ordering::Relaxed);
    assert_eq!(verifier.follow(&rollover(0, 1, 1)), Ok(Followed::Known));
    assert_eq!(verifier.status().accepted, vec![key(2).public_key()]);
    // In a filter, a copy of an old rollover is out of order.
    let mut filter = rotated_twice();
    let d = delta(&filter, vec![Change::Rollover(rollover(0, 1, 1))]);
    assert!(matches!(
        filter.apply(&d),
        Err(FilterError::Rollover(RolloverError::OutOfOrder { .. }))
    ));
}
