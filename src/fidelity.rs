//! Fidelity: a scenario's simulation next to a trace of the same scenario recorded on a real
//! Postfix (`validation/record.py`, which writes mailsim's own `queues.csv` and
//! `deliveries.csv` plus a `meta.json`).
//!
//! The simulation replays the recorded run as closely as the recording allows: qmgr's start
//! instant is the one measured on the real host (`meta.json`'s `qmgr_started_s`), and the
//! messages arrive when the recorder's smtpd sessions actually offered them (a burst of
//! hundreds takes smtpd a second or so to accept), for a scenario with one traffic stream
//! (a trace does not say which stream a message came from). What is compared:
//! - final counts of the traffic recipients (sent, bounced, expired, still queued);
//! - the drain time (last final status − first arrival);
//! - peaks and the curves of the active and deferred queues, as the mean absolute difference
//!   over the recorded samples, relative to the real peak;
//! - per recipient: the number of delivery attempts, and when it reached its final status.

use crate::engine::time::{SECOND, Time, as_seconds_f64};
use crate::error::Error;
use crate::observe::{Address, FinalStatus, Observer, RecipientOutcome};
use crate::output::queues::QueueSeries;
use crate::postfix::QueueCounts;
use crate::scenario::{QmgrStart, Scenario};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// One recipient's outcome, from either side.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub message_id: u64,
    pub arrival: f64,
    pub finished: Option<f64>,
    pub attempts: u32,
    pub status: String,
}

/// A recorded run (a `real/` folder).
pub struct Trace {
    pub queues: QueueSeries,
    /// By recipient address: traffic recipients only.
    pub recipients: HashMap<String, Outcome>,
    /// When qmgr started, relative to the trace's time 0 (from `meta.json`).
    pub qmgr_started: Option<Time>,
    pub postfix_version: Option<String>,
}

impl Trace {
    pub fn load(dir: &Path) -> Result<Trace, Error> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| Error::io("cannot read", &path, e))
        };
        let queues = QueueSeries::from_csv(&read("queues.csv")?)
            .map_err(|e| Error::Runtime(format!("{}: {e}", dir.join("queues.csv").display())))?;
        let recipients = parse_deliveries(&read("deliveries.csv")?).map_err(|e| {
            Error::Runtime(format!("{}: {e}", dir.join("deliveries.csv").display()))
        })?;
        let (mut qmgr_started, mut postfix_version) = (None, None);
        if let Ok(text) = read("meta.json") {
            let meta: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::Runtime(format!("{}: {e}", dir.join("meta.json").display())))?;
            qmgr_started = meta["qmgr_started_s"]
                .as_f64()
                .map(|s| (s * SECOND as f64).round() as Time);
            postfix_version = meta["postfix_version"].as_str().map(str::to_string);
        }
        Ok(Trace {
            queues,
            recipients,
            qmgr_started,
            postfix_version,
        })
    }
}

/// `deliveries.csv` rows of traffic recipients (Postfix's own notices are left out: their
/// addresses are the senders', shared by every notice).
fn parse_deliveries(text: &str) -> Result<HashMap<String, Outcome>, String> {
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    let mut out = HashMap::new();
    for (n, row) in rows.records().enumerate() {
        let row = row.map_err(|e| format!("row {}: {e}", n + 2))?;
        let bad = || format!("row {}: not a deliveries.csv row", n + 2);
        if row.len() != 8 {
            return Err(bad());
        }
        if &row[2] == "local" {
            continue;
        }
        let secs = |s: &str| -> Result<Option<f64>, String> {
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse().map(Some).map_err(|_| bad())
            }
        };
        out.insert(
            row[1].to_string(),
            Outcome {
                message_id: row[0].parse().map_err(|_| bad())?,
                arrival: secs(&row[3])?.ok_or_else(bad)?,
                finished: secs(&row[4])?,
                attempts: row[6].parse().map_err(|_| bad())?,
                status: row[7].to_string(),
            },
        );
    }
    Ok(out)
}

/// Collects the simulation's traffic outcomes, with each recipient's place in its message
/// so that it can be renamed after the recorded message it replays.
#[derive(Default)]
struct Outcomes(Vec<(Recipient, Outcome)>);

/// A simulated recipient: a generated mailbox of message `message` (the simulation's id),
/// or a literal address.
enum Recipient {
    Generated {
        message: u64,
        index: u32,
        domain: String,
    },
    Literal(String),
}

