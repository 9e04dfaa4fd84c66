//! The example clients (examples/python with grpcio, examples/node with
//! @grpc/grpc-js, examples/client.rs in Rust) against a live server on a
//! real port: each runs a unary rerank and a RerankStream with a bad request
//! inside, and checks the answers (scripts/ci/test-clients.sh installs what
//! the Python and Node ones need, cached).

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_and_node_examples_pass_against_a_live_server() {
    let addr = shared_server("tiny-bert", "fp32");
    let run = run_script("scripts/ci/test-clients.sh", vec![addr.to_string()], vec![]).await;
    let log = run.log();
    assert!(run.success, "the example clients failed:\n{log}");
    assert!(log.contains("both clients passed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_example_passes_against_a_live_server() {
    let addr = shared_server("tiny-bert", "fp32");
    // `cargo test` builds the examples next to the test binaries' deps/.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/client");
    assert!(example.is_file(), "{} is missing", example.display());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(example)
            .args(["--addr", &format!("http://{addr}"), "where is the market"])
            .args([
                "a market by the river",
                "a stone bridge",
                "bread and cheese",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("stream: 4 answers, matched by id"),
        "{stdout}"
    );
}
