//! `mailsim bench`: events per second of wall time on a large run. An "event" is one pop
//! from the engine's event queue.

use crate::error::Error;
use crate::observe::NullObserver;
use crate::output::queues::QueueSeries;
use crate::run::simulate;
use crate::scenario::{self, Scenario};
use std::time::Instant;

/// The issue-7 reference model: Poisson arrivals at 100 msg/s, one destination, 20
/// concurrent deliveries, lognormal 0.5 s ± 0.3 s, 20 % temporary failures, Postfix backoff.
pub fn reference_scenario(messages: u64) -> Result<Scenario, Error> {
    let text = format!(
        r#"
name = "bench-reference"
seed = 1
sample = "60s"
[postfix]
initial_destination_concurrency = 20
default_destination_concurrency_limit = 20
[[traffic]]
to = "d1.test"
messages = {messages}
rate = "100/s"
[[destination]]
domain = "d1.test"
latency = {{ mean = "500ms", sd = "300ms" }}
tempfail = 0.2
"#
    );
    Ok(scenario::parse(&text, "<built-in bench scenario>")?)
}

pub struct BenchReport {
    pub events: u64,
    pub messages: u64,
    pub median_seconds: f64,
    pub runs: Vec<f64>,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs: Vec<String> = self.runs.iter().map(|r| format!("{r:.3}")).collect();
        write!(
            f,
            "{} messages, {} events per run; median {:.3} s wall over {} runs [{}]: {:.2} M events/s, {:.0} k messages/s",
            self.messages,
            self.events,
            self.median_seconds,
            self.runs.len(),
            runs.join(", "),
            self.events as f64 / self.median_seconds / 1e6,
            self.messages as f64 / self.median_seconds / 1e3
        )
    }
}

pub fn measure(scenario: &Scenario, repeat: u32) -> Result<BenchReport, Error> {
    let mut runs = Vec::new();
    let mut events = 0;
    let mut messages = 0;
    for _ in 0..repeat {
        let started = Instant::now();
        let report = simulate(
            scenario,
            scenario.seed,
            &mut NullObserver,
            &mut QueueSeries::default(),
        )?;
        runs.push(started.elapsed().as_secs_f64());
        events = report.events;
        messages = report.mta_totals.messages;
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(BenchReport {
        events,
        messages,
        median_seconds: sorted[sorted.len() / 2],
        runs,
    })
}
