//! `mailsim qshape`: Postfix's qshape table (§8.4, `auxiliary/qshape/qshape.pl`): pending
//! recipients per recipient domain (or one sender per message with `--sender`) by age
//! since arrival, in buckets of 5, 10, 20 … 1280 minutes and 1280+.

use super::mailq::QueueFile;
use crate::engine::time::{SECOND, Time};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Bucket headings: upper bounds in minutes, then "1280+".
pub const HEADINGS: [&str; 10] = [
    "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+",
];

/// The bucket of an age in seconds: [0,5) min, [5,10), [10,20), … [640,1280), ≥ 1280.
pub fn bucket(age: Time) -> usize {
    let minutes = age.max(0) / (60 * SECOND);
    let mut upper = 5;
    for b in 0..9 {
        if minutes < upper {
            return b;
        }
        upper *= 2;
    }
    9
}

/// Rows: (name, total, buckets), TOTAL first, then by total descending (then by name).
pub fn table(
    files: &[QueueFile],
    queues: &[&str],
    by_sender: bool,
    now: Time,
) -> Vec<(String, u64, [u64; 10])> {
    let mut rows: BTreeMap<String, [u64; 10]> = BTreeMap::new();
    let mut total = [0u64; 10];
    for f in files.iter().filter(|f| queues.contains(&f.queue)) {
        let b = bucket(now - f.arrival);
        if by_sender {
            let name = if f.sender.is_empty() {
                "MAILER-DAEMON".to_string()
            } else {
                f.sender.rsplit('@').next().unwrap_or(&f.sender).to_string()
            };
            rows.entry(name).or_default()[b] += 1;
            total[b] += 1;
        } else {
            for (rcpt, _) in &f.recipients {
                let domain = rcpt.rsplit('@').next().unwrap_or(rcpt).to_ascii_lowercase();
                rows.entry(domain).or_default()[b] += 1;
                total[b] += 1;
            }
        }
    }
    let mut out: Vec<(String, u64, [u64; 10])> = rows
        .into_iter()
        .map(|(name, b)| (name, b.iter().sum(), b))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out.insert(0, ("TOTAL".into(), total.iter().sum(), total));
    out
}

/// The table as qshape prints it: each count column as wide as its heading or largest
/// value plus one, the name column filling the line to 80 characters.
pub fn format(rows: &[(String, u64, [u64; 10])]) -> String {
    let digits = |v: u64| v.to_string().len();
    let t_width = rows.iter().map(|r| digits(r.1)).max().unwrap_or(1).max(1) + 1;
    let widths: Vec<usize> = (0..10)
        .map(|b| {
            rows.iter()
                .map(|r| digits(r.2[b]))
                .max()
                .unwrap_or(1)
                .max(HEADINGS[b].len())
                + 1
        })
        .collect();
    let used = t_width + widths.iter().sum::<usize>();
    let name_width = 80usize
        .saturating_sub(used)
        .max(rows.iter().map(|r| r.0.len()).max().unwrap_or(5) + 1);
    let mut s = String::new();
    let _ = write!(s, "{:>name_width$}{:>t_width$}", "", "T");
    for (b, h) in HEADINGS.iter().enumerate() {
        let _ = write!(s, "{:>w$}", h, w = widths[b]);
    }
    s.push('\n');
    for (name, total, buckets) in rows {
        let _ = write!(s, "{name:>name_width$}{total:>t_width$}");
        for (b, v) in buckets.iter().enumerate() {
            let _ = write!(s, "{v:>w$}", w = widths[b]);
        }
        s.push('\n');
    }
    s
}

/// `qshape.csv` rows for one sample: `time_s,queue,domain,total,5,10,…,1280+`.
pub fn csv_rows(out: &mut String, t: Time, queue_label: &str, rows: &[(String, u64, [u64; 10])]) {
    for (name, total, buckets) in rows {
        crate::engine::time::write_seconds(out, t);
        let _ = write!(out, ",{queue_label},{name},{total}");
        for v in buckets {
            let _ = write!(out, ",{v}");
        }
        out.push('\n');
    }
}

