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
//!   A VM may run a whole sequential run itself ([`Vm::execute_sequentially`], one transaction
//!   after another without a view per transaction) if its output is exactly the one-by-one run's.
//! - A VM panic becomes that transaction's [`TransactionResult::Panicked`]; a storage failure or
//!   a bug of ours is a [`BlockError`]. Neither hangs nor crashes the executor.
//! - Under heavy contention (most executions wasted on conflicts) a run hands the block to the
//!   sequential executor ([`ContentionFallback`]), so parallel execution is never much slower
//!   than sequential execution; once the transactions no longer depend on each other, the rest
//!   of the block runs in parallel again.
//! - A block of transactions cheaper than Block-STM's own work for them (ETH transfers) runs
//!   faster sequentially: for a VM with a sequential run of its own, the executor times a block's
//!   first transactions both ways, on one thread in the same moment, and decides from the ratio
//!   ([`CheapTransactions`]), so that the decision holds on a slow core as on a fast one.
//! - One thread runs blocks sequentially, unless [`ExecutorConfig::parallel_on_one_thread`] asks
//!   for the parallel executor on it: what the benchmarks' `--threads 1` measures (Block-STM's
//!   own work without a second core), and a path every equivalence test runs too.

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

impl<K: std::fmt::Debug> BlockError<K> {
    /// The error of a part of a block that starts at transaction `offset`, with block indices.
    #[must_use]
    pub fn shifted(self, offset: TxnIndex) -> Self {
        match self {
            Self::DeltaOutOfBounds { txn_index, key } => {
                Self::DeltaOutOfBounds { txn_index: txn_index + offset, key }
            }
            Self::DeltaOnNonNumeric { txn_index, key } => {
                Self::DeltaOnNonNumeric { txn_index: txn_index + offset, key }
            }
            other => other,
        }
    }
}

/// When a parallel run gives up on parallelism: once a worker thread has started at least
/// `min_executions` executions and at least `max_wasted_percent` of them were wasted (aborted by
/// validation or suspended on a dependency), the block runs sequentially from there. The
/// sequential executor watches the first `probe_window` transactions it runs (twice as many at
/// each later hand-over in the block): if in the second half of them hardly any transaction
/// wrote a key one of the two before it wrote, the contention is over (a block's first
/// transfers to accounts that held nothing conflict, say, and the rest do not) and the rest of
/// the block runs in parallel again; otherwise (transfers among two accounts) the whole rest
/// runs sequentially. With `0` percent the run always hands over after `min_executions`
/// executions (for tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentionFallback {
    /// Executions a worker observes before judging.
    pub min_executions: usize,
    /// The share of wasted executions, in percent, above which the run falls back.
    pub max_wasted_percent: usize,
    /// Transactions the sequential executor runs after a hand-over before the block may go back
    /// to parallel execution (`0`: it never does; below 4 the watched half holds one
    /// transaction or none, which tells little).
    pub probe_window: usize,
}

impl Default for ContentionFallback {
    fn default() -> Self {
        Self { min_executions: 64, max_wasted_percent: 40, probe_window: 256 }
    }
}

/// When a block of cheap transactions runs sequentially. A VM with a sequential run of its own
/// ([`Vm::execute_sequentially`]) runs the block's first `transactions` that way, and the next
/// `transactions` through the parallel executor on the calling thread alone, each timed: the
/// second time over the first is what Block-STM's own work (recording and validating the reads,
/// the multi-version writes, the scheduler) costs these transactions, on this machine, now. If
/// the workers, each adding `worker_percent` of one worker's pace, would still not beat the
/// sequential run, the rest of the block runs sequentially; otherwise in parallel. A transaction
/// cheaper than Block-STM's own work for it (an ETH transfer: its few reads and writes cost the
/// parallel executor as much as the transfer itself) is faster run sequentially. Both timings are
/// made on one thread in the same moment, so the decision holds on a slow core as on a fast one.
/// Either way the output is the same; only the time differs. Not timed with one thread (which
/// runs the parallel executor only when [`ExecutorConfig::parallel_on_one_thread`] asks for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheapTransactions {
    /// Transactions timed each way; only blocks of more than three times as many are timed.
    pub transactions: usize,
    /// What each worker thread adds, in percent of one worker alone (the cores' contention for
    /// memory and for the executor's shared cache lines take the rest): the block runs in
    /// parallel if `threads × worker_percent / 100` workers at the one-worker time beat the
    /// sequential time. `0` always runs such blocks sequentially, `u32::MAX` in parallel.
    pub worker_percent: u32,
}

