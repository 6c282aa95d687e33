//! Handing requests to delivery agents and taking their replies (`qmgr_transport.c`,
//! `qmgr_deliver.c`, `qmgr_entry.c`, `qmgr_queue.c`; §5.1–5.5).
//!
//! Each transport has `maxproc` agents. qmgr asks for an agent while the transport's queues
//! have room (at most two requests under way, `qmgr_transport_select`); the agent, when
//! ready, takes the request of the oldest activation among queues whose window has room (a
//! ready heap keyed by the queue's oldest request). When it finishes, qmgr applies the §5.2
//! feedback: a site failure throttles the queue (and may kill it, deferring its queued
//! requests), anything else is positive feedback that also revives a dead queue.
//!
//! The hand-off and the report take `[host]` `agent_handoff` and `agent_report` (0 by
//! default). Even at 0 their order is Postfix's: replies that reach qmgr at the same
//! instant are all counted before any agent picks a request, so the window grows with the
//! `busy` those replies leave (`qmgr_queue_unthrottle`'s `window < busy + initial`).

use super::event_loop::Timer;
use super::{Entry, FIRST_AGENT_PID, NOT_QUEUED, Qmgr};
use crate::engine::EventQueue;
use crate::engine::time::{Time, whole_seconds};
use crate::observe::Cause;
use crate::observe::Observer;
use crate::postfix::message::{DeferWhy, Location, NO_HOST, RcptStatus, Reply};
use crate::postfix::notes::DeadNote;
use crate::postfix::{Event, Mta};
use crate::world::{Request, Step, World};
use std::cmp::Reverse;

/// `QMGR_TRANSPORT_MAX_PEND`: agent allocations one transport may have under way.
pub(super) const MAX_PENDING: u32 = 2;

impl Qmgr {
    /// `qmgr_transport_select`'s test for transport `t`: its ready queues have room for at
    /// least `need` more deliveries, Σ min(window − busy, todo) ≥ need (`need` is the
    /// transport's pending allocations + 1, so 1 or 2). Entries of queues that are no longer
    /// selectable are dropped from the heap on the way, as [`Qmgr::select`] would.
    pub(super) fn has_slots(&mut self, t: usize, need: u32) -> bool {
        let mut left = i64::from(need);
        let mut set_aside = None;
        let found = loop {
            let Some(&Reverse((key, q))) = self.transports[t].ready.peek() else {
                break false;
            };
            let queue = &mut self.queues[q as usize];
            if queue.ready_key != key || !queue.selectable() {
                if queue.ready_key == key {
                    queue.ready_key = NOT_QUEUED;
                }
                self.transports[t].ready.pop();
                continue;
            }
            let room = i64::from(queue.win.window) - i64::from(queue.busy);
            left -= room.min(queue.todo.len() as i64);
            if left <= 0 {
                break true;
            }
            // The top queue has room for one: look at the next one (need is at most 2).
            set_aside = self.transports[t].ready.pop();
        };
        if let Some(item) = set_aside {
            self.transports[t].ready.push(item);
        }
        found
    }

    pub(super) fn alloc_entry(&mut self, entry: Entry) -> u32 {
        match self.free_entries.pop() {
            Some(e) => {
                self.entries[e as usize] = entry;
                e
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        }
    }

    /// An idle agent process (the most recently freed), or a new one.
    pub(super) fn alloc_pid(&mut self) -> u32 {
        self.free_pids.pop().unwrap_or_else(|| {
            let pid = self.next_pid;
            self.next_pid = self.next_pid.wrapping_add(1).max(FIRST_AGENT_PID);
            pid
        })
    }

    /// Agent process `pid` is idle again.
    pub(super) fn free_pid(&mut self, pid: u32) {
        if pid != 0 {
            self.free_pids.push(pid);
        }
    }

    /// Puts queue `q` in its transport's ready heap if an agent could take from it now
    /// (`qmgr_job_blocker_update` in spirit: a saturated queue is skipped until it frees up).
    pub(super) fn offer(&mut self, q: u32) {
        let queue = &self.queues[q as usize];
        if !queue.selectable() {
            return;
        }
        let head = queue
            .todo
            .front()
            .map(|&e| self.entries[e as usize].order)
            .unwrap_or(NOT_QUEUED);
        if queue.ready_key == head {
            return;
        }
        let t = queue.transport as usize;
        self.queues[q as usize].ready_key = head;
        self.transports[t].ready.push(Reverse((head, q)));
    }

    /// The next request for an agent of transport `t`, by oldest activation.
    fn select(&mut self, t: usize, now: Time) -> Option<u32> {
        while let Some(Reverse((key, q))) = self.transports[t].ready.pop() {
            let queue = &mut self.queues[q as usize];
            if queue.ready_key != key {
                continue; // stale
            }
            queue.ready_key = NOT_QUEUED;
            if !queue.selectable() {
                continue;
            }
            let e = queue.todo.pop_front()?;
            queue.busy += 1;
            queue.update_cache_flags(whole_seconds(now));
            self.touch_window(q);
            self.offer(q);
            return Some(e);
        }
        None
    }
}

impl Mta {
    /// `qmgr_active_drain`: asks for an agent of each transport that has work for one more
    /// (`qmgr_transport_select`), at most [`MAX_PENDING`] requests under way per transport
    /// (`qmgr_transport_alloc`). The request for a delivery is picked only when the agent is
    /// ready ([`Mta::agent_ready`]), so replies that reach qmgr in the meantime count first.
    /// An agent is asked for only while a process of the transport is free (master.cf
    /// maxproc: beyond that the connection waits until one finishes). Returns whether a
    /// message changed state (never: agents are only asked for here).
    pub(super) fn drain(&mut self, now: Time, events: &mut EventQueue<Event>) -> bool {
        let handoff = self.host.agent_handoff;
        for t in 0..self.qmgr.transports.len() {
            loop {
                let transport = &self.qmgr.transports[t];
                if transport.dead
                    || transport.pending >= MAX_PENDING
                    || (transport.maxproc != 0
                        && transport.busy_agents + transport.pending >= transport.maxproc)
                {
                    break;
                }
                let need = transport.pending + 1;
                if !self.qmgr.has_slots(t, need) {
                    break;
                }
                self.qmgr.transports[t].pending += 1;
                events.schedule(
                    now + handoff,
                    Event::AgentReady {
                        transport: u16::try_from(t).unwrap_or(u16::MAX),
                        generation: self.qmgr_generation,
                    },
                );
            }
        }
        false
    }

