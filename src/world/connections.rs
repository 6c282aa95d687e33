//! A server's limit on our concurrent connections (SCHEDULER_README's concurrency-limited
//! server experiments). Every connection's end is known when it is admitted, because the
//! session model decides a whole host conversation at once; so the slots are just "busy
//! until" times, and a connection that must wait in the listen backlog takes the slot that
//! frees first (first come, first served).

use crate::engine::time::Time;
use crate::scenario::{Excess, MaxConnectionsSpec};

pub struct ConnectionSlots {
    excess: Excess,
    busy_until: Vec<Time>,
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
        ConnectionSlots {
            excess: spec.excess,
            busy_until: vec![Time::MIN; spec.limit.max(1) as usize],
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
                let start = free_at;
                if start - t >= greeting_timeout {
                    self.waiting_until.push(t + greeting_timeout);
                    // It never gets the slot: report it as served "too late".
                    return Admission::Served { slot, start };
                }
                self.waiting_until.push(start);
                // Reserve the slot now so the next arrival queues behind this one.
                self.busy_until[slot] = start;
                Admission::Served { slot, start }
            }
        }
    }

    /// Connection in `slot` ends at `until`.
    pub fn hold(&mut self, slot: usize, until: Time) {
        if let Some(s) = self.busy_until.get_mut(slot) {
            *s = (*s).max(until);
        }
    }
}
