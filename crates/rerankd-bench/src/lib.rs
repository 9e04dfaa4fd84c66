//! rerankd-bench: a closed-loop load generator that drives a running
//! rerankd over gRPC and reports what it measured, so that users can size
//! the server on their own hardware. It runs as the `rerankd-bench` binary
//! (which builds without libtorch) and as the server binary's `rerankd
//! bench`, which calls [`run`] with the same [`BenchArgs`].
//!
//! # Layout
//! - [`args`]: the flags, [`BenchArgs`].
//! - [`workload`]: request `k` of a seeded run (texts only).
//! - [`driver`]: connections, the closed-loop clients, the Stats sampler.
//! - [`report`]: the tally, summary, table and JSON document.
//! - [`plot`]: the SVG plot of the time series.
//! - [`soak`]: the `rerankd-soak` binary's long mixed run (reuses the
//!   connections, Stats reading and workload texts above).
//!
//! A run: ModelInfo (what is served, and the window the long-tail lengths
//! are capped to); one connection per client; `--warmup` seconds of load,
//! not measured; Stats; the measured phase (`--requests` in all, or
//! `--duration` seconds) while a sampler reads Stats every `--sample-ms`;
//! Stats again; then a table on stdout, a JSON file and an SVG plot.
//! Requests that fail are counted by gRPC code, not fatal; a run in which
//! none succeeded, or a server that cannot be reached, is an error.
//!
//! Owns: the order of a run and what it prints. Must never: depend on the
//! `rerankd` crate or on libtorch (tch, torch-sys), load a model, or know
//! the server beyond the generated gRPC client of `rerankd-api`: it is a
//! client like any other, and measures the server through its public API.

pub mod args;
pub mod contention;
pub mod driver;
pub mod plot;
pub mod report;
pub mod soak;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use rerankd_api::pb;

pub use args::{BenchArgs, BenchLengths};
use driver::{Client, Phase, SharedTally, Stop};
use report::{RunConfig, Sample, ServedModel, Summary, Tally};
use workload::{Lengths, Workload};

/// Warm-up requests are the workload's requests from this index on, so
/// that the measured ones (from 0) are the same whatever the warm-up did.
const WARMUP_FIRST_REQUEST: u64 = 1 << 62;

/// Why a run could not be made or measured nothing.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot reach rerankd at {addr}: is `rerankd serve` running there?")]
    Unreachable {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("ModelInfo at {addr} failed: {}: {}", driver::code_name(.status.code()), .status.message())]
    ModelInfo { addr: String, status: tonic::Status },
    #[error("Stats at the start failed: {}: {}", driver::code_name(.status.code()), .status.message())]
    Stats { status: tonic::Status },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no request succeeded ({requests} answered{failures})")]
    NoneSucceeded { requests: u64, failures: String },
}

/// Runs the bench `args` describe; the summary once the reports are written.
pub async fn run(args: BenchArgs) -> Result<Summary, BenchError> {
    let addr = with_scheme(&args.addr);
    let mut control = connect(&addr).await?;
    let model = driver::model_info(&mut control)
        .await
        .map_err(|status| BenchError::ModelInfo {
            addr: addr.clone(),
            status,
        })?;
    let served = served_model(&model);
    println!(
        "model {} on {} in {} (window {} tokens)",
        served.name,
        served.devices.join(","),
        served.dtype,
        served.max_length
    );
    let workload = Arc::new(Workload {
        seed: args.seed,
        documents: args.documents,
        lengths: lengths(&args, served.max_length as usize),
    });
    let config = run_config(&args, &addr, &workload.lengths);
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        clients.push(connect(&addr).await?);
    }
    let deadline = Duration::from_secs_f64(args.deadline);
    if args.warmup > 0.0 {
        clients = warm_up(clients, &workload, &args, deadline).await;
    }

    let origin = Instant::now();
    let start = driver::read_stats(&mut control, origin)
        .await
        .map_err(|status| BenchError::Stats { status })?;
    println!("stats at start: {}", describe_stats(&start));
    let (tally, samples, duration) =
        measure(clients, control.clone(), &args, workload, origin).await;
    let end = end_stats(&mut control, origin, &samples, &start).await;
    println!("stats at end:   {}", describe_stats(&end));

    let tally = tally.lock().expect("the clients have finished").clone();
    let summary = report::summarize(&tally, &start, &end, duration);
    println!();
    print!("{}", report::table(&summary));
    let mut all_samples = vec![start];
    all_samples.extend(samples);
    all_samples.push(end);
    let series = report::series(&all_samples);
    write_reports(&args, &config, &served, &summary, &series)?;
    if summary.succeeded == 0 {
        return Err(BenchError::NoneSucceeded {
            requests: summary.requests,
            failures: describe_failures(&summary),
        });
    }
    Ok(summary)
}

