//! "Why is it stuck?": delay attribution adds up exactly and names the right culprit.

mod common;
use common::scenario;
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

fn attribute(text: &str) -> (StallAttribution, Delays) {
    let sc = scenario(text);
    let mut stall = StallAttribution::new();
    stall.keep_each = true;
    let mut delays = Delays::default();
    let mut series = mailsim::output::queues::QueueSeries::default();
    mailsim::run::simulate(
        &sc,
        sc.seed,
        &mut mailsim::run::Fan(vec![&mut stall, &mut delays]),
        &mut series,
    )
    .expect("runs");
    (stall, delays)
}

fn share(stall: &StallAttribution, cause: &str) -> f64 {
    let i = CAUSES.iter().position(|c| *c == cause).expect("cause");
    stall.totals[i] as f64 / stall.totals.iter().sum::<i64>() as f64
}

#[test]
fn every_delivered_recipients_parts_add_up_to_its_delay() {
    for path in [
        "scenarios/greylisting.toml",
        "scenarios/remote-outage.toml",
        "scenarios/hold-and-release.toml",
        "scenarios/slow-content-filter.toml",
        "scenarios/rejections.toml",
    ] {
        let text = std::fs::read_to_string(path).expect("scenario");
        let (stall, delays) = attribute(&text);
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
fn greylisted_mail_mostly_waits_out_its_backoff() {
    let text = std::fs::read_to_string("scenarios/greylisting.toml").expect("scenario");
    let (stall, _) = attribute(&text);
    let top = (0..CAUSES.len())
        .max_by_key(|&i| stall.totals[i])
        .expect("causes");
    assert_eq!(CAUSES[top], "backoff", "{:?}", stall.totals);
    assert!(share(&stall, "backoff") > 0.5);
}

#[test]
fn a_blackhole_with_few_agents_is_smtp_timeouts_and_no_free_agent() {
    // Two smtp processes; half the mail goes to a blackholed destination that is never
    // declared dead: each try holds a process 30 s, and everything else queues behind.
    let (stall, _) = attribute(
        r#"
name = "bh"
stop = "20m"
[postfix]
smtp_destination_concurrency_failed_cohort_limit = 0
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
    let mut order: Vec<usize> = (0..CAUSES.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(stall.totals[i]));
    assert_eq!(CAUSES[order[0]], "waiting_for_agent", "{:?}", stall.totals);
    assert_eq!(CAUSES[order[1]], "smtp_timeouts", "{:?}", stall.totals);
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
