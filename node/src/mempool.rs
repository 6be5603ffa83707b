//! Transactions waiting for a block: by sender, in nonce order, bounded, with eviction.
//!
//! The chain checks a transaction against the state before it gets here (signature, chain id,
//! nonce, funds, size); the mempool keeps each sender's transactions by nonce, replaces one only
//! for a max fee and a tip each higher, by at least 10 % (geth's rule), and hands the block
//! builder each sender's run of consecutive nonces, senders in order of arrival. A transaction
//! the block being built has taken is not replaced ("nonce too low: … already in the block being
//! built"): the block would include it, and the replacement, acknowledged, would never be.
//!
//! A full pool makes room for a transaction that pays more than the cheapest one it could drop,
//! as Ethereum pools do: it evicts, among the other senders' last transactions (their highest
//! nonces, so that no sender is left with a gap), the one with the lowest maximum fee per gas,
//! if the newcomer pays at least 10 % more (the bump a replacement needs, so that evicting costs
//! more than a wei). A transaction that does not is refused ("txpool is full"). The senders of
//! the block being built are not evicted from until it is committed.
//!
//! The pool is bounded in bytes too ([`MAX_POOL_BYTES`] of encoded transactions), so that
//! transactions of the largest size (128 KiB) cannot fill the count with gigabytes: the same
//! rules apply to its bytes as to its count (a quarter kept, eviction of one cheaper last
//! transaction when that makes room, replacements counted instead of what they replace).
//!
//! A quarter of the pool (rounded up) is kept for transactions a block could take: a sender's
//! next nonce, or one that fills the gap before its waiting ones. Transactions that arrive above
//! a gap cannot fill the pool (nor evict to get in), so they do not lock out the ones that would
//! let them run. Transactions can still end up above a gap, when a block rejects one before them
//! (its sender spent the ETH through Move, say). Those wait for their sender to send that nonce
//! again, but not forever: when a sender has sent nothing for the pool's lifetime (three hours
//! by default, as in geth), its transactions above the gap are dropped (the chain looks every
//! quarter of the lifetime, at most every minute)
//! ([`expire`](Mempool::expire)).
//!
//! An accepted transaction leaves the pool when a block includes it, rejects it for good or uses
//! its nonce, when a replacement or an eviction displaces it, or when it expires; the chain
//! deletes its record from disk then, so a restart does not bring it back.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, Bytes, B256, U256};
use duet_evm::DuetTransaction;

use crate::block::Kind;

/// The most transactions one sender may have waiting.
pub const MAX_PER_SENDER: usize = 1024;

/// How far ahead of a sender's next nonce (counting its waiting transactions, and for a
/// submission the transactions before it in the same request that follow on from them) a
/// transaction may be.
pub const MAX_NONCE_GAP: u64 = 64;

/// How many of the cheapest senders' last transactions a full pool looks at for one to evict.
const EVICTION_CANDIDATES: usize = 64;

/// What a transaction must pay per gas to replace or evict one paying `max_fee`: 10 % more.
fn bumped(max_fee: u128) -> u128 {
    max_fee.saturating_add(max_fee / 10)
}

/// Whether `new` may replace `old` (the same sender and nonce), as geth's pool decides: both
/// its max fee and its tip higher, and each by at least 10 % (a higher max fee with a lower
/// tip would pay less; a tip of 0 must still rise).
fn outbids(new: &PendingTransaction, old: &PendingTransaction) -> bool {
    new.max_fee > old.max_fee
        && new.tip > old.tip
        && new.max_fee >= bumped(old.max_fee)
        && new.tip >= bumped(old.tip)
}

/// One part in this many of the pool is kept for transactions a block could take.
const KEPT_FOR_NEXT_NONCES: usize = 4;

/// The most bytes of encoded transactions the pool holds (the node keeps each about twice:
/// encoded, and decoded for execution). A pool of 50 000 ERC-20 transfers takes about 6 MB.
pub const MAX_POOL_BYTES: usize = 256 << 20;

/// A checked transaction waiting for a block.
#[derive(Clone, Debug)]
pub struct PendingTransaction {
    /// Its hash.
    pub hash: B256,
    /// Its EIP-2718 encoding.
    pub raw: Bytes,
    /// Its recovered sender.
    pub sender: Address,
    /// Its nonce.
    pub nonce: u64,
    /// The most it pays per gas.
    pub max_fee: u128,
    /// The most it tips per gas (its gas price, for a legacy or EIP-2930 transaction).
    pub tip: u128,
    /// What it pays per gas at the chain's fixed base fee: `min(max fee, base fee + tip)`.
    pub paid: u128,
    /// The most gas it may use.
    pub gas_limit: u64,
    /// The most it can take from its sender's balance: gas limit × max fee + value.
    pub cost: U256,
    /// Which VM runs it.
    pub kind: Kind,
    /// What the executor runs.
    pub transaction: DuetTransaction,
    /// When the node took it in (or, for one restored from disk, when the node started).
    pub received: Instant,
    /// The accounts a set-code (EIP-7702) transaction's authorizations name (those whose
    /// signatures recover), each once.
    pub authorities: Vec<Address>,
}

/// Why the mempool refused a transaction (worded as Ethereum clients word it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// The same transaction is already waiting.
    #[error("already known")]
    AlreadyKnown,
    /// A transaction with the same nonce is waiting, and this one does not pay 10 % more.
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    /// The transaction with the same nonce is in the block being built: a replacement could
    /// never be included.
    #[error("nonce too low: a transaction with nonce {nonce} is already in the block being built")]
    NonceInBlock {
        /// The nonce.
        nonce: u64,
    },
    /// The mempool is full, and holds nothing it may evict that pays less than this one.
    #[error("txpool is full")]
    Full,
    /// The sender already has [`MAX_PER_SENDER`] transactions waiting.
    #[error("account limit exceeded")]
    SenderFull,
    /// The nonce is more than [`MAX_NONCE_GAP`] ahead of the sender's next one.
    #[error("nonce too high: next nonce {expected}, tx nonce {got}")]
    NonceTooHigh {
        /// The sender's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
}

