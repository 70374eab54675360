//! [`Buckets`]: a filter's buckets by index, found in one step on the hot path.

use super::layer::Bucket;

/// Buckets sorted by index. Live buckets are almost always consecutive (every hour of
/// `exp` has revocations), so a bucket is usually at `index - first index`; when it is
/// not (an hour without revocations), a binary search finds it. A sorted `Vec` keeps
/// lookups free of the pointer chasing of a tree.
#[derive(Clone, Debug, Default)]
pub(super) struct Buckets(Vec<(u64, Bucket)>);

impl Buckets {
    #[inline]
    fn position(&self, index: u64) -> Result<usize, usize> {
        if let Some(&(first, _)) = self.0.first() {
            let guess = index.wrapping_sub(first);
            if guess < self.0.len() as u64 && self.0[guess as usize].0 == index {
                return Ok(guess as usize);
            }
        }
        self.0.binary_search_by_key(&index, |(i, _)| *i)
    }

    #[inline]
    pub(super) fn get(&self, index: u64) -> Option<&Bucket> {
        self.position(index).ok().map(|p| &self.0[p].1)
    }

    pub(super) fn get_mut(&mut self, index: u64) -> Option<&mut Bucket> {
        self.position(index).ok().map(|p| &mut self.0[p].1)
    }

    pub(super) fn get_or_insert_with(
        &mut self,
        index: u64,
        make: impl FnOnce() -> Bucket,
    ) -> &mut Bucket {
        let p = match self.position(index) {
            Ok(p) => p,
            Err(p) => {
                self.0.insert(p, (index, make()));
                p
            }
        };
        &mut self.0[p].1
    }

    /// Appends a bucket above every other; `false` (and nothing added) otherwise.
    pub(super) fn push_above(&mut self, index: u64, bucket: Bucket) -> bool {
        if self.0.last().is_some_and(|&(last, _)| last >= index) {
            return false;
        }
        self.0.push((index, bucket));
        true
    }

    /// Drops every bucket below `index`.
    pub(super) fn drop_below(&mut self, index: u64) {
        let keep = self.0.partition_point(|&(i, _)| i < index);
        self.0.drain(..keep);
    }

    pub(super) fn first_index(&self) -> Option<u64> {
        self.0.first().map(|&(i, _)| i)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &Bucket)> {
        self.0.iter().map(|(i, b)| (*i, b))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Bucket> {
        self.0.iter().map(|(_, b)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_buckets_with_and_without_gaps() {
        let mut buckets = Buckets::default();
        for i in [10, 11, 12, 20, 21] {
            assert!(buckets.push_above(i, Bucket::new(i)));
        }
        assert!(!buckets.push_above(21, Bucket::new(0)));
        for i in [10, 11, 12, 20, 21] {
            assert_eq!(buckets.get(i).map(|b| b.seed), Some(i));
        }
        for i in [0, 9, 13, 15, 19, 22, u64::MAX] {
            assert!(buckets.get(i).is_none(), "{i}");
        }
        buckets.get_or_insert_with(15, || Bucket::new(15));
        buckets.get_or_insert_with(1, || Bucket::new(1));
        let order: Vec<u64> = buckets.iter().map(|(i, _)| i).collect();
        assert_eq!(order, vec![1, 10, 11, 12, 15, 20, 21]);
        assert_eq!(buckets.get(15).map(|b| b.seed), Some(15));
        buckets.drop_below(12);
        assert_eq!(buckets.first_index(), Some(12));
        assert_eq!(buckets.iter().count(), 4);
        buckets.drop_below(u64::MAX);
        assert_eq!(buckets.iter().count(), 0);
    }
}
