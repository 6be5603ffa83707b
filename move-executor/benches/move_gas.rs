//! What a unit of Move gas costs the node: loops a transaction could run to keep a node busy for
//! little gas, timed one transaction at a time on the sequential executor.
//!
//! `cargo bench -p duet-move --bench move_gas [-- --json] [--runs N] [--only NAME]`
//!
//! Each workload is one entry function of a module published first: a loop of one kind of
//! instruction (arithmetic, copies and comparisons of vectors of empty vectors, moves, generic
//! calls, instructions that instantiate a type, calls of a function with many locals, events,
//! `bcs::to_bytes`, hashing, `exists`). Prints, per workload, the gas the transaction used, the
//! median time of its runs, nanoseconds per unit of gas, million gas per second, and the ratio
//! of its nanoseconds per gas to the arithmetic loop's measured in the same run: what Duet's gas
//! schedule (`move-executor/src/gas.rs`) aims to keep near 1, so that no instruction mix runs
//! much longer per unit of gas than plain computation does. With `--json`, one JSON object per
//! workload per line.

#[path = "../testkit/mod.rs"]
mod testkit;

use std::time::{Duration, Instant};

use duet_bench_kit::{median, round3};
use duet_move::{MoveBlockExecutor, MoveStatus, MoveVm};
use duet_types::MovePayload;
use testkit::{call, compile_example, transaction, user, MemoryState, FEE_VAULT, ONE_ETH};

/// The allocator a Duet node runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Each workload: its entry function and how many passes of its loop a transaction makes.
const WORKLOADS: [(&str, u64); 13] = [
    ("arithmetic", 200_000),
    ("empties_compared", 300),
    ("empties_copied", 300),
    ("empties_moved", 300),
    ("structs_compared", 300),
    ("deep_type_instantiated", 100_000),
    ("generic_calls", 100_000),
    ("wide_function_calls", 2_000),
    ("events", 10_000),
    ("deep_events", 10_000),
    ("bcs_of_empties", 100),
    ("hashes", 20_000),
    ("absent_resources", 100_000),
];

/// The module's Move source.
fn source() -> String {
    let deep = format!("{}u8{}", "vector<".repeat(14), ">".repeat(14));
    let wide: String = (0..200).map(|i| format!("let a{i} = x + {i}; ")).collect();
    let wide_sum: String = (0..200).map(|i| format!("a{i} + ")).collect();
    let empties = "let v = vector::empty<vector<u8>>(); let i = 0; \
                   while (i < 1000) { vector::push_back(&mut v, vector::empty<u8>()); i = i + 1 };";
    format!(
        "module example::costly {{ use std::vector; use std::bcs; use std::hash; use duet::event; \
         struct P<T> has copy, drop, store {{ a: T, b: T }} \
         struct S has copy, drop, store {{ x: u64 }} \
         struct K<phantom T> has key {{ x: u64 }} \
         public entry fun arithmetic(n: u64) {{ \
             let i = 0; let s = 0; while (i < n) {{ s = s + i * 3 / 2; i = i + 1 }} }} \
         public entry fun empties_compared(n: u64) {{ {empties} \
             let j = 0; while (j < n) {{ assert!(&v == &v, 0); j = j + 1 }} }} \
         public entry fun empties_copied(n: u64) {{ {empties} \
             let j = 0; while (j < n) {{ copy v; j = j + 1 }} }} \
         public entry fun empties_moved(n: u64) {{ {empties} \
             let j = 0; while (j < n) {{ let w = v; v = w; j = j + 1 }} }} \
         public entry fun structs_compared(n: u64) {{ let v = vector::empty<S>(); let i = 0; \
             while (i < 1000) {{ vector::push_back(&mut v, S {{ x: i }}); i = i + 1 }}; \
             let j = 0; while (j < n) {{ assert!(&v == &v, 0); j = j + 1 }} }} \
         public entry fun deep_type_instantiated(n: u64) {{ let v = vector::empty<{deep}>(); \
             let j = 0; while (j < n) {{ vector::length(&v); j = j + 1 }} }} \
         fun same<T: copy + drop>(x: T): T {{ x }} \
         public entry fun generic_calls(n: u64) {{ \
             let p = P {{ a: P {{ a: 1u8, b: 2u8 }}, b: P {{ a: 1u8, b: 2u8 }} }}; \
             let j = 0; while (j < n) {{ same(copy p); j = j + 1 }} }} \
         fun wide(x: u64): u64 {{ {wide} {wide_sum} 0 }} \
         public entry fun wide_function_calls(n: u64) {{ \
             let j = 0; while (j < n) {{ wide(j); j = j + 1 }} }} \
         public entry fun events(n: u64) {{ \
             let j = 0; while (j < n) {{ event::emit(S {{ x: j }}); j = j + 1 }} }} \
         public entry fun deep_events(n: u64) {{ \
             let j = 0; while (j < n) {{ event::emit(vector::empty<{deep}>()); j = j + 1 }} }} \
         public entry fun bcs_of_empties(n: u64) {{ {empties} \
             let j = 0; while (j < n) {{ bcs::to_bytes(&v); j = j + 1 }} }} \
         public entry fun hashes(n: u64) {{ \
             let v = b\"duet\"; let j = 0; while (j < n) {{ v = hash::sha3_256(v); j = j + 1 }} }} \
         public entry fun absent_resources(n: u64) {{ \
             let j = 0; while (j < n) {{ exists<K<P<S>>>(@0x1); j = j + 1 }} }} }}"
    )
}

