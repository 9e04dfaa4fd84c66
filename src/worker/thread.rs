//! The model thread: one dedicated OS thread that owns the `Scorer` and runs
//! every batch, and `ModelClient`, the cheap `Clone` handle that async code
//! uses to send it batches.
//!
//! Owns: the scorer's lifetime (built on the thread, dropped on the thread)
//! and the job channel. Must never: run on a tokio worker (the thread is a
//! plain `std::thread`), die on a scoring error or panic (each job gets its
//! own `Result`), run a job whose requester has gone, let one job's failure
//! reach another job — except a broken device: once a batch reports a
//! sticky CUDA error (`ScoreError::DeviceFailed`) the thread runs nothing
//! more, answers every job already queued to it with that error, closes its
//! queue and ends.

use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::split::{score_splitting, SplitRecord};
use crate::error::Error;
use crate::gpu::{MemoryProbe, MemoryReading};
use crate::malloc::{Trim, TRIM_EVERY};
use crate::model::{PaddedBatch, ScoreError, Scorer};

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
    /// Resolves once the model thread has stopped taking jobs (tests wait
    /// on it instead of racing the thread's exit).
    #[cfg(test)]
    pub async fn closed(&self) {
        self.jobs.closed().await
    }

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

/// The sticky device error among a batch's results, if any.
fn device_failure(scores: &[Result<f32, ScoreError>]) -> Option<ScoreError> {
    scores.iter().find_map(|score| match score {
        Err(error @ ScoreError::DeviceFailed(_)) => Some(error.clone()),
        _ => None,
    })
}

/// After the device broke: closes the queue (a reservation now fails, so
/// the scheduler sees the thread stop) and answers every job already in it
/// with `error`, unscored.
fn refuse_the_rest(incoming: &mut mpsc::Receiver<Job>, error: &ScoreError) {
    incoming.close();
    while let Some(job) = incoming.blocking_recv() {
        let _ = job.reply.send(ScoredBatch {
            scores: vec![Err(error.clone()); job.batch.pairs],
            inference: Duration::ZERO,
            record: SplitRecord::default(),
            reading: None,
        });
    }
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
                let mut trim = Trim::new(TRIM_EVERY);
                while let Some(job) = incoming.blocking_recv() {
                    // The requester has gone (cancelled, timed out): skip the work.
                    if job.reply.is_closed() {
                        continue;
                    }
                    let started = Instant::now();
                    let (scores, record) = score_one(&mut scorer, &job.batch);
                    let inference = started.elapsed();
                    let broken = device_failure(&scores);
                    let reading = probe.as_mut().and_then(|probe| probe.read().ok());
                    let _ = job.reply.send(ScoredBatch {
                        scores,
                        inference,
                        record,
                        reading,
                    });
                    // After the answer, so no batch waits for it.
                    trim.after_batch();
                    if let Some(error) = broken {
                        refuse_the_rest(&mut incoming, &error);
                        break;
                    }
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
    /// this waits for them. While a panic unwinds, the thread is left to the
    /// process's exit instead: the clients may live in tasks that will never
    /// end, and a join would hang the process (it did, ignoring SIGTERM,
    /// when logging panicked on a closed stderr).
    fn drop(&mut self) {
        if let Some(join) = self.join.take() {
            if !std::thread::panicking() {
                let _ = join.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::fake::{batch_of, FakeScorer};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_device_answers_what_is_queued_and_the_thread_ends() {
        let (open_gate, gate) = std::sync::mpsc::channel();
        let (thread, client, ()) = ModelThread::start(move || {
            let mut scorer = FakeScorer::with_limit(usize::MAX);
            scorer.gate = Some(gate);
            scorer.break_after = Some(0);
            Ok((scorer, None, ()))
        })
        .await
        .unwrap();
        // The first job holds the thread at the gate; the second queues.
        let first = client
            .try_reserve()
            .unwrap()
            .unwrap()
            .send(batch_of(&[4, 5]));
        let second = client.try_reserve().unwrap().unwrap().send(batch_of(&[6]));
        open_gate.send(()).unwrap();
        let first = first.await.unwrap();
        assert_eq!(first.scores.len(), 2);
        assert!(first
            .scores
            .iter()
            .all(|s| matches!(s, Err(ScoreError::DeviceFailed(_)))));
        // Answered with the same error without running: the gate was opened
        // once, so a second forward pass would still be waiting.
        let second = second.await.unwrap();
        assert_eq!(second.scores, vec![first.scores[0].clone()]);
        assert_eq!(second.inference, Duration::ZERO);
        // The queue is closed and the thread has ended (joining it returns
        // while this client is still alive).
        assert!(client.try_reserve().is_err());
        tokio::task::spawn_blocking(move || drop(thread))
            .await
            .unwrap();
    }
}
