//! `mailsim mailq`: the queue at a moment, as `postqueue -p` (mailq) and `postqueue -j`
//! print it (§8.2, §8.3: `showq_compat.c`, `showq_json.c`).

use super::maillog::{queue_id, reason};
use crate::engine::time::{SECOND, Time};
use std::fmt::Write;

/// A queue file as showq reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueFile {
    pub id: u64,
    /// maildrop, incoming, active, deferred or hold.
    pub queue: &'static str,
    pub size: u64,
    pub arrival: Time,
    /// Empty for the null sender.
    pub sender: String,
    pub forced_expire: bool,
    /// Pending recipients with the reason of their last deferral, if any.
    pub recipients: Vec<(String, Option<String>)>,
}

/// Listing order: maildrop, active, incoming, deferred, hold (showq's).
pub fn queue_rank(queue: &str) -> u8 {
    match queue {
        "maildrop" => 0,
        "active" => 1,
        "incoming" => 2,
        "deferred" => 3,
        _ => 4,
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// asctime's `Tue Mar 12 14:02:11 2024`.
pub fn asctime(unix: i64) -> String {
    let day = DAYS[unix.div_euclid(86_400).rem_euclid(7) as usize];
    let stamp = super::maillog::timestamp(unix);
    let (month_day, time) = stamp.split_at(6);
    let (month, d) = month_day.split_at(3);
    let d: u32 = d.trim().parse().unwrap_or(1);
    let year = super::maillog::year_of(unix).unwrap_or(1970);
    format!("{day} {month} {d:>2}{time} {year}")
}

/// `postqueue -p`.
pub fn format_p(files: &[QueueFile], start_unix: i64) -> String {
    if files.is_empty() {
        return "Mail queue is empty\n".to_string();
    }
    let mut s =
        String::from("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    let mut bytes: u64 = 0;
    for f in files {
        bytes += f.size;
        let mark = match (f.queue, f.forced_expire) {
            ("active", _) => "*",
            ("hold", _) => "!",
            (_, true) => "#",
            _ => "",
        };
        let id = format!("{}{mark}", queue_id(f.id));
        let when = asctime(start_unix + f.arrival.div_euclid(SECOND));
        let sender = if f.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &f.sender
        };
        let when20: String = when.chars().take(20).collect();
        let _ = writeln!(s, "{id:<11} {:>7} {when20:<20} {sender}", f.size);
        // Deferred recipients grouped under their reason first, then the others.
        let mut reasons: Vec<&str> = Vec::new();
        for (_, r) in &f.recipients {
            if let Some(r) = r
                && !reasons.contains(&r.as_str())
            {
                reasons.push(r);
            }
        }
        for reason in &reasons {
            let pad = 76usize.saturating_sub(reason.len());
            let _ = writeln!(s, "{:pad$}({reason})", "");
            for (rcpt, _) in f
                .recipients
                .iter()
                .filter(|(_, r)| r.as_deref() == Some(*reason))
            {
                let _ = writeln!(s, "{:41}{rcpt}", "");
            }
        }
        for (rcpt, _) in f.recipients.iter().filter(|(_, r)| r.is_none()) {
            let _ = writeln!(s, "{:41}{rcpt}", "");
        }
        s.push('\n');
    }
    let n = files.len();
    let _ = writeln!(
        s,
        "-- {} Kbytes in {n} Request{}.",
        bytes / 1024,
        if n == 1 { "" } else { "s" }
    );
    s
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `postqueue -j`: one JSON object per line.
pub fn format_j(files: &[QueueFile], start_unix: i64) -> String {
    let mut s = String::new();
    for f in files {
        let sender = if f.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &f.sender
        };
        let _ = write!(
            s,
            "{{\"queue_name\": {}, \"queue_id\": {}, \"arrival_time\": {}, \"message_size\": {}, \"forced_expire\": {}, \"sender\": {}, \"recipients\": [",
            json_string(f.queue),
            json_string(&queue_id(f.id)),
            start_unix + f.arrival.div_euclid(SECOND),
            f.size,
            f.forced_expire,
            json_string(sender)
        );
        for (i, (rcpt, why)) in f.recipients.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "{{\"address\": {}", json_string(rcpt));
            if let Some(why) = why {
                let _ = write!(s, ", \"delay_reason\": {}", json_string(why));
            }
            s.push('}');
        }
        s.push_str("]}\n");
    }
    s
}