impl Default for CheapTransactions {
    /// 64 transactions each way (fewer time too noisily on a busy machine); 90 % a worker. The
    /// first transactions of a block load more of the state for the first time than later ones
    /// do, which costs the sequential run more than the parallel executor's own work, so timed
    /// this way ERC-20 transfers from 10000 senders took the parallel executor on one thread
    /// 1.4–1.6 times as long as the sequential run (on the whole block, 1.5–1.8), and ETH
    /// transfers 2.1–2.8 times (the measurements are in `docs/performance.md`).
    fn default() -> Self {
        Self { transactions: 64, worker_percent: 90 }
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
    /// When a block's transactions are too cheap to run in parallel; `None` never times them.
    pub cheap_transactions: Option<CheapTransactions>,
    /// With one thread, run the parallel executor on it (its scheduler, multi-version memory,
    /// validation and hand-overs, one task at a time) instead of the sequential executor: what
    /// Block-STM's own work costs, apart from what a second core costs (the benchmarks' `--threads
    /// 1`), and a test of that path. Ignored with more threads.
    pub parallel_on_one_thread: bool,
}

impl Default for ExecutorConfig {
    /// One thread per available core.
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            min_parallel_block: 16,
            contention_fallback: Some(ContentionFallback::default()),
            cheap_transactions: Some(CheapTransactions::default()),
            parallel_on_one_thread: false,
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
    /// Where the block was handed to the sequential executor, if it was (the first time).
    pub sequential_from: Option<TxnIndex>,
    /// Transactions the sequential executor ran: a whole block it was given (one thread, a small
    /// block), and after each hand-over, until the transactions no longer depended on each other
    /// and the block went back to parallel execution.
    pub sequential_transactions: usize,
    /// The block's first transactions, timed both ways, were too cheap for parallel execution
    /// ([`CheapTransactions`]), and the rest of the block ran sequentially.
    pub cheap: bool,
}

impl ExecutionStats {
    /// The statistics of `transactions` run by the sequential executor alone.
    #[must_use]
    pub fn sequential(transactions: usize) -> Self {
        Self {
            executions: transactions,
            sequential_from: Some(0),
            sequential_transactions: transactions,
            ..Self::default()
        }
    }

    /// Adds the statistics of a run of a later part of the block, which starts at transaction
    /// `first` (where a hand-over happened first counts).
    pub fn add(&mut self, run: Self, first: TxnIndex) {
        self.executions += run.executions;
        self.validation_aborts += run.validation_aborts;
        self.dependency_waits += run.dependency_waits;
        self.sequential_transactions += run.sequential_transactions;
        self.sequential_from =
            self.sequential_from.or(run.sequential_from.map(|from| first + from));
        self.cheap |= run.cheap;
    }
}

/// What a [`BlockExecutor`] allocates and starts, kept from one executor to the next:
/// the parallel runs' workspace and the helper threads.
pub struct ExecutorParts<M: Vm> {
    workspace: Option<Box<parallel::Workspace<M>>>,
    helpers: Option<rayon::ThreadPool>,
}

impl<M: Vm> Default for ExecutorParts<M> {
    fn default() -> Self {
        Self { workspace: None, helpers: None }
    }
}

impl<M: Vm> ExecutorParts<M> {
    /// Whether they hold a parallel run's workspace.
    #[must_use]
    pub fn has_workspace(&self) -> bool {
        self.workspace.is_some()
    }