    /// `qmgr_deliver`: an agent of transport `t` is ready. qmgr picks the request now; if
    /// there is none any more (a window closed, the queue died), it lets the agent go. An
    /// agent that cannot be reached (a `transport_down` fault) throttles the transport.
    pub(crate) fn agent_ready(
        &mut self,
        t: usize,
        now: Time,
        events: &mut EventQueue<Event>,
        world: &mut World,
        obs: &mut dyn Observer,
    ) {
        let Some(transport) = self.qmgr.transports.get_mut(t) else {
            return;
        };
        transport.pending = transport.pending.saturating_sub(1);
        if transport.dead {
            return;
        }
        let Some(e) = self.qmgr.select(t, now) else {
            return;
        };
        if self.transport_is_down(t, now) {
            // No agent answers: the request and every queued one of the transport are
            // deferred, and the transport is dead for transport_retry_time.
            let q = self.qmgr.entries[e as usize].queue;
            self.qmgr.queues[q as usize].busy -= 1;
            self.qmgr.touch_window(q);
            self.defer_entry(e, Cause::TransportUnavailable, now, events, obs);
            self.throttle_transport(t, now, events, obs);
            return;
        }
        self.qmgr.transports[t].busy_agents += 1;
        self.start_delivery(e, now, events, world, obs);
    }

    fn start_delivery(
        &mut self,
        e: u32,
        now: Time,
        events: &mut EventQueue<Event>,
        world: &mut World,
        obs: &mut dyn Observer,
    ) {
        let entry = self.qmgr.entries[e as usize];
        let dest = entry.dest;
        let msg = self.messages.get_mut(entry.msg);
        let (message_id, arrival) = (msg.origin_id, msg.origin_arrival);
        let mut count = 0;
        for r in msg.recipients[entry.lo as usize..entry.hi as usize]
            .iter_mut()
            .filter(|r| r.status == RcptStatus::Pending)
        {
            r.attempts += 1;
            count += 1;
        }
        self.totals.attempts += 1;
        obs.delivery_attempt(&crate::observe::DeliveryAttempt {
            message_id,
            destination: self
                .domains
                .get(dest as usize)
                .map(String::as_str)
                .unwrap_or("?"),
            arrival,
            start: now,
            recipients: count,
        });
        self.qmgr.entries[e as usize].handoff = now;
        self.qmgr.entries[e as usize].pid = self.qmgr.alloc_pid();
        self.note_window_wait(e);
        let step = world.start(now, self.request(e));
        self.take_server_notes(e, world);
        self.schedule_step(e, now, step, events);
    }

    /// How much of request `e`'s wait since it was queued its queue's window caused.
    fn note_window_wait(&mut self, e: u32) {
        let entry = self.qmgr.entries[e as usize];
        let blocked = self.qmgr.blocked_clock(entry.queue) - entry.blocked_at_queueing;
        self.qmgr.entries[e as usize].window_wait = blocked.max(0);
    }

    /// The delivery request `e` as its agent sees it.
    fn request(&mut self, e: u32) -> Request<'_> {
        let entry = self.qmgr.entries[e as usize];
        let dest = entry.dest;
        let msg = self.messages.get_mut(entry.msg);
        Request {
            dest,
            sender: msg.sender_key(),
            keys: msg.recipient_keys(),
            first: entry.lo as usize,
            recipients: &mut msg.recipients[entry.lo as usize..entry.hi as usize],
            cache: self.qmgr.queues[entry.queue as usize].cache,
        }
    }

