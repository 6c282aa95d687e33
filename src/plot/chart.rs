//! Line charts of simulation results (queue sizes, delivery rates…) written
//! as both PNG and SVG, on top of the `plotters` crate.
//!
//! The font is embedded (Ubuntu Light from the `epaint_default_fonts` crate,
//! registered with plotters' `ab_glyph` text backend) so that charts render
//! identically on any machine, including a fresh one without fontconfig,
//! freetype or any system font, and so that the same chart always gives
//! byte-identical files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Family name the embedded font is registered under and used everywhere.
const FONT: &str = "sans-serif";
const TITLE_SIZE: u32 = 28;
const LABEL_SIZE: u32 = 20;
const TICK_SIZE: u32 = 16;
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
/// Vertical distance between stacked marker/band label rows, in pixels.
const LABEL_ROW: i32 = 20;
const MAX_LABEL_ROWS: usize = 4;

/// Fixed series palette (Tableau 10), so output is deterministic.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const MARKER_COLOR: RGBColor = RGBColor(60, 60, 60);
const BAND_COLOR: RGBColor = RGBColor(230, 85, 13);

/// One named line on a chart: points (x, y) in data units, and optionally an interval
/// (x, low, high) around it, drawn as a shaded band or as error bars.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub interval: Vec<(f64, f64, f64)>,
    pub interval_style: IntervalStyle,
    /// Fill the area under the line (stacked charts draw the top of the stack first).
    pub fill: bool,
}

/// How a series' interval is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntervalStyle {
    /// A translucent band (confidence band of a curve).
    #[default]
    Band,
    /// Vertical error bars at each x (confidence interval of a metric).
    Bars,
}

/// A vertical marker on the x axis (a fault window start, an admin action…):
/// drawn as a dashed vertical line with its label near the top.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// A shaded x-range (e.g. an outage window from x0 to x1) with a label.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub x0: f64,
    pub x1: f64,
    pub label: String,
}

/// A line chart: one line per series, plus optional markers and bands.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LineChart {
    pub title: String,
    /// e.g. "simulated time (s)"
    pub x_label: String,
    /// e.g. "messages in queue"
    pub y_label: String,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
    pub bands: Vec<Band>,
    /// For an axis of names rather than numbers: x = 0, 1, … are these, labelled so.
    pub x_categories: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The embedded font could not be parsed or registered.
    #[error("cannot load the embedded chart font: {0}")]
    Font(String),
    /// Drawing or writing the output file failed.
    #[error("cannot draw chart to {}: {message}", path.display())]
    Draw { path: PathBuf, message: String },
}

/// Writes `chart` to `png` (1280x720) and `svg` (same size). Overwrites
/// existing files.
pub fn write_line_chart(chart: &LineChart, png: &Path, svg: &Path) -> Result<(), PlotError> {
    ensure_font()?;
    let fail = |path: &Path, e: String| PlotError::Draw {
        path: path.to_path_buf(),
        message: e,
    };
    {
        let root = BitMapBackend::new(png, (WIDTH, HEIGHT)).into_drawing_area();
        draw_chart(&root, chart).map_err(|e| fail(png, e))?;
        root.present().map_err(|e| fail(png, e.to_string()))?;
    }
    {
        let root = SVGBackend::new(svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw_chart(&root, chart).map_err(|e| fail(svg, e))?;
        root.present().map_err(|e| fail(svg, e.to_string()))?;
    }
    Ok(())
}

/// Registers the embedded font once per process.
fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(
                FONT,
                FontStyle::Normal,
                epaint_default_fonts::UBUNTU_LIGHT,
            )
            .map_err(|_| "Ubuntu-Light.ttf is not a valid font".to_string())
        })
        .clone()
        .map_err(PlotError::Font)
}

fn finite(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

/// Axis ranges: x spans all finite points (padded if degenerate), y starts
/// at 0 (or below, if some value is negative) with 10 % headroom.
fn ranges(chart: &LineChart) -> ((f64, f64), (f64, f64)) {
    let interval_ends: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.interval.iter())
        .flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)])
        .collect();
    let mut pts = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .chain(interval_ends.iter())
        .filter(|p| finite(p));
    let Some(&(x0, y0)) = pts.next() else {
        return ((0.0, 1.0), (0.0, 1.0));
    };
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (x0, x0, y0.min(0.0), y0.max(0.0));
    for &(x, y) in pts {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymin = ymin.min(y);
        ymax = ymax.max(y);
    }
    let x = if !chart.x_categories.is_empty() {
        (-0.5, chart.x_categories.len() as f64 - 0.5)
    } else if xmax - xmin > 0.0 && (xmax - xmin).is_finite() {
        (xmin, xmax)
    } else {
        let pad = (xmin.abs() * 0.05).max(0.5);
        (xmin - pad, xmin + pad)
    };
    let span = ymax - ymin;
    let y = if span > 0.0 && span.is_finite() {
        let head = span * 0.1;
        (if ymin < 0.0 { ymin - head } else { 0.0 }, ymax + head)
    } else {
        (0.0, 1.0)
    };
    (x, y)
}

