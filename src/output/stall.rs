//! "Why is it stuck?": every recipient's time in the system split into causes (§9), for
//! `summary.json` (`stall_s`), `stall.csv` (recipients waiting for each cause, every
//! sample) and the closing sentence of `mailsim run`.
//!
//! A recipient's time telescopes over its delivery attempts: before its first activation it
//! waits in incoming (the active queue is full, or the content filter had it); in each
//! attempt, `delays=` b is waiting for an agent or window, c is connection set-up (or SMTP
//! timeouts when the attempt failed on one), d the transfer; between attempts the file
//! waits out its backoff (or, when the destination or transport was dead, that), then for
//! the deferred-queue scan, unless it is on hold. The parts of every delivered recipient
//! add up exactly to its delay; the totals count every recipient's time up to its last
//! attempt, delivered or not.

use crate::engine::time::Time;
use crate::observe::{Agent, Cause, Event, Happening, Observer, RecipientOutcome, Status};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The causes, in report order.
pub const CAUSES: [&str; 12] = [
    "incoming",
    "content_filter",
    "waiting_for_agent",
    "connection_setup",
    "smtp_timeouts",
    "transfer",
    "other_recipients",
    "backoff",
    "dead_destination",
    "scan_wait",
    "hold",
    "receiving",
];

const INCOMING: usize = 0;
const FILTER: usize = 1;
const AGENT: usize = 2;
const SETUP: usize = 3;
const TIMEOUTS: usize = 4;
const TRANSFER: usize = 5;
const OTHERS: usize = 6;
const BACKOFF: usize = 7;
const DEAD: usize = 8;
const SCAN: usize = 9;
const HOLD: usize = 10;
/// The smtpd session, from MAIL FROM (the arrival time) until cleanup has the file: the
/// client's transfer and cleanup's in_flow_delay sleep.
const RECEIVING: usize = 11;

/// What a queue file is doing now (for the time series).
#[derive(Clone, Copy, Debug, PartialEq)]
enum FileState {
    Incoming,
    Active,
    Deferred { mtime: i64, dead: bool },
    Hold { mtime: i64, dead: bool },
}

#[derive(Clone, Copy, Debug)]
struct File {
    state: FileState,
    nrcpt: u64,
    /// When it last moved to deferred (for the split of the gap before its next attempt).
    deferred_at: Time,
    /// The last round deferred some recipient through the retry service.
    dead_round: bool,
    hold_since: Option<Time>,
    /// Time on hold since it was last deferred.
    held: Time,
    generation: u32,
    /// Times it was deferred, and the time stamp of the last deferral (seconds).
    deferrals: u32,
    last_mtime: i64,
    /// (arrival, when cleanup wrote it), for the first attempt of its recipients.
    received: Option<(Time, Time)>,
}

/// Where a recipient's accounted time ends, and why it was last waiting.
#[derive(Clone, Copy, Debug)]
struct Rcpt {
    accounted_to: Time,
    /// Its last status was a deferral through the retry service.
    dead: bool,
    /// Its file's deferral count at that status: a higher count now means the file went
    /// through deferred/ since.
    rounds_seen: u32,
}

#[derive(Default)]
pub struct StallAttribution {
    /// Time (µs) per cause over every recipient, up to its last attempt.
    pub totals: [i64; 12],
    files: HashMap<u64, File>,
    rcpts: HashMap<(u64, u32), Rcpt>,
    /// Waiting recipients per cause now (incoming, active, backoff, dead, scan, hold).
    now_counts: [i64; 12],
    /// Deferred files whose time stamp comes due: (mtime µs, id, generation).
    due: BinaryHeap<Reverse<(i64, u64, u32)>>,
    /// Parts of recipients not delivered yet.
    pending: HashMap<(u64, u32), [i64; 12]>,
    pub csv: String,
    /// With `keep_each`: every delivered recipient's parts, by (message id, index).
    pub keep_each: bool,
    pub each: Vec<((u64, u32), [i64; 12])>,
}

fn secs(t: i64) -> Time {
    t * crate::engine::time::SECOND
}

impl StallAttribution {
    pub fn new() -> Self {
        let mut s = StallAttribution::default();
        s.csv
            .push_str("time_s,incoming,active,backoff,dead_destination,scan_wait,hold\n");
        s
    }

