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
}

impl QueueSeries {
    pub fn push(&mut self, t: Time, c: QueueCounts) {
        self.points.push((t, c));
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
