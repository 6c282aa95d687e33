//! The door: smtpd and cleanup taking mail in, and the senders on the other side of it
//! (§3.3, §7.1, §9a).
//!
//! - An SMTP client needs one of smtpd's `maxproc` processes; when all are busy it waits in
//!   the listen backlog, first come, first served.
//! - At MAIL FROM smtpd refuses with 452 when the queue file system is short of space
//!   (free ≤ `queue_minfree`, or < 1.5 × `message_size_limit`), and rejects a message
//!   larger than `message_size_limit` with 552 for good. A stopped Postfix refuses the
//!   connection.
//! - cleanup takes an in_flow token per message; with none left it sleeps `in_flow_delay`
//!   first, keeping its smtpd process busy. qmgr hands tokens back as it imports from
//!   incoming, and refills the bucket to `default_process_limit` when no incoming scan runs.
//! - Refused mail is offered again by its sender every `sender_retry` until it is older than
//!   `sender_lifetime`.
//!
//! sendmail submissions go through postdrop into maildrop, which only fails when the file
//! does not fit; pickup, the filter's re-injection and bounce are cleanup clients too and
//! share the bucket (`in_flow_token`). A `load` fault stretches smtpd's session time.

use super::notes::NoteKind;
use super::{Event, Mta, SmtpdFile};
use crate::engine::time::{SECOND, Time};
use crate::engine::{EventQueue, RngStreams, SimRng};
use crate::observe::Refusal;
use crate::scenario::{FaultKind, Scenario, Submit};
use crate::world::latency::Sampler;
use std::collections::VecDeque;

/// A message at the door: who sends it, to whom, and since when.
#[derive(Clone, Debug)]
struct Offered {
    stream: u16,
    dests: Vec<u32>,
    size: u64,
    first_try: Time,
    /// In a session: smtpd adds a FILTER record (its main.cf had a content_filter when the
    /// session began), the queue ID cleanup gave it, and its MAIL FROM time.
    filter: bool,
    id: u64,
    mail_from: Time,
}

/// What happened to an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// In the queue now.
    Accepted,
    /// Kept by smtpd (receiving, sleeping, or waiting for a process): enters later.
    Pending,
    /// Refused for now; the sender tries again.
    Refused,
    /// Rejected for good.
    Rejected,
}

pub(super) struct Inbound {
    /// smtpd's maxproc; 0 = unlimited.
    maxproc: u32,
    busy: u32,
    backlog: VecDeque<Offered>,
    sessions: Vec<Option<Offered>>,
    free_sessions: Vec<u32>,
    /// Per stream: how long the client's session takes (`receive`), and how refused mail
    /// comes back (`sender_retry`, `sender_lifetime`).
    receive: Vec<Sampler>,
    receive_rng: Vec<SimRng>,
    via_maildrop: Vec<bool>,
    retry: Vec<(Time, Time)>,
    /// Refused offers waiting for their sender's next try.
    retrying: Vec<Option<Offered>>,
    free_retrying: Vec<u32>,
    retry_waiting: usize,
    /// The in_flow token bucket (§3.3).
    tokens: u32,
    token_limit: u32,
    in_flow_delay: Time,
    /// `load` faults: (start, end, factor) stretching smtpd's work.
    load: Vec<(Time, Time, f64)>,
}

impl Inbound {
    pub fn new(scenario: &Scenario, streams: &RngStreams) -> Self {
        let t = &scenario.traffic;
        Inbound {
            maxproc: scenario.smtpd_maxproc,
            busy: 0,
            backlog: VecDeque::new(),
            sessions: Vec::new(),
            free_sessions: Vec::new(),
            receive: t.iter().map(|s| Sampler::new(&s.receive)).collect(),
            receive_rng: (0..t.len())
                .map(|i| streams.stream("receive", i as u64))
                .collect(),
            via_maildrop: t.iter().map(|s| s.submit == Submit::Sendmail).collect(),
            retry: t
                .iter()
                .map(|s| (s.sender_retry, s.sender_lifetime))
                .collect(),
            retrying: Vec::new(),
            free_retrying: Vec::new(),
            retry_waiting: 0,
            tokens: scenario.postfix.default_process_limit,
            token_limit: scenario.postfix.default_process_limit,
            in_flow_delay: scenario.postfix.in_flow_delay * SECOND,
            load: scenario
                .faults
                .iter()
                .filter_map(|f| match f.kind {
                    FaultKind::Load { factor } => Some((f.start, f.end, factor)),
                    _ => None,
                })
                .collect(),
        }
    }
}

