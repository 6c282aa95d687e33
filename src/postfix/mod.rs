//! The mail system: Postfix's queue directories, cleanup/pickup, and qmgr with its scheduler,
//! mirroring Postfix's own split of daemons. Every rule cites the section of
//! `../shared/postfix-model.md` it follows; that document was checked against the v3.7.22
//! sources, which win where the prose documentation differs.
//!
//! The model is driven by [`Event`]s from the engine and by [`Mta::submit`] for arrivals;
//! after every event [`Mta::run_qmgr`] plays qmgr's main loop until it has nothing to do.
//! qmgr's own work (importing a file, choosing an entry) takes no simulated time: in real
//! Postfix it is CPU-bound and microseconds long next to delivery and retry times.

mod admin;
mod deferred_index;
mod flush;
mod inbound;
pub mod message;
mod notes;
pub mod qmgr;

use crate::engine::EventQueue;
use crate::engine::time::{Time, whole_seconds};
use crate::observe::{Address, CauseCounts, FinalStatus, Observer, RecipientOutcome, Via};
use crate::scenario::{PostfixConfig, Scenario};
use crate::world::World;
use message::{Arena, LeaveAction, Location, Message, Origin, RcptStatus, Recipient, Reply};
use qmgr::event_loop::Timer;
use std::collections::VecDeque;

/// Everything that can happen to the mail system at a scheduled time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The next message of traffic stream `stream` arrives.
    Arrival { stream: u16 },
    /// A sender offers refused message `slot` again.
    Resubmit { slot: u32 },
    /// An smtpd session (receiving, and cleanup's in_flow_delay sleep) ends.
    SmtpdDone { session: u32 },
    /// A qmgr timer is due (a whole second): unless something woke qmgr since, its select()
    /// returns a fraction of a second later (`qmgr::event_loop`).
    QmgrTimer,
    /// qmgr's select() times out and it runs the timers that are due.
    QmgrSelect,
    /// master's periodic wakeup of qmgr (an incoming scan).
    QmgrWakeup { generation: u32 },
    /// pickup's periodic wakeup.
    PickupWakeup,
    /// cleanup's in_flow_delay sleep for the file pickup is handing it has ended.
    PickupResume,
    /// The scenario's admin action `index`.
    Admin { index: u32 },
    /// The agent of request `entry` moves on to its next host or site.
    SmtpStep { entry: u32 },
    /// A delivery agent finished the request `entry`.
    DeliveryDone { entry: u32 },
    /// An agent of `transport` that qmgr asked for is ready for a request.
    AgentReady { transport: u16, generation: u32 },
}

/// Number of queue files per directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub maildrop: u64,
    pub incoming: u64,
    pub active: u64,
    pub deferred: u64,
    pub hold: u64,
}

impl QueueCounts {
    fn slot(&mut self, loc: Location) -> Option<&mut u64> {
        match loc {
            Location::Maildrop => Some(&mut self.maildrop),
            Location::Incoming => Some(&mut self.incoming),
            Location::Active => Some(&mut self.active),
            Location::Deferred => Some(&mut self.deferred),
            Location::Hold => Some(&mut self.hold),
            Location::Gone => None,
        }
    }

    pub fn total(&self) -> u64 {
        self.maildrop + self.incoming + self.active + self.deferred + self.hold
    }
}

/// Running totals, per recipient unless named otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Messages the traffic streams offered at the door (each counted once, however often
    /// its sender tries).
    pub offered: u64,
    /// Messages that arrived from traffic streams (accepted into the queue).
    pub messages: u64,
    /// Notices (non-delivery and delay notifications) Postfix generated.
    pub notices: u64,
    /// Recipients that entered the system (traffic and notices).
    pub recipients: u64,
    pub sent: u64,
    pub bounced: u64,
    pub expired: u64,
    pub deleted: u64,
    /// Deliveries handed to a delivery agent.
    pub attempts: u64,
    /// Recipients deferred by qmgr without an attempt (dead destination, §5.3).
    pub suspended_deferrals: u64,
    /// Recipient deferrals after an attempt.
    pub deferrals: u64,
    /// Queue files removed by `postsuper -d`.
    pub deleted_messages: u64,
    /// Offers refused with 452 (disk) or because Postfix was stopped; the sender retries.
    pub refused_disk: u64,
    pub refused_stopped: u64,
    /// Messages refused at the end of DATA: the queue file did not fit (451).
    pub refused_write_error: u64,
    /// Messages whose sender gave up after refusals.
    pub not_accepted: u64,
    /// Messages rejected for good at the door (552, too large).
    pub rejected_messages: u64,
    /// Recipients the content filter accepted and re-injected.
    pub filtered: u64,
    /// Messages whose cleanup slept `in_flow_delay` for want of a token.
    pub in_flow_delays: u64,
    pub admin_commands: u64,
    /// Deferrals by cause, qmgr's suspended deferrals included.
    pub deferred_by_cause: CauseCounts,
    pub bounced_by_cause: CauseCounts,
}

