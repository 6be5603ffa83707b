//! Mixed blocks of Move and EVM transactions, and Move calling the EVM: a Move module pays with
//! an ERC-20 and acts on the result, an abort undoes what the EVM did, a failed EVM call is
//! caught in Move, ETH moves between the VMs within a transaction and within a block, nesting
//! is refused clearly, a Solidity contract swaps on a Move AMM, Move calls an account delegated
//! to a contract's code (EIP-7702), and random mixed blocks (with a
//! publish in the middle) run the same in parallel as sequentially. Every block runs
//! sequentially and in parallel (2 and 4 threads), and the outputs must be identical.

#![allow(non_snake_case)] // Bindings take the Solidity parameter names.

#[path = "../testkit/mod.rs"]
mod testkit;

use std::collections::BTreeMap;
use std::sync::Arc;

use alloy_sol_types::{SolCall, SolConstructor, SolError, SolEvent};
use duet_evm::{DuetReceipt, DuetTransaction, DuetVm, EvmVm, IMove};
use duet_move::{MoveReceipt, MoveStatus, MoveVm};
use duet_types::{
    Address, Bytes, EntryFunction, MovePayload, MoveTransaction, StateKey, StateValue,
    MOVE_CALL_ADDRESS, U256,
};
use revm::context::result::{ExecutionResult, Output};
use revm::primitives::TxKind;
use testkit::{
    artifact_bytecode, block_env, compile_move, execute_mixed_every_way, tx_env, user, MemoryState,
    Probe, Token, CHAIN_ID, FEE_VAULT, GAS_PRICE, ONE_ETH,
};

alloy_sol_types::sol! {
    #[allow(missing_docs)]
    contract MoveCaller {
        function lastError() external view returns (bytes);
        function tryCallMove(address module, string name, string functionName, bytes[] arguments) external returns (bool);
        function balanceOf(address who) external view returns (uint256);
    }
    contract AmmTrader {
        constructor(address amm_);
        function totalBought() external view returns (uint256);
        function fund(uint128 a, uint128 b) external;
        function swap(address pool, uint128 amountIn, uint128 minOut) external returns (uint128 amountOut);
        function holdings() external returns (uint128 a, uint128 b);
        event Swapped(address indexed pool, uint128 amountIn, uint128 amountOut);
    }
    contract ProbeReader {
        function seen() external view returns (uint256);
    }
}

/// Keyed account `index` of the tests: it signs EIP-7702 authorizations.
fn keyed(index: u64) -> alloy_signer_local::PrivateKeySigner {
    let seed = duet_types::B256::repeat_byte(0x60 + index as u8);
    alloy_signer_local::PrivateKeySigner::from_bytes(&seed).unwrap()
}

/// Where the example Move modules (`contracts/move`) are published.
const EXAMPLES: Address = Address::repeat_byte(0xe5);

/// The framework's address.
const FRAMEWORK: Address = Address::with_last_byte(1);

const MOVE_GAS_LIMIT: u64 = 3_000_000;

struct Chain {
    state: MemoryState,
    move_vm: Arc<MoveVm>,
    nonces: BTreeMap<Address, u64>,
    number: u64,
}

impl Chain {
    fn new() -> Self {
        let mut state = MemoryState::default();
        state.0.extend(duet_move::genesis_state());
        let sources =
            ["evm-bridge/contracts/move/amm.move", "evm-bridge/contracts/move/token_user.move"];
        state.publish(EXAMPLES, compile_move(&sources, "examples", EXAMPLES));
        for index in 0..32 {
            state.0.insert(StateKey::Balance(user(index)), StateValue::Balance(1_000 * ONE_ETH));
        }
        Self {
            state,
            move_vm: Arc::new(MoveVm::new(FEE_VAULT)),
            nonces: BTreeMap::new(),
            number: 1,
        }
    }

    fn next_nonce(&mut self, from: Address) -> u64 {
        let nonce = self.nonces.entry(from).or_default();
        *nonce += 1;
        *nonce - 1
    }

    fn evm(&mut self, from: Address, kind: TxKind, value: u128, data: Vec<u8>) -> DuetTransaction {
        let nonce = self.next_nonce(from);
        DuetTransaction::Evm(tx_env(from, nonce, kind, value, data, 3_000_000))
    }

    fn call(&mut self, from: Address, to: Address, data: Vec<u8>) -> DuetTransaction {
        self.evm(from, TxKind::Call(to), 0, data)
    }

    fn move_tx(&mut self, from: Address, payload: MovePayload, gas_limit: u64) -> DuetTransaction {
        let nonce = self.next_nonce(from);
        DuetTransaction::Move(MoveTransaction {
            sender: from,
            nonce,
            gas_limit,
            gas_price: GAS_PRICE,
            payload,
        })
    }

    /// A Move transaction calling `module::function(arguments)` at `address`.
    fn move_call(
        &mut self,
        from: Address,
        (address, module): (Address, &str),
        function: &str,
        arguments: Vec<Vec<u8>>,
    ) -> DuetTransaction {
        let payload = MovePayload::EntryFunction(EntryFunction {
            module_address: address,
            module_name: module.to_owned(),
            function: function.to_owned(),
            type_arguments: vec![],
            arguments,
        });
        self.move_tx(from, payload, MOVE_GAS_LIMIT)
    }

    /// A transaction creating a contract from `creation`, and the contract's address.
    fn create(&mut self, from: Address, creation: Vec<u8>) -> (DuetTransaction, Address) {
        let address = from.create(self.nonces.get(&from).copied().unwrap_or(0));
        (self.evm(from, TxKind::Create, 0, creation), address)
    }

    fn deploy(&mut self, from: Address, creation: Vec<u8>) -> Address {
        let (tx, address) = self.create(from, creation);
        let receipts = self.run(&[tx]);
        assert!(evm_receipt(&receipts[0]).is_success(), "deploys: {:?}", receipts[0]);
        address
    }

