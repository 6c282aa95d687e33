//! The pending-event set, ordered by (time, sequence number).
//!
//! The sequence number is the order in which events were scheduled, so events at the same
//! instant run in scheduling order and a run is reproducible bit for bit. A binary heap of
//! small `Copy` items: no allocation per event once the heap has grown to its working size.

use super::time::Time;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Copy)]
struct Scheduled<E> {
    time: Time,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        self.time == other.time && self.seq == other.seq
    }
}
impl<E> Eq for Scheduled<E> {}
impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Scheduled<E> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time
            .cmp(&self.time)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Events waiting to happen, and the clock.
pub struct EventQueue<E> {
    heap: BinaryHeap<Scheduled<E>>,
    next_seq: u64,
    now: Time,
    popped: u64,
}

impl<E: Copy> EventQueue<E> {
    pub fn new(start: Time) -> Self {
        EventQueue {
            heap: BinaryHeap::with_capacity(1024),
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
        self.heap.push(Scheduled { time, seq, event });
    }

    /// Schedules `event` `delay` after now.
    pub fn schedule_in(&mut self, delay: Time, event: E) {
        self.schedule(self.now + delay, event);
    }

    /// Time of the next event, if any.
    pub fn peek_time(&self) -> Option<Time> {
        self.heap.peek().map(|s| s.time)
    }

    /// Removes the next event and advances the clock to its time.
    pub fn pop(&mut self) -> Option<(Time, E)> {
        let next = self.heap.pop()?;
        self.now = next.time;
        self.popped += 1;
        Some((next.time, next.event))
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
