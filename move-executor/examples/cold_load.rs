//! What loading a module cold costs against what a call pays for it: the measurement behind
//! the open question of cold module loads (every publication empties every Move VM instance's
//! code cache, so the calls after it load their modules cold, while a call pays the same cached
//! or not: 2 600 + 1/8 gas a byte a module).
//!
//! `cargo run --release -p duet-move --example cold_load [-- COUNT]`: publishes a module of
//! COUNT structs and functions (1 500 unless told) and a module calling it, then times, median
//! of 9, a call of it on emptied caches, the same call warm, and a call of an empty module on
//! emptied caches; prints the load's time against the gas it pays, in nanoseconds a unit of gas
//! (arithmetic runs at about 12: `cargo bench -p duet-move --bench move_gas`).

#[path = "../testkit/mod.rs"]
mod testkit;

use std::fmt::Write;
use std::time::Instant;

use duet_block_stm::TransactionResult;
use duet_move::{MoveBlockExecutor, MoveVm};
use duet_types::MovePayload;
use testkit::{call, compile_example, transaction, user, MemoryState, FEE_VAULT, ONE_ETH};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let count: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(1500);
    let publisher = user(1);
    let vm = MoveVm::new(FEE_VAULT);
    let executor = MoveBlockExecutor::sequential(&vm);
    let mut state = MemoryState::genesis([publisher], 1_000_000 * ONE_ETH);
    let mut big = String::from("module example::big { ");
    for i in 0..count {
        write!(big, "struct S{i} has copy, drop, store {{ a: u64, b: vector<u8>, c: bool }} ")
            .unwrap();
        write!(big, "public fun f{i}(x: u64): u64 {{ let s = S{i} {{ a: x, b: vector[], c: true }}; s.a + {i} }} ").unwrap();
    }
    big.push('}');
    let big_modules = compile_example(&big, publisher);
    let bytes: usize = big_modules.iter().map(Vec::len).sum();
    let all = compile_example(
        &format!("{big} module example::cold {{ use example::big; public entry fun touch() {{ big::f0(1); }} }} \
         module example::plain {{ public entry fun nothing() {{}} }}"),
        publisher,
    );
    let mut nonce = 0;
    let mut run = |state: &mut MemoryState, payload: MovePayload, apply: bool| {
        let mut tx = transaction(publisher, nonce, payload);
        tx.gas_limit = 30_000_000;
        let output = executor.execute_block(std::slice::from_ref(&tx), state).unwrap();
        let TransactionResult::Executed(receipt) = &output.results[0] else {
            panic!("{:?}", output.results[0])
        };
        assert!(receipt.is_success(), "{:?}", receipt.status);
        let gas = receipt.gas_used;
        if apply {
            state.apply(&output.state_updates);
            nonce += 1;
        }
        gas
    };
    run(&mut state, MovePayload::ModuleBundle(all), true);
    let (mut cold, mut warm, mut base) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cold_gas, mut base_gas) = (0, 0);
    for _ in 0..9 {
        vm.flush_code_cache();
        let started = Instant::now();
        cold_gas = run(&mut state, call(publisher, "cold", "touch", &[], vec![]), false);
        cold.push(started.elapsed());
        let started = Instant::now();
        run(&mut state, call(publisher, "cold", "touch", &[], vec![]), false);
        warm.push(started.elapsed());
        vm.flush_code_cache();
        let started = Instant::now();
        base_gas = run(&mut state, call(publisher, "plain", "nothing", &[], vec![]), false);
        base.push(started.elapsed());
    }
    let median = duet_bench_kit::median;
    let (cold, warm, base) = (median(cold), median(warm), median(base));
    let load = cold.saturating_sub(base);
    let gas = cold_gas - base_gas;
    println!(
        "module of {bytes} bytes ({count} structs and functions): cold call {cold:?}, warm {warm:?}, \
         a cold call of an empty module {base:?}; the load {load:?} for {gas} gas: {:.1} ns a unit of gas",
        load.as_nanos() as f64 / gas as f64
    );
}
