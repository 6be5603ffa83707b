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

use duet_bench_kit::p2p::Options;
use duet_bench_kit::{executor_config, SplitMix};
use duet_block_stm::TransactionResult;
use duet_move::{MoveBlockExecutor, MoveVm};
use duet_types::MoveTransaction;
use testkit::{eth_transfer, transaction, user, MemoryState, FEE_VAULT, ONE_ETH};

/// The allocator a Duet node runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let options = Options::from_args(9, |_, _| {});
    let vm = MoveVm::new(FEE_VAULT);
    let sequential_executor = MoveBlockExecutor::sequential(&vm);
    let parallel_executor = MoveBlockExecutor::parallel(&vm, executor_config(options.threads));
    options.print_header("Move eth::transfer p2p");
    for (block_size, accounts) in options.configurations() {
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
        let figures = options.measure(
            block_size,
            || sequential_executor.execute_block(&block, &storage),
            || parallel_executor.execute_block_with_stats(&block, &storage),
            duet_bench_kit::same_as(&expected),
        );
        let fields = serde_json::json!({ "workload": "move_eth_transfer" });
        figures.print(&options, (block_size, accounts), fields);
    }
}
