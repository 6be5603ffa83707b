//! Move transactions through Block-STM: every block runs sequentially and in parallel (2 and 4
//! threads), and the outputs must be identical. This file holds the chain the tests run and the
//! tests of plain transactions; `schedule`, `limits` and `publish` hold the rest.

#[path = "../../testkit/mod.rs"]
mod testkit;

// Each part reads this file's chain and helpers.
#[allow(clippy::wildcard_imports)]
mod crafted;
#[allow(clippy::wildcard_imports)]
mod limits;
#[allow(clippy::wildcard_imports)]
mod publish;
#[allow(clippy::wildcard_imports)]
mod schedule;

use std::fmt::Write;
use std::num::NonZeroUsize;

use crafted::{
    compile_by_name, edited_module, linked_module, many_exists, module_with_links,
    position_or_push, Link,
};
use duet_block_stm::{ContentionFallback, ExecutorConfig, TransactionResult, VmBlockOutput};
use duet_move::{gas, MoveBlockExecutor, MoveError, MoveReceipt, MoveStatus, MoveVm};
use duet_types::{Address, MovePayload, MoveTransaction, StateKey, StateValue};
use proptest::prelude::*;
use testkit::{
    call, compile_example, eth_transfer, example_modules, transaction, user, MemoryState,
    FEE_VAULT, GAS_LIMIT, GAS_PRICE, ONE_ETH,
};

/// A chain: its state, and one Move VM per executor (as separate nodes would have).
struct Chain {
    state: MemoryState,
    sequential_vm: MoveVm,
    parallel_vms: Vec<(MoveVm, ExecutorConfig)>,
}

impl Chain {
    fn new(accounts: impl IntoIterator<Item = Address>) -> Self {
        // 1: the parallel executor on one thread.
        let configs = [
            (1, None),
            (2, None),
            (4, None),
            (2, Some(ContentionFallback::default())),
            (
                4,
                Some(ContentionFallback {
                    min_executions: 3,
                    max_wasted_percent: 0,
                    probe_window: 4,
                }),
            ),
        ];
        let parallel_vms = configs
            .into_iter()
            .map(|(threads, fallback)| {
                let mut config =
                    ExecutorConfig::with_threads(NonZeroUsize::new(threads).expect("nonzero"));
                config.min_parallel_block = 2;
                config.contention_fallback = fallback;
                config.parallel_on_one_thread = true;
                (MoveVm::new(FEE_VAULT), config)
            })
            .collect();
        Self {
            state: MemoryState::genesis(accounts, 100 * ONE_ETH),
            sequential_vm: MoveVm::new(FEE_VAULT),
            parallel_vms,
        }
    }

    /// Runs `block` sequentially and in parallel, checks that all agree, applies it.
    fn run(&mut self, block: &[MoveTransaction]) -> VmBlockOutput<MoveVm> {
        let expected = MoveBlockExecutor::sequential(&self.sequential_vm)
            .execute_block(block, &self.state)
            .expect("the block executes");
        for (vm, config) in &self.parallel_vms {
            let parallel = MoveBlockExecutor::parallel(vm, *config)
                .execute_block(block, &self.state)
                .expect("the block executes in parallel");
            assert!(parallel == expected, "parallel ({config:?}) differs from sequential");
        }
        self.state.apply(&expected.state_updates);
        expected
    }

    fn publish_example(&mut self, publisher: Address) {
        self.publish(publisher, example_modules(publisher));
    }

    /// Calls `module::function` (published by `sender`) with `arguments`, as the sender's next
    /// transaction: its status and gas used.
    fn call_once(
        &mut self,
        sender: Address,
        module: &str,
        function: &str,
        arguments: Vec<Vec<u8>>,
    ) -> (MoveStatus, u64) {
        let output = self.call_output(sender, module, function, arguments, GAS_LIMIT);
        let receipt = receipt(&output, 0);
        (receipt.status.clone(), receipt.gas_used)
    }

    /// The gas one more pass of `module::function(times)` costs (see [`per_pass`]), each call's
    /// status checked by `check`.
    fn gas_per_pass(
        &mut self,
        sender: Address,
        module: &str,
        function: &str,
        check: impl Fn(&MoveStatus),
    ) -> u64 {
        per_pass(|times| {
            let (status, gas) = self.call_once(sender, module, function, vec![bcs(&times)]);
            check(&status);
            gas
        })
    }

    /// [`call_once`](Self::call_once) with `gas_limit`: the block's output.
    fn call_output(
        &mut self,
        sender: Address,
        module: &str,
        function: &str,
        arguments: Vec<Vec<u8>>,
        gas_limit: u64,
    ) -> VmBlockOutput<MoveVm> {
        let nonce = self.state.nonce(sender);
        let mut transaction =
            transaction(sender, nonce, call(sender, module, function, &[], arguments));
        transaction.gas_limit = gas_limit;
        self.run(&[transaction])
    }

