//! The envelope: round trips, and every malformed input answered by its own error,
//! never a panic.
use crate::common::{namespace, signer, verifier};
use proptest::prelude::*;
use revocast_core::wire::FORMAT_VERSION;
use revocast_core::{
    Change, ConfirmRequest, ConfirmResponse, DecodeError, Delta, Digest, Heartbeat, Kind, Message,
    Namespace, Signer, Verifier, decode_request, encode_request, signing_key_from_seed,
};

fn heartbeat() -> Message {
    Message::Heartbeat(Heartbeat {
        epoch: 0,
        beat: 1,
        version: 7,
        time_ms: 1_767_225_600_000,
        digest: Digest([3; 32]),
    })
}

fn delta() -> Message {
    Message::Delta(Delta {
        epoch: 0,
        version: 9,
        committed_at_ms: 5,
        changes: vec![
            Change::Add {
                jti: "abc".into(),
                exp: 1_767_225_600,
                sub: Some("alice".into()),
                reason: None,
            },
            Change::GlobalCutoff { not_before: 4 },
        ],
    })
}

#[test]
fn signed_messages_round_trip() {
    let response = Message::ConfirmResponse(ConfirmResponse {
        epoch: 0,
        jti: "abc".into(),
        nonce: 99,
        revoked: true,
        version: 3,
        exp: Some(10),
        revoked_at: Some(5),
        reason: Some("stolen".into()),
    });
    for message in [heartbeat(), delta(), response] {
        let bytes = signer().encode(&message);
        assert_eq!(verifier().decode(&bytes).unwrap(), message);
        assert_eq!(
            verifier().decode_kind(&bytes, message.kind()).unwrap(),
            message
        );
    }
}

#[test]
fn requests_are_unsigned_and_namespaced() {
    let request = ConfirmRequest {
        jti: "abc".into(),
        exp: Some(1),
        nonce: 77,
        sub: None,
        iat: None,
        sid: None,
    };
    let bytes = encode_request(&namespace(), &request);
    assert_eq!(decode_request(&bytes, &namespace(), 4096).unwrap(), request);
    let other = Namespace::new("other").unwrap();
    assert!(matches!(
        decode_request(&bytes, &other, 4096),
        Err(DecodeError::WrongNamespace { .. })
    ));
    // A request is not something a verifier accepts as a publisher message.
    assert!(matches!(
        verifier().decode(&bytes),
        Err(DecodeError::UnexpectedKind { .. })
    ));
    assert!(matches!(
        decode_request(&signer().encode(&heartbeat()), &namespace(), 4096),
        Err(DecodeError::UnexpectedKind { .. })
    ));
}

#[test]
fn each_failure_has_its_own_error() {
    let good = signer().encode(&heartbeat());

    let small = verifier().max_size(10);
    assert!(matches!(
        small.decode(&good),
        Err(DecodeError::TooLarge { limit: 10, .. })
    ));

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert!(matches!(
        verifier().decode(&bad_magic),
        Err(DecodeError::BadMagic)
    ));

    let mut version = good.clone();
    version[4] = 1;
    assert!(matches!(
        verifier().decode(&version),
        Err(DecodeError::UnsupportedVersion {
            found: 1,
            supported: FORMAT_VERSION
        })
    ));

    let mut kind = good.clone();
    kind[5] = 42;
    assert!(matches!(
        verifier().decode(&kind),
        Err(DecodeError::UnknownKind(42))
    ));

    assert!(matches!(
        verifier().decode_kind(&good, Kind::Delta),
        Err(DecodeError::UnexpectedKind {
            expected: "delta",
            found: "heartbeat"
        })
    ));

    let forged = Signer::new(signing_key_from_seed([1; 32]), namespace()).encode(&heartbeat());
    assert!(matches!(
        verifier().decode(&forged),
        Err(DecodeError::BadSignature)
    ));

    let elsewhere = Signer::new(
        signing_key_from_seed([42; 32]),
        Namespace::new("elsewhere").unwrap(),
    )
    .encode(&heartbeat());
    assert!(matches!(
        verifier().decode(&elsewhere),
        Err(DecodeError::WrongNamespace { .. })
    ));

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        verifier().decode(&trailing),
        Err(DecodeError::TrailingBytes)
    ));

    assert!(matches!(
        verifier().decode(&good[..good.len() - 1]),
        Err(DecodeError::Truncated)
    ));
    assert!(matches!(
        verifier().decode(b"RV"),
        Err(DecodeError::Truncated)
    ));
    assert!(matches!(
        verifier().decode(b""),
        Err(DecodeError::Truncated)
    ));
    assert!(matches!(
        verifier().decode(b"{\"json\":1}"),
        Err(DecodeError::BadMagic)
    ));
}

