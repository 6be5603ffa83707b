//! What loading a module cold costs against what a call pays for it. Every publication empties
//! every Move VM instance's code cache, so the calls after it load their modules again, while a
//! call pays the same cached or not (`gas::MODULE_LOAD`: 2 600 + 1 gas per
//! `gas::MODULE_LOAD_BYTES_PER_GAS` bytes a module, + `gas::MODULE_LINK` per dependency named).
//!
//! `cargo run --release -p duet-move --example cold_load [-- COUNT [FAN]]`: publishes a module of
//! COUNT structs and functions (1 500 unless told), a module calling it, and a module calling FAN
//! (16 unless told) small modules that each depend on it; then times, median of 9, a call of
//! each on emptied caches, the first warm too, and a call of an empty module on emptied caches
//! (and the first call's time apart: the process's first load of the modules);
//! prints each load's time against the gas it pays, in nanoseconds a unit of gas (arithmetic
//! runs at about 12: `cargo bench -p duet-move --bench move_gas`).

#[path = "../testkit/mod.rs"]
mod testkit;

use std::fmt::Write;
use std::time::{Duration, Instant};

use duet_block_stm::TransactionResult;
use duet_move::{MoveBlockExecutor, MoveVm};
use duet_types::MovePayload;
use testkit::{call, compile_example, transaction, user, MemoryState, FEE_VAULT, ONE_ETH};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut arguments = std::env::args().skip(1).map(|n| n.parse::<usize>().ok());
    let count = arguments.next().flatten().unwrap_or(1500);
    let fan = arguments.next().flatten().unwrap_or(16);
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
    let mut source = format!(
        "{big} module example::cold {{ use example::big; public entry fun touch() {{ big::f0(1); }} }} \
         module example::plain {{ public entry fun nothing() {{}} }}"
    );
    let mut fan_out = String::from("module example::fan { public entry fun touch() { ");
    for i in 0..fan {
        write!(
            source,
            " module example::small{i} {{ public fun f(): u64 {{ example::big::f{i}(1) }} }}"
        )
        .unwrap();
        write!(fan_out, "example::small{i}::f(); ").unwrap();
    }
    fan_out.push_str("} }");
    source.push_str(&fan_out);
    let all = compile_example(&source, publisher);
    let named_big = |module: &&Vec<u8>| {
        let module = move_binary_format::CompiledModule::deserialize(module).unwrap();
        module.self_id().name().as_str() == "big"
    };
    let bytes = all.iter().find(named_big).map_or(0, Vec::len);
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
    // The median of 9 runs, and the first's time (the process's first load of the modules).
    let mut timed = |module: &str, function: &str, flush: bool| {
        let (mut times, mut gas) = (Vec::new(), 0);
        for _ in 0..9 {
            if flush {
                vm.flush_code_cache();
            }
            let started = Instant::now();
            gas = run(&mut state, call(publisher, module, function, &[], vec![]), false);
            times.push(started.elapsed());
        }
        let first = times[0];
        (duet_bench_kit::median(times), gas, first)
    };
    let (cold, cold_gas, first) = timed("cold", "touch", true);
    let (warm, _, _) = timed("cold", "touch", false);
    let (fanned, fan_gas, _) = timed("fan", "touch", true);
    let (base, base_gas, _) = timed("plain", "nothing", true);
    let per_gas = |load: Duration, gas: u64| load.as_nanos() as f64 / gas as f64;
    let load = cold.saturating_sub(base);
    let gas = cold_gas - base_gas;
    println!(
        "module of {bytes} bytes ({count} structs and functions): cold call {cold:?}, warm {warm:?}, \
         a cold call of an empty module {base:?}; the load {load:?} for {gas} gas: {:.1} ns a unit of gas",
        per_gas(load, gas)
    );
    let load = first.saturating_sub(base);
    println!(
        "its first cold call in the process (the module deserialized; its publication verified \
         it) {first:?}: {:.1} ns a unit of gas",
        per_gas(load, gas)
    );
    let load = fanned.saturating_sub(base);
    let gas = fan_gas - base_gas;
    println!(
        "{fan} small modules each depending on it, called from one: cold call {fanned:?}; the load \
         {load:?} for {gas} gas: {:.1} ns a unit of gas",
        per_gas(load, gas)
    );
}