    /// Publishes `modules` from `publisher`, which must succeed.
    fn publish(&mut self, publisher: Address, modules: Vec<Vec<u8>>) {
        assert_eq!(self.publish_bundle(publisher, modules), MoveStatus::Success);
    }

    /// Publishes `modules` as `sender`'s next transaction, with gas for large modules: its
    /// status.
    fn publish_bundle(&mut self, sender: Address, modules: Vec<Vec<u8>>) -> MoveStatus {
        self.publish_receipt(sender, modules).status
    }

    /// [`publish_bundle`](Self::publish_bundle), with the whole receipt.
    fn publish_receipt(&mut self, sender: Address, modules: Vec<Vec<u8>>) -> MoveReceipt {
        let output = self.publish_output(sender, modules);
        receipt(&output, 0).clone()
    }

    /// Publishes `modules` as `sender`'s next transaction, with gas for large modules: the
    /// block's output.
    fn publish_output(&mut self, sender: Address, modules: Vec<Vec<u8>>) -> VmBlockOutput<MoveVm> {
        let nonce = self.state.nonce(sender);
        let mut publish = transaction(sender, nonce, MovePayload::ModuleBundle(modules));
        publish.gas_limit = 30_000_000;
        self.run(&[publish])
    }

    /// Runs one block of `sender`'s next transactions, each calling `module::function` without
    /// arguments.
    fn run_calls(&mut self, sender: Address, calls: &[(&str, &str)]) -> VmBlockOutput<MoveVm> {
        let nonce = self.state.nonce(sender);
        let block: Vec<_> = calls
            .iter()
            .zip(nonce..)
            .map(|(&(module, function), nonce)| {
                transaction(sender, nonce, call(sender, module, function, &[], vec![]))
            })
            .collect();
        self.run(&block)
    }
}

/// The gas one more pass costs: `gas(passes)` for 20 passes less for 10, over 10.
fn per_pass(mut gas: impl FnMut(u64) -> u64) -> u64 {
    (gas(20) - gas(10)) / 10
}

fn receipt(output: &VmBlockOutput<MoveVm>, index: usize) -> &MoveReceipt {
    match &output.results[index] {
        TransactionResult::Executed(receipt) => receipt,
        other => panic!("transaction {index} was not executed: {other:?}"),
    }
}

fn fee(receipt: &MoveReceipt) -> u128 {
    u128::from(receipt.gas_used) * GAS_PRICE
}

fn u64_resource(state: &MemoryState, owner: Address, tag: &str) -> Option<u64> {
    state.resource(owner, tag).map(|bytes| u64::from_le_bytes(bytes[..8].try_into().expect("u64")))
}

/// Asserts that transaction `index` failed with `status`, saying `saying`.
fn assert_failed(output: &VmBlockOutput<MoveVm>, index: usize, status: &str, saying: &str) {
    match &receipt(output, index).status {
        MoveStatus::Failed { status: got, message } => {
            assert_eq!(got, status, "{index}: {message}");
            assert!(message.contains(saying), "{index}: {message}");
        }
        other => panic!("{index}: expected {status}, got {other:?}"),
    }
}

/// Move source of `levels` generic functions: `f{n}<T: {bounds}>({parameters}){returns}` calls
/// `f{n+1}<{wrap}>({arguments})`, where `wrap` names `T` (a type that grows at each call), and
/// the last runs `last`.
fn generic_chain(
    levels: usize,
    bounds: &str,
    parameters: &str,
    returns: &str,
    wrap: &str,
    arguments: &str,
    last: &str,
) -> String {
    let mut functions = String::new();
    for level in 0..levels {
        let body = if level + 1 < levels {
            format!("f{}<{wrap}>({arguments})", level + 1)
        } else {
            last.to_owned()
        };
        write!(functions, "fun f{level}<T: {bounds}>({parameters}){returns} {{ {body} }} ")
            .expect("a string takes it");
    }
    functions
}

/// `source`, one Move module that uses `std::vector`, with `fun empty_vectors(length: u64):
/// vector<vector<u8>>` added: a vector of `length` empty vectors, the value of many small
/// containers that the gas and memory tests build.
fn with_empty_vectors(source: &str) -> String {
    let (body, _) = source.rsplit_once('}').expect("a module");
    format!(
        "{body} fun empty_vectors(length: u64): vector<vector<u8>> {{ \
         let v = vector::empty<vector<u8>>(); let i = 0; \
         while (i < length) {{ vector::push_back(&mut v, vector::empty<u8>()); i = i + 1 }}; v }} }}"
    )
}

fn tag(publisher: Address, name: &str) -> String {
    format!("{publisher}::counter::{name}")
}