impl Observer for Outcomes {
    fn recipient_outcome(&mut self, o: &RecipientOutcome<'_>) {
        if o.notice {
            return;
        }
        let recipient = match o.recipient {
            Address::Generated {
                message,
                index,
                domain,
            } => Recipient::Generated {
                message,
                index,
                domain: domain.to_string(),
            },
            Address::Literal(a) => Recipient::Literal(a.to_string()),
        };
        self.0.push((
            recipient,
            Outcome {
                message_id: o.message_id,
                arrival: as_seconds_f64(o.arrival),
                finished: o.finished.map(as_seconds_f64),
                attempts: o.attempts,
                status: match o.status {
                    FinalStatus::Sent => "sent",
                    FinalStatus::Bounced => "bounced",
                    FinalStatus::Expired => "expired",
                    FinalStatus::Deleted => "deleted",
                    FinalStatus::Queued => "queued",
                }
                .to_string(),
            },
        ));
    }
}

impl Outcomes {
    /// The outcomes by recipient address. `rename` maps a simulated message id to the id
    /// of the recorded message it replays (generated mailboxes carry the message id).
    fn by_address(self, rename: &HashMap<u64, u64>) -> HashMap<String, Outcome> {
        self.0
            .into_iter()
            .map(|(r, mut o)| {
                let address = match r {
                    Recipient::Generated {
                        message,
                        index,
                        domain,
                    } => {
                        let id = rename.get(&message).copied().unwrap_or(message);
                        o.message_id = id;
                        Address::Generated {
                            message: id,
                            index,
                            domain: &domain,
                        }
                        .to_string()
                    }
                    Recipient::Literal(a) => a,
                };
                (address, o)
            })
            .collect()
    }
}

/// Message ids by arrival: (first arrival, id) in order.
fn arrival_order<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> Vec<u64> {
    let mut first: HashMap<u64, f64> = HashMap::new();
    for o in outcomes {
        let a = first.entry(o.message_id).or_insert(o.arrival);
        *a = a.min(o.arrival);
    }
    let mut order: Vec<(f64, u64)> = first.into_iter().map(|(m, a)| (a, m)).collect();
    order.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    order.into_iter().map(|(_, m)| m).collect()
}

/// A figure on both sides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    pub real: f64,
    pub sim: f64,
}

impl Pair {
    /// |sim − real| / real (0 when both are 0).
    pub fn relative_error(&self) -> f64 {
        if self.real == 0.0 {
            if self.sim == 0.0 { 0.0 } else { f64::INFINITY }
        } else {
            (self.sim - self.real).abs() / self.real
        }
    }
}

/// How far a queue's simulated curve is from the recorded one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Curve {
    pub peak: Pair,
    /// Mean |sim − real| over the recorded samples.
    pub mean_abs_diff: f64,
}

impl Curve {
    /// The mean absolute difference relative to the real peak.
    pub fn relative(&self) -> f64 {
        if self.peak.real == 0.0 {
            self.mean_abs_diff
        } else {
            self.mean_abs_diff / self.peak.real
        }
    }
}

pub struct Comparison {
    pub name: String,
    pub postfix_version: Option<String>,
    pub recipients: usize,
    pub sent: Pair,
    pub bounced: Pair,
    pub expired: Pair,
    pub queued: Pair,
    pub attempts: Pair,
    pub drain: Pair,
    pub active: Curve,
    pub deferred: Curve,
    /// Recipients with as many attempts on both sides, of those found on both.
    pub same_attempts: usize,
    pub matched: usize,
    /// How many of the recipients found on both sides needed 1, 2, 3, … attempts
    /// (index = attempts), on each side.
    pub attempts_histogram: (Vec<usize>, Vec<usize>),
    /// Median and 90th percentile of |finished_sim − finished_real| (s), recipients final on
    /// both sides.
    pub finish_error_p50: f64,
    pub finish_error_p90: f64,
    /// The two queue series on the recorded sample times, for the chart.
    pub samples: Vec<(f64, QueueCounts, QueueCounts)>,
}

impl Comparison {
    pub fn same_attempts_share(&self) -> f64 {
        if self.matched == 0 {
            0.0
        } else {
            self.same_attempts as f64 / self.matched as f64
        }
    }

