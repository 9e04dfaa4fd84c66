//! The bench's SVG plot: three stacked panels over one time axis — token
//! budget and padded tokens per batch (log scale), pairs per batch, and free
//! device memory in MiB (or a note that it is unknown, as on CPU).
//!
//! Owns: the picture, written by hand as SVG text (axes, ticks, grid,
//! labels, legends). Must never: do I/O (it returns the text) or compute
//! statistics (it draws the series `report` derived).

use std::fmt::Write as _;

use crate::report::{DevicePoint, SeriesPoint};

/// The plot area's left edge; y tick labels and the axis label sit left of
/// it.
const LEFT: f64 = 96.0;
/// The plot area's right edge; the legends sit right of it.
const RIGHT: f64 = 750.0;
const WIDTH: f64 = 1040.0;
/// The first panel's top; the title and subtitle sit above it.
const TOP: f64 = 84.0;
const PANEL_HEIGHT: f64 = 180.0;
/// Room between panels for the next panel's title.
const PANEL_GAP: f64 = 44.0;
/// Room under the last panel for the time axis' labels.
const BOTTOM_MARGIN: f64 = 56.0;
const MIB: f64 = 1024.0 * 1024.0;

/// Colours for one device's lines; a second device takes the next pair.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The plot's heading.
#[derive(Debug, Clone)]
pub struct Heading {
    /// Model, device and clients.
    pub title: String,
    /// The workload and run length.
    pub subtitle: String,
}

/// The SVG document for `series`.
pub fn svg(heading: &Heading, series: &[SeriesPoint]) -> String {
    let height = TOP + 3.0 * PANEL_HEIGHT + 2.0 * PANEL_GAP + BOTTOM_MARGIN;
    let last_t = series.last().map_or(0.0, |p| p.t_secs);
    let time = Scale::linear_to(last_t);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    text(
        &mut out,
        (LEFT, 30.0),
        "start",
        &heading.title,
        r#"font-size="17" font-weight="bold""#,
    );
    text(
        &mut out,
        (LEFT, 52.0),
        "start",
        &heading.subtitle,
        r##"fill="#444444""##,
    );
    let panels = [
        tokens_panel(series),
        pairs_panel(series),
        memory_panel(series),
    ];
    for (i, panel) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_HEIGHT + PANEL_GAP);
        let is_last = i == panels.len() - 1;
        draw_panel(&mut out, panel, top, &time, is_last);
    }
    out.push_str("</svg>\n");
    out
}

/// One panel: what it shows and how.
struct Panel {
    title: String,
    y_label: &'static str,
    y: Scale,
    lines: Vec<Line>,
    /// Said in the middle of the panel instead of (or over) the lines.
    note: Option<String>,
}

/// One plotted quantity over time; `None` points are gaps.
struct Line {
    label: String,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, Option<f64>)>,
}

impl Line {
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.points.iter().filter_map(|&(_, v)| v)
    }
}

/// Builds one line per device from `value`; labels carry the device's name
/// when there are several (and its worker number when names repeat, as in
/// `--devices cpu,cpu`).
fn device_lines(
    series: &[SeriesPoint],
    what: &str,
    color_offset: usize,
    value: impl Fn(&DevicePoint) -> Option<f64>,
) -> Vec<Line> {
    let names: Vec<&str> = series.first().map_or(Vec::new(), |p| {
        p.devices.iter().map(|d| d.sample.device.as_str()).collect()
    });
    let names_repeat = (1..names.len()).any(|i| names[..i].contains(&names[i]));
    (0..names.len())
        .map(|d| {
            let name = names[d];
            Line {
                label: match (names.len(), names_repeat) {
                    (1, _) => what.to_string(),
                    (_, false) => format!("{what} ({name})"),
                    (_, true) => format!("{what} ({name} #{d})"),
                },
                color: PALETTE[(2 * d + color_offset) % PALETTE.len()],
                dashed: false,
                points: series
                    .iter()
                    .map(|p| (p.t_secs, p.devices.get(d).and_then(&value)))
                    .collect(),
            }
        })
        .collect()
}

fn tokens_panel(series: &[SeriesPoint]) -> Panel {
    let mut lines = device_lines(series, "token budget", 0, |d| {
        Some(d.sample.budget_tokens as f64)
    });
    lines.extend(device_lines(series, "padded tokens per batch", 1, |d| {
        d.padded_tokens_per_batch
    }));
    Panel {
        title: "Token budget and padded tokens per batch".into(),
        y_label: "tokens (log scale)",
        y: Scale::log_over(lines.iter().flat_map(Line::values)),
        lines,
        note: None,
    }
}

