//! The server's resident memory, read from `/proc/PID/status` (VmRSS) once
//! a second while the soak runs.
//!
//! Owns: reading and parsing VmRSS, and the sampling task. Must never:
//! judge the readings (`report` does), or touch the process beyond reading
//! its status file.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::report::RssSample;

/// How often RSS is read.
pub const EVERY: Duration = Duration::from_secs(1);

/// VmRSS in bytes from the text of `/proc/PID/status`.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next()? {
        "kB" => Some(value * 1024),
        _ => None,
    }
}

/// The process's RSS now; `None` once it has gone (or on a system without
/// `/proc`).
pub fn read(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// Reads `pid`'s RSS every second from `origin` until `stop` turns true;
/// publishes the latest reading on `latest` (for the progress line).
pub async fn sample(
    pid: u32,
    origin: Instant,
    latest: watch::Sender<Option<u64>>,
    mut stop: watch::Receiver<bool>,
) -> Vec<RssSample> {
    let mut ticker = tokio::time::interval_at(origin.into(), EVERY);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let bytes = read(pid);
                latest.send_replace(bytes);
                if let Some(bytes) = bytes {
                    samples.push(RssSample { t_secs: origin.elapsed().as_secs_f64(), bytes });
                }
            }
            _ = stop.changed() => return samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_parsed_from_a_real_status_layout() {
        let status =
            "Name:\trerankd\nVmPeak:\t 3000000 kB\nVmRSS:\t  712340 kB\nRssAnon:\t  600000 kB\n";
        assert_eq!(parse_vm_rss(status), Some(712_340 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let bytes = read(std::process::id()).expect("/proc/self/status has VmRSS");
        assert!(bytes > 1 << 20, "{bytes}");
    }
}
