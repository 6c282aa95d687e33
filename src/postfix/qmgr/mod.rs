//! qmgr: the queue manager. Its state lives in [`Qmgr`]; its behaviour is split the way
//! Postfix splits `src/qmgr/`:
//! - `scan`: the incoming and deferred directory scans and the main loop (`qmgr.c`,
//!   `qmgr_scan.c`; §3.1–3.2);
//! - `active`: entering and leaving the active queue, backoff and expiry (`qmgr_active.c`,
//!   `qmgr_message.c`; §4);
//! - `deliver`: agent allocation, entry selection, delivery completion and the
//!   dead/suspended queue timers (`qmgr_transport.c`, `qmgr_deliver.c`, `qmgr_entry.c`,
//!   `qmgr_queue.c`; §5.1–5.5);
//! - `feedback`: concurrency window arithmetic (`qmgr_queue.c`; §5.2);
//! - `event_loop`: qmgr's timers, due at whole seconds and run before each `qmgr_loop`
//!   (`util/events.c`).
//!
//! Scheduler scope (§5.9): per-transport agent pools of maxproc, per-destination windows with
//! the exact feedback/dead/revival rules, the active-queue cap, oldest-activation-first
//! selection that skips saturated destinations, and the on-demand connection-cache flags
//! set at selection (§5.8). Not modelled: nqmgr preemption of large multi-recipient jobs
//! (§5.6; it never triggers for messages with fewer than 15 entries per transport),
//! recipient-slot pools.

mod active;
mod deliver;
mod due_order;
pub mod event_loop;
pub mod feedback;
mod scan;

use super::DeferredHeap;
use crate::scenario::{Scenario, TransportConfig};
use crate::world::AgentId;
use feedback::{FeedbackRules, Window};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

/// Delivery agents' process ids start here (clear of the fixed ones in mail.log).
const FIRST_AGENT_PID: u32 = 10_000;

/// Marks "not in the ready heap".
const NOT_QUEUED: u64 = u64::MAX;

/// One in-core destination queue (transport + nexthop, or + recipient when the transport's
/// recipient limit is 1).
#[derive(Clone, Debug)]
pub(crate) struct Queue {
    pub transport: u16,
    pub dest: u32,
    /// A ready queue is deleted when it has no entries; its learned state is then forgotten.
    pub exists: bool,
    pub win: Window,
    pub busy: u32,
    pub todo: VecDeque<u32>,
    /// Invalidates revive/resume timers that were cancelled.
    pub timer_generation: u32,
    /// The head-entry order under which the queue sits in its transport's ready heap.
    pub ready_key: u64,
    /// `last_done` in whole seconds (back-to-back detection).
    pub last_done: i64,
    /// On-demand connection caching (`dflags`, §5.8): park new sessions, reuse parked ones.
    pub cache: crate::world::CacheFlags,
    /// For a per-recipient queue, its key in `per_recipient_queues`.
    pub recipient_key: Option<u64>,
    /// How long the queue has had no room for another delivery (window full, dead or
    /// suspended) in all: closed periods, and the start of the current one.
    pub blocked_total: crate::engine::time::Time,
    /// When this queue may warn about clogging the active queue again (whole seconds;
    /// `qmgr_entry_create`).
    pub clog_time_to_warn: i64,
    pub blocked_since: Option<crate::engine::time::Time>,
    /// Why the queue was declared dead: the failure's cause (its DSN) and the text qmgr
    /// saved from it, `delivery temporarily suspended: <reason>` (`qmgr_deliver_update`).
    pub dead_reason: Option<(crate::observe::Cause, u32)>,
}

/// One master.cf delivery service as qmgr sees it.
#[derive(Debug)]
pub(crate) struct Transport {
    pub maxproc: u32,
    pub busy_agents: u32,
    /// Agent allocations under way (`pending`, at most 2).
    pub pending: u32,
    pub rules: FeedbackRules,
    pub recipient_limit: u32,
    pub rate_delay: i64,
    /// Ready queues with work, keyed by the order of their oldest todo entry.
    pub ready: BinaryHeap<Reverse<(u64, u32)>>,
    /// `QMGR_TRANSPORT_STAT_DEAD`: its agents could not be started (§5.4).
    pub dead: bool,
    /// Invalidates a cancelled revival timer.
    pub timer_generation: u32,
}

