//! Duet's EVM against plain revm on 10000-transaction blocks.
//!
//! `cargo bench -p duet-evm --bench evm [-- --json] [--runs N] [--threads N] [--senders N]
//! [--workload eth_transfer|erc20_transfer|swap] [--only revm|seq|par]`
//!
//! Workloads: ETH transfers, ERC-20 transfers and swaps on one constant-product pair, each from
//! {2, 100, 10000} senders to random recipients. For each: tx/s and gas/s of plain revm
//! executing the block one transaction after another on its in-memory database (one EVM for the
//! whole block, as a node runs it), of Duet's sequential executor, and of Duet's parallel
//! executor; and the ratios Duet parallel / plain revm and Duet sequential / plain revm, first
//! with senders already recovered, then with the secp256k1 recovery of every sender included,
//! on all threads for all three (a node recovers a block's senders in parallel whatever runs
//! them). Without recovery, each ratio is the median of the ratios of runs made back to back;
//! with recovery, the ratio of the medians (recovery is timed apart). Every output of Duet's
//! executors is checked against the sequential one with the clock stopped, and a run's time
//! includes dropping its output, as revm's includes dropping its results. Executions per
//! transaction are the median of the timed parallel runs, and "handed over" counts the timed
//! runs handed to the sequential executor under contention (`1/5`), or run there whole (`seq
//! 5/5`: transactions too cheap for parallel execution). `--only` times one of the three and
//! prints its tx/s alone (for profiling it). `--threads 1` runs the parallel executor on one
//! thread: what Block-STM's own work costs without a second core.

#[path = "../testkit/mod.rs"]
mod testkit;

use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{SolCall, SolConstructor};
use duet_bench_kit::p2p::RunsSummary;
use duet_bench_kit::{
    executor_config, median, paired_ratio, round3, time_checked, RoundTrip, SplitMix,
};
use duet_block_stm::{execute_sequential, BlockExecutor, TransactionResult, VmBlockOutput};
use duet_evm::{recover_block, EvmVm};
use duet_types::{keccak256, Address, U256};
use revm::context::TxEnv;
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::TxKind;
use revm::state::AccountInfo;
use revm::{Context, ExecuteCommitEvm, MainBuilder, MainContext};
use testkit::{
    artifact_bytecode, block_env, plain_state, tx_env, user, MemoryState, Pair, Token, CHAIN_ID,
    FEE_VAULT, ONE_ETH,
};

/// The allocator a Duet node runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BLOCK_SIZE: usize = 10_000;
const SENDERS: [u64; 3] = [2, 100, 10_000];
const WORKLOADS: [Workload; 3] = [Workload::Eth, Workload::Erc20, Workload::Swap];
const WARM_UP_RUNS: usize = 2;
/// Accounts that receive transfers (besides the senders).
const RECIPIENTS: u64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Eth,
    Erc20,
    Swap,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Eth => "eth_transfer",
            Self::Erc20 => "erc20_transfer",
            Self::Swap => "swap",
        }
    }
}

struct Options {
    json: bool,
    /// Only this workload (all when `None`).
    workload: Option<String>,
    /// Only this many senders (all when `None`).
    senders: Option<u64>,
    runs: usize,
    threads: usize,
    /// Time only this one: `revm`, `seq` or `par` (all three when `None`).
    only: Option<String>,
}

fn options() -> Options {
    let mut options =
        Options { json: false, workload: None, senders: None, runs: 5, threads: 2, only: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => options.json = true,
            "--workload" => options.workload = args.next(),
            "--senders" => options.senders = args.next().and_then(|n| n.parse().ok()),
            "--runs" => options.runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--threads" => {
                options.threads = args.next().and_then(|n| n.parse().ok()).expect("--threads N");
            }
            "--only" => {
                let only = args.next().filter(|name| ["revm", "seq", "par"].contains(&&**name));
                options.only = Some(only.expect("--only revm|seq|par"));
            }
            _ => {} // cargo bench passes `--bench`; ignore what is not ours.
        }
    }
    options
}

