//! A greylisting policy server as postgrey implements it (postgrey(8); its
//! `smtpd_access_policy` in github.com/schweikert/postgrey, read for the rules below). Our
//! host is one client, so the triplet is (sender, recipient) and the client auto-whitelist
//! is a single counter.
//!
//! - A triplet passes once `delay` seconds have gone by since it was first seen.
//! - An unpassed triplet whose first sighting is older than `retry_window` starts over.
//! - Entries not seen for `lifetime` are forgotten (postgrey deletes them in a nightly
//!   sweep; here a lookup ignores them exactly at `lifetime`, and a daily sweep frees them).
//! - Each pass of a triplet that had not passed before counts towards the client's
//!   auto-whitelist, at most once per hour; from `auto_whitelist` counts on, the client is
//!   not greylisted at all.
//!
//! Times are whole seconds, as postgrey's `time()`.
//!
//! Memory: the generated recipients are unique per message, so once a recipient is
//! delivered or bounced its triplet can never be looked up again; the SMTP client then
//! [`Greylist::forget`]s it. What stays is the triplets of recipients still queued, plus
//! those of recipients that left the queue otherwise (expired, deleted, delivered by
//! another server), which the daily sweep frees `lifetime` after they were last seen.

use crate::scenario::GreylistSpec;
use std::collections::HashMap;

const AWL_COUNT_INTERVAL: i64 = 3600;
/// How often forgotten entries are swept out (postgrey's nightly maintenance).
const SWEEP_INTERVAL: i64 = 86_400;

#[derive(Clone, Copy, Debug)]
struct Triplet {
    first: i64,
    last: i64,
}

pub struct Greylist {
    spec: GreylistSpec,
    triplets: HashMap<(u32, u64), Triplet>,
    client_count: u32,
    client_last: Option<i64>,
    /// When the next sweep of expired entries is due.
    next_sweep: i64,
    /// The most triplets held at once.
    peak: usize,
}

impl Greylist {
    pub fn new(spec: GreylistSpec) -> Self {
        Greylist {
            spec,
            triplets: HashMap::new(),
            client_count: 0,
            client_last: None,
            next_sweep: SWEEP_INTERVAL,
            peak: 0,
        }
    }

    /// The most triplets held at once so far.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Triplets held in memory.
    pub fn len(&self) -> usize {
        self.triplets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.triplets.is_empty()
    }

    /// The triplet of a recipient that can never come back (delivered or bounced, with a
    /// key unique to its message): dropping it changes no later answer.
    pub fn forget(&mut self, sender: u32, recipient: u64) {
        self.triplets.remove(&(sender, recipient));
    }

    /// Frees the entries a lookup at `now` would ignore, once a day.
    fn sweep(&mut self, now: i64) {
        if now < self.next_sweep {
            return;
        }
        let lifetime = self.spec.lifetime;
        self.triplets.retain(|_, t| now - t.last <= lifetime);
        self.next_sweep = now + SWEEP_INTERVAL;
    }