    /// A token whose whole supply `owner` holds.
    fn deploy_token(&mut self, owner: Address) -> Address {
        let mut creation = artifact_bytecode("Token");
        creation.extend(
            Token::constructorCall {
                name_: "T".into(),
                symbol_: "T".into(),
                supply: U256::from(1_000_000u64),
            }
            .abi_encode(),
        );
        self.deploy(owner, creation)
    }

    /// A set-code (EIP-7702) transaction from `from` calling `to` with `data`, carrying
    /// `signer`'s authorization (for its account nonce `nonce`) to run `code_of`'s code.
    fn set_code(
        &mut self,
        (from, to, data): (Address, Address, Vec<u8>),
        signer: &alloy_signer_local::PrivateKeySigner,
        code_of: Address,
        nonce: u64,
    ) -> DuetTransaction {
        let DuetTransaction::Evm(tx) = self.call(from, to, data) else { unreachable!() };
        let authorization = testkit::authorization(signer, CHAIN_ID, code_of, nonce);
        DuetTransaction::Evm(testkit::set_code(tx, vec![authorization]))
    }

    /// Has user 0, who holds all of `token`, give 10 000 of it to each of the next `users` - 1.
    fn hand_out(&mut self, token: Address, users: u64) {
        let hand_out: Vec<_> = (1..users)
            .map(|index| {
                let data =
                    Token::transferCall { to: user(index), value: U256::from(10_000) }.abi_encode();
                self.call(user(0), token, data)
            })
            .collect();
        self.run(&hand_out);
    }

    /// Executes a block sequentially and in parallel, checks they agree, applies it.
    fn run(&mut self, block: &[DuetTransaction]) -> Vec<DuetReceipt> {
        let vm =
            DuetVm::new(EvmVm::new(CHAIN_ID, block_env(self.number)), Arc::clone(&self.move_vm));
        let output = execute_mixed_every_way(&vm, block, &self.state);
        self.number += 1;
        self.state.commit(output)
    }

    /// Runs `data` against `to` in a block of its own and returns the output.
    fn read(&mut self, to: Address, data: Vec<u8>) -> Bytes {
        let tx = self.call(user(31), to, data);
        output(&self.run(&[tx])[0]).clone()
    }

    fn token_balance(&mut self, token: Address, owner: Address) -> U256 {
        let output = self.read(token, Token::balanceOfCall { owner }.abi_encode());
        Token::balanceOfCall::abi_decode_returns(&output).unwrap()
    }

    fn balance(&self, address: Address) -> u128 {
        self.state.balance(address)
    }

    fn nonce(&self, address: Address) -> u64 {
        self.state.nonce(address)
    }

    /// The BCS bytes of `examples::module::name` under `owner`, if it exists.
    fn resource(&self, owner: Address, module: &str, name: &str) -> Option<Vec<u8>> {
        self.state.resource(owner, &format!("{EXAMPLES}::{module}::{name}"))
    }
}

fn evm_receipt(receipt: &DuetReceipt) -> &ExecutionResult {
    match receipt {
        DuetReceipt::Evm(receipt) => receipt,
        DuetReceipt::Move(receipt) => panic!("a Move receipt: {receipt:?}"),
    }
}

fn move_receipt(receipt: &DuetReceipt) -> &MoveReceipt {
    match receipt {
        DuetReceipt::Move(receipt) => receipt,
        DuetReceipt::Evm(receipt) => panic!("an EVM receipt: {receipt:?}"),
    }
}

fn output(receipt: &DuetReceipt) -> &Bytes {
    match evm_receipt(receipt) {
        ExecutionResult::Success { output: Output::Call(bytes), .. } => bytes,
        other => panic!("not a successful call: {other:?}"),
    }
}

fn bcs<T: serde::Serialize>(value: &T) -> Vec<u8> {
    bcs::to_bytes(value).unwrap()
}

fn address_arg(address: Address) -> Vec<u8> {
    address.to_vec()
}

const TOKEN_USER: (Address, &str) = (EXAMPLES, "token_user");
const AMM: (Address, &str) = (EXAMPLES, "amm");

#[test]
fn move_pays_with_an_erc20_and_acts_on_the_result() {
    let mut chain = Chain::new();
    let token = chain.deploy_token(user(0));
    let pay = chain.move_call(
        user(0),
        TOKEN_USER,
        "pay",
        vec![address_arg(token), address_arg(user(1)), bcs(&300u128)],
    );
    // In the same block, the recipient spends what Move paid it.
    let spend = chain.call(
        user(1),
        token,
        Token::transferCall { to: user(2), value: U256::from(100) }.abi_encode(),
    );
    let receipts = chain.run(&[pay, spend]);
    let paid = move_receipt(&receipts[0]);
    assert_eq!(paid.status, MoveStatus::Success);
    assert!(evm_receipt(&receipts[1]).is_success());
    // The ERC-20's Transfer log, emitted by the token, is in the Move receipt.
    assert_eq!(paid.logs.len(), 1);
    assert_eq!(paid.logs[0].address, token);
    assert_eq!(chain.token_balance(token, user(0)), U256::from(1_000_000 - 300));
    assert_eq!(chain.token_balance(token, user(1)), U256::from(200));
    assert_eq!(chain.token_balance(token, user(2)), U256::from(100));
    // Move recorded the payment: total 300 in one payment.
    let mut expected = bcs(&300u128);
    expected.extend(bcs(&1u64));
    assert_eq!(chain.resource(user(0), "token_user", "Paid"), Some(expected));
    // One nonce for the Move transaction, whatever it called.
    assert_eq!(chain.nonce(user(0)), 2);
}

