//! The Block-STM paper's peer-to-peer benchmark on real Move `eth::transfer` transactions.
//!
//! `cargo bench -p duet-move --bench move_p2p [-- --json] [--runs N] [--threads N]
//! [--accounts N] [--txs N] [--ceiling] [--only seq|par]`
//!
//! For accounts {2, 10, 100, 1000, 10000} x block sizes {1000, 10000}: each transaction calls
//! the framework's `0x1::eth::transfer` from a random account to another random account (nonce
//! check, fee reservation, the Move VM running the entry function, its `Transfer` event, the
//! fee to the vault), executed by the sequential executor and by Block-STM. Prints the median
//! tx/s of each and their ratio (the median of per-run ratios); with `--json`, one JSON object
//! per configuration per line.

#[path = "../testkit/mod.rs"]
mod testkit;

use std::num::NonZeroUsize;
use std::time::Instant;

use duet_bench_kit::{median, paired_ratio, two_at_once, SplitMix};
use duet_block_stm::{BlockExecutor, ExecutorConfig, TransactionResult};
use duet_move::{MoveBlockExecutor, MoveVm};
use duet_types::MoveTransaction;
use testkit::{eth_transfer, transaction, user, MemoryState, FEE_VAULT, ONE_ETH};

/// The allocator a Duet node runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ACCOUNTS: [u64; 5] = [2, 10, 100, 1000, 10_000];
const BLOCK_SIZES: [usize; 2] = [1000, 10_000];
const WARM_UP_RUNS: usize = 3;

struct Options {
    json: bool,
    /// Time only this executor ("seq" or "par"), for profiling one of them.
    only: Option<String>,
    /// Also measure two sequential executions at once on two threads: what the machine allows.
    ceiling: bool,
    accounts: Option<u64>,
    txs: Option<usize>,
    runs: usize,
    threads: usize,
}

fn options() -> Options {
    let mut options = Options {
        json: false,
        ceiling: false,
        only: None,
        accounts: None,
        txs: None,
        runs: 9,
        threads: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || args.next().and_then(|value| value.parse::<u64>().ok());
        match arg.as_str() {
            "--json" => options.json = true,
            "--ceiling" => options.ceiling = true,
            "--only" => options.only = args.next(),
            "--accounts" => options.accounts = Some(number().expect("--accounts N")),
            "--txs" => options.txs = Some(number().expect("--txs N") as usize),
            "--runs" => options.runs = number().expect("--runs N") as usize,
            "--threads" => options.threads = number().expect("--threads N") as usize,
            _ => {} // cargo bench passes `--bench`; ignore what is not ours.
        }
    }
    options
}

/// `size` transfers of 1 wei..1000 wei between random distinct accounts.
fn block(accounts: u64, size: usize) -> Vec<MoveTransaction> {
    let mut random = SplitMix(accounts * 31 + size as u64);
    let mut nonces = vec![0; accounts as usize];
    (0..size)
        .map(|_| {
            let from = random.below(accounts);
            let to = (from + 1 + random.below(accounts - 1)) % accounts;
            let nonce = nonces[from as usize];
            nonces[from as usize] += 1;
            let amount = u128::from(1 + random.below(1000));
            transaction(user(from), nonce, eth_transfer(user(to), amount))
        })
        .collect()
}

fn main() {
    let options = options();
    let vm = MoveVm::new(FEE_VAULT);
    let threads = NonZeroUsize::new(options.threads).expect("--threads must be at least 1");
    let sequential_executor = MoveBlockExecutor::sequential(&vm);
    let parallel_executor = MoveBlockExecutor::parallel(&vm, ExecutorConfig::with_threads(threads));
    if !options.json {
        println!(
            "Move eth::transfer p2p, {} worker threads, median of {} runs",
            options.threads, options.runs
        );
        println!(
            "{:>8} {:>7} {:>12} {:>12} {:>7}",
            "accounts", "txs", "seq tx/s", "par tx/s", "ratio"
        );
    }
    for &block_size in
        BLOCK_SIZES.iter().filter(|size| options.txs.is_none_or(|only| only == **size))
    {
        for &accounts in
            ACCOUNTS.iter().filter(|count| options.accounts.is_none_or(|only| only == **count))
        {
            let storage = MemoryState::genesis((0..accounts).map(user), 1_000_000 * ONE_ETH);
            let block = block(accounts, block_size);
            let expected =
                sequential_executor.execute_block(&block, &storage).expect("the block executes");
            for result in &expected.results {
                assert!(
                    matches!(result, TransactionResult::Executed(receipt) if receipt.is_success()),
                    "a transfer failed: {result:?}"
                );
            }
            let actual = parallel_executor.execute_block(&block, &storage);
            assert!(actual.as_ref() == Ok(&expected), "parallel output differs from sequential");
            // The block publishes nothing, so the Move block executor hands it to Block-STM
            // whole: the same run, with its statistics.
            let (_, stats) = BlockExecutor::new(&vm, ExecutorConfig::with_threads(threads))
                .execute_block_with_stats(&block, &storage);
            let executions_per_txn = stats.executions as f64 / block_size as f64;
            let fallback =
                stats.sequential_from.map_or("-".to_owned(), |from| format!("at {from}"));
            for _ in 0..WARM_UP_RUNS {
                std::hint::black_box(sequential_executor.execute_block(&block, &storage).is_ok());
                std::hint::black_box(parallel_executor.execute_block(&block, &storage).is_ok());
            }
            let mut sequential = Vec::with_capacity(options.runs);
            let mut parallel = Vec::with_capacity(options.runs);
            for _ in 0..options.runs {
                let start = Instant::now();
                if options.only.as_deref() != Some("par") {
                    std::hint::black_box(
                        sequential_executor.execute_block(&block, &storage).is_ok(),
                    );
                }
                sequential.push(start.elapsed());
                let start = Instant::now();
                if options.only.as_deref() != Some("seq") {
                    std::hint::black_box(parallel_executor.execute_block(&block, &storage).is_ok());
                }
                parallel.push(start.elapsed());
            }
            let mut ceiling_tps = None;
            if options.ceiling {
                // Two VM instances, as two nodes would have (one instance per thread).
                let both = two_at_once(options.runs, || {
                    sequential_executor.execute_block(&block, &storage).is_ok()
                });
                ceiling_tps = Some(2.0 * block_size as f64 / both.as_secs_f64());
            }
            let ratio = paired_ratio(&sequential, &parallel);
            let sequential_tps = block_size as f64 / median(sequential).as_secs_f64();
            let parallel_tps = block_size as f64 / median(parallel).as_secs_f64();
            if options.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "workload": "move_eth_transfer",
                        "accounts": accounts,
                        "txs": block_size,
                        "threads": options.threads,
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
                    "{accounts:>8} {block_size:>7} {sequential_tps:>12.0} {parallel_tps:>12.0} {ratio:>7.2} {executions_per_txn:>9.2} {fallback:>9}{ceiling}"
                );
            }
        }
    }
}
