//! `rerankd bench` as a user runs it: the real binary against a real server
//! (tiny-bert on 127.0.0.1:0), writing its table, JSON report and SVG plot;
//! and a clear failure when nothing listens at the address.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `rerankd bench` with `args` to the end (every request answered).
fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rerankd"))
        .arg("bench")
        .args(args)
        .output()
        .unwrap()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

#[test]
fn bench_drives_a_live_server_and_reports_table_json_and_plot() {
    let addr = crate::common::shared_server("tiny-bert", "fp32");
    let dir = tempfile::tempdir().unwrap();
    let (json_path, plot_path) = (path(dir.path(), "b.json"), path(dir.path(), "b.svg"));
    let output = bench(&[
        "--addr",
        &format!("http://{addr}"),
        "--clients",
        "4",
        "--documents",
        "8",
        "--lengths",
        "long-tail",
        "--requests",
        "40",
        "--json",
        &json_path,
        "--plot",
        &plot_path,
        "--no-progress",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed: {}\n{stdout}\n{stderr}",
        output.status
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let summary = &report["summary"];
    let number = |key: &str| {
        summary[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {summary}"))
    };
    assert_eq!(summary["requests"], 40, "{summary}");
    assert_eq!(summary["pairs"], 320, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["failures"], serde_json::json!({}), "{summary}");
    let latency = &summary["latency_ms"];
    let (p50, p99) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99, "{latency}");
    assert!(number("pairs_per_second") > 0.0);
    let efficiency = number("padding_efficiency");
    assert!(efficiency > 0.0 && efficiency <= 1.0, "{efficiency}");
    assert!(number("batches") >= 1.0);
    assert_eq!(report["model"]["device"], "cpu");
    assert_eq!(report["config"]["lengths"], "long-tail");
    assert_eq!(report["config"]["max_words"], 400);
    let series = report["series"].as_array().unwrap();
    assert!(series.len() >= 2, "{series:?}");
    let first_device = &series[0]["devices"][0];
    assert_eq!(first_device["device"], "cpu");
    assert_eq!(first_device["memory_known"], false);
    assert!(first_device["budget_tokens"].as_u64().unwrap() > 0);
    assert!(series
        .iter()
        .any(|p| p["devices"][0]["pairs_per_batch"].as_f64().is_some()));

    let svg = std::fs::read_to_string(&plot_path).unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"));
    assert!(svg.contains("device memory unknown on cpu"));

    assert!(stdout.contains("model tiny-bert"), "{stdout}");
    for row in [
        "pairs/s",
        "requests/s",
        "latency p50 (ms)",
        "latency p99 (ms)",
        "padding efficiency",
        "mean pairs per batch",
        "out-of-memory batches",
        "failures",
    ] {
        assert!(stdout.contains(row), "the table lacks {row}:\n{stdout}");
    }
}

#[test]
fn bench_against_no_server_fails_with_a_clear_message() {
    // A port that was free a moment ago: bind it, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let json_path = path(dir.path(), "b.json");
    let output = bench(&[
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--requests",
        "1",
        "--json",
        &json_path,
        "--no-progress",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach rerankd at http://127.0.0.1:") && stderr.contains("running"),
        "{stderr}"
    );
    assert!(!Path::new(&json_path).exists());
}
