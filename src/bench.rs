//! `mailsim bench`: how fast the simulator is, on the runs BENCHMARKS.md reports.
//!
//! An "event" is one pop from the engine's event queue. Wall-clock figures are medians of
//! `--repeat` runs; they depend on the machine and on whatever else it is doing, so they are
//! printed, never asserted (tests only check that the benchmarks run).
//!
//! - `model` (the default): the model alone, no output files (a null observer), on the
//!   built-in reference model or `--scenario`.
//! - `engine`: the event queue alone, schedule + pop in the "hold" pattern at three queue
//!   sizes.
//! - `run`: the whole of `mailsim run` (every result file but the charts), with and without
//!   `deliveries.csv`.
//! - `sweep`: the same sweep on 1 and on 2 worker threads.
//! - `memory`: peak resident memory of 10 M-message runs whose queue stays small and whose
//!   queue grows, each in a child process, and the bytes per queued message.

use crate::engine::EventQueue;
use crate::engine::time::{SECOND, Time};
use crate::error::Error;
use crate::observe::NullObserver;
use crate::output::queues::QueueSeries;
use crate::postfix::Event;
use crate::run::simulate;
use crate::scenario::{self, Scenario};
use rand::Rng;
use std::path::Path;
use std::time::Instant;

/// The issue-7 reference model's text with `messages` messages: Poisson arrivals at
/// 100 msg/s, one destination, 20 concurrent deliveries, lognormal 0.5 s ± 0.3 s, 20 %
/// temporary failures, Postfix backoff. `scenarios/bench-reference.toml` is the same model
/// with arrivals for 10 h instead of a message count.
pub fn reference_text(messages: u64, concurrency: u32) -> String {
    format!(
        r#"
name = "bench-reference"
seed = 1
sample = "60s"
[postfix]
initial_destination_concurrency = {concurrency}
default_destination_concurrency_limit = {concurrency}
[[traffic]]
to = "d1.test"
messages = {messages}
rate = "100/s"
[[destination]]
domain = "d1.test"
latency = {{ mean = "500ms", sd = "300ms" }}
tempfail = 0.2
"#
    )
}

/// The reference model with `messages` messages.
pub fn reference_scenario(messages: u64) -> Result<Scenario, Error> {
    Ok(scenario::parse(
        &reference_text(messages, 20),
        "<built-in bench scenario>",
    )?)
}

/// Median of wall times (seconds).
fn median(runs: &[f64]) -> f64 {
    let mut sorted = runs.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

fn runs_text(runs: &[f64]) -> String {
    let runs: Vec<String> = runs.iter().map(|r| format!("{r:.3}")).collect();
    runs.join(", ")
}

pub struct BenchReport {
    pub events: u64,
    pub messages: u64,
    pub median_seconds: f64,
    pub runs: Vec<f64>,
    /// Median CPU seconds of a run (when `/proc/self/stat` is readable): on a busy machine
    /// wall time includes waiting for a core, CPU time much less so.
    pub median_cpu_seconds: Option<f64>,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} messages, {} events per run; median {:.3} s wall over {} runs [{}]: {:.2} M events/s, {:.0} k messages/s",
            self.messages,
            self.events,
            self.median_seconds,
            self.runs.len(),
            runs_text(&self.runs),
            self.events as f64 / self.median_seconds / 1e6,
            self.messages as f64 / self.median_seconds / 1e3
        )?;
        if let Some(cpu) = self.median_cpu_seconds.filter(|&c| c > 0.0) {
            write!(
                f,
                "; median {cpu:.2} s CPU: {:.2} M events/s, {:.0} k messages/s per CPU second",
                self.events as f64 / cpu / 1e6,
                self.messages as f64 / cpu / 1e3
            )?;
        }
        Ok(())
    }
}

