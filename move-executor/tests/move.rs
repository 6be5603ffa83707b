//! Move transactions through Block-STM: every block runs sequentially and in parallel (2 and 4
//! threads), and the outputs must be identical.

#[path = "../testkit/mod.rs"]
mod testkit;

use std::fmt::Write;
use std::num::NonZeroUsize;

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
        let configs = [
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
        let nonce = self.state.nonce(sender);
        let mut publish = transaction(sender, nonce, MovePayload::ModuleBundle(modules));
        publish.gas_limit = 30_000_000;
        let output = self.run(&[publish]);
        receipt(&output, 0).clone()
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
fn publishing_a_module_costs_what_the_schedule_says() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let modules = example_modules(alice);
    let bytes: usize = modules.iter().map(Vec::len).sum();
    let count = modules.len() as u64;
    let payload = MovePayload::ModuleBundle(modules);
    let work: usize = example_modules(alice)
        .iter()
        .map(|bytes| {
            duet_move::limits::check_module(
                &move_binary_format::CompiledModule::deserialize(bytes).unwrap(),
            )
            .unwrap()
        })
        .sum();
    assert!(work > 0);
    let schedule = gas::intrinsic_gas(payload.encoded_len())
        + count * gas::MODULE
        + bytes as u64 * gas::MODULE_BYTE
        + work as u64 * gas::VERIFICATION_WORK;
    let output = chain.run(&[transaction(alice, 0, payload)]);
    let used = receipt(&output, 0).gas_used;
    // The schedule's charges, and the little the VM charges while it checks the bundle: the
    // modules' writes are paid for by the publish, not again as new resources (20 000 each).
    assert!(used >= schedule && used < schedule + 1_000, "{used} gas against {schedule}");
}

#[test]
fn copying_and_comparing_through_a_reference_costs_by_the_size_of_the_value() {
    // Reading a vector of 10 000 u64s through a reference copies 80 000 bytes, and comparing
    // two references to it walks both: each costs 80 000 / 32 = 2 500 gas a side, as copying
    // the vector from a local does. (Charged as the reference alone, a constant, a loop of
    // `*r;` copied megabytes for a few gas each: a cheap transaction could keep a node busy for
    // minutes.)
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let module = compile_example(
        "module example::greedy { \
         use std::vector; \
         fun filled(length: u64): vector<u64> { \
             let v = vector::empty<u64>(); let i = 0; \
             while (i < length) { vector::push_back(&mut v, i); i = i + 1 }; v } \
         public entry fun copies(length: u64, times: u64) { \
             let v = filled(length); let r = &v; let j = 0; \
             while (j < times) { *r; j = j + 1 } } \
         public entry fun comparisons(length: u64, times: u64) { \
             let v = filled(length); let j = 0; \
             while (j < times) { assert!(&v == &v, 0); j = j + 1 } } \
         public entry fun empties(length: u64, times: u64) { \
             let v = vector::empty<vector<u8>>(); let i = 0; \
             while (i < length) { vector::push_back(&mut v, vector::empty<u8>()); i = i + 1 }; \
             let r = &v; let j = 0; \
             while (j < times) { *r; j = j + 1 } } }",
        alice,
    );
    chain.publish(alice, module);
    let mut gas_used = |function: &str, length: u64, times: u64| {
        chain.call_once(alice, "greedy", function, vec![bcs(&length), bcs(&times)])
    };
    // 1 000 empty vectors: each counts 128 (a value of its own: an allocation, a `RefCell`), or
    // copying them would be nearly free: 128 128 / 32 = 4 004 gas a copy.
    for (function, length, per_time) in
        [("copies", 10_000, 2_500), ("comparisons", 10_000, 5_000), ("empties", 1_000, 4_004)]
    {
        let mut gas_used = |times: u64| gas_used(function, length, times);
        let (status, ten) = gas_used(10);
        assert!(status == MoveStatus::Success, "{function}: {status:?}");
        let (_, twenty) = gas_used(20);
        let per = (twenty - ten) / 10;
        assert!((per_time..per_time + 100).contains(&per), "{function}: {per} gas a time");
        // A thousand times would take millions of gas: out of gas at the limit.
        let (status, used) = gas_used(1_000);
        assert_eq!((status, used), (MoveStatus::OutOfGas, GAS_LIMIT), "{function}");
    }
}

#[test]
fn moving_a_value_costs_the_same_whatever_its_size() {
    // A move (out of a local, into one, into a vector, through a reference) moves a pointer: it
    // was charged by the value's size, which walked the whole value at each move.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::mover { use std::vector; \
         fun moved<T: drop>(v: T, times: u64) { \
             let j = 0; while (j < times) { let w = v; v = w; j = j + 1 }; \
             let outer = vector::empty<T>(); vector::push_back(&mut outer, v); \
             let k = 0; while (k < times) { let x = vector::pop_back(&mut outer); \
                 vector::push_back(&mut outer, x); k = k + 1 } } \
         public entry fun big(times: u64) { let v = vector::empty<vector<u8>>(); let i = 0; \
             while (i < 1000) { vector::push_back(&mut v, vector::empty<u8>()); i = i + 1 }; \
             moved(v, times) } \
         public entry fun small(times: u64) { moved(vector::empty<vector<u8>>(), times) } }";
    chain.publish(alice, compile_example(source, alice));
    let mut per_move = |function: &str| {
        let succeeds = |status: &MoveStatus| assert_eq!(*status, MoveStatus::Success, "{function}");
        chain.gas_per_pass(alice, "mover", function, succeeds)
    };
    let (big, small) = (per_move("big"), per_move("small"));
    assert_eq!(big, small, "a pass over 1 000 empty vectors costs {big}, over none {small}");
}

#[test]
fn a_call_pays_for_its_frames_locals() {
    // A function of 255 parameters and locals and almost no code, called in a loop, ran at
    // 33 ns a unit of gas for its call's 10 + 1: its frame allocates them and they are walked
    // when it returns. A call now pays 1 gas per 8 of them: 31 more than the same function with
    // its one parameter (0 more).
    use move_binary_format::file_format::{Signature, SignatureIndex, SignatureToken};
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::frames { fun f(a: u64): u64 { a } fun g<T>(a: u64): u64 { a } \
         public entry fun calls(n: u64) { let j = 0; while (j < n) { f(j); j = j + 1 } } \
         public entry fun generic_calls(n: u64) { \
             let j = 0; while (j < n) { g<u8>(j); j = j + 1 } } }";
    let function = |module: &move_binary_format::CompiledModule, name: &str| {
        let named = |definition: &move_binary_format::file_format::FunctionDefinition| {
            let handle = &module.function_handles[usize::from(definition.function.0)];
            module.identifiers[usize::from(handle.name.0)].as_str() == name
        };
        module.function_defs.iter().position(named).expect("the function is defined")
    };
    let wide = edited_module(source, alice, |module| {
        let locals = Signature(vec![SignatureToken::U64; 254]);
        let locals = SignatureIndex(position_or_push(&mut module.signatures, locals));
        for name in ["f", "g"] {
            let at = function(module, name);
            module.function_defs[at].code.as_mut().unwrap().locals = locals;
        }
    });
    chain.publish(alice, vec![wide]);
    // The same module with its functions as compiled, on a chain of its own (a call's gas does
    // not depend on who published the module it calls).
    let bob = user(2);
    let mut narrow_chain = Chain::new([bob]);
    narrow_chain.publish(bob, compile_example(source, bob));
    for caller in ["calls", "generic_calls"] {
        let per_call = chain.gas_per_pass(alice, "frames", caller, |_| ());
        let narrow = narrow_chain.gas_per_pass(bob, "frames", caller, |_| ());
        assert_eq!(per_call - narrow, 255 / 8, "{caller}: {per_call} gas a pass against {narrow}");
    }
}

#[test]
fn the_heap_a_transactions_values_hold_at_once_is_bounded() {
    // A copy of a vector of 10 000 empty vectors cost 5 000 gas and held about 950 KB: a
    // transaction at the gas cap could hold 1.5 GB (it costs 40 004 gas now, a container
    // counting 128). The VM counts the heap each value holds (960 048 bytes for such a copy)
    // and fails the transaction past 64 MiB; what it frees (a
    // copy overwritten, popped, compared, written over, or left in a frame that returns) no
    // longer counts, so churning through far more than 64 MiB in all is fine.
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    let module = compile_example(
        "module example::hoard { \
         use std::vector; \
         fun empties(length: u64): vector<vector<u8>> { \
             let v = vector::empty<vector<u8>>(); let i = 0; \
             while (i < length) { vector::push_back(&mut v, vector::empty<u8>()); i = i + 1 }; \
             v } \
         fun bytes(length: u64): vector<u8> { \
             let v = vector::empty<u8>(); let i = 0; \
             while (i < length) { vector::push_back(&mut v, 7u8); i = i + 1 }; v } \
         fun dropped(_v: vector<u8>) {} \
         public entry fun keep(copies: u64) { \
             let v = empties(10000); let kept = vector::empty<vector<vector<u8>>>(); \
             let j = 0; \
             while (j < copies) { vector::push_back(&mut kept, copy v); j = j + 1 } } \
         public entry fun churn(times: u64) { \
             let v = bytes(100000); let c = vector::empty<u8>(); let j = 0; \
             while (j < times) { \
                 c = copy v; copy v; assert!(copy v == c, 0); dropped(copy v); \
                 *&mut c = copy v; j = j + 1 } } }",
        alice,
    );
    chain.publish(alice, module);
    let mut run = |function: &str, argument: u64| {
        let (balance, nonce) = (chain.state.balance(alice), chain.state.nonce(alice));
        let output = chain.call_output(alice, "hoard", function, vec![bcs(&argument)], 16_000_000);
        let receipt = receipt(&output, 0).clone();
        // Whatever happened, the sender paid for the gas it used and nothing else moved.
        assert_eq!(chain.state.balance(alice), balance - fee(&receipt), "{function}");
        assert_eq!(chain.state.balance(bob), 100 * ONE_ETH);
        assert_eq!(chain.state.nonce(alice), nonce + 1);
        (output, receipt)
    };
    // 50 copies held at once (48 MB as counted) fit; 100 (96 MB) do not, and pay what they used.
    assert_eq!(run("keep", 50).1.status, MoveStatus::Success);
    let (output, refused) = run("keep", 100);
    assert_failed(&output, 0, duet_move::MEMORY_LIMIT_EXCEEDED, "more than 64 MiB at once");
    assert!(refused.gas_used < 16_000_000, "it pays the gas it used: {}", refused.gas_used);
    assert!(refused.events.is_empty());
    // 200 rounds of five 100 000-byte copies, each freed: 100 MB in all, about 300 KB at once.
    let (_, churned) = run("churn", 200);
    assert_eq!(churned.status, MoveStatus::Success, "{churned:?}");
    assert!(churned.gas_used > 3_000_000, "the copies were paid for: {}", churned.gas_used);
}