/// Tick label text: integers without a decimal point, other values with at
/// most 6 decimals and no trailing zeros.
fn tick_label(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

type Area<DB> = DrawingArea<DB, Shift>;

/// The upper corner where the legend hides the fewest points (the right one on a tie),
/// or a lower one if both upper corners are crowded.
fn legend_corner(chart: &LineChart, x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    let w = x.1 - x.0;
    let h = y.1 - y.0;
    let count = |left: bool, top: bool| {
        chart
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| finite(p))
            .filter(|&&(px, py)| {
                let fx = (px - x.0) / w;
                let fy = (py - y.0) / h;
                (if left { fx < 0.4 } else { fx > 0.6 }) && (if top { fy > 0.6 } else { fy < 0.4 })
            })
            .count()
    };
    let options = [
        (count(false, true), SeriesLabelPosition::UpperRight),
        (count(true, true), SeriesLabelPosition::UpperLeft),
        (count(false, false), SeriesLabelPosition::LowerRight),
        (count(true, false), SeriesLabelPosition::LowerLeft),
    ];
    let best = options.iter().map(|o| o.0).min().unwrap_or(0);
    // Prefer the upper corners unless they hide clearly more than the best corner.
    let slack = best + best / 2 + 2;
    for (n, pos) in options {
        if n <= slack {
            return pos;
        }
    }
    SeriesLabelPosition::UpperRight
}

