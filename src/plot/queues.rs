//! The queue-size chart of a single run (`queues.png`, `queues.svg`).

use super::chart::{LineChart, Series, write_line_chart};
use crate::engine::time::as_seconds_f64;
use crate::error::Error;
use crate::output::queues::QueueSeries;
use crate::output::{Staged, partial_path};
use std::path::Path;

/// Draws `queues.png` and `queues.svg` in `dir` under their temporary names; the caller
/// renames them with the rest of the run's files.
pub fn write_queue_chart(
    name: &str,
    series: &QueueSeries,
    dir: &Path,
) -> Result<[Staged; 2], Error> {
    let pick = |f: fn(&crate::postfix::QueueCounts) -> u64| -> Vec<(f64, f64)> {
        series
            .points
            .iter()
            .map(|(t, c)| (as_seconds_f64(*t), f(c) as f64))
            .collect()
    };
    let mut lines = vec![
        Series {
            name: "incoming".into(),
            points: pick(|c| c.incoming),
        },
        Series {
            name: "active".into(),
            points: pick(|c| c.active),
        },
        Series {
            name: "deferred".into(),
            points: pick(|c| c.deferred),
        },
    ];
    if series.points.iter().any(|(_, c)| c.hold > 0) {
        lines.push(Series {
            name: "hold".into(),
            points: pick(|c| c.hold),
        });
    }
    if series.points.iter().any(|(_, c)| c.maildrop > 0) {
        lines.push(Series {
            name: "maildrop".into(),
            points: pick(|c| c.maildrop),
        });
    }
    let chart = LineChart {
        title: format!("{name}: Postfix queue sizes"),
        x_label: "simulated time (s)".into(),
        y_label: "messages in queue".into(),
        series: lines,
        markers: Vec::new(),
        bands: Vec::new(),
    };
    let (png, svg) = (dir.join("queues.png"), dir.join("queues.svg"));
    // Staged first, so that a failed drawing removes what it left.
    let staged = [
        Staged::external(partial_path(&png), png),
        Staged::external(partial_path(&svg), svg),
    ];
    write_line_chart(
        &chart,
        &partial_path(staged[0].final_path()),
        &partial_path(staged[1].final_path()),
    )
    .map_err(|e| Error::Runtime(format!("plot: {e}")))?;
    Ok(staged)
}
