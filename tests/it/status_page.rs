//! The status page (`GET /` on the HTTP port) in a real headless Chromium,
//! against a live server: the page shows what `/status.json` says (model,
//! device, a worker's token budget), and its form ranks documents in the
//! order gRPC `Rerank` does, inserting their text as text; on a server that
//! requires an API key, the form shows the refusal without one and ranks
//! with the key typed into its field.
//!
//! The browser is Debian's (scripts/ci/install-chromium.sh installs it when
//! it is missing), driven by tests/browser/status_page.mjs, which prints
//! what it read as JSON. Owns: the assertions on that report. Must never:
//! reach outside 127.0.0.1, or wait by sleeping (the driver waits on
//! conditions in the page).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use rerankd::auth::KeySource;
use rerankd::config::ServerConfig;
use serde_json::Value;

use crate::common;

fn install_chromium(root: &Path) {
    let status = Command::new("bash")
        .arg(root.join("scripts/ci/install-chromium.sh"))
        .status()
        .expect("running scripts/ci/install-chromium.sh");
    assert!(status.success(), "installing Chromium failed: {status}");
}

const KEY: &str = "status-page-key-5d1e";

/// GRPC `Rerank`'s order of the documents' indices.
fn grpc_order(addr: SocketAddr, query: &str, documents: &[&str]) -> Vec<u32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = common::client(addr).await;
        let mut request = tonic::Request::new(common::request(query, documents));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
        let response = client.rerank(request).await.unwrap().into_inner();
        response.results.iter().map(|r| r.index).collect()
    })
}

#[test]
fn the_status_page_shows_the_live_server_and_ranks_from_its_form() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    install_chromium(root);
    // A server of its own: no other test's traffic moves the budget
    // between the page's read and the JSON's.
    let addrs = common::start_servers(
        common::model_config(common::model_dir("tiny-bert"), "f32"),
        common::test_infer(),
        ServerConfig {
            api_keys: KeySource::keys([KEY]).unwrap(),
            ..ServerConfig::default()
        },
        |scorer| scorer,
    )
    .unwrap();
    let (grpc, http) = (addrs.grpc, addrs.http);
    let query = "how do cats sleep";
    let documents = [
        "Cats sleep for twelve to sixteen hours a day, mostly in short naps.",
        "The stock market closed higher on Tuesday.",
        "<b>bold</b> & \"quoted\" <script>alert(1)</script> text stays text",
        "A kitten curls up in a warm spot to nap.",
    ];
    let temp = tempfile::tempdir().unwrap();
    let screenshot = temp.path().join("status.png");
    let input = serde_json::json!({ "query": query, "documents": documents, "api_key": KEY });
    let output = Command::new("node")
        .arg(root.join("tests/browser/status_page.mjs"))
        .arg(format!("http://{http}/"))
        .arg(&screenshot)
        .arg(input.to_string())
        .output()
        .expect("running node");
    assert!(
        output.status.success(),
        "the browser script failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the browser's report is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let (shown, json, ranked) = (&report["shown"], &report["json"], &report["ranked"]);

    // No script error, and nothing refused by the page's policy (an
    // external asset would be): the one error logged is the network's for
    // the form's call without a key.
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.iter().all(|problem| {
            let problem = problem.as_str().unwrap();
            problem.starts_with("network:") && problem.contains("401")
        }),
        "{report:#}"
    );

    // Without the key, the page shows the server's message, never the key.
    let refused = report["withoutKey"].as_str().unwrap();
    assert!(
        refused.contains("requires an API key") && !refused.contains(KEY),
        "{report:#}"
    );

    // What the page shows is what the JSON says.
    // The exporter's name for the test model: "tiny-bert (random-init ...)".
    assert!(
        json["model"].as_str().unwrap().starts_with("tiny-bert"),
        "{json:#}"
    );
    assert_eq!(shown["model"], json["model"], "{report:#}");
    assert_eq!(json["devices"], serde_json::json!(["cpu"]), "{json:#}");
    assert_eq!(shown["devices"], "cpu", "{report:#}");
    assert_eq!(shown["precision"], json["precision"], "{report:#}");
    let workers = shown["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{report:#}");
    let worker = &json["workers"][0];
    assert!(worker["budget_tokens"].as_u64().unwrap() > 0, "{json:#}");
    assert_eq!(workers[0]["device"], worker["device"], "{report:#}");
    assert_eq!(
        workers[0]["budget"].as_str().unwrap(),
        worker["budget_tokens"].to_string(),
        "{report:#}"
    );
    // CPU: no memory reading, and the page says so rather than a number.
    assert_eq!(worker["memory"]["known"], false, "{json:#}");
    assert!(
        workers[0]["free"].as_str().unwrap().contains("not known"),
        "{report:#}"
    );
    assert_eq!(workers[0]["serving"], "in service", "{report:#}");
    assert_eq!(workers[0]["charts"], 6, "{report:#}");
    assert!(
        !worker["history"].as_array().unwrap().is_empty(),
        "{json:#}"
    );

    // The form's ranking is gRPC's, each document's text shown as text.
    let expected = grpc_order(grpc, query, &documents);
    let results = ranked["results"].as_array().unwrap();
    let shown_order: Vec<u32> = results
        .iter()
        .map(|r| r["index"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(shown_order, expected, "{report:#}");
    for result in results {
        let index = result["index"].as_u64().unwrap() as usize;
        assert_eq!(result["text"], documents[index], "{report:#}");
        let score: f64 = result["score"].as_str().unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "{report:#}");
    }
    let tags: Vec<&str> = ranked["elementsInResults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.iter().all(|t| *t == "SPAN"),
        "markup from a document was inserted: {tags:?}"
    );

    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.len() > 1000, "the screenshot is {} bytes", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    eprintln!(
        "status page screenshot: {} ({} bytes)",
        screenshot.display(),
        png.len()
    );
}
