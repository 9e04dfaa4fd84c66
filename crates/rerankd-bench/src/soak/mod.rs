//! rerankd-soak: a long run against a live server with the whole API mixed,
//! judged on what a shared service must keep doing for hours: no
//! unexpected status, resident memory that stops growing after warm-up,
//! latency that does not creep.
//!
//! # Layout
//! - [`args`]: the flags, [`SoakArgs`].
//! - [`mix`]: call `k` of a soak (its kind, what it sends, its priority),
//!   each kind's expected outcomes, and the alone phase's sample.
//! - `calls`: making one call over gRPC, naming how it ended, reading its
//!   answers' Usage.
//! - `check`: whether an OK answer is the one its request asks for.
//! - `load`: the closed loop that measures the peak, the alone phase's one
//!   call at a time, the open-loop schedule.
//! - `rss`: the server's VmRSS, once a second.
//! - [`trend`]: whether a series rises with time (Spearman's rho, its
//!   permutation p-value, the Theil–Sen slope).
//! - [`slowdown`]: size classes, and latency ÷ the class's time alone.
//! - [`report`]: records, summary, verdict, table, JSON and the calls file.
//!
//! A soak: ModelInfo; `--connections` connections; the peak, closed loop
//! (unless `--rate` is given); the alone phase (one client, one call at a
//! time, `--alone-per-class` served calls of each size class, at most
//! `--alone-secs`, once the server's queue is empty); then one open-loop
//! schedule at `--load-fraction` of the peak: `--warmup-secs` of warm-up,
//! then `--minutes` measured, Stats at both ends of the measured part, RSS
//! sampled throughout; then the table on stdout, the JSON file and the
//! calls file (every call of every phase, one JSON line each). The run fails
//! (an error, so the binary exits non-zero) on any unexpected outcome in
//! any phase, any skipped call, RSS growth over `--max-rss-growth-pct`, or
//! a served p99 that rises through the run (`--p99-trend-alpha`).
//!
//! Owns: the order of a soak. Must never: depend on the `rerankd` crate
//! or libtorch, or know the server beyond its public API and its process
//! id (for RSS).

pub mod args;
mod calls;
mod check;
mod load;
pub mod mix;
pub mod report;
mod rss;
pub mod slowdown;
pub mod trend;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

pub use args::SoakArgs;
use load::{Load, OpenLoop};
use mix::Mix;
use report::{Batcher, Peak, Plan, Recorder, RssSample, SoakSummary};

use crate::driver::{self, Client};
use crate::report::{Sample, ServedModel, Tally};

/// The peak phase's calls are drawn from here on, far from the open loop's.
const PEAK_FIRST_INDEX: u64 = 1 << 40;
/// The alone phase's, far from both.
const ALONE_FIRST_INDEX: u64 = 1 << 41;
/// How long the alone phase waits at most for the server's queue to empty
/// (the peak's last calls, and the cancelled ones' work) before it starts.
const SETTLE_AT_MOST: Duration = Duration::from_secs(30);
/// How often the queue is read meanwhile.
const SETTLE_POLL: Duration = Duration::from_millis(200);
/// How often the progress line is written.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Why a soak could not run, or failed.
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    #[error("cannot reach rerankd at {addr}: is `rerankd serve` running there?")]
    Unreachable {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("ModelInfo at {addr} failed: {}: {}", driver::code_name(.status.code()), .status.message())]
    ModelInfo { addr: String, status: tonic::Status },
    #[error("cannot read the RSS of process {pid} (/proc/{pid}/status): is it the server's pid?")]
    NoProcess { pid: u32 },
    #[error("the peak phase answered no call in the second half of its {secs} s")]
    NoPeak { secs: f64 },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the soak failed ({} reason(s), see above and {})", failures.len(), json.display())]
    Failed {
        failures: Vec<String>,
        json: PathBuf,
    },
}