    fn count(&mut self, state: FileState, n: u64, sign: i64, now: Time) {
        let slot = match state {
            FileState::Incoming => INCOMING,
            FileState::Active => AGENT,
            FileState::Deferred { mtime, dead } => {
                if secs(mtime) <= now {
                    SCAN
                } else if dead {
                    DEAD
                } else {
                    BACKOFF
                }
            }
            FileState::Hold { .. } => HOLD,
        };
        self.now_counts[slot] += sign * n as i64;
    }

    fn set_state(&mut self, id: u64, state: FileState, nrcpt: Option<u64>, t: Time) {
        let (old, n) = match self.files.get(&id) {
            Some(f) => (Some(f.state), nrcpt.unwrap_or(f.nrcpt)),
            None => (None, nrcpt.unwrap_or(0)),
        };
        if let (Some(old), Some(f)) = (old, self.files.get(&id)) {
            let old_n = f.nrcpt;
            self.count(old, old_n, -1, t);
        }
        self.count(state, n, 1, t);
        let f = self.files.entry(id).or_insert(File {
            state,
            nrcpt: n,
            deferred_at: t,
            dead_round: false,
            hold_since: None,
            held: 0,
            generation: 0,
            deferrals: 0,
            last_mtime: 0,
            received: None,
        });
        f.state = state;
        f.nrcpt = n;
        f.generation += 1;
        if let FileState::Deferred { mtime, .. } = state {
            let g = f.generation;
            self.due.push(Reverse((secs(mtime), id, g)));
        }
    }

    /// Deferred files whose time has come move from backoff to waiting for the scan.
    fn advance(&mut self, t: Time) {
        while let Some(&Reverse((due, id, g))) = self.due.peek() {
            if due > t {
                break;
            }
            self.due.pop();
            if let Some(f) = self.files.get(&id)
                && f.generation == g
                && let FileState::Deferred { dead, .. } = f.state
            {
                let from = if dead { DEAD } else { BACKOFF };
                self.now_counts[from] -= f.nrcpt as i64;
                self.now_counts[SCAN] += f.nrcpt as i64;
            }
        }
    }

    fn remove_file(&mut self, id: u64, t: Time) {
        if let Some(f) = self.files.remove(&id) {
            self.count(f.state, f.nrcpt, -1, t);
        }
    }

    /// The gap before this attempt, from where the recipient's time was accounted to, split
    /// by what its file was doing.
    fn account_gap(&mut self, file: Option<File>, rcpt: Rcpt, active: Time, parts: &mut [i64; 12]) {
        let from = rcpt.accounted_to;
        if active <= from {
            return;
        }
        let Some(f) = file.filter(|f| f.deferrals > rcpt.rounds_seen) else {
            // Not deferred since: waiting in incoming (first activation, or after a
            // content-filter pass or a requeue).
            parts[INCOMING] += active - from;
            return;
        };
        // [from, deferred_at): the rest of the message's delivery round.
        parts[OTHERS] += f.deferred_at - from;
        let gap = active - f.deferred_at;
        let held = f.held.min(gap);
        parts[HOLD] += held;
        let mtime = secs(f.last_mtime);
        let waiting = (mtime - f.deferred_at).clamp(0, gap - held);
        parts[if rcpt.dead { DEAD } else { BACKOFF }] += waiting;
        parts[SCAN] += gap - held - waiting;
    }

    /// The totals by cause name, in seconds (`summary.json`'s `stall_s`).
    pub fn totals_by_name(&self) -> std::collections::BTreeMap<String, f64> {
        CAUSES
            .iter()
            .zip(self.totals)
            .map(|(c, t)| (c.to_string(), crate::output::summary::seconds(t)))
            .collect()
    }
}