fn pairs_panel(series: &[SeriesPoint]) -> Panel {
    let lines = device_lines(series, "pairs per batch", 0, |d| d.pairs_per_batch);
    let max = lines.iter().flat_map(Line::values).fold(0.0, f64::max);
    let note = (max == 0.0).then(|| "no batch ran between samples".to_string());
    Panel {
        title: "Batch size (mean over each sampling interval)".into(),
        y_label: "pairs per batch",
        y: Scale::linear_from_zero(max),
        lines,
        note,
    }
}

fn memory_panel(series: &[SeriesPoint]) -> Panel {
    let known = |d: &DevicePoint| d.sample.memory_known;
    let mut lines = device_lines(series, "free", 0, |d| {
        known(d).then(|| d.sample.free_bytes as f64 / MIB)
    });
    let mut totals = device_lines(series, "total", 1, |d| {
        known(d).then(|| d.sample.total_bytes as f64 / MIB)
    });
    for total in &mut totals {
        total.dashed = true;
    }
    lines.extend(totals);
    lines.retain(|line| line.values().next().is_some());
    let max = lines.iter().flat_map(Line::values).fold(0.0, f64::max);
    let note = lines.is_empty().then(|| {
        let devices: Vec<&str> = series
            .first()
            .map(|p| p.devices.iter().map(|d| d.sample.device.as_str()).collect())
            .unwrap_or_default();
        format!(
            "device memory unknown on {} (Stats: memory_known = false);\n\
             the token budget there is the server's --fallback-budget-tokens",
            if devices.is_empty() {
                "this server".to_string()
            } else {
                devices.join(", ")
            }
        )
    });
    Panel {
        title: "Free device memory".into(),
        y_label: "MiB",
        y: Scale::linear_from_zero(max),
        lines,
        note,
    }
}

/// A value axis: linear from `min`, or log10.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    min: f64,
    max: f64,
    log: bool,
    /// About how many ticks a linear scale gets.
    ticks: f64,
}

impl Scale {
    /// 0 to a round number at or above `max`.
    fn linear_from_zero(max: f64) -> Self {
        let max = if max > 0.0 { max } else { 1.0 };
        let step = nice_step(max / 5.0);
        Scale {
            min: 0.0,
            max: (max / step - 1e-9).ceil() * step,
            log: false,
            ticks: 5.0,
        }
    }

    /// 0 to exactly `max` (the time axis: the run fills the width).
    fn linear_to(max: f64) -> Self {
        Scale {
            min: 0.0,
            max: if max > 0.0 { max } else { 1.0 },
            log: false,
            ticks: 8.0,
        }
    }

    /// Whole decades around the positive `values`.
    fn log_over(values: impl Iterator<Item = f64>) -> Self {
        let (low, high) = values
            .filter(|v| *v > 0.0)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let (low, high) = if high > 0.0 {
            (low, high)
        } else {
            (10.0, 10_000.0)
        };
        let min = 10f64.powf(low.log10().floor());
        let mut max = 10f64.powf((high.log10() - 1e-9).ceil());
        if max <= min {
            max = min * 10.0;
        }
        Scale {
            min,
            max,
            log: true,
            ticks: 5.0,
        }
    }

    /// Where `value` falls, from 0 (min) to 1 (max); `None` off a log scale.
    fn fraction(&self, value: f64) -> Option<f64> {
        if self.log {
            (value > 0.0)
                .then(|| (value.log10() - self.min.log10()) / (self.max.log10() - self.min.log10()))
        } else {
            Some((value - self.min) / (self.max - self.min))
        }
    }

    /// Tick values: round steps on a linear scale; 1, 2, 5 × 10^k on a log
    /// scale of up to three decades, 10^k beyond.
    fn ticks(&self) -> Vec<f64> {
        if !self.log {
            let step = nice_step((self.max - self.min) / self.ticks);
            let count = ((self.max - self.min) / step + 1e-9).floor() as usize;
            return (0..=count).map(|i| self.min + i as f64 * step).collect();
        }
        let decades = (self.max / self.min).log10().round() as i32;
        let multiples: &[f64] = if decades <= 3 {
            &[1.0, 2.0, 5.0]
        } else {
            &[1.0]
        };
        let mut ticks = Vec::new();
        let mut decade = self.min;
        while decade <= self.max * (1.0 + 1e-9) {
            ticks.extend(
                multiples
                    .iter()
                    .map(|m| m * decade)
                    .filter(|t| *t <= self.max * (1.0 + 1e-9)),
            );
            decade *= 10.0;
        }
        ticks
    }
}

