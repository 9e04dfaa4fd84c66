//! What a Reranker call's request bytes cost while they arrive: each
//! message is charged on the in-flight byte budget as soon as its 5-byte
//! gRPC prefix declares its length (before tonic buffers it), and must
//! arrive whole within `--message-read-timeout-secs` of its first byte.
//!
//! A message past the budget ends the call with RESOURCE_EXHAUSTED and
//! retry-after before its bytes are buffered; one too slow ends with
//! DEADLINE_EXCEEDED. Both travel as the body's error, which tonic hands to
//! the client as the call's status. A message's charge is held until the
//! next message begins or the body is dropped (tonic drops a unary call's
//! body once it has decoded the message); from then on `Infer` charges the
//! decoded request.
//!
//! Owns: the gRPC length-prefix framing as seen from the body, and those
//! two rules. Must never: decode or copy a message (tonic does), or charge a
//! message over `--max-message-bytes` (tonic refuses it at its prefix).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::{http, Bytes, Service};
use tonic::server::NamedService;

use crate::error::Error;
use crate::grpc::service::Ready;
use crate::inflight::{Charge, InflightBytes};

/// The gRPC message prefix: a compression flag and a big-endian u32 length.
const PREFIX: usize = 5;

/// Wraps a service so that every request body it gets is a [`Receiving`].
#[derive(Clone)]
pub struct Receive<S> {
    inner: S,
    ready: Ready,
    max_message_bytes: usize,
    read_timeout: Option<Duration>,
}

impl<S> Receive<S> {
    pub fn new(
        inner: S,
        ready: Ready,
        max_message_bytes: usize,
        read_timeout: Option<Duration>,
    ) -> Self {
        Receive {
            inner,
            ready,
            max_message_bytes,
            read_timeout,
        }
    }
}

impl<S: NamedService> NamedService for Receive<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Receive<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // Before the model is loaded calls get UNAVAILABLE without reading
        // their message: there is no budget yet, and none needed.
        let budget = self.ready.get().map(|infer| Arc::clone(infer.inflight()));
        let (max_message_bytes, read_timeout) = (self.max_message_bytes, self.read_timeout);
        let request = request.map(|body| {
            Body::new(Receiving::new(
                body,
                budget,
                max_message_bytes,
                read_timeout,
            ))
        });
        self.inner.call(request)
    }
}

/// Where the body is in the gRPC framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Reading a prefix; `filled` of its bytes are in.
    Prefix { filled: usize },
    /// Inside a message; this many bytes of it are still to come.
    Message { remaining: usize },
}

/// A request body that charges each message on the budget and times its
/// arrival.
pub struct Receiving {
    inner: Body,
    budget: Option<Arc<InflightBytes>>,
    max_message_bytes: usize,
    read_timeout: Option<Duration>,
    framing: Framing,
    prefix: [u8; PREFIX],
    /// The charge of the message being read, or of the last one read.
    charge: Option<Charge>,
    /// When the message being read must be in by.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    failed: bool,
}

impl Receiving {
    fn new(
        inner: Body,
        budget: Option<Arc<InflightBytes>>,
        max_message_bytes: usize,
        read_timeout: Option<Duration>,
    ) -> Self {
        Receiving {
            inner,
            budget,
            max_message_bytes,
            read_timeout,
            framing: Framing::Prefix { filled: 0 },
            prefix: [0; PREFIX],
            charge: None,
            deadline: None,
            failed: false,
        }
    }

