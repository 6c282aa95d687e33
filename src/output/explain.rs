//! `mailsim explain`: one message's life in words — each activation, attempt and reply, the
//! rule that decided its next step (backoff = clamp(age), a dead destination and how it
//! came back, the scan tick that found it due, the admin command that moved it), and where
//! its time went.

use super::maillog::{delay_text, queue_id, status_text};
use super::stall::{CAUSES, StallAttribution};
use crate::engine::time::{Time, whole_seconds};
use crate::observe::{
    Address, Agent, DeadWhy, Event, Happening, Observer, RecipientOutcome, Status, Via,
};
use crate::scenario::PostfixConfig;
use std::fmt::Write;

/// Collects the story of message `id` (as first received, through any re-injection).
pub struct Explainer {
    id: u64,
    /// The main.cf in force: the scenario's, then whatever a new qmgr read.
    cfg: PostfixConfig,
    /// Each reconfiguration's main.cf (`postconf -e`, read at the next reload or start).
    configs: Vec<PostfixConfig>,
    /// When qmgr started (its deferred-scan clock).
    qmgr_start: Time,
    lines: Vec<String>,
    /// The file's creation (whole seconds) per queue file id: the base of its age.
    created: Vec<(u64, i64)>,
    /// The file waits in deferred/ for a scan, with this time stamp.
    waiting_scan: Option<i64>,
    last_mtime: Option<i64>,
    /// Scans that found it not yet due since it was deferred: (first, last, how many).
    passed_over: Option<(Time, Time, u32)>,
    stall: StallAttribution,
    seen: bool,
    /// `id` is a copy the content filter re-injected for this message.
    copy_of: Option<u64>,
    /// The message's destinations, and each destination's last death: when, why, and
    /// when its revival timer is due.
    destinations: Vec<String>,
    deaths: Vec<(String, Time, String, Option<Time>)>,
    /// What made the file eligible before its next activation (an admin command).
    pending_why: Option<String>,
    /// The file is in the active queue.
    active: bool,
}

/// Why `explain` has no story to tell.
#[derive(Clone, Debug, PartialEq)]
pub enum NoStory {
    /// The id is the queue file the content filter re-injected for message `of`.
    FilterCopy {
        of: u64,
    },
    Never,
}

fn secs_text(t: Time) -> String {
    let mut s = String::new();
    crate::engine::time::write_seconds(&mut s, t);
    s
}

fn at(t: Time) -> String {
    format!("{:>12} s", secs_text(t))
}

impl Explainer {
    /// `qmgr_start`: when qmgr started in this run (`mailsim::run::qmgr_start_time`).
    pub fn new(id: u64, cfg: PostfixConfig, configs: Vec<PostfixConfig>, qmgr_start: Time) -> Self {
        let mut stall = StallAttribution::new();
        stall.keep_each = true;
        Explainer {
            id,
            cfg,
            configs,
            qmgr_start,
            lines: Vec::new(),
            created: Vec::new(),
            waiting_scan: None,
            last_mtime: None,
            passed_over: None,
            stall,
            seen: false,
            copy_of: None,
            destinations: Vec::new(),
            deaths: Vec::new(),
            pending_why: None,
            active: false,
        }
    }

    fn say(&mut self, t: Time, text: String) {
        // Scans that passed the file over are told together, but not after anything later
        // than the first of them: the story stays in time order.
        if self.passed_over.is_some_and(|(first, _, _)| first <= t) {
            self.report_passed_over();
        }
        self.lines.push(format!("{}  {text}", at(t)));
    }

    fn detail(&mut self, text: String) {
        self.lines.push(format!("{:>16}{text}", ""));
    }

