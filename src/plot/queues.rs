//! The queue-size chart of a single run (`queues.png`, `queues.svg`).

use super::chart::{LineChart, Series, write_line_chart};
use crate::engine::time::as_seconds_f64;
use crate::error::Error;
use crate::output::queues::QueueSeries;
use std::path::Path;

pub fn write_queue_chart(name: &str, series: &QueueSeries, dir: &Path) -> Result<(), Error> {
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
    write_line_chart(&chart, &dir.join("queues.png"), &dir.join("queues.svg"))
        .map_err(|e| Error::Runtime(format!("plot: {e}")))
}
