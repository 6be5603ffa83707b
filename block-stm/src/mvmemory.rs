//! Multi-version memory: every transaction's latest writes, by key and transaction index.
//!
//! For each key, a map from transaction index to that transaction's write of the key. A read by
//! transaction `j` sees the write of the highest index below `j`, and the storage if there is none.
//! When an incarnation is aborted its writes stay in place, marked ESTIMATE: a later transaction
//! that reads one waits for the re-execution instead of reading a value that will likely change.
//!
//! Every read is recorded with where its value came from ([`ReadOrigin`]) so that validation can
//! check, after the fact, that the transaction would read the same now. Reads of absent keys are
//! recorded too (as [`ReadOrigin::Storage`]), so a later write of such a key is caught.
//!
//! One key is different: the VM's hot credit key (the fee vault, which nearly every transaction
//! credits). A transaction's plain credit of it lives in the transaction's own record, with its
//! ESTIMATE flag, and only its other writes go into the key's versions. Readers put the two back
//! together: the versions below them down to the last value written, plus the credits of the
//! records above that value, re-reading the versions afterwards in case a transaction moved its
//! write from one to the other meanwhile. A transaction recording a new incarnation writes its
//! versions before it lifts its credit's ESTIMATE, so a reader sees one or the other, never
//! neither. A count of ESTIMATE credits and of versions entries of the key tells "at least the
//! stored value" in one load when both are zero.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use foldhash::fast::FixedState;
use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::delta::{Delta, NetDelta};
use crate::shards::ShardedMap;
use crate::vm::{
    Incarnation, StateKeyBound, StateValueBound, Storage, StorageError, TxnIndex, WriteOp,
};
use crate::{reset_slots, BlockError};

type KeySet<'a, K> = std::collections::HashSet<&'a K, FixedState>;

/// One transaction's write of a key.
#[derive(Clone)]
struct Entry<V> {
    /// The writing transaction: a block holds fewer than 2^32 (kept in 4 bytes, so that an
    /// entry takes 80 bytes, not 96).
    index: u32,
    incarnation: Incarnation,
    estimate: bool,
    write: WriteOp<V>,
}

/// The writes of one key, sorted by transaction index.
///
/// Most keys of a block are written by one or two transactions (an account's balance, when it
/// both sends and receives), so the first two entries live inline (no allocation: two inline
/// measured 3 to 4 % faster than one on the Move transfer benchmark); hot keys (a fee vault)
/// grow a vector. Entries arrive roughly in index order, so
/// inserting keeps the vector sorted at little cost.
pub(crate) struct Versions<V> {
    entries: SmallVec<[Entry<V>; 2]>,
    /// How many entries are not plain credits (an addition that is not an ESTIMATE): when none
    /// is, the value is at least its stored value, which answers "is there at least this much?"
    /// for a fee vault without searching its thousands of entries.
    others: u32,
}

impl<V> Default for Versions<V> {
    fn default() -> Self {
        Self { entries: SmallVec::new(), others: 0 }
    }
}

impl<V> Entry<V> {
    fn index(&self) -> TxnIndex {
        self.index as TxnIndex
    }

    /// Its write as the finalizer applies it.
    fn borrowed(&self) -> IndexedWrite<'_, V> {
        let write = match &self.write {
            WriteOp::Put(value) => WriteOp::Put(value),
            WriteOp::Delete => WriteOp::Delete,
            WriteOp::Delta(delta) => WriteOp::Delta(*delta),
        };
        (self.index(), write)
    }

    fn is_plain_credit(&self) -> bool {
        !self.estimate && matches!(self.write, WriteOp::Delta(Delta::Add { .. }))
    }
}

impl<V> Versions<V> {
    /// Whether every entry is a plain credit.
    fn only_credits(&self) -> bool {
        self.others == 0
    }

    fn search(&self, txn_index: TxnIndex) -> Result<usize, usize> {
        // Appends are the common case: check the last entry before searching.
        match self.entries.last() {
            None => Err(0),
            Some(last) if last.index() < txn_index => Err(self.entries.len()),
            _ => self.entries.binary_search_by_key(&txn_index, Entry::index),
        }
    }

    fn insert(&mut self, entry: Entry<V>) {
        self.others += u32::from(!entry.is_plain_credit());
        match self.search(entry.index()) {
            Ok(position) => {
                let old = std::mem::replace(&mut self.entries[position], entry);
                self.others -= u32::from(!old.is_plain_credit());
            }
            Err(position) => self.entries.insert(position, entry),
        }
    }

    fn remove(&mut self, txn_index: TxnIndex) {
        if let Ok(position) = self.search(txn_index) {
            let old = self.entries.remove(position);
            self.others -= u32::from(!old.is_plain_credit());
        }
    }

    /// Marks the entry of `txn_index` as an ESTIMATE.
    fn mark_estimate(&mut self, txn_index: TxnIndex) {
        if let Ok(position) = self.search(txn_index) {
            let entry = &mut self.entries[position];
            self.others += u32::from(entry.is_plain_credit());
            entry.estimate = true;
        }
    }

    /// The writes below `txn_index` down to the last value written (or to storage): that base
    /// and the net of the deltas above it.
    fn below_base(&self, txn_index: TxnIndex) -> Below<V>
    where
        V: StateValueBound,
    {
        let mut net = NetDelta::default();
        let mut has_deltas = false;
        for entry in self.below(txn_index).iter().rev() {
            let index = entry.index();
            let base = if entry.estimate {
                Base::Dependency(index)
            } else {
                match &entry.write {
                    WriteOp::Delta(delta) => {
                        net.push(*delta);
                        has_deltas = true;
                        continue;
                    }
                    WriteOp::Put(value) => {
                        Base::Version(index, entry.incarnation, Some(value.clone()))
                    }
                    WriteOp::Delete => Base::Version(index, entry.incarnation, None),
                }
            };
            return Below { base, net, has_deltas };
        }
        Below { base: Base::Storage, net, has_deltas }
    }

