//! The flush service and the commands that talk to it: `postqueue -f`, `-s site`, `-i id`
//! (`flush/flush.c`, `postqueue/postqueue.c`, `global/mail_flush.c`; §2.2).
//!
//! - `postqueue -f`: qmgr triggers F (revive every dead queue), A (ignore time stamps),
//!   D and I (scan deferred and incoming), and pickup is woken.
//! - `postqueue -s site`: only for a site in `fast_flush_domains` (default
//!   `$relay_domains`, empty): otherwise postqueue fails with `Flush service is not
//!   configured for destination "site"`. The flush service keeps a log per site of the
//!   queue IDs deferred for it (`flush_add`, called for every deferred recipient by
//!   defer.c); `-s` sends F, touches each listed file still in deferred/ or incoming/
//!   (mtime = now), moves it to incoming, sends I, and empties the log. A site that never
//!   had a logged deferral has no log: nothing happens, not even F.
//! - `postqueue -i id`: the file, in deferred/ or incoming/, gets mtime = now and the g+r
//!   bit (qmgr unthrottles its destinations when it reads it), and moves to incoming.
//! - With Postfix stopped every one of them fails: `Cannot flush mail queue - mail system
//!   is down`, and nothing moves.
//!
//! Not modelled: the flush service's periodic refresh of logs unread for
//! `fast_flush_refresh_time` (12 h) and purge of empty ones.

use super::message::{Location, RcptStatus};
use super::notes::NoteKind;
use super::{Event, Mta};
use crate::engine::EventQueue;
use crate::engine::time::{Time, whole_seconds};
use crate::scenario::Selection;
use crate::scenario::params::domain_list_matches;

/// One site's fast-flush log.
#[derive(Clone, Copy, Debug)]
pub(super) struct FastFlushLog {
    /// The log file exists: some deferral was logged for the site.
    pub exists: bool,
    /// Deferrals from this time on are in the log (it was last emptied, or the site became
    /// eligible, then).
    pub since: Time,
}

impl Default for FastFlushLog {
    fn default() -> Self {
        FastFlushLog {
            exists: false,
            since: Time::MIN,
        }
    }
}

impl Mta {
    /// Is destination `d` a fast-flush site (`flush_policy_ok`)?
    pub(super) fn fast_flush_site(&self, d: u32) -> bool {
        !self.cfg.fast_flush_domains.is_empty()
            && self
                .domains
                .get(d as usize)
                .is_some_and(|name| domain_list_matches(&self.cfg.fast_flush_domains, name))
    }

    /// `flush_add`: file `m` was just deferred; its pending recipients' sites get it in
    /// their logs.
    pub(super) fn fast_flush_add(&mut self, m: u32, now: Time) {
        self.messages.get_mut(m).deferred_at = now;
        if self.cfg.fast_flush_domains.is_empty() {
            return;
        }
        let mut last = u32::MAX;
        for i in 0..self.messages.get(m).recipients.len() {
            let r = self.messages.get(m).recipients[i];
            if r.status != RcptStatus::Pending || r.dest == last {
                continue;
            }
            last = r.dest;
            if self.fast_flush_site(r.dest)
                && let Some(log) = self.fast_flush.get_mut(r.dest as usize)
            {
                log.exists = true;
            }
        }
    }

    /// A new flush service after a reload: a site that has just become eligible logs
    /// deferrals from now on (earlier ones were denied).
    pub(super) fn fast_flush_reconfigured(&mut self, was_eligible: &[bool], now: Time) {
        for d in 0..self.fast_flush.len() {
            if self.fast_flush_site(d as u32) && !was_eligible.get(d).copied().unwrap_or(false) {
                self.fast_flush[d].since = now;
            }
        }
    }

    pub(super) fn fast_flush_eligibility(&self) -> Vec<bool> {
        (0..self.fast_flush.len())
            .map(|d| self.fast_flush_site(d as u32))
            .collect()
    }

    /// `postqueue -f` (`mail_flush_deferred`, then `mail_flush_maildrop`).
    pub(super) fn flush_all(&mut self, now: Time, events: &mut EventQueue<Event>) {
        if !self.running {
            self.note(now, 0, 0, NoteKind::PostqueueFatal { site: None });
            return;
        }
        self.enable_all();
        let stamp = self.next_move_stamp;
        self.qmgr
            .request_scan(super::qmgr::Dir::Deferred, stamp, true);
        self.qmgr
            .request_scan(super::qmgr::Dir::Incoming, u64::MAX, true);
        self.pickup(now, events);
    }

    /// `postqueue -s site` (`flush_send_service`, `flush_send_path`).
    pub(super) fn flush_site(&mut self, d: usize, now: Time) {
        let site = u32::try_from(d).unwrap_or(u32::MAX);
        if !self.running {
            self.note(now, 0, 0, NoteKind::PostqueueFatal { site: None });
            return;
        }
        if !self.fast_flush_site(site) {
            self.note(now, 0, 0, NoteKind::PostqueueFatal { site: Some(site) });
            return;
        }
        let Some(log) = self.fast_flush.get(d).copied() else {
            return;
        };
        if !log.exists {
            return;
        }
        self.enable_all(); // UNTHROTTLE_BEFORE: F first
        let now_s = whole_seconds(now);
        let listed: Vec<u32> = self
            .messages
            .iter_live_indexed()
            .filter(|(_, msg)| {
                matches!(msg.location, Location::Deferred | Location::Incoming)
                    && msg.deferred_at >= log.since
                    && msg
                        .recipients
                        .iter()
                        .any(|r| r.status == RcptStatus::Pending && r.dest == site)
            })
            .map(|(m, _)| m)
            .collect();
        for m in listed {
            self.flush_one_file(m, now_s, false);
        }
        self.fast_flush[d].since = now; // the log is emptied
    }

    /// `postqueue -i id` (`flush_send_file_service`); a message_id names each of the
    /// message's queue files.
    pub(super) fn flush_file(&mut self, selection: Selection, now: Time) {
        if !self.running {
            self.note(now, 0, 0, NoteKind::PostqueueFatal { site: None });
            return;
        }
        for m in self.find(selection) {
            self.flush_one_file(m, whole_seconds(now), true);
        }
    }

    /// `flush_one_file`: a file in deferred/ or incoming/ gets mtime = now (and, for `-i`,
    /// the g+r "unthrottle" bit) and is moved to incoming/; qmgr gets an I.
    fn flush_one_file(&mut self, m: u32, now_s: i64, unthrottle: bool) {
        let location = self.messages.get(m).location;
        if !matches!(location, Location::Deferred | Location::Incoming) {
            return;
        }
        let msg = self.messages.get_mut(m);
        msg.mtime = now_s;
        msg.flush_bit |= unthrottle;
        if location == Location::Deferred {
            let stamp = self.relocate(m, Location::Incoming);
            self.qmgr.incoming_push(m, stamp);
        } else {
            self.qmgr
                .request_scan(super::qmgr::Dir::Incoming, u64::MAX, false);
        }
    }
}