/// The human sentence of what dominated, from `stall_s`, for the end of `mailsim run`.
pub fn headline(stall_s: &std::collections::BTreeMap<String, f64>) -> Option<String> {
    {
        let total: f64 = stall_s.values().sum();
        if total <= 0.0 {
            return None;
        }
        let (name, &top) = stall_s
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0)))?;
        let i = CAUSES.iter().position(|c| c == name)?;
        let share = top * 100.0 / total;
        let advice = match CAUSES[i] {
            "backoff" => {
                "messages waited out their retry backoff after failures; `postqueue -f` once the remote is back makes them eligible at once (see scenarios/outage-flush.toml)"
            }
            "dead_destination" => {
                "mail for a destination declared dead was deferred without being tried; a higher <transport>_destination_concurrency_failed_cohort_limit or `postqueue -f` after recovery shortens that (scenarios/remote-outage.toml)"
            }
            "scan_wait" => "due messages waited for the next deferred-queue scan (queue_run_delay)",
            "incoming" => {
                "mail waited in incoming because the active queue was full (qmgr_message_active_limit, a slow filter or destination: scenarios/slow-content-filter.toml)"
            }
            "content_filter" => {
                "the content filter was the bottleneck (its maxproc and latency: scenarios/slow-content-filter.toml)"
            }
            "waiting_for_agent" => {
                "deliveries waited for a free smtp process or destination window (maxproc, destination concurrency)"
            }
            "smtp_timeouts" => {
                "smtp processes sat in connect or greeting timeouts (smtp_connect_timeout, smtp_helo_timeout: scenarios/blackhole-starvation.toml)"
            }
            "hold" => "messages sat on hold until released",
            "receiving" => {
                "smtpd sessions took the time: the clients' transfers, or cleanup's in_flow_delay sleeps while qmgr was behind (in_flow_delays in summary.json)"
            }
            _ => "delivery itself took most of the time: nothing is stuck",
        };
        Some(format!(
            "{share:.0} % of recipients' time in the queue was {}: {advice}",
            CAUSES[i].replace('_', " ")
        ))
    }
}

