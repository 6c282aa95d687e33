//! "Why is it stuck?": delay attribution adds up exactly, splits hand-computed timelines
//! the way they were computed, and names the right culprit.

mod common;
use common::scenario;
use mailsim::engine::time::SECOND;
use mailsim::observe::{Address, FinalStatus, Observer, RecipientOutcome};
use mailsim::output::stall::{CAUSES, StallAttribution};
use std::collections::HashMap;

/// Delivered recipients' delays by (message id, index).
#[derive(Default)]
struct Delays(HashMap<(u64, u32), i64>);

impl Observer for Delays {
    fn recipient_outcome(&mut self, o: &RecipientOutcome<'_>) {
        let index = match o.recipient {
            Address::Generated { index, .. } => index,
            // A notice has one recipient, the original sender.
            Address::Literal(_) => 0,
        };
        if let (FinalStatus::Sent | FinalStatus::Bounced, Some(f)) = (o.status, o.finished) {
            self.0.insert((o.message_id, index), f - o.arrival);
        }
    }
}

type Attributed = (
    StallAttribution,
    Delays,
    mailsim::output::queues::QueueSeries,
);

fn attribute(text: &str) -> Attributed {
    attribute_with(text, None)
}

/// [`attribute`], imagining a `postqueue -f` at `flush_probe`.
fn attribute_with(text: &str, flush_probe: Option<i64>) -> Attributed {
    let sc = scenario(text);
    let mut stall = StallAttribution::new();
    stall.keep_each = true;
    stall.flush_probe = flush_probe;
    let mut delays = Delays::default();
    let mut series = mailsim::output::queues::QueueSeries::default();
    mailsim::run::simulate(
        &sc,
        sc.seed,
        &mut mailsim::run::Fan(vec![&mut stall, &mut delays]),
        &mut series,
    )
    .expect("runs");
    (stall, delays, series)
}

fn share(stall: &StallAttribution, cause: &str) -> f64 {
    let i = cause_index(cause);
    stall.totals[i] as f64 / stall.totals.iter().sum::<i64>() as f64
}

fn cause_index(cause: &str) -> usize {
    CAUSES.iter().position(|c| *c == cause).expect("cause")
}

/// One recipient's parts, by cause name, in whole seconds (zero parts left out).
fn parts_of(stall: &StallAttribution, message: u64) -> Vec<(&'static str, f64)> {
    let (_, parts) = stall
        .each
        .iter()
        .find(|((m, _), _)| *m == message)
        .unwrap_or_else(|| panic!("message {message} was not delivered"));
    CAUSES
        .iter()
        .zip(parts)
        .filter(|(_, p)| **p != 0)
        .map(|(c, p)| (*c, *p as f64 / SECOND as f64))
        .collect()
}

#[test]
fn every_delivered_recipients_parts_add_up_to_its_delay() {
    for path in [
        "scenarios/greylisting.toml",
        "scenarios/remote-outage.toml",
        "scenarios/hold-and-release.toml",
        "scenarios/slow-content-filter.toml",
        "scenarios/rejections.toml",
        "scenarios/outage-flush.toml",
        "scenarios/qmgr-reload.toml",
        "scenarios/dns-servfail.toml",
        "scenarios/delete-deferred.toml",
    ] {
        let text = std::fs::read_to_string(path).expect("scenario");
        let (stall, delays, _) = attribute(&text);
        assert!(!stall.each.is_empty(), "{path}");
        for (key, parts) in &stall.each {
            let delay = delays
                .0
                .get(key)
                .copied()
                .expect("outcome for each attribution");
            assert_eq!(
                parts.iter().sum::<i64>(),
                delay,
                "{path} {key:?}: {parts:?}"
            );
            assert!(parts.iter().all(|&p| p >= 0), "{path} {key:?}: {parts:?}");
        }
        assert_eq!(
            stall.each.len(),
            delays.0.len(),
            "{path}: every delivered recipient"
        );
    }
}

#[test]
fn a_greylisted_message_splits_into_backoff_scan_wait_and_transfer() {
    // qmgr started 100 s before the run: deferred scans at 200, 500, 800 … s. The message
    // arrives at 0 and is greylisted at once (the reply to RCPT takes no time here); its
    // file gets the time stamp 0 + 300 s, which the 200-s scan cannot take; the 500-s
    // scan does, and the transaction takes 1 s: delay 501 s = backoff 300 + scan wait
    // 200 + transfer 1.
    let (stall, delays, _) = attribute(
        r#"
name = "grey"
qmgr_start = "-100s"
[[traffic]]
to = "g.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "g.test"
latency = "1s"
greylist = { delay = "300s", auto_whitelist = 0 }
"#,
    );
    assert_eq!(delays.0.get(&(1, 0)), Some(&(501 * SECOND)));
    assert_eq!(
        parts_of(&stall, 1),
        [("transfer", 1.0), ("backoff", 300.0), ("scan_wait", 200.0)]
    );
}