    /// The story, or why there is none.
    pub fn finish(mut self) -> Result<String, NoStory> {
        if !self.seen {
            return Err(match self.copy_of {
                Some(of) => NoStory::FilterCopy { of },
                None => NoStory::Never,
            });
        }
        let mut out = format!("Message {} (queue ID {}):\n", self.id, queue_id(self.id));
        out.push_str(&self.scan_clock());
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        let mine: Vec<[i64; CAUSES.len()]> = self
            .stall
            .each
            .iter()
            .filter(|((m, _), _)| *m == self.id)
            .map(|(_, parts)| *parts)
            .collect();
        if !mine.is_empty() {
            let mut parts = [0i64; CAUSES.len()];
            for p in &mine {
                for (a, b) in parts.iter_mut().zip(p) {
                    *a += b;
                }
            }
            let total: i64 = parts.iter().sum();
            let _ = writeln!(
                out,
                "Where the time went ({} delivered recipient{}, {} s in all):",
                mine.len(),
                if mine.len() == 1 { "" } else { "s" },
                delay_text(total)
            );
            let mut order: Vec<usize> = (0..CAUSES.len()).filter(|&i| parts[i] > 0).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(parts[i]));
            for i in order {
                let _ = writeln!(
                    out,
                    "  {:>18}  {:>8} s  {:>5.1} %",
                    CAUSES[i].replace('_', " "),
                    delay_text(parts[i]),
                    parts[i] as f64 * 100.0 / total.max(1) as f64
                );
            }
        }
        self.lines.clear();
        Ok(out)
    }

    fn destination_state(&mut self, t: Time, destination: &str, dead: bool, why: DeadWhy<'_>) {
        if dead {
            let (reason, until) = match why {
                DeadWhy::QueueDied { reason, until } => (
                    format!(
                        "declared dead when its failed deliveries reached the failed cohort limit; qmgr saved \"{reason}\""
                    ),
                    Some(until),
                ),
                DeadWhy::TransportDied { until } => (
                    "its transport's agents could not be started".to_string(),
                    Some(until),
                ),
                _ => ("dead".to_string(), None),
            };
            if self.seen && self.destinations.iter().any(|d| d == destination) {
                let timer = until
                    .map(|u| format!("; its revival timer is due at {} s", secs_text(u)))
                    .unwrap_or_default();
                self.say(
                    t,
                    format!("{destination} is dead for qmgr: {reason}{timer}"),
                );
            }
            self.deaths
                .push((destination.to_string(), t, reason, until));
        } else if self.seen && self.destinations.iter().any(|d| d == destination) {
            let how = match why {
                DeadWhy::Timer => "its revival timer fired",
                DeadWhy::Delivery => "a delivery to it that was under way succeeded",
                DeadWhy::Flush => "a flush revived it",
                DeadWhy::QmgrRestart => "a new qmgr forgot it was dead",
                _ => "revived",
            };
            self.say(
                t,
                format!(
                    "{destination} is alive again for qmgr ({how}); nothing retries deferred mail for it before each file's own time stamp"
                ),
            );
        }
    }

    fn command(&mut self, t: Time, what: &'static str, config: Option<usize>) {
        if let Some(c) = config.and_then(|c| self.configs.get(c)) {
            // A new qmgr reads main.cf: the rules below use its values.
            self.cfg = c.clone();
        }
        if !self.seen {
            return;
        }
        let when = format!("{} s", secs_text(t));
        let why = match what {
            "postqueue -f" if !self.active => Some(format!(
                "postqueue -f at {when}: every deferred file is eligible whatever its time stamp, and every dead destination is revived"
            )),
            "postqueue -s" if !self.active => Some(format!(
                "postqueue -s at {when}: deferred files with mail for the site moved to incoming, time stamp now"
            )),
            "postqueue -i" if !self.active => Some(format!(
                "postqueue -i at {when}: this file moved to incoming, time stamp now, its destinations unthrottled"
            )),
            "postfix reload" | "postfix start" if self.active => Some(format!(
                "a new qmgr ({what} at {when}) moved every active file back to incoming and forgot windows and dead destinations"
            )),
            _ => None,
        };
        if let Some(why) = why {
            self.say(t, why.clone());
            self.pending_why = Some(why);
            self.waiting_scan = None;
            self.active = false;
        }
    }
}

