//! A real `rerankd serve` child process, as an operator starts it: the
//! binary cargo built for these tests, configured through environment
//! variables, on 127.0.0.1:0 for both of its ports, read from its log until
//! it says where it serves.
//!
//! Owns: starting the process and reading its log up to that line. Must
//! never: stop the process (each test stops it its own way), or assert on
//! what it logs.

use std::io::{BufRead, BufReader, Lines};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, Stdio};

use super::model_dir;

/// A `rerankd serve` process, serving.
pub struct Spawned {
    pub child: Child,
    pub addr: SocketAddr,
    /// Its log up to and with the line that says it serves.
    pub seen: Vec<String>,
    /// The rest of its log, to be read (or the pipe fills and the server
    /// blocks on its next log line).
    pub log: Lines<BufReader<ChildStderr>>,
}

/// Starts `rerankd serve` on the test model `model` with `args`, and `env`
/// over these defaults: both ports on 127.0.0.1:0 (not the HTTP default
/// 0.0.0.0:8080, which parallel tests would share), fp32, RUST_LOG=info.
/// Returns once it logs that it serves.
pub fn spawn_rerankd(model: &str, args: &[&str], env: &[(&str, &str)]) -> Spawned {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rerankd"))
        .arg("serve")
        .args(args)
        .env("RERANKD_MODEL", model_dir(model))
        .env("RERANKD_ADDR", "127.0.0.1:0")
        .env("RERANKD_HTTP_ADDR", "127.0.0.1:0")
        .env("RERANKD_DTYPE", "fp32")
        .env("RUST_LOG", "info")
        // As `test_infer`: a crowded machine's start-up pace must not
        // refuse what a test means to run (a test's own `env` wins).
        .env("RERANKD_MAX_QUEUE_TIME_SECS", "3600")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let addr = loop {
        let line = log
            .next()
            .unwrap_or_else(|| panic!("rerankd exited before serving: {seen:#?}"))
            .unwrap();
        let addr = line
            .split("serving rerank.v1.Reranker addr=")
            .nth(1)
            .map(|rest| rest.trim().parse::<SocketAddr>().unwrap());
        seen.push(line);
        if let Some(addr) = addr {
            break addr;
        }
    };
    Spawned {
        child,
        addr,
        seen,
        log,
    }
}
