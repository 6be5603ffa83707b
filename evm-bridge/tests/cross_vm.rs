//! Solidity calls Move through the Move call precompile: return values come back in the same
//! call, Move writes are undone with the EVM frame that made them, a Move abort is a failed call
//! the caller can catch, and ETH moved by Move is what `BALANCE` sees. Every block runs
//! sequentially and in parallel (2 and 4 threads), and the outputs must be identical.

#![allow(non_snake_case)] // Bindings take the Solidity parameter names.

#[path = "../testkit/mod.rs"]
mod testkit;

use std::sync::Arc;

use alloy_sol_types::{SolCall, SolError};
use duet_block_stm::{execute_sequential, TransactionResult};
use duet_evm::{EvmVm, IMove, Receipt};
use duet_move::MoveVm;
use duet_types::{Address, Bytes, StateKey, StateValue, MOVE_CALL_ADDRESS, U256};
use revm::context::result::{ExecutionResult, Output};
use revm::context::TxEnv;
use revm::primitives::TxKind;
use testkit::{
    artifact_bytecode, block_env, compile_move, execute_every_way, tx_env, user, MemoryState,
    CHAIN_ID, FEE_VAULT, GAS_PRICE, ONE_ETH,
};

alloy_sol_types::sol! {
    #[allow(missing_docs)]
    contract MoveCaller {
        function failures() external view returns (uint256);
        function lastError() external view returns (bytes);
        function callMove(address module, string name, string functionName, bytes[] arguments) external returns (bytes[]);
        function callThenRevert(address module, string name, string functionName, bytes[] arguments) external;
        function callInRevertedFrame(address module, string name, string functionName, bytes[] arguments) external returns (bool);
        function tryCallMove(address module, string name, string functionName, bytes[] arguments) external returns (bool);
        function viewMove(address module, string name, string functionName, bytes[] arguments) external view returns (bytes[]);
        function balanceOf(address who) external view returns (uint256);
    }
}

/// Where the example Move module (`move-executor/testkit/example.move`) is published.
const PUBLISHER: Address = Address::repeat_byte(0xe1);

struct Chain {
    state: MemoryState,
    move_vm: Arc<MoveVm>,
    nonces: std::collections::BTreeMap<Address, u64>,
    number: u64,
}

impl Chain {
    fn new() -> Self {
        let mut state = MemoryState::default();
        state.0.extend(duet_move::genesis_state());
        let example = compile_move(&["move-executor/testkit/example.move"], "example", PUBLISHER);
        state.publish(PUBLISHER, example);
        for index in 0..4 {
            state.0.insert(StateKey::Balance(user(index)), StateValue::Balance(1_000 * ONE_ETH));
        }
        Self {
            state,
            move_vm: Arc::new(MoveVm::new(FEE_VAULT)),
            nonces: std::collections::BTreeMap::new(),
            number: 1,
        }
    }

    fn vm(&self) -> EvmVm {
        EvmVm::new(CHAIN_ID, block_env(self.number)).with_move(Arc::clone(&self.move_vm))
    }

    fn tx(&mut self, from: Address, kind: TxKind, data: Vec<u8>) -> TxEnv {
        let nonce = self.nonces.entry(from).or_default();
        *nonce += 1;
        tx_env(from, *nonce - 1, kind, 0, data, 3_000_000)
    }

    fn deploy_caller(&mut self, from: Address) -> Address {
        let nonce = self.nonces.get(&from).copied().unwrap_or(0);
        let tx = self.tx(from, TxKind::Create, artifact_bytecode("MoveCaller"));
        let receipts = self.run(&[tx]);
        assert!(receipts[0].is_success(), "MoveCaller deploys: {:?}", receipts[0]);
        from.create(nonce)
    }

    /// Executes a block sequentially and in parallel, checks they agree, applies it.
    fn run(&mut self, block: &[TxEnv]) -> Vec<Receipt> {
        let vm = self.vm();
        let (sequential, _) = execute_every_way(&vm, block, &self.state);
        self.number += 1;
        self.state.commit(sequential)
    }

    /// The BCS bytes of `owner`'s `counter::Counter`, if it has one.
    fn counter(&self, owner: Address) -> Option<Vec<u8>> {
        self.state.resource(owner, &format!("{PUBLISHER}::counter::Counter"))
    }

