//! `mailsim explain`: one message's life in words — each activation, attempt and reply, the
//! rule that decided its next step (backoff = clamp(age), dead destination, the scan tick
//! that found it due), and where its time went.

use super::maillog::{delay_text, queue_id, status_text};
use super::stall::{CAUSES, StallAttribution};
use crate::engine::time::{Time, whole_seconds};
use crate::observe::{Address, Agent, Event, Happening, Observer, RecipientOutcome, Status, Via};
use crate::scenario::PostfixConfig;
use std::fmt::Write;

/// Collects the story of message `id` (as first received, through any re-injection).
pub struct Explainer {
    id: u64,
    cfg: PostfixConfig,
    lines: Vec<String>,
    /// The file's creation (whole seconds) per queue file id: the base of its age.
    created: Vec<(u64, i64)>,
    last_scan: Option<Time>,
    /// The file was deferred and waits for a scan.
    waiting_scan: Option<i64>,
    stall: StallAttribution,
    seen: bool,
}

fn at(t: Time) -> String {
    let mut s = String::new();
    crate::engine::time::write_seconds(&mut s, t);
    format!("{s:>12} s")
}

impl Explainer {
    pub fn new(id: u64, cfg: PostfixConfig) -> Self {
        let mut stall = StallAttribution::new();
        stall.keep_each = true;
        Explainer {
            id,
            cfg,
            lines: Vec::new(),
            created: Vec::new(),
            last_scan: None,
            waiting_scan: None,
            stall,
            seen: false,
        }
    }

    fn say(&mut self, t: Time, text: String) {
        self.lines.push(format!("{}  {text}", at(t)));
    }

    /// The story, or `None` if the message never arrived in the run.
    pub fn finish(mut self) -> Option<String> {
        if !self.seen {
            return None;
        }
        let mut out = format!("Message {} (queue ID {}):\n", self.id, queue_id(self.id));
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
        Some(out)
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
        if matches!(e.what, Happening::DeferredScan) {
            self.last_scan = Some(e.t);
            if let Some(mtime) = self.waiting_scan
                && mtime <= whole_seconds(e.t) + 1
            {
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
        if e.origin != self.id {
            return;
        }
        self.stall.event(e);
        self.seen = true;
        let qid = queue_id(e.id);
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
            Happening::Activated { nrcpt, .. } => {
                self.say(
                    e.t,
                    format!(
                        "qmgr moves {qid} into the active queue ({nrcpt} recipient{} to deliver)",
                        if nrcpt == 1 { "" } else { "s" }
                    ),
                );
            }
            Happening::Recipient(r) => {
                let rcpt = match r.recipient {
                    Address::Literal(a) => a.to_string(),
                    a @ Address::Generated { .. } => a.to_string(),
                };
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
                    format!("{rcpt}: {status} by {who}: {}", status_text(&r, &rcpt)),
                );
                if let Some(h) = r.handoff {
                    let wait = h - r.active;
                    let (setup, transfer) = match r.setup_done {
                        Some(s) => (s - h, r.done - s),
                        None => (r.done - h, 0),
                    };
                    self.lines.push(format!(
                        "{:>16}waited {} s for an agent (window, maxproc), {} s to connect and greet, {} s in the transaction",
                        "",
                        delay_text(wait),
                        delay_text(setup),
                        delay_text(transfer)
                    ));
                }
            }
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
            }
            Happening::Removed => self.say(e.t, format!("{qid} removed: nothing left to deliver")),
            Happening::Expired { forced, .. } => self.say(
                e.t,
                format!(
                    "{qid} {}: returned to the sender",
                    if forced {
                        "force-expired (postsuper -e)"
                    } else {
                        "expired (older than its lifetime after a failed round)"
                    }
                ),
            ),
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
            Happening::Admin { what, .. } => self.say(e.t, format!("postsuper: {qid} {what}")),
            Happening::ConnectFailed { .. }
            | Happening::DeferredScan
            | Happening::PostqueueFatal { .. }
            | Happening::PostsuperSummary { .. }
            | Happening::Master(_)
            | Happening::SmtpdClient
            | Happening::Refused(_) => {}
        }
    }
}