fn transaction(
    from: Address,
    to: Address,
    nonce: u64,
    value: u128,
    data: Vec<u8>,
    gas: u64,
) -> TxEnv {
    tx_env(from, nonce, TxKind::Call(to), value, data, gas)
}

/// A chain where `senders` accounts hold ETH and both tokens of a funded pair, and have approved
/// the pair.
struct World {
    plain: CacheDB<EmptyDB>,
    duet: MemoryState,
    nonces: Vec<u64>,
    keys: Vec<PrivateKeySigner>,
    token: Address,
    other_token: Address,
    pair: Address,
}

fn world(senders: u64) -> World {
    let mut plain = CacheDB::<EmptyDB>::default();
    let owner = Address::repeat_byte(0x0a);
    let keys: Vec<PrivateKeySigner> = (0..senders)
        .map(|index| {
            PrivateKeySigner::from_bytes(&keccak256(index.to_be_bytes())).expect("a valid key")
        })
        .collect();
    let sender = |index: u64| keys[index as usize].address();
    let accounts = (0..senders).map(sender).chain((senders..senders + RECIPIENTS).map(user));
    for address in accounts.chain([owner, FEE_VAULT]) {
        plain.insert_account_info(
            address,
            AccountInfo { balance: U256::from(1_000_000 * ONE_ETH), ..AccountInfo::default() },
        );
    }
    let mut setup = Vec::new();
    let mut owner_nonce = 0;
    let mut deploy = |code: Vec<u8>, setup: &mut Vec<TxEnv>| {
        let address = owner.create(owner_nonce);
        let mut tx = transaction(owner, Address::ZERO, owner_nonce, 0, code, 5_000_000);
        tx.kind = TxKind::Create;
        setup.push(tx);
        owner_nonce += 1;
        address
    };
    let supply = U256::from(10u128.pow(30));
    let token_code = |symbol: &str| {
        let mut code = artifact_bytecode("Token");
        code.extend(
            Token::constructorCall { name_: symbol.into(), symbol_: symbol.into(), supply }
                .abi_encode(),
        );
        code
    };
    let token = deploy(token_code("A"), &mut setup);
    let other_token = deploy(token_code("B"), &mut setup);
    let mut pair_code = artifact_bytecode("Pair");
    pair_code.extend(Pair::constructorCall { token0_: token, token1_: other_token }.abi_encode());
    let pair = deploy(pair_code, &mut setup);
    let approve = Token::approveCall { spender: pair, value: U256::MAX }.abi_encode();
    for contract in [token, other_token] {
        setup.push(transaction(owner, contract, owner_nonce, 0, approve.clone(), 100_000));
        owner_nonce += 1;
    }
    let liquidity = Pair::addLiquidityCall {
        amount0: U256::from(10u128.pow(28)),
        amount1: U256::from(10u128.pow(28)),
    };
    setup.push(transaction(owner, pair, owner_nonce, 0, liquidity.abi_encode(), 300_000));
    owner_nonce += 1;
    let mut nonces = vec![0; senders as usize];
    for index in 0..senders {
        for contract in [token, other_token] {
            let funding =
                Token::transferCall { to: sender(index), value: U256::from(10u128.pow(24)) };
            setup.push(transaction(owner, contract, owner_nonce, 0, funding.abi_encode(), 100_000));
            owner_nonce += 1;
            setup.push(transaction(
                sender(index),
                contract,
                nonces[index as usize],
                0,
                approve.clone(),
                100_000,
            ));
            nonces[index as usize] += 1;
        }
    }
    let mut evm = Context::mainnet().with_db(&mut plain).with_block(block_env(1)).build_mainnet();
    evm.ctx.cfg.chain_id = CHAIN_ID;
    for tx in setup {
        let receipt = evm.transact_commit(tx).expect("setup transaction is valid");
        assert!(receipt.is_success(), "setup transaction failed: {receipt:?}");
    }
    drop(evm);
    let duet = MemoryState(plain_state(&plain));
    World { plain, duet, nonces, keys, token, other_token, pair }
}

