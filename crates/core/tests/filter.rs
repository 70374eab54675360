//! Behaviour of the filter: lookups, cutoffs, expiry, versions, growth and the
//! false-positive rate.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Seeds, revoke_all, small_params};
use revocast_core::{Change, Delta, Filter, FilterError, FilterParams, LayerSpec, Lookup, Probe};

const EXP: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn probe(jti: &str, exp: Option<u64>) -> Probe<'_> {
    Probe {
        jti,
        exp,
        sub: None,
        iat: None,
    }
}

#[test]
fn revoked_entries_are_found_with_and_without_exp() {
    let mut filter = Filter::new(FilterParams::default()).unwrap();
    let mut seeds = Seeds::new(1);
    let items: Vec<(String, u64)> = (0..1000)
        .map(|i| (format!("jti-{i}"), EXP + i * 37))
        .collect();
    revoke_all(&mut filter, &items, &mut seeds);
    assert_eq!(filter.version(), 1);
    assert_eq!(filter.live_entries(), 1000);
    for (jti, exp) in &items {
        assert_eq!(filter.lookup(&probe(jti, Some(*exp))), Lookup::FilterHit);
        assert_eq!(filter.lookup(&probe(jti, None)), Lookup::FilterHit);
    }
}

#[test]
fn apply_requires_the_next_version_and_leaves_the_filter_untouched_otherwise() {
    let mut filter = Filter::new(FilterParams::default()).unwrap();
    let mut seeds = Seeds::new(2);
    let d1 = revoke_all(&mut filter, &[("a".into(), EXP)], &mut seeds);
    let before = filter.to_state();
    let digest = filter.digest();

    assert_eq!(
        filter.apply(&d1),
        Err(FilterError::Duplicate { have: 1, got: 1 })
    );
    let gap = Delta {
        version: 3,
        committed_at_ms: 0,
        changes: vec![],
    };
    assert_eq!(
        filter.apply(&gap),
        Err(FilterError::Gap { have: 1, got: 3 })
    );

    // A delta whose last change is bad must not apply its good first changes.
    let bad = Delta {
        version: 2,
        committed_at_ms: 0,
        changes: vec![
            Change::GlobalCutoff { not_before: EXP },
            Change::Add {
                jti: "b".into(),
                exp: EXP + 10 * 86_400,
                sub: None,
                reason: None,
            },
        ],
    };
    assert_eq!(
        filter.apply(&bad),
        Err(FilterError::NoLayer((EXP + 10 * 86_400) / 3600))
    );
    assert_eq!(filter.to_state(), before);
    assert_eq!(filter.digest(), digest);
    assert_eq!(filter.global_cutoff(), None);
}

#[test]
fn malformed_layers_are_rejected() {
    let mut filter = Filter::new(FilterParams::default()).unwrap();
    let good = LayerSpec {
        bucket: 1,
        capacity: 10,
        bitmap_bytes: 32,
        hashes: 7,
        seed: std::array::from_fn(|i| i as u8),
    };
    let cases = [
        LayerSpec {
            seed: [9; 32],
            ..good.clone()
        },
        LayerSpec {
            hashes: 0,
            ..good.clone()
        },
        LayerSpec {
            hashes: 65,
            ..good.clone()
        },
        LayerSpec {
            bitmap_bytes: 0,
            ..good.clone()
        },
        LayerSpec {
            bitmap_bytes: u64::MAX,
            ..good.clone()
        },
        LayerSpec {
            capacity: 0,
            ..good.clone()
        },
    ];
    for spec in cases {
        let delta = Delta {
            version: 1,
            committed_at_ms: 0,
            changes: vec![Change::OpenLayer(spec.clone())],
        };
        assert!(filter.apply(&delta).is_err(), "{spec:?}");
        assert_eq!(filter.version(), 0);
    }
    let delta = Delta {
        version: 1,
        committed_at_ms: 0,
        changes: vec![Change::OpenLayer(good)],
    };
    filter.apply(&delta).unwrap();
}

#[test]
fn weak_seeds_are_refused_when_staging() {
    let filter = Filter::new(FilterParams::default()).unwrap();
    let mut staging = filter.stage();
    let mut weak = [0u8; 32];
    weak[..16].copy_from_slice(&[5; 16]);
    weak[16..].copy_from_slice(&[5; 16]);
    assert_eq!(
        staging.revoke("x", EXP, || weak),
        Err(FilterError::WeakSeed)
    );
}

#[test]
fn bad_jti_sub_and_reason_are_refused() {
    let filter = Filter::new(FilterParams::default()).unwrap();
    let mut seeds = Seeds::new(3);
    let mut staging = filter.stage();
    assert_eq!(
        staging.revoke("", EXP, || seeds.next()),
        Err(FilterError::EmptyJti)
    );
    assert_eq!(
        staging.revoke(&"j".repeat(257), EXP, || seeds.next()),
        Err(FilterError::JtiTooLong(257))
    );
    assert_eq!(
        staging.revoke_with("j", EXP, Some(""), None, || seeds.next()),
        Err(FilterError::EmptySub)
    );
    assert_eq!(
        staging.revoke_with("j", EXP, None, Some(&"r".repeat(1025)), || seeds.next()),
        Err(FilterError::ReasonTooLong(1025))
    );
    assert_eq!(staging.subject_cutoff("", EXP), Err(FilterError::EmptySub));
    assert!(staging.is_empty());
}