/// `model`: the simulation alone (no observer, no files).
pub fn measure(scenario: &Scenario, repeat: u32) -> Result<BenchReport, Error> {
    let mut runs = Vec::new();
    let mut cpu = Vec::new();
    let mut events = 0;
    let mut messages = 0;
    for _ in 0..repeat {
        let cpu_before = cpu_seconds();
        let started = Instant::now();
        let report = simulate(
            scenario,
            scenario.seed,
            &mut NullObserver,
            &mut QueueSeries::default(),
        )?;
        runs.push(started.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (cpu_before, cpu_seconds()) {
            cpu.push(b - a);
        }
        events = report.events;
        messages = report.mta_totals.messages;
    }
    Ok(BenchReport {
        events,
        messages,
        median_seconds: median(&runs),
        median_cpu_seconds: (cpu.len() == runs.len()).then(|| median(&cpu)),
        runs,
    })
}

/// `engine`: the event queue in the hold pattern — `pending` events waiting, each pop
/// schedules one event an exponential delay (mean 1 s) later — for `ops` pops. Returns the
/// median seconds of `repeat` runs.
pub fn engine_hold(pending: usize, ops: u64, repeat: u32) -> (f64, Vec<f64>) {
    let mut runs = Vec::new();
    let mut check = 0u64;
    for _ in 0..repeat.max(1) {
        let mut rng = crate::engine::RngStreams::new(1).stream("bench-engine", 0);
        // Delays drawn up front, so the loop times the queue rather than the generator.
        let delays: Vec<Time> = (0..4096)
            .map(|_| {
                let u: f64 = rng.random();
                (-(1.0 - u).ln() * SECOND as f64) as Time
            })
            .collect();
        let mut q: EventQueue<Event> = EventQueue::new(0);
        for (i, d) in delays.iter().cycle().take(pending).enumerate() {
            q.schedule(*d, Event::DeliveryDone { entry: i as u32 });
        }
        let started = Instant::now();
        let mut k = 0;
        for _ in 0..ops {
            let Some((now, event)) = q.pop() else { break };
            k = (k + 1) & 4095;
            q.schedule(now + delays[k], event);
        }
        runs.push(started.elapsed().as_secs_f64());
        check = check.wrapping_add(q.now() as u64);
    }
    // Keeps the loop from being optimised away.
    std::hint::black_box(check);
    (median(&runs), runs)
}

/// `run`: `mailsim run` in full (charts excepted) into a scratch folder, with and without
/// deliveries.csv, alternating so both see the same machine load. Returns the report text.
pub fn measure_run(scenario: &Scenario, repeat: u32) -> Result<String, Error> {
    let dir = std::env::temp_dir().join(format!("mailsim-bench-{}", std::process::id()));
    let mut with = Vec::new();
    let mut without = Vec::new();
    let mut cpu_with = Vec::new();
    let mut cpu_without = Vec::new();
    let mut events = 0;
    let mut messages = 0;
    for _ in 0..repeat.max(1) {
        for deliveries in [true, false] {
            let opts = crate::run::RunOptions {
                out_dir: Some(dir.clone()),
                deliveries,
                plots: false,
                ..Default::default()
            };
            let cpu_before = cpu_seconds();
            let started = Instant::now();
            let (summary, _) = crate::run::run_to_dir(scenario, &opts)?;
            let t = started.elapsed().as_secs_f64();
            let c = match (cpu_before, cpu_seconds()) {
                (Some(a), Some(b)) => b - a,
                _ => f64::NAN,
            };
            events = summary.events;
            messages = summary.messages;
            if deliveries {
                with.push(t);
                cpu_with.push(c);
            } else {
                without.push(t);
                cpu_without.push(c);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (w, wo) = (median(&with), median(&without));
    let (cw, cwo) = (median(&cpu_with), median(&cpu_without));
    Ok(format!(
        "{messages} messages, {events} events per run\n\
         with deliveries.csv:  median {w:.3} s wall [{}], {cw:.2} s CPU: {:.2} M events/s, {:.0} k messages/s (wall)\n\
         --no-deliveries:      median {wo:.3} s wall [{}], {cwo:.2} s CPU: {:.2} M events/s, {:.0} k messages/s (wall)\n\
         deliveries.csv adds {:.1} % to the wall time, {:.1} % to the CPU time",
        runs_text(&with),
        events as f64 / w / 1e6,
        messages as f64 / w / 1e3,
        runs_text(&without),
        events as f64 / wo / 1e6,
        messages as f64 / wo / 1e3,
        (w / wo - 1.0) * 100.0,
        (cw / cwo - 1.0) * 100.0
    ))
}

/// CPU time this process has used, all threads (user + system, from `/proc/self/stat`, in
/// USER_HZ = 100 ticks per second, Linux only).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// `sweep`: `replications` runs of `text` as one sweep (in memory, no files) on 1 and on 2
/// threads, alternating. Wall-clock speed-up needs two idle cores; the CPU time each sweep
/// used shows whether parallel runs slow each other down whatever else the machine does.
/// Returns the report text.
pub fn measure_sweep(
    text: &str,
    label: &str,
    replications: u32,
    repeat: u32,
) -> Result<String, Error> {
    let spec = crate::sweep::SweepSpec::new(text, label, &[], Some(replications.max(1)))?;
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..repeat.max(1) {
        for (slot, jobs) in [1usize, 2].into_iter().enumerate() {
            let opts = crate::sweep::SweepOptions {
                jobs: Some(jobs),
                shard: None,
                keep_runs: None,
                progress: false,
                checkpoint: None,
                resume: None,
                fingerprint: String::new(),
                stop_after_runs: None,
            };
            let cpu_before = cpu_seconds();
            let started = Instant::now();
            crate::sweep::run(&spec, &opts)?;
            times[slot].push(started.elapsed().as_secs_f64());
            if let (Some(a), Some(b)) = (cpu_before, cpu_seconds()) {
                cpu[slot].push(b - a);
            }
        }
    }
    let (t1, t2) = (median(&times[0]), median(&times[1]));
    let (c1, c2) = (median(&cpu[0]), median(&cpu[1]));
    let runs = spec.point_count() as u64 * u64::from(spec.replications);
    Ok(format!(
        "{runs} runs of {label}\n\
         1 thread:  median {t1:.3} s wall [{}], {c1:.2} s CPU\n\
         2 threads: median {t2:.3} s wall [{}], {c2:.2} s CPU\n\
         wall speed-up {:.2}, efficiency {:.0} % (speed-up / threads); CPU per unit of work on 2 threads vs 1: {:.2}",
        runs_text(&times[0]),
        runs_text(&times[1]),
        t1 / t2,
        t1 / t2 / 2.0 * 100.0,
        if c1 > 0.0 { c2 / c1 } else { f64::NAN }
    ))
}

/// The memory cases: a 10 M-message reference run whose queue stays small (enough
/// concurrency to keep up) and one whose queue grows (the reference model itself).
pub const MEMORY_CASES: [(&str, u32); 2] = [("small-queue", 200), ("growing-queue", 20)];

/// One memory case, in this (child) process: runs it and prints `peak_kib peak_queued
/// messages events seconds`. `full` runs `mailsim run` (all result files but deliveries.csv
/// and charts) instead of the model alone.
pub fn memory_child(case: &str, messages: u64, full: bool) -> Result<String, Error> {
    let concurrency = MEMORY_CASES
        .iter()
        .find(|(name, _)| *name == case)
        .map(|&(_, c)| c)
        .ok_or_else(|| Error::Runtime(format!("no memory case `{case}`")))?;
    let sc = scenario::parse(
        &reference_text(messages, concurrency),
        "<built-in memory scenario>",
    )?;
    let started = Instant::now();
    let (peak_queued, events, msgs) = if full {
        let dir = std::env::temp_dir().join(format!("mailsim-memory-{}", std::process::id()));
        let opts = crate::run::RunOptions {
            out_dir: Some(dir.clone()),
            deliveries: false,
            plots: false,
            ..Default::default()
        };
        let (summary, _) = crate::run::run_to_dir(&sc, &opts)?;
        let text = std::fs::read_to_string(dir.join("queues.csv"))
            .map_err(|e| Error::io("cannot read", &dir.join("queues.csv"), e))?;
        let _ = std::fs::remove_dir_all(&dir);
        let series = QueueSeries::from_csv(&text).map_err(Error::Runtime)?;
        (peak_total(&series), summary.events, summary.messages)
    } else {
        let mut series = QueueSeries::default();
        let report = simulate(&sc, sc.seed, &mut NullObserver, &mut series)?;
        (
            peak_total(&series),
            report.events,
            report.mta_totals.messages,
        )
    };
    let seconds = started.elapsed().as_secs_f64();
    let peak_kib = peak_rss_kib().ok_or_else(|| {
        Error::Runtime("cannot read VmHWM from /proc/self/status (Linux only)".into())
    })?;
    Ok(format!(
        "{peak_kib} {peak_queued} {msgs} {events} {seconds:.3}"
    ))
}

/// The largest number of queue files at any sample.
fn peak_total(series: &QueueSeries) -> u64 {
    series
        .points
        .iter()
        .map(|(_, c)| c.total())
        .max()
        .unwrap_or(0)
}

/// Peak resident set size of this process (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `memory`: runs each case in a child process of `exe` (so each peak is its own) and
/// reports peak memory and bytes per queued message.
pub fn measure_memory(exe: &Path, messages: u64, full: bool) -> Result<String, Error> {
    let mut rows = Vec::new();
    for (case, _) in MEMORY_CASES {
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["bench", "memory", "--child", case, "--messages"])
            .arg(messages.to_string());
        if full {
            cmd.arg("--full");
        }
        let out = cmd
            .output()
            .map_err(|e| Error::Runtime(format!("cannot start {}: {e}", exe.display())))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(Error::Runtime(format!(
                "memory case {case} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let fields: Vec<f64> = text
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let [kib, queued, msgs, events, seconds] = fields[..] else {
            return Err(Error::Runtime(format!(
                "memory case {case}: unexpected output `{}`",
                text.trim()
            )));
        };
        rows.push((case, kib, queued, msgs, events, seconds));
    }
    let mut report = format!(
        "{} ({})\n",
        if full {
            "mailsim run (no deliveries.csv, no charts)"
        } else {
            "model only"
        },
        "peak RSS = VmHWM of a child process per case"
    );
    for (case, kib, queued, msgs, events, seconds) in &rows {
        report.push_str(&format!(
            "{case:14} {msgs:.0} messages, {events:.0} events in {seconds:.1} s: peak RSS {:.1} MiB, at most {queued:.0} queue files at a sample\n",
            kib / 1024.0
        ));
    }
    if let [small, growing] = &rows[..] {
        let bytes = (growing.1 - small.1) * 1024.0 / (growing.2 - small.2).max(1.0);
        report.push_str(&format!(
            "bytes per queued message (difference of peaks / difference of queue files): {bytes:.0}"
        ));
    }
    Ok(report)
}