    /// The threads of the helper pool they hold, if they hold one.
    #[must_use]
    pub fn helper_threads(&self) -> Option<usize> {
        self.helpers.as_ref().map(rayon::ThreadPool::current_num_threads)
    }
}

impl<M: Vm> std::fmt::Debug for ExecutorParts<M> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ExecutorParts")
            .field("workspace", &self.has_workspace())
            .field("helper_threads", &self.helper_threads())
            .finish()
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
        Self::with_parts(vm, config, ExecutorParts::default())
    }

    /// An executor for `vm` that reuses what an earlier executor allocated and started
    /// ([`into_parts`](Self::into_parts)): a chain whose VM is made anew for every block (its
    /// block environment) keeps the multi-version memory and the helper threads from block to
    /// block this way, instead of faulting in megabytes and starting threads for each.
    #[must_use]
    pub fn with_parts(vm: &'vm M, config: ExecutorConfig, parts: ExecutorParts<M>) -> Self {
        let helpers = parts
            .helpers
            .filter(|pool| pool.current_num_threads() + 1 == config.threads.get())
            .map_or_else(std::sync::OnceLock::new, |pool| std::sync::OnceLock::from(Some(pool)));
        Self { vm, config, workspace: parking_lot::Mutex::new(parts.workspace), helpers }
    }

    /// What this executor allocated and started, for the next block's executor
    /// ([`with_parts`](Self::with_parts)).
    #[must_use]
    pub fn into_parts(self) -> ExecutorParts<M> {
        ExecutorParts {
            workspace: self.workspace.into_inner(),
            helpers: self.helpers.into_inner().flatten(),
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
        let one_thread = self.config.threads.get() <= 1 && !self.config.parallel_on_one_thread;
        if one_thread || self.too_small(transactions) {
            let stats = ExecutionStats::sequential(transactions.len());
            return (execute_sequential(self.vm, transactions, storage), stats);
        }
        // A concurrent call on the same executor gets a fresh workspace.
        let mut workspace =
            self.workspace.lock().take().unwrap_or_else(|| Box::new(parallel::Workspace::new()));
        let mut fallback = self.config.contention_fallback;
        let progress =
            self.time_cheapness(transactions, storage, &mut workspace).unwrap_or_else(|| {
                self.run_whole(transactions, storage, &mut workspace, &mut fallback)
            });
        let (outcome, stats) = match progress {
            Progress::Finished(outcome, stats) => (outcome, stats),
            Progress::Resume(results, written, from, mut stats) => {
                let (run_in, so_far) = ((&mut *workspace, fallback), (results, written, from));
                (self.resume(transactions, storage, run_in, so_far, &mut stats), stats)
            }
        };
        *self.workspace.lock() = Some(workspace);
        (outcome, stats)
    }

    /// Runs the whole block in parallel, to its output or to a contention hand-over (after which
    /// a later hand-over watches twice as many transactions).
    fn run_whole<S>(
        &self,
        transactions: &[M::Transaction],
        storage: &S,
        workspace: &mut parallel::Workspace<M>,
        fallback: &mut Option<ContentionFallback>,
    ) -> Progress<M>
    where
        S: Storage<Key = M::Key, Value = M::Value>,
    {
        let threads = self.config.threads.get();
        let (run, stats) =
            self.run_parallel((transactions, 0), storage, workspace, *fallback, threads);
        match run {
            Ok((output, Some(resume))) => {
                watch_longer(fallback);
                let written = output.state_updates.into_iter().collect();
                Progress::Resume(output.results, written, resume, stats)
            }
            other => Progress::Finished(other.map(|(output, _)| output), stats),
        }
    }

    /// Times the block's first transactions both ways, if the VM has a sequential run of its own
    /// and the configuration asks (see [`CheapTransactions`]); if they were cheap, runs the rest
    /// of the block sequentially. `None` if not timed.
    fn time_cheapness<S>(
        &self,
        transactions: &[M::Transaction],
        storage: &S,
        workspace: &mut parallel::Workspace<M>,
    ) -> Option<Progress<M>>
    where
        S: Storage<Key = M::Key, Value = M::Value>,
    {
        let cheap = self.config.cheap_transactions?;
        let count = cheap.transactions;
        // One thread here runs the parallel executor because the configuration asks for it.
        let one_thread = self.config.threads.get() <= 1;
        if one_thread || count == 0 || transactions.len() <= count.saturating_mul(3) {
            return None;
        }
        // Timing is no hand-over: the statistics count its executions only.
        let mut stats = ExecutionStats { executions: count, ..ExecutionStats::default() };
        let started = std::time::Instant::now();
        let first = match sequential::own_run(self.vm, &transactions[..count], 0, storage)? {
            Err(error) => return Some(Progress::Finished(Err(error), stats)),
            Ok(first) => first,
        };
        let sequential_nanos = started.elapsed().as_nanos();
        let mut written: sequential::FastMap<_, _> = first.state_updates.into_iter().collect();
        let mut results = first.results;
        // The next ones on the calling thread alone, through the parallel executor.
        let timed = 2 * count;
        let started = std::time::Instant::now();
        let base = LayeredStorage::new(storage, &written);
        let second = (&transactions[count..timed], count);
        let (second, second_stats) = self.run_parallel(second, &base, workspace, None, 1);
        let parallel_nanos = started.elapsed().as_nanos();
        stats.add(second_stats, count);
        match second {
            Ok((second, _)) => {
                results.extend(second.results);
                written.extend(second.state_updates);
            }
            Err(error) => return Some(Progress::Finished(Err(error), stats)),
        }
        let workers = self.config.threads.get() as u128 * u128::from(cheap.worker_percent);
        if parallel_nanos.saturating_mul(100) < workers.saturating_mul(sequential_nanos) {
            return Some(Progress::Resume(results, written, timed, stats));
        }
        let base = LayeredStorage::new(storage, &written);
        let rest = sequential::execute_sequential(self.vm, &transactions[timed..], timed, &base);
        stats.add(ExecutionStats::sequential(transactions.len() - timed), timed);
        stats.cheap = true;
        let outcome = rest.map(|rest| {
            results.extend(rest.results);
            let earlier = sequential::into_sorted(written);
            BlockOutput {
                results,
                state_updates: parallel::merge_sorted(earlier, rest.state_updates),
            }
        });
        Some(Progress::Finished(outcome, stats))
    }

    /// Whether `transactions` are too few to run in parallel.
    fn too_small(&self, transactions: &[M::Transaction]) -> bool {
        transactions.len() < self.config.min_parallel_block.max(2)
    }

    /// One parallel run of `transactions`, the first at block index `first_index`, over
    /// `storage`, handing over for contention as `fallback` says (see
    /// [`parallel::ParallelRun::run`]).
    fn run_parallel<S>(
        &self,
        (transactions, first_index): (&[M::Transaction], TxnIndex),
        storage: &S,
        workspace: &mut parallel::Workspace<M>,
        fallback: Option<ContentionFallback>,
        threads: usize,
    ) -> (parallel::RunOutcome<M>, ExecutionStats)
    where
        S: Storage<Key = M::Key, Value = M::Value>,
    {
        workspace.reset(transactions.len(), self.vm.hot_credit_key());
        parallel::ParallelRun::new(self.vm, transactions, storage, first_index, fallback, workspace)
            .run(self.helpers(threads.saturating_sub(1)))
    }

    /// Runs the rest of a block in parallel from `resume` (where a contention hand-over found the
    /// contention over, or the timed transactions end), on top of the block's results and writes
    /// up to there; each later hand-over watches twice as many transactions before giving the
    /// block back.
    fn resume<S>(
        &self,
        transactions: &[M::Transaction],
        storage: &S,
        (workspace, mut fallback): (&mut parallel::Workspace<M>, Option<ContentionFallback>),
        (mut results, mut written, mut resume): (Vec<VmResult<M>>, Written<M>, TxnIndex),
        stats: &mut ExecutionStats,
    ) -> Result<VmBlockOutput<M>, BlockError<M::Key>>
    where
        S: Storage<Key = M::Key, Value = M::Value>,
    {
        // `written` is the next run's state: each run's writes are moved in after it, and the
        // last run's are merged with them once, in key order.
        loop {
            let base = LayeredStorage::new(storage, &written);
            let rest = &transactions[resume..];
            let (run, run_stats) = if self.too_small(rest) {
                let run = sequential::execute_sequential(self.vm, rest, resume, &base);
                (run.map(|output| (output, None)), ExecutionStats::sequential(rest.len()))
            } else {
                self.run_parallel(
                    (rest, resume),
                    &base,
                    workspace,
                    fallback,
                    self.config.threads.get(),
                )
            };
            stats.add(run_stats, resume);
            let (part, next) = run?;
            results.extend(part.results);
            let Some(next) = next else {
                let earlier = sequential::into_sorted(written);
                let state_updates = parallel::merge_sorted(earlier, part.state_updates);
                return Ok(BlockOutput { results, state_updates });
            };
            written.extend(part.state_updates);
            resume += next;
            watch_longer(&mut fallback);
        }
    }
}

