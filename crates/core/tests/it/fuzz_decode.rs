//! The decode paths of `fuzz/fuzz_targets/decode.rs` as property tests, so that CI
//! runs them on every change: `Verifier::decode`, `decode_request` and, when a
//! snapshot decodes, `Filter::from_state`, on random bytes, on mutated golden
//! vectors, on arbitrary bodies signed with the pinned key (what a publisher bug
//! or a stolen key could send), and on snapshots whose filter state is wrong in
//! one field. Nothing may panic; what decodes must be usable.
use crate::common::{namespace, signer, verifier};
use ed25519_dalek::Signer as _;
use proptest::prelude::*;
use revocast_core::wire::{FORMAT_VERSION, MAGIC};
use revocast_core::{
    Bitmap, Filter, FilterParams, FilterState, Kind, Message, Probe, Snapshot, decode_request,
    signing_key_from_seed,
};

const GOLDEN: &[&[u8]] = &[
    include_bytes!("../../test_data/snapshot.bin"),
    include_bytes!("../../test_data/delta.bin"),
    include_bytes!("../../test_data/heartbeat.bin"),
    include_bytes!("../../test_data/confirm_request.bin"),
    include_bytes!("../../test_data/confirm_response.bin"),
];

const KINDS: [Kind; 5] = [
    Kind::Snapshot,
    Kind::Delta,
    Kind::Heartbeat,
    Kind::ConfirmRequest,
    Kind::ConfirmResponse,
];

/// An envelope around `body`, signed with the test key (the one `verifier()` pins)
/// when the kind is signed.
fn envelope(kind: Kind, body: &[u8]) -> Vec<u8> {
    let ns = namespace();
    let ns = ns.as_str().as_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind as u8);
    out.push(ns.len() as u8);
    out.extend_from_slice(ns);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    if kind.is_signed() {
        let signature = signing_key_from_seed([42; 32]).sign(&out);
        out.extend_from_slice(&signature.to_bytes());
    }
    out
}

/// Uses a decoded message the way a replica does; panics only on a real bug.
fn exercise(message: Message) {
    match message {
        Message::Snapshot(snapshot) => {
            if let Ok(filter) = Filter::from_state(snapshot.state) {
                use_filter(&filter);
            }
        }
        Message::Delta(delta) => {
            let mut filter = Filter::new(FilterParams::default()).unwrap();
            if filter.apply(&delta).is_ok() {
                use_filter(&filter);
            }
        }
        _ => {}
    }
}

fn use_filter(filter: &Filter) {
    let _ = filter.stats();
    let _ = filter.contains("jti-3", None);
    let _ = filter.lookup(&Probe {
        jti: "jti-3",
        exp: Some(1_767_225_603),
        sub: Some("bob"),
        iat: None,
        sid: None,
    });
    // What a replica accepted it can hand on: its state rebuilds the same filter.
    let again = Filter::from_state(filter.to_state()).expect("a state the filter wrote");
    assert_eq!(again.digest(), filter.digest());
}

