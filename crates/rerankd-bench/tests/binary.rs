//! The `rerankd-bench` binary as a user runs it, where no libtorch is
//! needed: its flags, and the failure when nothing listens at the address.
//! Runs against a live server are `tests/it/bench.rs` at the repository
//! root (through `rerankd bench`, which calls the same `run`).
//!
//! Must never: start a server or need a model (this crate builds and tests
//! without libtorch).

use std::path::Path;
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rerankd-bench"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_flags_with_their_variables() {
    let output = bench(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--addr",
        "--clients",
        "--lengths",
        "--requests",
        "--json",
        "--plot",
        "RERANKD_BENCH_CLIENTS",
    ] {
        assert!(help.contains(flag), "the help lacks {flag}:\n{help}");
    }
}

#[test]
fn against_no_server_it_fails_with_a_clear_message_and_writes_nothing() {
    // A port that was free a moment ago: bind it, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("b.json");
    let output = bench(&[
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--requests",
        "1",
        "--json",
        json_path.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot reach rerankd at http://127.0.0.1:{port}"))
            && stderr.contains("running"),
        "{stderr}"
    );
    assert!(!Path::new(&json_path).exists());
}
