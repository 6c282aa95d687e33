//! A sweep's files: `runs.csv` (one row per run), `points.csv` (mean, sd and 95 % CI of each
//! metric per point), `series.csv` (mean and CI of each queue curve per point and sample),
//! and `sweep-state.json`, the exact state a later `mailsim merge` or `mailsim plot` reads.

use super::stats::Estimate;
use super::{CURVES, SweepState};
use crate::engine::time::{SECOND, Time, write_seconds};
use crate::error::Error;
use crate::output::queues::QueueSeries;
use crate::output::summary::Summary;
use crate::output::write_file;
use std::fmt::Write as _;
use std::path::Path;

pub const STATE_FILE: &str = "sweep-state.json";

/// A float for CSV: shortest round-trip digits; empty for a missing value or NaN.
fn cell(out: &mut String, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        let _ = write!(out, "{v}");
    }
}

/// A CSV text cell, quoted when it needs it.
fn text_cell(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

impl SweepState {
    /// The values of point `p`, one per axis.
    pub fn point_values(&self, p: usize) -> Vec<&str> {
        let mut rest = p;
        let mut out = vec![""; self.axes.len()];
        for (k, (_, values)) in self.axes.iter().enumerate().rev() {
            let n = values.len().max(1);
            out[k] = values.get(rest % n).map(String::as_str).unwrap_or("");
            rest /= n;
        }
        out
    }

    fn axis_header(&self, out: &mut String) {
        for (name, _) in &self.axes {
            out.push(',');
            text_cell(out, name);
        }
    }

    fn axis_cells(&self, out: &mut String, point: usize) {
        for v in self.point_values(point) {
            out.push(',');
            text_cell(out, v);
        }
    }

    pub fn runs_csv(&self) -> String {
        let mut s = String::from("run,point");
        self.axis_header(&mut s);
        s.push_str(",replication,seed");
        for m in &self.metrics {
            s.push(',');
            text_cell(&mut s, m);
        }
        s.push('\n');
        let reps = u64::from(self.replications.max(1));
        for row in &self.rows {
            let point = (row.run / reps) as usize;
            let _ = write!(s, "{},{}", row.run, point);
            self.axis_cells(&mut s, point);
            let _ = write!(s, ",{},{}", row.run % reps, row.seed);
            for v in &row.metrics {
                s.push(',');
                cell(&mut s, *v);
            }
            s.push('\n');
        }
        s
    }

    /// Estimates of metric `m` per point.
    pub fn metric_estimates(&self, m: usize) -> Vec<Option<Estimate>> {
        let reps = u64::from(self.replications.max(1));
        (0..self.curves.len())
            .map(|p| {
                let values: Vec<f64> = self
                    .rows
                    .iter()
                    .filter(|r| (r.run / reps) as usize == p)
                    .filter_map(|r| r.metrics.get(m).copied().flatten())
                    .collect();
                Estimate::of(&values)
            })
            .collect()
    }

    pub fn points_csv(&self) -> String {
        let mut s = String::from("point");
        self.axis_header(&mut s);
        // `undrained`: runs that ended with mail still queued (their drain_time_s is
        // empty, and the point's drain-time statistics leave them out).
        s.push_str(",runs,undrained");
        for m in &self.metrics {
            for stat in ["mean", "sd", "ci_low", "ci_high"] {
                s.push(',');
                text_cell(&mut s, &format!("{m}_{stat}"));
            }
        }
        s.push('\n');
        let per_metric: Vec<Vec<Option<Estimate>>> = (0..self.metrics.len())
            .map(|m| self.metric_estimates(m))
            .collect();
        let queued = self.metrics.iter().position(|m| m == "queued_at_end");
        let reps = u64::from(self.replications.max(1));
        for p in 0..self.curves.len() {
            let mine = || self.rows.iter().filter(|r| (r.run / reps) as usize == p);
            let runs = mine().count();
            let undrained = mine()
                .filter(|r| {
                    queued
                        .and_then(|q| r.metrics.get(q).copied().flatten())
                        .is_some_and(|n| n > 0.0)
                })
                .count();
            let _ = write!(s, "{p}");
            self.axis_cells(&mut s, p);
            let _ = write!(s, ",{runs},{undrained}");
            for estimates in &per_metric {
                match estimates[p] {
                    Some(e) => {
                        for v in [e.mean, e.sd, e.ci_low, e.ci_high] {
                            s.push(',');
                            cell(&mut s, Some(v));
                        }
                    }
                    None => s.push_str(",,,,"),
                }
            }
            s.push('\n');
        }
        s
    }

    pub fn series_csv(&self) -> String {
        let mut s = String::from("point");
        self.axis_header(&mut s);
        s.push_str(",time_s");
        for c in CURVES {
            let _ = write!(s, ",{c}_mean,{c}_ci_low,{c}_ci_high");
        }
        s.push('\n');
        for (p, curve) in self.curves.iter().enumerate() {
            for (i, row) in curve.estimates().iter().enumerate() {
                let _ = write!(s, "{p}");
                self.axis_cells(&mut s, p);
                s.push(',');
                write_seconds(&mut s, curve.step * i as Time);
                for e in row {
                    for v in [e.mean, e.ci_low, e.ci_high] {
                        s.push(',');
                        // A single replication has no interval: show the mean as both ends.
                        cell(&mut s, Some(if v.is_finite() { v } else { e.mean }));
                    }
                }
                s.push('\n');
            }
        }
        s
    }

    /// Writes the state; and, unless this is a shard, the CSV files and charts.
    pub fn write(&self, dir: &Path, plots: bool) -> Result<(), Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("cannot create the sweep folder", dir, e))?;
        let json =
            serde_json::to_string(self).map_err(|e| Error::Runtime(format!("sweep state: {e}")))?;
        write_file(&dir.join(STATE_FILE), format!("{json}\n").as_bytes())?;
        write_file(&dir.join("runs.csv"), self.runs_csv().as_bytes())?;
        if self.shard.is_some() {
            return Ok(());
        }
        write_file(&dir.join("points.csv"), self.points_csv().as_bytes())?;
        write_file(&dir.join("series.csv"), self.series_csv().as_bytes())?;
        if plots {
            crate::plot::sweep::write_sweep_charts(self, dir)?;
        }
        Ok(())
    }

    /// Reads a state written by [`SweepState::write`].
    pub fn read(dir: &Path) -> Result<SweepState, Error> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::io("cannot read the sweep state", &path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Runtime(format!(
                "{}: not a mailsim sweep state ({e}); was it written by `mailsim sweep`?",
                path.display()
            ))
        })
    }
}

/// `--keep-runs`: one run's summary and queue curve under `runs/p<point>-r<replication>/`.
pub fn keep_run(
    dir: &Path,
    point: usize,
    replication: u32,
    summary: &Summary,
    series: &QueueSeries,
) -> Result<(), Error> {
    let run_dir = dir.join("runs").join(format!("p{point}-r{replication}"));
    std::fs::create_dir_all(&run_dir)
        .map_err(|e| Error::io("cannot create the run folder", &run_dir, e))?;
    let json = serde_json::to_string_pretty(summary)
        .map_err(|e| Error::Runtime(format!("summary: {e}")))?;
    write_file(
        &run_dir.join("summary.json"),
        format!("{json}\n").as_bytes(),
    )?;
    write_file(&run_dir.join("queues.csv"), series.to_csv().as_bytes())
}

/// Seconds of a sample step, for plots.
pub fn step_seconds(step: Time) -> f64 {
    step as f64 / SECOND as f64
}