    /// The policy decision for one RCPT at `now` (seconds): true = pass, false = 450.
    pub fn check(&mut self, sender: u32, recipient: u64, now: i64) -> bool {
        self.sweep(now);
        let spec = self.spec;
        if spec.auto_whitelist > 0 {
            if self
                .client_last
                .is_some_and(|last| now - last > spec.lifetime)
            {
                self.client_count = 0;
                self.client_last = None;
            }
            if self.client_count >= spec.auto_whitelist {
                if self
                    .client_last
                    .is_some_and(|last| now >= last + AWL_COUNT_INTERVAL || last > now)
                {
                    self.client_count += 1;
                    self.client_last = Some(now);
                }
                return true;
            }
        }
        let known = self
            .triplets
            .get(&(sender, recipient))
            .copied()
            .filter(|t| now - t.last <= spec.lifetime);
        let mut passed_before = false;
        let mut first = now;
        if let Some(t) = known {
            first = t.first;
            if t.last - t.first >= spec.delay {
                passed_before = true;
            } else if now - first > spec.retry_window {
                first = now;
            }
            first = first.min(now);
        }
        self.triplets
            .insert((sender, recipient), Triplet { first, last: now });
        self.peak = self.peak.max(self.triplets.len());
        let passes = now - first >= spec.delay;
        if spec.auto_whitelist > 0
            && passes
            && !passed_before
            && self
                .client_last
                .is_none_or(|last| now >= last + AWL_COUNT_INTERVAL)
        {
            self.client_count += 1;
            self.client_last = Some(now);
        }
        passes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(auto_whitelist: u32) -> GreylistSpec {
        GreylistSpec {
            delay: 300,
            retry_window: 2 * 86_400,
            lifetime: 35 * 86_400,
            auto_whitelist,
        }
    }

    #[test]
    fn a_triplet_passes_after_the_delay_and_stays_passed() {
        let mut g = Greylist::new(spec(0));
        assert!(!g.check(0, 1, 1000));
        assert!(
            !g.check(0, 1, 1299),
            "299 s after the first sighting is too early"
        );
        assert!(g.check(0, 1, 1300));
        assert!(g.check(0, 1, 1301));
        assert!(!g.check(0, 2, 1301), "another recipient is another triplet");
        assert!(!g.check(1, 1, 1301), "another sender is another triplet");
    }

    #[test]
    fn a_first_retry_after_the_retry_window_starts_over() {
        let mut g = Greylist::new(spec(0));
        assert!(!g.check(0, 1, 0));
        assert!(!g.check(0, 1, 2 * 86_400 + 1));
        assert!(!g.check(0, 1, 2 * 86_400 + 300));
        assert!(g.check(0, 1, 2 * 86_400 + 301));
    }

    #[test]
    fn entries_unseen_for_the_lifetime_are_forgotten() {
        let mut g = Greylist::new(spec(0));
        g.check(0, 1, 0);
        assert!(g.check(0, 1, 300));
        assert!(g.check(0, 1, 300 + 35 * 86_400));
        assert!(!g.check(0, 1, 300 + 70 * 86_400 + 1));
    }

    #[test]
    fn a_daily_sweep_frees_entries_unseen_for_the_lifetime_and_keeps_the_rest() {
        let mut g = Greylist::new(spec(0));
        g.check(0, 1, 0);
        g.check(0, 2, 30 * 86_400);
        assert!(g.check(0, 2, 30 * 86_400 + 300), "2 passes on day 30");
        assert_eq!(g.len(), 2);
        // Day 36: triplet 1 was last seen 36 days ago (> 35), triplet 2 six days ago.
        g.check(0, 3, 36 * 86_400);
        assert_eq!(g.len(), 2, "1 swept, 2 kept, 3 added");
        assert!(
            g.check(0, 2, 36 * 86_400),
            "a kept triplet keeps its history"
        );
        assert!(!g.check(0, 1, 36 * 86_400), "a swept triplet starts over");
    }

    #[test]
    fn a_forgotten_triplet_is_gone() {
        let mut g = Greylist::new(spec(0));
        g.check(0, 1, 0);
        g.check(0, 2, 0);
        g.forget(0, 1);
        assert_eq!(g.len(), 1);
        assert!(!g.check(0, 1, 300), "seen afresh");
        assert!(g.check(0, 2, 300));
    }

    #[test]
    fn the_client_is_whitelisted_after_five_passes_counted_hourly() {
        let mut g = Greylist::new(spec(5));
        // Passes within the same hour count once.
        g.check(0, 1, 0);
        g.check(0, 2, 0);
        assert!(g.check(0, 1, 300));
        assert!(g.check(0, 2, 300));
        assert_eq!(g.client_count, 1);
        for hour in 1..5 {
            let t = hour * 3600;
            assert!(!g.check(0, 100 + hour as u64, t));
            assert!(g.check(0, 100 + hour as u64, t + 300));
        }
        assert_eq!(g.client_count, 5);
        assert!(
            g.check(0, 999, 5 * 3600),
            "new triplets pass once whitelisted"
        );
    }
}
