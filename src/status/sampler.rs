//! The status page's sampler: a task that reads the batcher's stats every
//! interval into the `History` the page's JSON is built from.
//!
//! Owns: the sampling task's life (started with the server, stopped on
//! shutdown and awaited) and the one lock around the history. Must never:
//! hold that lock across an await, keep the model alive (it holds the
//! loaded model weakly, as the metrics do), or do more per tick than copy
//! the stats (no device reads: the controller already has them).

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::history::History;
use crate::infer::Infer;

/// How often the history is sampled, and how much of it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplerConfig {
    pub interval: Duration,
    pub window: Duration,
}

impl SamplerConfig {
    /// Samples kept per worker: one window's worth.
    pub fn capacity(&self) -> usize {
        let interval = self.interval.as_millis().max(1);
        (self.window.as_millis() / interval).max(1) as usize
    }
}

impl Default for SamplerConfig {
    /// A sample every 2 s for 5 minutes: 150 per worker.
    fn default() -> Self {
        SamplerConfig {
            interval: Duration::from_secs(2),
            window: Duration::from_secs(300),
        }
    }
}

/// The history, shared by the sampler (which writes) and the JSON handler
/// (which copies out). A std mutex: each side holds it for a copy, never
/// across an await.
#[derive(Clone)]
pub struct SharedHistory(Arc<Mutex<History>>);

impl SharedHistory {
    pub fn lock(&self) -> MutexGuard<'_, History> {
        // A panic while recording leaves at worst one sample half written;
        // the page is still worth showing.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sampling task. `stop` ends it; dropping it without `stop` aborts it.
pub struct Sampler {
    history: SharedHistory,
    config: SamplerConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `model` (empty while it loads) on the current
    /// runtime.
    pub fn start(model: Weak<OnceLock<Infer>>, config: SamplerConfig) -> Sampler {
        let history = SharedHistory(Arc::new(Mutex::new(History::new(config.capacity()))));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(sample(model, history.clone(), config.interval, stopped));
        Sampler {
            history,
            config,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn history(&self) -> SharedHistory {
        self.history.clone()
    }

    pub fn config(&self) -> SamplerConfig {
        self.config
    }

    /// Ends the task and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn sample(
    model: Weak<OnceLock<Infer>>,
    history: SharedHistory,
    interval: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = ticks.tick() => {}
        }
        // The server is gone once nothing else holds the model.
        let Some(ready) = model.upgrade() else { return };
        let Some(stats) = ready.get().map(Infer::stats) else {
            continue;
        };
        drop(ready);
        history
            .lock()
            .record(unix_ms(SystemTime::now()), &stats.workers);
    }
}

fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_keeps_five_minutes_of_two_second_samples() {
        assert_eq!(SamplerConfig::default().capacity(), 150);
        let odd = SamplerConfig {
            interval: Duration::from_secs(7),
            window: Duration::from_secs(3),
        };
        assert_eq!(odd.capacity(), 1);
    }

    #[tokio::test]
    async fn it_stops_when_told_and_when_the_server_is_gone() {
        let ready = Arc::new(OnceLock::new());
        let config = SamplerConfig {
            interval: Duration::from_millis(1),
            window: Duration::from_millis(10),
        };
        let sampler = Sampler::start(Arc::downgrade(&ready), config);
        sampler.stop().await;
        let mut sampler = Sampler::start(Arc::downgrade(&ready), config);
        drop(ready);
        // The task ends on its own at its next tick: no stop was sent.
        sampler.task.take().unwrap().await.unwrap();
        assert!(sampler.history().lock().worker(0).is_empty());
    }
}