#[test]
fn framework_is_compiled_with_20_byte_addresses() {
    let modules = duet_move::framework_modules();
    let names: Vec<&str> = modules.iter().map(|(name, _)| name.as_str()).collect();
    for expected in ["account", "eth", "event", "signer", "vector", "bcs", "hash", "string"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    for (name, bytes) in &modules {
        let module = move_binary_format::CompiledModule::deserialize(bytes)
            .unwrap_or_else(|error| panic!("{name} does not deserialize: {error:?}"));
        assert_eq!(module.self_id().address().to_vec(), Address::with_last_byte(1).to_vec());
    }
}

#[test]
fn eth_transfer_moves_the_shared_balance_and_pays_the_fee() {
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    let output = chain.run(&[transaction(alice, 0, eth_transfer(bob, 3 * ONE_ETH))]);
    let receipt = receipt(&output, 0);
    assert_eq!(receipt.status, MoveStatus::Success);
    assert!(receipt.gas_used > gas::intrinsic_gas(0) + gas::ETH_TRANSFER);
    assert_eq!(receipt.events.len(), 1);
    assert!(receipt.events[0].type_tag.ends_with("::eth::Transfer"), "{:?}", receipt.events);
    let mut expected_event = alice.to_vec();
    expected_event.extend_from_slice(bob.as_slice());
    expected_event.extend_from_slice(&(3 * ONE_ETH).to_le_bytes());
    assert_eq!(receipt.events[0].data.as_slice(), expected_event.as_slice());
    assert_eq!(chain.state.balance(alice), 97 * ONE_ETH - fee(receipt));
    assert_eq!(chain.state.balance(bob), 103 * ONE_ETH);
    assert_eq!(chain.state.balance(FEE_VAULT), fee(receipt));
    assert_eq!(chain.state.nonce(alice), 1);
}

#[test]
fn a_failed_transfer_charges_only_the_fee() {
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    let output = chain.run(&[transaction(alice, 0, eth_transfer(bob, 1_000 * ONE_ETH))]);
    let receipt = receipt(&output, 0);
    let location = format!("{}::eth", Address::with_last_byte(1));
    assert_eq!(receipt.status, MoveStatus::Aborted { location, code: 1 });
    assert!(receipt.events.is_empty());
    assert_eq!(chain.state.balance(alice), 100 * ONE_ETH - fee(receipt));
    assert_eq!(chain.state.balance(bob), 100 * ONE_ETH);
    assert_eq!(chain.state.nonce(alice), 1);
}

#[test]
fn the_sender_cannot_spend_the_fee_it_reserved() {
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    // Everything but the maximum fee can be sent; one wei more cannot.
    let max_fee = u128::from(GAS_LIMIT) * GAS_PRICE;
    let output = chain.run(&[
        transaction(alice, 0, eth_transfer(bob, 100 * ONE_ETH - max_fee + 1)),
        transaction(bob, 0, eth_transfer(alice, 100 * ONE_ETH - max_fee)),
    ]);
    assert!(matches!(receipt(&output, 0).status, MoveStatus::Aborted { code: 1, .. }));
    assert_eq!(receipt(&output, 1).status, MoveStatus::Success);
}

#[test]
fn invalid_transactions_are_rejected_and_change_nothing() {
    let (alice, bob, poor) = (user(1), user(2), user(3));
    let mut chain = Chain::new([alice, bob]);
    let before = chain.state.clone();
    let mut too_little_gas = transaction(alice, 0, eth_transfer(bob, 1));
    too_little_gas.gas_limit = 21_000;
    let mut too_much_gas = transaction(alice, 0, eth_transfer(bob, 1));
    too_much_gas.gas_limit = duet_move::MAX_TRANSACTION_GAS + 1;
    let mut overflowing_fee = transaction(alice, 0, eth_transfer(bob, 1));
    overflowing_fee.gas_price = u128::MAX;
    let block = [
        transaction(alice, 1, eth_transfer(bob, 1)),
        transaction(poor, 0, eth_transfer(bob, 1)),
        too_little_gas,
        too_much_gas,
        overflowing_fee,
    ];
    let output = chain.run(&block);
    let rejection = |index: usize| match &output.results[index] {
        TransactionResult::Rejected(error) => error.clone(),
        other => panic!("transaction {index} was not rejected: {other:?}"),
    };
    assert_eq!(rejection(0), MoveError::Nonce { expected: 0, got: 1 });
    assert_eq!(rejection(1), MoveError::InsufficientFunds(u128::from(GAS_LIMIT) * GAS_PRICE));
    assert!(matches!(rejection(2), MoveError::IntrinsicGas { limit: 21_000, .. }));
    assert!(matches!(rejection(3), MoveError::GasLimitTooHigh(_)));
    assert_eq!(rejection(4), MoveError::FeeOverflow);
    assert!(output.state_updates.is_empty());
    assert_eq!(chain.state, before);
}

#[test]
fn an_account_with_code_cannot_send_unless_the_code_is_a_delegation() {
    let (contract, delegated, bob) = (user(1), user(2), user(3));
    let mut chain = Chain::new([contract, delegated]);
    // A contract's code (STOP), and an EIP-7702 delegation to it.
    let mut with_code = |account: Address, code: Vec<u8>| {
        let hash = duet_types::keccak256(&code);
        chain
            .state
            .0
            .insert(StateKey::Account(account), StateValue::Account { nonce: 0, code_hash: hash });
        chain.state.0.insert(StateKey::Code(hash), StateValue::Bytes(code.into()));
    };
    with_code(contract, vec![0x00]);
    let mut delegation = vec![0xef, 0x01, 0x00];
    delegation.extend_from_slice(contract.as_slice());
    let delegation_hash = duet_types::keccak256(&delegation);
    with_code(delegated, delegation);
    let block = [
        transaction(contract, 0, eth_transfer(bob, 1)),
        transaction(delegated, 0, eth_transfer(bob, 1)),
    ];
    let output = chain.run(&block);
    assert!(
        matches!(output.results[0], TransactionResult::Rejected(MoveError::SenderHasCode)),
        "{:?}",
        output.results[0]
    );
    assert_eq!(receipt(&output, 1).status, MoveStatus::Success);
    assert_eq!(
        chain.state.0.get(&StateKey::Balance(bob)),
        Some(&StateValue::Balance(1)),
        "the delegated account's transfer"
    );
    // Its nonce moved on, and its delegation stays.
    assert_eq!(
        chain.state.0.get(&StateKey::Account(delegated)),
        Some(&StateValue::Account { nonce: 1, code_hash: delegation_hash })
    );
}

#[test]
fn out_of_gas_charges_the_whole_limit_and_reverts_the_rest() {
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    chain.publish_example(alice);
    let before = chain.state.clone();
    let mut spin =
        transaction(alice, 1, call(alice, "counter", "spin", &[], vec![bcs(&1_000_000u64)]));
    spin.gas_limit = 100_000;
    let mut pay = transaction(alice, 2, eth_transfer(bob, ONE_ETH));
    pay.gas_limit = gas::intrinsic_gas(pay.payload.encoded_len()) + 10;
    let output = chain.run(&[spin, pay]);
    for index in 0..2 {
        assert_eq!(receipt(&output, index).status, MoveStatus::OutOfGas);
    }
    assert_eq!(receipt(&output, 0).gas_used, 100_000);
    let charged = fee(receipt(&output, 0)) + fee(receipt(&output, 1));
    assert_eq!(chain.state.balance(alice), before.balance(alice) - charged);
    assert_eq!(chain.state.balance(bob), before.balance(bob));
    assert_eq!(chain.state.nonce(alice), 3);
}

/// The BCS encoding of a Move argument (an address is passed as its 20 bytes: `address.0 .0`).
fn bcs<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    ::bcs::to_bytes(value).expect("test values serialize")
}

