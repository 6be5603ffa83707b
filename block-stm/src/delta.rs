//! Commutative, bounded integer deltas.
//!
//! A transaction that only adds to or subtracts from a value (a fee vault, a receiver's balance, a
//! counter) writes a [`Delta`] instead of reading and rewriting the value. Deltas of different
//! transactions do not conflict, so paying fees into one vault does not serialize a block.
//!
//! Each delta carries a bound. Whether every delta of a block stays within its bound, applied in
//! block order, is checked exactly when the block's final state is computed; a violation is an
//! error for the block ([`BlockError::DeltaOutOfBounds`](crate::BlockError::DeltaOutOfBounds)),
//! reported identically by the sequential and the parallel executor. A VM that wants to act on
//! whether a delta fits (for example, to fail a transfer for insufficient funds) asks
//! [`TransactionView::delta_fits`](crate::TransactionView::delta_fits) first.

/// A bounded change of an integer value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delta {
    /// Add `amount`; the result must not exceed `max`.
    Add {
        /// How much to add.
        amount: u128,
        /// The largest value the result may have.
        max: u128,
    },
    /// Subtract `amount`; the result must not fall below `min`.
    Sub {
        /// How much to subtract.
        amount: u128,
        /// The smallest value the result may have.
        min: u128,
    },
}

impl Delta {
    /// Adds `amount`, bounded only by `u128::MAX`.
    #[must_use]
    pub const fn add(amount: u128) -> Self {
        Self::Add { amount, max: u128::MAX }
    }

    /// Subtracts `amount`, bounded below by zero.
    #[must_use]
    pub const fn sub(amount: u128) -> Self {
        Self::Sub { amount, min: 0 }
    }

    /// The delta applied to `value`, or `None` if the result leaves the bounds.
    #[must_use]
    pub fn apply(self, value: u128) -> Option<u128> {
        match self {
            Self::Add { amount, max } => value.checked_add(amount).filter(|result| *result <= max),
            Self::Sub { amount, min } => value.checked_sub(amount).filter(|result| *result >= min),
        }
    }
}

/// The sum of a run of deltas, ignoring their bounds, exact in any order.
///
/// Speculative reads resolve a chain of deltas with it in one pass, from the newest entry down
/// (or, for the hot key, its versions' deltas and then its credits in block order). The sum is
/// kept in 256 bits, so that no partial sum saturates whatever the order of the deltas (a block
/// holds fewer than 2^32 of them, each below 2^128): when every delta of the chain is within its
/// bounds (which the final check guarantees for any result that is kept), applying it gives the
/// value the deltas give one by one in block order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NetDelta {
    negative: bool,
    /// The magnitude's high and low 128 bits.
    high: u128,
    low: u128,
}

impl NetDelta {
    /// Adds one more delta of the chain.
    pub(crate) fn push(&mut self, delta: Delta) {
        let (negative, amount) = match delta {
            Delta::Add { amount, .. } => (false, amount),
            Delta::Sub { amount, .. } => (true, amount),
        };
        if negative == self.negative || (self.high, self.low) == (0, 0) {
            self.negative = negative;
            let (low, carry) = self.low.overflowing_add(amount);
            // INVARIANT: fewer than 2^32 deltas of less than 2^128 each.
            self.high += u128::from(carry);
            self.low = low;
        } else if self.high == 0 && amount > self.low {
            self.negative = negative;
            self.low = amount - self.low;
        } else {
            let (low, borrow) = self.low.overflowing_sub(amount);
            self.high -= u128::from(borrow);
            self.low = low;
        }
    }

    /// `base` changed by the sum, saturating at `0` and `u128::MAX`.
    pub(crate) fn apply_to(self, base: u128) -> u128 {
        match (self.negative, self.high) {
            (true, 0) => base.saturating_sub(self.low),
            (true, _) => 0,
            (false, 0) => base.saturating_add(self.low),
            (false, _) => u128::MAX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_respects_its_maximum() {
        assert_eq!(Delta::Add { amount: 5, max: 10 }.apply(5), Some(10));
        assert_eq!(Delta::Add { amount: 6, max: 10 }.apply(5), None);
        assert_eq!(Delta::add(1).apply(u128::MAX), None);
    }

    #[test]
    fn sub_respects_its_minimum() {
        assert_eq!(Delta::sub(5).apply(5), Some(0));
        assert_eq!(Delta::sub(6).apply(5), None);
        assert_eq!(Delta::Sub { amount: 1, min: 3 }.apply(3), None);
    }

    #[test]
    fn net_delta_is_exact_when_no_bound_is_crossed() {
        let mut net = NetDelta::default();
        for delta in [Delta::add(10), Delta::sub(3), Delta::sub(20), Delta::add(1)] {
            net.push(delta);
        }
        assert_eq!(net.apply_to(100), 100 + 10 - 3 - 20 + 1);
        let mut cancelled = NetDelta::default();
        cancelled.push(Delta::add(7));
        cancelled.push(Delta::sub(7));
        assert_eq!(cancelled.apply_to(3), 3);
    }

    #[test]
    fn net_delta_handles_the_full_u128_range() {
        let mut net = NetDelta::default();
        net.push(Delta::add(u128::MAX));
        net.push(Delta::sub(u128::MAX));
        net.push(Delta::add(u128::MAX));
        assert_eq!(net.apply_to(0), u128::MAX);
        net.push(Delta::sub(1));
        assert_eq!(net.apply_to(1), u128::MAX);
    }

    #[test]
    fn net_delta_does_not_depend_on_the_order_of_its_deltas() {
        // MAX, then -MAX, +MAX, -MAX in block order is 0; summed as the hot key's reads sum
        // them (its versions' subtractions first, then its credits) it must be 0 too, which a
        // sum saturating at 128 bits (-2 MAX kept as -MAX, then + MAX) made MAX.
        let mut net = NetDelta::default();
        for delta in [Delta::sub(u128::MAX), Delta::sub(u128::MAX), Delta::add(u128::MAX)] {
            net.push(delta);
        }
        assert_eq!(net.apply_to(u128::MAX), 0);
        let mut net = NetDelta::default();
        for delta in
            [Delta::add(u128::MAX), Delta::add(u128::MAX), Delta::add(2), Delta::sub(u128::MAX)]
        {
            net.push(delta);
        }
        assert_eq!(net.apply_to(0), u128::MAX, "MAX + 2, saturated only once applied");
        net.push(Delta::sub(u128::MAX));
        assert_eq!(net.apply_to(0), 2);
        net.push(Delta::sub(3));
        assert_eq!(net.apply_to(5), 4);
        assert_eq!(net.apply_to(0), 0);
    }
}
