//! The SMTP connection cache: Postfix's scache(8) (`scache/scache.c`, `global/scache_multi.c`)
//! as the smtp(8) client uses it (`smtp/smtp_reuse.c`; `../shared/postfix-model.md` §6.3).
//!
//! A good session is parked after its transaction under its server's address (the
//! "endpoint"), and the first good session of a request also gets a binding from the
//! request's next-hop domain to that endpoint. Both live for the idle limit,
//! `min(smtp_connection_cache_time_limit, connection_cache_ttl_limit)`; saving a binding that
//! exists refreshes its time to live. An endpoint lookup takes the most recently parked
//! session (scache_multi prepends to its ring and takes the head); a next-hop lookup walks
//! the destination's bindings, newest first, and takes a session of the first endpoint that
//! has one. A session taken from the cache leaves it.
//!
//! Sessions are decided whole when their conversation starts (`mod.rs`), so a session is
//! parked when that conversation is decided, stamped with the instant it becomes idle (the
//! end of its transaction); lookups run at the simulated "now" and see only sessions idle
//! by then. Lookups come in event order, so what has expired by a lookup's time can go.

use crate::engine::time::Time;

/// An idle connection waiting in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleSession {
    /// Idle from (the end of the transaction that left it idle).
    pub parked: Time,
    /// scache closes it then if nobody took it: idle for `[parked, idle_until)`.
    pub idle_until: Time,
    /// `expire_time` in whole seconds: its opening second plus
    /// `smtp_connection_reuse_time_limit` (`smtp_session_alloc`).
    pub expire_s: i64,
    /// `reuse_count`: times it was taken from the cache so far (`smtp_session_activate`).
    pub reuse_count: u32,
    /// The remote's connection slot it occupies, with the slot's admission count when it
    /// took it, so a connection admitted to the slot since shows it was lost.
    pub slot: Option<(usize, u64)>,
}

impl IdleSession {
    fn idle_at(&self, now: Time) -> bool {
        self.parked <= now && now < self.idle_until
    }
}

/// A next-hop → endpoint binding (`scache_save_dest`).
#[derive(Clone, Copy, Debug)]
struct Binding {
    host: u32,
    /// Created then (a refresh keeps it, and its place in the ring).
    since: Time,
    until: Time,
}

#[derive(Default)]
pub struct SessionCache {
    /// Per host: its idle sessions.
    by_host: Vec<Vec<IdleSession>>,
    /// Per destination: its bindings.
    by_nexthop: Vec<Vec<Binding>>,
}

impl SessionCache {
    pub fn new(hosts: usize, destinations: usize) -> Self {
        SessionCache {
            by_host: vec![Vec::new(); hosts],
            by_nexthop: vec![Vec::new(); destinations],
        }
    }

    /// scache exits (`postfix reload`, `start`): every session it held, with its host.
    pub fn drain(&mut self) -> Vec<(u32, IdleSession)> {
        self.by_nexthop.iter_mut().for_each(Vec::clear);
        let mut all = Vec::new();
        for (h, list) in self.by_host.iter_mut().enumerate() {
            all.extend(list.drain(..).map(|s| (h as u32, s)));
        }
        all
    }

    /// `smtp_save_session`, decided at `now`: parks `session` at `host`, and binds
    /// `nexthop` to `host` when given, both until `session.idle_until`.
    pub fn park(&mut self, now: Time, host: u32, nexthop: Option<u32>, session: IdleSession) {
        if let Some(list) = self.by_host.get_mut(host as usize) {
            // Lookups prune what they pass; this only bounds a host nobody asks for again.
            if list.len() >= PRUNE_AT {
                list.retain(|s| now < s.idle_until);
            }
            list.push(session);
        }
        let Some(bindings) = nexthop.and_then(|d| self.by_nexthop.get_mut(d as usize)) else {
            return;
        };
        if bindings.len() >= PRUNE_AT {
            bindings.retain(|b| now < b.until);
        }
        let at = session.parked;
        match bindings
            .iter_mut()
            .find(|b| b.host == host && b.since <= at && at < b.until)
        {
            Some(b) => b.until = b.until.max(session.idle_until),
            None => {
                // Kept in creation order (ring_prepend), which is not always the order in
                // which conversations were decided.
                let i = bindings.partition_point(|b| b.since <= at);
                bindings.insert(
                    i,
                    Binding {
                        host,
                        since: at,
                        until: session.idle_until,
                    },
                );
            }
        }
    }

