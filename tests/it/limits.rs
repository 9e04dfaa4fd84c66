//! The limits a hostile client meets, through a real server over
//! 127.0.0.1:0: the in-flight byte budget (a message is charged at its
//! length prefix, before it is buffered; past the budget RESOURCE_EXHAUSTED
//! with retry-after, while small requests still pass), the message read
//! timeout, the handshake timeout and the connection limit (the gRPC and
//! HTTP ports' together).
//!
//! A message held half-sent is written with the h2 crate (`common::bare`),
//! since a gRPC client always sends its messages whole.

use std::net::SocketAddr;
use std::time::Duration;

use rerankd::config::{InferConfig, ServerConfig};
use rerankd::grpc::pb;
use rerankd::grpc::pb::reranker_client::RerankerClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::common::web::Conn;
use crate::common::{
    bare, client, model_config, model_dir, request, start_server_serving, start_servers, test_infer,
};

const MIB: usize = 1 << 20;

/// How long a test waits for what it expects before it fails.
const FAILURE_BOUND: Duration = Duration::from_secs(60);

fn start(infer: InferConfig, server: ServerConfig) -> SocketAddr {
    start_server_serving(
        model_config(model_dir("tiny-bert"), "fp32"),
        infer,
        server,
        |scorer| scorer,
    )
    .unwrap()
}

/// A Rerank request of `documents` documents of `bytes` bytes each.
fn large_request(documents: usize, bytes: usize) -> pb::RerankRequest {
    let document = "lorem ipsum dolor sit amet ".repeat(bytes / 27 + 1)[..bytes].to_string();
    pb::RerankRequest {
        query: "what is held in flight".into(),
        documents: vec![document; documents],
        truncate: Some(true),
        ..Default::default()
    }
}

/// A unary Rerank call on its own HTTP/2 connection whose message is sent
/// in two parts, the second when the test says.
struct HalfSent {
    call: bare::BareCall,
    rest: bytes::Bytes,
}

impl HalfSent {
    async fn start(addr: SocketAddr, message: &pb::RerankRequest, first: usize) -> HalfSent {
        let mut call = bare::start(addr, "/rerank.v1.Reranker/Rerank", &[], message).await;
        let rest = call.frame.split_off(first);
        let head = std::mem::take(&mut call.frame);
        call.send.reserve_capacity(head.len());
        call.send.send_data(head, false).unwrap();
        HalfSent { call, rest }
    }

    /// Sends the rest of the message and returns the call's grpc-status.
    async fn finish(mut self) -> i32 {
        self.call.send.send_data(self.rest, true).unwrap();
        bare::status(self.call.response).await.0
    }
}

/// Waits until the server's Stats say `bytes` are in flight at least.
async fn until_in_flight(addr: SocketAddr, at_least: u64) -> pb::StatsResponse {
    let mut client = client(addr).await;
    tokio::time::timeout(FAILURE_BOUND, async {
        loop {
            let stats = client
                .stats(pb::StatsRequest {})
                .await
                .unwrap()
                .into_inner();
            if stats.inflight_bytes >= at_least {
                return stats;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never {at_least} bytes in flight"))
}

/// One large message half-sent holds its whole length on the budget: a
/// second large one is refused at once with RESOURCE_EXHAUSTED and
/// retry-after, a small one still passes (the reserved eighth), and once
/// the first is answered the budget is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_message_takes_its_length_and_the_next_large_one_is_refused() {
    let addr = start(
        InferConfig {
            max_inflight_bytes: 8 * MIB,
            ..test_infer()
        },
        ServerConfig::default(),
    );
    let held = large_request(100, 60_000); // about 6 MB
    let half = HalfSent::start(addr, &held, 4096).await;
    let stats = until_in_flight(addr, 6_000_000).await;
    assert_eq!(stats.max_inflight_bytes, 8 * MIB as u64);

    let mut client = client(addr).await;
    let refused = client
        .rerank(large_request(40, 50_000))
        .await
        .expect_err("a 2 MB request passed with 6 MB of 8 MiB held");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--max-inflight-bytes"),
        "{refused:?}"
    );
    assert_eq!(refused.metadata().get("retry-after").unwrap(), "1");

    let small = client
        .rerank(request("small", &["an ordinary document", "another one"]))
        .await
        .expect("a small request was refused while a large one was held");
    assert_eq!(small.into_inner().results.len(), 2);

    assert_eq!(
        half.finish().await,
        0,
        "the held request, once sent, failed"
    );
    let after = client
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.inflight_bytes, 0, "bytes left charged: {after:?}");
    client
        .rerank(large_request(40, 50_000))
        .await
        .expect("the 2 MB request, retried once the budget was free");
}

/// A message whose bytes stop coming ends with DEADLINE_EXCEEDED after
/// --message-read-timeout-secs, and its charge is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_stops_arriving_is_ended_and_released() {
    let addr = start(
        test_infer(),
        ServerConfig {
            message_read_timeout: Some(Duration::from_secs(1)),
            ..ServerConfig::default()
        },
    );
    let half = HalfSent::start(addr, &large_request(20, 50_000), 3000).await;
    until_in_flight(addr, 1_000_000).await;
    let (code, _) = tokio::time::timeout(FAILURE_BOUND, bare::status(half.call.response))
        .await
        .expect("the stalled call was never ended");
    assert_eq!(code, Code::DeadlineExceeded as i32);
    let stats = client(addr)
        .await
        .stats(pb::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.inflight_bytes, 0);
}

