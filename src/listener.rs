//! The accepted connections of the gRPC and HTTP ports: at most
//! `--max-connections` open at once across both (one more is closed as soon
//! as it is accepted), and each must send its first bytes (the HTTP/2
//! preface, a TLS ClientHello, or an HTTP/1.1 request line) within
//! `--handshake-timeout-secs`, so connections that never speak, or speak a
//! byte at a time, cannot pile up. tonic takes an `Incoming` as a stream,
//! axum as a `Listener`.
//!
//! Owns: accepting, the open-connection count, the handshake timer.
//! Must never: read or change a byte of what passes (it only counts the
//! first ones), or stop the accept loop on a failed accept.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The HTTP/2 client preface is 24 bytes; a TLS ClientHello and an
/// HTTP/1.1 request's line and Host header are longer.
const HANDSHAKE_BYTES: usize = 24;

/// The limits a listener applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Option<Duration>,
}

/// The limits and the one open-connection count that a server's ports
/// share.
#[derive(Debug, Clone)]
pub struct Connections {
    limits: Limits,
    open: Arc<AtomicUsize>,
}

impl Connections {
    pub fn new(limits: Limits) -> Self {
        Connections {
            limits,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The connections `listener` accepts, counted with every other port's.
    pub fn incoming(&self, listener: TcpListener) -> Incoming {
        Incoming {
            listener,
            limits: self.limits,
            open: Arc::clone(&self.open),
        }
    }
}

/// Accepted connections, as tonic's `serve_with_incoming` and
/// `axum::serve` take them.
pub struct Incoming {
    listener: TcpListener,
    limits: Limits,
    open: Arc<AtomicUsize>,
}

impl Stream for Incoming {
    type Item = io::Result<Guarded>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let (stream, peer) = match this.listener.poll_accept(cx) {
                Poll::Ready(Ok(accepted)) => accepted,
                // tonic logs a failed accept and goes on.
                Poll::Ready(Err(error)) => return Poll::Ready(Some(Err(error))),
                Poll::Pending => return Poll::Pending,
            };
            match Slot::take(&this.open, this.limits.max_connections) {
                Some(slot) => {
                    let _ = stream.set_nodelay(true);
                    let guarded = Guarded::new(stream, peer, slot, this.limits.handshake_timeout);
                    return Poll::Ready(Some(Ok(guarded)));
                }
                None => refuse(stream, peer, this.limits.max_connections),
            }
        }
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            match std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await {
                Some(Ok(guarded)) => {
                    let peer = guarded.peer;
                    return (guarded, peer);
                }
                Some(Err(error)) => accept_failed(error).await,
                // The accept loop never ends the stream.
                None => continue,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// As axum's own listener does: a connection's own failure is skipped; any
/// other (a full file table) is logged and the next accept waits a second,
/// rather than spinning.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting an HTTP connection failed; the next try is in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Closes a connection over the limit at once: its client sees the
/// connection reset (UNAVAILABLE) and may retry or go to another replica.
fn refuse(stream: TcpStream, peer: SocketAddr, max_connections: usize) {
    tracing::warn!(
        %peer,
        max_connections,
        "refused a connection: --max-connections are open"
    );
    drop(stream);
}

/// One open connection's place in the count, given back on drop.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(Arc::clone(open)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection that holds its slot and times its handshake.
pub struct Guarded {
    stream: TcpStream,
    peer: SocketAddr,
    _slot: Slot,
    /// Bytes read so far, counted up to `HANDSHAKE_BYTES`.
    read: usize,
    handshake: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Guarded {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        slot: Slot,
        handshake_timeout: Option<Duration>,
    ) -> Self {
        Guarded {
            stream,
            peer,
            _slot: slot,
            read: 0,
            handshake: handshake_timeout.map(|t| Box::pin(tokio::time::sleep(t))),
        }
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Some(handshake) = this.handshake.as_mut() {
            this.read += buf.filled().len() - before;
            if this.read >= HANDSHAKE_BYTES {
                this.handshake = None;
            } else if polled.is_pending() && handshake.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection did not send its first bytes within \
                     --handshake-timeout-secs",
                )));
            }
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
