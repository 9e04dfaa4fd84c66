//! The log writer: every log line goes through a bounded queue to one
//! thread that writes it to stderr, so that a log collector that stops
//! reading (a full pipe) or has gone (a closed pipe: EPIPE) never blocks or
//! fails the code that logs. A line the queue has no room for is dropped
//! and counted, and the count is written once stderr takes lines again.
//!
//! Owns: that thread, the queue and the count of dropped lines. Must never:
//! block, panic or report an error to the code that logs, or drop a line
//! while stderr keeps up (the queue fills only when stderr stalls).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Lines waiting for stderr, at most (a few hundred KB of typical lines).
const QUEUE_LINES: usize = 1024;

/// What the writer thread and the writers share.
struct Shared {
    /// Lines queued and not yet written (or given up on).
    pending: Mutex<usize>,
    /// Signalled when `pending` falls.
    written: Condvar,
    /// Lines dropped since the last note about it.
    dropped: AtomicU64,
}

/// The `MakeWriter` for tracing-subscriber's fmt layer. Cheap to use from
/// any thread: a write is a non-blocking send.
pub struct LossyStderr {
    lines: SyncSender<Vec<u8>>,
    shared: Arc<Shared>,
}

/// Held by `main` until it exits: dropping it waits, a bounded time, for
/// the queued lines to reach stderr (the last lines say how it stopped).
pub struct Flush {
    shared: Arc<Shared>,
    timeout: Duration,
}

/// Starts the writer thread; lines written through the returned writer
/// reach stderr in order.
pub fn lossy_stderr() -> std::io::Result<(LossyStderr, Flush)> {
    let (lines, queued) = sync_channel(QUEUE_LINES);
    let shared = Arc::new(Shared {
        pending: Mutex::new(0),
        written: Condvar::new(),
        dropped: AtomicU64::new(0),
    });
    let writer = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("rerankd-log".into())
        .spawn(move || write_lines(queued, &writer))?;
    let flush = Flush {
        shared: Arc::clone(&shared),
        timeout: Duration::from_secs(1),
    };
    Ok((LossyStderr { lines, shared }, flush))
}

/// The writer thread: writes each line, first noting how many were dropped
/// before it; a failed write is given up (stderr may be closed for good).
fn write_lines(queued: Receiver<Vec<u8>>, shared: &Shared) {
    let mut stderr = std::io::stderr();
    for line in queued {
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let note =
                format!("rerankd: {dropped} log lines dropped: stderr was not taking them\n");
            let _ = stderr.write_all(note.as_bytes());
        }
        let _ = stderr.write_all(&line);
        let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending = pending.saturating_sub(1);
        shared.written.notify_all();
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LossyStderr {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedLine { to: self }
    }
}

/// One event's writer: the fmt layer writes each event's line in one call.
pub struct QueuedLine<'a> {
    to: &'a LossyStderr,
}

impl Write for QueuedLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let shared = &self.to.shared;
        *shared.pending.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        if let Err(error) = self.to.lines.try_send(buf.to_vec()) {
            *shared.pending.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            if let TrySendError::Full(_) = error {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        let pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let _ = self
            .shared
            .written
            .wait_timeout_while(pending, self.timeout, |pending| *pending > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn a_write_never_blocks_and_a_full_queue_counts_what_it_drops() {
        // A queue whose writer thread never runs: nothing is taken off it.
        let (lines, _queued) = sync_channel(2);
        let shared = Arc::new(Shared {
            pending: Mutex::new(0),
            written: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let writer = LossyStderr {
            lines,
            shared: Arc::clone(&shared),
        };
        for line in 0..5 {
            let text = format!("line {line}\n");
            let written = writer.make_writer().write(text.as_bytes()).unwrap();
            assert_eq!(written, text.len());
        }
        assert_eq!(*shared.pending.lock().unwrap(), 2);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 3);
        // Flushing gives up after its timeout.
        drop(Flush {
            shared,
            timeout: Duration::from_millis(10),
        });
    }
}
