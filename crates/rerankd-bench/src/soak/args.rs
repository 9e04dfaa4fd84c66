//! The soak's flags (every one also a `RERANKD_SOAK_*` environment
//! variable), for the `rerankd-soak` binary.
//!
//! Owns: the soak's flag names, defaults and help texts. Must never: act on
//! a flag (measuring and judging are `soak::run`'s), or hold a server flag
//! beyond the two limits the bad requests must cross (`--max-documents`,
//! `--max-document-bytes`), which must match the server's.

use std::path::PathBuf;

use clap::{Args, Parser};

/// rerankd-soak: drive a running rerankd for a long time, open-loop at a
/// share of its measured peak, with the whole API mixed (Rerank, ScorePairs,
/// RerankStream, RerankProgressive, chunked documents, cancelled calls,
/// deadlines too short to meet, bad requests). Reports counts by kind and
/// status, p50/p99 of the first and last window side by side, slowdown by
/// size class against calls timed alone, and the server's RSS; writes
/// every call to a JSON-lines file; exits non-zero on any unexpected status
/// or RSS growth over the bound.
#[derive(Debug, Parser)]
#[command(name = "rerankd-soak", version)]
pub struct Cli {
    #[command(flatten)]
    pub args: SoakArgs,
}

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct SoakArgs {
    /// Address of the running server (http://HOST:PORT; plaintext).
    #[arg(
        long,
        env = "RERANKD_SOAK_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,

    /// The server's process id: its RSS (VmRSS in /proc/PID/status) is
    /// sampled every second and judged. Without it, RSS is not measured.
    #[arg(long, env = "RERANKD_SOAK_SERVER_PID")]
    pub server_pid: Option<u32>,

    /// Minutes of measured load (after the peak phase and the warm-up).
    #[arg(long, env = "RERANKD_SOAK_MINUTES", default_value_t = 30.0, value_parser = parse_positive)]
    pub minutes: f64,

    /// Seconds of load at the soak's rate before measuring starts; RSS
    /// "after warm-up" is read when it ends.
    #[arg(long, env = "RERANKD_SOAK_WARMUP_SECS", default_value_t = 60.0, value_parser = parse_non_negative)]
    pub warmup_secs: f64,

    /// Calls per second to send; without it, the peak is measured first
    /// (closed loop, --peak-clients, --peak-secs) and the rate is
    /// --load-fraction of it.
    #[arg(long, env = "RERANKD_SOAK_RATE", value_parser = parse_positive)]
    pub rate: Option<f64>,

    /// Seconds of the closed-loop phase that measures the peak (its second
    /// half is counted; a few latencies long at least).
    #[arg(long, env = "RERANKD_SOAK_PEAK_SECS", default_value_t = 60.0, value_parser = parse_positive)]
    pub peak_secs: f64,

    /// Concurrent closed-loop clients of the peak phase: enough to keep
    /// the batcher's queue full (the server batches across calls), few
    /// enough that a call's latency (about clients × a call's work ÷
    /// throughput) stays far inside --call-deadline-secs.
    #[arg(long, env = "RERANKD_SOAK_PEAK_CLIENTS", default_value_t = 8, value_parser = at_least_one)]
    pub peak_clients: usize,

    /// Seconds at most of the alone phase (after the peak, before the
    /// warm-up): one client sends served calls of the mix one at a time,
    /// --alone-per-class of each size class, for each class's time alone
    /// (the median), which slowdown divides by. 0: no alone phase, no
    /// slowdown.
    #[arg(long, env = "RERANKD_SOAK_ALONE_SECS", default_value_t = DEFAULT_ALONE_SECS, value_parser = parse_non_negative)]
    pub alone_secs: f64,

    /// Calls of each size class the alone phase times.
    #[arg(long, env = "RERANKD_SOAK_ALONE_PER_CLASS", default_value_t = DEFAULT_ALONE_PER_CLASS, value_parser = at_least_one)]
    pub alone_per_class: usize,

    /// The share of the measured peak to send at.
    #[arg(long, env = "RERANKD_SOAK_LOAD_FRACTION", default_value_t = 0.7, value_parser = parse_fraction)]
    pub load_fraction: f64,

    /// Length of the first and last windows compared, in seconds (default:
    /// a sixth of the measured time, 5 minutes of 30).
    #[arg(long, env = "RERANKD_SOAK_WINDOW_SECS", value_parser = parse_positive)]
    pub window_secs: Option<f64>,

    /// HTTP/2 connections the calls are spread over (call k uses k mod N).
    #[arg(long, env = "RERANKD_SOAK_CONNECTIONS", default_value_t = 8, value_parser = at_least_one)]
    pub connections: usize,

    /// Calls in flight at most; a call due while this many are unanswered
    /// is not sent and counted as skipped (a server that stalls), which
    /// fails the run.
    #[arg(long, env = "RERANKD_SOAK_MAX_IN_FLIGHT", default_value_t = 1024, value_parser = at_least_one)]
    pub max_in_flight: usize,

    /// Deadline of every call that has no short one of its own, in seconds:
    /// a call that hangs ends as an unexpected status.
    #[arg(long, env = "RERANKD_SOAK_CALL_DEADLINE_SECS", default_value_t = 120.0, value_parser = parse_positive)]
    pub call_deadline_secs: f64,

    /// Seed of the mix: the same seed sends the same calls.
    #[arg(long, env = "RERANKD_SOAK_SEED", default_value_t = 42)]
    pub seed: u64,

    /// The server's --max-documents: a bad request sends one more.
    #[arg(long, env = "RERANKD_SOAK_MAX_DOCUMENTS", default_value_t = 1000, value_parser = at_least_one)]
    pub max_documents: usize,

    /// The server's --max-document-bytes: a bad request sends a longer
    /// document.
    #[arg(long, env = "RERANKD_SOAK_MAX_DOCUMENT_BYTES", default_value_t = 65536, value_parser = at_least_one)]
    pub max_document_bytes: usize,

    /// Largest RSS growth allowed, in percent, from the first window after
    /// the warm-up to the last (the median of each window's samples: RSS
    /// swings between the server's malloc trims, 10 s apart).
    #[arg(long, env = "RERANKD_SOAK_MAX_RSS_GROWTH_PCT", default_value_t = 5.0, value_parser = parse_non_negative)]
    pub max_rss_growth_pct: f64,

    /// Significance level of the p99 trend: the run fails when the served
    /// p99 per slice rises with time (Spearman's rho above 0 with a
    /// two-sided permutation p-value under this). 0: reported, not judged
    /// (the CI run's slices hold a few calls each).
    #[arg(long, env = "RERANKD_SOAK_P99_TREND_ALPHA", default_value_t = 0.05, value_parser = parse_alpha)]
    pub p99_trend_alpha: f64,

    /// Where to write the JSON report.
    #[arg(long, env = "RERANKD_SOAK_JSON", default_value = "soak.json")]
    pub json: PathBuf,

    /// Where to write every call, one JSON object a line (index, phase,
    /// kind, priority, pairs, tokens, due_secs, latency_secs, outcome), in
    /// the order they ended [default: STEM.calls.jsonl beside --json].
    #[arg(long, env = "RERANKD_SOAK_CALLS_JSONL")]
    pub calls_jsonl: Option<PathBuf>,

    /// Do not print the progress line on stderr (every 10 s).
    #[arg(long, env = "RERANKD_SOAK_NO_PROGRESS")]
    pub no_progress: bool,
}

