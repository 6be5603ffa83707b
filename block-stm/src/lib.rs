//! Duet's Block-STM: one parallel executor for every VM of the rollup.
//!
//! Follows the Block-STM paper (Gelashvili et al., `PPoPP` 2023): transactions of a block execute
//! optimistically in parallel, in any order, against a multi-version memory; each execution records
//! what it read; a validation later checks the reads still hold; a transaction whose reads went
//! stale runs again. The result is the one executing the block in order would give, byte for byte.
//!
//! ```text
//!   transactions ──► BlockExecutor ──► threads <= 1 or small block ──► sequential executor ─┐
//!                        │                                                                   │
//!                        └─► worker threads ◄──tasks── Scheduler (execution / validation)    │
//!                               │   ▲                                                        │
//!                     Vm::execute   │ read / record                                          │
//!                               ▼   │                                                        │
//!                         ParallelView ──► MvMemory (key → txn index → write | ESTIMATE)    │
//!                                              └──► Storage (the state before the block)    │
//!                                                                                            ▼
//!                                          BlockOutput { results, state_updates } (identical)
//! ```
//!
//! What this crate owns, and what it leaves to the VMs:
//!
//! - [`Vm`] is the seam: a VM executes one transaction against a [`TransactionView`] and returns
//!   its writes ([`WriteOp`]) and output. The crate knows nothing of the EVM or Move.
//! - Commutative [`Delta`]s (add or subtract with bounds) let transactions pay into one fee vault
//!   or credit one account without conflicting with each other; a transaction that reads such a
//!   value still sees the exact value. The key nearly every transaction credits (the fee vault,
//!   [`Vm::hot_credit_key`]) keeps its credits with each transaction's own record, so that the
//!   workers do not pass one cache line back and forth for every transaction.
//! - [`execute_sequential`] is the specification; [`BlockExecutor::execute_block`] must equal it.
//! - A VM panic becomes that transaction's [`TransactionResult::Panicked`]; a storage failure or
//!   a bug of ours is a [`BlockError`]. Neither hangs nor crashes the executor.
//! - Under heavy contention (most executions wasted on conflicts) a run hands the rest of the
//!   block to the sequential executor ([`ContentionFallback`]), so parallel execution is never
//!   much slower than sequential execution.

mod delta;
mod mvmemory;
mod parallel;
mod scheduler;
mod sequential;
mod shards;
mod vm;

pub use delta::Delta;
pub use sequential::panic_message;
pub use vm::{
    Incarnation, ReadError, StateKeyBound, StateValueBound, Storage, StorageError,
    TransactionResult, TransactionView, TxnIndex, Vm, VmOutput, WriteOp,
};

use std::num::NonZeroUsize;

/// What executing a block produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutput<K, V, O, E> {
    /// Each transaction's result, in block order.
    pub results: Vec<TransactionResult<O, E>>,
    /// The final value of every key the block wrote (`None`: deleted), sorted by key.
    pub state_updates: Vec<(K, Option<V>)>,
}

/// The [`BlockOutput`] of a VM.
pub type VmBlockOutput<M> =
    BlockOutput<<M as Vm>::Key, <M as Vm>::Value, <M as Vm>::Output, <M as Vm>::Error>;

/// Why a block could not be executed. The sequential and the parallel executor return the same
/// error for the same block, except for storage failures, which depend on the storage.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError<K: std::fmt::Debug> {
    /// The storage behind the block failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A delta written by this transaction left its bounds when applied in block order (the first
    /// such delta: lowest transaction index, then smallest key).
    #[error("transaction {txn_index}: the delta on {key:?} leaves its bounds")]
    DeltaOutOfBounds {
        /// The transaction that wrote the delta.
        txn_index: TxnIndex,
        /// The key.
        key: K,
    },
    /// A delta written by this transaction applies to a value that is not a number.
    #[error("transaction {txn_index}: delta on the non-numeric value of {key:?}")]
    DeltaOnNonNumeric {
        /// The transaction that wrote the delta.
        txn_index: TxnIndex,
        /// The key.
        key: K,
    },
    /// A bug in the executor (an invariant did not hold).
    #[error("executor invariant violated: {0}")]
    Invariant(String),
}

/// When a parallel run gives up on parallelism: once a worker thread has started at least
/// `min_executions` executions and at least `max_wasted_percent` of them were wasted (aborted by
/// validation or suspended on a dependency), the rest of the block runs sequentially. With `0` percent the run
/// always hands over after `min_executions` executions (for tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentionFallback {
    /// Executions a worker observes before judging.
    pub min_executions: usize,
    /// The share of wasted executions, in percent, above which the run falls back.
    pub max_wasted_percent: usize,
}

impl Default for ContentionFallback {
    fn default() -> Self {
        Self { min_executions: 64, max_wasted_percent: 40 }
    }
}

/// How the executor runs blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Worker threads, the calling thread included; `1` executes sequentially.
    pub threads: NonZeroUsize,
    /// Blocks with fewer transactions execute sequentially: spawning threads costs more than it
    /// saves.
    pub min_parallel_block: usize,
    /// When to give up on parallelism under contention; `None` never does.
    pub contention_fallback: Option<ContentionFallback>,
}

impl Default for ExecutorConfig {
    /// One thread per available core.
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            min_parallel_block: 16,
            contention_fallback: Some(ContentionFallback::default()),
        }
    }
}

impl ExecutorConfig {
    /// The default configuration with `threads` worker threads.
    #[must_use]
    pub fn with_threads(threads: NonZeroUsize) -> Self {
        Self { threads, ..Self::default() }
    }
}

