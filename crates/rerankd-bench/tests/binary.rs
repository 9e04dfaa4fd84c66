//! The crate's binaries, `rerankd-bench`, `rerankd-soak` and
//! `rerankd-contention`, as a user runs them, where no libtorch is needed:
//! their flags, and the failure when nothing listens at the address. Runs
//! against a live server are `tests/it/bench.rs` at the repository root
//! (through `rerankd bench`, which calls the same `run`),
//! `scripts/bench/soak.sh --ci`, which `scripts/test.sh` runs, and
//! `scripts/bench/contention.sh --ci`.
//!
//! Must never: start a server or need a model (this crate builds and tests
//! without libtorch).

use std::path::Path;
use std::process::{Command, Output};

const BENCH: &str = env!("CARGO_BIN_EXE_rerankd-bench");
const SOAK: &str = env!("CARGO_BIN_EXE_rerankd-soak");
const CONTENTION: &str = env!("CARGO_BIN_EXE_rerankd-contention");

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(binary).args(args).output().unwrap()
}

/// `binary --help` succeeds and names each of `flags`.
fn help_lists(binary: &str, flags: &[&str]) {
    let output = run(binary, &["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in flags {
        assert!(help.contains(flag), "the help lacks {flag}:\n{help}");
    }
}

/// Runs `binary --addr A ARGS --json F --no-progress` against an address
/// nothing listens at: it must fail, say it cannot reach rerankd there, and
/// write no JSON. Its stderr.
fn against_no_server(binary: &str, args: &[&str]) -> String {
    // A port that was free a moment ago: bind it, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("results.json");
    let addr = format!("127.0.0.1:{port}");
    let mut all = vec!["--addr", &addr];
    all.extend_from_slice(args);
    all.extend(["--json", json_path.to_str().unwrap(), "--no-progress"]);
    let output = run(binary, &all);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.contains(&format!("cannot reach rerankd at http://{addr}")),
        "{stderr}"
    );
    assert!(!Path::new(&json_path).exists());
    stderr
}

#[test]
fn bench_help_lists_the_flags_with_their_variables() {
    help_lists(
        BENCH,
        &[
            "--addr",
            "--clients",
            "--lengths",
            "--requests",
            "--json",
            "--plot",
            "RERANKD_BENCH_CLIENTS",
        ],
    );
}

#[test]
fn soak_help_lists_the_flags_with_their_variables() {
    help_lists(
        SOAK,
        &[
            "--server-pid",
            "--minutes",
            "--rate",
            "--load-fraction",
            "--max-rss-growth-pct",
            "RERANKD_SOAK_MINUTES",
        ],
    );
}

#[test]
fn contention_help_lists_the_flags_with_their_variables() {
    help_lists(
        CONTENTION,
        &[
            "--addr",
            "--ci",
            "--small-documents",
            "--small-alone-calls",
            "--small-interval-ms",
            "--small-priority",
            "--large-clients",
            "--large-documents",
            "--large-priority",
            "--large-alone-secs",
            "--mixed-secs",
            "--deadline-secs",
            "--seed",
            "--json",
            "RERANKD_CONTENTION_MIXED_SECS",
        ],
    );
}

#[test]
fn bench_against_no_server_fails_with_a_clear_message_and_writes_nothing() {
    let stderr = against_no_server(BENCH, &["--requests", "1"]);
    assert!(stderr.contains("running"), "{stderr}");
}

#[test]
fn soak_against_no_server_fails_with_a_clear_message_and_writes_nothing() {
    against_no_server(SOAK, &["--minutes", "0.1"]);
}

#[test]
fn contention_against_no_server_fails_with_a_clear_message_and_writes_nothing() {
    against_no_server(CONTENTION, &["--ci"]);
}
