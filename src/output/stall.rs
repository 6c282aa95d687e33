//! "Why is it stuck?": every recipient's time in the system split into causes (§9), for
//! `summary.json` (`stall_s`), `stall.csv` (recipients waiting for each cause, every
//! sample) and the closing sentence of `mailsim run`.
//!
//! A recipient's time telescopes over its delivery attempts:
//! - before its first activation it waits in incoming (the active queue is full, a scan is
//!   due), or the content filter has it;
//! - in each attempt, `delays=` b is split into the time its destination's window had no
//!   room (`window_full`: full, dead or rate-suspended) and the time the window had room
//!   but every agent of the transport was busy (`no_free_agent`); c into DNS lookups,
//!   connection set-up, or — when the attempt failed on a timeout — `smtp_timeouts`; d is
//!   the transfer;
//! - after an attempt that deferred it, the rest of its file's round (`other_recipients`),
//!   then the file's wait in deferred/: time on hold; up to the file's time stamp the
//!   backoff, filed under `dead_destination` for exactly the part that overlaps the
//!   recipient's destination being dead for qmgr (queue declared dead, or transport
//!   throttled), under `backoff` otherwise; after the time stamp, the wait for the
//!   deferred scan.
//!
//! The parts of every delivered recipient add up exactly to its delay; the totals count
//! every recipient's time up to its last attempt, delivered or not.

use crate::engine::hash::IdMap;
use crate::engine::one_or_many::OneOrMany;
use crate::engine::time::Time;
use crate::observe::{Agent, Cause, Event, Happening, Observer, RecipientOutcome, Status};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The causes, in report order.
pub const CAUSES: [&str; 14] = [
    "incoming",
    "content_filter",
    "no_free_agent",
    "window_full",
    "dns",
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

const N: usize = CAUSES.len();
const INCOMING: usize = 0;
const FILTER: usize = 1;
const NO_AGENT: usize = 2;
const WINDOW: usize = 3;
const DNS: usize = 4;
const SETUP: usize = 5;
const TIMEOUTS: usize = 6;
const TRANSFER: usize = 7;
const OTHERS: usize = 8;
const BACKOFF: usize = 9;
const DEAD: usize = 10;
const SCAN: usize = 11;
const HOLD: usize = 12;
/// The smtpd session, from MAIL FROM (the arrival time) until cleanup has the file: the
/// client's transfer and cleanup's in_flow_delay sleep.
const RECEIVING: usize = 13;

/// Which stall.csv column a file's recipients are counted in now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Incoming,
    Active,
    /// In deferred/, its time stamp still in the future.
    Backoff,
    /// In deferred/, due, waiting for a scan.
    Scan,
    Hold,
}

/// A destination the file's recipients wait for, with how many of them, and the part of
/// the wait its destination was dead.
#[derive(Clone, Copy, Debug)]
struct WaitFor {
    dest: u32,
    n: u32,
    /// The destination's dead clock when this stretch of waiting began.
    dead_clock_at: Time,
    /// Dead time overlapping the file's backoff, from stretches already closed.
    overlap: Time,
}

/// A queue file. Kept to 32 bytes: in a growing queue most files sit in incoming, never
/// activated, and this record (in a hash map) is all they cost here — issue 7's bytes per
/// queued message. What qmgr's handling adds is in [`Handled`], boxed, made on first need.
/// (Its message id is not kept: every event about the file carries it as `origin`.)
#[derive(Clone, Debug)]
struct File {
    /// Its arrival (`T` record) and when cleanup wrote it, for the first attempt of its
    /// recipients.
    arrival: Time,
    written: Time,
    /// Recipients still to be delivered.
    nrcpt: u32,
    slot: Slot,
    /// `None`: as [`Handled::default`].
    handled: Option<Box<Handled>>,
}

