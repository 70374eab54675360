//! Golden test vectors: one file per message kind under `test_data/`, plus the larger
//! snapshot and delta the reference reader loads (`reference_*.bin`, see
//! `reference.rs`). A change to the wire format that alters any of them is a format
//! change and needs a new format version. Regenerate (only for a deliberate format
//! change) with `REVOCAST_BLESS=1 cargo test -p revocast-core --test it golden`, and
//! copy them into `fuzz/seeds/` as `fuzz/README.md` says.
use crate::common::{Seeds, namespace, next_signer, revoke_all, signer, verifier};
use revocast_core::{
    Change, ConfirmRequest, ConfirmResponse, DecodeError, Delta, Filter, FilterParams, Heartbeat,
    Message, Snapshot, decode_request, encode_request,
};

const EXP: u64 = 1_767_225_600;
/// The epoch of the golden namespace.
const EPOCH: u64 = 0x0123_4567_89ab_cdef;

/// The fixed filter behind the snapshot, delta and heartbeat vectors.
fn fixed_filter() -> (Filter, Delta) {
    // Explicit parameters: changing a default must not change the vectors.
    let params = revocast_core::FilterParams {
        bucket_width: 3600,
        target_fpr: 0.001,
        initial_capacity: 4,
        max_token_lifetime: 86_400,
        leeway: 60,
    };
    let mut filter = Filter::new(params).unwrap().with_epoch(EPOCH);
    let mut seeds = Seeds::new(1000);
    let items: Vec<(String, u64)> = (0..10).map(|i| (format!("jti-{i}"), EXP + i)).collect();
    revoke_all(&mut filter, &items[..5], &mut seeds);
    let mut staging = filter.stage();
    for (jti, exp) in &items[5..] {
        staging
            .revoke_with(jti, *exp, Some("alice"), Some("stolen"), || seeds.next())
            .unwrap();
    }
    staging.subject_cutoff("bob", EXP - 100).unwrap();
    staging.session_cutoff("s-7", EXP - 100).unwrap();
    staging.global_cutoff(EXP - 86_400);
    let delta = Delta {
        epoch: EPOCH,
        version: 2,
        committed_at_ms: 1_767_225_000_000,
        changes: staging.finish(),
    };
    filter.apply(&delta).unwrap();
    (filter, delta)
}

/// Parameters of the reference filter: a lower target rate than the default, so that
/// its layers use both one and two bits per word.
fn reference_params() -> FilterParams {
    FilterParams {
        bucket_width: 3600,
        target_fpr: 0.0004,
        initial_capacity: 1000,
        max_token_lifetime: 86_400,
        leeway: 300,
    }
}

/// The `i`th member of the reference filter: a UUID-shaped `jti`, and an `exp` in the
/// first bucket for the first 6,000, the second for the next 3,000, the third after.
pub fn reference_member(i: u64) -> (String, u64) {
    let bucket = match i {
        0..6_000 => 0,
        6_000..9_000 => 1,
        _ => 2,
    };
    (
        format!("6d1f0c3e-{:04x}-4a5b-9c8d-{:012x}", i % 65_536, i * 7_919),
        EXP + bucket * 3600 + (i * 37) % 3600,
    )
}

/// 10,000 members over three buckets: one grown without a hint from 1,000 entries
/// (three layers, with 11, 12 and 16 bits per key), one sized by a hint and full, one
/// sized by a hint and a third full (8 bits per key); a subject and a global cutoff; a
/// key chain of one rollover (the test key to `next_signer(1)`). And the delta that
/// follows it: 50 more members (one in a new bucket), a subject cutoff, an expiry that
/// drops nothing and a second rollover (to `next_signer(2)`).
pub fn reference_filter() -> (Filter, Delta) {
    let mut filter = Filter::new(reference_params()).unwrap().with_epoch(EPOCH);
    let mut seeds = Seeds::new(2026);
    for (part, hint) in [(0..6_000u64, 0), (6_000..10_000, 3_000)] {
        let mut staging = filter.stage();
        staging.capacity_hint(hint);
        for i in part {
            let (jti, exp) = reference_member(i);
            staging.revoke(&jti, exp, || seeds.next()).unwrap();
        }
        staging.subject_cutoff("mallory", EXP - 3_600).unwrap();
        staging.session_cutoff("s-1", EXP - 5_400).unwrap();
        staging.global_cutoff(EXP - 86_400);
        let mut changes = staging.finish();
        if hint > 0 {
            changes.push(Change::Rollover(signer().rollover(
                next_signer(1).public_key(),
                EPOCH,
                (1, filter.version() + 1),
                1_767_220_000_000,
                600_000,
            )));
        }
        let delta = Delta {
            epoch: EPOCH,
            version: filter.version() + 1,
            committed_at_ms: 1_767_220_000_000,
            changes,
        };
        filter.apply(&delta).unwrap();
    }
    let mut staging = filter.stage();
    for i in 10_000..10_050u64 {
        let (jti, exp) = reference_member(i);
        let exp = if i == 10_049 { EXP + 5 * 3600 } else { exp };
        staging
            .revoke_with(&jti, exp, Some("trent"), None, || seeds.next())
            .unwrap();
    }
    staging.subject_cutoff("trent", EXP - 60).unwrap();
    staging.session_cutoff("s-2", EXP - 3_000).unwrap();
    staging.expire(EXP - 86_400);
    let mut changes = staging.finish();
    changes.push(Change::Rollover(next_signer(1).rollover(
        next_signer(2).public_key(),
        EPOCH,
        (2, filter.version() + 1),
        1_767_221_000_000,
        600_000,
    )));
    let delta = Delta {
        epoch: EPOCH,
        version: filter.version() + 1,
        committed_at_ms: 1_767_221_000_000,
        changes,
    };
    (filter, delta)
}

