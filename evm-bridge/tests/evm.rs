//! Duet's EVM against plain revm: the same transactions, executed one by one by revm on its
//! in-memory database, and by Duet sequentially and in parallel, must give the same receipts and
//! the same state.

#[path = "../testkit/mod.rs"]
mod testkit;

use std::collections::BTreeMap;

use alloy_sol_types::{SolCall, SolConstructor};
use duet_block_stm::TransactionResult;
use duet_evm::{EvmError, EvmVm, Receipt};
use duet_types::{Address, Bytes, StateKey, StateValue, B256, U256};
use revm::context::result::InvalidTransaction;
use revm::context::TxEnv;
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::TxKind;
use revm::state::AccountInfo;
use revm::{Context, MainBuilder, MainContext};
use testkit::{
    artifact_bytecode, authorization, block_env, execute_every_way, plain_state, set_code, tx_env,
    user, Burner, Deployer, MemoryState, Pair, Probe, Spender, SpenderFactory, Token, CHAIN_ID,
    FEE_VAULT, ONE_ETH,
};

/// One chain, kept twice: in Duet's key space, and in plain revm's in-memory database.
struct Chain {
    duet: MemoryState,
    plain: CacheDB<EmptyDB>,
    nonces: BTreeMap<Address, u64>,
    number: u64,
}

impl Chain {
    fn with_funded_users(users: u64) -> Self {
        let mut chain = Self {
            duet: MemoryState::default(),
            plain: CacheDB::default(),
            nonces: BTreeMap::new(),
            number: 1,
        };
        for index in 0..users {
            chain.fund(user(index), 1_000 * ONE_ETH);
        }
        // The vault holds a little ETH from the start, like any live chain's.
        chain.fund(FEE_VAULT, 1);
        chain
    }

    fn fund(&mut self, address: Address, balance: u128) {
        self.duet.0.insert(StateKey::Balance(address), StateValue::Balance(balance));
        self.plain.insert_account_info(
            address,
            AccountInfo { balance: U256::from(balance), ..AccountInfo::default() },
        );
    }

    fn vm(&self) -> EvmVm {
        EvmVm::new(CHAIN_ID, block_env(self.number))
    }

    fn tx(
        &mut self,
        from: Address,
        kind: TxKind,
        value: u128,
        data: Vec<u8>,
        gas_limit: u64,
    ) -> TxEnv {
        let nonce = self.nonces.entry(from).or_default();
        *nonce += 1;
        tx_env(from, *nonce - 1, kind, value, data, gas_limit)
    }

    fn call(&mut self, from: Address, to: Address, data: Vec<u8>) -> TxEnv {
        self.tx(from, TxKind::Call(to), 0, data, 300_000)
    }

    fn deploy(&mut self, from: Address, code: Vec<u8>) -> (TxEnv, Address) {
        let nonce = self.nonces.get(&from).copied().unwrap_or(0);
        let tx = self.tx(from, TxKind::Create, 0, code, 3_000_000);
        (tx, from.create(nonce))
    }

    /// Executes a block every way, checks they agree, and applies it to both states.
    fn run(&mut self, block: &[TxEnv]) -> Vec<TransactionResult<Receipt, EvmError>> {
        self.run_with_stats(block).0
    }

    /// [`run`](Self::run), with the statistics of a two-thread parallel run.
    fn run_with_stats(
        &mut self,
        block: &[TxEnv],
    ) -> (Vec<TransactionResult<Receipt, EvmError>>, duet_block_stm::ExecutionStats) {
        let vm = self.vm();
        let plain: Vec<_> = block.iter().map(|tx| self.plain_transact(&vm, tx)).collect();

        let (sequential, two_thread_stats) = execute_every_way(&vm, block, &self.duet);
        for (index, (duet, plain)) in sequential.results.iter().zip(&plain).enumerate() {
            match (duet, plain) {
                (TransactionResult::Executed(duet), Ok(plain)) => {
                    assert_eq!(duet, plain, "receipt of transaction {index}");
                }
                (
                    TransactionResult::Rejected(EvmError::Invalid(duet)),
                    Err(revm::context::result::EVMError::Transaction(plain)),
                ) => {
                    assert_eq!(duet, plain, "rejection of transaction {index}");
                }
                (duet, plain) => panic!("transaction {index}: Duet {duet:?}, plain revm {plain:?}"),
            }
        }
        self.duet.apply(&sequential.state_updates);
        assert_eq!(self.duet.0, plain_state(&self.plain), "state after block {}", self.number);
        self.number += 1;
        (sequential.results, two_thread_stats)
    }
}

impl Chain {
    /// Plain revm runs `tx` on its in-memory database and commits it as Ethereum does: an
    /// account the transaction touched and left empty no longer exists (EIP-161; revm's
    /// `CacheDB` would keep it, which EIP-7702's refund for an existing authority tells apart).
    fn plain_transact(
        &mut self,
        vm: &EvmVm,
        tx: &TxEnv,
    ) -> Result<
        revm::context::result::ExecutionResult,
        revm::context::result::EVMError<std::convert::Infallible>,
    > {
        use revm::database::DatabaseCommit;
        use revm::ExecuteEvm;
        let mut evm = Context::mainnet()
            .with_db(&mut self.plain)
            .with_block(vm.block.clone())
            .with_cfg(vm.cfg().clone())
            .build_mainnet();
        let outcome = evm.transact(tx.clone())?;
        drop(evm);
        let mut state = outcome.state;
        let emptied: Vec<Address> = state
            .iter()
            .filter(|(_, account)| account.is_touched() && account.is_empty())
            .map(|(address, _)| *address)
            .collect();
        for address in &emptied {
            state.remove(address);
        }
        self.plain.commit(state);
        for address in emptied {
            self.plain
                .cache
                .accounts
                .insert(address, revm::database::DbAccount::new_not_existing());
        }
        Ok(outcome.result)
    }
}

