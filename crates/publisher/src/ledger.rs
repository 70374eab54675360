//! The publisher's state: the filter that replicas mirror, plus the exact records the
//! authority answers from. Both change only through [`Ledger::apply`], with a delta
//! that JetStream has stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use revocast_core::{Change, Delta, Filter, FilterError, FilterParams};
use serde::Serialize;

/// What the authority knows about one revoked `jti`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The token's `exp`, unix seconds (the latest one stored for this `jti`).
    pub exp: u64,
    /// The earliest `exp` stored for this `jti`. In another bucket than `exp` when the
    /// `jti` was revoked without `exp` (into every live bucket) or again with another
    /// `exp`: then it is not one token's `exp`, and an export writes none.
    pub first_exp: u64,
    /// The token's `sub`, when the revoke call gave it.
    pub sub: Option<String>,
    /// Why, as given to the revoke call.
    pub reason: Option<String>,
    /// When the delta holding it was committed, unix seconds.
    pub revoked_at: u64,
}

/// Filter and records, always at the same version.
///
/// The filter is shared copy-on-write: readers that do work proportional to its size
/// (stats, heartbeat digests, snapshots) take a clone of the `Arc` under the lock
/// ([`crate::state::Shared::filter`]) and work outside it; the writer copies the
/// filter only when such a reader still holds the old one.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(crate) filter: Arc<Filter>,
    pub(crate) records: HashMap<String, Record>,
    /// The stream sequence of the last log message read or written.
    pub(crate) seq: u64,
    /// The newest delta version the records hold (deltas the filter held already,
    /// replayed at start, update only the records, once each).
    pub(crate) noted: u64,
    /// Live revocations per bucket, for sizing new buckets.
    bucket_entries: BTreeMap<u64, BucketCount>,
}

/// Revocations in one bucket and the span of their `exp`s.
#[derive(Clone, Copy, Debug)]
struct BucketCount {
    entries: u64,
    first_exp: u64,
    last_exp: u64,
}

impl BucketCount {
    /// The entries the bucket would hold over its whole width at the density seen so
    /// far. The bucket a publisher starts in, and the farthest one, only get `exp`s
    /// from part of their width (tokens that already expired, or are not issued yet):
    /// their counts alone would size the next bucket far too small. The span counts
    /// as at least an eighth of the width, so a few early entries do not extrapolate
    /// wildly.
    fn full_width_estimate(&self, width: u64) -> u64 {
        let span = (self.last_exp - self.first_exp + 1).clamp(width.div_ceil(8), width);
        let estimate = u128::from(self.entries) * u128::from(width) / u128::from(span);
        u64::try_from(estimate).unwrap_or(u64::MAX)
    }
}

impl Ledger {
    pub(crate) fn new(filter: Filter) -> Ledger {
        Ledger {
            filter: Arc::new(filter),
            records: HashMap::new(),
            seq: 0,
            noted: 0,
            bucket_entries: BTreeMap::new(),
        }
    }

    /// Applies a stored delta to the filter, then to the records.
    pub(crate) fn apply(&mut self, delta: &Delta) -> Result<(), FilterError> {
        Arc::make_mut(&mut self.filter).apply(delta)?;
        self.note(delta);
        self.noted = self.noted.max(delta.version);
        Ok(())
    }

    /// Updates the records from a delta that the filter already holds (deltas older
    /// than the snapshot, replayed at start).
    pub(crate) fn note(&mut self, delta: &Delta) {
        let params = self.filter.params().clone();
        let revoked_at = delta.committed_at_ms / 1000;
        for change in &delta.changes {
            match change {
                Change::Add {
                    jti,
                    exp,
                    sub,
                    reason,
                } => {
                    let count =
                        self.bucket_entries
                            .entry(params.bucket_of(*exp))
                            .or_insert(BucketCount {
                                entries: 0,
                                first_exp: *exp,
                                last_exp: *exp,
                            });
                    count.entries += 1;
                    count.first_exp = count.first_exp.min(*exp);
                    count.last_exp = count.last_exp.max(*exp);
                    match self.records.get_mut(jti) {
                        // The same jti revoked again with an exp in another bucket
                        // (a caller's first exp was wrong): the record lives as long
                        // as the latest entry; the first revocation time stays.
                        Some(record) => {
                            record.exp = record.exp.max(*exp);
                            record.first_exp = record.first_exp.min(*exp);
                        }
                        None => {
                            self.records.insert(
                                jti.clone(),
                                Record {
                                    exp: *exp,
                                    first_exp: *exp,
                                    sub: sub.clone(),
                                    reason: reason.clone(),
                                    revoked_at,
                                },
                            );
                        }
                    }
                }
                Change::Expire { now } => self.forget_expired(&params, *now),
                Change::OpenLayer(_)
                | Change::SubjectCutoff { .. }
                | Change::SessionCutoff { .. }
                | Change::GlobalCutoff { .. }
                | Change::Rollover(_) => {}
            }
        }
    }