/// 1, 2 or 5 × 10^k, the smallest at or above `rough`.
fn nice_step(rough: f64) -> f64 {
    let rough = if rough > 0.0 { rough } else { 1.0 };
    let magnitude = 10f64.powf(rough.log10().floor());
    let fraction = rough / magnitude;
    let nice = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .find(|n| fraction <= n * (1.0 + 1e-9))
        .unwrap_or(10.0);
    nice * magnitude
}

/// A tick label: whole numbers plainly (thousands as `k`, millions as `M`
/// when round), fractions with as many decimals as needed.
fn tick_label(value: f64) -> String {
    let rounded = value.round();
    if (value - rounded).abs() > 1e-6 * value.abs().max(1.0) {
        let text = format!("{value:.3}");
        return text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let whole = rounded as i64;
    if whole != 0 && whole % 1_000_000 == 0 {
        format!("{}M", whole / 1_000_000)
    } else if whole != 0 && whole % 1000 == 0 && whole >= 10_000 {
        format!("{}k", whole / 1000)
    } else {
        whole.to_string()
    }
}

fn draw_panel(out: &mut String, panel: &Panel, top: f64, time: &Scale, is_last: bool) {
    let bottom = top + PANEL_HEIGHT;
    let x_at = |t: f64| LEFT + time.fraction(t).unwrap_or(0.0) * (RIGHT - LEFT);
    let y_at = |v: f64| {
        panel
            .y
            .fraction(v)
            .map(|f| bottom - f.clamp(0.0, 1.0) * PANEL_HEIGHT)
    };
    text(
        out,
        (LEFT, top - 10.0),
        "start",
        &panel.title,
        r#"font-size="14" font-weight="bold""#,
    );
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL_HEIGHT}" fill="#fafafa" stroke="#888888"/>"##,
        RIGHT - LEFT
    );
    // A panel with nothing to draw gets no value axis: it would show made-up
    // numbers.
    let y_ticks = if panel.lines.is_empty() {
        Vec::new()
    } else {
        panel.y.ticks()
    };
    for tick in y_ticks {
        let Some(y) = y_at(tick) else { continue };
        grid_line(out, (LEFT, y), (RIGHT, y));
        text(out, (LEFT - 6.0, y + 4.0), "end", &tick_label(tick), "");
    }
    for tick in time.ticks() {
        let x = x_at(tick);
        grid_line(out, (x, top), (x, bottom));
        if is_last {
            text(out, (x, bottom + 16.0), "middle", &tick_label(tick), "");
        }
    }
    if is_last {
        let middle = (LEFT + RIGHT) / 2.0;
        text(
            out,
            (middle, bottom + 36.0),
            "middle",
            "time since measuring started (s)",
            "",
        );
    }
    let label_y = top + PANEL_HEIGHT / 2.0;
    let _ = writeln!(
        out,
        r#"<text x="30" y="{label_y}" text-anchor="middle" transform="rotate(-90 30 {label_y})">{}</text>"#,
        escape(panel.y_label)
    );
    for line in &panel.lines {
        draw_line(out, line, &x_at, &y_at);
    }
    draw_legend(out, &panel.lines, top);
    if let Some(note) = &panel.note {
        let middle = (LEFT + RIGHT) / 2.0;
        for (i, note_line) in note.lines().enumerate() {
            let y = label_y + 18.0 * i as f64;
            let style = r##"fill="#555555" font-style="italic" font-size="13""##;
            text(out, (middle, y), "middle", note_line, style);
        }
    }
}

/// One polyline through the points that have a value: an interval without
/// a batch has no batch size, and the line bridges it rather than break
/// into fragments. Series of up to 60 such points also get a dot on each.
fn draw_line(
    out: &mut String,
    line: &Line,
    x_at: &impl Fn(f64) -> f64,
    y_at: &impl Fn(f64) -> Option<f64>,
) {
    let dash = if line.dashed {
        r#" stroke-dasharray="6 4""#
    } else {
        ""
    };
    let positions: Vec<(f64, f64)> = line
        .points
        .iter()
        .filter_map(|&(t, v)| Some((x_at(t), y_at(v?)?)))
        .collect();
    if positions.len() >= 2 {
        let points: Vec<String> = positions
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.8"{dash}/>"#,
            points.join(" "),
            line.color
        );
    }
    if positions.len() <= 60 {
        for (x, y) in &positions {
            let _ = writeln!(
                out,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{}"/>"#,
                line.color
            );
        }
    }
}

