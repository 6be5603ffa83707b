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

use std::collections::BTreeMap;

use crossbeam_utils::CachePadded;
use dashmap::DashMap;
use parking_lot::Mutex;
use rustc_hash::{FxBuildHasher, FxHashSet};

use crate::delta::{Delta, NetDelta};
use crate::vm::{Incarnation, StateKeyBound, StateValue, Storage, StorageError, TxnIndex, WriteOp};
use crate::BlockError;

struct Entry<V> {
    incarnation: Incarnation,
    write: WriteOp<V>,
    estimate: bool,
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

/// The state of a key as seen by one transaction, before any storage read.
enum Lookup<V> {
    Storage,
    Version(TxnIndex, Incarnation, Option<V>),
    Resolved(Option<V>),
    DeltasOverStorage(NetDelta),
    Dependency(TxnIndex),
}

/// The multi-version memory of one block run.
pub(crate) struct MvMemory<K, V> {
    data: DashMap<K, BTreeMap<TxnIndex, Entry<V>>, FxBuildHasher>,
    written_keys: Vec<CachePadded<Mutex<Vec<K>>>>,
    read_sets: Vec<CachePadded<Mutex<Vec<ReadRecord<K, V>>>>>,
}

/// Write sets up to this size are compared by linear scan; larger ones through a hash set.
const LINEAR_SCAN_LIMIT: usize = 16;

fn contains_key<K: StateKeyBound>(keys: &[K], set: Option<&FxHashSet<&K>>, key: &K) -> bool {
    match set {
        Some(set) => set.contains(key),
        None => keys.contains(key),
    }
}

fn resolve<V: StateValue>(base: Option<&V>, net: NetDelta) -> Option<V> {
    Some(V::from_u128(net.apply_to(base.and_then(StateValue::as_u128).unwrap_or(0))))
}

impl<K: StateKeyBound, V: StateValue> MvMemory<K, V> {
    pub(crate) fn new(block_size: usize) -> Self {
        Self {
            data: DashMap::with_hasher(FxBuildHasher),
            written_keys: (0..block_size).map(|_| CachePadded::new(Mutex::new(Vec::new()))).collect(),
            read_sets: (0..block_size).map(|_| CachePadded::new(Mutex::new(Vec::new()))).collect(),
        }
    }

    fn lookup(&self, key: &K, txn_index: TxnIndex) -> Lookup<V> {
        let Some(entries) = self.data.get(key) else {
            return Lookup::Storage;
        };
        let mut net = NetDelta::default();
        let mut has_deltas = false;
        for (&index, entry) in entries.range(..txn_index).rev() {
            if entry.estimate {
                return Lookup::Dependency(index);
            }
            match &entry.write {
                WriteOp::Delta(delta) => {
                    net.push(*delta);
                    has_deltas = true;
                }
                WriteOp::Put(value) if has_deltas => return Lookup::Resolved(resolve(Some(value), net)),
                WriteOp::Delete if has_deltas => return Lookup::Resolved(resolve(None, net)),
                WriteOp::Put(value) => {
                    return Lookup::Version(index, entry.incarnation, Some(value.clone()))
                }
                WriteOp::Delete => return Lookup::Version(index, entry.incarnation, None),
            }
        }
        if has_deltas {
            Lookup::DeltasOverStorage(net)
        } else {
            Lookup::Storage
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
            Lookup::Storage => {
                storage.get(key).map(|value| (value, ReadOrigin::Storage)).map_err(ReadFailure::Storage)
            }
            Lookup::Version(index, incarnation, value) => {
                Ok((value, ReadOrigin::Version(index, incarnation)))
            }
            Lookup::Resolved(value) => Ok((value.clone(), ReadOrigin::Resolved(value))),
            Lookup::DeltasOverStorage(net) => {
                let base = storage.get(key).map_err(ReadFailure::Storage)?;
                let value = resolve(base.as_ref(), net);
                Ok((value.clone(), ReadOrigin::Resolved(value)))
            }
            Lookup::Dependency(index) => Err(ReadFailure::Dependency(index)),
        }
    }

    /// Records an incarnation's writes and read set, replacing those of the previous incarnation.
    /// Returns whether it wrote a key the previous incarnation did not (later transactions must
    /// then be validated again).
    pub(crate) fn record(
        &self,
        txn_index: TxnIndex,
        incarnation: Incarnation,
        writes: Vec<(K, WriteOp<V>)>,
        reads: Vec<ReadRecord<K, V>>,
    ) -> bool {
        let new_keys: Vec<K> = writes.iter().map(|(key, _)| key.clone()).collect();
        for (key, write) in writes {
            self.data.entry(key).or_default().insert(
                txn_index,
                Entry { incarnation, write, estimate: false },
            );
        }
        let mut previous_keys = self.written_keys[txn_index].lock();
        let new_set = (new_keys.len() > LINEAR_SCAN_LIMIT)
            .then(|| new_keys.iter().collect::<FxHashSet<&K>>());
        for key in previous_keys.iter() {
            if !contains_key(&new_keys, new_set.as_ref(), key) {
                if let Some(mut entries) = self.data.get_mut(key) {
                    entries.remove(&txn_index);
                }
            }
        }
        let previous_set = (previous_keys.len() > LINEAR_SCAN_LIMIT)
            .then(|| previous_keys.iter().collect::<FxHashSet<&K>>());
        let wrote_new_location =
            new_keys.iter().any(|key| !contains_key(&previous_keys, previous_set.as_ref(), key));
        drop(previous_set);
        *previous_keys = new_keys;
        drop(previous_keys);
        *self.read_sets[txn_index].lock() = reads;
        wrote_new_location
    }

