//! API keys end to end (issue 16), on real servers on 127.0.0.1:0: every
//! rerank.v1.Reranker call needs `authorization: Bearer <key>` with one of
//! the configured keys (two keys, both accepted), a missing or wrong key is
//! UNAUTHENTICATED with a message that names the header and never echoes
//! the key, health and reflection stay open; the same over TLS and mutual
//! TLS; and the `rerankd` binary, run with keys from a flag, the
//! environment and a file, logs none of them, even at the most verbose
//! level and for a refused call, and refuses to start on an empty key.

use std::net::SocketAddr;
use std::process::Command;

use crate::common::child::{spawn_rerankd, Spawned};
use crate::common::*;
use crate::serving::{pki, tls_channel};
use rerankd::auth::KeySource;
use rerankd::config::ServerConfig;
use rerankd::grpc::pb;
use rerankd::grpc::pb::reranker_client::RerankerClient;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

const KEYS: [&str; 2] = ["key-one-7f3a9c", "key-two-b81e44"];

/// A tiny-bert server whose Reranker needs one of `KEYS`.
fn server_with_keys(config: ServerConfig) -> SocketAddr {
    start_server_serving(
        model_config(model_dir("tiny-bert"), "fp32"),
        test_infer(),
        ServerConfig {
            api_keys: KeySource::keys(KEYS).unwrap(),
            ..config
        },
        |scorer| scorer,
    )
    .unwrap()
}

/// `message` as a call carrying `authorization: <header>`, if any.
fn call<T>(message: T, header: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(header) = header {
        request
            .metadata_mut()
            .insert("authorization", header.parse().unwrap());
    }
    request
}

/// A Rerank call with `header`: the results' count, or the status.
async fn rerank(channel: &Channel, header: Option<&str>) -> Result<usize, tonic::Status> {
    RerankerClient::new(channel.clone())
        .rerank(call(request("q", &["a", "b"]), header))
        .await
        .map(|r| r.into_inner().results.len())
}