#[test]
fn vectors_compare_by_their_elements_empty_or_not() {
    // Vectors of primitives compare by length first (an empty one's buffer is never read, see
    // `vendor/README.md`): every answer stays the element-by-element one, for each kind of
    // primitive vector and for vectors of vectors, equal or not, of equal lengths or not.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let mut source = String::from("module example::equality { ");
    for kind in ["u8", "u64", "u128", "bool", "address", "vector<u8>"] {
        let name = kind.replace(['<', '>'], "_");
        write!(
            source,
            "public entry fun same_{name}(a: vector<{kind}>, b: vector<{kind}>, equal: bool) {{ \
             assert!((a == b) == equal, 1); assert!((&a != &b) != equal, 2) }} "
        )
        .expect("a string takes it");
    }
    source.push('}');
    chain.publish(alice, compile_example(&source, alice));
    let address = |byte: u8| [byte; 20];
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, bool)> = vec![
        ("u8", bcs(&Vec::<u8>::new()), bcs(&Vec::<u8>::new()), true),
        ("u8", bcs(&vec![1u8, 2]), bcs(&vec![1u8, 2]), true),
        ("u8", bcs(&vec![1u8, 2]), bcs(&vec![1u8, 3]), false),
        ("u8", bcs(&vec![1u8, 2]), bcs(&vec![1u8]), false),
        ("u8", bcs(&Vec::<u8>::new()), bcs(&vec![0u8]), false),
        ("u64", bcs(&Vec::<u64>::new()), bcs(&Vec::<u64>::new()), true),
        ("u64", bcs(&vec![7u64, 8]), bcs(&vec![7u64, 9]), false),
        ("u64", bcs(&vec![7u64, 8]), bcs(&vec![7u64, 8]), true),
        ("u128", bcs(&vec![1u128 << 100]), bcs(&vec![1u128 << 100]), true),
        ("u128", bcs(&vec![1u128]), bcs(&Vec::<u128>::new()), false),
        ("bool", bcs(&vec![true, false]), bcs(&vec![true, true]), false),
        ("bool", bcs(&Vec::<bool>::new()), bcs(&Vec::<bool>::new()), true),
        ("address", bcs(&vec![address(1), address(2)]), bcs(&vec![address(1), address(3)]), false),
        ("address", bcs(&vec![address(1)]), bcs(&vec![address(1)]), true),
        ("address", bcs(&Vec::<[u8; 20]>::new()), bcs(&vec![address(1)]), false),
        ("vector_u8_", bcs(&vec![vec![1u8], vec![]]), bcs(&vec![vec![1u8], vec![]]), true),
        ("vector_u8_", bcs(&vec![vec![1u8], vec![]]), bcs(&vec![vec![1u8], vec![2u8]]), false),
        ("vector_u8_", bcs(&vec![Vec::<u8>::new()]), bcs(&Vec::<Vec<u8>>::new()), false),
    ];
    let block: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(nonce, (kind, a, b, equal))| {
            let arguments = vec![a.clone(), b.clone(), bcs(equal)];
            let payload = call(alice, "equality", &format!("same_{kind}"), &[], arguments);
            transaction(alice, 1 + nonce as u64, payload)
        })
        .collect();
    let output = chain.run(&block);
    for (index, case) in cases.iter().enumerate() {
        assert_eq!(receipt(&output, index).status, MoveStatus::Success, "{case:?}");
    }
}