/// The Postfix instance being simulated.
pub struct Mta {
    cfg: PostfixConfig,
    pub(crate) domains: Vec<String>,
    senders: Vec<String>,
    notices_destination: u32,
    pub(crate) messages: Arena,
    next_message_id: u64,
    next_move_stamp: u64,
    counts: QueueCounts,
    peaks: QueueCounts,
    totals: Totals,
    first_arrival: Option<Time>,
    last_final: Option<Time>,
    pub(crate) qmgr: qmgr::Qmgr,
    maildrop: VecDeque<(u32, u64)>,
    /// Postfix is up (`postfix stop` makes it false until `postfix start`).
    running: bool,
    /// Counts qmgr processes, so the timers of an exited one are ignored.
    pub(crate) qmgr_generation: u32,
    qmgr_started_at: Time,
    /// When the master started its services (`qmgr_start`): the phase of pickup's wakeups.
    master_started_at: Time,
    qmgr_wakeup_pending: bool,
    pickup_wakeup_pending: bool,
    /// pickup waits for cleanup's in_flow_delay sleep on the file at the head of maildrop
    /// until this time; that file then goes in without a token.
    pickup_busy_until: Option<Time>,
    pickup_wanted: bool,
    admin_actions: Vec<crate::scenario::AdminAction>,
    reconfigurations: Vec<crate::scenario::Reconfiguration>,
    disk: Option<crate::scenario::DiskSpec>,
    /// disk_full faults: (start, end, bytes; `None` = everything).
    disk_fills: Vec<(Time, Time, Option<u64>)>,
    /// Bytes of all queue files.
    queue_bytes: u64,
    /// The content filter's transport and destination (FILTER records name it).
    pub(crate) content_filter: Option<crate::scenario::ContentFilter>,
    /// main.cf has a content_filter now: smtpd and pickup add FILTER records.
    filter_on: bool,
    /// transport_down faults: (start, end, transport).
    transport_faults: Vec<(Time, Time, usize)>,
    inbound: inbound::Inbound,
    deferred_by_destination: Vec<u64>,
    /// Notes for the observer's events (only while it wants them).
    record_notes: bool,
    notes: Vec<notes::Note>,
    transport_names: Vec<String>,
    /// The `local` transport's index.
    local_transport: Option<u16>,
    /// Every server host's name and address, by host id (named in reason texts).
    hosts: Vec<(String, String, u16)>,
    /// Reason texts qmgr saved (a dead queue's `delivery temporarily suspended: …`), each
    /// once, by [`message::DeferWhy::Saved`] index.
    saved_texts: Vec<String>,
    saved_text_ids: std::collections::HashMap<String, u32>,
    /// Defer-log records appended so far (their order).
    defer_seq: u64,
    /// Per destination: dead for qmgr as last told to the observer.
    dest_dead: Vec<bool>,
    /// `[host]`: how long qmgr's hand-offs to and from the agents take.
    host: crate::scenario::HostSpeed,
    /// Per destination: the flush service's fast-flush log for that site.
    fast_flush: Vec<flush::FastFlushLog>,
}

impl Mta {
    pub fn new(scenario: &Scenario, seed: u64) -> Self {
        Mta {
            cfg: scenario.postfix.clone(),
            domains: scenario
                .destinations
                .iter()
                .map(|d| d.domain.clone())
                .collect(),
            senders: scenario.traffic.iter().map(|t| t.sender.clone()).collect(),
            notices_destination: u32::try_from(scenario.notices.destination).unwrap_or(0),
            messages: Arena::default(),
            next_message_id: 1,
            next_move_stamp: 1,
            counts: QueueCounts::default(),
            peaks: QueueCounts::default(),
            totals: Totals::default(),
            first_arrival: None,
            last_final: None,
            qmgr: qmgr::Qmgr::new(scenario),
            maildrop: VecDeque::new(),
            running: true,
            qmgr_generation: 0,
            qmgr_started_at: 0,
            master_started_at: 0,
            qmgr_wakeup_pending: false,
            pickup_wakeup_pending: false,
            pickup_busy_until: None,
            pickup_wanted: false,
            admin_actions: scenario.admin.clone(),
            reconfigurations: scenario.reconfigurations.clone(),
            disk: scenario.disk,
            disk_fills: scenario
                .faults
                .iter()
                .filter_map(|f| match f.kind {
                    crate::scenario::FaultKind::DiskFull { fill } => Some((f.start, f.end, fill)),
                    _ => None,
                })
                .collect(),
            queue_bytes: 0,
            content_filter: scenario.filter,
            filter_on: scenario.filter_on,
            transport_faults: scenario
                .faults
                .iter()
                .filter_map(|f| match (f.kind, &f.target) {
                    (
                        crate::scenario::FaultKind::TransportDown,
                        crate::scenario::FaultTarget::Transport(t),
                    ) => Some((f.start, f.end, *t)),
                    _ => None,
                })
                .collect(),
            inbound: inbound::Inbound::new(scenario, &crate::engine::RngStreams::new(seed)),
            deferred_by_destination: vec![0; scenario.destinations.len()],
            record_notes: false,
            notes: Vec::new(),
            transport_names: scenario.transports.iter().map(|t| t.name.clone()).collect(),
            local_transport: scenario
                .transports
                .iter()
                .position(|t| t.name == "local")
                .and_then(|i| u16::try_from(i).ok()),
            hosts: Vec::new(),
            saved_texts: Vec::new(),
            saved_text_ids: std::collections::HashMap::new(),
            defer_seq: 0,
            dest_dead: vec![false; scenario.destinations.len()],
            host: scenario.host,
            fast_flush: vec![flush::FastFlushLog::default(); scenario.destinations.len()],
        }
    }

