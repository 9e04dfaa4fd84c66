//! The scheduler: one task that owns the queue and one controller per
//! worker (a model replica on one device), takes every request's pairs, cuts
//! batches under the chosen worker's budget, hands each to the first idle
//! worker (one ahead of the one computing, when the queue can fill it), and
//! routes each row's score back to its request.
//!
//! Owns: admission (a bound on queued pairs, and a deadline check against
//! the estimated work ahead: `pace`), the max-queue-delay wait, the batch
//! size target per worker and the aging guard passed to the queue, whether
//! a batch is cut ahead for a busy worker,
//! which worker runs the next batch, dropping the work of requests whose
//! client has gone or whose deadline has passed, feeding batch outcomes
//! and memory readings to each worker's controller, and taking a worker out
//! of service when its device fails, its model thread stops (the requests it
//! held fail UNAVAILABLE) or its scorer fails `max_failed_batches` batches in
//! a row (each such batch's requests fail INTERNAL, as any failed batch's
//! do); the others go on, on the workers left; with none left, every queued
//! and new request fails UNAVAILABLE. The count of live workers is
//! published, and set to 0 if the scheduler task itself ends early (a
//! panic): `Batcher::start` supervises it. Must never: block (it is a tokio task: libtorch
//! and NVML run on the model threads), tokenize, know about tonic, send a
//! batch to a worker taken out of service, or stop while its callers remain
//! because a worker stopped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::controller::{Controller, ControllerConfig, ControllerState};
use super::histogram::{Histogram, BATCH_PAIRS, BATCH_TOKENS};
use super::pace::{Infeasible, Pace};
use super::queue::{Aging, Queue, RequestId};
use crate::error::Error;
use crate::gpu::MemoryReading;
use crate::model::{EncodedPair, PaddedBatch, ScoreError};
use crate::worker::speed::Speed;
use crate::worker::thread::{ModelClient, ScoredBatch};

/// How the scheduler batches. `Default` is the one home of these defaults
/// (the flags read theirs from it), except the device-dependent padding
/// floor and batch overhead, which `config` sets per device.
#[derive(Debug, Clone, PartialEq)]
pub struct BatcherConfig {
    /// Most pairs in one batch.
    pub max_batch_pairs: usize,
    /// How long a batch may wait for more pairs when the queue cannot fill it.
    pub max_queue_delay: Duration,
    /// Admission bound: requests that would queue more pairs than this are
    /// refused with RESOURCE_EXHAUSTED.
    pub max_queued_pairs: usize,
    /// Suggested wait for a refused client.
    pub retry_after: Duration,
    /// Candidates per request when cutting a batch.
    pub window_per_request: usize,
    /// Lowest real ÷ padded tokens a batch may grow to.
    pub min_padding_efficiency: f64,
    /// One forward pass's cost beyond its tokens, in tokens' worth
    /// (`Queue::with_batch_overhead`).
    pub batch_overhead_tokens: usize,
    /// Every worker's controller starts from this (its bytes per token
    /// replaced by the worker's own measurement, when it has one).
    pub controller: ControllerConfig,
    /// A worker whose scorer fails this many batches in a row (a panic, or
    /// an error that is neither out-of-memory nor a broken device) is taken
    /// out of service; a batch scored resets the count. 0: never.
    pub max_failed_batches: usize,
    /// A request with no deadline of its own gets this one: admission
    /// refuses it when the work ahead would not let it finish in time, and
    /// the queue drops it when it passes.
    pub max_queue_time: Duration,
    /// Refuse a request whose deadline the work ahead and its own would
    /// pass (`Pace::admit`); off, it queues and may end DEADLINE_EXCEEDED.
    pub refuse_late: bool,
    /// The aging guard: a request whose (waited + remaining) ÷ time alone
    /// passes this goes ahead of every request of its priority that has not
    /// (`queue::Aging`).
    pub max_slowdown: f64,
    /// Most padded tokens per batch, whatever memory allows: 0 takes each
    /// worker's start-up measurement (the smallest batch at 95% of the
    /// throughput plateau, `worker::speed`).
    pub batch_target_tokens: usize,
    /// Padding value and whether the model takes token_type_ids.
    pub pad_token_id: i64,
    pub uses_token_type_ids: bool,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            max_batch_pairs: 32,
            max_queue_delay: Duration::from_millis(2),
            max_queued_pairs: 20_000,
            retry_after: Duration::from_secs(1),
            window_per_request: 256,
            min_padding_efficiency: 0.85,
            batch_overhead_tokens: 0,
            controller: ControllerConfig::default(),
            max_failed_batches: 5,
            max_queue_time: Duration::from_secs(60),
            refuse_late: true,
            max_slowdown: 4.0,
            batch_target_tokens: 0,
            pad_token_id: 0,
            uses_token_type_ids: true,
        }
    }
}

/// One model replica the scheduler may send batches to.
pub struct Worker {
    /// "cpu" or "cuda:N", for stats and logs.
    pub device: String,
    pub model: ModelClient,
    /// The device's memory after warm-up, when a probe reads it.
    pub reading: Option<MemoryReading>,
    /// Bytes per padded token measured at warm-up, when measured.
    pub bytes_per_token: Option<f64>,
    /// The largest batch run at warm-up, in padded tokens (its memory stays
    /// with the allocator, usable by batches).
    pub warmed_tokens: usize,
    /// The start-up speed measurement, when one ran.
    pub speed: Option<Speed>,
}

/// Without a measurement: a batch target this large leaves the memory
/// budget alone in charge, and this pace (a CPU's order of magnitude) seeds
/// the estimate until batches correct it.
const UNMEASURED_TARGET_TOKENS: usize = usize::MAX;
const UNMEASURED_SECS_PER_TOKEN: f64 = 2e-4;

/// A batch is cut ahead for a busy worker only while the one it computes is
/// estimated to take at most this: the hand-over between two batches costs
/// well under a millisecond, a few percent of such a batch, while a longer
/// batch cut ahead only makes a request arriving meanwhile wait for it too.
const AHEAD_MAX_BATCH: Duration = Duration::from_millis(20);

/// How long a request whose answer was dropped waits for the reason the
/// scheduler stopped (`supervise` records it microseconds later).
const STOP_REASON_WAIT: Duration = Duration::from_secs(1);

/// The time alone of any request, beyond its tokens (tokenizing, the call):
/// the aging guard divides by at least this.
const ALONE_FLOOR_SECS: f64 = 0.02;

/// A request's scores, one per pair in its order, and where its time went.
#[derive(Debug)]
pub struct RequestScores {
    pub scores: Vec<Result<f32, ScoreError>>,
    /// From submission to its first batch starting on a model thread.
    pub queued: Duration,
    /// Model time of the batches that held its pairs.
    pub inference: Duration,
}

/// What one worker has done, for logs and the Stats RPC.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    pub device: String,
    pub controller: ControllerState,
    pub batches: u64,
    pub pairs: u64,
    pub real_tokens: u64,
    pub padded_tokens: u64,
    /// Sizes of the batches cut, in pairs and in padded tokens.
    pub batch_pairs: Histogram,
    pub batch_tokens: Histogram,
    pub splits: u64,
    /// Model time spent on batches.
    pub busy: Duration,
    /// Most padded tokens per batch by time (`BatcherConfig::
    /// batch_target_tokens`, or the start-up measurement); `None`: not
    /// measured, memory alone sizes batches.
    pub target_tokens: Option<usize>,
    /// Why the worker was taken out of service (its device failed, or its
    /// model thread stopped); `None` while it serves.
    pub out_of_service: Option<String>,
}

/// What the batcher is doing.
#[derive(Debug, Clone)]
pub struct BatcherStats {
    /// Pairs admitted and not yet answered.
    pub queued_pairs: usize,
    /// The running estimate of model time per real token (one worker).
    pub secs_per_token: f64,
    /// Requests refused because their deadline would pass before the work
    /// ahead of them and their own were done.
    pub refused_late: u64,
    /// One per worker, in `--devices` order.
    pub workers: Vec<WorkerStats>,
}

