//! The bench's load and observation: connections, the closed-loop clients,
//! the Stats sampler and the progress line.
//!
//! Owns: talking to the server. Each client has its own connection and
//! sends its next request as soon as the last is answered (no think time);
//! which request it sends next comes from a shared ticket counter, so the
//! run's requests are the workload's requests 0, 1, 2, … whoever sends
//! them. Must never: compute statistics beyond what the progress line shows
//! (that is `report`), or sleep between requests.

use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tonic::transport::{Channel, Endpoint};

use rerankd_api::pb;
use rerankd_api::pb::reranker_client::RerankerClient;

use crate::report::{self, Answered, DeviceSample, Sample, Tally};
use crate::workload::{RequestText, Workload};

pub type Client = RerankerClient<Channel>;

/// How long connecting, and each Stats or ModelInfo call, may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// The clients' shared tally. A std mutex: it is held only to push a
/// number or copy the latencies, never across an await.
pub type SharedTally = Arc<Mutex<Tally>>;

/// Opens one connection (HTTP/2) to `addr`.
pub async fn connect(addr: &str) -> Result<Client, tonic::transport::Error> {
    let channel = Endpoint::from_shared(addr.to_string())?
        .connect_timeout(CONTROL_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(RerankerClient::new(channel))
}

/// When a phase of load ends.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests in all (the last ones are answered).
    AfterRequests(u64),
    /// No request is sent from `end` on; those in flight then are answered,
    /// or, with `cancel_in_flight`, cancelled at `end` and not recorded (the
    /// server drops their queued work).
    At {
        end: Instant,
        cancel_in_flight: bool,
    },
}

impl Stop {
    fn reached(&self, ticket: u64) -> bool {
        match *self {
            Stop::AfterRequests(requests) => ticket >= requests,
            Stop::At { end, .. } => Instant::now() >= end,
        }
    }

    /// When requests still in flight are cancelled, if ever.
    fn cancel_at(&self) -> Option<Instant> {
        match *self {
            Stop::At {
                end,
                cancel_in_flight: true,
            } => Some(end),
            _ => None,
        }
    }
}

/// One phase of load: warm-up or measurement.
#[derive(Debug, Clone)]
pub struct Phase {
    pub workload: Arc<Workload>,
    /// The workload index of the phase's first request; warm-up draws from
    /// indices far from the measured ones, so measuring always sends the
    /// same requests.
    pub first_request: u64,
    pub stop: Stop,
    /// Each request's gRPC deadline.
    pub deadline: Duration,
}