    fn schedule_step(&mut self, e: u32, now: Time, step: Step, events: &mut EventQueue<Event>) {
        match step {
            Step::Wait(t, agent) => {
                self.qmgr.entries[e as usize].agent = Some(agent);
                events.schedule(t.max(now), Event::SmtpStep { entry: e });
            }
            Step::Done {
                at,
                site_failure,
                relay,
                setup_done,
                tried,
                conn_use,
                dns,
            } => {
                let entry = &mut self.qmgr.entries[e as usize];
                entry.agent = None; // the world has freed the client
                entry.site_failure = site_failure;
                entry.relay = relay;
                entry.setup_done = setup_done;
                entry.tried = tried;
                entry.conn_use = conn_use;
                entry.dns = dns;
                // qmgr reads the agent's status `agent_report` after its last reply.
                let report = self.host.agent_report;
                events.schedule(at.max(now) + report, Event::DeliveryDone { entry: e });
            }
        }
    }

    /// The agent of request `e` goes on to its next host or site.
    pub(crate) fn smtp_step(
        &mut self,
        e: u32,
        now: Time,
        events: &mut EventQueue<Event>,
        world: &mut World,
    ) {
        if self.qmgr.entries[e as usize].killed {
            self.qmgr.free_entries.push(e);
            return;
        }
        let Some(agent) = self.qmgr.entries[e as usize].agent else {
            return;
        };
        let step = world.resume(agent, now, self.request(e));
        self.take_server_notes(e, world);
        self.schedule_step(e, now, step, events);
    }

    /// The info lines the agent of request `e` logged while working (failed connects, soft
    /// errors at servers it then skipped), with its queue file and process id.
    fn take_server_notes(&mut self, e: u32, world: &mut World) {
        if world.connect_failures.is_empty() {
            return;
        }
        let entry = self.qmgr.entries[e as usize];
        let msg = self.messages.get(entry.msg);
        let (id, origin) = (msg.id, msg.origin_id);
        let notice_to = match msg.origin {
            crate::postfix::message::Origin::Notice(s) => Some(s),
            _ => None,
        };
        let dest = self.qmgr.queues[entry.queue as usize].dest;
        let transport = self.qmgr.queues[entry.queue as usize].transport;
        let failures: Vec<crate::world::ConnectFailure> =
            world.connect_failures.drain(..).collect();
        for f in failures {
            self.note(
                f.t,
                id,
                origin,
                crate::postfix::notes::NoteKind::ServerFailed {
                    host: f.host,
                    cause: f.cause,
                    kind: f.kind,
                    pid: entry.pid,
                    dest,
                    transport,
                    notice_to,
                },
            );
        }
    }

