//! The parallel executor: worker threads driven by the [`Scheduler`] over the [`MvMemory`].
//!
//! Each worker loops: take a task, run it, and take the follow-up task it returns, until the
//! scheduler says the block is done or the run is halted. An execution task runs the VM against a
//! [`ParallelView`], which reads through the multi-version memory and records every read; a
//! validation task checks that recorded read set against the memory now.
//!
//! A run halts early for two reasons. An error for the block (a storage failure, or a bug of ours
//! caught as a panic) ends it with that error. Contention (too many executions wasted on
//! conflicts, as in a block where every transaction touches the same account) hands the block to
//! the sequential executor: the longest prefix whose latest executions still validate is kept, and
//! the rest runs sequentially on top of it, or only until the transactions no longer depend on
//! each other (see [`Probe`]), when the caller runs the rest in parallel again. Either way the
//! output equals the sequential output.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::delta::Delta;
use crate::mvmemory::{Credits, Finalizer, MvMemory, ReadFailure, ReadRecord};
use crate::scheduler::{Scheduler, Task};
use crate::sequential::{execute_sequential_until, panic_message, run_transaction, Probe};
use crate::shards::SHARD_COUNT;
use crate::vm::{
    Incarnation, ReadError, Storage, StorageError, TransactionResult, TransactionView, TxnIndex, Vm,
};
use crate::{BlockError, BlockOutput, ContentionFallback, ExecutionStats, VmBlockOutput};

/// What one worker counted; kept per worker so that counting costs no shared cache line, and
/// judged per worker for the contention fallback.
type Counters = ExecutionStats;

/// Why a run stopped before the scheduler finished.
enum Halt<K: std::fmt::Debug> {
    Contention,
    Error(BlockError<K>),
}

/// A transaction's result, as the multi-version memory keeps it until the end of the block.
type Output<M> = TransactionResult<<M as Vm>::Output, <M as Vm>::Error>;

/// The results of a chunk of transactions and their credits of the hot key, with the chunk's
/// first transaction.
type OutputChunk<M> = (TxnIndex, Vec<Option<Output<M>>>, Credits);

/// What a parallel run allocates, kept between blocks: a long-running executor reuses it instead
/// of allocating (and page-faulting) megabytes for every block.
pub(crate) struct Workspace<M: Vm> {
    scheduler: Scheduler,
    memory: MvMemory<M::Key, M::Value, Output<M>>,
}

impl<M: Vm> Workspace<M> {
    pub(crate) fn new() -> Self {
        Self { scheduler: Scheduler::new(0), memory: MvMemory::new() }
    }

    /// Prepares the workspace for a block of `block_size` transactions whose VM credits `hot`
    /// in nearly every transaction (see [`Vm::hot_credit_key`]).
    pub(crate) fn reset(&mut self, block_size: usize, hot: Option<M::Key>) {
        self.scheduler.reset(block_size);
        self.memory.reset(block_size, hot);
    }
}

/// One parallel run of one block.
pub(crate) struct ParallelRun<'a, M: Vm, S> {
    vm: &'a M,
    transactions: &'a [M::Transaction],
    storage: &'a S,
    scheduler: &'a Scheduler,
    memory: &'a MvMemory<M::Key, M::Value, Output<M>>,
    /// When to hand the block to the sequential executor, and how many transactions that runs
    /// before the block may go back to parallel execution (see [`Probe`]).
    fallback: Option<ContentionFallback>,
    /// The block index of the first transaction (a run may start in mid-block).
    first_index: TxnIndex,
    halted: CachePadded<AtomicBool>,
    halt: Mutex<Option<Halt<M::Key>>>,
    /// Every worker's counters, added up as each worker stops.
    counters: Mutex<Counters>,
    /// The next shard of the memory to finalize, once the block is done.
    next_shard: CachePadded<AtomicUsize>,
    /// The first transaction of the next chunk whose records to free, once the block is done.
    next_chunk: CachePadded<AtomicUsize>,
    /// Each worker's finalized shards.
    finalizers: Mutex<Vec<Finalizer<M::Key, M::Value>>>,
    /// The results of each chunk of transactions, by the chunk's first transaction, once the
    /// block is done.
    outputs: Mutex<Vec<OutputChunk<M>>>,
}

/// A run's output, and the transaction (of the run) from which the rest of the block is to run
/// in parallel again, if a contention hand-over found the contention over there.
pub(crate) type RunOutcome<M> =
    Result<(VmBlockOutput<M>, Option<TxnIndex>), BlockError<<M as Vm>::Key>>;