fn executed(results: &[TransactionResult<Receipt, EvmError>]) -> usize {
    results
        .iter()
        .filter(
            |result| matches!(result, TransactionResult::Executed(receipt) if receipt.is_success()),
        )
        .count()
}

#[test]
fn eth_transfers_match_plain_revm() {
    let mut chain = Chain::with_funded_users(40);
    let block: Vec<TxEnv> = (0..300u64)
        .map(|index| {
            let from = user((index * 7) % 40);
            let to = user((index * 13 + 5) % 40);
            chain.tx(from, TxKind::Call(to), u128::from(index + 1) * 1_000, Vec::new(), 21_000)
        })
        .collect();
    let results = chain.run(&block);
    assert_eq!(executed(&results), 300);
    let vault = chain.duet.0[&StateKey::Balance(FEE_VAULT)].as_balance().unwrap();
    assert!(vault > 1, "the fee vault was paid priority fees");
}

#[test]
fn erc20_transfers_and_swaps_match_plain_revm() {
    let mut chain = Chain::with_funded_users(30);
    let owner = user(0);
    let supply = U256::from(10u128.pow(27));
    let token_code = |chain: &mut Chain, symbol: &str| {
        let mut code = artifact_bytecode("Token");
        code.extend(
            Token::constructorCall { name_: symbol.into(), symbol_: symbol.into(), supply }
                .abi_encode(),
        );
        chain.deploy(owner, code)
    };
    let (deploy_a, token_a) = token_code(&mut chain, "A");
    let (deploy_b, token_b) = token_code(&mut chain, "B");
    let mut pair_code = artifact_bytecode("Pair");
    pair_code.extend(Pair::constructorCall { token0_: token_a, token1_: token_b }.abi_encode());
    let (deploy_pair, pair) = chain.deploy(owner, pair_code);
    let setup = vec![deploy_a, deploy_b, deploy_pair];
    assert_eq!(executed(&chain.run(&setup)), 3);

    // Fund every user with both tokens and let them and the owner trade through the pair.
    let mut funding = Vec::new();
    for token in [token_a, token_b] {
        funding.push(chain.call(
            owner,
            token,
            Token::approveCall { spender: pair, value: U256::MAX }.abi_encode(),
        ));
        for index in 1..30 {
            let call = Token::transferCall { to: user(index), value: U256::from(10u128.pow(22)) };
            funding.push(chain.call(owner, token, call.abi_encode()));
        }
    }
    let liquidity = Pair::addLiquidityCall {
        amount0: U256::from(10u128.pow(24)),
        amount1: U256::from(10u128.pow(24)),
    };
    funding.push(chain.call(owner, pair, liquidity.abi_encode()));
    assert_eq!(executed(&chain.run(&funding)), funding.len());

    let mut trading = Vec::new();
    for index in 1..30u64 {
        for token in [token_a, token_b] {
            trading.push(chain.call(
                user(index),
                token,
                Token::approveCall { spender: pair, value: U256::MAX }.abi_encode(),
            ));
        }
    }
    for round in 0..200u64 {
        let trader = user(1 + round % 29);
        if round % 3 == 0 {
            let token_in = if round % 2 == 0 { token_a } else { token_b };
            let call = Pair::swapCall {
                tokenIn: token_in,
                amountIn: U256::from(10u128.pow(18) + u128::from(round)),
                to: trader,
            };
            trading.push(chain.call(trader, pair, call.abi_encode()));
        } else {
            let call = Token::transferCall {
                to: user(1 + (round * 11) % 29),
                value: U256::from(1_000 + round),
            };
            trading.push(chain.call(trader, token_a, call.abi_encode()));
        }
    }
    let results = chain.run(&trading);
    assert_eq!(executed(&results), trading.len());
    // Receipts: cumulative gas adds up, and each bloom holds its logs' addresses.
    let receipts: Vec<_> =
        duet_evm::block_receipts(&results).into_iter().map(Option::unwrap).collect();
    let total: u64 = receipts.iter().map(|receipt| receipt.gas_used).sum();
    assert_eq!(receipts.last().unwrap().cumulative_gas_used, total);
    for receipt in &receipts {
        assert!(!receipt.logs.is_empty(), "transfers and swaps emit events");
        for log in &receipt.logs {
            assert!(receipt
                .logs_bloom
                .contains_input(alloy_primitives::BloomInput::Raw(log.address.as_slice())));
        }
    }
}

#[test]
fn creations_self_destruction_reverts_and_out_of_gas_match_plain_revm() {
    let mut chain = Chain::with_funded_users(5);
    let (deploy_deployer, deployer) = chain.deploy(user(0), artifact_bytecode("Deployer"));
    let (deploy_burner, burner) = chain.deploy(user(0), artifact_bytecode("Burner"));
    assert_eq!(executed(&chain.run(&[deploy_deployer, deploy_burner])), 2);

    let block = vec![
        chain.call(user(1), deployer, Deployer::createCall { value: U256::from(7) }.abi_encode()),
        chain.call(
            user(2),
            deployer,
            Deployer::create2Call { value: U256::from(8), salt: B256::repeat_byte(1) }.abi_encode(),
        ),
        // The same salt and init code again: CREATE2 collides and the call reverts.
        chain.call(
            user(3),
            deployer,
            Deployer::create2Call { value: U256::from(8), salt: B256::repeat_byte(1) }.abi_encode(),
        ),
        chain.tx(
            user(4),
            TxKind::Call(deployer),
            ONE_ETH,
            Deployer::createAndDestroyCall { value: U256::from(1) }.abi_encode(),
            500_000,
        ),
        chain.call(user(1), burner, Burner::incrementCall {}.abi_encode()),
        chain.call(user(2), burner, Burner::failAfterWriteCall {}.abi_encode()),
        chain.tx(user(3), TxKind::Call(burner), 0, Burner::burnAllCall {}.abi_encode(), 100_000),
        chain.call(user(4), burner, Burner::incrementCall {}.abi_encode()),
    ];
    let results = chain.run(&block);
    let outcome = |index: usize| match &results[index] {
        TransactionResult::Executed(receipt) => receipt.clone(),
        other => panic!("transaction {index} was not executed: {other:?}"),
    };
    assert!(outcome(0).is_success() && outcome(1).is_success());
    assert!(!outcome(2).is_success(), "a CREATE2 collision fails");
    assert!(outcome(3).is_success());
    assert!(matches!(outcome(5), Receipt::Revert { .. }));
    assert!(matches!(outcome(6), Receipt::Halt { .. }), "out of gas halts");
    assert_eq!(outcome(6).tx_gas_used(), 100_000, "a halt uses all the gas");
    let counter = chain.duet.0.get(&StateKey::Storage { address: burner, slot: B256::ZERO });
    assert_eq!(counter, Some(&StateValue::Slot(U256::from(2))), "only the two increments count");
    // The child destroyed in its creating transaction is gone, code and all.
    let destroyed = deployer.create(3);
    assert!(!chain.duet.0.contains_key(&StateKey::Account(destroyed)));
}

