//! `queues.csv`: the number of queue files per directory every `sample` step.
//!
//! Columns: `time_s,maildrop,incoming,active,deferred,hold`. The row at time T shows the
//! state after every event at or before T.

use crate::engine::time::{Time, write_seconds};
use crate::postfix::QueueCounts;

pub const HEADER: &str = "time_s,maildrop,incoming,active,deferred,hold\n";

/// The sampled series, kept for the plot and written as CSV at the end of the run (a few
/// thousand rows even for long runs: bounded by duration / sample, not by messages).
#[derive(Default)]
pub struct QueueSeries {
    pub points: Vec<(Time, QueueCounts)>,
    /// Deferred files per destination at each point, `destinations` values per point.
    pub deferred_by_destination: Vec<u64>,
    pub destinations: usize,
    /// When set, qshape.csv rows are added at every sample (`run --qshape`).
    pub qshape: Option<String>,
}

impl QueueSeries {
    pub fn push(&mut self, t: Time, c: QueueCounts) {
        self.points.push((t, c));
    }

    /// A point with the deferred files of each destination too.
    pub fn push_with_destinations(&mut self, t: Time, c: QueueCounts, deferred: &[u64]) {
        self.points.push((t, c));
        self.destinations = deferred.len();
        self.deferred_by_destination.extend_from_slice(deferred);
    }

    /// `deferred-by-destination.csv`: time_s and one column per destination.
    pub fn destinations_csv(&self, names: &[&str]) -> String {
        let mut s = String::from("time_s");
        for n in names {
            s.push(',');
            s.push_str(n);
        }
        s.push('\n');
        let k = self.destinations.max(1);
        for (i, (t, _)) in self.points.iter().enumerate() {
            write_seconds(&mut s, *t);
            for d in 0..names.len().min(self.destinations) {
                use std::fmt::Write;
                let _ = write!(
                    s,
                    ",{}",
                    self.deferred_by_destination
                        .get(i * k + d)
                        .copied()
                        .unwrap_or(0)
                );
            }
            s.push('\n');
        }
        s
    }

    pub fn to_csv(&self) -> String {
        let mut s = String::with_capacity(HEADER.len() + self.points.len() * 32);
        s.push_str(HEADER);
        for (t, c) in &self.points {
            write_seconds(&mut s, *t);
            use std::fmt::Write;
            let _ = writeln!(
                s,
                ",{},{},{},{},{}",
                c.maildrop, c.incoming, c.active, c.deferred, c.hold
            );
        }
        s
    }
}

impl QueueSeries {
    /// Reads a `queues.csv` written by [`QueueSeries::to_csv`] (for `mailsim plot`).
    pub fn from_csv(text: &str) -> Result<QueueSeries, String> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER.trim_end()) {
            return Err("not a mailsim queues.csv (unexpected header)".into());
        }
        let mut points = Vec::new();
        for (n, line) in lines.enumerate() {
            let bad = || format!("line {}: `{line}` is not a queues.csv row", n + 2);
            let cells: Vec<&str> = line.split(',').collect();
            let [t, md, inc, act, def, hold] = cells.as_slice() else {
                return Err(bad());
            };
            let secs: f64 = t.parse().map_err(|_| bad())?;
            let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
            points.push((
                (secs * crate::engine::time::SECOND as f64).round() as Time,
                QueueCounts {
                    maildrop: num(md)?,
                    incoming: num(inc)?,
                    active: num(act)?,
                    deferred: num(def)?,
                    hold: num(hold)?,
                },
            ));
        }
        Ok(QueueSeries {
            points,
            ..QueueSeries::default()
        })
    }
}
