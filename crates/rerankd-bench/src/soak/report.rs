//! The soak's numbers: every call's record (and its line in the calls
//! file), and from them the counts by kind and outcome, p50/p99 of the
//! first and last window side by side, per-slice percentiles and their
//! trend, slowdown by size class against the alone phase, the server's RSS
//! after warm-up against the end, the verdict, the stdout table and the
//! JSON document.
//!
//! Owns: every statistic the soak reports, and the rules that fail a run
//! (an unexpected outcome, a skipped call, RSS growth over the bound, a
//! served p99 that rises through the run; slowdown is reported, not
//! judged).
//! Must never: do I/O, read a clock (times are passed in) or know gRPC.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::mix::{Kind, CLIENT_CANCELLED};
use super::slowdown::{self, ClassSlowdown, Timed};
use super::trend::{trend, Trend, PERMUTATIONS};
use crate::report::{percentile, Sample, Summary as BenchSummary};

/// Which part of a soak a call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The closed-loop phase that measures the peak.
    Peak,
    /// One client, one call at a time: each size class's time alone.
    Alone,
    /// Open loop at the soak's rate, before measuring.
    Warmup,
    Measured,
}

/// One call as it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallRecord {
    /// The call's index in the mix (`Mix::call`): the same seed and index
    /// send the same call.
    pub index: u64,
    pub phase: Phase,
    pub kind: Kind,
    /// The priority its requests carried.
    pub priority: i32,
    /// Documents or pairs sent, or the pairs the answer's Usage counts
    /// (each window of a chunked document one) where it has one.
    pub pairs: u32,
    /// Tokens the answer's Usage counts, for an OK answer.
    pub tokens: Option<u64>,
    /// When the call was due (open loop) or sent (closed loop, alone), in
    /// seconds since the soak began. Latency runs from then, so a server
    /// that falls behind the schedule shows it as latency.
    pub t_secs: f64,
    pub latency_us: u64,
    pub code: &'static str,
}

/// A call's line in the calls file (JSON lines, one object a call).
#[derive(Debug, Serialize)]
struct CallLine {
    index: u64,
    phase: Phase,
    kind: Kind,
    priority: i32,
    pairs: u32,
    tokens: Option<u64>,
    /// Seconds since the soak began.
    due_secs: f64,
    /// Seconds from due to the end of the call.
    latency_secs: f64,
    /// "ok", or the status code's name (or the client's own outcome:
    /// CLIENT_CANCELLED, CLIENT_DEADLINE, WRONG_ANSWER).
    outcome: &'static str,
}

impl CallRecord {
    /// The call's line in the calls file, without its newline.
    pub fn json_line(&self) -> String {
        let line = CallLine {
            index: self.index,
            phase: self.phase,
            kind: self.kind,
            priority: self.priority,
            pairs: self.pairs,
            tokens: self.tokens,
            due_secs: self.t_secs,
            latency_secs: self.latency_us as f64 / 1e6,
            outcome: if self.code == "OK" { "ok" } else { self.code },
        };
        serde_json::to_string(&line).expect("a call record is plain data")
    }
}

/// The calls file: one JSON line for each call, in the order they ended.
pub fn json_lines(calls: &[CallRecord]) -> String {
    calls.iter().map(|c| c.json_line() + "\n").collect()
}

/// Outcomes a kind should not have, with the first one's message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unexpected {
    pub kind: Kind,
    pub code: &'static str,
    pub count: u64,
    pub first_phase: Phase,
    pub first_t_secs: f64,
    pub example: String,
}

/// Every call of a soak, as the calls end.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub calls: Vec<CallRecord>,
    pub unexpected: BTreeMap<(Kind, &'static str), Unexpected>,
    /// Calls not sent because --max-in-flight calls were unanswered.
    pub skipped: u64,
}

impl Recorder {
    pub fn record(&mut self, call: CallRecord, message: &str) {
        if !call.kind.expects(call.code) {
            self.unexpected
                .entry((call.kind, call.code))
                .or_insert_with(|| Unexpected {
                    kind: call.kind,
                    code: call.code,
                    count: 0,
                    first_phase: call.phase,
                    first_t_secs: call.t_secs,
                    example: message.to_string(),
                })
                .count += 1;
        }
        self.calls.push(call);
    }

    pub fn unexpected_count(&self) -> u64 {
        self.unexpected.values().map(|u| u.count).sum()
    }
}

/// One RSS reading of the server.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RssSample {
    pub t_secs: f64,
    pub bytes: u64,
}