#[test]
fn invalid_params_are_refused() {
    let cases = [
        FilterParams {
            bucket_width: 0,
            ..FilterParams::default()
        },
        FilterParams {
            target_fpr: 0.0,
            ..FilterParams::default()
        },
        FilterParams {
            target_fpr: f64::NAN,
            ..FilterParams::default()
        },
        FilterParams {
            target_fpr: 0.7,
            ..FilterParams::default()
        },
        FilterParams {
            initial_capacity: 0,
            ..FilterParams::default()
        },
        FilterParams {
            max_token_lifetime: 0,
            ..FilterParams::default()
        },
    ];
    for params in cases {
        assert!(
            matches!(
                Filter::new(params.clone()),
                Err(FilterError::InvalidParams(_))
            ),
            "{params:?}"
        );
    }
}

#[test]
fn cutoffs_reject_exactly_the_tokens_issued_before() {
    let params = FilterParams::default();
    let lifetime = params.max_token_lifetime;
    let mut filter = Filter::new(params).unwrap();
    let mut staging = filter.stage();
    staging.subject_cutoff("alice", EXP).unwrap();
    let delta = Delta {
        version: 1,
        committed_at_ms: 0,
        changes: staging.finish(),
    };
    filter.apply(&delta).unwrap();

    let check = |sub: &str, iat: Option<u64>, exp: Option<u64>| {
        filter.lookup(&Probe {
            jti: "t",
            exp,
            sub: Some(sub),
            iat,
        })
    };
    assert_eq!(
        check("alice", Some(EXP - 1), Some(EXP + 600)),
        Lookup::SubjectCutoff
    );
    assert_eq!(check("alice", Some(EXP), Some(EXP + 600)), Lookup::Clear);
    assert_eq!(check("bob", Some(EXP - 1), Some(EXP + 600)), Lookup::Clear);
    // Without iat, exp - max lifetime stands in for it.
    assert_eq!(check("alice", None, Some(EXP + 600)), Lookup::SubjectCutoff);
    assert_eq!(check("alice", None, Some(EXP + lifetime)), Lookup::Clear);
    assert_eq!(check("alice", None, None), Lookup::SubjectCutoff);

    let delta = Delta {
        version: 2,
        committed_at_ms: 0,
        changes: vec![Change::GlobalCutoff {
            not_before: EXP + 100,
        }],
    };
    filter.apply(&delta).unwrap();
    let global = |iat: u64| {
        filter.lookup(&Probe {
            jti: "t",
            exp: Some(iat + 600),
            sub: None,
            iat: Some(iat),
        })
    };
    assert_eq!(global(EXP + 99), Lookup::GlobalCutoff);
    assert_eq!(global(EXP + 100), Lookup::Clear);
}

#[test]
fn cutoffs_only_tighten() {
    let mut filter = Filter::new(FilterParams::default()).unwrap();
    let delta = Delta {
        version: 1,
        committed_at_ms: 0,
        changes: vec![
            Change::SubjectCutoff {
                sub: "alice".into(),
                not_before: EXP,
            },
            Change::SubjectCutoff {
                sub: "alice".into(),
                not_before: EXP - 500,
            },
            Change::GlobalCutoff { not_before: EXP },
            Change::GlobalCutoff { not_before: 1 },
        ],
    };
    filter.apply(&delta).unwrap();
    assert_eq!(filter.subject_cutoffs().get("alice"), Some(&EXP));
    assert_eq!(filter.global_cutoff(), Some(EXP));
}

#[test]
fn expiry_never_drops_a_token_before_exp_plus_leeway() {
    let params = FilterParams::default();
    let (width, leeway) = (params.bucket_width, params.leeway);
    let mut filter = Filter::new(params).unwrap();
    let mut seeds = Seeds::new(4);
    // Tokens at every edge of three buckets.
    let start = (EXP / width) * width;
    let exps: Vec<u64> = (0..3)
        .flat_map(|b| {
            let s = start + b * width;
            [s, s + 1, s + width / 2, s + width - 1]
        })
        .collect();
    let items: Vec<(String, u64)> = exps.iter().map(|e| (format!("j{e}"), *e)).collect();
    revoke_all(&mut filter, &items, &mut seeds);

    // Step the clock through every second around each bucket end.
    let mut version = filter.version();
    for now in (start + width - 5 + leeway)..(start + 3 * width + leeway + 5) {
        if !filter.has_expired(now) {
            continue;
        }
        version += 1;
        let delta = Delta {
            version,
            committed_at_ms: 0,
            changes: vec![Change::Expire { now }],
        };
        filter.apply(&delta).unwrap();
        for (jti, exp) in &items {
            if exp + leeway >= now {
                assert!(
                    filter.contains(jti, Some(*exp)),
                    "{jti} (exp {exp}) dropped at {now}"
                );
            }
        }
    }
    assert_eq!(filter.live_entries(), 0, "everything expires eventually");
}