impl Mta {
    /// A message of traffic stream `stream` arrives at the door.
    pub fn arrive(
        &mut self,
        now: Time,
        stream: u16,
        dests: &[u32],
        size: u64,
        events: &mut EventQueue<Event>,
    ) {
        self.totals.offered += 1;
        self.offer(now, stream, dests, size, now, events);
    }

    /// Messages still outside the queue that will come in later (retries, sessions).
    pub fn inbound_pending(&self) -> usize {
        let i = &self.inbound;
        i.retry_waiting + i.backlog.len() + i.busy as usize
    }

    fn offer(
        &mut self,
        now: Time,
        stream: u16,
        dests: &[u32],
        size: u64,
        first_try: Time,
        events: &mut EventQueue<Event>,
    ) {
        let outcome = if self.inbound.via_maildrop[stream as usize] {
            self.postdrop(now, stream, dests, size, events)
        } else if !self.running {
            self.totals.refused_stopped += 1;
            Outcome::Refused
        } else if self.inbound.maxproc > 0 && self.inbound.busy >= self.inbound.maxproc {
            self.inbound.backlog.push_back(Offered {
                stream,
                dests: dests.to_vec(),
                size,
                first_try,
                filter: false,
                id: 0,
                mail_from: 0,
            });
            Outcome::Pending
        } else {
            self.smtpd_session(now, stream, dests, size, first_try, events)
        };
        if outcome == Outcome::Refused {
            self.sender_retries(now, stream, dests, size, first_try, events);
        }
    }

    /// postdrop writes maildrop; it only fails when the file does not fit.
    fn postdrop(
        &mut self,
        now: Time,
        stream: u16,
        dests: &[u32],
        size: u64,
        events: &mut EventQueue<Event>,
    ) -> Outcome {
        if self.disk.is_some() && self.free_space(now) < size {
            self.totals.refused_disk += 1;
            return Outcome::Refused;
        }
        self.submit(now, stream, dests, size, None, events);
        Outcome::Accepted
    }

    /// An smtpd process takes the client: MAIL FROM checks, then the transfer and
    /// cleanup's in_flow token.
    fn smtpd_session(
        &mut self,
        now: Time,
        stream: u16,
        dests: &[u32],
        size: u64,
        first_try: Time,
        events: &mut EventQueue<Event>,
    ) -> Outcome {
        let limit = self.cfg.message_size_limit;
        if limit > 0 && size > limit {
            // 552 5.3.4 Message size exceeds fixed limit: the sender bounces it.
            self.totals.rejected_messages += 1;
            self.note(now, 0, 0, NoteKind::Refused(Refusal::TooLarge));
            return Outcome::Rejected;
        }
        if let Some(free) = self.short_of_queue_space(now) {
            self.totals.refused_disk += 1;
            self.note(
                now,
                0,
                0,
                NoteKind::Refused(Refusal::InsufficientStorage { free }),
            );
            return Outcome::Refused;
        }
        // smtpd reads content_filter when its process starts; one that began after a
        // reload has the new value (smtpd.c: the FILTER record from var_filter_xport).
        let filter = self.filter_on;
        let s = stream as usize;
        let inbound = &mut self.inbound;
        let mut delay = inbound.receive[s]
            .sample(&mut inbound.receive_rng[s])
            .max(0);
        let load: f64 = inbound
            .load
            .iter()
            .filter(|&&(start, end, _)| start <= now && now < end)
            .map(|&(_, _, f)| f)
            .product();
        if load != 1.0 {
            delay = (delay as f64 * load).min(i64::MAX as f64 / 4.0) as Time;
        }
        // smtpd opens the cleanup stream at the first accepted RCPT: cleanup takes a token
        // or sleeps first, then gives the file its queue ID, which smtpd logs (`client=`).
        let mut sleep = 0;
        if !self.in_flow_token() {
            sleep = self.inbound.in_flow_delay;
            self.totals.in_flow_delays += 1;
        }
        delay += sleep;
        let id = self.reserve_queue_id();
        self.note(now + sleep, id, id, NoteKind::SmtpdClient);
        let file = SmtpdFile {
            filter,
            id,
            arrival: now, // the T record is MAIL FROM's time
        };
        if delay == 0 {
            if !self.queue_file_fits(now, size, id) {
                return Outcome::Refused;
            }
            self.submit(now, stream, dests, size, Some(file), events);
            return Outcome::Accepted;
        }
        let inbound = &mut self.inbound;
        inbound.busy += 1;
        let offered = Offered {
            stream,
            dests: dests.to_vec(),
            size,
            first_try,
            filter,
            id,
            mail_from: now,
        };
        let session = match inbound.free_sessions.pop() {
            Some(i) => {
                inbound.sessions[i as usize] = Some(offered);
                i
            }
            None => {
                inbound.sessions.push(Some(offered));
                (inbound.sessions.len() - 1) as u32
            }
        };
        events.schedule(now + delay, Event::SmtpdDone { session });
        Outcome::Pending
    }