    /// `qmgr_deliver_update` then `qmgr_entry_done`: the agent's reply for request `e`.
    pub(crate) fn delivery_done(
        &mut self,
        e: u32,
        now: Time,
        events: &mut EventQueue<Event>,
        obs: &mut dyn Observer,
    ) {
        let entry = self.qmgr.entries[e as usize];
        if entry.killed {
            self.qmgr.free_entries.push(e);
            return;
        }
        let m = entry.msg;
        let msg = self.messages.get(m);
        let same_file = msg.generation == entry.generation && msg.location != Location::Gone;
        let to_filter = same_file
            && msg.filter_pass
            && self
                .content_filter
                .is_some_and(|cf| cf.destination as u32 == entry.dest);
        if to_filter && self.filter_reinjects(&entry) {
            // The filter re-injects through our smtpd on its reinjection port.
            if !entry.in_flow_slept
                && let Some(cause) = self.reinjection_refused_at_mail_from(now)
            {
                self.filter_answers(&entry, cause);
            } else if !entry.in_flow_slept && !self.in_flow_token() {
                // That smtpd hands the file to cleanup, which sleeps in_flow_delay before
                // taking it (no token); the filter's 250, and so this agent, wait for it.
                self.totals.in_flow_delays += 1;
                self.qmgr.entries[e as usize].in_flow_slept = true;
                self.qmgr.entries[e as usize].reinjected_at = now;
                events.schedule(
                    now + self.inbound_in_flow_delay(),
                    Event::DeliveryDone { entry: e },
                );
                return;
            } else if self.disk.is_some() && self.free_space(now) < self.messages.get(m).size {
                self.filter_answers(&entry, Cause::QueueWriteError);
            }
        }
        if entry.orphan {
            self.orphan_done(e, now, to_filter, obs);
            return;
        }
        let mut any_deferred = false;
        let mut taken = Vec::new();
        let mut first_deferral: Option<(Cause, usize, u32)> = None;
        // The filter's 250 names the file it re-injected the message as (§7.3): the next
        // queue file made, by `reinject_filtered` below.
        let queued_as =
            (to_filter && self.filter_reinjects(&entry)).then_some(self.next_message_id);
        for r in entry.lo as usize..entry.hi as usize {
            let rc = self.messages.get(m).recipients[r];
            if rc.status != RcptStatus::Pending {
                continue;
            }
            if to_filter && rc.reply == Reply::Sent {
                // Not delivered yet: handed over, and re-injected below; the filter's 250
                // (logged after the re-injection's lines) names the new file.
                self.messages.get_mut(m).recipients[r].status = RcptStatus::Filtered;
                taken.push(r);
                continue;
            }
            self.note_attempt(e, r, now, rc.reply, None);
            match rc.reply {
                Reply::Sent => self.finalize(m, r, RcptStatus::Sent, now, obs),
                Reply::Bounced(cause) => {
                    self.totals.bounced_by_cause.add(cause);
                    self.messages.get_mut(m).bounced_this_round = true;
                    self.finalize(m, r, RcptStatus::Bounced, now, obs);
                }
                Reply::Deferred(cause) => {
                    any_deferred = true;
                    self.totals.deferrals += 1;
                    self.totals.deferred_by_cause.add(cause);
                    first_deferral.get_or_insert((cause, r, rc.reply_host));
                    let why = DeferWhy::Reply {
                        cause,
                        host: rc.reply_host,
                    };
                    self.defer_log_append(m, r, why);
                }
                Reply::None => {
                    // The client always answers for every recipient it was given.
                    any_deferred = true;
                    self.totals.deferrals += 1;
                    self.totals.deferred_by_cause.add(Cause::Unavailable);
                    let why = DeferWhy::Reply {
                        cause: Cause::Unavailable,
                        host: NO_HOST,
                    };
                    self.defer_log_append(m, r, why);
                }
            }
            self.messages.get_mut(m).recipients[r].reply = Reply::None;
        }
        if any_deferred {
            self.messages.get_mut(m).deferred_this_round = true;
        }
        if !taken.is_empty() {
            let arrival = if entry.in_flow_slept {
                entry.reinjected_at
            } else {
                now
            };
            self.reinject_filtered(m, entry.lo as usize, entry.hi as usize, now, arrival);
            self.note_filtered(e, now, &taken, queued_as);
        }
        let q = entry.queue;
        let t = self.qmgr.queues[q as usize].transport as usize;
        let rules = self.qmgr.transports[t].rules;
        if any_deferred && entry.site_failure && self.qmgr.queues[q as usize].win.is_ready() {
            let died = self.qmgr.queues[q as usize].win.throttle(&rules);
            if died {
                // qmgr saves the failure's reason, prefixed, as the dead queue's reason
                // (`qmgr_deliver_update`: `vstring_prepend(…, "delivery temporarily
                // suspended: ")` then `qmgr_queue_throttle`).
                let (cause, r, host) = first_deferral.unwrap_or((Cause::Unavailable, 0, NO_HOST));
                let text = format!(
                    "delivery temporarily suspended: {}",
                    self.reply_text(m, r, cause, host)
                );
                let text = self.save_text(text);
                self.qmgr.queues[q as usize].dead_reason = Some((cause, text));
                self.declare_dead(q, now, events, obs);
            }
        }
        // Any normal reply proves the agents work (`qmgr_deliver_update`).
        if self.unthrottle_transport(t) {
            self.sync_dead_transport(t, DeadNote::Delivery);
        }
        if !entry.site_failure {
            let queue = &mut self.qmgr.queues[q as usize];
            let busy = queue.busy;
            if queue.win.unthrottle(&rules, busy) {
                queue.timer_generation += 1; // cancel the revival timer
                self.sync_dead(q, DeadNote::Delivery);
            }
        }
        self.qmgr.touch_window(q);
        self.qmgr.transports[t].busy_agents -= 1;
        self.entry_done(e, true, now, events, obs);
    }

    /// The filter's `status=sent` lines for the recipients `taken` of request `e`.
    fn note_filtered(&mut self, e: u32, now: Time, taken: &[usize], queued_as: Option<u64>) {
        for &r in taken {
            self.note_attempt(e, r, now, Reply::Sent, queued_as);
        }
    }

    /// The filter's smtpd runs smtpd_check_queue at MAIL FROM like any smtpd (smtpd.c):
    /// with the queue file system short of space it answers 452, and the filter passes
    /// that back to our agent, so the first pass is deferred.
    fn reinjection_refused_at_mail_from(&self, now: Time) -> Option<Cause> {
        self.short_of_queue_space(now)
            .map(|_| Cause::InsufficientStorage)
    }

    /// The filter could not re-inject: what it had accepted gets its 4xx instead.
    fn filter_answers(&mut self, entry: &super::Entry, cause: Cause) {
        let msg = self.messages.get_mut(entry.msg);
        for r in &mut msg.recipients[entry.lo as usize..entry.hi as usize] {
            if r.status == RcptStatus::Pending && r.reply == Reply::Sent {
                r.reply = Reply::Deferred(cause);
            }
        }
    }

    /// Did the filter accept some recipient of request `e` (so that it re-injects a file)?
    fn filter_reinjects(&self, entry: &super::Entry) -> bool {
        self.messages.get(entry.msg).recipients[entry.lo as usize..entry.hi as usize]
            .iter()
            .any(|r| r.status == RcptStatus::Pending && r.reply == Reply::Sent)
    }