    /// Whether the credits (additions) directly below `txn_index` alone reach `threshold`: then
    /// the value is at least that, whatever lies further down, since values are never negative.
    /// Answers without walking a long run of deltas (a fee vault's) down to its base; when every
    /// entry below is a credit and they fall short, says by how much they add to the stored
    /// value.
    fn credits_reach(&self, txn_index: TxnIndex, threshold: u128) -> CreditWalk {
        let mut credited: u128 = 0;
        for entry in self.below(txn_index).iter().rev() {
            let index = entry.index();
            if entry.estimate {
                return CreditWalk::Dependency(index);
            }
            match entry.write {
                WriteOp::Delta(Delta::Add { amount, .. }) => {
                    credited = credited.saturating_add(amount);
                    if credited >= threshold {
                        return CreditWalk::Reached;
                    }
                }
                _ => return CreditWalk::Unknown,
            }
        }
        CreditWalk::Short(credited)
    }

    /// The entries of transactions below `end`, in index order.
    fn below(&self, end: TxnIndex) -> &[Entry<V>] {
        &self.entries[..self.entries.partition_point(|entry| entry.index() < end)]
    }
}

/// A key's writes below a transaction, down to the value they start from.
#[derive(Clone, PartialEq)]
struct Below<V> {
    base: Base<V>,
    /// The deltas above the base, added up.
    net: NetDelta,
    has_deltas: bool,
}

/// The value a key's deltas apply to.
#[derive(Clone, PartialEq)]
enum Base<V> {
    /// The stored value: no transaction below wrote one.
    Storage,
    /// The value (or deletion) this incarnation of a transaction wrote.
    Version(TxnIndex, Incarnation, Option<V>),
    /// An ESTIMATE of this transaction.
    Dependency(TxnIndex),
}

impl<V: StateValueBound> Below<V> {
    /// The first transaction above the base (`0` for storage).
    fn floor(&self) -> TxnIndex {
        match self.base {
            Base::Storage => 0,
            Base::Version(index, _, _) | Base::Dependency(index) => index + 1,
        }
    }

    fn into_lookup(self) -> Lookup<V> {
        match self.base {
            Base::Dependency(index) => Lookup::Dependency(index),
            Base::Storage if self.has_deltas => Lookup::DeltasOverStorage(self.net),
            Base::Storage => Lookup::Storage,
            Base::Version(_, _, value) if self.has_deltas => {
                Lookup::Resolved(Some(resolve(value.as_ref(), self.net)))
            }
            Base::Version(index, incarnation, value) => Lookup::Version(index, incarnation, value),
        }
    }
}

/// Where a read's value came from, as far as validation needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReadOrigin<V> {
    /// No transaction below wrote the key: the value came from storage (possibly absent).
    Storage,
    /// The write (a value or a deletion) of this incarnation of a transaction below.
    Version(TxnIndex, Incarnation),
    /// Deltas over a base: only the resulting value matters, not which transactions wrote them.
    Resolved(Option<V>),
}

/// One entry of a read set.
#[derive(Clone, Debug)]
pub(crate) enum ReadRecord<K, V> {
    /// A read of a value.
    Read(K, ReadOrigin<V>),
    /// An answer to [`crate::TransactionView::delta_fits`].
    DeltaFits(K, Delta, bool),
}

/// Why a read could not complete.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The value is an ESTIMATE of this unfinished transaction.
    Dependency(TxnIndex),
    /// The storage failed.
    Storage(StorageError),
}

/// What [`Versions::credits_reach`] found.
enum CreditWalk {
    Reached,
    Dependency(TxnIndex),
    /// Every entry below is a credit, and these add up to less than the threshold: the value is
    /// the stored one plus this.
    Short(u128),
    /// Below lies an entry that is not a credit.
    Unknown,
}

/// The state of a key as seen by one transaction, before any storage read.
enum Lookup<V> {
    Storage,
    Version(TxnIndex, Incarnation, Option<V>),
    Resolved(Option<V>),
    DeltasOverStorage(NetDelta),
    Dependency(TxnIndex),
}

/// One lock per transaction, padded to its own cache line.
type Slots<T> = Vec<CachePadded<Mutex<T>>>;

/// Credits of the hot key, by transaction.
pub(crate) type Credits = Vec<(TxnIndex, Delta)>;

/// Final values of keys, sorted by key.
pub(crate) type Updates<K, V> = Vec<(K, Option<V>)>;

/// The multi-version memory of one block run, with each transaction's output `O` (its result).
pub(crate) struct MvMemory<K, V, O = ()> {
    data: ShardedMap<K, Versions<V>>,
    /// Update vectors of earlier blocks' finalizers, kept for their capacity.
    spare_updates: Mutex<Vec<Updates<K, V>>>,
    /// Each transaction's record, in one padded slot: what its latest incarnation wrote, read
    /// and returned, touched together when it is recorded (one cache line per transaction, not
    /// three).
    records: Slots<Record<K, V, O>>,
    /// The VM's [hot credit key](crate::Vm::hot_credit_key), whose plain credits are kept in
    /// the records instead of in its versions.
    hot: Option<K>,
    /// How many records hold a credit of the hot key marked ESTIMATE, plus how many writes of
    /// the hot key are in its versions: while there is none, every write of it is a plain
    /// credit, and its value is at least the stored one.
    hot_blockers: CachePadded<AtomicUsize>,
    /// The hot key's versions (its writes that are not plain credits), set aside when the
    /// memory is drained, to be finalized with the credits.
    hot_versions: Mutex<Option<Versions<V>>>,
    /// The records the current block may fill (its size), and how many of them the end of the
    /// block emptied entirely.
    used_records: usize,
    emptied_records: CachePadded<AtomicUsize>,
}

