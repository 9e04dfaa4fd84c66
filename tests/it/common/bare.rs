//! A unary gRPC call over bare HTTP/2 (the h2 crate): no client-side
//! deadline timer, and the message's bytes sent when the test says, which
//! no gRPC client allows. Owns: framing a message and reading the status.
//! Must never: retry or time a call.

use std::net::SocketAddr;

use prost::Message;

/// A call whose headers are sent; its framed message is the test's to send.
pub struct BareCall {
    pub send: h2::SendStream<bytes::Bytes>,
    /// The 5-byte gRPC prefix and the encoded message.
    pub frame: bytes::Bytes,
    pub response: h2::client::ResponseFuture,
}

/// Opens its own connection and sends the call's headers (`headers` beside
/// the gRPC ones).
pub async fn start(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    message: &impl Message,
) -> BareCall {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, send) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    let encoded = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    frame.extend_from_slice(&encoded);
    BareCall {
        send,
        frame: bytes::Bytes::from(frame),
        response,
    }
}

/// The call's grpc-status and grpc-message, from a trailers-only answer's
/// headers or from the trailers after its body.
pub async fn status(response: h2::client::ResponseFuture) -> (i32, String) {
    let (head, mut body) = response.await.unwrap().into_parts();
    let headers = match head.headers.get("grpc-status") {
        Some(_) => head.headers,
        None => {
            while let Some(chunk) = body.data().await {
                chunk.unwrap();
            }
            body.trailers().await.unwrap().expect("no trailers")
        }
    };
    let code = headers["grpc-status"].to_str().unwrap().parse().unwrap();
    let message = headers
        .get("grpc-message")
        .map(|m| m.to_str().unwrap().to_string())
        .unwrap_or_default();
    (code, message)
}
