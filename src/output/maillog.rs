//! `--maillog FILE`: a synthetic mail.log in Postfix's own line formats (§8.1), as
//! Postfix's `maillog_file` writes it (`Mar 12 14:02:11 host postfix/qmgr[880]: …`), so that
//! pflogsumm and grep patterns made for real logs work on it.
//!
//! Queue IDs are derived from mailsim's message ids (10 hex digits, unique per run), server
//! addresses come from the documentation ranges, and times are the scenario's simulated
//! times from a start date.

use super::AtomicFile;
use crate::engine::rng::splitmix64;
use crate::engine::time::{SECOND, Time};
use crate::error::Error;
use crate::observe::{
    Address, Agent, Cause, ClogAdvice, Event, Happening, MasterAction, Observer, RecipientOutcome,
    RecipientStatus, Refusal, Status, Via,
};
use std::fmt::Write;

const HOST: &str = "mailsim";
/// The pid of the qmgr running when the log starts; a restarted qmgr is a new process.
const QMGR_PID: u32 = 880;
/// The version `postconf mail_version` would report (the model follows 3.7.22's code).
const MAIL_VERSION: &str = "3.7.22";
/// The SMTP client that sends us mail (`client=` lines).
const CLIENT_NAME: &str = "client.example.org";
const CLIENT: &str = "client.example.org[198.51.100.200]";

pub use crate::observe::queue_id;

/// A time in seconds with Postfix's `format_tv` rules (`delay_logging_resolution_limit =
/// 2`): below 1 s up to 2 decimals, below 10 s one decimal, then whole seconds; rounded
/// half up, trailing zeros dropped.
pub fn delay_text(t: Time) -> String {
    let t = t.max(0);
    let (scale, digits) = if t < SECOND {
        (10_000, 2)
    } else if t < 10 * SECOND {
        (100_000, 1)
    } else {
        (SECOND, 0)
    };
    let units = (t + scale / 2) / scale; // half up
    if digits == 0 {
        return units.to_string();
    }
    let div = 10i64.pow(digits);
    let whole = units / div;
    let frac = units % div;
    if frac == 0 {
        return whole.to_string();
    }
    let mut s = format!("{whole}.{frac:0width$}", width = digits as usize);
    while s.ends_with('0') {
        s.pop();
    }
    s
}

/// Calendar fields of a Unix time (proleptic Gregorian, UTC).
fn civil(unix: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Days to civil date (the era-based algorithm, written out for this use).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (secs / 3600) as u32,
        (secs % 3600 / 60) as u32,
        (secs % 60) as u32,
    )
}

/// Unix time of a `YYYY-MM-DDTHH:MM:SS` date (UTC).
pub fn parse_start(text: &str) -> Result<i64, String> {
    let bad =
        || format!("`{text}`: write a start date as YYYY-MM-DDTHH:MM:SS, e.g. 2026-03-02T08:00:00");
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00:00"));
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (&[y, m, dd], &[hh, mm, ss]) = (d.as_slice(), t.as_slice()) else {
        return Err(bad());
    };
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&dd)
        || hh > 23
        || mm > 59
        || ss > 60
        || y < 1970
    {
        return Err(bad());
    }
    // Days from civil (inverse of `civil`).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// The calendar year of a Unix time.
