//! Blocks of transactions that may publish Move modules, with each publish as a barrier.
//!
//! [`SegmentedExecutor`] runs the blocks of any VM with [`Barriers`]: Move blocks
//! ([`MoveBlockExecutor`]), and `duet-evm`'s mixed blocks of Move and EVM transactions.
//!
//! The Move VM caches the code it loads, across sessions, and cannot take a module out of its
//! cache. So a transaction that publishes modules runs alone: the block is cut into segments at
//! each publishing transaction; the segments between them run on Block-STM (or sequentially),
//! each publishing transaction runs by itself, and the code cache is flushed right after it,
//! whatever its outcome. Within a segment no transaction writes code, so every execution,
//! speculative or not, loads the same modules, which are those of the committed state before the
//! segment. The sequential and the parallel executor cut the block the same way, so their
//! outputs are identical.

use std::collections::BTreeMap;
use std::ops::Range;

use duet_block_stm::Vm;
use duet_block_stm::{
    execute_sequential, BlockError, BlockExecutor, BlockOutput, ExecutionStats, ExecutorConfig,
    ExecutorParts, LayeredStorage, Storage, VmBlockOutput,
};
use duet_types::{MovePayload, MoveTransaction, StateKey, StateValue};

use crate::MoveVm;

/// A VM some of whose transactions must run alone, with a hook after each.
pub trait Barriers: Vm<Key = StateKey, Value = StateValue> {
    /// Whether `transaction` runs alone (it publishes Move modules).
    fn is_barrier(&self, transaction: &Self::Transaction) -> bool;

    /// Called after each barrier transaction, and after a block that had one: forget the code
    /// loaded from state the caller may still discard.
    fn after_barrier(&self);
}

impl Barriers for MoveVm {
    fn is_barrier(&self, transaction: &MoveTransaction) -> bool {
        matches!(transaction.payload, MovePayload::ModuleBundle(_))
    }

    fn after_barrier(&self) {
        self.flush_code_cache();
    }
}

/// Executes blocks of Move transactions, sequentially or in parallel.
pub type MoveBlockExecutor<'vm> = SegmentedExecutor<'vm, MoveVm>;

/// Executes blocks with barriers, sequentially or in parallel.
#[derive(Debug)]
pub struct SegmentedExecutor<'vm, V: Vm> {
    vm: &'vm V,
    /// `None`: sequential.
    parallel: Option<BlockExecutor<'vm, V>>,
}

impl<'vm, V: Barriers> SegmentedExecutor<'vm, V> {
    /// An executor that runs every transaction one after another: the specification.
    #[must_use]
    pub fn sequential(vm: &'vm V) -> Self {
        Self { vm, parallel: None }
    }

    /// An executor that runs segments without publishing on Block-STM, with `config`.
    #[must_use]
    pub fn parallel(vm: &'vm V, config: ExecutorConfig) -> Self {
        Self::parallel_with_parts(vm, config, ExecutorParts::default())
    }

    /// [`parallel`](Self::parallel), reusing what an earlier executor allocated and started
    /// (see [`BlockExecutor::with_parts`]).
    #[must_use]
    pub fn parallel_with_parts(
        vm: &'vm V,
        config: ExecutorConfig,
        parts: ExecutorParts<V>,
    ) -> Self {
        Self { vm, parallel: Some(BlockExecutor::with_parts(vm, config, parts)) }
    }

    /// What this executor allocated and started, for the next block's executor.
    #[must_use]
    pub fn into_parts(self) -> ExecutorParts<V> {
        self.parallel.map(BlockExecutor::into_parts).unwrap_or_default()
    }

    /// Executes `transactions` on `storage`.
    ///
    /// # Errors
    /// See [`BlockError`]; transaction indices in it are indices in `transactions`.
    pub fn execute_block<S>(
        &self,
        transactions: &[V::Transaction],
        storage: &S,
    ) -> Result<VmBlockOutput<V>, BlockError<StateKey>>
    where
        S: Storage<Key = StateKey, Value = StateValue>,
    {
        self.execute_block_with_stats(transactions, storage).0
    }

    /// [`execute_block`](Self::execute_block), with the statistics of its runs added up (a
    /// publish counts as one execution; `sequential_from` is where the first run that went
    /// sequential started, as a block index).
    pub fn execute_block_with_stats<S>(
        &self,
        transactions: &[V::Transaction],
        storage: &S,
    ) -> (Result<VmBlockOutput<V>, BlockError<StateKey>>, ExecutionStats)
    where
        S: Storage<Key = StateKey, Value = StateValue>,
    {
        let segments = segments(transactions, |transaction| self.vm.is_barrier(transaction));
        if let [(range, false)] = segments.as_slice() {
            return self.run(&transactions[range.clone()], storage);
        }
        let mut totals = ExecutionStats::default();
        let output = self.execute_segments(transactions, segments, storage, &mut totals);
        // Code loaded after a publish came from this block's state, which the caller may still
        // discard.
        self.vm.after_barrier();
        (output, totals)
    }

    fn execute_segments<S>(
        &self,
        transactions: &[V::Transaction],
        segments: Vec<(Range<usize>, bool)>,
        storage: &S,
        totals: &mut ExecutionStats,
    ) -> Result<VmBlockOutput<V>, BlockError<StateKey>>
    where
        S: Storage<Key = StateKey, Value = StateValue>,
    {
        let mut results = Vec::with_capacity(transactions.len());
        let mut state: BTreeMap<StateKey, Option<StateValue>> = BTreeMap::new();
        for (range, publishes) in segments {
            let layered = LayeredStorage::new(storage, &state);
            let segment = &transactions[range.clone()];
            let output = if publishes {
                let output = execute_sequential(self.vm, segment, &layered);
                self.vm.after_barrier();
                // A publish counts as one execution, not as a hand-over.
                totals.executions += segment.len();
                output
            } else {
                let (output, run) = self.run(segment, &layered);
                totals.add(run, range.start);
                output
            };
            let output = output.map_err(|error| error.shifted(range.start))?;
            results.extend(output.results);
            state.extend(output.state_updates);
        }
        Ok(BlockOutput { results, state_updates: state.into_iter().collect() })
    }

    fn run<S>(
        &self,
        transactions: &[V::Transaction],
        storage: &S,
    ) -> (Result<VmBlockOutput<V>, BlockError<StateKey>>, ExecutionStats)
    where
        S: Storage<Key = StateKey, Value = StateValue>,
    {
        if let Some(executor) = &self.parallel {
            return executor.execute_block_with_stats(transactions, storage);
        }
        (
            execute_sequential(self.vm, transactions, storage),
            ExecutionStats::sequential(transactions.len()),
        )
    }
}

/// The block cut at publishing transactions: ranges, and whether the range is one publish.
fn segments<T>(transactions: &[T], is_barrier: impl Fn(&T) -> bool) -> Vec<(Range<usize>, bool)> {
    let mut segments = Vec::new();
    let mut start = 0;
    for (index, transaction) in transactions.iter().enumerate() {
        if is_barrier(transaction) {
            if start < index {
                segments.push((start..index, false));
            }
            segments.push((index..index + 1, true));
            start = index + 1;
        }
    }
    if start < transactions.len() || transactions.is_empty() {
        segments.push((start..transactions.len(), false));
    }
    segments
}
