//! The Block-STM paper's peer-to-peer benchmark on Duet's executor.
//!
//! `cargo bench -p duet-block-stm --bench block_stm [-- --json] [--runs N] [--threads N]
//! [--accounts N] [--txs N] [--work-rounds N] [--ceiling]`
//!
//! For accounts {2, 10, 100, 1000, 10000} x block sizes {1000, 10000}: transfers between random
//! distinct accounts (nonce check, exact debit, commutative credit, fee to one vault, and
//! `--work-rounds` keccak256 hashes of work, 32 by default), executed sequentially and in
//! parallel. Prints the median tx/s of each and their ratio; with `--json`, one JSON object per
//! configuration per line.

#[path = "../testkit/mod.rs"]
mod testkit;

use std::num::NonZeroUsize;
use std::time::Instant;

use duet_bench_kit::{median, paired_ratio, two_at_once};
use duet_block_stm::{execute_sequential, BlockExecutor, ExecutorConfig};
use testkit::{transfer_block, transfer_genesis, TransferVm, BENCH_WORK_ROUNDS, FEE_VAULT};

/// The allocator a Duet node runs with: frees from many threads stay cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ACCOUNTS: [u64; 5] = [2, 10, 100, 1000, 10_000];
const BLOCK_SIZES: [usize; 2] = [1000, 10_000];
const WARM_UP_RUNS: usize = 5;

struct Options {
    json: bool,
    /// Also measure two sequential executions at once on two threads: what the machine allows.
    ceiling: bool,
    /// Only this many accounts (all when `None`).
    accounts: Option<u64>,
    /// Only blocks of this size (all when `None`).
    txs: Option<usize>,
    runs: usize,
    threads: usize,
    work_rounds: u32,
}

fn options() -> Options {
    let mut options = Options {
        json: false,
        ceiling: false,
        accounts: None,
        txs: None,
        runs: 15,
        threads: 2,
        work_rounds: BENCH_WORK_ROUNDS,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => options.json = true,
            "--ceiling" => options.ceiling = true,
            "--runs" => options.runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--work-rounds" => {
                options.work_rounds =
                    args.next().and_then(|n| n.parse().ok()).expect("--work-rounds N");
            }
            "--accounts" => options.accounts = args.next().and_then(|n| n.parse().ok()),
            "--txs" => options.txs = args.next().and_then(|n| n.parse().ok()),
            "--threads" => {
                options.threads = args.next().and_then(|n| n.parse().ok()).expect("--threads N");
            }
            _ => {} // cargo bench passes `--bench`; ignore what is not ours.
        }
    }
    options
}

fn main() {
    let options = options();
    let vm = TransferVm { work_rounds: options.work_rounds, fee_vault: FEE_VAULT };
    let threads = NonZeroUsize::new(options.threads).expect("--threads must be at least 1");
    let executor = BlockExecutor::new(&vm, ExecutorConfig::with_threads(threads));
    if !options.json {
        println!(
            "Block-STM p2p transfers, {} worker threads, median of {} runs ({} keccak256 rounds of work per transaction)",
            options.threads, options.runs, options.work_rounds
        );
        println!(
            "{:>8} {:>7} {:>12} {:>12} {:>7} {:>12} {:>10}",
            "accounts", "txs", "seq tx/s", "par tx/s", "ratio", "execs/tx", "fallback"
        );
        if options.ceiling {
            println!(
                "(last column: two sequential runs at once on two threads, the machine's ceiling)"
            );
        }
    }
    for &block_size in
        BLOCK_SIZES.iter().filter(|size| options.txs.is_none_or(|only| only == **size))
    {
        for &accounts in
            ACCOUNTS.iter().filter(|count| options.accounts.is_none_or(|only| only == **count))
        {
            let storage = transfer_genesis(accounts);
            let block = transfer_block(accounts, block_size, accounts * 31 + block_size as u64);
            let expected = execute_sequential(&vm, &block, &storage).expect("the block executes");
            let (actual, stats) = executor.execute_block_with_stats(&block, &storage);
            assert!(actual.as_ref() == Ok(&expected), "parallel output differs from sequential");
            // Warm up: the first runs of a process pay for page faults and allocator growth that a
            // long-running node pays once.
            for _ in 0..WARM_UP_RUNS {
                std::hint::black_box(execute_sequential(&vm, &block, &storage).is_ok());
                std::hint::black_box(executor.execute_block(&block, &storage).is_ok());
            }
            let mut sequential = Vec::with_capacity(options.runs);
            let mut parallel = Vec::with_capacity(options.runs);
            for _ in 0..options.runs {
                let start = Instant::now();
                std::hint::black_box(execute_sequential(&vm, &block, &storage).is_ok());
                sequential.push(start.elapsed());
                let start = Instant::now();
                std::hint::black_box(executor.execute_block(&block, &storage).is_ok());
                parallel.push(start.elapsed());
            }
            let mut ceiling_tps = None;
            if options.ceiling {
                let both =
                    two_at_once(options.runs, || execute_sequential(&vm, &block, &storage).is_ok());
                ceiling_tps = Some(2.0 * block_size as f64 / both.as_secs_f64());
            }
            let ratio = paired_ratio(&sequential, &parallel);
            let sequential_tps = block_size as f64 / median(sequential).as_secs_f64();
            let parallel_tps = block_size as f64 / median(parallel).as_secs_f64();
            let executions_per_txn = stats.executions as f64 / block_size as f64;
            let fallback =
                stats.sequential_from.map_or("-".to_owned(), |from| format!("at {from}"));
            if options.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "workload": "p2p_transfer",
                        "accounts": accounts,
                        "txs": block_size,
                        "threads": options.threads,
                        "work_rounds": options.work_rounds,
                        "runs": options.runs,
                        "seq_tps": sequential_tps.round(),
                        "par_tps": parallel_tps.round(),
                        "ratio": (ratio * 1000.0).round() / 1000.0,
                        "executions_per_txn": (executions_per_txn * 1000.0).round() / 1000.0,
                        "sequential_from": stats.sequential_from,
                        "ceiling_tps": ceiling_tps.map(f64::round),
                    })
                );
            } else {
                let ceiling = ceiling_tps.map_or(String::new(), |tps| format!(" {tps:>12.0}"));
                println!(
                    "{accounts:>8} {block_size:>7} {sequential_tps:>12.0} {parallel_tps:>12.0} {ratio:>7.2} {executions_per_txn:>12.2} {fallback:>10}{ceiling}"
                );
            }
        }
    }
}