#[test]
fn set_code_transactions_delegate_accounts_as_plain_revm_does() {
    let mut chain = Chain::with_funded_users(4);
    let (deploy_burner, burner) = chain.deploy(user(0), artifact_bytecode("Burner"));
    assert_eq!(executed(&chain.run(&[deploy_burner])), 1);
    // An account with a key, funded: it delegates itself to the Burner's code.
    let owner = alloy_signer_local::PrivateKeySigner::from_bytes(&B256::repeat_byte(0x42)).unwrap();
    let account = owner.address();
    chain.fund(account, ONE_ETH);
    let increment = Burner::incrementCall {}.abi_encode();
    let block = vec![
        // Another account sends the authorization (account nonce 0) and calls the account,
        // which runs the Burner's code on its own storage.
        set_code(
            chain.call(user(1), account, increment.clone()),
            vec![authorization(&owner, CHAIN_ID, burner, 0)],
        ),
        // Anyone's call runs it too.
        chain.call(user(2), account, increment.clone()),
        // The delegated account still sends transactions (its nonce is 1 after the
        // authorization).
        set_code(
            {
                chain.nonces.insert(account, 1);
                chain.tx(account, TxKind::Call(user(0)), 5, Vec::new(), 100_000)
            },
            // An authorization for another chain, and one with a used nonce: both skipped.
            vec![
                authorization(&owner, CHAIN_ID + 1, Address::ZERO, 2),
                authorization(&owner, 0, Address::ZERO, 0),
            ],
        ),
        // Authorized for any chain (chain id 0), to the zero address: the delegation ends.
        set_code(
            chain.call(user(3), user(0), Vec::new()),
            vec![authorization(&owner, 0, Address::ZERO, 2)],
        ),
        // Now a call to the account runs no code.
        chain.call(user(2), account, increment),
        // A set-code transaction without authorizations is invalid.
        set_code(chain.call(user(1), user(0), Vec::new()), Vec::new()),
    ];
    let results = chain.run(&block);
    assert_eq!(executed(&results), 5, "{results:?}");
    let counter = chain.duet.0.get(&StateKey::Storage { address: account, slot: B256::ZERO });
    assert_eq!(counter, Some(&StateValue::Slot(U256::from(2))), "two calls while delegated");
    let header = chain.duet.0.get(&StateKey::Account(account));
    assert_eq!(
        header,
        Some(&StateValue::Account { nonce: 3, code_hash: duet_evm::EVM_EMPTY_CODE_HASH }),
        "nonce 3 (two authorizations and a transaction), no code"
    );
    // The delegation's code stays in the state by its hash, as any code does.
    let delegation = revm::bytecode::Bytecode::new_eip7702(burner);
    let stored = chain.duet.0.get(&StateKey::Code(delegation.hash_slow()));
    assert_eq!(stored, Some(&StateValue::Bytes(delegation.original_bytes())));

    // An account delegating itself in a transaction whose call reverts: the delegation stays
    // (authorizations apply before the call), the call's write does not.
    let itself =
        alloy_signer_local::PrivateKeySigner::from_bytes(&B256::repeat_byte(0x43)).unwrap();
    chain.fund(itself.address(), ONE_ETH);
    let reverting =
        chain.call(itself.address(), itself.address(), Burner::failAfterWriteCall {}.abi_encode());
    // Its own transaction takes nonce 0 first: the authorization is for nonce 1.
    let block = vec![
        set_code(reverting, vec![authorization(&itself, CHAIN_ID, burner, 1)]),
        chain.call(user(3), itself.address(), Burner::incrementCall {}.abi_encode()),
    ];
    let results = chain.run(&block);
    assert!(
        matches!(&results[0], TransactionResult::Executed(Receipt::Revert { .. })),
        "{results:?}"
    );
    assert_eq!(executed(&results), 1, "{results:?}");
    let header = chain.duet.0.get(&StateKey::Account(itself.address()));
    assert_eq!(
        header,
        Some(&StateValue::Account { nonce: 2, code_hash: delegation.hash_slow() }),
        "delegated by its own reverted transaction"
    );
    let counter =
        chain.duet.0.get(&StateKey::Storage { address: itself.address(), slot: B256::ZERO });
    assert_eq!(counter, Some(&StateValue::Slot(U256::from(1))), "only the later increment");
}

