//! The Block-STM paper's peer-to-peer benchmark on Duet's executor.
//!
//! `cargo bench -p duet-block-stm --bench block_stm [-- --json] [--runs N] [--threads N]
//! [--accounts N] [--txs N] [--work-rounds N] [--ceiling] [--only seq|par]`
//!
//! For accounts {2, 10, 100, 1000, 10000} x block sizes {1000, 10000}: transfers between random
//! distinct accounts (nonce check, exact debit, commutative credit, fee to one vault, and
//! `--work-rounds` keccak256 hashes of work, 32 by default), executed sequentially and in
//! parallel. Prints the median tx/s of each and their ratio; with `--json`, one JSON object per
//! configuration per line.

#[path = "../testkit/mod.rs"]
mod testkit;

use duet_bench_kit::executor_config;
use duet_bench_kit::p2p::Options;
use duet_block_stm::{execute_sequential, BlockExecutor};
use testkit::{transfer_block, transfer_genesis, TransferVm, BENCH_WORK_ROUNDS, FEE_VAULT};

/// The allocator a Duet node runs with: frees from many threads stay cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut work_rounds = BENCH_WORK_ROUNDS;
    let options = Options::from_args(15, |flag, args| {
        if flag == "--work-rounds" {
            work_rounds = args.next().and_then(|n| n.parse().ok()).expect("--work-rounds N");
        }
    });
    let vm = TransferVm { work_rounds, fee_vault: FEE_VAULT };
    let executor = BlockExecutor::new(&vm, executor_config(options.threads));
    options.print_header(&format!(
        "Block-STM p2p transfers ({work_rounds} keccak256 rounds of work per transaction)"
    ));
    for (block_size, accounts) in options.configurations() {
        let storage = transfer_genesis(accounts);
        let block = transfer_block(accounts, block_size, accounts * 31 + block_size as u64);
        let expected = execute_sequential(&vm, &block, &storage).expect("the block executes");
        let figures = options.measure(
            block_size,
            || execute_sequential(&vm, &block, &storage),
            || executor.execute_block_with_stats(&block, &storage),
            duet_bench_kit::same_as(&expected),
        );
        let fields = serde_json::json!({ "workload": "p2p_transfer", "work_rounds": work_rounds });
        figures.print(&options, (block_size, accounts), fields);
    }
}