    /// `scache_find_endp`: takes the most recently parked session of `host` idle at `now`.
    pub fn take_endpoint(&mut self, host: u32, now: Time) -> Option<IdleSession> {
        take_endpoint(&mut self.by_host, host, now)
    }

    /// `scache_find_dest`: the session of the newest binding of destination `dest` whose
    /// endpoint has one idle at `now`, with its host.
    pub fn take_nexthop(&mut self, dest: u32, now: Time) -> Option<(u32, IdleSession)> {
        let bindings = self.by_nexthop.get_mut(dest as usize)?;
        bindings.retain(|b| now < b.until);
        for b in bindings.iter().rev().filter(|b| b.since <= now) {
            if let Some(s) = take_endpoint(&mut self.by_host, b.host, now) {
                return Some((b.host, s));
            }
        }
        None
    }
}

/// Lists longer than this are pruned when something is added to them.
const PRUNE_AT: usize = 32;

fn take_endpoint(by_host: &mut [Vec<IdleSession>], host: u32, now: Time) -> Option<IdleSession> {
    let list = by_host.get_mut(host as usize)?;
    // One pass on the hot path: the newest idle session, and whether any has expired.
    let mut best: Option<(Time, usize)> = None;
    let mut expired = false;
    for (i, s) in list.iter().enumerate() {
        if s.idle_at(now) {
            if best.is_none_or(|b| (s.parked, i) > b) {
                best = Some((s.parked, i));
            }
        } else {
            expired |= s.idle_until <= now;
        }
    }
    let taken = best.map(|(_, i)| list.remove(i));
    if expired {
        list.retain(|s| now < s.idle_until);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(parked: Time, idle_until: Time) -> IdleSession {
        IdleSession {
            parked,
            idle_until,
            expire_s: 1_000,
            reuse_count: 0,
            slot: None,
        }
    }

    #[test]
    fn an_endpoint_gives_its_newest_idle_session_and_closes_stale_ones() {
        let mut c = SessionCache::new(1, 1);
        c.park(0, 0, None, session(10, 12));
        c.park(0, 0, None, session(11, 13));
        c.park(0, 0, None, session(20, 22)); // not idle yet at 11 or 12
        assert_eq!(c.take_endpoint(0, 9), None, "not before it is idle");
        assert_eq!(c.take_endpoint(0, 11).map(|s| s.parked), Some(11));
        assert_eq!(c.take_endpoint(0, 11).map(|s| s.parked), Some(10));
        assert_eq!(c.take_endpoint(0, 11), None, "each session is given once");
        c.park(11, 0, None, session(15, 17));
        assert_eq!(c.take_endpoint(0, 17), None, "idle until 17, closed at 17");
        assert_eq!(c.take_endpoint(0, 21).map(|s| s.parked), Some(20));
    }

    #[test]
    fn a_nexthop_binding_leads_to_its_endpoint_newest_binding_first() {
        let mut c = SessionCache::new(3, 1);
        // Host 1 bound at 10, host 2 bound at 11; host 0 has a session but no binding.
        c.park(0, 0, None, session(9, 14));
        c.park(0, 1, Some(0), session(10, 12));
        c.park(0, 2, Some(0), session(11, 13));
        assert_eq!(c.take_nexthop(0, 9), None, "no binding yet");
        assert_eq!(c.take_nexthop(0, 11).map(|(h, _)| h), Some(2));
        // Host 2 has no session left: the older binding's endpoint serves.
        assert_eq!(c.take_nexthop(0, 11).map(|(h, _)| h), Some(1));
        assert_eq!(c.take_nexthop(0, 11), None, "host 0 is not bound");
    }

    #[test]
    fn saving_a_live_binding_again_refreshes_it() {
        let mut c = SessionCache::new(2, 1);
        c.park(0, 0, Some(0), session(10, 12));
        c.park(0, 1, Some(0), session(11, 13));
        // Host 0 parks again at 11 under the name: its binding lives to 14 but keeps its
        // place behind host 1's newer one.
        c.park(1, 0, Some(0), session(11, 14));
        assert_eq!(c.take_nexthop(0, 12).map(|(h, _)| h), Some(1));
        assert_eq!(
            c.take_nexthop(0, 13).map(|(h, s)| (h, s.parked)),
            Some((0, 11))
        );
        // The binding expired with its time to live, though host 0 still has a session.
        c.park(13, 0, None, session(14, 20));
        assert_eq!(c.take_nexthop(0, 15), None);
        assert_eq!(c.take_endpoint(0, 15).map(|s| s.parked), Some(14));
    }
}
