//! qmgr's view of the deferred directory: queue files in the order the deferred scan takes
//! them — by time stamp (the file's mtime, whole seconds), then by when they were moved
//! there (the move stamp). Entries are lazily deleted: one whose stamp no longer matches
//! its file is skipped by the scan (`scan.rs`).
//!
//! A binary heap of half a million files was the largest cost of the backlog benchmark
//! (19 levels, a cache miss at most of them, per deferral; BENCHMARKS.md). Time stamps are
//! whole seconds, and nearly all of them lie within `maximal_backoff_time` of now: a
//! calendar of one-second buckets (a ring covering up to [`SPAN`] seconds) takes them in
//! constant time, and a sorted map keeps the rare stamps beyond its reach. Each stamp
//! lives in one of the two. Within a bucket files are in move-stamp order: stamps only
//! grow, so a newly deferred file goes to the back; the files a scan held back go back in
//! order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};

/// Files with one time stamp, by move stamp: (move stamp, slot).
type Bucket = VecDeque<(u64, u32)>;

/// Seconds the ring may cover: 4.5 h, four times the default `maximal_backoff_time`
/// (its memory: 32 bytes per second of its width; emptying it walks that width).
const SPAN: i128 = 1 << 14;
/// How far before the ring's first second a stamp may be and still widen it.
const WIDEN_BACK: i128 = 4096;
/// Emptied buckets kept for reuse (with their capacity), at most this many.
const SPARE_BUCKETS: usize = 64;

#[derive(Default)]
pub(crate) struct DeferredIndex {
    /// `ring[i]` holds the files with time stamp `base + i`; its first bucket is never
    /// empty.
    ring: VecDeque<Bucket>,
    base: i64,
    /// Stamps that were outside the ring when their first file came.
    far: BTreeMap<i64, Bucket>,
    spare: Vec<Bucket>,
}

fn insert(bucket: &mut Bucket, stamp: u64, m: u32) {
    match bucket.back() {
        Some(&(last, _)) if last > stamp => {
            let at = bucket.partition_point(|&(s, _)| s < stamp);
            bucket.insert(at, (stamp, m));
        }
        _ => bucket.push_back((stamp, m)),
    }
}

impl DeferredIndex {
    /// Adds file `m`, moved to deferred/ with move stamp `stamp` and time stamp `mtime`
    /// (in the heap item's shape it replaced, so callers read as before).
    pub fn push(&mut self, Reverse((mtime, stamp, m)): Reverse<(i64, u64, u32)>) {
        if !self.far.is_empty()
            && let Some(bucket) = self.far.get_mut(&mtime)
        {
            insert(bucket, stamp, m);
            return;
        }
        if self.ring.is_empty() {
            self.base = mtime;
        }
        let offset = i128::from(mtime) - i128::from(self.base);
        let len = self.ring.len() as i128;
        let index = if (0..SPAN).contains(&offset) {
            while self.ring.len() as i128 <= offset {
                self.ring.push_back(Bucket::new());
            }
            offset as usize
        } else if offset < 0 && -offset <= WIDEN_BACK && len - offset <= SPAN {
            for _ in 0..-offset {
                self.ring.push_front(Bucket::new());
            }
            self.base = mtime;
            0
        } else {
            let spare = &mut self.spare;
            let bucket = self
                .far
                .entry(mtime)
                .or_insert_with(|| spare.pop().unwrap_or_default());
            insert(bucket, stamp, m);
            return;
        };
        let bucket = &mut self.ring[index];
        if bucket.capacity() == 0
            && let Some(reused) = self.spare.pop()
        {
            *bucket = reused;
        }
        insert(bucket, stamp, m);
    }

    /// Where the first entry is: the ring (its first bucket) or the far map.
    fn first_in_ring(&self) -> Option<bool> {
        let far = self.far.keys().next();
        match (self.ring.is_empty(), far) {
            (true, None) => None,
            (true, Some(_)) => Some(false),
            (false, None) => Some(true),
            (false, Some(&f)) => Some(self.base < f),
        }
    }