struct Submission {
    pairs: Vec<EncodedPair>,
    deadline: Instant,
    priority: i32,
    arrived: Instant,
    reply: oneshot::Sender<Result<RequestScores, Error>>,
    progress: Option<Progress>,
}

/// A question for the scheduler, before a request is tokenized: could
/// `tokens` of work at `priority` finish by `deadline`?
struct Check {
    tokens: usize,
    priority: i32,
    deadline: Instant,
    reply: oneshot::Sender<Result<(), Error>>,
}

enum Message {
    Submit(Submission),
    Check(Check),
}

/// Where a request's scores go as each batch finishes: (pair index, raw
/// score) of the pairs that batch scored. At most one message per batch,
/// so it holds no more than the request's own pairs.
pub type Progress = mpsc::UnboundedSender<Vec<(usize, f32)>>;

/// Cheap to clone: every request path holds one.
#[derive(Clone)]
pub struct Batcher {
    submissions: mpsc::UnboundedSender<Message>,
    queued_pairs: Arc<AtomicUsize>,
    max_queued_pairs: usize,
    max_queue_time: Duration,
    retry_after: Duration,
    stats: Arc<std::sync::Mutex<Vec<WorkerStats>>>,
    shared: Arc<Shared>,
    live_workers: watch::Receiver<usize>,
}

/// What the scheduler publishes beyond the workers' stats.
struct Shared {
    /// `Pace::secs_per_token`, as f64 bits.
    secs_per_token: AtomicU64,
    refused_late: AtomicU64,
    /// Why the scheduler task ended, once it has (it ends early only by a
    /// bug: a panic).
    stopped: std::sync::Mutex<Option<String>>,
}

impl Batcher {
    /// Starts the scheduler task on the current tokio runtime, feeding
    /// `workers` (at least one).
    pub fn start(config: BatcherConfig, workers: Vec<Worker>) -> Batcher {
        assert!(!workers.is_empty(), "the batcher needs a worker");
        let (submissions, incoming) = mpsc::unbounded_channel();
        let queued_pairs = Arc::new(AtomicUsize::new(0));
        let mut running = Vec::new();
        let mut stats = Vec::new();
        let measured: Vec<f64> = workers
            .iter()
            .filter_map(|w| w.speed.map(|s| s.secs_per_token))
            .collect();
        let pace = Pace::new(if measured.is_empty() {
            UNMEASURED_SECS_PER_TOKEN
        } else {
            measured.iter().sum::<f64>() / measured.len() as f64
        });
        for worker in workers {
            let target_tokens = match config.batch_target_tokens {
                0 => worker
                    .speed
                    .map(|s| s.target_tokens)
                    .filter(|&t| t != UNMEASURED_TARGET_TOKENS),
                fixed => Some(fixed),
            };
            let controller = Controller::new(config.controller.clone(), worker.reading)
                .calibrated(worker.bytes_per_token)
                .warmed_up(worker.warmed_tokens);
            stats.push(WorkerStats {
                device: worker.device.clone(),
                controller: controller.state(),
                batches: 0,
                pairs: 0,
                real_tokens: 0,
                padded_tokens: 0,
                batch_pairs: Histogram::new(BATCH_PAIRS),
                batch_tokens: Histogram::new(BATCH_TOKENS),
                splits: 0,
                busy: Duration::ZERO,
                target_tokens,
                out_of_service: None,
            });
            running.push(RunningWorker {
                device: worker.device,
                model: worker.model,
                controller,
                target_tokens: target_tokens.unwrap_or(UNMEASURED_TARGET_TOKENS),
                in_flight: 0,
                in_flight_tokens: 0,
                closed: false,
                failed_in_a_row: 0,
                out_of_service: None,
            });
        }
        let stats = Arc::new(std::sync::Mutex::new(stats));
        let (live, live_workers) = watch::channel(running.len());
        let live = Arc::new(live);
        let shared = Arc::new(Shared {
            secs_per_token: AtomicU64::new(pace.secs_per_token().to_bits()),
            refused_late: AtomicU64::new(0),
            stopped: std::sync::Mutex::new(None),
        });
        let batcher = Batcher {
            submissions,
            queued_pairs: Arc::clone(&queued_pairs),
            max_queued_pairs: config.max_queued_pairs,
            max_queue_time: config.max_queue_time,
            retry_after: config.retry_after,
            stats: Arc::clone(&stats),
            shared: Arc::clone(&shared),
            live_workers,
        };
        let scheduler = Scheduler {
            queue: Queue::new(config.window_per_request, config.min_padding_efficiency)
                .with_batch_overhead(config.batch_overhead_tokens),
            workers: running,
            pending: HashMap::new(),
            next_id: 0,
            queued_pairs,
            stats,
            live: Arc::clone(&live),
            shared: Arc::clone(&shared),
            pace,
            config,
        };
        supervise(tokio::spawn(scheduler.run(incoming)), live, shared);
        batcher
    }

    /// Scores `pairs` as part of whatever batches the scheduler cuts, in
    /// the order `priority` (lower first) and their work put them; refused
    /// when the work ahead would not let them finish by `deadline`
    /// (`--max-queue-time` from now when `None`).
    pub async fn score(
        &self,
        pairs: Vec<EncodedPair>,
        deadline: Option<Instant>,
        priority: i32,
    ) -> Result<RequestScores, Error> {
        self.submit(pairs, deadline, priority, None).await
    }

    /// `score`, also sending each batch's scores of this request to
    /// `progress` as the batch finishes (before the final answer).
    pub async fn score_with_progress(
        &self,
        pairs: Vec<EncodedPair>,
        deadline: Option<Instant>,
        priority: i32,
        progress: Progress,
    ) -> Result<RequestScores, Error> {
        self.submit(pairs, deadline, priority, Some(progress)).await
    }

    /// Whether a request of about `tokens` real tokens (a lower bound,
    /// before tokenizing) at `priority` could finish by `deadline` behind
    /// the work queued now: the same rule as admission, asked before the
    /// request costs any tokenizing.
    pub async fn check(
        &self,
        tokens: usize,
        deadline: Option<Instant>,
        priority: i32,
    ) -> Result<(), Error> {
        let deadline = deadline.unwrap_or_else(|| Instant::now() + self.max_queue_time);
        let (reply, answer) = oneshot::channel();
        let check = Check {
            tokens,
            priority,
            deadline,
            reply,
        };
        if self.submissions.send(Message::Check(check)).is_err() {
            return Err(self.stopped());
        }
        match answer.await {
            Ok(answer) => answer,
            Err(_) => Err(self.stopped_while_waiting().await),
        }
    }

    /// What a request whose answer was dropped gets: the scheduler ended
    /// while holding it. Its state (and so this request's reply) is dropped
    /// before `supervise` records why, so this waits, a bounded while, for
    /// the live workers to go to 0, which happens right after.
    async fn stopped_while_waiting(&self) -> Error {
        let mut live = self.live_workers.clone();
        let _ = tokio::time::timeout(STOP_REASON_WAIT, live.wait_for(|&n| n == 0)).await;
        self.stopped()
    }

    /// What a request gets once the scheduler task has ended.
    fn stopped(&self) -> Error {
        let reason = self
            .shared
            .stopped
            .lock()
            .expect("the stop reason's lock is never held across a panic")
            .clone();
        Error::Unavailable(match reason {
            Some(reason) => format!(
                "the batch scheduler stopped ({reason}); this server cannot score until it is \
                 restarted"
            ),
            None => "the batch scheduler has stopped".into(),
        })
    }