#[test]
fn a_move_abort_undoes_what_the_evm_did() {
    let mut chain = Chain::new();
    let token = chain.deploy_token(user(0));
    let before = chain.balance(user(0));
    let vault_before = chain.balance(FEE_VAULT);
    let pay = chain.move_call(
        user(0),
        TOKEN_USER,
        "pay_then_abort",
        vec![address_arg(token), address_arg(user(1)), bcs(&300u128), bcs(&77u64)],
    );
    let receipts = chain.run(&[pay]);
    let receipt = move_receipt(&receipts[0]);
    assert_eq!(
        receipt.status,
        MoveStatus::Aborted { location: format!("{EXAMPLES}::token_user"), code: 77 }
    );
    assert!(receipt.logs.is_empty() && receipt.events.is_empty());
    // The nonce advanced and the fee was paid, nothing else.
    assert_eq!(chain.nonce(user(0)), 2);
    let fee = u128::from(receipt.gas_used) * GAS_PRICE;
    assert_eq!(chain.balance(user(0)), before - fee);
    assert_eq!(chain.balance(FEE_VAULT), vault_before + fee);
    assert_eq!(chain.resource(user(0), "token_user", "Paid"), None);
    assert_eq!(chain.token_balance(token, user(0)), U256::from(1_000_000));
    assert_eq!(chain.token_balance(token, user(1)), U256::ZERO);
}

#[test]
fn a_failed_evm_call_is_caught_in_move_and_changes_nothing() {
    let mut chain = Chain::new();
    let token = chain.deploy_token(user(0));
    // user(3) holds no tokens: the transfer reverts with ERC20InsufficientBalance.
    let calldata = Token::transferCall { to: user(4), value: U256::from(5) }.abi_encode();
    let call = chain.move_call(
        user(3),
        TOKEN_USER,
        "call",
        vec![address_arg(token), bcs(&0u128), bcs(&calldata)],
    );
    let receipts = chain.run(&[call]);
    assert_eq!(move_receipt(&receipts[0]).status, MoveStatus::Success);
    let last = chain.resource(user(3), "token_user", "LastCall").expect("recorded");
    // success = false, then the revert data: ERC20InsufficientBalance(user(3), 0, 5).
    let (success, revert): (bool, Vec<u8>) = bcs::from_bytes(&last).unwrap();
    assert!(!success);
    assert_eq!(
        &revert[..4],
        &alloy_primitives_selector("ERC20InsufficientBalance(address,uint256,uint256)")
    );
    assert_eq!(chain.token_balance(token, user(4)), U256::ZERO);

    // A transfer that runs out of gas fails the call, as in the EVM: `evm::call` aborts with
    // `EREVERTED` on the 64th of the gas kept back, and nothing else happens.
    let pay = MovePayload::EntryFunction(EntryFunction {
        module_address: EXAMPLES,
        module_name: "token_user".to_owned(),
        function: "pay".to_owned(),
        type_arguments: vec![],
        arguments: vec![address_arg(token), address_arg(user(1)), bcs(&300u128)],
    });
    let gas_limit = duet_move::gas::intrinsic_gas(pay.encoded_len()) + 30_000;
    let starved = chain.move_tx(user(0), pay, gas_limit);
    let receipts = chain.run(&[starved]);
    let receipt = move_receipt(&receipts[0]);
    assert_eq!(
        receipt.status,
        MoveStatus::Aborted { location: format!("{FRAMEWORK}::evm"), code: 2 }
    );
    assert!(receipt.gas_used < gas_limit);
    assert_eq!(chain.token_balance(token, user(1)), U256::ZERO);
    assert_eq!(chain.resource(user(0), "token_user", "Paid"), None);
}

/// A callee that halts or runs out of gas cannot take the Move caller down with it: it gets all
/// but one 64th of the gas left (as CALL gives, EIP-150), its failure is `try_call`'s `false`,
/// and the Move code goes on with the rest.
#[test]
fn a_callee_that_halts_or_runs_out_of_gas_fails_the_call_and_move_goes_on() {
    let mut chain = Chain::new();
    // Runtime code `INVALID`, and `JUMPDEST PUSH1 0 JUMP` (a loop until the gas runs out).
    let invalid = chain.deploy(user(0), alloy_primitives::hex!("60fe60005360016000f3").to_vec());
    let looping =
        chain.deploy(user(0), alloy_primitives::hex!("635b6000566000526004601cf3").to_vec());
    for (callee, sender) in [(invalid, user(8)), (looping, user(9))] {
        let call = chain.move_call(
            sender,
            TOKEN_USER,
            "call",
            vec![address_arg(callee), bcs(&0u128), bcs(&vec![1u8, 2, 3])],
        );
        let receipts = chain.run(&[call]);
        let receipt = move_receipt(&receipts[0]);
        assert_eq!(receipt.status, MoveStatus::Success, "calling {callee}");
        // The callee used what it was given; Move had the 64th kept back to record the call.
        assert!(receipt.gas_used > MOVE_GAS_LIMIT * 63 / 64, "{}", receipt.gas_used);
        assert!(receipt.gas_used < MOVE_GAS_LIMIT);
        let last = chain.resource(sender, "token_user", "LastCall").expect("recorded");
        let (success, output): (bool, Vec<u8>) = bcs::from_bytes(&last).unwrap();
        assert!(!success && output.is_empty());
    }
}