/// Transactions whose records one worker frees, and whose results it takes, at a time.
const CLEAR_CHUNK: usize = 512;

impl<'a, M, S> ParallelRun<'a, M, S>
where
    M: Vm,
    S: Storage<Key = M::Key, Value = M::Value>,
{
    /// A run over `workspace`, which must have been [reset](Workspace::reset) for this block.
    pub(crate) fn new(
        vm: &'a M,
        transactions: &'a [M::Transaction],
        storage: &'a S,
        first_index: TxnIndex,
        fallback: Option<ContentionFallback>,
        workspace: &'a Workspace<M>,
    ) -> Self {
        Self {
            vm,
            first_index,
            transactions,
            storage,
            scheduler: &workspace.scheduler,
            memory: &workspace.memory,
            fallback,
            halted: CachePadded::new(AtomicBool::new(false)),
            halt: Mutex::new(None),
            counters: Mutex::new(Counters::default()),
            next_shard: CachePadded::new(AtomicUsize::new(0)),
            next_chunk: CachePadded::new(AtomicUsize::new(0)),
            finalizers: Mutex::new(Vec::new()),
            outputs: Mutex::new(Vec::new()),
        }
    }

    /// Runs the block on the calling thread and `helpers` (which may be busy or absent: any one
    /// worker can finish a block alone, so a helper that starts late only finds less to do).
    /// After a hand-over for contention the output may cover only the transactions before the
    /// returned index, from which the rest of the block is to run in parallel again.
    pub(crate) fn run(
        self,
        helpers: Option<&rayon::ThreadPool>,
    ) -> (RunOutcome<M>, ExecutionStats) {
        match helpers {
            Some(pool) => pool.in_place_scope(|scope| {
                for _ in 0..pool.current_num_threads() {
                    scope.spawn(|_| self.work());
                }
                self.work();
            }),
            None => self.work(),
        }
        let halt = self.halt.lock().take();
        let mut stats = *self.counters.lock();
        let output = match halt {
            None => {
                let block_size = self.transactions.len();
                self.finish(block_size, helpers)
            }
            Some(Halt::Error(error)) => Err(error),
            Some(Halt::Contention) => {
                let prefix = self.valid_prefix();
                prefix.map_err(BlockError::Storage).and_then(|prefix| {
                    stats.sequential_from = Some(prefix);
                    let finished = self.finish(prefix, helpers);
                    if let Ok((output, _)) = &finished {
                        // The transactions the sequential executor ran.
                        let sequential = output.results.len() - prefix;
                        stats.add(ExecutionStats::sequential(sequential), prefix);
                    }
                    finished
                })
            }
        };
        (output, stats)
    }

    /// One worker thread's loop. A panic here is a bug of ours: it halts the run with an error
    /// instead of leaving the other workers waiting.
    fn work(&self) {
        let mut counters = Counters::default();
        // The read-set vector the next execution fills: each recorded execution hands back the
        // vector of the incarnation it replaces, so none is allocated per execution.
        let mut reads = Vec::new();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut task = None;
            let mut idle_rounds = 0u32;
            while !self.scheduler.done() && !self.halted.load(Ordering::Relaxed) {
                task = match task {
                    Some(Task::Execute(txn_index, incarnation)) => {
                        self.execute(txn_index, incarnation, &mut counters, &mut reads)
                    }
                    Some(Task::Validate(txn_index, incarnation)) => {
                        self.validate(txn_index, incarnation, &mut counters)
                    }
                    None => {
                        let next = self.scheduler.next_task();
                        if next.is_some() {
                            idle_rounds = 0;
                        } else {
                            idle_rounds += 1;
                            if idle_rounds < 64 {
                                std::hint::spin_loop();
                            } else {
                                // More threads than work (or cores): let the others run.
                                std::thread::yield_now();
                            }
                        }
                        next
                    }
                };
            }
            if self.scheduler.done() && !self.halted.load(Ordering::Relaxed) {
                self.finalize();
            }
        }));
        self.counters.lock().add(counters, 0);
        if let Err(payload) = outcome {
            self.stop(Halt::Error(BlockError::Invariant(format!(
                "a worker thread panicked: {}",
                panic_message(payload.as_ref())
            ))));
        }
    }

    /// Once the block is done: finalizes shards of the memory and frees per-transaction records,
    /// taking turns with the other workers, so that the end of the block is parallel too.
    fn finalize(&self) {
        let block_size = self.transactions.len();
        let mut finalizer = self.memory.finalizer(block_size);
        loop {
            let index = self.next_shard.fetch_add(1, Ordering::Relaxed);
            if index >= SHARD_COUNT {
                break;
            }
            if let Err(error) = self.memory.drain_shard_into(index, &mut finalizer, self.storage) {
                self.stop(Halt::Error(BlockError::Storage(error)));
                return;
            }
        }
        finalizer.sort();
        self.finalizers.lock().push(finalizer);
        loop {
            let start = self.next_chunk.fetch_add(CLEAR_CHUNK, Ordering::Relaxed);
            if start >= block_size {
                break;
            }
            let (outputs, credits) =
                self.memory.take_outputs(start..(start + CLEAR_CHUNK).min(block_size), true);
            self.outputs.lock().push((start, outputs, credits));
        }
    }

    /// Stops the workers for `reason`: the first one, unless a bug of the executor
    /// ([`BlockError::Invariant`]) comes after contention (the block would otherwise finish from
    /// its prefix and the bug go unseen).
    fn stop(&self, reason: Halt<M::Key>) {
        let mut halt = self.halt.lock();
        let bug = matches!(reason, Halt::Error(BlockError::Invariant(_)));
        if halt.is_none() || (bug && matches!(*halt, Some(Halt::Contention))) {
            *halt = Some(reason);
        }
        self.halted.store(true, Ordering::Relaxed);
    }

    fn execute(
        &self,
        txn_index: TxnIndex,
        incarnation: Incarnation,
        counters: &mut Counters,
        spare_reads: &mut Vec<ReadRecord<M::Key, M::Value>>,
    ) -> Option<Task> {
        counters.executions += 1;
        if let Some(fallback) = self.fallback {
            let wasted = counters.validation_aborts + counters.dependency_waits;
            if counters.executions >= fallback.min_executions
                && wasted * 100 >= counters.executions * fallback.max_wasted_percent
            {
                self.stop(Halt::Contention);
                return None;
            }
        }
        let view = ParallelView {
            memory: self.memory,
            storage: self.storage,
            txn_index,
            reads: RefCell::new(std::mem::take(spare_reads)),
            failure: RefCell::new(None),
        };
        let (writes, result) = run_transaction(
            self.vm,
            self.first_index + txn_index,
            &self.transactions[txn_index],
            &view,
        );
        if let Some(failure) = view.failure.into_inner() {
            *spare_reads = view.reads.into_inner();
            spare_reads.clear();
            return match failure {
                ReadFailure::Dependency(blocking) => {
                    counters.dependency_waits += 1;
                    if self.scheduler.add_dependency(txn_index, blocking) {
                        None
                    } else {
                        Some(Task::Execute(txn_index, incarnation))
                    }
                }
                ReadFailure::Storage(error) => {
                    self.stop(Halt::Error(BlockError::Storage(error)));
                    None
                }
            };
        }
        let (wrote_new_location, replaced_reads) =
            self.memory.record(txn_index, incarnation, writes, view.reads.into_inner(), result);
        *spare_reads = replaced_reads;
        self.scheduler.finish_execution(txn_index, incarnation, wrote_new_location)
    }

    fn validate(
        &self,
        txn_index: TxnIndex,
        incarnation: Incarnation,
        counters: &mut Counters,
    ) -> Option<Task> {
        let valid = match self.memory.validate_read_set(txn_index, self.storage) {
            Ok(valid) => valid,
            Err(error) => {
                self.stop(Halt::Error(BlockError::Storage(error)));
                return None;
            }
        };
        let aborted = !valid && self.scheduler.try_validation_abort(txn_index, incarnation);
        if aborted {
            counters.validation_aborts += 1;
            self.memory.convert_writes_to_estimates(txn_index);
        }
        self.scheduler.finish_validation(txn_index, aborted)
    }

    /// After a halt for contention: the number of leading transactions whose latest incarnation
    /// finished and still reads exactly what it read. By induction from the first transaction,
    /// their results and writes are the sequential ones.
    fn valid_prefix(&self) -> Result<TxnIndex, StorageError> {
        for txn_index in 0..self.transactions.len() {
            if !self.scheduler.is_executed(txn_index)
                || !self.memory.validate_read_set(txn_index, self.storage)?
            {
                return Ok(txn_index);
            }
        }
        Ok(self.transactions.len())
    }

    /// The block's output: the parallel results of the first `prefix` transactions, and the rest
    /// executed sequentially on top of them; or, if the sequential executor's [`Probe`] found
    /// the contention over, up to where it stopped (returned). The final state and the list of
    /// results are assembled at the same time, the results on a helper if there is one.
    fn finish(self, prefix: TxnIndex, helpers: Option<&rayon::ThreadPool>) -> RunOutcome<M> {
        // The workers took the results and credits chunk by chunk when the block was done;
        // after a halt, they are still in the memory.
        let mut chunks = std::mem::take(&mut *self.outputs.lock());
        if chunks.is_empty() {
            let (outputs, credits) = self.memory.take_outputs(0..prefix, false);
            chunks.push((0, outputs, credits));
        }
        chunks.sort_unstable_by_key(|(start, _, _)| *start);
        let credits: Credits =
            chunks.iter().flat_map(|(_, _, credits)| credits.iter().copied()).collect();
        let mut finalizers = std::mem::take(&mut *self.finalizers.lock());
        let final_state = || {
            if finalizers.is_empty() {
                self.memory
                    .final_updates(prefix, &credits, self.storage)
                    .map_err(|error| error.shifted(self.first_index))
            } else {
                let hot = self.memory.hot_finalizer(prefix, &credits, self.storage);
                finalizers.extend(hot.map_err(BlockError::Storage)?);
                self.memory.finish(finalizers).map_err(|error| error.shifted(self.first_index))
            }
        };
        let (first_index, block_size) = (self.first_index, self.transactions.len());
        // Allocated here, on the caller, which frees the block's output too: a buffer of
        // megabytes allocated on the helper and freed by the caller did not always come back to
        // the helper in time for its next block, which then page-faulted a fresh one as it filled
        // it (5 ms of a 36 ms block of 2-account transfers, in about one process of three).
        let mut results = Vec::with_capacity(block_size);
        let results = move || {
            let outputs = chunks.into_iter().flat_map(|(_, outputs, _)| outputs).take(prefix);
            for (txn_index, output) in outputs.enumerate() {
                results.push(output.ok_or_else(|| {
                    let txn_index = first_index + txn_index;
                    BlockError::Invariant(format!(
                        "transaction {txn_index} finished without a result"
                    ))
                })?);
            }
            Ok::<_, BlockError<M::Key>>(results)
        };
        let (state_updates, results) = both(helpers, final_state, results);
        let (mut state_updates, mut results) = (state_updates?, results?);
        let mut resume = None;
        if prefix < self.transactions.len() {
            let base = PrefixState {
                memory: self.memory,
                prefix,
                first_index: self.first_index,
                storage: self.storage,
            };
            let rest = &self.transactions[prefix..];
            // Only a contention halt leaves a rest, and only with a fallback configured.
            let window = self.fallback.map_or(0, |fallback| fallback.probe_window);
            let probe = Probe::watching(window, rest.len());
            let tail =
                execute_sequential_until(self.vm, rest, self.first_index + prefix, &base, probe)
                    .map_err(|error| {
                        match error {
                            // Our own bug surfacing through the storage seam: report it as such.
                            BlockError::Storage(storage)
                                if storage.0.downcast_ref::<UnfinishedPrefix>().is_some() =>
                            {
                                BlockError::Invariant(storage.0.to_string())
                            }
                            other => other,
                        }
                    })?;
            if tail.results.len() < rest.len() {
                resume = Some(prefix + tail.results.len());
            }
            results.extend(tail.results);
            state_updates = merge_sorted(state_updates, tail.state_updates);
        }
        Ok((BlockOutput { results, state_updates }, resume))
    }
}