    /// Has `caller` (a `MoveCaller`) try `counter::function(arguments)`, which must fail, and
    /// returns the revert data it caught.
    fn failed_move_call(
        &mut self,
        caller: Address,
        function: &str,
        arguments: Vec<Vec<u8>>,
    ) -> Bytes {
        let (module, name, functionName, arguments) = counter_call(function, arguments);
        let data =
            MoveCaller::tryCallMoveCall { module, name, functionName, arguments }.abi_encode();
        let try_call = self.tx(user(0), TxKind::Call(caller), data);
        let last_error =
            self.tx(user(1), TxKind::Call(caller), MoveCaller::lastErrorCall {}.abi_encode());
        let receipts = self.run(&[try_call, last_error]);
        assert!(
            !MoveCaller::tryCallMoveCall::abi_decode_returns(output(&receipts[0])).unwrap(),
            "{function} failed"
        );
        MoveCaller::lastErrorCall::abi_decode_returns(output(&receipts[1])).unwrap()
    }

    fn balance(&self, address: Address) -> u128 {
        self.state.balance(address)
    }
}

fn output(receipt: &Receipt) -> &Bytes {
    match receipt {
        ExecutionResult::Success { output: Output::Call(bytes), .. } => bytes,
        other => panic!("not a successful call: {other:?}"),
    }
}

fn counter_call(function: &str, arguments: Vec<Vec<u8>>) -> (Address, String, String, Vec<Bytes>) {
    (
        PUBLISHER,
        "counter".to_owned(),
        function.to_owned(),
        arguments.into_iter().map(Bytes::from).collect(),
    )
}

/// Calldata of `IMove.call` for `counter::function(arguments)`, for an account calling the
/// precompile directly.
fn precompile_call(function: &str, arguments: Vec<Vec<u8>>) -> Vec<u8> {
    duet_evm::call_data(&duet_types::EntryFunction {
        module_address: PUBLISHER,
        module_name: "counter".to_owned(),
        function: function.to_owned(),
        type_arguments: vec![],
        arguments,
    })
}

fn call_move(function: &str, arguments: Vec<Vec<u8>>) -> Vec<u8> {
    let (module, name, functionName, arguments) = counter_call(function, arguments);
    MoveCaller::callMoveCall { module, name, functionName, arguments }.abi_encode()
}

#[test]
fn solidity_calls_move_and_uses_the_return_value() {
    let mut chain = Chain::new();
    let caller = chain.deploy_caller(user(0));
    let increment = chain.tx(user(0), TxKind::Call(caller), call_move("increment", vec![]));
    let again = chain.tx(user(1), TxKind::Call(caller), call_move("increment", vec![]));
    let read = chain.tx(
        user(2),
        TxKind::Call(caller),
        call_move("value", vec![bcs::to_bytes(&caller.0 .0).unwrap()]),
    );
    let receipts = chain.run(&[increment, again, read]);
    // The signer is msg.sender: the contract, whoever called it.
    assert_eq!(chain.counter(caller), Some(2u64.to_le_bytes().to_vec()));
    let returned = MoveCaller::callMoveCall::abi_decode_returns(output(&receipts[2])).unwrap();
    assert_eq!(returned, vec![Bytes::from(2u64.to_le_bytes().to_vec())]);
    assert!(receipts.iter().all(|receipt| receipt.tx_gas_used() > 21_000));
}

#[test]
fn an_account_calls_the_precompile_directly() {
    let mut chain = Chain::new();
    let data = precompile_call("increment", vec![]);
    let tx = chain.tx(user(3), TxKind::Call(MOVE_CALL_ADDRESS), data);
    let receipts = chain.run(&[tx]);
    assert_eq!(
        IMove::callCall::abi_decode_returns(output(&receipts[0])).unwrap(),
        Vec::<Bytes>::new()
    );
    assert_eq!(chain.counter(user(3)), Some(1u64.to_le_bytes().to_vec()));
}

#[test]
fn a_reverted_frame_undoes_the_move_writes_made_inside_it() {
    let mut chain = Chain::new();
    let caller = chain.deploy_caller(user(0));
    let (module, name, functionName, arguments) = counter_call("increment", vec![]);
    let whole = MoveCaller::callThenRevertCall {
        module,
        name: name.clone(),
        functionName: functionName.clone(),
        arguments: arguments.clone(),
    }
    .abi_encode();
    let inner =
        MoveCaller::callInRevertedFrameCall { module, name, functionName, arguments }.abi_encode();
    let whole = chain.tx(user(0), TxKind::Call(caller), whole);
    let inner = chain.tx(user(1), TxKind::Call(caller), inner);
    let receipts = chain.run(&[whole, inner]);
    assert!(matches!(receipts[0], ExecutionResult::Revert { .. }), "{:?}", receipts[0]);
    assert!(receipts[1].is_success(), "the outer frame goes on: {:?}", receipts[1]);
    assert_eq!(chain.counter(caller), None, "no Move write survives a reverted frame");
    let failures =
        chain.tx(user(2), TxKind::Call(caller), MoveCaller::failuresCall {}.abi_encode());
    let receipts = chain.run(&[failures]);
    assert_eq!(U256::from_be_slice(output(&receipts[0])), U256::from(1));
}