fn draw_chart<DB: DrawingBackend>(root: &Area<DB>, chart: &LineChart) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let ((xmin, xmax), (ymin, ymax)) = ranges(chart);

    let mut ctx = ChartBuilder::on(root)
        .caption(&chart.title, (FONT, TITLE_SIZE))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(100)
        .build_cartesian_2d(xmin..xmax, ymin..ymax)
        .map_err(err)?;

    let categories = &chart.x_categories;
    // Names sit at whole positions; other ticks of a category axis stay blank.
    let x_label = |v: &f64| {
        if categories.is_empty() {
            return tick_label(*v);
        }
        let i = v.round();
        if (v - i).abs() < 1e-6 && i >= 0.0 {
            categories.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut mesh = ctx.configure_mesh();
    mesh.x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .axis_desc_style((FONT, LABEL_SIZE))
        .label_style((FONT, TICK_SIZE))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .x_label_formatter(&x_label)
        .y_label_formatter(&|v| tick_label(*v));
    if !categories.is_empty() {
        mesh.x_labels(categories.len() * 2 + 1);
    }
    mesh.draw().map_err(err)?;

    let in_x = |x: f64| x.is_finite() && x >= xmin && x <= xmax;

    // Bands go behind everything else.
    for band in &chart.bands {
        if !(band.x0.is_finite() && band.x1.is_finite()) {
            continue;
        }
        let (a, b) = (
            band.x0.min(band.x1).max(xmin),
            band.x0.max(band.x1).min(xmax),
        );
        if a > b {
            continue;
        }
        ctx.draw_series(std::iter::once(Rectangle::new(
            [(a, ymin), (b, ymax)],
            BAND_COLOR.mix(0.15).filled(),
        )))
        .map_err(err)?;
    }

    for (i, s) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let ok =
            |&&(x, lo, hi): &&(f64, f64, f64)| x.is_finite() && lo.is_finite() && hi.is_finite();
        match s.interval_style {
            IntervalStyle::Band => {
                let upper = s.interval.iter().filter(ok).map(|&(x, _, hi)| (x, hi));
                let lower = s
                    .interval
                    .iter()
                    .rev()
                    .filter(ok)
                    .map(|&(x, lo, _)| (x, lo));
                let outline: Vec<(f64, f64)> = upper.chain(lower).collect();
                if outline.len() >= 3 {
                    ctx.draw_series(std::iter::once(Polygon::new(
                        outline,
                        color.mix(0.18).filled(),
                    )))
                    .map_err(err)?;
                }
            }
            IntervalStyle::Bars => {
                let cap = (xmax - xmin) / 150.0;
                for &(x, lo, hi) in s.interval.iter().filter(ok) {
                    ctx.draw_series(std::iter::once(PathElement::new(
                        vec![(x, lo), (x, hi)],
                        color.stroke_width(2),
                    )))
                    .map_err(err)?;
                    for y in [lo, hi] {
                        ctx.draw_series(std::iter::once(PathElement::new(
                            vec![(x - cap, y), (x + cap, y)],
                            color.stroke_width(2),
                        )))
                        .map_err(err)?;
                    }
                }
            }
        }
    }

    // Filled areas next, in order: a stacked chart lists the top of its stack first, so
    // each lower layer paints over the one above it.
    for (i, s) in chart.series.iter().enumerate().filter(|(_, s)| s.fill) {
        let color = PALETTE[i % PALETTE.len()];
        let points: Vec<(f64, f64)> = s.points.iter().copied().filter(finite).collect();
        ctx.draw_series(AreaSeries::new(
            points,
            0f64.max(ymin),
            color.mix(0.55).filled(),
        ))
        .map_err(err)?;
    }

    for (i, s) in chart.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        // A filled layer's edge is thin: the bitmap backend joins wide strokes with
        // unbounded miters, which turn the spikes of a stacked count into long needles.
        let style = color.stroke_width(if s.fill { 1 } else { 2 });
        ctx.draw_series(LineSeries::new(
            s.points.iter().copied().filter(finite),
            style,
        ))
        .map_err(err)?
        .label(s.name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    }

    for m in chart.markers.iter().filter(|m| in_x(m.x)) {
        ctx.draw_series(DashedLineSeries::new(
            [(m.x, ymin), (m.x, ymax)],
            6,
            4,
            MARKER_COLOR.stroke_width(1),
        ))
        .map_err(err)?;
    }

    // Labels of bands and markers, near the top, stacked in rows so that
    // labels close together on the x axis do not overlap.
    let mut labels: Vec<(f64, &str, RGBColor)> = Vec::new();
    for band in &chart.bands {
        if band.x0.is_finite() && band.x1.is_finite() {
            let a = band.x0.min(band.x1).max(xmin);
            if a <= band.x0.max(band.x1).min(xmax) {
                labels.push((a, &band.label, BAND_COLOR));
            }
        }
    }
    for m in chart.markers.iter().filter(|m| in_x(m.x)) {
        labels.push((m.x, &m.label, MARKER_COLOR));
    }
    labels.sort_by(|a, b| a.0.total_cmp(&b.0));
    let font = TextStyle::from((FONT, TICK_SIZE).into_font());
    let mut row_end = [i32::MIN; MAX_LABEL_ROWS];
    for (x, text, color) in labels.into_iter().filter(|l| !l.1.is_empty()) {
        let (px, _) = ctx.backend_coord(&(x, ymax));
        let width = root.estimate_text_size(text, &font).map_err(err)?.0 as i32;
        let start = px + 6;
        let row = row_end
            .iter()
            .position(|&end| end < start)
            .unwrap_or_else(|| {
                // All rows are taken: reuse the one that frees up first.
                (0..MAX_LABEL_ROWS).min_by_key(|&r| row_end[r]).unwrap_or(0)
            });
        row_end[row] = start + width + 8;
        let style = font.color(&color);
        ctx.plotting_area()
            .draw(
                &(EmptyElement::at((x, ymax))
                    + Text::new(text.to_string(), (6, 4 + LABEL_ROW * row as i32), style)),
            )
            .map_err(err)?;
    }

    if !chart.series.is_empty() {
        ctx.configure_series_labels()
            .position(legend_corner(chart, (xmin, xmax), (ymin, ymax)))
            .label_font((FONT, TICK_SIZE))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .margin(12)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp_dir(name: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mailsim-plot-{}-{}-{}",
            std::process::id(),
            name,
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> LineChart {
        LineChart {
            title: "Queue size under a relay outage".into(),
            x_label: "simulated time (s)".into(),
            y_label: "messages in queue".into(),
            series: vec![
                Series {
                    name: "active queue".into(),
                    points: (0..=100)
                        .map(|i| (i as f64 * 36.0, ((i as f64) / 8.0).sin().abs() * 500.0))
                        .collect(),
                    ..Default::default()
                },
                Series {
                    name: "deferred queue".into(),
                    points: (0..=100)
                        .map(|i| {
                            let y = if i == 50 {
                                f64::NAN
                            } else {
                                (i * i) as f64 / 4.0
                            };
                            (i as f64 * 36.0, y)
                        })
                        .collect(),
                    ..Default::default()
                },
            ],
            markers: vec![Marker {
                x: 1800.0,
                label: "postqueue -f".into(),
            }],
            bands: vec![Band {
                x0: 900.0,
                x1: 1500.0,
                label: "relay down".into(),
            }],
            x_categories: Vec::new(),
        }
    }

    fn png_size(bytes: &[u8]) -> (u32, u32) {
        let decoder = png::Decoder::new(bytes);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info.width, info.height)
    }

    #[test]
    fn writes_png_and_svg() {
        let dir = temp_dir("full");
        let (png, svg) = (dir.join("chart.png"), dir.join("chart.svg"));
        std::fs::write(&png, b"old contents").unwrap();
        write_line_chart(&sample(), &png, &svg).unwrap();

        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(bytes.len() > 10_000, "PNG suspiciously small");
        assert_eq!(png_size(&bytes), (1280, 720));

        let text = std::fs::read_to_string(&svg).unwrap();
        for needle in [
            "Queue size under a relay outage",
            "active queue",
            "deferred queue",
            "postqueue -f",
            "relay down",
            "simulated time (s)",
            "messages in queue",
        ] {
            assert!(text.contains(needle), "SVG lacks {needle:?}");
        }
        assert!(text.contains(r#"width="1280""#) && text.contains(r#"height="720""#));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn output_is_deterministic() {
        let dir = temp_dir("det");
        let chart = sample();
        let out = |n: &str| (dir.join(format!("{n}.png")), dir.join(format!("{n}.svg")));
        let (a, b) = (out("a"), out("b"));
        write_line_chart(&chart, &a.0, &a.1).unwrap();
        write_line_chart(&chart, &b.0, &b.1).unwrap();
        assert_eq!(std::fs::read(&a.0).unwrap(), std::fs::read(&b.0).unwrap());
        assert_eq!(std::fs::read(&a.1).unwrap(), std::fs::read(&b.1).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn degenerate_charts_do_not_error() {
        let dir = temp_dir("degenerate");
        let empty = LineChart {
            title: "empty".into(),
            ..LineChart::default()
        };
        let zeros = LineChart {
            title: "zeros".into(),
            series: vec![
                Series {
                    name: "flat".into(),
                    points: vec![(0.0, 0.0), (10.0, 0.0)],
                    ..Default::default()
                },
                Series {
                    name: "no points".into(),
                    points: vec![],
                    ..Default::default()
                },
            ],
            markers: vec![Marker {
                x: 5.0,
                label: "m".into(),
            }],
            ..LineChart::default()
        };
        let single = LineChart {
            series: vec![Series {
                name: "one".into(),
                points: vec![(3.0, 7.0), (f64::NAN, 1.0), (2.0, f64::INFINITY)],
                ..Default::default()
            }],
            markers: vec![Marker {
                x: f64::NAN,
                label: "nan".into(),
            }],
            bands: vec![Band {
                x0: 100.0,
                x1: -100.0,
                label: "reversed".into(),
            }],
            ..LineChart::default()
        };
        for (i, chart) in [empty, zeros, single].iter().enumerate() {
            let (png, svg) = (dir.join(format!("{i}.png")), dir.join(format!("{i}.svg")));
            write_line_chart(chart, &png, &svg).unwrap();
            assert_eq!(png_size(&std::fs::read(&png).unwrap()), (1280, 720));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ranges_are_padded() {
        assert_eq!(ranges(&LineChart::default()), ((0.0, 1.0), (0.0, 1.0)));
        let one = LineChart {
            series: vec![Series {
                name: "s".into(),
                points: vec![(0.0, 0.0)],
                ..Default::default()
            }],
            ..LineChart::default()
        };
        assert_eq!(ranges(&one), ((-0.5, 0.5), (0.0, 1.0)));
        let ((x0, x1), (y0, y1)) = ranges(&sample());
        assert_eq!((x0, x1, y0), (0.0, 3600.0, 0.0));
        assert!(y1 > 2500.0);
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(2500.0), "2500");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(-0.0), "0");
        assert_eq!(tick_label(0.30000000000000004), "0.3");
        assert_eq!(tick_label(-1.25), "-1.25");
    }

    #[test]
    fn bad_output_path_names_the_path() {
        let dir = temp_dir("bad");
        let png = dir.join("missing-subdir").join("x.png");
        let err = write_line_chart(&sample(), &png, &dir.join("x.svg")).unwrap_err();
        assert!(err.to_string().contains("missing-subdir"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
