//! Entering and leaving the active queue: resolving recipients into delivery requests, and
//! deciding a message's fate when its last request is done — remove, bounce notice, expire,
//! delay warning, or defer with backoff (`qmgr_active.c`, `qmgr_message.c`; §2.1, §4).

use super::{Entry, Queue};
use crate::engine::time::{Time, whole_seconds};
use crate::observe::Observer;
use crate::observe::{Cause, ClogAdvice};
use crate::postfix::Mta;
use crate::postfix::message::{LeaveAction, Location, RcptStatus};
use crate::postfix::notes::NoteKind;
use std::cmp::Reverse;

impl Mta {
    /// qmgr imports file `m` into the active queue and queues its delivery requests.
    pub(super) fn activate(&mut self, m: u32, now: Time, obs: &mut dyn Observer) {
        if self.messages.get(m).locked > 0 {
            // An agent of an exited qmgr still has the file open: "skipped, still being
            // delivered", retried 60 s later (`qmgr_active_feed`).
            self.messages.get_mut(m).mtime = whole_seconds(now) + 60;
            let (id, origin) = (self.messages.get(m).id, self.messages.get(m).origin_id);
            self.note(now, id, origin, NoteKind::Skipped);
            let stamp = self.relocate(m, Location::Incoming);
            self.qmgr.incoming_later.push((m, stamp));
            return;
        }
        self.relocate(m, Location::Active);
        {
            let msg = self.messages.get_mut(m);
            msg.active_at = now;
            let (id, origin, size, sender) = (msg.id, msg.origin_id, msg.size, msg.sender_key());
            // The size record's count, not the recipients still to go (§4.5).
            let nrcpt = msg.nrcpt;
            self.note(
                now,
                id,
                origin,
                NoteKind::Activated {
                    nrcpt,
                    size,
                    sender,
                },
            );
        }
        if !self.messages.get(m).force_expired {
            // qmgr removes the defer log when it reads the file (`qmgr_message_alloc`), so
            // mailq shows no reasons for it until this round defers someone (§4.5). A
            // force-expired file keeps its log: its notice is made from it.
            for r in self.messages.get_mut(m).recipients.iter_mut() {
                r.defer_log = None;
            }
        }
        let expire = self.messages.get(m).force_expired;
        self.messages.get_mut(m).expire_this_round = expire;
        if expire {
            // §4.3: an administratively expired message is returned without an attempt. With
            // a defer log (some recipient was deferred before) its reasons are used;
            // without one, every recipient goes through the retry service first, so that
            // the notice says why (qmgr_message.c: qmgr_message_alloc, qmgr_message_resolve).
            let msg = self.messages.get_mut(m);
            msg.deferred_this_round = true;
            msg.refcount = 0;
            let has_defer_log = msg
                .recipients
                .iter()
                .any(|r| r.status == RcptStatus::Pending && r.defer_log.is_some());
            if !has_defer_log {
                for r in 0..msg.recipients.len() {
                    if self.messages.get(m).recipients[r].status == RcptStatus::Pending {
                        let saved = (
                            Cause::AdminExpired,
                            self.save_text("message is administratively expired".into()),
                        );
                        self.retry_deferral(m, r, Cause::AdminExpired, saved, 0, now);
                    }
                }
            }
            self.active_done(m, now, obs);
            return;
        }
        if std::mem::take(&mut self.messages.get_mut(m).flush_bit) {
            self.unthrottle_destinations_of(m);
        }
        let activation = self.qmgr.next_activation;
        self.qmgr.next_activation += 1;
        let keys = {
            let msg = self.messages.get_mut(m);
            msg.activation = activation;
            msg.deferred_this_round = false;
            msg.refcount = 0;
            msg.recipient_keys()
        };
        let n = self.messages.get(m).recipients.len();
        if let Some(cf) = self.content_filter
            && self.messages.get(m).filter_pass
        {
            // FILTER record: every recipient goes to the filter's one queue (§7.3).
            let limit = self.qmgr.transports[cf.transport].recipient_limit;
            self.assign(m, cf.destination as u32, 0, n, limit, now);
        }
        let mut lo = if self.messages.get(m).filter_pass && self.content_filter.is_some() {
            n
        } else {
            0
        };
        while lo < n {
            let dest = self.messages.get(m).recipients[lo].dest;
            let mut hi = lo;
            while hi < n && self.messages.get(m).recipients[hi].dest == dest {
                hi += 1;
            }
            let transport = self.qmgr.transport_of(dest);
            let limit = self.qmgr.transports[transport as usize].recipient_limit;
            if limit == 1 {
                // Per-recipient queues (`localpart@nexthop`, §5.1).
                for r in lo..hi {
                    if self.messages.get(m).recipients[r].status != RcptStatus::Pending {
                        continue;
                    }
                    let key = keys.key(self.messages.get(m).recipients[r].orig_index);
                    let q = self.queue_for_recipient(dest, key);
                    self.assign(m, q, r, r + 1, 1, now);
                }
            } else {
                let q = dest;
                self.assign(m, q, lo, hi, limit, now);
            }
            lo = hi;
        }
        if self.messages.get(m).refcount == 0 {
            self.active_done(m, now, obs);
        }
    }

