//! Replication: a replica that loads the snapshot at version 0 and applies every delta
//! through the wire format holds exactly the publisher's filter, byte for byte and
//! digest for digest, and never loses an entry before it may expire.
use crate::common::{Seeds, signer, verifier};
use proptest::prelude::*;
use revocast_core::{Delta, Filter, FilterParams, Message, Snapshot};

const T0: u64 = 1_767_225_600;

#[derive(Clone, Debug)]
enum Op {
    Revoke { jti: u16, exp_offset: u32 },
    SubjectCutoff { sub: u8, at_offset: u32 },
    GlobalCutoff { at_offset: u32 },
    Advance { secs: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<u16>(), 0u32..6 * 3600).prop_map(|(jti, exp_offset)| Op::Revoke { jti, exp_offset }),
        1 => (0u8..8, 0u32..3600).prop_map(|(sub, at_offset)| Op::SubjectCutoff { sub, at_offset }),
        1 => (0u32..3600).prop_map(|at_offset| Op::GlobalCutoff { at_offset }),
        1 => (0u32..3 * 3600).prop_map(|secs| Op::Advance { secs }),
    ]
}

fn encode_snapshot(filter: &Filter) -> Vec<u8> {
    signer().encode(&Message::Snapshot(Snapshot {
        log_seq: 0,
        taken_at_ms: 0,
        state: filter.to_state(),
    }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn snapshot_plus_deltas_equals_the_publisher(
        batches in proptest::collection::vec(proptest::collection::vec(op(), 1..40), 1..25),
        initial_capacity in 1u64..16,
    ) {
        let params = FilterParams { initial_capacity, leeway: 30, ..FilterParams::default() };
        let leeway = params.leeway;
        let mut publisher = Filter::new(params).unwrap();
        let mut seeds = Seeds::new(initial_capacity);
        let snapshot0 = encode_snapshot(&publisher);
        let mut deltas = Vec::new();
        let mut now = T0;
        // Every revocation staged so far, to check for false negatives.
        let mut revoked: Vec<(String, u64)> = Vec::new();

        for batch in batches {
            let mut staging = publisher.stage();
            for op in batch {
                match op {
                    Op::Revoke { jti, exp_offset } => {
                        let jti = format!("jti-{jti}");
                        let exp = now + u64::from(exp_offset);
                        staging.revoke(&jti, exp, || seeds.next()).unwrap();
                        revoked.push((jti, exp));
                    }
                    Op::SubjectCutoff { sub, at_offset } => {
                        staging.subject_cutoff(&format!("user-{sub}"), now + u64::from(at_offset)).unwrap();
                    }
                    Op::GlobalCutoff { at_offset } => staging.global_cutoff(now + u64::from(at_offset)),
                    Op::Advance { secs } => {
                        now += u64::from(secs);
                        staging.expire(now);
                    }
                }
            }
            let delta = Delta { epoch: 0, version: publisher.version() + 1, committed_at_ms: 0, changes: staging.finish() };
            let bytes = signer().encode(&Message::Delta(delta.clone()));
            publisher.apply(&delta).unwrap();
            deltas.push(bytes);

            for (jti, exp) in &revoked {
                if exp + leeway >= now {
                    prop_assert!(publisher.contains(jti, Some(*exp)), "false negative for {} at {}", jti, now);
                    prop_assert!(publisher.contains(jti, None));
                }
            }
        }

        let mut replica = Filter::from_state(verifier().decode_snapshot(&snapshot0).unwrap().state).unwrap();
        for bytes in &deltas {
            replica.apply(&verifier().decode_delta(bytes).unwrap()).unwrap();
        }
        prop_assert_eq!(replica.version(), publisher.version());
        prop_assert_eq!(replica.digest(), publisher.digest());
        let cfg = revocast_core::codec::bincode_config();
        let a = bincode::encode_to_vec(replica.to_state(), cfg).unwrap();
        let b = bincode::encode_to_vec(publisher.to_state(), cfg).unwrap();
        prop_assert!(a == b, "states differ byte for byte");

        // A snapshot taken midway plus the remaining deltas converges too.
        let mid = deltas.len() / 2;
        let mut early = Filter::from_state(verifier().decode_snapshot(&snapshot0).unwrap().state).unwrap();
        for bytes in &deltas[..mid] {
            early.apply(&verifier().decode_delta(bytes).unwrap()).unwrap();
        }
        let mid_snapshot = encode_snapshot(&early);
        let mut late = Filter::from_state(verifier().decode_snapshot(&mid_snapshot).unwrap().state).unwrap();
        for bytes in &deltas[mid..] {
            late.apply(&verifier().decode_delta(bytes).unwrap()).unwrap();
        }
        prop_assert_eq!(late.digest(), publisher.digest());
        prop_assert!(encode_snapshot(&late) == encode_snapshot(&publisher));
    }

    #[test]
    fn reordered_and_duplicated_deltas_never_change_state(
        count in 2usize..12,
        swap in any::<proptest::sample::Index>(),
    ) {
        let mut publisher = Filter::new(FilterParams { initial_capacity: 2, ..FilterParams::default() }).unwrap();
        let mut seeds = Seeds::new(99);
        let mut deltas = Vec::new();
        for i in 0..count {
            let mut staging = publisher.stage();
            staging.revoke(&format!("r{i}"), T0 + i as u64, || seeds.next()).unwrap();
            let delta = Delta { epoch: 0, version: publisher.version() + 1, committed_at_ms: 0, changes: staging.finish() };
            publisher.apply(&delta).unwrap();
            deltas.push(delta);
        }
        let mut replica = Filter::new(FilterParams { initial_capacity: 2, ..FilterParams::default() }).unwrap();
        let i = swap.index(count - 1) + 1;
        // Out of order: a later delta first is a gap, and changes nothing.
        let digest = replica.digest();
        prop_assert!(replica.apply(&deltas[i]).is_err());
        prop_assert_eq!(replica.digest(), digest);
        for delta in &deltas {
            replica.apply(delta).unwrap();
            // Duplicates are refused.
            prop_assert!(replica.apply(delta).is_err());
        }
        prop_assert_eq!(replica.digest(), publisher.digest());
    }
}
