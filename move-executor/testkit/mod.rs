//! Shared by the tests and the benchmark: an in-memory state with the framework, transaction
//! builders and the example module.

#![allow(dead_code, unreachable_pub)] // Each user takes what it needs.

mod state;
pub use state::MemoryState;

use duet_types::{Address, EntryFunction, MovePayload, MoveTransaction, StateKey, StateValue};

/// Where fees go.
pub const FEE_VAULT: Address = Address::repeat_byte(0xfe);
/// One ETH in wei.
pub const ONE_ETH: u128 = 1_000_000_000_000_000_000;
/// The gas price of test transactions.
pub const GAS_PRICE: u128 = 1_000_000_000;
/// The gas limit of test transactions.
pub const GAS_LIMIT: u64 = 1_000_000;

/// The account numbered `index`.
pub fn user(index: u64) -> Address {
    let mut bytes = [0x11; 20];
    bytes[12..].copy_from_slice(&index.to_be_bytes());
    Address::from(bytes)
}

impl MemoryState {
    /// The framework, and `balance` wei for each of `accounts`.
    pub fn genesis(accounts: impl IntoIterator<Item = Address>, balance: u128) -> Self {
        let mut state = Self::default();
        state.0.extend(duet_move::genesis_state());
        for account in accounts {
            state.0.insert(StateKey::Balance(account), StateValue::Balance(balance));
        }
        state
    }
}

/// A Move transaction from `sender` with the test gas limit and price.
pub fn transaction(sender: Address, nonce: u64, payload: MovePayload) -> MoveTransaction {
    MoveTransaction { sender, nonce, gas_limit: GAS_LIMIT, gas_price: GAS_PRICE, payload }
}

/// A call of `module::function` at `address`, with BCS `arguments`.
pub fn call(
    address: Address,
    module: &str,
    function: &str,
    type_arguments: &[&str],
    arguments: Vec<Vec<u8>>,
) -> MovePayload {
    MovePayload::EntryFunction(EntryFunction {
        module_address: address,
        module_name: module.to_owned(),
        function: function.to_owned(),
        type_arguments: type_arguments.iter().map(|tag| (*tag).to_owned()).collect(),
        arguments,
    })
}

/// `eth::transfer(to, amount)`.
pub fn eth_transfer(to: Address, amount: u128) -> MovePayload {
    call(
        Address::with_last_byte(1),
        "eth",
        "transfer",
        &[],
        vec![to.to_vec(), amount.to_le_bytes().to_vec()],
    )
}

/// The compiled example module (`testkit/example.move`), published at `publisher`.
pub fn example_modules(publisher: Address) -> Vec<Vec<u8>> {
    compile_file(&example_path(), publisher)
}

/// Compiles `source` (one module at named address `example`) with `example` = `publisher`.
pub fn compile_example(source: &str, publisher: Address) -> Vec<Vec<u8>> {
    let directory = tempfile::tempdir().expect("temp is writable");
    let file = directory.path().join("example.move");
    std::fs::write(&file, source).expect("temp is writable");
    compile_file(&file, publisher)
}

/// Compiles the module in `file` with the named address `example` = `publisher`; returns the
/// bytecode in dependency order.
fn compile_file(file: &std::path::Path, publisher: Address) -> Vec<Vec<u8>> {
    let address = publisher.to_string();
    duet_move::compile_package(
        vec![file.to_string_lossy().into_owned()],
        &[("example", address.as_str())],
    )
    .unwrap_or_else(|diagnostics| panic!("the example does not compile:\n{diagnostics}"))
    .into_iter()
    .map(|(_name, bytes)| bytes)
    .collect()
}

fn example_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testkit/example.move")
}
