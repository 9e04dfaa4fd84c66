//! The accepted connections: at most `--max-connections` open at once (one
//! more is closed as soon as it is accepted), and each must send its first
//! bytes (the HTTP/2 preface, or a TLS ClientHello) within
//! `--handshake-timeout-secs`, so connections that never speak, or speak a
//! byte at a time, cannot pile up.
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

/// The HTTP/2 client preface is 24 bytes; a TLS ClientHello is longer.
const HANDSHAKE_BYTES: usize = 24;

/// The limits a listener applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub handshake_timeout: Option<Duration>,
}

/// Accepted connections, as tonic's `serve_with_incoming` takes them.
pub struct Incoming {
    listener: TcpListener,
    limits: Limits,
    open: Arc<AtomicUsize>,
}

impl Incoming {
    pub fn new(listener: TcpListener, limits: Limits) -> Self {
        Incoming {
            listener,
            limits,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }
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
                    let guarded = Guarded::new(stream, slot, this.limits.handshake_timeout);
                    return Poll::Ready(Some(Ok(guarded)));
                }
                None => refuse(stream, peer, this.limits.max_connections),
            }
        }
    }
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
    _slot: Slot,
    /// Bytes read so far, counted up to `HANDSHAKE_BYTES`.
    read: usize,
    handshake: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Guarded {
    fn new(stream: TcpStream, slot: Slot, handshake_timeout: Option<Duration>) -> Self {
        Guarded {
            stream,
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