#[test]
fn events_count_against_the_memory_quota_until_the_transaction_ends() {
    // An event keeps its guid, type and value until the transaction ends: about 870 bytes for
    // an empty vector of a 15-node type, emitted for some 700 gas. With 58 MB of copies held,
    // 2 000 of them fit under 64 MiB and 15 000 do not (they would, had the event native's
    // arguments been counted as freed when it returned and what it keeps not counted).
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let deep = format!("{}u8{}", "vector<".repeat(14), ">".repeat(14));
    let source = format!(
        "module example::heavy_events {{ use duet::event; use std::vector; \
         public entry fun hoard_then_emit(events: u64) {{ \
             let v = vector::empty<vector<u8>>(); let i = 0; \
             while (i < 10000) {{ vector::push_back(&mut v, vector::empty<u8>()); i = i + 1 }}; \
             let kept = vector::empty<vector<vector<u8>>>(); let j = 0; \
             while (j < 60) {{ vector::push_back(&mut kept, copy v); j = j + 1 }}; \
             let k = 0; \
             while (k < events) {{ event::emit(vector::empty<{deep}>()); k = k + 1 }} }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let mut run = |events: u64| {
        chain.call_output(alice, "heavy_events", "hoard_then_emit", vec![bcs(&events)], 16_000_000)
    };
    let output = run(2_000);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success);
    assert_eq!(receipt(&output, 0).events.len(), 2_000);
    let output = run(15_000);
    assert_failed(&output, 0, duet_move::MEMORY_LIMIT_EXCEEDED, "more than 64 MiB at once");
    assert!(receipt(&output, 0).events.is_empty());
}

#[test]
fn vector_natives_called_as_functions_are_refused() {
    // `0x1::vector`'s functions are bytecode instructions, counted by the memory quota; called
    // as natives from hand-written bytecode, `push_back` grew a vector uncounted.
    use move_binary_format::file_format::{
        AbilitySet, AddressIdentifierIndex, Bytecode, FunctionHandle, FunctionHandleIndex,
        FunctionInstantiation, FunctionInstantiationIndex, IdentifierIndex, ModuleHandle,
        ModuleHandleIndex, Signature, SignatureIndex, SignatureToken,
    };
    use move_core_types::identifier::Identifier;
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::raw { use std::vector; \
         public entry fun grow(times: u64) { \
             let v = vector::empty<u8>(); let i = 0; \
             while (i < times) { vector::push_back(&mut v, 1u8); i = i + 1 } } }";
    let module = edited_module(source, alice, |module| {
        let framework = move_core_types::account_address::AccountAddress::from_hex_literal("0x1");
        let address = AddressIdentifierIndex(position_or_push(
            &mut module.address_identifiers,
            framework.unwrap(),
        ));
        let identifier = |name: &str| Identifier::new(name).unwrap();
        let name = IdentifierIndex(position_or_push(&mut module.identifiers, identifier("vector")));
        let vector = ModuleHandleIndex(position_or_push(
            &mut module.module_handles,
            ModuleHandle { address, name },
        ));
        let name =
            IdentifierIndex(position_or_push(&mut module.identifiers, identifier("push_back")));
        let element = SignatureToken::TypeParameter(0);
        let vector_of = SignatureToken::Vector(Box::new(element.clone()));
        let parameters = SignatureIndex(position_or_push(
            &mut module.signatures,
            Signature(vec![SignatureToken::MutableReference(Box::new(vector_of)), element]),
        ));
        let return_ = SignatureIndex(position_or_push(&mut module.signatures, Signature(vec![])));
        let u8s = SignatureIndex(position_or_push(
            &mut module.signatures,
            Signature(vec![SignatureToken::U8]),
        ));
        let push_back = FunctionHandle {
            module: vector,
            name,
            parameters,
            return_,
            type_parameters: vec![AbilitySet::EMPTY],
        };
        let handle = FunctionHandleIndex(position_or_push(&mut module.function_handles, push_back));
        let instantiation = FunctionInstantiation { handle, type_parameters: u8s };
        let call = FunctionInstantiationIndex(position_or_push(
            &mut module.function_instantiations,
            instantiation,
        ));
        let code = &mut module.function_defs[0].code.as_mut().unwrap().code;
        let mut replaced = 0;
        for instruction in code.iter_mut() {
            if matches!(instruction, Bytecode::VecPushBack(_)) {
                *instruction = Bytecode::CallGeneric(call);
                replaced += 1;
            }
        }
        assert_eq!(replaced, 1, "the compiled code pushes with the instruction");
    });
    chain.publish(alice, vec![module]);
    let output = chain.call_output(alice, "raw", "grow", vec![bcs(&3u64)], GAS_LIMIT);
    assert_failed(&output, 0, "FUNCTION_RESOLUTION_FAILURE", "run as bytecode instructions");
}

#[test]
fn a_type_doubled_by_a_chain_of_generic_calls_is_refused_past_512_nodes() {
    // Each call instantiates the next with `Pair<T, T>`: the type doubles at each level, and 26
    // levels built 2^26 nodes under the depth bound alone (34 seconds for 21 600 gas; a few
    // more levels, gigabytes).
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let functions = generic_chain(26, "drop", "", "", "Pair<T, T>", "", "");
    let source = format!(
        "module example::types {{ struct Pair<A, B> has drop {{ a: A, b: B }} {functions} \
         public entry fun deep() {{ f0<u8>() }} \
         public entry fun shallow() {{ f22<u8>() }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let output = chain.run_calls(alice, &[("types", "shallow"), ("types", "deep")]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success, "four levels: 31 nodes");
    assert_failed(&output, 1, "VM_MAX_TYPE_DEPTH_REACHED", "a type of more than 512 nodes");
}

#[test]
fn an_instruction_pays_for_the_type_it_instantiates() {
    // `g` runs `vector::length` on a vector of a 511-node type: the VM copies the type at each
    // execution, which costs 511 gas, a gas a node (a `u64`: 1).
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let functions =
        generic_chain(8, "drop", "times: u64", "", "Pair<T, T>", "times", "g<Pair<T, T>>(times)");
    let source = format!(
        "module example::typed {{ use std::vector; \
         struct Pair<A, B> has drop {{ a: A, b: B }} {functions} \
         fun g<T: drop>(times: u64) {{ \
             let v = vector::empty<T>(); let i = 0; \
             while (i < times) {{ vector::length(&v); i = i + 1 }} }} \
         public entry fun big(times: u64) {{ f0<u8>(times) }} \
         public entry fun small(times: u64) {{ g<u64>(times) }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let mut per_pass_of = |function: &str| {
        let succeeds = |status: &MoveStatus| assert_eq!(*status, MoveStatus::Success, "{function}");
        chain.gas_per_pass(alice, "typed", function, succeeds)
    };
    let per_small = per_pass_of("small");
    let per_big = per_pass_of("big");
    assert_eq!(per_big - per_small, 510, "{per_big} against {per_small} gas an iteration");
}

/// The state as a call from the EVM would see it, for calling Move functions directly.
struct StateView<'a>(&'a MemoryState);

impl duet_block_stm::TransactionView for StateView<'_> {
    type Key = StateKey;
    type Value = duet_types::StateValue;

    fn read(&self, key: &StateKey) -> Result<Option<Self::Value>, duet_block_stm::ReadError> {
        Ok(self.0 .0.get(key).cloned())
    }

    fn delta_fits(
        &self,
        key: &StateKey,
        delta: duet_block_stm::Delta,
    ) -> Result<bool, duet_block_stm::ReadError> {
        let balance = self.0 .0.get(key).and_then(duet_types::StateValue::as_balance).unwrap_or(0);
        Ok(delta.apply(balance).is_some())
    }
}

#[test]
fn return_values_are_charged_by_their_size_before_they_are_serialized() {
    // A function returning its 64 KiB argument four times by reference: serializing them reads
    // 256 KiB, charged as reading it through references (2 048 gas each), not for nothing.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::echo { \
         public fun once(v: &vector<u8>): &vector<u8> { v } \
         public fun four(v: &vector<u8>): (&vector<u8>, &vector<u8>, &vector<u8>, &vector<u8>) \
         { (v, v, v, v) } }";
    chain.publish(alice, compile_example(source, alice));
    let vm = MoveVm::new(FEE_VAULT);
    let argument = bcs(&vec![7u8; 65_536]);
    let call = |function: &str| {
        let entry = duet_types::EntryFunction {
            module_address: alice,
            module_name: "echo".to_owned(),
            function: function.to_owned(),
            type_arguments: vec![],
            arguments: vec![argument.clone()],
        };
        let outcome = vm.call_function(&StateView(&chain.state), alice, &entry, 1_000_000).unwrap();
        assert_eq!(outcome.status, MoveStatus::Success, "{function}");
        assert_eq!(outcome.return_values.len(), if function == "once" { 1 } else { 4 });
        outcome.gas_used
    };
    let extra = call("four") - call("once");
    assert!((3 * 2_048..3 * 2_048 + 100).contains(&extra), "three more returns cost {extra} gas");
}

