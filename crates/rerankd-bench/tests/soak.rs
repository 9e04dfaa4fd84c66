//! The `rerankd-soak` binary where no server is needed: its flags, and the
//! failure when nothing listens at the address or the pid is not a process.
//! A soak against a live server is `scripts/bench/soak.sh --ci`, which
//! `scripts/test.sh` runs.
//!
//! Must never: start a server or need a model (this crate builds and tests
//! without libtorch).

use std::path::Path;
use std::process::{Command, Output};

fn soak(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rerankd-soak"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_flags_with_their_variables() {
    let output = soak(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--server-pid",
        "--minutes",
        "--rate",
        "--load-fraction",
        "--max-rss-growth-pct",
        "RERANKD_SOAK_MINUTES",
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
    let json_path = dir.path().join("soak.json");
    let output = soak(&[
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--minutes",
        "0.1",
        "--json",
        json_path.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot reach rerankd at http://127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!Path::new(&json_path).exists());
}
