//! The `rerankd` binary as an operator runs it: configured through environment
//! variables, logging what it loaded, serving on the port it reports, and
//! exiting 0 on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_from_env_answers_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rerankd"))
        .arg("serve")
        .env("RERANKD_MODEL", model_dir("tiny-bert"))
        .env("RERANKD_ADDR", "127.0.0.1:0")
        .env("RERANKD_DTYPE", "fp32")
        .env("RERANKD_DRAIN_DELAY_SECS", "0.2")
        .env("RUST_LOG", "info")
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
        if let Some(rest) = line.split("serving rerank.v1.Reranker addr=").nth(1) {
            break rest.trim().parse::<std::net::SocketAddr>().unwrap();
        }
        seen.push(line);
    };
    let loaded = seen
        .iter()
        .find(|l| l.contains("model loaded and warmed up"))
        .expect("no start-up report");
    for fragment in ["tiny-bert", "device=cpu", "dtype=fp32", "warmup_ms="] {
        assert!(loaded.contains(fragment), "{loaded}");
    }

    let mut client = client(addr).await;
    let response = client
        .rerank(request("query", &["a document", "another"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 2);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Wait off the runtime: the client's connection task must keep running
    // to answer the server's GOAWAY.
    let pid = child.id();
    let waited = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::task::spawn_blocking(move || child.wait().unwrap()),
    )
    .await;
    let Ok(status) = waited else {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("rerankd did not exit within 120 s of SIGTERM");
    };
    let status = status.unwrap();
    assert!(status.success(), "rerankd exited with {status}");
    let rest: Vec<String> = log.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:#?}");
}

#[test]
fn help_explains_every_flag_and_its_env_var() {
    let output = Command::new(env!("CARGO_BIN_EXE_rerankd"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for env in [
        "RERANKD_MODEL",
        "RERANKD_ADDR",
        "RERANKD_DEVICES",
        "RERANKD_DTYPE",
        "RERANKD_THREADS",
        "RERANKD_MAX_MESSAGE_BYTES",
        "RERANKD_MIN_PADDING_EFFICIENCY",
        "RERANKD_MAX_DOCUMENT_BYTES",
    ] {
        assert!(help.contains(env), "--help lacks {env}:\n{help}");
    }
}

/// Runs `rerankd serve` on a model directory that does not exist, with
/// `env` added; returns its stderr once it has failed (as it must).
fn serve_missing_model(env: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_rerankd"))
        .args([
            "serve",
            "--model",
            "/no/such/model",
            "--addr",
            "127.0.0.1:0",
        ])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_model_dir_fails_start_up_with_a_message() {
    let stderr = serve_missing_model(&[]);
    assert!(
        stderr.contains("/no/such/model") && stderr.contains("export_model.py"),
        "{stderr}"
    );
}

#[test]
fn the_old_device_variable_is_refused_not_ignored() {
    // A deployment that still sets RERANKD_DEVICE=cuda must not quietly
    // serve on the CPU.
    let stderr = serve_missing_model(&[("RERANKD_DEVICE", "cuda")]);
    assert!(stderr.contains("RERANKD_DEVICES"), "{stderr}");
}