    /// Learns the world's host names and addresses (reason texts name them).
    pub fn learn_hosts(&mut self, world: &World) {
        self.hosts = (0..world.host_count())
            .map(|h| {
                let (n, a) = world.host(h);
                (n.to_string(), a.to_string(), world.port(h))
            })
            .collect();
    }

    /// Host `h`'s name and address, if it is one.
    pub(crate) fn host_text(&self, h: u32) -> Option<(&str, &str, u16)> {
        self.hosts
            .get(h as usize)
            .map(|(n, a, p)| (n.as_str(), a.as_str(), *p))
    }

    /// The reason text `defer_append` logs for recipient `r` of `m` given `cause` by `host`
    /// (§8.1).
    pub(crate) fn reply_text(
        &self,
        m: u32,
        r: usize,
        cause: crate::observe::Cause,
        host: u32,
    ) -> String {
        let msg = self.messages.get(m);
        let out = self.outcome(msg, r, None, FinalStatus::Queued);
        crate::output::maillog::reason(
            cause,
            &out.recipient.to_string(),
            self.host_text(host),
            out.destination,
        )
    }

    /// Keeps `text` (once) and returns its index.
    pub(crate) fn save_text(&mut self, text: String) -> u32 {
        if let Some(&i) = self.saved_text_ids.get(&text) {
            return i;
        }
        let i = u32::try_from(self.saved_texts.len()).unwrap_or(u32::MAX);
        self.saved_texts.push(text.clone());
        self.saved_text_ids.insert(text, i);
        i
    }