/// A call from Move that sends ETH pays what the EVM's CALL charges for it: 9 000 for the
/// transfer, and 25 000 more when it creates the account it pays; the callee gets the 2 300
/// stipend, which comes back unused from an account without code (6 700 net, as in the EVM).
#[test]
fn an_evm_call_from_move_with_value_pays_for_the_transfer_and_a_new_account() {
    let mut chain = Chain::new();
    let gas_of = |chain: &mut Chain, from: Address, to: Address, value: u128| {
        let call = chain.move_call(
            from,
            TOKEN_USER,
            "call",
            vec![address_arg(to), bcs(&value), bcs(&Vec::<u8>::new())],
        );
        let receipts = chain.run(&[call]);
        let receipt = move_receipt(&receipts[0]);
        assert_eq!(receipt.status, MoveStatus::Success);
        receipt.gas_used
    };
    // The same call three times from three accounts (each records its first call alike): no
    // value; 1 wei to an account that exists; 1 wei to a new one.
    let existing = user(0);
    let nothing = gas_of(&mut chain, user(5), Address::repeat_byte(0x51), 0);
    let paid = gas_of(&mut chain, user(6), existing, 1);
    let created = gas_of(&mut chain, user(7), Address::repeat_byte(0x52), 1);
    assert_eq!(paid - nothing, 9_000 - 2_300, "the value transfer, less the unused stipend");
    assert_eq!(created - nothing, 9_000 - 2_300 + 25_000, "and a new account");
    assert_eq!(chain.balance(Address::repeat_byte(0x52)), 1);
}

fn alloy_primitives_selector(signature: &str) -> [u8; 4] {
    duet_types::keccak256(signature.as_bytes())[..4].try_into().unwrap()
}

#[test]
fn eth_moves_between_the_vms_within_a_transaction_and_within_a_block() {
    let mut chain = Chain::new();
    let probe = chain.deploy(user(0), artifact_bytecode("Probe"));
    let seen = |chain: &mut Chain| {
        U256::from_be_slice(&chain.read(probe, ProbeReader::seenCall {}.abi_encode()))
    };

    // Within a Move transaction: ETH that Move moved is what the EVM code it calls sees.
    let (a, b, c) =
        (Address::repeat_byte(0xa1), Address::repeat_byte(0xa2), Address::repeat_byte(0xa3));
    let record_a = Probe::recordCall { who: a }.abi_encode();
    let within = chain.move_call(
        user(1),
        TOKEN_USER,
        "transfer_then_call",
        vec![address_arg(a), bcs(&5_000u128), address_arg(probe), bcs(&record_a)],
    );
    chain.run(&[within]);
    assert_eq!(seen(&mut chain), U256::from(5_000));

    // ...and ETH the EVM moved is what Move sees after the call: Move sends 700 wei with a call
    // to the probe, which forwards it to `b`; Move then reads `b`'s balance.
    let pay_b = Probe::payAndRecordCall { to: b }.abi_encode();
    let forward = chain.move_call(
        user(2),
        TOKEN_USER,
        "call_then_record_balance",
        vec![address_arg(probe), bcs(&700u128), bcs(&pay_b), address_arg(b)],
    );
    let user2_before = chain.balance(user(2));
    let receipts = chain.run(&[forward]);
    let fee = u128::from(move_receipt(&receipts[0]).gas_used) * GAS_PRICE;
    assert_eq!(chain.resource(user(2), "token_user", "SeenBalance"), Some(bcs(&700u128)));
    assert_eq!(chain.balance(b), 700);
    assert_eq!(chain.balance(user(2)), user2_before - 700 - fee);

    // After a call, Move reads the exact balance of any account, a funded one included.
    let record = Probe::recordCall { who: user(9) }.abi_encode();
    let look = chain.move_call(
        user(8),
        TOKEN_USER,
        "call_then_record_balance",
        vec![address_arg(probe), bcs(&0u128), bcs(&record), address_arg(user(9))],
    );
    let receipts = chain.run(&[look]);
    assert_eq!(move_receipt(&receipts[0]).status, MoveStatus::Success);
    let funded = chain.balance(user(9));
    assert_eq!(chain.resource(user(8), "token_user", "SeenBalance"), Some(bcs(&funded)));

    // Within a block: a Move transfer, then BALANCE in a later EVM transaction; an EVM transfer,
    // then `eth::balance` in a later Move transaction.
    let move_pays = chain.move_call(
        user(3),
        (FRAMEWORK, "eth"),
        "transfer",
        vec![address_arg(c), bcs(&1_234u128)],
    );
    let evm_reads = chain.call(user(4), probe, Probe::recordCall { who: c }.abi_encode());
    let evm_pays = chain.evm(user(5), TxKind::Call(c), 66, vec![]);
    let move_reads = chain.move_call(user(6), TOKEN_USER, "record_balance", vec![address_arg(c)]);
    let receipts = chain.run(&[move_pays, evm_reads, evm_pays, move_reads]);
    assert_eq!(move_receipt(&receipts[0]).status, MoveStatus::Success);
    assert!(evm_receipt(&receipts[1]).is_success() && evm_receipt(&receipts[2]).is_success());
    assert_eq!(seen(&mut chain), U256::from(1_234));
    assert_eq!(chain.resource(user(6), "token_user", "SeenBalance"), Some(bcs(&1_300u128)));
}