/// Runs the soak `args` describe; the summary once the report is written,
/// or `SoakError::Failed` when the soak ran and failed.
pub async fn run(args: SoakArgs) -> Result<SoakSummary, SoakError> {
    let addr = crate::with_scheme(&args.addr);
    let mut control = connect(&addr).await?;
    let info = driver::model_info(&mut control)
        .await
        .map_err(|status| SoakError::ModelInfo {
            addr: addr.clone(),
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
    if let Some(pid) = args.server_pid {
        rss::read(pid).ok_or(SoakError::NoProcess { pid })?;
    }
    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        connections.push(connect(&addr).await?);
    }
    let origin = Instant::now();
    let load = Load {
        connections: Arc::new(connections),
        mix: Arc::new(Mix {
            seed: args.seed,
            window: served.max_length as usize,
            max_documents: args.max_documents,
            max_document_bytes: args.max_document_bytes,
        }),
        recorder: Arc::new(Mutex::new(Recorder::default())),
        origin,
        deadline: Duration::from_secs_f64(args.call_deadline_secs),
    };
    let (stop, stopped) = watch::channel(false);
    let (latest_rss, rss_seen) = watch::channel(None);
    let sampler = args
        .server_pid
        .map(|pid| tokio::spawn(rss::sample(pid, origin, latest_rss, stopped.clone())));
    let progress = (!args.no_progress).then(|| {
        tokio::spawn(show_progress(
            load.recorder.clone(),
            rss_seen,
            origin,
            stopped.clone(),
        ))
    });

    let (rate, peak) = match args.rate {
        Some(rate) => (rate, None),
        None => {
            let peak = measure_peak(&load, &args).await?;
            (peak.calls_per_sec * args.load_fraction, Some(peak))
        }
    };
    if args.alone_secs > 0.0 {
        time_alone(&load, &mut control, &args).await;
    }
    let measured_secs = args.minutes * 60.0;
    let schedule = OpenLoop {
        rate,
        start: Instant::now(),
        warmup_secs: args.warmup_secs,
        measured_secs,
        max_in_flight: args.max_in_flight,
        first_index: 0,
    };
    println!(
        "open loop at {rate:.2} calls/s: {:.0} s warm-up, then {:.1} min measured",
        args.warmup_secs, args.minutes
    );
    let (measure_start, measure_end) = (schedule.measure_start(), schedule.end());
    let running = {
        let load = load.clone();
        tokio::spawn(async move { schedule.run(&load).await })
    };
    tokio::time::sleep_until(measure_start.into()).await;
    let stats_start = driver::read_stats(&mut control, origin).await.ok();
    if let Err(error) = running.await {
        std::panic::resume_unwind(error.into_panic());
    }
    let stats_end = driver::read_stats(&mut control, origin).await.ok();
    let _ = stop.send(true);
    let rss_samples = match sampler {
        Some(sampler) => sampler.await.unwrap_or_default(),
        None => Vec::new(),
    };
    if let Some(progress) = progress {
        let _ = progress.await;
    }

    let since_origin = |at: Instant| at.saturating_duration_since(origin).as_secs_f64();
    let plan = Plan {
        rate,
        peak,
        load_fraction: args.rate.is_none().then_some(args.load_fraction),
        measure_start_secs: since_origin(measure_start),
        measure_end_secs: since_origin(measure_end),
        window_secs: args
            .window_secs
            .unwrap_or(measured_secs / 6.0)
            .min(measured_secs),
        max_rss_growth_pct: args.max_rss_growth_pct,
        p99_trend_alpha: args.p99_trend_alpha,
        seed: args.seed,
    };
    let batcher = stats_start.as_ref().zip(stats_end.as_ref()).map(|(s, e)| {
        let during = Duration::from_secs_f64((e.t_secs - s.t_secs).max(0.0));
        Batcher::of(
            &crate::report::summarize(&Tally::default(), s, e, during),
            e,
        )
    });
    let summary = {
        let recorder = load.recorder.lock().expect("every call has ended");
        report::summarize(plan, &recorder, &rss_samples, batcher)
    };
    println!();
    print!("{}", report::table(&summary));
    let document = Document {
        config: &args,
        model: &served,
        summary: &summary,
        stats_start: stats_start.as_ref(),
        stats_end: stats_end.as_ref(),
        rss_series: &rss_samples,
    };
    let json = serde_json::to_string_pretty(&document).expect("the report is plain data");
    let lines = {
        let recorder = load.recorder.lock().expect("every call has ended");
        report::json_lines(&recorder.calls)
    };
    let calls_path = args.calls_path();
    for (path, text) in [(&args.json, json), (&calls_path, lines)] {
        std::fs::write(path, text).map_err(|source| SoakError::Write {
            path: path.clone(),
            source,
        })?;
    }
    println!(
        "wrote {} and {} (every call)",
        args.json.display(),
        calls_path.display()
    );
    if !summary.passed {
        return Err(SoakError::Failed {
            failures: summary.failures,
            json: args.json.clone(),
        });
    }
    Ok(summary)
}

/// The JSON file.
#[derive(Serialize)]
struct Document<'a> {
    config: &'a SoakArgs,
    model: &'a ServedModel,
    summary: &'a SoakSummary,
    /// Stats at the start and end of the measured phase.
    stats_start: Option<&'a Sample>,
    stats_end: Option<&'a Sample>,
    /// Every RSS reading, seconds since the soak began.
    rss_series: &'a [RssSample],
}