    pub(crate) fn saved_text(&self, i: u32) -> &str {
        self.saved_texts
            .get(i as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Appends recipient `r` of `m` to the file's defer log.
    pub(crate) fn defer_log_append(&mut self, m: u32, r: usize, why: message::DeferWhy) {
        let seq = self.defer_seq;
        self.defer_seq += 1;
        self.messages.get_mut(m).recipients[r].defer_log = Some(message::DeferRecord { why, seq });
    }

    /// Postfix was started at `start` (≤ 0): the phase of qmgr's and pickup's timers.
    pub fn set_start(&mut self, start: Time) {
        self.qmgr_started_at = start;
        self.master_started_at = start;
    }

    pub fn counts(&self) -> QueueCounts {
        self.counts
    }

    pub fn peaks(&self) -> QueueCounts {
        self.peaks
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    pub fn first_arrival(&self) -> Option<Time> {
        self.first_arrival
    }

    pub fn last_final(&self) -> Option<Time> {
        self.last_final
    }

    pub fn config(&self) -> &PostfixConfig {
        &self.cfg
    }

    /// Queue files that still need work (everything but held mail, which never moves on its
    /// own).
    pub fn unfinished(&self) -> u64 {
        self.counts.total() - self.counts.hold
    }

    /// Moves message `m` to `to`, keeping directory counts and peaks.
    fn relocate(&mut self, m: u32, to: Location) -> u64 {
        let stamp = self.next_move_stamp;
        self.next_move_stamp += 1;
        let msg = self.messages.get_mut(m);
        let from = msg.location;
        msg.location = to;
        msg.move_stamp = stamp;
        if from == Location::Gone {
            self.queue_bytes += msg.size;
        } else if to == Location::Gone {
            self.queue_bytes -= msg.size;
        }
        if let Some(c) = self.counts.slot(from) {
            *c -= 1;
        }
        if let Some(c) = self.counts.slot(to) {
            *c += 1;
            // Only `to` grew, so only its peak can move.
            let count = *c;
            if let Some(p) = self.peaks.slot(to) {
                *p = (*p).max(count);
            }
        }
        if (from == Location::Deferred) != (to == Location::Deferred) {
            self.count_deferred_destinations(m, to == Location::Deferred);
        }
        stamp
    }

    /// Keeps `deferred_by_destination`: a deferred file counts once for each destination it
    /// still has mail for (recipient statuses only change outside deferred/).
    fn count_deferred_destinations(&mut self, m: u32, entering: bool) {
        let msg = self.messages.get(m);
        let mut last = u32::MAX;
        for r in msg
            .recipients
            .iter()
            .filter(|r| r.status == RcptStatus::Pending)
        {
            // Recipients are sorted by destination, so each appears in one run.
            if r.dest == last {
                continue;
            }
            last = r.dest;
            if let Some(c) = self.deferred_by_destination.get_mut(r.dest as usize) {
                if entering {
                    *c += 1;
                } else {
                    *c -= 1;
                }
            }
        }
    }

    /// Deferred queue files per destination (by scenario destination index).
    pub fn deferred_by_destination(&self) -> &[u64] {
        &self.deferred_by_destination
    }

    /// A new queue ID (one per queue file, used up even when the file is not finished).
    pub(super) fn reserve_queue_id(&mut self) -> u64 {
        let id = self.next_message_id;
        self.next_message_id += 1;
        id
    }

    /// Free bytes on the queue file system at `now`, if the scenario has a `[disk]`.
    pub fn free_bytes(&self, now: Time) -> Option<u64> {
        self.disk.map(|_| self.free_space(now))
    }

    /// Free bytes on the queue file system at `now`.
    pub fn free_space(&self, now: Time) -> u64 {
        let Some(disk) = self.disk else {
            return u64::MAX;
        };
        let mut fill = 0u64;
        for &(start, end, bytes) in &self.disk_fills {
            if start <= now && now < end {
                fill = fill.saturating_add(bytes.unwrap_or(u64::MAX));
            }
        }
        disk.size
            .saturating_sub(disk.used)
            .saturating_sub(self.queue_bytes)
            .saturating_sub(fill)
    }

    /// An accepted message enters the queue (smtpd or sendmail, then cleanup; §2.1).
    pub(super) fn submit(
        &mut self,
        now: Time,
        stream: u16,
        dests: &[u32],
        size: u64,
        smtpd: Option<SmtpdFile>,
        events: &mut EventQueue<Event>,
    ) {
        self.totals.messages += 1;
        let arrival = smtpd.map_or(now, |f| f.arrival);
        self.first_arrival = Some(self.first_arrival.map_or(arrival, |a| a.min(arrival)));
        let m = self.new_queue_file(
            now,
            arrival,
            smtpd.map(|f| f.id),
            Origin::Stream(stream),
            false,
            size,
            dests,
        );
        if let Some(f) = smtpd {
            self.cleanup_done(m, now, Via::Smtp, f.filter);
        } else {
            // postdrop writes maildrop/ and triggers pickup, which copies the file to
            // cleanup at once (pickup.c); the arrival time is the maildrop file's.
            let stamp = self.relocate(m, Location::Maildrop);
            self.maildrop.push_back((m, stamp));
            self.pickup(now, events);
        }
    }

    /// pickup: the maildrop files go through cleanup into incoming, one at a time. Each
    /// cleanup connection takes an in_flow token, or cleanup sleeps `in_flow_delay` first
    /// while pickup waits for it (single_server.c: `mail_flow_get` or `doze`; pickup is
    /// one process, so its sleeps add up).
    fn pickup(&mut self, now: Time, events: &mut EventQueue<Event>) {
        if !self.running || self.pickup_busy_until.is_some() {
            return;
        }
        while let Some(&(m, stamp)) = self.maildrop.front() {
            let msg = self.messages.get(m);
            if msg.location != Location::Maildrop || msg.move_stamp != stamp {
                self.maildrop.pop_front();
                continue;
            }
            if !self.in_flow_token() {
                self.totals.in_flow_delays += 1;
                let until = now + self.inbound_in_flow_delay();
                self.pickup_busy_until = Some(until);
                events.schedule(until, Event::PickupResume);
                return;
            }
            self.maildrop.pop_front();
            self.pickup_one(m, now);
        }
    }

    /// The file at the head of maildrop has waited out cleanup's sleep: it goes in without
    /// a token, and pickup carries on.
    pub(super) fn pickup_resume(&mut self, now: Time, events: &mut EventQueue<Event>) {
        if self.pickup_busy_until != Some(now) {
            return; // the sleep of a pickup process that has since died (postfix stop)
        }
        self.pickup_busy_until = None;
        if !self.running {
            return;
        }
        while let Some((m, stamp)) = self.maildrop.pop_front() {
            let msg = self.messages.get(m);
            if msg.location == Location::Maildrop && msg.move_stamp == stamp {
                self.pickup_one(m, now);
                break;
            }
        }
        self.pickup(now, events);
        self.ensure_pickup_wakeup(now, events);
    }

    fn pickup_one(&mut self, m: u32, now: Time) {
        if std::mem::take(&mut self.messages.get_mut(m).requeued) {
            // pickup copies a requeued file into a new queue file, so cleanup gives it a new
            // queue ID (postsuper.c: requeue_one; pickup.c): the old ID's defer log stays
            // behind, and the new file has normal permissions (no g+x force-expiry, no g+r).
            let id = self.next_message_id;
            self.next_message_id += 1;
            let msg = self.messages.get_mut(m);
            msg.id = id;
            msg.force_expired = false;
            msg.flush_bit = false;
            msg.deferred_at = Time::MIN;
            // postsuper.c requeue_one removes the defer and bounce logs with the file.
            for r in msg.recipients.iter_mut() {
                r.defer_log = None;
            }
        }
        // A new queue file: cleanup stamps a new create_time.
        self.messages.get_mut(m).create_time = whole_seconds(now);
        // pickup adds the FILTER record to every maildrop file, requeued second passes and
        // notices included (pickup.c: `if (*var_filter_xport) rec_fprintf(… REC_TYPE_FILT`).
        let filter = self.filter_on;
        self.cleanup_done(m, now, Via::Pickup, filter);
    }

    /// Allocates a queue file with its recipients sorted by destination (so each delivery
    /// request is a contiguous slice).
    #[allow(clippy::too_many_arguments)]
    fn new_queue_file(
        &mut self,
        now: Time,
        arrival: Time,
        id: Option<u64>,
        origin: Origin,
        null_sender: bool,
        size: u64,
        dests: &[u32],
    ) -> u32 {
        let m = self.alloc_queue_file(now, arrival, id, origin, null_sender, size, |recipients| {
            recipients.extend(dests.iter().map(|&dest| Recipient {
                dest,
                status: RcptStatus::Pending,
                attempts: 0,
                reply: Reply::None,
                reply_host: message::NO_HOST,
                orig_index: 0,
                defer_log: None,
            }));
            recipients.sort_by_key(|r| r.dest);
            for (i, r) in recipients.iter_mut().enumerate() {
                r.orig_index = u32::try_from(i).unwrap_or(u32::MAX);
            }
        });
        self.totals.recipients += dests.len() as u64;
        m
    }

    /// A queue file written by cleanup at `now`, with recipients filled in by `fill`.
    /// `arrival` is its `T` record (smtpd's MAIL FROM, or now); `id` the queue ID smtpd
    /// got when it opened the file (`None`: a new one). `origin_id`/`origin_arrival` are
    /// its own until the caller says otherwise.
    #[allow(clippy::too_many_arguments)]
    fn alloc_queue_file(
        &mut self,
        now: Time,
        arrival: Time,
        id: Option<u64>,
        origin: Origin,
        null_sender: bool,
        size: u64,
        fill: impl FnOnce(&mut message::Recipients),
    ) -> u32 {
        let id = id.unwrap_or_else(|| self.reserve_queue_id());
        // cleanup_envelope.c: the W record is the arrival time plus delay_warning_time.
        let warn_time = if !null_sender && self.cfg.delay_warning_time > 0 {
            whole_seconds(arrival) + self.cfg.delay_warning_time
        } else {
            0
        };
        self.messages.alloc(|mut recipients| {
            fill(&mut recipients);
            Message {
                id,
                origin,
                null_sender,
                size,
                arrival,
                origin_id: id,
                origin_arrival: arrival,
                filter_pass: false,
                create_time: whole_seconds(now),
                mtime: whole_seconds(now),
                warn_time,
                location: Location::Gone,
                move_stamp: 0,
                nrcpt: 0,
                activation: 0,
                active_at: 0,
                refcount: 0,
                deferred_this_round: false,
                bounced_this_round: false,
                on_leave: LeaveAction::Normal,
                force_expired: false,
                expire_this_round: false,
                flush_bit: false,
                locked: 0,
                requeued: false,
                deferred_at: Time::MIN,
                generation: 0,
                recipients,
            }
        })
    }

    /// The content filter answered 250 for recipients `lo..hi` of `m` that it accepted: it
    /// has re-injected them through its own smtpd as a new queue file (new queue ID, new
    /// arrival — that smtpd's MAIL FROM, `arrival` — and create time; §7.3). The new file
    /// is not filtered again.
    pub(crate) fn reinject_filtered(
        &mut self,
        m: u32,
        lo: usize,
        hi: usize,
        now: Time,
        arrival: Time,
    ) {
        let (origin, null_sender, size, origin_id, origin_arrival) = {
            let msg = self.messages.get(m);
            (
                msg.origin,
                msg.null_sender,
                msg.size,
                msg.origin_id,
                msg.origin_arrival,
            )
        };
        let mut moved: Vec<Recipient> = Vec::new();
        for r in lo..hi {
            let rc = &mut self.messages.get_mut(m).recipients[r];
            if rc.status == RcptStatus::Filtered && rc.reply == Reply::Sent {
                rc.reply = Reply::None;
                moved.push(Recipient {
                    status: RcptStatus::Pending,
                    reply: Reply::None,
                    defer_log: None,
                    ..*rc
                });
            }
        }
        if moved.is_empty() {
            return;
        }
        self.totals.filtered += moved.len() as u64;
        let new = self.alloc_queue_file(
            now,
            arrival,
            None,
            origin,
            null_sender,
            size,
            |recipients| {
                recipients.extend_from_slice(&moved);
            },
        );
        let msg = self.messages.get_mut(new);
        msg.origin_id = origin_id;
        msg.origin_arrival = origin_arrival;
        // The filter's smtpd runs with `-o content_filter=` (FILTER_README).
        self.cleanup_done(new, now, Via::Reinjected, false);
    }

    /// cleanup has written the file: it enters incoming and qmgr is woken (`W` trigger).
    /// `filter`: its client (smtpd, pickup) added a FILTER record; the filter's re-injecting
    /// smtpd and the bounce daemon add none.
    fn cleanup_done(&mut self, m: u32, now: Time, via: Via, filter: bool) {
        let stamp = self.relocate(m, Location::Incoming);
        let filter = filter && self.content_filter.is_some();
        let msg = self.messages.get_mut(m);
        msg.filter_pass = filter;
        msg.create_time = whole_seconds(now);
        msg.mtime = whole_seconds(now);
        let (id, origin, size, sender) = (msg.id, msg.origin_id, msg.size, msg.sender_key());
        let arrival = msg.arrival;
        let nrcpt = u32::try_from(msg.pending_recipients()).unwrap_or(u32::MAX);
        msg.nrcpt = nrcpt;
        self.qmgr.incoming_push(m, stamp);
        self.note(
            now,
            id,
            origin,
            notes::NoteKind::Received {
                via,
                sender,
                size,
                nrcpt,
                arrival,
            },
        );
    }

    /// A notice (bounce or delay warning) about message `about`, sent by the bounce daemon
    /// through cleanup as a new null-sender queue file (§4.3).
    fn send_notice(&mut self, about: u32, now: Time, delay_warning: bool) {
        let origin = match self.messages.get(about).origin {
            Origin::Stream(s) => s,
            Origin::Notice(_) => return, // double bounces are discarded (notify_classes default)
        };
        self.totals.notices += 1;
        // bounce(8) writes the notice through cleanup: it takes an in_flow token if there is
        // one (with none, cleanup's one-second sleep before the notice is not modelled).
        let _ = self.in_flow_token();
        let size = self.messages.get(about).size.min(u64::MAX - 2_000) + 2_000;
        let dest = self.notices_destination;
        let m = self.new_queue_file(now, now, None, Origin::Notice(origin), true, size, &[dest]);
        let (about_id, about_origin) = {
            let msg = self.messages.get(about);
            (msg.id, msg.origin_id)
        };
        let notice = self.messages.get(m).id;
        // cleanup logs the notice's message-id before bounce logs its queue ID (bounce
        // hands it to cleanup first; collate.pl relies on that order).
        self.cleanup_done(
            m,
            now,
            Via::Notice {
                about: about_id,
                delay_warning,
            },
            false,
        );
        self.note(
            now,
            about_id,
            about_origin,
            notes::NoteKind::NoticeSent {
                notice,
                delay_warning,
            },
        );
    }

    /// Records a recipient's final status.
    fn finalize(
        &mut self,
        m: u32,
        r: usize,
        status: RcptStatus,
        now: Time,
        obs: &mut dyn Observer,
    ) {
        let msg = self.messages.get_mut(m);
        msg.recipients[r].status = status;
        let final_status = match status {
            RcptStatus::Sent => FinalStatus::Sent,
            RcptStatus::Bounced => FinalStatus::Bounced,
            RcptStatus::Expired => FinalStatus::Expired,
            RcptStatus::Deleted => FinalStatus::Deleted,
            RcptStatus::Pending | RcptStatus::Filtered => FinalStatus::Queued,
        };
        match status {
            RcptStatus::Sent => self.totals.sent += 1,
            RcptStatus::Bounced => self.totals.bounced += 1,
            RcptStatus::Expired => self.totals.expired += 1,
            RcptStatus::Deleted => self.totals.deleted += 1,
            RcptStatus::Pending | RcptStatus::Filtered => {}
        }
        self.last_final = Some(now);
        let msg = self.messages.get(m);
        obs.recipient_outcome(&self.outcome(msg, r, Some(now), final_status));
    }

    fn outcome<'a>(
        &'a self,
        msg: &Message,
        r: usize,
        finished: Option<Time>,
        status: FinalStatus,
    ) -> RecipientOutcome<'a> {
        let rcpt = &msg.recipients[r];
        let domain = self
            .domains
            .get(rcpt.dest as usize)
            .map(String::as_str)
            .unwrap_or("?");
        let recipient = match msg.origin {
            Origin::Notice(stream) => Address::Literal(
                self.senders
                    .get(stream as usize)
                    .map(String::as_str)
                    .unwrap_or("?"),
            ),
            Origin::Stream(_) => Address::Generated {
                message: msg.origin_id,
                index: rcpt.orig_index,
                domain,
            },
        };
        RecipientOutcome {
            message_id: msg.origin_id,
            notice: msg.null_sender,
            recipient,
            destination: domain,
            arrival: msg.origin_arrival,
            finished,
            attempts: rcpt.attempts,
            status,
        }
    }

    /// The queue files as showq lists them (`mailq`, `qshape`): queue order, then id; each
    /// file's recipients in showq's order, those in the defer log first, in log order (§8.2).
    pub fn queue_files(&self) -> Vec<crate::output::mailq::QueueFile> {
        let mut files: Vec<crate::output::mailq::QueueFile> = self
            .messages
            .iter_live()
            .map(|msg| {
                let queue = match msg.location {
                    Location::Maildrop => "maildrop",
                    Location::Incoming => "incoming",
                    Location::Active => "active",
                    Location::Deferred => "deferred",
                    Location::Hold | Location::Gone => "hold",
                };
                let mut pending: Vec<(Option<u64>, usize)> = msg
                    .recipients
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.status == RcptStatus::Pending)
                    .map(|(r, rc)| (rc.defer_log.map(|d| d.seq), r))
                    .collect();
                // Defer-log records first, in the order they were appended.
                pending.sort_by_key(|&(seq, r)| (seq.is_none(), seq, r));
                let recipients = pending
                    .into_iter()
                    .map(|(_, r)| {
                        let out = self.outcome(msg, r, None, FinalStatus::Queued);
                        let address = out.recipient.to_string();
                        let why = msg.recipients[r].defer_log.map(|d| match d.why {
                            message::DeferWhy::Reply { cause, host } => {
                                crate::output::maillog::reason(
                                    cause,
                                    &address,
                                    self.host_text(host),
                                    out.destination,
                                )
                            }
                            message::DeferWhy::Saved { text } => self.saved_text(text).to_string(),
                        });
                        (address, why)
                    })
                    .collect();
                crate::output::mailq::QueueFile {
                    id: msg.id,
                    queue,
                    size: msg.size,
                    arrival: msg.arrival,
                    sender: match msg.origin {
                        Origin::Stream(s) => {
                            self.senders.get(s as usize).cloned().unwrap_or_default()
                        }
                        Origin::Notice(_) => String::new(),
                    },
                    forced_expire: msg.force_expired,
                    recipients,
                }
            })
            .collect();
        files.sort_by_key(|f| (crate::output::mailq::queue_rank(f.queue), f.id));
        files
    }

