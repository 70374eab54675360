//! Behaviour of the filter: lookups, cutoffs, expiry, versions, growth and the
//! false-positive rate.
use crate::common::{Seeds, revoke_all, small_params};
use revocast_core::{
    Change, Delta, Filter, FilterError, FilterParams, LayerSpec, Lookup, Probe, Succession,
};

const EXP: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn probe(jti: &str, exp: Option<u64>) -> Probe<'_> {
    Probe {
        jti,
        exp,
        sub: None,
        iat: None,
        sid: None,
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
        epoch: 0,
        version: 3,
        committed_at_ms: 0,
        changes: vec![],
    };
    assert_eq!(
        filter.apply(&gap),
        Err(FilterError::Gap { have: 1, got: 3 })
    );
    // Each delta's place, as every reader of the log classifies it.
    let next = |epoch, version| Delta {
        epoch,
        version,
        committed_at_ms: 0,
        changes: vec![],
    };
    assert_eq!(filter.succession(&next(0, 2)), Succession::Next);
    assert_eq!(filter.succession(&d1), Succession::Applied);
    assert_eq!(filter.succession(&gap), Succession::Ahead);
    assert_eq!(filter.succession(&next(7, 2)), Succession::OtherEpoch);
    // A delta of another epoch never applies, whatever its version.
    assert_eq!(
        filter.apply(&next(7, 2)),
        Err(FilterError::OtherEpoch { have: 0, got: 7 })
    );
    let other = Filter::new(FilterParams::default()).unwrap().with_epoch(7);
    assert_eq!(other.epoch(), 7);
    assert_ne!(
        other.digest(),
        Filter::new(FilterParams::default()).unwrap().digest()
    );

    // A delta whose last change is bad must not apply its good first changes.
    let bad = Delta {
        epoch: 0,
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
        seed: 0x0123_4567_89ab_cdef,
        capacity: 10,
        blocks: 2,
        hashes: 8,
    };
    let cases = [
        LayerSpec {
            hashes: 0,
            ..good.clone()
        },
        LayerSpec {
            hashes: 17,
            ..good.clone()
        },
        LayerSpec {
            blocks: 0,
            ..good.clone()
        },
        LayerSpec {
            blocks: revocast_core::MAX_BLOCKS + 1,
            ..good.clone()
        },
        LayerSpec {
            blocks: u32::MAX,
            ..good.clone()
        },
        LayerSpec {
            capacity: 0,
            ..good.clone()
        },
    ];
    for spec in cases {
        let delta = Delta {
            epoch: 0,
            version: 1,
            committed_at_ms: 0,
            changes: vec![Change::OpenLayer(spec.clone())],
        };
        assert!(
            matches!(filter.apply(&delta), Err(FilterError::InvalidLayer(_))),
            "{spec:?}"
        );
        assert_eq!(filter.version(), 0);
    }
    let delta = Delta {
        epoch: 0,
        version: 1,
        committed_at_ms: 0,
        changes: vec![Change::OpenLayer(good)],
    };
    filter.apply(&delta).unwrap();
}

#[test]
fn every_layer_of_a_bucket_shares_its_seed() {
    let mut filter = Filter::new(FilterParams::default()).unwrap();
    let layer = |seed| {
        Change::OpenLayer(LayerSpec {
            bucket: 1,
            seed,
            capacity: 10,
            blocks: 1,
            hashes: 8,
        })
    };
    // In one delta, and across deltas.
    let delta = |version, changes| Delta {
        epoch: 0,
        version,
        committed_at_ms: 0,
        changes,
    };
    assert_eq!(
        filter.apply(&delta(1, vec![layer(7), layer(8)])),
        Err(FilterError::InvalidLayer(
            "seed differs from the bucket's first layer"
        ))
    );
    filter.apply(&delta(1, vec![layer(7), layer(7)])).unwrap();
    assert!(matches!(
        filter.apply(&delta(2, vec![layer(9)])),
        Err(FilterError::InvalidLayer(_))
    ));
    filter.apply(&delta(2, vec![layer(7)])).unwrap();
    assert_eq!(filter.stats().buckets[0].layers.len(), 3);
}