/// The defer-log text of a recipient deferred for `cause` (mailq shows it).
pub fn defer_reason(
    cause: crate::observe::Cause,
    suspended: bool,
    rcpt: &str,
    domain: &str,
    server: Option<(&str, &str, u16)>,
) -> String {
    let text = reason(cause, rcpt, server, domain);
    if suspended {
        format!("delivery temporarily suspended: {text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<QueueFile> {
        vec![
            QueueFile {
                id: 1,
                queue: "active",
                size: 3142,
                arrival: 0,
                sender: "alice@example.org".into(),
                forced_expire: false,
                recipients: vec![("bob@example.net".into(), None)],
            },
            QueueFile {
                id: 2,
                queue: "deferred",
                size: 18734,
                arrival: -2486 * SECOND,
                sender: "newsletter@example.org".into(),
                forced_expire: false,
                recipients: vec![
                    (
                        "carol@example.com".into(),
                        Some(
                            "connect to mx1.example.com[203.0.113.25]:25: Connection timed out"
                                .into(),
                        ),
                    ),
                    (
                        "dave@example.com".into(),
                        Some(
                            "connect to mx1.example.com[203.0.113.25]:25: Connection timed out"
                                .into(),
                        ),
                    ),
                ],
            },
            QueueFile {
                id: 3,
                queue: "hold",
                size: 905,
                arrival: -(86_400 + 5 * 3600 + 2 * 60 + 9) * SECOND,
                sender: String::new(),
                forced_expire: false,
                recipients: vec![("eve@example.edu".into(), None)],
            },
        ]
    }

    #[test]
    fn postqueue_p_layout_by_hand() {
        // Time 0 is Tue Mar 12 14:02:11 2024 (UTC).
        let start = super::super::maillog::parse_start("2024-03-12T14:02:11").expect("date");
        let text = format_p(&sample(), start);
        let q = |id| queue_id(id);
        let expected = format!(
            "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
{}*    3142 Tue Mar 12 14:02:11  alice@example.org
                                         bob@example.net

{}    18734 Tue Mar 12 13:20:45  newsletter@example.org
           (connect to mx1.example.com[203.0.113.25]:25: Connection timed out)
                                         carol@example.com
                                         dave@example.com

{}!     905 Mon Mar 11 09:00:02  MAILER-DAEMON
                                         eve@example.edu

-- 22 Kbytes in 3 Requests.
",
            q(1),
            q(2),
            q(3)
        );
        assert_eq!(text, expected);
        assert_eq!(format_p(&[], start), "Mail queue is empty\n");
    }

    #[test]
    fn postqueue_j_lines_by_hand() {
        let start = super::super::maillog::parse_start("2024-03-12T14:02:11").expect("date");
        let text = format_j(&sample()[1..2], start);
        let expected = format!(
            "{{\"queue_name\": \"deferred\", \"queue_id\": \"{}\", \"arrival_time\": 1710249645, \"message_size\": 18734, \"forced_expire\": false, \"sender\": \"newsletter@example.org\", \"recipients\": [{{\"address\": \"carol@example.com\", \"delay_reason\": \"connect to mx1.example.com[203.0.113.25]:25: Connection timed out\"}}, {{\"address\": \"dave@example.com\", \"delay_reason\": \"connect to mx1.example.com[203.0.113.25]:25: Connection timed out\"}}]}}\n",
            queue_id(2)
        );
        assert_eq!(text, expected);
    }
}