    /// An agent of an exited qmgr finishes: it writes its results into the queue file (sent
    /// and bounced recipients are done; deferred ones stay pending for the new qmgr) and
    /// gives back its process; no feedback reaches anyone.
    fn orphan_done(&mut self, e: u32, now: Time, to_filter: bool, obs: &mut dyn Observer) {
        let entry = self.qmgr.entries[e as usize];
        let m = entry.msg;
        if let Some(transport) = self.qmgr.transports.get_mut(entry.transport as usize) {
            transport.busy_agents = transport.busy_agents.saturating_sub(1);
        }
        self.qmgr.free_entries.push(e);
        let msg = self.messages.get(m);
        if msg.generation != entry.generation || msg.location == Location::Gone {
            // `postsuper -d` removed the file under the agent: its updates went to a
            // deleted file, and its recipients were counted as deleted then.
            return;
        }
        let queued_as =
            (to_filter && self.filter_reinjects(&entry)).then_some(self.next_message_id);
        let mut taken = Vec::new();
        for r in entry.lo as usize..entry.hi as usize {
            let rc = self.messages.get(m).recipients[r];
            if rc.status != RcptStatus::Pending {
                continue;
            }
            if to_filter && rc.reply == Reply::Sent {
                // Handed to the filter, which re-injects it as for a live qmgr.
                self.messages.get_mut(m).recipients[r].status = RcptStatus::Filtered;
                taken.push(r);
                continue;
            }
            self.note_attempt(e, r, now, rc.reply, None);
            match rc.reply {
                Reply::Sent => self.finalize(m, r, RcptStatus::Sent, now, obs),
                Reply::Bounced(cause) => {
                    self.totals.bounced_by_cause.add(cause);
                    self.messages.get_mut(m).bounced_this_round = true;
                    self.finalize(m, r, RcptStatus::Bounced, now, obs);
                }
                Reply::Deferred(cause) => {
                    self.totals.deferrals += 1;
                    self.totals.deferred_by_cause.add(cause);
                    let why = DeferWhy::Reply {
                        cause,
                        host: rc.reply_host,
                    };
                    self.defer_log_append(m, r, why);
                }
                Reply::None => {}
            }
            self.messages.get_mut(m).recipients[r].reply = Reply::None;
        }
        if !taken.is_empty() {
            let arrival = if entry.in_flow_slept {
                entry.reinjected_at
            } else {
                now
            };
            self.reinject_filtered(m, entry.lo as usize, entry.hi as usize, now, arrival);
            self.note_filtered(e, now, &taken, queued_as);
        }
        self.qmgr.free_pid(entry.pid);
        self.qmgr.free_entries.push(e);
        let msg = self.messages.get_mut(m);
        msg.locked = msg.locked.saturating_sub(1);
        if msg.locked == 0 && msg.location != Location::Gone && msg.pending_recipients() == 0 {
            // Everything was delivered by the old agents: nothing left for the new qmgr.
            self.remove(m, now);
        }
    }

    /// The status line of recipient `r` after delivery request `e` (§8.1).
    /// `reply` is what the agent answered for it (the recipient's own may be cleared by
    /// then).
    fn note_attempt(&mut self, e: u32, r: usize, now: Time, reply: Reply, queued_as: Option<u64>) {
        if !self.record_notes {
            return;
        }
        let entry = self.qmgr.entries[e as usize];
        let msg = self.messages.get(entry.msg);
        let rc = msg.recipients[r];
        let (status, cause) = match reply {
            Reply::Sent => (crate::observe::Status::Sent, None),
            Reply::Bounced(c) => (crate::observe::Status::Bounced, Some(c)),
            Reply::Deferred(c) => (crate::observe::Status::Deferred, Some(c)),
            Reply::None => (crate::observe::Status::Deferred, Some(Cause::Unavailable)),
        };
        let local = self.local_transport == Some(entry.transport);
        let note = crate::postfix::notes::RecipientNote {
            index: rc.orig_index,
            dest: rc.dest,
            notice_to: match msg.origin {
                crate::postfix::message::Origin::Notice(s) => Some(s),
                _ => None,
            },
            status,
            cause,
            suspended_by: None,
            saved_text: None,
            server: rc.reply_host,
            pid: entry.pid,
            agent: if local {
                crate::postfix::notes::AgentNote::Local
            } else {
                crate::postfix::notes::AgentNote::Smtp(entry.transport)
            },
            relay: entry.relay,
            tried: entry.tried,
            arrival: msg.arrival,
            active: msg.active_at,
            handoff: Some(entry.handoff),
            setup_done: entry.setup_done,
            conn_use: entry.conn_use,
            window_wait: entry.window_wait,
            dns: entry.dns,
            to_filter: msg.filter_pass
                && self
                    .content_filter
                    .is_some_and(|cf| cf.destination as u32 == entry.dest),
            queued_as: queued_as.filter(|_| reply == Reply::Sent),
        };
        let (id, origin) = (msg.id, msg.origin_id);
        self.note(
            now,
            id,
            origin,
            crate::postfix::notes::NoteKind::Recipient(note),
        );
    }

    /// The reason qmgr hands the retry service for queue `q` when it is dead (`cause` =
    /// `Suspended`) or its transport is (`TransportUnavailable`): the DSN's cause and the
    /// saved text.
    pub(crate) fn saved_reason(&mut self, q: u32, cause: Cause) -> (Cause, u32) {
        match (cause, self.qmgr.queues[q as usize].dead_reason) {
            (Cause::Suspended, Some(saved)) => saved,
            (Cause::Suspended, None) => {
                let text = format!(
                    "delivery temporarily suspended: {}",
                    crate::output::maillog::reason(Cause::Unavailable, "", None, "")
                );
                (Cause::Unavailable, self.save_text(text))
            }
            // qmgr_deliver.c: `qmgr_transport_throttle(…, "4.3.0", "mail transport
            // unavailable")`.
            _ => (
                Cause::TransportUnavailable,
                self.save_text("mail transport unavailable".into()),
            ),
        }
    }