#[test]
fn staging_draws_a_seed_per_bucket_not_per_layer() {
    let mut filter = Filter::new(small_params(4)).unwrap();
    let mut draws = 0;
    let mut staging = filter.stage();
    for i in 0..100 {
        staging
            .revoke(&format!("j{i}"), EXP + (i % 2) * 3600, || {
                draws += 1;
                draws
            })
            .unwrap();
    }
    let delta = Delta {
        epoch: 0,
        version: 1,
        committed_at_ms: 0,
        changes: staging.finish(),
    };
    filter.apply(&delta).unwrap();
    assert_eq!(draws, 2, "one seed for each of the two buckets");
    let stats = filter.stats();
    assert!(stats.buckets.iter().all(|b| b.layers.len() > 1));
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
        epoch: 0,
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
            sid: None,
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
        epoch: 0,
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
            sid: None,
        })
    };
    assert_eq!(global(EXP + 99), Lookup::GlobalCutoff);
    assert_eq!(global(EXP + 100), Lookup::Clear);
}

#[test]
fn cutoffs_only_tighten() {
    let mut filter = Filter::new(FilterParams::default()).unwrap();
    let delta = Delta {
        epoch: 0,
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
            epoch: 0,
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

/// Stages `items` in deltas of `chunk`, passing `hint` as the capacity hint.
fn revoke_hinted(filter: &mut Filter, items: &[(String, u64)], chunk: usize, hint: u64) {
    let mut seeds = Seeds::new(hint);
    for part in items.chunks(chunk) {
        let mut staging = filter.stage();
        staging.capacity_hint(hint);
        for (jti, exp) in part {
            staging.revoke(jti, *exp, || seeds.next()).unwrap();
        }
        let delta = Delta {
            epoch: 0,
            version: filter.version() + 1,
            committed_at_ms: 0,
            changes: staging.finish(),
        };
        filter.apply(&delta).unwrap();
    }
}

fn capacities(filter: &Filter) -> Vec<u64> {
    filter.stats().buckets[0]
        .layers
        .iter()
        .map(|l| l.capacity)
        .collect()
}

#[test]
fn buckets_grow_by_layers_without_rebuild() {
    let items: Vec<(String, u64)> = (0..1501).map(|i| (format!("g{i}"), EXP)).collect();
    // Without a hint: each new layer is 4 times the capacity so far.
    // 100, 400 (500), 2,000 (2,500 >= 1,501).
    let mut filter = Filter::new(small_params(100)).unwrap();
    revoke_hinted(&mut filter, &items, 97, 0);
    assert_eq!(capacities(&filter), vec![100, 400, 2_000]);
    for (jti, exp) in &items {
        assert!(filter.contains(jti, Some(*exp)));
    }
    // With a hint: the first overflow is a sixteenth of the first layer, then each
    // layer is 3 times the capacity so far. 1,400, 87 (1,487), 4,461.
    let mut filter = Filter::new(small_params(100)).unwrap();
    revoke_hinted(&mut filter, &items, 97, 1_400);
    assert_eq!(capacities(&filter), vec![1_400, 87, 4_461]);
    // A hint no larger than the initial capacity says nothing: no hint.
    let mut filter = Filter::new(small_params(100)).unwrap();
    revoke_hinted(&mut filter, &items, 97, 100);
    assert_eq!(capacities(&filter), vec![100, 400, 2_000]);
    for (jti, exp) in &items {
        assert!(filter.contains(jti, Some(*exp)));
    }
    // Every layer's rate at capacity adds up to less than the target.
    let target = filter.params().target_fpr;
    let estimated: f64 = filter.stats().buckets[0]
        .layers
        .iter()
        .map(|l| revocast_core::filter::expected_fpr(l.capacity, (l.bits / 512) as u32, l.hashes))
        .sum();
    assert!(estimated < target, "{estimated}");
}

/// Measured false-positive rate over 1,000,000 non-members: at most 1.2 times the
/// target, for a bucket sized by a hint and for one that grew from far too small.
#[test]
fn false_positive_rate_stays_at_target_after_growth() {
    let params = small_params(1_000);
    let target = params.target_fpr;
    let items: Vec<(String, u64)> = (0..30_000).map(|i| (format!("member-{i}"), EXP)).collect();
    // 1,000 without a hint, then 4,000 (5,000), 20,000 (25,000), 100,000: 4 layers.
    let mut grown = Filter::new(params.clone()).unwrap();
    revoke_hinted(&mut grown, &items, 1_000, 0);
    assert_eq!(grown.stats().buckets[0].layers.len(), 4);
    // Sized by a hint: one layer.
    let mut sized = Filter::new(params).unwrap();
    revoke_hinted(&mut sized, &items, 1_000, 30_000);
    assert_eq!(sized.stats().buckets[0].layers.len(), 1);

    for filter in [&grown, &sized] {
        let trials = 1_000_000u32;
        let hits = (0..trials)
            .filter(|i| filter.contains(&format!("outsider-{i}"), Some(EXP)))
            .count();
        let rate = hits as f64 / f64::from(trials);
        let stats = filter.stats();
        eprintln!(
            "{} layers, {:.2} bits per entry: measured FPR {rate}",
            stats.buckets[0].layers.len(),
            stats.bits_per_entry
        );
        assert!(
            rate <= 1.2 * target,
            "measured FPR {rate} > 1.2 x target {target}"
        );
        assert!(
            hits > 0,
            "a Bloom filter with no false positive at all is suspicious"
        );
        // The estimate from the blocks' fill agrees with the measurement.
        let estimated = filter.stats().buckets[0].estimated_fpr;
        assert!(
            (0.7 * rate..1.4 * rate).contains(&estimated),
            "estimated {estimated}, measured {rate}"
        );
    }
}

#[test]
fn stats_describe_the_filter() {
    let mut filter = Filter::new(small_params(100)).unwrap();
    let items: Vec<(String, u64)> = (0..1000).map(|i| (format!("s{i}"), EXP)).collect();
    revoke_hinted(&mut filter, &items, 1000, 1000);
    let stats = filter.stats();
    assert_eq!(stats.live_entries, 1000);
    assert_eq!(stats.version, 1);
    // A full layer at 0.85 times the target: about 16 bits per entry (14.4 would be
    // a perfect Bloom filter; blocks cost a little more).
    assert!(
        (15.5..17.0).contains(&stats.bits_per_entry),
        "{}",
        stats.bits_per_entry
    );
    assert!((14.3..14.5).contains(&stats.optimal_bits_per_entry));
    let layer = &stats.buckets[0].layers[0];
    assert!(
        (0.3..0.6).contains(&layer.fill_ratio),
        "a full layer is 30% to 60% set: {}",
        layer.fill_ratio
    );
    assert!(
        (0.0005..0.0012).contains(&layer.estimated_fpr),
        "{}",
        layer.estimated_fpr
    );
}

#[test]
fn the_in_place_digest_is_blake3_of_the_state_encoding() {
    let mut filter = Filter::new(small_params(50)).unwrap();
    let mut seeds = Seeds::new(8);
    let items: Vec<(String, u64)> = (0..300).map(|i| (format!("d{i}"), EXP + i * 400)).collect();
    revoke_all(&mut filter, &items, &mut seeds);
    let delta = Delta {
        epoch: 0,
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
        bincode::encode_to_vec(filter.to_state(), revocast_core::codec::bincode_config()).unwrap();
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

#[test]
fn lookup_many_answers_as_lookup_one_by_one() {
    let mut filter = Filter::new(small_params(64)).unwrap();
    let members: Vec<(String, u64)> = (0..2_000)
        .map(|i| (format!("m{i}"), EXP + (i % 5) * 3600 + i))
        .collect();
    revoke_hinted(&mut filter, &members, 500, 0);
    let delta = Delta {
        epoch: 0,
        version: filter.version() + 1,
        committed_at_ms: 0,
        changes: vec![
            Change::SubjectCutoff {
                sub: "alice".into(),
                not_before: EXP,
            },
            Change::GlobalCutoff {
                not_before: EXP - 90_000,
            },
        ],
    };
    filter.apply(&delta).unwrap();
    let names: Vec<String> = (0..5_000).map(|i| format!("m{}", i * 7)).collect();
    let probes: Vec<Probe<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, jti)| Probe {
            jti,
            exp: (i % 11 != 0).then_some(EXP + (i as u64 % 7) * 3600 + i as u64),
            sub: (i % 3 == 0).then_some("alice"),
            iat: (i % 4 == 0).then_some(EXP - 100_000 + i as u64 * 20),
            sid: None,
        })
        .collect();
    let mut answers = Vec::new();
    // Any length, including less than a group and not a multiple of one.
    for len in [0, 1, 15, 16, 17, 100, probes.len()] {
        filter.lookup_many(probes[..len].iter().copied(), &mut answers);
        let one_by_one: Vec<Lookup> = probes[..len].iter().map(|p| filter.lookup(p)).collect();
        assert_eq!(answers, one_by_one, "{len} probes");
    }
    for kind in [
        Lookup::Clear,
        Lookup::FilterHit,
        Lookup::SubjectCutoff,
        Lookup::GlobalCutoff,
    ] {
        assert!(answers.contains(&kind), "{kind:?} is exercised");
    }
}
