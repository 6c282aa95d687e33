//! qmgr's timers as Postfix's event loop keeps them (`util/events.c`: `event_request_timer`,
//! `event_loop`; `../shared/postfix-model.md` §3.1–3.2).
//!
//! - A timer's due time is a whole second: `when = time() + delay` at the request. Requests
//!   are kept in (`when`, request order).
//! - One wakeup of the event loop first runs every timer that is due (`when <= time()`), then
//!   the I/O event that woke it (an agent's status, a trigger from cleanup, master or
//!   postqueue), and only then does `qmgr_loop` import files. So a dead queue whose revival
//!   timer is due in the same second as the deferred-scan timer is alive again before the
//!   scan's files reach it.
//! - With nothing else to wake it, qmgr sleeps in select() for whole seconds counted from
//!   its last wakeup (`select_delay = when - time()`), so a timer due at second W fires at W
//!   plus the fraction of a second at which qmgr last woke: up to a second late. A busy qmgr
//!   runs its timers at the first wakeup at or after W.
//!
//! At default timers (300 s) the second hardly matters; at the compressed timers of a test
//! bed it decides whether a greylisted retry passes (tests/fidelity/greylisting).

use crate::engine::time::{SECOND, Time, whole_seconds};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a qmgr timer calls when it fires (the `event_request_timer` callback and context).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// `qmgr_deferred_run_event`: the periodic deferred-queue scan of qmgr `generation`.
    DeferredScan { generation: u32 },
    /// `qmgr_queue_unthrottle_wrapper`: a dead queue's `minimal_backoff_time` is over.
    QueueRevive { queue: u32, generation: u32 },
    /// `qmgr_transport_unthrottle_wrapper`: a dead transport's `transport_retry_time` is over.
    TransportRevive { transport: u16, generation: u32 },
    /// `qmgr_queue_resume`: a rate-delayed queue's suspension is over.
    QueueResume { queue: u32, generation: u32 },
}

#[derive(Debug)]
pub struct EventLoop {
    /// (when in whole seconds, request order, callback).
    timers: BinaryHeap<Reverse<(i64, u64, Timer)>>,
    requests: u64,
    last_wake: Time,
}

impl EventLoop {
    /// The event loop of a qmgr that started at `started`.
    pub fn new(started: Time) -> Self {
        EventLoop {
            timers: BinaryHeap::new(),
            requests: 0,
            last_wake: started,
        }
    }

    /// `event_request_timer(timer, delay_s)` at `now`; returns the instant the timer is due
    /// (a whole second), when the engine must look at it.
    pub fn request(&mut self, timer: Timer, delay_s: i64, now: Time) -> Time {
        self.request_at(timer, whole_seconds(now) + delay_s)
    }

    /// A timer due at whole second `when_s`.
    pub fn request_at(&mut self, timer: Timer, when_s: i64) -> Time {
        self.requests += 1;
        self.timers.push(Reverse((when_s, self.requests, timer)));
        when_s * SECOND
    }

    /// Is some timer due at `now`?
    pub fn has_due(&self, now: Time) -> bool {
        self.timers
            .peek()
            .is_some_and(|Reverse((when, _, _))| *when <= whole_seconds(now))
    }

    /// The next due timer at `now`, in (when, request) order.
    pub fn pop_due(&mut self, now: Time) -> Option<Timer> {
        if self.has_due(now) {
            self.timers.pop().map(|Reverse((_, _, t))| t)
        } else {
            None
        }
    }

    /// When select() returns by itself for a timer due at whole second `due`, nothing else
    /// having woken qmgr since its last wakeup.
    pub fn select_timeout(&self, due: Time) -> Time {
        due + self.last_wake.rem_euclid(SECOND)
    }

    /// qmgr woke at `now`.
    pub fn woke(&mut self, now: Time) {
        self.last_wake = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Timer = Timer::DeferredScan { generation: 0 };

    #[test]
    fn due_times_are_whole_seconds_from_the_request() {
        let mut l = EventLoop::new(0);
        // Requested at 12.3 s with a 10 s delay: due at second 22, not at 22.3.
        assert_eq!(l.request(A, 10, 12_300_000), 22 * SECOND);
        assert!(!l.has_due(22 * SECOND - 1));
        assert!(l.has_due(22 * SECOND));
    }

    #[test]
    fn select_sleeps_whole_seconds_from_the_last_wakeup() {
        let mut l = EventLoop::new(-2_500_000);
        // An idle qmgr started at -2.5 s keeps its phase: a timer due at 2 fires at 2.5.
        assert_eq!(l.select_timeout(2 * SECOND), 2_500_000);
        // After a wakeup at 13.78 s, a timer due at 18 fires at 18.78.
        l.woke(13_780_000);
        assert_eq!(l.select_timeout(18 * SECOND), 18_780_000);
    }

    #[test]
    fn timers_run_by_due_second_then_in_request_order() {
        let mut l = EventLoop::new(0);
        let revive = |queue| Timer::QueueRevive {
            queue,
            generation: 0,
        };
        l.request(revive(2), 10, 26_400_000); // due 36
        l.request_at(A, 36); // due 36, asked for after queue 2's
        l.request(revive(1), 5, 20_000_000); // due 25
        assert_eq!(l.pop_due(36 * SECOND), Some(revive(1)));
        assert_eq!(l.pop_due(36 * SECOND), Some(revive(2)));
        assert_eq!(l.pop_due(36 * SECOND), Some(A));
        assert_eq!(l.pop_due(36 * SECOND), None);
    }
}