/// A file's rounds and waits, from its first deferral, hold or deferred recipient on.
/// `deferred_at`, `last_mtime` and `before_wait` are set when it leaves the active queue
/// into a wait, before anything reads them (a recipient's gap is split by them only when
/// `deferrals` shows a wait since its last attempt).
#[derive(Clone, Debug)]
struct Handled {
    /// When it last left the active queue into a wait.
    deferred_at: Time,
    /// Its time stamp then (seconds; 0: no backoff, e.g. put on hold).
    last_mtime: i64,
    /// Invalidates due-heap entries of earlier waits. Only a file with a `Handled` has
    /// entries there (`start_wait` makes it), and a requeued file keeps counting on.
    generation: u32,
    /// How many times it left the active queue into a wait (deferred or hold).
    deferrals: u32,
    /// What the time before `deferred_at` was for a recipient not tried in that round:
    /// the rest of the round, or waiting in incoming (held before its first activation).
    before_wait: u8,
    /// Destinations of the recipients deferred in the current round (usually one: kept
    /// inline, as are the next two lists).
    round: OneOrMany<(u32, u32)>,
    /// The same during the wait that followed, with their dead overlaps.
    waits: OneOrMany<WaitFor>,
    /// The stretch of backoff now running is counted in `waiting_by_dest`.
    counted_waiting: bool,
    /// Indexes of its recipients with an entry in `rcpts`.
    members: OneOrMany<u32>,
}

impl Default for Handled {
    fn default() -> Self {
        Handled {
            deferred_at: 0,
            last_mtime: 0,
            generation: 0,
            deferrals: 0,
            before_wait: INCOMING as u8,
            round: OneOrMany::default(),
            waits: OneOrMany::default(),
            counted_waiting: false,
            members: OneOrMany::default(),
        }
    }
}

impl File {
    fn handled(&mut self) -> &mut Handled {
        self.handled.get_or_insert_with(Box::default)
    }

    fn last_mtime(&self) -> i64 {
        self.handled.as_ref().map_or(0, |h| h.last_mtime)
    }

    fn deferrals(&self) -> u32 {
        self.handled.as_ref().map_or(0, |h| h.deferrals)
    }
}

/// A file's time on hold since it last left the active queue into a wait (rare, so kept
/// beside [`File`], not in it).
#[derive(Clone, Copy, Debug, Default)]
struct Held {
    since: Option<Time>,
    total: Time,
}

/// Where a recipient's accounted time ends, and where it last waited.
#[derive(Clone, Copy, Debug)]
struct Rcpt {
    accounted_to: Time,
    /// Its file's deferral count at that status: a higher count now means the file went
    /// through deferred/ (or hold) since.
    rounds_seen: u32,
    dest: u32,
}

/// A destination's dead clock: dead time in all, and since when it is dead now.
#[derive(Clone, Copy, Debug, Default)]
struct DeadClock {
    total: Time,
    since: Option<Time>,
}

impl DeadClock {
    fn at(&self, t: Time) -> Time {
        self.total + self.since.map_or(0, |s| (t - s).max(0))
    }
}

/// Destination `d`'s dead time up to `t`.
fn clock(clocks: &[DeadClock], d: u32, t: Time) -> Time {
    clocks.get(d as usize).map_or(0, |c| c.at(t))
}

/// Moves file `f`'s recipients to `to`'s column of `slots`.
fn shift(slots: &mut [i64; 5], f: &mut File, to: Slot) {
    slots[slot_index(f.slot)] -= i64::from(f.nrcpt);
    slots[slot_index(to)] += i64::from(f.nrcpt);
    f.slot = to;
}

