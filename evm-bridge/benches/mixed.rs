//! Mixed blocks: Move transfers, ERC-20 transfers and Solidity → Move calls in one block.
//!
//! `cargo bench -p duet-evm --bench mixed [-- --json] [--runs N] [--threads N] [--accounts N]
//! [--txs N] [--ceiling] [--only seq|par]`
//!
//! A 10000-transaction block over 10000 accounts (by default): one third Move transactions
//! calling `0x1::eth::transfer`, one third EVM transactions calling an ERC-20's `transfer`, one
//! third EVM transactions calling the Move call precompile (`IMove.call`) to run
//! `counter::increment` for their sender; random senders and recipients. Prints the median tx/s
//! of Duet's sequential executor and of Block-STM (Move publishes as barriers; this block has
//! none), and their ratio (the median of per-run ratios); with `--json`, one JSON object per
//! configuration per line.

#[path = "../testkit/mod.rs"]
mod testkit;

use std::sync::Arc;

use alloy_sol_types::{SolCall, SolConstructor};
use duet_bench_kit::p2p::Options;
use duet_bench_kit::{executor_config, SplitMix};
use duet_block_stm::TransactionResult;
use duet_evm::{DuetReceipt, DuetTransaction, DuetVm, EvmVm, MixedBlockExecutor};
use duet_move::MoveVm;
use duet_types::{
    Address, EntryFunction, MovePayload, MoveTransaction, StateKey, StateValue, MOVE_CALL_ADDRESS,
    U256,
};
use revm::primitives::TxKind;
use testkit::{
    artifact_bytecode, block_env, compile_move, tx_env, user, MemoryState, Token, CHAIN_ID,
    FEE_VAULT, GAS_PRICE, ONE_ETH,
};

/// The allocator a Duet node runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where the example `counter` module is published.
const EXAMPLES: Address = Address::repeat_byte(0xe5);
/// Who deploys the token and hands it out.
const OWNER: Address = Address::repeat_byte(0x0a);

/// A chain where `accounts` accounts hold ETH and tokens, and the `counter` module is published.
struct World {
    state: MemoryState,
    token: Address,
    move_vm: Arc<MoveVm>,
    /// Every account's next nonce.
    nonces: Vec<u64>,
}

fn world(accounts: u64) -> World {
    let mut state = MemoryState::default();
    state.0.extend(duet_move::genesis_state());
    state.publish(
        EXAMPLES,
        compile_move(&["move-executor/testkit/example.move"], "example", EXAMPLES),
    );
    for address in (0..accounts).map(user).chain([OWNER]) {
        state.0.insert(StateKey::Balance(address), StateValue::Balance(1_000_000 * ONE_ETH));
    }
    let move_vm = Arc::new(MoveVm::new(FEE_VAULT));
    let mut creation = artifact_bytecode("Token");
    creation.extend(
        Token::constructorCall {
            name_: "T".into(),
            symbol_: "T".into(),
            supply: U256::from(10u128.pow(30)),
        }
        .abi_encode(),
    );
    let token = OWNER.create(0);
    let mut setup =
        vec![DuetTransaction::Evm(tx_env(OWNER, 0, TxKind::Create, 0, creation, 5_000_000))];
    for index in 0..accounts {
        let funding = Token::transferCall { to: user(index), value: U256::from(10u128.pow(24)) };
        let tx = tx_env(OWNER, 1 + index, TxKind::Call(token), 0, funding.abi_encode(), 100_000);
        setup.push(DuetTransaction::Evm(tx));
    }
    let vm = DuetVm::new(EvmVm::new(CHAIN_ID, block_env(1)), Arc::clone(&move_vm));
    let output = MixedBlockExecutor::sequential(&vm)
        .execute_block(&setup, &state)
        .expect("the setup block executes");
    assert!(output.results.iter().all(succeeded), "a setup transaction failed");
    state.apply(&output.state_updates);
    World { state, token, move_vm, nonces: vec![0; accounts as usize] }
}

fn succeeded(result: &TransactionResult<DuetReceipt, duet_evm::DuetError>) -> bool {
    match result {
        TransactionResult::Executed(DuetReceipt::Evm(receipt)) => receipt.is_success(),
        TransactionResult::Executed(DuetReceipt::Move(receipt)) => receipt.is_success(),
        _ => false,
    }
}

/// `size` transactions, a third of each kind, from random senders to random recipients.
fn block(world: &World, accounts: u64, size: usize) -> Vec<DuetTransaction> {
    let mut random = SplitMix(accounts * 17 + size as u64);
    let mut nonces = world.nonces.clone();
    let increment = duet_evm::call_data(&EntryFunction {
        module_address: EXAMPLES,
        module_name: "counter".to_owned(),
        function: "increment".to_owned(),
        type_arguments: vec![],
        arguments: vec![],
    });
    (0..size)
        .map(|index| {
            let sender = random.below(accounts);
            let recipient = user((sender + 1 + random.below(accounts - 1)) % accounts);
            let from = user(sender);
            let nonce = nonces[sender as usize];
            nonces[sender as usize] += 1;
            match index % 3 {
                0 => DuetTransaction::Move(MoveTransaction {
                    sender: from,
                    nonce,
                    gas_limit: 100_000,
                    gas_price: GAS_PRICE,
                    payload: MovePayload::EntryFunction(EntryFunction {
                        module_address: Address::with_last_byte(1),
                        module_name: "eth".to_owned(),
                        function: "transfer".to_owned(),
                        type_arguments: vec![],
                        arguments: vec![
                            recipient.to_vec(),
                            u128::from(1 + random.below(1000)).to_le_bytes().to_vec(),
                        ],
                    }),
                }),
                1 => {
                    let call = Token::transferCall { to: recipient, value: U256::from(1 + index) };
                    let kind = TxKind::Call(world.token);
                    DuetTransaction::Evm(tx_env(from, nonce, kind, 0, call.abi_encode(), 100_000))
                }
                _ => {
                    let kind = TxKind::Call(MOVE_CALL_ADDRESS);
                    DuetTransaction::Evm(tx_env(from, nonce, kind, 0, increment.clone(), 200_000))
                }
            }
        })
        .collect()
}

fn main() {
    let mut options = Options::from_args(9, |_, _| {});
    let (block_size, accounts) =
        (*options.txs.get_or_insert(10_000), *options.accounts.get_or_insert(10_000));
    options.print_header("Mixed blocks: Move transfers, ERC-20 transfers, Solidity -> Move calls");
    let world = world(accounts);
    let vm = DuetVm::new(EvmVm::new(CHAIN_ID, block_env(2)), Arc::clone(&world.move_vm));
    let block = block(&world, accounts, block_size);
    let sequential_executor = MixedBlockExecutor::sequential(&vm);
    let parallel_executor = MixedBlockExecutor::parallel(&vm, executor_config(options.threads));
    let expected =
        sequential_executor.execute_block(&block, &world.state).expect("the block executes");
    for result in &expected.results {
        assert!(succeeded(result), "a transaction failed: {result:?}");
    }
    let figures = options.measure(
        block_size,
        || sequential_executor.execute_block(&block, &world.state),
        || parallel_executor.execute_block_with_stats(&block, &world.state),
        duet_bench_kit::same_as(&expected),
    );
    let fields = serde_json::json!({ "workload": "mixed" });
    figures.print(&options, (block_size, accounts), fields);
}