fn draw_legend(out: &mut String, lines: &[Line], top: f64) {
    for (i, line) in lines.iter().enumerate() {
        let y = top + 16.0 + 20.0 * i as f64;
        let x = RIGHT + 14.0;
        let dash = if line.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2.5"{dash}/>"#,
            x + 24.0,
            line.color
        );
        text(out, (x + 30.0, y + 4.0), "start", &line.label, "");
    }
}

fn grid_line(out: &mut String, from: (f64, f64), to: (f64, f64)) {
    let _ = writeln!(
        out,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#dddddd"/>"##,
        from.0, from.1, to.0, to.1
    );
}

fn text(out: &mut String, at: (f64, f64), anchor: &str, content: &str, style: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" {style}>{}</text>"#,
        at.0,
        at.1,
        escape(content)
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::DeviceSample;

    fn point(t_secs: f64, memory_known: bool, pairs_per_batch: Option<f64>) -> SeriesPoint {
        SeriesPoint {
            t_secs,
            queued_pairs: 0,
            devices: vec![DevicePoint {
                sample: DeviceSample {
                    device: "cpu".into(),
                    budget_tokens: 16_384,
                    memory_known,
                    free_bytes: 40 << 30,
                    total_bytes: 80 << 30,
                    batches: 0,
                    pairs: 0,
                    padded_tokens: 0,
                    real_tokens: 0,
                    oom_count: 0,
                    splits: 0,
                    busy_micros: 0,
                },
                pairs_per_batch,
                padded_tokens_per_batch: pairs_per_batch.map(|p| p * 60.0),
            }],
        }
    }

    fn heading() -> Heading {
        Heading {
            title: "rerankd bench: a <model> & co".into(),
            subtitle: "4 clients".into(),
        }
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(13.0), 20.0);
        assert_eq!(nice_step(4000.0), 5000.0);
        let pairs = Scale::linear_from_zero(21.3);
        assert_eq!(pairs.max, 25.0);
        assert_eq!(pairs.ticks(), vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
        let time = Scale::linear_to(43.8);
        assert_eq!(time.ticks(), vec![0.0, 10.0, 20.0, 30.0, 40.0]);
        let time = Scale::linear_to(10.2);
        assert_eq!(time.ticks(), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let tokens = Scale::log_over([300.0, 16_384.0].into_iter());
        assert_eq!((tokens.min, tokens.max), (100.0, 100_000.0));
        assert_eq!(tokens.ticks().len(), 10);
        assert_eq!(tick_label(16_384.0), "16384");
        assert_eq!(tick_label(20_000.0), "20k");
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(1_000_000.0), "1M");
    }

    #[test]
    fn the_plot_has_three_panels_a_legend_and_an_escaped_title() {
        let mut series = vec![point(0.0, true, None)];
        series.extend((1..10).map(|i| point(i as f64 / 10.0, true, Some(i as f64))));
        let svg = svg(&heading(), &series);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;model&gt; &amp; co"));
        for label in [
            "token budget",
            "padded tokens per batch",
            "pairs per batch",
            "free",
            "total",
            "time since measuring started (s)",
            "MiB",
        ] {
            assert!(svg.contains(label), "{label} missing");
        }
        assert!(svg.contains("<polyline"));
        assert!(!svg.contains("memory unknown"));
    }

    #[test]
    fn intervals_without_a_batch_are_bridged_not_broken() {
        let series: Vec<SeriesPoint> = (0..20)
            .map(|i| point(i as f64 / 10.0, false, (i % 3 == 1).then_some(4.0)))
            .collect();
        let svg = svg(&heading(), &series);
        // Budget, padded tokens per batch, pairs per batch: one line each.
        assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
        // Seven batch sizes in each of two panels, dotted.
        assert!(svg.matches("<circle").count() >= 2 * 7, "{svg}");
    }

    #[test]
    fn workers_that_share_a_device_name_are_told_apart() {
        let two_workers = |t_secs| {
            let mut point = point(t_secs, false, Some(4.0));
            point.devices.push(point.devices[0].clone());
            point
        };
        let svg = svg(&heading(), &[two_workers(0.0), two_workers(1.0)]);
        assert!(svg.contains("pairs per batch (cpu #0)"), "{svg}");
        assert!(svg.contains("pairs per batch (cpu #1)"), "{svg}");
    }

    #[test]
    fn unknown_memory_is_said_not_drawn() {
        let series = [point(0.0, false, None), point(1.0, false, Some(4.0))];
        let svg = svg(&heading(), &series);
        assert!(svg.contains("device memory unknown on cpu"), "{svg}");
        assert!(!svg.contains(">free<"));
    }
}