/// `first()` here and `second()` on one of `helpers` (if any) at the same time.
fn both<A, B: Send>(
    helpers: Option<&rayon::ThreadPool>,
    first: impl FnOnce() -> A,
    second: impl FnOnce() -> B + Send,
) -> (A, B) {
    let Some(pool) = helpers else { return (first(), second()) };
    let mut second_result = None;
    let first_result = pool.in_place_scope(|scope| {
        scope.spawn(|_| second_result = Some(second()));
        first()
    });
    // INVARIANT: the scope ends only after its spawned job ran.
    (first_result, second_result.expect("the helper ran its job"))
}

/// Merges two key-sorted update lists; where both hold a key, `newer` wins.
pub(crate) fn merge_sorted<K: Ord, V>(older: Vec<(K, V)>, newer: Vec<(K, V)>) -> Vec<(K, V)> {
    let mut merged = Vec::with_capacity(older.len() + newer.len());
    let mut older = older.into_iter().peekable();
    let mut newer = newer.into_iter().peekable();
    loop {
        let take_older = match (older.peek(), newer.peek()) {
            (Some(left), Some(right)) => match left.0.cmp(&right.0) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Equal => {
                    older.next();
                    false
                }
                std::cmp::Ordering::Greater => false,
            },
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return merged,
        };
        merged.extend(if take_older { older.next() } else { newer.next() });
    }
}