    /// qshape's counts at `now` for the queues `queues` (by name), without building
    /// [`crate::output::mailq::QueueFile`]s: recipient domain × age bucket.
    pub fn qshape_rows(&self, now: Time, queues: &[&str]) -> Vec<(String, u64, [u64; 10])> {
        let mut by_dest: Vec<[u64; 10]> = vec![[0; 10]; self.domains.len()];
        for msg in self.messages.iter_live() {
            let name = match msg.location {
                Location::Maildrop => "maildrop",
                Location::Incoming => "incoming",
                Location::Active => "active",
                Location::Deferred => "deferred",
                Location::Hold | Location::Gone => "hold",
            };
            if !queues.contains(&name) {
                continue;
            }
            let b = crate::output::qshape::bucket(now, msg.arrival);
            for r in msg
                .recipients
                .iter()
                .filter(|r| r.status == RcptStatus::Pending)
            {
                if let Some(row) = by_dest.get_mut(r.dest as usize) {
                    row[b] += 1;
                }
            }
        }
        let mut total = [0u64; 10];
        let mut rows: Vec<(String, u64, [u64; 10])> = Vec::new();
        for (d, counts) in by_dest.into_iter().enumerate() {
            let sum: u64 = counts.iter().sum();
            if sum == 0 {
                continue;
            }
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
            rows.push((self.domains[d].clone(), sum, counts));
        }
        rows.push(("TOTAL".into(), total.iter().sum(), total));
        crate::output::qshape::sort_rows(&mut rows);
        rows
    }