#[derive(Default)]
pub struct StallAttribution {
    /// Time (µs) per cause over every recipient, up to its last attempt.
    pub totals: [i64; N],
    files: IdMap<u64, File>,
    holds: IdMap<u64, Held>,
    rcpts: IdMap<(u64, u32), Rcpt>,
    /// Recipients per stall.csv slot now (by [`Slot`] order).
    slots: [i64; 5],
    /// Recipients in backoff now, per destination (the dead ones are stall.csv's
    /// dead_destination column).
    waiting_by_dest: Vec<i64>,
    dest_ids: HashMap<String, u32>,
    clocks: Vec<DeadClock>,
    /// Deferred files whose time stamp comes due: (mtime µs, id, generation).
    due: BinaryHeap<Reverse<(i64, u64, u32)>>,
    /// Parts of recipients not delivered yet (with `keep_each`).
    pending: IdMap<(u64, u32), [i64; N]>,
    pub csv: String,
    /// With `keep_each`: every delivered recipient's parts, by (message id, index).
    pub keep_each: bool,
    pub each: Vec<((u64, u32), [i64; N])>,
    /// The instant a `postqueue -f` is imagined at (after the last fault): the waits it
    /// would have cut short, in recipient-µs, and how many recipients waited.
    pub flush_probe: Option<Time>,
    pub flush_saving: i64,
    pub flush_saved_recipients: u64,
}

fn secs(t: i64) -> Time {
    t * crate::engine::time::SECOND
}

fn slot_index(s: Slot) -> usize {
    match s {
        Slot::Incoming => 0,
        Slot::Active => 1,
        Slot::Backoff => 2,
        Slot::Scan => 3,
        Slot::Hold => 4,
    }
}

impl StallAttribution {
    pub fn new() -> Self {
        let mut s = StallAttribution::default();
        s.csv
            .push_str("time_s,incoming,active,backoff,dead_destination,scan_wait,hold\n");
        s
    }

    fn dest_id(&mut self, name: &str) -> u32 {
        if let Some(&d) = self.dest_ids.get(name) {
            return d;
        }
        let d = u32::try_from(self.clocks.len()).unwrap_or(u32::MAX);
        self.dest_ids.insert(name.to_string(), d);
        self.clocks.push(DeadClock::default());
        self.waiting_by_dest.push(0);
        d
    }

    /// Moves file `id`'s recipients to `to`'s column.
    fn move_to(&mut self, id: u64, to: Slot) {
        if let Some(f) = self.files.get_mut(&id) {
            shift(&mut self.slots, f, to);
        }
    }

    /// The file's stretch of backoff ends at `t` (its time stamp came, it was activated or
    /// put on hold): its dead overlaps take the destinations' clocks up to `t`.
    fn close_wait(&mut self, id: u64, t: Time) {
        let Some(h) = self
            .files
            .get_mut(&id)
            .and_then(|f| f.handled.as_deref_mut())
        else {
            return;
        };
        if !h.counted_waiting {
            return;
        }
        for w in h.waits.iter_mut() {
            w.overlap += (clock(&self.clocks, w.dest, t) - w.dead_clock_at).max(0);
            if let Some(c) = self.waiting_by_dest.get_mut(w.dest as usize) {
                *c -= i64::from(w.n);
            }
        }
        h.counted_waiting = false;
    }

    /// File `id` waits in deferred/ (or back from hold) from `t` with its time stamp.
    fn start_wait(&mut self, id: u64, t: Time) {
        let Some(f) = self.files.get_mut(&id) else {
            return;
        };
        let mtime = secs(f.last_mtime());
        if mtime <= t {
            shift(&mut self.slots, f, Slot::Scan);
            return;
        }
        shift(&mut self.slots, f, Slot::Backoff);
        let h = f.handled();
        h.generation += 1;
        self.due.push(Reverse((mtime, id, h.generation)));
        for w in h.waits.iter_mut() {
            w.dead_clock_at = clock(&self.clocks, w.dest, t);
            if let Some(c) = self.waiting_by_dest.get_mut(w.dest as usize) {
                *c += i64::from(w.n);
            }
        }
        h.counted_waiting = true;
    }

    /// Deferred files whose time has come move from backoff to waiting for the scan. No
    /// destination changed state since the last call (every change is an event, and
    /// events call this first), so the clocks read at a past time stamp are exact.
    fn advance(&mut self, t: Time) {
        while let Some(&Reverse((due, id, g))) = self.due.peek() {
            if due > t {
                break;
            }
            self.due.pop();
            if self.files.get(&id).is_some_and(|f| {
                f.handled.as_ref().is_some_and(|h| h.generation == g) && f.slot == Slot::Backoff
            }) {
                self.close_wait(id, due);
                self.move_to(id, Slot::Scan);
            }
        }
    }

