//! `mailsim sweep`: many runs of one scenario — replications and parameter points — in
//! parallel, aggregated into means and 95 % confidence intervals.
//!
//! - Run `i` is point `i / replications`, replication `i % replications`. Replication `r`
//!   has the same seed at every point (common random numbers), derived from the scenario
//!   seed; replication 0 uses the scenario seed itself, so it equals `mailsim run`.
//! - Runs execute on a rayon pool in chunks; each chunk's results are folded in run order,
//!   and queue-size curves are summed in exact integers, so the output is the same bytes for
//!   any number of threads, and memory holds one chunk of curves at a time.
//! - `--shard K/N` runs every run whose index is K−1 modulo N and saves its partial state;
//!   `mailsim merge` adds shard states into exactly the files a single sweep writes.

pub mod output;
pub mod spec;
pub mod stats;

use crate::engine::rng::splitmix64;
use crate::error::Error;
use crate::output::queues::QueueSeries;
use crate::output::summary::Summary;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
pub use spec::{SweepSpec, parse_set};

/// The metrics of one run, in the order of [`SweepState::metrics`] (`None`: not defined
/// for this run, e.g. no delay when nothing was delivered).
pub type Metrics = Vec<Option<f64>>;

/// The metric columns of sweep states written before every summary value was one: the
/// scalar ones, which still come first.
pub const LEGACY_METRICS: &[&str] = &[
    "messages",
    "recipients",
    "sent",
    "bounced",
    "expired",
    "deleted",
    "queued_at_end",
    "attempts",
    "deferrals",
    "suspended_deferrals",
    "refused_disk_full",
    "not_accepted",
    "drain_time_s",
    "delay_mean_s",
    "delay_p50_s",
    "delay_p95_s",
    "delay_p99_s",
    "delay_max_s",
    "peak_incoming",
    "peak_active",
    "peak_deferred",
    "peak_hold",
    "end_time_s",
    "events",
];

fn legacy_metrics() -> Vec<String> {
    LEGACY_METRICS.iter().map(|m| m.to_string()).collect()
}

/// Memory one finished run takes in a sweep's state: its row of metrics.
fn bytes_per_run(metrics: usize) -> u64 {
    64 + 16 * metrics as u64
}

/// A stable fingerprint (FNV-1a, 64 bits) of what makes a sweep: the scenario text, the
/// swept values and the mailsim version, so shards of different sweeps are not merged.
pub fn fingerprint(scenario_text: &str, sets: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x100_0000_01b3);
    };
    eat(env!("CARGO_PKG_VERSION").as_bytes());
    eat(scenario_text.as_bytes());
    for set in sets {
        eat(set.as_bytes());
    }
    format!("{h:016x}")
}

/// Queue curves aggregated per point: incoming, active, deferred, hold, and all of them.
pub const CURVES: [&str; 5] = ["incoming", "active", "deferred", "hold", "total"];

fn curve_values(c: &crate::postfix::QueueCounts) -> [u64; 5] {
    [
        c.incoming,
        c.active,
        c.deferred,
        c.hold,
        c.maildrop + c.incoming + c.active + c.deferred + c.hold,
    ]
}

/// The seed of replication `r` (the same at every point).
pub fn replication_seed(base: u64, r: u32) -> u64 {
    if r == 0 {
        base
    } else {
        splitmix64(base ^ splitmix64(u64::from(r)))
    }
}

/// One finished run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunRow {
    pub run: u64,
    pub seed: u64,
    pub metrics: Metrics,
}

/// Exact sums of one point's queue curves over its runs. A run shorter than the longest
/// keeps its last value (a finished run's queue stays as it ended).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CurveSums {
    /// Sample step in µs.
    pub step: i64,
    /// Per sample index and curve: (Σx, Σx²) as decimal strings (u128 does not fit JSON).
    pub sums: Vec<[(String, String); 5]>,
    /// Per run: (number of samples, last values).
    pub tails: Vec<(u64, [u64; 5])>,
}

impl CurveSums {
    fn add(&mut self, series: &QueueSeries, step: i64) {
        self.step = step;
        let mut sums: Vec<[(u128, u128); 5]> = self.decode();
        if sums.len() < series.points.len() {
            sums.resize(series.points.len(), [(0, 0); 5]);
        }
        for (i, (_, c)) in series.points.iter().enumerate() {
            for (k, v) in curve_values(c).into_iter().enumerate() {
                let v = u128::from(v);
                sums[i][k].0 += v;
                sums[i][k].1 += v * v;
            }
        }
        let last = series
            .points
            .last()
            .map(|(_, c)| curve_values(c))
            .unwrap_or([0; 5]);
        self.tails.push((series.points.len() as u64, last));
        self.encode(&sums);
    }