/// The alone phase's bound in seconds: the full run's served calls take
/// up to a few seconds each alone.
pub const DEFAULT_ALONE_SECS: f64 = 120.0;
/// Calls a class: a class spans sizes up to 8x apart (4 to 32 pairs), so
/// the median of a handful moves with the draw; nine take about a minute
/// of the full run (three classes, 0.3 to 4 s a call alone).
pub const DEFAULT_ALONE_PER_CLASS: usize = 9;

impl SoakArgs {
    /// The calls file: --calls-jsonl, or `STEM.calls.jsonl` in --json's
    /// folder (`soak.json` -> `soak.calls.jsonl`).
    pub fn calls_path(&self) -> PathBuf {
        self.calls_jsonl.clone().unwrap_or_else(|| {
            let stem = self.json.file_stem().unwrap_or("soak".as_ref());
            let mut name = stem.to_os_string();
            name.push(".calls.jsonl");
            self.json.with_file_name(name)
        })
    }
}

fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of 1 or more, got {value:?}"
        )),
    }
}

fn parse_non_negative(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number (0 or more), got {value:?}")),
    }
}

fn parse_positive(value: &str) -> Result<f64, String> {
    match parse_non_negative(value) {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err(format!("expected a number (more than 0), got {value:?}")),
    }
}

fn parse_alpha(value: &str) -> Result<f64, String> {
    match parse_non_negative(value) {
        Ok(v) if v < 1.0 => Ok(v),
        _ => Err(format!("expected a level in [0, 1), got {value:?}")),
    }
}

fn parse_fraction(value: &str) -> Result<f64, String> {
    match parse_positive(value) {
        Ok(v) if v <= 1.0 => Ok(v),
        _ => Err(format!("expected a share in (0, 1], got {value:?}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(flags: &[&str]) -> Result<SoakArgs, clap::Error> {
        let argv = std::iter::once("rerankd-soak").chain(flags.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_full_soak() {
        let args = parse(&[]).unwrap();
        assert_eq!((args.minutes, args.warmup_secs), (30.0, 60.0));
        assert_eq!((args.rate, args.load_fraction), (None, 0.7));
        assert_eq!(args.max_rss_growth_pct, 5.0);
        assert_eq!(args.p99_trend_alpha, 0.05);
        assert_eq!((args.max_documents, args.max_document_bytes), (1000, 65536));
        assert_eq!(args.server_pid, None);
        assert_eq!((args.alone_secs, args.alone_per_class), (120.0, 9));
    }

    #[test]
    fn the_calls_file_sits_beside_the_json_report_unless_named() {
        let path = |flags: &[&str]| parse(flags).unwrap().calls_path();
        assert_eq!(path(&[]), PathBuf::from("soak.calls.jsonl"));
        assert_eq!(
            path(&["--json", "/tmp/rerankd-soak/ci/soak.json"]),
            PathBuf::from("/tmp/rerankd-soak/ci/soak.calls.jsonl")
        );
        assert_eq!(
            path(&[
                "--json",
                "out/run6.json",
                "--calls-jsonl",
                "elsewhere.jsonl"
            ]),
            PathBuf::from("elsewhere.jsonl")
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_expected_forms() {
        for (flags, expected) in [
            (&["--minutes", "0"][..], "more than 0"),
            (&["--load-fraction", "1.5"][..], "(0, 1]"),
            (&["--p99-trend-alpha", "1"][..], "[0, 1)"),
            (&["--warmup-secs=-1"][..], "0 or more"),
            (&["--connections", "0"][..], "1 or more"),
            (&["--rate", "nan"][..], "more than 0"),
            (&["--alone-per-class", "0"][..], "1 or more"),
            (&["--alone-secs=-1"][..], "0 or more"),
        ] {
            let error = parse(flags).unwrap_err().to_string();
            assert!(error.contains(expected), "{flags:?}: {error}");
        }
    }
}
