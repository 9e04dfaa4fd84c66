//! rerankd-contention: what a small query's latency becomes,
//! and what the large requests' throughput gives up, while both share one
//! server. The case it measures: an 8-document query that takes 0.125 s alone
//! took p99 3.9 s beside two clients sending 400-document requests back to
//! back.
//!
//! A run: ModelInfo (the window that caps the long-tail lengths); one
//! connection for the small client and one per large client; `warmup_secs`
//! of the mixed load, not measured; then three phases, each begun once the
//! server holds no pairs (Stats' `queued_pairs` back to 0):
//! 1. **small alone**: `small_alone_calls` small calls, one at a time,
//!    back to back;
//! 2. **large alone**: `large_clients` closed-loop clients sending large
//!    requests back to back for `large_alone_secs`, then letting their
//!    calls in flight finish;
//! 3. **mixed**: the same large clients for `mixed_secs` (and their last
//!    calls), and the small client beside them until they have ended,
//!    sending its next call when the last is answered or
//!    `small_interval_ms` after it was sent, whichever is later.
//!
//! Large pairs/s is the pairs answered over the time until the last large
//! call ended: no request is cut in two at the phase's end, and the fill
//! at the start and the drain at the end weigh alike in both phases (a
//! request's share of the phase: keep phases many requests long).
//!
//! Both phases send the same requests: small call `i` is the small
//! workload's request `i`, and the large clients draw the large workload's
//! requests 0, 1, 2, … from a shared ticket, so alone and mixed differ only
//! in what runs beside them. Then a table on stdout and a JSON file: small
//! latency alone and mixed, the p99 slowdown (mixed p99 ÷ alone p50), the
//! large throughput ratio (mixed ÷ alone pairs/s), each beside its
//! target, and the failed calls by gRPC code.
//!
//! Bounds, so that a stalled server cannot hang a run: every call carries
//! `deadline_secs` as its gRPC deadline and is abandoned [`CLIENT_GRACE`]
//! after it by the client's own timer, so phase 1 ends within its calls ×
//! (deadline + grace), and a phase of `secs` within `secs` plus twice
//! (deadline + grace): the large clients' last calls, then the small
//! client's. The small client's calls are at least
//! `small_interval_ms` apart; a client stops after
//! [`MAX_FAILURES_PER_CLIENT`] failed calls in a phase; the wait for an
//! idle server between phases is at most [`SETTLE_LIMIT`] (plus one Stats
//! call's timeout).
//!
//! Owns: the contention run's flags (`ContentionArgs`, every one also a
//! `RERANKD_CONTENTION_*` variable), its phases, its figures and how they
//! are worded. Must never: depend on the `rerankd` crate or libtorch, or
//! know the server beyond its public API; fail a run on the latency
//! targets (they are printed beside the figures, for people to judge: the
//! run fails only on an error, a failed call, or a figure it could not
//! measure).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use rerankd_api::{code_name, pb};

use crate::args::{at_least_one, parse_positive_seconds, parse_seconds, BenchLengths};
use crate::driver::{self, Client};
use crate::report::{percentile, Answered, Failures, ServedModel, Tally};
use crate::workload::{Lengths, RequestText, Workload};

/// The latency target: small mixed p99 ÷ small alone p50 at most this.
pub const TARGET_P99_SLOWDOWN: f64 = 6.0;
/// The latency target: large mixed ÷ large alone pairs/s at least this.
pub const TARGET_LARGE_THROUGHPUT_RATIO: f64 = 0.95;

/// A call not answered this long after its gRPC deadline is abandoned by
/// the client (a server that ignores deadlines cannot hang a phase).
pub const CLIENT_GRACE: Duration = Duration::from_secs(5);
/// A client that has failed this many calls in a phase sends no more in
/// it: the run fails anyway, and a server that refuses at once would
/// otherwise be sent thousands of calls a second.
pub const MAX_FAILURES_PER_CLIENT: u64 = 10;
/// The longest wait for the server to hold no pairs between phases; past
/// it, the next phase starts anyway, with a warning.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// How often Stats is read while waiting for the server to settle.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// Warm-up requests are the workloads' requests from this index on, so the
/// measured ones (from 0) are the same whatever the warm-up did.
const WARMUP_FIRST_REQUEST: u64 = 1 << 62;
/// The small workload's seed is `--seed` with these bits flipped, so its
/// queries are not the large requests' queries.
const SMALL_SEED_SALT: u64 = 0x5AA1_1C0D_E5EE_D000;

pub const DEFAULT_SMALL_DOCUMENTS: usize = 8;
pub const DEFAULT_SMALL_WORDS: usize = 40;
pub const DEFAULT_SMALL_INTERVAL_MS: u64 = 250;
pub const DEFAULT_LARGE_CLIENTS: usize = 2;
pub const DEFAULT_LARGE_WORDS: usize = 64;
pub const DEFAULT_DEADLINE_SECS: f64 = 60.0;
pub const DEFAULT_SEED: u64 = 42;

/// The settings `--ci` changes; a flag given explicitly wins over either.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub small_alone_calls: u64,
    pub large_documents: usize,
    pub large_alone_secs: f64,
    pub mixed_secs: f64,
    pub warmup_secs: f64,
}

/// The full measurement: about 2 minutes.
pub const FULL: Preset = Preset {
    name: "full",
    small_alone_calls: 30,
    large_documents: 400,
    large_alone_secs: 30.0,
    mixed_secs: 60.0,
    warmup_secs: 5.0,
};

/// `--ci`: a smoke run of about 15 s on a tiny model.
pub const CI: Preset = Preset {
    name: "ci",
    small_alone_calls: 10,
    large_documents: 64,
    large_alone_secs: 5.0,
    mixed_secs: 5.0,
    warmup_secs: 1.0,
};