#[test]
fn move_calls_an_account_delegated_to_a_contract_and_a_delegated_account_sends_move() {
    let mut chain = Chain::new();
    let probe = chain.deploy(user(0), artifact_bytecode("Probe"));
    // An account delegates itself to the Probe's code (EIP-7702), sponsored by user 1, in a
    // block that also runs a Move call through it: Move's EVM call runs the delegated code on
    // the account's own storage.
    let key = keyed(7);
    let account = key.address();
    let set_code = chain.set_code((user(1), user(2), Vec::new()), &key, probe, 0);
    let record = Probe::recordCall { who: user(9) }.abi_encode();
    let through_move = chain.move_call(
        user(0),
        TOKEN_USER,
        "call",
        vec![address_arg(account), bcs(&0u128), bcs(&record)],
    );
    let receipts = chain.run(&[set_code, through_move]);
    assert!(evm_receipt(&receipts[0]).is_success(), "{:?}", receipts[0]);
    assert_eq!(move_receipt(&receipts[1]).status, MoveStatus::Success);
    let seen = U256::from_be_slice(&chain.read(account, ProbeReader::seenCall {}.abi_encode()));
    assert_eq!(seen, U256::from(chain.balance(user(9))), "recorded in the account's storage");
    // The delegated account, funded, sends a Move transaction: its delegation stays.
    chain.state.0.insert(StateKey::Balance(account), StateValue::Balance(ONE_ETH));
    chain.nonces.insert(account, 1);
    let paid_before = chain.balance(user(8));
    let pay = chain.move_call(
        account,
        (FRAMEWORK, "eth"),
        "transfer",
        vec![address_arg(user(8)), bcs(&5u128)],
    );
    let receipts = chain.run(&[pay]);
    assert_eq!(move_receipt(&receipts[0]).status, MoveStatus::Success);
    assert_eq!(chain.balance(user(8)), paid_before + 5);
    // The Probe's own storage was not written: the code ran on the account's.
    let probes = U256::from_be_slice(&chain.read(probe, ProbeReader::seenCall {}.abi_encode()));
    assert_eq!(probes, U256::ZERO);
    let header = chain.state.0.get(&StateKey::Account(account)).cloned();
    let delegation = revm::bytecode::Bytecode::new_eip7702(probe);
    assert_eq!(
        header,
        Some(StateValue::Account { nonce: 2, code_hash: delegation.hash_slow() }),
        "nonce 2 (the authorization and the transfer), still delegated"
    );
}

#[test]
fn nesting_beyond_one_crossing_is_refused_with_no_effect() {
    let mut chain = Chain::new();
    let caller = chain.deploy(user(0), artifact_bytecode("MoveCaller"));

    // EVM -> Move -> EVM: the Move function's call into the EVM aborts with evm::ENO_EVM.
    let arguments = vec![Bytes::from(address_arg(caller))];
    let try_call = MoveCaller::tryCallMoveCall {
        module: EXAMPLES,
        name: "token_user".to_owned(),
        functionName: "call_back".to_owned(),
        arguments,
    };
    let tx = chain.call(user(1), caller, try_call.abi_encode());
    let receipts = chain.run(&[tx]);
    assert!(!MoveCaller::tryCallMoveCall::abi_decode_returns(output(&receipts[0])).unwrap());
    let error = chain.read(caller, MoveCaller::lastErrorCall {}.abi_encode());
    let error = MoveCaller::lastErrorCall::abi_decode_returns(&error).unwrap();
    let aborted = IMove::MoveAborted::abi_decode(&error).unwrap();
    assert_eq!(
        (aborted.location.as_str(), aborted.code),
        ("0x0000000000000000000000000000000000000001::evm", 1)
    );

    // Move -> EVM -> Move: the inner precompile call fails with REENTRANCY, and the Move call
    // it would have made (amm::faucet for the contract) does not happen.
    let faucet = MoveCaller::tryCallMoveCall {
        module: EXAMPLES,
        name: "amm".to_owned(),
        functionName: "faucet".to_owned(),
        arguments: vec![Bytes::from(bcs(&5u128)), Bytes::from(bcs(&5u128))],
    }
    .abi_encode();
    let tx = chain.move_call(
        user(2),
        TOKEN_USER,
        "call",
        vec![address_arg(caller), bcs(&0u128), bcs(&faucet)],
    );
    let receipts = chain.run(&[tx]);
    assert_eq!(move_receipt(&receipts[0]).status, MoveStatus::Success);
    let error = chain.read(caller, MoveCaller::lastErrorCall {}.abi_encode());
    let error = MoveCaller::lastErrorCall::abi_decode_returns(&error).unwrap();
    let failed = IMove::MoveFailed::abi_decode(&error).unwrap();
    assert_eq!(failed.status, "REENTRANCY");
    assert_eq!(chain.resource(caller, "amm", "Holdings"), None);
}

#[test]
fn a_solidity_contract_swaps_on_a_move_amm_and_uses_the_amount_returned() {
    let mut chain = Chain::new();
    let mut creation = artifact_bytecode("AmmTrader");
    creation.extend(AmmTrader::constructorCall { amm_: EXAMPLES }.abi_encode());
    let trader = chain.deploy(user(0), creation);
    let pool = user(7);
    let create_pool =
        chain.move_call(pool, AMM, "create_pool", vec![bcs(&1_000_000u128), bcs(&1_000_000u128)]);
    let fund = chain.call(user(0), trader, AmmTrader::fundCall { a: 1_000, b: 0 }.abi_encode());
    let swap = chain.call(
        user(0),
        trader,
        AmmTrader::swapCall { pool, amountIn: 100, minOut: 90 }.abi_encode(),
    );
    let too_greedy = chain.call(
        user(1),
        trader,
        AmmTrader::swapCall { pool, amountIn: 100, minOut: 1_000 }.abi_encode(),
    );
    let receipts = chain.run(&[create_pool, fund, swap, too_greedy]);
    assert_eq!(move_receipt(&receipts[0]).status, MoveStatus::Success);
    assert!(evm_receipt(&receipts[1]).is_success());
    // 100 × 997 × 1e6 / (1e6 × 1000 + 100 × 997) = 99.
    let bought = AmmTrader::swapCall::abi_decode_returns(output(&receipts[2])).unwrap();
    assert_eq!(bought, 99);
    let swapped = evm_receipt(&receipts[2])
        .logs()
        .iter()
        .find_map(|log| AmmTrader::Swapped::decode_log_data(&log.data).ok())
        .expect("Swapped was emitted");
    assert_eq!((swapped.amountIn, swapped.amountOut), (100, 99));
    // The slippage check in Move reverts the whole Solidity call.
    match evm_receipt(&receipts[3]) {
        ExecutionResult::Revert { output, .. } => {
            let aborted = IMove::MoveAborted::abi_decode(output).unwrap();
            assert_eq!((aborted.location, aborted.code), (format!("{EXAMPLES}::amm"), 4));
        }
        other => panic!("the greedy swap must revert: {other:?}"),
    }
    let total = chain.read(trader, AmmTrader::totalBoughtCall {}.abi_encode());
    assert_eq!(U256::from_be_slice(&total), U256::from(99));
    let holdings = chain.read(trader, AmmTrader::holdingsCall {}.abi_encode());
    let holdings = AmmTrader::holdingsCall::abi_decode_returns(&holdings).unwrap();
    assert_eq!((holdings.a, holdings.b), (900, 99));
    let mut pool_reserves = bcs(&1_000_100u128);
    pool_reserves.extend(bcs(&(1_000_000u128 - 99)));
    assert_eq!(chain.resource(pool, "amm", "Pool"), Some(pool_reserves));
}