#[test]
fn an_event_is_charged_when_it_is_emitted() {
    // The VM holds every event until the transaction ends: emitting pays its base and 1 per 32
    // units of its value's size at once (what it holds counts against the memory quota), so a
    // loop of emissions that then aborts has paid for each.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::noisy { use duet::event; use std::vector; \
         struct Ping has drop, store { value: u64 } \
         struct Blob has drop, store { bytes: vector<u8> } \
         public entry fun emit_then_abort(times: u64) { \
             let i = 0; while (i < times) { event::emit(Ping { value: i }); i = i + 1 }; abort 7 } \
         public entry fun emit_big_then_abort(times: u64) { \
             let bytes = vector::empty<u8>(); let j = 0; \
             while (j < 1000) { vector::push_back(&mut bytes, 1); j = j + 1 }; \
             let i = 0; while (i < times) { event::emit(Blob { bytes: copy bytes }); i = i + 1 }; \
             abort 7 } }";
    chain.publish(alice, compile_example(source, alice));
    let mut per_emission = |function: &str| {
        let aborts = |status: &MoveStatus| {
            assert!(matches!(status, MoveStatus::Aborted { code: 7, .. }));
        };
        chain.gas_per_pass(alice, "noisy", function, aborts)
    };
    // `Ping` counts 144 (its container 128, its field 16): 4 gas, with the loop's instructions.
    let small = per_emission("emit_then_abort");
    assert!((gas::EVENT + 4..gas::EVENT + 100).contains(&small), "{small} gas an emission");
    // `Blob` holds 1 128 units more (a vector of 1 000 bytes): 35 gas more to emit, and as much
    // to copy the bytes; 68 in all besides the vector's own instructions.
    let big = per_emission("emit_big_then_abort");
    assert!((small + 68..small + 100).contains(&big), "{big} against {small}");
}

#[test]
fn serializing_a_value_costs_by_its_size_and_its_bytes() {
    // `bcs::to_bytes` of 1 000 empty vectors reads 128 128 units through its reference (4 004
    // gas, as reading them would) and writes 1 002 bytes (1 each); it charged 1 per unit read,
    // 32 times what copying them costs.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::serial { use std::bcs; use std::vector; \
         public entry fun serialize(times: u64) { \
             let v = vector::empty<vector<u8>>(); let i = 0; \
             while (i < 1000) { vector::push_back(&mut v, vector::empty<u8>()); i = i + 1 }; \
             let j = 0; while (j < times) { bcs::to_bytes(&v); j = j + 1 } } }";
    chain.publish(alice, compile_example(source, alice));
    let per = chain.gas_per_pass(alice, "serial", "serialize", |_| ());
    assert!((4_004 + 1_002..4_004 + 1_002 + 100).contains(&per), "{per} gas a serialization");
}

