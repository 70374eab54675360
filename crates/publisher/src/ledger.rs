//! The publisher's state: the filter that replicas mirror, plus the exact records the
//! authority answers from. Both change only through [`Ledger::apply`], with a delta
//! that JetStream has stored.

use std::collections::{BTreeMap, HashMap};

use revocast_core::{Change, Delta, Filter, FilterError, FilterParams};
use serde::Serialize;

/// What the authority knows about one revoked `jti`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The token's `exp`, unix seconds.
    pub exp: u64,
    /// The token's `sub`, when the revoke call gave it.
    pub sub: Option<String>,
    /// Why, as given to the revoke call.
    pub reason: Option<String>,
    /// When the delta holding it was committed, unix seconds.
    pub revoked_at: u64,
}

/// Filter and records, always at the same version.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(crate) filter: Filter,
    pub(crate) records: HashMap<String, Record>,
    /// Live revocations per bucket, for sizing new buckets.
    bucket_entries: BTreeMap<u64, u64>,
}

impl Ledger {
    pub(crate) fn new(filter: Filter) -> Ledger {
        Ledger {
            filter,
            records: HashMap::new(),
            bucket_entries: BTreeMap::new(),
        }
    }

    /// Applies a stored delta to the filter, then to the records.
    pub(crate) fn apply(&mut self, delta: &Delta) -> Result<(), FilterError> {
        self.filter.apply(delta)?;
        self.note(delta);
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
                    *self
                        .bucket_entries
                        .entry(params.bucket_of(*exp))
                        .or_default() += 1;
                    match self.records.get_mut(jti) {
                        // The same jti revoked again with an exp in another bucket
                        // (a caller's first exp was wrong): the record lives as long
                        // as the latest entry; the first revocation time stays.
                        Some(record) => record.exp = record.exp.max(*exp),
                        None => {
                            self.records.insert(
                                jti.clone(),
                                Record {
                                    exp: *exp,
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
                | Change::GlobalCutoff { .. } => {}
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

    /// The most entries any live bucket holds: the first layer of a new bucket is
    /// sized for that, so steady traffic needs one layer per bucket.
    pub(crate) fn capacity_hint(&self) -> u64 {
        self.bucket_entries.values().copied().max().unwrap_or(0)
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
        staging
            .revoke("a", 7_200, crate::keys::bloom_seed_or_panic)
            .unwrap();
        staging
            .revoke("b", 20_000, crate::keys::bloom_seed_or_panic)
            .unwrap();
        let delta = Delta {
            version: 1,
            committed_at_ms: 5_000,
            changes: staging.finish(),
        };
        ledger.apply(&delta).unwrap();
        assert_eq!(ledger.records.len(), 2);
        assert_eq!(ledger.records["a"].revoked_at, 5);
        assert_eq!(ledger.capacity_hint(), 1);
        // A replayed delta that repeats a jti keeps the first record; a later exp
        // extends it.
        ledger.note(&Delta {
            version: 1,
            committed_at_ms: 9_000,
            changes: vec![add("a", 7_200)],
        });
        assert_eq!(ledger.records["a"].revoked_at, 5);
        assert!(ledger.holds("a", 7_201));
        assert!(!ledger.holds("a", 20_000));
        ledger.note(&Delta {
            version: 1,
            committed_at_ms: 9_000,
            changes: vec![add("a", 7_300)],
        });
        assert_eq!(ledger.records["a"].exp, 7_300);
        let expire = Delta {
            version: 2,
            committed_at_ms: 0,
            changes: vec![Change::Expire { now: 11_200 }],
        };
        ledger.apply(&expire).unwrap();
        assert!(!ledger.records.contains_key("a"));
        assert!(ledger.records.contains_key("b"));
        assert!(!ledger.filter.contains("a", Some(7_200)));
    }
}