    /// qmgr defers recipient `r` through the retry service, without an attempt (a dead
    /// destination or transport), with the saved reason `(dsn cause, text)`.
    pub(crate) fn retry_deferral(
        &mut self,
        m: u32,
        r: usize,
        cause: Cause,
        saved: (Cause, u32),
        window_wait: Time,
        now: Time,
    ) {
        self.totals.suspended_deferrals += 1;
        self.totals.deferred_by_cause.add(cause);
        self.messages.get_mut(m).deferred_this_round = true;
        self.defer_log_append(m, r, DeferWhy::Saved { text: saved.1 });
        if !self.record_notes {
            return;
        }
        let msg = self.messages.get(m);
        let rc = msg.recipients[r];
        let note = crate::postfix::notes::RecipientNote {
            index: rc.orig_index,
            dest: rc.dest,
            notice_to: match msg.origin {
                crate::postfix::message::Origin::Notice(s) => Some(s),
                _ => None,
            },
            status: crate::observe::Status::Deferred,
            cause: Some(cause),
            suspended_by: Some(saved.0),
            saved_text: Some(saved.1),
            server: NO_HOST,
            // An error(8) process of the retry service.
            pid: 2700 + (crate::engine::rng::splitmix64(msg.id ^ msg.activation) % 97) as u32,
            agent: crate::postfix::notes::AgentNote::Retry,
            relay: None,
            tried: None,
            arrival: msg.arrival,
            active: msg.active_at,
            handoff: None,
            setup_done: None,
            conn_use: 0,
            to_filter: false,
            window_wait,
            dns: 0,
            queued_as: None,
        };
        let (id, origin) = (msg.id, msg.origin_id);
        self.note(
            now,
            id,
            origin,
            crate::postfix::notes::NoteKind::Recipient(note),
        );
    }

    /// Requests not yet with an agent are forgotten (the files keep the recipients).
    fn abandon_queued(&mut self) {
        for q in 0..self.qmgr.queues.len() {
            while let Some(e) = self.qmgr.queues[q].todo.pop_front() {
                self.qmgr.free_entries.push(e);
            }
        }
    }

    /// qmgr exits: in-flight requests are orphaned, queued ones are forgotten (the file
    /// keeps the recipients).
    pub(crate) fn abandon_entries(&mut self) {
        self.abandon_queued();
        let free: std::collections::HashSet<u32> = self.qmgr.free_entries.iter().copied().collect();
        for e in 0..self.qmgr.entries.len() as u32 {
            if free.contains(&e) {
                continue;
            }
            let entry = &mut self.qmgr.entries[e as usize];
            if !entry.orphan && !entry.killed {
                entry.orphan = true;
                let m = entry.msg;
                self.messages.get_mut(m).locked += 1;
            }
        }
    }

    /// `postfix stop`: the master's SIGTERM to its process group kills every delivery
    /// agent at once, those of an earlier qmgr too (master_sig.c: `master_sigdeath`; smtp(8)
    /// and local(8) catch no SIGTERM). Their requests leave no trace: the recipients stay
    /// pending in the files, which stay in active/ for the next qmgr, and nothing is logged.
    /// Queued requests are forgotten as at any qmgr exit.
    pub(crate) fn kill_agents(&mut self, world: &mut World) {
        self.abandon_queued();
        let free: std::collections::HashSet<u32> = self.qmgr.free_entries.iter().copied().collect();
        for e in 0..self.qmgr.entries.len() as u32 {
            let entry = self.qmgr.entries[e as usize];
            if free.contains(&e) || entry.killed {
                continue;
            }
            self.qmgr.entries[e as usize].killed = true;
            if let Some(agent) = self.qmgr.entries[e as usize].agent.take() {
                world.abort(agent);
            }
            if let Some(t) = self.qmgr.transports.get_mut(entry.transport as usize) {
                t.busy_agents = t.busy_agents.saturating_sub(1);
            }
            let msg = self.messages.get_mut(entry.msg);
            if msg.generation != entry.generation || msg.location == Location::Gone {
                continue;
            }
            for r in &mut msg.recipients[entry.lo as usize..entry.hi as usize] {
                if r.status == RcptStatus::Pending {
                    r.reply = Reply::None; // what the agent had heard dies with it
                }
            }
            if entry.orphan {
                msg.locked = msg.locked.saturating_sub(1);
            }
        }
    }