/// `127.0.0.1:50051` means `http://127.0.0.1:50051`.
pub(crate) fn with_scheme(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

async fn connect(addr: &str) -> Result<Client, BenchError> {
    driver::connect(addr)
        .await
        .map_err(|source| BenchError::Unreachable {
            addr: addr.to_string(),
            source,
        })
}

pub(crate) fn served_model(info: &pb::ModelInfoResponse) -> ServedModel {
    ServedModel {
        name: info.name.clone(),
        device: info.device.clone(),
        devices: if info.devices.is_empty() {
            vec![info.device.clone()]
        } else {
            info.devices.clone()
        },
        dtype: info.dtype.clone(),
        max_length: info.max_length,
        mode: info.mode.clone(),
    }
}

fn lengths(args: &BenchArgs, window: usize) -> Lengths {
    match args.lengths {
        BenchLengths::Fixed => Lengths::fixed(args.words),
        BenchLengths::Uniform => Lengths::uniform(args.words),
        BenchLengths::LongTail => Lengths::long_tail(window),
    }
}

fn lengths_name(lengths: BenchLengths) -> &'static str {
    match lengths {
        BenchLengths::Fixed => "fixed",
        BenchLengths::Uniform => "uniform",
        BenchLengths::LongTail => "long-tail",
    }
}

fn run_config(args: &BenchArgs, addr: &str, lengths: &Lengths) -> RunConfig {
    let (min_words, max_words) = lengths.bounds();
    RunConfig {
        addr: addr.to_string(),
        clients: args.clients,
        documents: args.documents,
        lengths: lengths_name(args.lengths).to_string(),
        min_words,
        max_words,
        requests: args.requests,
        duration_secs: args.requests.is_none().then_some(args.duration),
        warmup_secs: args.warmup,
        seed: args.seed,
        deadline_secs: args.deadline,
        sample_ms: args.sample_ms,
    }
}

/// `--warmup` seconds of the same load; what it saw is thrown away, and
/// the requests still in flight when it ends are cancelled, so that
/// measuring starts on time even against a slow server.
async fn warm_up(
    clients: Vec<Client>,
    workload: &Arc<Workload>,
    args: &BenchArgs,
    deadline: Duration,
) -> Vec<Client> {
    if !args.no_progress {
        eprintln!("warming up for {} s", args.warmup);
    }
    let phase = Phase {
        workload: workload.clone(),
        first_request: WARMUP_FIRST_REQUEST,
        stop: Stop::At {
            end: Instant::now() + Duration::from_secs_f64(args.warmup),
            cancel_in_flight: true,
        },
        deadline,
    };
    driver::run_clients(clients, phase, Arc::new(Mutex::new(Tally::default()))).await
}