    /// File `id` of message `origin` is gone (delivered, bounced, removed, expired).
    fn remove_file(&mut self, id: u64, origin: u64, t: Time) {
        self.close_wait(id, t);
        self.holds.remove(&id);
        if let Some(f) = self.files.remove(&id) {
            self.slots[slot_index(f.slot)] -= i64::from(f.nrcpt);
            for &i in f.handled.iter().flat_map(|h| h.members.iter()) {
                self.rcpts.remove(&(origin, i));
                self.pending.remove(&(origin, i));
            }
        }
    }

    /// The file left the active queue into a wait at `t` (deferred, or on hold).
    fn leave_active(&mut self, id: u64, t: Time, mtime: i64, before_wait: usize) {
        if let Some(f) = self.files.get_mut(&id) {
            self.holds.remove(&id);
            let h = f.handled();
            h.deferrals += 1;
            h.deferred_at = t;
            h.last_mtime = mtime;
            h.before_wait = before_wait as u8;
            h.waits = std::mem::take(&mut h.round)
                .iter()
                .map(|&(dest, n)| WaitFor {
                    dest,
                    n,
                    dead_clock_at: 0,
                    overlap: 0,
                })
                .collect();
        }
    }

    fn hold(&mut self, id: u64, t: Time) {
        self.close_wait(id, t);
        self.move_to(id, Slot::Hold);
        if self.files.contains_key(&id) {
            self.holds.entry(id).or_default().since = Some(t);
        }
    }

    /// The totals by cause name, in seconds (`summary.json`'s `stall_s`).
    pub fn totals_by_name(&self) -> std::collections::BTreeMap<String, f64> {
        CAUSES
            .iter()
            .zip(self.totals)
            .map(|(c, t)| (c.to_string(), crate::output::summary::seconds(t)))
            .collect()
    }

    /// stall.csv's counts now: incoming, active, backoff, dead destination, scan, hold.
    fn row(&self) -> [i64; 6] {
        let dead: i64 = self
            .clocks
            .iter()
            .zip(&self.waiting_by_dest)
            .filter(|(c, _)| c.since.is_some())
            .map(|(_, n)| *n)
            .sum();
        let s = &self.slots;
        debug_assert!(
            s.iter().all(|&n| n >= 0) && dead >= 0 && dead <= s[2],
            "stall counters went negative: {s:?}, dead {dead}"
        );
        let dead = dead.clamp(0, s[2].max(0));
        [s[0], s[1], s[2] - dead, dead, s[3], s[4]]
    }
}

/// The gap before an attempt at `active`, from where the recipient's time was accounted
/// to, split by what its file was doing; with what a flush at `probe` would have cut
/// short of it.
fn account_gap(
    file: Option<&File>,
    held: Time,
    rcpt: Rcpt,
    active: Time,
    probe: Option<Time>,
    parts: &mut [i64; N],
) -> Option<i64> {
    let from = rcpt.accounted_to;
    if active <= from {
        return None;
    }
    // (A file that left the active queue into a wait has its `Handled`.)
    let Some(f) = file
        .filter(|f| f.deferrals() > rcpt.rounds_seen)
        .and_then(|f| f.handled.as_deref())
    else {
        // Not deferred since: waiting in incoming (first activation, or after a
        // content-filter pass or a requeue).
        parts[INCOMING] += active - from;
        return None;
    };
    let base = f.deferred_at.clamp(from, active);
    // [from, deferred_at): the rest of the round (or incoming, before a first hold).
    let before = if rcpt.rounds_seen == 0 && usize::from(f.before_wait) == INCOMING {
        INCOMING
    } else {
        OTHERS
    };
    parts[before] += base - from;
    let gap = active - base;
    let held = held.min(gap);
    parts[HOLD] += held;
    let waiting = (secs(f.last_mtime) - base).clamp(0, gap - held);
    let overlap = f
        .waits
        .iter()
        .find(|w| w.dest == rcpt.dest)
        .map_or(0, |w| w.overlap);
    let dead = overlap.clamp(0, waiting);
    parts[DEAD] += dead;
    parts[BACKOFF] += waiting - dead;
    parts[SCAN] += gap - held - waiting;
    // What a flush at the probe instant would have cut short: the wait (backoff and
    // scan) after it, for mail that was waiting then.
    let probe = probe.filter(|&p| base < p)?;
    let end = base + gap - held;
    (end > probe).then_some(end - probe)
}