    /// The session ends: cleanup has written the file. Its smtpd takes the next client.
    pub(super) fn smtpd_done(&mut self, session: u32, now: Time, events: &mut EventQueue<Event>) {
        let inbound = &mut self.inbound;
        let Some(offered) = inbound
            .sessions
            .get_mut(session as usize)
            .and_then(Option::take)
        else {
            // Killed by `postfix stop`: the slot was kept until this event.
            inbound.free_sessions.push(session);
            return;
        };
        inbound.free_sessions.push(session);
        inbound.busy -= 1;
        if self.queue_file_fits(now, offered.size, offered.id) {
            let file = SmtpdFile {
                filter: offered.filter,
                id: offered.id,
                arrival: offered.mail_from,
            };
            self.submit(
                now,
                offered.stream,
                &offered.dests,
                offered.size,
                Some(file),
                events,
            );
        } else {
            self.sender_retries(
                now,
                offered.stream,
                &offered.dests,
                offered.size,
                offered.first_try,
                events,
            );
        }
        while self.running
            && (self.inbound.maxproc == 0 || self.inbound.busy < self.inbound.maxproc)
        {
            let Some(next) = self.inbound.backlog.pop_front() else {
                break;
            };
            let outcome = self.smtpd_session(
                now,
                next.stream,
                &next.dests,
                next.size,
                next.first_try,
                events,
            );
            if outcome == Outcome::Refused {
                self.sender_retries(
                    now,
                    next.stream,
                    &next.dests,
                    next.size,
                    next.first_try,
                    events,
                );
            }
        }
    }

    /// `postfix stop`: smtpd dies with the master's SIGTERM (cleanup removes its unfinished
    /// queue file), so every client in a session, asleep in cleanup's in_flow_delay, or in
    /// the listen backlog sees the connection drop and tries again later, like a client
    /// refused while Postfix is down. A killed session's slot is freed by its pending
    /// `SmtpdDone`.
    pub(super) fn smtpd_killed(&mut self, now: Time, events: &mut EventQueue<Event>) {
        let mut dropped: Vec<Offered> = std::mem::take(&mut self.inbound.backlog).into();
        for slot in &mut self.inbound.sessions {
            if let Some(o) = slot.take() {
                self.inbound.busy -= 1;
                dropped.push(o);
            }
        }
        for o in dropped {
            self.totals.refused_stopped += 1;
            self.sender_retries(now, o.stream, &o.dests, o.size, o.first_try, events);
        }
    }

    /// smtpd_check_queue (smtpd_check.c), at every smtpd's MAIL FROM: `452 4.3.1
    /// Insufficient system storage` when free space is at most queue_minfree or below 1.5 ×
    /// message_size_limit. Returns the free bytes when it refuses.
    pub(super) fn short_of_queue_space(&self, now: Time) -> Option<u64> {
        self.disk?;
        let free = self.free_space(now);
        let wide = u128::from(free);
        let limit = u128::from(self.cfg.message_size_limit);
        (wide <= u128::from(self.cfg.queue_minfree) || 2 * wide < 3 * limit).then_some(free)
    }

