//! The transactions the node acknowledged and then dropped without including them, with why:
//! replaced, evicted from a full pool, expired above a nonce gap, rejected by a block, made
//! stale when another transaction used their nonce, or refused when the node restarted.
//!
//! An acknowledged transaction is either included in a block or dropped for a stated reason:
//! `duet_transactionStatus` (JSON-RPC) and the Move API's `GET /move/v1/transactions/{hash}`
//! say which. The log is kept in memory, for the last [`DROPPED_KEPT`] transactions dropped
//! since the node started (a restart states its own drops again as it restores the pool).

use std::collections::{HashMap, VecDeque};

use alloy_primitives::B256;
use parking_lot::Mutex;

/// How many dropped transactions the log remembers.
pub const DROPPED_KEPT: usize = 65_536;

/// Why and when a transaction was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Why, in words.
    pub reason: String,
    /// The head's number when it was dropped.
    pub head: u64,
}

/// The latest dropped transactions, oldest forgotten first.
#[derive(Debug)]
pub struct DroppedLog {
    kept: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    order: VecDeque<B256>,
    reasons: HashMap<B256, Dropped>,
}

impl DroppedLog {
    /// An empty log that remembers the last `kept` transactions dropped.
    #[must_use]
    pub fn new(kept: usize) -> Self {
        Self { kept, inner: Mutex::new(Inner::default()) }
    }

    /// Notes that `hash` was dropped, why, and at which head. A transaction dropped again (sent
    /// again after it was dropped, and dropped again) has its latest reason.
    pub fn note(&self, hash: B256, reason: String, head: u64) {
        let mut inner = self.inner.lock();
        let dropped = Dropped { reason, head };
        if inner.reasons.insert(hash, dropped).is_none() {
            inner.order.push_back(hash);
        }
        while inner.order.len() > self.kept {
            if let Some(oldest) = inner.order.pop_front() {
                inner.reasons.remove(&oldest);
            }
        }
    }

    /// Why `hash` was dropped, if it was (and is still remembered).
    #[must_use]
    pub fn get(&self, hash: &B256) -> Option<Dropped> {
        self.inner.lock().reasons.get(hash).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::{Dropped, DroppedLog};
    use alloy_primitives::B256;

    #[test]
    fn the_log_keeps_the_latest_reasons_of_the_last_transactions_dropped() {
        let log = DroppedLog::new(2);
        let hash = B256::repeat_byte;
        log.note(hash(1), "replaced".into(), 5);
        log.note(hash(2), "evicted".into(), 6);
        log.note(hash(1), "expired".into(), 7);
        let expired = Dropped { reason: "expired".into(), head: 7 };
        assert_eq!(log.get(&hash(1)), Some(expired));
        // A third forgets the first noted.
        log.note(hash(3), "rejected".into(), 8);
        assert_eq!(log.get(&hash(1)), None);
        assert_eq!(log.get(&hash(2)).unwrap().reason, "evicted");
        assert_eq!(log.get(&hash(3)).unwrap().head, 8);
        assert_eq!(log.get(&hash(4)), None);
    }
}