#[test]
fn a_layout_too_deep_fails_whatever_the_cache_holds() {
    // `A<…7…<u8>>` has a layout 113 deep; `W` holds vectors 15 deep of it: 129. Once the first
    // was cached, the second was built from the cache without its depth checked, so it
    // succeeded or failed by what an earlier transaction had cached.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let a7 = format!("{}u8{}", "A<".repeat(7), ">".repeat(7));
    let deep = format!("{}T{}", "vector<".repeat(15), ">".repeat(15));
    let source = format!(
        "module example::cached {{ \
         struct A<T: store> has key, store {{ v: {deep} }} \
         struct W<T: store> has key {{ v: {deep} }} \
         public entry fun shallow() {{ assert!(!exists<{a7}>(@0x1), 1) }} \
         public entry fun deep() {{ assert!(!exists<W<{a7}>>(@0x1), 1) }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    // In one block (the parallel runs see other caches), then alone after it (a warm cache).
    let output = chain.run_calls(alice, &[("cached", "shallow"), ("cached", "deep")]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success);
    assert_failed(&output, 1, "VM_MAX_VALUE_DEPTH_REACHED", "or 128 levels");
    let output = chain.run_calls(alice, &[("cached", "deep")]);
    assert_failed(&output, 0, "VM_MAX_VALUE_DEPTH_REACHED", "or 128 levels");
}

#[test]
fn no_value_deeper_than_128_is_built() {
    // `W0` holds vectors 15 deep of `W1`, which holds vectors of `W2`, …: a value of `W1` would
    // be 130 deep. The VM's functions over values recurse once per level, so a chain of such
    // structs (across modules, without end) once let a transaction overflow the node's stack.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let mut items = String::new();
    for level in 0..10 {
        if level == 9 {
            write!(items, "struct W9 has drop {{ v: u8 }} fun w9(): W9 {{ W9 {{ v: 1 }} }} ")
        } else {
            let next = level + 1;
            let field = format!("{}W{next}{}", "vector<".repeat(15), ">".repeat(15));
            let value = format!("{}w{next}(){}", "vector[".repeat(15), "]".repeat(15));
            write!(
                items,
                "struct W{level} has drop {{ f: {field} }} \
                 fun w{level}(): W{level} {{ W{level} {{ f: {value} }} }} "
            )
        }
        .expect("a string takes it");
    }
    let source = format!(
        "module example::nested {{ {items} \
         public entry fun shallow() {{ w2(); }} \
         public entry fun deep() {{ w0(); }} }}"
    );
    // The compiler recurses once per level: on a thread with room for it.
    let compile = std::thread::Builder::new().stack_size(256 << 20);
    let modules = compile.spawn(move || compile_example(&source, alice)).unwrap().join().unwrap();
    chain.publish(alice, modules);
    let output = chain.run_calls(alice, &[("nested", "shallow"), ("nested", "deep")]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success, "114 deep");
    assert_failed(&output, 1, "VM_MAX_VALUE_DEPTH_REACHED", "a value deeper than 128");
}

#[test]
fn a_value_depth_is_checked_without_expanding_instantiations() {
    // `S_i<T>` holds vectors of `S_{i+1}<W1<T>>` and of `S_{i+1}<W2<T>>`: `S_1<u8>` names 2^29
    // different instantiations of `S_30`. Checking its depth once expanded them all; now each
    // struct's depth is a formula of its type arguments, computed once.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let levels = 30;
    let mut structs = String::new();
    for level in 1..levels {
        let next = level + 1;
        write!(
            structs,
            "struct S{level}<T> has drop {{ a: vector<S{next}<W1<T>>>, b: vector<S{next}<W2<T>>> }} "
        )
        .expect("a string takes it");
    }
    let source = format!(
        "module example::wide {{ \
         struct W1<T> has drop {{ x: T }} struct W2<T> has drop {{ x: T }} \
         struct S{levels}<T> has drop {{ x: T }} {structs} \
         public entry fun pack() {{ \
             let _s = S1<u8> {{ a: vector[], b: vector[] }}; }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let output = chain.run(&[transaction(alice, 1, call(alice, "wide", "pack", &[], vec![]))]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success);
}

#[test]
fn loading_a_constant_costs_by_its_bytes() {
    // 1 000 empty vectors in 1 002 bytes: each load builds 1 001 vectors, charged 4 gas a byte
    // (what copying such a value costs: 128 units a vector).
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let empties = vec!["vector[]"; 1_000].join(", ");
    let source = format!(
        "module example::constant {{ const C: vector<vector<u8>> = vector[{empties}]; \
         public entry fun load(times: u64) {{ let i = 0; while (i < times) {{ C; i = i + 1 }} }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let per = chain.gas_per_pass(alice, "constant", "load", |_| ());
    assert!((4_010..4_100).contains(&per), "{per} gas a load");
}

#[test]
fn loading_a_stored_resource_costs_by_its_bytes_before_they_are_decoded() {
    // A stored vector of 100 000 empty vectors decodes into 100 001 values: its first load in a
    // transaction costs 2 100 + 4 a byte (it cost 1 per 8 bytes: 8 values decoded a gas), and a
    // transaction without that gas fails before decoding it: a stored value that does not
    // decode, loaded without the gas, runs out of gas instead of failing to decode.
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    let source = format!(
        "module example::hoarded {{ use std::vector; \
         struct Hoard has key {{ empties: vector<vector<u8>> }} \
         public entry fun hoard(account: signer, count: u64) {{ \
             let v = vector::empty<vector<u8>>(); let i = 0; \
             while (i < count) {{ vector::push_back(&mut v, vector::empty<u8>()); i = i + 1 }}; \
             move_to(&account, Hoard {{ empties: v }}) }} \
         public entry fun touch(n: u64) {{ if (n > 0) assert!(exists<Hoard>(@{alice}), 0) }} \
         public entry fun touch_at(owner: address) {{ assert!(exists<Hoard>(owner), 0) }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    // Bob's `Hoard`: 100 000 vectors of one byte announced, the bytes of 50 000 given.
    let tag = format!("{alice}::hoarded::Hoard").parse().expect("a struct tag");
    let key = duet_move::resolver::resource_key(bob, &tag).expect("a shallow tag");
    let mut broken = vec![0xa0, 0x8d, 0x06];
    broken.extend(std::iter::repeat_n(1u8, 100_000));
    chain.state.apply(&[(key, Some(StateValue::Bytes(broken.into())))]);
    let mut run = |function: &str, argument: Vec<u8>, gas_limit: u64| {
        let output = chain.call_output(alice, "hoarded", function, vec![argument], gas_limit);
        receipt(&output, 0).clone()
    };
    assert_eq!(run("hoard", bcs(&100_000u64), 16_000_000).status, MoveStatus::Success);
    let stored = 3 + 100_000; // the vector's length (ULEB128) and each empty one's
    let without = run("touch", bcs(&0u64), 1_000_000);
    let with = run("touch", bcs(&1u64), 1_000_000);
    assert_eq!(with.status, MoveStatus::Success);
    let load = with.gas_used - without.gas_used;
    let expected = gas::RESOURCE_LOAD + gas::RESOURCE_LOAD_BYTE * stored;
    assert!((expected..expected + 100).contains(&load), "{load} gas against {expected}");
    let short = run("touch", bcs(&1u64), 300_000);
    assert_eq!((short.status, short.gas_used), (MoveStatus::OutOfGas, 300_000));
    let undecodable = run("touch_at", bob.to_vec(), 1_000_000);
    let MoveStatus::Failed { status, .. } = &undecodable.status else { panic!("{undecodable:?}") };
    assert_eq!(status, "FAILED_TO_DESERIALIZE_RESOURCE");
    let short = run("touch_at", bob.to_vec(), 300_000);
    assert_eq!(short.status, MoveStatus::OutOfGas, "charged before decoding");
}

#[test]
fn loading_an_address_or_bytes_costs_as_before() {
    // Only vectors of vectors pay by the byte: an address constant costs 2 + 20 / 32 = 2, as an
    // instruction loading a value (plus the loop's own instructions).
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::literal { \
         public entry fun load(times: u64) { let i = 0; while (i < times) { @0x1234; i = i + 1 } } }";
    chain.publish(alice, compile_example(source, alice));
    let per = chain.gas_per_pass(alice, "literal", "load", |_| ());
    assert!(per < 20, "{per} gas a pass");
}

#[test]
fn a_layout_doubled_by_nesting_a_struct_is_refused_past_512_nodes() {
    // `Pair<T>` holds two `T`s: nested 25 deep, a type of 26 nodes whose layout (what reading
    // or writing a resource of it needs, built before any gas is charged) has 2^26. (Its tag,
    // 911 bytes, is short enough for a resource's key.)
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let functions =
        generic_chain(25, "store + drop", "", ": bool", "Pair<T>", "", "exists<Holder<T>>(@0x1)");
    let source = format!(
        "module example::layouts {{ \
         struct Pair<T> has store, drop {{ a: T, b: T }} \
         struct Holder<T: store> has key {{ value: T }} {functions} \
         public entry fun deep() {{ f0<u8>(); }} \
         public entry fun shallow() {{ f20<u8>(); }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let output = chain.run_calls(alice, &[("layouts", "shallow"), ("layouts", "deep")]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success, "five levels: 63 nodes");
    assert_failed(&output, 1, "VM_MAX_VALUE_DEPTH_REACHED", "a type layout of more than 512 nodes");
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

#[test]
fn a_resource_or_event_type_too_long_to_keep_fails_and_pays_its_fee() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    // A name of 200 bytes, nested five deep: a type tag of over 1 024 bytes.
    let name = format!("R{}", "x".repeat(199));
    let long = format!("{}u64{}", format!("{name}<").repeat(5), ">".repeat(5));
    let source = format!(
        "module example::long {{ use duet::event; \
         struct {name}<phantom T> has key, store, drop {{ value: u64 }} \
         struct Short has key {{ value: u64 }} \
         public entry fun make(account: &signer) {{ move_to<{long}>(account, {name} {{ value: 1 }}) }} \
         public entry fun emit(_account: &signer) {{ event::emit<{long}>({name} {{ value: 1 }}) }} \
         public entry fun probe(_account: &signer, who: address) {{ assert!(!exists<{long}>(who), 1) }} \
         public entry fun short(account: &signer) {{ move_to(account, Short {{ value: 1 }}) }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let before = chain.state.clone();
    let output = chain.run(&[
        transaction(alice, 1, call(alice, "long", "make", &[], vec![])),
        transaction(alice, 2, call(alice, "long", "emit", &[], vec![])),
        transaction(alice, 3, call(alice, "long", "probe", &[], vec![bcs(&alice.0 .0)])),
        transaction(alice, 4, call(alice, "long", "short", &[], vec![])),
    ]);
    // Refused before the type's tag is built: a resource read or written, an event emitted, of
    // a type whose tag no key or receipt may hold (a type of a few nodes with long names could
    // otherwise build megabytes of tag for every read).
    for index in 0..3 {
        assert_failed(&output, index, "VALUE_SERIALIZATION_ERROR", "a type tag of more than 1025");
        assert!(receipt(&output, index).events.is_empty());
    }
    let short = receipt(&output, 3);
    assert!(short.is_success(), "{short:?}");
    let fees = (0..3).map(|index| fee(receipt(&output, index))).sum::<u128>() + fee(short);
    assert_eq!(chain.state.balance(alice), before.balance(alice) - fees);
    assert!(chain.state.resource(alice, &format!("{alice}::long::Short")).is_some());
    assert_eq!(
        chain.state.0.keys().filter(|key| matches!(key, StateKey::MoveResource { .. })).count(),
        before.0.keys().filter(|key| matches!(key, StateKey::MoveResource { .. })).count() + 1,
        "only the short one was stored"
    );
}

/// The first module of `source`, compiled for `publisher`, changed by `edit` as bytecode.
fn edited_module(
    source: &str,
    publisher: Address,
    edit: impl FnOnce(&mut move_binary_format::CompiledModule),
) -> Vec<u8> {
    let compiled = compile_example(source, publisher).remove(0);
    let mut module = move_binary_format::CompiledModule::deserialize(&compiled).unwrap();
    edit(&mut module);
    let mut bytes = Vec::new();
    module.serialize(&mut bytes).unwrap();
    bytes
}

/// The index of `entry` in a module's `table`, added unless the module has it.
fn position_or_push<T: PartialEq>(table: &mut Vec<T>, entry: T) -> u16 {
    let at = table.iter().position(|e| *e == entry).unwrap_or_else(|| {
        table.push(entry);
        table.len() - 1
    });
    u16::try_from(at).unwrap()
}

/// A module whose function `h` asks 200 times whether a `Key` of a type of 181 nodes (four
/// arguments of `Big<x, x, u8, u8>`) exists: each makes the verifier build and check the type.
/// Built from one compiled `exists`, copied (compiling 200 of them takes seconds).
fn many_exists(publisher: Address, x: &str) -> Vec<u8> {
    use move_binary_format::file_format::Bytecode;
    let z = format!("Big<{x}, {x}, u8, u8>");
    let source = format!(
        "module example::e {{ struct Big<A, B, C, D> has drop {{ a: A, b: B, c: C, d: D }} \
         struct Key<phantom A, phantom B, phantom C, phantom D> has key {{ value: u64 }} \
         fun h(a: address): bool {{ exists<Key<{z}, {z}, {z}, {z}>>(a) }} }}"
    );
    edited_module(&source, publisher, |module| {
        let code = &mut module.function_defs[0].code.as_mut().unwrap().code;
        let exists = code.iter().find(|op| matches!(op, Bytecode::ExistsGeneric(_)));
        let asks = [Bytecode::CopyLoc(0), exists.unwrap().clone(), Bytecode::Pop];
        code.splice(0..0, asks.iter().cycle().take(3 * 199).cloned());
    })
}

#[test]
fn a_resource_type_of_exactly_1024_bytes_of_key_is_kept_and_one_more_is_refused() {
    // `S<I1, I2, I3, I4>` in module `m` (one letter): its struct tag, as its key holds it, is
    // 20 (address) + 2 (module) + 2 (name) + 1 (argument count) + each argument's type tag,
    // 1 + 20 + 2 + (2 + name) + 1: 129 bytes plus the four names.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let module = |names: [usize; 4]| {
        let mut letters = ['I', 'J', 'K', 'L'].into_iter();
        let names = names
            .map(|length| format!("{}{}", letters.next().unwrap_or('M'), "x".repeat(length - 1)));
        let structs: String = names
            .iter()
            .map(|name| format!("struct {name} {{ value: u64 }}"))
            .collect::<Vec<_>>()
            .join(" ");
        let tag = format!("S<{}>", names.join(", "));
        format!(
            "module example::m {{ {structs} \
             struct S<phantom A, phantom B, phantom C, phantom D> has key {{ value: u64 }} \
             public entry fun make(account: &signer) {{ move_to<{tag}>(account, S {{ value: 7 }}) }} \
             public entry fun check(account: &signer) {{ \
             assert!(exists<{tag}>(std::signer::address_of(account)), 1) }} }}"
        )
    };
    // 129 + 895 = 1 024 bytes: stored and read back.
    chain.publish(alice, compile_example(&module([224, 224, 224, 223]), alice));
    let output = chain.run_calls(alice, &[("m", "make"), ("m", "check")]);
    for index in 0..2 {
        assert!(receipt(&output, index).is_success(), "{:?}", receipt(&output, index));
    }
    // A byte more: refused when read (as `move_to` does first), before its tag is built.
    let bob = user(2);
    let mut chain = Chain::new([bob]);
    chain.publish(bob, compile_example(&module([224, 224, 224, 224]), bob));
    let output = chain.run_calls(bob, &[("m", "make")]);
    assert_failed(&output, 0, "VALUE_SERIALIZATION_ERROR", "a type tag of more than 1025 bytes");
}

/// `example::forge::f`, whose `vector[S { a: victim }]` is rewritten to pack the `S` as a
/// vector of `element` (the signature token), and unpack it `unpacked` times if given.
fn forged_vector(
    publisher: Address,
    element: move_binary_format::file_format::SignatureToken,
    counts: Option<(u64, u64)>,
) -> Vec<u8> {
    use move_binary_format::file_format::{Bytecode, Signature, SignatureIndex};
    let source = "module example::forge { struct S has drop { a: address } \
                  public fun f(victim: address) { let _v = vector[S { a: victim }]; } }";
    edited_module(source, publisher, |module| {
        let forged =
            SignatureIndex(position_or_push(&mut module.signatures, Signature(vec![element])));
        let code = &mut module.function_defs[0].code.as_mut().unwrap().code;
        for instruction in code.iter_mut() {
            if let Bytecode::VecPack(signature, count) = instruction {
                *signature = forged;
                if let Some((packed, _)) = counts {
                    *count = packed;
                }
            }
        }
        if let Some((_, unpacked)) = counts {
            let at = code.iter().position(|op| matches!(op, Bytecode::VecPack(..))).unwrap();
            code.insert(at + 1, Bytecode::VecUnpack(forged, unpacked));
            code.insert(at + 2, Bytecode::VecPack(forged, unpacked));
        }
    })
}

#[test]
fn a_vector_packed_from_values_of_another_type_is_refused() {
    // A `signer` packed from a struct holding the victim's address, then unpacked as one, would
    // sign for anyone: the verifier checks each packed value against the element type.
    use move_binary_format::file_format::SignatureToken;
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let forged = forged_vector(alice, SignatureToken::Signer, None);
    let nonce = chain.state.nonce(alice);
    let output = chain.run(&[transaction(alice, nonce, MovePayload::ModuleBundle(vec![forged]))]);
    assert_failed(&output, 0, "TYPE_MISMATCH", "");
    assert_eq!(chain.state.nonce(alice), nonce + 1);
    // A count of 2^32 elements, which the verifier would loop over and push onto its stack, is
    // refused before it runs.
    let huge = forged_vector(alice, SignatureToken::Address, Some((1, 1 << 32)));
    // The verifier's own passes refuse it too, as they do for stored modules.
    let compiled = move_binary_format::CompiledModule::deserialize(&huge).unwrap();
    let config = move_bytecode_verifier::VerifierConfig::default();
    let refused = move_bytecode_verifier::CodeUnitVerifier::verify_module(&config, &compiled);
    let status = refused.unwrap_err().major_status();
    assert_eq!(status, move_core_types::vm_status::StatusCode::CONSTRAINT_NOT_SATISFIED);
    let nonce = chain.state.nonce(alice);
    let output = chain.run(&[transaction(alice, nonce, MovePayload::ModuleBundle(vec![huge]))]);
    assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", "a vector instruction of 4294967296");
}

#[test]
fn modules_the_verifier_would_check_unsoundly_or_slowly_are_refused() {
    use move_binary_format::file_format::{Bytecode, Signature, SignatureIndex, SignatureToken};
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let publish = |chain: &mut Chain, module: Vec<u8>| {
        let nonce = chain.state.nonce(alice);
        let mut publish = transaction(alice, nonce, MovePayload::ModuleBundle(vec![module]));
        publish.gas_limit = 30_000_000;
        let output = chain.run(&[publish]);
        assert_eq!(chain.state.nonce(alice), nonce + 1, "the publication pays its fee");
        output
    };
    let edited = |edit: &dyn Fn(&mut move_binary_format::CompiledModule)| {
        edited_module("module example::v { public fun f(a: u64): u64 { a } }", alice, edit)
    };
    // 256 parameters and locals: the verifier's reference analysis counts them in a u8, and
    // checked none.
    let many_locals = edited(&|module| {
        let locals = Signature(vec![SignatureToken::U64; 255]);
        let locals = SignatureIndex(position_or_push(&mut module.signatures, locals));
        module.function_defs[0].code.as_mut().unwrap().locals = locals;
    });
    // The verifier refuses it too, as it does for stored modules (published before the limit).
    let compiled = move_binary_format::CompiledModule::deserialize(&many_locals).unwrap();
    let config = move_bytecode_verifier::VerifierConfig::default();
    let refused = move_bytecode_verifier::CodeUnitVerifier::verify_module(&config, &compiled);
    let status = refused.unwrap_err().major_status();
    assert_eq!(status, move_core_types::vm_status::StatusCode::TOO_MANY_LOCALS);
    let output = publish(&mut chain, many_locals);
    assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", "has 256 parameters and locals");
    // 65 002 instructions: the verifier's control-flow graph asserts fewer than 65 534.
    let long = edited(&|module| {
        let code = &mut module.function_defs[0].code.as_mut().unwrap().code;
        code.splice(0..0, std::iter::repeat_n(Bytecode::Nop, 65_000));
    });
    let output = publish(&mut chain, long);
    assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", "has 65002 instructions");
    // Loops nested six deep (the verifier's analyses run each to a fixed point).
    let nested =
        (0..6).fold("i = i + 1;".to_owned(), |body, _| format!("while (i < 10) {{ {body} }};"));
    let source = format!("module example::w {{ public fun f() {{ let i = 0; {nested} }} }}");
    let output = publish(&mut chain, compile_example(&source, alice).remove(0));
    match &receipt(&output, 0).status {
        MoveStatus::Failed { status, .. } => assert_eq!(status, "LOOP_MAX_DEPTH_REACHED"),
        other => panic!("six nested loops were published: {other:?}"),
    }
}

#[test]
fn a_module_over_the_limits_is_refused_and_pays_its_fee() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let long_name = format!("R{}", "x".repeat(255));
    let deep = format!("{}u8{}", "vector<".repeat(16), ">".repeat(16));
    let y = "Big<u8, u8, u8, u8>";
    let x = format!("Big<{y}, {y}, {y}, {y}>");
    let wide = format!("Big<{x}, {x}, {x}, {x}>");
    let returns = vec!["T"; 200].join(", ");
    let calls = "g<Big<Big<u8, u8, u8, u8>, Big<u8, u8, u8, u8>, u8, u8>>(); ".repeat(30);
    let modules = [
        format!("module example::a {{ struct {long_name} has drop {{ value: u64 }} }}"),
        format!("module example::b {{ public fun f(_v: {deep}) {{}} }}"),
        format!(
            "module example::c {{ struct Big<A, B, C, D> has drop {{ a: A, b: B, c: C, d: D }} \
             public fun f(_p: {wide}) {{}} }}"
        ),
        format!(
            "module example::d {{ struct Big<A, B, C, D> has drop {{ a: A, b: B, c: C, d: D }} \
             fun g<T: drop>(): ({returns}) {{ abort 0 }} \
             fun h() {{ {calls} }} }}"
        ),
    ];
    let saying = [
        "an identifier of 256 bytes",
        "a type deeper than 16",
        "a type of 85 nodes",
        "instantiate",
        "function h's instructions instantiate",
    ];
    let mut bundles: Vec<Vec<Vec<u8>>> =
        modules.iter().map(|source| compile_example(source, alice)).collect();
    bundles.push(vec![many_exists(alice, &x)]);
    for (index, (bundle, saying)) in bundles.into_iter().zip(saying).enumerate() {
        let before = chain.state.clone();
        let nonce = chain.state.nonce(alice);
        let mut publish = transaction(alice, nonce, MovePayload::ModuleBundle(bundle));
        publish.gas_limit = 30_000_000;
        let output = chain.run(&[publish]);
        assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", saying);
        assert_eq!(
            chain.state.balance(alice),
            before.balance(alice) - fee(receipt(&output, 0)),
            "{index}: only the fee"
        );
        assert_eq!(chain.state.nonce(alice), nonce + 1);
    }

    // An instantiation table no code uses, of 2 000 entries of 255 type arguments each: the
    // loader would build them all. And a bundle of no modules.
    let source = "module example::e { public fun f<T>() {} }";
    let mut module =
        move_binary_format::CompiledModule::deserialize(&compile_example(source, alice)[0])
            .unwrap();
    let wide = move_binary_format::file_format::Signature(vec![
        move_binary_format::file_format::SignatureToken::U8;
        255
    ]);
    module.signatures.push(wide);
    let type_parameters =
        move_binary_format::file_format::SignatureIndex((module.signatures.len() - 1) as u16);
    let handle = module.function_defs[0].function;
    let entry = move_binary_format::file_format::FunctionInstantiation { handle, type_parameters };
    module.function_instantiations.extend(std::iter::repeat_n(entry, 2_000));
    let mut bytes = Vec::new();
    module.serialize(&mut bytes).unwrap();
    for (bundle, saying) in
        [(vec![bytes], "instantiation tables hold more than"), (vec![], "a bundle of no modules")]
    {
        let nonce = chain.state.nonce(alice);
        let mut publish = transaction(alice, nonce, MovePayload::ModuleBundle(bundle));
        publish.gas_limit = 30_000_000;
        let output = chain.run(&[publish]);
        assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", saying);
        assert_eq!(chain.state.nonce(alice), nonce + 1);
    }
}

#[test]
fn upgrades_must_be_compatible() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = |extra: &str| {
        format!(
            "module example::counter {{ struct Counter has key {{ value: u64 }} \
             public entry fun start(account: &signer) {{ move_to(account, Counter {{ value: 7 }}) }} {extra} }}"
        )
    };
    let v1 = compile_example(&source(""), alice);
    let v2 = compile_example(&source("public fun added(): u64 { 2 }"), alice);
    let incompatible = compile_example(
        "module example::counter { struct Counter has key { value: u128 } }",
        alice,
    );
    let output = chain.run(&[
        transaction(alice, 0, MovePayload::ModuleBundle(v1)),
        transaction(alice, 1, call(alice, "counter", "start", &[], vec![])),
        transaction(alice, 2, MovePayload::ModuleBundle(v2.clone())),
        transaction(alice, 3, MovePayload::ModuleBundle(incompatible)),
    ]);
    for index in 0..3 {
        assert!(receipt(&output, index).is_success(), "{index}: {:?}", output.results[index]);
    }
    assert!(
        matches!(&receipt(&output, 3).status, MoveStatus::Failed { status, .. } if status == "BACKWARD_INCOMPATIBLE_MODULE_UPDATE")
    );
    let stored = chain
        .state
        .0
        .get(&StateKey::MoveModule { address: alice, name: "counter".into() })
        .cloned();
    assert_eq!(stored, Some(duet_types::StateValue::Bytes(v2[0].clone().into())));
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

/// A resource whose type nests deeper than its state key can encode (BCS takes 500 nested
/// containers; a struct type argument is two) fails the transaction, which pays its fee, instead
/// of stopping the executor.
#[test]
fn a_resource_type_too_deep_for_a_state_key_fails_and_pays_its_fee() {
    // Each function's types are shallow; the chain of calls builds `Box<…250 deep…<u8>>`.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let functions = generic_chain(
        250,
        "store + drop",
        "account: &signer",
        "",
        "Box<T>",
        "account",
        "move_to<Box<T>>(account, Box {})",
    );
    let source = format!(
        "module example::deep {{ struct Box<phantom T> has key, store, drop {{}} {functions} \
         public entry fun store(account: &signer) {{ f0<u8>(account) }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let before = chain.state.balance(alice);
    let output = chain.run(&[transaction(alice, 1, call(alice, "deep", "store", &[], vec![]))]);
    let failed = receipt(&output, 0);
    assert!(matches!(failed.status, MoveStatus::Failed { .. }), "{failed:?}");
    assert_eq!(chain.state.balance(alice), before - fee(failed), "it pays its fee");
    assert_eq!(chain.state.nonce(alice), 2, "its nonce is used");
}

/// How [`linked_module`] links its module to another.
#[derive(Clone, Copy)]
enum Link {
    /// `m{index}` depends on `m{index - 1}`.
    DependsOnPrevious,
    /// `m{index}` declares `m{index - 1}` its friend.
    FriendOfPrevious,
}

/// Module `name` under `address` with one function, `public entry fun go() {}`, depending on
/// the modules `dependencies` and declaring `friends` its friends (all under `address`).
fn module_with_links(
    address: Address,
    name: &str,
    dependencies: &[&str],
    friends: &[&str],
) -> Vec<u8> {
    use move_binary_format::file_format::{
        empty_module, AddressIdentifierIndex, Bytecode, CodeUnit, FunctionDefinition,
        FunctionHandle, FunctionHandleIndex, IdentifierIndex, ModuleHandle, ModuleHandleIndex,
        SignatureIndex, Visibility,
    };
    use move_core_types::identifier::Identifier;
    let identifier = |text: &str| Identifier::new(text).expect("an identifier");
    let mut module = empty_module();
    module.address_identifiers[0] = duet_move::to_account_address(address);
    module.identifiers[0] = identifier(name);
    for (other, friend) in dependencies
        .iter()
        .map(|other| (other, false))
        .chain(friends.iter().map(|other| (other, true)))
    {
        // INVARIANT: a test module names a few others.
        let name = IdentifierIndex(module.identifiers.len() as u16);
        module.identifiers.push(identifier(other));
        let handle = ModuleHandle { address: AddressIdentifierIndex(0), name };
        if friend {
            module.friend_decls.push(handle);
        } else {
            module.module_handles.push(handle);
        }
    }
    let go = IdentifierIndex(module.identifiers.len() as u16);
    module.identifiers.push(identifier("go"));
    module.function_handles.push(FunctionHandle {
        module: ModuleHandleIndex(0),
        name: go,
        parameters: SignatureIndex(0),
        return_: SignatureIndex(0),
        type_parameters: vec![],
    });
    module.function_defs.push(FunctionDefinition {
        function: FunctionHandleIndex(0),
        visibility: Visibility::Public,
        is_entry: true,
        acquires_global_resources: vec![],
        code: Some(CodeUnit { locals: SignatureIndex(0), code: vec![Bytecode::Ret] }),
    });
    let mut bytes = Vec::new();
    module.serialize(&mut bytes).expect("the module serializes");
    bytes
}

/// Module `m{index}` under `address` (see [`module_with_links`]), linked by `link` to the
/// module before it (none from `m0`).
fn linked_module(address: Address, index: usize, link: Link) -> Vec<u8> {
    let name = format!("m{index}");
    let Some(previous) = index.checked_sub(1).map(|previous| format!("m{previous}")) else {
        return module_with_links(address, &name, &[], &[]);
    };
    match link {
        Link::DependsOnPrevious => module_with_links(address, &name, &[&previous], &[]),
        Link::FriendOfPrevious => module_with_links(address, &name, &[], &[&previous]),
    }
}

impl Chain {
    /// Puts modules `m0` to `m{count - 1}`, linked by `link`, under `address` in the state, as
    /// upgrades could have left them whatever publishing refuses.
    fn put_linked_modules(&mut self, address: Address, count: usize, link: Link) {
        for index in 0..count {
            self.put_module(address, &format!("m{index}"), linked_module(address, index, link));
        }
    }

    /// Puts module `name` under `address` in the state, as if published.
    fn put_module(&mut self, address: Address, name: &str, bytes: Vec<u8>) {
        let key = StateKey::MoveModule { address, name: name.into() };
        self.state.0.insert(key, duet_types::StateValue::Bytes(bytes.into()));
    }

    /// Publishes `m{index}` linked by `link` as `sender`'s next transaction: its status.
    fn publish_linked(&mut self, sender: Address, index: usize, link: Link) -> MoveStatus {
        self.publish_bundle(sender, vec![linked_module(sender, index, link)])
    }
}

#[test]
fn a_module_may_head_a_chain_of_64_dependencies_and_no_more() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    chain.put_linked_modules(alice, 63, Link::DependsOnPrevious);
    assert_eq!(chain.publish_linked(alice, 63, Link::DependsOnPrevious), MoveStatus::Success);
    let before = chain.state.clone();
    assert_eq!(chain.publish_linked(alice, 64, Link::DependsOnPrevious), too_deep());
    let key = StateKey::MoveModule { address: alice, name: "m64".into() };
    assert!(
        !chain.state.0.contains_key(&key)
            && before.0.contains_key(&StateKey::MoveModule { address: alice, name: "m63".into() })
    );
}

#[test]
fn a_chain_of_thousands_of_modules_is_refused_without_a_crash() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    // Loading these recursed once per module and overflowed the native stack.
    chain.put_linked_modules(alice, 20_000, Link::DependsOnPrevious);
    let status = chain.publish_linked(alice, 20_000, Link::DependsOnPrevious);
    assert!(
        matches!(&status, MoveStatus::Failed { status, message }
            if status == "CONSTRAINT_NOT_SATISFIED" && message.contains("deeper than 64")),
        "{status:?}"
    );
    // A chain of friends has no depth bound (friends are not dependencies), but publishing
    // loads at most 1 024 modules: a module naming the last of 20 000 is refused (its friend
    // loading and cycle checks, recursive too, overflowed the stack before), and one naming
    // the last of 1 000 publishes.
    let bob = user(2);
    let mut chain = Chain::new([bob]);
    chain.put_linked_modules(bob, 20_000, Link::FriendOfPrevious);
    let message = "publishing would load more than 1024 modules (the bundle's dependencies and \
                   its friends', with theirs)";
    assert_eq!(
        chain.publish_linked(bob, 20_000, Link::FriendOfPrevious),
        MoveStatus::Failed { status: "CONSTRAINT_NOT_SATISFIED".into(), message: message.into() }
    );
    let carol = user(3);
    let mut chain = Chain::new([carol]);
    chain.put_linked_modules(carol, 1_000, Link::FriendOfPrevious);
    assert_eq!(chain.publish_linked(carol, 1_000, Link::FriendOfPrevious), MoveStatus::Success);
}

/// The failure of a module heading a chain deeper than 64.
fn too_deep() -> MoveStatus {
    let message = "a chain of module dependencies is deeper than 64 modules";
    MoveStatus::Failed { status: "CONSTRAINT_NOT_SATISFIED".into(), message: message.into() }
}

#[test]
fn a_module_runs_and_is_depended_on_whatever_its_friends_head_and_one_too_deep_can_be_upgraded() {
    // `r` heads a chain of 64 (loadable); its friend `f` depends on it, so heads 65: as an
    // upgrade deepening `r`'s chain can leave them. A module's code never calls its friends:
    // loading `r` loads none. (Loading them once made `r` fail on an instance with an empty
    // cache and succeed after, and a failed load left it cached.)
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    chain.put_linked_modules(alice, 63, Link::DependsOnPrevious);
    chain.put_module(alice, "r", module_with_links(alice, "r", &["m62"], &["f"]));
    chain.put_module(alice, "f", module_with_links(alice, "f", &["r"], &[]));
    let output = chain.run_calls(alice, &[("f", "go"), ("r", "go"), ("f", "go"), ("r", "go")]);
    for (index, expected) in
        [too_deep(), MoveStatus::Success, too_deep(), MoveStatus::Success].into_iter().enumerate()
    {
        assert_eq!(receipt(&output, index).status, expected, "call {index}");
    }
    // A publication loads its own friends, not its dependencies': `d`'s friend `g` heads
    // too deep a chain, and a module depending on `d` publishes.
    chain.put_module(alice, "d", module_with_links(alice, "d", &[], &["g"]));
    chain.put_module(alice, "g", module_with_links(alice, "g", &["d", "r"], &[]));
    let x = module_with_links(alice, "x", &["d"], &[]);
    chain.publish(alice, vec![x]);
    // An upgrade of `f` without the dependency brings it back within the bound: its own old
    // version, too deep to load, is compared with the new one as stored.
    let upgrade = module_with_links(alice, "f", &[], &[]);
    chain.publish(alice, vec![upgrade]);
    assert_eq!(chain.call_once(alice, "f", "go", vec![]).0, MoveStatus::Success);
}

#[test]
fn a_friend_that_an_upgrade_made_also_a_dependency_changes_nothing_whatever_was_loaded() {
    // `d` depends on `x` and declares `f` its friend; `x` was upgraded to depend on `f`, so
    // `f` is now both. Publishing refuses that for the module published, but `d` was
    // published before. Loading `d` once checked it only when `d` itself was not cached: it
    // failed from an empty cache and succeeded after `c`, which depends on `d`, was loaded.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    chain.put_module(alice, "f", module_with_links(alice, "f", &[], &[]));
    chain.put_module(alice, "x", module_with_links(alice, "x", &["f"], &[]));
    chain.put_module(alice, "d", module_with_links(alice, "d", &["x"], &["f"]));
    chain.put_module(alice, "c", module_with_links(alice, "c", &["d"], &[]));
    let output = chain.run_calls(alice, &[("d", "go"), ("c", "go"), ("d", "go")]);
    for index in 0..3 {
        assert_eq!(receipt(&output, index).status, MoveStatus::Success, "call {index}");
    }
}

#[test]
fn publishing_on_too_deep_a_chain_fails_the_same_whatever_was_loaded_before() {
    // `m63` heads a chain of 64. A module depending on it and on a module that does not exist
    // fails for the depth first, whether `m63` was loaded by an earlier transaction or not.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    chain.put_linked_modules(alice, 64, Link::DependsOnPrevious);
    let nonce = chain.state.nonce(alice);
    let load = transaction(alice, nonce, call(alice, "m63", "go", &[], vec![]));
    let bundle = vec![module_with_links(alice, "x", &["m63", "missing"], &[])];
    let publish = transaction(alice, nonce + 1, MovePayload::ModuleBundle(bundle.clone()));
    let output = chain.run(&[load, publish]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success);
    assert_eq!(receipt(&output, 1).status, too_deep());
    let alone = transaction(alice, nonce + 2, MovePayload::ModuleBundle(bundle));
    assert_eq!(receipt(&chain.run(&[alone]), 0).status, too_deep());
}

#[test]
fn the_cache_of_instantiated_types_stays_bounded() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let mut checks = String::new();
    for levels in 1..=12 {
        let wrapped = format!("{}T{}", "H<".repeat(levels), ">".repeat(levels));
        write!(checks, "exists<{wrapped}>(@0x1) || ").expect("a string");
    }
    let source = format!(
        "module example::types {{ struct H<phantom T> has key {{ v: u64 }} \
         struct P<phantom A, phantom B, phantom C, phantom D> {{}} \
         public entry fun probe<T>(_s: &signer) {{ assert!(!({checks}false), 1) }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    // Type arguments all different: P<b0, b1, b2, P<b3, b4, b5, b6>> for the base-4 digits of
    // their index, each a primitive type.
    let type_argument = |index: usize| {
        let digit = |at: usize| ["u8", "u64", "u128", "bool"][index >> (2 * at) & 3];
        let inner =
            format!("{alice}::types::P<{}, {}, {}, {}>", digit(3), digit(4), digit(5), digit(6));
        format!("{alice}::types::P<{}, {}, {}, {inner}>", digit(0), digit(1), digit(2))
    };
    let (mut most, mut emptied, mut last) = (0, false, 0);
    for block in 0..4 {
        let first = chain.state.nonce(alice);
        let transactions: Vec<_> = (0..100)
            .map(|offset| {
                let argument = type_argument(block * 100 + offset);
                let payload = call(alice, "types", "probe", &[argument.as_str()], vec![]);
                transaction(alice, first + offset as u64, payload)
            })
            .collect();
        let output = chain.run(&transactions);
        for index in 0..100 {
            assert!(receipt(&output, index).is_success(), "{:?}", receipt(&output, index).status);
        }
        let nodes = chain.sequential_vm.cached_type_nodes();
        emptied |= nodes < last;
        (most, last) = (most.max(nodes), nodes);
    }
    assert!(emptied, "400 calls of 12 new instantiations each fill the cache ({most} nodes)");
    assert!(most <= move_vm_runtime::TYPE_CACHE_NODES_MAX, "{most} nodes");
}

/// The modules of `source` (Move source naming its addresses), compiled, by name.
fn compile_by_name(source: &str) -> std::collections::HashMap<String, Vec<u8>> {
    let directory = tempfile::tempdir().expect("temp is writable");
    let file = directory.path().join("modules.move");
    std::fs::write(&file, source).expect("temp is writable");
    duet_move::compile_package(vec![file.to_string_lossy().into_owned()], &[])
        .unwrap_or_else(|diagnostics| panic!("the source does not compile:\n{diagnostics}"))
        .into_iter()
        .collect()
}

#[test]
fn an_upgrade_published_with_a_module_using_a_dependent_of_it_links() {
    // Bob's `mid` calls Alice's `lib`. Alice upgrades `lib` and, in the same bundle, publishes
    // `user`, which calls `mid`: verifying `user` loads `mid`, linked against the new `lib`.
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    let lib =
        |extra: &str| format!("module {alice}::lib {{ public fun one(): u64 {{ 1 }} {extra} }}");
    let mid =
        format!("module {bob}::mid {{ public fun two(): u64 {{ {alice}::lib::one() + 1 }} }}");
    let first = compile_by_name(&format!("{} {mid}", lib("")));
    chain.publish(alice, vec![first["lib"].clone()]);
    chain.publish(bob, vec![first["mid"].clone()]);
    let user_module = format!(
        "module {alice}::user {{ public entry fun go() {{ assert!({bob}::mid::two() == 2, 1) }} }}"
    );
    let second =
        compile_by_name(&format!("{} {mid} {user_module}", lib("public fun three(): u64 { 3 }")));
    let bundle = vec![second["lib"].clone(), second["user"].clone()];
    chain.publish(alice, bundle);
    assert_eq!(chain.call_once(alice, "user", "go", vec![]).0, MoveStatus::Success);
}

#[test]
fn a_native_struct_is_refused_and_pays_its_fee() {
    // The bytecode verifier lets a native struct through: normalizing an upgrade for the
    // compatibility check panicked on it, as loading a new module holding one would, and a
    // panicking transaction paid nothing.
    use move_binary_format::file_format::{
        AbilitySet, CompiledModule, IdentifierIndex, ModuleHandleIndex, StructDefinition,
        StructFieldInformation, StructHandle, StructHandleIndex,
    };
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let original = module_with_links(alice, "m", &[], &[]);
    chain.publish(alice, vec![original.clone()]);
    let mut module = CompiledModule::deserialize(&original).expect("a module");
    let name = IdentifierIndex(module.identifiers.len() as u16);
    module.identifiers.push(move_core_types::identifier::Identifier::new("N").expect("a name"));
    module.struct_handles.push(StructHandle {
        module: ModuleHandleIndex(0),
        name,
        abilities: AbilitySet::EMPTY,
        type_parameters: vec![],
    });
    module.struct_defs.push(StructDefinition {
        struct_handle: StructHandleIndex(0),
        field_information: StructFieldInformation::Native,
    });
    let mut upgrade = Vec::new();
    module.serialize(&mut upgrade).expect("the module serializes");
    // As a new module (under another name) and as an upgrade.
    let mut renamed = module.clone();
    renamed.identifiers[0] = move_core_types::identifier::Identifier::new("n").expect("a name");
    let mut new = Vec::new();
    renamed.serialize(&mut new).expect("the module serializes");
    let message = "a native struct, N: the VM has none";
    let refused =
        MoveStatus::Failed { status: "CONSTRAINT_NOT_SATISFIED".into(), message: message.into() };
    assert_eq!(chain.publish_bundle(alice, vec![new]), refused);
    let before = chain.state.clone();
    let nonce = chain.state.nonce(alice);
    let output = chain.run(&[transaction(alice, nonce, MovePayload::ModuleBundle(vec![upgrade]))]);
    let receipt = receipt(&output, 0);
    assert_eq!(receipt.status, refused);
    assert_eq!(chain.state.balance(alice), before.balance(alice) - fee(receipt));
    assert_eq!(chain.state.nonce(alice), nonce + 1);
    let key = StateKey::MoveModule { address: alice, name: "m".into() };
    assert_eq!(chain.state.0.get(&key), before.0.get(&key));
    assert_eq!(chain.call_once(alice, "m", "go", vec![]).0, MoveStatus::Success);
}

#[test]
fn a_publication_loads_at_most_1024_modules_and_a_module_past_it_can_be_shrunk() {
    // `wide` depends on 1 100 modules (each shallow), as upgrades of others could leave it.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let names: Vec<String> = (0..1_100).map(|index| format!("m{index}")).collect();
    for name in &names {
        chain.put_module(alice, name, module_with_links(alice, name, &[], &[]));
    }
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    chain.put_module(alice, "wide", module_with_links(alice, "wide", &all, &[]));
    // A new module depending on them all is refused.
    let message = "publishing would load more than 1024 modules (the bundle's dependencies and \
                   its friends', with theirs)";
    let refused =
        MoveStatus::Failed { status: "CONSTRAINT_NOT_SATISFIED".into(), message: message.into() };
    let new = module_with_links(alice, "new", &all, &[]);
    assert_eq!(chain.publish_bundle(alice, vec![new]), refused);
    // `wide` itself, compared as stored (its closure is past the bound), can drop them.
    let shrunk = module_with_links(alice, "wide", &all[..10], &[]);
    chain.publish(alice, vec![shrunk]);
    assert_eq!(chain.call_once(alice, "wide", "go", vec![]).0, MoveStatus::Success);
}

#[test]
fn a_call_pays_for_each_module_it_loads_outside_the_framework_cached_or_not() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    // m2 depends on m1, which depends on m0; each `go` does nothing.
    chain.put_linked_modules(alice, 3, Link::DependsOnPrevious);
    let load = |index| load_gas(&linked_module(alice, index, Link::DependsOnPrevious));
    let calls = [("m0", "go"), ("m1", "go"), ("m2", "go"), ("m0", "go")];
    // A fresh VM: nothing cached.
    let output = chain.run_calls(alice, &calls);
    let used: Vec<u64> = (0..calls.len()).map(|index| receipt(&output, index).gas_used).collect();
    assert!((0..calls.len()).all(|index| receipt(&output, index).status == MoveStatus::Success));
    // The same call, the VM's cache now warm, pays the same.
    assert_eq!(used[3], used[0]);
    // Each module further down the chain adds its own load, and every module below it is paid
    // for again.
    assert_eq!(used[1] - used[0], load(1));
    assert_eq!(used[2] - used[1], load(2));
    // And in the next block.
    let again = chain.run_calls(alice, &calls[2..3]);
    assert_eq!(receipt(&again, 0).gas_used, used[2]);
    // The framework is not charged: a transfer by `eth::transfer` costs what it costs on a
    // chain without these modules, where the bound on gas below holds.
    let transfer = |chain: &mut Chain| {
        let nonce = chain.state.nonce(alice);
        let output = chain.run(&[transaction(alice, nonce, eth_transfer(user(2), 1))]);
        receipt(&output, 0).gas_used
    };
    let with_modules = transfer(&mut chain);
    assert_eq!(transfer(&mut Chain::new([alice])), with_modules);
    assert!(with_modules < gas::TRANSACTION_BASE + gas::ETH_TRANSFER + gas::MODULE_LOAD);
}

/// What publishing `module` alone costs, before the code its publication loads.
fn publication_gas(module: &[u8]) -> u64 {
    let payload = MovePayload::ModuleBundle(vec![module.to_vec()]);
    let compiled = move_binary_format::CompiledModule::deserialize(module).expect("a module");
    let work = duet_move::limits::check_module(&compiled).expect("within the limits") as u64;
    gas::intrinsic_gas(payload.encoded_len())
        + gas::MODULE
        + gas::MODULE_BYTE * module.len() as u64
        + gas::VERIFICATION_WORK * work
}

/// What loading `module` (its bytes) costs a call: its load and one link per dependency.
fn load_gas(module: &[u8]) -> u64 {
    use move_binary_format::access::ModuleAccess;
    let compiled = move_binary_format::CompiledModule::deserialize(module).expect("a module");
    let links = compiled
        .immediate_dependencies()
        .iter()
        .filter(|id| id.address() != &move_core_types::account_address::AccountAddress::ONE)
        .count();
    gas::MODULE_LOAD
        + module.len() as u64 / gas::MODULE_LOAD_BYTES_PER_GAS
        + gas::MODULE_LINK * links as u64
}

#[test]
fn a_call_that_cannot_pay_for_the_code_it_loads_runs_out_of_gas_and_changes_nothing_else() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    chain.put_linked_modules(alice, 3, Link::DependsOnPrevious);
    let output = chain.run_calls(alice, &[("m2", "go")]);
    let enough = receipt(&output, 0).gas_used;
    let balance = chain.state.balance(alice);
    let nonce = chain.state.nonce(alice);
    let mut short = transaction(alice, nonce, call(alice, "m2", "go", &[], vec![]));
    // Enough for all but loading the last module of the chain.
    short.gas_limit = enough - load_gas(&linked_module(alice, 0, Link::DependsOnPrevious));
    let short_limit = short.gas_limit;
    let output = chain.run(&[short]);
    let receipt = receipt(&output, 0);
    assert_eq!(receipt.status, MoveStatus::OutOfGas);
    assert_eq!(receipt.gas_used, short_limit, "running out of gas charges the whole limit");
    assert_eq!(chain.state.balance(alice), balance - fee(receipt));
    assert_eq!(chain.state.nonce(alice), nonce + 1);
}