#[test]
fn buckets_grow_by_layers_without_rebuild() {
    let mut filter = Filter::new(small_params(100)).unwrap();
    let mut seeds = Seeds::new(5);
    let items: Vec<(String, u64)> = (0..1501).map(|i| (format!("g{i}"), EXP)).collect();
    for chunk in items.chunks(97) {
        revoke_all(&mut filter, chunk, &mut seeds);
    }
    let stats = filter.stats();
    assert_eq!(stats.buckets.len(), 1);
    let layers: Vec<u64> = stats.buckets[0].layers.iter().map(|l| l.capacity).collect();
    // 100, then a quarter of it, then doubling: 100 + 25 + 50 + 100 + 200 + 400 + 800
    // = 1,675 >= 1,501.
    assert_eq!(layers, vec![100, 25, 50, 100, 200, 400, 800]);
    for (jti, exp) in &items {
        assert!(filter.contains(jti, Some(*exp)));
    }
}

/// Measured false-positive rate over 1,000,000 non-members of a bucket that grew
/// through several layers: at most 1.2 times the target.
#[test]
fn false_positive_rate_stays_at_target_after_growth() {
    let params = small_params(2_000);
    let target = params.target_fpr;
    let mut filter = Filter::new(params).unwrap();
    let mut seeds = Seeds::new(6);
    // 2,000 + 500 + 1,000 + 2,000 + 4,000 + 8,000 + 16,000 = 33,500 >= 30,000: seven
    // layers.
    let items: Vec<(String, u64)> = (0..30_000).map(|i| (format!("member-{i}"), EXP)).collect();
    for chunk in items.chunks(1_000) {
        revoke_all(&mut filter, chunk, &mut seeds);
    }
    assert_eq!(filter.stats().buckets[0].layers.len(), 7);
    let trials = 1_000_000u32;
    let hits = (0..trials)
        .filter(|i| filter.contains(&format!("outsider-{i}"), Some(EXP)))
        .count();
    let rate = hits as f64 / f64::from(trials);
    assert!(
        rate <= 1.2 * target,
        "measured FPR {rate} > 1.2 x target {target}"
    );
    // The estimate from the fill ratio agrees with the measurement.
    let estimated = filter.stats().buckets[0].estimated_fpr;
    assert!(estimated <= 1.2 * target, "estimated {estimated}");
    // And a bucket that is not grown at all is also on target.
    assert!(
        hits > 0,
        "a Bloom filter with no false positive at all is suspicious"
    );
}

#[test]
fn stats_describe_the_filter() {
    let mut filter = Filter::new(small_params(1000)).unwrap();
    let mut seeds = Seeds::new(7);
    let items: Vec<(String, u64)> = (0..1000).map(|i| (format!("s{i}"), EXP)).collect();
    revoke_all(&mut filter, &items, &mut seeds);
    let stats = filter.stats();
    assert_eq!(stats.live_entries, 1000);
    assert_eq!(stats.version, 1);
    assert!(
        (14.0..16.5).contains(&stats.bits_per_entry),
        "{}",
        stats.bits_per_entry
    );
    assert!((14.3..14.5).contains(&stats.optimal_bits_per_entry));
    let fill = stats.buckets[0].layers[0].fill_ratio;
    assert!(
        (0.4..0.6).contains(&fill),
        "a full layer is about half set: {fill}"
    );
}

#[test]
fn the_in_place_digest_is_blake3_of_the_state_encoding() {
    let mut filter = Filter::new(small_params(50)).unwrap();
    let mut seeds = Seeds::new(8);
    let items: Vec<(String, u64)> = (0..300).map(|i| (format!("d{i}"), EXP + i * 400)).collect();
    revoke_all(&mut filter, &items, &mut seeds);
    let delta = Delta {
        version: 2,
        committed_at_ms: 0,
        changes: vec![
            Change::SubjectCutoff {
                sub: "alice".into(),
                not_before: EXP,
            },
            Change::GlobalCutoff { not_before: EXP },
        ],
    };
    filter.apply(&delta).unwrap();
    let bytes =
        bincode::encode_to_vec(filter.to_state(), revocast_core::wire::bincode_config()).unwrap();
    assert_eq!(filter.digest().0, *blake3::hash(&bytes).as_bytes());
}

#[test]
fn a_clone_shares_bitmaps_and_diverges_only_where_written() {
    let mut filter = Filter::new(small_params(100)).unwrap();
    let mut seeds = Seeds::new(9);
    let items: Vec<(String, u64)> = (0..50).map(|i| (format!("c{i}"), EXP)).collect();
    revoke_all(&mut filter, &items, &mut seeds);
    let before = filter.clone();
    revoke_all(&mut filter, &[("later".into(), EXP)], &mut seeds);
    assert!(filter.contains("later", Some(EXP)));
    assert!(
        !before.contains("later", Some(EXP)),
        "the clone is unchanged"
    );
    assert_eq!(before.version(), 1);
    assert_ne!(before.digest(), filter.digest());
}
