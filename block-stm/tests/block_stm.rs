//! Parallel execution must equal sequential execution, byte for byte, whatever the block.

#[path = "../testkit/mod.rs"]
mod testkit;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use duet_block_stm::{
    execute_sequential, BlockError, BlockExecutor, ContentionFallback, Delta, ExecutorConfig,
    ExecutorParts, Storage, StorageError, TransactionResult, TransactionView, TxnIndex, Vm,
    VmOutput, WriteOp,
};
use duet_types::StateKey;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use testkit::{
    account, quiet_script_panics, transfer_block, transfer_genesis, FastMap, MemoryStorage, Op,
    Script, TransferError, TransferVm, FEE_VAULT, HOT_SCRIPTS, SCRIPTS, SCRIPT_PANIC,
};

/// 1: the parallel executor on one thread (`parallel_on_one_thread`).
const THREAD_COUNTS: [usize; 4] = [1, 2, 4, 8];

fn config(threads: usize, contention_fallback: Option<ContentionFallback>) -> ExecutorConfig {
    ExecutorConfig {
        threads: NonZeroUsize::new(threads).unwrap(),
        min_parallel_block: 2,
        contention_fallback,
        cheap_transactions: None,
        parallel_on_one_thread: true,
    }
}

/// The fallback settings every equivalence test runs under: never, the default, and one that
/// hands every block to the sequential executor after three executions and gives it back to
/// parallel execution after four transactions that did not depend on each other (so that a
/// random block goes back and forth).
fn fallbacks() -> [Option<ContentionFallback>; 3] {
    [
        None,
        Some(ContentionFallback::default()),
        Some(ContentionFallback { min_executions: 3, max_wasted_percent: 0, probe_window: 4 }),
    ]
}

fn op_strategy(keys: u16) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..keys).prop_map(Op::Read),
        3 => (0..keys).prop_map(Op::Write),
        1 => (0..keys).prop_map(Op::Delete),
        2 => (0..keys, 1..50u128).prop_map(|(key, amount)| Op::Add(key, amount)),
        2 => (0..keys, 1..200u128).prop_map(|(key, amount)| Op::TrySub(key, amount)),
        1 => (0..keys, 1..50u128, 0..3000u128).prop_map(|(key, amount, max)| Op::AddBounded(key, amount, max)),
        1 => (2..9u8).prop_map(Op::AbortIf),
        1 => (5..20u8).prop_map(Op::PanicIf),
    ]
}

fn block_strategy() -> impl Strategy<Value = (u16, Vec<Script>)> {
    (2..48u16).prop_flat_map(|keys| {
        (
            Just(keys),
            prop::collection::vec(
                prop::collection::vec(op_strategy(keys), 1..8).prop_map(Script),
                1..160,
            ),
        )
    })
}

/// Half the keys hold a value, the other half are absent.
fn script_storage(keys: u16) -> MemoryStorage<u16, u128> {
    MemoryStorage(
        (0..keys).filter(|key| key % 2 == 0).map(|key| (key, u128::from(key) * 100)).collect(),
    )
}