/// rerankd-contention: measure a small query's latency alone and beside
/// closed-loop clients of large requests, and the large requests'
/// throughput alone and beside it. Reports the p99 slowdown
/// (mixed p99 ÷ alone p50) and the large throughput ratio (mixed ÷ alone)
/// beside the latency targets (≤ 6, ≥ 0.95) without judging them; exits
/// non-zero only on an error, a failed call or a figure it could not
/// measure.
#[derive(Debug, Parser)]
#[command(name = "rerankd-contention", version)]
pub struct Cli {
    #[command(flatten)]
    pub args: ContentionArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ContentionArgs {
    /// Address of the running server (http://HOST:PORT; plaintext).
    #[arg(
        long,
        env = "RERANKD_CONTENTION_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,

    /// The smoke run's preset: 10 calls alone, 5 s phases, 1 s of warm-up,
    /// 64 documents per large request (flags given explicitly still win).
    #[arg(long, env = "RERANKD_CONTENTION_CI")]
    pub ci: bool,

    /// Documents per small request.
    #[arg(long, env = "RERANKD_CONTENTION_SMALL_DOCUMENTS", default_value_t = DEFAULT_SMALL_DOCUMENTS, value_parser = at_least_one)]
    pub small_documents: usize,

    /// Words per small document (every one the same length, so every small
    /// call is the same work).
    #[arg(long, env = "RERANKD_CONTENTION_SMALL_WORDS", default_value_t = DEFAULT_SMALL_WORDS, value_parser = at_least_one)]
    pub small_words: usize,

    /// Small calls in the "small alone" phase [default: 30; --ci: 10].
    #[arg(long, env = "RERANKD_CONTENTION_SMALL_ALONE_CALLS", value_parser = clap::value_parser!(u64).range(1..))]
    pub small_alone_calls: Option<u64>,

    /// In the mixed phase, the small client sends its next call this many
    /// milliseconds after the last was sent, or when it is answered,
    /// whichever is later.
    #[arg(long, env = "RERANKD_CONTENTION_SMALL_INTERVAL_MS", default_value_t = DEFAULT_SMALL_INTERVAL_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub small_interval_ms: u64,

    /// The small requests' priority (lower is more urgent; -1000 to 1000).
    #[arg(long, env = "RERANKD_CONTENTION_SMALL_PRIORITY", default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    pub small_priority: i32,

    /// Concurrent closed-loop clients of large requests, each on its own
    /// connection, each sending its next request as soon as the last one
    /// is answered.
    #[arg(long, env = "RERANKD_CONTENTION_LARGE_CLIENTS", default_value_t = DEFAULT_LARGE_CLIENTS, value_parser = at_least_one)]
    pub large_clients: usize,

    /// Documents per large request [default: 400; --ci: 64].
    #[arg(long, env = "RERANKD_CONTENTION_LARGE_DOCUMENTS", value_parser = at_least_one)]
    pub large_documents: Option<usize>,

    /// Large documents' lengths in words: long-tail (mostly short, median
    /// about 40 words, a tail up to about 400, capped so that a pair fits
    /// the server's window), fixed (all --large-words) or uniform (8 to 2 ×
    /// --large-words).
    #[arg(
        long,
        env = "RERANKD_CONTENTION_LARGE_LENGTHS",
        default_value = "long-tail"
    )]
    pub large_lengths: BenchLengths,

    /// Words per large document for --large-lengths fixed and uniform.
    #[arg(long, env = "RERANKD_CONTENTION_LARGE_WORDS", default_value_t = DEFAULT_LARGE_WORDS, value_parser = at_least_one)]
    pub large_words: usize,

    /// The large requests' priority (lower is more urgent; -1000 to 1000).
    #[arg(long, env = "RERANKD_CONTENTION_LARGE_PRIORITY", default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    pub large_priority: i32,

    /// Seconds of the "large alone" phase [default: 30; --ci: 5].
    #[arg(long, env = "RERANKD_CONTENTION_LARGE_ALONE_SECS", value_parser = parse_positive_seconds)]
    pub large_alone_secs: Option<f64>,

    /// Seconds of the mixed phase [default: 60; --ci: 5].
    #[arg(long, env = "RERANKD_CONTENTION_MIXED_SECS", value_parser = parse_positive_seconds)]
    pub mixed_secs: Option<f64>,

    /// Seconds of the mixed load before the first phase, not measured (0:
    /// none) [default: 5; --ci: 1].
    #[arg(long, env = "RERANKD_CONTENTION_WARMUP_SECS", value_parser = parse_seconds)]
    pub warmup_secs: Option<f64>,

    /// gRPC deadline of every call, in seconds: a call not answered by then
    /// fails (counted by its code) and the server drops its work.
    #[arg(long, env = "RERANKD_CONTENTION_DEADLINE_SECS", default_value_t = DEFAULT_DEADLINE_SECS, value_parser = parse_positive_seconds)]
    pub deadline_secs: f64,

    /// Seed of the workloads: the same seed sends the same requests.
    #[arg(long, env = "RERANKD_CONTENTION_SEED", default_value_t = DEFAULT_SEED)]
    pub seed: u64,

    /// Where to write the JSON report.
    #[arg(
        long,
        env = "RERANKD_CONTENTION_JSON",
        default_value = "contention.json"
    )]
    pub json: PathBuf,

    /// Do not write the phases' progress lines on stderr.
    #[arg(long, env = "RERANKD_CONTENTION_NO_PROGRESS")]
    pub no_progress: bool,
}

/// A run's settings, the preset applied: what the run does and what the
/// JSON file records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub addr: String,
    /// "full" or "ci".
    pub preset: &'static str,
    pub small_documents: usize,
    pub small_words: usize,
    pub small_alone_calls: u64,
    pub small_interval_ms: u64,
    pub small_priority: i32,
    pub large_clients: usize,
    pub large_documents: usize,
    #[serde(serialize_with = "serialize_lengths")]
    pub large_lengths: BenchLengths,
    pub large_words: usize,
    pub large_priority: i32,
    pub large_alone_secs: f64,
    pub mixed_secs: f64,
    pub warmup_secs: f64,
    pub deadline_secs: f64,
    pub seed: u64,
}

impl ContentionArgs {
    /// The settings of this run: each flag given, else its preset's value.
    pub fn plan(&self) -> Plan {
        let preset = if self.ci { CI } else { FULL };
        Plan {
            addr: crate::with_scheme(&self.addr),
            preset: preset.name,
            small_documents: self.small_documents,
            small_words: self.small_words,
            small_alone_calls: self.small_alone_calls.unwrap_or(preset.small_alone_calls),
            small_interval_ms: self.small_interval_ms,
            small_priority: self.small_priority,
            large_clients: self.large_clients,
            large_documents: self.large_documents.unwrap_or(preset.large_documents),
            large_lengths: self.large_lengths,
            large_words: self.large_words,
            large_priority: self.large_priority,
            large_alone_secs: self.large_alone_secs.unwrap_or(preset.large_alone_secs),
            mixed_secs: self.mixed_secs.unwrap_or(preset.mixed_secs),
            warmup_secs: self.warmup_secs.unwrap_or(preset.warmup_secs),
            deadline_secs: self.deadline_secs,
            seed: self.seed,
        }
    }
}

fn lengths_name(lengths: BenchLengths) -> &'static str {
    match lengths {
        BenchLengths::Fixed => "fixed",
        BenchLengths::Uniform => "uniform",
        BenchLengths::LongTail => "long-tail",
    }
}

fn serialize_lengths<S: serde::Serializer>(
    lengths: &BenchLengths,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(lengths_name(*lengths))
}

impl Plan {
    /// The small client's workload: fixed-length short documents.
    pub fn small_workload(&self) -> Workload {
        Workload {
            seed: self.seed ^ SMALL_SEED_SALT,
            documents: self.small_documents,
            lengths: Lengths::fixed(self.small_words),
        }
    }

    /// The large clients' workload, for a server whose pairs hold `window`
    /// tokens (the long-tail lengths are capped to it).
    pub fn large_workload(&self, window: usize) -> Workload {
        Workload {
            seed: self.seed,
            documents: self.large_documents,
            lengths: match self.large_lengths {
                BenchLengths::Fixed => Lengths::fixed(self.large_words),
                BenchLengths::Uniform => Lengths::uniform(self.large_words),
                BenchLengths::LongTail => Lengths::long_tail(window),
            },
        }
    }

    fn deadline(&self) -> Duration {
        Duration::from_secs_f64(self.deadline_secs)
    }