    /// Marks every write of the transaction's latest incarnation as an ESTIMATE.
    pub(crate) fn convert_writes_to_estimates(&self, txn_index: TxnIndex) {
        for key in self.written_keys[txn_index].lock().iter() {
            if let Some(mut entries) = self.data.get_mut(key) {
                if let Some(entry) = entries.get_mut(&txn_index) {
                    entry.estimate = true;
                }
            }
        }
    }

    /// Whether the transaction would read exactly what it read in its latest incarnation.
    ///
    /// # Errors
    /// The storage failed while re-resolving a delta chain.
    pub(crate) fn validate_read_set<S>(&self, txn_index: TxnIndex, storage: &S) -> Result<bool, StorageError>
    where
        S: Storage<Key = K, Value = V>,
    {
        let reads = self.read_sets[txn_index].lock();
        for record in reads.iter() {
            let still_valid = match record {
                ReadRecord::Read(key, origin) => match (self.lookup(key, txn_index), origin) {
                    (Lookup::Storage, ReadOrigin::Storage) => true,
                    (Lookup::Version(index, incarnation, _), ReadOrigin::Version(read_index, read_incarnation)) => {
                        index == *read_index && incarnation == *read_incarnation
                    }
                    (Lookup::Resolved(now), ReadOrigin::Resolved(then)) => now == *then,
                    (Lookup::DeltasOverStorage(net), ReadOrigin::Resolved(then)) => {
                        resolve(storage.get(key)?.as_ref(), net) == *then
                    }
                    _ => false,
                },
                ReadRecord::DeltaFits(key, delta, answer) => {
                    let now = match self.lookup(key, txn_index) {
                        Lookup::Dependency(_) => None,
                        Lookup::Storage => Some(storage.get(key)?),
                        Lookup::Version(_, _, value) | Lookup::Resolved(value) => Some(value),
                        Lookup::DeltasOverStorage(net) => Some(resolve(storage.get(key)?.as_ref(), net)),
                    };
                    now.is_some_and(|value| fits(value.as_ref(), *delta) == *answer)
                }
            };
            if !still_valid {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The final value of every key written by a transaction below `end`, sorted by key, with
    /// every delta checked against its bounds in block order.
    ///
    /// # Errors
    /// The first delta (lowest transaction index, then smallest key) that leaves its bounds or
    /// applies to a non-numeric value; or a storage failure.
    pub(crate) fn final_updates<S>(
        &self,
        end: TxnIndex,
        storage: &S,
    ) -> Result<Vec<(K, Option<V>)>, BlockError<K>>
    where
        S: Storage<Key = K, Value = V>,
    {
        let mut updates = Vec::with_capacity(self.data.len());
        let mut first_violation: Option<(TxnIndex, K, bool)> = None;
        for item in &self.data {
            let (key, entries) = item.pair();
            let mut range = entries.range(..end);
            let Some((_, last)) = range.next_back() else { continue };
            let has_deltas = entries.range(..end).any(|(_, entry)| matches!(entry.write, WriteOp::Delta(_)));
            if !has_deltas {
                let value = match &last.write {
                    WriteOp::Put(value) => Some(value.clone()),
                    WriteOp::Delete | WriteOp::Delta(_) => None,
                };
                updates.push((key.clone(), value));
                continue;
            }
            let mut current = None;
            let mut started = false;
            for (&index, entry) in entries.range(..end) {
                match &entry.write {
                    WriteOp::Put(value) => current = Some(value.clone()),
                    WriteOp::Delete => current = None,
                    WriteOp::Delta(delta) => {
                        if !started {
                            current = storage.get(key)?;
                        }
                        match apply_strictly(current.as_ref(), *delta) {
                            Ok(value) => current = Some(value),
                            Err(non_numeric) => {
                                let candidate = (index, key.clone(), non_numeric);
                                if first_violation.as_ref().is_none_or(|first| (index, key) < (first.0, &first.1)) {
                                    first_violation = Some(candidate);
                                }
                                break;
                            }
                        }
                    }
                }
                started = true;
            }
            updates.push((key.clone(), current));
        }
        if let Some((txn_index, key, non_numeric)) = first_violation {
            return Err(if non_numeric {
                BlockError::DeltaOnNonNumeric { txn_index, key }
            } else {
                BlockError::DeltaOutOfBounds { txn_index, key }
            });
        }
        updates.sort_unstable_by(|left, right| left.0.cmp(&right.0));
        Ok(updates)
    }
}

/// Whether `delta` stays within its bounds on `value` (absent counts as zero).
pub(crate) fn fits<V: StateValue>(value: Option<&V>, delta: Delta) -> bool {
    apply_strictly(value, delta).is_ok()
}

/// `delta` applied to `value` (absent counts as zero). The error says whether the value was not
/// numeric (`true`) or the result left the delta's bounds (`false`).
pub(crate) fn apply_strictly<V: StateValue>(value: Option<&V>, delta: Delta) -> Result<V, bool> {
    let base = match value {
        None => 0,
        Some(value) => value.as_u128().ok_or(true)?,
    };
    delta.apply(base).map(V::from_u128).ok_or(false)
}
