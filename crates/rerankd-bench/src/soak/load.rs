//! The soak's three ways of sending: a closed loop that measures the peak
//! (each client sends its next call when the last is answered), one client
//! alone (the alone phase: one call at a time, each size class's time
//! alone), and an open loop at a fixed rate (call n is due at start + n /
//! rate, whether or not earlier calls were answered, so a slow server shows
//! as latency and not as less load).
//!
//! Owns: when calls are sent, over which connection, and recording how
//! each ended. Must never: decide what a call sends (`mix`) or how it is
//! made (`calls`), or hold a lock across an await.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::calls;
use super::mix::Mix;
use super::report::{CallRecord, Phase, Recorder};
use crate::driver::Client;

/// What every call of a soak shares.
#[derive(Clone)]
pub struct Load {
    /// The connections; call `n` goes over `connections[n % len]`.
    pub connections: Arc<Vec<Client>>,
    pub mix: Arc<Mix>,
    /// A std mutex: held only to push a record, never across an await.
    pub recorder: Arc<Mutex<Recorder>>,
    /// When the soak began: record times count from here.
    pub origin: Instant,
    /// The deadline of calls without a short one of their own.
    pub deadline: Duration,
}

impl Load {
    /// Makes call `index` over connection `n`, as due at `due`, and records it.
    async fn call(&self, phase: Phase, index: u64, n: usize, due: Instant) {
        let planned = self.mix.call(index);
        let sent = planned.call.pairs_sent();
        let client = self.connections[n % self.connections.len()].clone();
        let outcome = calls::make(client, planned.call, self.deadline).await;
        let record = CallRecord {
            index,
            phase,
            kind: planned.kind,
            priority: planned.priority,
            pairs: outcome.pairs(sent),
            tokens: outcome.tokens(),
            t_secs: due.saturating_duration_since(self.origin).as_secs_f64(),
            latency_us: due.elapsed().as_micros() as u64,
            code: outcome.code,
        };
        self.recorder
            .lock()
            .expect("a call panicked holding the recorder")
            .record(record, &outcome.message);
    }
}

/// `clients` closed-loop clients for `secs`, making calls from
/// `first_index` on; returns the calls per second answered in the second
/// half (the first half fills the pipeline: no call ends before one
/// latency has passed, which would understate the peak).
pub async fn closed_loop(load: &Load, clients: usize, first_index: u64, secs: f64) -> f64 {
    let start = Instant::now();
    let half = start + Duration::from_secs_f64(secs / 2.0);
    let end = start + Duration::from_secs_f64(secs);
    let tickets = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut running = JoinSet::new();
    for client in 0..clients {
        let (load, tickets, answered) = (load.clone(), tickets.clone(), answered.clone());
        running.spawn(async move {
            while Instant::now() < end {
                let ticket = tickets.fetch_add(1, Ordering::Relaxed);
                load.call(Phase::Peak, first_index + ticket, client, Instant::now())
                    .await;
                if (half..=end).contains(&Instant::now()) {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(finished) = running.join_next().await {
        if let Err(error) = finished {
            std::panic::resume_unwind(error.into_panic());
        }
    }
    answered.load(Ordering::Relaxed) as f64 / (secs / 2.0)
}

/// The alone phase: calls `indices` one after the other over the first
/// connection, each timed from when it is sent, until all are answered or
/// `secs` have passed (the call in flight then still ends). Returns the
/// calls made.
pub async fn alone(load: &Load, indices: &[u64], secs: f64) -> usize {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut made = 0;
    for &index in indices {
        if Instant::now() >= end {
            break;
        }
        load.call(Phase::Alone, index, 0, Instant::now()).await;
        made += 1;
    }
    made
}

/// The open-loop schedule: `warmup_secs` then `measured_secs` at `rate`
/// calls per second from `start`, as one unbroken schedule (the phase of a
/// call is the part its due time falls in). A call due while
/// `max_in_flight` calls are unanswered is skipped and counted. Returns
/// once every call sent has ended.
pub struct OpenLoop {
    pub rate: f64,
    pub start: Instant,
    pub warmup_secs: f64,
    pub measured_secs: f64,
    pub max_in_flight: usize,
    pub first_index: u64,
}

impl OpenLoop {
    pub fn measure_start(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.warmup_secs)
    }

    pub fn end(&self) -> Instant {
        self.start + Duration::from_secs_f64(self.warmup_secs + self.measured_secs)
    }

    /// When call `n` is due.
    fn due(&self, n: u64) -> Instant {
        self.start + Duration::from_secs_f64(n as f64 / self.rate)
    }

    pub async fn run(&self, load: &Load) {
        let (measure_start, end) = (self.measure_start(), self.end());
        let mut running = JoinSet::new();
        for n in 0.. {
            let due = self.due(n);
            if due >= end {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            while let Some(finished) = running.try_join_next() {
                if let Err(error) = finished {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
            if running.len() >= self.max_in_flight {
                load.recorder
                    .lock()
                    .expect("a call panicked holding the recorder")
                    .skipped += 1;
                continue;
            }
            let phase = if due < measure_start {
                Phase::Warmup
            } else {
                Phase::Measured
            };
            let load = load.clone();
            let index = self.first_index + n;
            running.spawn(async move { load.call(phase, index, n as usize, due).await });
        }
        while let Some(finished) = running.join_next().await {
            if let Err(error) = finished {
                std::panic::resume_unwind(error.into_panic());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_fixed_by_the_rate() {
        let start = Instant::now();
        let schedule = OpenLoop {
            rate: 4.0,
            start,
            warmup_secs: 10.0,
            measured_secs: 60.0,
            max_in_flight: 1,
            first_index: 0,
        };
        assert_eq!(schedule.due(0), start);
        assert_eq!(schedule.due(10) - start, Duration::from_millis(2500));
        assert_eq!(schedule.measure_start() - start, Duration::from_secs(10));
        assert_eq!(schedule.end() - start, Duration::from_secs(70));
    }
}