    fn small_interval(&self) -> Duration {
        Duration::from_millis(self.small_interval_ms)
    }
}

// ---------------------------------------------------------------------------
// The pure part: the small client's schedule, the figures, the report.
// ---------------------------------------------------------------------------

/// One small call of the mixed phase, as offsets from the phase's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmallCall {
    pub sent: Duration,
    /// When it was answered, or failed.
    pub ended: Duration,
}

/// When the small client sends its next call (an offset from the phase's
/// start): the first `interval` in (so the large requests are already
/// queued), each next one when the previous ended or `interval` after it
/// was sent, whichever is later. Calls are thus at least `interval` apart;
/// the client stops once the large load has ended.
pub fn next_small_send(previous: Option<SmallCall>, interval: Duration) -> Duration {
    match previous {
        None => interval,
        Some(call) => call.ended.max(call.sent + interval),
    }
}

/// What the large clients did in a phase.
#[derive(Debug, Clone, Default)]
pub struct LargeWork {
    /// How long the clients sent new requests for.
    pub send_secs: f64,
    /// From the phase's start until the last large call ended: the clients
    /// stop sending after `send_secs` and let their calls in flight finish.
    pub secs: f64,
    /// Each client's tally, in connection order.
    pub clients: Vec<Tally>,
}

/// Pairs per second of closed-loop clients that stopped sending at the
/// phase's end and let their last calls finish: the pairs answered over the
/// time until the last call ended. No request is cut in two or counted in
/// part, and the fill at the start and the drain at the end count alike in
/// both phases. `None` when no pair was answered.
pub fn pairs_per_second(pairs: u64, secs: f64) -> Option<f64> {
    (pairs > 0 && secs > 0.0).then(|| pairs as f64 / secs)
}

/// `numerator ÷ denominator`, when both are known and the denominator is
/// above 0.
pub fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

/// The small calls' latencies, in milliseconds (nearest rank: with 30
/// calls, p99 is the slowest).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SmallLatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl SmallLatencyMs {
    /// `None` when there are no latencies.
    pub fn of(latencies_us: &[u64]) -> Option<Self> {
        let mut sorted = latencies_us.to_vec();
        sorted.sort_unstable();
        let ms = |q: f64| percentile(&sorted, q).map(|us| us as f64 / 1000.0);
        Some(SmallLatencyMs {
            p50: ms(0.50)?,
            p90: ms(0.90)?,
            p99: ms(0.99)?,
            max: ms(1.0)?,
        })
    }
}

/// The small client in one phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmallSummary {
    /// Calls that ended (succeeded + failed).
    pub calls: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Of the successful calls; `None` when none succeeded.
    pub latency_ms: Option<SmallLatencyMs>,
    pub failures: BTreeMap<String, Failures>,
}

impl SmallSummary {
    fn of(tally: &Tally) -> Self {
        SmallSummary {
            calls: tally.requests(),
            succeeded: tally.succeeded,
            failed: tally.failed(),
            latency_ms: SmallLatencyMs::of(&tally.latencies_us),
            failures: tally.failures.clone(),
        }
    }
}

/// The large clients in one phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LargeSummary {
    pub clients: usize,
    /// How long they sent new requests for.
    pub send_secs: f64,
    /// Until their last call ended (the calls in flight at `send_secs`
    /// finish).
    pub secs: f64,
    /// Requests answered successfully, and their pairs.
    pub succeeded: u64,
    pub pairs: u64,
    /// `pairs ÷ secs` (see [`pairs_per_second`]); `None` when no pair was
    /// answered.
    pub pairs_per_sec: Option<f64>,
    pub failed: u64,
    pub failures: BTreeMap<String, Failures>,
}

impl LargeSummary {
    fn of(work: &LargeWork) -> Self {
        let tally = merged(work.clients.iter());
        LargeSummary {
            clients: work.clients.len(),
            send_secs: work.send_secs,
            secs: work.secs,
            succeeded: tally.succeeded,
            pairs: tally.pairs,
            pairs_per_sec: pairs_per_second(tally.pairs, work.secs),
            failed: tally.failed(),
            failures: tally.failures,
        }
    }
}

/// Several tallies as one (the first message of each code is the first
/// tally's that has it).
fn merged<'a>(tallies: impl Iterator<Item = &'a Tally>) -> Tally {
    let mut all = Tally::default();
    for tally in tallies {
        all.latencies_us.extend_from_slice(&tally.latencies_us);
        all.succeeded += tally.succeeded;
        all.pairs += tally.pairs;
        all.tokens += tally.tokens;
        all.truncated_pairs += tally.truncated_pairs;
        for (code, failures) in &tally.failures {
            all.failures
                .entry(code.clone())
                .and_modify(|f| f.count += failures.count)
                .or_insert_with(|| failures.clone());
        }
    }
    all
}

/// Both clients of the mixed phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MixedSummary {
    pub small: SmallSummary,
    pub large: LargeSummary,
}

/// The latency targets and whether this run met them (`None`: the figure
/// could not be measured). Reported, never judged by the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Targets {
    pub p99_slowdown_at_most: f64,
    pub large_throughput_ratio_at_least: f64,
    pub p99_slowdown_met: Option<bool>,
    pub large_throughput_ratio_met: Option<bool>,
}

/// What the three phases measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub small_alone: Tally,
    pub large_alone: LargeWork,
    pub mixed_small: Tally,
    pub mixed_large: LargeWork,
}

/// A run's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContentionSummary {
    pub small_alone: SmallSummary,
    pub large_alone: LargeSummary,
    pub mixed: MixedSummary,
    /// Small mixed p99 ÷ small alone p50.
    pub p99_slowdown: Option<f64>,
    /// Large mixed pairs/s ÷ large alone pairs/s.
    pub large_throughput_ratio: Option<f64>,
    pub targets: Targets,
    /// Failed calls of every phase, by gRPC code name.
    pub failures_by_code: BTreeMap<String, u64>,
    pub failed_calls: u64,
}

pub fn summarize(measured: &Measured) -> ContentionSummary {
    let small_alone = SmallSummary::of(&measured.small_alone);
    let large_alone = LargeSummary::of(&measured.large_alone);
    let mixed = MixedSummary {
        small: SmallSummary::of(&measured.mixed_small),
        large: LargeSummary::of(&measured.mixed_large),
    };
    let p99_slowdown = ratio(
        mixed.small.latency_ms.map(|l| l.p99),
        small_alone.latency_ms.map(|l| l.p50),
    );
    let large_throughput_ratio = ratio(mixed.large.pairs_per_sec, large_alone.pairs_per_sec);
    let mut failures_by_code = BTreeMap::new();
    for failures in [
        &small_alone.failures,
        &large_alone.failures,
        &mixed.small.failures,
        &mixed.large.failures,
    ] {
        for (code, f) in failures {
            *failures_by_code.entry(code.clone()).or_insert(0) += f.count;
        }
    }
    ContentionSummary {
        targets: Targets {
            p99_slowdown_at_most: TARGET_P99_SLOWDOWN,
            large_throughput_ratio_at_least: TARGET_LARGE_THROUGHPUT_RATIO,
            p99_slowdown_met: p99_slowdown.map(|s| s <= TARGET_P99_SLOWDOWN),
            large_throughput_ratio_met: large_throughput_ratio
                .map(|r| r >= TARGET_LARGE_THROUGHPUT_RATIO),
        },
        failed_calls: failures_by_code.values().sum(),
        failures_by_code,
        small_alone,
        large_alone,
        mixed,
        p99_slowdown,
        large_throughput_ratio,
    }
}