#[test]
fn invalid_transactions_are_rejected_and_change_nothing() {
    let mut chain = Chain::with_funded_users(3);
    let good = chain.tx(user(0), TxKind::Call(user(1)), 5, Vec::new(), 21_000);
    let mut replayed = good.clone(); // nonce too low once `good` has run
    replayed.value = U256::from(6);
    let mut gap = chain.tx(user(1), TxKind::Call(user(2)), 5, Vec::new(), 21_000);
    gap.nonce += 5; // nonce too high
    let broke = Address::repeat_byte(0x77);
    let poor = TxEnv {
        caller: broke,
        ..chain.tx(broke, TxKind::Call(user(0)), ONE_ETH, Vec::new(), 21_000)
    };
    let mut wrong_chain = chain.tx(user(2), TxKind::Call(user(0)), 5, Vec::new(), 21_000);
    wrong_chain.chain_id = Some(1);
    let results = chain.run(&[good, replayed, gap, poor, wrong_chain]);
    assert!(matches!(results[0], TransactionResult::Executed(_)));
    assert!(matches!(
        results[1],
        TransactionResult::Rejected(EvmError::Invalid(InvalidTransaction::NonceTooLow { .. }))
    ));
    assert!(matches!(
        results[2],
        TransactionResult::Rejected(EvmError::Invalid(InvalidTransaction::NonceTooHigh { .. }))
    ));
    assert!(matches!(results[3], TransactionResult::Rejected(EvmError::Invalid(_))));
    assert!(matches!(
        results[4],
        TransactionResult::Rejected(EvmError::Invalid(InvalidTransaction::InvalidChainId))
    ));
    assert!(
        !chain.duet.0.contains_key(&StateKey::Account(broke)),
        "a rejected transaction changes nothing"
    );
}

#[test]
fn fees_and_payments_to_one_account_do_not_conflict() {
    // 200 senders each pay the same shop; every one pays the fee vault too.
    let mut chain = Chain::with_funded_users(201);
    let shop = user(200);
    let block: Vec<TxEnv> = (0..200u64)
        .map(|index| {
            chain.tx(user(index), TxKind::Call(shop), 1_000 + u128::from(index), Vec::new(), 21_000)
        })
        .collect();
    let (results, stats) = chain.run_with_stats(&block);
    assert_eq!(executed(&results), 200);
    assert_eq!(stats.validation_aborts, 0, "credits are deltas: {stats:?}");
    assert_eq!(stats.dependency_waits, 0, "{stats:?}");
    assert_eq!(stats.executions, 200, "{stats:?}");
}

#[test]
fn an_aborted_transaction_does_not_hold_up_the_fee_payers_after_it() {
    // 300 payments from 300 senders, every one paying the fee vault. Ten of them pay the next
    // transaction's sender, which spends it at once: that one reads a balance its neighbour is
    // writing, and is often aborted. The vault's credits must not make the rest wait on it.
    let mut chain = Chain::with_funded_users(301);
    let block: Vec<TxEnv> = (0..300u64)
        .map(|index| {
            let (to, value) = if index % 30 == 0 {
                (user(index + 1), 900 * ONE_ETH)
            } else if index % 30 == 1 {
                (user(300), 1_500 * ONE_ETH)
            } else {
                (user(300), 1)
            };
            chain.tx(user(index), TxKind::Call(to), value, Vec::new(), 21_000)
        })
        .collect();
    let (results, stats) = chain.run_with_stats(&block);
    assert_eq!(executed(&results), 300);
    assert!(stats.executions < 330, "a few re-executions, not the rest of the block: {stats:?}");
}

#[test]
fn balances_read_by_contracts_are_exact() {
    let mut chain = Chain::with_funded_users(6);
    let (deploy_probe, probe) = chain.deploy(user(0), artifact_bytecode("Probe"));
    assert_eq!(executed(&chain.run(&[deploy_probe])), 1);
    let fresh = Address::repeat_byte(0x42);
    let block = vec![
        // Credits to the shop (user 5) and the vault, then contracts reading both balances.
        chain.tx(user(1), TxKind::Call(user(5)), 777, Vec::new(), 21_000),
        chain.call(user(2), probe, Probe::recordCall { who: user(5) }.abi_encode()),
        chain.tx(user(3), TxKind::Call(user(5)), 555, Vec::new(), 21_000),
        chain.call(user(4), probe, Probe::recordCoinbaseCall {}.abi_encode()),
        chain.tx(
            user(1),
            TxKind::Call(probe),
            3,
            Probe::payAndRecordCall { to: fresh }.abi_encode(),
            100_000,
        ),
        chain.call(user(2), probe, Probe::recordCall { who: fresh }.abi_encode()),
        // A payment to an account that does not exist yet costs the new-account gas.
        chain.tx(user(3), TxKind::Call(Address::repeat_byte(0x43)), 1, Vec::new(), 21_000),
    ];
    let results = chain.run(&block);
    assert_eq!(executed(&results), block.len());
    let seen = chain.duet.0.get(&StateKey::Storage { address: probe, slot: B256::ZERO });
    assert_eq!(
        seen,
        Some(&StateValue::Slot(U256::from(3))),
        "the fresh account's balance, exactly"
    );
}

/// One random transaction of a mixed block.
#[derive(Clone, Debug)]
enum Action {
    /// ETH from a user to a user (possibly itself), possibly more than it has.
    Pay { from: u64, to: u64, value: u128 },
    /// Tokens from a user to a user, possibly more than it has (the transfer reverts).
    Transfer { from: u64, to: u64, amount: u128 },
    /// A transaction with a nonce from the future, rejected.
    Gap { from: u64 },
    /// A contract reads the fee vault's balance (`BALANCE(COINBASE)`), which every transaction
    /// before it credited.
    ReadVault { from: u64 },
    /// A user sponsors a set-code transaction: keyed account `keyed` authorizes (for account
    /// nonce `nonce`, right or not) running the Probe's code (`target` 0), the token's (1), or
    /// none (2, ending a delegation).
    Delegate { from: u64, keyed: u8, target: u8, nonce: u64 },
    /// A user calls a keyed account with the Probe's `record`: its delegated code, if any, runs.
    CallKeyed { from: u64, keyed: u8, who: u64 },
}