const DEAD_THEN_BACKOFF: &str = r#"
name = "dead-then-backoff"
[[traffic]]
to = "r.test"
messages = 10
arrivals = "burst"
[[traffic]]
to = "r.test"
messages = 1
arrivals = "burst"
start = "200s"
[[destination]]
domain = "r.test"
latency = "1s"
connect = "0s"
[[fault]]
at = "0s"
for = "100s"
kind = "refuse"
target = "r.test"
"#;

#[test]
fn the_closing_sentence_dates_the_cause_and_prices_a_flush() {
    // The fault ends at 100 s; a flush a minute later, at 160 s, would have made the ten
    // files waiting for the 300-s scan eligible at once: 10 × 140 s saved. Message 11
    // arrives at 200 s, after the flush, and is not counted.
    let (stall, _, _) = attribute_with(DEAD_THEN_BACKOFF, Some(160 * SECOND));
    assert_eq!(stall.flush_saved_recipients, 10);
    assert_eq!(stall.flush_saving, 1400 * SECOND);
    let ctx = mailsim::output::stall::HeadlineContext {
        scenario_file: "scenarios/remote-outage.toml".into(),
        last_fault: Some((100 * SECOND, "the refuse r.test fault".into())),
        start_unix: mailsim::output::maillog::parse_start("2026-03-02T08:00:00").expect("date"),
        flush_at: stall.flush_probe,
        flush_saving: stall.flush_saving,
        flush_saved_recipients: stall.flush_saved_recipients,
        top_deferral: Some("connection_refused".into()),
    };
    let line = mailsim::output::stall::headline(&stall.totals_by_name(), &ctx).expect("a sentence");
    assert!(line.contains("was dead destination"), "{line}");
    assert!(
        line.contains("(the refuse r.test fault ended at 08:01)"),
        "{line}"
    );
    assert!(
        line.contains("a `postqueue -f` at 08:02 would have made the 10 recipients still waiting then eligible at once, sparing them up to 0.4 recipient-hours"),
        "{line}"
    );
    assert!(line.contains("(scenarios/outage-flush.toml)"), "{line}");
    // Never the scenario that is running, and never the failed-cohort-limit advice that
    // made blackhole-starvation worse.
    let own = mailsim::output::stall::HeadlineContext {
        scenario_file: "scenarios/outage-flush.toml".into(),
        ..ctx
    };
    let line = mailsim::output::stall::headline(&stall.totals_by_name(), &own).expect("a sentence");
    assert!(!line.contains("scenarios/"), "{line}");
    assert!(!line.contains("cohort_limit"), "{line}");
}

#[test]
fn only_the_part_of_a_backoff_while_the_destination_is_dead_is_dead_destination() {
    // r.test refuses connections for the first 100 s. The burst of ten at 0 s kills its
    // queue at 0 s (refused at once, connect = 0): dead until the revival timer at 300 s.
    // Message 11 arrives at 200 s, while it is dead: deferred without an attempt, time
    // stamp 200 + 300 = 500 s. Its backoff [200, 500] overlaps the dead time [0, 300] by
    // 100 s: 100 s dead destination and 200 s backoff; the scan at 600 s takes it (scans
    // every 300 s from 0) and it is delivered 1 s later: delay 401 s.
    let (stall, delays, _) = attribute(DEAD_THEN_BACKOFF);
    assert_eq!(delays.0.get(&(11, 0)), Some(&(401 * SECOND)));
    assert_eq!(
        parts_of(&stall, 11),
        [
            ("transfer", 1.0),
            ("backoff", 200.0),
            ("dead_destination", 100.0),
            ("scan_wait", 100.0)
        ]
    );
    // The burst waited from 0 s to the 300-s scan, all of it while the queue was dead.
    for m in 1..=10 {
        let parts = parts_of(&stall, m);
        assert!(
            parts.contains(&("dead_destination", 300.0)) && !parts.iter().any(|p| p.0 == "backoff"),
            "message {m}: {parts:?}"
        );
    }
}