/// What was sent, as the JSON file records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sent {
    /// The shortest and longest large document the lengths can draw.
    pub large_words_range: (usize, usize),
}

/// The JSON file.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    pub config: &'a Plan,
    pub model: &'a ServedModel,
    pub sent: &'a Sent,
    pub summary: &'a ContentionSummary,
}

fn one_decimal(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1}"))
}

fn met(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "met",
        Some(false) => "not met",
        None => "not measured",
    }
}

/// The figures as a table for stdout.
pub fn table(plan: &Plan, summary: &ContentionSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "small: {} documents of {} words, priority {}; large: {} client(s) of {} {} documents, priority {}",
        plan.small_documents,
        plan.small_words,
        plan.small_priority,
        plan.large_clients,
        plan.large_documents,
        lengths_name(plan.large_lengths),
        plan.large_priority,
    );
    let _ = writeln!(
        out,
        "\n{:<12} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "small", "calls", "failed", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (name, small) in [
        ("alone", &summary.small_alone),
        ("mixed", &summary.mixed.small),
    ] {
        let l = small.latency_ms;
        let _ = writeln!(
            out,
            "{name:<12} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}",
            small.calls,
            small.failed,
            one_decimal(l.map(|l| l.p50)),
            one_decimal(l.map(|l| l.p90)),
            one_decimal(l.map(|l| l.p99)),
            one_decimal(l.map(|l| l.max)),
        );
    }
    let _ = writeln!(
        out,
        "\n{:<12} {:>7} {:>9} {:>7} {:>9} {:>9}",
        "large", "secs", "requests", "failed", "pairs", "pairs/s"
    );
    for (name, large) in [
        ("alone", &summary.large_alone),
        ("mixed", &summary.mixed.large),
    ] {
        let _ = writeln!(
            out,
            "{name:<12} {:>7.1} {:>9} {:>7} {:>9} {:>9}",
            large.secs,
            large.succeeded,
            large.failed,
            large.pairs,
            one_decimal(large.pairs_per_sec),
        );
    }
    let figure = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    let _ = writeln!(
        out,
        "\np99 slowdown (small mixed p99 ÷ alone p50):  {:>7}   target ≤ {}: {}",
        figure(summary.p99_slowdown, 2),
        TARGET_P99_SLOWDOWN,
        met(summary.targets.p99_slowdown_met)
    );
    let _ = writeln!(
        out,
        "large throughput ratio (mixed ÷ alone):      {:>7}   target ≥ {}: {}",
        figure(summary.large_throughput_ratio, 3),
        TARGET_LARGE_THROUGHPUT_RATIO,
        met(summary.targets.large_throughput_ratio_met)
    );
    let _ = writeln!(
        out,
        "failed calls: {}",
        describe_failures(&summary.failures_by_code)
    );
    out
}

/// "none", or "3 (DEADLINE_EXCEEDED 2, UNAVAILABLE 1)".
fn describe_failures(by_code: &BTreeMap<String, u64>) -> String {
    let total: u64 = by_code.values().sum();
    if total == 0 {
        return "none".into();
    }
    let codes: Vec<String> = by_code
        .iter()
        .map(|(code, count)| format!("{code} {count}"))
        .collect();
    format!("{total} ({})", codes.join(", "))
}

/// Figures a run could not measure, each as a phrase.
fn unmeasured(summary: &ContentionSummary) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if summary.small_alone.latency_ms.is_none() {
        missing.push("no small call succeeded alone");
    }
    if summary.mixed.small.latency_ms.is_none() {
        missing.push("no small call succeeded in the mixed phase");
    }
    if summary.large_alone.pairs_per_sec.is_none() {
        missing.push("no large request was answered alone (lengthen --large-alone-secs)");
    }
    if summary.mixed.large.pairs_per_sec.is_none() {
        missing.push("no large request was answered in the mixed phase (lengthen --mixed-secs)");
    }
    missing
}

// ---------------------------------------------------------------------------
// The run: connections, phases, calls.
// ---------------------------------------------------------------------------

/// Why a run could not be made, or failed.
#[derive(Debug, thiserror::Error)]
pub enum ContentionError {
    #[error("cannot reach rerankd at {addr}: is `rerankd serve` running there?")]
    Unreachable {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("ModelInfo at {addr} failed: {}: {}", code_name(.status.code()), .status.message())]
    ModelInfo { addr: String, status: tonic::Status },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{count} call(s) failed: {codes} (see the table above and {})", json.display())]
    FailedCalls {
        count: u64,
        codes: String,
        json: PathBuf,
    },
    #[error("the run measured too little: {} (see {})", what.join("; "), json.display())]
    Unmeasured {
        what: Vec<&'static str>,
        json: PathBuf,
    },
}

/// How every call of one client kind is made.
#[derive(Debug)]
struct Sender {
    workload: Workload,
    priority: i32,
    deadline: Duration,
}

impl Sender {
    /// Sends the workload's request `index` on `client` and records how it
    /// ended in `tally`; whether it succeeded. The client's own timer gives
    /// up [`CLIENT_GRACE`] after the deadline.
    async fn call(&self, client: &mut Client, index: u64, tally: &mut Tally) -> bool {
        let RequestText { query, documents } = self.workload.request(index);
        let mut request = tonic::Request::new(pb::RerankRequest {
            query,
            documents,
            priority: self.priority,
            ..Default::default()
        });
        request.set_timeout(self.deadline);
        let sent = Instant::now();
        let answer = tokio::time::timeout(self.deadline + CLIENT_GRACE, client.rerank(request))
            .await
            .unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(format!(
                    "no answer {} s after the deadline (the client's own timer)",
                    CLIENT_GRACE.as_secs()
                )))
            });
        match answer {
            Ok(response) => {
                let usage = response.into_inner().usage.unwrap_or_default();
                let answered = Answered {
                    pairs: usage.pairs.into(),
                    tokens: usage.tokens,
                    truncated_pairs: usage.truncated.into(),
                };
                tally.record_success(sent.elapsed(), answered);
                true
            }
            Err(status) => {
                let (code, message) = failure(&status);
                tally.record_failure(code, &message);
                false
            }
        }
    }
}

/// How a failed call is counted: its code's name and its message; a call
/// that tonic's own deadline timer ended (CANCELLED "Timeout expired",
/// when it fires before the server's DEADLINE_EXCEEDED arrives) counts as
/// DEADLINE_EXCEEDED, its message saying so.
fn failure(status: &tonic::Status) -> (&'static str, String) {
    if status.code() == tonic::Code::Cancelled && status.message() == "Timeout expired" {
        (
            code_name(tonic::Code::DeadlineExceeded),
            "the deadline passed (the client's timer: Timeout expired)".into(),
        )
    } else {
        (code_name(status.code()), status.message().to_string())
    }
}