/// After a hand-over, a later one watches twice as many transactions before giving the block back.
fn watch_longer(fallback: &mut Option<ContentionFallback>) {
    if let Some(fallback) = fallback {
        fallback.probe_window = fallback.probe_window.saturating_mul(2);
    }
}

/// Where a block's execution stands after its first run (timing its first transactions, or the
/// whole block in parallel).
enum Progress<M: Vm> {
    /// The block's output, or its error.
    Finished(Result<VmBlockOutput<M>, BlockError<M::Key>>, ExecutionStats),
    /// The results and writes of the transactions before an index (the timed ones, not cheap;
    /// or those before a contention hand-over found the contention over), the index, and the
    /// statistics so far: the rest runs in parallel.
    Resume(Vec<VmResult<M>>, Written<M>, TxnIndex, ExecutionStats),
}

/// A transaction's result, of a VM.
type VmResult<M> = TransactionResult<<M as Vm>::Output, <M as Vm>::Error>;

/// The writes of a block's transactions so far, the state of the runs after them.
type Written<M> = sequential::FastMap<<M as Vm>::Key, Option<<M as Vm>::Value>>;

/// Writes kept over a [`LayeredStorage`]'s base: a key's entry (`None`: deleted) hides the base's.
pub trait Overlay<K, V>: Sync {
    /// The entry of `key`, if the overlay has one.
    fn entry(&self, key: &K) -> Option<&Option<V>>;
}