    /// Pending recipients `lo..hi` of `m` for queue `q`, packed into requests of at most
    /// `limit` recipients (0 = no limit); a dead queue defers them at once (§5.3).
    fn assign(&mut self, m: u32, q: u32, lo: usize, hi: usize, limit: u32, now: Time) {
        let any_pending = self.messages.get(m).recipients[lo..hi]
            .iter()
            .any(|r| r.status == RcptStatus::Pending);
        if !any_pending {
            return;
        }
        let transport = self.qmgr.queues[q as usize].transport as usize;
        {
            let queue = &mut self.qmgr.queues[q as usize];
            if !queue.exists {
                queue.exists = true;
                queue.win = super::feedback::Window::fresh(&self.qmgr.transports[transport].rules);
                // A new in-core queue (qmgr_queue_create): no delivery history.
                queue.last_done = i64::MIN;
                queue.cache = crate::world::CacheFlags::default();
                queue.clog_time_to_warn = 0;
            }
        }
        self.qmgr.touch_window(q);
        let dead_cause = if self.qmgr.transports[transport].dead {
            Some(crate::observe::Cause::TransportUnavailable)
        } else if self.qmgr.queues[q as usize].win.is_dead() {
            Some(crate::observe::Cause::Suspended)
        } else {
            None
        };
        if let Some(cause) = dead_cause {
            // Recipients go to the retry service: deferred without a connection, with the
            // reason qmgr saved (`qmgr_message_resolve`).
            let saved = self.saved_reason(q, cause);
            for r in lo..hi {
                if self.messages.get(m).recipients[r].status == RcptStatus::Pending {
                    self.retry_deferral(m, r, cause, saved, 0, now);
                }
            }
            return;
        }
        let mut start = lo;
        while start < hi {
            let mut end = start;
            let mut count = 0;
            let msg = self.messages.get(m);
            while end < hi && (limit == 0 || count < limit) {
                if msg.recipients[end].status == RcptStatus::Pending {
                    count += 1;
                }
                end += 1;
            }
            // Skip trailing done recipients into this request too, harmlessly.
            while end < hi && msg.recipients[end].status != RcptStatus::Pending {
                end += 1;
            }
            if count > 0 {
                let order = self.qmgr.next_entry_order;
                self.qmgr.next_entry_order += 1;
                let entry = Entry {
                    msg: m,
                    generation: self.messages.get(m).generation,
                    queue: q,
                    transport: transport as u16,
                    dest: self.qmgr.queues[q as usize].dest,
                    lo: start as u32,
                    hi: end as u32,
                    order,
                    site_failure: false,
                    agent: None,
                    orphan: false,
                    killed: false,
                    in_flow_slept: false,
                    reinjected_at: 0,
                    handoff: 0,
                    relay: None,
                    setup_done: None,
                    tried: None,
                    conn_use: 0,
                    pid: 0,
                    blocked_at_queueing: self.qmgr.blocked_clock(q),
                    window_wait: 0,
                    dns: 0,
                };
                let e = self.qmgr.alloc_entry(entry);
                self.qmgr.queues[q as usize].todo.push_back(e);
                self.messages.get_mut(m).refcount += 1;
                self.clog_warning(q, now);
                self.qmgr.offer(q);
            }
            start = end;
        }
    }

    /// `qmgr_entry_create`'s warning when one destination takes up more than a fifth of
    /// the active queue's entries, at most every qmgr_clog_warn_time (§9.6).
    fn clog_warning(&mut self, q: u32, now: Time) {
        let warn_every = self.cfg.qmgr_clog_warn_time;
        if !self.record_notes || warn_every <= 0 {
            return;
        }
        let now_s = whole_seconds(now);
        let queue = &self.qmgr.queues[q as usize];
        let length = queue.todo.len() as u64 + u64::from(queue.busy);
        if length <= (self.qmgr.active_limit / 5) as u64 || now_s < queue.clog_time_to_warn {
            return;
        }
        let messages = self.counts.active.max(1);
        let share = length as f64 / messages as f64;
        let t = queue.transport as usize;
        let limit = self.qmgr.transports[t].rules.limit;
        // `queue->peers`: more than one message has entries for this queue.
        let first = queue
            .todo
            .front()
            .map(|&e| self.qmgr.entries[e as usize].msg);
        let several = queue
            .todo
            .iter()
            .any(|&e| Some(self.qmgr.entries[e as usize].msg) != first);
        let advice = if limit > 0 && limit as i64 <= i64::from(queue.busy) + 1 {
            ClogAdvice::ConcurrencyLimit(limit)
        } else if f64::from(queue.win.window) > self.qmgr.active_limit as f64 * share {
            ClogAdvice::ActiveLimit
        } else if several {
            ClogAdvice::SeparateTransport
        } else {
            ClogAdvice::Timeouts
        };
        self.qmgr.queues[q as usize].clog_time_to_warn = now_s + warn_every;
        let dest = self.qmgr.queues[q as usize].dest;
        self.note(
            now,
            0,
            0,
            NoteKind::ClogWarning {
                dest,
                transport: self.qmgr.queues[q as usize].transport,
                entries: length,
                messages,
                active_limit: self.qmgr.active_limit as u64,
                advice,
            },
        );
    }