#[test]
fn a_move_abort_is_a_failed_call_the_caller_catches() {
    let mut chain = Chain::new();
    let caller = chain.deploy_caller(user(0));
    let reason = chain.failed_move_call(caller, "fail", vec![bcs::to_bytes(&42u64).unwrap()]);
    let aborted = IMove::MoveAborted::abi_decode(&reason).expect("MoveAborted(location, code)");
    assert_eq!(aborted.code, 42);
    assert_eq!(aborted.location, format!("{PUBLISHER}::counter"));

    // Unknown functions and bad arguments fail the same way, with the Move VM's status.
    for (function, arguments, status) in [
        ("missing", vec![], "FUNCTION_RESOLUTION_FAILURE"),
        ("fail", vec![vec![1, 2, 3]], "FAILED_TO_DESERIALIZE_ARGUMENT"),
        ("increment", vec![vec![0]], "NUMBER_OF_ARGUMENTS_MISMATCH"),
    ] {
        let reason = chain.failed_move_call(caller, function, arguments);
        let failed = IMove::MoveFailed::abi_decode(&reason).expect("MoveFailed(status, message)");
        assert_eq!(failed.status, status, "{function}: {}", failed.message);
    }
    assert_eq!(chain.counter(caller), None);
}

#[test]
fn solidity_cannot_take_a_value_move_code_must_hand_back() {
    // `desk::take` returns a `Ticket`, which has no `drop`: Move code must give it back, and
    // Solidity would throw it away. The call fails, its writes undone; `stamp`, returning a
    // value Move may drop, answers.
    let mut chain = Chain::new();
    let desk = Address::repeat_byte(0xd5);
    chain.state.publish(desk, compile_move(&["evm-bridge/tests/tickets.move"], "tickets", desk));
    let call = |function: &str| {
        duet_evm::call_data(&duet_types::EntryFunction {
            module_address: desk,
            module_name: "desk".to_owned(),
            function: function.to_owned(),
            type_arguments: vec![],
            arguments: vec![],
        })
    };
    let take = chain.tx(user(3), TxKind::Call(MOVE_CALL_ADDRESS), call("take"));
    let stamp = chain.tx(user(3), TxKind::Call(MOVE_CALL_ADDRESS), call("stamp"));
    let receipts = chain.run(&[take, stamp]);
    let ExecutionResult::Revert { output: reverted, .. } = &receipts[0] else {
        panic!("taking a ticket fails: {:?}", receipts[0]);
    };
    let failed = IMove::MoveFailed::abi_decode(reverted).expect("MoveFailed(status, message)");
    assert!(failed.message.contains("without `drop`"), "{}: {}", failed.status, failed.message);
    assert_eq!(chain.state.resource(user(3), &format!("{desk}::desk::Issued")), None);
    let stamped = IMove::callCall::abi_decode_returns(output(&receipts[1])).unwrap();
    assert_eq!(stamped, vec![Bytes::from(user(3).to_vec())]);
}

#[test]
fn a_static_call_reads_move_but_cannot_write() {
    let mut chain = Chain::new();
    let caller = chain.deploy_caller(user(0));
    let increment = chain.tx(user(0), TxKind::Call(caller), call_move("increment", vec![]));
    chain.run(&[increment]);
    let (module, name, functionName, arguments) =
        counter_call("value", vec![bcs::to_bytes(&caller.0 .0).unwrap()]);
    let read = MoveCaller::viewMoveCall { module, name, functionName, arguments }.abi_encode();
    let (module, name, functionName, arguments) = counter_call("increment", vec![]);
    let write = MoveCaller::viewMoveCall { module, name, functionName, arguments }.abi_encode();
    let read = chain.tx(user(1), TxKind::Call(caller), read);
    let write = chain.tx(user(2), TxKind::Call(caller), write);
    let receipts = chain.run(&[read, write]);
    let returned = MoveCaller::viewMoveCall::abi_decode_returns(output(&receipts[0])).unwrap();
    assert_eq!(returned, vec![Bytes::from(1u64.to_le_bytes().to_vec())]);
    let ExecutionResult::Revert { output, .. } = &receipts[1] else {
        panic!("a static call that writes reverts: {:?}", receipts[1])
    };
    let failed = IMove::MoveFailed::abi_decode(output).unwrap();
    assert_eq!(failed.status, "STATIC_CALL");
    assert_eq!(chain.counter(caller), Some(1u64.to_le_bytes().to_vec()));
}

