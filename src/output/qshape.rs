//! `mailsim qshape`: Postfix's qshape table (§8.4), laid out as `auxiliary/qshape/qshape.pl`
//! of 3.7.22 lays it out: pending recipients per recipient domain (or one sender per
//! message with `--sender`) by age since arrival, in buckets of 5, 10, 20 … 1280 minutes
//! and 1280+.
//!
//! qshape.pl's rules, followed here: ages in whole seconds (`time` minus the `T` record's
//! seconds); bucket 1 below one tick (5 min), then `2 + int(log2(minutes / 5))`, the last
//! one open; a column is as wide as the TOTAL value or its heading, plus one, and at least
//! 3; the domain field takes the rest of 80 columns, at least 18, and a longer name shows
//! as `+` and its tail; rows (TOTAL among them) by count, then by name length.

use super::mailq::QueueFile;
use crate::engine::time::{SECOND, Time};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Bucket headings: upper bounds in minutes, then "1280+".
pub const HEADINGS: [&str; 10] = [
    "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+",
];

/// qshape's line width and the least width of its domain field (`$width`, `$dwidth`).
const WIDTH: usize = 80;
const MIN_NAME_WIDTH: usize = 18;

/// The bucket (0-based) of a queue file that arrived at `arrival` seen at `now`, both
/// truncated to whole seconds as qshape.pl sees them: [0,5) min, [5,10), [10,20), …
/// [640,1280), ≥ 1280.
pub fn bucket(now: Time, arrival: Time) -> usize {
    let age = now.div_euclid(SECOND) - arrival.div_euclid(SECOND);
    // `2 + int(log(m)/log(2))` for m = age / 300 s ≥ 1, exactly: the largest k with
    // 300·2^k ≤ age.
    let mut b = 0;
    let mut bound: i64 = 300;
    while b < 9 && age >= bound {
        b += 1;
        bound *= 2;
    }
    b
}

/// qshape.pl's name for an address: the domain after the last `@`, lower case, `..`
/// squeezed and one leading and trailing dot dropped; the null sender is MAILER-DAEMON.
fn domain_of(address: &str) -> String {
    let a = address.to_ascii_lowercase();
    if a.is_empty() {
        return "MAILER-DAEMON".into();
    }
    let mut d = a.rsplit('@').next().unwrap_or(&a).to_string();
    while d.contains("..") {
        d = d.replace("..", ".");
    }
    let d = d.strip_prefix('.').unwrap_or(&d);
    let d = d.strip_suffix('.').unwrap_or(d);
    d.to_string()
}

/// qshape.pl's row order: count descending, then shorter names first (then by name, where
/// Perl's hash order would decide).
pub fn sort_rows(rows: &mut [(String, u64, [u64; 10])]) {
    rows.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.len().cmp(&b.0.len()))
            .then_with(|| a.0.cmp(&b.0))
    });
}

/// Rows: (name, total, buckets), TOTAL among them, in qshape's order.
pub fn table(
    files: &[QueueFile],
    queues: &[&str],
    by_sender: bool,
    now: Time,
) -> Vec<(String, u64, [u64; 10])> {
    let mut rows: BTreeMap<String, [u64; 10]> = BTreeMap::new();
    let mut total = [0u64; 10];
    for f in files.iter().filter(|f| queues.contains(&f.queue)) {
        let b = bucket(now, f.arrival);
        if by_sender {
            rows.entry(domain_of(&f.sender)).or_default()[b] += 1;
            total[b] += 1;
        } else {
            for (rcpt, _) in &f.recipients {
                rows.entry(domain_of(rcpt)).or_default()[b] += 1;
                total[b] += 1;
            }
        }
    }
    let mut out: Vec<(String, u64, [u64; 10])> = rows
        .into_iter()
        .map(|(name, b)| (name, b.iter().sum(), b))
        .collect();
    out.push(("TOTAL".into(), total.iter().sum(), total));
    sort_rows(&mut out);
    out
}

