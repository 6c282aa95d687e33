//! The pending-event set, ordered by (time, sequence number).
//!
//! The sequence number is the order in which events were scheduled, so events at the same
//! instant run in scheduling order and a run is reproducible bit for bit.
//!
//! Layout, chosen by profile (BENCHMARKS.md, "engine"): a 4-ary min-heap of `Copy` items
//! whose order is one `u128` key — the time with its sign bit flipped, then the sequence
//! number — so each comparison is a single integer compare, and a pop walks half as many
//! levels as a binary heap, touching one cache line of children per level. No allocation
//! per event once the heap has grown to its working size. Since (time, seq) is a total
//! order, any correct heap pops exactly the same sequence.

use super::time::Time;

/// Children per node.
const ARITY: usize = 4;

#[derive(Clone, Copy)]
struct Scheduled<E> {
    key: u128,
    event: E,
}

/// The order of (time, seq) as one unsigned integer: flipping the sign bit maps `i64`
/// order onto `u64` order.
fn key(time: Time, seq: u64) -> u128 {
    (u128::from((time as u64) ^ (1 << 63)) << 64) | u128::from(seq)
}

fn time_of(key: u128) -> Time {
    (((key >> 64) as u64) ^ (1 << 63)) as Time
}

/// Events waiting to happen, and the clock.
pub struct EventQueue<E> {
    heap: Vec<Scheduled<E>>,
    next_seq: u64,
    now: Time,
    popped: u64,
}

impl<E: Copy> EventQueue<E> {
    pub fn new(start: Time) -> Self {
        EventQueue {
            heap: Vec::with_capacity(1024),
            next_seq: 0,
            now: start,
            popped: 0,
        }
    }

    /// The current simulated time: the time of the event being handled.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Schedules `event` at `time`; a time in the past is a model bug, so it is clamped to now
    /// in release builds and caught by the debug assertion in tests.
    pub fn schedule(&mut self, time: Time, event: E) {
        debug_assert!(time >= self.now, "event scheduled in the past");
        let time = time.max(self.now);
        let seq = self.next_seq;
        self.next_seq += 1;
        let item = Scheduled {
            key: key(time, seq),
            event,
        };
        // Sift up: move parents down into the hole until the item fits.
        let mut i = self.heap.len();
        self.heap.push(item);
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if self.heap[parent].key <= item.key {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = item;
    }

    /// Schedules `event` `delay` after now.
    pub fn schedule_in(&mut self, delay: Time, event: E) {
        self.schedule(self.now + delay, event);
    }

    /// Time of the next event, if any.
    pub fn peek_time(&self) -> Option<Time> {
        self.heap.first().map(|s| time_of(s.key))
    }

    /// Removes the next event and advances the clock to its time.
    pub fn pop(&mut self) -> Option<(Time, E)> {
        let last = self.heap.pop()?;
        let top = match self.heap.first() {
            Some(&top) => top,
            None => last,
        };
        let heap = &mut self.heap[..];
        let n = heap.len();
        if n > 0 {
            // Sift the last item down from the root: move the smallest child up into the
            // hole until the item fits.
            let mut i = 0;
            loop {
                let first = i * ARITY + 1;
                let child = if let Some(c) = heap.get(first..first + ARITY) {
                    // A full node (all but the last): a tournament of two pairs.
                    let (a, ka) = if c[1].key < c[0].key {
                        (1, c[1].key)
                    } else {
                        (0, c[0].key)
                    };
                    let (b, kb) = if c[3].key < c[2].key {
                        (3, c[3].key)
                    } else {
                        (2, c[2].key)
                    };
                    let (m, km) = if kb < ka { (b, kb) } else { (a, ka) };
                    if km >= last.key {
                        break;
                    }
                    first + m
                } else if first < n {
                    let mut m = first;
                    for c in first + 1..n {
                        if heap[c].key < heap[m].key {
                            m = c;
                        }
                    }
                    if heap[m].key >= last.key {
                        break;
                    }
                    m
                } else {
                    break;
                };
                heap[i] = heap[child];
                i = child;
            }
            heap[i] = last;
        }
        let time = time_of(top.key);
        self.now = time;
        self.popped += 1;
        Some((time, top.event))
    }

    /// Sets the clock without an event (used to close a run at its stop time).
    pub fn advance_to(&mut self, time: Time) {
        if time > self.now {
            self.now = time;
        }
    }

    /// Events handled so far: the engine's unit of work ("one pop from the event queue").
    pub fn events_popped(&self) -> u64 {
        self.popped
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_time_events_keep_scheduling_order() {
        let mut q = EventQueue::new(0);
        q.schedule(10, 'b');
        q.schedule(5, 'a');
        q.schedule(10, 'c');
        q.schedule(10, 'd');
        let order: Vec<char> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, vec!['a', 'b', 'c', 'd']);
        assert_eq!(q.now(), 10);
        assert_eq!(q.events_popped(), 4);
    }

    #[test]
    fn keys_order_like_time_then_sequence() {
        let times = [Time::MIN, -5_000_000, -1, 0, 1, 300_000_000, Time::MAX];
        for w in times.windows(2) {
            assert!(key(w[0], u64::MAX) < key(w[1], 0));
            assert_eq!(time_of(key(w[0], 7)), w[0]);
        }
        assert!(key(3, 1) < key(3, 2));
    }

    #[test]
    fn pops_in_the_order_of_a_stable_sort() {
        // Interleaved schedules and pops with many ties, against (time, seq) sorted.
        let mut rng = crate::engine::RngStreams::new(11).stream("queue-test", 0);
        let mut q = EventQueue::new(-100);
        let mut pending: Vec<(Time, u32)> = Vec::new();
        let mut next = 0u32;
        let mut popped = Vec::new();
        let mut expected = Vec::new();
        for round in 0..2_000 {
            for _ in 0..rng.random_range(0..6) {
                let t = q.now() + rng.random_range(0..40);
                q.schedule(t, next);
                pending.push((t, next));
                next += 1;
            }
            if round % 3 != 0 {
                // Stable: equal times keep scheduling (= push) order.
                pending.sort_by_key(|&(t, _)| t);
                if let Some((t, e)) = q.pop() {
                    let (et, ee) = pending.remove(0);
                    popped.push((t, e));
                    expected.push((et, ee));
                }
            }
        }
        while let Some(x) = q.pop() {
            pending.sort_by_key(|&(t, _)| t);
            popped.push(x);
            expected.push(pending.remove(0));
        }
        assert_eq!(popped, expected);
        assert!(q.is_empty());
        assert_eq!(q.events_popped(), u64::from(next));
    }
}