/// Runs every client until `phase` stops, recording into `tally`; returns
/// the clients (their connections stay open) once every request has been
/// answered.
pub async fn run_clients(clients: Vec<Client>, phase: Phase, tally: SharedTally) -> Vec<Client> {
    let phase = Arc::new(phase);
    let tickets = Arc::new(AtomicU64::new(0));
    let mut running = JoinSet::new();
    for client in clients {
        running.spawn(client_loop(
            client,
            phase.clone(),
            tickets.clone(),
            tally.clone(),
        ));
    }
    let mut clients = Vec::new();
    while let Some(finished) = running.join_next().await {
        match finished {
            Ok(client) => clients.push(client),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    clients
}

async fn client_loop(
    mut client: Client,
    phase: Arc<Phase>,
    tickets: Arc<AtomicU64>,
    tally: SharedTally,
) -> Client {
    loop {
        let ticket = tickets.fetch_add(1, Ordering::Relaxed);
        if phase.stop.reached(ticket) {
            return client;
        }
        let text = phase.workload.request(phase.first_request + ticket);
        let request = rerank_request(text, phase.deadline);
        let sent = Instant::now();
        let answer = match phase.stop.cancel_at() {
            Some(end) => match tokio::time::timeout_at(end.into(), client.rerank(request)).await {
                Ok(answer) => answer,
                Err(_cancelled) => return client,
            },
            None => client.rerank(request).await,
        };
        let latency = sent.elapsed();
        let mut tally = tally.lock().expect("a client panicked holding the tally");
        match answer {
            Ok(response) => tally.record_success(latency, answered(response.into_inner())),
            Err(status) => tally.record_failure(code_name(status.code()), status.message()),
        }
    }
}

fn rerank_request(text: RequestText, deadline: Duration) -> tonic::Request<pb::RerankRequest> {
    let mut request = tonic::Request::new(pb::RerankRequest {
        query: text.query,
        documents: text.documents,
        ..Default::default()
    });
    request.set_timeout(deadline);
    request
}

fn answered(response: pb::RerankResponse) -> Answered {
    let usage = response.usage.unwrap_or_default();
    Answered {
        pairs: usage.pairs.into(),
        tokens: usage.tokens,
        truncated_pairs: usage.truncated.into(),
    }
}

pub use rerankd_api::code_name;

/// ModelInfo, with the control timeout.
pub async fn model_info(client: &mut Client) -> Result<pb::ModelInfoResponse, tonic::Status> {
    let mut request = tonic::Request::new(pb::ModelInfoRequest {});
    request.set_timeout(CONTROL_TIMEOUT);
    Ok(client.model_info(request).await?.into_inner())
}

/// One Stats reading, timed from `origin`.
pub async fn read_stats(client: &mut Client, origin: Instant) -> Result<Sample, tonic::Status> {
    let mut request = tonic::Request::new(pb::StatsRequest {});
    request.set_timeout(CONTROL_TIMEOUT);
    let stats = client.stats(request).await?.into_inner();
    Ok(Sample {
        t_secs: origin.elapsed().as_secs_f64(),
        queued_pairs: stats.queued_pairs,
        devices: stats.devices.iter().map(device_sample).collect(),
    })
}

fn device_sample(stats: &pb::DeviceStats) -> DeviceSample {
    DeviceSample {
        device: stats.device.clone(),
        budget_tokens: stats.budget_tokens,
        memory_known: stats.memory_known,
        free_bytes: stats.free_bytes,
        total_bytes: stats.total_bytes,
        batches: stats.batches,
        pairs: stats.pairs,
        padded_tokens: stats.padded_tokens,
        real_tokens: stats.real_tokens,
        oom_count: stats.oom_count,
        splits: stats.splits,
        busy_micros: stats.busy_micros,
    }
}

/// Reads Stats every `every` until `stop` changes (it only ever turns
/// true); returns the readings
/// (a failed reading is skipped: the next one will do).
pub async fn sample_stats(
    mut client: Client,
    every: Duration,
    origin: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<Sample> {
    let mut ticker = tokio::time::interval_at((origin + every).into(), every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Ok(sample) = read_stats(&mut client, origin).await {
                    samples.push(sample);
                }
            }
            _ = stop.changed() => return samples,
        }
    }
}

/// Writes the progress line to stderr until `stop` changes: redrawn in
/// place four times a second on a terminal, a new line every second
/// otherwise.
pub async fn show_progress(tally: SharedTally, origin: Instant, mut stop: watch::Receiver<bool>) {
    let terminal = std::io::stderr().is_terminal();
    let every = Duration::from_millis(if terminal { 250 } else { 1000 });
    let mut ticker = tokio::time::interval_at((origin + every).into(), every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let line = progress_line(&tally, origin.elapsed());
                let mut stderr = std::io::stderr().lock();
                let _ = if terminal {
                    write!(stderr, "\r{line}\x1b[K")
                } else {
                    writeln!(stderr, "{line}")
                };
                let _ = stderr.flush();
            }
            _ = stop.changed() => break,
        }
    }
    if terminal {
        eprintln!();
    }
}

fn progress_line(tally: &SharedTally, elapsed: Duration) -> String {
    let (requests, failed, pairs, latencies) = {
        let tally = tally.lock().expect("a client panicked holding the tally");
        (
            tally.requests(),
            tally.failed(),
            tally.pairs,
            tally.latencies_us.clone(),
        )
    };
    let secs = elapsed.as_secs_f64();
    let p50 = report::median_ms(latencies).map_or("-".into(), |ms| format!("{ms:.1}"));
    let failed = if failed > 0 {
        format!(", {failed} failed")
    } else {
        String::new()
    };
    format!(
        "{secs:6.1} s  {requests} requests{failed}  {:.1} pairs/s  p50 {p50} ms",
        pairs as f64 / secs.max(1e-9)
    )
}