/// The table as qshape.pl prints it (`results`, `pdomain`).
pub fn format(rows: &[(String, u64, [u64; 10])]) -> String {
    let total = rows
        .iter()
        .find(|r| r.0 == "TOTAL")
        .map(|r| (r.1, r.2))
        .unwrap_or((0, [0; 10]));
    let width = |value: u64, heading: &str| {
        let l = value.to_string().len().max(heading.len());
        if l > 2 { l + 1 } else { 3 }
    };
    let t_width = width(total.0, "T");
    let widths: Vec<usize> = (0..10).map(|b| width(total.1[b], HEADINGS[b])).collect();
    let used = t_width + widths.iter().sum::<usize>();
    let name_width = WIDTH.saturating_sub(used).max(MIN_NAME_WIDTH);
    let name = |s: &mut String, n: &str| {
        if n.len() > name_width {
            // "+" and the name's last name_width − 1 characters.
            let tail: String = n
                .chars()
                .skip(n.chars().count() - (name_width - 1))
                .collect();
            let _ = write!(s, "+{tail}");
        } else {
            let _ = write!(s, "{n:>name_width$}");
        }
    };
    let mut s = String::new();
    name(&mut s, "");
    let _ = write!(s, "{:>t_width$}", "T");
    for (b, h) in HEADINGS.iter().enumerate() {
        let _ = write!(s, "{:>w$}", h, w = widths[b]);
    }
    s.push('\n');
    for (n, t, buckets) in rows {
        name(&mut s, n);
        let _ = write!(s, "{t:>t_width$}");
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

    /// A queue file `age_s` seconds old at time 0.
    fn file(age_s: i64, rcpts: &[&str], sender: &str) -> QueueFile {
        QueueFile {
            id: 1,
            queue: "deferred",
            size: 1000,
            arrival: -age_s * SECOND,
            sender: sender.into(),
            forced_expire: false,
            recipients: rcpts.iter().map(|r| (r.to_string(), None)).collect(),
        }
    }

    fn shape(files: &[QueueFile], by_sender: bool) -> String {
        format(&table(files, &["deferred"], by_sender, 0))
    }

    #[test]
    fn buckets_are_qshape_pls_in_whole_seconds() {
        let s = |x: i64| x * SECOND;
        // 2 + int(log2(m)), m = age / 300 s: exact at the powers of two.
        for (age, b) in [
            (0, 0),
            (299, 0),
            (300, 1),
            (599, 1),
            (600, 2),
            (1199, 2),
            (1200, 3),
            (76_799, 8),
            (76_800, 9),
            (10_000_000, 9),
        ] {
            assert_eq!(bucket(s(age), 0), b, "{age} s");
        }
        // Both times are truncated to seconds first: 300.2 − 0.5 is 300 s for qshape.
        assert_eq!(bucket(s(300) + SECOND / 5, SECOND / 2), 1);
    }

    // The expected tables below are what qshape.pl of Postfix 3.7.22 printed for queue
    // files written with the same arrival times, senders and recipients (a `C`, `T`, `S`,
    // `R`…, `M`, `X`, `E` record file of mode 0700 per message, read from an absolute
    // directory path).

    #[test]
    fn the_table_as_qshape_pl_prints_it() {
        let files = vec![
            file(
                180,
                &["a@example.com", "b@example.com", "c@example.net"],
                "x@example.org",
            ),
            file(420, &["d@example.com"], "x@example.org"),
            file(120_000, &["e@example.net"], ""),
        ];
        // Every column at least 3 wide; the domain field 80 − 41 = 39.
        assert_eq!(
            shape(&files, false),
            "                                         T  5 10 20 40 80 160 320 640 1280 1280+
                                  TOTAL  5  3  1  0  0  0   0   0   0    0     1
                            example.com  3  2  1  0  0  0   0   0   0    0     0
                            example.net  2  1  0  0  0  0   0   0   0    0     1
"
        );
        assert_eq!(
            shape(&files, true),
            "                                         T  5 10 20 40 80 160 320 640 1280 1280+
                                  TOTAL  3  1  1  0  0  0   0   0   0    0     1
                            example.org  2  1  1  0  0  0   0   0   0    0     0
                          MAILER-DAEMON  1  0  0  0  0  0   0   0   0    0     1
"
        );
    }

    #[test]
    fn ties_go_to_the_shorter_name_even_before_total() {
        assert_eq!(
            shape(&[file(60, &["u@a.io"], "s@x.org")], false),
            "                                         T  5 10 20 40 80 160 320 640 1280 1280+
                                   a.io  1  1  0  0  0  0   0   0   0    0     0
                                  TOTAL  1  1  0  0  0  0   0   0   0    0     0
"
        );
    }

    #[test]
    fn a_long_domain_keeps_its_tail_and_wide_totals_widen_their_columns() {
        let long = "u@mx-gateway.very-long-subdomain.example-hosting.test";
        assert_eq!(
            shape(
                &[
                    file(700, &[long], "s@x.org"),
                    file(100, &["v@d.test"], "s@x.org")
                ],
                false
            ),
            "                                         T  5 10 20 40 80 160 320 640 1280 1280+
                                  TOTAL  2  1  0  1  0  0   0   0   0    0     0
                                 d.test  1  1  0  0  0  0   0   0   0    0     0
+ry-long-subdomain.example-hosting.test  1  0  0  1  0  0   0   0   0    0     0
"
        );
        let mut files: Vec<QueueFile> = (0..1234)
            .map(|i| file(30, &[&format!("u{i}@big.example")], "s@x.org"))
            .collect();
        files.extend((0..5).map(|i| file(3000, &[&format!("w{i}@small.example")], "s@x.org")));
        files.push(file(90_000, &["z@Old.Example."], "s@x.org"));
        assert_eq!(
            shape(&files, false),
            "                                       T    5 10 20 40 80 160 320 640 1280 1280+
                              TOTAL 1240 1234  0  0  0  5   0   0   0    0     1
                        big.example 1234 1234  0  0  0  0   0   0   0    0     0
                      small.example    5    0  0  0  0  5   0   0   0    0     0
                        old.example    1    0  0  0  0  0   0   0   0    0     1
"
        );
        for l in shape(&files, false).lines() {
            assert_eq!(l.len(), 80, "{l}");
        }
    }
}
