//! Shared by duet-evm's tests and benchmark (test and benchmark code only): the Solidity
//! interfaces of the test contracts, their compiled artifacts, accounts, and Duet's state in
//! memory next to plain revm's.
#![allow(dead_code, unreachable_pub)]

#[path = "../../move-executor/testkit/state.rs"]
mod state;
pub use state::{MemoryState, StateMap};
pub mod random_contracts;

use alloy_sol_types::sol;
use std::num::NonZeroUsize;

use duet_block_stm::{
    execute_sequential, BlockExecutor, BlockOutput, ExecutionStats, ExecutorConfig,
    TransactionResult, Vm, VmBlockOutput, VmOutput,
};
use duet_evm::{DuetTransaction, DuetVm, EvmVm, MixedBlockExecutor, EVM_EMPTY_CODE_HASH};
use duet_types::{Address, Bytes, StateKey, StateValue, B256, U256};
use revm::context::{BlockEnv, TxEnv};
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::TxKind;

sol! {
    #[allow(missing_docs)]
    contract Token {
        constructor(string name_, string symbol_, uint256 supply);
        function transfer(address to, uint256 value) external returns (bool);
        function approve(address spender, uint256 value) external returns (bool);
        function balanceOf(address owner) external view returns (uint256);
    }
    contract Pair {
        constructor(address token0_, address token1_);
        function addLiquidity(uint256 amount0, uint256 amount1) external;
        function swap(address tokenIn, uint256 amountIn, address to) external returns (uint256);
    }
    contract Deployer {
        function create(uint256 value) external returns (address);
        function create2(uint256 value, bytes32 salt) external returns (address);
        function createAndDestroy(uint256 value) external payable returns (address);
    }
    contract Probe {
        function record(address who) external;
        function recordCoinbase() external;
        function payAndRecord(address to) external payable;
    }
    contract Spender {
        constructor(address to, uint256 amount);
    }
    contract SpenderFactory {
        function deploy(bytes32 salt, address to, uint256 amount, bool destroy) external returns (address);
    }
    contract Burner {
        function failAfterWrite() external;
        function burnAll() external;
        function increment() external;
    }
}

/// The chain id of the test and benchmark chains.
pub const CHAIN_ID: u64 = 42_069;
/// The fee vault: the blocks' beneficiary.
pub const FEE_VAULT: Address = Address::repeat_byte(0xfe);
/// One ether in wei.
pub const ONE_ETH: u128 = 1_000_000_000_000_000_000;

/// The gas price of test and benchmark transactions: the base fee plus a 1 gwei tip.
pub const GAS_PRICE: u128 = 2_000_000_000;

/// The environment of test or benchmark block `number`: the fee vault as beneficiary, a 1 gwei
/// base fee.
pub fn block_env(number: u64) -> BlockEnv {
    BlockEnv {
        number: U256::from(number),
        timestamp: U256::from(1_700_000_000 + number),
        beneficiary: FEE_VAULT,
        gas_limit: 1_000_000_000,
        basefee: 1_000_000_000,
        ..BlockEnv::default()
    }
}

/// An EIP-1559 transaction of the test chain, paying [`GAS_PRICE`].
pub fn tx_env(
    from: Address,
    nonce: u64,
    kind: TxKind,
    value: u128,
    data: Vec<u8>,
    gas_limit: u64,
) -> TxEnv {
    TxEnv {
        caller: from,
        kind,
        value: U256::from(value),
        data: Bytes::from(data),
        gas_limit,
        gas_price: GAS_PRICE,
        gas_priority_fee: Some(1_000_000_000),
        tx_type: 2,
        nonce,
        chain_id: Some(CHAIN_ID),
        ..TxEnv::default()
    }
}

/// `signer`'s EIP-7702 authorization to run `code_of`'s code, for `chain_id` (0: any) and its
/// account nonce `nonce`.
pub fn authorization(
    signer: &alloy_signer_local::PrivateKeySigner,
    chain_id: u64,
    code_of: Address,
    nonce: u64,
) -> revm::context_interface::transaction::SignedAuthorization {
    use alloy_signer::SignerSync;
    let authorization = revm::context_interface::transaction::Authorization {
        chain_id: U256::from(chain_id),
        address: code_of,
        nonce,
    };
    let signature = signer.sign_hash_sync(&authorization.signature_hash()).unwrap();
    authorization.into_signed(signature)
}

/// A set-code (EIP-7702) transaction: `tx` with `authorizations`.
pub fn set_code(
    mut tx: TxEnv,
    authorizations: Vec<revm::context_interface::transaction::SignedAuthorization>,
) -> TxEnv {
    tx.tx_type = 4;
    tx.set_signed_authorization(authorizations);
    tx
}

