//! Helpers shared by the integration tests: run a scenario text in memory and record what
//! happened.
#![allow(dead_code)]

use mailsim::engine::time::Time;
use mailsim::observe::{DeliveryAttempt, FinalStatus, Observer, RecipientOutcome};
use mailsim::output::queues::QueueSeries;
use mailsim::run::{RunReport, simulate};
use mailsim::scenario::{self, Scenario};

#[derive(Default)]
pub struct Recorder {
    /// (message id, start time, arrival time) of every delivery attempt.
    pub attempts: Vec<(u64, Time, Time)>,
    /// (message id, status, finished) of every recipient outcome.
    pub outcomes: Vec<(u64, FinalStatus, Option<Time>, bool)>,
}

impl Observer for Recorder {
    fn recipient_outcome(&mut self, o: &RecipientOutcome<'_>) {
        self.outcomes
            .push((o.message_id, o.status, o.finished, o.notice));
    }
    fn delivery_attempt(&mut self, a: &DeliveryAttempt<'_>) {
        self.attempts.push((a.message_id, a.start, a.arrival));
    }
}

pub fn scenario(text: &str) -> Scenario {
    match scenario::parse(text, "test.toml") {
        Ok(s) => s,
        Err(e) => panic!("test scenario does not parse: {e}"),
    }
}

pub fn run(text: &str) -> (Recorder, RunReport, QueueSeries) {
    let sc = scenario(text);
    let mut rec = Recorder::default();
    let mut series = QueueSeries::default();
    let report = match simulate(&sc, sc.seed, &mut rec, &mut series) {
        Ok(r) => r,
        Err(e) => panic!("run failed: {e}"),
    };
    (rec, report, series)
}

/// Attempt start times of message `id`, in seconds.
pub fn attempt_seconds(rec: &Recorder, id: u64) -> Vec<f64> {
    rec.attempts
        .iter()
        .filter(|(m, _, _)| *m == id)
        .map(|(_, t, _)| *t as f64 / 1e6)
        .collect()
}
