//! Envelope decoding on arbitrary bytes: `Verifier::decode`, `decode_request` and,
//! when a snapshot decodes, `Filter::from_state`. Nothing may panic, hang or
//! allocate without bound, whatever arrives on a revocast subject.
//!
//! Each input is used twice:
//! 1. as it would arrive from NATS (the signature check stops almost every
//!    mutation, which is the point of fuzzing it);
//! 2. as a *body* (after a first byte that picks the kind), framed and signed here
//!    with the test key, so the fuzzer also reaches the bincode decoder,
//!    `Filter::from_state` and `Filter::apply` behind the signature: what a
//!    publisher bug or a stolen key could make a replica decode.
//!
//! Seeds: `fuzz/seeds/` holds the golden vectors of `crates/core/test_data` (`.bin`)
//! and their bodies behind the kind byte (`.body`).
#![no_main]

use ed25519_dalek::Signer as _;
use libfuzzer_sys::fuzz_target;
use revocast_core::wire::{FORMAT_VERSION, MAGIC};
use revocast_core::{
    Filter, FilterParams, Kind, Message, Namespace, Probe, SigningKey, Verifier, decode_request,
    signing_key_from_seed,
};

/// The key and namespace of the golden vectors in `crates/core/test_data`, so the
/// seed corpus decodes.
fn key() -> SigningKey {
    signing_key_from_seed([42; 32])
}

const KINDS: [Kind; 5] = [
    Kind::Snapshot,
    Kind::Delta,
    Kind::Heartbeat,
    Kind::ConfirmRequest,
    Kind::ConfirmResponse,
];

fn namespace() -> Namespace {
    Namespace::new("test").expect("a valid namespace")
}

/// An envelope around `body`, signed when the kind is.
fn envelope(kind: Kind, body: &[u8]) -> Vec<u8> {
    let ns = namespace();
    let ns = ns.as_str().as_bytes();
    let mut out = Vec::with_capacity(7 + ns.len() + 4 + body.len() + 64);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    out.push(ns.len() as u8);
    out.extend_from_slice(ns);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    if kind.is_signed() {
        let signature = key().sign(&out);
        out.extend_from_slice(&signature.to_bytes());
    }
    out
}

/// Uses a decoded message the way a replica does.
fn exercise(message: Message) {
    match message {
        Message::Snapshot(snapshot) => {
            if let Ok(filter) = Filter::from_state(snapshot.state) {
                let _ = filter.digest();
                let _ = filter.stats();
                let _ = filter.contains("jti", None);
                let _ = filter.lookup(&Probe {
                    jti: "jti",
                    exp: Some(1_700_000_000),
                    sub: Some("sub"),
                    iat: None,
                    sid: None,
                });
                // What a replica accepted, it can hand on unchanged.
                let again = Filter::from_state(filter.to_state()).expect("a state it wrote");
                assert_eq!(again.digest(), filter.digest());
            }
        }
        Message::Delta(delta) => {
            if let Ok(mut filter) = Filter::new(FilterParams::default()) {
                let _ = filter.apply(&delta);
                let _ = filter.digest();
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let verifier = Verifier::new(revocast_core::PublicKey(key().verifying_key()), namespace());
    // 1. The bytes as they arrive from NATS.
    if let Ok(message) = verifier.decode(data) {
        exercise(message);
    }
    for kind in KINDS {
        let _ = verifier.decode_kind(data, kind);
    }
    let _ = decode_request(data, &namespace(), 4096);
    // 2. The bytes after the first as a body of the kind the first byte picks,
    //    signed with the pinned key.
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let kind = KINDS[usize::from(pick) % KINDS.len()];
    let bytes = envelope(kind, body);
    if kind == Kind::ConfirmRequest {
        let _ = decode_request(&bytes, &namespace(), 4096);,
        sid: None,
    } else if let Ok(message) = verifier.decode(&bytes) {
        exercise(message);
    }
});