    /// The total variation distance between the two distributions of attempts per
    /// recipient: the share of recipients that would have to change their count for the
    /// histograms to agree (0 = the same histogram, whichever recipients make it up).
    pub fn attempts_distribution_distance(&self) -> f64 {
        let (real, sim) = &self.attempts_histogram;
        if self.matched == 0 {
            return 0.0;
        }
        let n = real.len().max(sim.len());
        let at = |h: &Vec<usize>, i: usize| h.get(i).copied().unwrap_or(0) as f64;
        (0..n)
            .map(|i| (at(real, i) - at(sim, i)).abs())
            .sum::<f64>()
            / 2.0
            / self.matched as f64
    }
}

/// The scenario as the recording ran it: qmgr started when the real one did, and the
/// messages of a single traffic stream arrive at the recorded instants, in order.
pub fn as_recorded(scenario: &Scenario, trace: &Trace) -> Scenario {
    replay(scenario, trace).0
}

/// [`as_recorded`], and whether the arrivals are the recorded ones.
fn replay(scenario: &Scenario, trace: &Trace) -> (Scenario, bool) {
    let mut s = scenario.clone();
    if let Some(t) = trace.qmgr_started {
        s.qmgr_start = QmgrStart::At(t);
    }
    let mut first: HashMap<u64, f64> = HashMap::new();
    for o in trace.recipients.values() {
        let a = first.entry(o.message_id).or_insert(o.arrival);
        *a = a.min(o.arrival);
    }
    let mut times: Vec<Time> = first
        .values()
        .map(|&a| (a * SECOND as f64).round() as Time)
        .collect();
    times.sort_unstable();
    let mut replayed = false;
    if let [stream] = s.traffic.as_mut_slice()
        && stream.messages == Some(times.len() as u64)
    {
        stream.replay = Some(times.into());
        replayed = true;
    }
    (s, replayed)
}

/// Simulates `scenario` as it was recorded and compares it with `trace`.
///
/// With replayed arrivals, the k-th message to arrive in the simulation stands for the k-th
/// recorded arrival, whatever ids the two runs gave them: a burst offered over many smtpd
/// sessions at once reaches the real Postfix in an order of its own, not in message-id
/// order.
pub fn compare(scenario: &Scenario, trace: &Trace) -> Result<Comparison, Error> {
    let (replay, replayed) = replay(scenario, trace);
    let mut outcomes = Outcomes::default();
    let mut series = QueueSeries::default();
    crate::run::simulate(&replay, replay.seed, &mut outcomes, &mut series)?;
    let rename: HashMap<u64, u64> = if replayed {
        arrival_order(outcomes.0.iter().map(|(_, o)| o))
            .into_iter()
            .zip(arrival_order(trace.recipients.values()))
            .collect()
    } else {
        HashMap::new()
    };
    Ok(compare_outcomes(
        &scenario.name,
        trace,
        &outcomes.by_address(&rename),
        &series,
    ))
}

fn count(map: &HashMap<String, Outcome>, status: &str) -> f64 {
    map.values().filter(|o| o.status == status).count() as f64
}

fn drain(map: &HashMap<String, Outcome>) -> f64 {
    let first = map
        .values()
        .map(|o| o.arrival)
        .fold(f64::INFINITY, f64::min);
    let last = map
        .values()
        .filter_map(|o| o.finished)
        .fold(f64::NEG_INFINITY, f64::max);
    if first.is_finite() && last.is_finite() {
        last - first
    } else {
        0.0
    }
}

/// The counts at time `t` of a step series sampled at its points (the last point at or before
/// `t`; after the last point, the last value: a finished run's queues stay as they ended).
fn at(series: &QueueSeries, t: Time) -> QueueCounts {
    match series.points.partition_point(|&(pt, _)| pt <= t) {
        0 => QueueCounts::default(),
        i => series.points[i - 1].1,
    }
}