/// How the soak ran: what `summarize` needs beside the records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Calls per second sent in the warm-up and measured phases.
    pub rate: f64,
    /// The closed-loop peak, when it was measured (not given by --rate).
    pub peak: Option<Peak>,
    pub load_fraction: Option<f64>,
    /// The measured phase, in seconds since the soak began.
    pub measure_start_secs: f64,
    pub measure_end_secs: f64,
    /// Length of the first and last windows.
    pub window_secs: f64,
    pub max_rss_growth_pct: f64,
    /// A rising p99 trend fails the run below this p-value (0: not judged).
    pub p99_trend_alpha: f64,
    /// The mix's seed, which also seeds the trend's permutations.
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Peak {
    pub clients: usize,
    pub secs: f64,
    /// Calls answered per second in the second half of the phase.
    pub calls_per_sec: f64,
}

/// Latencies of a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    pub calls: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// One kind's measured calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindRow {
    pub kind: &'static str,
    pub calls: u64,
    pub by_code: BTreeMap<&'static str, u64>,
    pub unexpected: u64,
    pub first: Window,
    pub last: Window,
    /// last p99 ÷ first p99.
    pub p99_ratio: Option<f64>,
}

/// A slice of the measured phase, over the served kinds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slice {
    pub t_start_secs: f64,
    #[serde(flatten)]
    pub window: Window,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rss {
    /// Median of the first window of measuring (the warm-up has just
    /// ended).
    pub after_warmup_mib: f64,
    /// Median of the last window.
    pub end_mib: f64,
    /// Highest reading of the whole soak, peak phase included.
    pub peak_mib: f64,
    pub growth_pct: f64,
    /// Least-squares slope over the measured phase.
    pub slope_mib_per_hour: f64,
    pub samples: usize,
}

/// What the batcher did during the measured phase (Stats, start to end).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Batcher {
    pub batches: u64,
    pub padding_efficiency: Option<f64>,
    pub mean_pairs_per_batch: Option<f64>,
    pub oom_count: u64,
    pub splits: u64,
    pub busy_share: Option<f64>,
    pub queued_pairs_at_end: u64,
}

impl Batcher {
    pub fn of(summary: &BenchSummary, end: &Sample) -> Self {
        Batcher {
            batches: summary.batches,
            padding_efficiency: summary.padding_efficiency,
            mean_pairs_per_batch: summary.mean_pairs_per_batch,
            oom_count: summary.oom_count,
            splits: summary.splits,
            busy_share: summary.busy_share,
            queued_pairs_at_end: end.queued_pairs,
        }
    }
}

/// What a soak measured and whether it passed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakSummary {
    pub plan: Plan,
    /// Calls of the measured phase.
    pub calls: u64,
    pub kinds: Vec<KindRow>,
    /// The served kinds together (rerank, pairs, stream, progressive,
    /// chunked), OK calls.
    pub served_first: Window,
    pub served_last: Window,
    pub slices: Vec<Slice>,
    /// The trend of the slices' served p99 (ms per slice), from 3 slices.
    pub served_p99_trend: Option<Trend>,
    /// The served kinds' OK calls of the measured phase against their size
    /// class's time alone, one row per class (reported, not judged;
    /// `slowdown::worst_p99` is the figure a bound would take).
    pub slowdown: Vec<ClassSlowdown>,
    /// Over every phase.
    pub unexpected: Vec<Unexpected>,
    pub skipped: u64,
    pub rss: Option<Rss>,
    pub batcher: Option<Batcher>,
    /// Why the soak failed; empty when it passed.
    pub failures: Vec<String>,
    pub passed: bool,
}

/// Slices of the measured phase per window.
const SLICES_PER_WINDOW: f64 = 5.0;