#[test]
fn the_window_and_the_agents_are_told_apart() {
    // One destination with a window of 1 and 10-s transactions, 100 agents: three
    // messages at 0 s are delivered at 10, 20 and 30 s, the second waiting 10 s and the
    // third 20 s for the window — 30 s of window_full, none for want of an agent.
    let (stall, _, _) = attribute(
        r#"
name = "window"
[postfix]
initial_destination_concurrency = 1
smtp_destination_concurrency_limit = 1
[[traffic]]
to = "w.test"
messages = 3
arrivals = "burst"
[[destination]]
domain = "w.test"
latency = "10s"
"#,
    );
    assert_eq!(stall.totals[cause_index("window_full")], 30 * SECOND);
    assert_eq!(stall.totals[cause_index("no_free_agent")], 0);
    // One agent, two destinations with a message each: the second waits 10 s for the
    // agent although its window has room.
    let (stall, _, _) = attribute(
        r#"
name = "agent"
[master]
smtp = 1
[[traffic]]
to = "a.test"
messages = 1
arrivals = "burst"
[[traffic]]
to = "b.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "a.test"
latency = "10s"
[[destination]]
domain = "b.test"
latency = "10s"
"#,
    );
    assert_eq!(stall.totals[cause_index("no_free_agent")], 10 * SECOND);
    assert_eq!(stall.totals[cause_index("window_full")], 0);
}

#[test]
fn dns_time_is_its_own_cause() {
    // A 2-s lookup before every delivery; for the first 100 s the resolver times out
    // (the fault's default 10-s lookup): the try at 0 s fails after 10 s and the file gets
    // the time stamp 10 + 300 = 310 s, which the 300-s scan skips (310 > 301) and the
    // 600-s scan takes; delivered at 600 + 2 (DNS) + 1 (transfer) = 603 s.
    let (stall, delays, _) = attribute(
        r#"
name = "dns"
[[traffic]]
to = "b.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "b.test"
latency = "1s"
dns = "2s"
[[fault]]
at = "0s"
for = "100s"
kind = "dns_timeout"
target = "b.test"
"#,
    );
    assert_eq!(delays.0.get(&(1, 0)), Some(&(603 * SECOND)));
    assert_eq!(
        parts_of(&stall, 1),
        [
            ("dns", 12.0),
            ("transfer", 1.0),
            ("backoff", 300.0),
            ("scan_wait", 290.0)
        ]
    );
}

#[test]
fn greylisted_mail_mostly_waits_out_its_backoff() {
    let text = std::fs::read_to_string("scenarios/greylisting.toml").expect("scenario");
    let (stall, _, _) = attribute(&text);
    let top = (0..CAUSES.len())
        .max_by_key(|&i| stall.totals[i])
        .expect("causes");
    assert_eq!(CAUSES[top], "backoff", "{:?}", stall.totals);
    assert!(share(&stall, "backoff") > 0.5);
}

#[test]
fn a_blackhole_holds_the_agents_and_the_healthy_destination_waits_for_one() {
    // Two smtp processes, default settings. Every try to the blackholed destination holds
    // a process for smtp_connect_timeout (30 s, one address); mail for the healthy
    // destination on the same transport waits for a free process.
    let (stall, _, _) = attribute(
        r#"
name = "bh"
stop = "20m"
[master]
smtp = 2
[[traffic]]
to = { "dead.test" = 1, "ok.test" = 1 }
rate = "0.5/s"
arrivals = "uniform"
[[destination]]
domain = "dead.test"
latency = "0s"
[[destination]]
domain = "ok.test"
latency = "1s"
[[fault]]
at = "0s"
kind = "blackhole"
target = "dead.test"
"#,
    );
    // Exactly 30 s of timeouts per try to dead.test.
    let timeouts = stall.totals[cause_index("smtp_timeouts")];
    assert!(timeouts > 0 && timeouts % (30 * SECOND) == 0, "{timeouts}");
    // The healthy destination's delivered recipients waited mostly for an agent.
    let mut ok = [0i64; CAUSES.len()];
    for (_, parts) in &stall.each {
        for (a, p) in ok.iter_mut().zip(parts) {
            *a += p;
        }
    }
    let top = (0..CAUSES.len()).max_by_key(|&i| ok[i]).expect("causes");
    assert_eq!(CAUSES[top], "no_free_agent", "{ok:?}");
}