fn action_strategy(users: u64) -> impl proptest::strategy::Strategy<Value = Action> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..users, 0..users, 0..=2 * ONE_ETH).prop_map(|(from, to, value)| Action::Pay { from, to, value }),
        4 => (0..users, 0..users, 0..=2_000u128).prop_map(|(from, to, amount)| Action::Transfer { from, to, amount }),
        1 => (0..users).prop_map(|from| Action::Gap { from }),
        1 => (0..users).prop_map(|from| Action::ReadVault { from }),
        2 => (0..users, 0..3u8, 0..3u8, 0..3u64).prop_map(|(from, keyed, target, nonce)| Action::Delegate { from, keyed, target, nonce }),
        2 => (0..users, 0..3u8, 0..users).prop_map(|(from, keyed, who)| Action::CallKeyed { from, keyed, who }),
    ]
}

/// Keyed account `index` of the random blocks: it signs authorizations.
fn keyed(index: u8) -> alloy_signer_local::PrivateKeySigner {
    alloy_signer_local::PrivateKeySigner::from_bytes(&B256::repeat_byte(0x50 + index)).unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 24, ..proptest::test_runner::Config::default() })]

    /// Random mixes of ETH payments, token transfers (some reverting), overdrafts, nonce gaps,
    /// reads of the fee vault's balance, and EIP-7702 delegations (some with a wrong nonce) of
    /// accounts that others then call, with many transactions per sender: Duet sequential, Duet
    /// parallel and plain revm agree.
    #[test]
    fn random_mixed_blocks_match_plain_revm(actions in proptest::collection::vec(action_strategy(6), 1..120)) {
        let mut chain = Chain::with_funded_users(6);
        // Users hold 1000 ETH each; give them tokens to move around.
        let mut code = artifact_bytecode("Token");
        code.extend(Token::constructorCall { name_: "T".into(), symbol_: "T".into(), supply: U256::from(6_000u64) }.abi_encode());
        let (deploy, token) = chain.deploy(user(0), code);
        let (deploy_probe, probe) = chain.deploy(user(0), artifact_bytecode("Probe"));
        let mut setup = vec![deploy, deploy_probe];
        for index in 1..6 {
            setup.push(chain.call(user(0), token, Token::transferCall { to: user(index), value: U256::from(1_000u64) }.abi_encode()));
        }
        chain.run(&setup);
        let block: Vec<TxEnv> = actions
            .iter()
            .map(|action| match *action {
                Action::Pay { from, to, value } => chain.tx(user(from), TxKind::Call(user(to)), value * 600, Vec::new(), 21_000),
                Action::Transfer { from, to, amount } => {
                    let call = Token::transferCall { to: user(to), value: U256::from(amount) };
                    chain.call(user(from), token, call.abi_encode())
                }
                Action::Gap { from } => {
                    let mut tx = chain.tx(user(from), TxKind::Call(user(0)), 1, Vec::new(), 21_000);
                    tx.nonce += 3;
                    // The gap transaction never runs: later transactions of the sender keep their nonces.
                    *chain.nonces.get_mut(&user(from)).unwrap() -= 1;
                    tx
                }
                Action::ReadVault { from } => {
                    chain.call(user(from), probe, Probe::recordCoinbaseCall {}.abi_encode())
                }
                Action::Delegate { from, keyed: index, target, nonce } => {
                    let code_of = [probe, token, Address::ZERO][usize::from(target)];
                    let signed = authorization(&keyed(index), CHAIN_ID, code_of, nonce);
                    set_code(chain.call(user(from), user(0), Vec::new()), vec![signed])
                }
                Action::CallKeyed { from, keyed: index, who } => {
                    let record = Probe::recordCall { who: user(who) }.abi_encode();
                    chain.call(user(from), keyed(index).address(), record)
                }
            })
            .collect();
        // `run` asserts parallel == sequential == plain revm, receipts and state.
        chain.run(&block);
    }
}