impl Explainer {
    /// The deferred-scan clock (§3.2, `util/events.c`): qmgr asks for the timer at start-up
    /// with `time() + queue_run_delay` and again each time it fires, so the scans are due
    /// at whole seconds floor(start) + k × queue_run_delay.
    fn scan_clock(&self) -> String {
        let period = self.cfg.queue_run_delay;
        // qmgr scans once at start-up; the first due second at or after 0:
        let started_s = self.qmgr_start.div_euclid(crate::engine::time::SECOND);
        let period = period.max(1);
        let behind = (-started_s).max(0);
        let first = started_s + (behind + period - 1) / period * period;
        let mut started = String::new();
        crate::engine::time::write_seconds(&mut started, self.qmgr_start);
        format!(
            "Scan clock: qmgr started at {started} s, so its deferred-queue scans are due every queue_run_delay = {period} s, at second {first}, {}, {}, … (each fires within its second, when qmgr wakes; `postfix reload` restarts the clock)\n",
            first + period,
            first + 2 * period
        )
    }

    /// Says which scans passed the deferred file over, once it is due or leaves deferred/.
    fn report_passed_over(&mut self) {
        let Some((first, last, n)) = self.passed_over.take() else {
            return;
        };
        let mtime = self.waiting_scan.unwrap_or_default();
        let text = if n == 1 {
            format!(
                "deferred-queue scan: the file is not due yet (time stamp {mtime} s > now + 1 s)"
            )
        } else {
            let mut until = String::new();
            crate::engine::time::write_seconds(&mut until, last);
            format!(
                "{n} deferred-queue scans, up to the one at {until} s: the file is not due yet (time stamp {mtime} s > now + 1 s)"
            )
        };
        self.say(first, text);
    }
}