pub const CSV_HEADER: &str = "time_s,queue,domain,total,5,10,20,40,80,160,320,640,1280,1280+\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn file(queue: &'static str, age_min: i64, rcpts: &[&str], sender: &str) -> QueueFile {
        QueueFile {
            id: 1,
            queue,
            size: 1000,
            arrival: -age_min * 60 * SECOND,
            sender: sender.into(),
            forced_expire: false,
            recipients: rcpts.iter().map(|r| (r.to_string(), None)).collect(),
        }
    }

    #[test]
    fn buckets_double_from_five_minutes() {
        let m = |x: i64| x * 60 * SECOND;
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(m(5) - 1), 0);
        assert_eq!(bucket(m(5)), 1);
        assert_eq!(bucket(m(19)), 2);
        assert_eq!(bucket(m(640)), 8);
        assert_eq!(bucket(m(1279)), 8);
        assert_eq!(bucket(m(1280)), 9);
    }

    #[test]
    fn the_table_by_hand() {
        let files = vec![
            file(
                "deferred",
                3,
                &["a@example.com", "b@example.com", "c@example.net"],
                "x@example.org",
            ),
            file("deferred", 7, &["d@example.com"], "x@example.org"),
            file("deferred", 2000, &["e@example.net"], ""),
            file("active", 1, &["f@example.com"], "x@example.org"),
        ];
        let rows = table(&files, &["deferred"], false, 0);
        // Three recipients 3 min old (two at example.com), one 7 min, one 2000 min.
        assert_eq!(rows[0], ("TOTAL".into(), 5, [3, 1, 0, 0, 0, 0, 0, 0, 0, 1]));
        assert_eq!(
            rows[1],
            ("example.com".into(), 3, [2, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(
            rows[2],
            ("example.net".into(), 2, [1, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        );
        // Column widths: heading or largest value + 1; the name column fills 80.
        let expected =
            "                                          T 5 10 20 40 80 160 320 640 1280 1280+
                                    TOTAL 5 3  1  0  0  0   0   0   0    0     1
                              example.com 3 2  1  0  0  0   0   0   0    0     0
                              example.net 2 1  0  0  0  0   0   0   0    0     1
";
        assert!(expected.lines().all(|l| l.len() == 80));
        assert_eq!(format(&rows), expected);
        let senders = table(&files, &["deferred"], true, 0);
        assert_eq!(senders[0].1, 3);
        assert_eq!(
            senders[1],
            ("example.org".into(), 2, [1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(senders[2].0, "MAILER-DAEMON");
    }

    #[test]
    fn the_real_scripts_layout() {
        // Rows of the example our notes recorded from qshape.pl 3.7 (postfix-model.md §8.4).
        let rows = vec![
            ("TOTAL".to_string(), 53, [11, 1, 5, 2, 7, 7, 6, 3, 3, 8]),
            (
                "example.com".to_string(),
                40,
                [10, 1, 2, 2, 5, 5, 4, 2, 2, 7],
            ),
            ("example.net".to_string(), 9, [1, 0, 2, 0, 1, 1, 1, 1, 1, 1]),
            (
                "mail.example.edu".to_string(),
                4,
                [0, 0, 1, 0, 1, 1, 1, 0, 0, 0],
            ),
        ];
        let expected =
            "                                         T  5 10 20 40 80 160 320 640 1280 1280+
                                  TOTAL 53 11  1  5  2  7   7   6   3    3     8
                            example.com 40 10  1  2  2  5   5   4   2    2     7
                            example.net  9  1  0  2  0  1   1   1   1    1     1
                       mail.example.edu  4  0  0  1  0  1   1   1   0    0     0
";
        assert_eq!(format(&rows), expected);
    }
}