impl Observer for StallAttribution {
    fn recipient_outcome(&mut self, _: &RecipientOutcome<'_>) {}

    fn wants_events(&self) -> bool {
        true
    }

    fn sample(&mut self, t: Time) {
        self.advance(t);
        use std::fmt::Write;
        crate::engine::time::write_seconds(&mut self.csv, t);
        let c = &self.now_counts;
        let _ = writeln!(
            self.csv,
            ",{},{},{},{},{},{}",
            c[INCOMING].max(0),
            c[AGENT].max(0),
            c[BACKOFF].max(0),
            c[DEAD].max(0),
            c[SCAN].max(0),
            c[HOLD].max(0)
        );
    }

    fn event(&mut self, e: &Event<'_>) {
        self.advance(e.t);
        match e.what {
            Happening::Received { nrcpt, arrival, .. } => {
                self.set_state(e.id, FileState::Incoming, Some(u64::from(nrcpt)), e.t);
                if let Some(f) = self.files.get_mut(&e.id) {
                    f.received = Some((arrival, e.t));
                }
            }
            Happening::Activated { nrcpt, .. } => {
                if let Some(f) = self.files.get_mut(&e.id) {
                    f.dead_round = false;
                }
                self.set_state(e.id, FileState::Active, Some(u64::from(nrcpt)), e.t);
            }
            Happening::Deferred { mtime } => {
                let dead = self.files.get(&e.id).is_some_and(|f| f.dead_round);
                let pending = self.files.get(&e.id).map(|f| f.nrcpt);
                self.set_state(e.id, FileState::Deferred { mtime, dead }, pending, e.t);
                if let Some(f) = self.files.get_mut(&e.id) {
                    f.deferred_at = e.t;
                    f.held = 0;
                    f.deferrals += 1;
                    f.last_mtime = mtime;
                }
            }
            Happening::Admin { what, .. } => {
                let state = self.files.get(&e.id).map(|f| f.state);
                match (what, state) {
                    ("placed on hold", Some(FileState::Deferred { mtime, dead })) => {
                        self.set_state(e.id, FileState::Hold { mtime, dead }, None, e.t);
                        if let Some(f) = self.files.get_mut(&e.id) {
                            f.hold_since = Some(e.t);
                        }
                    }
                    ("placed on hold", Some(_)) => {
                        self.set_state(
                            e.id,
                            FileState::Hold {
                                mtime: 0,
                                dead: false,
                            },
                            None,
                            e.t,
                        );
                        if let Some(f) = self.files.get_mut(&e.id) {
                            f.hold_since = Some(e.t);
                            f.deferred_at = e.t;
                        }
                    }
                    ("released from hold", Some(FileState::Hold { mtime, dead })) => {
                        self.set_state(e.id, FileState::Deferred { mtime, dead }, None, e.t);
                        if let Some(f) = self.files.get_mut(&e.id)
                            && let Some(since) = f.hold_since.take()
                        {
                            f.held += e.t - since;
                        }
                    }
                    // A requeued file is copied into a new one with a new ID by pickup.
                    ("removed" | "requeued", _) => self.remove_file(e.id, e.t),
                    _ => {}
                }
            }
            Happening::Removed | Happening::Expired { .. } => self.remove_file(e.id, e.t),
            Happening::Recipient(r) => {
                let key = (e.origin, r.index);
                let file = self.files.get(&e.id).copied();
                let mut parts = [0i64; 12];
                let rcpt = match self.rcpts.get(&key).copied() {
                    Some(rcpt) => rcpt,
                    None => {
                        // First seen: its smtpd session came first.
                        let written = file
                            .and_then(|f| f.received)
                            .filter(|&(arrival, _)| arrival == r.arrival)
                            .map_or(r.arrival, |(_, at)| at.clamp(r.arrival, r.done));
                        parts[RECEIVING] += written - r.arrival;
                        Rcpt {
                            accounted_to: written,
                            dead: false,
                            rounds_seen: 0,
                        }
                    }
                };
                if r.to_filter {
                    // Everything up to the filter's answer is the filter's (§7.3).
                    parts[FILTER] += r.done - rcpt.accounted_to;
                } else {
                    self.account_gap(file, rcpt, r.active, &mut parts);
                    let start = r.active.max(rcpt.accounted_to);
                    let handoff = r.handoff.unwrap_or(r.done).clamp(start, r.done);
                    parts[AGENT] += handoff - start;
                    let timeout = matches!(
                        r.cause,
                        Some(
                            Cause::ConnectionTimedOut
                                | Cause::GreetingTimedOut
                                | Cause::DataTimedOut
                                | Cause::DnsTempfail
                        )
                    ) && r.status == Status::Deferred;
                    let (setup, transfer) = match (r.setup_done, r.agent) {
                        (Some(s), Agent::Smtp(_)) => {
                            let s = s.clamp(handoff, r.done);
                            (s - handoff, r.done - s)
                        }
                        (None, Agent::Smtp(_)) => (r.done - handoff, 0),
                        _ => (0, r.done - handoff),
                    };
                    if timeout {
                        parts[TIMEOUTS] += setup + transfer;
                    } else {
                        parts[SETUP] += setup;
                        parts[TRANSFER] += transfer;
                    }
                }
                // Every attempt's time counts, whether or not the recipient is ever delivered.
                for (t, p) in self.totals.iter_mut().zip(parts) {
                    *t += p;
                }
                let done_for_good =
                    matches!(r.status, Status::Sent | Status::Bounced) && !r.to_filter;
                if done_for_good {
                    self.rcpts.remove(&key);
                    if let Some(f) = self.files.get_mut(&e.id) {
                        let state = f.state;
                        f.nrcpt = f.nrcpt.saturating_sub(1);
                        self.count(state, 1, -1, e.t);
                    }
                } else {
                    let dead = r.agent == Agent::Retry;
                    if dead && let Some(f) = self.files.get_mut(&e.id) {
                        f.dead_round = true;
                    }
                    if self.keep_each {
                        // Carry this attempt's parts to the recipient's final account.
                        let entry = self.pending.entry(key).or_insert([0; 12]);
                        for (a, p) in entry.iter_mut().zip(parts) {
                            *a += p;
                        }
                    }
                    let rounds_seen = self.files.get(&e.id).map_or(0, |f| f.deferrals);
                    self.rcpts.insert(
                        key,
                        Rcpt {
                            accounted_to: r.done,
                            dead,
                            rounds_seen,
                        },
                    );
                }
                if done_for_good && self.keep_each {
                    let mut all = parts;
                    if let Some(carried) = self.pending.remove(&key) {
                        for (a, p) in all.iter_mut().zip(carried) {
                            *a += p;
                        }
                    }
                    self.each.push((key, all));
                }
            }
            _ => {}
        }
    }
}