/// Every thread count and fallback setting gives exactly the sequential output (or error).
fn assert_every_parallel_run_matches<M, S>(
    vm: &M,
    block: &[M::Transaction],
    storage: &S,
) -> Result<(), TestCaseError>
where
    M: Vm,
    M::Output: PartialEq + std::fmt::Debug,
    M::Error: PartialEq + std::fmt::Debug,
    S: Storage<Key = M::Key, Value = M::Value>,
{
    let expected = execute_sequential(vm, block, storage);
    for threads in THREAD_COUNTS {
        for fallback in fallbacks() {
            let actual =
                BlockExecutor::new(vm, config(threads, fallback)).execute_block(block, storage);
            prop_assert_eq!(&actual, &expected, "threads {} fallback {:?}", threads, fallback);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random blocks with random conflicts, reads of absent keys, deletes, deltas, conditional
    /// deltas, bound violations, rejections and panics: every thread count and fallback setting
    /// gives exactly the sequential output (or the same error).
    #[test]
    fn parallel_equals_sequential_on_random_scripts((keys, block) in block_strategy()) {
        quiet_script_panics();
        let storage = script_storage(keys);
        assert_every_parallel_run_matches(&SCRIPTS, &block, &storage)?;
        // Key 0 as the hot credit key: its credits kept in the records, the same output; with
        // key 0 empty, and holding enough for "at least?" to be answered from storage.
        assert_every_parallel_run_matches(&HOT_SCRIPTS, &block, &storage)?;
        let mut funded = storage;
        funded.0.insert(0, 1_000_000);
        assert_every_parallel_run_matches(&HOT_SCRIPTS, &block, &funded)?;
    }

    /// One executor per setting runs several random blocks in turn, each over its own storage:
    /// whatever an earlier block left in the reused memory and records (a run handed over for
    /// contention, a failed block, credits of the hot key) does not reach a later one.
    #[test]
    fn blocks_in_turn_on_one_executor_equal_sequential(
        blocks in prop::collection::vec(block_strategy(), 2..5),
    ) {
        quiet_script_panics();
        for threads in [2, 4] {
            for fallback in fallbacks() {
                let plain = BlockExecutor::new(&SCRIPTS, config(threads, fallback));
                let hot = BlockExecutor::new(&HOT_SCRIPTS, config(threads, fallback));
                for (round, (keys, block)) in blocks.iter().enumerate() {
                    let mut storage = script_storage(*keys);
                    if round % 2 == 1 {
                        storage.0.insert(0, 1_000_000);
                    }
                    prop_assert_eq!(
                        plain.execute_block(block, &storage),
                        execute_sequential(&SCRIPTS, block, &storage),
                        "block {} threads {} fallback {:?}", round, threads, fallback
                    );
                    prop_assert_eq!(
                        hot.execute_block(block, &storage),
                        execute_sequential(&HOT_SCRIPTS, block, &storage),
                        "hot key, block {} threads {} fallback {:?}", round, threads, fallback
                    );
                }
            }
        }
    }

    /// Random transfer blocks, including wrong nonces and overdrafts.
    #[test]
    fn parallel_equals_sequential_on_transfers(accounts in 2..40u64, size in 1..300usize, seed in any::<u64>()) {
        let storage = transfer_genesis(accounts);
        let mut block = transfer_block(accounts, size, seed);
        // Spoil some transactions: a skipped nonce, an overdraft.
        if let Some(transfer) = block.get_mut(size / 2) { transfer.nonce += 1; }
        if let Some(transfer) = block.get_mut(size / 3) { transfer.amount = u128::MAX / 2; }
        let vm = TransferVm { work_rounds: 0, fee_vault: FEE_VAULT };
        assert_every_parallel_run_matches(&vm, &block, &storage)?;
    }
}

#[test]
fn transfers_move_balances_and_pay_the_fee_vault() {
    let storage = transfer_genesis(3);
    let block = transfer_block(3, 30, 7);
    let vm = TransferVm { work_rounds: 1, fee_vault: FEE_VAULT };
    let output = BlockExecutor::new(&vm, config(2, None)).execute_block(&block, &storage).unwrap();
    assert!(output.results.iter().all(|result| matches!(result, TransactionResult::Executed(_))));
    let updates: FastMap<_, _> = output.state_updates.into_iter().collect();
    assert_eq!(updates[&StateKey::Balance(FEE_VAULT)], Some(30 * 21), "every transfer paid 21 wei");
    let total: u128 =
        (0..3).map(|index| updates[&StateKey::Balance(account(index))].unwrap()).sum();
    assert_eq!(total, 3 * 1_000_000_000_000_000_000 - 30 * 21, "transfers conserve value");
    let nonces: u128 =
        (0..3).map(|index| updates[&StateKey::Account(account(index))].unwrap()).sum();
    assert_eq!(nonces, 30);
}

#[test]
fn a_bad_nonce_is_rejected_and_changes_nothing() {
    let storage = transfer_genesis(2);
    let mut block = transfer_block(2, 20, 1);
    block[0].nonce = 5;
    let vm = TransferVm { work_rounds: 0, fee_vault: FEE_VAULT };
    let output = BlockExecutor::new(&vm, config(2, None)).execute_block(&block, &storage).unwrap();
    assert_eq!(
        output.results[0],
        TransactionResult::Rejected(TransferError::NonceMismatch { expected: 0, got: 5 })
    );
    // The sender's next transaction now has a nonce gap too, and is rejected the same way.
    let sender = block[0].sender;
    let next =
        block.iter().position(|transfer| transfer.sender == sender && transfer.nonce == 1).unwrap();
    assert!(matches!(
        output.results[next],
        TransactionResult::Rejected(TransferError::NonceMismatch { expected: 0, got: 1 })
    ));
}

#[test]
fn a_panicking_transaction_fails_alone() {
    quiet_script_panics();
    let storage = script_storage(4);
    let block = vec![
        Script(vec![Op::Write(1)]),
        Script(vec![Op::Read(1), Op::PanicIf(1), Op::Write(2)]),
        Script(vec![Op::Read(1), Op::Write(3)]),
    ];
    for threads in [1, 2, 4] {
        let output = BlockExecutor::new(&SCRIPTS, config(threads, None))
            .execute_block(&block, &storage)
            .unwrap();
        assert!(
            matches!(&output.results[1], TransactionResult::Panicked(message) if message.starts_with(SCRIPT_PANIC))
        );
        assert!(matches!(output.results[2], TransactionResult::Executed(_)));
        let written: Vec<u16> = output.state_updates.iter().map(|(key, _)| *key).collect();
        assert_eq!(written, vec![1, 3], "the panicked transaction wrote nothing");
    }
}

/// The scripts' VM with a sequential run of its own: one that panics, or one that works (the
/// scripts' one-at-a-time run).
struct OwnRun {
    panics: bool,
}

impl Vm for OwnRun {
    type Transaction = Script;
    type Key = u16;
    type Value = u128;
    type Output = u128;
    type Error = testkit::ScriptError;

    fn execute<View>(
        &self,
        txn_index: TxnIndex,
        script: &Script,
        view: &View,
    ) -> Result<VmOutput<u16, u128, u128>, testkit::ScriptError>
    where
        View: TransactionView<Key = u16, Value = u128>,
    {
        SCRIPTS.execute(txn_index, script, view)
    }

    fn execute_sequentially<S>(
        &self,
        transactions: &[Script],
        first_index: TxnIndex,
        storage: &S,
    ) -> Option<Result<duet_block_stm::VmBlockOutput<Self>, BlockError<u16>>>
    where
        S: Storage<Key = u16, Value = u128>,
    {
        assert!(!self.panics, "{SCRIPT_PANIC}: the VM's own run");
        // The scripts' outputs depend on their block index: empty scripts stand before them.
        let mut numbered = vec![Script(Vec::new()); first_index];
        numbered.extend_from_slice(transactions);
        Some(execute_sequential(&SCRIPTS, &numbered, storage).map(|mut output| {
            output.results.drain(..first_index);
            output
        }))
    }
}

#[test]
fn a_vm_whose_own_sequential_run_panics_gets_the_block_run_one_transaction_at_a_time() {
    quiet_script_panics();
    let storage = script_storage(8);
    let block: Vec<Script> = (0..100)
        .map(|index| Script(vec![Op::Read(index % 8), Op::Add((index + 1) % 8, 3)]))
        .collect();
    let expected = execute_sequential(&SCRIPTS, &block, &storage).unwrap();
    // The sequential executor, a contended block handed over to it, and the timing of a
    // block's first transactions in the VM's own run: each gives the one-at-a-time output.
    assert_eq!(execute_sequential(&OwnRun { panics: true }, &block, &storage).unwrap(), expected);
    let cheap = duet_block_stm::CheapTransactions { transactions: 8, worker_percent: 0 };
    for fallback in fallbacks() {
        let config = ExecutorConfig { cheap_transactions: Some(cheap), ..config(2, fallback) };
        let output =
            BlockExecutor::new(&OwnRun { panics: true }, config).execute_block(&block, &storage);
        assert_eq!(output.unwrap(), expected);
    }
}

#[test]
fn timing_a_blocks_first_transactions_both_ways_gives_the_sequential_output_or_error() {
    // Blocks whose first 8 transactions run in the VM's own sequential run and the next 8 in the
    // parallel executor on one thread, then the rest sequentially (no worker counted) or in
    // parallel (every worker counted many times over): each gives the one-at-a-time output,
    // and a delta past its bound in any of the three parts the same error.
    let storage = script_storage(8);
    let transfers: Vec<Script> = (0..100)
        .map(|index| Script(vec![Op::Read(index % 8), Op::Add((index + 3) % 8, 3)]))
        .collect();
    let mut blocks = vec![transfers.clone()];
    for broken in [3, 12, 60] {
        let mut block = transfers.clone();
        block[broken] = Script(vec![Op::AddBounded(5, 1, 1)]);
        blocks.push(block);
    }
    for block in &blocks {
        let expected = execute_sequential(&SCRIPTS, block, &storage);
        for (worker_percent, cheap) in [(0, true), (u32::MAX, false)] {
            let timing = duet_block_stm::CheapTransactions { transactions: 8, worker_percent };
            for fallback in fallbacks() {
                let config =
                    ExecutorConfig { cheap_transactions: Some(timing), ..config(2, fallback) };
                let (output, stats) = BlockExecutor::new(&OwnRun { panics: false }, config)
                    .execute_block_with_stats(block, &storage);
                assert_eq!(output, expected, "{worker_percent} %, {fallback:?}");
                if expected.is_ok() {
                    assert_eq!(stats.cheap, cheap, "{stats:?}");
                    // Timing is no hand-over: the rest runs sequentially from 16 if cheap, and a
                    // hand-over (the fallback that always hands over) comes after 16 if not.
                    let from = stats.sequential_from;
                    assert!(
                        if cheap { from == Some(16) } else { from.is_none_or(|from| from > 16) },
                        "{stats:?}"
                    );
                }
            }
        }
    }
    assert!(blocks[1..].iter().all(|block| execute_sequential(&SCRIPTS, block, &storage).is_err()));
    // One thread asked to run the parallel executor runs it, cheap or not.
    let timing = duet_block_stm::CheapTransactions { transactions: 8, worker_percent: 0 };
    let config = ExecutorConfig { cheap_transactions: Some(timing), ..config(1, None) };
    let (output, stats) = BlockExecutor::new(&OwnRun { panics: false }, config)
        .execute_block_with_stats(&transfers, &storage);
    assert_eq!(output, execute_sequential(&SCRIPTS, &transfers, &storage));
    assert_eq!((stats.cheap, stats.sequential_from), (false, None), "{stats:?}");
}

#[test]
fn a_delta_past_its_bound_fails_the_block_identically() {
    let storage = script_storage(4);
    let mut block: Vec<Script> = (0..40).map(|_| Script(vec![Op::Add(0, 5)])).collect();
    block.push(Script(vec![Op::AddBounded(0, 1, 100)])); // key 0 holds 0 + 40 * 5 = 200 > 100.
    block.extend((0..40).map(|_| Script(vec![Op::Add(0, 5)])));
    let expected = execute_sequential(&SCRIPTS, &block, &storage);
    assert_eq!(expected, Err(BlockError::DeltaOutOfBounds { txn_index: 40, key: 0 }));
    for threads in THREAD_COUNTS {
        for fallback in fallbacks() {
            let actual = BlockExecutor::new(&SCRIPTS, config(threads, fallback))
                .execute_block(&block, &storage);
            assert_eq!(actual, expected);
        }
    }
}

#[test]
fn deltas_from_many_transactions_do_not_conflict() {
    // Every transaction adds to the same key; none reads it.
    let storage = script_storage(2);
    let block: Vec<Script> = (0..500).map(|index| Script(vec![Op::Add(0, index + 1)])).collect();
    let (output, stats) =
        BlockExecutor::new(&SCRIPTS, config(2, None)).execute_block_with_stats(&block, &storage);
    assert_eq!(output.unwrap().state_updates, vec![(0, Some(500 * 501 / 2))]);
    assert_eq!(stats.validation_aborts, 0, "{stats:?}");
    assert_eq!(stats.dependency_waits, 0, "{stats:?}");
}

#[test]
fn one_thread_runs_the_parallel_executor_only_when_asked() {
    // Transactions 1..: each reads what the one before it wrote, so the parallel executor on one
    // thread executes and validates them (its statistics say so), and gives the sequential
    // output; without the option, one thread runs the sequential executor.
    let storage = script_storage(8);
    let block: Vec<Script> = (0..200_u16)
        .map(|index| Script(vec![Op::Read(index % 8), Op::Write((index + 1) % 8)]))
        .collect();
    let expected = execute_sequential(&SCRIPTS, &block, &storage);
    let (output, stats) =
        BlockExecutor::new(&SCRIPTS, config(1, None)).execute_block_with_stats(&block, &storage);
    assert_eq!(output, expected);
    assert_eq!((stats.sequential_from, stats.sequential_transactions), (None, 0), "{stats:?}");
    assert_eq!(stats.executions, block.len(), "one worker runs them in order: {stats:?}");
    let sequential = ExecutorConfig { parallel_on_one_thread: false, ..config(1, None) };
    let (output, stats) =
        BlockExecutor::new(&SCRIPTS, sequential).execute_block_with_stats(&block, &storage);
    assert_eq!(output, expected);
    assert_eq!(stats.sequential_from, Some(0), "{stats:?}");
}

#[test]
fn a_hot_key_reads_exactly_between_its_credits_spends_and_bounds() {
    // Key 0 is the hot key: credits from everyone, exact reads, a spend, an overwrite and a
    // bound, in one block; and a bound broken by a credit fails the block identically.
    let storage = script_storage(4);
    let mut block: Vec<Script> =
        (0..300).map(|index| Script(vec![Op::Add(0, index % 7 + 1)])).collect();
    block[50] = Script(vec![Op::Read(0), Op::Write(1)]);
    block[120] = Script(vec![Op::TrySub(0, 400), Op::Read(0), Op::Write(2)]);
    block[200] = Script(vec![Op::Write(0)]);
    block[250] = Script(vec![Op::AddBounded(0, 1, u128::MAX - 1), Op::Read(0), Op::Write(3)]);
    assert_every_parallel_run_matches(&HOT_SCRIPTS, &block, &storage).unwrap();
    let expected = execute_sequential(&HOT_SCRIPTS, &block, &storage).unwrap();
    assert_eq!(expected, execute_sequential(&SCRIPTS, &block, &storage).unwrap());
    block.push(Script(vec![Op::AddBounded(0, 1, 10)]));
    block.extend((0..50).map(|_| Script(vec![Op::Add(0, 2)])));
    assert!(execute_sequential(&HOT_SCRIPTS, &block, &storage).is_err());
    assert_every_parallel_run_matches(&HOT_SCRIPTS, &block, &storage).unwrap();
}

#[test]
fn a_read_after_deltas_sees_the_exact_sum() {
    let storage = script_storage(2);
    let mut block: Vec<Script> = (0..100).map(|_| Script(vec![Op::Add(1, 3)])).collect();
    block.push(Script(vec![Op::Read(1), Op::Write(0)]));
    let expected = execute_sequential(&SCRIPTS, &block, &storage).unwrap();
    for threads in THREAD_COUNTS {
        let actual = BlockExecutor::new(&SCRIPTS, config(threads, None))
            .execute_block(&block, &storage)
            .unwrap();
        assert_eq!(actual, expected);
        assert!(actual.state_updates.contains(&(1, Some(300))));
    }
}

#[test]
fn conditional_deltas_do_not_conflict_while_the_answer_holds() {
    // Key 2 holds a million; each transaction takes 1 if it fits, which it always does.
    let storage = script_storage(2);
    let block: Vec<Script> = (0..200).map(|_| Script(vec![Op::TrySub(2, 1)])).collect();
    let storage = MemoryStorage(storage.0.into_iter().chain([(2, 1_000_000)]).collect());
    let (output, stats) =
        BlockExecutor::new(&SCRIPTS, config(2, None)).execute_block_with_stats(&block, &storage);
    assert_eq!(output.unwrap(), execute_sequential(&SCRIPTS, &block, &storage).unwrap());
    assert_eq!(stats.validation_aborts, 0, "{stats:?}");
}

/// A transfer block over `accounts` funded accounts, its VM, and its sequential output.
type TransferCase = (
    MemoryStorage<StateKey, u128>,
    Vec<testkit::Transfer>,
    TransferVm,
    Result<duet_block_stm::VmBlockOutput<TransferVm>, BlockError<StateKey>>,
);

fn transfer_case(accounts: u64, size: usize, seed: u64, work_rounds: u32) -> TransferCase {
    let storage = transfer_genesis(accounts);
    let block = transfer_block(accounts, size, seed);
    let vm = TransferVm { work_rounds, fee_vault: FEE_VAULT };
    let expected = execute_sequential(&vm, &block, &storage);
    (storage, block, vm, expected)
}

#[test]
fn full_contention_stays_identical_and_bounded() {
    let (storage, block, vm, expected) = transfer_case(2, 2000, 3, 4);
    for fallback in fallbacks() {
        let (actual, stats) =
            BlockExecutor::new(&vm, config(2, fallback)).execute_block_with_stats(&block, &storage);
        assert_eq!(actual, expected);
        // Without the fallback, Block-STM re-executes most transactions many times here; with
        // it, the waste stops after the first few dozen executions.
        if fallback == Some(ContentionFallback::default()) {
            assert!(stats.executions <= 2 * block.len(), "the fallback caps the waste: {stats:?}");
            // Every transaction depends on one just before it: once handed over, the block never
            // goes back to parallel execution. (Whether and where it is handed over depends on
            // timing: a helper thread that starts late leaves the first transactions to one
            // thread, without conflicts.)
            if let Some(from) = stats.sequential_from {
                assert_eq!(stats.sequential_transactions, block.len() - from, "{stats:?}");
            }
        }
    }
}

#[test]
fn a_block_goes_back_to_parallel_execution_after_a_burst_of_conflicts() {
    // 100 transfers among 5 accounts (most depend on one just before), then 9900 among 10000
    // accounts (almost none do); nonces follow on per sender.
    let storage = transfer_genesis(10_000);
    let mut block = transfer_block(5, 100, 5);
    block.extend(transfer_block(10_000, 9_900, 6));
    let mut nonces = std::collections::HashMap::new();
    for transfer in &mut block {
        let nonce: &mut u128 = nonces.entry(transfer.sender).or_default();
        transfer.nonce = *nonce;
        *nonce += 1;
    }
    let vm = TransferVm { work_rounds: 1, fee_vault: FEE_VAULT };
    let expected = execute_sequential(&vm, &block, &storage);
    let executed = |output: &duet_block_stm::VmBlockOutput<TransferVm>| {
        output.results.iter().all(|result| matches!(result, TransactionResult::Executed(_)))
    };
    assert!(executed(expected.as_ref().unwrap()));
    for fallback in [
        ContentionFallback::default(),
        // Hands over at once, again after every resumption: the block alternates.
        ContentionFallback { min_executions: 3, max_wasted_percent: 0, probe_window: 256 },
    ] {
        let (actual, stats) = BlockExecutor::new(&vm, config(2, Some(fallback)))
            .execute_block_with_stats(&block, &storage);
        assert_eq!(actual, expected);
        // Before the sequential executor gave blocks back, the burst handed the default's run
        // over at about its 80th transaction and the rest ran sequentially.
        if fallback == ContentionFallback::default() {
            assert!(stats.sequential_transactions < 1_000, "{stats:?}");
        }
    }
}

#[test]
fn an_executor_made_from_the_parts_of_another_reuses_its_memory_and_threads() {
    let (storage, block, vm, expected) = transfer_case(100, 500, 21, 0);
    let fresh = BlockExecutor::new(&vm, config(2, None));
    let parts = fresh.into_parts();
    assert_eq!((parts.has_workspace(), parts.helper_threads()), (false, None));
    let first = BlockExecutor::new(&vm, config(2, None));
    assert_eq!(first.execute_block(&block, &storage), expected);
    // Another VM value for the next block, as a chain makes one per block environment; the
    // parts pass through an executor that runs nothing, which allocates and starts nothing.
    let next_vm = TransferVm { work_rounds: 0, fee_vault: FEE_VAULT };
    let idle = BlockExecutor::with_parts(&next_vm, config(2, None), first.into_parts());
    let parts = idle.into_parts();
    assert_eq!((parts.has_workspace(), parts.helper_threads()), (true, Some(1)));
    let next = BlockExecutor::with_parts(&next_vm, config(2, None), parts);
    let (storage, block, _, expected) = transfer_case(50, 700, 22, 0);
    assert_eq!(next.execute_block(&block, &storage), expected);
    // Parts made for another number of threads keep the memory but not the threads.
    let other = BlockExecutor::with_parts(&next_vm, config(4, None), next.into_parts());
    let parts = other.into_parts();
    assert_eq!((parts.has_workspace(), parts.helper_threads()), (true, None));
    // A block that fails leaves a workspace the next block runs on as on a fresh one.
    let failing = BlockExecutor::with_parts(&SCRIPTS, config(2, None), ExecutorParts::default());
    let storage = script_storage(4);
    let mut overdrawn: Vec<Script> = (0..40).map(|_| Script(vec![Op::Add(0, 5)])).collect();
    overdrawn.push(Script(vec![Op::AddBounded(0, 1, 100)])); // 40 * 5 > 100
    overdrawn.extend((0..40).map(|_| Script(vec![Op::Read(0), Op::Write(1)])));
    let expected = execute_sequential(&SCRIPTS, &overdrawn, &storage);
    assert!(expected.is_err());
    assert_eq!(failing.execute_block(&overdrawn, &storage), expected);
    let reused = BlockExecutor::with_parts(&SCRIPTS, config(2, None), failing.into_parts());
    let block: Vec<Script> = (0..100)
        .map(|index| Script(vec![Op::Read(0), Op::Add(2, index + 1), Op::Write(1)]))
        .collect();
    let expected = execute_sequential(&SCRIPTS, &block, &storage);
    assert!(expected.is_ok());
    assert_eq!(reused.execute_block(&block, &storage), expected);
}

#[test]
fn a_block_handed_to_the_sequential_executor_midway_is_identical() {
    let (storage, block, vm, expected) = transfer_case(10, 1000, 11, 2);
    // At most half the block: one of the two workers surely starts that many executions.
    for min_executions in [1, 10, 64, 300, 500] {
        let fallback = ContentionFallback {
            min_executions,
            max_wasted_percent: 0,
            ..ContentionFallback::default()
        };
        let (actual, stats) = BlockExecutor::new(&vm, config(2, Some(fallback)))
            .execute_block_with_stats(&block, &storage);
        assert_eq!(actual, expected, "handed over after {min_executions} executions");
        let from = stats.sequential_from.expect("a zero threshold always hands over");
        // Each of the two workers judges its own executions.
        assert!(from <= 2 * min_executions + 2, "{stats:?}");
    }
}

#[test]
fn one_executor_runs_many_blocks_of_different_sizes() {
    quiet_script_panics();
    let vm = TransferVm { work_rounds: 0, fee_vault: FEE_VAULT };
    let transfers = BlockExecutor::new(&vm, config(2, Some(ContentionFallback::default())));
    let scripts = BlockExecutor::new(&SCRIPTS, config(3, None));
    let script_storage = script_storage(16);
    for (round, size) in [500usize, 20, 1200, 3, 700].into_iter().enumerate() {
        let storage = transfer_genesis(50);
        let block = transfer_block(50, size, round as u64);
        assert_eq!(
            transfers.execute_block(&block, &storage),
            execute_sequential(&vm, &block, &storage),
            "transfer block {round}"
        );
        let block: Vec<Script> = (0..size)
            .map(|index| {
                let key = (index * 7 + round) as u16 % 16;
                Script(vec![Op::Read(key), Op::Add((key + 1) % 16, 3), Op::Write((key + 5) % 16)])
            })
            .collect();
        assert_eq!(
            scripts.execute_block(&block, &script_storage),
            execute_sequential(&SCRIPTS, &block, &script_storage),
            "script block {round}"
        );
    }
}

/// Storage whose reads of one key fail, counting reads.
struct FailingStorage {
    inner: MemoryStorage<u16, u128>,
    failing_key: u16,
    reads: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
#[error("disk on fire")]
struct DiskOnFire;

impl Storage for FailingStorage {
    type Key = u16;
    type Value = u128;
    fn get(&self, key: &u16) -> Result<Option<u128>, StorageError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if *key == self.failing_key {
            Err(StorageError(Arc::new(DiskOnFire)))
        } else {
            self.inner.get(key)
        }
    }
}

#[test]
fn a_storage_failure_is_an_error_for_the_block() {
    let storage =
        FailingStorage { inner: script_storage(8), failing_key: 7, reads: AtomicUsize::new(0) };
    let mut block: Vec<Script> =
        (0..50).map(|index| Script(vec![Op::Read(index % 4), Op::Write(index % 4)])).collect();
    block[20] = Script(vec![Op::Read(7)]);
    for threads in [1, 2, 4] {
        let result =
            BlockExecutor::new(&SCRIPTS, config(threads, None)).execute_block(&block, &storage);
        match result {
            Err(BlockError::Storage(error)) => {
                assert_eq!(error.to_string(), "storage failure: disk on fire");
            }
            other => panic!("expected a storage error, got {other:?}"),
        }
    }
    assert!(storage.reads.load(Ordering::Relaxed) > 0);
}

/// Small VMs over keys 0 and 1, each for one test.
enum TwoKeyVm {
    /// Writes each key twice in one transaction: the later write wins, in both executors.
    DoubleWrite,
    /// Its first transaction is slow and writes key 0, which the second reads (into key 1): the
    /// second runs, and is validated, before the first has written.
    SlowFirstWriter,
}

impl Vm for TwoKeyVm {
    type Transaction = u128;
    type Key = u16;
    type Value = u128;
    type Output = ();
    type Error = ();

    fn execute<View: TransactionView<Key = u16, Value = u128>>(
        &self,
        txn_index: TxnIndex,
        transaction: &u128,
        view: &View,
    ) -> Result<VmOutput<u16, u128, ()>, ()> {
        let read = || view.read(&0).map_err(drop).map(|value| value.unwrap_or(0));
        let writes = match self {
            Self::DoubleWrite => vec![
                (0, WriteOp::Put(read()? + transaction)),
                (1, WriteOp::Delta(Delta::add(1))),
                (0, WriteOp::Delta(Delta::add(1_000))),
                (1, WriteOp::Put(7)),
            ],
            Self::SlowFirstWriter if txn_index == 0 => {
                std::thread::sleep(std::time::Duration::from_millis(5));
                vec![(0, WriteOp::Put(*transaction))]
            }
            Self::SlowFirstWriter => vec![(1, WriteOp::Put(read()? + transaction))],
        };
        Ok(VmOutput { writes, output: () })
    }
}

#[test]
fn the_last_write_of_a_key_in_a_transaction_wins() {
    let storage = MemoryStorage(FastMap::default());
    let block: Vec<u128> = (1..=50).collect();
    let expected = execute_sequential(&TwoKeyVm::DoubleWrite, &block, &storage).unwrap();
    assert_eq!(expected.state_updates, vec![(0, Some(50 * 1_000)), (1, Some(7))]);
    for threads in THREAD_COUNTS {
        let actual = BlockExecutor::new(&TwoKeyVm::DoubleWrite, config(threads, None))
            .execute_block(&block, &storage)
            .unwrap();
        assert_eq!(actual, expected);
    }
}

#[test]
fn a_block_run_again_on_one_executor_sees_each_run_s_own_writes() {
    // The same block, run again and again on one executor: each run's first write of a key
    // is new to that run, whatever the transaction wrote in the run before, so the reader
    // validated before it is validated again.
    let storage = MemoryStorage(FastMap::default());
    let block: Vec<u128> = vec![100, 1];
    let expected = execute_sequential(&TwoKeyVm::SlowFirstWriter, &block, &storage).unwrap();
    assert_eq!(expected.state_updates, vec![(0, Some(100)), (1, Some(101))]);
    let executor = BlockExecutor::new(&TwoKeyVm::SlowFirstWriter, config(2, None));
    for run in 0..20 {
        let actual = executor.execute_block(&block, &storage).unwrap();
        assert_eq!(actual, expected, "run {run}");
    }
}

#[test]
fn empty_and_tiny_blocks() {
    let storage = script_storage(2);
    for threads in [1, 2, 8] {
        let executor = BlockExecutor::new(&SCRIPTS, config(threads, None));
        let empty = executor.execute_block(&[], &storage).unwrap();
        assert!(empty.results.is_empty() && empty.state_updates.is_empty());
        let one =
            executor.execute_block(&[Script(vec![Op::Read(1), Op::Write(1)])], &storage).unwrap();
        assert_eq!(
            one,
            execute_sequential(&SCRIPTS, &[Script(vec![Op::Read(1), Op::Write(1)])], &storage)
                .unwrap()
        );
    }
}

#[test]
fn a_read_of_the_hot_key_after_spends_and_credits_near_the_u128_bound_is_exact() {
    // Key 0 (the hot key) holds MAX; the whole of it is spent, credited and spent again: the
    // last transaction reads 0. Its reads sum the versions' spends before the records' credits,
    // and a sum saturating at 128 bits read MAX, which its validation then agreed with.
    let storage = MemoryStorage([(0, u128::MAX)].into_iter().collect());
    let mut block = vec![
        Script(vec![Op::TrySub(0, u128::MAX)]),
        Script(vec![Op::Add(0, u128::MAX)]),
        Script(vec![Op::TrySub(0, u128::MAX)]),
        Script(vec![Op::Read(0), Op::Write(1)]),
    ];
    block.extend((0..60).map(|_| Script(vec![Op::Read(2)])));
    let expected = execute_sequential(&HOT_SCRIPTS, &block, &storage).unwrap();
    assert_eq!(expected.state_updates[0], (0, Some(0)));
    assert_eq!(expected, execute_sequential(&SCRIPTS, &block, &storage).unwrap());
    for _ in 0..20 {
        assert_every_parallel_run_matches(&HOT_SCRIPTS, &block, &storage).unwrap();
    }
}

#[test]
fn a_spend_after_credits_of_the_hot_key_counts_after_them() {
    // Key 0 (the hot key) holds 3 from transaction 2, then gets 70 in credits, then loses 4:
    // 69, not 3 - 4 (saturating at 0) + 70.
    let storage = script_storage(3);
    let block = vec![
        Script(vec![Op::Read(0)]),
        Script(vec![Op::Read(0)]),
        Script(vec![Op::Write(0)]),
        Script(vec![Op::AddBounded(0, 10, 13), Op::Write(1)]),
        Script(vec![Op::Add(0, 26)]),
        Script(vec![Op::AddBounded(0, 34, 73), Op::Read(0)]),
        Script(vec![Op::TrySub(0, 4)]),
        Script(vec![Op::Read(0)]),
    ];
    let expected = execute_sequential(&HOT_SCRIPTS, &block, &storage).unwrap();
    assert_eq!(expected.state_updates[0], (0, Some(69)));
    for _ in 0..20 {
        assert_every_parallel_run_matches(&HOT_SCRIPTS, &block, &storage).unwrap();
    }
}