mod signed {
    use super::*;
    use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope, TxLegacy};
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;
    use duet_evm::{recover, recover_block, RecoveryError};

    fn signer(seed: u8) -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&B256::repeat_byte(seed)).expect("a valid key")
    }

    fn sign<T: SignableTransaction<alloy_signer::Signature>>(
        key: &PrivateKeySigner,
        tx: T,
    ) -> TxEnvelope
    where
        TxEnvelope: From<alloy_consensus::Signed<T>>,
    {
        let signature = key.sign_hash_sync(&tx.signature_hash()).expect("signing works");
        TxEnvelope::from(tx.into_signed(signature))
    }

    #[test]
    fn senders_are_recovered_in_parallel_and_the_block_matches_plain_revm() {
        let keys: Vec<_> = (1..=4).map(signer).collect();
        let mut chain = Chain::with_funded_users(1);
        for key in &keys {
            chain.fund(key.address(), 10 * ONE_ETH);
        }
        let mut envelopes = Vec::new();
        for round in 0..30u64 {
            for (index, key) in keys.iter().enumerate() {
                let to = TxKind::Call(keys[(index + 1) % keys.len()].address());
                let envelope = if index % 2 == 0 {
                    sign(
                        key,
                        TxLegacy {
                            chain_id: Some(CHAIN_ID),
                            nonce: round,
                            gas_price: 3_000_000_000,
                            gas_limit: 21_000,
                            to,
                            value: U256::from(1_000 + round),
                            input: Bytes::new(),
                        },
                    )
                } else {
                    sign(
                        key,
                        TxEip1559 {
                            chain_id: CHAIN_ID,
                            nonce: round,
                            gas_limit: 21_000,
                            max_fee_per_gas: 3_000_000_000,
                            max_priority_fee_per_gas: 1_000_000_000,
                            to,
                            value: U256::from(2_000 + round),
                            ..TxEip1559::default()
                        },
                    )
                };
                envelopes.push(envelope);
            }
        }
        let recovered: Vec<TxEnv> = recover_block(&envelopes, 3)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("all signatures valid");
        for (index, tx) in recovered.iter().enumerate() {
            assert_eq!(tx.caller, keys[index % keys.len()].address(), "transaction {index}");
        }
        assert_eq!(
            recovered,
            recover_block(&envelopes, 1).into_iter().collect::<Result<Vec<_>, _>>().unwrap()
        );
        let results = chain.run(&recovered);
        assert_eq!(executed(&results), recovered.len());
    }

    #[test]
    fn a_corrupted_signature_does_not_recover_the_signer() {
        let key = signer(9);
        let tx = TxEip1559 {
            chain_id: CHAIN_ID,
            gas_limit: 21_000,
            max_fee_per_gas: 1,
            ..TxEip1559::default()
        };
        let good = sign(&key, tx.clone());
        assert_eq!(recover(&good).unwrap().caller, key.address());
        let TxEnvelope::Eip1559(signed) = good else { unreachable!() };
        let signature = signed.signature().with_parity(!signed.signature().v());
        let flipped = TxEnvelope::from(tx.into_signed(signature));
        match recover(&flipped) {
            Ok(env) => assert_ne!(env.caller, key.address()),
            Err(error) => assert_eq!(error, RecoveryError::InvalidSignature),
        }
    }

    #[test]
    fn set_code_transactions_keep_their_authorizations_and_blob_ones_are_refused() {
        let (key, authority) = (signer(10), signer(11));
        let authorization = super::authorization(&authority, CHAIN_ID, Address::ZERO, 0);
        let set_code = alloy_consensus::TxEip7702 {
            chain_id: CHAIN_ID,
            gas_limit: 100_000,
            max_fee_per_gas: 1,
            to: Address::repeat_byte(0xbe),
            authorization_list: vec![authorization.clone()],
            ..alloy_consensus::TxEip7702::default()
        };
        let env = recover(&sign(&key, set_code)).unwrap();
        assert_eq!((env.caller, env.tx_type), (key.address(), 4));
        assert_eq!(env.authorization_list.len(), 1);
        let kept = env.authorization_list[0].as_ref().left().expect("kept signed");
        assert_eq!(kept, &authorization);
        assert_eq!(kept.recover_authority().unwrap(), authority.address());
        let blob = alloy_consensus::TxEip4844 {
            chain_id: CHAIN_ID,
            gas_limit: 100_000,
            max_fee_per_gas: 1,
            blob_versioned_hashes: vec![B256::repeat_byte(1)],
            ..alloy_consensus::TxEip4844::default()
        };
        let blob = sign(
            &key,
            alloy_consensus::TxEip4844Variant::<alloy_consensus::BlobTransactionSidecar>::TxEip4844(
                blob,
            ),
        );
        assert_eq!(recover(&blob), Err(RecoveryError::UnsupportedType(3)));
    }
}

#[test]
fn a_contract_created_where_eth_was_waiting_spends_only_what_is_there() {
    let mut chain = Chain::with_funded_users(4);
    let (deploy_factory, factory) = chain.deploy(user(0), artifact_bytecode("SpenderFactory"));
    assert_eq!(executed(&chain.run(&[deploy_factory])), 1);
    let payee = user(3);
    let address_of = |salt: B256, amount: u128| {
        let mut init_code = artifact_bytecode("Spender");
        init_code.extend(
            Spender::constructorCall { to: payee, amount: U256::from(amount) }.abi_encode(),
        );
        factory.create2(salt, duet_types::keccak256(&init_code))
    };
    let (greedy_salt, greedy_amount) = (B256::repeat_byte(1), 5 * ONE_ETH);
    let (modest_salt, modest_amount) = (B256::repeat_byte(2), ONE_ETH / 2);
    let greedy = address_of(greedy_salt, greedy_amount);
    let modest = address_of(modest_salt, modest_amount);
    // ETH waits at both addresses before any code lives there.
    let funding = vec![
        chain.tx(user(1), TxKind::Call(greedy), ONE_ETH, Vec::new(), 21_000),
        chain.tx(user(2), TxKind::Call(modest), ONE_ETH, Vec::new(), 21_000),
    ];
    assert_eq!(executed(&chain.run(&funding)), 2);
    let deploy = |salt, amount, destroy| {
        SpenderFactory::deployCall { salt, to: payee, amount: U256::from(amount), destroy }
            .abi_encode()
    };
    let block = vec![
        // The constructor tries to pay 5 ETH out of 1: the payment must fail, as on Ethereum.
        chain.tx(
            user(1),
            TxKind::Call(factory),
            0,
            deploy(greedy_salt, greedy_amount, false),
            1_000_000,
        ),
        // Pays half an ETH, then self-destructs, sending the rest to the payee.
        chain.tx(
            user(2),
            TxKind::Call(factory),
            0,
            deploy(modest_salt, modest_amount, true),
            1_000_000,
        ),
    ];
    let results = chain.run(&block);
    assert_eq!(executed(&results), 2);
    let paid = chain.duet.0.get(&StateKey::Storage { address: greedy, slot: B256::ZERO });
    assert_eq!(paid, None, "the greedy payment failed (paid = false)");
    assert_eq!(chain.duet.0.get(&StateKey::Balance(greedy)), Some(&StateValue::Balance(ONE_ETH)));
    assert_eq!(
        chain.duet.0.get(&StateKey::Balance(payee)),
        Some(&StateValue::Balance(1_000 * ONE_ETH + ONE_ETH)),
        "the payee got half an ETH from the constructor and the other half from the self-destruct"
    );
}