/// A signed EIP-1559 transaction with exactly the fields of `tx`.
fn sign(key: &PrivateKeySigner, tx: &TxEnv) -> TxEnvelope {
    let unsigned = TxEip1559 {
        chain_id: CHAIN_ID,
        nonce: tx.nonce,
        gas_limit: tx.gas_limit,
        max_fee_per_gas: tx.gas_price,
        max_priority_fee_per_gas: tx.gas_priority_fee.unwrap_or_default(),
        to: tx.kind,
        value: tx.value,
        input: tx.data.clone(),
        ..TxEip1559::default()
    };
    let signature = key.sign_hash_sync(&unsigned.signature_hash()).expect("signing works");
    TxEnvelope::from(unsigned.into_signed(signature))
}

/// The block's transactions, and the same transactions signed by their senders.
fn block(world: &World, workload: Workload, senders: u64) -> (Vec<TxEnv>, Vec<TxEnvelope>) {
    let mut random = SplitMix(senders * 7 + workload as u64);
    let mut nonces = world.nonces.clone();
    let mut signers = Vec::with_capacity(BLOCK_SIZE);
    let transactions: Vec<TxEnv> = (0..BLOCK_SIZE)
        .map(|index| {
            let sender = random.below(senders);
            signers.push(sender as usize);
            let from = world.keys[sender as usize].address();
            let nonce = nonces[sender as usize];
            nonces[sender as usize] += 1;
            let recipient = user(senders + random.below(RECIPIENTS));
            match workload {
                Workload::Eth => {
                    transaction(from, recipient, nonce, 1_000_000_000, Vec::new(), 21_000)
                }
                Workload::Erc20 => {
                    let call = Token::transferCall { to: recipient, value: U256::from(1 + index) };
                    transaction(from, world.token, nonce, 0, call.abi_encode(), 100_000)
                }
                Workload::Swap => {
                    let token_in = if index % 2 == 0 { world.token } else { world.other_token };
                    let call = Pair::swapCall {
                        tokenIn: token_in,
                        amountIn: U256::from(10u128.pow(15)),
                        to: from,
                    };
                    transaction(from, world.pair, nonce, 0, call.abi_encode(), 200_000)
                }
            }
        })
        .collect();
    let envelopes = transactions
        .iter()
        .zip(signers)
        .map(|(tx, signer)| sign(&world.keys[signer], tx))
        .collect();
    (transactions, envelopes)
}

/// The median time to recover the senders of `envelopes` on `threads` threads.
fn time_recovery(envelopes: &[TxEnvelope], threads: usize, runs: usize) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(recover_block(envelopes, threads).len());
                start.elapsed()
            })
            .collect(),
    )
}

/// The timed runs of one block.
struct Times {
    plain: Vec<Duration>,
    sequential: Vec<Duration>,
    parallel: Vec<Duration>,
    /// How each parallel run went.
    parallel_runs: Vec<duet_block_stm::ExecutionStats>,
}

/// Times plain revm, Duet sequential and Duet parallel on `block`, back to back, `runs` times
/// after the warm-up runs; checks every output of Duet's against `expected`.
fn time_runs(
    world: &World,
    (block, expected): (&[TxEnv], &VmBlockOutput<EvmVm>),
    vm: &EvmVm,
    executor: &BlockExecutor<'_, EvmVm>,
    runs: usize,
    only: Option<&str>,
) -> Times {
    let runs_it = |name: &str| only.is_none_or(|only| only == name);
    let mut times = Times {
        plain: Vec::new(),
        sequential: Vec::new(),
        parallel: Vec::new(),
        parallel_runs: Vec::new(),
    };
    for run in 0..WARM_UP_RUNS + runs {
        let warm = run < WARM_UP_RUNS;
        if runs_it("revm") {
            let mut database = world.plain.clone();
            let start = Instant::now();
            let mut evm = Context::mainnet()
                .with_db(&mut database)
                .with_block(vm.block.clone())
                .with_cfg(vm.cfg().clone())
                .build_mainnet();
            for tx in block {
                std::hint::black_box(evm.transact_commit(tx.clone()).is_ok());
            }
            drop(evm);
            let plain = start.elapsed();
            if !warm {
                times.plain.push(plain);
            }
        }
        if runs_it("seq") {
            let same = duet_bench_kit::same_as(expected);
            let (sequential, ()) =
                time_checked(|| execute_sequential(vm, block, &world.duet), same);
            if !warm {
                times.sequential.push(sequential);
            }
        }
        if runs_it("par") {
            let same = duet_bench_kit::same_as(expected);
            let (parallel, stats) = time_checked(
                || executor.execute_block_with_stats(block, &world.duet),
                |run| {
                    same(&run.0);
                    run.1
                },
            );
            if !warm {
                times.parallel.push(parallel);
                times.parallel_runs.push(stats);
            }
        }
    }
    times
}