/// The connections and what the clients send.
struct Clients {
    small: Client,
    large: Vec<Client>,
    small_sender: Sender,
    large_sender: Arc<Sender>,
}

/// Writes a progress line on stderr unless `--no-progress`.
struct Progress {
    quiet: bool,
}

impl Progress {
    fn say(&self, line: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
}

/// Runs the three phases `args` describe; the summary once the report is
/// written. A failed call or an unmeasured figure is an error, after the
/// report.
pub async fn run(args: ContentionArgs) -> Result<ContentionSummary, ContentionError> {
    let plan = args.plan();
    let progress = Progress {
        quiet: args.no_progress,
    };
    let mut control = connect(&plan.addr).await?;
    let info =
        driver::model_info(&mut control)
            .await
            .map_err(|status| ContentionError::ModelInfo {
                addr: plan.addr.clone(),
                status,
            })?;
    let served = crate::served_model(&info);
    println!(
        "model {} on {} in {} (window {} tokens)",
        served.name,
        served.devices.join(","),
        served.dtype,
        served.max_length
    );
    let large_workload = plan.large_workload(served.max_length as usize);
    let sent = Sent {
        large_words_range: large_workload.lengths.bounds(),
    };
    let mut clients = Clients {
        small: connect(&plan.addr).await?,
        large: Vec::with_capacity(plan.large_clients),
        small_sender: Sender {
            workload: plan.small_workload(),
            priority: plan.small_priority,
            deadline: plan.deadline(),
        },
        large_sender: Arc::new(Sender {
            workload: large_workload,
            priority: plan.large_priority,
            deadline: plan.deadline(),
        }),
    };
    for _ in 0..plan.large_clients {
        clients.large.push(connect(&plan.addr).await?);
    }

    if plan.warmup_secs > 0.0 {
        progress.say(format_args!(
            "warm-up: {} s of the mixed load, not measured",
            plan.warmup_secs
        ));
        mixed(&mut clients, &plan, WARMUP_FIRST_REQUEST, plan.warmup_secs).await;
        settle(&mut control).await;
    }
    let measured = measure(&mut clients, &mut control, &plan, &progress).await;

    let summary = summarize(&measured);
    println!();
    print!("{}", table(&plan, &summary));
    let document = Document {
        config: &plan,
        model: &served,
        sent: &sent,
        summary: &summary,
    };
    let json = serde_json::to_string_pretty(&document).expect("the report is plain data");
    std::fs::write(&args.json, json).map_err(|source| ContentionError::Write {
        path: args.json.clone(),
        source,
    })?;
    println!("wrote {}", args.json.display());
    if summary.failed_calls > 0 {
        return Err(ContentionError::FailedCalls {
            count: summary.failed_calls,
            codes: describe_failures(&summary.failures_by_code),
            json: args.json.clone(),
        });
    }
    let missing = unmeasured(&summary);
    if !missing.is_empty() {
        return Err(ContentionError::Unmeasured {
            what: missing,
            json: args.json.clone(),
        });
    }
    Ok(summary)
}

async fn connect(addr: &str) -> Result<Client, ContentionError> {
    driver::connect(addr)
        .await
        .map_err(|source| ContentionError::Unreachable {
            addr: addr.to_string(),
            source,
        })
}

/// The three measured phases, the server let settle between them.
async fn measure(
    clients: &mut Clients,
    control: &mut Client,
    plan: &Plan,
    progress: &Progress,
) -> Measured {
    progress.say(format_args!(
        "phase 1/3, small alone: {} calls, one at a time",
        plan.small_alone_calls
    ));
    let small_alone = small_alone(clients, plan.small_alone_calls).await;
    progress.say(format_args!(
        "  {} calls, p50 {} ms",
        small_alone.requests(),
        one_decimal(SmallLatencyMs::of(&small_alone.latencies_us).map(|l| l.p50))
    ));
    settle(control).await;

    progress.say(format_args!(
        "phase 2/3, large alone: {} client(s) for {} s",
        plan.large_clients, plan.large_alone_secs
    ));
    let large_alone = large_alone(clients, plan.large_alone_secs).await;
    let large = LargeSummary::of(&large_alone);
    progress.say(format_args!(
        "  {} requests in {:.1} s, {} pairs/s",
        large.succeeded,
        large.secs,
        one_decimal(large.pairs_per_sec)
    ));
    settle(control).await;

    progress.say(format_args!(
        "phase 3/3, mixed: {} large client(s) and the small client for {} s",
        plan.large_clients, plan.mixed_secs
    ));
    let (mixed_large, mixed_small) = mixed(clients, plan, 0, plan.mixed_secs).await;
    progress.say(format_args!(
        "  small: {} calls, p99 {} ms; large: {} pairs/s",
        mixed_small.requests(),
        one_decimal(SmallLatencyMs::of(&mixed_small.latencies_us).map(|l| l.p99)),
        one_decimal(LargeSummary::of(&mixed_large).pairs_per_sec)
    ));

    Measured {
        small_alone,
        large_alone,
        mixed_small,
        mixed_large,
    }
}

/// Phase 1: `calls` small calls, each sent when the last has ended
/// (at most `calls` × (deadline + grace)).
async fn small_alone(clients: &mut Clients, calls: u64) -> Tally {
    let mut tally = Tally::default();
    for index in 0..calls {
        if tally.failed() >= MAX_FAILURES_PER_CLIENT {
            break;
        }
        clients
            .small_sender
            .call(&mut clients.small, index, &mut tally)
            .await;
    }
    tally
}

/// The mixed load: the large clients from request `first_request` on,
/// sending for `secs`, and the small client on its schedule from the same
/// index until the large load has ended (its last call is let finish);
/// returns what each saw.
async fn mixed(
    clients: &mut Clients,
    plan: &Plan,
    first_request: u64,
    secs: f64,
) -> (LargeWork, Tally) {
    let start = Instant::now();
    let interval = plan.small_interval();
    let Clients {
        small,
        small_sender,
        large,
        large_sender,
    } = clients;
    let small_sender: &Sender = small_sender;
    let small_calls = |mut large_ended: watch::Receiver<bool>| async move {
        let mut tally = Tally::default();
        let mut previous = None;
        let mut index = first_request;
        while tally.failed() < MAX_FAILURES_PER_CLIENT {
            let at = start + next_small_send(previous, interval);
            tokio::select! {
                biased;
                _ = large_ended.wait_for(|&ended| ended) => break,
                _ = tokio::time::sleep_until(at.into()) => {}
            }
            let sent = start.elapsed();
            small_sender.call(small, index, &mut tally).await;
            previous = Some(SmallCall {
                sent,
                ended: start.elapsed(),
            });
            index += 1;
        }
        tally
    };
    let large_load = LargeLoad {
        sender: large_sender.clone(),
        first_request,
        start,
        send_for: Duration::from_secs_f64(secs),
    };
    large_load.run(large, small_calls).await
}

/// Phase 2: the large clients alone, sending for `secs`.
async fn large_alone(clients: &mut Clients, secs: f64) -> LargeWork {
    let large_load = LargeLoad {
        sender: clients.large_sender.clone(),
        first_request: 0,
        start: Instant::now(),
        send_for: Duration::from_secs_f64(secs),
    };
    let (work, ()) = large_load
        .run(&mut clients.large, |_| std::future::ready(()))
        .await;
    work
}

/// The large side of a phase.
struct LargeLoad {
    sender: Arc<Sender>,
    /// The workload index of the phase's first large request.
    first_request: u64,
    start: Instant,
    /// How long the clients send new requests for.
    send_for: Duration,
}

impl LargeLoad {
    /// Runs the large clients on the connections in `large` (closed loop,
    /// sending until `start + send_for`, their last calls let finish), and
    /// `beside` alongside, which is told when they have all ended; returns
    /// their work once `beside` has finished too, with its output.
    async fn run<B, F>(self, large: &mut Vec<Client>, beside: B) -> (LargeWork, F::Output)
    where
        B: FnOnce(watch::Receiver<bool>) -> F,
        F: Future,
    {
        let (ended, large_ended) = watch::channel(false);
        let tickets = Arc::new(AtomicU64::new(self.first_request));
        let mut running = JoinSet::new();
        for (n, client) in std::mem::take(large).into_iter().enumerate() {
            running.spawn(large_client(
                LargeClient {
                    client,
                    sender: self.sender.clone(),
                    tickets: tickets.clone(),
                    send_until: self.start + self.send_for,
                },
                n,
            ));
        }
        let start = self.start;
        let all_ended = async move {
            let mut finished = Vec::new();
            while let Some(done) = running.join_next().await {
                match done {
                    Ok(client) => finished.push(client),
                    Err(error) => std::panic::resume_unwind(error.into_panic()),
                }
            }
            let secs = start.elapsed().as_secs_f64();
            // `beside` holds the receiver until it returns; if it has
            // returned already, nobody needs telling.
            let _ = ended.send(true);
            (finished, secs)
        };
        let ((mut finished, secs), output) = tokio::join!(all_ended, beside(large_ended));
        // Back in connection order, so each phase's client n is the same.
        finished.sort_by_key(|(n, _, _)| *n);
        let mut clients = Vec::with_capacity(finished.len());
        for (_, client, tally) in finished {
            large.push(client);
            clients.push(tally);
        }
        let work = LargeWork {
            send_secs: self.send_for.as_secs_f64(),
            secs,
            clients,
        };
        (work, output)
    }
}

/// One large client's share of a phase.
struct LargeClient {
    client: Client,
    sender: Arc<Sender>,
    /// The next workload index to send, shared by the phase's clients.
    tickets: Arc<AtomicU64>,
    /// No request is sent from then on.
    send_until: Instant,
}

/// Sends back to back until `send_until` or the client's failure cap; the
/// call in flight then is let finish (each call ends by its deadline and
/// the grace at most). Returns `n` (which client it was), the connection
/// and what it saw.
async fn large_client(mut me: LargeClient, n: usize) -> (usize, Client, Tally) {
    let mut tally = Tally::default();
    while Instant::now() < me.send_until && tally.failed() < MAX_FAILURES_PER_CLIENT {
        let index = me.tickets.fetch_add(1, Ordering::Relaxed);
        me.sender.call(&mut me.client, index, &mut tally).await;
    }
    (n, me.client, tally)
}

/// Waits until the server holds no pairs (Stats' `queued_pairs` counts
/// those admitted and not yet answered, the batch running included), so
/// one phase's leftovers do not load the next; at most [`SETTLE_LIMIT`].
async fn settle(control: &mut Client) {
    let give_up = Instant::now() + SETTLE_LIMIT;
    let origin = Instant::now();
    loop {
        let queued = driver::read_stats(control, origin)
            .await
            .map(|s| s.queued_pairs);
        if matches!(queued, Ok(0)) {
            return;
        }
        if Instant::now() >= give_up {
            let what = match queued {
                Ok(pairs) => format!("{pairs} pairs still queued"),
                Err(status) => format!("Stats failed: {}", code_name(status.code())),
            };
            eprintln!(
                "warning: the server did not settle in {} s ({what}); going on",
                SETTLE_LIMIT.as_secs()
            );
            return;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(flags: &[&str]) -> Result<ContentionArgs, clap::Error> {
        let argv = std::iter::once("rerankd-contention").chain(flags.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    fn ms_(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// A tally of successful calls with these latencies (ms), `pairs_each`
    /// pairs each, and `failed` failures of each code.
    fn tally(latencies_ms: &[u64], pairs_each: u64, failed: &[(&str, u64)]) -> Tally {
        let mut tally = Tally::default();
        for &latency in latencies_ms {
            tally.record_success(
                ms_(latency),
                Answered {
                    pairs: pairs_each,
                    ..Default::default()
                },
            );
        }
        for &(code, count) in failed {
            for i in 0..count {
                tally.record_failure(code, &format!("{code} number {i}"));
            }
        }
        tally
    }

    /// A large client's tally: `requests` answered, 400 pairs each.
    fn client(requests: u64) -> Tally {
        tally(&vec![1000; requests as usize], 400, &[])
    }

    /// Small alone: 1..=100 ms; large alone: 2 clients, 60 requests of 400
    /// pairs ended in 30 s (800 pairs/s); mixed small: 10..=1000 ms step
    /// 10; mixed large: 114 requests ended in 60 s (760 pairs/s).
    fn measured() -> Measured {
        let alone: Vec<u64> = (1..=100).collect();
        let mixed: Vec<u64> = (1..=100).map(|i| i * 10).collect();
        Measured {
            small_alone: tally(&alone, 8, &[]),
            large_alone: LargeWork {
                send_secs: 29.5,
                secs: 30.0,
                clients: vec![client(30), client(30)],
            },
            mixed_small: tally(&mixed, 8, &[]),
            mixed_large: LargeWork {
                send_secs: 59.5,
                secs: 60.0,
                clients: vec![client(56), client(58)],
            },
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_head_of_line_case_and_ci_shortens_only_what_it_names() {
        let full = parse(&[]).unwrap().plan();
        assert_eq!(full.preset, "full");
        assert_eq!(full.addr, "http://127.0.0.1:50051");
        assert_eq!((full.small_documents, full.small_words), (8, 40));
        assert_eq!((full.small_alone_calls, full.small_interval_ms), (30, 250));
        assert_eq!((full.large_clients, full.large_documents), (2, 400));
        assert_eq!(full.large_lengths, BenchLengths::LongTail);
        assert_eq!(
            (full.large_alone_secs, full.mixed_secs, full.warmup_secs),
            (30.0, 60.0, 5.0)
        );
        assert_eq!((full.deadline_secs, full.seed), (60.0, 42));
        assert_eq!((full.small_priority, full.large_priority), (0, 0));

        let ci = parse(&["--ci"]).unwrap().plan();
        assert_eq!(ci.preset, "ci");
        assert_eq!((ci.small_alone_calls, ci.large_documents), (10, 64));
        assert_eq!(
            (ci.large_alone_secs, ci.mixed_secs, ci.warmup_secs),
            (5.0, 5.0, 1.0)
        );
        // Everything else is the full run's.
        assert_eq!(
            Plan {
                preset: "full",
                small_alone_calls: 30,
                large_documents: 400,
                large_alone_secs: 30.0,
                mixed_secs: 60.0,
                warmup_secs: 5.0,
                ..ci
            },
            full
        );
    }

    #[test]
    fn explicit_flags_win_over_the_preset() {
        let plan = parse(&[
            "--ci",
            "--mixed-secs",
            "12",
            "--small-alone-calls",
            "3",
            "--large-documents",
            "100",
            "--warmup-secs",
            "0",
            "--small-priority",
            "-5",
            "--large-priority=7",
            "--addr",
            "10.0.0.1:9",
        ])
        .unwrap()
        .plan();
        assert_eq!(plan.preset, "ci");
        assert_eq!((plan.mixed_secs, plan.large_alone_secs), (12.0, 5.0));
        assert_eq!((plan.small_alone_calls, plan.large_documents), (3, 100));
        assert_eq!(plan.warmup_secs, 0.0);
        assert_eq!((plan.small_priority, plan.large_priority), (-5, 7));
        assert_eq!(plan.addr, "http://10.0.0.1:9");
    }

    #[test]
    fn bad_values_are_refused_with_the_expected_forms() {
        for (flags, expected) in [
            (&["--small-documents", "0"][..], "1 or more"),
            (&["--large-clients", "0"][..], "1 or more"),
            (&["--mixed-secs", "0"][..], "seconds (more than 0)"),
            (&["--warmup-secs=-1"][..], "seconds (0 or more)"),
            (&["--small-alone-calls", "0"][..], "1.."),
            (&["--small-interval-ms", "0"][..], "1.."),
            (&["--small-priority", "1001"][..], "-1000..=1000"),
            (&["--large-priority", "-1001"][..], "-1000..=1000"),
            (&["--large-lengths", "bimodal"][..], "long-tail"),
        ] {
            let error = parse(flags).unwrap_err().to_string();
            assert!(error.contains(expected), "{flags:?}: {error}");
        }
    }

    #[test]
    fn workloads_are_short_fixed_small_documents_and_long_tail_large_ones() {
        let plan = parse(&[]).unwrap().plan();
        let small = plan.small_workload().request(0);
        assert_eq!(small.documents.len(), 8);
        assert!(small.documents.iter().all(|d| d.split(' ').count() == 40));
        let large = plan.large_workload(512);
        assert_eq!(large.lengths, Lengths::long_tail(512));
        assert_eq!(large.request(0).documents.len(), 400);
        // The same seed sends the same requests; the two kinds differ.
        assert_eq!(plan.large_workload(512).request(3), large.request(3));
        assert_ne!(
            plan.small_workload().request(0).query,
            plan.large_workload(512).request(0).query
        );
        let fixed = parse(&["--large-lengths", "fixed", "--large-words", "20"])
            .unwrap()
            .plan()
            .large_workload(512);
        assert_eq!(fixed.lengths, Lengths::fixed(20));
    }

    /// `next_small_send` after a previous call (sent, ended), in ms.
    fn check_schedule(previous: Option<(u64, u64)>, expected_ms: u64) {
        let previous = previous.map(|(sent, ended)| SmallCall {
            sent: ms_(sent),
            ended: ms_(ended),
        });
        assert_eq!(
            next_small_send(previous, ms_(250)),
            ms_(expected_ms),
            "after {previous:?}"
        );
    }

    #[test]
    fn the_small_client_sends_at_the_interval_or_when_answered_whichever_is_later() {
        // The first one interval in, so the large requests are queued.
        check_schedule(None, 250);
        // Answered quickly: the interval decides.
        check_schedule(Some((250, 300)), 500);
        check_schedule(Some((250, 250)), 500);
        // Answered late: as soon as it is answered.
        check_schedule(Some((500, 4100)), 4100);
        // Answered exactly at the interval.
        check_schedule(Some((1000, 1250)), 1250);
    }

    #[test]
    fn the_small_clients_calls_are_an_interval_apart_at_least() {
        // Calls sent until 5 s (when the large load ends) for each answer
        // time: within the interval, one every 250 ms from 250 ms (19 by
        // 4.75 s); 400 ms answers, one every 400 ms from 250 ms (12).
        for (latency_ms, expected_calls) in [(0, 19), (100, 19), (400, 12), (6000, 1)] {
            let mut previous: Option<SmallCall> = None;
            let mut calls = 0;
            loop {
                let at = next_small_send(previous, ms_(250));
                if let Some(previous) = previous {
                    assert!(at >= previous.sent + ms_(250), "{at:?} after {previous:?}");
                    assert!(at >= previous.ended, "{at:?} after {previous:?}");
                }
                if at >= ms_(5000) {
                    break;
                }
                calls += 1;
                previous = Some(SmallCall {
                    sent: at,
                    ended: at + ms_(latency_ms),
                });
            }
            assert_eq!(calls, expected_calls, "latency {latency_ms} ms");
        }
    }

    #[test]
    fn small_latency_quantiles_are_nearest_rank_in_milliseconds() {
        let latencies_us: Vec<u64> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let l = SmallLatencyMs::of(&latencies_us).unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        // 30 calls: p99 is the slowest.
        let thirty: Vec<u64> = (1..=30).map(|ms| ms * 1000).collect();
        let l = SmallLatencyMs::of(&thirty).unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (15.0, 27.0, 30.0, 30.0));
        assert_eq!(SmallLatencyMs::of(&[]), None);
    }

    #[test]
    fn pairs_per_second_is_the_pairs_over_the_time_until_the_last_call_ended() {
        assert_eq!(pairs_per_second(24_000, 30.0), Some(800.0));
        assert_eq!(pairs_per_second(400, 0.5), Some(800.0));
        // Nothing answered, or no time: unknown, not 0 or infinite.
        assert_eq!(pairs_per_second(0, 30.0), None);
        assert_eq!(pairs_per_second(400, 0.0), None);
    }

    #[test]
    fn failures_are_named_by_code_and_the_clients_own_deadline_is_a_deadline() {
        let check = |status: tonic::Status, code: &str, message: &str| {
            assert_eq!(failure(&status), (code, message.to_string()));
        };
        check(
            tonic::Status::cancelled("Timeout expired"),
            "DEADLINE_EXCEEDED",
            "the deadline passed (the client's timer: Timeout expired)",
        );
        check(
            tonic::Status::cancelled("the client went away"),
            "CANCELLED",
            "the client went away",
        );
        check(
            tonic::Status::resource_exhausted("queue full"),
            "RESOURCE_EXHAUSTED",
            "queue full",
        );
    }

    #[test]
    fn ratios_need_both_figures_and_a_positive_denominator() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
        assert_eq!(ratio(Some(3.0), None), None);
    }

    #[test]
    fn the_summary_divides_mixed_p99_by_alone_p50_and_mixed_by_alone_throughput() {
        let summary = summarize(&measured());
        assert_eq!(summary.small_alone.latency_ms.unwrap().p50, 50.0);
        assert_eq!(summary.mixed.small.latency_ms.unwrap().p99, 990.0);
        // 990 ÷ 50.
        assert_eq!(summary.p99_slowdown, Some(19.8));
        // Alone 400 + 400 = 800 pairs/s; mixed 380 + 380 = 760: 0.95.
        assert_eq!(summary.large_alone.pairs_per_sec, Some(800.0));
        assert_eq!(summary.mixed.large.pairs_per_sec, Some(760.0));
        assert_eq!(summary.large_throughput_ratio, Some(0.95));
        assert_eq!(summary.targets.p99_slowdown_met, Some(false));
        assert_eq!(summary.targets.large_throughput_ratio_met, Some(true));
        assert_eq!(
            (summary.large_alone.succeeded, summary.large_alone.pairs),
            (60, 24_000)
        );
        assert_eq!(
            (summary.mixed.large.send_secs, summary.mixed.large.secs),
            (59.5, 60.0)
        );
        assert_eq!(summary.failed_calls, 0);
        assert!(unmeasured(&summary).is_empty());
    }

    #[test]
    fn targets_are_met_at_their_bounds_and_unknown_when_unmeasured() {
        let mut m = measured();
        // Mixed p99 exactly 6 × alone p50 (300 ms ÷ 50 ms).
        m.mixed_small = tally(&[100, 300], 8, &[]);
        let summary = summarize(&m);
        assert_eq!(summary.p99_slowdown, Some(6.0));
        assert_eq!(summary.targets.p99_slowdown_met, Some(true));
        // 400 pairs in 1 s against 800 pairs/s alone.
        m.mixed_large = LargeWork {
            send_secs: 0.5,
            secs: 1.0,
            clients: vec![client(1)],
        };
        let summary = summarize(&m);
        assert_eq!(summary.large_throughput_ratio, Some(0.5));
        assert_eq!(summary.targets.large_throughput_ratio_met, Some(false));
        m.small_alone = Tally::default();
        m.mixed_large.clients = vec![client(0)];
        let summary = summarize(&m);
        assert_eq!(summary.p99_slowdown, None);
        assert_eq!(summary.targets.p99_slowdown_met, None);
        assert_eq!(summary.targets.large_throughput_ratio_met, None);
        assert_eq!(unmeasured(&summary).len(), 2, "{:?}", unmeasured(&summary));
    }

    #[test]
    fn failures_are_counted_by_code_over_every_phase() {
        let mut m = measured();
        m.small_alone = tally(&[10, 20], 8, &[("UNAVAILABLE", 1)]);
        m.mixed_small = tally(&[30], 8, &[("DEADLINE_EXCEEDED", 2), ("UNAVAILABLE", 1)]);
        m.mixed_large.clients[1] = tally(&[1000], 400, &[("RESOURCE_EXHAUSTED", 3)]);
        m.mixed_large.clients[0] = tally(&[1000], 400, &[("RESOURCE_EXHAUSTED", 1)]);
        let summary = summarize(&m);
        let expected: BTreeMap<String, u64> = [
            ("DEADLINE_EXCEEDED".to_string(), 2),
            ("RESOURCE_EXHAUSTED".to_string(), 4),
            ("UNAVAILABLE".to_string(), 2),
        ]
        .into();
        assert_eq!(summary.failures_by_code, expected);
        assert_eq!(summary.failed_calls, 8);
        assert_eq!(summary.small_alone.calls, 3);
        assert_eq!(summary.mixed.large.failed, 4);
        // The first message of a code is the first client's that has it.
        assert_eq!(
            summary.mixed.large.failures["RESOURCE_EXHAUSTED"].first_message,
            "RESOURCE_EXHAUSTED number 0"
        );
        assert_eq!(
            describe_failures(&summary.failures_by_code),
            "8 (DEADLINE_EXCEEDED 2, RESOURCE_EXHAUSTED 4, UNAVAILABLE 2)"
        );
        assert_eq!(describe_failures(&BTreeMap::new()), "none");
    }

    #[test]
    fn the_json_report_has_the_documented_shape() {
        let plan = parse(&["--ci"]).unwrap().plan();
        let model = ServedModel {
            name: "tiny-bert".into(),
            device: "cpu".into(),
            devices: vec!["cpu".into()],
            dtype: "float32".into(),
            max_length: 128,
            mode: "cross-encoder".into(),
        };
        let summary = summarize(&measured());
        let document = Document {
            config: &plan,
            model: &model,
            sent: &Sent {
                large_words_range: (3, 98),
            },
            summary: &summary,
        };
        let json = serde_json::to_value(&document).unwrap();
        assert_eq!(json["config"]["preset"], "ci");
        assert_eq!(json["config"]["large_lengths"], "long-tail");
        assert_eq!(json["config"]["large_documents"], 64);
        assert_eq!(json["model"]["name"], "tiny-bert");
        assert_eq!(
            json["sent"]["large_words_range"],
            serde_json::json!([3, 98])
        );
        let s = &json["summary"];
        assert_eq!(s["small_alone"]["latency_ms"]["p50"], 50.0);
        assert_eq!(s["small_alone"]["latency_ms"]["p99"], 99.0);
        assert_eq!(s["mixed"]["small"]["latency_ms"]["p99"], 990.0);
        assert_eq!(s["mixed"]["small"]["latency_ms"]["max"], 1000.0);
        assert_eq!(s["large_alone"]["pairs_per_sec"], 800.0);
        assert_eq!(s["mixed"]["large"]["pairs_per_sec"], 760.0);
        assert_eq!(s["p99_slowdown"], 19.8);
        assert_eq!(s["large_throughput_ratio"], 0.95);
        assert_eq!(s["targets"]["p99_slowdown_at_most"], 6.0);
        assert_eq!(s["targets"]["large_throughput_ratio_at_least"], 0.95);
        assert_eq!(s["targets"]["p99_slowdown_met"], false);
        assert_eq!(s["failures_by_code"], serde_json::json!({}));
        assert_eq!(s["failed_calls"], 0);
        // Unmeasured figures are null, not 0.
        let mut m = measured();
        m.small_alone = Tally::default();
        let json = serde_json::to_value(summarize(&m)).unwrap();
        assert!(json["p99_slowdown"].is_null());
        assert!(json["small_alone"]["latency_ms"].is_null());
        assert!(json["targets"]["p99_slowdown_met"].is_null());
    }

    #[test]
    fn the_table_shows_the_figures_beside_the_targets() {
        let plan = parse(&[]).unwrap().plan();
        let table = table(&plan, &summarize(&measured()));
        for expected in [
            "small: 8 documents of 40 words, priority 0; large: 2 client(s) of 400 long-tail documents",
            "alone            100       0      50.0      90.0      99.0     100.0",
            "mixed            100       0     500.0     900.0     990.0    1000.0",
            "alone           30.0        60       0     24000     800.0",
            "mixed           60.0       114       0     45600     760.0",
            "19.80   target ≤ 6: not met",
            "0.950   target ≥ 0.95: met",
            "failed calls: none",
        ] {
            assert!(table.contains(expected), "lacks {expected:?}:\n{table}");
        }
    }
}