/// The keys a transaction's latest incarnation wrote, what it read, and its output.
struct Record<K, V, O> {
    written: Vec<K>,
    reads: Vec<ReadRecord<K, V>>,
    output: Option<O>,
    /// Its plain credit of the hot key, if it made one.
    hot_credit: Option<Delta>,
    /// Whether that credit is an ESTIMATE (the incarnation was aborted).
    hot_estimate: bool,
}

impl<K, V, O> Record<K, V, O> {
    /// Whether it holds nothing of a block.
    fn is_empty(&self) -> bool {
        self.written.is_empty()
            && self.reads.is_empty()
            && self.output.is_none()
            && self.hot_credit.is_none()
            && !self.hot_estimate
    }
}

/// Spare update vectors kept between blocks: one per worker thread, for up to eight.
const SPARE_UPDATE_VECTORS: usize = 8;

/// Write sets up to this size are compared by linear scan; larger ones through a hash set.
const LINEAR_SCAN_LIMIT: usize = 16;

/// `base` changed by `net`: a delta over an absent value counts from zero and leaves a value.
fn resolve<V: StateValueBound>(base: Option<&V>, net: NetDelta) -> V {
    V::from_u128(net.apply_to(base.and_then(StateValueBound::as_u128).unwrap_or(0)))
}