#[test]
fn a_call_pays_for_the_modules_its_type_arguments_name() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let modules = compile_by_name(&format!(
        "module {alice}::tags {{ struct Tag {{}} }} \
         module {alice}::keeper {{ public entry fun keep<T>() {{}} }}"
    ));
    chain.publish(alice, vec![modules["tags"].clone(), modules["keeper"].clone()]);
    let tag = format!("{alice}::tags::Tag");
    let nonce = chain.state.nonce(alice);
    let block = [
        transaction(alice, nonce, call(alice, "keeper", "keep", &["u64"], vec![])),
        transaction(alice, nonce + 1, call(alice, "keeper", "keep", &[&tag], vec![])),
        transaction(
            alice,
            nonce + 2,
            call(alice, "keeper", "keep", &[&format!("vector<{tag}>")], vec![]),
        ),
    ];
    let output = chain.run(&block);
    let used: Vec<u64> = (0..3).map(|index| receipt(&output, index).gas_used).collect();
    assert!((0..3).all(|index| receipt(&output, index).status == MoveStatus::Success));
    let load = gas::MODULE_LOAD + modules["tags"].len() as u64 / gas::MODULE_LOAD_BYTES_PER_GAS;
    // The type argument's text is longer than `u64` by so many payload bytes.
    let payload = |text: &str| gas::PAYLOAD_BYTE * (text.len() - "u64".len()) as u64;
    assert_eq!(used[1] - used[0], load + payload(&tag));
    assert_eq!(used[2] - used[0], load + payload(&format!("vector<{tag}>")));
}