#[test]
fn resources_are_created_changed_and_read() {
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    chain.publish_example(alice);
    let increment = |sender, nonce| {
        transaction(sender, nonce, call(alice, "counter", "increment", &[], vec![]))
    };
    let output = chain.run(&[
        increment(alice, 1),
        increment(bob, 0),
        increment(alice, 2),
        transaction(alice, 3, call(alice, "counter", "create_shared", &[], vec![])),
        transaction(bob, 1, call(alice, "counter", "bump_shared", &[], vec![bcs(&alice.0 .0)])),
        transaction(bob, 2, call(alice, "counter", "append", &[], vec![bcs(&vec![1u64, 2, 3])])),
        transaction(bob, 3, call(alice, "counter", "append", &[], vec![bcs(&vec![4u64])])),
    ]);
    for index in 0..7 {
        assert!(receipt(&output, index).is_success(), "{index}: {:?}", output.results[index]);
    }
    assert_eq!(u64_resource(&chain.state, alice, &tag(alice, "Counter")), Some(2));
    assert_eq!(u64_resource(&chain.state, bob, &tag(alice, "Counter")), Some(1));
    assert_eq!(u64_resource(&chain.state, alice, &tag(alice, "Shared")), Some(1));
    let log = chain.state.resource(bob, &tag(alice, "Log")).expect("the log exists");
    assert_eq!(log, bcs(&vec![1u64, 2, 3, 4]));
    // A new resource costs more than a changed one.
    assert!(receipt(&output, 0).gas_used > receipt(&output, 2).gas_used + 10_000);
}

#[test]
fn calls_that_cannot_work_fail_clearly_and_charge_only_the_fee() {
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    chain.publish_example(alice);
    let before = chain.state.clone();
    let deep = format!("{}u8{}", "vector<".repeat(5_000), ">".repeat(5_000));
    let block = [
        call(bob, "counter", "increment", &[], vec![]),
        call(alice, "counter", "no_such_function", &[], vec![]),
        call(alice, "counter", "fail", &[], vec![]),
        call(alice, "counter", "fail", &[], vec![vec![1, 2]]),
        call(alice, "counter", "value", &[], vec![bcs(&alice.0 .0)]),
        call(alice, "counter", "increment", &["u64"], vec![]),
        call(alice, "counter", "increment", &["not a type"], vec![]),
        call(alice, "no-such-identifier", "increment", &[], vec![]),
        call(alice, "counter", "fail", &[], vec![bcs(&42u64)]),
        // The Move parser recurses once per level: this would overflow the stack.
        call(alice, "counter", "increment", &[deep.as_str()], vec![]),
    ];
    let block: Vec<_> = block
        .into_iter()
        .enumerate()
        .map(|(nonce, payload)| transaction(bob, nonce as u64, payload))
        .collect();
    let output = chain.run(&block);
    let statuses: Vec<&MoveStatus> =
        (0..block.len()).map(|index| &receipt(&output, index).status).collect();
    let failed = |status: &MoveStatus| match status {
        MoveStatus::Failed { status, .. } => status.clone(),
        other => panic!("expected a failure, got {other:?}"),
    };
    assert_eq!(failed(statuses[0]), "LINKER_ERROR");
    assert_eq!(failed(statuses[1]), "FUNCTION_RESOLUTION_FAILURE");
    assert_eq!(failed(statuses[2]), "NUMBER_OF_ARGUMENTS_MISMATCH");
    assert_eq!(failed(statuses[3]), "FAILED_TO_DESERIALIZE_ARGUMENT");
    assert_eq!(failed(statuses[4]), "EXECUTE_ENTRY_FUNCTION_CALLED_ON_NON_ENTRY_FUNCTION");
    assert_eq!(failed(statuses[5]), "NUMBER_OF_TYPE_ARGUMENTS_MISMATCH");
    assert_eq!(failed(statuses[6]), "INVALID_PAYLOAD");
    assert_eq!(failed(statuses[7]), "INVALID_PAYLOAD");
    assert_eq!(
        statuses[8],
        &MoveStatus::Aborted { location: format!("{alice}::counter"), code: 42 }
    );
    assert_eq!(failed(statuses[9]), "INVALID_PAYLOAD");
    let fees: u128 = (0..block.len()).map(|index| fee(receipt(&output, index))).sum();
    assert_eq!(chain.state.balance(bob), before.balance(bob) - fees);
    assert_eq!(chain.state.balance(FEE_VAULT), before.balance(FEE_VAULT) + fees);
    assert_eq!(chain.state.nonce(bob), block.len() as u64);
    // Nothing but nonces and balances changed.
    for (key, _) in &output.state_updates {
        assert!(matches!(key, StateKey::Account(_) | StateKey::Balance(_)), "{key:?} changed");
    }
}