    /// Follows the framing through `data`, charging each message as its
    /// prefix completes and timing it from its first byte.
    fn observe(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            match self.framing {
                Framing::Prefix { filled } => {
                    if filled == 0 {
                        // A new message begins: the last one's charge is
                        // now `Infer`'s to hold.
                        self.charge = None;
                        self.start_timer();
                    }
                    let take = (PREFIX - filled).min(data.len());
                    self.prefix[filled..filled + take].copy_from_slice(&data[..take]);
                    data = &data[take..];
                    let filled = filled + take;
                    if filled < PREFIX {
                        self.framing = Framing::Prefix { filled };
                        continue;
                    }
                    let length = u32::from_be_bytes([
                        self.prefix[1],
                        self.prefix[2],
                        self.prefix[3],
                        self.prefix[4],
                    ]) as usize;
                    self.charge_message(length)?;
                    self.framing = Framing::Message { remaining: length };
                    if length == 0 {
                        self.message_done();
                    }
                }
                Framing::Message { remaining } => {
                    let take = remaining.min(data.len());
                    data = &data[take..];
                    self.framing = Framing::Message {
                        remaining: remaining - take,
                    };
                    if take == remaining {
                        self.message_done();
                    }
                }
            }
        }
        Ok(())
    }

    fn charge_message(&mut self, length: usize) -> Result<(), Error> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        if length > self.max_message_bytes {
            // tonic refuses it at this prefix, before buffering it.
            return Ok(());
        }
        self.charge = Some(budget.charge(PREFIX + length)?);
        Ok(())
    }

    fn message_done(&mut self) {
        self.framing = Framing::Prefix { filled: 0 };
        self.deadline = None;
    }

    fn start_timer(&mut self) {
        self.deadline = self
            .read_timeout
            .map(|timeout| Box::pin(tokio::time::sleep(timeout)));
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        self.failed = true;
        self.charge = None;
        self.deadline = None;
        Poll::Ready(Some(Err(tonic::Status::from(error))))
    }
}

impl HttpBody for Receiving {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        let timeout = this.read_timeout.unwrap_or_default();
                        return this.fail(Error::SlowMessage { timeout });
                    }
                }
                return Poll::Pending;
            }
        };
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                if let Err(error) = this.observe(data) {
                    return this.fail(error);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn receiving(budget: &Arc<InflightBytes>) -> Receiving {
        Receiving::new(Body::empty(), Some(Arc::clone(budget)), 32 * MIB, None)
    }

    fn prefix(length: usize) -> Vec<u8> {
        let mut prefix = vec![0];
        prefix.extend_from_slice(&(length as u32).to_be_bytes());
        prefix
    }

    #[test]
    fn a_message_is_charged_at_its_prefix_even_split_across_frames() {
        let budget = InflightBytes::new(64 * MIB);
        let mut body = receiving(&budget);
        let first = prefix(3 * MIB);
        body.observe(&first[..2]).unwrap();
        assert_eq!(budget.used(), 0);
        body.observe(&first[2..]).unwrap();
        assert_eq!(budget.used(), PREFIX + 3 * MIB);
        body.observe(&vec![7; 3 * MIB - 1]).unwrap();
        assert_eq!(body.framing, Framing::Message { remaining: 1 });
        body.observe(&[7]).unwrap();
        // Held until the next message begins (tonic decodes this one now).
        assert_eq!(budget.used(), PREFIX + 3 * MIB);
        let mut next = prefix(10);
        next.extend_from_slice(&[1; 10]);
        body.observe(&next).unwrap();
        assert_eq!(budget.used(), PREFIX + 10);
        drop(body);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_message_past_the_budget_is_refused_at_its_prefix() {
        let budget = InflightBytes::new(64 * MIB);
        let _held = budget.charge(50 * MIB).unwrap();
        let mut body = receiving(&budget);
        let error = body.observe(&prefix(8 * MIB)).unwrap_err();
        assert!(matches!(error, Error::InflightFull { .. }), "{error:?}");
        assert_eq!(budget.used(), 50 * MIB);
    }

    #[test]
    fn messages_over_the_message_limit_are_left_to_tonic() {
        let budget = InflightBytes::new(64 * MIB);
        let mut body = receiving(&budget);
        body.observe(&prefix(33 * MIB)).unwrap();
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn several_messages_in_one_frame_are_each_followed() {
        let budget = InflightBytes::new(64 * MIB);
        let mut body = receiving(&budget);
        let mut data = Vec::new();
        for length in [0, 3, 100] {
            data.extend(prefix(length));
            data.extend(vec![1; length]);
        }
        body.observe(&data).unwrap();
        assert_eq!(body.framing, Framing::Prefix { filled: 0 });
        assert_eq!(budget.used(), PREFIX + 100);
    }
}