async fn connect(addr: &str) -> Result<Client, SoakError> {
    driver::connect(addr)
        .await
        .map_err(|source| SoakError::Unreachable {
            addr: addr.to_string(),
            source,
        })
}

async fn measure_peak(load: &Load, args: &SoakArgs) -> Result<Peak, SoakError> {
    println!(
        "measuring the peak: {} closed-loop clients for {:.0} s",
        args.peak_clients, args.peak_secs
    );
    let calls_per_sec =
        load::closed_loop(load, args.peak_clients, PEAK_FIRST_INDEX, args.peak_secs).await;
    if calls_per_sec == 0.0 {
        return Err(SoakError::NoPeak {
            secs: args.peak_secs,
        });
    }
    let peak = Peak {
        clients: args.peak_clients,
        secs: args.peak_secs,
        calls_per_sec,
    };
    println!("peak: {calls_per_sec:.2} calls/s (calls answered in the second half)");
    Ok(peak)
}

/// The alone phase: once the server's queue is empty (or after
/// `SETTLE_AT_MOST`), one client sends the mix's sample one call at a time.
async fn time_alone(load: &Load, control: &mut Client, args: &SoakArgs) {
    let settle_end = Instant::now() + SETTLE_AT_MOST;
    while Instant::now() < settle_end {
        match driver::read_stats(control, load.origin).await {
            Ok(stats) if stats.queued_pairs > 0 => tokio::time::sleep(SETTLE_POLL).await,
            _ => break,
        }
    }
    let sample = load
        .mix
        .alone_sample(ALONE_FIRST_INDEX, args.alone_per_class);
    println!(
        "timing calls alone: {} served calls ({} of each size class the mix draws), one at a time, at most {} s",
        sample.len(),
        args.alone_per_class,
        args.alone_secs
    );
    let started = Instant::now();
    let made = load::alone(load, &sample, args.alone_secs).await;
    println!(
        "timed {made} calls alone in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A line on stderr every 10 s: calls ended, unexpected, skipped, RSS.
async fn show_progress(
    recorder: Arc<Mutex<Recorder>>,
    rss: watch::Receiver<Option<u64>>,
    origin: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval_at((origin + PROGRESS_EVERY).into(), PROGRESS_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let (calls, unexpected, skipped) = {
                    let r = recorder.lock().expect("a call panicked holding the recorder");
                    (r.calls.len(), r.unexpected_count(), r.skipped)
                };
                let rss = (*rss.borrow()).map_or("-".into(), |b| format!("{:.1}", b as f64 / 1048576.0));
                eprintln!(
                    "{:6.0} s  {calls} calls ended, {unexpected} unexpected, {skipped} skipped, server RSS {rss} MiB",
                    origin.elapsed().as_secs_f64()
                );
            }
            _ = stop.changed() => return,
        }
    }
}