    /// Reports every recipient still queued at the end of a run, in message order.
    pub fn report_queued(&self, obs: &mut dyn Observer) -> u64 {
        let mut live: Vec<&Message> = self.messages.iter_live().collect();
        live.sort_by_key(|m| m.id);
        let mut n = 0;
        for msg in live {
            for (r, rc) in msg.recipients.iter().enumerate() {
                if rc.status == RcptStatus::Pending {
                    n += 1;
                    obs.recipient_outcome(&self.outcome(msg, r, None, FinalStatus::Queued));
                }
            }
        }
        n
    }

    /// Checks that every recipient is accounted for: injected = sent + bounced + expired +
    /// deleted + still queued, with "still queued" counted from the queue files themselves,
    /// and that directory counts match the files.
    pub fn check_conservation(&self) -> Result<(), String> {
        let queued: u64 = self
            .messages
            .iter_live()
            .map(|m| m.pending_recipients() as u64)
            .sum();
        let t = &self.totals;
        let accounted = t.sent + t.bounced + t.expired + t.deleted + queued;
        if accounted != t.recipients {
            return Err(format!(
                "conservation violated: {} recipients injected but sent {} + bounced {} + expired {} + deleted {} + queued {} = {}",
                t.recipients, t.sent, t.bounced, t.expired, t.deleted, queued, accounted
            ));
        }
        // The door: what was offered is in the queue, refused for good, given up by its
        // sender, or still with the senders (retrying, in a session, in the backlog).
        let waiting = self.inbound_pending() as u64;
        let door = t.messages + t.rejected_messages + t.not_accepted + waiting;
        if door != t.offered {
            return Err(format!(
                "conservation violated at the door: {} messages offered but accepted {} + rejected {} + not accepted {} + waiting at the senders {} = {}",
                t.offered, t.messages, t.rejected_messages, t.not_accepted, waiting, door
            ));
        }
        let mut by_dir = QueueCounts::default();
        for m in self.messages.iter_live() {
            if let Some(c) = by_dir.slot(m.location) {
                *c += 1;
            }
        }
        if by_dir != self.counts {
            return Err(format!(
                "queue counts out of step with queue files: counted {:?}, tracked {:?}",
                by_dir, self.counts
            ));
        }
        let mut by_dest = vec![0u64; self.deferred_by_destination.len()];
        for m in self
            .messages
            .iter_live()
            .filter(|m| m.location == Location::Deferred)
        {
            let mut last = u32::MAX;
            for r in m
                .recipients
                .iter()
                .filter(|r| r.status == RcptStatus::Pending)
            {
                if r.dest != last {
                    last = r.dest;
                    if let Some(c) = by_dest.get_mut(r.dest as usize) {
                        *c += 1;
                    }
                }
            }
        }
        if by_dest != self.deferred_by_destination {
            return Err(format!(
                "deferred files per destination out of step: counted {by_dest:?}, tracked {:?}",
                self.deferred_by_destination
            ));
        }
        if self.messages.live() as u64 != self.counts.total() {
            return Err("message arena and queue counts disagree".into());
        }
        Ok(())
    }

