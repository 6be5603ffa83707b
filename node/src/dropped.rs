//! The transactions the node acknowledged and then dropped without including them, with why:
//! replaced, evicted from a full pool, expired above a nonce gap, rejected by a block, made
//! stale when another transaction used their nonce, or refused when the node restarted.
//!
//! An acknowledged transaction is either included in a block or dropped for a stated reason:
//! `duet_transactionStatus` (JSON-RPC) and the Move API's `GET /move/v1/transactions/{hash}`
//! say which. The log is kept in memory, for the last [`DROPPED_KEPT`] transactions dropped
//! since the node started: those dropped before a restart are unknown after it, except the ones
//! the restart itself refuses as it restores the pool. A transaction sent again and accepted is
//! forgotten here (it is pending again).

use std::collections::{HashMap, VecDeque};

use alloy_primitives::B256;
use parking_lot::Mutex;

/// Why, in a word: what the metrics count drops by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropKind {
    /// Replaced by a transaction with the same nonce that pays more.
    Replaced,
    /// Evicted from a full pool by a transaction that pays more.
    Evicted,
    /// Waited above a nonce gap for the pool's lifetime.
    Expired,
    /// Rejected by a block.
    Rejected,
    /// Its nonce was used by another transaction.
    NonceUsed,
    /// Refused when the node restarted.
    Restart,
}

impl DropKind {
    /// Every kind, in the order [`index`](Self::index) numbers them.
    pub const ALL: [Self; 6] = [
        Self::Replaced,
        Self::Evicted,
        Self::Expired,
        Self::Rejected,
        Self::NonceUsed,
        Self::Restart,
    ];

    /// Its position in [`ALL`](Self::ALL).
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }

    /// Its label in the metrics.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Replaced => "replaced",
            Self::Evicted => "evicted",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
            Self::NonceUsed => "nonce_used",
            Self::Restart => "restart",
        }
    }
}

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

/// The drops in the order they were noted (each with its number), and the latest reason of
/// each hash with the number of its note: an older note of a hash dropped again is skipped when
/// its turn to be forgotten comes.
#[derive(Debug, Default)]
struct Inner {
    order: VecDeque<(B256, u64)>,
    reasons: HashMap<B256, (Dropped, u64)>,
    notes: u64,
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
        inner.notes += 1;
        let note = inner.notes;
        inner.reasons.insert(hash, (Dropped { reason, head }, note));
        inner.order.push_back((hash, note));
        while inner.order.len() > self.kept {
            let Some((oldest, note)) = inner.order.pop_front() else { break };
            if inner.reasons.get(&oldest).is_some_and(|(_, latest)| *latest == note) {
                inner.reasons.remove(&oldest);
            }
        }
    }

    /// Forgets that `hash` was dropped: it was sent again and accepted.
    pub fn forget(&self, hash: &B256) {
        self.inner.lock().reasons.remove(hash);
    }

    /// Why `hash` was dropped, if it was (and is still remembered).
    #[must_use]
    pub fn get(&self, hash: &B256) -> Option<Dropped> {
        self.inner.lock().reasons.get(hash).map(|(dropped, _)| dropped.clone())
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
        // A third forgets the one noted longest ago: the second (the first was noted again
        // since).
        log.note(hash(3), "rejected".into(), 8);
        assert_eq!(log.get(&hash(2)), None);
        assert_eq!(log.get(&hash(1)).unwrap().reason, "expired");
        assert_eq!(log.get(&hash(3)).unwrap().head, 8);
        assert_eq!(log.get(&hash(4)), None);
        // Accepted again: not dropped any more.
        log.forget(&hash(3));
        assert_eq!(log.get(&hash(3)), None);
        log.note(hash(4), "replaced".into(), 9);
        assert_eq!(log.get(&hash(4)).unwrap().reason, "replaced");
        assert_eq!(log.get(&hash(1)), None, "the log holds the last two notes");
    }
}