/// What the closing sentence may refer to besides the totals.
#[derive(Clone, Debug, Default)]
pub struct HeadlineContext {
    /// The scenario's file name (never suggested to itself).
    pub scenario_file: String,
    /// The last fault's end (simulated µs), its description, and the clock it reads in.
    pub last_fault: Option<(Time, String)>,
    pub start_unix: i64,
    /// From [`StallAttribution`]: the waits a `postqueue -f` one minute after the last
    /// fault would have cut short (recipient-µs), and for how many recipients.
    pub flush_at: Option<Time>,
    pub flush_saving: i64,
    pub flush_saved_recipients: u64,
    /// The commonest reason of the deferrals after an attempt (`deferred_by_cause`
    /// without qmgr's own suspended deferrals): what the backoff was a backoff from.
    pub top_deferral: Option<String>,
}

/// A flush of this many waiting recipients or more is a storm worth a warning.
const FLUSH_STORM: u64 = 1000;

fn clock_text(start_unix: i64, t: Time) -> String {
    let stamp = super::maillog::timestamp(start_unix + t.div_euclid(crate::engine::time::SECOND));
    stamp[7..12].to_string()
}

/// The human sentence of what dominated, from `stall_s`, for the end of `mailsim run`:
/// the share of the top cause, when it happened, and advice for that mechanism.
pub fn headline(
    stall_s: &std::collections::BTreeMap<String, f64>,
    ctx: &HeadlineContext,
) -> Option<String> {
    let total: f64 = stall_s.values().sum();
    if total <= 0.0 {
        return None;
    }
    let (name, &top) = stall_s
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1).then_with(|| b.0.cmp(a.0)))?;
    let share = top * 100.0 / total;
    let see = |file: &str| {
        if ctx.scenario_file.ends_with(file) {
            String::new()
        } else {
            format!(" (scenarios/{file})")
        }
    };
    let after_fault = ctx
        .last_fault
        .as_ref()
        .map(|(end, what)| format!(" ({what} ended at {})", clock_text(ctx.start_unix, *end)))
        .unwrap_or_default();
    let flush = match ctx.flush_at {
        Some(at) if ctx.flush_saving > 0 => format!(
            "; a `postqueue -f` at {} would have made the {} recipients still waiting then eligible at once, sparing them up to {:.1} recipient-hours of waiting{}{}",
            clock_text(ctx.start_unix, at),
            ctx.flush_saved_recipients,
            ctx.flush_saving as f64 / 3.6e9,
            see("outage-flush.toml"),
            if ctx.flush_saved_recipients >= FLUSH_STORM {
                " — though that many files at once take the smtp processes from fresh mail for other destinations while they drain (the flush storm QSHAPE_README warns about)"
            } else {
                ""
            }
        ),
        _ => String::new(),
    };
    let advice = match name.as_str() {
        "backoff" if !flush.is_empty() => format!(
            "deferred files waited out their own retry time, clamp(age, minimal_backoff_time, maximal_backoff_time), after the destination was back{after_fault}{flush}"
        ),
        "backoff" => match ctx.top_deferral.as_deref() {
            Some(
                "rate_limited"
                | "rate_limited_at_greeting"
                | "rate_limited_at_mail_from"
                | "connection_rate_limited"
                | "too_many_connections",
            ) => format!(
                "deferred files waited out their retry time after the remote's rate limiter refused them (a 421 at the greeting also kills the destination's queue); sending at, not above, the remote's rate — a <transport>_destination_concurrency_limit of about limit × transaction time — keeps the limiter quiet; sending well below it (a long rate delay) makes the backlog last longer{}",
                see("provider-rate-limit.toml")
            ),
            Some("greylisted") => format!(
                "deferred files waited out their retry time after greylisting: minimal_backoff_time rounded up to the next deferred scan; a shorter minimal_backoff_time shortens it, a flush does not beat a greylist{}",
                see("greylisting.toml")
            ),
            _ => format!(
                "deferred files waited out their retry time after soft failures (4xx replies): minimal_backoff_time rounded up to the next deferred scan, then clamp(age, minimal_backoff_time, maximal_backoff_time){}",
                see("tempfail-heavy.toml")
            ),
        },
        "dead_destination" => format!(
            "mail for a destination qmgr had declared dead (failed connections or greetings in a row) was deferred without an attempt until the revival timer (minimal_backoff_time) or a successful delivery{after_fault}{flush}"
        ),
        "scan_wait" => "due files waited for the next deferred-queue scan (queue_run_delay)".into(),
        "incoming" => format!(
            "mail waited in incoming because the active queue was full (qmgr_message_active_limit; a slow filter or destination holds it{})",
            see("slow-content-filter.toml")
        ),
        "content_filter" => format!(
            "the content filter was the bottleneck (its maxproc and latency{})",
            see("slow-content-filter.toml")
        ),
        "no_free_agent" => format!(
            "deliveries waited for a free smtp process: all of the transport's maxproc agents were busy, often sitting in timeouts to an unresponsive destination; raise maxproc in master.cf, shorten smtp_connect_timeout and smtp_helo_timeout, or give the slow destination a transport of its own{}",
            see("blackhole-starvation.toml")
        ),
        "window_full" => format!(
            "deliveries waited for room in their destination's concurrency window (<transport>_destination_concurrency_limit, initial_destination_concurrency, a rate delay); the remote sets how fast it takes mail{}",
            see("provider-rate-limit.toml")
        ),
        "dns" => format!(
            "agents waited for DNS answers (resolver timeouts, SERVFAIL){}",
            see("dns-servfail.toml")
        ),
        "smtp_timeouts" => format!(
            "smtp processes sat in connect or greeting timeouts (smtp_connect_timeout, smtp_helo_timeout, times smtp_mx_address_limit){after_fault}{}",
            see("blackhole-starvation.toml")
        ),
        "hold" => "messages sat on hold until released (postsuper -H)".into(),
        "receiving" => "smtpd sessions took the time: the clients' transfers, or cleanup's in_flow_delay sleeps while qmgr was behind (in_flow_delays in summary.json)".into(),
        _ => "delivery itself took most of the time: nothing is stuck".into(),
    };
    Some(format!(
        "{share:.0} % of recipients' time in the queue was {}: {advice}",
        name.replace('_', " ")
    ))
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
        let r = self.row();
        let _ = writeln!(
            self.csv,
            ",{},{},{},{},{},{}",
            r[0], r[1], r[2], r[3], r[4], r[5]
        );
    }

    fn event(&mut self, e: &Event<'_>) {
        self.advance(e.t);
        match e.what {
            Happening::Received { nrcpt, arrival, .. } => {
                // A new file, or a requeued one coming back through pickup.
                if let Some(f) = self.files.get(&e.id) {
                    self.slots[slot_index(f.slot)] -= i64::from(f.nrcpt);
                }
                self.close_wait(e.id, e.t);
                let old = self.files.remove(&e.id);
                self.slots[slot_index(Slot::Incoming)] += i64::from(nrcpt);
                // A requeued file starts over (its recipients wait in incoming), keeping
                // only which of them have an entry in `rcpts`.
                self.holds.remove(&e.id);
                let handled = old.and_then(|f| f.handled).map(|h| {
                    Box::new(Handled {
                        generation: h.generation + 1,
                        members: h.members,
                        ..Handled::default()
                    })
                });
                self.files.insert(
                    e.id,
                    File {
                        arrival,
                        written: e.t,
                        nrcpt,
                        slot: Slot::Incoming,
                        handled,
                    },
                );
            }
            Happening::Activated { .. } => {
                self.close_wait(e.id, e.t);
                self.move_to(e.id, Slot::Active);
                if let Some(h) = self
                    .files
                    .get_mut(&e.id)
                    .and_then(|f| f.handled.as_deref_mut())
                {
                    h.round.clear();
                    h.generation += 1;
                }
            }
            Happening::Deferred { mtime } => {
                self.leave_active(e.id, e.t, mtime, OTHERS);
                self.start_wait(e.id, e.t);
            }
            Happening::LeftActive { to, .. } => match to {
                "hold" => {
                    // Renamed to hold/ under qmgr's feet: waiting on hold from now.
                    self.leave_active(e.id, e.t, 0, OTHERS);
                    self.hold(e.id, e.t);
                }
                "maildrop" => self.move_to(e.id, Slot::Incoming),
                _ => self.remove_file(e.id, e.origin, e.t),
            },
            Happening::Admin { what, .. } => {
                let slot = self.files.get(&e.id).map(|f| f.slot);
                match (what, slot) {
                    // While active, the move shows when qmgr lets go (`LeftActive`).
                    (_, Some(Slot::Active)) | (_, None) => {}
                    ("placed on hold", Some(Slot::Incoming)) => {
                        self.leave_active(e.id, e.t, 0, INCOMING);
                        self.hold(e.id, e.t);
                    }
                    ("placed on hold", Some(Slot::Backoff | Slot::Scan)) => self.hold(e.id, e.t),
                    ("released from hold", Some(Slot::Hold)) => {
                        if let Some(h) = self.holds.get_mut(&e.id)
                            && let Some(since) = h.since.take()
                        {
                            h.total += e.t - since;
                        }
                        self.start_wait(e.id, e.t);
                    }
                    ("removed", Some(_)) => self.remove_file(e.id, e.origin, e.t),
                    _ => {}
                }
            }
            Happening::Removed | Happening::Expired { .. } => self.remove_file(e.id, e.origin, e.t),
            Happening::DestinationState {
                destination, dead, ..
            } => {
                let d = self.dest_id(destination) as usize;
                let c = &mut self.clocks[d];
                match (dead, c.since) {
                    (true, None) => c.since = Some(e.t),
                    (false, Some(s)) => {
                        c.total += e.t - s;
                        c.since = None;
                    }
                    _ => {}
                }
            }
            Happening::Recipient(r) => self.recipient(e, &r),
            _ => {}
        }
    }
}