/// What a Rerank call with `header` must get: two results (`Ok`), or
/// UNAUTHENTICATED with a message holding `fragment` and not the header's
/// token.
async fn check(channel: &Channel, header: Option<&str>, expected: Result<(), &str>) {
    let outcome = rerank(channel, header).await;
    match expected {
        Ok(()) => assert_eq!(outcome.map_err(|s| s.to_string()), Ok(2), "{header:?}"),
        Err(fragment) => {
            let status = outcome.expect_err("a call without an accepted key was answered");
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{header:?}: {status:?}"
            );
            assert!(status.message().contains(fragment), "{status:?}");
            let token = header.and_then(|h| h.split(' ').nth(1)).unwrap_or("");
            assert!(
                token.is_empty() || !status.message().contains(token),
                "the key was echoed: {status:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reranker_call_needs_a_key_and_health_and_reflection_stay_open() {
    let addr = server_with_keys(ServerConfig::default());
    let channel = channel(addr).await;
    let one = format!("Bearer {}", KEYS[0]);
    let two = format!("bearer {}", KEYS[1]);
    check(&channel, None, Err("requires an API key")).await;
    check(
        &channel,
        Some("Bearer not-a-key-5d2c"),
        Err("not one this server accepts"),
    )
    .await;
    check(
        &channel,
        Some(&format!("Bearer {}x", KEYS[0])),
        Err("not one"),
    )
    .await;
    check(
        &channel,
        Some(&format!("Basic {}", KEYS[0])),
        Err("must read `Bearer <key>`"),
    )
    .await;
    check(&channel, Some(KEYS[0]), Err("must read `Bearer <key>`")).await;
    check(&channel, Some(&one), Ok(())).await;
    check(&channel, Some(&two), Ok(())).await;

    // Every other Reranker method, unary and streaming, is guarded too.
    let mut client = RerankerClient::new(channel.clone());
    let pairs = || pb::ScorePairsRequest {
        pairs: vec![pb::Pair {
            query: "q".into(),
            document: "d".into(),
        }],
        ..Default::default()
    };
    let refused = [
        client
            .model_info(call(pb::ModelInfoRequest::default(), None))
            .await
            .err(),
        client
            .stats(call(pb::StatsRequest::default(), None))
            .await
            .err(),
        client.score_pairs(call(pairs(), None)).await.err(),
        client
            .rerank_stream(call(tokio_stream::iter([request("q", &["a"])]), None))
            .await
            .err(),
        client
            .rerank_progressive(call(request("q", &["a"]), Some("Bearer nope")))
            .await
            .err(),
    ];
    for status in refused {
        let status = status.expect("a guarded method answered a call without a key");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    client
        .model_info(call(pb::ModelInfoRequest::default(), Some(&one)))
        .await
        .unwrap();
    let scored = client.score_pairs(call(pairs(), Some(&two))).await.unwrap();
    assert_eq!(scored.into_inner().scores.len(), 1);
    let mut stream = client
        .rerank_stream(call(
            tokio_stream::iter([request("q", &["a", "b"])]),
            Some(&one),
        ))
        .await
        .unwrap()
        .into_inner();
    let answer = stream.message().await.unwrap().expect("no stream answer");
    assert!(
        matches!(
            answer.outcome,
            Some(pb::rerank_stream_response::Outcome::Response(_))
        ),
        "{answer:?}"
    );

    // Health answers probes that carry no key.
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "rerank.v1.Reranker".into(),
        })
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, ServingStatus::Serving as i32);

    // Reflection serves the public schema without a key (grpcurl lists
    // and describes; its calls then carry the key).
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([
            tonic_reflection::pb::v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    let listed = answers.message().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::ListServicesResponse(list)) = listed else {
        panic!("reflection answered {listed:?}");
    };
    assert!(list.service.iter().any(|s| s.name == "rerank.v1.Reranker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_work_over_tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let good = pki();
    let tls = good.files(dir.path(), false);
    let mutual = good.files(dir.path(), true);
    let identity = Some((good.client_cert.as_str(), good.client_key.as_str()));
    for (files, identity) in [(tls, None), (mutual, identity)] {
        let addr = server_with_keys(ServerConfig {
            tls: Some(files),
            ..ServerConfig::default()
        });
        let channel = tls_channel(addr, &good.ca, identity).await.unwrap();
        check(&channel, None, Err("requires an API key")).await;
        check(&channel, Some("Bearer wrong-9e1d"), Err("not one")).await;
        check(&channel, Some(&format!("Bearer {}", KEYS[1])), Ok(())).await;
    }
}

/// A `rerankd serve` process, serving.
struct Running {
    child: std::process::Child,
    addr: SocketAddr,
    /// The HTTP API's address.
    http: SocketAddr,
    /// Its log until it served.
    seen: Vec<String>,
    /// Reads the rest of its log on its own thread, so the pipe never fills.
    rest: std::thread::JoinHandle<Vec<String>>,
}

/// `rerankd serve` on tiny-bert with `args` and `env`, logging everything
/// (RUST_LOG=trace), once it serves.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut all = vec![("RERANKD_DRAIN_DELAY_SECS", "0"), ("RUST_LOG", "trace")];
    all.extend_from_slice(env);
    let Spawned {
        child,
        addr,
        seen,
        log,
    } = spawn_rerankd("tiny-bert", args, &all);
    let http = seen
        .iter()
        .find(|line| line.contains("serving the HTTP API"))
        .and_then(|line| line.split("addr=").nth(1))
        .map(|rest| rest.trim().parse::<SocketAddr>().unwrap())
        .unwrap_or_else(|| panic!("no HTTP address in {seen:#?}"));
    let rest = std::thread::spawn(move || log.map_while(Result::ok).collect());
    Running {
        child,
        addr,
        http,
        seen,
        rest,
    }
}

/// SIGTERM; once it has exited 0, its whole log.
async fn stop(running: Running) -> Vec<String> {
    let Running {
        mut child,
        seen,
        rest,
        ..
    } = running;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "rerankd exited with {status}");
    let rest = tokio::task::spawn_blocking(move || rest.join().unwrap())
        .await
        .unwrap();
    seen.into_iter().chain(rest).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_never_logs_a_key_even_at_trace_level() {
    let flag_key = "flag-key-0c4f2e9b";
    let env_key = "env-key-93ab17d0";
    let file_key = "file-key-5e60d2a7";
    let wrong_key = "wrong-key-d4c3b2a1";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, format!("# the team's key\n{file_key}\n")).unwrap();
    let file = file.to_str().unwrap();

    // Keys from the flag and the file (the variable is read only without
    // the flag: the second run covers it).
    let first = spawn(
        &["--api-key", flag_key, "--api-key-file", file],
        &[("RERANKD_API_KEY", env_key)],
    );
    let channel = channel(first.addr).await;
    check(&channel, Some(&format!("Bearer {flag_key}")), Ok(())).await;
    check(&channel, Some(&format!("Bearer {file_key}")), Ok(())).await;
    check(&channel, Some(&format!("Bearer {env_key}")), Err("not one")).await;
    check(
        &channel,
        Some(&format!("Bearer {wrong_key}")),
        Err("not one"),
    )
    .await;
    check(&channel, None, Err("requires an API key")).await;
    let rerank_body = r#"{"query": "q", "documents": ["a", "b"]}"#;
    let ok = http_call(
        first.http,
        "POST /v1/rerank",
        Some(&format!("Bearer {file_key}")),
        rerank_body,
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let refused = http_call(
        first.http,
        "POST /v2/rerank",
        Some(&format!("Bearer {wrong_key}")),
        rerank_body,
    )
    .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let mut log = stop(first).await;

    let both = format!("{env_key},{flag_key}");
    let second = spawn(&[], &[("RERANKD_API_KEY", &both)]);
    let channel = crate::common::channel(second.addr).await;
    check(&channel, Some(&format!("Bearer {env_key}")), Ok(())).await;
    check(&channel, Some(&format!("Bearer {flag_key}")), Ok(())).await;
    check(
        &channel,
        Some(&format!("Bearer {wrong_key}")),
        Err("not one"),
    )
    .await;
    log.extend(stop(second).await);

    let text = log.join("\n");
    // The log is the whole run's: start-up, the calls, the refusals (four
    // over gRPC, one over HTTP).
    assert!(text.contains("api_keys=2"), "no key count in the log");
    assert_eq!(
        text.matches("refused a call without an accepted API key")
            .count(),
        5,
        "the refusals are not all in the log"
    );
    for key in [flag_key, env_key, file_key, wrong_key] {
        assert!(!text.contains(key), "the log holds {key}");
    }
    // Nor the hex of one (a debug print of bytes).
    assert!(!text.contains("0c4f2e9b") && !text.contains("d4c3b2a1"));
}

/// Runs `rerankd serve` (on a model directory that does not exist: these
/// fail before it matters) with `args` and `env`; its exit status and
/// stderr and stdout.
fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_rerankd"))
        .args([
            "serve",
            "--model",
            "/no/such/model",
            "--addr",
            "127.0.0.1:0",
        ])
        .env("RERANKD_HTTP_ADDR", "off")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn empty_keys_and_keyless_files_stop_start_up_and_help_hides_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let empty_file = dir.path().join("keys");
    std::fs::write(&empty_file, "# no key yet\n\n").unwrap();
    for (args, env, fragment) in [
        (
            vec![],
            vec![("RERANKD_API_KEY", "")],
            "is RERANKD_API_KEY set but empty",
        ),
        (
            vec![],
            vec![("RERANKD_API_KEY", "a,,b")],
            "may not be empty",
        ),
        (vec!["--api-key", ""], vec![], "may not be empty"),
        (vec!["--api-key", "has space"], vec![], "only visible ASCII"),
        (
            vec!["--api-key-file", empty_file.to_str().unwrap()],
            vec![],
            "holds no key",
        ),
    ] {
        let (ok, text) = run_binary(&args, &env);
        assert!(!ok, "{args:?} {env:?} started");
        assert!(text.contains(fragment), "{args:?} {env:?}: {text}");
        assert!(!text.contains("has space"), "the key was echoed: {text}");
    }
    let (ok, help) = run_binary(&["--help"], &[("RERANKD_API_KEY", "help-key-31f0")]);
    assert!(ok);
    assert!(
        help.contains("RERANKD_API_KEY") && help.contains("--api-key-file"),
        "{help}"
    );
    assert!(
        !help.contains("help-key-31f0"),
        "--help shows the key: {help}"
    );
}

/// Runs scripts/ci/test-auth-clients.sh (grpcio; with `http`, the Cohere
/// SDK too) against `grpc` with the first key; its output, having passed.
async fn run_auth_clients(grpc: SocketAddr, http: Option<String>) -> String {
    let mut args = vec!["--grpc".to_string(), grpc.to_string()];
    if let Some(url) = http {
        args.extend(["--http".to_string(), url]);
    }
    let env = vec![("RERANKD_TEST_API_KEY".into(), KEYS[0].into())];
    let run = run_script("scripts/ci/test-auth-clients.sh", args, env).await;
    let log = run.log();
    assert!(run.success, "the auth clients failed:\n{log}");
    assert!(log.contains("every check passed"), "{log}");
    assert!(!log.contains(KEYS[0]), "the script printed the key:\n{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcio_client_passes_with_the_key_and_is_refused_without() {
    let addr = server_with_keys(ServerConfig::default());
    let log = run_auth_clients(addr, None).await;
    assert_eq!(log.matches("PASS: grpc").count(), 4, "{log}");
}

/// A tiny-bert server with `KEYS`, serving gRPC and the HTTP API: their
/// addresses.
fn server_with_http() -> (SocketAddr, SocketAddr) {
    let addrs = start_servers(
        model_config(model_dir("tiny-bert"), "fp32"),
        test_infer(),
        ServerConfig {
            api_keys: KeySource::keys(KEYS).unwrap(),
            ..ServerConfig::default()
        },
        |scorer| scorer,
    )
    .unwrap();
    (addrs.grpc, addrs.http)
}

/// One HTTP/1.1 request over a fresh connection: `line` is the method and
/// path, `authorization` the header's value, if any.
async fn http_call(
    addr: SocketAddr,
    line: &str,
    authorization: Option<&str>,
    body: &str,
) -> web::Answer {
    let (method, path) = line.split_once(' ').unwrap();
    let headers: Vec<(&str, &str)> = authorization
        .map(|value| ("Authorization", value))
        .into_iter()
        .collect();
    web::Conn::open(addr)
        .await
        .request(method, path, Some(body), &headers)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_rerank_routes_and_info_need_a_key_and_health_and_metrics_stay_open() {
    let (grpc, http) = server_with_http();
    // Over gRPC as before, on the same server.
    check(&channel(grpc).await, None, Err("requires an API key")).await;

    let routes = [
        (
            "POST /v1/rerank",
            r#"{"query": "q", "documents": ["a", "b"]}"#,
        ),
        (
            "POST /v2/rerank",
            r#"{"model": "m", "query": "q", "documents": ["a", "b"]}"#,
        ),
        ("POST /rerank", r#"{"query": "q", "texts": ["a", "b"]}"#),
        ("GET /info", ""),
    ];
    let one = format!("Bearer {}", KEYS[0]);
    let two = format!("bearer {}", KEYS[1]);
    for (line, body) in routes {
        for (authorization, fragment) in [
            (None, "requires an API key"),
            (Some("Bearer wrong-key-0a7c"), "not one this server accepts"),
            (Some(KEYS[0]), "must read `Bearer <key>`"),
        ] {
            let answer = http_call(http, line, authorization, body).await;
            assert_eq!(answer.status, 401, "{line} {authorization:?}: {answer:?}");
            assert_eq!(
                answer.header("www-authenticate"),
                Some("Bearer"),
                "{answer:?}"
            );
            let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
            let message = json["message"].as_str().unwrap();
            assert!(message.contains(fragment), "{line}: {message}");
            assert!(!answer.body.contains("wrong-key-0a7c") && !answer.body.contains(KEYS[0]));
        }
        for key in [&one, &two] {
            let answer = http_call(http, line, Some(key), body).await;
            assert_eq!(answer.status, 200, "{line}: {answer:?}");
        }
    }
    for line in ["GET /health", "GET /metrics"] {
        let answer = http_call(http, line, None, "").await;
        assert_eq!(answer.status, 200, "{line}: {answer:?}");
    }
    let unknown = http_call(http, "GET /nowhere", None, "").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cohere_sdk_gets_its_unauthorized_error_on_a_wrong_key_and_reranks_with_the_key() {
    let (grpc, http) = server_with_http();
    let log = run_auth_clients(grpc, Some(format!("http://{http}"))).await;
    assert_eq!(log.matches("PASS: cohere").count(), 4, "{log}");
    assert!(
        log.contains("PASS: cohere v2: a wrong key gets UnauthorizedError (401)"),
        "{log}"
    );
}
