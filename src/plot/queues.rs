//! The charts of a single run: queue sizes with the faults and admin commands marked
//! (`queues.png`), the delivery-delay distribution (`delays.png`), and deferred files per
//! destination (`deferred-by-destination.png`).

use super::chart::{Band, LineChart, Marker, Series, write_line_chart};
use crate::engine::time::{SECOND, as_seconds_f64};
use crate::error::Error;
use crate::output::queues::QueueSeries;
use crate::output::timeline::Entry;
use crate::output::{Staged, partial_path};
use std::path::Path;

fn plot_error(e: super::chart::PlotError) -> Error {
    Error::Runtime(format!("plot: {e}"))
}

/// Draws `chart` as `<stem>.png` and `<stem>.svg` in `dir` under their temporary names;
/// the caller renames them with the rest of the run's files.
fn draw(chart: &LineChart, dir: &Path, stem: &str) -> Result<[Staged; 2], Error> {
    let (png, svg) = (
        dir.join(format!("{stem}.png")),
        dir.join(format!("{stem}.svg")),
    );
    // Staged first, so that a failed drawing removes what it left.
    let staged = [
        Staged::external(partial_path(&png), png),
        Staged::external(partial_path(&svg), svg),
    ];
    write_line_chart(
        chart,
        &partial_path(staged[0].final_path()),
        &partial_path(staged[1].final_path()),
    )
    .map_err(plot_error)?;
    Ok(staged)
}

/// Faults with an end as shaded bands, the rest (admin commands, open-ended faults) as
/// markers.
fn timeline_marks(timeline: &[Entry]) -> (Vec<Band>, Vec<Marker>) {
    let mut bands = Vec::new();
    let mut markers = Vec::new();
    for e in timeline {
        let x0 = e.start as f64 / SECOND as f64;
        match (e.fault, e.end) {
            (true, Some(end)) => bands.push(Band {
                x0,
                x1: end as f64 / SECOND as f64,
                label: e.label.clone(),
            }),
            _ => markers.push(Marker {
                x: x0,
                label: e.label.clone(),
            }),
        }
    }
    (bands, markers)
}

pub fn write_queue_chart(
    name: &str,
    series: &QueueSeries,
    timeline: &[Entry],
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
            ..Default::default()
        },
        Series {
            name: "active".into(),
            points: pick(|c| c.active),
            ..Default::default()
        },
        Series {
            name: "deferred".into(),
            points: pick(|c| c.deferred),
            ..Default::default()
        },
    ];
    if series.points.iter().any(|(_, c)| c.hold > 0) {
        lines.push(Series {
            name: "hold".into(),
            points: pick(|c| c.hold),
            ..Default::default()
        });
    }
    if series.points.iter().any(|(_, c)| c.maildrop > 0) {
        lines.push(Series {
            name: "maildrop".into(),
            points: pick(|c| c.maildrop),
            ..Default::default()
        });
    }
    let (bands, markers) = timeline_marks(timeline);
    let chart = LineChart {
        title: format!("{name}: Postfix queue sizes"),
        x_label: "simulated time (s)".into(),
        y_label: "messages in queue".into(),
        series: lines,
        markers,
        bands,
        ..Default::default()
    };
    draw(&chart, dir, "queues")
}