    async fn submit(
        &self,
        pairs: Vec<EncodedPair>,
        deadline: Option<Instant>,
        priority: i32,
        progress: Option<Progress>,
    ) -> Result<RequestScores, Error> {
        let arrived = Instant::now();
        let deadline = deadline.unwrap_or(arrived + self.max_queue_time);
        let count = pairs.len();
        let before = self.queued_pairs.fetch_add(count, Ordering::SeqCst);
        if before + count > self.max_queued_pairs && before > 0 {
            self.queued_pairs.fetch_sub(count, Ordering::SeqCst);
            return Err(Error::Overloaded {
                queued_pairs: before,
                retry_after: self.retry_after,
            });
        }
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            pairs,
            deadline,
            priority,
            arrived,
            reply,
            progress,
        };
        if self.submissions.send(Message::Submit(submission)).is_err() {
            self.queued_pairs.fetch_sub(count, Ordering::SeqCst);
            return Err(self.stopped());
        }
        match answer.await {
            Ok(answer) => answer,
            Err(_) => Err(self.stopped_while_waiting().await),
        }
    }

    /// How many workers are in service, updated as workers are taken out
    /// (0: every request is refused with UNAVAILABLE).
    pub fn live_workers(&self) -> watch::Receiver<usize> {
        self.live_workers.clone()
    }

    pub fn stats(&self) -> BatcherStats {
        let workers = self
            .stats
            .lock()
            .expect("the stats lock is never held across a panic")
            .clone();
        BatcherStats {
            queued_pairs: self.queued_pairs.load(Ordering::SeqCst),
            secs_per_token: f64::from_bits(self.shared.secs_per_token.load(Ordering::Relaxed)),
            refused_late: self.shared.refused_late.load(Ordering::Relaxed),
            workers,
        }
    }
}

/// Watches the scheduler task: should it end by a panic (a bug), the stop
/// reason is kept for every caller's UNAVAILABLE, and the live workers go
/// to 0, so health says NOT_SERVING. Ending because every `Batcher` was
/// dropped, or the runtime shutting down, is the normal end.
fn supervise(
    task: tokio::task::JoinHandle<()>,
    live: Arc<watch::Sender<usize>>,
    shared: Arc<Shared>,
) {
    tokio::spawn(async move {
        let Err(error) = task.await else { return };
        if !error.is_panic() {
            return;
        }
        let panic = error.into_panic();
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        let reason = format!("it panicked: {message}");
        tracing::error!(
            %reason,
            "the batch scheduler stopped: every request is refused with UNAVAILABLE and health \
             says NOT_SERVING until the server is restarted"
        );
        *shared
            .stopped
            .lock()
            .expect("the stop reason's lock is never held across a panic") = Some(reason);
        live.send_replace(0);
    });
}

struct PendingRequest {
    pairs: Vec<EncodedPair>,
    scores: Vec<Option<Result<f32, ScoreError>>>,
    remaining: usize,
    arrived: Instant,
    first_started: Option<Duration>,
    inference: Duration,
    reply: oneshot::Sender<Result<RequestScores, Error>>,
    progress: Option<Progress>,
}

/// The rows of one batch in flight: (request, pair index).
type Rows = Vec<(RequestId, usize)>;

/// A batch's answer: which worker ran it, its rows, their real tokens, and
/// the model's answer (`None` when the model thread stopped).
type Completion = (usize, Rows, usize, Option<ScoredBatch>);

struct RunningWorker {
    device: String,
    model: ModelClient,
    controller: Controller,
    /// Most padded tokens per batch by time (`UNMEASURED_TARGET_TOKENS`:
    /// no limit but memory's).
    target_tokens: usize,
    /// Batches handed to its model thread and not yet answered (at most 2:
    /// one computing, one waiting).
    in_flight: usize,
    /// Their real tokens.
    in_flight_tokens: usize,
    /// Its model thread refused a batch (its queue is closed): no batch goes
    /// to it; once its batches in flight are answered it is taken out.
    closed: bool,
    /// Batches its scorer failed since it last scored one.
    failed_in_a_row: usize,
    /// Why it was taken out of service; `None` while it serves.
    out_of_service: Option<String>,
}

impl RunningWorker {
    /// Whether a batch may be sent to it.
    fn serves(&self) -> bool {
        !self.closed && self.out_of_service.is_none()
    }

    /// Most padded tokens its next batch may hold: memory's budget or the
    /// time target, whichever is smaller.
    fn batch_tokens(&self) -> usize {
        self.controller.budget_tokens().min(self.target_tokens)
    }
}

/// What became of a batch the scheduler meant to send.
enum Dispatched {
    Sent,
    /// No room in the model thread's queue, or nothing to cut.
    Nothing,
    /// The model thread's queue is closed: it has stopped.
    Closed,
}

/// What the scheduler should do with the queue now.
#[derive(Debug, PartialEq)]
enum Next {
    /// Cut a batch for this worker.
    Cut(usize),
    /// A worker is idle but the queue cannot fill a batch yet: wait this
    /// long for more pairs.
    Wait(Duration),
    /// Nothing to cut, or every worker busy.
    Idle,
}

struct Scheduler {
    queue: Queue,
    workers: Vec<RunningWorker>,
    pending: HashMap<RequestId, PendingRequest>,
    next_id: RequestId,
    /// Shared with `Batcher` for admission.
    queued_pairs: Arc<AtomicUsize>,
    stats: Arc<std::sync::Mutex<Vec<WorkerStats>>>,
    /// How many workers are not out of service.
    live: Arc<watch::Sender<usize>>,
    shared: Arc<Shared>,
    pace: Pace,
    config: BatcherConfig,
}

impl Scheduler {
    async fn run(mut self, mut incoming: mpsc::UnboundedReceiver<Message>) {
        let (done, mut completions) = mpsc::unbounded_channel::<Completion>();
        let mut open = true;
        loop {
            self.drop_abandoned(Instant::now());
            let mut wait = None;
            loop {
                match self.next(Instant::now()) {
                    Next::Cut(worker) => match self.dispatch(worker, &done) {
                        Dispatched::Sent => {}
                        Dispatched::Nothing => break,
                        // Its model thread has stopped: it is skipped from
                        // now on, and the loop picks another worker.
                        Dispatched::Closed => self.closed(worker),
                    },
                    Next::Wait(duration) => {
                        wait = Some(duration);
                        break;
                    }
                    Next::Idle => break,
                }
            }
            if !open && self.queue.is_empty() && self.pending.is_empty() {
                break;
            }
            tokio::select! {
                message = incoming.recv(), if open => match message {
                    Some(Message::Submit(submission)) => self.admit(submission),
                    Some(Message::Check(check)) => {
                        let answer = self.feasible(
                            check.priority,
                            check.tokens,
                            check.deadline,
                            Instant::now(),
                        );
                        let _ = check.reply.send(answer);
                    }
                    None => open = false,
                },
                Some((worker, rows, real_tokens, scored)) = completions.recv() => {
                    self.workers[worker].in_flight -= 1;
                    self.workers[worker].in_flight_tokens -= real_tokens;
                    match scored {
                        Some(scored) => {
                            self.pace.on_batch(real_tokens, scored.inference);
                            self.shared
                                .secs_per_token
                                .store(self.pace.secs_per_token().to_bits(), Ordering::Relaxed);
                            self.complete(worker, rows, scored)
                        }
                        None => self.lost(worker, rows),
                    }
                    if self.workers[worker].closed && self.workers[worker].in_flight == 0 {
                        self.take_out(worker, "its model thread stopped".into(), "", Vec::new());
                    }
                }
                _ = tokio::time::sleep(wait.unwrap_or(Duration::ZERO)), if wait.is_some() => {},
            }
        }
    }

