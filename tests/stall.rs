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
fn the_smtpd_session_is_receiving_time() {
    // A 10 s session then an instant delivery: all 10 s of the delay is `receiving`.
    let (stall, delays) = attribute(
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