pub fn summarize(
    plan: Plan,
    recorder: &Recorder,
    rss: &[RssSample],
    batcher: Option<Batcher>,
) -> SoakSummary {
    let (start, end) = (plan.measure_start_secs, plan.measure_end_secs);
    let measured: Vec<&CallRecord> = recorder
        .calls
        .iter()
        .filter(|c| c.phase == Phase::Measured)
        .collect();
    let first = (start, start + plan.window_secs);
    let last = (end - plan.window_secs, end);
    let kinds = Kind::ALL
        .iter()
        .map(|&kind| kind_row(kind, &measured, first, last))
        .collect();
    let served = |c: &&CallRecord| Kind::SERVED.contains(&c.kind) && c.code == "OK";
    let served_calls: Vec<&CallRecord> = measured.iter().copied().filter(served).collect();
    let timed = |c: &CallRecord| Timed {
        pairs: c.pairs,
        latency_us: c.latency_us,
    };
    let alone: Vec<Timed> = recorder
        .calls
        .iter()
        .filter(|c| c.phase == Phase::Alone)
        .filter(served)
        .map(timed)
        .collect();
    let loaded: Vec<Timed> = served_calls.iter().copied().map(timed).collect();
    let slice_secs = plan.window_secs / SLICES_PER_WINDOW;
    let slices: Vec<Slice> = (0..)
        .map(|i| start + i as f64 * slice_secs)
        .take_while(|&t| t < end - 1e-9)
        .map(|t| Slice {
            t_start_secs: t - start,
            window: window(&served_calls, (t, (t + slice_secs).min(end))),
        })
        .collect();
    let p99s: Vec<(f64, f64)> = slices
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.window.p99_ms.map(|p99| (i as f64, p99)))
        .collect();
    let served_p99_trend = trend(&p99s, plan.seed);
    let rss = rss_summary(rss, start, end, plan.window_secs);
    let unexpected: Vec<Unexpected> = recorder.unexpected.values().cloned().collect();
    let failures = verdict(
        &plan,
        &unexpected,
        recorder.skipped,
        rss.as_ref(),
        served_p99_trend.as_ref(),
    );
    SoakSummary {
        calls: measured.len() as u64,
        kinds,
        served_first: window(&served_calls, first),
        served_last: window(&served_calls, last),
        slices,
        served_p99_trend,
        slowdown: slowdown::by_class(&alone, &loaded),
        unexpected,
        skipped: recorder.skipped,
        rss,
        batcher,
        passed: failures.is_empty(),
        failures,
        plan,
    }
}

fn kind_row(kind: Kind, measured: &[&CallRecord], first: (f64, f64), last: (f64, f64)) -> KindRow {
    let calls: Vec<&CallRecord> = measured
        .iter()
        .filter(|c| c.kind == kind)
        .copied()
        .collect();
    let mut by_code = BTreeMap::new();
    for call in &calls {
        *by_code.entry(call.code).or_insert(0) += 1;
    }
    // Latency counts the calls that ended as they may, except those the
    // client dropped on purpose.
    let timed: Vec<&CallRecord> = calls
        .iter()
        .filter(|c| kind.expects(c.code) && c.code != CLIENT_CANCELLED)
        .copied()
        .collect();
    let (first, last) = (window(&timed, first), window(&timed, last));
    KindRow {
        kind: kind.name(),
        calls: calls.len() as u64,
        unexpected: calls.iter().filter(|c| !kind.expects(c.code)).count() as u64,
        by_code,
        p99_ratio: last.p99_ms.zip(first.p99_ms).map(|(l, f)| l / f),
        first,
        last,
    }
}

/// Percentiles of the calls due in `[from, to)`.
fn window(calls: &[&CallRecord], (from, to): (f64, f64)) -> Window {
    let mut latencies: Vec<u64> = calls
        .iter()
        .filter(|c| c.t_secs >= from && c.t_secs < to)
        .map(|c| c.latency_us)
        .collect();
    latencies.sort_unstable();
    let ms = |q| percentile(&latencies, q).map(|us| us as f64 / 1000.0);
    Window {
        calls: latencies.len() as u64,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
    }
}

const MIB: f64 = 1024.0 * 1024.0;

fn rss_summary(samples: &[RssSample], start: f64, end: f64, edge_secs: f64) -> Option<Rss> {
    let median_between = |from: f64, to: f64| {
        let mut bytes: Vec<u64> = samples
            .iter()
            .filter(|s| s.t_secs >= from && s.t_secs <= to)
            .map(|s| s.bytes)
            .collect();
        bytes.sort_unstable();
        percentile(&bytes, 0.5)
    };
    let after = median_between(start, start + edge_secs)?;
    let at_end = median_between(end - edge_secs, end)?;
    let peak = samples.iter().map(|s| s.bytes).max()?;
    let measured: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t_secs >= start && s.t_secs <= end)
        .map(|s| (s.t_secs, s.bytes as f64 / MIB))
        .collect();
    Some(Rss {
        after_warmup_mib: after as f64 / MIB,
        end_mib: at_end as f64 / MIB,
        peak_mib: peak as f64 / MIB,
        growth_pct: (at_end as f64 - after as f64) / after as f64 * 100.0,
        slope_mib_per_hour: slope(&measured) * 3600.0,
        samples: samples.len(),
    })
}

