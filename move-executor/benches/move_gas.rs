//! What a unit of Move gas costs the node: loops a transaction could run to keep a node busy for
//! little gas, timed one transaction at a time on the sequential executor.
//!
//! `cargo bench -p duet-move --bench move_gas [-- --json] [--runs N] [--only NAME]` (`--only`
//! runs the arithmetic loop too, the baseline of the ratio)
//!
//! Each workload is one entry function of a module published first: a loop of one kind of
//! instruction (arithmetic, copies and comparisons of vectors of empty vectors and of structs,
//! and of vectors of 50 000 structs shuffled in memory, which a copy or comparison walks at
//! random through about 14 MB, the most the memory quota lets a transaction hold, moves, generic calls, instructions that instantiate a type, calls of a function with many
//! locals, events, `bcs::to_bytes` of many small values and of a value of a wide layout, hashing, `exists`, constants of empty vectors), or one load
//! of a stored vector of 100 000 empty vectors. Prints, per workload, the gas and the median
//! time of its loop (the transaction with its passes less the same without them), nanoseconds
//! per unit of gas, million gas per second, and the ratio of its nanoseconds per gas to the
//! arithmetic loop's measured in the same run: what Duet's gas
//! schedule (`move-executor/src/gas.rs`) aims to keep near 1, so that no instruction mix runs
//! much longer per unit of gas than plain computation does. With `--json`, one JSON object per
//! workload per line.

#[path = "../testkit/mod.rs"]
mod testkit;

use std::fmt::Write;
use std::time::{Duration, Instant};

use duet_bench_kit::{median, round3};
use duet_block_stm::{TransactionResult, VmBlockOutput};
use duet_move::{MoveBlockExecutor, MoveReceipt, MoveStatus, MoveVm};
use duet_types::{MovePayload, MoveTransaction};
use testkit::{call, compile_example, transaction, user, MemoryState, FEE_VAULT, ONE_ETH};

/// The allocator a Duet node runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Each workload: its entry function and how many passes of its loop a transaction makes.
const WORKLOADS: [(&str, u64); 20] = [
    ("arithmetic", 200_000),
    ("empties_compared", 300),
    ("empties_copied", 300),
    ("empties_moved", 100_000),
    ("structs_compared", 300),
    ("structs_copied", 300),
    ("shuffled_structs_compared", 10),
    ("shuffled_structs_copied", 10),
    ("deep_type_instantiated", 100_000),
    ("generic_calls", 100_000),
    ("wide_function_calls", 2_000),
    ("events", 10_000),
    ("deep_events", 10_000),
    ("wide_events", 10_000),
    ("bcs_of_empties", 100),
    ("bcs_of_wide_layouts", 5_000),
    ("hashes", 20_000),
    ("absent_resources", 100_000),
    ("constants_of_empties", 1_000),
    ("stored_empties_loaded", 1),
];

/// Empty vectors in the stored `Hoard`.
const HOARD: u64 = 100_000;
/// Empty vectors in the constant `EMPTIES`.
const CONSTANT_EMPTIES: usize = 1_000;