    fn decode(&self) -> Vec<[(u128, u128); 5]> {
        self.sums
            .iter()
            .map(|row| {
                let mut out = [(0u128, 0u128); 5];
                for (k, (a, b)) in row.iter().enumerate() {
                    out[k] = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                }
                out
            })
            .collect()
    }

    fn encode(&mut self, sums: &[[(u128, u128); 5]]) {
        self.sums = sums
            .iter()
            .map(|row| row.map(|(a, b)| (a.to_string(), b.to_string())))
            .collect();
    }

    /// Adds another shard's sums for the same point.
    pub fn merge(&mut self, other: &CurveSums) {
        let mut a = self.decode();
        let b = other.decode();
        if a.len() < b.len() {
            a.resize(b.len(), [(0, 0); 5]);
        }
        for (i, row) in b.iter().enumerate() {
            for k in 0..5 {
                a[i][k].0 += row[k].0;
                a[i][k].1 += row[k].1;
            }
        }
        self.step = self.step.max(other.step);
        self.tails.extend_from_slice(&other.tails);
        self.encode(&a);
    }

    /// Per sample index and curve: the estimate over all runs, with each shorter run
    /// extended by its last value.
    pub fn estimates(&self) -> Vec<[stats::Estimate; 5]> {
        let mut sums = self.decode();
        let len = self
            .tails
            .iter()
            .map(|t| t.0 as usize)
            .max()
            .unwrap_or(0)
            .max(sums.len());
        sums.resize(len, [(0, 0); 5]);
        for &(n, last) in &self.tails {
            for row in sums.iter_mut().skip(n as usize) {
                for k in 0..5 {
                    let v = u128::from(last[k]);
                    row[k].0 += v;
                    row[k].1 += v * v;
                }
            }
        }
        let n = self.tails.len() as u64;
        sums.iter()
            .map(|row| row.map(|(s, q)| stats::Estimate::from_sums(n, s, q)))
            .collect()
    }
}

/// Everything a sweep (or a shard of it) has computed: enough to write its files.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepState {
    pub scenario: String,
    /// [`fingerprint`] of the scenario text, the swept values and the version.
    #[serde(default)]
    pub fingerprint: String,
    /// The metric columns, in [`RunRow::metrics`] order: every value of the summary
    /// ([`Summary::columns`]).
    #[serde(default = "legacy_metrics")]
    pub metrics: Vec<String>,
    pub axes: Vec<(String, Vec<String>)>,
    pub replications: u32,
    pub total_runs: u64,
    /// `(k, n)` for a shard.
    pub shard: Option<(u64, u64)>,
    pub rows: Vec<RunRow>,
    pub curves: Vec<CurveSums>,
}

/// What `--resume` needs to continue a sweep exactly as it was started.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepRecipe {
    pub scenario_file: String,
    pub scenario_text: String,
    pub sets: Vec<String>,
    pub replications: Option<u32>,
    pub shard: Option<(u64, u64)>,
}

/// An interrupted sweep: its recipe and the runs done so far (`sweep-checkpoint.json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub recipe: SweepRecipe,
    pub state: SweepState,
}

pub const CHECKPOINT_FILE: &str = "sweep-checkpoint.json";

impl Checkpoint {
    pub fn read(dir: &std::path::Path) -> Result<Checkpoint, Error> {
        let path = dir.join(CHECKPOINT_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io("cannot read the sweep checkpoint", &path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Runtime(format!(
                "{}: not a mailsim sweep checkpoint ({e})",
                path.display()
            ))
        })
    }

    fn write(&self, dir: &std::path::Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("cannot create the sweep folder", dir, e))?;
        let json = serde_json::to_string(self)
            .map_err(|e| Error::Runtime(format!("sweep checkpoint: {e}")))?;
        crate::output::write_file(&dir.join(CHECKPOINT_FILE), json.as_bytes())
    }
}