/// The least-squares slope of y over x (0 for fewer than two x values).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

/// Whether a trend is a rise the run fails on.
fn rising(plan: &Plan, trend: &Trend) -> bool {
    plan.p99_trend_alpha > 0.0 && trend.spearman_rho > 0.0 && trend.p_value < plan.p99_trend_alpha
}

fn verdict(
    plan: &Plan,
    unexpected: &[Unexpected],
    skipped: u64,
    rss: Option<&Rss>,
    p99_trend: Option<&Trend>,
) -> Vec<String> {
    let mut failures: Vec<String> = unexpected
        .iter()
        .map(|u| {
            format!(
                "{} {} call(s) ended {} (first in the {:?} phase at {:.0} s: {})",
                u.count,
                u.kind.name(),
                u.code,
                u.first_phase,
                u.first_t_secs,
                u.example
            )
        })
        .collect();
    if skipped > 0 {
        failures.push(format!(
            "{skipped} call(s) not sent: too many calls were unanswered (the server fell behind or hung)"
        ));
    }
    if let Some(rss) = rss {
        if rss.growth_pct > plan.max_rss_growth_pct {
            failures.push(format!(
                "RSS grew {:.1}% (from {:.1} to {:.1} MiB), over the {}% bound",
                rss.growth_pct, rss.after_warmup_mib, rss.end_mib, plan.max_rss_growth_pct
            ));
        }
    }
    if let Some(trend) = p99_trend.filter(|t| rising(plan, t)) {
        failures.push(format!(
            "the served p99 rises through the run: Spearman rho {:+.2} over {} slices, \
             permutation p {:.4} < {}, Theil-Sen {:+.0} ms a slice",
            trend.spearman_rho,
            trend.points,
            trend.p_value,
            plan.p99_trend_alpha,
            trend.theil_sen_slope
        ));
    }
    failures
}

/// The summary for stdout.
pub fn table(summary: &SoakSummary) -> String {
    let plan = &summary.plan;
    let mut out = String::new();
    let minutes = (plan.measure_end_secs - plan.measure_start_secs) / 60.0;
    let rate = match (&plan.peak, plan.load_fraction) {
        (Some(peak), Some(fraction)) => format!(
            "{:.2} calls/s ({:.0}% of a measured peak of {:.2} calls/s, {} clients, {:.0} s)",
            plan.rate,
            fraction * 100.0,
            peak.calls_per_sec,
            peak.clients,
            peak.secs
        ),
        _ => format!("{:.2} calls/s (given)", plan.rate),
    };
    let _ = writeln!(
        out,
        "soak: {minutes:.1} min measured at {rate}; {} calls",
        summary.calls
    );
    let w = plan.window_secs;
    let _ = writeln!(
        out,
        "\n  {:<12} {:>7} {:>6}  {:>17}  {:>17}  {:>6}  outcomes",
        "kind",
        "calls",
        "unexp",
        format!("first {w:.0}s p50/p99"),
        format!("last {w:.0}s p50/p99"),
        "p99 x"
    );
    for row in &summary.kinds {
        let codes: Vec<String> = row
            .by_code
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  {:<12} {:>7} {:>6}  {:>17}  {:>17}  {:>6}  {}",
            row.kind,
            row.calls,
            row.unexpected,
            pair(&row.first),
            pair(&row.last),
            optional(row.p99_ratio, 2),
            codes.join(", ")
        );
    }
    let (first, last) = (&summary.served_first, &summary.served_last);
    let _ = writeln!(
        out,
        "  {:<12} {:>7} {:>6}  {:>17}  {:>17}  {:>6}  the served kinds' OK calls",
        "served",
        "",
        "",
        pair(first),
        pair(last),
        optional(last.p99_ms.zip(first.p99_ms).map(|(l, f)| l / f), 2),
    );
    let slices: Vec<String> = summary
        .slices
        .iter()
        .map(|s| optional(s.window.p99_ms, 0))
        .collect();
    let _ = writeln!(
        out,
        "\n  served p99 per {:.0} s slice (ms): {}",
        w / SLICES_PER_WINDOW,
        slices.join(" ")
    );
    if let Some(trend) = &summary.served_p99_trend {
        let judged = if plan.p99_trend_alpha == 0.0 {
            "not judged".to_string()
        } else if rising(plan, trend) {
            format!("RISING (p < {})", plan.p99_trend_alpha)
        } else {
            format!("steady (no rise at p < {})", plan.p99_trend_alpha)
        };
        let _ = writeln!(
            out,
            "  served p99 trend: Spearman rho {:+.2} over {} slices, permutation p {:.4} ({} shuffles), Theil-Sen {:+.0} ms a slice: {judged}",
            trend.spearman_rho, trend.points, trend.p_value, PERMUTATIONS, trend.theil_sen_slope
        );
    }
    slowdown_table(&mut out, &summary.slowdown);
    match &summary.rss {
        Some(rss) => {
            let _ = writeln!(
                out,
                "  server RSS (medians of the first and last {w:.0} s): {:.1} MiB after warm-up, {:.1} MiB at the end ({:+.2}%, bound {}%), peak {:.1} MiB, slope {:+.1} MiB/h ({} samples)",
                rss.after_warmup_mib,
                rss.end_mib,
                rss.growth_pct,
                plan.max_rss_growth_pct,
                rss.peak_mib,
                rss.slope_mib_per_hour,
                rss.samples
            );
        }
        None => {
            let _ = writeln!(out, "  server RSS: not measured (no --server-pid)");
        }
    }
    if let Some(b) = &summary.batcher {
        let _ = writeln!(
            out,
            "  batcher: {} batches, {:.1} pairs per batch, padding efficiency {}, model busy {}%, {} OOM, {} splits, {} pairs queued at the end",
            b.batches,
            b.mean_pairs_per_batch.unwrap_or(0.0),
            optional(b.padding_efficiency, 3),
            optional(b.busy_share.map(|s| s * 100.0), 1),
            b.oom_count,
            b.splits,
            b.queued_pairs_at_end
        );
    }
    if summary.passed {
        let p99 = if plan.p99_trend_alpha == 0.0 {
            "p99 trend not judged"
        } else {
            "no rising p99"
        };
        let _ = writeln!(
            out,
            "\nPASSED: no unexpected outcome, no skipped call, RSS within its bound, {p99}"
        );
    } else {
        let _ = writeln!(out, "\nFAILED:");
        for failure in &summary.failures {
            let _ = writeln!(out, "  - {failure}");
        }
    }
    out
}