#[test]
fn eth_moved_by_move_is_what_the_evm_sees_in_the_same_block() {
    let mut chain = Chain::new();
    let caller = chain.deploy_caller(user(0));
    let recipient = Address::repeat_byte(0x77);
    let amount: u128 = 5 * ONE_ETH;
    let pay = precompile_call(
        "pay",
        vec![
            bcs::to_bytes(&recipient.0 .0).unwrap(),
            bcs::to_bytes(&amount).unwrap(),
            bcs::to_bytes(&false).unwrap(),
        ],
    );
    let pay = chain.tx(user(1), TxKind::Call(MOVE_CALL_ADDRESS), pay);
    let look = chain.tx(
        user(2),
        TxKind::Call(caller),
        MoveCaller::balanceOfCall { who: recipient }.abi_encode(),
    );
    let before = chain.balance(user(1));
    let receipts = chain.run(&[pay, look]);
    assert!(receipts[0].is_success(), "{:?}", receipts[0]);
    assert_eq!(U256::from_be_slice(output(&receipts[1])), U256::from(amount));
    assert_eq!(chain.balance(recipient), amount);
    let fee = u128::from(receipts[0].tx_gas_used()) * GAS_PRICE;
    assert_eq!(chain.balance(user(1)), before - amount - fee);
}

#[test]
fn move_reads_the_exact_balance_of_an_account_credited_in_the_same_block() {
    let mut chain = Chain::new();
    let recipient = Address::repeat_byte(0x55);
    let mut pay = chain.tx(user(0), TxKind::Call(recipient), Vec::new());
    pay.value = U256::from(3 * ONE_ETH);
    pay.gas_limit = 21_000;
    let read = precompile_call("balance_of", vec![recipient.0 .0.to_vec()]);
    let read = chain.tx(user(1), TxKind::Call(MOVE_CALL_ADDRESS), read);
    let receipts = chain.run(&[pay, read]);
    let returned = IMove::callCall::abi_decode_returns(output(&receipts[1])).unwrap();
    // Without the watch, Move would see the EVM's stand-in for a code-less recipient.
    assert_eq!(returned, vec![Bytes::from((3 * ONE_ETH).to_le_bytes().to_vec())]);

    // Natives run only when Move code calls them: calling one directly is refused clearly.
    let native = IMove::callCall {
        moduleAddress: Address::with_last_byte(1),
        moduleName: "eth".to_owned(),
        functionName: "balance".to_owned(),
        typeArguments: vec![],
        arguments: vec![Bytes::from(recipient.0 .0.to_vec())],
    }
    .abi_encode();
    let native = chain.tx(user(1), TxKind::Call(MOVE_CALL_ADDRESS), native);
    let receipts = chain.run(&[native]);
    let ExecutionResult::Revert { output, .. } = &receipts[0] else {
        panic!("calling a native reverts: {:?}", receipts[0])
    };
    assert_eq!(IMove::MoveFailed::abi_decode(output).unwrap().status, "INVALID_PAYLOAD");
}

/// Each thread hands revm's journal, with the precompile addresses it keeps warm (EIP-2929), from
/// one EVM to the next. The Move call precompile must be warm in every EVM that has it, and only
/// there, whichever EVM ran before on the thread.
#[test]
fn the_move_call_precompile_is_warm_only_where_it_exists_whatever_ran_before() {
    let mut chain = Chain::new();
    let caller = chain.deploy_caller(user(0));
    let block = [chain.tx(user(0), TxKind::Call(caller), call_move("increment", vec![]))];
    let with_move = chain.vm();
    let without_move = EvmVm::new(CHAIN_ID, block_env(chain.number));
    // The block's gas on a new thread, run by `then` after `first` ran it there.
    let gas = |first: &EvmVm, then: &EvmVm| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    execute_sequential(first, &block, &chain.state).unwrap();
                    let output = execute_sequential(then, &block, &chain.state).unwrap();
                    match &output.results[0] {
                        TransactionResult::Executed(receipt) => receipt.tx_gas_used(),
                        other => panic!("the call executes: {other:?}"),
                    }
                })
                .join()
                .unwrap()
        })
    };
    let (moved, not_moved) = (gas(&with_move, &with_move), gas(&without_move, &without_move));
    assert_ne!(moved, not_moved, "the call runs Move only where the precompile exists");
    assert_eq!(gas(&without_move, &with_move), moved);
    assert_eq!(gas(&with_move, &without_move), not_moved);
}

