//! `queues.csv`: the number of queue files per directory every `sample` step.
//!
//! Columns: `time_s,maildrop,incoming,active,deferred,hold,free_bytes`. The row at time T
//! shows the state after every event at or before T; `free_bytes` (free space on the queue
//! file system) is empty without a `[disk]`.

use crate::engine::time::{Time, write_seconds};
use crate::postfix::QueueCounts;

pub const HEADER: &str = "time_s,maildrop,incoming,active,deferred,hold,free_bytes\n";
/// The header before `free_bytes` was added (still read by `mailsim plot`).
const OLD_HEADER: &str = "time_s,maildrop,incoming,active,deferred,hold";

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
    /// Free bytes of the queue file system at each point (`None`: no `[disk]`).
    pub free_bytes: Vec<Option<u64>>,
}

impl QueueSeries {
    pub fn push(&mut self, t: Time, c: QueueCounts) {
        self.points.push((t, c));
    }

    /// A point with the deferred files of each destination and the free space too.
    pub fn push_with_destinations(
        &mut self,
        t: Time,
        c: QueueCounts,
        deferred: &[u64],
        free_bytes: Option<u64>,
    ) {
        self.points.push((t, c));
        self.free_bytes.push(free_bytes);
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
        for (i, (t, c)) in self.points.iter().enumerate() {
            write_seconds(&mut s, *t);
            use std::fmt::Write;
            let _ = write!(
                s,
                ",{},{},{},{},{},",
                c.maildrop, c.incoming, c.active, c.deferred, c.hold
            );
            if let Some(Some(free)) = self.free_bytes.get(i) {
                let _ = write!(s, "{free}");
            }
            s.push('\n');
        }
        s
    }
}

impl QueueSeries {
    /// Reads a `queues.csv` written by [`QueueSeries::to_csv`] (for `mailsim plot`).
    pub fn from_csv(text: &str) -> Result<QueueSeries, String> {
        let mut lines = text.lines();
        let header = lines.next();
        let with_free = header == Some(HEADER.trim_end());
        if !with_free && header != Some(OLD_HEADER) {
            return Err("not a mailsim queues.csv (unexpected header)".into());
        }
        let mut points = Vec::new();
        let mut free_bytes = Vec::new();
        for (n, line) in lines.enumerate() {
            let bad = || format!("line {}: `{line}` is not a queues.csv row", n + 2);
            let cells: Vec<&str> = line.split(',').collect();
            let (t, md, inc, act, def, hold) = match (cells.as_slice(), with_free) {
                ([t, md, inc, act, def, hold, free], true) => {
                    free_bytes.push(match *free {
                        "" => None,
                        f => Some(f.parse::<u64>().map_err(|_| bad())?),
                    });
                    (t, md, inc, act, def, hold)
                }
                ([t, md, inc, act, def, hold], false) => (t, md, inc, act, def, hold),
                _ => return Err(bad()),
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
            free_bytes,
            ..QueueSeries::default()
        })
    }
}
