//! The due files of a running deferred pass, in directory (readdir) order.
//!
//! Files come due in batches — at a scan's start, every file whose time stamp has passed;
//! then, as the clock moves on, the few whose second has come — and leave one by one in
//! key order. A binary heap of every due file cost most of a backlog run (500 000 files
//! through it at every scan, BENCHMARKS.md), so large batches go into one vector kept
//! sorted (a stable sort merges a new batch into it in linear time, the old part being one
//! sorted run), small ones into a heap beside it. The order out is the same total order on
//! (key, move stamp, slot) whichever holds an item, so results do not depend on this.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// (readdir key, move stamp, message slot).
pub(crate) type DueItem = (u64, u64, u32);

/// Below this many, a batch goes into the heap.
const SMALL_BATCH: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct DueOrder {
    /// Sorted descending: the next item is at the end.
    sorted: Vec<DueItem>,
    small: BinaryHeap<Reverse<DueItem>>,
}

impl DueOrder {
    /// Adds `batch` (emptied; its capacity is kept for the next one).
    pub fn add(&mut self, batch: &mut Vec<DueItem>) {
        if batch.len() < SMALL_BATCH {
            self.small.extend(batch.drain(..).map(Reverse));
            return;
        }
        self.sorted.append(batch);
        self.sorted.extend(
            std::mem::take(&mut self.small)
                .into_iter()
                .map(|Reverse(i)| i),
        );
        self.sorted.sort_by(|a, b| b.cmp(a));
    }

    /// The smallest item, removed.
    pub fn pop(&mut self) -> Option<DueItem> {
        match (self.sorted.last(), self.small.peek()) {
            (Some(a), Some(Reverse(b))) if b < a => self.small.pop().map(|Reverse(i)| i),
            (Some(_), _) => self.sorted.pop(),
            (None, _) => self.small.pop().map(|Reverse(i)| i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_leave_in_order_whatever_the_batch_sizes() {
        // A deterministic shuffle of 0..1000 in batches of 1, 3, 100, 7, 500, … with pops
        // in between: the pops must match a heap of the same items.
        let mut order = DueOrder::default();
        let mut heap = BinaryHeap::new();
        let mut x: u64 = 12345;
        let mut next = || {
            x = crate::engine::rng::splitmix64(x);
            x % 10_000
        };
        let mut out = (Vec::new(), Vec::new());
        for (round, size) in [1usize, 3, 100, 7, 500, 2, 64, 63, 200].iter().enumerate() {
            let mut batch: Vec<DueItem> = (0..*size)
                .map(|i| (next(), round as u64, i as u32))
                .collect();
            heap.extend(batch.iter().copied().map(Reverse));
            order.add(&mut batch);
            assert!(batch.is_empty());
            for _ in 0..size / 2 + 1 {
                out.0.push(order.pop());
                out.1.push(heap.pop().map(|Reverse(i)| i));
            }
        }
        while let Some(Reverse(i)) = heap.pop() {
            out.1.push(Some(i));
            out.0.push(order.pop());
        }
        assert_eq!(order.pop(), None);
        assert_eq!(out.0, out.1);
    }
}