/// Random contracts ([`testkit::random_contracts`]) called with value by random senders in
/// random blocks: Duet sequential, Duet parallel and plain revm agree on every receipt and on
/// the state. The blocks come from fixed seeds; `DUET_RANDOM_CONTRACT_BLOCKS` runs more of them.
#[test]
fn random_contracts_match_plain_revm() {
    use testkit::random_contracts::{pick, random_blocks, random_deployment, USERS};
    random_blocks(
        || Chain::with_funded_users(USERS),
        |chain, random, from, value, contracts| match random.below(5) {
            0 => random_deployment(random, contracts, false, |code| chain.deploy(from, code)),
            1 => {
                let to = user(random.below(USERS));
                chain.tx(from, TxKind::Call(to), value, Vec::new(), 21_000)
            }
            _ if !contracts.is_empty() => {
                let to = pick(random, contracts);
                chain.tx(from, TxKind::Call(to), value, Vec::new(), 1_000_000)
            }
            _ => chain.tx(from, TxKind::Call(FEE_VAULT), value, Vec::new(), 21_000),
        },
        // `run` asserts parallel == sequential == plain revm, receipts and state.
        Chain::run,
    );
}

/// A state with damage: reading one key fails, and others hold a value of the wrong kind or a
/// value put there.
struct Damaged<'a> {
    state: &'a MemoryState,
    broken: Option<StateKey>,
    replaced: Vec<(StateKey, StateValue)>,
}

impl duet_block_stm::Storage for Damaged<'_> {
    type Key = StateKey;
    type Value = StateValue;

    fn get(&self, key: &StateKey) -> Result<Option<StateValue>, duet_block_stm::StorageError> {
        if self.broken.as_ref() == Some(key) {
            let error = std::io::Error::other("disk on fire");
            return Err(duet_block_stm::StorageError(std::sync::Arc::new(error)));
        }
        if let Some((_, value)) = self.replaced.iter().find(|(replaced, _)| replaced == key) {
            return Ok(Some(value.clone()));
        }
        duet_block_stm::Storage::get(self.state, key)
    }
}

#[test]
fn damaged_state_fails_or_rejects_the_same_in_both_sequential_runs() {
    let mut chain = Chain::with_funded_users(4);
    let block = [0, 2]
        .map(|from| chain.tx(user(from), TxKind::Call(user(from + 1)), 5, Vec::new(), 21_000));
    let vm = chain.vm();
    let wrong = StateValue::Slot(U256::from(7));
    let run = |broken: Option<StateKey>, replaced: Vec<(StateKey, StateValue)>| {
        let damaged = Damaged { state: &chain.duet, broken, replaced };
        let own = duet_block_stm::execute_sequential(&vm, &block, &damaged);
        let one_by_one =
            duet_block_stm::execute_sequential(&testkit::OneByOne(&vm), &block, &damaged);
        assert!(own == one_by_one, "the two sequential runs differ: {own:?}");
        own
    };
    let rejected_as_corrupt = |result: &TransactionResult<Receipt, EvmError>| {
        matches!(result, TransactionResult::Rejected(EvmError::Read(error))
            if error.to_string().contains("wrong kind"))
    };
    // A recipient's header of the wrong kind: the transaction is rejected, the next one runs.
    let output = run(None, vec![(StateKey::Account(user(1)), wrong.clone())]).unwrap();
    assert!(rejected_as_corrupt(&output.results[0]), "{:?}", output.results[0]);
    assert!(matches!(output.results[1], TransactionResult::Executed(_)));
    assert!(
        !output.state_updates.iter().any(|(key, _)| *key == StateKey::Account(user(0))),
        "the rejected transaction wrote nothing: {:?}",
        output.state_updates
    );
    // The sender's balance of the wrong kind: rejected.
    let output = run(None, vec![(StateKey::Balance(user(0)), wrong.clone())]).unwrap();
    assert!(rejected_as_corrupt(&output.results[0]), "{:?}", output.results[0]);
    // A recipient's balance of the wrong kind is read as zero (it is never read exactly) and
    // the payment replaces it.
    let output = run(None, vec![(StateKey::Balance(user(1)), wrong.clone())]).unwrap();
    assert!(matches!(output.results[0], TransactionResult::Executed(_)));
    assert!(output
        .state_updates
        .contains(&(StateKey::Balance(user(1)), Some(StateValue::Balance(5)))));
    // The fee vault is a contract whose code cannot be read: paying it does not read its code.
    let unreadable = B256::repeat_byte(0xc0);
    let vault_header = StateValue::Account { nonce: 1, code_hash: unreadable };
    let output = run(
        Some(StateKey::Code(unreadable)),
        vec![(StateKey::Account(testkit::FEE_VAULT), vault_header)],
    )
    .unwrap();
    assert!(output.results.iter().all(|result| matches!(result, TransactionResult::Executed(_))));
    // A storage that fails to read fails the whole block.
    let failed = run(Some(StateKey::Balance(user(3))), Vec::new());
    assert!(
        matches!(&failed, Err(duet_block_stm::BlockError::Storage(error))
            if error.to_string().contains("disk on fire")),
        "{:?}",
        failed.map(|output| output.results)
    );
}

#[test]
fn a_contended_block_handed_over_to_the_sequential_run_matches() {
    // Two senders, each paying the other in turn: every transaction depends on the one before.
    let mut chain = Chain::with_funded_users(2);
    let block: Vec<TxEnv> = (0..600u64)
        .map(|index| {
            let (from, to) = (user(index % 2), user((index + 1) % 2));
            chain.tx(from, TxKind::Call(to), 1_000 + u128::from(index), Vec::new(), 21_000)
        })
        .collect();
    let vm = chain.vm();
    let config = duet_block_stm::ExecutorConfig {
        contention_fallback: Some(duet_block_stm::ContentionFallback {
            min_executions: 8,
            max_wasted_percent: 0,
            probe_window: 16,
        }),
        cheap_transactions: None,
        ..duet_block_stm::ExecutorConfig::with_threads(std::num::NonZeroUsize::new(2).unwrap())
    };
    let (handed_over, stats) = duet_block_stm::BlockExecutor::new(&vm, config)
        .execute_block_with_stats(&block, &chain.duet);
    // Handed over, watched for 16 transactions (then 32, 64…) and run to the end by the EVM's
    // own run, since the contention never ends.
    assert!(stats.sequential_from.is_some_and(|from| from < 100), "{stats:?}");
    assert!(stats.sequential_transactions > 400, "{stats:?}");
    let one_by_one =
        duet_block_stm::execute_sequential(&testkit::OneByOne(&vm), &block, &chain.duet).unwrap();
    assert!(handed_over.unwrap() == one_by_one, "the hand-over's output differs");
    let results = chain.run(&block);
    assert_eq!(executed(&results), 600);
}