    /// Handles one scheduled event (arrivals are handled by the caller via [`Mta::submit`]).
    pub fn handle(
        &mut self,
        now: Time,
        event: Event,
        events: &mut EventQueue<Event>,
        world: &mut World,
        obs: &mut dyn Observer,
    ) {
        self.qmgr.now = now;
        match event {
            Event::Arrival { .. } => {}
            Event::Resubmit { slot } => self.resubmit(slot, now, events),
            Event::SmtpdDone { session } => self.smtpd_done(session, now, events),
            Event::QmgrTimer => {
                if self.qmgr.event_loop.has_due(now) {
                    let at = self.qmgr.event_loop.select_timeout(now);
                    if at == now {
                        self.run_due_timers(now, events);
                    } else {
                        events.schedule(at, Event::QmgrSelect);
                    }
                }
            }
            Event::QmgrSelect => {
                if self.qmgr.event_loop.has_due(now) {
                    self.run_due_timers(now, events);
                }
            }
            Event::QmgrWakeup { generation } => {
                self.run_due_timers(now, events);
                self.qmgr_wakeup(generation)
            }
            Event::PickupWakeup => self.pickup_wakeup(now, events),
            Event::Admin { index } => {
                if self.admin_wakes_qmgr(index as usize) {
                    self.run_due_timers(now, events);
                }
                self.admin(index as usize, now, events, world, obs)
            }
            Event::PickupResume => self.pickup_resume(now, events),
            Event::SmtpStep { entry } => self.smtp_step(entry, now, events, world),
            Event::DeliveryDone { entry } => {
                // The agent's status is an I/O event: due timers run first (events.c).
                self.run_due_timers(now, events);
                self.delivery_done(entry, now, events, obs)
            }
            Event::AgentReady {
                transport,
                generation,
            } => {
                self.run_due_timers(now, events);
                if generation == self.qmgr_generation {
                    self.agent_ready(usize::from(transport), now, events, world, obs);
                }
            }
        }
        self.run_qmgr(now, events, obs);
    }