fn compare_outcomes(
    name: &str,
    trace: &Trace,
    sim: &HashMap<String, Outcome>,
    series: &QueueSeries,
) -> Comparison {
    let real = &trace.recipients;
    let pair = |f: &dyn Fn(&HashMap<String, Outcome>) -> f64| Pair {
        real: f(real),
        sim: f(sim),
    };
    let mut matched = 0;
    let mut same_attempts = 0;
    let mut finish_errors = Vec::new();
    let mut histogram = (Vec::new(), Vec::new());
    let tally = |h: &mut Vec<usize>, attempts: u32| {
        let i = attempts as usize;
        if h.len() <= i {
            h.resize(i + 1, 0);
        }
        h[i] += 1;
    };
    for (address, r) in real {
        let Some(s) = sim.get(address) else { continue };
        matched += 1;
        tally(&mut histogram.0, r.attempts);
        tally(&mut histogram.1, s.attempts);
        if r.attempts == s.attempts {
            same_attempts += 1;
        }
        if let (Some(a), Some(b)) = (r.finished, s.finished) {
            finish_errors.push((a - b).abs());
        }
    }
    finish_errors.sort_by(f64::total_cmp);
    let quantile = |p: f64| {
        if finish_errors.is_empty() {
            0.0
        } else {
            let rank =
                ((p * finish_errors.len() as f64).ceil() as usize).clamp(1, finish_errors.len());
            finish_errors[rank - 1]
        }
    };
    // Compare over every recorded sample up to the later of the two ends.
    let end = trace
        .queues
        .points
        .last()
        .map(|p| p.0)
        .max(series.points.last().map(|p| p.0))
        .unwrap_or(0);
    let step = match trace.queues.points.as_slice() {
        [a, b, ..] => (b.0 - a.0).max(1),
        _ => SECOND,
    };
    let mut samples = Vec::new();
    let mut t = 0;
    while t <= end {
        samples.push((as_seconds_f64(t), at(&trace.queues, t), at(series, t)));
        t += step;
    }
    let curve = |get: fn(&QueueCounts) -> u64| {
        let n = samples.len().max(1) as f64;
        Curve {
            peak: Pair {
                real: samples.iter().map(|s| get(&s.1)).max().unwrap_or(0) as f64,
                sim: samples.iter().map(|s| get(&s.2)).max().unwrap_or(0) as f64,
            },
            mean_abs_diff: samples
                .iter()
                .map(|s| (get(&s.1) as f64 - get(&s.2) as f64).abs())
                .sum::<f64>()
                / n,
        }
    };
    Comparison {
        name: name.to_string(),
        postfix_version: trace.postfix_version.clone(),
        recipients: real.len(),
        sent: pair(&|m| count(m, "sent")),
        bounced: pair(&|m| count(m, "bounced")),
        expired: pair(&|m| count(m, "expired")),
        queued: pair(&|m| count(m, "queued")),
        attempts: pair(&|m| m.values().map(|o| f64::from(o.attempts)).sum()),
        drain: pair(&drain),
        active: curve(|c| c.active),
        deferred: curve(|c| c.deferred),
        same_attempts,
        matched,
        attempts_histogram: histogram,
        finish_error_p50: quantile(0.5),
        finish_error_p90: quantile(0.9),
        samples,
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = self.postfix_version.as_deref().unwrap_or("unknown");
        writeln!(
            f,
            "{}: {} recipients, real Postfix {version} vs mailsim",
            self.name, self.recipients
        )?;
        writeln!(
            f,
            "  {:<28} {:>10} {:>10} {:>8}",
            "", "real", "mailsim", "error"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, p: Pair| {
            writeln!(
                f,
                "  {name:<28} {:>10.1} {:>10.1} {:>7.1}%",
                p.real,
                p.sim,
                100.0 * p.relative_error()
            )
        };
        row(f, "sent", self.sent)?;
        row(f, "bounced", self.bounced)?;
        row(f, "expired", self.expired)?;
        row(f, "still queued", self.queued)?;
        row(f, "delivery attempts", self.attempts)?;
        row(f, "drain time (s)", self.drain)?;
        row(f, "peak active", self.active.peak)?;
        row(f, "peak deferred", self.deferred.peak)?;
        writeln!(
            f,
            "  active curve: mean |diff| {:.1} files ({:.1}% of the real peak)",
            self.active.mean_abs_diff,
            100.0 * self.active.relative()
        )?;
        writeln!(
            f,
            "  deferred curve: mean |diff| {:.1} files ({:.1}% of the real peak)",
            self.deferred.mean_abs_diff,
            100.0 * self.deferred.relative()
        )?;
        writeln!(
            f,
            "  same number of attempts: {} of {} recipients ({:.1}%)",
            self.same_attempts,
            self.matched,
            100.0 * self.same_attempts_share()
        )?;
        let histogram = |h: &Vec<usize>| {
            h.iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(a, n)| format!("{a}:{n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        writeln!(
            f,
            "  attempts per recipient: real {}, mailsim {} ({:.1}% would have to change)",
            histogram(&self.attempts_histogram.0),
            histogram(&self.attempts_histogram.1),
            100.0 * self.attempts_distribution_distance()
        )?;
        write!(
            f,
            "  final-status time error: median {:.2} s, 90th percentile {:.2} s",
            self.finish_error_p50, self.finish_error_p90
        )
    }
}

/// Real and simulated active and deferred queues on one chart.
pub fn chart(c: &Comparison) -> crate::plot::chart::LineChart {
    use crate::plot::chart::{LineChart, Series};
    let line = |name: &str, get: &dyn Fn(&(f64, QueueCounts, QueueCounts)) -> u64| Series {
        name: name.to_string(),
        points: c.samples.iter().map(|s| (s.0, get(s) as f64)).collect(),
        ..Series::default()
    };
    LineChart {
        title: format!(
            "{}: real Postfix {} vs mailsim",
            c.name,
            c.postfix_version.as_deref().unwrap_or("")
        ),
        x_label: "time (s)".into(),
        y_label: "queue files".into(),
        series: vec![
            line("deferred, real", &|s| s.1.deferred),
            line("deferred, mailsim", &|s| s.2.deferred),
            line("active, real", &|s| s.1.active),
            line("active, mailsim", &|s| s.2.active),
        ],
        ..LineChart::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(message_id: u64, arrival: f64, finished: f64) -> Outcome {
        Outcome {
            message_id,
            arrival,
            finished: Some(finished),
            attempts: 1,
            status: "sent".into(),
        }
    }

    #[test]
    fn a_replayed_arrival_stands_for_the_recorded_message_that_arrived_in_its_place() {
        // Three messages offered at once reached the real Postfix as 3, 1, 2 (1.0, 1.1 and
        // 1.2 s) and were delivered 1 s later each. The simulation's first arrival (its
        // message 1, at 1.0 s) is the recorded message 3: matched so, every final-status
        // time agrees; matched by message id, message 1 would be 0.1 s early.
        let sc = crate::scenario::parse(
            r#"
name = "order"
qmgr_start = "0s"
[[traffic]]
to = "o.test"
messages = 3
arrivals = "burst"
[[destination]]
domain = "o.test"
latency = "1s"
"#,
            "order.toml",
        )
        .expect("scenario");
        let recipients = [(3, 1.0), (1, 1.1), (2, 1.2)]
            .into_iter()
            .map(|(m, a)| (format!("user0.{m}@o.test"), outcome(m, a, a + 1.0)))
            .collect();
        let trace = Trace {
            queues: QueueSeries::default(),
            recipients,
            qmgr_started: Some(0),
            postfix_version: None,
        };
        let c = compare(&sc, &trace).expect("runs");
        assert_eq!((c.matched, c.same_attempts), (3, 3));
        assert!(c.finish_error_p90 < 1e-6, "{c}");
        assert_eq!(c.attempts_histogram, (vec![0, 3], vec![0, 3]));
        assert_eq!(c.attempts_distribution_distance(), 0.0);
    }

    #[test]
    fn the_attempts_distance_counts_the_recipients_that_would_have_to_change() {
        // Real 1:6 2:3 3:1, simulated 1:5 2:5: one recipient from 1 to 2 and one from 3 to 2
        // make them agree, 2 of 10.
        let c = Comparison {
            name: String::new(),
            postfix_version: None,
            recipients: 10,
            sent: Pair {
                real: 0.0,
                sim: 0.0,
            },
            bounced: Pair {
                real: 0.0,
                sim: 0.0,
            },
            expired: Pair {
                real: 0.0,
                sim: 0.0,
            },
            queued: Pair {
                real: 0.0,
                sim: 0.0,
            },
            attempts: Pair {
                real: 0.0,
                sim: 0.0,
            },
            drain: Pair {
                real: 0.0,
                sim: 0.0,
            },
            active: Curve {
                peak: Pair {
                    real: 0.0,
                    sim: 0.0,
                },
                mean_abs_diff: 0.0,
            },
            deferred: Curve {
                peak: Pair {
                    real: 0.0,
                    sim: 0.0,
                },
                mean_abs_diff: 0.0,
            },
            same_attempts: 0,
            matched: 10,
            attempts_histogram: (vec![0, 6, 3, 1], vec![0, 5, 5]),
            finish_error_p50: 0.0,
            finish_error_p90: 0.0,
            samples: Vec::new(),
        };
        assert!((c.attempts_distribution_distance() - 0.2).abs() < 1e-12);
    }
}