/// One delivery request: recipients `lo..hi` of a message (only pending ones are sent),
/// for one queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub msg: u32,
    /// The message slot's generation when the request was made: a file removed (and its
    /// slot reused) under an agent of an exited qmgr is recognised by it.
    pub generation: u32,
    pub queue: u32,
    /// The queue's transport and destination, kept here because an exited qmgr's queues
    /// are gone while its agents finish.
    pub transport: u16,
    pub dest: u32,
    pub lo: u32,
    pub hi: u32,
    /// Scheduling order (activation order, then destination order within a message).
    pub order: u64,
    pub site_failure: bool,
    /// The agent working on it while its SMTP client waits between steps.
    pub agent: Option<AgentId>,
    /// Its qmgr has exited (reload, stop): the agent finishes and updates the file, and
    /// nobody takes its reply.
    pub orphan: bool,
    /// Its agent was killed (`postfix stop`): the request leaves no trace, and its pending
    /// event only frees it.
    pub killed: bool,
    /// The filter's answer waited for cleanup's in_flow_delay sleep on the re-injected
    /// file (its smtpd, the filter and this agent all wait for it).
    pub in_flow_slept: bool,
    /// When the filter's smtpd got the re-injection's MAIL FROM (before that sleep): the
    /// arrival of the new file.
    pub reinjected_at: crate::engine::time::Time,
    /// When the agent took it, the server that answered, and when its handshake completed
    /// (for `relay=` and `delays=`).
    pub handoff: crate::engine::time::Time,
    pub relay: Option<u32>,
    pub setup_done: Option<crate::engine::time::Time>,
    pub tried: Option<u32>,
    /// `conn_use=` of the session that delivered it (0: a new connection).
    pub conn_use: u32,
    /// The process id of the agent working on it (0 until an agent takes it): every log
    /// line of the request carries it, as one smtp process logs them all.
    pub pid: u32,
    /// Its queue's blocked clock ([`Qmgr::blocked_clock`]) when it was queued, and the part
    /// of its wait for an agent that the queue's window (not the agents) caused.
    pub blocked_at_queueing: crate::engine::time::Time,
    pub window_wait: crate::engine::time::Time,
    /// The agent's time in DNS lookups.
    pub dns: crate::engine::time::Time,
}

/// Which directory scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    Incoming,
    Deferred,
}

/// A directory scan's state (`qmgr_scan.c`): running, and whether a restart was requested
/// while it ran.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scan {
    pub running: bool,
    pub restart: bool,
    /// Files that entered the directory at or after this stamp are not seen by this pass.
    pub start_stamp: u64,
    /// `QMGR_SCAN_ALL` on this pass: ignore file time stamps (`postqueue -f`).
    pub all: bool,
    /// `QMGR_SCAN_ALL` for the queued restart.
    pub restart_all: bool,
}

pub(crate) struct Qmgr {
    pub active_limit: usize,
    pub incoming: VecDeque<(u32, u64)>,
    /// Incoming files this pass skipped for a future time stamp; the next pass sees them.
    pub incoming_later: Vec<(u32, u64)>,
    /// deferred/ by time stamp: the files not yet found due.
    pub deferred: DeferredHeap,
    /// Due files in directory order (readdir key, move stamp, slot), for the running pass.
    pub due: due_order::DueOrder,
    /// Files found due by the latest look at deferred/, on their way into `due`.
    pub due_batch: Vec<due_order::DueItem>,
    /// The running deferred pass's position in directory order (the last key it read).
    pub deferred_cursor: u64,
    /// Files that came due behind the cursor (mtime, stamp, slot): the next pass sees them.
    pub behind_cursor: Vec<(i64, u64, u32)>,
    /// Due files skipped because they entered after the running scan started.
    pub held_back: Vec<(i64, u64, u32)>,
    pub incoming_scan: Scan,
    pub deferred_scan: Scan,
    pub first: Dir,
    pub queues: Vec<Queue>,
    pub free_queues: Vec<u32>,
    pub per_recipient_queues: HashMap<(u32, u64), u32>,
    pub transports: Vec<Transport>,
    /// Destination index → transport index.
    pub dest_transport: Vec<u16>,
    pub entries: Vec<Entry>,
    pub free_entries: Vec<u32>,
    pub next_entry_order: u64,
    pub next_activation: u64,
    /// Process ids of idle delivery agents, and the next new one.
    pub free_pids: Vec<u32>,
    pub next_pid: u32,
    /// qmgr's timers and the instant it last woke (`events.c`).
    pub event_loop: event_loop::EventLoop,
    /// An I/O trigger (cleanup's `W`, master's wakeup, postqueue) woke qmgr since its
    /// timers last ran: they run before the next `qmgr_loop`.
    pub triggered: bool,
    /// The instant qmgr is working at (for the queues' blocked clocks).
    pub now: crate::engine::time::Time,
}

/// Where queue file `id` lies in deferred/'s readdir order: a fixed, arbitrary place for the
/// file's whole life (the hash of its name, as ext4's indexed directories order entries),
/// the same in every scan and every run, whatever the seed: the order is the file system's,
/// not a draw.
pub fn readdir_key(id: u64) -> u64 {
    crate::engine::rng::splitmix64(id ^ 0x7265_6164_6469_7200)
}