/// The delivery-delay distribution: fraction of delivered recipients within x seconds.
pub fn write_delay_chart(name: &str, cdf: &[(f64, f64)], dir: &Path) -> Result<[Staged; 2], Error> {
    let chart = LineChart {
        title: format!("{name}: delivery delay (arrival to sent)"),
        x_label: "delay (s)".into(),
        y_label: "fraction of delivered recipients".into(),
        series: vec![Series {
            name: "delivered within".into(),
            points: cdf.to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    };
    draw(&chart, dir, "delays")
}

/// Deferred files per destination over time (destinations that ever had any).
pub fn write_destination_chart(
    name: &str,
    series: &QueueSeries,
    destinations: &[&str],
    timeline: &[Entry],
    dir: &Path,
) -> Result<[Staged; 2], Error> {
    let k = series.destinations.max(1);
    let lines: Vec<Series> = destinations
        .iter()
        .enumerate()
        .filter(|(d, _)| *d < series.destinations)
        .map(|(d, domain)| Series {
            name: domain.to_string(),
            points: series
                .points
                .iter()
                .enumerate()
                .map(|(i, (t, _))| {
                    let v = series
                        .deferred_by_destination
                        .get(i * k + d)
                        .copied()
                        .unwrap_or(0);
                    (as_seconds_f64(*t), v as f64)
                })
                .collect(),
            ..Default::default()
        })
        .filter(|s| s.points.iter().any(|p| p.1 > 0.0))
        .collect();
    let (bands, markers) = timeline_marks(timeline);
    let chart = LineChart {
        title: format!("{name}: deferred queue files per destination"),
        x_label: "simulated time (s)".into(),
        y_label: "deferred files with mail for it".into(),
        series: lines,
        markers,
        bands,
        ..Default::default()
    };
    draw(&chart, dir, "deferred-by-destination")
}

/// All charts of one run.
pub fn write_run_charts(
    name: &str,
    series: &QueueSeries,
    timeline: &[Entry],
    delay_cdf: &[(f64, f64)],
    destinations: &[&str],
    dir: &Path,
) -> Result<Vec<Staged>, Error> {
    let mut staged = Vec::new();
    staged.extend(write_queue_chart(name, series, timeline, dir)?);
    staged.extend(write_delay_chart(name, delay_cdf, dir)?);
    staged.extend(write_destination_chart(
        name,
        series,
        destinations,
        timeline,
        dir,
    )?);
    Ok(staged)
}

/// `mailsim plot` on a run folder: the charts again, from its CSV files.
pub fn replot_run(dir: &Path) -> Result<(), Error> {
    let read = |file: &str| -> Result<Option<String>, Error> {
        let path = dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot read", &path, e)),
        }
    };
    let bad = |file: &str, m: String| Error::Runtime(format!("{}: {m}", dir.join(file).display()));
    let Some(queues) = read("queues.csv")? else {
        return Err(Error::Runtime(format!(
            "{}: no queues.csv or sweep-state.json here; give a folder written by `mailsim run` or `mailsim sweep`",
            dir.display()
        )));
    };
    let mut series = QueueSeries::from_csv(&queues).map_err(|m| bad("queues.csv", m))?;
    let timeline = match read("timeline.csv")? {
        Some(t) => crate::output::timeline::from_csv(&t).map_err(|m| bad("timeline.csv", m))?,
        None => Vec::new(),
    };
    let mut cdf = Vec::new();
    if let Some(t) = read("delay-cdf.csv")? {
        for line in t.lines().skip(1) {
            let mut cells = line.split(',').map(str::parse::<f64>);
            if let (Some(Ok(d)), Some(Ok(q))) = (cells.next(), cells.next()) {
                cdf.push((d, q));
            }
        }
    }
    let mut names: Vec<String> = Vec::new();
    if let Some(t) = read("deferred-by-destination.csv")? {
        let mut lines = t.lines();
        names = lines
            .next()
            .unwrap_or_default()
            .split(',')
            .skip(1)
            .map(str::to_string)
            .collect();
        series.destinations = names.len();
        for line in lines {
            for v in line.split(',').skip(1) {
                series.deferred_by_destination.push(v.parse().map_err(|_| {
                    bad(
                        "deferred-by-destination.csv",
                        format!("`{v}` is not a count"),
                    )
                })?);
            }
        }
    }
    // The scenario's name from summary.json, else the folder's.
    let name = read("summary.json")?
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v.get("scenario")
                .and_then(|n| n.as_str())
                .map(str::to_string)
        })
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut staged = write_run_charts(&name, &series, &timeline, &cdf, &names, dir)?;
    if let Some(csv) = read("stall.csv")? {
        staged.extend(write_stall_chart(&name, &csv, &timeline, dir)?);
    }
    for s in staged {
        s.rename()?;
    }
    Ok(())
}

/// Recipients waiting, by cause, as stacked areas (each layer's top is the sum of itself
/// and those below), with the scenario's faults and admin commands marked.
pub fn write_stall_chart(
    name: &str,
    stall_csv: &str,
    timeline: &[Entry],
    dir: &Path,
) -> Result<[Staged; 2], Error> {
    let mut lines = stall_csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .skip(1)
        .collect();
    let mut series: Vec<Series> = header
        .iter()
        .map(|h| Series {
            name: h.replace('_', " "),
            fill: true,
            ..Default::default()
        })
        .collect();
    let mut used = vec![false; series.len()];
    for line in lines {
        let mut cells = line.split(',');
        let Some(Ok(t)) = cells.next().map(str::parse::<f64>) else {
            continue;
        };
        let mut acc = 0.0;
        for ((s, v), used) in series.iter_mut().zip(cells).zip(used.iter_mut()) {
            let v = v.parse::<f64>().unwrap_or(0.0);
            *used |= v != 0.0;
            acc += v;
            s.points.push((t, acc));
        }
    }
    // Only the causes that ever had someone waiting get a layer (and a legend entry).
    let mut used = used.into_iter();
    series.retain(|_| used.next().unwrap_or(false));
    // Draw the top of the stack first so the legend reads from the top down.
    series.reverse();
    let (bands, markers) = timeline_marks(timeline);
    let chart = LineChart {
        title: format!("{name}: recipients waiting, by cause (stacked)"),
        x_label: "simulated time (s)".into(),
        y_label: "recipients".into(),
        series,
        markers,
        bands,
        ..Default::default()
    };
    draw(&chart, dir, "stall")
}