impl Observer for Explainer {
    fn recipient_outcome(&mut self, _: &RecipientOutcome<'_>) {}

    fn wants_events(&self) -> bool {
        true
    }

    fn sample(&mut self, t: Time) {
        self.stall.sample(t);
    }

    fn event(&mut self, e: &Event<'_>) {
        match e.what {
            Happening::DestinationState {
                destination,
                dead,
                why,
            } => {
                // The attribution's dead clocks follow every destination.
                self.stall.event(e);
                self.destination_state(e.t, destination, dead, why);
                return;
            }
            Happening::Command { what, config } => {
                self.command(e.t, what, config);
                return;
            }
            Happening::DeferredScan => {
                if let Some(mtime) = self.waiting_scan
                    && mtime > whole_seconds(e.t) + 1
                {
                    let (first, _, n) = self.passed_over.unwrap_or((e.t, e.t, 0));
                    self.passed_over = Some((first, e.t, n + 1));
                } else if let Some(mtime) = self.waiting_scan {
                    self.report_passed_over();
                    self.say(
                        e.t,
                        format!(
                            "deferred-queue scan (every queue_run_delay = {} s): the file is due (time stamp {} s <= now + 1 s)",
                            self.cfg.queue_run_delay, mtime
                        ),
                    );
                    self.waiting_scan = None;
                }
                return;
            }
            Happening::Received {
                via: Via::Reinjected,
                ..
            } if e.id == self.id && e.origin != self.id => self.copy_of = Some(e.origin),
            _ => {}
        }
        if e.origin != self.id {
            return;
        }
        self.stall.event(e);
        self.seen = true;
        let qid = queue_id(e.id);
        if !matches!(e.what, Happening::Deferred { .. }) {
            // It left deferred/ some other way (postqueue -f, postsuper): no longer waiting.
            self.report_passed_over();
            self.waiting_scan = None;
        }
        match e.what {
            Happening::Received {
                via,
                sender,
                size,
                nrcpt,
                arrival,
            } => {
                self.created.push((e.id, whole_seconds(e.t)));
                let how = match via {
                    Via::Smtp if arrival < e.t => format!(
                        "received by smtpd (MAIL FROM {} s earlier: the arrival time)",
                        delay_text(e.t - arrival)
                    ),
                    Via::Smtp => "received by smtpd".to_string(),
                    Via::Pickup => "submitted with sendmail (maildrop → pickup)".to_string(),
                    Via::Reinjected => "re-injected by the content filter".to_string(),
                    Via::Notice { .. } => "created by the bounce daemon".to_string(),
                };
                let from = if sender.is_empty() { "<>" } else { sender };
                self.say(
                    e.t,
                    format!(
                        "{how}: queue file {qid} in incoming, from {from}, {nrcpt} recipient{}, {size} bytes",
                        if nrcpt == 1 { "" } else { "s" }
                    ),
                );
            }
            Happening::Activated { .. } => {
                self.waiting_scan = None;
                self.active = true;
                let why = self
                    .pending_why
                    .take()
                    .map(|w| format!(" (after {w})"))
                    .unwrap_or_default();
                self.say(e.t, format!("qmgr moves {qid} into the active queue{why}"));
            }
            Happening::Recipient(r) => self.recipient(e, &r),
            Happening::Deferred { mtime } => {
                let created = self
                    .created
                    .iter()
                    .rev()
                    .find(|(id, _)| *id == e.id)
                    .map(|(_, c)| *c)
                    .unwrap_or(0);
                let now = whole_seconds(e.t);
                let age = now - created;
                let c = &self.cfg;
                self.say(
                    e.t,
                    format!(
                        "{qid} moves to deferred/ with time stamp {mtime} s: backoff = clamp(age {age} s, minimal_backoff_time {} s, maximal_backoff_time {} s) = {} s",
                        c.minimal_backoff_time,
                        c.maximal_backoff_time,
                        mtime - now
                    ),
                );
                self.waiting_scan = Some(mtime);
                self.last_mtime = Some(mtime);
                self.active = false;
            }
            Happening::Removed => {
                self.waiting_scan = None;
                self.active = false;
                self.say(e.t, format!("{qid} removed: nothing left to deliver"));
            }
            Happening::Expired { forced, .. } => {
                self.waiting_scan = None;
                self.say(
                    e.t,
                    format!(
                        "{qid} {}: returned to the sender",
                        if forced {
                            "force-expired (postsuper -e)"
                        } else {
                            "expired (older than its lifetime after a failed round)"
                        }
                    ),
                );
            }
            Happening::NoticeSent {
                notice,
                delay_warning,
            } => self.say(
                e.t,
                format!(
                    "a {} notice to the sender goes out as queue file {}",
                    if delay_warning {
                        "delay"
                    } else {
                        "non-delivery"
                    },
                    queue_id(notice)
                ),
            ),
            Happening::Skipped => self.say(
                e.t,
                format!("{qid} is still locked by an agent of the old qmgr: skipped for 60 s"),
            ),
            Happening::Admin { what, .. } => {
                let note = match what {
                    "placed on hold" if self.active => {
                        ": renamed under qmgr's feet; deliveries already under way finish, the rest waits on hold"
                    }
                    "placed on hold" => {
                        self.waiting_scan = None;
                        ": no scan looks at it until it is released"
                    }
                    "released from hold" => {
                        self.waiting_scan = self.last_mtime;
                        ": back in deferred/ with its old time stamp, for a deferred scan once that has come"
                    }
                    "requeued" => {
                        self.waiting_scan = None;
                        self.pending_why =
                            Some("postsuper -r: through maildrop, pickup and cleanup again".into());
                        ": into maildrop, for pickup's next wakeup (postsuper sends no trigger)"
                    }
                    _ => "",
                };
                self.say(e.t, format!("postsuper: {qid} {what}{note}"));
            }
            Happening::LeftActive { to, .. } => {
                self.active = false;
                let now = match to {
                    "hold" => "on hold",
                    "maildrop" => "in maildrop",
                    _ => "gone",
                };
                self.say(
                    e.t,
                    format!("qmgr is done with {qid}, which postsuper moved: it is {now}"),
                );
            }
            Happening::ConnectFailed {
                host,
                address,
                port,
                cause,
                ..
            } => self.say(
                e.t,
                format!(
                    "the agent: {} (it tries the next address)",
                    super::maillog::reason(cause, "", Some((host, address, port)), host)
                ),
            ),
            Happening::ServerSkipped {
                host,
                address,
                port,
                cause,
                recipient,
                destination,
                ..
            } => {
                let rcpt = recipient.map(|a| a.to_string()).unwrap_or_default();
                self.say(
                    e.t,
                    format!(
                        "the agent: {} (not the last server: the recipients wait for the next one)",
                        super::maillog::reason(
                            cause,
                            &rcpt,
                            Some((host, address, port)),
                            destination
                        )
                    ),
                );
            }
            Happening::DeferredScan
            | Happening::AgentWarning { .. }
            | Happening::DestinationState { .. }
            | Happening::Command { .. }
            | Happening::ClogWarning { .. }
            | Happening::PostqueueFatal { .. }
            | Happening::PostsuperSummary { .. }
            | Happening::Master(_)
            | Happening::SmtpdClient
            | Happening::Refused(_) => {}
        }
    }
}

impl Explainer {
    fn recipient(&mut self, e: &Event<'_>, r: &crate::observe::RecipientStatus<'_>) {
        let rcpt = match r.recipient {
            Address::Literal(a) => a.to_string(),
            a @ Address::Generated { .. } => a.to_string(),
        };
        if !self.destinations.iter().any(|d| d == r.destination) {
            self.destinations.push(r.destination.to_string());
        }
        let status = match (r.status, r.to_filter) {
            (Status::Sent, true) => "handed to the content filter",
            (Status::Sent, false) => "delivered",
            (Status::Deferred, _) => "deferred",
            (Status::Bounced, _) => "bounced",
        };
        let who = match r.agent {
            Agent::Smtp(t) => format!("the {t} agent"),
            Agent::Local => "local(8)".to_string(),
            Agent::Retry => "qmgr, without an attempt (retry service)".to_string(),
        };
        self.say(
            r.done,
            format!("{rcpt}: {status} by {who}: {}", status_text(e.id, r, &rcpt)),
        );
        if r.agent == Agent::Retry
            && let Some((_, died, _, until)) = self
                .deaths
                .iter()
                .rev()
                .find(|d| d.0 == r.destination)
                .cloned()
        {
            let until = until
                .map(|u| format!(" (minimal_backoff_time after it died: {} s)", secs_text(u)))
                .unwrap_or_default();
            self.detail(format!(
                "{} has been dead for qmgr since {} s: no connection is tried until its revival timer{until}, a delivery already under way that succeeds, or a flush",
                r.destination,
                secs_text(died),
            ));
        }
        if let Some(h) = r.handoff {
            let wait = (h - r.active).max(0);
            let window = r.window_wait.clamp(0, wait);
            let (setup, transfer) = match r.setup_done {
                Some(s) => (s - h, r.done - s),
                None => (r.done - h, 0),
            };
            let setup_what = match r.conn_use {
                0 => "to connect and greet".to_string(),
                n => format!("to probe a cached connection (its delivery number {n})"),
            };
            self.detail(format!(
                "waited {} s for room in the destination's window and {} s for a free agent (maxproc), {} s in DNS, {} s {setup_what}, {} s in the transaction",
                delay_text(window),
                delay_text(wait - window),
                delay_text(r.dns.min(setup)),
                delay_text(setup - r.dns.min(setup)),
                delay_text(transfer)
            ));
        }
    }
}