/// Reads until the server closes the connection; fails the test if it
/// does not within the bound.
async fn closed_by_server(tcp: &mut tokio::net::TcpStream) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(FAILURE_BOUND, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server never closed the connection");
}

/// A connection that never speaks, and one that sends the HTTP/2 preface
/// a byte at a time, are closed by the handshake timeout; meanwhile
/// ordinary calls are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_do_not_speak_are_closed() {
    let addr = start(
        test_infer(),
        ServerConfig {
            handshake_timeout: Some(Duration::from_secs(1)),
            ..ServerConfig::default()
        },
    );
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut trickle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let trickled = tokio::spawn(async move {
        // The load's shape, not a synchronisation: a byte every 250 ms.
        let mut pace = tokio::time::interval(Duration::from_millis(250));
        let mut sent = 0;
        for byte in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
            pace.tick().await;
            if trickle.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
        }
        closed_by_server(&mut trickle).await;
        sent
    });
    closed_by_server(&mut silent).await;
    client(addr)
        .await
        .rerank(request("still served", &["yes"]))
        .await
        .expect("an ordinary call while slow connections were open");
    let sent = trickled.await.unwrap();
    assert!(sent < 24, "the whole preface went through a byte at a time");
}

/// A client whose connection is made at its first call, so that a refused
/// connection is that call's UNAVAILABLE.
fn lazy_client(addr: SocketAddr) -> RerankerClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    RerankerClient::new(channel)
}

/// With --max-connections open, one more connection is closed at once;
/// when one of them closes, a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_over_the_limit_is_closed_until_one_closes() {
    let addr = start(
        test_infer(),
        ServerConfig {
            max_connections: 2,
            ..ServerConfig::default()
        },
    );
    let mut first = client(addr).await;
    let mut second = client(addr).await;
    for open in [&mut first, &mut second] {
        open.rerank(request("q", &["d"])).await.unwrap();
    }
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    closed_by_server(&mut third).await;
    // The client sees its connection closed: tonic reports it as UNKNOWN
    // or CANCELLED ("connection closed"), as the close meets its handshake.
    lazy_client(addr)
        .rerank(request("q", &["d"]))
        .await
        .expect_err("a call on a connection over the limit was answered");
    drop(first);
    // The server sees the close on its own time: each attempt (a new
    // connection and a call) is refused until it has.
    tokio::time::timeout(FAILURE_BOUND, async {
        while lazy_client(addr)
            .rerank(request("q", &["d"]))
            .await
            .is_err()
        {}
    })
    .await
    .expect("no connection was served after one of the limit closed");
    second
        .rerank(request("q", &["d"]))
        .await
        .expect("a connection within the limit stopped being served");
}

/// The HTTP port is under the same limits as the gRPC port: a silent
/// connection to it is closed by the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_http_connections_are_closed() {
    let addrs = start_servers(
        model_config(model_dir("tiny-bert"), "fp32"),
        test_infer(),
        ServerConfig {
            handshake_timeout: Some(Duration::from_secs(1)),
            ..ServerConfig::default()
        },
        |scorer| scorer,
    )
    .unwrap();
    let mut silent = tokio::net::TcpStream::connect(addrs.http).await.unwrap();
    closed_by_server(&mut silent).await;
    assert_eq!(rerank_over(&mut Conn::open(addrs.http).await).await, 200);
}

/// A one-document Cohere v1 rerank on `conn`; its status.
async fn rerank_over(conn: &mut Conn) -> u16 {
    let body = r#"{"query": "q", "documents": ["d"]}"#;
    conn.request("POST", "/v1/rerank", Some(body), &[])
        .await
        .status
}

/// --max-connections counts the gRPC and HTTP ports' connections together:
/// with one gRPC and two HTTP connections open of 3, one more HTTP
/// connection is closed at once; when one closes, a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_grpc_connections_count_against_one_limit() {
    let addrs = start_servers(
        model_config(model_dir("tiny-bert"), "fp32"),
        test_infer(),
        ServerConfig {
            max_connections: 3,
            ..ServerConfig::default()
        },
        |scorer| scorer,
    )
    .unwrap();
    let mut grpc = client(addrs.grpc).await;
    grpc.rerank(request("q", &["d"])).await.unwrap();
    let mut kept = Conn::open(addrs.http).await;
    assert_eq!(rerank_over(&mut kept).await, 200);
    let mut second = Conn::open(addrs.http).await;
    assert_eq!(rerank_over(&mut second).await, 200);
    let mut over = tokio::net::TcpStream::connect(addrs.http).await.unwrap();
    closed_by_server(&mut over).await;
    drop(second);
    // The server sees the close on its own time: each new connection is
    // refused until it has.
    tokio::time::timeout(FAILURE_BOUND, async {
        loop {
            let mut tcp = tokio::net::TcpStream::connect(addrs.http).await.unwrap();
            let sent = tcp
                .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                .await;
            let mut answer = Vec::new();
            if sent.is_ok()
                && tcp.read_to_end(&mut answer).await.is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                break;
            }
        }
    })
    .await
    .expect("no HTTP connection was served after one of the limit closed");
    assert_eq!(rerank_over(&mut kept).await, 200);
    grpc.rerank(request("q", &["d"]))
        .await
        .expect("the gRPC connection within the limit stopped being served");
}
