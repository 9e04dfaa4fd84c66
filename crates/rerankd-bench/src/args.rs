//! The bench's flags (every one also a `RERANKD_BENCH_*` environment
//! variable), shared by the `rerankd-bench` binary and the server binary's
//! `rerankd bench` subcommand, which wraps [`BenchArgs`].
//!
//! Owns: the bench's flag names, defaults and help texts. Must never: act
//! on a flag (connecting, measuring and writing are `run`'s), or hold a
//! server flag (those are the `rerankd` crate's `config`).

use std::path::PathBuf;

use clap::{Args, Parser};

/// rerankd-bench: drive a running rerankd with concurrent clients and
/// report throughput, latency and what its batcher did (table, JSON, SVG
/// plot). The same as `rerankd bench`, in a binary without libtorch.
#[derive(Debug, Parser)]
#[command(name = "rerankd-bench", version)]
pub struct Cli {
    #[command(flatten)]
    pub args: BenchArgs,
}

/// `rerankd bench`: a closed-loop load generator against a running server.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Address of the running server (http://HOST:PORT; plaintext).
    #[arg(
        long,
        env = "RERANKD_BENCH_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,

    /// Concurrent clients, each on its own connection, each sending its next
    /// request as soon as the last one is answered.
    #[arg(long, env = "RERANKD_BENCH_CLIENTS", default_value_t = 16, value_parser = at_least_one)]
    pub clients: usize,

    /// Documents per request.
    #[arg(long, env = "RERANKD_BENCH_DOCUMENTS", default_value_t = 32, value_parser = at_least_one)]
    pub documents: usize,

    /// Document lengths in words: fixed (all --words), uniform (8 to 2 ×
    /// --words) or long-tail (mostly short, median about 40 words, a tail up
    /// to about 400, capped so that a pair fits the server's window).
    #[arg(long, env = "RERANKD_BENCH_LENGTHS", default_value = "fixed")]
    pub lengths: BenchLengths,

    /// Words per document for --lengths fixed and uniform.
    #[arg(long, env = "RERANKD_BENCH_WORDS", default_value_t = 64, value_parser = at_least_one)]
    pub words: usize,

    /// Seconds to measure for (ignored when --requests is given).
    #[arg(long, env = "RERANKD_BENCH_DURATION", default_value_t = 30.0, value_parser = parse_seconds)]
    pub duration: f64,

    /// Stop after this many measured requests in all (overrides --duration).
    #[arg(long, env = "RERANKD_BENCH_REQUESTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Seconds of load before measuring starts (not measured).
    #[arg(long, env = "RERANKD_BENCH_WARMUP", default_value_t = 2.0, value_parser = parse_seconds)]
    pub warmup: f64,

    /// Seed of the workload: the same seed sends the same requests.
    #[arg(long, env = "RERANKD_BENCH_SEED", default_value_t = 42)]
    pub seed: u64,

    /// gRPC deadline of each request, in seconds: a request not answered
    /// by then fails (counted by its code) and the server drops its work.
    #[arg(long, env = "RERANKD_BENCH_DEADLINE", default_value_t = 30.0, value_parser = parse_positive_seconds)]
    pub deadline: f64,

    /// Where to write the summary, the configuration and the time series.
    #[arg(long, env = "RERANKD_BENCH_JSON", default_value = "bench.json")]
    pub json: PathBuf,

    /// Where to write the SVG plot of the time series.
    #[arg(long, env = "RERANKD_BENCH_PLOT", default_value = "bench.svg")]
    pub plot: PathBuf,

    /// How often the server's Stats are sampled, in milliseconds.
    #[arg(long, env = "RERANKD_BENCH_SAMPLE_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub sample_ms: u64,

    /// Do not print the progress line on stderr.
    #[arg(long, env = "RERANKD_BENCH_NO_PROGRESS")]
    pub no_progress: bool,
}

/// `--lengths`: how document lengths are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchLengths {
    Fixed,
    Uniform,
    LongTail,
}

pub(crate) fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of 1 or more, got {value:?}"
        )),
    }
}

/// The server's `config` has its own copy for its drain and grace flags:
/// the bench must not depend on the server crate.
pub(crate) fn parse_seconds(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds),
        _ => Err(format!("expected seconds (0 or more), got {value:?}")),
    }
}

pub(crate) fn parse_positive_seconds(value: &str) -> Result<f64, String> {
    match parse_seconds(value) {
        Ok(seconds) if seconds > 0.0 => Ok(seconds),
        _ => Err(format!("expected seconds (more than 0), got {value:?}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(flags: &[&str]) -> Result<BenchArgs, clap::Error> {
        let argv = std::iter::once("rerankd-bench").chain(flags.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_flags_parse_with_defaults_and_refuse_zero_clients() {
        let args = parse(&["--lengths", "long-tail"]).unwrap();
        assert_eq!(args.addr, "http://127.0.0.1:50051");
        assert_eq!((args.clients, args.documents, args.words), (16, 32, 64));
        assert_eq!(args.lengths, BenchLengths::LongTail);
        assert_eq!(
            (args.duration, args.warmup, args.requests),
            (30.0, 2.0, None)
        );
        assert_eq!(args.json, PathBuf::from("bench.json"));
        assert!(!args.no_progress);
        assert!(parse(&["--clients", "0"]).is_err());
    }

    #[test]
    fn bad_values_are_refused_with_the_expected_forms() {
        for (flags, expected) in [
            (&["--documents", "0"][..], "1 or more"),
            (&["--duration=-1"][..], "seconds (0 or more)"),
            (&["--deadline", "0"][..], "seconds (more than 0)"),
            (&["--requests", "0"][..], "1.."),
            (&["--lengths", "bimodal"][..], "long-tail"),
        ] {
            let error = parse(flags).unwrap_err().to_string();
            assert!(error.contains(expected), "{flags:?}: {error}");
        }
    }
}