/// A transaction's view in a parallel run: the multi-version memory below it, over the storage.
/// Every read is recorded for validation; the first failed read is remembered, and every later
/// read fails the same way so the VM stops soon.
struct ParallelView<'a, K, V, S, O> {
    memory: &'a MvMemory<K, V, O>,
    storage: &'a S,
    txn_index: TxnIndex,
    reads: RefCell<Vec<ReadRecord<K, V>>>,
    failure: RefCell<Option<ReadFailure>>,
}

impl<K, V, S, O> ParallelView<'_, K, V, S, O>
where
    K: crate::StateKeyBound,
    V: crate::StateValueBound,
    S: Storage<Key = K, Value = V>,
{
    /// Fails fast once an earlier read of this execution failed.
    fn check_failed(&self) -> Result<(), ReadError> {
        match self.failure.borrow().as_ref() {
            None => Ok(()),
            Some(ReadFailure::Dependency(_)) => Err(ReadError::Dependency),
            Some(ReadFailure::Storage(error)) => Err(ReadError::Storage(error.clone())),
        }
    }

    /// Remembers the first failure of this execution and turns it into the VM's error.
    fn fail(&self, failure: ReadFailure) -> ReadError {
        let error = match &failure {
            ReadFailure::Dependency(_) => ReadError::Dependency,
            ReadFailure::Storage(error) => ReadError::Storage(error.clone()),
        };
        *self.failure.borrow_mut() = Some(failure);
        error
    }
}