#[test]
fn bad_bundles_fail_clearly_and_publish_nothing() {
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    let modules = example_modules(alice);
    // A module whose function pops from an empty stack: it deserializes, the verifier refuses it.
    let mut unverifiable =
        move_binary_format::CompiledModule::deserialize(&modules[0]).expect("it deserializes");
    let code = unverifiable.function_defs[0].code.as_mut().expect("the function has code");
    code.code = vec![
        move_binary_format::file_format::Bytecode::Pop,
        move_binary_format::file_format::Bytecode::Ret,
    ];
    let mut unverifiable_bytes = Vec::new();
    unverifiable.serialize(&mut unverifiable_bytes).expect("it serializes");
    let block = [
        transaction(alice, 0, MovePayload::ModuleBundle(vec![vec![0xa1, 0x1c, 0xeb, 0x0b, 0xff]])),
        transaction(alice, 1, MovePayload::ModuleBundle(vec![unverifiable_bytes])),
        // Alice's module, sent by Bob.
        transaction(bob, 0, MovePayload::ModuleBundle(modules)),
    ];
    let output = chain.run(&block);
    let failed = |index: usize| match &receipt(&output, index).status {
        MoveStatus::Failed { status, .. } => status.clone(),
        other => panic!("transaction {index}: expected a failure, got {other:?}"),
    };
    assert!(failed(0).contains("BINARY") || failed(0).contains("MALFORMED"), "{}", failed(0));
    assert_eq!(failed(1), "NEGATIVE_STACK_SIZE_WITHIN_BLOCK");
    assert_eq!(failed(2), "MODULE_ADDRESS_DOES_NOT_MATCH_SENDER");
    for (key, _) in &output.state_updates {
        assert!(matches!(key, StateKey::Account(_) | StateKey::Balance(_)), "{key:?} changed");
    }
}

#[test]
fn modules_published_mid_block_are_callable_by_later_transactions_only() {
    let (alice, bob, carol) = (user(1), user(2), user(3));
    let mut chain = Chain::new([alice, bob, carol]);
    let increment = |sender, nonce| {
        transaction(sender, nonce, call(alice, "counter", "increment", &[], vec![]))
    };
    let block = [
        increment(bob, 0),
        transaction(carol, 0, eth_transfer(bob, 5)),
        transaction(alice, 0, MovePayload::ModuleBundle(example_modules(alice))),
        increment(bob, 1),
        increment(carol, 1),
        transaction(carol, 2, eth_transfer(alice, 5)),
    ];
    let pre_state = chain.state.clone();
    let output = chain.run(&block);
    assert!(
        matches!(&receipt(&output, 0).status, MoveStatus::Failed { status, .. } if status == "LINKER_ERROR")
    );
    for index in 1..block.len() {
        assert!(receipt(&output, index).is_success(), "{index}: {:?}", output.results[index]);
    }
    assert_eq!(u64_resource(&chain.state, bob, &tag(alice, "Counter")), Some(1));

    // The same VMs run a block on the state before the publish (the block above was discarded,
    // say): the module they loaded must not be served from their code caches.
    let mut discarded = Chain { state: pre_state, ..chain };
    let output = discarded.run(&[increment(bob, 0), increment(carol, 0)]);
    for index in 0..2 {
        assert!(
            matches!(&receipt(&output, index).status, MoveStatus::Failed { status, .. } if status == "LINKER_ERROR")
        );
    }
}