    /// Whether the filter already holds `jti` in the bucket of `exp` (so revoking it
    /// again adds nothing). A revocation of the same `jti` with an `exp` in another
    /// bucket is not a duplicate: a check with the token's real `exp` looks only in
    /// that bucket.
    pub(crate) fn holds(&self, jti: &str, exp: u64) -> bool {
        let params = self.filter.params();
        self.records
            .get(jti)
            .is_some_and(|r| params.bucket_of(r.exp) == params.bucket_of(exp))
    }

    /// Drops records whose bucket the filter drops at `now`: the same rule, so the
    /// authority and the filter never disagree about a live token.
    pub(crate) fn forget_expired(&mut self, params: &FilterParams, now: u64) {
        let first_live = params.first_live_bucket(now);
        self.records
            .retain(|_, r| params.bucket_of(r.exp) >= first_live);
        self.bucket_entries = self.bucket_entries.split_off(&first_live);
    }

    /// The most entries any live bucket holds, over its whole width: the first layer
    /// of a new bucket is sized for that, so steady traffic needs one layer per bucket.
    pub(crate) fn capacity_hint(&self) -> u64 {
        let width = self.filter.params().bucket_width;
        self.bucket_entries
            .values()
            .map(|c| c.full_width_estimate(width))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(jti: &str, exp: u64) -> Change {
        Change::Add {
            jti: jti.into(),
            exp,
            sub: Some("alice".into()),
            reason: None,
        }
    }

    #[test]
    fn records_follow_adds_and_expiry() {
        let params = FilterParams::default();
        let mut ledger = Ledger::new(Filter::new(params.clone()).unwrap());
        let mut staging = ledger.filter.stage();
        staging.revoke("a", 7_200, || 1).unwrap();
        staging.revoke("b", 20_000, || 2).unwrap();
        let delta = Delta {
            epoch: 0,
            version: 1,
            committed_at_ms: 5_000,
            changes: staging.finish(),
        };
        ledger.apply(&delta).unwrap();
        assert_eq!(ledger.records.len(), 2);
        assert_eq!(ledger.records["a"].revoked_at, 5);
        // One entry in a bucket: counted over an eighth of the width at least.
        assert_eq!(ledger.capacity_hint(), 8);
        // A replayed delta that repeats a jti keeps the first record; a later exp
        // extends it.
        ledger.note(&Delta {
            epoch: 0,
            version: 1,
            committed_at_ms: 9_000,
            changes: vec![add("a", 7_200)],
        });
        assert_eq!(ledger.records["a"].revoked_at, 5);
        assert!(ledger.holds("a", 7_201));
        assert!(!ledger.holds("a", 20_000));
        ledger.note(&Delta {
            epoch: 0,
            version: 1,
            committed_at_ms: 9_000,
            changes: vec![add("a", 7_300)],
        });
        assert_eq!(ledger.records["a"].exp, 7_300);
        let expire = Delta {
            epoch: 0,
            version: 2,
            committed_at_ms: 0,
            changes: vec![Change::Expire { now: 11_200 }],
        };
        ledger.apply(&expire).unwrap();
        assert!(!ledger.records.contains_key("a"));
        assert!(ledger.records.contains_key("b"));
        assert!(!ledger.filter.contains("a", Some(7_200)));
    }

    #[test]
    fn the_hint_extrapolates_buckets_seen_over_part_of_their_width() {
        let params = FilterParams::default(); // one-hour buckets
        let mut ledger = Ledger::new(Filter::new(params).unwrap());
        let base = 1_767_225_600;
        // 900 entries over the last quarter of an hour (a publisher that started at
        // 12:45), and 3,000 over a whole hour.
        let mut staging = ledger.filter.stage();
        for i in 0..900u64 {
            staging
                .revoke(&format!("a{i}"), base + 2_700 + i, || i + 1)
                .unwrap();
        }
        for i in 0..3_000u64 {
            staging
                .revoke(&format!("b{i}"), base + 3_600 + i * 6 / 5, || i + 1)
                .unwrap();
        }
        let delta = Delta {
            epoch: 0,
            version: 1,
            committed_at_ms: 0,
            changes: staging.finish(),
        };
        ledger.apply(&delta).unwrap();
        // 900 over 900 s is 3,600 an hour: more than the full bucket's 3,000.
        assert_eq!(ledger.capacity_hint(), 3_600);
    }
}
