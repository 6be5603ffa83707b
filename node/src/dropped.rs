//! The transactions the node acknowledged and then dropped without including them, with why:
//! replaced, evicted from a full pool, expired above a nonce gap, rejected by a block, made
//! stale when another transaction used their nonce, or refused when the node restarted.
//!
//! An acknowledged transaction is either included in a block or dropped for a stated reason:
//! `duet_transactionStatus` (JSON-RPC) and the Move API's `GET /move/v1/transactions/{hash}`
//! say which. The log holds the last [`DROPPED_KEPT`] transactions dropped, in memory and in
//! the store (each change written with the drop, not synced: a crash may lose the last few), so
//! a restart knows them too. A transaction sent again and accepted is forgotten here (it is
//! pending again).

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
    /// again after it was dropped, and dropped again) has its latest reason. Returns the note, as
    /// the store keeps it (its number, the head, the reason), and the hashes the log forgot to
    /// keep its bound.
    pub fn note(&self, hash: B256, reason: String, head: u64) -> (Vec<u8>, Vec<B256>) {
        let mut inner = self.inner.lock();
        inner.notes += 1;
        let note = inner.notes;
        let dropped = Dropped { reason, head };
        let stored = Self::encode(note, &dropped);
        inner.reasons.insert(hash, (dropped, note));
        inner.order.push_back((hash, note));
        let mut forgotten = Vec::new();
        while inner.order.len() > self.kept {
            let Some((oldest, note)) = inner.order.pop_front() else { break };
            if inner.reasons.get(&oldest).is_some_and(|(_, latest)| *latest == note) {
                inner.reasons.remove(&oldest);
                forgotten.push(oldest);
            }
        }
        (stored, forgotten)
    }

    /// Forgets that `hash` was dropped: it was sent again and accepted. Whether it was noted.
    pub fn forget(&self, hash: &B256) -> bool {
        self.inner.lock().reasons.remove(hash).is_some()
    }

    /// Puts back the notes the store kept (`(hash, note)` as [`note`](Self::note) returned
    /// them), in the order they were noted; those it cannot read are left out. Returns the
    /// hashes it forgot to keep its bound (or could not read).
    pub fn restore(&self, stored: Vec<(B256, Vec<u8>)>) -> Vec<B256> {
        let mut unreadable = Vec::new();
        let mut notes: Vec<(u64, B256, Dropped)> = Vec::with_capacity(stored.len());
        for (hash, value) in stored {
            match Self::decode(&value) {
                Some((note, dropped)) => notes.push((note, hash, dropped)),
                None => unreadable.push(hash),
            }
        }
        notes.sort_unstable_by_key(|(note, _, _)| *note);
        let mut inner = self.inner.lock();
        for (note, hash, dropped) in notes {
            inner.notes = inner.notes.max(note);
            inner.reasons.insert(hash, (dropped, note));
            inner.order.push_back((hash, note));
        }
        while inner.order.len() > self.kept {
            let Some((oldest, _)) = inner.order.pop_front() else { break };
            inner.reasons.remove(&oldest);
            unreadable.push(oldest);
        }
        unreadable
    }

    /// A note as the store keeps it: its number, the head, then the reason.
    fn encode(note: u64, dropped: &Dropped) -> Vec<u8> {
        let mut value = Vec::with_capacity(16 + dropped.reason.len());
        value.extend_from_slice(&note.to_be_bytes());
        value.extend_from_slice(&dropped.head.to_be_bytes());
        value.extend_from_slice(dropped.reason.as_bytes());
        value
    }

    fn decode(value: &[u8]) -> Option<(u64, Dropped)> {
        let (note, rest) = value.split_first_chunk::<8>()?;
        let (head, reason) = rest.split_first_chunk::<8>()?;
        let reason = String::from_utf8(reason.to_vec()).ok()?;
        Some((u64::from_be_bytes(*note), Dropped { reason, head: u64::from_be_bytes(*head) }))
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
        assert!(log.forget(&hash(3)));
        assert!(!log.forget(&hash(3)));
        assert_eq!(log.get(&hash(3)), None);
        log.note(hash(4), "replaced".into(), 9);
        assert_eq!(log.get(&hash(4)).unwrap().reason, "replaced");
        assert_eq!(log.get(&hash(1)), None, "the log holds the last two notes");
    }

    #[test]
    fn the_log_restored_from_its_stored_notes_keeps_their_order_and_bound() {
        let hash = B256::repeat_byte;
        let log = DroppedLog::new(3);
        let mut stored = Vec::new();
        for (byte, reason) in [(1, "replaced"), (2, "evicted"), (3, "expired")] {
            let (value, forgotten) = log.note(hash(byte), reason.into(), u64::from(byte));
            assert!(forgotten.is_empty());
            stored.push((hash(byte), value));
        }
        // The fourth note forgets the first.
        let (value, forgotten) = log.note(hash(4), "rejected".into(), 4);
        assert_eq!(forgotten, [hash(1)]);
        stored.push((hash(4), value));
        stored.retain(|(stored, _)| *stored != hash(1));
        // Restored into a log of two, in whatever order the store reads them, with one the log
        // cannot read: the oldest and the unreadable one are forgotten.
        stored.reverse();
        stored.push((hash(9), vec![1, 2, 3]));
        let restored = DroppedLog::new(2);
        let mut forgotten = restored.restore(stored);
        forgotten.sort();
        assert_eq!(forgotten, [hash(2), hash(9)]);
        assert_eq!(restored.get(&hash(3)), Some(Dropped { reason: "expired".into(), head: 3 }));
        assert_eq!(restored.get(&hash(4)).unwrap().reason, "rejected");
        // Notes go on after the restored ones.
        let (_, forgotten) = restored.note(hash(5), "replaced".into(), 5);
        assert_eq!(forgotten, [hash(3)]);
    }
}
