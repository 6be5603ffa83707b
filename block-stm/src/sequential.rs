//! The sequential executor: the specification the parallel executor must match byte for byte.
//!
//! Transactions run one after another, each seeing exactly the writes of those before it. It is
//! also the fast path for one thread and for blocks too small to benefit from parallelism, and it
//! continues a parallel run that was stopped for contention, until the contention is over
//! ([`Probe`]) or to the end of the block.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use foldhash::fast::FixedState;

pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, FixedState>;

/// The entries of `map`, in key order (as block outputs list state updates).
pub(crate) fn into_sorted<K: Ord, V>(map: FastMap<K, V>) -> Vec<(K, V)> {
    let mut entries: Vec<_> = map.into_iter().collect();
    entries.sort_unstable_by(|left, right| left.0.cmp(&right.0));
    entries
}
type FastSet<T> = std::collections::HashSet<T, FixedState>;

use crate::delta::Delta;
use crate::mvmemory::{apply_strictly, fits};
use crate::vm::{
    ReadError, Storage, StorageError, TransactionResult, TransactionView, TxnIndex, Vm, VmOutput,
    WriteOp,
};
use crate::{BlockError, BlockOutput, VmBlockOutput};

/// The write set and result of one execution, however the VM returned.
pub(crate) type Executed<M> = (
    Vec<(<M as Vm>::Key, WriteOp<<M as Vm>::Value>)>,
    TransactionResult<<M as Vm>::Output, <M as Vm>::Error>,
);