#[test]
fn random_mixed_blocks_run_the_same_in_parallel_with_a_publish_in_the_middle() {
    let mut chain = Chain::new();
    let token = chain.deploy_token(user(0));
    let caller = chain.deploy(user(0), artifact_bytecode("MoveCaller"));
    chain.hand_out(token, 8);

    let counter = Address::repeat_byte(0xc0);
    let modules: Vec<Vec<u8>> =
        compile_move(&["move-executor/testkit/example.move"], "example", counter)
            .into_iter()
            .map(|(_name, bytes)| bytes)
            .collect();
    chain.state.0.insert(StateKey::Balance(counter), StateValue::Balance(1_000 * ONE_ETH));

    let mut random = duet_bench_kit::SplitMix(7);
    for round in 0..3 {
        let mut block = Vec::new();
        for index in 0..120 {
            if round == 0 && index == 60 {
                // A publish mid-block: later transactions of both VMs call the new module.
                block.push(chain.move_tx(
                    counter,
                    MovePayload::ModuleBundle(modules.clone()),
                    5_000_000,
                ));
            }
            let from = user(random.below(8));
            let to = user(random.below(8));
            // Three keyed accounts delegate (EIP-7702) to the Move-calling contract, the token,
            // or nothing, and are called from both VMs.
            let transaction = match random.below(9) {
                6 => {
                    let code_of = [caller, token, Address::ZERO][random.below(3) as usize];
                    let signer = keyed(random.below(3));
                    chain.set_code((from, to, Vec::new()), &signer, code_of, random.below(3))
                }
                7 => {
                    let data = Token::transferCall { to, value: U256::from(1) }.abi_encode();
                    let target = keyed(random.below(3)).address();
                    chain.move_call(
                        from,
                        TOKEN_USER,
                        "call",
                        vec![address_arg(target), bcs(&0u128), bcs(&data)],
                    )
                }
                8 => {
                    let try_call = MoveCaller::tryCallMoveCall {
                        module: FRAMEWORK,
                        name: "eth".to_owned(),
                        functionName: "transfer".to_owned(),
                        arguments: vec![Bytes::from(to.to_vec()), Bytes::from(bcs(&1u128))],
                    };
                    chain.call(from, keyed(random.below(3)).address(), try_call.abi_encode())
                }
                0 => chain.move_call(
                    from,
                    (FRAMEWORK, "eth"),
                    "transfer",
                    vec![address_arg(to), bcs(&(1 + u128::from(random.below(1_000))))],
                ),
                1 => chain.call(
                    from,
                    token,
                    Token::transferCall { to, value: U256::from(random.below(50)) }.abi_encode(),
                ),
                2 => chain.move_call(
                    from,
                    TOKEN_USER,
                    "pay",
                    vec![address_arg(token), address_arg(to), bcs(&u128::from(random.below(50)))],
                ),
                3 => {
                    let try_call = MoveCaller::tryCallMoveCall {
                        module: if index > 60 || round > 0 { counter } else { EXAMPLES },
                        name: if index > 60 || round > 0 { "counter" } else { "amm" }.to_owned(),
                        functionName: if index > 60 || round > 0 { "increment" } else { "faucet" }
                            .to_owned(),
                        arguments: if index > 60 || round > 0 {
                            vec![]
                        } else {
                            vec![Bytes::from(bcs(&1u128)), Bytes::from(bcs(&1u128))]
                        },
                    };
                    chain.call(from, caller, try_call.abi_encode())
                }
                4 => chain.evm(from, TxKind::Call(to), u128::from(random.below(10_000)), vec![]),
                _ => chain.move_call(from, TOKEN_USER, "record_balance", vec![address_arg(to)]),
            };
            block.push(transaction);
        }
        let receipts = chain.run(&block);
        let move_successes = receipts
            .iter()
            .filter(|receipt| matches!(receipt, DuetReceipt::Move(receipt) if receipt.is_success()))
            .count();
        assert!(move_successes > 40, "round {round}: {move_successes} Move successes");
    }
    // The shared counter module was called from Solidity after it was published.
    assert!(chain.state.resource(caller, &format!("{counter}::counter::Counter")).is_some());
    // Authorizations with the right nonce were applied: keyed accounts moved on their nonces.
    let moved = (0..3).filter(|index| chain.nonce(keyed(*index).address()) > 0).count();
    assert!(moved > 0, "no authorization applied");
}