/// What [`Mempool::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The sender whose last transaction a full pool evicts to take the transaction.
    pub evict: Option<Address>,
    /// For a new transaction (not a replacement), its sender's next nonce counting from the
    /// arrival's nonce through the transactions the pool holds.
    pub next: Option<u64>,
}

/// How a transaction comes to the mempool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Submitted, checked before it is written to disk with the rest of its batch, whose
    /// earlier transactions are not in yet: the gap rule and the pool's limits, counting from
    /// `from`.
    Precheck {
        /// The sender's nonce after the batch's earlier transactions (its state nonce if none).
        from: u64,
    },
    /// Submitted, by a sender whose nonce in the state is `state_nonce`: it needs room.
    New {
        /// The sender's nonce in the state.
        state_nonce: u64,
    },
    /// On disk when the node started (accepted, or not yet refused when it stopped): it comes
    /// back whatever the pool holds (but for the gap rule), since its sender may have been told
    /// it is in.
    Restored {
        /// The sender's nonce in the state.
        state_nonce: u64,
    },
}

/// When a sender's transactions arrived.
#[derive(Clone, Copy, Debug)]
struct Activity {
    /// The place of its first waiting transaction in the order of arrival.
    order: u64,
    /// When its last transaction arrived (it may have left the pool since).
    last: Instant,
}

/// The waiting transactions.
#[derive(Debug)]
pub struct Mempool {
    by_sender: HashMap<Address, BTreeMap<u64, PendingTransaction>>,
    by_hash: HashMap<B256, (Address, u64)>,
    /// Submissions of each hash between their check and their insert (the same transaction
    /// may be sent twice at once): a refused one's record on disk may be another's.
    in_flight: HashMap<B256, u32>,
    /// Each sender with waiting transactions: when its first one arrived (a counter), and when
    /// its last one did.
    activity: HashMap<Address, Activity>,
    /// The senders of the block being built, each with the nonce after the last of its
    /// transactions the block took: not evicted from, and those transactions not replaced,
    /// until it is committed.
    building: HashMap<Address, u64>,
    next_arrival: u64,
    /// Each sender's last (highest-nonce) transaction, by its maximum fee: what a full pool
    /// evicts, cheapest first.
    tails: BTreeSet<(u128, Address)>,
    limit: usize,
    /// The encoded transactions' bytes, and the most it may be.
    bytes: usize,
    byte_limit: usize,
    /// The store's commit count when the last block committed was settled here (its
    /// transactions dropped).
    settled_at: u64,
    /// How many waiting set-code transactions name each authority.
    authorities: HashMap<Address, u32>,
    /// The waiting transactions already told of as pending ([`Self::newly_executable`]).
    announced: HashSet<B256>,
}