impl StallAttribution {
    fn recipient(&mut self, e: &Event<'_>, r: &crate::observe::RecipientStatus<'_>) {
        let key = (e.origin, r.index);
        let dest = self.dest_id(r.destination);
        let mut parts = [0i64; N];
        let rcpt = match self.rcpts.get(&key).copied() {
            Some(rcpt) => rcpt,
            None => {
                // First seen: its smtpd session came first, from MAIL FROM (the arrival)
                // until cleanup wrote the file.
                let written = self
                    .files
                    .get(&e.id)
                    .filter(|f| f.arrival == r.arrival)
                    .map_or(r.arrival, |f| f.written.clamp(r.arrival, r.done));
                parts[RECEIVING] += written - r.arrival;
                Rcpt {
                    accounted_to: written,
                    rounds_seen: 0,
                    dest,
                }
            }
        };
        if r.to_filter {
            // Everything up to the filter's answer is the filter's (§7.3).
            parts[FILTER] += r.done - rcpt.accounted_to;
        } else {
            let saved = account_gap(
                self.files.get(&e.id),
                self.holds.get(&e.id).map_or(0, |h| h.total),
                rcpt,
                r.active,
                self.flush_probe,
                &mut parts,
            );
            if let Some(saved) = saved {
                self.flush_saving += saved;
                self.flush_saved_recipients += 1;
            }
            let start = r.active.max(rcpt.accounted_to);
            let handoff = r.handoff.unwrap_or(r.done).clamp(start, r.done);
            let waited = handoff - start;
            let window = r.window_wait.clamp(0, waited);
            parts[WINDOW] += window;
            parts[NO_AGENT] += waited - window;
            let (setup, transfer) = match (r.setup_done, r.agent) {
                (Some(s), Agent::Smtp(_)) => {
                    let s = s.clamp(handoff, r.done);
                    (s - handoff, r.done - s)
                }
                (None, Agent::Smtp(_)) => (r.done - handoff, 0),
                _ => (0, r.done - handoff),
            };
            let failed = r.status == Status::Deferred;
            let dns = r.dns.clamp(0, setup);
            match r.cause {
                Some(Cause::DnsTempfail) if failed => parts[DNS] += setup + transfer,
                Some(Cause::ConnectionTimedOut | Cause::GreetingTimedOut | Cause::DataTimedOut)
                    if failed =>
                {
                    parts[DNS] += dns;
                    parts[TIMEOUTS] += setup - dns + transfer;
                }
                _ => {
                    parts[DNS] += dns;
                    parts[SETUP] += setup - dns;
                    parts[TRANSFER] += transfer;
                }
            }
        }
        // Every attempt's time counts, whether or not the recipient is ever delivered.
        for (t, p) in self.totals.iter_mut().zip(parts) {
            *t += p;
        }
        let done_for_good = matches!(r.status, Status::Sent | Status::Bounced) && !r.to_filter;
        if r.to_filter && r.status == Status::Sent {
            // Handed over: no longer this file's; the filter re-injects it as a new file.
            if let Some(f) = self.files.get_mut(&e.id) {
                f.nrcpt = f.nrcpt.saturating_sub(1);
                self.slots[slot_index(f.slot)] -= 1;
            }
        }
        if done_for_good {
            self.rcpts.remove(&key);
            if let Some(f) = self.files.get_mut(&e.id) {
                f.nrcpt = f.nrcpt.saturating_sub(1);
                if let Some(h) = f.handled.as_deref_mut() {
                    h.members.retain(|&i| i != r.index);
                }
                self.slots[slot_index(f.slot)] -= 1;
            }
            if self.keep_each {
                let mut all = parts;
                if let Some(carried) = self.pending.remove(&key) {
                    for (a, p) in all.iter_mut().zip(carried) {
                        *a += p;
                    }
                }
                self.each.push((key, all));
            }
            return;
        }
        if self.keep_each {
            // Carry this attempt's parts to the recipient's final account.
            let entry = self.pending.entry(key).or_insert([0; N]);
            for (a, p) in entry.iter_mut().zip(parts) {
                *a += p;
            }
        }
        let mut rounds_seen = 0;
        if let Some(f) = self.files.get_mut(&e.id) {
            rounds_seen = f.deferrals();
            if !r.to_filter {
                let h = f.handled();
                if !h.members.contains(&r.index) {
                    h.members.push(r.index);
                }
                match h.round.iter_mut().find(|(d, _)| *d == dest) {
                    Some((_, n)) => *n += 1,
                    None => h.round.push((dest, 1)),
                }
            }
        }
        self.rcpts.insert(
            key,
            Rcpt {
                accounted_to: r.done,
                rounds_seen,
                dest,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_incoming_costs_a_32_byte_record() {
        // Most files of a growing queue sit in incoming, never activated: this record, in
        // a hash map, is all they cost here (issue 7's bytes per queued message).
        assert!(std::mem::size_of::<File>() <= 32);
        let f = File {
            arrival: 0,
            written: 0,
            nrcpt: 1,
            slot: Slot::Incoming,
            handled: None,
        };
        assert_eq!((f.deferrals(), f.last_mtime()), (0, 0));
    }
}