fn transports_from(configs: &[TransportConfig]) -> Vec<Transport> {
    configs
        .iter()
        .map(|t| Transport {
            maxproc: t.maxproc,
            busy_agents: 0,
            pending: 0,
            rules: FeedbackRules {
                limit: t.dest_concurrency_limit,
                initial: t.initial_concurrency,
                positive: t.positive_feedback,
                negative: t.negative_feedback,
                failed_cohort_limit: t.failed_cohort_limit,
            },
            recipient_limit: t.recipient_limit,
            rate_delay: t.rate_delay,
            ready: BinaryHeap::new(),
            dead: false,
            timer_generation: 0,
        })
        .collect()
}

impl Qmgr {
    pub fn new(scenario: &Scenario) -> Self {
        let transports = transports_from(&scenario.transports);
        let dest_transport: Vec<u16> = scenario
            .destinations
            .iter()
            .map(|d| u16::try_from(d.transport).unwrap_or(0))
            .collect();
        let mut qmgr = Qmgr {
            active_limit: scenario.postfix.qmgr_message_active_limit,
            incoming: VecDeque::new(),
            incoming_later: Vec::new(),
            deferred: DeferredHeap::default(),
            due: due_order::DueOrder::default(),
            due_batch: Vec::new(),
            deferred_cursor: 0,
            behind_cursor: Vec::new(),
            held_back: Vec::new(),
            incoming_scan: Scan::default(),
            deferred_scan: Scan::default(),
            first: Dir::Incoming,
            queues: Vec::new(),
            free_queues: Vec::new(),
            per_recipient_queues: HashMap::new(),
            transports,
            dest_transport,
            entries: Vec::new(),
            free_entries: Vec::new(),
            next_entry_order: 0,
            next_activation: 0,
            free_pids: Vec::new(),
            next_pid: FIRST_AGENT_PID,
            event_loop: event_loop::EventLoop::new(0),
            triggered: false,
            now: 0,
        };
        qmgr.fresh_queues();
        qmgr
    }

    /// One preallocated queue per destination; per-recipient queues are added on demand.
    fn fresh_queues(&mut self) {
        let transports = &self.transports;
        self.queues = self
            .dest_transport
            .iter()
            .enumerate()
            .map(|(i, &t)| Queue::new(t, i as u32, &transports[t as usize].rules))
            .collect();
        self.free_queues.clear();
        self.per_recipient_queues.clear();
    }

    /// A new qmgr process (`postfix reload`, `postfix start`): everything in memory is
    /// forgotten — windows, dead and suspended queues, pending requests — and both scans
    /// start (§2.1, §9.18). The directories, and the agents still finishing requests of the
    /// old qmgr (they hold processes), survive.
    pub fn restart(&mut self, active_limit: usize, transports: &[TransportConfig], stamp: u64) {
        let busy: Vec<u32> = self.transports.iter().map(|t| t.busy_agents).collect();
        self.transports = transports_from(transports);
        for (t, b) in self.transports.iter_mut().zip(busy) {
            t.busy_agents = b;
        }
        self.active_limit = active_limit;
        self.fresh_queues();
        self.incoming_scan = Scan::default();
        self.deferred_scan = Scan::default();
        // A new process reads deferred/ from its start again.
        self.deferred_cursor = 0;
        for item in self.behind_cursor.drain(..) {
            self.deferred.push(Reverse(item));
        }
        self.request_scan(Dir::Incoming, u64::MAX, false);
        self.request_scan(Dir::Deferred, stamp, false);
        self.first = Dir::Incoming;
    }

    /// cleanup's `W` trigger: a new file in incoming starts (or re-requests) the incoming scan.
    pub fn incoming_push(&mut self, m: u32, stamp: u64) {
        self.incoming.push_back((m, stamp));
        // New incoming files are seen by a running scan (and cleanup's trigger would
        // re-run it anyway), so the incoming scan has no stamp cut-off.
        self.request_scan(Dir::Incoming, u64::MAX, false);
    }

    /// The deferred-scan timer fired; `stamp_now` is the next directory-move stamp, so the
    /// scan sees exactly the files that are in deferred/ now.
    pub fn deferred_scan_tick(&mut self, stamp_now: u64) {
        self.request_scan(Dir::Deferred, stamp_now, false);
    }

    /// Starts a scan, or queues one restart if it is already running (`qmgr_scan_request`).
    /// `all` (ignore time stamps) also applies to a pass in progress.
    pub fn request_scan(&mut self, dir: Dir, stamp: u64, all: bool) {
        self.triggered = true;
        let scan = match dir {
            Dir::Incoming => &mut self.incoming_scan,
            Dir::Deferred => &mut self.deferred_scan,
        };
        if scan.running {
            scan.restart = true;
            scan.restart_all |= all;
            scan.all |= all;
        } else {
            scan.running = true;
            scan.start_stamp = stamp;
            scan.all = all;
        }
    }