/// How a block run went: for benchmarks and diagnostics, never part of the block's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutionStats {
    /// VM executions started (every incarnation, every restart after a dependency, and every
    /// transaction the sequential executor ran after a hand-over).
    pub executions: usize,
    /// Incarnations aborted because their reads went stale.
    pub validation_aborts: usize,
    /// Executions stopped because they read an unfinished transaction's write.
    pub dependency_waits: usize,
    /// Where the block was handed to the sequential executor, if it was.
    pub sequential_from: Option<TxnIndex>,
}

impl ExecutionStats {
    /// The statistics of `transactions` run by the sequential executor alone.
    #[must_use]
    pub fn sequential(transactions: usize) -> Self {
        Self { executions: transactions, sequential_from: Some(0), ..Self::default() }
    }

    /// Adds the statistics of a run of a later part of the block, which starts at transaction
    /// `first` (where a hand-over happened first counts).
    pub fn add(&mut self, run: Self, first: TxnIndex) {
        self.executions += run.executions;
        self.validation_aborts += run.validation_aborts;
        self.dependency_waits += run.dependency_waits;
        self.sequential_from =
            self.sequential_from.or(run.sequential_from.map(|from| first + from));
    }
}

/// Executes blocks of a VM's transactions, in parallel where it pays.
///
/// Keep one executor for many blocks: it keeps the memory a parallel run allocates (the
/// multi-version memory, the scheduler's and the results' slots, sized for the largest block so
/// far) and its helper threads, and reuses them for the next block. Threads that outlive a block
/// also keep their allocator caches warm: spawning them anew for each block made the allocator
/// hand back and fault in again megabytes of memory per block.
pub struct BlockExecutor<'vm, M: Vm> {
    vm: &'vm M,
    config: ExecutorConfig,
    workspace: parking_lot::Mutex<Option<Box<parallel::Workspace<M>>>>,
    /// `threads - 1` helper threads, started with the first parallel block; `None` inside if the
    /// operating system refused them (the calling thread then runs blocks alone).
    helpers: std::sync::OnceLock<Option<rayon::ThreadPool>>,
}

impl<M: Vm> std::fmt::Debug for BlockExecutor<'_, M> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BlockExecutor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<'vm, M: Vm> BlockExecutor<'vm, M> {
    /// An executor for `vm`.
    #[must_use]
    pub fn new(vm: &'vm M, config: ExecutorConfig) -> Self {
        Self {
            vm,
            config,
            workspace: parking_lot::Mutex::new(None),
            helpers: std::sync::OnceLock::new(),
        }
    }

    /// Executes `transactions` in order over `storage`.
    ///
    /// # Errors
    /// See [`BlockError`]: the same error [`execute_sequential`] returns.
    pub fn execute_block<S>(
        &self,
        transactions: &[M::Transaction],
        storage: &S,
    ) -> Result<VmBlockOutput<M>, BlockError<M::Key>>
    where
        S: Storage<Key = M::Key, Value = M::Value>,
    {
        self.execute_block_with_stats(transactions, storage).0
    }

    /// [`execute_block`](Self::execute_block), with statistics of the run.
    pub fn execute_block_with_stats<S>(
        &self,
        transactions: &[M::Transaction],
        storage: &S,
    ) -> (Result<VmBlockOutput<M>, BlockError<M::Key>>, ExecutionStats)
    where
        S: Storage<Key = M::Key, Value = M::Value>,
    {
        let threads = self.config.threads.get();
        if threads <= 1 || transactions.len() < self.config.min_parallel_block.max(2) {
            let stats = ExecutionStats::sequential(transactions.len());
            return (execute_sequential(self.vm, transactions, storage), stats);
        }
        // A concurrent call on the same executor gets a fresh workspace.
        let mut workspace =
            self.workspace.lock().take().unwrap_or_else(|| Box::new(parallel::Workspace::new()));
        workspace.reset(transactions.len(), self.vm.hot_credit_key());
        let outcome = parallel::ParallelRun::new(
            self.vm,
            transactions,
            storage,
            self.config.contention_fallback,
            &workspace,
        )
        .run(self.helpers(threads - 1));
        *self.workspace.lock() = Some(workspace);
        outcome
    }
}

impl<M: Vm> BlockExecutor<'_, M> {
    fn helpers(&self, count: usize) -> Option<&rayon::ThreadPool> {
        self.helpers
            .get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(count)
                    .thread_name(|index| format!("block-stm-{}", index + 1))
                    .build()
                    .ok()
            })
            .as_ref()
    }
}

/// Keys a transaction writes, as both executors size their maps: a transfer writes three or
/// four (nonce, two balances, the fee vault). Growing a large map rehashes it under a lock or
/// page-faults fresh memory.
pub(crate) const KEYS_PER_TRANSACTION: usize = 4;

/// Makes `slots` hold at least `len` slots (new ones from `new`) and clears the first `len`: the
/// per-transaction slots of a workspace, reused from block to block.
pub(crate) fn reset_slots<T>(
    slots: &mut Vec<T>,
    len: usize,
    new: impl FnMut() -> T,
    clear: impl FnMut(&mut T),
) {
    if slots.len() < len {
        slots.resize_with(len, new);
    }
    slots[..len].iter_mut().for_each(clear);
}

/// Executes `transactions` one after another over `storage`: the reference every parallel run
/// must match byte for byte.
///
/// # Errors
/// See [`BlockError`].
pub fn execute_sequential<M, S>(
    vm: &M,
    transactions: &[M::Transaction],
    storage: &S,
) -> Result<VmBlockOutput<M>, BlockError<M::Key>>
where
    M: Vm,
    S: Storage<Key = M::Key, Value = M::Value>,
{
    sequential::execute_sequential(vm, transactions, 0, storage)
}