#[test]
fn only_plain_values_come_from_a_transaction_never_a_signer_or_a_struct() {
    let (thief, victim) = (user(1), user(2));
    let mut chain = Chain::new([thief, victim]);
    let thief_module = compile_example(
        "module example::thief { \
         use std::signer; use duet::eth; \
         struct Coin has store, drop { value: u128 } \
         struct Vault has key { coin: Coin } \
         public entry fun steal(me: &signer, victim: &signer) { \
             eth::transfer(victim, signer::address_of(me), 10) } \
         public entry fun deposit(me: &signer, coin: Coin) { move_to(me, Vault { coin }) } \
         public entry fun anything<T: drop>(_me: &signer, _value: T) {} \
         public entry fun generic_signer<T: drop>(value: T) {} \
         public entry fun numbers(_me: &signer, _values: vector<u64>, _to: &address) {} }",
        thief,
    );
    chain.publish(thief, thief_module);
    let before = chain.state.clone();
    let victim_bytes = victim.to_vec();
    let block = [
        call(thief, "thief", "steal", &[], vec![victim_bytes.clone()]),
        call(thief, "thief", "deposit", &[], vec![bcs(&1_000_000u128)]),
        call(thief, "thief", "anything", &["signer"], vec![victim_bytes.clone()]),
        call(thief, "thief", "generic_signer", &["signer"], vec![victim_bytes]),
        // Plain values, through type parameters and references too, are fine.
        call(thief, "thief", "anything", &["vector<u128>"], vec![bcs(&vec![1u128, 2])]),
        call(thief, "thief", "numbers", &[], vec![bcs(&vec![3u64]), thief.to_vec()]),
    ];
    let block: Vec<_> = block
        .into_iter()
        .enumerate()
        .map(|(nonce, payload)| transaction(thief, nonce as u64 + 1, payload))
        .collect();
    let output = chain.run(&block);
    for index in 0..4 {
        assert_failed(&output, index, "INVALID_PAYLOAD", "cannot be given by a transaction");
    }
    for index in 4..6 {
        assert!(receipt(&output, index).is_success(), "{index}: {:?}", output.results[index]);
    }
    assert_eq!(chain.state.balance(victim), before.balance(victim), "the victim kept its ETH");
    assert_eq!(chain.state.resource(thief, &format!("{thief}::thief::Vault")), None);
}

/// `0x1::string::String` parameters take UTF-8 (a `vector<u8>`'s encoding), alone, in vectors
/// and as type arguments; bytes that are not UTF-8 are refused before the VM makes a `String` of
/// them, which its module promises never holds anything else.
#[test]
fn strings_come_from_a_transaction_as_utf8_and_nothing_else() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let module = compile_example(
        "module example::names { \
         use std::string::{Self, String}; use std::vector; \
         struct Names has key { all: vector<String> } \
         public entry fun name(me: &signer, name: String) { \
             move_to(me, Names { all: vector::singleton(name) }) } \
         public entry fun names(me: &signer, all: vector<String>) acquires Names { \
             let names = borrow_global_mut<Names>(std::signer::address_of(me)); \
             vector::append(&mut names.all, all) } \
         public entry fun length<T: drop>(value: T, expected: u64) { \
             let _ = value; assert!(expected < 1000, 1) } \
         public entry fun check(name: String, bytes: vector<u8>) { \
             assert!(string::bytes(&name) == &bytes, 2) } }",
        alice,
    );
    chain.publish(alice, module);
    let text = |text: &str| bcs(&text.as_bytes().to_vec());
    let block = [
        call(alice, "names", "name", &[], vec![text("café")]),
        call(alice, "names", "names", &[], vec![bcs(&vec![b"a".to_vec(), "€".into()])]),
        call(alice, "names", "length", &["0x1::string::String"], vec![text("ok"), bcs(&1u64)]),
        call(alice, "names", "check", &[], vec![text("ünï"), text("ünï")]),
        // Not UTF-8: alone, in a vector, through a type argument.
        call(alice, "names", "names", &[], vec![bcs(&vec![b"a".to_vec(), vec![0xc3]])]),
        call(
            alice,
            "names",
            "length",
            &["0x1::string::String"],
            vec![bcs(&vec![0xffu8]), bcs(&1u64)],
        ),
        call(
            alice,
            "names",
            "check",
            &[],
            vec![bcs(&vec![0xc3u8, 0x28]), bcs(&vec![0xc3u8, 0x28])],
        ),
        // A string with bytes after it.
        call(alice, "names", "check", &[], vec![[text("a"), vec![0]].concat(), text("a")]),
    ];
    let block: Vec<_> = block
        .into_iter()
        .enumerate()
        .map(|(nonce, payload)| transaction(alice, nonce as u64 + 1, payload))
        .collect();
    let output = chain.run(&block);
    for index in 0..4 {
        assert!(receipt(&output, index).is_success(), "{index}: {:?}", output.results[index]);
    }
    for index in 4..8 {
        assert_failed(&output, index, "INVALID_PAYLOAD", "with UTF-8 strings");
    }
    let names = chain.state.resource(alice, &format!("{alice}::names::Names")).unwrap();
    let names: Vec<String> = bcs::from_bytes(&names).unwrap();
    assert_eq!(names, ["café", "a", "€"]);
}

/// One random transaction of the mixed workload.
#[derive(Clone, Debug)]
enum Action {
    Transfer { from: u64, to: u64, amount: u128 },
    Increment { sender: u64 },
    BumpShared { sender: u64 },
    Append { sender: u64, items: u8 },
    Abort { sender: u64 },
    Spin { sender: u64, rounds: u64, gas_limit: u64 },
    PayThenAbort { from: u64, to: u64 },
    Publish,
}

