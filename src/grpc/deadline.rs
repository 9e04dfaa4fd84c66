//! Client deadlines: reading `grpc-timeout` when a call arrives and stamping
//! the deadline on the request (a unary call then ends with
//! DEADLINE_EXCEEDED through `infer::within` when it passes).
//!
//! Owns: the deadline interceptor and the header's parsing.
//! Must never: answer a call itself (it only stamps the deadline on the
//! request; the handler answers), or let a deadline outlive the client's:
//! rerankd's fires `MARGIN` before tonic's own timer.

use std::time::{Duration, Instant};

use tonic::{Request, Status};

/// How much earlier than the client's deadline a call gives up. tonic's
/// transport runs its own timer on `grpc-timeout` from the moment the
/// headers arrive and answers CANCELLED "Timeout expired" when it fires;
/// ending first lets the client see DEADLINE_EXCEEDED, as the API promises.
pub const MARGIN: Duration = Duration::from_millis(5);

/// A call's deadline, stamped into its extensions by `stamp`.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

/// Interceptor: runs when the headers arrive (before the message is
/// received and decoded, which for a large request takes a while) and
/// stamps the call's deadline, `MARGIN` before the client's.
pub fn stamp(mut request: Request<()>) -> Result<Request<()>, Status> {
    let timeout = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout);
    if let Some(timeout) = timeout {
        let deadline = Instant::now() + timeout.saturating_sub(MARGIN);
        request.extensions_mut().insert(Deadline(deadline));
    }
    Ok(request)
}

/// The deadline `stamp` put on a request, if its client set one.
pub fn of<T>(request: &Request<T>) -> Option<Instant> {
    request.extensions().get::<Deadline>().map(|d| d.0)
}

/// `grpc-timeout` as the gRPC spec writes it: digits and a unit H, M, S,
/// m, u or n (e.g. `250m`).
pub fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_per_the_spec() {
        let check = |text: &str, expected: Option<Duration>| {
            assert_eq!(parse_grpc_timeout(text), expected, "{text:?}");
        };
        check("250m", Some(Duration::from_millis(250)));
        check("3S", Some(Duration::from_secs(3)));
        check("2M", Some(Duration::from_secs(120)));
        check("1H", Some(Duration::from_secs(3600)));
        check("100u", Some(Duration::from_micros(100)));
        check("7n", Some(Duration::from_nanos(7)));
        check("", None);
        check("m", None);
        check("10x", None);
        check("-5S", None);
    }

    #[test]
    fn the_stamped_deadline_is_the_clients_less_the_margin() {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("grpc-timeout", "2S".parse().unwrap());
        let before = Instant::now();
        let stamped = of(&stamp(request).unwrap()).unwrap();
        let after = Instant::now();
        assert!(stamped >= before + Duration::from_secs(2) - MARGIN);
        assert!(stamped <= after + Duration::from_secs(2) - MARGIN);
        assert!(of(&stamp(Request::new(())).unwrap()).is_none());
    }
}