impl<K: StateKeyBound, V: StateValueBound, O> MvMemory<K, V, O> {
    /// An empty memory; [`reset`](Self::reset) it for each block.
    pub(crate) fn new() -> Self {
        Self {
            data: ShardedMap::new(),
            records: Vec::new(),
            spare_updates: Mutex::new(Vec::new()),
            hot: None,
            hot_blockers: CachePadded::new(AtomicUsize::new(0)),
            hot_versions: Mutex::new(None),
            used_records: 0,
            emptied_records: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Empties the memory for a block of `block_size` transactions whose VM credits `hot` in
    /// nearly every transaction, keeping what was allocated.
    pub(crate) fn reset(&mut self, block_size: usize, hot: Option<K>) {
        self.data.clear_for(block_size * crate::KEYS_PER_TRANSACTION);
        // Every record is empty after a reset; a run can fill only those of its block, and one
        // that finished emptied them all (walking 10000 records again costs 0.1 ms).
        let filled = if *self.emptied_records.get_mut() == self.used_records {
            debug_assert!(
                self.records[..self.used_records]
                    .iter_mut()
                    .all(|record| record.get_mut().is_empty()),
                "a record counted as emptied is not empty"
            );
            0
        } else {
            self.used_records
        };
        reset_slots(&mut self.records, (block_size, filled), new_record_slot, |record| {
            let record = record.get_mut();
            record.written.clear();
            record.reads.clear();
            record.output = None;
            record.hot_credit = None;
            record.hot_estimate = false;
        });
        self.used_records = block_size;
        *self.emptied_records.get_mut() = 0;
        self.hot = hot;
        *self.hot_blockers.get_mut() = 0;
        *self.hot_versions.get_mut() = None;
    }

    fn is_hot(&self, key: &K) -> bool {
        self.hot.as_ref() == Some(key)
    }

    fn lookup(&self, key: &K, txn_index: TxnIndex) -> Lookup<V> {
        if self.is_hot(key) {
            return self.hot_lookup(key, txn_index);
        }
        self.data
            .read(key, |versions| versions.below_base(txn_index).into_lookup())
            .unwrap_or(Lookup::Storage)
    }

    /// The hot key as transaction `txn_index` sees it: its versions below, and the credits of
    /// the transactions between their base and `txn_index`.
    fn hot_lookup(&self, key: &K, txn_index: TxnIndex) -> Lookup<V> {
        let versions = || {
            self.data.read(key, |versions| versions.below_base(txn_index)).unwrap_or(Below {
                base: Base::Storage,
                net: NetDelta::default(),
                has_deltas: false,
            })
        };
        let mut seen = versions();
        loop {
            if let Base::Dependency(index) = seen.base {
                return Lookup::Dependency(index);
            }
            // The credits join the deltas above the base: all of them add up before they apply
            // to it, as in block order (a subtraction after credits must not saturate first).
            let mut below = seen.clone();
            for index in below.floor()..txn_index {
                let record = self.records[index].lock();
                if record.hot_estimate {
                    return Lookup::Dependency(index);
                }
                if let Some(credit) = record.hot_credit {
                    below.net.push(credit);
                    below.has_deltas = true;
                }
            }
            // A transaction recording a new incarnation changes its versions and lifts its
            // credit's ESTIMATE under its record's lock: if the versions changed while the
            // records were read, read again, or a write and an ESTIMATE could both be missed.
            let now = versions();
            if now == seen {
                return below.into_lookup();
            }
            seen = now;
        }
    }

    /// [`Versions::credits_reach`] for the hot key: walks the records down from `txn_index`,
    /// adding up credits, until they reach `threshold`, an ESTIMATE, or the key's last write in
    /// its versions. One record, usually, when every transaction credits the key.
    fn hot_credits_reach(&self, key: &K, txn_index: TxnIndex, threshold: u128) -> CreditWalk {
        // The last write below in the versions: index, and whether it is an ESTIMATE.
        let top = || {
            self.data
                .read(key, |versions| {
                    versions.below(txn_index).last().map(|entry| (entry.index(), entry.estimate))
                })
                .flatten()
        };
        let mut seen = top();
        loop {
            let floor = seen.map_or(0, |(index, _)| index + 1);
            let mut credited: u128 = 0;
            let mut walked = None;
            for index in (floor..txn_index).rev() {
                let record = self.records[index].lock();
                if record.hot_estimate {
                    walked = Some(CreditWalk::Dependency(index));
                    break;
                }
                if let Some(Delta::Add { amount, .. }) = record.hot_credit {
                    credited = credited.saturating_add(amount);
                    if credited >= threshold {
                        walked = Some(CreditWalk::Reached);
                        break;
                    }
                }
            }
            let walked = walked.unwrap_or(match seen {
                None => CreditWalk::Short(credited),
                Some((index, true)) => CreditWalk::Dependency(index),
                Some((_, false)) => CreditWalk::Unknown,
            });
            // As in `hot_lookup`: a write that moved into the versions meanwhile is seen now.
            let now = top();
            if now == seen {
                return walked;
            }
            seen = now;
        }
    }

    /// The value of `key` as transaction `txn_index` sees it, with its origin.
    pub(crate) fn read<S>(
        &self,
        key: &K,
        txn_index: TxnIndex,
        storage: &S,
    ) -> Result<(Option<V>, ReadOrigin<V>), ReadFailure>
    where
        S: Storage<Key = K, Value = V>,
    {
        match self.lookup(key, txn_index) {
            Lookup::Storage => storage
                .get(key)
                .map(|value| (value, ReadOrigin::Storage))
                .map_err(ReadFailure::Storage),
            Lookup::Version(index, incarnation, value) => {
                Ok((value, ReadOrigin::Version(index, incarnation)))
            }
            Lookup::Resolved(value) => Ok((value.clone(), ReadOrigin::Resolved(value))),
            Lookup::DeltasOverStorage(net) => {
                let base = storage.get(key).map_err(ReadFailure::Storage)?;
                let value = Some(resolve(base.as_ref(), net));
                Ok((value.clone(), ReadOrigin::Resolved(value)))
            }
            Lookup::Dependency(index) => Err(ReadFailure::Dependency(index)),
        }
    }

    /// Whether `delta` stays within its bounds on the value of `key` as transaction `txn_index`
    /// sees it. A subtraction that recent credits alone cover is answered without resolving the
    /// whole run of deltas below.
    pub(crate) fn delta_fits<S>(
        &self,
        key: &K,
        txn_index: TxnIndex,
        delta: Delta,
        storage: &S,
    ) -> Result<bool, ReadFailure>
    where
        S: Storage<Key = K, Value = V>,
    {
        if let Delta::Sub { amount, min } = delta {
            if let Some(threshold) = amount.checked_add(min) {
                if let Some(answer) = self.reaches(key, txn_index, threshold, storage)? {
                    return Ok(answer);
                }
            }
        }
        let (value, _) = self.read(key, txn_index, storage)?;
        Ok(fits(value.as_ref(), delta))
    }

    /// Whether the value of `key` as transaction `txn_index` sees it is at least `threshold`,
    /// answered from the credits below and the stored value; `None` when that takes an exact
    /// read.
    fn reaches<S>(
        &self,
        key: &K,
        txn_index: TxnIndex,
        threshold: u128,
        storage: &S,
    ) -> Result<Option<bool>, ReadFailure>
    where
        S: Storage<Key = K, Value = V>,
    {
        // The stored value as a number (absent: zero); `None` if it is not one.
        let stored = || -> Result<Option<u128>, ReadFailure> {
            let value = storage.get(key).map_err(ReadFailure::Storage)?;
            Ok(value.map_or(Some(0), |value| value.as_u128()))
        };
        let with_stored = |stored: Option<u128>, credited: u128| {
            stored.map(|stored| stored.saturating_add(credited) >= threshold)
        };
        let hot = self.is_hot(key);
        // The credits directly below, walked until they reach the threshold.
        let walk = || {
            if hot {
                self.hot_credits_reach(key, txn_index, threshold)
            } else {
                // A key no transaction below wrote has its stored value: no credits on top.
                self.data
                    .read(key, |versions| versions.credits_reach(txn_index, threshold))
                    .unwrap_or(CreditWalk::Short(0))
            }
        };
        // First, whether every write of the key is a plain credit (`None`), or else the walk.
        // For the hot key a count says so: an aborted credit's new write is counted before its
        // ESTIMATE is lifted, so the count never passes through zero.
        let first = if hot {
            // `SeqCst`: a validation handed out after a `SeqCst` fence that follows a new write's
            // count must see the count (see the fence in `Scheduler::finish_execution`).
            (self.hot_blockers.load(Ordering::SeqCst) != 0).then(walk)
        } else {
            self.data
                .read(key, |versions| {
                    (!versions.only_credits()).then(|| versions.credits_reach(txn_index, threshold))
                })
                .unwrap_or(Some(CreditWalk::Short(0)))
        };
        let (walked, known) = if let Some(walked) = first {
            (walked, None)
        } else {
            // Credits only raise the stored value: if it is enough, so is the value (a fee
            // vault's, whose thousands of credits are then not walked). If not, the credits
            // below make up the difference or not.
            let stored = stored()?;
            if with_stored(stored, 0) == Some(true) {
                return Ok(Some(true));
            }
            (walk(), Some(stored))
        };
        match walked {
            CreditWalk::Reached => Ok(Some(true)),
            CreditWalk::Dependency(index) => Err(ReadFailure::Dependency(index)),
            CreditWalk::Short(credited) => {
                let stored = match known {
                    Some(stored) => stored,
                    None => stored()?,
                };
                Ok(with_stored(stored, credited))
            }
            CreditWalk::Unknown => Ok(None),
        }
    }

    /// Records an incarnation's writes, read set and output, replacing those of the previous
    /// incarnation. Returns whether it wrote a key the previous incarnation did not (later
    /// transactions must then be validated again), and the previous read-set vector, emptied,
    /// for another execution to fill.
    pub(crate) fn record(
        &self,
        txn_index: TxnIndex,
        incarnation: Incarnation,
        writes: Vec<(K, WriteOp<V>)>,
        reads: Vec<ReadRecord<K, V>>,
        output: O,
    ) -> (bool, Vec<ReadRecord<K, V>>) {
        // The key vector of the previous incarnation is reused for this one.
        let mut guard = self.records[txn_index].lock();
        let record = &mut *guard;
        let keys = &mut record.written;
        // How the previous incarnation and this one write the hot key: as a credit in the
        // record, or in the versions.
        let previous_credit = record.hot_credit.is_some();
        let hot_in_versions =
            !previous_credit && self.hot.as_ref().is_some_and(|hot| keys.contains(hot));
        let hot_write = self
            .hot
            .as_ref()
            .and_then(|hot| writes.iter().find(|(key, _)| key == hot).map(|(_, write)| write));
        let credit_now = matches!(hot_write, Some(WriteOp::Delta(Delta::Add { .. })));
        let versions_now = hot_write.is_some() && !credit_now;
        if versions_now && !hot_in_versions {
            // Counted before it is inserted, so that no reader takes the key for credits only.
            self.hot_blockers.fetch_add(1, Ordering::Release);
        }
        let wrote_new_location = if keys.is_empty() {
            // The first incarnation (or one after an empty write set): nothing to compare.
            !writes.is_empty()
        } else {
            // A previous credit of the hot key is in the record, not in the versions.
            let credit_key = self.hot.as_ref().filter(|_| previous_credit);
            self.remove_stale_writes(txn_index, keys, &writes, credit_key);
            let previous_set =
                (keys.len() > LINEAR_SCAN_LIMIT).then(|| keys.iter().collect::<KeySet<'_, K>>());
            writes.iter().any(|(key, _)| match &previous_set {
                Some(set) => !set.contains(key),
                None => !keys.contains(key),
            })
        };
        keys.clear();
        let mut hot_credit = None;
        for (key, write) in writes {
            match write {
                WriteOp::Delta(credit @ Delta::Add { .. }) if self.is_hot(&key) => {
                    hot_credit = Some(credit);
                }
                write => self.data.update(&key, |versions| {
                    // INVARIANT: a block holds fewer than 2^32 transactions.
                    versions.insert(Entry {
                        index: txn_index as u32,
                        incarnation,
                        estimate: false,
                        write,
                    });
                }),
            }
            keys.push(key);
        }
        if hot_in_versions && !versions_now {
            if let (true, Some(hot)) = (credit_now, &self.hot) {
                // Its ESTIMATE in the versions makes way for the credit in the record (one not
                // written again went with the stale writes above).
                self.data.update_existing(hot, |versions| versions.remove(txn_index));
            }
            self.hot_blockers.fetch_sub(1, Ordering::Release);
        }
        // Only now, with the new writes in place, does the previous credit's ESTIMATE go.
        record.hot_credit = hot_credit;
        if std::mem::take(&mut record.hot_estimate) {
            self.hot_blockers.fetch_sub(1, Ordering::Release);
        }
        let mut replaced_reads = std::mem::replace(&mut record.reads, reads);
        replaced_reads.clear();
        record.output = Some(output);
        (wrote_new_location, replaced_reads)
    }

    /// Removes the entries of `previous_keys` that the new write set no longer writes
    /// (`credit_key`'s was a credit in the record: it has none).
    fn remove_stale_writes(
        &self,
        txn_index: TxnIndex,
        previous_keys: &[K],
        writes: &[(K, WriteOp<V>)],
        credit_key: Option<&K>,
    ) {
        let new_set = (writes.len() > LINEAR_SCAN_LIMIT)
            .then(|| writes.iter().map(|(key, _)| key).collect::<KeySet<'_, K>>());
        let still_written = |key: &K| match &new_set {
            Some(set) => set.contains(key),
            None => writes.iter().any(|(written, _)| written == key),
        };
        for key in
            previous_keys.iter().filter(|key| !still_written(key) && credit_key != Some(*key))
        {
            self.data.update_existing(key, |versions| versions.remove(txn_index));
        }
    }

    /// Marks every write of the transaction's latest incarnation as an ESTIMATE.
    pub(crate) fn convert_writes_to_estimates(&self, txn_index: TxnIndex) {
        let mut record = self.records[txn_index].lock();
        let credit = record.hot_credit.is_some();
        for key in &record.written {
            if credit && self.is_hot(key) {
                continue;
            }
            self.data.update_existing(key, |versions| versions.mark_estimate(txn_index));
        }
        if credit && !record.hot_estimate {
            record.hot_estimate = true;
            self.hot_blockers.fetch_add(1, Ordering::Release);
        }
    }

    /// Whether the transaction would read exactly what it read in its latest incarnation.
    ///
    /// # Errors
    /// The storage failed while re-resolving a delta chain.
    pub(crate) fn validate_read_set<S>(
        &self,
        txn_index: TxnIndex,
        storage: &S,
    ) -> Result<bool, StorageError>
    where
        S: Storage<Key = K, Value = V>,
    {
        let record = self.records[txn_index].lock();
        for record in &record.reads {
            let still_valid = match record {
                ReadRecord::Read(key, origin) => match (self.lookup(key, txn_index), origin) {
                    (Lookup::Storage, ReadOrigin::Storage) => true,
                    (
                        Lookup::Version(index, incarnation, _),
                        ReadOrigin::Version(read_index, read_incarnation),
                    ) => index == *read_index && incarnation == *read_incarnation,
                    (Lookup::Resolved(now), ReadOrigin::Resolved(then)) => now == *then,
                    (Lookup::DeltasOverStorage(net), ReadOrigin::Resolved(then)) => {
                        Some(resolve(storage.get(key)?.as_ref(), net)) == *then
                    }
                    _ => false,
                },
                ReadRecord::DeltaFits(key, delta, answer) => {
                    match self.delta_fits(key, txn_index, *delta, storage) {
                        Ok(now) => now == *answer,
                        Err(ReadFailure::Dependency(_)) => false,
                        Err(ReadFailure::Storage(error)) => return Err(error),
                    }
                }
            };
            if !still_valid {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Finalizes shard `index` into `finalizer` and empties it.
    ///
    /// # Errors
    /// The storage failed.
    pub(crate) fn drain_shard_into<S>(
        &self,
        index: usize,
        finalizer: &mut Finalizer<K, V>,
        storage: &S,
    ) -> Result<(), StorageError>
    where
        S: Storage<Key = K, Value = V>,
    {
        self.data.drain_shard(index, |key, versions| {
            if self.is_hot(&key) {
                // Finalized with the credits in the records.
                *self.hot_versions.lock() = Some(versions);
                return Ok(());
            }
            finalizer.add_owned(key, versions, storage)
        })
    }

    /// Empties the records of transactions `range` and returns their outputs (`None` for one
    /// that never finished) and credits of the hot key, so that threads share this end-of-block
    /// work. The credits stay unless the block is `done`: the sequential end of a halted run
    /// still reads them. Records emptied of a done block are counted, and the next
    /// [`reset`](Self::reset) leaves them as they are.
    pub(crate) fn take_outputs(
        &self,
        range: std::ops::Range<TxnIndex>,
        done: bool,
    ) -> (Vec<Option<O>>, Credits) {
        let mut credits = Vec::new();
        let count = range.len();
        let outputs = range
            .map(|txn_index| {
                let mut record = self.records[txn_index].lock();
                record.reads.clear();
                record.written.clear();
                let credit = if done { record.hot_credit.take() } else { record.hot_credit };
                credits.extend(credit.map(|credit| (txn_index, credit)));
                if done {
                    record.hot_estimate = false;
                }
                record.output.take()
            })
            .collect();
        if done {
            self.emptied_records.fetch_add(count, Ordering::Relaxed);
        }
        (outputs, credits)
    }

    /// The hot key's final value below `end`, from its versions and `credits` (the records'
    /// credits below `end`, in block order), as a finalizer of that one key.
    ///
    /// # Errors
    /// The storage failed.
    pub(crate) fn hot_finalizer<S>(
        &self,
        end: TxnIndex,
        credits: &[(TxnIndex, Delta)],
        storage: &S,
    ) -> Result<Option<Finalizer<K, V>>, StorageError>
    where
        S: Storage<Key = K, Value = V>,
    {
        let Some(key) = self.hot.clone() else { return Ok(None) };
        // Set aside when the memory was drained; still in place after a halted run.
        let set_aside = self.hot_versions.lock().take();
        let versions: SmallVec<[Entry<V>; 2]> = match set_aside {
            Some(versions) => versions.entries,
            None => self
                .data
                .read(&key, |versions| versions.below(end).iter().cloned().collect())
                .unwrap_or_default(),
        };
        // Two runs in block order (each transaction wrote the key once, in one or the other),
        // merged as they are applied: no entry per credit.
        let versions = versions.iter().filter(|entry| entry.index() < end).map(Entry::borrowed);
        let credits = credits
            .iter()
            .filter(|(index, _)| *index < end)
            .map(|&(index, credit)| (index, WriteOp::Delta(credit)));
        let mut writes = merge_by_index(versions, credits).peekable();
        if writes.peek().is_none() {
            return Ok(None);
        }
        // One key: no spare vector for it.
        let mut finalizer =
            Finalizer { end, updates: Vec::with_capacity(1), first_violation: None };
        finalizer.apply_writes(key, writes, storage)?;
        Ok(Some(finalizer))
    }

    /// The final value of every key written by a transaction below `end`, sorted by key, with
    /// every delta checked against its bounds in block order. One thread; for a run that stopped
    /// early.
    ///
    /// # Errors
    /// As [`Finalizer::finish`].
    pub(crate) fn final_updates<S>(
        &self,
        end: TxnIndex,
        credits: &[(TxnIndex, Delta)],
        storage: &S,
    ) -> Result<Vec<(K, Option<V>)>, BlockError<K>>
    where
        S: Storage<Key = K, Value = V>,
    {
        let mut finalizer = self.finalizer(end);
        self.data
            .for_each_entry(|key, versions| {
                if self.is_hot(key) {
                    return Ok(());
                }
                finalizer.add_key(key, versions, storage)
            })
            .map_err(BlockError::Storage)?;
        finalizer.sort();
        let mut finalizers = vec![finalizer];
        finalizers.extend(self.hot_finalizer(end, credits, storage).map_err(BlockError::Storage)?);
        self.finish(finalizers)
    }

    /// A finalizer of the writes of transactions below `end`, reusing the largest spare update
    /// vector (growing a vector of megabytes again faults its pages in again).
    pub(crate) fn finalizer(&self, end: TxnIndex) -> Finalizer<K, V> {
        let mut spares = self.spare_updates.lock();
        let largest = (0..spares.len()).max_by_key(|&index| spares[index].capacity());
        let updates = largest.map(|index| spares.swap_remove(index)).unwrap_or_default();
        Finalizer { end, updates, first_violation: None }
    }

    /// All updates of the finalizers, sorted by key; their vectors go back to the spares.
    ///
    /// # Errors
    /// The first delta (lowest transaction index, then smallest key) that leaves its bounds or
    /// applies to a non-numeric value.
    pub(crate) fn finish(
        &self,
        mut finalizers: Vec<Finalizer<K, V>>,
    ) -> Result<Vec<(K, Option<V>)>, BlockError<K>> {
        let first_violation = finalizers
            .iter()
            .filter_map(|finalizer| finalizer.first_violation.as_ref())
            .min_by(|left, right| (left.0, &left.1).cmp(&(right.0, &right.1)))
            .cloned();
        let result = match first_violation {
            Some((txn_index, key, true)) => Err(BlockError::DeltaOnNonNumeric { txn_index, key }),
            Some((txn_index, key, false)) => Err(BlockError::DeltaOutOfBounds { txn_index, key }),
            None => Ok(merge_sorted_runs(&mut finalizers)),
        };
        let mut spares = self.spare_updates.lock();
        for mut finalizer in finalizers {
            finalizer.updates.clear();
            spares.push(finalizer.updates);
        }
        // As many as a block's workers take, the largest.
        spares.sort_unstable_by_key(|spare| std::cmp::Reverse(spare.capacity()));
        spares.truncate(SPARE_UPDATE_VECTORS);
        result
    }
}

/// Merges the finalizers' sorted, disjoint update lists into one sorted list, emptying them
/// (they keep their capacity).
fn merge_sorted_runs<K: Ord, V>(finalizers: &mut [Finalizer<K, V>]) -> Vec<(K, Option<V>)> {
    let total = finalizers.iter().map(|finalizer| finalizer.updates.len()).sum();
    let mut merged = Vec::with_capacity(total);
    let mut runs: Vec<_> =
        finalizers.iter_mut().map(|finalizer| finalizer.updates.drain(..)).collect();
    loop {
        let smallest = runs
            .iter()
            .enumerate()
            .filter_map(|(index, run)| run.as_slice().first().map(|(key, _)| (key, index)))
            .min_by(|left, right| left.0.cmp(right.0))
            .map(|(_, index)| index);
        match smallest {
            Some(index) => merged.extend(runs[index].next()),
            None => return merged,
        }
    }
}

/// Computes final values, key by key, checking every delta in block order.
pub(crate) struct Finalizer<K, V> {
    end: TxnIndex,
    updates: Vec<(K, Option<V>)>,
    /// The first delta out of bounds: transaction, key, and whether the value was not numeric.
    first_violation: Option<(TxnIndex, K, bool)>,
}

impl<K: StateKeyBound, V: StateValueBound> Finalizer<K, V> {
    /// Adds the final value of `key` from the writes of transactions below the end (a copy of
    /// the last one, when none is a delta).
    fn add_key<S>(
        &mut self,
        key: &K,
        versions: &Versions<V>,
        storage: &S,
    ) -> Result<(), StorageError>
    where
        S: Storage<Key = K, Value = V>,
    {
        let entries = versions.below(self.end);
        if has_deltas(entries) {
            return self.apply_writes(key.clone(), entries.iter().map(Entry::borrowed), storage);
        }
        if let Some(last) = entries.last() {
            self.push_last(key.clone(), last.write.clone());
        }
        Ok(())
    }

    /// As [`add_key`](Self::add_key), taking the key and its writes: neither is copied.
    fn add_owned<S>(
        &mut self,
        key: K,
        versions: Versions<V>,
        storage: &S,
    ) -> Result<(), StorageError>
    where
        S: Storage<Key = K, Value = V>,
    {
        let below = versions.below(self.end).len();
        let mut entries = versions.entries;
        if has_deltas(&entries[..below]) {
            return self.apply_writes(key, entries[..below].iter().map(Entry::borrowed), storage);
        }
        entries.truncate(below);
        if let Some(last) = entries.pop() {
            self.push_last(key, last.write);
        }
        Ok(())
    }

    /// Adds `key`'s final value from its last write, which is not a delta.
    fn push_last(&mut self, key: K, last: WriteOp<V>) {
        let value = match last {
            WriteOp::Put(value) => Some(value),
            WriteOp::Delete | WriteOp::Delta(_) => None,
        };
        self.updates.push((key, value));
    }

    /// Applies `writes` (some of them deltas) in block order, from the stored value if the
    /// first one is a delta; records the first delta out of bounds instead of a value.
    fn apply_writes<'a, S>(
        &mut self,
        key: K,
        writes: impl Iterator<Item = IndexedWrite<'a, V>>,
        storage: &S,
    ) -> Result<(), StorageError>
    where
        S: Storage<Key = K, Value = V>,
        V: 'a,
    {
        let mut current = None;
        for (position, (index, write)) in writes.enumerate() {
            match write {
                WriteOp::Put(value) => current = Some(value.clone()),
                WriteOp::Delete => current = None,
                WriteOp::Delta(delta) => {
                    if position == 0 {
                        current = storage.get(&key)?;
                    }
                    match apply_strictly(current.as_ref(), delta) {
                        Ok(value) => current = Some(value),
                        Err(non_numeric) => {
                            let earlier = self.first_violation.as_ref().is_none_or(
                                |(first_index, first_key, _)| {
                                    (index, &key) < (*first_index, first_key)
                                },
                            );
                            if earlier {
                                self.first_violation = Some((index, key, non_numeric));
                            }
                            return Ok(());
                        }
                    }
                }
            }
        }
        self.updates.push((key, current));
        Ok(())
    }

    /// Sorts this finalizer's updates, so that [`finish`](Self::finish) only merges.
    pub(crate) fn sort(&mut self) {
        self.updates.sort_unstable_by(|left, right| left.0.cmp(&right.0));
    }
}

fn new_record_slot<K, V, O>() -> CachePadded<Mutex<Record<K, V, O>>> {
    CachePadded::new(Mutex::new(Record {
        written: Vec::new(),
        reads: Vec::new(),
        output: None,
        hot_credit: None,
        hot_estimate: false,
    }))
}

/// One write of a key as the finalizer applies it: the writing transaction, the value borrowed.
type IndexedWrite<'a, V> = (TxnIndex, WriteOp<&'a V>);

/// Merges two runs of one key's writes, each in block order, into one in block order.
fn merge_by_index<'a, V: 'a>(
    first: impl Iterator<Item = IndexedWrite<'a, V>>,
    second: impl Iterator<Item = IndexedWrite<'a, V>>,
) -> impl Iterator<Item = IndexedWrite<'a, V>> {
    let (mut first, mut second) = (first.peekable(), second.peekable());
    std::iter::from_fn(move || match (first.peek(), second.peek()) {
        (Some((left, _)), Some((right, _))) if right < left => second.next(),
        (Some(_), _) => first.next(),
        (None, _) => second.next(),
    })
}

/// Whether any of `entries` is a delta.
fn has_deltas<V>(entries: &[Entry<V>]) -> bool {
    entries.iter().any(|entry| matches!(entry.write, WriteOp::Delta(_)))
}

/// Whether `delta` stays within its bounds on `value` (absent counts as zero).
pub(crate) fn fits<V: StateValueBound>(value: Option<&V>, delta: Delta) -> bool {
    apply_strictly(value, delta).is_ok()
}

/// `delta` applied to `value` (absent counts as zero). The error says whether the value was not
/// numeric (`true`) or the result left the delta's bounds (`false`).
pub(crate) fn apply_strictly<V: StateValueBound>(
    value: Option<&V>,
    delta: Delta,
) -> Result<V, bool> {
    let base = match value {
        None => 0,
        Some(value) => value.as_u128().ok_or(true)?,
    };
    delta.apply(base).map(V::from_u128).ok_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One key, stored at `stored`.
    struct One(Option<u128>);

    impl Storage for One {
        type Key = u16;
        type Value = u128;
        fn get(&self, _key: &u16) -> Result<Option<u128>, StorageError> {
            Ok(self.0)
        }
    }

    fn credit(amount: u128) -> Vec<(u16, WriteOp<u128>)> {
        vec![(0, WriteOp::Delta(Delta::add(amount)))]
    }

    #[test]
    fn balance_questions_on_a_key_with_only_credits_match_the_exact_answer() {
        // The same answers whether the key is the hot key (credits in the records) or not.
        for hot in [None, Some(0)] {
            let mut memory: MvMemory<u16, u128> = MvMemory::new();
            memory.reset(8, hot);
            let blockers = |memory: &MvMemory<u16, u128>| {
                hot.map(|_| memory.hot_blockers.load(Ordering::Relaxed))
            };
            let fits = |memory: &MvMemory<u16, u128>, txn, amount, stored| {
                memory.delta_fits(&0, txn, Delta::sub(amount), &One(stored)).ok()
            };
            let value = |memory: &MvMemory<u16, u128>, txn, stored| {
                memory.read(&0, txn, &One(stored)).ok().map(|(value, _)| value)
            };
            for txn_index in 0..4 {
                memory.record(txn_index, 0, credit(0), Vec::new(), ());
            }
            // Only credits (of zero): the stored value answers.
            assert_eq!(fits(&memory, 5, 1, Some(1)), Some(true));
            assert_eq!(fits(&memory, 5, 2, Some(1)), Some(false));
            assert_eq!(fits(&memory, 5, 1, None), Some(false));
            // A credit of 3 below: enough whatever is stored.
            memory.record(4, 0, credit(3), Vec::new(), ());
            assert_eq!(fits(&memory, 5, 3, None), Some(true));
            assert_eq!(fits(&memory, 5, 4, Some(1)), Some(true));
            assert_eq!(fits(&memory, 5, 5, Some(1)), Some(false));
            assert_eq!(value(&memory, 5, Some(1)), Some(Some(4)));
            // A value written below replaces the stored one: the fast path no longer applies.
            memory.record(2, 1, vec![(0, WriteOp::Put(0))], Vec::new(), ());
            assert_eq!(blockers(&memory), hot.map(|_| 1));
            assert_eq!(fits(&memory, 5, 4, Some(100)), Some(false));
            assert_eq!(fits(&memory, 5, 3, Some(100)), Some(true));
            assert_eq!(value(&memory, 5, Some(100)), Some(Some(3)));
            assert_eq!(value(&memory, 3, Some(100)), Some(Some(0)));
            // An ESTIMATE of that value, then back to a credit.
            memory.convert_writes_to_estimates(2);
            assert!(matches!(memory.read(&0, 5, &One(Some(1))), Err(ReadFailure::Dependency(2))));
            memory.record(2, 2, credit(0), Vec::new(), ());
            assert_eq!(blockers(&memory), hot.map(|_| 0));
            assert_eq!(fits(&memory, 5, 4, Some(1)), Some(true));
            assert_eq!(value(&memory, 5, Some(1)), Some(Some(4)));
            // An ESTIMATE of a credit: the reader waits for it.
            memory.convert_writes_to_estimates(3);
            assert_eq!(blockers(&memory), hot.map(|_| 1));
            assert!(matches!(
                memory.delta_fits(&0, 5, Delta::sub(100), &One(Some(1))),
                Err(ReadFailure::Dependency(3))
            ));
            // Its next incarnation writes a value instead: counted before the ESTIMATE goes.
            memory.record(3, 1, vec![(0, WriteOp::Put(10))], Vec::new(), ());
            assert_eq!(blockers(&memory), hot.map(|_| 1));
            assert_eq!(value(&memory, 5, Some(1)), Some(Some(13)));
            // And a credit again: the stored value answers again.
            memory.convert_writes_to_estimates(3);
            memory.record(3, 2, credit(0), Vec::new(), ());
            assert_eq!(blockers(&memory), hot.map(|_| 0));
            assert_eq!(fits(&memory, 5, 1, Some(1)), Some(true));
            assert_eq!(value(&memory, 5, Some(1)), Some(Some(4)));
        }
    }
}
