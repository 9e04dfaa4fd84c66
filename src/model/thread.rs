//! The model thread: one dedicated OS thread that owns the `Scorer` and runs
//! every batch, and `ModelClient`, the cheap `Clone` handle that async code
//! uses to send it batches.
//!
//! Owns: the scorer's lifetime (built on the thread, dropped on the thread)
//! and the job channel. Must never: run on a tokio worker (the thread is a
//! plain `std::thread`), die on a scoring error or panic (each job gets its
//! own `Result`), run a job whose requester has gone, or let one job's
//! failure reach another job.

use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{PaddedBatch, ScoreError, Scorer};
use crate::batcher::split::{score_splitting, SplitRecord};
use crate::error::Error;
use crate::gpu::{MemoryProbe, MemoryReading};

/// Room for the batch computing (until the thread takes it) and the one
/// waiting behind it: the scheduler keeps at most two unanswered batches per
/// model thread, so it always finds room.
const JOB_QUEUE: usize = 2;

/// What the model thread answers for one batch.
#[derive(Debug)]
pub struct ScoredBatch {
    /// One result per row: a batch that ran out of memory was split and
    /// retried, so only a row that cannot fit alone carries an error.
    pub scores: Vec<Result<f32, ScoreError>>,
    /// Building tensors, the forward pass, and copying scores back.
    pub inference: Duration,
    /// Out-of-memory attempts and splits while scoring it.
    pub record: SplitRecord,
    /// The device's memory right after it, when a probe exists.
    pub reading: Option<MemoryReading>,
}

struct Job {
    batch: PaddedBatch,
    reply: oneshot::Sender<ScoredBatch>,
}

/// Sends batches to the model thread.
#[derive(Clone)]
pub struct ModelClient {
    jobs: mpsc::Sender<Job>,
}

/// A reserved place in the model thread's queue.
pub struct ModelPermit<'a> {
    permit: mpsc::Permit<'a, Job>,
}

impl ModelPermit<'_> {
    /// Hands `batch` to the model thread; the answer comes on the receiver.
    pub fn send(self, batch: PaddedBatch) -> oneshot::Receiver<ScoredBatch> {
        let (reply, answer) = oneshot::channel();
        self.permit.send(Job { batch, reply });
        answer
    }
}

impl ModelClient {
    /// A place in the model thread's queue if one is free now; `Ok(None)`
    /// when it is full.
    pub fn try_reserve(&self) -> Result<Option<ModelPermit<'_>>, Error> {
        match self.jobs.try_reserve() {
            Ok(permit) => Ok(Some(ModelPermit { permit })),
            Err(mpsc::error::TrySendError::Full(())) => Ok(None),
            Err(mpsc::error::TrySendError::Closed(())) => {
                Err(Error::Unavailable("the model thread has stopped".into()))
            }
        }
    }
}

/// Scores one batch, splitting it on out-of-memory; a panic inside the
/// scorer (a bug, or an unwrap deep in tch) fails this batch only, and the
/// thread keeps serving.
fn score_one<S: Scorer>(
    scorer: &mut S,
    batch: &PaddedBatch,
) -> (Vec<Result<f32, ScoreError>>, SplitRecord) {
    let mut record = SplitRecord::default();
    let scored = std::panic::catch_unwind(AssertUnwindSafe(|| {
        score_splitting(scorer, batch, &mut record)
    }));
    if !record.out_of_memory.is_empty() {
        tracing::warn!(
            pairs = batch.pairs,
            padded_tokens = batch.padded_tokens(),
            out_of_memory_at = ?record.out_of_memory,
            splits = record.splits,
            "out of memory: batch split and retried"
        );
    }
    let scores = scored.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        tracing::error!(%message, "the scorer panicked; failing this batch only");
        vec![
            Err(ScoreError::Failed(
                "the model failed unexpectedly on this batch".into()
            ));
            batch.pairs
        ]
    });
    (scores, record)
}

/// The running model thread; its owner joins it on drop.
pub struct ModelThread {
    join: Option<JoinHandle<()>>,
}

impl ModelThread {
    /// Starts the thread: `build` runs on it (loading, warm-up) and its
    /// report comes back before any job is taken.
    pub async fn start<S, R, F>(build: F) -> Result<(ModelThread, ModelClient, R), Error>
    where
        S: Scorer + 'static,
        R: Send + 'static,
        F: FnOnce() -> Result<(S, Option<Box<dyn MemoryProbe>>, R), Error> + Send + 'static,
    {
        let (jobs, mut incoming) = mpsc::channel::<Job>(JOB_QUEUE);
        let (ready, started) = oneshot::channel();
        let join = std::thread::Builder::new()
            .name("rerankd-model".into())
            .spawn(move || {
                // Grad mode is per thread: no autograd bookkeeping for serving.
                let _no_grad = tch::no_grad_guard();
                let (mut scorer, mut probe) = match build() {
                    Ok((scorer, probe, report)) => {
                        if ready.send(Ok(report)).is_err() {
                            return;
                        }
                        (scorer, probe)
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                while let Some(job) = incoming.blocking_recv() {
                    // The requester has gone (cancelled, timed out): skip the work.
                    if job.reply.is_closed() {
                        continue;
                    }
                    let started = Instant::now();
                    let (scores, record) = score_one(&mut scorer, &job.batch);
                    let inference = started.elapsed();
                    let reading = probe.as_mut().and_then(|probe| probe.read().ok());
                    let _ = job.reply.send(ScoredBatch {
                        scores,
                        inference,
                        record,
                        reading,
                    });
                }
            })
            .map_err(|e| Error::ModelLoad(format!("cannot start the model thread: {e}")))?;
        let thread = ModelThread { join: Some(join) };
        match started.await {
            Ok(Ok(report)) => Ok((thread, ModelClient { jobs }, report)),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::ModelLoad(
                "the model thread died while loading the model".into(),
            )),
        }
    }
}

impl Drop for ModelThread {
    /// Joins the thread, which ends once every `ModelClient` is dropped and
    /// the last job is answered. Drop the clients first (the server does), or
    /// this waits for them.
    fn drop(&mut self) {
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}