fn action() -> impl Strategy<Value = Action> {
    let account = 0..6u64;
    prop_oneof![
        4 => (account.clone(), account.clone(), 0..3u128).prop_map(|(from, to, amount)| {
            Action::Transfer { from, to, amount: amount * 40 * ONE_ETH }
        }),
        2 => account.clone().prop_map(|sender| Action::Increment { sender }),
        2 => account.clone().prop_map(|sender| Action::BumpShared { sender }),
        1 => (account.clone(), 0..5u8).prop_map(|(sender, items)| Action::Append { sender, items }),
        1 => account.clone().prop_map(|sender| Action::Abort { sender }),
        1 => (account.clone(), 0..2_000u64, 30_000..60_000u64)
            .prop_map(|(sender, rounds, gas_limit)| Action::Spin { sender, rounds, gas_limit }),
        1 => (account.clone(), account).prop_map(|(from, to)| Action::PayThenAbort { from, to }),
        1 => Just(Action::Publish),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random mixed blocks: transfers (some unaffordable), counters per account and shared, a
    /// growing vector, aborts, out-of-gas, payments that abort, and re-publishing mid-block.
    #[test]
    fn parallel_equals_sequential_on_random_blocks(
        actions in proptest::collection::vec(action(), 1..60),
    ) {
        let publisher = user(100);
        let accounts: Vec<Address> = (0..6).map(user).collect();
        let mut chain = Chain::new(accounts.iter().copied().chain([publisher]));
        chain.publish_example(publisher);
        chain.run(&[transaction(publisher, 1, call(publisher, "counter", "create_shared", &[], vec![]))]);
        let mut nonces = [0u64; 6];
        let mut publisher_nonce = 2;
        let modules = example_modules(publisher);
        let block: Vec<MoveTransaction> = actions
            .into_iter()
            .map(|action| {
                let mut next = |index: u64| {
                    let nonce = nonces[index as usize];
                    nonces[index as usize] += 1;
                    (accounts[index as usize], nonce)
                };
                let example = |function: &str, arguments| call(publisher, "counter", function, &[], arguments);
                match action {
                    Action::Transfer { from, to, amount } => {
                        let (sender, nonce) = next(from);
                        transaction(sender, nonce, eth_transfer(accounts[to as usize], amount))
                    }
                    Action::Increment { sender } => {
                        let (sender, nonce) = next(sender);
                        transaction(sender, nonce, example("increment", vec![]))
                    }
                    Action::BumpShared { sender } => {
                        let (sender, nonce) = next(sender);
                        transaction(sender, nonce, example("bump_shared", vec![bcs(&publisher.0 .0)]))
                    }
                    Action::Append { sender, items } => {
                        let (sender, nonce) = next(sender);
                        let items: Vec<u64> = (0..u64::from(items)).collect();
                        transaction(sender, nonce, example("append", vec![bcs(&items)]))
                    }
                    Action::Abort { sender } => {
                        let (sender, nonce) = next(sender);
                        transaction(sender, nonce, example("fail", vec![bcs(&3u64)]))
                    }
                    Action::Spin { sender, rounds, gas_limit } => {
                        let (sender, nonce) = next(sender);
                        let mut spin = transaction(sender, nonce, example("spin", vec![bcs(&rounds)]));
                        spin.gas_limit = gas_limit;
                        spin
                    }
                    Action::PayThenAbort { from, to } => {
                        let (sender, nonce) = next(from);
                        let arguments = vec![bcs(&accounts[to as usize].0 .0), bcs(&ONE_ETH), bcs(&true)];
                        transaction(sender, nonce, example("pay", arguments))
                    }
                    Action::Publish => {
                        publisher_nonce += 1;
                        transaction(publisher, publisher_nonce - 1, MovePayload::ModuleBundle(modules.clone()))
                    }
                }
            })
            .collect();
        let output = chain.run(&block);
        prop_assert_eq!(output.results.len(), block.len());
        for result in &output.results {
            prop_assert!(matches!(result, TransactionResult::Executed(_)), "{:?}", result);
        }
    }
}

#[test]
fn a_transaction_sees_its_senders_sequence_number_as_that_of_its_next_transaction() {
    // `account::sequence_number` is the nonce of the account's next transaction: during its
    // transaction of nonce N, the sender's is N + 1, as an EVM transaction's code sees its own
    // nonce (and as the same Move transaction sees it once it has called the EVM). It read N.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::seq {
        use std::signer;
        use duet::account;
        struct Seen has key { n: u64 }
        public entry fun note(account: &signer) acquires Seen {
            let owner = signer::address_of(account);
            let n = account::sequence_number(owner);
            if (exists<Seen>(owner)) borrow_global_mut<Seen>(owner).n = n
            else move_to(account, Seen { n });
        }
    }";
    chain.publish(alice, compile_example(source, alice));
    for _ in 0..2 {
        let nonce = chain.state.nonce(alice);
        assert_eq!(chain.call_once(alice, "seq", "note", vec![]).0, MoveStatus::Success);
        let seen = u64_resource(&chain.state, alice, &format!("{alice}::seq::Seen"));
        assert_eq!(seen, Some(nonce + 1));
    }
}