    /// `postsuper` acted on an active message: its requests not yet with an agent are
    /// dropped (the agent would not find the file); those in flight finish.
    pub(crate) fn cancel_queued_entries(
        &mut self,
        m: u32,
        now: Time,
        events: &mut EventQueue<Event>,
        obs: &mut dyn Observer,
    ) {
        let mut dropped = Vec::new();
        for q in 0..self.qmgr.queues.len() {
            let queue = &mut self.qmgr.queues[q];
            if !queue
                .todo
                .iter()
                .any(|&e| self.qmgr.entries[e as usize].msg == m)
            {
                continue;
            }
            let entries = &self.qmgr.entries;
            queue.todo.retain(|&e| {
                if entries[e as usize].msg == m {
                    dropped.push(e);
                    false
                } else {
                    true
                }
            });
        }
        for e in dropped {
            self.entry_done(e, false, now, events, obs);
        }
    }

    /// `qmgr_enable_all` (`postqueue -f`, `-s`): every dead transport and queue comes back.
    pub(crate) fn enable_all(&mut self) {
        for t in 0..self.qmgr.transports.len() {
            if self.unthrottle_transport(t) {
                self.sync_dead_transport(t, DeadNote::Flush);
            }
        }
        for q in 0..self.qmgr.queues.len() as u32 {
            self.enable_queue(q);
        }
    }

    /// `qmgr_enable_queue`.
    pub(crate) fn enable_queue(&mut self, q: u32) {
        let queue = &mut self.qmgr.queues[q as usize];
        if !queue.exists {
            return;
        }
        if queue.win.is_dead() {
            let t = queue.transport as usize;
            let rules = self.qmgr.transports[t].rules;
            let busy = queue.busy;
            queue.win.unthrottle(&rules, busy);
            queue.timer_generation += 1;
            self.sync_dead(q, DeadNote::Flush);
        }
        self.qmgr.touch_window(q);
        let queue = &self.qmgr.queues[q as usize];
        if queue.win.is_ready() && queue.todo.is_empty() && queue.busy == 0 {
            self.delete_queue(q);
        } else {
            self.qmgr.offer(q);
        }
    }

    /// A queue has just been declared dead: its queued requests are deferred through the
    /// retry service and a `minimal_backoff_time` revival timer starts (§5.3).
    fn declare_dead(
        &mut self,
        q: u32,
        now: Time,
        events: &mut EventQueue<Event>,
        obs: &mut dyn Observer,
    ) {
        let queue = &mut self.qmgr.queues[q as usize];
        // qmgr_queue_throttle: a queue that dies forgets its connection-caching flags.
        queue.cache = crate::world::CacheFlags::default();
        queue.timer_generation += 1;
        let generation = queue.timer_generation;
        let until = self.request_timer(
            Timer::QueueRevive {
                queue: q,
                generation,
            },
            self.cfg.minimal_backoff_time,
            now,
            events,
        );
        let text = self.qmgr.queues[q as usize]
            .dead_reason
            .map_or(0, |(_, t)| t);
        self.sync_dead(q, DeadNote::QueueDied { text, until });
        self.defer_todo(q, Cause::Suspended, now, events, obs);
    }

    /// `qmgr_defer_todo`: every queued request of `q` is deferred without an attempt.
    fn defer_todo(
        &mut self,
        q: u32,
        cause: Cause,
        now: Time,
        events: &mut EventQueue<Event>,
        obs: &mut dyn Observer,
    ) {
        while let Some(e) = self.qmgr.queues[q as usize].todo.pop_front() {
            self.defer_entry(e, cause, now, events, obs);
        }
    }

    /// Request `e` (off its queue's todo list) is deferred through the retry service.
    fn defer_entry(
        &mut self,
        e: u32,
        cause: Cause,
        now: Time,
        events: &mut EventQueue<Event>,
        obs: &mut dyn Observer,
    ) {
        self.note_window_wait(e);
        let entry = self.qmgr.entries[e as usize];
        let saved = self.saved_reason(entry.queue, cause);
        for r in entry.lo as usize..entry.hi as usize {
            if self.messages.get(entry.msg).recipients[r].status == RcptStatus::Pending {
                self.retry_deferral(entry.msg, r, cause, saved, entry.window_wait, now);
            }
        }
        // The message may finish here (and expire): its outcomes go to the observer.
        self.entry_done(e, false, now, events, obs);
    }

    /// Is transport `t`'s service failing to start at `now` (a `transport_down` fault)?
    fn transport_is_down(&self, t: usize, now: Time) -> bool {
        self.transport_faults
            .iter()
            .any(|&(start, end, tr)| tr == t && start <= now && now < end)
    }

    /// `qmgr_transport_throttle`: the whole transport is dead for transport_retry_time, and
    /// everything queued for it is deferred (§5.4).
    fn throttle_transport(
        &mut self,
        t: usize,
        now: Time,
        events: &mut EventQueue<Event>,
        obs: &mut dyn Observer,
    ) {
        let transport = &mut self.qmgr.transports[t];
        if transport.dead {
            return;
        }
        transport.dead = true;
        transport.timer_generation += 1;
        let generation = transport.timer_generation;
        let until = self.request_timer(
            Timer::TransportRevive {
                transport: u16::try_from(t).unwrap_or(u16::MAX),
                generation,
            },
            self.cfg.transport_retry_time,
            now,
            events,
        );
        self.sync_dead_transport(t, DeadNote::TransportDied { until });
        for q in 0..self.qmgr.queues.len() as u32 {
            if self.qmgr.queues[q as usize].transport as usize == t
                && self.qmgr.queues[q as usize].exists
            {
                self.defer_todo(q, Cause::TransportUnavailable, now, events, obs);
            }
        }
    }