#[test]
fn a_signed_but_malformed_body_is_a_body_error() {
    // Sign garbage as if it were a heartbeat body: the signature holds, the body does not.
    let key = signing_key_from_seed([42; 32]);
    let ns = namespace();
    let mut bytes = b"RVCB".to_vec();
    bytes.extend([FORMAT_VERSION, Kind::Heartbeat as u8]);
    bytes.push(ns.as_str().len() as u8);
    bytes.extend_from_slice(ns.as_str().as_bytes());
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
    use ed25519_dalek::Signer as _;
    let signature = key.sign(&bytes);
    bytes.extend_from_slice(&signature.to_bytes());
    assert!(matches!(
        verifier().decode(&bytes),
        Err(DecodeError::Body(_))
    ));
}

#[test]
fn every_truncation_and_every_flipped_bit_is_rejected() {
    for message in [heartbeat(), delta()] {
        let good = signer().encode(&message);
        for len in 0..good.len() {
            assert!(
                verifier().decode(&good[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        for bit in 0..good.len() * 8 {
            let mut flipped = good.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(verifier().decode(&flipped).is_err(), "bit {bit} flipped");
        }
    }
}

#[test]
fn a_huge_claimed_length_in_a_request_does_not_allocate() {
    // An unsigned request whose body claims a 2^60-byte string.
    let ns = namespace();
    let mut bytes = b"RVCB".to_vec();
    bytes.extend([FORMAT_VERSION, Kind::ConfirmRequest as u8]);
    bytes.push(ns.as_str().len() as u8);
    bytes.extend_from_slice(ns.as_str().as_bytes());
    let body = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10];
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    assert!(matches!(
        decode_request(&bytes, &ns, 4096),
        Err(DecodeError::Body(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = verifier().decode(&bytes);
        let _ = decode_request(&bytes, &namespace(), 4096);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(
        kind in 1u8..=5,
        body in proptest::collection::vec(any::<u8>(), 0..256),
        claimed in any::<u32>(),
    ) {
        let ns = namespace();
        let mut bytes = vec![b'R', b'V', b'C', b'B', 1, kind, ns.as_str().len() as u8];
        bytes.extend_from_slice(ns.as_str().as_bytes());
        bytes.extend_from_slice(&claimed.to_le_bytes());
        bytes.extend_from_slice(&body);
        prop_assert!(verifier().decode(&bytes).is_err());
        let _ = decode_request(&bytes, &ns, 4096);
    }

    #[test]
    fn forged_signatures_are_always_rejected(seed in any::<[u8; 32]>(), version in any::<u64>()) {
        prop_assume!(seed != [42; 32]);
        let message = Message::Heartbeat(Heartbeat { epoch: 0, beat: 1, version, time_ms: 0, digest: Digest([0; 32]) });
        let forged = Signer::new(signing_key_from_seed(seed), namespace()).encode(&message);
        prop_assert!(matches!(verifier().decode(&forged), Err(DecodeError::BadSignature)));
    }
}

#[test]
fn verifier_reports_its_namespace() {
    let v = Verifier::new(signer().public_key(), namespace());
    assert_eq!(v.namespace().as_str(), "test");
}

/// Regression: bincode's limit counts decoded memory, so a 60 KB delta of 2,000
/// entries was once refused with `LimitExceeded`.
#[test]
fn a_delta_with_thousands_of_entries_round_trips() {
    let changes = (0..2_000)
        .map(|i| Change::Add {
            jti: format!("{i:036}"),
            exp: 1_767_225_600 + i,
            sub: None,
            reason: None,
        })
        .collect();
    let message = Message::Delta(Delta {
        epoch: 0,
        version: 1,
        committed_at_ms: 0,
        changes,
    });
    let bytes = signer().encode(&message);
    assert!(bytes.len() > 64 << 10);
    assert_eq!(verifier().decode(&bytes).unwrap(), message);
}