#[test]
fn a_publication_pays_for_the_stored_modules_it_loads() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    chain.put_linked_modules(alice, 2, Link::DependsOnPrevious);
    // m2 depends on m1, which depends on m0: verifying m2 loads both.
    let module = linked_module(alice, 2, Link::DependsOnPrevious);
    let load = |index| load_gas(&linked_module(alice, index, Link::DependsOnPrevious));
    let expected = publication_gas(&module) + load(0) + load(1);
    let receipt = chain.publish_receipt(alice, vec![module]);
    assert_eq!(receipt.status, MoveStatus::Success);
    assert_eq!(receipt.gas_used, expected);
}

#[test]
fn a_publication_pays_for_the_chain_of_friends_it_loads() {
    // m_k names m_{k-1} its friend: publishing m5 loads m4, its friend m3, and so on to m0.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    chain.put_linked_modules(alice, 5, Link::FriendOfPrevious);
    let module = linked_module(alice, 5, Link::FriendOfPrevious);
    let friends: u64 = (0..5)
        .map(|index| {
            // Each names its own friend, which the walk looks up.
            load_gas(&linked_module(alice, index, Link::FriendOfPrevious))
                + gas::MODULE_LINK * u64::from(index > 0)
        })
        .sum();
    let expected = publication_gas(&module) + friends;
    let receipt = chain.publish_receipt(alice, vec![module]);
    assert_eq!(receipt.status, MoveStatus::Success);
    assert_eq!(receipt.gas_used, expected);
}