pub fn year_of(unix: i64) -> Option<i64> {
    Some(civil(unix).0)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Mar 12 14:02:11` (maillog_file's `%b %d %H:%M:%S`).
pub fn timestamp(unix: i64) -> String {
    let (_, month, day, h, m, s) = civil(unix);
    format!(
        "{} {day:02} {h:02}:{m:02}:{s:02}",
        MONTHS[(month as usize + 11) % 12]
    )
}

/// The reason text of a status line or a mailq entry; `server` is (host, address, port).
pub fn reason(cause: Cause, rcpt: &str, server: Option<(&str, &str, u16)>, domain: &str) -> String {
    let (h, a, port) = server.unwrap_or((domain, "192.0.2.255", 25));
    match cause {
        Cause::Greylisted => format!(
            "host {h}[{a}] said: 450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, please try again later (in reply to RCPT TO command)"
        ),
        Cause::RateLimited => format!(
            "host {h}[{a}] said: 450 4.2.1 <{rcpt}>: receiving mail at a rate that prevents additional messages, try again later (in reply to RCPT TO command)"
        ),
        // The recorder's fake servers say these (validation/recorder/fake_smtp.py), as
        // Postfix 3.7.11 logged them in tests/fidelity/rate-limit-421.
        Cause::RateLimitedGreeting => {
            format!("host {h}[{a}] refused to talk to me: 421 4.7.0 Message rate limit exceeded")
        }
        Cause::RateLimitedMail => format!(
            "host {h}[{a}] said: 421 4.7.0 Message rate limit exceeded (in reply to MAIL FROM command)"
        ),
        Cause::ConnectionRateLimited => {
            format!("host {h}[{a}] refused to talk to me: 421 4.7.0 Connection rate limit exceeded")
        }
        Cause::TooManyConnections => format!(
            "host {h}[{a}] refused to talk to me: 421 4.7.0 Too many concurrent connections, try again later"
        ),
        Cause::RecipientTempfail => format!(
            "host {h}[{a}] said: 450 4.2.0 <{rcpt}>: Temporary failure, try again later (in reply to RCPT TO command)"
        ),
        Cause::MailTempfail => format!(
            "host {h}[{a}] said: 451 4.3.0 Temporary local problem, try again later (in reply to MAIL FROM command)"
        ),
        Cause::DataTempfail => format!(
            "host {h}[{a}] said: 451 4.7.1 Message temporarily deferred (in reply to end of DATA command)"
        ),
        Cause::GreetingTempfail => format!(
            "host {h}[{a}] refused to talk to me: 421 4.7.0 Service not available, closing transmission channel"
        ),
        Cause::ConnectionRefused => format!("connect to {h}[{a}]:{port}: Connection refused"),
        Cause::ConnectionTimedOut => format!("connect to {h}[{a}]:{port}: Connection timed out"),
        Cause::GreetingTimedOut => format!(
            "conversation with {h}[{a}] timed out while receiving the initial server greeting"
        ),
        Cause::DataTimedOut => format!(
            "conversation with {h}[{a}] timed out while sending end of data -- message may be sent more than once"
        ),
        Cause::DnsTempfail => format!(
            "Host or domain name not found. Name service error for name={domain} type=MX: Host not found, try again"
        ),
        Cause::Suspended => "delivery temporarily suspended".to_string(),
        Cause::TransportUnavailable => "mail transport unavailable".to_string(),
        Cause::UnknownUser => format!(
            "host {h}[{a}] said: 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)"
        ),
        Cause::RecipientRejected => format!(
            "host {h}[{a}] said: 550 5.7.1 <{rcpt}>: Recipient address rejected: Access denied (in reply to RCPT TO command)"
        ),
        Cause::DataRejected => format!(
            "host {h}[{a}] said: 550 5.7.1 Message rejected as spam (in reply to end of DATA command)"
        ),
        Cause::MailRejected => format!(
            "host {h}[{a}] said: 550 5.7.1 Sender address rejected: Access denied (in reply to MAIL FROM command)"
        ),
        Cause::DnsNotFound => format!(
            "Host or domain name not found. Name service error for name={domain} type=A: Host not found"
        ),
        // The fallback relay's own lookup: `server` names the relay.
        Cause::FallbackNotFound => format!(
            "Host or domain name not found. Name service error for name={h} type=A: Host not found"
        ),
        Cause::Unavailable => "server unavailable or unable to receive mail".to_string(),
        Cause::InsufficientStorage => format!(
            "host {h}[{a}] said: 452 4.3.1 Insufficient system storage (in reply to end of DATA command)"
        ),
        Cause::AdminExpired => "message is administratively expired".to_string(),
        Cause::QueueWriteError => format!(
            "host {h}[{a}] said: 451 4.3.0 Error: queue file write error (in reply to end of DATA command)"
        ),
    }
}

/// The text of a status line for recipient status `r` of queue file `id`.
pub fn status_text(id: u64, r: &RecipientStatus<'_>, rcpt: &str) -> String {
    let server = r.server.map(|(h, a)| (h, a, r.port));
    match (r.status, r.cause, r.saved) {
        (Status::Sent, _, _) => match (r.agent, r.queued_as) {
            (Agent::Local, _) => "delivered to mailbox".to_string(),
            // amavisd-new answers with the reply of the smtpd it re-injected into, which by
            // its convention listens on the next port (FILTER_README's 10024/10025).
            (Agent::Smtp(t), Some(new)) if t.contains("amavis") => format!(
                "250 2.0.0 from MTA(smtp:[127.0.0.1]:{}): 250 2.0.0 Ok: queued as {}",
                r.port.saturating_add(1),
                queue_id(new)
            ),
            (_, Some(new)) => format!("250 2.0.0 Ok: queued as {}", queue_id(new)),
            _ => format!("250 2.0.0 Ok: queued as {}", remote_queue_id(id, r)),
        },
        // The retry service logs the reason qmgr saved, word for word.
        (_, _, Some(text)) => text.to_string(),
        (_, Some(c), None) => reason(c, rcpt, server, r.destination),
        (_, None, None) => reason(Cause::Unavailable, rcpt, server, r.destination),
    }
}

/// The receiving server's queue ID in `250 … queued as X`: one per mail transaction, so
/// the same for every recipient of one DATA (the file, the server and the instant the
/// transaction ended name it).
fn remote_queue_id(id: u64, r: &RecipientStatus<'_>) -> String {
    let host = r.relay.map_or(0, |(h, _)| {
        h.bytes().fold(0xcbf2_9ce4_8422_2325u64, |a, b| {
            (a ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    });
    format!(
        "{:X}",
        splitmix64(splitmix64(id ^ host) ^ r.done as u64) & 0xFF_FFFF_FFFF
    )
}

/// Writes mail.log lines as events arrive.
pub struct MailLog {
    file: AtomicFile,
    start: i64,
    line: String,
    error: Option<Error>,
    /// Also log qmgr's deferred-scan starts, as a qmgr run with `-v` does.
    pub scans: bool,
    /// The pids of the master, qmgr and pickup now (new processes after a reload or
    /// start), and the next pid handed out.
    master_pid: u32,
    qmgr_pid: u32,
    pickup_pid: u32,
    next_pid: u32,
}

impl MailLog {
    pub fn create(file: AtomicFile, start_unix: i64) -> Self {
        MailLog {
            file,
            start: start_unix,
            line: String::with_capacity(256),
            error: None,
            scans: false,
            master_pid: 860,
            qmgr_pid: QMGR_PID,
            pickup_pid: 870,
            next_pid: 5000,
        }
    }

    fn new_pid(&mut self) -> u32 {
        self.next_pid += 1;
        self.next_pid
    }

    /// postsuper is a process per command: one pid per instant.
    fn postsuper_pid(&self, t: Time) -> u32 {
        pid_for(t as u64, 4000)
    }

    /// The complete log under its temporary name, for the run's set of files.
    pub fn finish(mut self) -> Result<super::Staged, Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.file.finish()
    }

    fn begin(&mut self, t: Time, program: &str, pid: u32) {
        self.line.clear();
        let unix = self.start + t.div_euclid(SECOND);
        let _ = write!(self.line, "{} {HOST} {program}[{pid}]: ", timestamp(unix));
    }

    fn end(&mut self) {
        self.line.push('\n');
        if self.error.is_none()
            && let Err(e) = self.file.write_all(self.line.as_bytes())
        {
            self.error = Some(e);
        }
    }
}

/// The syslog tag of an SMTP client of `transport`: the stock master.cf gives only
/// `relay` its own (`-o syslog_name=postfix/$service_name`, §8.1); every other smtp(8)
/// service logs as `postfix/smtp`.
fn smtp_program(transport: &str) -> &'static str {
    if transport == "relay" {
        "postfix/relay/smtp"
    } else {
        "postfix/smtp"
    }
}

fn pid_for(id: u64, base: u32) -> u32 {
    base + (splitmix64(id) % 97) as u32
}

impl Observer for MailLog {
    fn recipient_outcome(&mut self, _: &RecipientOutcome<'_>) {}

    fn wants_events(&self) -> bool {
        true
    }

    fn event(&mut self, e: &Event<'_>) {
        let qid = queue_id(e.id);
        match e.what {
            Happening::SmtpdClient => {
                // One smtpd session per message, opened and closed around it, so that
                // collate.pl (which groups smtpd lines from `connect from` to `disconnect
                // from` per pid) finds where each one ends.
                let smtpd = pid_for(e.id, 2100);
                self.begin(e.t, "postfix/smtpd", smtpd);
                let _ = write!(self.line, "connect from {CLIENT}");
                self.end();
                self.begin(e.t, "postfix/smtpd", smtpd);
                let _ = write!(self.line, "{qid}: client={CLIENT}");
                self.end();
            }
            Happening::Received {
                via, sender, nrcpt, ..
            } => {
                let smtpd = pid_for(e.id, 2100);
                let client = match via {
                    Via::Reinjected => "localhost[127.0.0.1]",
                    _ => CLIENT,
                };
                match via {
                    // smtpd logged its client= when cleanup gave it the queue ID.
                    Via::Smtp => {}
                    Via::Reinjected => {
                        self.begin(e.t, "postfix/smtpd", smtpd);
                        let _ = write!(self.line, "connect from {client}");
                        self.end();
                        self.begin(e.t, "postfix/smtpd", smtpd);
                        let _ = write!(self.line, "{qid}: client={client}");
                        self.end();
                    }
                    Via::Pickup => {
                        self.begin(e.t, "postfix/pickup", self.pickup_pid);
                        let _ = write!(self.line, "{qid}: uid=1000 from=<{sender}>");
                        self.end();
                    }
                    Via::Notice { .. } => {}
                }
                // The Message-ID header is the message's own: every later queue file of it
                // (re-injected, requeued) carries the one it was first received with.
                self.begin(e.t, "postfix/cleanup", pid_for(e.id, 2200));
                // The Message-ID header is the sender's: the same for the re-injected copy
                // of a filtered message.
                let _ = write!(
                    self.line,
                    "{qid}: message-id=<{}.{}@mailsim.example>",
                    queue_id(e.origin),
                    e.origin
                );
                self.end();
                if matches!(via, Via::Smtp | Via::Reinjected) {
                    // smtpd's per-session command counts (Postfix >= 3.0).
                    self.begin(e.t, "postfix/smtpd", smtpd);
                    let _ = write!(
                        self.line,
                        "disconnect from {client} ehlo=1 mail=1 rcpt={nrcpt} data=1 quit=1 commands={}",
                        u64::from(nrcpt) + 4
                    );
                    self.end();
                }
            }
            Happening::Activated {
                nrcpt,
                size,
                sender,
            } => {
                self.begin(e.t, "postfix/qmgr", self.qmgr_pid);
                let _ = write!(
                    self.line,
                    "{qid}: from=<{sender}>, size={size}, nrcpt={nrcpt} (queue active)"
                );
                self.end();
            }
            Happening::Recipient(r) => {
                let program = match r.agent {
                    Agent::Smtp(t) => smtp_program(t),
                    Agent::Local => "postfix/local",
                    Agent::Retry => "postfix/error",
                };
                let rcpt = match r.recipient {
                    Address::Literal(a) => a.to_string(),
                    a @ Address::Generated { .. } => a.to_string(),
                };
                let relay = match (r.agent, r.relay) {
                    (Agent::Local, _) => "local".to_string(),
                    // log_adhoc.c: a cached session's use count follows the relay.
                    (_, Some((h, a))) if r.conn_use > 0 => {
                        format!("{h}[{a}]:{}, conn_use={}", r.port, r.conn_use)
                    }
                    (_, Some((h, a))) => format!("{h}[{a}]:{}", r.port),
                    (_, None) => "none".to_string(),
                };
                let delay = r.done - r.arrival;
                let a = r.active - r.arrival;
                let (b, c, d) = match (r.handoff, r.setup_done, r.agent) {
                    (None, _, _) => (r.done - r.active, 0, 0),
                    (Some(h), _, Agent::Local | Agent::Retry) => (h - r.active, 0, r.done - h),
                    (Some(h), Some(s), _) => (h - r.active, s - h, r.done - s),
                    (Some(h), None, _) => (h - r.active, r.done - h, 0),
                };
                let dsn = match (r.status, r.cause, r.suspended_by) {
                    (Status::Sent, _, _) => "2.0.0",
                    (_, _, Some(saved)) => saved.dsn(),
                    (_, Some(c), None) => c.dsn(),
                    (_, None, None) => "4.3.0",
                };
                let status = match r.status {
                    Status::Sent => "sent",
                    Status::Deferred => "deferred",
                    Status::Bounced => "bounced",
                };
                let text = status_text(e.id, &r, &rcpt);
                self.begin(r.done, program, r.pid);
                let _ = write!(
                    self.line,
                    "{qid}: to=<{rcpt}>, relay={relay}, delay={}, delays={}/{}/{}/{}, dsn={dsn}, status={status} ({text})",
                    delay_text(delay),
                    delay_text(a),
                    delay_text(b),
                    delay_text(c),
                    delay_text(d)
                );
                self.end();
            }
            Happening::DeferredScan if self.scans => {
                // qmgr_scan.c's verbose line (master.cf `qmgr … qmgr -v`).
                self.begin(e.t, "postfix/qmgr", self.qmgr_pid);
                self.line
                    .push_str("qmgr_scan_start: start deferred queue scan");
                self.end();
            }
            Happening::Deferred { .. }
            | Happening::DeferredScan
            | Happening::DestinationState { .. } => {}
            Happening::LeftActive { deferred, .. } => {
                // postsuper renamed or removed the file under qmgr's feet: qmgr's own
                // rename or remove finds nothing (qmgr_active.c: qmgr_active_defer,
                // qmgr_active_done_3_generic).
                self.begin(e.t, "postfix/qmgr", self.qmgr_pid);
                if deferred {
                    let _ = write!(
                        self.line,
                        "warning: qmgr_active_defer: rename {qid} from active to deferred: No such file or directory"
                    );
                } else {
                    let _ = write!(
                        self.line,
                        "warning: qmgr_active_done_3_generic: remove {qid} from active: No such file or directory"
                    );
                }
                self.end();
            }
            Happening::ClogWarning {
                destination,
                transport,
                entries,
                messages,
                active_limit,
                advice,
            } => {
                // qmgr_entry.c: qmgr_entry_create, line for line.
                let mut lines = vec![format!(
                    "mail for {destination} is using up {entries} of {messages} active queue entries"
                )];
                if (entries as f64 / messages.max(1) as f64) < 0.9 {
                    lines.push("this may slow down other mail deliveries".into());
                }
                match advice {
                    ClogAdvice::ConcurrencyLimit(limit) => lines.push(format!(
                        "you may need to increase the main.cf {transport}_destination_concurrency_limit from {limit}"
                    )),
                    ClogAdvice::ActiveLimit => lines.push(format!(
                        "you may need to increase the main.cf qmgr_message_active_limit from {active_limit}"
                    )),
                    ClogAdvice::SeparateTransport => lines.push(format!(
                        "you may need a separate master.cf transport for {destination}"
                    )),
                    ClogAdvice::Timeouts => {
                        lines.push(format!(
                            "you may need to reduce {transport} connect and helo timeouts"
                        ));
                        lines.push("so that Postfix quickly skips unavailable hosts".into());
                        lines.push(
                            "you may need to increase the main.cf minimal_backoff_time and maximal_backoff_time".into(),
                        );
                        lines.push(
                            "so that Postfix wastes less time on undeliverable mail".into(),
                        );
                        lines.push(format!(
                            "you may need to increase the master.cf {transport} process limit"
                        ));
                    }
                }
                lines.push("please avoid flushing the whole queue when you have".into());
                lines.push("lots of deferred mail, that is bad for performance".into());
                lines.push("to turn off these warnings specify: qmgr_clog_warn_time = 0".into());
                for l in lines {
                    self.begin(e.t, "postfix/qmgr", self.qmgr_pid);
                    let _ = write!(self.line, "warning: {l}");
                    self.end();
                }
            }
            Happening::Command { what, .. } => {
                if matches!(what, "postfix reload" | "postfix start") {
                    // A new qmgr process.
                    self.qmgr_pid = self.qmgr_pid.max(9000) + 1;
                }
            }
            Happening::Removed => {
                self.begin(e.t, "postfix/qmgr", self.qmgr_pid);
                let _ = write!(self.line, "{qid}: removed");
                self.end();
            }
            Happening::Expired { forced, sender } => {
                self.begin(e.t, "postfix/qmgr", self.qmgr_pid);
                let status = if forced { "force-expired" } else { "expired" };
                let _ = write!(
                    self.line,
                    "{qid}: from=<{sender}>, status={status}, returned to sender"
                );
                self.end();
            }
            Happening::NoticeSent {
                notice,
                delay_warning,
            } => {
                self.begin(e.t, "postfix/bounce", pid_for(e.id, 2600));
                let kind = if delay_warning {
                    "delay"
                } else {
                    "non-delivery"
                };
                let _ = write!(
                    self.line,
                    "{qid}: sender {kind} notification: {}",
                    queue_id(notice)
                );
                self.end();
            }
            Happening::PostqueueFatal { site } => {
                // postqueue.c's msg_fatal_status texts.
                self.begin(e.t, "postfix/postqueue", pid_for(e.t as u64, 4100));
                match site {
                    Some(site) => {
                        let _ = write!(
                            self.line,
                            "fatal: Flush service is not configured for destination \"{site}\""
                        );
                    }
                    None => self
                        .line
                        .push_str("fatal: Cannot flush mail queue - mail system is down"),
                }
                self.end();
            }
            Happening::Skipped => {
                self.begin(e.t, "postfix/qmgr", self.qmgr_pid);
                let _ = write!(self.line, "{qid}: skipped, still being delivered");
                self.end();
            }
            Happening::Admin { what, listed } => {
                if listed {
                    self.begin(e.t, "postfix/postsuper", self.postsuper_pid(e.t));
                    let _ = write!(self.line, "{qid}: {what}");
                    self.end();
                }
            }
            Happening::PostsuperSummary { what, count } => {
                self.begin(e.t, "postfix/postsuper", self.postsuper_pid(e.t));
                let plural = if count == 1 { "" } else { "s" };
                let _ = write!(self.line, "{what}: {count} message{plural}");
                self.end();
            }
            Happening::Master(action) => {
                // postfix-script's $INFO line, then the master's own (master.c, master_sig.c).
                let (script, master) = match action {
                    MasterAction::Reload => (
                        "refreshing the Postfix mail system",
                        format!("reload -- version {MAIL_VERSION}, configuration /etc/postfix"),
                    ),
                    MasterAction::Stop => (
                        "stopping the Postfix mail system",
                        "terminating on signal 15".to_string(),
                    ),
                    MasterAction::Start => (
                        "starting the Postfix mail system",
                        format!(
                            "daemon started -- version {MAIL_VERSION}, configuration /etc/postfix"
                        ),
                    ),
                };
                let script_pid = self.new_pid();
                self.begin(e.t, "postfix/postfix-script", script_pid);
                self.line.push_str(script);
                self.end();
                if action == MasterAction::Start {
                    self.master_pid = self.new_pid();
                }
                self.begin(e.t, "postfix/master", self.master_pid);
                self.line.push_str(&master);
                self.end();
                if action != MasterAction::Stop {
                    // A new qmgr and pickup (master_restart_service, master_start_service).
                    self.qmgr_pid = self.new_pid();
                    self.pickup_pid = self.new_pid();
                }
            }
            Happening::Refused(Refusal::WriteError) => {
                // The session got as far as a queue file (its client= is logged); cleanup's
                // write failed (cleanup_out.c), smtpd answered 451 and the file was removed.
                self.begin(e.t, "postfix/cleanup", pid_for(e.id, 2200));
                let _ = write!(
                    self.line,
                    "warning: {qid}: write queue file: No space left on device"
                );
                self.end();
            }
            Happening::Refused(why) => {
                // smtpd_check.c: smtpd_check_size, smtpd_check_queue (log_whatsup, before
                // the sender is known, then the warning).
                let pid = pid_for(e.t as u64, 2100);
                self.begin(e.t, "postfix/smtpd", pid);
                let reply = match why {
                    Refusal::InsufficientStorage { .. } => "452 4.3.1 Insufficient system storage",
                    Refusal::TooLarge | Refusal::WriteError => {
                        "552 5.3.4 Message size exceeds fixed limit"
                    }
                };
                let _ = write!(
                    self.line,
                    "NOQUEUE: reject: MAIL from {CLIENT}: {reply}; proto=ESMTP helo=<{CLIENT_NAME}>"
                );
                self.end();
                if let Refusal::InsufficientStorage { free } = why {
                    self.begin(e.t, "postfix/smtpd", pid);
                    let _ = write!(
                        self.line,
                        "warning: not enough free space in mail queue: {free} bytes < 1.5*message size limit"
                    );
                    self.end();
                }
            }
            Happening::ConnectFailed {
                host,
                address,
                port,
                cause,
                pid,
                transport,
            } => {
                self.begin(e.t, smtp_program(transport), pid);
                let _ = write!(
                    self.line,
                    "{}",
                    reason(cause, "", Some((host, address, port)), host)
                );
                self.end();
            }
            Happening::AgentWarning { text } => {
                self.begin(e.t, "postfix/smtp", pid_for(e.t as u64, 3000));
                let _ = write!(self.line, "warning: {text}");
                self.end();
            }
            Happening::ServerSkipped {
                host,
                address,
                port,
                cause,
                pid,
                recipient,
                destination,
                transport,
            } => {
                // smtp_trouble.c: `msg_info("%s: %s", queue_id, reason)`.
                self.begin(e.t, smtp_program(transport), pid);
                let rcpt = recipient.map(|a| a.to_string()).unwrap_or_default();
                let _ = write!(
                    self.line,
                    "{qid}: {}",
                    reason(cause, &rcpt, Some((host, address, port)), destination)
                );
                self.end();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_formatted_like_format_tv() {
        let ms = |m: i64| m * 1000;
        assert_eq!(delay_text(ms(70)), "0.07");
        assert_eq!(delay_text(ms(500)), "0.5");
        assert_eq!(delay_text(0), "0");
        assert_eq!(delay_text(ms(4)), "0");
        assert_eq!(delay_text(ms(5)), "0.01");
        assert_eq!(delay_text(ms(1_200)), "1.2");
        assert_eq!(delay_text(ms(3_000)), "3");
        assert_eq!(delay_text(ms(9_960)), "10");
        assert_eq!(delay_text(ms(12_400)), "12");
        assert_eq!(delay_text(ms(4_213_000)), "4213");
    }

    #[test]
    fn timestamps_and_dates_round_trip() {
        let t = parse_start("2024-03-12T14:02:11").expect("date");
        assert_eq!(t, 1_710_252_131);
        assert_eq!(timestamp(t), "Mar 12 14:02:11");
        assert_eq!(
            timestamp(parse_start("2026-01-02T03:04:05").expect("date")),
            "Jan 02 03:04:05"
        );
        assert_eq!(
            timestamp(parse_start("2024-02-29T23:59:59").expect("date") + 1),
            "Mar 01 00:00:00"
        );
        assert!(parse_start("2024-13-01T00:00:00").is_err());
    }

    #[test]
    fn queue_ids_are_ten_hex_digits_and_unique() {
        let ids: std::collections::HashSet<String> = (1..10_000).map(queue_id).collect();
        assert_eq!(ids.len(), 9_999);
        assert!(
            ids.iter()
                .all(|q| q.len() == 10 && q.chars().all(|c| c.is_ascii_hexdigit()))
        );
    }
}