#[test]
fn a_block_of_cheap_transactions_runs_sequentially_and_any_block_gives_the_same_output() {
    // 600 transfers from 60 senders: timed over their first 128 sequentially and the next 128
    // through the parallel executor on one thread, then the rest run sequentially if they were
    // cheap (always, with no worker's pace counted) or in parallel if not (never, with every
    // worker's pace counted as a whole core's many times over).
    let mut chain = Chain::with_funded_users(120);
    let block: Vec<TxEnv> = (0..600u64)
        .map(|index| {
            let (from, to) = (user(index % 60), user(60 + index % 60));
            chain.tx(from, TxKind::Call(to), 1_000 + u128::from(index), Vec::new(), 21_000)
        })
        .collect();
    let vm = chain.vm();
    let one_by_one =
        duet_block_stm::execute_sequential(&testkit::OneByOne(&vm), &block, &chain.duet).unwrap();
    for (worker_percent, sequential) in [(0, true), (u32::MAX, false)] {
        let config = duet_block_stm::ExecutorConfig {
            cheap_transactions: Some(duet_block_stm::CheapTransactions {
                transactions: 128,
                worker_percent,
            }),
            contention_fallback: None,
            ..duet_block_stm::ExecutorConfig::with_threads(std::num::NonZeroUsize::new(2).unwrap())
        };
        let (output, stats) = duet_block_stm::BlockExecutor::new(&vm, config)
            .execute_block_with_stats(&block, &chain.duet);
        assert!(output.unwrap() == one_by_one, "{worker_percent} %: the output differs");
        // Either way the timed transactions' outputs stay, and none is handed over.
        if sequential {
            assert!(stats.cheap, "{stats:?}");
            assert_eq!((stats.sequential_from, stats.sequential_transactions), (Some(256), 344));
        } else {
            assert!(!stats.cheap, "{stats:?}");
            assert_eq!((stats.sequential_from, stats.sequential_transactions), (None, 0));
        }
        assert!(stats.executions >= 600, "{stats:?}");
    }
    assert_eq!(executed(&chain.run(&block)), 600);
}

#[test]
fn blockhash_answers_the_hashes_of_the_256_blocks_before_as_the_chain_gives_them() {
    let mut chain = Chain::with_funded_users(2);
    // Returns BLOCKHASH of NUMBER - 1, NUMBER - 2, NUMBER and NUMBER - 257.
    let runtime = alloy_primitives::hex!(
        "6001430340600052" "6002430340602052" "4340604052" "6101014303406060" "52" "60806000f3"
    );
    let mut code = vec![0x60, runtime.len() as u8, 0x60, 12, 0x60, 0, 0x39];
    code.extend([0x60, runtime.len() as u8, 0x60, 0, 0xf3]);
    code.extend_from_slice(&runtime);
    let (deploy, reader) = chain.deploy(user(0), code);
    assert_eq!(executed(&chain.run(&[deploy])), 1);
    chain.number = 300;
    let hash = |number: u64| B256::from(U256::from(number) << 8 | U256::from(0xb1));
    let hashes = duet_evm::BlockHashes::new(44, (44..300).map(hash).collect());
    let vm = chain.vm().with_block_hashes(std::sync::Arc::new(hashes));
    let call = chain.call(user(1), reader, Vec::new());
    // Every executor (its own sequential run, one by one, in parallel) answers the same.
    let (output, _) = testkit::execute_every_way(&vm, std::slice::from_ref(&call), &chain.duet);
    let TransactionResult::Executed(receipt) = &output.results[0] else { panic!("executed") };
    let words: Vec<B256> =
        receipt.output().expect("returns").chunks(32).map(B256::from_slice).collect();
    assert_eq!(words, [hash(299), hash(298), B256::ZERO, B256::ZERO]);
    // Without hashes from the chain, every block's is zero.
    let (output, _) = testkit::execute_every_way(&chain.vm(), &[call], &chain.duet);
    let TransactionResult::Executed(receipt) = &output.results[0] else { panic!("executed") };
    assert_eq!(receipt.output().expect("returns").as_ref(), [0u8; 128]);
}

#[test]
fn a_fee_vault_that_starts_empty_is_paid_and_read_exactly() {
    // The vault holds nothing before the block: its first credit is a value written, not a
    // delta over a funded balance, and contracts read it (BALANCE(COINBASE)) between payments.
    let mut chain = Chain::with_funded_users(8);
    chain.duet.0.remove(&StateKey::Balance(FEE_VAULT));
    chain.plain.insert_account_info(FEE_VAULT, AccountInfo::default());
    let (deploy_probe, probe) = chain.deploy(user(0), artifact_bytecode("Probe"));
    assert_eq!(executed(&chain.run(&[deploy_probe])), 1);
    chain.duet.0.remove(&StateKey::Balance(FEE_VAULT));
    chain.plain.insert_account_info(FEE_VAULT, AccountInfo::default());
    let mut block = Vec::new();
    for index in 0..60u64 {
        let from = user(1 + index % 7);
        block.push(if index % 5 == 2 {
            chain.call(from, probe, Probe::recordCoinbaseCall {}.abi_encode())
        } else {
            chain.tx(from, TxKind::Call(user(index % 8)), 1_000, Vec::new(), 21_000)
        });
    }
    assert_eq!(executed(&chain.run(&block)), block.len());
    let vault = chain.duet.0[&StateKey::Balance(FEE_VAULT)].as_balance().unwrap();
    assert!(vault > 0, "the vault was paid");
}