/// The module's Move source.
fn source(publisher: &str) -> String {
    let deep = format!("{}u8{}", "vector<".repeat(14), ">".repeat(14));
    let (mut wide, mut wide_sum) = (String::new(), String::new());
    for i in 0..200 {
        write!(wide, "let a{i} = x + {i}; ").expect("a String takes writes");
        write!(wide_sum, "a{i} + ").expect("a String takes writes");
    }
    let constant = vec!["vector[]"; CONSTANT_EMPTIES].join(", ");
    // A struct of 254 fields: an empty vector of it is a few bytes and a layout of 510 nodes.
    let fields: Vec<String> = (0..254).map(|field| format!("f{field}: vector<u8>")).collect();
    let wide_struct = fields.join(", ");
    let empties = "let v = vector::empty<vector<u8>>(); let i = 0; \
                   while (i < 1000) { vector::push_back(&mut v, vector::empty<u8>()); i = i + 1 };";
    format!(
        "module example::costly {{ use std::vector; use std::bcs; use std::hash; use duet::event; \
         struct P<T> has copy, drop, store {{ a: T, b: T }} \
         struct S has copy, drop, store {{ x: u64 }} \
         struct K<phantom T> has key {{ x: u64 }} \
         struct Wide has copy, drop, store {{ {wide_struct} }} \
         struct Hoard has key {{ empties: vector<vector<u8>> }} \
         const EMPTIES: vector<vector<u8>> = vector[{constant}]; \
         public entry fun hoard(account: signer, count: u64) {{ \
             let v = vector::empty<vector<u8>>(); let i = 0; \
             while (i < count) {{ vector::push_back(&mut v, vector::empty<u8>()); i = i + 1 }}; \
             move_to(&account, Hoard {{ empties: v }}) }} \
         public entry fun stored_empties_loaded(n: u64) acquires Hoard {{ \
             if (n > 0) {{ assert!(vector::length(&borrow_global<Hoard>({publisher}).empties) > 0, 0) }} }} \
         public entry fun constants_of_empties(n: u64) {{ \
             let j = 0; while (j < n) {{ EMPTIES; j = j + 1 }} }} \
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
         public entry fun structs_copied(n: u64) {{ let v = vector::empty<S>(); let i = 0; \
             while (i < 1000) {{ vector::push_back(&mut v, S {{ x: i }}); i = i + 1 }}; \
             let j = 0; while (j < n) {{ copy v; j = j + 1 }} }} \
         public entry fun shuffled_structs_compared(n: u64) {{ \
             let a = shuffled(50000, 1); let b = shuffled(50000, 2); \
             let j = 0; while (j < n) {{ assert!(&a == &b, 0); j = j + 1 }} }} \
         public entry fun shuffled_structs_copied(n: u64) {{ let a = shuffled(50000, 1); \
             let j = 0; while (j < n) {{ copy a; j = j + 1 }} }} \
         fun shuffled(length: u64, seed: u64): vector<S> {{ let v = vector::empty<S>(); \
             let i = 0; while (i < length) {{ vector::push_back(&mut v, S {{ x: 0 }}); i = i + 1 }}; \
             let r = seed; let j = 0; \
             while (j < length) {{ r = (r * 1103515245 + 12345) % 2147483648; \
                 vector::swap(&mut v, j, r % length); j = j + 1 }}; v }} \
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
         public entry fun wide_events(n: u64) {{ \
             let j = 0; while (j < n) {{ event::emit(vector::empty<Wide>()); j = j + 1 }} }} \
         public entry fun bcs_of_wide_layouts(n: u64) {{ let v = vector::empty<Wide>(); \
             let j = 0; while (j < n) {{ bcs::to_bytes(&v); j = j + 1 }} }} \
         public entry fun hashes(n: u64) {{ \
             let v = b\"duet\"; let j = 0; while (j < n) {{ v = hash::sha3_256(v); j = j + 1 }} }} \
         public entry fun absent_resources(n: u64) {{ \
             let j = 0; while (j < n) {{ exists<K<P<S>>>(@0x1); j = j + 1 }} }} }}"
    )
}

/// The receipt of `transaction`, run alone on `state`: the block's output and the receipt.
fn run_alone(
    executor: &MoveBlockExecutor<'_>,
    state: &MemoryState,
    transaction: &MoveTransaction,
) -> (VmBlockOutput<MoveVm>, MoveReceipt) {
    let output = executor
        .execute_block(std::slice::from_ref(transaction), state)
        .expect("the block executes");
    let TransactionResult::Executed(receipt) = &output.results[0] else {
        panic!("not executed: {:?}", output.results[0]);
    };
    let receipt = receipt.clone();
    (output, receipt)
}

/// The median time, the gas and the status of `transaction`, run `runs` times on `state`.
fn measure(
    executor: &MoveBlockExecutor<'_>,
    state: &MemoryState,
    transaction: &MoveTransaction,
    runs: usize,
) -> (Duration, u64, MoveStatus) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        let (_, receipt) = run_alone(executor, state, transaction);
        times.push(started.elapsed());
        last = Some(receipt);
    }
    let receipt = last.expect("at least one run");
    (median(times), receipt.gas_used, receipt.status)
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
            "--only" => {
                let name = arguments.next().expect("--only NAME");
                let names: Vec<&str> = WORKLOADS.iter().map(|(name, _)| *name).collect();
                assert!(names.contains(&name.as_str()), "--only takes one of {names:?}");
                only = Some(name);
            }
            _ => {} // `cargo bench` passes `--bench`.
        }
    }
    let publisher = user(1);
    let vm = MoveVm::new(FEE_VAULT);
    let executor = MoveBlockExecutor::sequential(&vm);
    let mut state = MemoryState::genesis([publisher], 1_000 * ONE_ETH);
    let modules = compile_example(&source(&format!("@{publisher}")), publisher);
    let mut publish = transaction(publisher, 0, MovePayload::ModuleBundle(modules));
    publish.gas_limit = 30_000_000;
    let argument = |n: u64| vec![bcs::to_bytes(&n).expect("u64")];
    let mut hoard =
        transaction(publisher, 1, call(publisher, "costly", "hoard", &[], argument(HOARD)));
    hoard.gas_limit = 16_000_000;
    for set_up in [publish, hoard] {
        let (output, receipt) = run_alone(&executor, &state, &set_up);
        assert_eq!(receipt.status, MoveStatus::Success, "set-up");
        state.apply(&output.state_updates);
    }
    if !json {
        println!(
            "Move gas: one transaction of each loop against the same without its passes, \
             sequential executor, median of {runs} runs"
        );
        println!(
            "{:<24} {:>10} {:>12} {:>8} {:>8} {:>14}",
            "workload", "loop gas", "loop time", "ns/gas", "Mgas/s", "vs arithmetic"
        );
    }
    let mut arithmetic_ns_per_gas = None;
    for (function, passes) in WORKLOADS {
        if only.as_deref().is_some_and(|only| only != function && function != "arithmetic") {
            continue;
        }
        // The same transactions each run, on the state after the set-up: nothing they write is
        // kept, so every run does the same work. The loop's cost is the difference between the
        // transaction with its passes and without (the transaction's own cost, the set-up of
        // the loop's values).
        let run = |passes: u64| {
            let payload = call(publisher, "costly", function, &[], argument(passes));
            let mut call = transaction(publisher, 2, payload);
            call.gas_limit = 16_000_000;
            measure(&executor, &state, &call, runs)
        };
        let (base_time, base_gas, base_status) = run(0);
        assert_eq!(base_status, MoveStatus::Success, "{function} without its passes");
        let (time, gas, status) = run(passes);
        let time = time.saturating_sub(base_time);
        let gas = gas.saturating_sub(base_gas).max(1);
        let ns_per_gas = time.as_nanos() as f64 / gas as f64;
        if function == "arithmetic" {
            arithmetic_ns_per_gas = Some(ns_per_gas);
        }
        let baseline = arithmetic_ns_per_gas.expect("the arithmetic loop runs first");
        let against = ns_per_gas / baseline;
        let mgas = gas as f64 / time.as_secs_f64() / 1e6;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "workload": function, "passes": passes, "loop_gas": gas,
                    "status": status.to_string(), "loop_time_ms": round3(time.as_secs_f64() * 1e3),
                    "ns_per_gas": round3(ns_per_gas), "mgas_per_s": round3(mgas),
                    "against_arithmetic": round3(against), "runs": runs,
                })
            );
        } else {
            let ended =
                if status == MoveStatus::Success { String::new() } else { format!("  ({status})") };
            println!(
                "{function:<24} {gas:>10} {:>9.3} ms {ns_per_gas:>8.1} {mgas:>8.1} \
                 {against:>14.2}{ended}",
                time.as_secs_f64() * 1e3
            );
        }
    }
}
