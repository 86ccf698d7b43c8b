//! [`ByteBudget`]: a process-wide bound on bytes held for requests in flight, so that no
//! number of connections or streams can add up past the memory the webhook is given.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes reserved by requests or answers in flight, at most `max` (one reservation alone
/// always fits, so a single large request is never refused for being large).
#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicUsize,
    max: usize,
}

/// Bytes of a [`ByteBudget`], given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<ByteBudget>,
    len: usize,
}

impl ByteBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// Reserves `len` bytes, unless that would take the budget past its bound.
    pub fn try_reserve(self: &Arc<Self>, len: usize) -> Option<Reservation> {
        let before = self.used.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before.saturating_add(len) > self.max {
            self.used.fetch_sub(len, Ordering::AcqRel);
            return None;
        }
        Some(Reservation {
            budget: self.clone(),
            len,
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.len, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::ByteBudget;

    #[test]
    fn reservations_stay_within_the_bound_and_come_back() {
        let budget = ByteBudget::new(100);
        let big = budget.try_reserve(300).expect("one alone always fits");
        assert!(budget.try_reserve(1).is_none());
        drop(big);
        let a = budget.try_reserve(60).unwrap();
        let b = budget.try_reserve(40).unwrap();
        assert!(budget.try_reserve(1).is_none());
        assert_eq!(budget.used(), 100);
        drop((a, b));
        assert_eq!(budget.used(), 0);
    }
}