/// Checks that `envelopes` recover to `block`, executes it once sequentially and checks that
/// every transaction succeeded; returns the output (every timed run's is checked against it)
/// and the block's gas.
fn check_block(
    vm: &EvmVm,
    world: &World,
    (block, envelopes): (&[TxEnv], &[TxEnvelope]),
    workload: Workload,
    senders: u64,
) -> (VmBlockOutput<EvmVm>, u64) {
    let recovered: Vec<TxEnv> = recover_block(envelopes, 2)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every signature is valid");
    assert!(recovered == block, "recovery gives back the signed transactions");
    let expected = execute_sequential(vm, block, &world.duet).expect("the block executes");
    let mut gas = 0;
    for result in &expected.results {
        match result {
            TransactionResult::Executed(receipt) if receipt.is_success() => {
                gas += receipt.tx_gas_used();
            }
            other => panic!(
                "{} with {senders} senders: a transaction failed: {other:?}",
                workload.name()
            ),
        }
    }
    (expected, gas)
}

fn print_header(options: &Options) {
    println!(
        "Duet EVM vs plain revm: {BLOCK_SIZE}-transaction blocks, {}, median of {} runs",
        duet_bench_kit::threads_text(options.threads),
        options.runs
    );
    println!(
        "{:<15} {:>7} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9} {:>11} {:>13}",
        "workload",
        "senders",
        "revm tx/s",
        "seq tx/s",
        "par tx/s",
        "seq/revm",
        "par/revm",
        "par/seq",
        "par Mgas/s",
        "execs/tx",
        "handed over",
        "round trip ns"
    );
}

