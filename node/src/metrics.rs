//! Prometheus metrics, served at `GET /metrics` in the text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::DatabaseMemory;

/// The node's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Transactions accepted into the mempool.
    pub accepted: AtomicU64,
    /// Transactions refused at submission.
    pub refused: AtomicU64,
    /// Accepted transactions that left the mempool without a block, by why
    /// ([`crate::dropped::DropKind`]).
    pub dropped: [AtomicU64; crate::dropped::DropKind::ALL.len()],
    /// Blocks committed.
    pub blocks: AtomicU64,
    /// Transactions committed in blocks.
    pub transactions: AtomicU64,
    /// Gas used by committed transactions.
    pub gas: AtomicU64,
    /// Time spent executing blocks, in microseconds.
    pub execution_micros: AtomicU64,
    /// Time spent between executing blocks and committing them (receipts and their roots, the
    /// values a block replaces, the state tree's update), in microseconds.
    pub sealing_micros: AtomicU64,
    /// Time spent committing blocks to the database, in microseconds.
    pub commit_micros: AtomicU64,
    /// Transaction executions by the block executor: every run of every round of filling a
    /// block (a round runs again without the transactions that do not fit), and every run again
    /// of a transaction whose reads went stale.
    pub executions: AtomicU64,
    /// Executions aborted because their reads went stale.
    pub validation_aborts: AtomicU64,
    /// Executions stopped to wait for an unfinished transaction.
    pub dependency_waits: AtomicU64,
    /// Transactions the sequential executor ran: blocks too small for parallel execution, and
    /// after contention hand-overs.
    pub sequential_transactions: AtomicU64,
    /// Transactions run again to trace a transaction or a block (`debug_trace…`).
    pub trace_replays: AtomicU64,
}

impl Metrics {
    /// Each counter: its name, its help text, its value and the scale it is shown at.
    fn counters(&self) -> [(&'static str, &'static str, &AtomicU64, f64); 13] {
        [
            (
                "duet_transactions_accepted_total",
                "Transactions accepted into the mempool.",
                &self.accepted,
                1.0,
            ),
            (
                "duet_transactions_refused_total",
                "Transactions refused at submission.",
                &self.refused,
                1.0,
            ),
            ("duet_blocks_committed_total", "Blocks committed.", &self.blocks, 1.0),
            (
                "duet_transactions_committed_total",
                "Transactions committed in blocks.",
                &self.transactions,
                1.0,
            ),
            ("duet_gas_used_total", "Gas used by committed transactions.", &self.gas, 1.0),
            (
                "duet_block_execution_seconds_total",
                "Time spent executing blocks.",
                &self.execution_micros,
                1e-6,
            ),
            (
                "duet_block_sealing_seconds_total",
                "Time spent sealing executed blocks: receipts, roots, the state tree's update.",
                &self.sealing_micros,
                1e-6,
            ),
            (
                "duet_block_commit_seconds_total",
                "Time spent committing blocks.",
                &self.commit_micros,
                1e-6,
            ),
            (
                "duet_block_stm_executions_total",
                "Transaction executions by the block executor, rounds run again and runs again \
                 after stale reads included.",
                &self.executions,
                1.0,
            ),
            (
                "duet_block_stm_validation_aborts_total",
                "Executions aborted because their reads went stale.",
                &self.validation_aborts,
                1.0,
            ),
            (
                "duet_block_stm_dependency_waits_total",
                "Executions stopped to wait for an unfinished transaction.",
                &self.dependency_waits,
                1.0,
            ),
            (
                "duet_block_stm_sequential_transactions_total",
                "Transactions the sequential executor ran: small blocks, and after contention \
                 hand-overs.",
                &self.sequential_transactions,
                1.0,
            ),
            (
                "duet_trace_replayed_transactions_total",
                "Transactions run again to trace a transaction or a block.",
                &self.trace_replays,
                1.0,
            ),
        ]
    }

    /// Adds `value` to `counter`.
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    /// Adds a Block-STM run's statistics to the executor's counters.
    pub fn add_execution(&self, stats: &duet_block_stm::ExecutionStats) {
        for (counter, value) in [
            (&self.executions, stats.executions),
            (&self.validation_aborts, stats.validation_aborts),
            (&self.dependency_waits, stats.dependency_waits),
            (&self.sequential_transactions, stats.sequential_transactions),
        ] {
            Self::add(counter, value as u64);
        }
    }

    /// The metrics as Prometheus text, with the gauges `head`, `mempool` and the database's
    /// `memory`.
    #[must_use]
    pub fn render(&self, head: u64, mempool: usize, memory: DatabaseMemory) -> String {
        let mut out = String::new();
        for (name, help, counter, scale) in self.counters() {
            let value = counter.load(Ordering::Relaxed) as f64 * scale;
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        let name = "duet_transactions_dropped_total";
        let _ = writeln!(
            out,
            "# HELP {name} Accepted transactions that left the mempool without a block, by why: \
             replaced or evicted by one that pays more, expired above a nonce gap, rejected by a \
             block, their nonce used by another transaction, refused at a restart.\n\
             # TYPE {name} counter"
        );
        for kind in crate::dropped::DropKind::ALL {
            let value = self.dropped[kind.index()].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {value}", kind.label());
        }
        let _ = writeln!(out, "# HELP duet_head_block The last committed block.\n# TYPE duet_head_block gauge\nduet_head_block {head}");
        let _ = writeln!(out, "# HELP duet_mempool_transactions Transactions waiting.\n# TYPE duet_mempool_transactions gauge\nduet_mempool_transactions {mempool}");
        let gauges = [
            (
                "duet_rocksdb_memtable_bytes",
                "RocksDB memtables, all column families.",
                memory.memtables,
            ),
            (
                "duet_rocksdb_table_readers_bytes",
                "RocksDB index and filter blocks of open files.",
                memory.table_readers,
            ),
            (
                "duet_rocksdb_block_cache_bytes",
                "The RocksDB block cache, which all column families share.",
                memory.block_cache,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}