    /// The first idle worker gets the next batch once the queue can fill it
    /// or its oldest pair has waited the max queue delay. A worker that is
    /// computing gets one more only when the queue can fill it anyway, the
    /// batch it computes is short (`AHEAD_MAX_BATCH`: on a CPU none is),
    /// and no request shorter than that batch's anchor waits behind it (it
    /// would wait for both); otherwise the batch waits for it to go idle,
    /// so the requests that arrive meanwhile can join (measured: a thin
    /// queue cut early pads badly, benches/batcher.rs), and a request
    /// arriving meanwhile goes first if it is shorter.
    fn next(&self, now: Instant) -> Next {
        if self.queue.is_empty() {
            return Next::Idle;
        }
        let max_pairs = self.config.max_batch_pairs;
        let fills = |w: &RunningWorker| self.queue.can_fill(w.batch_tokens(), max_pairs);
        let mut wait = None;
        for (index, worker) in self.workers.iter().enumerate() {
            if worker.serves() && worker.in_flight == 0 {
                if fills(worker) {
                    return Next::Cut(index);
                }
                let waited = self
                    .queue
                    .oldest_arrival()
                    .map_or(Duration::ZERO, |oldest| {
                        now.saturating_duration_since(oldest)
                    });
                if waited >= self.config.max_queue_delay {
                    return Next::Cut(index);
                }
                wait.get_or_insert(self.config.max_queue_delay - waited);
            }
        }
        if let Some(wait) = wait {
            return Next::Wait(wait);
        }
        if self.queue.shorter_waits(&self.aging(now)) {
            return Next::Idle;
        }
        // A batch cut ahead is one more a request arriving now waits for:
        // worth it only where batches are so short that the hand-over
        // between two (a scheduler turn, padding, building tensors) is a
        // real share of them.
        let short = |w: &RunningWorker| self.pace.time_of(w.in_flight_tokens, 1) <= AHEAD_MAX_BATCH;
        match self
            .workers
            .iter()
            .position(|w| w.serves() && w.in_flight == 1 && short(w) && fills(w))
        {
            Some(index) => Next::Cut(index),
            None => Next::Idle,
        }
    }

    /// Cuts a batch under `worker`'s budget and hands it to its model
    /// thread: `Nothing` when there was no room or nothing to cut (neither
    /// happens while `next` holds), `Closed` when the model thread stopped.
    fn dispatch(&mut self, worker: usize, done: &mpsc::UnboundedSender<Completion>) -> Dispatched {
        let model = self.workers[worker].model.clone();
        let permit = match model.try_reserve() {
            Ok(Some(permit)) => permit,
            Ok(None) => return Dispatched::Nothing,
            Err(_) => return Dispatched::Closed,
        };
        let budget = self.workers[worker].batch_tokens();
        let aging = self.aging(Instant::now());
        let Some(batch) = self
            .queue
            .cut_aging(budget, self.config.max_batch_pairs, &aging)
        else {
            return Dispatched::Nothing;
        };
        let rows: Rows = batch.items.iter().map(|i| (i.request, i.index)).collect();
        let pairs: Vec<&EncodedPair> = rows
            .iter()
            .map(|(request, index)| &self.pending[request].pairs[*index])
            .collect();
        let padded = PaddedBatch::new(
            &pairs,
            self.config.pad_token_id,
            self.config.uses_token_type_ids,
        );
        {
            let mut stats = self.stats.lock().expect("stats lock");
            let stats = &mut stats[worker];
            stats.batches += 1;
            stats.pairs += batch.items.len() as u64;
            stats.real_tokens += batch.real_tokens() as u64;
            stats.padded_tokens += batch.padded_tokens() as u64;
            stats.batch_pairs.observe(batch.items.len() as f64);
            stats.batch_tokens.observe(batch.padded_tokens() as f64);
        }
        let real_tokens = batch.real_tokens();
        self.workers[worker].in_flight += 1;
        self.workers[worker].in_flight_tokens += real_tokens;
        let answer = permit.send(padded);
        let done = done.clone();
        tokio::spawn(async move {
            // The model thread answers every job it takes; a dropped answer
            // means it stopped.
            let scored = answer.await.ok();
            let _ = done.send((worker, rows, real_tokens, scored));
        });
        Dispatched::Sent
    }