impl<K, V, S, O> TransactionView for ParallelView<'_, K, V, S, O>
where
    K: crate::StateKeyBound,
    V: crate::StateValueBound,
    S: Storage<Key = K, Value = V>,
{
    type Key = K;
    type Value = V;

    fn read(&self, key: &K) -> Result<Option<V>, ReadError> {
        self.check_failed()?;
        match self.memory.read(key, self.txn_index, self.storage) {
            Ok((value, origin)) => {
                self.reads.borrow_mut().push(ReadRecord::Read(key.clone(), origin));
                Ok(value)
            }
            Err(failure) => Err(self.fail(failure)),
        }
    }

    fn delta_fits(&self, key: &K, delta: Delta) -> Result<bool, ReadError> {
        self.check_failed()?;
        match self.memory.delta_fits(key, self.txn_index, delta, self.storage) {
            Ok(answer) => {
                self.reads.borrow_mut().push(ReadRecord::DeltaFits(key.clone(), delta, answer));
                Ok(answer)
            }
            Err(failure) => Err(self.fail(failure)),
        }
    }
}

/// The state after the first `prefix` transactions of a halted run, as storage for the
/// sequential executor that finishes the block.
struct PrefixState<'a, K, V, S, O> {
    memory: &'a MvMemory<K, V, O>,
    prefix: TxnIndex,
    /// The block index of the run's first transaction (for errors).
    first_index: TxnIndex,
    storage: &'a S,
}

/// A read of the validated prefix met an unfinished write: a bug of ours.
#[derive(Debug, thiserror::Error)]
#[error("invariant violated: transaction {0} of the validated prefix is unfinished")]
struct UnfinishedPrefix(TxnIndex);

impl<K, V, S, O: Send> Storage for PrefixState<'_, K, V, S, O>
where
    K: crate::StateKeyBound,
    V: crate::StateValueBound,
    S: Storage<Key = K, Value = V>,
{
    type Key = K;
    type Value = V;

    fn get(&self, key: &K) -> Result<Option<V>, StorageError> {
        match self.memory.read(key, self.prefix, self.storage) {
            Ok((value, _)) => Ok(value),
            Err(ReadFailure::Storage(error)) => Err(error),
            Err(ReadFailure::Dependency(index)) => {
                Err(StorageError(std::sync::Arc::new(UnfinishedPrefix(self.first_index + index))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge_sorted;

    #[test]
    fn merge_keeps_order_and_prefers_newer() {
        let merged =
            merge_sorted(vec![(1, 'a'), (3, 'a'), (5, 'a')], vec![(2, 'b'), (3, 'b'), (6, 'b')]);
        assert_eq!(merged, vec![(1, 'a'), (2, 'b'), (3, 'b'), (5, 'a'), (6, 'b')]);
    }
}