/// Every decoder on `bytes`.
fn decode_all(bytes: &[u8]) {
    let verifier = verifier();
    if let Ok(message) = verifier.decode(bytes) {
        exercise(message);
    }
    for kind in KINDS {
        let _ = verifier.decode_kind(bytes, kind);
    }
    let _ = decode_request(bytes, &namespace(), 4096);
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match m {
        Mutation::Flip { at, bit } if n > 0 => bytes[at % n] ^= 1 << bit,
        Mutation::Set { at, byte } if n > 0 => bytes[at % n] = *byte,
        Mutation::Truncate { len } => bytes.truncate(len % (n + 1)),
        Mutation::Insert { at, bytes: new } => {
            let at = at % (n + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Remove { at, len } if n > 0 => {
            let at = at % n;
            bytes.drain(at..(at + len).min(n));
        }
        _ => {}
    }
}

/// The golden snapshot's filter state.
fn golden_state() -> FilterState {
    verifier().decode_snapshot(GOLDEN[0]).unwrap().state
}

/// One field of a filter state set to something else.
#[derive(Clone, Debug)]
enum StateEdit {
    BucketWidth(u64),
    TargetFpr(f64),
    InitialCapacity(u64),
    Lifetime(u64),
    Leeway(u64),
    Version(u64),
    BucketIndex(usize, u64),
    SwapBuckets,
    DropLayers(usize),
    CopyLayers(usize, usize),
    Capacity(usize, u64),
    Count(usize, u64),
    Bloom(usize, Mutation),
    Hashes(usize, u8),
    Seed(usize, u64),
    Cutoff(String, u64),
    Global(Option<u64>),
}

fn state_edit() -> impl Strategy<Value = StateEdit> {
    let odd_u64 = || {
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(u64::MAX),
            Just(u64::MAX / 2),
            any::<u64>()
        ]
    };
    prop_oneof![
        odd_u64().prop_map(StateEdit::BucketWidth),
        prop_oneof![
            Just(0.0),
            Just(0.5),
            Just(1.0),
            Just(-1.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::MIN_POSITIVE),
            any::<f64>()
        ]
        .prop_map(StateEdit::TargetFpr),
        odd_u64().prop_map(StateEdit::InitialCapacity),
        odd_u64().prop_map(StateEdit::Lifetime),
        odd_u64().prop_map(StateEdit::Leeway),
        odd_u64().prop_map(StateEdit::Version),
        (any::<usize>(), odd_u64()).prop_map(|(b, i)| StateEdit::BucketIndex(b, i)),
        Just(StateEdit::SwapBuckets),
        any::<usize>().prop_map(StateEdit::DropLayers),
        (any::<usize>(), 0usize..40).prop_map(|(b, n)| StateEdit::CopyLayers(b, n)),
        (any::<usize>(), odd_u64()).prop_map(|(l, c)| StateEdit::Capacity(l, c)),
        (any::<usize>(), odd_u64()).prop_map(|(l, c)| StateEdit::Count(l, c)),
        (any::<usize>(), mutation()).prop_map(|(l, m)| StateEdit::Bloom(l, m)),
        (any::<usize>(), any::<u8>()).prop_map(|(l, k)| StateEdit::Hashes(l, k)),
        (any::<usize>(), odd_u64()).prop_map(|(b, s)| StateEdit::Seed(b, s)),
        (".{0,300}", odd_u64()).prop_map(|(s, t)| StateEdit::Cutoff(s, t)),
        prop::option::of(odd_u64()).prop_map(StateEdit::Global),
    ]
}

fn edit(state: &mut FilterState, e: &StateEdit) {
    let buckets = state.buckets.len().max(1);
    let mut layers: Vec<&mut revocast_core::filter::LayerState> = state
        .buckets
        .iter_mut()
        .flat_map(|b| b.layers.iter_mut())
        .collect();
    let layer_count = layers.len().max(1);
    match e {
        StateEdit::BucketWidth(v) => state.params.bucket_width = *v,
        StateEdit::TargetFpr(v) => state.params.target_fpr = *v,
        StateEdit::InitialCapacity(v) => state.params.initial_capacity = *v,
        StateEdit::Lifetime(v) => state.params.max_token_lifetime = *v,
        StateEdit::Leeway(v) => state.params.leeway = *v,
        StateEdit::Version(v) => state.version = *v,
        StateEdit::Capacity(l, v) => {
            if let Some(layer) = layers.get_mut(l % layer_count) {
                layer.capacity = *v;
            }
        }
        StateEdit::Count(l, v) => {
            if let Some(layer) = layers.get_mut(l % layer_count) {
                layer.count = *v;
            }
        }
        StateEdit::Bloom(l, m) => {
            if let Some(layer) = layers.get_mut(l % layer_count) {
                // Lengths that are not whole blocks cannot be built here: the body
                // decoder refuses them (see the signed-body tests).
                let mut bytes = layer.bitmap.to_bytes();
                mutate(&mut bytes, m);
                if let Some(bitmap) = Bitmap::from_bytes(&bytes) {
                    layer.bitmap = bitmap;
                }
            }
        }
        StateEdit::Hashes(l, k) => {
            if let Some(layer) = layers.get_mut(l % layer_count) {
                layer.hashes = *k;
            }
        }
        StateEdit::Seed(b, seed) => {
            if let Some(bucket) = state.buckets.get_mut(b % buckets) {
                bucket.seed = *seed;
            }
        }
        StateEdit::BucketIndex(b, i) => {
            if let Some(bucket) = state.buckets.get_mut(b % buckets) {
                bucket.index = *i;
            }
        }
        StateEdit::SwapBuckets => state.buckets.reverse(),
        StateEdit::DropLayers(b) => {
            if let Some(bucket) = state.buckets.get_mut(b % buckets) {
                bucket.layers.clear();
            }
        }
        StateEdit::CopyLayers(b, n) => {
            if let Some(bucket) = state.buckets.get_mut(b % buckets)
                && let Some(first) = bucket.layers.first().cloned()
            {
                bucket.layers.extend(std::iter::repeat_n(first, *n));
            }
        }
        StateEdit::Cutoff(sub, t) => state.subject_cutoffs.push((sub.clone(), *t)),
        StateEdit::Global(g) => state.global_cutoff = *g,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        kind in 0u8..8,
        body in prop::collection::vec(any::<u8>(), 0..512),
        signature in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut bytes = envelope(Kind::ConfirmRequest, &body);
        bytes[5] = kind;
        bytes.extend_from_slice(&signature);
        decode_all(&bytes);
    }

    #[test]
    fn mutated_golden_vectors_decode_to_the_original_or_fail(
        which in 0..GOLDEN.len(),
        edits in prop::collection::vec(mutation(), 1..6),
    ) {
        let original = GOLDEN[which];
        let mut bytes = original.to_vec();
        for m in &edits {
            mutate(&mut bytes, m);
        }
        decode_all(&bytes);
        // A signed vector that still verifies says what the publisher signed.
        if let Ok(message) = verifier().decode(&bytes) {
            prop_assert_eq!(message, verifier().decode(original).unwrap());
        }
    }

    #[test]
    fn arbitrary_signed_bodies_never_panic(
        kind in 0..KINDS.len(),
        body in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let bytes = envelope(KINDS[kind], &body);
        decode_all(&bytes);
    }

    #[test]
    fn mutated_signed_golden_bodies_never_panic(
        which in 0..GOLDEN.len(),
        edits in prop::collection::vec(mutation(), 1..6),
    ) {
        // Re-sign the mutated body, so the body decoder sees every mutation.
        let original = GOLDEN[which];
        let kind = KINDS[which];
        let header = 7 + namespace().as_str().len();
        let len = u32::from_le_bytes(original[header..header + 4].try_into().unwrap()) as usize;
        let mut body = original[header + 4..header + 4 + len].to_vec();
        for m in &edits {
            mutate(&mut body, m);
        }
        decode_all(&envelope(kind, &body));
    }

    #[test]
    fn snapshots_with_a_wrong_field_are_refused_or_usable(
        edits in prop::collection::vec(state_edit(), 1..4),
    ) {
        let mut state = golden_state();
        for e in &edits {
            edit(&mut state, e);
        }
        let bytes = signer().encode(&Message::Snapshot(Snapshot { log_seq: 0, taken_at_ms: 1, state }));
        let snapshot = verifier().decode_snapshot(&bytes).unwrap();
        if let Ok(filter) = Filter::from_state(snapshot.state) {
            use_filter(&filter);
        }
    }
}

#[test]
fn the_golden_snapshot_is_usable() {
    // The mutation tests above start from it: it must decode and rebuild.
    let filter = Filter::from_state(golden_state()).unwrap();
    use_filter(&filter);
    assert!(filter.contains("jti-3", None));
}