/// The median tx/s of `only` (`revm`, `seq` or `par`) alone on `block`.
fn only_tps(
    world: &World,
    block: (&[TxEnv], &VmBlockOutput<EvmVm>),
    (vm, executor): (&EvmVm, &BlockExecutor<'_, EvmVm>),
    runs: usize,
    only: &str,
) -> f64 {
    let times = time_runs(world, block, vm, executor, runs, Some(only));
    let samples = [times.plain, times.sequential, times.parallel].concat();
    BLOCK_SIZE as f64 / median(samples).as_secs_f64()
}

fn main() {
    let options = options();
    let vm = EvmVm::new(CHAIN_ID, block_env(2));
    let executor = BlockExecutor::new(&vm, executor_config(options.threads));
    if !options.json {
        print_header(&options);
    }
    for &senders in
        SENDERS.iter().filter(|count| options.senders.is_none_or(|only| only == **count))
    {
        let world = world(senders);
        for &workload in WORKLOADS.iter().filter(|workload| {
            options.workload.as_deref().is_none_or(|only| only == workload.name())
        }) {
            let (block, envelopes) = block(&world, workload, senders);
            let (expected, gas) = check_block(&vm, &world, (&block, &envelopes), workload, senders);
            let checked_block = (block.as_slice(), &expected);
            if let Some(only) = options.only.as_deref() {
                let tps = only_tps(&world, checked_block, (&vm, &executor), options.runs, only);
                println!("{:<15} {senders:>7} {only} {tps:.0} tx/s", workload.name());
                continue;
            }
            let recovery = time_recovery(&envelopes, options.threads, options.runs);
            let (times, round_trip) = RoundTrip::around(|| {
                time_runs(&world, checked_block, &vm, &executor, options.runs, None)
            });
            // Ratios of runs made back to back, whose machine was equally fast.
            let seq_over_revm = paired_ratio(&times.plain, &times.sequential);
            let par_over_revm = paired_ratio(&times.plain, &times.parallel);
            let par_over_seq = paired_ratio(&times.sequential, &times.parallel);
            let runs = RunsSummary::of(&times.parallel_runs, BLOCK_SIZE);
            let RunsSummary { executions_per_txn, handed_over, sequential } = runs;
            let seconds = |samples: Vec<Duration>| median(samples).as_secs_f64();
            let (plain_s, sequential_s, parallel_s) =
                (seconds(times.plain), seconds(times.sequential), seconds(times.parallel));
            let tps = |seconds: f64| BLOCK_SIZE as f64 / seconds;
            let (plain_tps, sequential_tps, parallel_tps) =
                (tps(plain_s), tps(sequential_s), tps(parallel_s));
            // With sender recovery, on all threads for all three.
            let recovered = |seconds: f64| tps(seconds + recovery.as_secs_f64());
            let plain_recovered_tps = recovered(plain_s);
            let sequential_recovered_tps = recovered(sequential_s);
            let parallel_recovered_tps = recovered(parallel_s);
            let gas_per_txn = gas as f64 / BLOCK_SIZE as f64;
            if options.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "workload": workload.name(),
                        "senders": senders,
                        "txs": BLOCK_SIZE,
                        "threads": options.threads,
                        "runs": options.runs,
                        "revm_tps": plain_tps.round(),
                        "seq_tps": sequential_tps.round(),
                        "par_tps": parallel_tps.round(),
                        "ratio": round3(par_over_seq),
                        "par_over_revm": round3(par_over_revm),
                        "seq_over_revm": round3(seq_over_revm),
                        "gas_per_txn": gas_per_txn.round(),
                        "revm_gas_per_s": (plain_tps * gas_per_txn).round(),
                        "seq_gas_per_s": (sequential_tps * gas_per_txn).round(),
                        "par_gas_per_s": (parallel_tps * gas_per_txn).round(),
                        "executions_per_txn": round3(executions_per_txn),
                        "with_recovery": {
                            "revm_tps": plain_recovered_tps.round(),
                            "seq_tps": sequential_recovered_tps.round(),
                            "par_tps": parallel_recovered_tps.round(),
                            "par_over_revm": round3(parallel_recovered_tps / plain_recovered_tps),
                            "seq_over_revm": round3(sequential_recovered_tps / plain_recovered_tps),
                            "par_over_seq":
                                round3(parallel_recovered_tps / sequential_recovered_tps),
                            "recovery_threads": options.threads,
                        },
                        "handed_over_runs": handed_over,
                        "sequential_runs": sequential,
                        "round_trip_ns": round_trip.json(),
                    })
                );
            } else {
                println!(
                    "{:<15} {senders:>7} {plain_tps:>10.0} {sequential_tps:>10.0} {parallel_tps:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>10.1} {executions_per_txn:>9.2} {:>11} {:>13}",
                    workload.name(),
                    seq_over_revm,
                    par_over_revm,
                    par_over_seq,
                    parallel_tps * gas_per_txn / 1e6,
                    runs.handed_over_text(options.runs),
                    round_trip,
                );
                println!(
                    "{:<15} {:>7} {plain_recovered_tps:>10.0} {sequential_recovered_tps:>10.0} {parallel_recovered_tps:>10.0} {:>9.2} {:>9.2} {:>9.2}   (with sender recovery)",
                    "",
                    "",
                    sequential_recovered_tps / plain_recovered_tps,
                    parallel_recovered_tps / plain_recovered_tps,
                    parallel_recovered_tps / sequential_recovered_tps,
                );
            }
        }
    }
}