    fn admit(&mut self, submission: Submission) {
        if self.live_workers() == 0 {
            self.release(submission.pairs.len());
            let _ = submission.reply.send(Err(self.no_worker_left()));
            return;
        }
        let lengths: Vec<usize> = submission.pairs.iter().map(EncodedPair::len).collect();
        let tokens = lengths.iter().sum();
        let now = Instant::now();
        if let Err(error) = self.feasible(submission.priority, tokens, submission.deadline, now) {
            self.release(submission.pairs.len());
            let _ = submission.reply.send(Err(error));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_with_priority(
            id,
            submission.arrived,
            Some(submission.deadline),
            submission.priority,
            &lengths,
        );
        let count = submission.pairs.len();
        if count == 0 {
            let _ = submission.reply.send(Ok(RequestScores {
                scores: Vec::new(),
                queued: Duration::ZERO,
                inference: Duration::ZERO,
            }));
            return;
        }
        self.pending.insert(
            id,
            PendingRequest {
                scores: (0..count).map(|_| None).collect(),
                remaining: count,
                pairs: submission.pairs,
                arrived: submission.arrived,
                first_started: None,
                inference: Duration::ZERO,
                reply: submission.reply,
                progress: submission.progress,
            },
        );
    }

    /// The aging guard as of `now`, at the current pace.
    fn aging(&self, now: Instant) -> Aging {
        Aging {
            now,
            secs_per_token: self.pace.secs_per_token() / self.live_workers().max(1) as f64,
            floor_secs: ALONE_FLOOR_SECS,
            max_slowdown: self.config.max_slowdown,
        }
    }

    /// Whether `tokens` of work at `priority` would be answered by
    /// `deadline`: the work queued before it (`Queue::tokens_ahead`) and in
    /// flight, then its own, at the current pace on the live workers.
    /// Refused, it is counted and the error says by how much.
    fn feasible(
        &self,
        priority: i32,
        tokens: usize,
        deadline: Instant,
        now: Instant,
    ) -> Result<(), Error> {
        let live = self.live_workers();
        if live == 0 {
            return Err(self.no_worker_left());
        }
        if deadline <= now {
            return Err(Error::DeadlineExceeded);
        }
        if !self.config.refuse_late {
            return Ok(());
        }
        let in_flight: usize = self
            .workers
            .iter()
            .filter(|w| w.out_of_service.is_none())
            .map(|w| w.in_flight_tokens)
            .sum();
        let ahead = self.queue.tokens_ahead(priority, tokens, &self.aging(now)) + in_flight;
        // Its first batch may wait the max queue delay for more pairs.
        let left = deadline
            .saturating_duration_since(now)
            .saturating_sub(self.config.max_queue_delay);
        self.pace.admit(ahead, tokens, live, left).map_err(
            |Infeasible {
                 needed,
                 own,
                 left,
                 drained_in,
             }| {
                self.shared.refused_late.fetch_add(1, Ordering::Relaxed);
                Error::TooLate {
                    needed,
                    own,
                    left,
                    retry_after: drained_in.max(self.config.retry_after),
                }
            },
        )
    }

    /// Drops queued work of requests whose client has gone or whose deadline
    /// has passed.
    fn drop_abandoned(&mut self, now: Instant) {
        for id in self.queue.expire(now) {
            if let Some(request) = self.pending.remove(&id) {
                self.release(request.scores.len());
                let _ = request.reply.send(Err(Error::DeadlineExceeded));
            }
        }
        let gone: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, request)| request.reply.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.queue.remove(id);
            if let Some(request) = self.pending.remove(&id) {
                self.release(request.scores.len());
            }
        }
    }

    fn complete(&mut self, worker: usize, rows: Rows, scored: ScoredBatch) {
        // A model thread answers one result per row; anything else is a bug
        // that would leave requests waiting forever, so it stops the
        // scheduler loudly (`supervise` then turns health NOT_SERVING).
        assert_eq!(
            rows.len(),
            scored.scores.len(),
            "the model thread answered {} results for a batch of {} rows",
            scored.scores.len(),
            rows.len()
        );
        let broken = scored.scores.iter().find_map(|score| match score {
            Err(error @ ScoreError::DeviceFailed(message)) => {
                Some((format!("its device failed ({})", error.headline()), message))
            }
            _ => None,
        });
        if let Some((reason, message)) = broken {
            // The requests that had a row in the failed part go with the
            // worker (rows that were scored before it broke stand).
            let held: Vec<RequestId> = rows
                .iter()
                .zip(&scored.scores)
                .filter(|(_, score)| matches!(score, Err(ScoreError::DeviceFailed(_))))
                .map(|((id, _), _)| *id)
                .collect();
            self.take_out(worker, reason, message, held);
        }
        let controller = &mut self.workers[worker].controller;
        for &tokens in &scored.record.out_of_memory {
            controller.on_oom(tokens);
        }
        for &tokens in &scored.record.succeeded {
            controller.on_success(tokens);
        }
        if let Some(reading) = scored.reading {
            controller.on_memory(reading);
        }
        let finished_at = Instant::now();
        let mut requests: Vec<RequestId> = rows.iter().map(|(id, _)| *id).collect();
        requests.sort_unstable();
        requests.dedup();
        for id in requests {
            if let Some(request) = self.pending.get_mut(&id) {
                request.inference += scored.inference;
                request.first_started.get_or_insert_with(|| {
                    finished_at
                        .saturating_duration_since(request.arrived)
                        .saturating_sub(scored.inference)
                });
            }
        }
        self.send_progress(&rows, &scored.scores);
        let failed = first_failure(&scored.scores);
        for ((id, index), score) in rows.into_iter().zip(scored.scores) {
            let Some(request) = self.pending.get_mut(&id) else {
                continue; // Abandoned while its batch ran.
            };
            request.scores[index] = Some(score);
            request.remaining -= 1;
            if request.remaining == 0 {
                let request = self.pending.remove(&id).expect("present above");
                let count = request.scores.len();
                self.release(count);
                let scores = request
                    .scores
                    .into_iter()
                    .map(|s| s.expect("every row of a finished request has a score"))
                    .collect();
                let _ = request.reply.send(Ok(RequestScores {
                    scores,
                    queued: request.first_started.unwrap_or_default(),
                    inference: request.inference,
                }));
            }
        }
        {
            let mut stats = self.stats.lock().expect("stats lock");
            let stats = &mut stats[worker];
            let state = self.workers[worker].controller.state();
            if state.budget_tokens != stats.controller.budget_tokens {
                tracing::info!(
                    device = %stats.device,
                    budget_tokens = state.budget_tokens,
                    previous = stats.controller.budget_tokens,
                    oom_count = state.oom_count,
                    free_bytes = ?state.last_reading.map(|r| r.free_bytes),
                    "token budget changed"
                );
            }
            stats.controller = state;
            stats.splits += scored.record.splits as u64;
            stats.busy += scored.inference;
        }
        self.count_failure(worker, failed);
    }

    /// Counts a batch the scorer failed (`failure`: its first error), or
    /// resets the count; takes the worker out once its scorer has failed
    /// `max_failed_batches` in a row. The failed batch's requests have had
    /// their answers (INTERNAL) by then; with no worker left, the others
    /// get UNAVAILABLE.
    fn count_failure(&mut self, worker: usize, failure: Option<ScoreError>) {
        let Some(failure) = failure else {
            self.workers[worker].failed_in_a_row = 0;
            return;
        };
        let running = &mut self.workers[worker];
        running.failed_in_a_row += 1;
        let limit = self.config.max_failed_batches;
        if limit > 0 && running.failed_in_a_row >= limit {
            let reason = format!(
                "its scorer failed {} batches in a row (the last: {})",
                running.failed_in_a_row,
                failure.headline()
            );
            self.take_out(worker, reason, &failure.to_string(), Vec::new());
        }
    }

    /// A batch whose answer was dropped: its model thread stopped. The
    /// worker is taken out, and the requests it held fail.
    fn lost(&mut self, worker: usize, rows: Rows) {
        let held = rows.into_iter().map(|(id, _)| id).collect();
        self.take_out(worker, "its model thread stopped".into(), "", held);
    }

    /// The model thread of `worker` refused a batch: no more batches go to
    /// it, and once the batches it holds are answered it is taken out (so a
    /// device failure they report is the reason it gives).
    fn closed(&mut self, worker: usize) {
        self.workers[worker].closed = true;
        if self.workers[worker].in_flight == 0 {
            self.take_out(worker, "its model thread stopped".into(), "", Vec::new());
        }
    }

    /// Takes `worker` out of service for `reason` (the first reason stands,
    /// and is logged once with `detail`, the full error): no batch goes to it
    /// again. The requests in `held` (it held part of them) fail UNAVAILABLE
    /// naming it; with no worker left, so does every other request.
    fn take_out(&mut self, worker: usize, reason: String, detail: &str, held: Vec<RequestId>) {
        if self.workers[worker].out_of_service.is_none() {
            self.workers[worker].out_of_service = Some(reason.clone());
            let left = self.live_workers();
            tracing::error!(
                device = %self.workers[worker].device,
                %reason,
                error = %detail,
                workers_left = left,
                "worker taken out of service: no batch goes to it again{}",
                if left == 0 {
                    "; no worker is left, so every request is refused with UNAVAILABLE \
                     until the server is restarted"
                } else {
                    ""
                }
            );
            self.stats.lock().expect("stats lock")[worker].out_of_service = Some(reason);
            self.live.send_replace(left);
        }
        self.fail_requests(worker, held);
        if self.live_workers() == 0 {
            let ids: Vec<RequestId> = self.pending.keys().copied().collect();
            for id in ids {
                let error = self.no_worker_left();
                self.fail_request(id, error);
            }
        }
    }

    /// Fails each of `ids` (once, if still pending) because `worker` was
    /// taken out while holding part of it; its queued pairs are dropped.
    fn fail_requests(&mut self, worker: usize, mut ids: Vec<RequestId>) {
        ids.sort_unstable();
        ids.dedup();
        let reason = self.workers[worker]
            .out_of_service
            .clone()
            .expect("a worker is taken out before its requests fail");
        for id in ids {
            let error = Error::WorkerOut {
                device: self.workers[worker].device.clone(),
                reason: reason.clone(),
            };
            self.fail_request(id, error);
        }
    }

    fn fail_request(&mut self, id: RequestId, error: Error) {
        if let Some(request) = self.pending.remove(&id) {
            self.queue.remove(id);
            self.release(request.scores.len());
            let _ = request.reply.send(Err(error));
        }
    }

    fn live_workers(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.out_of_service.is_none())
            .count()
    }

    /// What a request gets once every worker is out of service.
    fn no_worker_left(&self) -> Error {
        let reasons: Vec<String> = self
            .workers
            .iter()
            .map(|w| {
                format!(
                    "{}: {}",
                    w.device,
                    w.out_of_service.as_deref().unwrap_or("serving")
                )
            })
            .collect();
        Error::Unavailable(format!(
            "every worker has been taken out of service ({}); this server cannot score until \
             it is restarted",
            reasons.join("; ")
        ))
    }

    /// Sends each request that asked for progress the scores this batch
    /// gave it (a closed receiver is the client's business: its request
    /// goes on, or is dropped when its reply closes).
    fn send_progress(&self, rows: &Rows, scores: &[Result<f32, ScoreError>]) {
        let mut batches: HashMap<RequestId, Vec<(usize, f32)>> = HashMap::new();
        for (&(id, index), score) in rows.iter().zip(scores) {
            let wants = self.pending.get(&id).is_some_and(|r| r.progress.is_some());
            if let (true, Ok(score)) = (wants, score) {
                batches.entry(id).or_default().push((index, *score));
            }
        }
        for (id, scores) in batches {
            if let Some(progress) = self.pending.get(&id).and_then(|r| r.progress.as_ref()) {
                let _ = progress.send(scores);
            }
        }
    }

    fn release(&self, pairs: usize) {
        self.queued_pairs.fetch_sub(pairs, Ordering::SeqCst);
    }
}