impl<K: Ord + Sync, V: Sync> Overlay<K, V> for std::collections::BTreeMap<K, Option<V>> {
    fn entry(&self, key: &K) -> Option<&Option<V>> {
        self.get(key)
    }
}

impl<K, V, H> Overlay<K, V> for std::collections::HashMap<K, Option<V>, H>
where
    K: Eq + std::hash::Hash + Sync,
    V: Sync,
    H: std::hash::BuildHasher + Sync,
{
    fn entry(&self, key: &K) -> Option<&Option<V>> {
        self.get(key)
    }
}

/// A storage with writes on top: the state before a block under the writes of its first
/// transactions (a hand-over that gave the block back, an earlier segment or round of it).
#[derive(Debug)]
pub struct LayeredStorage<'a, S, O> {
    base: &'a S,
    top: &'a O,
}

impl<'a, S, O> LayeredStorage<'a, S, O> {
    /// `top` over `base`.
    pub fn new(base: &'a S, top: &'a O) -> Self {
        Self { base, top }
    }
}

impl<S, O> Storage for LayeredStorage<'_, S, O>
where
    S: Storage,
    S::Value: Clone,
    O: Overlay<S::Key, S::Value>,
{
    type Key = S::Key;
    type Value = S::Value;

    fn get(&self, key: &S::Key) -> Result<Option<S::Value>, StorageError> {
        match self.top.entry(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(key),
        }
    }
}

impl<M: Vm> BlockExecutor<'_, M> {
    fn helpers(&self, count: usize) -> Option<&rayon::ThreadPool> {
        if count == 0 {
            // The calling thread works alone (rayon would take 0 for "one per core").
            return None;
        }
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

/// Makes `slots` hold at least `len` slots (new ones from `new`) and clears the first `filled`
/// (those the last block may have left filled): the per-transaction slots of a workspace, reused
/// from block to block.
pub(crate) fn reset_slots<T>(
    slots: &mut Vec<T>,
    (len, filled): (usize, usize),
    new: impl FnMut() -> T,
    clear: impl FnMut(&mut T),
) {
    if slots.len() < len {
        slots.resize_with(len, new);
    }
    slots[..filled].iter_mut().for_each(clear);
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