    /// The first entry: (mtime, move stamp, slot).
    pub fn peek(&self) -> Option<(i64, u64, u32)> {
        if self.first_in_ring()? {
            let &(stamp, m) = self.ring.front()?.front()?;
            Some((self.base, stamp, m))
        } else {
            let (&mtime, bucket) = self.far.first_key_value()?;
            bucket.front().map(|&(stamp, m)| (mtime, stamp, m))
        }
    }

    /// Removes and returns the first entry.
    pub fn pop(&mut self) -> Option<(i64, u64, u32)> {
        if self.first_in_ring()? {
            let mtime = self.base;
            let (stamp, m) = self.ring.front_mut()?.pop_front()?;
            // Keep the first bucket non-empty: drop the emptied seconds before the next file.
            while self.ring.front().is_some_and(VecDeque::is_empty) {
                if let Some(bucket) = self.ring.pop_front() {
                    self.keep_spare(bucket);
                }
                if !self.ring.is_empty() {
                    self.base += 1;
                }
            }
            Some((mtime, stamp, m))
        } else {
            let mut first = self.far.first_entry()?;
            let mtime = *first.key();
            let item = first.get_mut().pop_front();
            if first.get().is_empty() {
                let bucket = first.remove();
                self.keep_spare(bucket);
            }
            item.map(|(stamp, m)| (mtime, stamp, m))
        }
    }

    fn keep_spare(&mut self, bucket: Bucket) {
        if bucket.capacity() > 0 && self.spare.len() < SPARE_BUCKETS {
            self.spare.push(bucket);
        }
    }

    /// Entries, stale ones included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.ring
            .iter()
            .chain(self.far.values())
            .map(VecDeque::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use std::collections::BinaryHeap;

    /// Plays pushes (time stamps from `mtimes`, in move-stamp order) against the heap the index
    /// replaced, with pops, peeks and held-back files going back in between.
    fn against_a_heap(mtimes: impl Fn(&mut crate::engine::SimRng, u32) -> i64) {
        let mut rng = crate::engine::RngStreams::new(5).stream("deferred-index-test", 0);
        let mut index = DeferredIndex::default();
        let mut heap: BinaryHeap<Reverse<(i64, u64, u32)>> = BinaryHeap::new();
        let mut stamp = 0u64;
        let mut held: Vec<(i64, u64, u32)> = Vec::new();
        for round in 0..20_000u32 {
            stamp += 1;
            let item = (mtimes(&mut rng, round), stamp, round);
            index.push(Reverse(item));
            heap.push(Reverse(item));
            if rng.random_range(0..4) == 0 {
                let got = index.pop();
                assert_eq!(got, heap.pop().map(|Reverse(x)| x));
                held.extend(got);
            }
            if round % 500 == 0 {
                for item in held.drain(..) {
                    index.push(Reverse(item));
                    heap.push(Reverse(item));
                }
            }
            assert_eq!(index.peek(), heap.peek().map(|Reverse(x)| *x));
            if round % 97 == 0 {
                assert_eq!(index.len(), heap.len());
            }
        }
        while let Some(Reverse(x)) = heap.pop() {
            assert_eq!(index.pop(), Some(x));
        }
        assert_eq!(index.len(), 0);
        assert_eq!(index.pop(), None);
    }

    #[test]
    fn pops_in_the_order_of_the_heap_it_replaced() {
        // Backoffs from a clock that moves on, as qmgr makes them.
        against_a_heap(|rng, round| i64::from(round / 10) + rng.random_range(300..4_000));
    }

    #[test]
    fn stamps_far_apart_and_in_the_past_keep_that_order() {
        // Far beyond the ring, far before it, and near its edges: the far map's share.
        against_a_heap(|rng, round| match rng.random_range(0..6) {
            0 => rng.random_range(-10_000_000..10_000_000),
            1 => i64::from(round) * 7_919,
            2 => i64::MAX - rng.random_range(0..3),
            3 => i64::MIN + rng.random_range(0..3),
            _ => i64::from(round / 4) + rng.random_range(-5_000..20_000),
        });
    }
}