#[test]
fn stall_csv_counts_every_queued_recipient_once() {
    // One recipient per message: each stall.csv row adds up to the queue files of
    // queues.csv at the same instant (audit F9: released files were counted twice).
    for path in [
        "scenarios/hold-and-release.toml",
        "scenarios/remote-outage.toml",
        "scenarios/delete-deferred.toml",
        "scenarios/outage-flush.toml",
    ] {
        let text = std::fs::read_to_string(path).expect("scenario");
        let sc = scenario(&text);
        assert!(
            sc.traffic.iter().all(|t| t.recipients == 1),
            "{path}: one recipient per message"
        );
        let (stall, _, series) = attribute(&text);
        let rows: Vec<Vec<i64>> = stall
            .csv
            .lines()
            .skip(1)
            .map(|l| {
                l.split(',')
                    .skip(1)
                    .map(|v| v.parse().expect("count"))
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), series.points.len(), "{path}");
        for (row, (t, counts)) in rows.iter().zip(&series.points) {
            assert!(row.iter().all(|&n| n >= 0), "{path} at {t}: {row:?}");
            assert_eq!(
                row.iter().sum::<i64>() as u64,
                counts.total(),
                "{path} at {t}: {row:?} vs {counts:?}"
            );
        }
    }
}

#[test]
fn a_file_held_while_active_counts_its_hold_from_when_qmgr_lets_go() {
    // Held at 10 s during a try that times out at 30 s; released at 1000 s; the 1200-s
    // scan takes it; delivered at 1201 s: 30 s timeouts + 970 s hold + 200 s scan wait +
    // 1 s transfer (the hold used to be filed under incoming).
    let (stall, delays, _) = attribute(
        r#"
name = "hold-active"
stop = "1h"
[[traffic]]
to = "b.test"
messages = 1
arrivals = "burst"
[[destination]]
domain = "b.test"
latency = "1s"
[[fault]]
at = "0s"
for = "60s"
kind = "blackhole"
target = "b.test"
[[admin]]
at = "10s"
command = "postsuper -h ALL"
[[admin]]
at = "1000s"
command = "postsuper -H ALL"
"#,
    );
    assert_eq!(delays.0.get(&(1, 0)), Some(&(1201 * SECOND)));
    assert_eq!(
        parts_of(&stall, 1),
        [
            ("smtp_timeouts", 30.0),
            ("transfer", 1.0),
            ("scan_wait", 200.0),
            ("hold", 970.0)
        ]
    );
}

#[test]
fn stall_csv_counts_each_queued_recipient_once() {
    // One recipient per message in these scenarios, so the recipients waiting (the sum of
    // a stall.csv row) are the queue files at that sample. Releasing held mail whose time
    // stamp has passed once counted it twice as waiting for the scan.
    for path in [
        "scenarios/hold-and-release.toml",
        "scenarios/remote-outage.toml",
        "scenarios/greylisting.toml",
    ] {
        let sc = mailsim::scenario::load(std::path::Path::new(path)).expect("scenario");
        let mut stall = StallAttribution::new();
        let mut series = mailsim::output::queues::QueueSeries::default();
        mailsim::run::simulate(&sc, sc.seed, &mut stall, &mut series).expect("runs");
        let rows: Vec<&str> = stall.csv.lines().skip(1).collect();
        assert_eq!(rows.len(), series.points.len(), "{path}");
        for (row, (t, counts)) in rows.iter().zip(&series.points) {
            let waiting: u64 = row
                .split(',')
                .skip(1)
                .map(|v| v.parse::<u64>().expect("count"))
                .sum();
            assert_eq!(
                waiting,
                counts.total() - counts.maildrop,
                "{path} at {t} µs: {row} vs {counts:?}"
            );
        }
    }
}

#[test]
fn the_smtpd_session_is_receiving_time() {
    // A 10 s session then an instant delivery: all 10 s of the delay is `receiving`.
    let (stall, delays, _) = attribute(
        r#"
name = "recv"
[[traffic]]
to = "d.test"
messages = 1
arrivals = "burst"
receive = "10s"
[[destination]]
domain = "d.test"
latency = "0s"
"#,
    );
    let i = CAUSES
        .iter()
        .position(|c| *c == "receiving")
        .expect("cause");
    assert_eq!(stall.totals[i], 10_000_000);
    assert_eq!(stall.totals.iter().sum::<i64>(), 10_000_000);
    assert_eq!(delays.0.values().copied().collect::<Vec<_>>(), [10_000_000]);
}
