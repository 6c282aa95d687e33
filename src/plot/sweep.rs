//! A sweep's charts: the queue curve of each point with its 95 % confidence band
//! (`series.png`), and key metrics against the first swept value with error bars, one line
//! per combination of the other swept values (`metric-<name>.png`).

use super::chart::{IntervalStyle, LineChart, Series, write_line_chart};
use crate::error::Error;
use crate::sweep::output::step_seconds;
use crate::sweep::{CURVES, SweepState};
use std::path::Path;

/// Metrics worth a chart of their own.
const CHARTED: [(&str, &str); 5] = [
    ("drain_time_s", "drain time (s)"),
    ("backlog_clear_s", "backlog cleared at (s)"),
    ("delay_p95_s", "95th percentile delivery delay (s)"),
    ("peak_deferred", "peak deferred queue (messages)"),
    ("bounced", "bounced recipients"),
];

/// How the first swept value goes on the x axis.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Axis {
    Numbers,
    /// Durations, shown in seconds.
    Seconds,
    /// Names: one position each.
    Names,
}

fn axis_kind(values: &[String]) -> Axis {
    if values.iter().all(|v| v.trim().parse::<f64>().is_ok()) {
        Axis::Numbers
    } else if values
        .iter()
        .all(|v| crate::scenario::units::parse_duration(v, true).is_ok())
    {
        Axis::Seconds
    } else {
        Axis::Names
    }
}

/// A swept value's x: the number, the duration in seconds, or its position.
fn numeric(value: &str, position: usize, axis: Axis) -> f64 {
    match axis {
        Axis::Numbers => value.trim().parse().unwrap_or(position as f64),
        Axis::Seconds => crate::scenario::units::parse_duration(value, true)
            .map(|t| t as f64 / crate::engine::time::SECOND as f64)
            .unwrap_or(position as f64),
        Axis::Names => position as f64,
    }
}

pub fn write_sweep_charts(state: &SweepState, dir: &Path) -> Result<(), Error> {
    let fail = |e: super::chart::PlotError| Error::Runtime(format!("plot: {e}"));
    let total = CURVES.iter().position(|c| *c == "total").unwrap_or(0);
    let mut lines = Vec::new();
    for (p, curve) in state.curves.iter().enumerate() {
        let est = curve.estimates();
        let x = |i: usize| i as f64 * step_seconds(curve.step);
        let name = label(state, p);
        lines.push(Series {
            name: if name.is_empty() {
                "all runs".into()
            } else {
                name
            },
            points: est
                .iter()
                .enumerate()
                .map(|(i, e)| (x(i), e[total].mean))
                .collect(),
            interval: est
                .iter()
                .enumerate()
                .filter(|(_, e)| e[total].ci_low.is_finite())
                .map(|(i, e)| (x(i), e[total].ci_low.max(0.0), e[total].ci_high))
                .collect(),
            interval_style: IntervalStyle::Band,
            fill: false,
        });
    }
    let chart = LineChart {
        title: format!(
            "{}: messages in the queue, mean of {} runs per point with 95 % CI",
            state.scenario, state.replications
        ),
        x_label: "simulated time (s)".into(),
        y_label: "queue files (all queues)".into(),
        series: lines,
        ..Default::default()
    };
    write_line_chart(&chart, &dir.join("series.png"), &dir.join("series.svg")).map_err(fail)?;

    let Some((first_name, first_values)) = state.axes.first() else {
        return Ok(());
    };
    let inner = first_values.len().max(1);
    let groups = state.curves.len() / inner.max(1);
    let kind = axis_kind(first_values);
    let x_label = match kind {
        Axis::Seconds => format!("{first_name} (s)"),
        _ => first_name.clone(),
    };
    for (metric, y_label) in CHARTED {
        let Some(m) = state.metrics.iter().position(|n| n == metric) else {
            continue;
        };
        let estimates = state.metric_estimates(m);
        // Points are numbered with the first axis slowest: point = i·(others) + g.
        let mut series = Vec::new();
        for g in 0..groups {
            let mut points = Vec::new();
            let mut interval = Vec::new();
            for (i, value) in first_values.iter().enumerate() {
                let p = i * groups + g;
                if let Some(Some(e)) = estimates.get(p) {
                    let x = numeric(value, i, kind);
                    points.push((x, e.mean));
                    if e.ci_low.is_finite() {
                        interval.push((x, e.ci_low, e.ci_high));
                    }
                }
            }
            let others = other_label(state, g);
            series.push(Series {
                name: if others.is_empty() {
                    metric.to_string()
                } else {
                    others
                },
                points,
                interval,
                interval_style: IntervalStyle::Bars,
                fill: false,
            });
        }
        let chart = LineChart {
            title: format!("{}: {y_label} by {first_name}", state.scenario),
            x_label: x_label.clone(),
            y_label: y_label.to_string(),
            series,
            x_categories: if kind == Axis::Names {
                first_values.clone()
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        write_line_chart(
            &chart,
            &dir.join(format!("metric-{metric}.png")),
            &dir.join(format!("metric-{metric}.svg")),
        )
        .map_err(fail)?;
    }
    Ok(())
}

/// `name=value, …` of point `p`.
fn label(state: &SweepState, p: usize) -> String {
    state
        .axes
        .iter()
        .zip(state.point_values(p))
        .map(|(a, v)| format!("{}={v}", a.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The values of every axis but the first for group `g` (a point with first index 0).
fn other_label(state: &SweepState, g: usize) -> String {
    state
        .axes
        .iter()
        .zip(state.point_values(g))
        .skip(1)
        .map(|(a, v)| format!("{}={v}", a.0))
        .collect::<Vec<_>>()
        .join(", ")
}