/// The precompile's input is decoded strictly: arguments whose offsets point into the same data
/// (which would let a small input decode into gigabytes, for nothing) and more type arguments
/// than the bound are refused, as are names too long for a module; its BCS arguments pay per
/// byte. (Its per-word charge is not seen in a direct call's receipt, which pays calldata's floor
/// price, far above it.)
#[test]
fn the_precompile_refuses_aliased_or_oversized_input() {
    let mut chain = Chain::new();
    let refusal = |chain: &mut Chain, data: Vec<u8>| -> (String, String) {
        let tx = chain.tx(user(1), TxKind::Call(MOVE_CALL_ADDRESS), data);
        let receipts = chain.run(&[tx]);
        let ExecutionResult::Revert { output, .. } = &receipts[0] else {
            panic!("refused: {:?}", receipts[0])
        };
        let failed = IMove::MoveFailed::abi_decode(output).unwrap();
        (failed.status, failed.message)
    };
    // Two arguments, the second's offset made the first's.
    let mut aliased = IMove::callCall {
        moduleAddress: PUBLISHER,
        moduleName: "counter".to_owned(),
        functionName: "increment".to_owned(),
        typeArguments: vec![],
        arguments: vec![Bytes::from(vec![1; 64]), Bytes::from(vec![2; 64])],
    }
    .abi_encode();
    let word = |data: &[u8], at: usize| usize::try_from(U256::from_be_slice(&data[at..at + 32]));
    let arguments = 4 + word(&aliased, 4 + 4 * 32).unwrap();
    let first = aliased[arguments + 32..arguments + 64].to_vec();
    aliased[arguments + 64..arguments + 96].copy_from_slice(&first);
    let (status, message) = refusal(&mut chain, aliased);
    assert_eq!(status, "INVALID_INPUT");
    assert!(message.contains("strictly ABI-encoded"), "{message}");
    // An address word with its high bytes set, and a name that is not UTF-8: refused, not
    // read as the address's low bytes or the name's lossy text.
    let increment = precompile_call("increment", vec![]);
    let mut dirty = increment.clone();
    dirty[4] = 1;
    let name_at = 4 + word(&increment, 4 + 32).unwrap();
    let mut not_utf8 = increment.clone();
    not_utf8[name_at + 32] = 0xff;
    for (case, data) in [("a dirty address", dirty), ("a name not UTF-8", not_utf8)] {
        let (status, message) = refusal(&mut chain, data);
        assert_eq!(status, "INVALID_INPUT", "{case}");
        assert!(message.contains("strictly ABI-encoded"), "{case}: {message}");
    }
    assert_eq!(chain.counter(user(1)), None, "nothing ran");
    let too_many = IMove::callCall {
        moduleAddress: PUBLISHER,
        moduleName: "counter".to_owned(),
        functionName: "increment".to_owned(),
        typeArguments: vec!["u8".to_owned(); 33],
        arguments: vec![],
    }
    .abi_encode();
    let (status, message) = refusal(&mut chain, too_many);
    assert_eq!(
        (status.as_str(), message.as_str()),
        ("INVALID_INPUT", "at most 32 type arguments and 255 arguments")
    );
    // A name longer than any published module's is refused before anything is read by it.
    let long_name = IMove::callCall {
        moduleAddress: PUBLISHER,
        moduleName: "m".repeat(300),
        functionName: "increment".to_owned(),
        typeArguments: vec![],
        arguments: vec![],
    }
    .abi_encode();
    let (_, message) = refusal(&mut chain, long_name);
    assert!(message.contains("at most 255 bytes, not 300"), "{message}");
    // BCS arguments pay 16 gas a byte, as a Move transaction's payload, before they become
    // Move values: 200 000 zero bytes pass calldata's price (4 a zero byte, 2 000 000 of floor)
    // within 3 000 000 gas, but not theirs (a megabyte of empty vectors made a million values
    // for 3 gas a word).
    let big = precompile_call("increment", vec![vec![0; 200_000]]);
    let tx = chain.tx(user(1), TxKind::Call(MOVE_CALL_ADDRESS), big);
    let receipts = chain.run(&[tx]);
    let halted = format!("{:?}", receipts[0]);
    assert!(halted.starts_with("Halt") && halted.contains("OutOfGas"), "{halted}");
}
