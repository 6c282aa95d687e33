//! `mailsim mailq`: the queue at a moment, as `postqueue -p` (mailq) and `postqueue -j`
//! print it (§8.2, §8.3: `showq_compat.c`, `showq_json.c`).

use super::maillog::queue_id;
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
        // showq_compat.c: `*` (active) or `!` (hold), then `#` if force-expired.
        let mut mark = match f.queue {
            "active" => "*",
            "hold" => "!",
            _ => "",
        }
        .to_string();
        if f.forced_expire {
            mark.push('#');
        }
        let id = format!("{}{mark}", queue_id(f.id));
        let when = asctime(start_unix + f.arrival.div_euclid(SECOND));
        let sender = if f.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &f.sender
        };
        let when20: String = when.chars().take(20).collect();
        let _ = writeln!(s, "{id:<11} {:>7} {when20:<20} {sender}", f.size);
        // Recipients in showq's order (defer-log records first); a "(reason)" line
        // whenever the reason differs from the previous recipient's, "(reason
        // unavailable)" when a recipient without one follows one with one.
        let mut saved = "";
        for (rcpt, why) in &f.recipients {
            let why = why.as_deref().unwrap_or("");
            if why != saved {
                saved = why;
                let shown = if why.is_empty() {
                    "reason unavailable"
                } else {
                    why
                };
                let pad = 76usize.saturating_sub(shown.len());
                let _ = writeln!(s, "{:pad$}({shown})", "");
            }
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

    #[test]
    fn markers_combine_and_reasons_follow_the_defer_log_order() {
        // showq_compat.c: `!` then `#` (held and force-expired); a "(reason)" line each time
        // the reason changes between consecutive recipients, so interleaved reasons repeat;
        // "(reason unavailable)" when a recipient without a reason follows one with one.
        let start = super::super::maillog::parse_start("2024-03-12T14:02:11").expect("date");
        let refused = "connect to mx.a.test[192.0.2.1]:25: Connection refused".to_string();
        let grey = "host mx.b.test[192.0.2.2] said: 450 4.2.0 Greylisted".to_string();
        let files = vec![
            QueueFile {
                id: 7,
                queue: "hold",
                size: 1000,
                arrival: 0,
                sender: "s@example.org".into(),
                forced_expire: true,
                recipients: vec![
                    ("a1@a.test".into(), Some(refused.clone())),
                    ("b1@b.test".into(), Some(grey.clone())),
                    ("a2@a.test".into(), Some(refused.clone())),
                    ("c1@c.test".into(), None),
                    ("c2@c.test".into(), None),
                ],
            },
            QueueFile {
                id: 8,
                queue: "active",
                size: 2048,
                arrival: 0,
                sender: "s@example.org".into(),
                forced_expire: true,
                recipients: vec![("d@d.test".into(), None)],
            },
        ];
        let q = |id| queue_id(id);
        let expected = format!(
            "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------
{}!#    1000 Tue Mar 12 14:02:11  s@example.org
                      (connect to mx.a.test[192.0.2.1]:25: Connection refused)
                                         a1@a.test
                        (host mx.b.test[192.0.2.2] said: 450 4.2.0 Greylisted)
                                         b1@b.test
                      (connect to mx.a.test[192.0.2.1]:25: Connection refused)
                                         a2@a.test
                                                          (reason unavailable)
                                         c1@c.test
                                         c2@c.test

{}*#    2048 Tue Mar 12 14:02:11  s@example.org
                                         d@d.test

-- 2 Kbytes in 2 Requests.
",
            q(7),
            q(8)
        );
        assert_eq!(format_p(&files, start), expected);
    }
}
