//! A server's limit on our concurrent connections (SCHEDULER_README's concurrency-limited
//! server experiments). Every connection's end is known when it is admitted, because the
//! session model decides a whole host conversation at once; so the slots are just "busy
//! until" times, and a connection that must wait in the listen backlog takes the slot that
//! frees first (first come, first served).
//!
//! An idle session in our connection cache keeps its slot: a new connection meets it as a
//! busy one (421, mute, or the backlog). Whether the session will be reused is not known
//! when a connection joins the backlog, so a waiting connection takes the slot from the
//! instant its session went idle, and the session is lost to whoever would have reused it
//! (in Postfix a reused session would keep the server process, and the waiting connection
//! would wait until some session closes; either way the server works at its limit).

use crate::engine::time::Time;
use crate::scenario::{Excess, MaxConnectionsSpec};

pub struct ConnectionSlots {
    excess: Excess,
    busy_until: Vec<Time>,
    /// Per slot: since when its connection is an idle cached session (`None`: at work).
    idle_from: Vec<Option<Time>>,
    /// Per slot: connections admitted to it so far (a cached idle session remembers the
    /// count, so it knows whether its slot was handed to someone else meanwhile).
    admitted: Vec<u64>,
    /// When each connection now waiting in the backlog stops waiting.
    waiting_until: Vec<Time>,
}

/// What the server does with a connection that completed its TCP handshake at `t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Served from `start` (≥ t) in slot `slot`; the caller must [`ConnectionSlots::hold`] it.
    Served { slot: usize, start: Time },
    /// Over the limit: 421 at the greeting.
    Reject421,
    /// Over the limit: never greeted.
    Mute,
    /// The backlog is full: the SYN is dropped, the client's connect times out.
    Dropped,
}

impl ConnectionSlots {
    pub fn new(spec: &MaxConnectionsSpec) -> Self {
        let n = spec.limit.max(1) as usize;
        ConnectionSlots {
            excess: spec.excess,
            busy_until: vec![Time::MIN; n],
            idle_from: vec![None; n],
            admitted: vec![0; n],
            waiting_until: Vec::new(),
        }
    }

    /// Admission of a connection arriving at `t`; `greeting_timeout` bounds how long a
    /// backlogged client waits (it gives up then, and its slot is never taken).
    pub fn admit(&mut self, t: Time, greeting_timeout: Time) -> Admission {
        let (slot, free_at) = self
            .busy_until
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(i, until)| (until, i))
            .unwrap_or((0, Time::MIN));
        if free_at <= t {
            self.take(slot, t);
            return Admission::Served { slot, start: t };
        }
        match self.excess {
            Excess::Reject421 => Admission::Reject421,
            Excess::Mute => Admission::Mute,
            Excess::Backlog { length } => {
                self.waiting_until.retain(|&until| until > t);
                if length.is_some_and(|n| self.waiting_until.len() >= n as usize) {
                    return Admission::Dropped;
                }
                // The slot that frees first, an idle session's from when it went idle.
                let (slot, free_at) = (0..self.busy_until.len())
                    .map(|i| (i, self.idle_from[i].unwrap_or(self.busy_until[i])))
                    .min_by_key(|&(i, at)| (at, i))
                    .unwrap_or((0, Time::MIN));
                let start = free_at.max(t);
                if start - t >= greeting_timeout {
                    self.waiting_until.push(t + greeting_timeout);
                    // It never gets the slot: report it as served "too late".
                    return Admission::Served { slot, start };
                }
                self.waiting_until.push(start);
                // Reserve the slot now so the next arrival queues behind this one.
                self.take(slot, start);
                Admission::Served { slot, start }
            }
        }
    }

    /// A new connection gets `slot` from `start`.
    fn take(&mut self, slot: usize, start: Time) {
        self.admitted[slot] += 1;
        self.idle_from[slot] = None;
        self.busy_until[slot] = start;
    }

    /// Connection in `slot` ends at `until`.
    pub fn hold(&mut self, slot: usize, until: Time) {
        if let Some(s) = self.busy_until.get_mut(slot) {
            *s = (*s).max(until);
        }
    }

    /// The connection in `slot` is parked in our cache, idle from `from` until `until`
    /// unless reused.
    pub fn park(&mut self, slot: usize, from: Time, until: Time) {
        if let (Some(s), Some(i)) = (self.busy_until.get_mut(slot), self.idle_from.get_mut(slot)) {
            *s = until;
            *i = Some(from);
        }
    }

    /// Connections admitted to `slot` so far.
    pub fn admissions(&self, slot: usize) -> u64 {
        self.admitted.get(slot).copied().unwrap_or(0)
    }

    /// A cached session that took `slot` when its admission count was `count` is still the
    /// slot's connection (nobody was admitted to it since).
    pub fn still_held(&self, slot: usize, count: u64) -> bool {
        self.admissions(slot) == count
    }

    /// The cached session in `slot` was taken for a delivery or given up: the connection,
    /// at work again, ends at `until` (its idle hold was provisional).
    pub fn release_at(&mut self, slot: usize, until: Time) {
        if let (Some(s), Some(i)) = (self.busy_until.get_mut(slot), self.idle_from.get_mut(slot)) {
            *s = until;
            *i = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(limit: u32, excess: Excess) -> ConnectionSlots {
        ConnectionSlots::new(&MaxConnectionsSpec { limit, excess })
    }

    #[test]
    fn an_idle_cached_session_counts_as_a_connection_for_a_421_server() {
        let mut s = slots(1, Excess::Reject421);
        assert_eq!(s.admit(0, 300), Admission::Served { slot: 0, start: 0 });
        s.hold(0, 10);
        s.park(0, 10, 12);
        assert_eq!(s.admit(11, 300), Admission::Reject421);
        let count = s.admissions(0);
        // Reused at 11 and closed at 15: free from then.
        s.release_at(0, 15);
        assert!(s.still_held(0, count));
        assert_eq!(s.admit(14, 300), Admission::Reject421);
        assert_eq!(s.admit(15, 300), Admission::Served { slot: 0, start: 15 });
        assert!(!s.still_held(0, count));
    }

    #[test]
    fn a_backlogged_connection_takes_an_idle_sessions_slot_from_when_it_went_idle() {
        let mut s = slots(2, Excess::Backlog { length: None });
        assert_eq!(s.admit(0, 300), Admission::Served { slot: 0, start: 0 });
        s.hold(0, 10);
        assert_eq!(s.admit(0, 300), Admission::Served { slot: 1, start: 0 });
        s.hold(1, 20);
        // Slot 0's connection is idle in our cache from 10 (to 12): the next connection,
        // arriving at 5, waits until 10, not 12; slot 1 (busy to 20) is not the first free.
        s.park(0, 10, 12);
        let count = s.admissions(0);
        assert_eq!(s.admit(5, 300), Admission::Served { slot: 0, start: 10 });
        assert!(!s.still_held(0, count), "the cached session lost its slot");
        s.hold(0, 11);
        // The one after waits for slot 0 again (free at 11, before slot 1).
        assert_eq!(s.admit(6, 300), Admission::Served { slot: 0, start: 11 });
    }
}