#[test]
fn a_call_pays_for_the_code_as_it_stands_after_an_upgrade() {
    // `top` gains a dependency on `extra` in an upgrade: the next call pays for it, though the
    // VM that ran the first call had `top`'s old code and footprint.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let extra = module_with_links(alice, "extra", &[], &[]);
    let old = module_with_links(alice, "top", &[], &[]);
    let new = module_with_links(alice, "top", &["extra"], &[]);
    chain.publish(alice, vec![extra.clone(), old.clone()]);
    let before = receipt(&chain.run_calls(alice, &[("top", "go")]), 0).gas_used;
    // The upgrade pays for loading the stored `top` (its compatibility check) and `extra`.
    let expected = publication_gas(&new) + load_gas(&old) + load_gas(&extra);
    let upgrade = chain.publish_receipt(alice, vec![new.clone()]);
    assert_eq!(upgrade.status, MoveStatus::Success);
    assert_eq!(upgrade.gas_used, expected);
    let after = receipt(&chain.run_calls(alice, &[("top", "go")]), 0).gas_used;
    assert_eq!(after - before, load_gas(&new) - load_gas(&old) + load_gas(&extra));
}

#[test]
fn a_module_the_binary_format_cannot_hold_is_a_compile_error_not_a_panic() {
    // A function of 300 locals: the format holds 255 in a signature.
    let locals = (1..300).fold(String::new(), |mut locals, at| {
        use std::fmt::Write;
        writeln!(locals, "        let a{at} = a{} + {at};", at - 1).expect("a String takes it");
        locals
    });
    let source = format!(
        "module 0xe5::wide {{\n    public fun f(a0: u64): u64 {{\n{locals}        a299\n    }}\n}}\n"
    );
    let directory = tempfile::tempdir().expect("temp is writable");
    let file = directory.path().join("wide.move");
    std::fs::write(&file, source).expect("temp is writable");
    let error = duet_move::compile_package(vec![file.to_string_lossy().into_owned()], &[])
        .expect_err("300 locals do not fit");
    assert!(error.starts_with("module wide cannot be written as bytecode: "), "{error}");
}