/// The creation bytecode of a contract compiled into `contracts/artifacts`.
pub fn artifact_bytecode(name: &str) -> Vec<u8> {
    let path = format!("{}/contracts/artifacts/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let artifact: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("artifact exists")).unwrap();
    let hex = artifact["bytecode"].as_str().unwrap().trim_start_matches("0x");
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

pub fn user(index: u64) -> Address {
    Address::left_padding_from(&(0x1000 + index).to_be_bytes())
}

/// Compiles Move `sources` (paths from the workspace root) with the named address `name` set to
/// `publisher`; returns the modules (name, bytecode) in dependency order.
pub fn compile_move(sources: &[&str], name: &str, publisher: Address) -> Vec<(String, Vec<u8>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = sources.iter().map(|file| root.join(file).to_string_lossy().into_owned()).collect();
    let publisher = publisher.to_string();
    duet_move::compile_package(files, &[(name, publisher.as_str())])
        .unwrap_or_else(|diagnostics| panic!("{sources:?} do not compile:\n{diagnostics}"))
}

impl MemoryState {
    /// Puts `modules` under `publisher`, as if published.
    pub fn publish(&mut self, publisher: Address, modules: Vec<(String, Vec<u8>)>) {
        for (name, bytes) in modules {
            let key = StateKey::MoveModule { address: publisher, name: name.into() };
            self.0.insert(key, StateValue::Bytes(bytes.into()));
        }
    }

    /// Applies a block whose transactions all executed; returns their receipts.
    ///
    /// # Panics
    /// If a transaction was rejected or panicked.
    pub fn commit<O: std::fmt::Debug, E: std::fmt::Debug>(
        &mut self,
        output: BlockOutput<StateKey, StateValue, O, E>,
    ) -> Vec<O> {
        self.apply(&output.state_updates);
        output
            .results
            .into_iter()
            .map(|result| match result {
                TransactionResult::Executed(receipt) => receipt,
                other => panic!("not executed: {other:?}"),
            })
            .collect()
    }
}

/// The configurations every block of the tests runs with besides the sequential executor:
/// Block-STM at 1 (the parallel executor on one thread), 2 and 4 threads, even for tiny blocks,
/// and never handed over to the sequential executor (nor run sequentially for being cheap).
fn parallel_configs() -> impl Iterator<Item = (usize, ExecutorConfig)> {
    [1, 2, 4].into_iter().map(|threads| {
        let config = ExecutorConfig {
            min_parallel_block: 2,
            contention_fallback: None,
            // Cheap blocks would run sequentially: these runs are to be parallel.
            cheap_transactions: None,
            parallel_on_one_thread: true,
            ..ExecutorConfig::with_threads(NonZeroUsize::new(threads).unwrap())
        };
        (threads, config)
    })
}

/// `EvmVm` without its own sequential run: Block-STM's sequential executor runs it one
/// transaction at a time through a view of the writes before it, as it runs any VM.
pub struct OneByOne<'a>(pub &'a EvmVm);

impl Vm for OneByOne<'_> {
    type Transaction = TxEnv;
    type Key = StateKey;
    type Value = StateValue;
    type Output = duet_evm::Receipt;
    type Error = duet_evm::EvmError;

    fn execute<View>(
        &self,
        txn_index: duet_block_stm::TxnIndex,
        transaction: &TxEnv,
        view: &View,
    ) -> Result<VmOutput<StateKey, StateValue, duet_evm::Receipt>, duet_evm::EvmError>
    where
        View: duet_block_stm::TransactionView<Key = StateKey, Value = StateValue>,
    {
        self.0.execute(txn_index, transaction, view)
    }

    fn hot_credit_key(&self) -> Option<StateKey> {
        self.0.hot_credit_key()
    }
}

/// Executes `block` on `state` sequentially (the EVM's own run, and one transaction at a time)
/// and with Block-STM at 2 and 4 threads (no hand-over to the sequential executor), asserts that
/// the outputs are identical, and returns the sequential output with the statistics of the
/// 2-thread run.
pub fn execute_every_way(
    vm: &EvmVm,
    block: &[TxEnv],
    state: &MemoryState,
) -> (VmBlockOutput<EvmVm>, ExecutionStats) {
    let sequential = execute_sequential(vm, block, state).expect("the block executes");
    let one_by_one = execute_sequential(&OneByOne(vm), block, state).expect("the block executes");
    assert!(one_by_one == sequential, "the EVM's own sequential run differs from one by one");
    let mut two_thread_stats = None;
    for (threads, config) in parallel_configs() {
        let (parallel, run_stats) =
            BlockExecutor::new(vm, config).execute_block_with_stats(block, state);
        two_thread_stats.get_or_insert(run_stats);
        assert!(
            parallel.as_ref() == Ok(&sequential),
            "parallel ({threads} threads) differs from sequential"
        );
    }
    (sequential, two_thread_stats.expect("ran in parallel"))
}

/// Executes the mixed `block` on `state` sequentially and with Block-STM at 2 and 4 threads
/// (Move publishes as barriers, no hand-over to the sequential executor), asserts that the
/// outputs are identical, and returns the sequential output.
pub fn execute_mixed_every_way(
    vm: &DuetVm,
    block: &[DuetTransaction],
    state: &MemoryState,
) -> VmBlockOutput<DuetVm> {
    let sequential =
        MixedBlockExecutor::sequential(vm).execute_block(block, state).expect("the block executes");
    for (threads, config) in parallel_configs() {
        let parallel = MixedBlockExecutor::parallel(vm, config).execute_block(block, state);
        assert!(
            parallel.as_ref() == Ok(&sequential),
            "parallel ({threads} threads) differs from sequential"
        );
    }
    sequential
}

/// Plain revm's state, in Duet's key space (zero and default values are absent).
pub fn plain_state(db: &CacheDB<EmptyDB>) -> StateMap {
    let mut state = StateMap::default();
    for (address, account) in &db.cache.accounts {
        let info = &account.info;
        if info.nonce != 0 || info.code_hash != EVM_EMPTY_CODE_HASH {
            state.insert(
                StateKey::Account(*address),
                StateValue::Account { nonce: info.nonce, code_hash: info.code_hash },
            );
        }
        if !info.balance.is_zero() {
            state.insert(StateKey::Balance(*address), StateValue::Balance(info.balance.to()));
        }
        for (slot, value) in &account.storage {
            if !value.is_zero() {
                state.insert(
                    StateKey::Storage { address: *address, slot: B256::from(*slot) },
                    StateValue::Slot(*value),
                );
            }
        }
    }
    for (hash, code) in &db.cache.contracts {
        if *hash != EVM_EMPTY_CODE_HASH && !code.is_empty() {
            state.insert(StateKey::Code(*hash), StateValue::Bytes(code.original_bytes()));
        }
    }
    state
}