    /// cleanup writes the queue file at the end of DATA: if it does not fit the write
    /// fails, smtpd answers `451 4.3.0 Error: queue file write error` (spec §7.1) and the
    /// sender tries again; the 452 check at MAIL FROM only looked at the space then, and
    /// sessions running side by side can overcommit it. The file's queue ID `id` is used
    /// up.
    fn queue_file_fits(&mut self, now: Time, size: u64, id: u64) -> bool {
        if self.disk.is_none() || self.free_space(now) >= size {
            return true;
        }
        self.totals.refused_write_error += 1;
        self.note(now, id, id, NoteKind::Refused(Refusal::WriteError));
        false
    }

    /// The sender keeps a refused message and tries again after `sender_retry`, unless it is
    /// too old by then.
    fn sender_retries(
        &mut self,
        now: Time,
        stream: u16,
        dests: &[u32],
        size: u64,
        first_try: Time,
        events: &mut EventQueue<Event>,
    ) {
        let (retry, lifetime) = self.inbound.retry[stream as usize];
        let at = now + retry;
        if at - first_try > lifetime {
            self.totals.not_accepted += 1;
            return;
        }
        let kept = Offered {
            stream,
            dests: dests.to_vec(),
            size,
            first_try,
            filter: false,
            id: 0,
            mail_from: 0,
        };
        let inbound = &mut self.inbound;
        let slot = match inbound.free_retrying.pop() {
            Some(i) => {
                inbound.retrying[i as usize] = Some(kept);
                i
            }
            None => {
                inbound.retrying.push(Some(kept));
                (inbound.retrying.len() - 1) as u32
            }
        };
        inbound.retry_waiting += 1;
        events.schedule(at, Event::Resubmit { slot });
    }

    pub(super) fn resubmit(&mut self, slot: u32, now: Time, events: &mut EventQueue<Event>) {
        let inbound = &mut self.inbound;
        let Some(o) = inbound
            .retrying
            .get_mut(slot as usize)
            .and_then(Option::take)
        else {
            return;
        };
        inbound.free_retrying.push(slot);
        inbound.retry_waiting -= 1;
        self.offer(now, o.stream, &o.dests, o.size, o.first_try, events);
    }

    /// cleanup's in_flow gate for one new queue file, whoever its client is (smtpd, pickup,
    /// the filter's re-injecting smtpd, bounce): every cleanup connection takes a token, or
    /// cleanup sleeps `in_flow_delay` before serving it (single_server.c: `mail_flow_get`,
    /// `doze`; cleanup is an in-flow-delay service). True when it may go on at once.
    pub(super) fn in_flow_token(&mut self) -> bool {
        let inbound = &mut self.inbound;
        if inbound.in_flow_delay == 0 {
            return true;
        }
        if inbound.tokens > 0 {
            inbound.tokens -= 1;
            return true;
        }
        false
    }

    pub(super) fn inbound_in_flow_delay(&self) -> Time {
        self.inbound.in_flow_delay
    }

    /// After `postfix reload` or `start`: smtpd's maxproc (master.cf, `-` following
    /// default_process_limit), cleanup's in_flow_delay and qmgr's token target are the new
    /// ones; sessions under way keep their processes.
    pub(super) fn inbound_reconfigure(&mut self, c: &crate::scenario::Reconfiguration) {
        let inbound = &mut self.inbound;
        inbound.maxproc = c.smtpd_maxproc;
        inbound.in_flow_delay = c.postfix.in_flow_delay * SECOND;
        inbound.token_limit = c.postfix.default_process_limit;
        inbound.tokens = inbound.tokens.min(inbound.token_limit);
    }

    /// qmgr's side of the in_flow bucket, once per pass of its loop (`qmgr_loop`).
    pub(super) fn in_flow_refill(&mut self, imported_from_incoming: u32) {
        let inbound = &mut self.inbound;
        if inbound.in_flow_delay == 0 {
            return;
        }
        if inbound.tokens < inbound.token_limit {
            if imported_from_incoming > 0 {
                inbound.tokens = (inbound.tokens + imported_from_incoming).min(inbound.token_limit);
            } else if !self.qmgr.incoming_scan.running {
                inbound.tokens = inbound.token_limit;
            }
        }
    }
}