/// The slowdown rows of the classes with a call, alone or measured.
fn slowdown_table(out: &mut String, classes: &[ClassSlowdown]) {
    if classes.iter().all(|c| c.alone_calls == 0) {
        let _ = writeln!(
            out,
            "  slowdown by size class: not measured (no served call timed alone)"
        );
        return;
    }
    let _ = writeln!(
        out,
        "\n  slowdown by size class (served OK calls measured, latency / the class's median time alone):"
    );
    let _ = writeln!(
        out,
        "  {:<8} {:>6} {:>12} {:>7}  {:>6} {:>6} {:>6}",
        "pairs", "alone", "alone p50 ms", "calls", "p50", "p99", "max"
    );
    for c in classes.iter().filter(|c| c.alone_calls > 0 || c.calls > 0) {
        let _ = writeln!(
            out,
            "  {:<8} {:>6} {:>12} {:>7}  {:>6} {:>6} {:>6}",
            c.class,
            c.alone_calls,
            optional(c.alone_ms, 1),
            c.calls,
            optional(c.p50, 2),
            optional(c.p99, 2),
            optional(c.max, 2)
        );
    }
}

fn pair(window: &Window) -> String {
    format!(
        "{}/{}",
        optional(window.p50_ms, 1),
        optional(window.p99_ms, 1)
    )
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::mix::CLIENT_DEADLINE;

    fn plan() -> Plan {
        Plan {
            rate: 10.0,
            peak: None,
            load_fraction: None,
            measure_start_secs: 100.0,
            measure_end_secs: 700.0,
            window_secs: 100.0,
            max_rss_growth_pct: 5.0,
            p99_trend_alpha: 0.05,
            seed: 42,
        }
    }

    fn call(kind: Kind, t_secs: f64, latency_ms: u64, code: &'static str) -> CallRecord {
        CallRecord {
            index: 0,
            phase: if t_secs < 100.0 {
                Phase::Warmup
            } else {
                Phase::Measured
            },
            kind,
            priority: 0,
            pairs: 16,
            tokens: None,
            t_secs,
            latency_us: latency_ms * 1000,
            code,
        }
    }

    fn flat_rss(from: f64, to: f64, mib: f64) -> Vec<RssSample> {
        (from as u64..=to as u64)
            .map(|t| RssSample {
                t_secs: t as f64,
                bytes: (mib * MIB) as u64,
            })
            .collect()
    }

    #[test]
    fn windows_compare_the_first_and_last_calls_of_each_kind() {
        let mut recorder = Recorder::default();
        // Rerank: 10 ms in the first window, 20 ms in the last, 99 in between.
        for t in 0..700 {
            let latency = match t {
                100..=199 => 10,
                600..=699 => 20,
                _ => 99,
            };
            recorder.record(call(Kind::Rerank, t as f64, latency, "OK"), "");
        }
        recorder.record(call(Kind::Cancel, 150.0, 5, CLIENT_CANCELLED), "dropped");
        recorder.record(
            call(Kind::Deadline, 650.0, 3, CLIENT_DEADLINE),
            "Timeout expired",
        );
        let summary = summarize(plan(), &recorder, &flat_rss(0.0, 700.0, 100.0), None);
        let rerank = &summary.kinds[0];
        assert_eq!((rerank.kind, rerank.calls), ("rerank", 600));
        assert_eq!(
            rerank.first,
            Window {
                calls: 100,
                p50_ms: Some(10.0),
                p99_ms: Some(10.0)
            }
        );
        assert_eq!(rerank.last.p99_ms, Some(20.0));
        assert_eq!(rerank.p99_ratio, Some(2.0));
        let cancel = summary.kinds.iter().find(|k| k.kind == "cancel").unwrap();
        assert_eq!(
            (cancel.calls, cancel.first.calls),
            (1, 0),
            "a dropped call has no latency"
        );
        assert_eq!(summary.served_first.calls, 100);
        assert_eq!(summary.slices.len(), 30);
        assert_eq!(summary.slices[0].window.p99_ms, Some(10.0));
        // Slices of 20 s: five in the first window, then the middle's 99 ms.
        assert_eq!(summary.slices[4].window.p99_ms, Some(10.0));
        assert_eq!(summary.slices[5].window.p99_ms, Some(99.0));
        assert!(summary.passed, "{:?}", summary.failures);
    }

    #[test]
    fn an_unexpected_outcome_in_any_phase_fails_with_its_first_message() {
        let mut recorder = Recorder::default();
        recorder.record(call(Kind::Bad, 50.0, 1, "OK"), "");
        recorder.record(call(Kind::Rerank, 200.0, 1, "INTERNAL"), "the model failed");
        recorder.record(call(Kind::Rerank, 300.0, 1, "INTERNAL"), "again");
        recorder.record(call(Kind::Deadline, 300.0, 1, "CANCELLED"), "h2 reset");
        assert_eq!(recorder.unexpected_count(), 4);
        let summary = summarize(plan(), &recorder, &flat_rss(0.0, 700.0, 100.0), None);
        assert!(!summary.passed);
        assert_eq!(summary.failures.len(), 3, "{:?}", summary.failures);
        assert!(summary
            .failures
            .iter()
            .any(|f| f.starts_with("2 rerank call(s) ended INTERNAL")
                && f.contains("the model failed")));
        assert!(summary.failures.iter().any(|f| f.contains("Warmup")));
        assert_eq!(summary.kinds[0].unexpected, 2);
    }

    #[test]
    fn rss_growth_is_judged_between_the_medians_of_the_edge_windows() {
        let recorder = Recorder::default();
        // 100 MiB for the warm-up and measuring, one spike, 104 in the last
        // window (600-700 s) but for a dip at its start.
        let mut rss = flat_rss(0.0, 599.0, 100.0);
        rss[300].bytes = (400.0 * MIB) as u64;
        rss.extend(flat_rss(600.0, 700.0, 104.0));
        rss[610].bytes = (50.0 * MIB) as u64;
        let summary = summarize(plan(), &recorder, &rss, None);
        let r = summary.rss.clone().unwrap();
        assert_eq!(
            (r.after_warmup_mib, r.end_mib, r.peak_mib),
            (100.0, 104.0, 400.0)
        );
        assert!((r.growth_pct - 4.0).abs() < 1e-9);
        assert!(summary.passed);

        let mut over = flat_rss(0.0, 599.0, 100.0);
        over.extend(flat_rss(600.0, 700.0, 106.0));
        let summary = summarize(plan(), &recorder, &over, None);
        assert!(!summary.passed);
        assert!(
            summary.failures[0].contains("RSS grew 6.0%"),
            "{:?}",
            summary.failures
        );
        // A steady climb shows in the slope: 1 MiB a minute is 60 MiB/h.
        let climbing: Vec<RssSample> = (100..=700)
            .map(|t| RssSample {
                t_secs: t as f64,
                bytes: ((100.0 + t as f64 / 60.0) * MIB) as u64,
            })
            .collect();
        let slope = summarize(plan(), &recorder, &climbing, None)
            .rss
            .unwrap()
            .slope_mib_per_hour;
        assert!((slope - 60.0).abs() < 0.5, "{slope}");
    }

    #[test]
    fn skipped_calls_fail_and_missing_rss_is_not_judged() {
        let recorder = Recorder {
            skipped: 3,
            ..Recorder::default()
        };
        let summary = summarize(plan(), &recorder, &[], None);
        assert_eq!(summary.rss, None);
        assert_eq!(summary.failures.len(), 1);
        assert!(summary.failures[0].starts_with("3 call(s) not sent"));
        assert!(table(&summary).contains("FAILED"));
    }

    #[test]
    fn a_call_is_one_json_line_with_seconds_and_ok_in_lower_case() {
        let served = CallRecord {
            index: 17,
            phase: Phase::Measured,
            kind: Kind::Chunked,
            priority: -1,
            pairs: 11,
            tokens: Some(4321),
            t_secs: 123.5,
            latency_us: 1_250_000,
            code: "OK",
        };
        assert_eq!(
            served.json_line(),
            r#"{"index":17,"phase":"measured","kind":"chunked","priority":-1,"pairs":11,"tokens":4321,"due_secs":123.5,"latency_secs":1.25,"outcome":"ok"}"#
        );
        let dropped = CallRecord {
            phase: Phase::Alone,
            kind: Kind::Cancel,
            priority: 1,
            tokens: None,
            latency_us: 7_000,
            code: CLIENT_CANCELLED,
            ..served
        };
        let lines = json_lines(&[served, dropped]);
        assert!(
            lines.ends_with('\n') && lines.lines().count() == 2,
            "{lines}"
        );
        let second: serde_json::Value =
            serde_json::from_str(lines.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second["phase"], "alone");
        assert_eq!(second["kind"], "cancel");
        assert_eq!(second["priority"], 1);
        assert_eq!(second["tokens"], serde_json::Value::Null);
        assert_eq!(second["latency_secs"], 0.007);
        assert_eq!(second["outcome"], "CLIENT_CANCELLED");
    }

    fn alone(kind: Kind, pairs: u32, latency_ms: u64, code: &'static str) -> CallRecord {
        CallRecord {
            phase: Phase::Alone,
            pairs,
            ..call(kind, 20.0, latency_ms, code)
        }
    }

    #[test]
    fn slowdown_divides_the_measured_served_calls_by_their_class_time_alone() {
        let mut recorder = Recorder::default();
        // Alone: small calls 100 ms (a deadline call and a failed one do
        // not count), 33-64 pairs 1 s.
        for latency in [100, 100, 120, 90, 80] {
            recorder.record(alone(Kind::Rerank, 20, latency, "OK"), "");
        }
        recorder.record(alone(Kind::Deadline, 20, 5, "OK"), "");
        recorder.record(alone(Kind::Pairs, 20, 1, "UNAVAILABLE"), "gone");
        for latency in [1000, 900, 1100] {
            recorder.record(alone(Kind::Progressive, 50, latency, "OK"), "");
        }
        // Measured: small calls 200 ms, one at 1 s; 33-64 at 1.5 s; calls
        // of the warm-up, of a kind not served, or not OK do not count.
        for t in 0..99 {
            recorder.record(call(Kind::Pairs, 100.0 + t as f64, 200, "OK"), "");
        }
        recorder.record(call(Kind::Rerank, 300.0, 1000, "OK"), "");
        recorder.record(
            CallRecord {
                pairs: 60,
                ..call(Kind::Stream, 400.0, 1500, "OK")
            },
            "",
        );
        recorder.record(call(Kind::Rerank, 50.0, 9000, "OK"), "");
        recorder.record(call(Kind::Deadline, 300.0, 9000, "OK"), "");
        recorder.record(call(Kind::Cancel, 300.0, 9000, "OK"), "");
        recorder.record(call(Kind::Deadline, 300.0, 9000, "DEADLINE_EXCEEDED"), "");

        // The p99 trend is left out: these few slices are not about it.
        let unjudged = Plan {
            p99_trend_alpha: 0.0,
            ..plan()
        };
        let summary = summarize(unjudged, &recorder, &flat_rss(0.0, 700.0, 100.0), None);
        // Alone calls are no measured calls: rerank counts its one.
        assert_eq!(summary.kinds[0].calls, 1);
        let small = &summary.slowdown[0];
        assert_eq!((small.alone_calls, small.alone_ms), (5, Some(100.0)));
        assert_eq!(small.calls, 100);
        assert_eq!(
            (small.p50, small.p99, small.max),
            (Some(2.0), Some(2.0), Some(10.0))
        );
        let middle = &summary.slowdown[1];
        assert_eq!((middle.alone_calls, middle.calls), (3, 1));
        assert_eq!((middle.alone_ms, middle.p50), (Some(1000.0), Some(1.5)));
        assert_eq!(slowdown::worst_p99(&summary.slowdown), Some(2.0));
        // Reported, not judged: the one failure is the alone phase's
        // UNAVAILABLE (unexpected in any phase), not the tenfold slowdown.
        assert_eq!(summary.failures.len(), 1, "{:?}", summary.failures);
        assert!(
            summary.failures[0]
                .starts_with("1 pairs call(s) ended UNAVAILABLE (first in the Alone phase"),
            "{:?}",
            summary.failures
        );
        let table = table(&summary);
        assert!(table.contains("slowdown by size class"), "{table}");
        let row = table
            .lines()
            .find(|l| l.trim_start().starts_with("33-64"))
            .unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["33-64", "3", "1000.0", "1", "1.50", "1.50", "1.50"]
        );
        assert!(
            !table.contains("97-256"),
            "a class with no call is left out:\n{table}"
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["slowdown"].as_array().unwrap().len(), 5);
        assert_eq!(json["slowdown"][0]["class"], "<=32");
        assert_eq!(json["slowdown"][0]["p99"], 2.0);
    }

    #[test]
    fn without_calls_alone_there_is_no_slowdown() {
        let summary = summarize(
            plan(),
            &by_slice(|_| 100),
            &flat_rss(0.0, 700.0, 100.0),
            None,
        );
        assert_eq!(summary.slowdown[0].calls, 300);
        assert_eq!(
            (summary.slowdown[0].alone_ms, summary.slowdown[0].p50),
            (None, None)
        );
        assert_eq!(slowdown::worst_p99(&summary.slowdown), None);
        assert!(table(&summary).contains("slowdown by size class: not measured"));
        assert!(summary.passed);
    }

    /// Served Rerank calls of `latency(slice)` ms, ten in each 20 s slice.
    fn by_slice(latency: impl Fn(usize) -> u64) -> Recorder {
        let mut recorder = Recorder::default();
        for slice in 0..30 {
            for k in 0..10 {
                let t = 100.0 + slice as f64 * 20.0 + k as f64 * 2.0;
                recorder.record(call(Kind::Rerank, t, latency(slice), "OK"), "");
            }
        }
        recorder
    }

    #[test]
    fn a_p99_that_rises_through_the_run_fails_it_and_bursts_do_not() {
        let rss = flat_rss(0.0, 700.0, 100.0);
        // 10 ms more each slice.
        let creeping = summarize(plan(), &by_slice(|s| 100 + 10 * s as u64), &rss, None);
        let trend = creeping.served_p99_trend.unwrap();
        assert_eq!(trend.points, 30);
        assert!((trend.theil_sen_slope - 10.0).abs() < 1e-9, "{trend:?}");
        assert!(!creeping.passed);
        assert!(
            creeping.failures[0].starts_with("the served p99 rises through the run"),
            "{:?}",
            creeping.failures
        );
        // The same, with the trend not judged.
        let plan_unjudged = Plan {
            p99_trend_alpha: 0.0,
            ..plan()
        };
        let unjudged = summarize(
            plan_unjudged,
            &by_slice(|s| 100 + 10 * s as u64),
            &rss,
            None,
        );
        assert!(unjudged.passed, "{:?}", unjudged.failures);
        assert!(table(&unjudged).contains("RSS within its bound, p99 trend not judged"));
        // Slow bursts every seventh slice, from the first window to the
        // last: no rise.
        let bursts = summarize(
            plan(),
            &by_slice(|s| if s % 7 == 3 { 900 } else { 100 }),
            &rss,
            None,
        );
        assert!(bursts.passed, "{:?}", bursts.failures);
        assert!(table(&bursts).contains("steady (no rise at p < 0.05)"));
        assert!(table(&bursts).contains("RSS within its bound, no rising p99"));
    }
}