    pub fn transport_of(&self, dest: u32) -> u16 {
        self.dest_transport[dest as usize]
    }
}

impl Qmgr {
    /// Queue `q`'s window or busy count may have changed: keeps its blocked clock, the
    /// time its queued requests could not get an agent because of the window (full,
    /// dead or suspended) rather than for want of a free agent (delay attribution, §9.4–5).
    pub(crate) fn touch_window(&mut self, q: u32) {
        let now = self.now;
        let queue = &mut self.queues[q as usize];
        let blocked = !queue.has_room();
        match (queue.blocked_since, blocked) {
            (None, true) => queue.blocked_since = Some(now),
            (Some(since), false) => {
                queue.blocked_total += now - since;
                queue.blocked_since = None;
            }
            _ => {}
        }
    }

    /// Queue `q`'s blocked time up to now.
    pub(crate) fn blocked_clock(&self, q: u32) -> crate::engine::time::Time {
        let queue = &self.queues[q as usize];
        queue.blocked_total + queue.blocked_since.map_or(0, |s| self.now - s)
    }
}

impl Queue {
    /// Room for another delivery in the window.
    fn has_room(&self) -> bool {
        self.win.is_ready() && self.win.window > self.busy as i32
    }

    pub(super) fn new(transport: u16, dest: u32, rules: &FeedbackRules) -> Self {
        Queue {
            transport,
            dest,
            exists: false,
            win: Window::fresh(rules),
            busy: 0,
            todo: VecDeque::new(),
            timer_generation: 0,
            ready_key: NOT_QUEUED,
            last_done: i64::MIN,
            cache: crate::world::CacheFlags::default(),
            recipient_key: None,
            dead_reason: None,
            blocked_total: 0,
            blocked_since: None,
            clog_time_to_warn: 0,
        }
    }

    /// `qmgr_entry_select`'s on-demand caching rule, after an entry was selected (and
    /// counted busy) at qmgr time `now_s`: caching turns on at a back-to-back delivery (one
    /// to this queue completed within this or the previous second), not merely for
    /// concurrent ones; once on, new sessions stop being parked when neither another
    /// delivery is under way nor one just completed, while parked ones are still reused.
    pub(super) fn update_cache_flags(&mut self, now_s: i64) {
        let back_to_back = self.last_done.saturating_add(1) >= now_s;
        if !self.cache.store {
            if back_to_back {
                self.cache = crate::world::CacheFlags {
                    load: true,
                    store: true,
                };
            }
        } else if !(self.busy > 1 || back_to_back) {
            self.cache.store = false;
        }
    }

    /// Can an agent take an entry from this queue now?
    pub(super) fn selectable(&self) -> bool {
        self.exists
            && self.win.is_ready()
            && self.win.window > self.busy as i32
            && !self.todo.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::params::Feedback;
    use crate::world::CacheFlags;

    const BOTH: CacheFlags = CacheFlags {
        load: true,
        store: true,
    };
    const LOAD_ONLY: CacheFlags = CacheFlags {
        load: true,
        store: false,
    };

    fn queue() -> Queue {
        let rules = FeedbackRules {
            limit: 20,
            initial: 5,
            positive: Feedback::ONE,
            negative: Feedback::ONE,
            failed_cohort_limit: 1,
        };
        Queue::new(0, 0, &rules)
    }

    /// Selects an entry at second `now_s` with `busy` deliveries under way, this one included.
    fn select(q: &mut Queue, now_s: i64, busy: u32) -> CacheFlags {
        q.busy = busy;
        q.update_cache_flags(now_s);
        q.cache
    }

    #[test]
    fn caching_starts_at_a_back_to_back_delivery_and_stores_while_the_surge_lasts() {
        let mut q = queue();
        // A burst of 5 at second 10 with nothing done yet: concurrency alone is not enough.
        for busy in 1..=5 {
            assert_eq!(select(&mut q, 10, busy), CacheFlags::default());
        }
        // One completed at 11; the next selection at 12 is back to back (11 + 1 >= 12).
        q.last_done = 11;
        assert_eq!(select(&mut q, 12, 5), BOTH);
        // At 14 nothing completed since 11, but other deliveries are under way: kept.
        assert_eq!(select(&mut q, 14, 2), BOTH);
        // At 14, alone and not back to back: stop storing, keep loading.
        assert_eq!(select(&mut q, 14, 1), LOAD_ONLY);
        // Store comes back only with a new back-to-back delivery.
        assert_eq!(select(&mut q, 15, 3), LOAD_ONLY);
        q.last_done = 15;
        assert_eq!(select(&mut q, 16, 1), BOTH);
        // Two seconds after the last completion is no longer back to back.
        assert_eq!(select(&mut q, 18, 1), LOAD_ONLY);
    }
}