/// Random contracts ([`testkit::random_contracts`]), some moving their own ETH with Move's
/// `eth::transfer` through the precompile, called with value, in blocks with Move transfers into
/// them and between users: the parallel output equals the sequential one, block after block.
/// The blocks come from fixed seeds; `DUET_RANDOM_CONTRACT_BLOCKS` runs more of them.
#[test]
fn random_contracts_with_move_transfers_run_the_same_in_parallel() {
    use testkit::random_contracts::{pick, random_blocks, random_deployment, USERS};
    random_blocks(
        Chain::new,
        |chain, random, from, value, contracts| {
            let to = if contracts.is_empty() || random.below(2) == 0 {
                user(random.below(USERS))
            } else {
                pick(random, contracts)
            };
            match random.below(5) {
                0 => random_deployment(random, contracts, true, |code| chain.create(from, code)),
                1 => chain.move_call(
                    from,
                    (FRAMEWORK, "eth"),
                    "transfer",
                    vec![address_arg(to), bcs(&value)],
                ),
                _ => chain.evm(from, TxKind::Call(to), value, Vec::new()),
            }
        },
        // `run` asserts that parallel and sequential outputs are identical.
        Chain::run,
    );
}

/// `duet::abi` encodes as solc does (alloy's encoding of the same values), decodes what solc
/// encodes, and refuses malformed data with its own abort codes.
#[test]
fn move_encodes_and_decodes_the_solidity_abi_as_solc_does_and_refuses_malformed_data() {
    use alloy_sol_types::SolValue;
    let mut chain = Chain::new();
    let checker = Address::repeat_byte(0xab);
    chain
        .state
        .publish(checker, compile_move(&["evm-bridge/tests/abi_check.move"], "abi_check", checker));
    let codec = (checker, "codec");
    let who = Address::repeat_byte(0x42);
    // 40 bytes: a word and a padded one; 2 bytes of UTF-8.
    let data: Vec<u8> = (1..=40).collect();
    let values = (U256::from(u128::MAX - 5), who, true, Bytes::from(data.clone()), "hé".to_owned());
    let solc = values.abi_encode_params();
    let arguments = |encoded: &[u8]| {
        vec![
            bcs(&encoded.to_vec()),
            bcs(&(u128::MAX - 5)),
            address_arg(who),
            bcs(&true),
            bcs(&data),
            bcs(&"hé".as_bytes().to_vec()),
        ]
    };
    let encode = chain.move_call(user(2), codec, "encode", arguments(&[])[1..].to_vec());
    let receipts = chain.run(&[encode]);
    assert_eq!(move_receipt(&receipts[0]).status, MoveStatus::Success);
    let stored = chain.state.resource(user(2), &format!("{checker}::codec::Encoded")).unwrap();
    assert_eq!(bcs::from_bytes::<Vec<u8>>(&stored).unwrap(), solc, "Move's encoding is solc's");

    let abi = format!("{FRAMEWORK}::abi");
    let word = |index: usize| index * 32;
    let mut dirty_address = solc.clone();
    dirty_address[word(1)] = 1;
    let mut two = solc.clone();
    two[word(2) + 31] = 2;
    let mut unaligned = solc.clone();
    unaligned[word(3) + 31] += 1;
    let mut too_long = solc.clone();
    too_long[word(5) + 31] = 200; // the bytes' length word: past the end
    let cases: [(&str, Vec<u8>, MoveStatus); 6] = [
        ("solc's encoding", solc.clone(), MoveStatus::Success),
        (
            "high bytes in an address",
            dirty_address,
            MoveStatus::Aborted { location: abi.clone(), code: 1 },
        ),
        ("a bool of 2", two, MoveStatus::Aborted { location: abi.clone(), code: 1 }),
        (
            "an offset not a multiple of 32",
            unaligned,
            MoveStatus::Aborted { location: abi.clone(), code: 1 },
        ),
        ("a length past the end", too_long, MoveStatus::Aborted { location: abi.clone(), code: 2 }),
        (
            "cut short",
            solc[..solc.len() - 32].to_vec(),
            MoveStatus::Aborted { location: abi.clone(), code: 2 },
        ),
    ];
    for (case, encoded, expected) in cases {
        let decode = chain.move_call(user(2), codec, "decode", arguments(&encoded));
        let receipts = chain.run(&[decode]);
        assert_eq!(move_receipt(&receipts[0]).status, expected, "{case}");
    }
    let too_few = chain.move_call(user(2), codec, "too_few", vec![]);
    let receipts = chain.run(&[too_few]);
    assert_eq!(move_receipt(&receipts[0]).status, MoveStatus::Aborted { location: abi, code: 4 });
}

/// The AMM quotes at the sizes 18-decimal assets have, where the product of two amounts passes
/// 2^128, exactly as 256-bit arithmetic gives it; `mul_div` itself is checked against U256 on
/// the edges.
#[test]
fn the_move_amm_quotes_amounts_of_18_decimal_assets_exactly() {
    let mut chain = Chain::new();
    let pool = user(7);
    let reserve = 1_000_000 * ONE_ETH; // a million tokens: 10^24
    let create_pool =
        chain.move_call(pool, AMM, "create_pool", vec![bcs(&reserve), bcs(&(reserve / 2))]);
    assert_eq!(move_receipt(&chain.run(&[create_pool])[0]).status, MoveStatus::Success);
    let call = |function: &str, arguments: Vec<Vec<u8>>| {
        duet_evm::call_data(&EntryFunction {
            module_address: EXAMPLES,
            module_name: "amm".to_owned(),
            function: function.to_owned(),
            type_arguments: vec![],
            arguments,
        })
    };
    let quote = |chain: &mut Chain, function: &str, arguments: Vec<Vec<u8>>| {
        let tx = chain.call(user(1), MOVE_CALL_ADDRESS, call(function, arguments));
        let receipts = chain.run(&[tx]);
        match evm_receipt(&receipts[0]) {
            ExecutionResult::Success { output: Output::Call(bytes), .. } => {
                let returned = IMove::callCall::abi_decode_returns(bytes).unwrap();
                Ok(bcs::from_bytes::<u128>(&returned[0]).unwrap())
            }
            ExecutionResult::Revert { output, .. } => {
                let aborted = IMove::MoveAborted::abi_decode(output).unwrap();
                Err(aborted.code)
            }
            other => panic!("{other:?}"),
        }
    };
    let exact = |x: u128, y: u128, z: u128| {
        let quotient = U256::from(x) * U256::from(y) / U256::from(z);
        u128::try_from(quotient).map_err(|_| 5)
    };
    let thousand = 1_000 * ONE_ETH;
    let with_fee = thousand * 997;
    let expected = exact(with_fee, reserve / 2, reserve * 1000 + with_fee).unwrap();
    assert_eq!(
        quote(&mut chain, "quote_a_for_b", vec![address_arg(pool), bcs(&thousand)]),
        Ok(expected)
    );
    let max = u128::MAX;
    for (x, y, z) in [
        (max, max, max),
        (max, max - 1, max),
        (max, 3, 7),
        (with_fee, reserve, 3),
        ((1 << 127) + 1, (1 << 127) + 3, (1 << 127) + 5),
        (max, max, max - 1),
        (12, 5, 0),
    ] {
        let expected = if z == 0 { Err(6) } else { exact(x, y, z) };
        let got = quote(&mut chain, "mul_div", vec![bcs(&x), bcs(&y), bcs(&z)]);
        assert_eq!(got, expected, "{x} × {y} / {z}");
    }
}