/// Runs the VM on one transaction, turning a panic into the transaction's result. A rejected or
/// panicked transaction writes nothing.
pub(crate) fn run_transaction<M, View>(
    vm: &M,
    txn_index: TxnIndex,
    transaction: &M::Transaction,
    view: &View,
) -> Executed<M>
where
    M: Vm,
    View: TransactionView<Key = M::Key, Value = M::Value>,
{
    match catch_unwind(AssertUnwindSafe(|| vm.execute(txn_index, transaction, view))) {
        Ok(Ok(VmOutput { writes, output })) => {
            (last_write_per_key(writes), TransactionResult::Executed(output))
        }
        Ok(Err(error)) => (Vec::new(), TransactionResult::Rejected(error)),
        Err(payload) => (Vec::new(), TransactionResult::Panicked(panic_message(payload.as_ref()))),
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Keeps only the last write of each key, in the order of those last writes.
fn last_write_per_key<K: Eq + std::hash::Hash + Clone, V>(writes: Vec<(K, V)>) -> Vec<(K, V)> {
    let has_duplicates = if writes.len() <= 16 {
        (1..writes.len())
            .any(|index| writes[..index].iter().any(|(key, _)| *key == writes[index].0))
    } else {
        let mut seen = FastSet::default();
        !writes.iter().all(|(key, _)| seen.insert(key))
    };
    if !has_duplicates {
        return writes;
    }
    let mut seen = FastSet::default();
    let mut kept: Vec<(K, V)> =
        writes.into_iter().rev().filter(|(key, _)| seen.insert(key.clone())).collect();
    kept.reverse();
    kept
}

/// A transaction's view in the sequential executor: the writes so far, over the storage.
struct SequentialView<'a, K, V, S> {
    overlay: &'a FastMap<K, Option<V>>,
    storage: &'a S,
    failure: RefCell<Option<StorageError>>,
}

impl<K, V, S> SequentialView<'_, K, V, S>
where
    K: crate::StateKeyBound,
    V: crate::StateValueBound,
    S: Storage<Key = K, Value = V>,
{
    fn current(&self, key: &K) -> Result<Option<V>, ReadError> {
        if let Some(value) = self.overlay.get(key) {
            return Ok(value.clone());
        }
        self.storage.get(key).map_err(|error| {
            self.failure.borrow_mut().get_or_insert_with(|| error.clone());
            ReadError::Storage(error)
        })
    }
}

impl<K, V, S> TransactionView for SequentialView<'_, K, V, S>
where
    K: crate::StateKeyBound,
    V: crate::StateValueBound,
    S: Storage<Key = K, Value = V>,
{
    type Key = K;
    type Value = V;

    fn read(&self, key: &K) -> Result<Option<V>, ReadError> {
        self.current(key)
    }

    fn delta_fits(&self, key: &K, delta: Delta) -> Result<bool, ReadError> {
        Ok(fits(self.current(key)?.as_ref(), delta))
    }
}

/// Executes `transactions` one by one over `storage`; the first has index `first_index`.
///
/// # Errors
/// See [`BlockError`].
pub(crate) fn execute_sequential<M, S>(
    vm: &M,
    transactions: &[M::Transaction],
    first_index: TxnIndex,
    storage: &S,
) -> Result<VmBlockOutput<M>, BlockError<M::Key>>
where
    M: Vm,
    S: Storage<Key = M::Key, Value = M::Value>,
{
    execute_sequential_until(vm, transactions, first_index, storage, None)
}

/// The VM's own sequential run of `transactions` ([`Vm::execute_sequentially`]), if it has one;
/// `None` also if it panicked: the run is then made one transaction at a time, where a panic is
/// the result of the transaction that panicked, as in every other run.
pub(crate) fn own_run<M, S>(
    vm: &M,
    transactions: &[M::Transaction],
    first_index: TxnIndex,
    storage: &S,
) -> Option<Result<VmBlockOutput<M>, BlockError<M::Key>>>
where
    M: Vm,
    S: Storage<Key = M::Key, Value = M::Value>,
{
    let run = || vm.execute_sequentially(transactions, first_index, storage);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or(None)
}

/// [`execute_sequential`], stopping after a transaction if `probe` says the contention is over:
/// the output then covers the transactions up to it. With a probe, its map of writes is sized
/// for twice the probe's window at most (a run that is likely to stop early faults in no more).
/// The VM's own sequential run ([`Vm::execute_sequentially`]), if it has one, runs the whole
/// run without a probe, or what follows the probe's window.
///
/// # Errors
/// See [`BlockError`].
pub(crate) fn execute_sequential_until<M, S>(
    vm: &M,
    transactions: &[M::Transaction],
    first_index: TxnIndex,
    storage: &S,
    mut probe: Option<Probe<M::Key>>,
) -> Result<VmBlockOutput<M>, BlockError<M::Key>>
where
    M: Vm,
    S: Storage<Key = M::Key, Value = M::Value>,
{
    if probe.is_none() {
        if let Some(output) = own_run(vm, transactions, first_index, storage) {
            return output;
        }
    }
    let likely = probe.as_ref().map_or(usize::MAX, |probe| probe.window.saturating_mul(2));
    let mut overlay: FastMap<M::Key, Option<M::Value>> = FastMap::with_capacity_and_hasher(
        crate::KEYS_PER_TRANSACTION * transactions.len().min(likely),
        FixedState::default(),
    );
    let mut results = Vec::with_capacity(transactions.len());
    // Past its window a probe can no longer stop the run: the rest is a whole run.
    let watched = probe.as_ref().map(|probe| probe.window);
    for (offset, transaction) in transactions.iter().enumerate() {
        let txn_index = first_index + offset;
        if watched == Some(offset) {
            let rest = &transactions[offset..];
            let layered = crate::LayeredStorage::new(storage, &overlay);
            if let Some(output) = own_run(vm, rest, txn_index, &layered) {
                let output = output?;
                results.extend(output.results);
                // Both in key order: merged, the rest's writes over the window's.
                let state_updates =
                    crate::parallel::merge_sorted(into_sorted(overlay), output.state_updates);
                return Ok(BlockOutput { results, state_updates });
            }
        }
        let view = SequentialView { overlay: &overlay, storage, failure: RefCell::new(None) };
        let (writes, result) = run_transaction(vm, txn_index, transaction, &view);
        if let Some(error) = view.failure.into_inner() {
            return Err(BlockError::Storage(error));
        }
        let stopping = probe.as_mut().is_some_and(|probe| probe.stop_after(offset, &writes));
        let mut violation: Option<(M::Key, bool)> = None;
        for (key, write) in writes {
            let value = match write {
                WriteOp::Put(value) => Some(value),
                WriteOp::Delete => None,
                WriteOp::Delta(delta) => {
                    let current = match overlay.get(&key) {
                        Some(value) => value.clone(),
                        None => storage.get(&key)?,
                    };
                    match apply_strictly(current.as_ref(), delta) {
                        Ok(value) => Some(value),
                        Err(non_numeric) => {
                            if violation.as_ref().is_none_or(|(first, _)| key < *first) {
                                violation = Some((key, non_numeric));
                            }
                            continue;
                        }
                    }
                }
            };
            overlay.insert(key, value);
        }
        if let Some((key, non_numeric)) = violation {
            return Err(if non_numeric {
                BlockError::DeltaOnNonNumeric { txn_index, key }
            } else {
                BlockError::DeltaOutOfBounds { txn_index, key }
            });
        }
        results.push(result);
        if stopping {
            break;
        }
    }
    Ok(BlockOutput { results, state_updates: into_sorted(overlay) })
}

/// Watches the transactions a contention hand-over runs sequentially, to tell whether the
/// contention lasted: after the first `window` of them, the run stops (and the block goes back
/// to parallel execution) if in the window's second half at most [`Probe::MAX_DEPENDENT_PERCENT`]
/// of the transactions wrote (not merely credited) a key one of the two transactions before it
/// wrote. A block whose first transfers conflict (to accounts that held nothing, say) then runs
/// in parallel again after them; a block of transfers among two accounts stays sequential.
pub(crate) struct Probe<K> {
    window: usize,
    /// The last transaction that wrote each key, from two before the watched half on.
    last_writer: FastMap<K, usize>,
    /// Transactions of the watched half that wrote a key one of the two before them wrote.
    dependent: usize,
}

impl<K: Eq + std::hash::Hash + Clone> Probe<K> {
    /// The share of dependent transactions, in percent, up to which the run stops.
    const MAX_DEPENDENT_PERCENT: usize = 10;

    fn new(window: usize) -> Self {
        Self { window, last_writer: FastMap::default(), dependent: 0 }
    }

    /// A probe of `window` transactions over a run of `run_length`, if it can stop the run
    /// early: none for a window of 0 (never give the block back) or one the run does not exceed.
    pub(crate) fn watching(window: usize, run_length: usize) -> Option<Self> {
        (window > 0 && window < run_length).then(|| Self::new(window))
    }

    /// After the transaction at `offset` wrote `writes`: whether to stop after it.
    pub(crate) fn stop_after<V>(&mut self, offset: usize, writes: &[(K, WriteOp<V>)]) -> bool {
        let watched = self.window / 2;
        if offset + 2 >= watched && offset < self.window {
            let mut depends = false;
            for (key, write) in writes {
                if matches!(write, WriteOp::Delta(_)) {
                    continue;
                }
                let previous = self.last_writer.insert(key.clone(), offset);
                depends |= offset >= watched && previous.is_some_and(|last| last + 2 >= offset);
            }
            self.dependent += usize::from(depends);
        }
        offset + 1 == self.window
            && self.dependent * 100 <= (self.window - watched) * Self::MAX_DEPENDENT_PERCENT
    }
}

#[cfg(test)]
mod tests {
    use super::{last_write_per_key, Probe};
    use crate::delta::Delta;
    use crate::vm::WriteOp;

    /// Where a probe of `window` transactions stops over transactions that write `writes(n)`.
    fn stop(window: usize, writes: impl Fn(usize) -> Vec<(u16, WriteOp<u128>)>) -> Option<usize> {
        let mut probe = Probe::new(window);
        (0..2 * window).find(|&offset| probe.stop_after(offset, &writes(offset)))
    }

    #[test]
    fn a_probe_stops_after_its_window_only_if_the_transactions_stopped_depending() {
        // Each its own key: independent; stops at the window's last transaction.
        assert_eq!(stop(8, |n| vec![(n as u16, WriteOp::Put(1))]), Some(7));
        // All one key: every one depends on the one before.
        assert_eq!(stop(8, |_| vec![(0, WriteOp::Put(1))]), None);
        // Credits to one key commute: not a dependency.
        assert_eq!(stop(8, |_| vec![(0, WriteOp::Delta(Delta::add(1)))]), Some(7));
        // Two keys taken in turns: each depends on the one two before it.
        assert_eq!(stop(8, |n| vec![((n % 2) as u16, WriteOp::Put(1))]), None);
        // Dependent only in the first half, which is not watched.
        assert_eq!(stop(8, |n| vec![(if n < 4 { 0 } else { n as u16 }, WriteOp::Put(1))]), Some(7));
        // One dependent transaction in a watched half of 10 is 10 %: still stops; two do not.
        let one = |n: usize| vec![(if n == 15 || n == 16 { 0 } else { n as u16 }, WriteOp::Put(1))];
        assert_eq!(stop(20, one), Some(19));
        let two =
            |n: usize| vec![(if (15..=17).contains(&n) { 0 } else { n as u16 }, WriteOp::Put(1))];
        assert_eq!(stop(20, two), None);
    }

    #[test]
    fn later_writes_of_a_key_replace_earlier_ones() {
        assert_eq!(
            last_write_per_key(vec![(1, 'a'), (2, 'b'), (1, 'c')]),
            vec![(2, 'b'), (1, 'c')]
        );
        let many: Vec<(u32, u32)> = (0..40).map(|index| (index % 20, index)).collect();
        let kept = last_write_per_key(many);
        assert_eq!(kept, (20..40).map(|index| (index % 20, index)).collect::<Vec<_>>());
        assert_eq!(last_write_per_key(vec![(1, 'a'), (2, 'b')]), vec![(1, 'a'), (2, 'b')]);
    }
}