    /// `qmgr_transport_unthrottle`: by the timer, a normal delivery completion, or a flush.
    /// Returns whether the transport was dead.
    pub(crate) fn unthrottle_transport(&mut self, t: usize) -> bool {
        if let Some(transport) = self.qmgr.transports.get_mut(t)
            && transport.dead
        {
            transport.dead = false;
            transport.timer_generation += 1;
            return true;
        }
        false
    }

    pub(crate) fn transport_revive_timer(&mut self, t: usize, generation: u32) {
        if self
            .qmgr
            .transports
            .get(t)
            .is_some_and(|tr| tr.timer_generation == generation)
            && self.unthrottle_transport(t)
        {
            self.sync_dead_transport(t, DeadNote::Timer);
        }
    }

    /// `qmgr_entry_done`: takes the request off its queue, applies the rate delay, deletes
    /// an empty ready queue (forgetting its window), and finishes the message when this was
    /// its last request.
    fn entry_done(
        &mut self,
        e: u32,
        was_busy: bool,
        now: Time,
        events: &mut EventQueue<Event>,
        obs: &mut dyn Observer,
    ) {
        let entry = self.qmgr.entries[e as usize];
        self.qmgr.free_entries.push(e);
        self.qmgr.free_pid(entry.pid);
        let q = entry.queue;
        let t = self.qmgr.queues[q as usize].transport as usize;
        let rate_delay = self.qmgr.transports[t].rate_delay;
        let rules = self.qmgr.transports[t].rules;
        if was_busy {
            let queue = &mut self.qmgr.queues[q as usize];
            queue.busy -= 1;
            queue.last_done = whole_seconds(now);
            if rate_delay > 0 {
                // §5.5: a rate-limited queue is unthrottled, then suspended for the delay.
                if queue.win.is_dead() {
                    queue.win.unthrottle(&rules, queue.busy);
                    queue.timer_generation += 1;
                    self.sync_dead(q, DeadNote::Delivery);
                }
                let queue = &mut self.qmgr.queues[q as usize];
                if queue.win.is_ready() {
                    queue.win.window = super::feedback::SUSPENDED;
                    queue.timer_generation += 1;
                    let generation = queue.timer_generation;
                    self.request_timer(
                        Timer::QueueResume {
                            queue: q,
                            generation,
                        },
                        rate_delay,
                        now,
                        events,
                    );
                }
            }
        }
        self.qmgr.touch_window(q);
        let queue = &self.qmgr.queues[q as usize];
        if queue.todo.is_empty() && queue.busy == 0 {
            if queue.win.is_ready() {
                self.delete_queue(q);
            }
        } else {
            self.qmgr.offer(q);
        }
        let msg = self.messages.get_mut(entry.msg);
        msg.refcount = msg.refcount.saturating_sub(1);
        if msg.refcount == 0 {
            self.active_done(entry.msg, now, obs);
        }
    }

    /// `qmgr_queue_done`: the in-core queue disappears with everything it learned.
    fn delete_queue(&mut self, q: u32) {
        let dest = self.qmgr.queues[q as usize].dest;
        let queue = &mut self.qmgr.queues[q as usize];
        queue.exists = false;
        queue.ready_key = NOT_QUEUED;
        queue.timer_generation += 1;
        if let Some(key) = queue.recipient_key.take() {
            // A per-recipient queue: free the slot.
            self.qmgr.per_recipient_queues.remove(&(dest, key));
            self.qmgr.free_queues.push(q);
        }
    }

    /// The dead queue's timer: revive it, and delete it if it has nothing to do.
    pub(crate) fn queue_revive_timer(&mut self, q: u32, generation: u32) {
        let queue = &mut self.qmgr.queues[q as usize];
        if queue.timer_generation != generation || !queue.exists || !queue.win.is_dead() {
            return;
        }
        let t = queue.transport as usize;
        let rules = self.qmgr.transports[t].rules;
        let busy = queue.busy;
        queue.win.unthrottle(&rules, busy);
        self.sync_dead(q, DeadNote::Timer);
        self.qmgr.touch_window(q);
        let queue = &self.qmgr.queues[q as usize];
        if queue.todo.is_empty() && queue.busy == 0 {
            self.delete_queue(q);
        } else {
            self.qmgr.offer(q);
        }
    }

    /// A rate-delay suspension ends: window 1 again (`qmgr_queue_resume`).
    pub(crate) fn queue_resume_timer(&mut self, q: u32, generation: u32) {
        let queue = &mut self.qmgr.queues[q as usize];
        if queue.timer_generation != generation
            || !queue.exists
            || queue.win.window != super::feedback::SUSPENDED
        {
            return;
        }
        queue.win.window = 1;
        self.qmgr.touch_window(q);
        let queue = &self.qmgr.queues[q as usize];
        if queue.todo.is_empty() && queue.busy == 0 {
            self.delete_queue(q);
        } else {
            self.qmgr.offer(q);
        }
    }
}