/// The measured phase, with the Stats sampler and the progress line beside
/// it; returns what the clients saw, the samples and how long it took.
async fn measure(
    clients: Vec<Client>,
    sampler_client: Client,
    args: &BenchArgs,
    workload: Arc<Workload>,
    origin: Instant,
) -> (SharedTally, Vec<Sample>, Duration) {
    let stop = match args.requests {
        Some(requests) => Stop::AfterRequests(requests),
        None => Stop::At {
            end: origin + Duration::from_secs_f64(args.duration),
            cancel_in_flight: false,
        },
    };
    let phase = Phase {
        workload,
        first_request: 0,
        stop,
        deadline: Duration::from_secs_f64(args.deadline),
    };
    let tally: SharedTally = Arc::new(Mutex::new(Tally::default()));
    let (stopped, stop_signal) = watch::channel(false);
    let every = Duration::from_millis(args.sample_ms);
    let sampler = tokio::spawn(driver::sample_stats(
        sampler_client,
        every,
        origin,
        stop_signal.clone(),
    ));
    let progress = (!args.no_progress).then(|| {
        tokio::spawn(driver::show_progress(
            tally.clone(),
            origin,
            stop_signal.clone(),
        ))
    });
    driver::run_clients(clients, phase, tally.clone()).await;
    let duration = origin.elapsed();
    // The receivers live until the tasks end, so the send cannot fail.
    let _ = stopped.send(true);
    let samples = sampler.await.unwrap_or_default();
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    (tally, samples, duration)
}

/// Stats after the run; when that fails (the server went away), the last
/// sample stands in, with a warning.
async fn end_stats(
    control: &mut Client,
    origin: Instant,
    samples: &[Sample],
    start: &Sample,
) -> Sample {
    match driver::read_stats(control, origin).await {
        Ok(end) => end,
        Err(status) => {
            eprintln!(
                "warning: Stats at the end failed ({}: {}); using the last sample",
                driver::code_name(status.code()),
                status.message()
            );
            samples.last().unwrap_or(start).clone()
        }
    }
}

/// One line about a Stats reading, per device.
fn describe_stats(sample: &Sample) -> String {
    let devices: Vec<String> = sample
        .devices
        .iter()
        .map(|d| {
            let memory = if d.memory_known {
                format!("{} of {} MiB free", d.free_bytes >> 20, d.total_bytes >> 20)
            } else {
                "memory unknown".to_string()
            };
            format!(
                "{}: budget {} tokens, {memory}, {} batches, {} OOM, {} splits",
                d.device, d.budget_tokens, d.batches, d.oom_count, d.splits
            )
        })
        .collect();
    format!(
        "{}; {} pairs queued",
        devices.join("; "),
        sample.queued_pairs
    )
}

fn describe_failures(summary: &Summary) -> String {
    summary
        .failures
        .iter()
        .map(|(code, f)| format!("; {} {code}, first: {}", f.count, f.first_message))
        .collect()
}

fn write_reports(
    args: &BenchArgs,
    config: &RunConfig,
    served: &ServedModel,
    summary: &Summary,
    series: &[report::SeriesPoint],
) -> Result<(), BenchError> {
    let document = report::Document {
        config,
        model: served,
        summary,
        series,
    };
    let json = serde_json::to_string_pretty(&document).expect("the report is plain data");
    write(&args.json, json)?;
    let heading = plot::Heading {
        title: format!(
            "rerankd bench: {} on {} ({}), {} clients",
            served.name,
            served.devices.join(","),
            served.dtype,
            config.clients
        ),
        subtitle: format!(
            "{} documents per request, {}; {} requests in {:.1} s, {:.1} pairs/s; Stats every {} ms",
            config.documents,
            describe_lengths(config),
            summary.requests,
            summary.duration_secs,
            summary.pairs_per_second,
            config.sample_ms
        ),
    };
    write(&args.plot, plot::svg(&heading, series))?;
    println!(
        "\nwrote {} and {}",
        args.json.display(),
        args.plot.display()
    );
    Ok(())
}

/// "fixed 64-word documents", "long-tail lengths (3–400 words)".
fn describe_lengths(config: &RunConfig) -> String {
    if config.min_words == config.max_words {
        format!("{} {}-word documents", config.lengths, config.max_words)
    } else {
        format!(
            "{} lengths ({}–{} words)",
            config.lengths, config.min_words, config.max_words
        )
    }
}

fn write(path: &Path, contents: String) -> Result<(), BenchError> {
    std::fs::write(path, contents).map_err(|source| BenchError::Write {
        path: path.to_path_buf(),
        source,
    })
}