/// The first error in a batch's results that says its scorer failed: a
/// panic or an error other than out-of-memory (which only a pair too large
/// to fit alone reaches) and a broken device (handled on its own).
fn first_failure(scores: &[Result<f32, ScoreError>]) -> Option<ScoreError> {
    scores.iter().find_map(|score| match score {
        Err(error @ ScoreError::Failed(_)) => Some(error.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::fake::FakeScorer;
    use crate::worker::thread::ModelThread;
    use std::sync::atomic::AtomicUsize;

    fn pairs(lengths: &[usize], seed: usize) -> Vec<EncodedPair> {
        lengths
            .iter()
            .enumerate()
            .map(|(i, &length)| EncodedPair {
                input_ids: (0..length)
                    .map(|t| (seed * 7919 + i * 101 + t) as i64 % 30_000)
                    .collect(),
                token_type_ids: vec![0; length],
                truncated: false,
            })
            .collect()
    }

    /// What the fake scores a pair as when it runs alone.
    fn alone(pair: &EncodedPair) -> f32 {
        FakeScorer::expected_scores(&PaddedBatch::new(&[pair], 0, true))[0]
    }

    async fn start(limit: Arc<AtomicUsize>, config: BatcherConfig) -> (ModelThread, Batcher) {
        let (thread, client, ()) = ModelThread::start(move || {
            let mut scorer = FakeScorer::with_limit(0);
            scorer.limit = limit;
            Ok((scorer, None, ()))
        })
        .await
        .unwrap();
        (thread, Batcher::start(config, vec![worker("fake", client)]))
    }

    /// A model thread whose every batch waits until the returned sender
    /// sends or is dropped: a test holds the model busy with it.
    async fn held_model() -> (ModelThread, ModelClient, std::sync::mpsc::Sender<()>) {
        let (open_gate, gate) = std::sync::mpsc::channel();
        let (thread, client, ()) = ModelThread::start(move || {
            let mut scorer = FakeScorer::with_limit(usize::MAX);
            scorer.gate = Some(gate);
            Ok((scorer, None, ()))
        })
        .await
        .unwrap();
        (thread, client, open_gate)
    }

    /// Two workers, `cuda:0` and `cuda:1`, with no queue delay: a request is
    /// cut as soon as it is admitted.
    fn cuda_pair(first: ModelClient, second: ModelClient) -> Batcher {
        let config = BatcherConfig {
            max_queue_delay: Duration::ZERO,
            ..config()
        };
        Batcher::start(
            config,
            vec![worker("cuda:0", first), worker("cuda:1", second)],
        )
    }

    /// A model thread that scores every batch.
    async fn sound_model() -> (ModelThread, ModelClient) {
        let (thread, client, ()) =
            ModelThread::start(|| Ok((FakeScorer::with_limit(usize::MAX), None, ())))
                .await
                .unwrap();
        (thread, client)
    }

    /// A model thread whose device breaks after `after` batches; with
    /// `gate`, every batch first waits for it (as `held_model`).
    async fn breaking_model(
        after: usize,
        gate: Option<std::sync::mpsc::Receiver<()>>,
    ) -> (ModelThread, ModelClient) {
        let (thread, client, ()) = ModelThread::start(move || {
            let mut scorer = FakeScorer::with_limit(usize::MAX);
            scorer.break_after = Some(after);
            scorer.gate = gate;
            Ok((scorer, None, ()))
        })
        .await
        .unwrap();
        (thread, client)
    }

    /// Polls `future` once (so a request is submitted before the next).
    async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) {
        tokio::select! {
            biased;
            _ = future => panic!("answered while its worker was held"),
            _ = std::future::ready(()) => {}
        }
    }

    fn worker(device: &str, model: ModelClient) -> Worker {
        Worker {
            device: device.into(),
            model,
            reading: None,
            bytes_per_token: None,
            warmed_tokens: 0,
            speed: None,
        }
    }

    fn config() -> BatcherConfig {
        BatcherConfig {
            max_batch_pairs: 16,
            controller: ControllerConfig {
                min_tokens: 64,
                fallback_tokens: 2048,
                ..ControllerConfig::default()
            },
            ..BatcherConfig::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn out_of_memory_at_any_size_loses_no_request() {
        let limit = Arc::new(AtomicUsize::new(usize::MAX));
        let (_thread, batcher) = start(Arc::clone(&limit), config()).await;
        let mut tasks = Vec::new();
        for request in 0..24 {
            let lengths: Vec<usize> = (0..(5 + request * 3))
                .map(|i| 8 + (i * 13 + request) % 56)
                .collect();
            let request_pairs = pairs(&lengths, request);
            let batcher = batcher.clone();
            // Squeeze memory while requests are in flight: then every batch
            // above one 64-token pair runs out of memory.
            if request == 8 {
                limit.store(64, Ordering::SeqCst);
            }
            tasks.push(tokio::spawn(async move {
                let expected: Vec<f32> = request_pairs.iter().map(alone).collect();
                let scored = batcher.score(request_pairs, None, 0).await.unwrap();
                let scores: Vec<f32> = scored.scores.into_iter().map(Result::unwrap).collect();
                assert_eq!(scores, expected, "request {request}");
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let stats = batcher.stats().workers.remove(0);
        assert!(stats.controller.oom_count > 0, "{stats:?}");
        assert!(
            stats.controller.budget_tokens < 2048,
            "the budget shrank: {stats:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pair_that_cannot_fit_alone_fails_only_itself() {
        let limit = Arc::new(AtomicUsize::new(50));
        let (_thread, batcher) = start(limit, config()).await;
        let scored = batcher
            .score(pairs(&[10, 60, 20], 1), None, 0)
            .await
            .unwrap();
        assert!(scored.scores[0].is_ok() && scored.scores[2].is_ok());
        assert!(matches!(scored.scores[1], Err(ScoreError::OutOfMemory(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_past_deadline_is_refused_and_its_work_dropped() {
        let limit = Arc::new(AtomicUsize::new(usize::MAX));
        let (_thread, batcher) = start(limit, config()).await;
        let past = Instant::now();
        let result = batcher.score(pairs(&[10; 40], 2), Some(past), 0).await;
        assert!(matches!(result, Err(Error::DeadlineExceeded)), "{result:?}");
        // The next request still runs, and the dropped one's pairs never did.
        let scored = batcher.score(pairs(&[10; 3], 3), None, 0).await.unwrap();
        assert_eq!(scored.scores.len(), 3);
        assert_eq!(batcher.stats().workers[0].pairs, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admission_refuses_past_the_bound_with_a_retry_hint() {
        let (_thread, client, open_gate) = held_model().await;
        let config = BatcherConfig {
            max_queued_pairs: 100,
            ..config()
        };
        let batcher = Batcher::start(config, vec![worker("fake", client)]);

        // Admit 90 pairs (one poll submits them); the model is held busy.
        let first = batcher.score(pairs(&[8; 90], 4), None, 0);
        tokio::pin!(first);
        tokio::select! {
            biased;
            _ = &mut first => panic!("scored while the model was held"),
            _ = std::future::ready(()) => {}
        }
        let refused = batcher.score(pairs(&[8; 20], 5), None, 0).await;
        match refused {
            Err(Error::Overloaded {
                queued_pairs,
                retry_after,
            }) => {
                assert_eq!(queued_pairs, 90);
                assert!(retry_after > Duration::ZERO);
            }
            other => panic!("expected Overloaded, got {other:?}"),
        }
        drop(open_gate);
        assert_eq!(first.await.unwrap().scores.len(), 90);
        // The bound is about queueing, not request size: a request bigger
        // than it is admitted into an empty queue.
        let scored = batcher.score(pairs(&[8; 150], 6), None, 0).await.unwrap();
        assert_eq!(scored.scores.len(), 150);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_go_to_the_idle_worker_and_each_worker_has_its_own_budget() {
        // Worker 0 is held busy on its first batch; worker 1 is free.
        let (_held, held_client, open_gate) = held_model().await;
        let (_free, free_client) = sound_model().await;
        let gib = 1u64 << 30;
        let workers = vec![
            worker("fake:0", held_client),
            Worker {
                // 1 GiB free × 0.8 ÷ 256 KiB per token = 3276 tokens.
                reading: Some(MemoryReading {
                    free_bytes: gib,
                    total_bytes: 2 * gib,
                }),
                bytes_per_token: Some(256.0 * 1024.0),
                ..worker("fake:1", free_client)
            },
        ];
        // No queue delay: a request is cut as soon as it is admitted, before
        // the scheduler takes the next one, so the held batch holds only the
        // first request.
        let config = BatcherConfig {
            max_queue_delay: Duration::ZERO,
            ..config()
        };
        let batcher = Batcher::start(config, workers);

        let held = batcher.score(pairs(&[10; 4], 7), None, 0);
        tokio::pin!(held);
        // Poll once so the first request is submitted before the others.
        tokio::select! {
            biased;
            _ = &mut held => panic!("scored while worker 0 was held"),
            _ = std::future::ready(()) => {}
        }
        // While worker 0 computes, every later request runs on worker 1.
        for request in 0..6 {
            let request_pairs = pairs(&[12, 20, 31], 10 + request);
            let expected: Vec<f32> = request_pairs.iter().map(alone).collect();
            let scored = batcher.score(request_pairs, None, 0).await.unwrap();
            let scores: Vec<f32> = scored.scores.into_iter().map(Result::unwrap).collect();
            assert_eq!(scores, expected);
        }
        drop(open_gate);
        assert_eq!(held.await.unwrap().scores.len(), 4);
        let stats = batcher.stats();
        let (first, second) = (&stats.workers[0], &stats.workers[1]);
        assert_eq!(
            (first.device.as_str(), second.device.as_str()),
            ("fake:0", "fake:1")
        );
        assert_eq!(first.pairs, 4, "{stats:?}");
        assert_eq!(second.pairs, 18, "{stats:?}");
        assert_eq!(first.controller.budget_tokens, 2048, "the fallback budget");
        assert_eq!(
            second.controller.budget_tokens, 3276,
            "sized from its memory"
        );
        assert_eq!(stats.queued_pairs, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_whose_device_breaks_is_taken_out_and_the_other_serves() {
        // Worker 0's device breaks on its second batch; worker 1 is sound.
        let (_broken, broken_client) = breaking_model(1, None).await;
        let (_sound, sound_client) = sound_model().await;
        let batcher = cuda_pair(broken_client, sound_client);
        let live = batcher.live_workers();
        assert_eq!(*live.borrow(), 2);
        // One at a time, a request goes to the first idle worker: worker 0.
        let first = batcher.score(pairs(&[10, 12], 20), None, 0).await.unwrap();
        assert_eq!(first.scores.len(), 2);
        match batcher.score(pairs(&[10, 12, 14], 21), None, 0).await {
            Err(Error::WorkerOut { device, reason }) => {
                assert_eq!(device, "cuda:0");
                assert!(
                    reason.contains("its device failed")
                        && reason.contains("an illegal memory access"),
                    "{reason}"
                );
            }
            other => panic!("expected WorkerOut, got {other:?}"),
        }
        assert_eq!(*live.borrow(), 1);
        // From now on every request is scored, by worker 1 alone.
        for request in 0..5 {
            let request_pairs = pairs(&[9, 17, 30], 30 + request);
            let expected: Vec<f32> = request_pairs.iter().map(alone).collect();
            let scored = batcher.score(request_pairs, None, 0).await.unwrap();
            let scores: Vec<f32> = scored.scores.into_iter().map(Result::unwrap).collect();
            assert_eq!(scores, expected);
        }
        let stats = batcher.stats();
        let (broken, sound) = (&stats.workers[0], &stats.workers[1]);
        assert!(
            broken
                .out_of_service
                .as_deref()
                .is_some_and(|r| r.contains("an illegal memory access")),
            "{stats:?}"
        );
        assert_eq!(broken.batches, 2, "no batch went to it after it broke");
        assert_eq!(sound.out_of_service, None);
        assert_eq!(sound.pairs, 15);
        assert_eq!(stats.queued_pairs, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_every_device_broken_pending_and_new_requests_fail_unavailable() {
        // Worker 0 is held on its first batch, then breaks; worker 1 breaks
        // on its first batch.
        let (open_gate, gate) = std::sync::mpsc::channel();
        let (_held, held_client) = breaking_model(0, Some(gate)).await;
        let (_broken, broken_client) = breaking_model(0, None).await;
        let config = BatcherConfig {
            max_queue_delay: Duration::ZERO,
            ..config()
        };
        let batcher = Batcher::start(
            config,
            vec![
                worker("cuda:0", held_client),
                worker("cuda:1", broken_client),
            ],
        );
        let mut live = batcher.live_workers();

        let held = batcher.score(pairs(&[10; 4], 40), None, 0);
        tokio::pin!(held);
        poll_once(&mut held).await;
        // Worker 0 is busy: the next request goes to worker 1, which breaks.
        let on_broken = batcher.score(pairs(&[11; 3], 41), None, 0).await;
        assert!(
            matches!(&on_broken, Err(Error::WorkerOut { device, .. }) if device == "cuda:1"),
            "{on_broken:?}"
        );
        // This one waits in the queue for worker 0 (it cannot fill a batch).
        let waiting = batcher.score(pairs(&[12; 3], 42), None, 0);
        tokio::pin!(waiting);
        poll_once(&mut waiting).await;
        assert_eq!(batcher.stats().queued_pairs, 7);
        drop(open_gate);

        let held = held.await;
        assert!(
            matches!(&held, Err(Error::WorkerOut { device, .. }) if device == "cuda:0"),
            "{held:?}"
        );
        live.wait_for(|&n| n == 0).await.unwrap();
        let waiting = waiting.await;
        match &waiting {
            Err(error @ Error::Unavailable(message)) => {
                assert!(message.contains("every worker"), "{message}");
                assert_eq!(
                    tonic::Status::from(Error::Unavailable(message.clone())).code(),
                    tonic::Code::Unavailable,
                    "{error}"
                );
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // A new request is refused at once, naming each worker's failure.
        match batcher.score(pairs(&[8], 43), None, 0).await {
            Err(Error::Unavailable(message)) => assert!(
                message.contains("cuda:0: its device failed")
                    && message.contains("cuda:1: its device failed"),
                "{message}"
            ),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let stats = batcher.stats();
        assert_eq!(stats.queued_pairs, 0, "{stats:?}");
        assert!(stats.workers.iter().all(|w| w.out_of_service.is_some()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_model_thread_takes_its_worker_out_not_the_scheduler() {
        // Worker 0's model thread has already ended: its device broke on a
        // batch sent to it directly, so its queue is closed.
        let (_gone, gone_client) = breaking_model(0, None).await;
        let answer = gone_client
            .try_reserve()
            .unwrap()
            .unwrap()
            .send(crate::worker::fake::batch_of(&[3]));
        assert!(answer.await.is_ok());
        // The thread ends after that answer: wait until it has, or a batch
        // could still reach it (and fail as a broken device's).
        gone_client.closed().await;
        let (_sound, sound_client) = sound_model().await;
        let batcher = cuda_pair(gone_client, sound_client);
        // Worker 0 refuses the first batch; it goes to worker 1 instead.
        for request in 0..3 {
            let scored = batcher.score(pairs(&[10, 20], 50 + request), None, 0).await;
            assert_eq!(scored.unwrap().scores.len(), 2);
        }
        let stats = batcher.stats();
        assert_eq!(
            stats.workers[0].out_of_service.as_deref(),
            Some("its model thread stopped")
        );
        assert_eq!(stats.workers[1].pairs, 6);
        assert_eq!(*batcher.live_workers().borrow(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_whose_scorer_keeps_failing_is_taken_out_and_a_success_resets_the_count() {
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let switch = Arc::clone(&failing);
        let (_failing, failing_client, ()) = ModelThread::start(move || {
            let mut scorer = FakeScorer::with_limit(usize::MAX);
            scorer.fail_while = Some(switch);
            Ok((scorer, None, ()))
        })
        .await
        .unwrap();
        let (_sound, sound_client) = sound_model().await;
        let config = BatcherConfig {
            max_failed_batches: 3,
            max_queue_delay: Duration::ZERO,
            ..config()
        };
        let batcher = Batcher::start(
            config,
            vec![
                worker("cuda:0", failing_client),
                worker("cuda:1", sound_client),
            ],
        );
        let live = batcher.live_workers();
        // One request at a time: each is one batch, on worker 0 while it serves.
        let mut seed = 60;
        let mut next = |fail: bool| {
            failing.store(fail, Ordering::SeqCst);
            seed += 1;
            batcher.score(pairs(&[10, 12], seed), None, 0)
        };
        let failed = |scored: RequestScores| {
            scored
                .scores
                .iter()
                .all(|s| matches!(s, Err(ScoreError::Failed(_))))
        };
        // Two failures, a batch scored, two more: never 3 in a row.
        for fail in [true, true, false, true, true] {
            let scored = next(fail).await.unwrap();
            assert_eq!(failed(scored), fail);
            assert_eq!(*live.borrow(), 2);
        }
        // The third in a row fails its request, then takes the worker out
        // (before the scheduler takes the next request).
        assert!(failed(next(true).await.unwrap()));
        live.clone().wait_for(|&n| n == 1).await.unwrap();
        // From now on worker 1 scores every request, failing switch or not.
        for _ in 0..3 {
            let scored = next(true).await.unwrap();
            assert!(scored.scores.iter().all(Result::is_ok), "{scored:?}");
        }
        let stats = batcher.stats();
        let out = stats.workers[0].out_of_service.as_deref().unwrap_or("");
        assert!(
            out.contains("its scorer failed 3 batches in a row")
                && out.contains("fake: the model failed"),
            "{stats:?}"
        );
        assert_eq!(stats.workers[0].batches, 6, "{stats:?}");
        assert_eq!(stats.workers[1].pairs, 6, "{stats:?}");
        assert_eq!(stats.queued_pairs, 0);
    }

    /// A worker whose pace was measured at start-up: `secs_per_token` of
    /// model time per token, no batch target.
    fn paced(device: &str, model: ModelClient, secs_per_token: f64) -> Worker {
        Worker {
            speed: Some(Speed {
                target_tokens: usize::MAX,
                secs_per_token,
            }),
            ..worker(device, model)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admission_refuses_what_its_deadline_cannot_cover_behind_the_work_ahead() {
        let (_thread, client, open_gate) = held_model().await;
        // 1 ms a token; batches of at most 16 pairs.
        let batcher = Batcher::start(config(), vec![paced("fake", client, 0.001)]);
        let in_a = |ms| Some(Instant::now() + Duration::from_millis(ms));
        // 90 pairs of 10 tokens: 0.9 s of work, admitted under the
        // --max-queue-time of 60 s; its first batch is held on the model
        // (none is cut ahead of a batch of 160 ms): 160 tokens in flight,
        // 740 queued.
        let large = batcher.score(pairs(&[10; 90], 1), None, 0);
        tokio::pin!(large);
        poll_once(&mut large).await;
        // 30 tokens more go before the queued 740 (less work): 0.16 + 0.03 s.
        assert!(batcher.check(30, in_a(1000), 0).await.is_ok());
        let refused = batcher.check(30, in_a(150), 0).await;
        assert!(
            matches!(refused, Err(Error::TooLate { needed, .. }) if needed == Duration::from_millis(190)),
            "{refused:?}"
        );
        // Another 900 tokens wait behind all of it: 0.16 + 0.74 + 0.9 s.
        let refused = batcher.score(pairs(&[10; 90], 2), in_a(1500), 0).await;
        match refused {
            Err(Error::TooLate {
                needed,
                own,
                retry_after,
                ..
            }) => {
                assert_eq!(needed, Duration::from_millis(1800));
                assert_eq!(own, Duration::from_millis(900));
                // The work ahead drains in 0.9 s; the hint is at least
                // --retry-after's 1 s.
                assert_eq!(retry_after, Duration::from_secs(1));
            }
            other => panic!("{other:?}"),
        }
        // More urgent, it goes before the queued 740 tokens: 1.06 s.
        let urgent = batcher.score(pairs(&[10; 90], 3), in_a(1500), -1);
        tokio::pin!(urgent);
        poll_once(&mut urgent).await;
        let stats = batcher.stats();
        assert_eq!(stats.refused_late, 2, "{stats:?}");
        assert_eq!(stats.queued_pairs, 180, "{stats:?}");
        drop(open_gate);
        assert_eq!(large.await.unwrap().scores.len(), 90);
        assert_eq!(urgent.await.unwrap().scores.len(), 90);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_more_urgent_request_is_scored_first_whatever_its_arrival() {
        let (_thread, client, open_gate) = held_model().await;
        // No queue delay: each request is cut (or queued) as it is admitted;
        // a pace of 1 s a token: no batch is ever cut ahead.
        let config = BatcherConfig {
            max_batch_pairs: 3,
            max_queue_delay: Duration::ZERO,
            ..config()
        };
        let batcher = Batcher::start(config, vec![paced("fake", client, 1.0)]);
        let blocker = batcher.score(pairs(&[10], 1), None, 0);
        tokio::pin!(blocker);
        poll_once(&mut blocker).await;
        let mut queued = Vec::new();
        for (seed, priority) in [(2, 1), (3, 0), (4, -1)] {
            let mut call = Box::pin(batcher.score(pairs(&[10; 3], seed), None, priority));
            poll_once(&mut call).await;
            queued.push(call);
        }
        // A check is answered after every submission before it is admitted.
        batcher.check(1, None, 0).await.unwrap();
        let [less, normal, mut urgent] = <[_; 3]>::try_from(queued).ok().unwrap();
        // Two batches: the blocker, then the urgent request, although the
        // other two arrived first.
        open_gate.send(()).unwrap();
        open_gate.send(()).unwrap();
        let scored = tokio::time::timeout(Duration::from_secs(30), &mut urgent)
            .await
            .unwrap_or_else(|_| panic!("not scored in the second batch: {:?}", batcher.stats()));
        assert_eq!(scored.unwrap().scores.len(), 3);
        let mut normal = normal;
        poll_once(&mut normal).await;
        drop(open_gate);
        assert_eq!(normal.await.unwrap().scores.len(), 3);
        assert_eq!(less.await.unwrap().scores.len(), 3);
        assert_eq!(blocker.await.unwrap().scores.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_stay_under_the_time_target() {
        let (_thread, client) = sound_model().await;
        let config = BatcherConfig {
            batch_target_tokens: 40,
            ..config()
        };
        let batcher = Batcher::start(config, vec![worker("fake", client)]);
        let scored = batcher.score(pairs(&[10; 20], 1), None, 0).await.unwrap();
        assert_eq!(scored.scores.len(), 20);
        let stats = batcher.stats().workers.remove(0);
        assert_eq!(stats.target_tokens, Some(40));
        // 4 pairs of 10 a batch, where memory's budget (2048) allows 16.
        assert_eq!((stats.batches, stats.pairs), (5, 20), "{stats:?}");
    }

    /// Answers no score at all for any batch: a broken promise that only a
    /// bug could make.
    struct Mute;

    impl crate::model::Scorer for Mute {
        fn score(&mut self, _batch: &PaddedBatch) -> Result<Vec<f32>, ScoreError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scheduler_that_panics_takes_every_worker_out_and_says_why() {
        let (_thread, client, ()) = ModelThread::start(|| Ok((Mute, None, ()))).await.unwrap();
        let batcher = Batcher::start(config(), vec![worker("fake", client)]);
        let mut live = batcher.live_workers();
        assert_eq!(*live.borrow(), 1);
        let answer = batcher.score(pairs(&[10; 2], 1), None, 0).await;
        match answer {
            Err(Error::Unavailable(message)) => {
                assert!(message.contains("scheduler stopped"), "{message}");
                assert!(message.contains("panicked"), "{message}");
                assert!(message.contains("answered 0 results"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // Health follows the live workers (serving.rs): 0 is NOT_SERVING.
        tokio::time::timeout(Duration::from_secs(30), live.wait_for(|&n| n == 0))
            .await
            .expect("the live workers go to 0")
            .unwrap();
        let next = batcher.score(pairs(&[10], 2), None, 0).await;
        assert!(
            matches!(&next, Err(Error::Unavailable(m)) if m.contains("panicked")),
            "{next:?}"
        );
        let check = batcher.check(10, None, 0).await;
        assert!(matches!(check, Err(Error::Unavailable(_))), "{check:?}");
    }
}