    /// One wakeup of qmgr's event loop at `now`: every timer that is due runs, in order,
    /// before the I/O event that woke qmgr and before `qmgr_loop` (events.c).
    pub(crate) fn run_due_timers(&mut self, now: Time, events: &mut EventQueue<Event>) {
        self.qmgr.triggered = false;
        while let Some(timer) = self.qmgr.event_loop.pop_due(now) {
            match timer {
                Timer::DeferredScan { generation } => {
                    if generation != self.qmgr_generation {
                        continue;
                    }
                    self.qmgr.deferred_scan_tick(self.next_move_stamp);
                    self.note(now, 0, 0, notes::NoteKind::DeferredScan);
                    self.request_timer(
                        Timer::DeferredScan { generation },
                        self.cfg.queue_run_delay,
                        now,
                        events,
                    );
                }
                Timer::QueueRevive { queue, generation } => {
                    self.queue_revive_timer(queue, generation)
                }
                Timer::TransportRevive {
                    transport,
                    generation,
                } => self.transport_revive_timer(usize::from(transport), generation),
                Timer::QueueResume { queue, generation } => {
                    self.queue_resume_timer(queue, generation)
                }
            }
        }
        self.qmgr.triggered = false;
        self.qmgr.event_loop.woke(now);
    }

    /// The deferred-scan clock of the qmgr that was running when the run began: its next
    /// tick is at `first_tick` (≥ 0), on the whole-second grid of its start, and qmgr last
    /// woke at the tick before (so an idle qmgr keeps its phase, §3.2).
    pub fn start_scan_clock(&mut self, first_tick: Time, events: &mut EventQueue<Event>) {
        let period = self.cfg.queue_run_delay * crate::engine::SECOND;
        self.qmgr.event_loop = qmgr::event_loop::EventLoop::new(first_tick - period);
        let due = self.qmgr.event_loop.request_at(
            Timer::DeferredScan {
                generation: self.qmgr_generation,
            },
            whole_seconds(first_tick),
        );
        events.schedule(due, Event::QmgrTimer);
    }

    /// `event_request_timer(timer, delay_s)`.
    pub(crate) fn request_timer(
        &mut self,
        timer: Timer,
        delay_s: i64,
        now: Time,
        events: &mut EventQueue<Event>,
    ) -> Time {
        let due = self.qmgr.event_loop.request(timer, delay_s, now);
        events.schedule(due, Event::QmgrTimer);
        due
    }

    /// Destination `d` may have become dead or alive for qmgr (its queue or its
    /// transport): tells the observer when that changed (delay attribution, `explain`).
    /// Per-recipient queues are not followed.
    pub(crate) fn sync_dead(&mut self, d: u32, why: notes::DeadNote) {
        if !self.record_notes {
            return;
        }
        let (Some(&was), Some(&t)) = (
            self.dest_dead.get(d as usize),
            self.qmgr.dest_transport.get(d as usize),
        ) else {
            return;
        };
        let q = &self.qmgr.queues[d as usize];
        let dead = self.qmgr.transports[t as usize].dead || (q.exists && q.win.is_dead());
        if dead != was {
            self.dest_dead[d as usize] = dead;
            let now = self.qmgr.now;
            self.note(
                now,
                0,
                0,
                notes::NoteKind::DestinationState { dest: d, dead, why },
            );
        }
    }

    /// [`Mta::sync_dead`] for every destination of transport `t`.
    pub(crate) fn sync_dead_transport(&mut self, t: usize, why: notes::DeadNote) {
        for d in 0..self.qmgr.dest_transport.len() {
            if self.qmgr.dest_transport[d] as usize == t {
                self.sync_dead(d as u32, why);
            }
        }
    }
}

/// qmgr's index of the deferred directory (named when it was a heap; the name stays so that
/// `qmgr/` reads as before).
pub(crate) type DeferredHeap = deferred_index::DeferredIndex;

/// What smtpd hands cleanup with a message: whether it added a FILTER record, the queue
/// ID it got when it opened the file, and the arrival time it stamped at MAIL FROM
/// (smtpd.c: `state->arrival_time`, after the queue-space check).
#[derive(Clone, Copy, Debug)]
pub(super) struct SmtpdFile {
    pub filter: bool,
    pub id: u64,
    pub arrival: Time,
}