fn main() {
    let mut json = false;
    let mut runs = 9;
    let mut only = None;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--json" => json = true,
            "--runs" => runs = arguments.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--only" => only = Some(arguments.next().expect("--only NAME")),
            _ => {} // `cargo bench` passes `--bench`.
        }
    }
    let publisher = user(1);
    let vm = MoveVm::new(FEE_VAULT);
    let executor = MoveBlockExecutor::sequential(&vm);
    let mut state = MemoryState::genesis([publisher], 1_000 * ONE_ETH);
    let mut publish =
        transaction(publisher, 0, MovePayload::ModuleBundle(compile_example(&source(), publisher)));
    publish.gas_limit = 30_000_000;
    let output = executor.execute_block(&[publish], &state).expect("the module publishes");
    state.apply(&output.state_updates);
    if !json {
        println!(
            "Move gas: one transaction of each loop, sequential executor, median of {runs} runs"
        );
        println!(
            "{:<24} {:>10} {:>12} {:>8} {:>8} {:>14}",
            "workload", "gas", "time", "ns/gas", "Mgas/s", "vs arithmetic"
        );
    }
    let mut arithmetic_ns_per_gas = None;
    for (function, passes) in WORKLOADS {
        if only.as_deref().is_some_and(|only| only != function && function != "arithmetic") {
            continue;
        }
        // The same transaction each run, on the state after publishing: nothing it writes is
        // kept, so every run does the same work.
        let mut one = transaction(
            publisher,
            1,
            call(publisher, "costly", function, &[], vec![bcs::to_bytes(&passes).expect("u64")]),
        );
        one.gas_limit = 16_000_000;
        let mut times = Vec::with_capacity(runs);
        let mut gas = 0;
        let mut status = MoveStatus::Success;
        for _ in 0..runs {
            let started = Instant::now();
            let output = executor.execute_block(std::slice::from_ref(&one), &state);
            times.push(started.elapsed());
            let output = output.expect("the block executes");
            let duet_block_stm::TransactionResult::Executed(receipt) = &output.results[0] else {
                panic!("{function}: not executed");
            };
            gas = receipt.gas_used;
            status = receipt.status.clone();
        }
        let time: Duration = median(times);
        let ns_per_gas = time.as_nanos() as f64 / gas as f64;
        let baseline = *arithmetic_ns_per_gas.get_or_insert(ns_per_gas);
        let against = ns_per_gas / baseline;
        let mgas = gas as f64 / time.as_secs_f64() / 1e6;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "workload": function, "passes": passes, "gas": gas,
                    "status": status.to_string(), "time_ms": round3(time.as_secs_f64() * 1e3),
                    "ns_per_gas": round3(ns_per_gas), "mgas_per_s": round3(mgas),
                    "against_arithmetic": round3(against), "runs": runs,
                })
            );
        } else {
            let ended =
                if status == MoveStatus::Success { String::new() } else { format!("  ({status})") };
            println!(
                "{function:<24} {gas:>10} {:>12.1?} {ns_per_gas:>8.1} {mgas:>8.1} {against:>14.2}{ended}",
                time
            );
        }
    }
}