/// How to run a sweep.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    pub jobs: Option<usize>,
    /// `(k, n)`: run only indices `i` with `i % n == k - 1`.
    pub shard: Option<(u64, u64)>,
    /// Keep each run's summary.json and queues.csv under `runs/`.
    pub keep_runs: Option<std::path::PathBuf>,
    pub progress: bool,
    /// Where to leave a checkpoint when interrupted (SIGINT/SIGTERM), with the recipe that
    /// `--resume` replays.
    pub checkpoint: Option<(std::path::PathBuf, SweepRecipe)>,
    /// The runs of an interrupted sweep to continue from.
    pub resume: Option<SweepState>,
    /// [`fingerprint`] of what makes this sweep.
    pub fingerprint: String,
    /// Stop as if interrupted once this many runs are done (deterministic tests of
    /// `--resume`, which a signal's timing would not be).
    pub stop_after_runs: Option<u64>,
}

/// Runs the sweep and returns its state.
pub fn run(spec: &SweepSpec, opts: &SweepOptions) -> Result<SweepState, Error> {
    let points = spec.point_count();
    let reps = spec.replications;
    let total = points as u64 * u64::from(reps);
    // Check every point before spending time on runs.
    let scenarios: Vec<spec::Point> = (0..points)
        .map(|p| spec.point(p))
        .collect::<Result<_, _>>()?;
    // The columns every run reports: the same for every point (they depend on the
    // destinations, which sweeps do not add or remove).
    let metric_names: Vec<String> = crate::run::summarize(
        &scenarios[0].scenario,
        0,
        &crate::run::RunReport::empty(),
        &crate::output::summary::DelayCollector::default(),
    )
    .columns()
    .into_iter()
    .map(|(name, _)| name)
    .collect();
    let mine = match opts.shard {
        Some((k, n)) => total / n + u64::from(total % n >= k),
        None => total,
    };
    // Results stay in memory until the sweep is written: refuse a sweep whose rows alone
    // would not fit, like a run the memory estimate refuses (exit 2).
    let need = mine.saturating_mul(bytes_per_run(metric_names.len()));
    if need > crate::guard::MEMORY_LIMIT {
        return Err(Error::Input(crate::error::InputError::new(
            &spec.base_scenario.name,
            None,
            Some("replications"),
            format!(
                "{mine} runs ({points} points × {reps} replications{}) would keep about {:.1} GiB of results in memory (the limit is {} GiB); use fewer replications or points, or --shard K/N to split the sweep over machines",
                if opts.shard.is_some() {
                    ", this shard's share"
                } else {
                    ""
                },
                need as f64 / f64::from(1u32 << 30),
                crate::guard::MEMORY_LIMIT >> 30
            ),
        )));
    }
    let shard_filter = opts.shard;
    let indices = (0..total).filter(move |i| match shard_filter {
        Some((k, n)) => i % n == k - 1,
        None => true,
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.unwrap_or(0))
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start worker threads: {e}")))?;
    let bar = if opts.progress {
        let bar = indicatif::ProgressBar::new(mine);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} runs, {elapsed_precise} elapsed, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let fresh = SweepState {
        scenario: spec.base_scenario.name.clone(),
        axes: spec
            .axes
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    a.values.iter().map(spec::value_text).collect(),
                )
            })
            .collect(),
        fingerprint: opts.fingerprint.clone(),
        metrics: metric_names,
        replications: reps,
        total_runs: total,
        shard: opts.shard,
        rows: Vec::new(),
        curves: vec![CurveSums::default(); points],
    };
    let mut state = match &opts.resume {
        Some(done) => {
            if done.scenario != fresh.scenario
                || done.fingerprint != fresh.fingerprint
                || done.metrics != fresh.metrics
                || done.axes != fresh.axes
                || done.replications != fresh.replications
                || done.total_runs != fresh.total_runs
                || done.shard != fresh.shard
                || done
                    .rows
                    .iter()
                    .any(|r| r.metrics.len() != fresh.metrics.len())
            {
                return Err(Error::Runtime(
                    "the checkpoint belongs to a different sweep (or was written by a mailsim with other metrics)".into(),
                ));
            }
            done.clone()
        }
        None => fresh,
    };
    let done: std::collections::HashSet<u64> = state.rows.iter().map(|r| r.run).collect();
    let mut indices = indices.filter(|i| !done.contains(i));
    let chunk = (pool.current_num_threads() * 4).max(1);
    let mut batch: Vec<u64> = Vec::with_capacity(chunk);
    loop {
        batch.clear();
        batch.extend(indices.by_ref().take(chunk));
        if batch.is_empty() {
            break;
        }
        let results: Vec<Result<(u64, u64, Summary, QueueSeries), Error>> = pool.install(|| {
            batch
                .par_iter()
                .map(|&i| {
                    let point = (i / u64::from(reps)) as usize;
                    let r = (i % u64::from(reps)) as u32;
                    let sc = &scenarios[point].scenario;
                    let seed = replication_seed(sc.seed, r);
                    let (summary, series) = crate::run::collect(sc, seed).map_err(|e| match e {
                        Error::Interrupted(_) => e,
                        e => Error::Runtime(format!(
                            "sweep point {} replication {r}: {e}",
                            spec.label(&scenarios[point].values)
                        )),
                    })?;
                    Ok((i, seed, summary, series))
                })
                .collect()
        });
        for result in results {
            // A run stopped by the signal is simply not done; the checkpoint below skips it.
            let (i, seed, summary, series) = match result {
                Ok(done) => done,
                Err(Error::Interrupted(_)) => continue,
                Err(e) => return Err(e),
            };
            let point = (i / u64::from(reps)) as usize;
            if let Some(dir) = &opts.keep_runs {
                output::keep_run(dir, point, (i % u64::from(reps)) as u32, &summary, &series)?;
            }
            state.curves[point].add(&series, scenarios[point].scenario.sample);
            state.rows.push(RunRow {
                run: i,
                seed,
                metrics: summary.columns().into_iter().map(|(_, v)| v).collect(),
            });
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
        let stop_here = opts
            .stop_after_runs
            .is_some_and(|n| state.rows.len() as u64 >= n);
        if crate::guard::interrupted() || stop_here {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            return Err(match &opts.checkpoint {
                Some((dir, recipe)) => {
                    let mut saved = state.clone();
                    saved.rows.sort_by_key(|r| r.run);
                    Checkpoint {
                        recipe: recipe.clone(),
                        state: saved,
                    }
                    .write(dir)?;
                    Error::Interrupted(format!(
                        "sweep interrupted after {} of {mine} runs; `mailsim sweep --resume {}` continues it",
                        state.rows.len(),
                        dir.display()
                    ))
                }
                None => {
                    Error::Interrupted(format!("sweep interrupted after {} runs", state.rows.len()))
                }
            });
        }
    }
    // Rows of a resumed sweep come first; the files want run order.
    state.rows.sort_by_key(|r| r.run);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(state)
}