impl Mempool {
    /// An empty mempool holding at most `limit` transactions.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            by_sender: HashMap::new(),
            by_hash: HashMap::new(),
            in_flight: HashMap::new(),
            activity: HashMap::new(),
            building: HashMap::new(),
            next_arrival: 0,
            tails: BTreeSet::new(),
            limit,
            bytes: 0,
            byte_limit: MAX_POOL_BYTES,
            settled_at: 0,
            authorities: HashMap::new(),
            announced: HashSet::new(),
        }
    }

    /// How many transactions wait.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether none waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Every sender with waiting transactions.
    #[must_use]
    pub fn senders(&self) -> Vec<Address> {
        self.by_sender.keys().copied().collect()
    }

    /// `sender`'s waiting transactions, in nonce order.
    pub fn waiting(&self, sender: Address) -> impl Iterator<Item = &PendingTransaction> {
        self.by_sender.get(&sender).into_iter().flat_map(BTreeMap::values)
    }

    /// The waiting transaction with `hash`.
    #[must_use]
    pub fn get(&self, hash: &B256) -> Option<&PendingTransaction> {
        let (sender, nonce) = self.by_hash.get(hash)?;
        self.by_sender.get(sender)?.get(nonce)
    }

    /// The sender's next nonce counting its waiting transactions from `from` (its state nonce,
    /// or the nonce after the transactions before this one in the same request), if
    /// `transaction` is at most [`MAX_NONCE_GAP`] ahead of it.
    ///
    /// # Errors
    /// [`MempoolError::NonceTooHigh`].
    fn within_gap(&self, transaction: &PendingTransaction, from: u64) -> Result<u64, MempoolError> {
        let next = self.pending_nonce(transaction.sender, from);
        if transaction.nonce > next + MAX_NONCE_GAP {
            return Err(MempoolError::NonceTooHigh { expected: next, got: transaction.nonce });
        }
        Ok(next)
    }

    /// Whether `sender` has transactions waiting.
    #[must_use]
    pub fn has_waiting(&self, sender: Address) -> bool {
        self.by_sender.contains_key(&sender)
    }

    /// The next nonce of `sender` counting its waiting transactions, from its state nonce.
    #[must_use]
    pub fn pending_nonce(&self, sender: Address, state_nonce: u64) -> u64 {
        let mut nonce = state_nonce;
        if let Some(waiting) = self.by_sender.get(&sender) {
            while waiting.contains_key(&nonce) {
                nonce += 1;
            }
        }
        nonce
    }

    /// What `sender`'s waiting transactions from nonce `from` on can take from its balance
    /// together, but the one with nonce `except` (which a new transaction would replace). Those
    /// below `from` were paid for already (included in a block the pool has not caught up with).
    #[must_use]
    pub fn waiting_cost(&self, sender: Address, except: u64, from: u64) -> U256 {
        self.waiting(sender)
            .filter(|transaction| transaction.nonce != except && transaction.nonce >= from)
            .fold(U256::ZERO, |sum, transaction| sum.saturating_add(transaction.cost))
    }

    /// Whether [`insert`](Self::insert) would take `transaction` now: the sender whose last
    /// transaction it would evict, if any, and its sender's next nonce if it is new.
    ///
    /// # Errors
    /// See [`MempoolError`].
    pub fn check(
        &self,
        transaction: &PendingTransaction,
        arrival: Arrival,
    ) -> Result<Admission, MempoolError> {
        if self.by_hash.contains_key(&transaction.hash) {
            return Err(MempoolError::AlreadyKnown);
        }
        let existing = self
            .by_sender
            .get(&transaction.sender)
            .and_then(|waiting| waiting.get(&transaction.nonce));
        match existing {
            Some(_)
                if self
                    .building
                    .get(&transaction.sender)
                    .is_some_and(|after| transaction.nonce < *after) =>
            {
                Err(MempoolError::NonceInBlock { nonce: transaction.nonce })
            }
            Some(existing) if !outbids(transaction, existing) => {
                Err(MempoolError::ReplacementUnderpriced)
            }
            // A replacement's nonce is within the gap: the one it replaces was. Its bytes count
            // instead of the replaced one's.
            Some(existing)
                if self.bytes - existing.raw.len() + transaction.raw.len() > self.byte_limit =>
            {
                Err(MempoolError::Full)
            }
            Some(_) => Ok(Admission { evict: None, next: None }),
            None => {
                let next = match arrival {
                    Arrival::Precheck { from } | Arrival::New { state_nonce: from } => {
                        self.within_gap(transaction, from)?
                    }
                    // Within the gap when it was accepted: a gap grown since (a transaction
                    // below it failed in a block) does not drop it; expiry still bounds it.
                    Arrival::Restored { state_nonce } => {
                        self.pending_nonce(transaction.sender, state_nonce)
                    }
                };
                let evict = match arrival {
                    // The room kept for next nonces counts before the disk write too, from the
                    // batch's earlier transactions: a transaction the insert would refuse for it
                    // is not written (and synced) first.
                    Arrival::Precheck { .. } | Arrival::New { .. } => {
                        self.check_room(transaction, Some(next))?
                    }
                    // Back whatever the pool holds.
                    Arrival::Restored { .. } => None,
                };
                Ok(Admission { evict, next: Some(next) })
            }
        }
    }

    /// Notes that a submission of `transaction` passed its check and is on its way to disk; its
    /// sender counts as active from now (its transactions above a gap, which this one may
    /// fill, do not expire meanwhile).
    pub fn begin_submission(&mut self, transaction: &PendingTransaction) {
        *self.in_flight.entry(transaction.hash).or_default() += 1;
        if let Some(activity) = self.activity.get_mut(&transaction.sender) {
            activity.last = activity.last.max(transaction.received);
        }
    }

    /// Notes that a submission of `hash` reached its insert (or failed before).
    pub fn end_submission(&mut self, hash: &B256) {
        if let Some(count) = self.in_flight.get_mut(hash) {
            *count -= 1;
            if *count == 0 {
                self.in_flight.remove(hash);
            }
        }
    }

    /// Whether the record of `hash` on disk is still needed: the pool holds the transaction,
    /// or another submission of it is on its way.
    #[must_use]
    pub fn holds_or_awaits(&self, hash: &B256) -> bool {
        self.by_hash.contains_key(hash) || self.in_flight.contains_key(hash)
    }

    /// Whether there is room for a new transaction, or the sender whose last transaction to
    /// evict for it (see the module's documentation); the room kept for next nonces applies when
    /// the sender's `next` nonce (counting its waiting transactions) is given.
    fn check_room(
        &self,
        transaction: &PendingTransaction,
        next: Option<u64>,
    ) -> Result<Option<Address>, MempoolError> {
        let waiting = self.by_hash.len();
        let bytes = self.bytes + transaction.raw.len();
        let kept = |limit: usize| limit - limit.div_ceil(KEPT_FOR_NEXT_NONCES);
        if (waiting >= kept(self.limit) || bytes > kept(self.byte_limit))
            && next.is_some_and(|next| transaction.nonce > next)
        {
            return Err(MempoolError::Full);
        }
        let sender_waiting = self.by_sender.get(&transaction.sender).map_or(0, BTreeMap::len);
        if sender_waiting >= MAX_PER_SENDER {
            return Err(MempoolError::SenderFull);
        }
        if waiting < self.limit && bytes <= self.byte_limit {
            return Ok(None);
        }
        let victim = self.victim(transaction).ok_or(MempoolError::Full)?;
        // Full of bytes: one eviction must make room (the pool evicts one transaction for one).
        let freed = self
            .by_sender
            .get(&victim)
            .and_then(BTreeMap::last_key_value)
            .map_or(0, |(_, last)| last.raw.len());
        if bytes - freed > self.byte_limit {
            return Err(MempoolError::Full);
        }
        Ok(Some(victim))
    }

    /// The sender whose last transaction a full pool evicts to take `transaction`: among the
    /// cheapest last transactions (by max fee) of other senders that are not in the block being
    /// built, the first that the newcomer outbids by 10 % in both max fee and what it pays per
    /// gas (a higher max fee with a low tip pays no more). Looks at the cheapest few only: when
    /// the block being built holds them all, the pool waits for it.
    fn victim(&self, transaction: &PendingTransaction) -> Option<Address> {
        self.tails
            .iter()
            .take(EVICTION_CANDIDATES)
            .find(|(max_fee, sender)| {
                *sender != transaction.sender
                    && !self.building.contains_key(sender)
                    && transaction.max_fee >= bumped(*max_fee)
                    && self.last(*sender).is_some_and(|last| transaction.paid >= bumped(last.paid))
            })
            .map(|(_, sender)| *sender)
    }

    /// The hash of `sender`'s waiting transaction with `nonce`, if there is one.
    #[must_use]
    pub fn waiting_hash(&self, sender: Address, nonce: u64) -> Option<B256> {
        Some(self.by_sender.get(&sender)?.get(&nonce)?.hash)
    }

    /// `sender`'s waiting transaction with the highest nonce.
    fn last(&self, sender: Address) -> Option<&PendingTransaction> {
        Some(self.by_sender.get(&sender)?.last_key_value()?.1)
    }

    /// The tail entry of `sender`'s waiting transactions.
    fn tail(&self, sender: Address) -> Option<(u128, Address)> {
        Some((self.last(sender)?.max_fee, sender))
    }

    /// Changes `sender`'s waiting transactions through `change`, keeping the tails right and
    /// forgetting a sender left with none; returns what `change` returns.
    fn change_sender<R>(
        &mut self,
        sender: Address,
        change: impl FnOnce(&mut BTreeMap<u64, PendingTransaction>) -> R,
    ) -> R {
        if let Some(tail) = self.tail(sender) {
            self.tails.remove(&tail);
        }
        let waiting = self.by_sender.entry(sender).or_default();
        let result = change(waiting);
        if waiting.is_empty() {
            self.by_sender.remove(&sender);
            self.activity.remove(&sender);
        }
        if let Some(tail) = self.tail(sender) {
            self.tails.insert(tail);
        }
        result
    }

    /// `sender`'s waiting transactions from the one of `nonce` on that a block could take now
    /// (the sender's next nonce in the state being `state_nonce`) and that were not told of yet,
    /// marked as told of: none while a nonce before it is missing; else those up to the next
    /// gap. Called when a transaction comes in (`nonce` its own) and when a block moved the
    /// sender's nonce (`nonce` the new one: a gap closed by a set-code authorization).
    pub fn newly_executable(&mut self, sender: Address, state_nonce: u64, nonce: u64) -> Vec<B256> {
        let Some(waiting) = self.by_sender.get(&sender) else { return Vec::new() };
        let before = nonce.saturating_sub(state_nonce);
        if waiting.range(state_nonce..nonce).count() as u64 != before {
            return Vec::new();
        }
        // Those after one told of were told of with it (or before): the walk stops there, so
        // that a block's check of a sender with a long run waiting reads none of it.
        let run: Vec<B256> = waiting
            .range(nonce..)
            .zip(nonce..)
            .take_while(|((held, _), expected)| *held == expected)
            .map(|((_, transaction), _)| transaction.hash)
            .take_while(|hash| !self.announced.contains(hash))
            .collect();
        self.announced.extend(run.iter().copied());
        run
    }

    /// Adds `transaction`, replacing a waiting one with the same nonce if it pays 10 % more, or
    /// evicting another sender's last transaction if the pool is full; returns the hashes of
    /// the transactions it displaced.
    ///
    /// # Errors
    /// See [`MempoolError`].
    pub fn insert(
        &mut self,
        transaction: PendingTransaction,
        arrival: Arrival,
    ) -> Result<Vec<B256>, MempoolError> {
        let victim = self.check(&transaction, arrival)?.evict;
        let (sender, nonce, received) =
            (transaction.sender, transaction.nonce, transaction.received);
        let mut displaced = Vec::new();
        if let Some(victim) = victim {
            if let Some((_, evicted)) = self.change_sender(victim, BTreeMap::pop_last) {
                displaced.push(self.forget(&evicted));
            }
        }
        self.by_hash.insert(transaction.hash, (sender, nonce));
        self.bytes += transaction.raw.len();
        for authority in &transaction.authorities {
            *self.authorities.entry(*authority).or_default() += 1;
        }
        if let Some(old) = self.change_sender(sender, |waiting| waiting.insert(nonce, transaction))
        {
            displaced.push(self.forget(&old));
        }
        let activity = self.activity.entry(sender).or_insert_with(|| {
            self.next_arrival += 1;
            Activity { order: self.next_arrival, last: received }
        });
        activity.last = activity.last.max(received);
        Ok(displaced)
    }

    /// Transactions for the next block: each sender's waiting transactions with consecutive
    /// nonces from `nonce_of(sender)`, up to `max` transactions whose gas limits add up to at most
    /// `gas`. Senders take turns, in order of arrival: first each sender's next transaction, then
    /// each one's second, and so on. A sender's transactions depend on each other; spread out
    /// like this, the block's other transactions run in parallel with them. Their senders are
    /// not evicted from until [`block_done`](Self::block_done).
    pub fn executable(
        &mut self,
        nonce_of: impl FnMut(Address) -> u64,
        max: usize,
        gas: u64,
    ) -> Vec<PendingTransaction> {
        self.building.clear();
        self.executable_more(nonce_of, max, gas, gas)
    }

    /// More transactions for the block being built: as [`executable`](Self::executable), with
    /// `nonce_of` giving each sender's next nonce after the transactions already taken, and
    /// only transactions whose gas limit is at most `most_each`. Their senders are spared too.
    pub fn executable_more(
        &mut self,
        nonce_of: impl FnMut(Address) -> u64,
        max: usize,
        gas: u64,
        most_each: u64,
    ) -> Vec<PendingTransaction> {
        let more = self.select(nonce_of, max, gas, most_each);
        for transaction in &more {
            let after = self.building.entry(transaction.sender).or_default();
            *after = (*after).max(transaction.nonce + 1);
        }
        more
    }

    /// Gives back transactions [`executable_more`](Self::executable_more) handed out and the
    /// block did not take (they did not fit after all): each sender's last ones, so that they
    /// may be replaced again.
    pub fn put_back(&mut self, transactions: &[PendingTransaction]) {
        for transaction in transactions {
            if let Some(after) = self.building.get_mut(&transaction.sender) {
                *after = (*after).min(transaction.nonce);
            }
        }
    }

    /// Notes that the block being built is committed, at the store's commit count `commits`,
    /// and is being settled here: its senders' transactions can be evicted again. (A block
    /// given up leaves them spared until the next one is built.)
    pub fn block_done(&mut self, commits: u64) {
        self.building.clear();
        self.settled_at = self.settled_at.max(commits);
    }

    /// The store's commit count when the last committed block was settled here: a sender's
    /// state read before it may miss transactions the pool no longer holds.
    #[must_use]
    pub fn settled_at(&self) -> u64 {
        self.settled_at
    }

    fn select(
        &self,
        mut nonce_of: impl FnMut(Address) -> u64,
        max: usize,
        mut gas: u64,
        most_each: u64,
    ) -> Vec<PendingTransaction> {
        let mut senders: Vec<_> =
            self.activity.iter().map(|(sender, activity)| (activity.order, *sender)).collect();
        senders.sort_unstable();
        let mut turn: Vec<(&BTreeMap<u64, PendingTransaction>, u64)> = senders
            .into_iter()
            .filter_map(|(_, sender)| {
                self.by_sender.get(&sender).map(|waiting| (waiting, nonce_of(sender)))
            })
            .collect();
        let mut block = Vec::new();
        while !turn.is_empty() {
            let mut next_turn = Vec::with_capacity(turn.len());
            for (waiting, nonce) in turn {
                let Some(transaction) = waiting.get(&nonce) else { continue };
                if block.len() == max {
                    return block;
                }
                // A sender whose next transaction does not fit is done; others may still fit.
                if transaction.gas_limit > most_each {
                    continue;
                }
                let Some(left) = gas.checked_sub(transaction.gas_limit) else { continue };
                gas = left;
                block.push(transaction.clone());
                next_turn.push((waiting, nonce + 1));
            }
            turn = next_turn;
        }
        block
    }

    /// Drops every transaction of `sender` below `state_nonce` (included, or made stale);
    /// returns their hashes.
    pub fn prune(&mut self, sender: Address, state_nonce: u64) -> Vec<B256> {
        if !self.by_sender.contains_key(&sender) {
            return Vec::new();
        }
        let dropped = self.change_sender(sender, |waiting| {
            let kept = waiting.split_off(&state_nonce);
            std::mem::replace(waiting, kept)
        });
        dropped.into_values().map(|transaction| self.forget(&transaction)).collect()
    }

    /// Drops one transaction (the chain rejected it).
    pub fn remove(&mut self, hash: &B256) {
        let Some(&(sender, nonce)) = self.by_hash.get(hash) else { return };
        if let Some(transaction) = self.change_sender(sender, |waiting| waiting.remove(&nonce)) {
            self.forget(&transaction);
        }
    }

    /// Drops the transactions above a nonce gap of every sender that has sent nothing for
    /// `lifetime` before `now` (the sender's nonce in the state is `nonce_of(sender)`); returns
    /// their hashes.
    pub fn expire(
        &mut self,
        mut nonce_of: impl FnMut(Address) -> u64,
        now: Instant,
        lifetime: Duration,
    ) -> Vec<B256> {
        let idle: Vec<(Address, u64)> = self
            .activity
            .iter()
            .filter(|(_, activity)| {
                now.checked_duration_since(activity.last).is_some_and(|idle| idle >= lifetime)
            })
            .map(|(sender, _)| (*sender, self.pending_nonce(*sender, nonce_of(*sender))))
            .filter(|(sender, gap)| {
                self.by_sender
                    .get(sender)
                    .and_then(BTreeMap::last_key_value)
                    .is_some_and(|(last, _)| last > gap)
            })
            .collect();
        let mut expired = Vec::new();
        for (sender, gap) in idle {
            let above = self.change_sender(sender, |waiting| waiting.split_off(&gap));
            expired.extend(above.into_values().map(|transaction| self.forget(&transaction)));
        }
        expired
    }

    /// Removes a transaction taken out of its sender's map from the hash index.
    fn forget(&mut self, transaction: &PendingTransaction) -> B256 {
        self.by_hash.remove(&transaction.hash);
        self.announced.remove(&transaction.hash);
        self.bytes -= transaction.raw.len();
        for authority in &transaction.authorities {
            if let Some(count) = self.authorities.get_mut(authority) {
                *count -= 1;
                if *count == 0 {
                    self.authorities.remove(authority);
                }
            }
        }
        transaction.hash
    }

    /// Whether a waiting set-code transaction names `address` as an authority (it is about to
    /// be delegated).
    #[must_use]
    pub fn is_authority(&self, address: Address) -> bool {
        self.authorities.contains_key(&address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Mempool {
        /// Checks that the pool's indices agree with each other.
        pub(crate) fn assert_consistent(&self) {
            let mut tails = BTreeSet::new();
            let mut hashes = 0;
            let mut authorities: HashMap<Address, u32> = HashMap::new();
            for (sender, waiting) in &self.by_sender {
                assert!(!waiting.is_empty(), "{sender} has an empty map");
                let (_, last) = waiting.last_key_value().unwrap();
                tails.insert((last.max_fee, *sender));
                for (nonce, transaction) in waiting {
                    assert_eq!(self.by_hash.get(&transaction.hash), Some(&(*sender, *nonce)));
                    hashes += 1;
                }
                assert!(self.activity.contains_key(sender), "{sender} has no activity");
                for authority in waiting.values().flat_map(|waiting| &waiting.authorities) {
                    *authorities.entry(*authority).or_default() += 1;
                }
            }
            assert_eq!(hashes, self.by_hash.len());
            let bytes: usize =
                self.by_sender.values().flat_map(BTreeMap::values).map(|tx| tx.raw.len()).sum();
            assert_eq!(bytes, self.bytes);
            assert_eq!(tails, self.tails);
            assert_eq!(self.activity.len(), self.by_sender.len());
            assert_eq!(authorities, self.authorities);
        }
    }

    fn new(state_nonce: u64) -> Arrival {
        Arrival::New { state_nonce }
    }

    #[test]
    fn a_pool_full_of_bytes_refuses_more_until_some_leave_and_counts_replacements_and_gaps() {
        let mut pool = Mempool { byte_limit: 1_000, ..Mempool::new(100) };
        let big = |sender, nonce, max_fee| PendingTransaction {
            raw: Bytes::from(vec![0; 400]),
            ..pending(sender, nonce, max_fee)
        };
        pool.insert(big(1, 0, 10), new(0)).unwrap();
        pool.insert(big(2, 0, 10), new(0)).unwrap();
        // Paying no more than the cheapest last transaction: nothing to evict for it.
        assert_eq!(pool.insert(big(3, 0, 10), new(0)), Err(MempoolError::Full));
        pool.assert_consistent();
        // A block took sender 1's: its bytes are free again.
        assert_eq!(pool.prune(Address::repeat_byte(1), 1).len(), 1);
        pool.insert(big(3, 0, 10), new(0)).unwrap();
        pool.assert_consistent();
        assert_eq!(pool.len(), 2);
        // A replacement counts instead of the one it replaces: not one larger than the room.
        let larger = PendingTransaction { raw: Bytes::from(vec![0; 700]), ..pending(3, 0, 20) };
        assert_eq!(pool.insert(larger, new(0)), Err(MempoolError::Full));
        let same = PendingTransaction { raw: Bytes::from(vec![0; 500]), ..pending(3, 0, 20) };
        pool.insert(same, new(0)).unwrap();
        pool.assert_consistent();
        // Above a gap, a quarter of the bytes stays free (750 of 1 000 taken at most).
        let above = PendingTransaction { raw: Bytes::from(vec![0; 10]), ..pending(4, 5, 10) };
        assert_eq!(pool.insert(above, new(0)), Err(MempoolError::Full));
    }

    #[test]
    fn a_pool_full_of_bytes_evicts_a_cheaper_last_transaction_when_that_makes_room() {
        let mut pool = Mempool { byte_limit: 1_000, ..Mempool::new(100) };
        let sized = |sender, max_fee, size| PendingTransaction {
            raw: Bytes::from(vec![0; size]),
            ..pending(sender, 0, max_fee)
        };
        pool.insert(sized(1, 10, 500), new(0)).unwrap();
        pool.insert(sized(2, 20, 400), new(0)).unwrap();
        // 300 more do not fit; evicting sender 1's 500 makes room, and 11 is 10 % more than 10.
        let displaced = pool.insert(sized(3, 11, 300), new(0)).unwrap();
        assert_eq!(displaced, vec![pending(1, 0, 10).hash]);
        pool.assert_consistent();
        // 700 would not fit even after evicting the cheapest (sender 3's 300).
        assert_eq!(pool.insert(sized(4, 100, 700), new(0)), Err(MempoolError::Full));
    }

    fn pending(sender: u8, nonce: u64, max_fee: u128) -> PendingTransaction {
        let hash = alloy_primitives::keccak256([sender, nonce as u8, max_fee as u8]);
        PendingTransaction {
            hash,
            raw: Bytes::new(),
            sender: Address::repeat_byte(sender),
            nonce,
            max_fee,
            tip: max_fee,
            paid: max_fee,
            gas_limit: 21_000,
            cost: U256::from(21_000 * max_fee),
            kind: Kind::Evm,
            transaction: DuetTransaction::Evm(revm::context::TxEnv::default()),
            received: Instant::now(),
            authorities: Vec::new(),
        }
    }

    #[test]
    fn a_full_pool_evicts_the_first_cheap_transaction_the_newcomer_outpays() {
        let mut pool = Mempool::new(2);
        // The cheapest by max fee pays all of it (a legacy transaction); the next pays little
        // of its higher max fee (a low tip).
        pool.insert(pending(1, 0, 150), new(0)).unwrap();
        pool.insert(PendingTransaction { paid: 101, ..pending(2, 0, 200) }, new(0)).unwrap();
        let newcomer = PendingTransaction { paid: 130, ..pending(3, 0, 500) };
        // 130 is not 10 % over the first's 150, but is over the second's 101.
        assert_eq!(pool.insert(newcomer, new(0)), Ok(vec![pending(2, 0, 200).hash]));
        pool.assert_consistent();
    }

    #[test]
    fn replacement_needs_ten_percent_more_and_the_pool_is_bounded() {
        let mut pool = Mempool::new(3);
        assert_eq!(pool.insert(pending(1, 0, 100), new(0)), Ok(vec![]));
        assert_eq!(pool.insert(pending(1, 0, 100), new(0)), Err(MempoolError::AlreadyKnown));
        assert_eq!(
            pool.insert(pending(1, 0, 109), new(0)),
            Err(MempoolError::ReplacementUnderpriced)
        );
        // The tip must rise 10 % too.
        let low_tip = PendingTransaction { tip: 109, ..pending(1, 0, 200) };
        assert_eq!(pool.insert(low_tip, new(0)), Err(MempoolError::ReplacementUnderpriced));
        let replaced = pending(1, 0, 100).hash;
        assert_eq!(pool.insert(pending(1, 0, 110), new(0)), Ok(vec![replaced]));
        assert!(pool.get(&replaced).is_none());
        pool.insert(pending(1, 1, 100), new(0)).unwrap();
        pool.insert(pending(2, 0, 100), new(0)).unwrap();
        assert_eq!(pool.insert(pending(3, 0, 100), new(0)), Err(MempoolError::Full));
        // A replacement does not need room.
        assert!(pool.insert(pending(2, 0, 200), new(0)).is_ok());
        assert_eq!(pool.len(), 3);
        // A tip of 0 must rise too (10 % of 0 is 0: geth asks for more than before).
        let free = |max_fee| PendingTransaction { tip: 0, paid: 1, ..pending(4, 0, max_fee) };
        let mut pool = Mempool::new(3);
        pool.insert(free(100), new(0)).unwrap();
        assert_eq!(pool.insert(free(200), new(0)), Err(MempoolError::ReplacementUnderpriced));
        let replacement = PendingTransaction { tip: 1, ..free(200) };
        assert_eq!(pool.insert(replacement, new(0)), Ok(vec![free(100).hash]));
        pool.assert_consistent();
    }

    #[test]
    fn a_transaction_the_block_being_built_took_cannot_be_replaced_until_the_block_is_done() {
        let mut pool = Mempool::new(10);
        for nonce in 0..3 {
            pool.insert(pending(1, nonce, 100), new(0)).unwrap();
        }
        // The block takes nonces 0 and 1 (its gas holds two).
        assert_eq!(pool.executable(|_| 0, 10, 42_000).len(), 2);
        for nonce in 0..2 {
            assert_eq!(
                pool.insert(pending(1, nonce, 200), new(0)),
                Err(MempoolError::NonceInBlock { nonce })
            );
        }
        // Nonce 2 was not taken: it can be replaced.
        assert_eq!(pool.insert(pending(1, 2, 200), new(0)), Ok(vec![pending(1, 2, 100).hash]));
        // The block's next round takes nonce 2 as well, and then gives it back (it did not
        // fit): it can be replaced again, not the two before it.
        let more = pool.executable_more(|_| 2, 10, 21_000, 21_000);
        assert_eq!(more.len(), 1);
        assert_eq!(
            pool.insert(pending(1, 2, 300), new(0)),
            Err(MempoolError::NonceInBlock { nonce: 2 })
        );
        pool.put_back(&more);
        assert_eq!(pool.insert(pending(1, 2, 300), new(0)), Ok(vec![pending(1, 2, 200).hash]));
        assert_eq!(
            pool.insert(pending(1, 1, 300), new(0)),
            Err(MempoolError::NonceInBlock { nonce: 1 })
        );
        // Once it is done (here: given up, the transactions still waiting), they can be again.
        pool.block_done(1);
        assert_eq!(pool.insert(pending(1, 0, 200), new(0)), Ok(vec![pending(1, 0, 100).hash]));
        pool.assert_consistent();
    }

    #[test]
    fn transactions_above_a_nonce_gap_fill_three_quarters_of_the_pool_and_never_lock_it() {
        let mut pool = Mempool::new(8);
        // Sender 1 is at nonce 0 in the state; its nonces 1 to 6 wait for nonce 0.
        for nonce in 1..=6 {
            pool.insert(pending(1, nonce, 100), new(0)).unwrap();
        }
        // Six of eight: past three quarters, only next nonces get in.
        assert_eq!(pool.insert(pending(2, 3, 100), new(0)), Err(MempoolError::Full));
        assert_eq!(pool.insert(pending(2, 1, 100), new(1)), Ok(vec![]));
        // The transaction that fills sender 1's gap gets in, and the block takes the run.
        assert_eq!(pool.insert(pending(1, 0, 100), new(0)), Ok(vec![]));
        assert_eq!(pool.len(), 8);
        assert_eq!(pool.insert(pending(3, 0, 100), new(0)), Err(MempoolError::Full));
        assert_eq!(pool.executable(|_| 0, 100, u64::MAX).len(), 7);
        // Nothing accepted was dropped to make room.
        assert_eq!(pool.prune(Address::repeat_byte(1), 7).len(), 7);
        assert_eq!(pool.len(), 1);
        // A pool of one keeps its one place for a transaction a block could take.
        let mut pool = Mempool::new(1);
        assert_eq!(pool.insert(pending(5, 1, 100), new(0)), Err(MempoolError::Full));
        assert_eq!(pool.insert(pending(5, 0, 100), new(0)), Ok(vec![]));
        // The check before the disk write keeps that room too, counting from the nonce after
        // the batch's earlier transactions: what the insert would refuse is not written first.
        let mut pool = Mempool::new(4);
        pool.insert(pending(6, 5, 100), new(0)).unwrap();
        pool.insert(pending(6, 6, 100), new(0)).unwrap();
        pool.insert(pending(7, 0, 100), new(0)).unwrap();
        assert!(pool.check(&pending(7, 2, 100), new(0)).is_err());
        assert_eq!(
            pool.check(&pending(7, 2, 100), Arrival::Precheck { from: 0 }).map(|found| found.evict),
            Err(MempoolError::Full)
        );
        // After nonce 1 in the same batch, nonce 2 is the next one.
        assert_eq!(
            pool.check(&pending(7, 2, 100), Arrival::Precheck { from: 2 }).map(|found| found.evict),
            Ok(None)
        );
        // What was accepted before a restart comes back however full the pool is.
        let mut pool = Mempool::new(2);
        for nonce in 3..=5 {
            assert_eq!(
                pool.insert(pending(4, nonce, 100), Arrival::Restored { state_nonce: 0 }),
                Ok(vec![])
            );
        }
        assert_eq!(
            pool.insert(pending(4, 3, 100), Arrival::Restored { state_nonce: 0 }),
            Err(MempoolError::AlreadyKnown)
        );
        // And however far above a gap it now lies (it was within the gap when accepted).
        let far = MAX_NONCE_GAP + 10;
        assert_eq!(
            pool.insert(pending(4, far, 100), Arrival::Restored { state_nonce: 0 }),
            Ok(vec![])
        );
        assert!(
            pool.check(&pending(4, far + 1, 100), new(0)).is_err(),
            "new ones still are held to it"
        );
        assert_eq!(pool.len(), 4);
    }

    #[test]
    fn a_full_pool_evicts_the_cheapest_last_transaction_of_another_sender_for_one_that_pays_more() {
        let mut pool = Mempool::new(4);
        pool.insert(pending(1, 0, 200), new(0)).unwrap();
        pool.insert(pending(1, 1, 100), new(0)).unwrap();
        pool.insert(pending(2, 0, 140), new(0)).unwrap();
        pool.insert(pending(3, 0, 180), new(0)).unwrap();
        pool.assert_consistent();
        // The cheapest last transaction is sender 1's nonce 1: 10 % more is needed to evict it.
        assert_eq!(pool.insert(pending(4, 0, 109), new(0)), Err(MempoolError::Full));
        assert_eq!(
            pool.check(&pending(4, 0, 109), Arrival::Precheck { from: 0 }),
            Err(MempoolError::Full)
        );
        // Nor does a much higher max fee that pays under 10 % more (its tip is low).
        let low_tip = PendingTransaction { paid: 109, ..pending(4, 0, 1_000) };
        assert_eq!(pool.insert(low_tip, new(0)), Err(MempoolError::Full));
        let evicted = pending(1, 1, 100).hash;
        let one = Address::repeat_byte(1);
        assert_eq!(
            pool.check(&pending(4, 0, 110), Arrival::Precheck { from: 0 }).map(|found| found.evict),
            Ok(Some(one))
        );
        assert_eq!(pool.insert(pending(4, 0, 110), new(0)), Ok(vec![evicted]));
        pool.assert_consistent();
        assert_eq!(pool.len(), 4);
        assert!(pool.get(&evicted).is_none());
        // Sender 1 keeps its nonce 0, with no gap.
        assert_eq!(pool.pending_nonce(one, 0), 1);
        // Next: sender 4's own transaction (110) is no candidate for sender 4; sender 2's
        // (140) is, and 150 is not 10 % more.
        assert_eq!(pool.insert(pending(4, 1, 150), new(0)), Err(MempoolError::Full));
        assert_eq!(pool.insert(pending(4, 1, 160), new(0)), Ok(vec![pending(2, 0, 140).hash]));
        // A sender's last transaction is the one evicted: sender 4's nonce 1 (160), not its
        // cheaper nonce 0 (110), which would leave a gap. Then its nonce 0 is its last.
        assert_eq!(pool.insert(pending(5, 0, 180), new(0)), Ok(vec![pending(4, 1, 160).hash]));
        assert_eq!(pool.insert(pending(6, 0, 130), new(0)), Ok(vec![pending(4, 0, 110).hash]));
        pool.assert_consistent();
        // The senders of the block being built are left alone until it is committed.
        let block = pool.executable(|_| 0, 100, u64::MAX);
        let left: Vec<(u8, u64)> = block.iter().map(|t| (t.sender.0[0], t.nonce)).collect();
        assert_eq!(left, vec![(1, 0), (3, 0), (5, 0), (6, 0)]);
        assert_eq!(pool.insert(pending(7, 0, 1_000), new(0)), Err(MempoolError::Full));
        pool.block_done(0);
        assert_eq!(pool.insert(pending(7, 0, 1_000), new(0)), Ok(vec![pending(6, 0, 130).hash]));
        pool.assert_consistent();
        // Transactions above a gap never evict to get in.
        assert_eq!(pool.insert(pending(8, 3, 1_000), new(0)), Err(MempoolError::Full));
    }

    #[test]
    fn a_sender_idle_for_the_lifetime_loses_its_transactions_above_a_gap_and_only_those() {
        let lifetime = Duration::from_secs(60);
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let sent = |sender: u8, nonce: u64, seconds: u64| PendingTransaction {
            received: at(seconds),
            ..pending(sender, nonce, 100)
        };
        let mut pool = Mempool::new(100);
        // Sender 1 (nonce 0 in the state): 0 and 1 can run, 3 and 4 wait for a 2.
        for nonce in [0, 1, 3, 4] {
            pool.insert(sent(1, nonce, 0), new(0)).unwrap();
        }
        // Sender 2 waits for a 0 too, but sent its last transaction later.
        pool.insert(sent(2, 1, 0), new(0)).unwrap();
        pool.insert(sent(2, 2, 30), new(0)).unwrap();
        pool.assert_consistent();
        assert!(pool.expire(|_| 0, at(59), lifetime).is_empty());
        let expired = pool.expire(|_| 0, at(60), lifetime);
        assert_eq!(expired, vec![pending(1, 3, 100).hash, pending(1, 4, 100).hash]);
        assert_eq!(pool.len(), 4);
        assert_eq!(pool.pending_nonce(Address::repeat_byte(1), 0), 2);
        let expired = pool.expire(|_| 0, at(90), lifetime);
        assert_eq!(expired, vec![pending(2, 1, 100).hash, pending(2, 2, 100).hash]);
        pool.assert_consistent();
        // A submission on its way counts as activity: it may fill the gap.
        pool.insert(sent(3, 1, 0), new(0)).unwrap();
        pool.begin_submission(&sent(3, 0, 100));
        assert!(pool.expire(|_| 0, at(120), lifetime).is_empty());
        assert_eq!(pool.expire(|_| 0, at(160), lifetime), vec![pending(3, 1, 100).hash]);
        // Transactions a block can take stay, however long they wait.
        assert!(pool.expire(|_| 0, at(10_000), lifetime).is_empty());
        assert_eq!(pool.executable(|_| 0, 100, u64::MAX).len(), 2);
        assert_eq!(pool.senders(), vec![Address::repeat_byte(1)]);
    }

    #[test]
    fn a_record_on_disk_is_needed_while_a_submission_of_it_is_on_its_way_or_the_pool_holds_it() {
        let mut pool = Mempool::new(10);
        let transaction = pending(1, 0, 100);
        let hash = transaction.hash;
        assert!(!pool.holds_or_awaits(&hash));
        // Sent twice at once: both passed their checks.
        pool.begin_submission(&transaction);
        pool.begin_submission(&transaction);
        pool.end_submission(&hash);
        assert!(pool.holds_or_awaits(&hash), "the other submission still needs the record");
        pool.end_submission(&hash);
        assert!(!pool.holds_or_awaits(&hash));
        pool.insert(transaction, new(0)).unwrap();
        assert!(pool.holds_or_awaits(&hash));
        // Ending a submission that never began (a restored transaction) changes nothing.
        pool.end_submission(&B256::ZERO);
        assert!(!pool.holds_or_awaits(&B256::ZERO));
    }

    #[test]
    fn blocks_take_consecutive_nonces_with_senders_taking_turns_within_the_gas_limit() {
        let mut pool = Mempool::new(100);
        pool.insert(pending(2, 5, 100), new(5)).unwrap();
        pool.insert(pending(1, 0, 100), new(0)).unwrap();
        pool.insert(pending(1, 2, 100), new(0)).unwrap(); // nonce 1 missing: waits
        pool.insert(pending(2, 6, 100), new(5)).unwrap();
        pool.insert(pending(3, 0, 100), new(0)).unwrap();
        pool.insert(pending(3, 1, 100), new(0)).unwrap();
        pool.insert(pending(3, 2, 100), new(0)).unwrap();
        let nonce_of = |sender: Address| if sender == Address::repeat_byte(2) { 5 } else { 0 };
        let block: Vec<(u8, u64)> = pool
            .executable(nonce_of, 10, u64::MAX)
            .iter()
            .map(|t| (t.sender.0[0], t.nonce))
            .collect();
        // Senders in order of arrival (2, 1, 3), one transaction each per turn.
        assert_eq!(block, [(2, 5), (1, 0), (3, 0), (2, 6), (3, 1), (3, 2)]);
        // Two transactions' gas, or two transactions.
        assert_eq!(pool.executable(nonce_of, 10, 42_000).len(), 2);
        assert_eq!(pool.executable(nonce_of, 2, u64::MAX).len(), 2);
        assert_eq!(pool.pending_nonce(Address::repeat_byte(1), 0), 1);
        // After a block with sender 2's transactions, they are gone; sender 1's nonce 2 waits.
        assert_eq!(pool.prune(Address::repeat_byte(2), 7).len(), 2);
        assert_eq!(pool.prune(Address::repeat_byte(1), 1).len(), 1);
        assert_eq!(pool.prune(Address::repeat_byte(3), 3).len(), 3);
        assert_eq!(pool.len(), 1);
    }
}