#[test]
fn a_module_of_2000_functions_publishes_and_its_functions_run() {
    // The verifier built two maps of the module's functions again for every function (N^2
    // insertions; a module of 6 000: 4 s with one of the two fixed, in a release build, 44 ms
    // with both: `vendor/README.md`).
    use move_binary_format::file_format::{FunctionHandleIndex, IdentifierIndex};
    use move_core_types::identifier::Identifier;
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::many { public entry fun f0() {} }";
    let module = edited_module(source, alice, |module| {
        let (handle, definition) =
            (module.function_handles[0].clone(), module.function_defs[0].clone());
        for index in 1..2000 {
            module.identifiers.push(Identifier::new(format!("f{index}")).unwrap());
            let name = IdentifierIndex((module.identifiers.len() - 1) as u16);
            module
                .function_handles
                .push(move_binary_format::file_format::FunctionHandle { name, ..handle.clone() });
            let function = FunctionHandleIndex((module.function_handles.len() - 1) as u16);
            module.function_defs.push(move_binary_format::file_format::FunctionDefinition {
                function,
                ..definition.clone()
            });
        }
    });
    chain.publish(alice, vec![module]);
    let output = chain.run_calls(alice, &[("many", "f1999")]);
    assert!(receipt(&output, 0).is_success(), "{:?}", receipt(&output, 0));
}

#[test]
fn a_function_carrying_many_references_through_many_blocks_is_refused() {
    // 120 references held in locals through 2 000 branches: 10 KB that took the verifier's
    // reference analysis 0.8 s (release build).
    use move_binary_format::file_format::{Bytecode, Signature, SignatureIndex, SignatureToken};
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let refs: u8 = 120;
    let module = edited_module("module example::r { public entry fun f() { } }", alice, |module| {
        let reference = SignatureToken::Reference(Box::new(SignatureToken::U64));
        let mut locals = vec![SignatureToken::U64; usize::from(refs)];
        locals.extend(vec![reference; usize::from(refs)]);
        let locals = SignatureIndex(position_or_push(&mut module.signatures, Signature(locals)));
        let code = module.function_defs[0].code.as_mut().unwrap();
        code.locals = locals;
        let mut body = Vec::new();
        for local in 0..refs {
            body.extend([Bytecode::LdU64(0), Bytecode::StLoc(local)]);
        }
        for local in 0..refs {
            body.extend([Bytecode::ImmBorrowLoc(local), Bytecode::StLoc(refs + local)]);
        }
        for _ in 0..2_000 {
            let next = body.len() as u16 + 2;
            body.extend([Bytecode::LdTrue, Bytecode::BrTrue(next)]);
        }
        for local in 0..refs {
            body.extend([Bytecode::MoveLoc(refs + local), Bytecode::Pop]);
        }
        body.push(Bytecode::Ret);
        code.code = body;
    });
    let nonce = chain.state.nonce(alice);
    let mut publish = transaction(alice, nonce, MovePayload::ModuleBundle(vec![module]));
    publish.gas_limit = 30_000_000;
    let output = chain.run(&[publish]);
    // 1 + 2 x 2 000 + 1 blocks, times 121.
    let saying = "function f carries references through too many blocks (484242";
    assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", saying);
    assert_eq!(chain.state.nonce(alice), nonce + 1, "the publication pays its fee");
}