impl SweepState {
    /// Combines shard states of one sweep into one; errors if they do not fit together.
    pub fn merge(mut parts: Vec<SweepState>) -> Result<SweepState, String> {
        let Some(first) = parts.first().cloned() else {
            return Err("nothing to merge".into());
        };
        for p in &parts {
            if p.scenario != first.scenario
                || p.axes != first.axes
                || p.replications != first.replications
                || p.total_runs != first.total_runs
                || p.metrics != first.metrics
            {
                return Err(format!(
                    "shards of different sweeps: `{}` and `{}` (scenario, swept values and replications must match, and the metrics of the mailsim that wrote them)",
                    first.scenario, p.scenario
                ));
            }
            if p.fingerprint != first.fingerprint {
                return Err(format!(
                    "shards of different sweeps of `{}`: they were made from different scenario texts, --set values or mailsim versions (fingerprints {} and {}); run every shard from the same file and command",
                    first.scenario,
                    if first.fingerprint.is_empty() {
                        "none"
                    } else {
                        &first.fingerprint
                    },
                    if p.fingerprint.is_empty() {
                        "none"
                    } else {
                        &p.fingerprint
                    }
                ));
            }
        }
        parts.sort_by_key(|p| p.shard);
        let mut merged = SweepState {
            shard: None,
            rows: Vec::new(),
            curves: vec![CurveSums::default(); first.curves.len()],
            ..first
        };
        for p in parts {
            merged.rows.extend(p.rows);
            for (a, b) in merged.curves.iter_mut().zip(&p.curves) {
                a.merge(b);
            }
        }
        merged.rows.sort_by_key(|r| r.run);
        let before = merged.rows.len();
        merged.rows.dedup_by_key(|r| r.run);
        if merged.rows.len() != before {
            return Err("a run appears in two shards".into());
        }
        if merged.rows.len() as u64 != merged.total_runs {
            return Err(format!(
                "{} of {} runs present: a shard is missing",
                merged.rows.len(),
                merged.total_runs
            ));
        }
        // Tails were added shard by shard; the curve estimates do not depend on their order,
        // but the saved state should: sort them for byte-identical merges.
        for c in &mut merged.curves {
            c.tails.sort_unstable();
        }
        Ok(merged)
    }
}