    fn queue_for_recipient(&mut self, dest: u32, key: u64) -> u32 {
        if let Some(&q) = self.qmgr.per_recipient_queues.get(&(dest, key)) {
            return q;
        }
        let transport = self.qmgr.transport_of(dest);
        let mut fresh = Queue::new(
            transport,
            dest,
            &self.qmgr.transports[transport as usize].rules,
        );
        fresh.recipient_key = Some(key);
        let q = match self.qmgr.free_queues.pop() {
            Some(q) => {
                self.qmgr.queues[q as usize] = fresh;
                q
            }
            None => {
                self.qmgr.queues.push(fresh);
                (self.qmgr.queues.len() - 1) as u32
            }
        };
        self.qmgr.per_recipient_queues.insert((dest, key), q);
        q
    }

    /// The message's last delivery request is done (`qmgr_active_done`, §4.1, §4.3).
    pub(super) fn active_done(&mut self, m: u32, now: Time, obs: &mut dyn Observer) {
        let now_s = whole_seconds(now);
        let (bounced, deferred, null_sender, create_time, warn_time) = {
            let msg = self.messages.get(m);
            (
                msg.bounced_this_round,
                msg.deferred_this_round,
                msg.null_sender,
                msg.create_time,
                msg.warn_time,
            )
        };
        // Bounced recipients of this round: one non-delivery notice (bounce flush).
        if bounced && !null_sender {
            self.send_notice(m, now, false);
        }
        self.messages.get_mut(m).bounced_this_round = false;
        match self.messages.get(m).on_leave {
            LeaveAction::Normal => {}
            action => {
                self.leave_after_admin(m, action, now, obs);
                return;
            }
        }
        let force_expired = self.messages.get(m).expire_this_round;
        if deferred {
            let lifetime = if null_sender {
                self.cfg.bounce_queue_lifetime
            } else {
                self.cfg.maximal_queue_lifetime
            };
            if force_expired || now_s >= create_time + lifetime {
                // "status=expired, returned to sender": the defer log becomes a notice.
                let n = self.messages.get(m).recipients.len();
                for r in 0..n {
                    if self.messages.get(m).recipients[r].status == RcptStatus::Pending {
                        self.finalize(m, r, RcptStatus::Expired, now, obs);
                    }
                }
                let (id, origin, sender) = {
                    let msg = self.messages.get(m);
                    (msg.id, msg.origin_id, msg.sender_key())
                };
                self.note(
                    now,
                    id,
                    origin,
                    NoteKind::Expired {
                        forced: force_expired,
                        sender,
                    },
                );
                if !null_sender {
                    self.send_notice(m, now, false);
                }
                self.remove(m, now);
                return;
            }
            if warn_time > 0 && now_s >= warn_time - 1 {
                self.send_notice(m, now, true);
                self.messages.get_mut(m).warn_time = 0;
            }
            // Backoff from the message's age (§4.1); no per-message attempt counter.
            let age = now_s - create_time;
            let backoff = age
                .min(self.cfg.maximal_backoff_time)
                .max(self.cfg.minimal_backoff_time);
            let mtime = now_s + backoff;
            self.messages.get_mut(m).mtime = mtime;
            let (id, origin) = (self.messages.get(m).id, self.messages.get(m).origin_id);
            self.note(now, id, origin, NoteKind::Deferred { mtime });
            let stamp = self.relocate(m, Location::Deferred);
            self.qmgr.deferred.push(Reverse((mtime, stamp, m)));
            self.fast_flush_add(m, now);
        } else {
            self.remove(m, now);
        }
    }

    /// The queue file is deleted ("removed").
    pub(crate) fn remove(&mut self, m: u32, now: Time) {
        let (id, origin) = (self.messages.get(m).id, self.messages.get(m).origin_id);
        self.note(now, id, origin, NoteKind::Removed);
        self.relocate(m, Location::Gone);
        self.messages.free(m);
    }
}