fn vectors() -> Vec<(&'static str, Vec<u8>, Message)> {
    let (filter, delta) = fixed_filter();
    let (reference, reference_delta) = reference_filter();
    let reference_snapshot = Message::Snapshot(Snapshot {
        log_seq: 3,
        taken_at_ms: 1_767_220_500_000,
        state: reference.to_state(),
    });
    let snapshot = Message::Snapshot(Snapshot {
        log_seq: 2,
        taken_at_ms: 1_767_225_001_000,
        state: filter.to_state(),
    });
    let heartbeat = Message::Heartbeat(Heartbeat {
        epoch: EPOCH,
        version: filter.version(),
        beat: 7,
        time_ms: 1_767_225_002_000,
        digest: filter.digest(),
    });
    let response = Message::ConfirmResponse(ConfirmResponse {
        epoch: EPOCH,
        jti: "jti-7".into(),
        nonce: 0x1234_5678_9abc_def0,
        revoked: true,
        version: 2,
        exp: Some(EXP + 7),
        revoked_at: Some(1_767_225_000),
        reason: Some("stolen".into()),
    });
    let request = ConfirmRequest {
        jti: "jti-7".into(),
        exp: Some(EXP + 7),
        nonce: 0x1234_5678_9abc_def0,
        sub: Some("alice".into()),
        iat: Some(EXP - 3_600),
        sid: Some("s-7".into()),
    };
    let signer = signer();
    vec![
        ("snapshot.bin", signer.encode(&snapshot), snapshot),
        (
            "delta.bin",
            signer.encode(&Message::Delta(delta.clone())),
            Message::Delta(delta),
        ),
        ("heartbeat.bin", signer.encode(&heartbeat), heartbeat),
        (
            "confirm_request.bin",
            encode_request(&namespace(), &request),
            Message::ConfirmRequest(request),
        ),
        ("confirm_response.bin", signer.encode(&response), response),
        // After the first rollover the publisher signs with the key it handed over to.
        (
            "reference_snapshot.bin",
            next_signer(1).encode(&reference_snapshot),
            reference_snapshot,
        ),
        (
            "reference_delta.bin",
            next_signer(1).encode(&Message::Delta(reference_delta.clone())),
            Message::Delta(reference_delta),
        ),
    ]
}

pub fn golden(name: &str) -> &'static [u8] {
    match name {
        "snapshot.bin" => include_bytes!("../../test_data/snapshot.bin"),
        "delta.bin" => include_bytes!("../../test_data/delta.bin"),
        "heartbeat.bin" => include_bytes!("../../test_data/heartbeat.bin"),
        "confirm_request.bin" => include_bytes!("../../test_data/confirm_request.bin"),
        "confirm_response.bin" => include_bytes!("../../test_data/confirm_response.bin"),
        "reference_snapshot.bin" => include_bytes!("../../test_data/reference_snapshot.bin"),
        "reference_delta.bin" => include_bytes!("../../test_data/reference_delta.bin"),
        other => panic!("no golden file {other}"),
    }
}

#[test]
fn encoding_matches_the_golden_vectors() {
    if std::env::var_os("REVOCAST_BLESS").is_some() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/test_data");
        for (name, bytes, _) in vectors() {
            std::fs::write(format!("{dir}/{name}"), bytes).unwrap();
        }
    }
    for (name, bytes, _) in vectors() {
        assert!(
            bytes == golden(name),
            "{name} differs from its golden vector"
        );
    }
}

#[test]
fn golden_vectors_decode_to_the_expected_messages() {
    // One verifier, as one replica: the reference snapshot's chain leads it from the
    // test key to the key that signs the reference vectors.
    let verifier = verifier();
    for (name, _, message) in vectors() {
        let decoded = match &message {
            Message::ConfirmRequest(_) => {
                Message::ConfirmRequest(decode_request(golden(name), &namespace(), 4096).unwrap())
            }
            Message::Snapshot(_) => {
                Message::Snapshot(verifier.decode_snapshot(golden(name)).unwrap())
            }
            _ => verifier.decode(golden(name)).unwrap(),
        };
        assert_eq!(decoded, message, "{name}");
    }
}

#[test]
fn golden_snapshot_rebuilds_the_filter_with_the_same_digest() {
    let (filter, _) = fixed_filter();
    let snapshot = verifier().decode_snapshot(golden("snapshot.bin")).unwrap();
    let rebuilt = Filter::from_state(snapshot.state).unwrap();
    assert_eq!(rebuilt.digest(), filter.digest());
    let heartbeat = verifier()
        .decode_heartbeat(golden("heartbeat.bin"))
        .unwrap();
    assert_eq!(heartbeat.digest, rebuilt.digest());
    assert!(rebuilt.contains("jti-3", Some(EXP + 3)));
}

#[test]
fn an_unknown_format_version_is_rejected() {
    for (name, _, _) in vectors() {
        let mut bytes = golden(name).to_vec();
        bytes[4] = 4;
        let err = match name {
            "confirm_request.bin" => decode_request(&bytes, &namespace(), 4096).unwrap_err(),
            _ => verifier().decode(&bytes).unwrap_err(),
        };
        assert!(
            matches!(
                err,
                DecodeError::UnsupportedVersion {
                    found: 4,
                    supported: 5
                }
            ),
            "{name}: {err}"
        );
    }
}
