//! The in-flight byte budget: how many bytes of requests the server holds at
//! once — a message while it arrives, then its text and the token ids made
//! from it until it is answered — bounded by `--max-inflight-bytes`.
//!
//! The rule: a charge is admitted while the total stays within the limit,
//! and a large one (over 1/64 of the limit) only while the total stays
//! within 7/8 of it. The last eighth is kept for small requests, so a storm
//! of the largest requests never shuts out ordinary ones. A request larger
//! than 7/8 of the limit alone can never be admitted, and is told so.
//!
//! Owns: the count and that rule. Must never: wait (a request past the
//! budget is refused at once, with a retry-after, and never queued), or know
//! how the bytes arrive (gRPC frames are `grpc::receive`'s business).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

/// What a refused request is told to wait before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The server's one budget, shared by the transport and `Infer`.
#[derive(Debug)]
pub struct InflightBytes {
    limit: usize,
    used: AtomicUsize,
}

impl InflightBytes {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(InflightBytes {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The most a charge of `bytes` in all may bring the total to.
    fn ceiling(&self, bytes: usize) -> usize {
        if bytes > self.limit / 64 {
            self.limit - self.limit / 8
        } else {
            self.limit
        }
    }

    /// Charges `bytes`, released when the returned `Charge` is dropped.
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Result<Charge, Error> {
        let mut charge = Charge {
            budget: Arc::clone(self),
            bytes: 0,
        };
        charge.grow(bytes)?;
        Ok(charge)
    }

    /// Adds `more` to a charge that holds `held`, judged on their sum.
    fn add(&self, held: usize, more: usize) -> Result<(), Error> {
        let total = held.saturating_add(more);
        let ceiling = self.ceiling(total);
        if total > ceiling {
            return Err(Error::TooLarge(format!(
                "the request needs {total} bytes in flight (its text and token ids), more than \
                 this server takes for one request ({ceiling} bytes, 7/8 of \
                 --max-inflight-bytes); send fewer or shorter documents"
            )));
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                // `used` includes `held`: the charge's own bytes count once.
                let after = used.checked_add(more)?;
                (after <= ceiling).then_some(after)
            })
            .map(|_| ())
            .map_err(|used| Error::InflightFull {
                bytes: more,
                in_flight: used,
                limit: self.limit,
                retry_after: RETRY_AFTER,
            })
    }
}

/// Bytes held against the budget until dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<InflightBytes>,
    bytes: usize,
}

impl Charge {
    /// Charges `more` bytes on top of this charge (the rule is judged on the
    /// charge's total: a request that grows large counts as large).
    pub fn grow(&mut self, more: usize) -> Result<(), Error> {
        self.budget.add(self.bytes, more)?;
        self.bytes += more;
        Ok(())
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn charges_are_released_when_dropped() {
        let budget = InflightBytes::new(64 * MIB);
        let a = budget.charge(10 * MIB).unwrap();
        let mut b = budget.charge(MIB).unwrap();
        b.grow(MIB).unwrap();
        assert_eq!(budget.used(), 12 * MIB);
        drop(a);
        assert_eq!(budget.used(), 2 * MIB);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn large_charges_stop_at_seven_eighths_and_small_ones_use_the_rest() {
        let budget = InflightBytes::new(64 * MIB);
        let _large: Vec<Charge> = (0..7).map(|_| budget.charge(8 * MIB).unwrap()).collect();
        assert_eq!(budget.used(), 56 * MIB);
        let refused = budget.charge(2 * MIB).unwrap_err();
        let Error::InflightFull {
            bytes,
            in_flight,
            limit,
            ..
        } = refused
        else {
            panic!("{refused:?}")
        };
        assert_eq!((bytes, in_flight, limit), (2 * MIB, 56 * MIB, 64 * MIB));
        // Small requests (at most 1 MiB here) fill the reserved eighth.
        let _small: Vec<Charge> = (0..8).map(|_| budget.charge(MIB).unwrap()).collect();
        assert_eq!(budget.used(), 64 * MIB);
        assert!(matches!(budget.charge(1), Err(Error::InflightFull { .. })));
    }

    #[test]
    fn a_charge_that_grows_large_is_judged_as_large() {
        let budget = InflightBytes::new(64 * MIB);
        let _large: Vec<Charge> = (0..7).map(|_| budget.charge(8 * MIB).unwrap()).collect();
        let mut growing = budget.charge(MIB).unwrap();
        assert!(matches!(growing.grow(MIB), Err(Error::InflightFull { .. })));
        // A refused growth leaves the charge as it was.
        assert_eq!(growing.bytes(), MIB);
        assert_eq!(budget.used(), 57 * MIB);
    }

    #[test]
    fn a_request_too_large_for_any_moment_is_told_to_shrink() {
        let budget = InflightBytes::new(64 * MIB);
        let error = budget.charge(57 * MIB).unwrap_err();
        assert!(
            matches!(&error, Error::TooLarge(m) if m.contains("--max-inflight-bytes")),
            "{error:?}"
        );
        assert_eq!(budget.used(), 0);
    }
}