#[test]
fn a_move_transactions_trace_holds_the_evm_calls_its_move_code_made() {
    use duet_evm::trace::{CallTraceConfig, FrameKind};
    let mut chain = Chain::new();
    let token = chain.deploy_token(user(0));
    let args = vec![address_arg(token), address_arg(user(1)), bcs(&300u128)];
    let pay = chain.move_call(user(0), TOKEN_USER, "pay", args.clone());
    let mut aborting = args;
    aborting.push(bcs(&77u64));
    let abort = chain.move_call(user(0), TOKEN_USER, "pay_then_abort", aborting);
    let block = [pay.clone(), abort.clone()];
    // The block run sequentially, traced with `config` if given: its output and traces.
    let run = |config: Option<CallTraceConfig>| {
        let evm = EvmVm::new(CHAIN_ID, block_env(chain.number));
        let evm = match config {
            Some(config) => evm.with_call_tracer(config),
            None => evm,
        };
        let vm = DuetVm::new(evm, Arc::clone(&chain.move_vm));
        let executor = duet_evm::MixedBlockExecutor::sequential(&vm);
        let output = executor.execute_block(&block, &chain.state).unwrap();
        (output, vm.evm().take_call_traces())
    };
    let config = CallTraceConfig { with_logs: true, ..CallTraceConfig::default() };
    let (output, traces) = run(Some(config));
    let receipts = output.results.iter().map(|result| match result {
        duet_block_stm::TransactionResult::Executed(receipt) => receipt,
        other => panic!("{other:?}"),
    });
    assert_eq!(traces.len(), 2);
    let selector = |signature: &str| alloy_primitives_selector(signature).to_vec();
    for ((trace, transaction), receipt) in traces.into_iter().zip(&block).zip(receipts) {
        let (DuetTransaction::Move(transaction), DuetReceipt::Move(receipt)) =
            (transaction, receipt)
        else {
            panic!("a Move transaction")
        };
        let frame = trace.unwrap();
        // Its own frame: the sender calling the Move entry address with the payload.
        assert_eq!((frame.kind, frame.from), (FrameKind::Call, user(0)));
        assert_eq!(frame.to, Some(duet_types::MOVE_ENTRY_ADDRESS));
        assert_eq!(frame.input.as_ref(), transaction.payload.encode().as_slice());
        assert_eq!((frame.gas, frame.gas_used), (MOVE_GAS_LIMIT, receipt.gas_used));
        // Under it, the token's balance read, the transfer and the balance read again, as
        // Move made them: the reads static calls from the zero address, the transfer a call
        // from the sender.
        let calls: Vec<_> =
            frame.calls.iter().map(|call| (call.kind, call.from, call.to)).collect();
        assert_eq!(
            calls,
            [
                (FrameKind::StaticCall, Address::ZERO, Some(token)),
                (FrameKind::Call, user(0), Some(token)),
                (FrameKind::StaticCall, Address::ZERO, Some(token)),
            ]
        );
        assert!(frame.calls[0].input.starts_with(&selector("balanceOf(address)")));
        assert!(frame.calls[1].input.starts_with(&selector("transfer(address,uint256)")));
        assert!(frame.calls.iter().all(|call| call.error.is_none() && call.gas_used > 0));
        if receipt.is_success() {
            // The transfer's Transfer log, where the token emitted it.
            assert_eq!(frame.error, None);
            let logs: Vec<_> = frame.calls.iter().map(|call| call.logs.len()).collect();
            assert_eq!(logs, [0, 1, 0]);
            assert_eq!(frame.calls[1].logs[0].log.address, token);
        } else {
            // Failed with its Move status, keeping no logs (as a failed frame keeps none).
            assert_eq!(frame.error, Some(receipt.status.to_string()));
            assert!(frame.error.as_ref().unwrap().contains("77"));
            assert!(frame.calls.iter().all(|call| call.logs.is_empty()));
        }
    }
    // Only the top call: the Move transaction's own frame.
    let (_, traces) = run(Some(CallTraceConfig { only_top_call: true, ..config }));
    assert_eq!(traces.len(), 2);
    for trace in traces {
        let frame = trace.unwrap();
        assert!(frame.calls.is_empty() && frame.gas_used > 0, "{frame:?}");
    }
    // Traced or not, the block runs the same.
    let (untraced, none) = run(None);
    assert!(none.is_empty());
    assert_eq!(untraced.results, output.results);
    assert_eq!(untraced.state_updates, output.state_updates);
}
