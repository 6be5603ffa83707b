//! The gas schedule: what instructions, values, frames, events, serialization and the code a
//! transaction loads cost.

use super::*;

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
        &with_empty_vectors(
            "module example::greedy { \
             use std::vector; \
             struct S has copy, drop { x: u64 } \
             public entry fun compared_structs(length: u64, times: u64) { \
                 let v = vector::empty<S>(); let i = 0; \
                 while (i < length) { vector::push_back(&mut v, S { x: i }); i = i + 1 }; \
                 let j = 0; while (j < times) { assert!(&v == &v, 0); j = j + 1 } } \
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
                 let v = empty_vectors(length); let r = &v; let j = 0; \
                 while (j < times) { *r; j = j + 1 } } \
             public entry fun copied_empties(length: u64, times: u64) { \
                 let v = empty_vectors(length); let j = 0; \
                 while (j < times) { copy v; j = j + 1 } } \
             public entry fun compared_pair(length: u64, times: u64) { \
                 let v = empty_vectors(length); let w = copy v; let j = 0; \
                 while (j < times) { assert!(&v == &w, 0); j = j + 1 } } \
             public entry fun compared_empties(length: u64, times: u64) { \
                 let v = empty_vectors(length); let j = 0; \
                 while (j < times) { assert!(&v == &v, 0); j = j + 1 } } }",
        ),
        alice,
    );
    chain.publish(alice, module);
    let mut gas_used = |function: &str, length: u64, times: u64| {
        chain.call_once(alice, "greedy", function, vec![bcs(&length), bcs(&times)])
    };
    // 1 000 empty vectors: each counts 128 (a value of its own: an allocation, a `RefCell`), or
    // copying them would be nearly free: 128 128 / 32 = 4 004 gas a copy. Compared, each counts
    // 32 (comparing one allocates nothing): 32 032 / 32 = 1 001 gas a side; 1 000 one-field
    // structs, 32 + 16 each: 48 032 / 32 = 1 501 a side.
    let cases = [
        ("copies", 10_000, 2_500),
        ("comparisons", 10_000, 5_000),
        ("empties", 1_000, 4_004),
        ("compared_empties", 1_000, 2_002),
        ("compared_structs", 1_000, 3_002),
    ];
    for (function, length, per_time) in cases {
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
    // Exactly: a thousand more elements compared cost 1 000 x 32 (or 48) units a side more.
    for (function, more) in [("compared_empties", 2_000), ("compared_structs", 3_000)] {
        let mut per_time = |length: u64| {
            let (_, ten) = gas_used(function, length, 10);
            let (_, twenty) = gas_used(function, length, 20);
            (twenty - ten) / 10
        };
        assert_eq!(per_time(2_000) - per_time(1_000), more, "{function}");
    }
    // Once the transaction's values outgrow the caches, walking a value takes a miss per
    // container: a copy pays twice per unit while they hold more than 4 MiB (4 194 304 bytes),
    // four times past 8 MiB (8 388 608), a comparison twice past 8 MiB. N empty vectors hold
    // 48 + 96 N bytes, twice that with their copy (counted from before it is made) or with the
    // second vector compared: 21 800 and 21 900 sit either side of the first step (4 185 696,
    // 4 204 896), 43 600 and 43 800 either side of the second (8 371 296, 8 409 696).
    let mut per_time = |function: &str, length: u64| {
        let mut gas = |times: u64| {
            let arguments = vec![bcs(&length), bcs(&times)];
            let output = chain.call_output(alice, "greedy", function, arguments, 10_000_000);
            let receipt = receipt(&output, 0);
            assert_eq!(receipt.status, MoveStatus::Success, "{function} of {length}");
            receipt.gas_used
        };
        gas(2) - gas(1)
    };
    let copies = [(21_800, 1), (21_900, 2), (43_600, 2), (43_800, 4)];
    for (function, length, times) in copies
        .iter()
        .map(|&(length, times)| ("empties", length, times))
        .chain([("copied_empties", 43_600, 2), ("copied_empties", 43_800, 4)])
    {
        let expected = 1 + 128 * (length + 1) * times / 32;
        let per = per_time(function, length);
        assert!((expected..expected + 20).contains(&per), "{function} of {length}: {per} gas");
    }
    for (length, times) in [(43_600, 1), (43_800, 2)] {
        let expected = 1 + 2 * (32 * (length + 1) * times / 32);
        let per = per_time("compared_pair", length);
        assert!((expected..expected + 20).contains(&per), "{length} compared: {per} gas");
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
         public entry fun big(times: u64) { moved(empty_vectors(1000), times) } \
         public entry fun small(times: u64) { moved(vector::empty<vector<u8>>(), times) } }";
    chain.publish(alice, compile_example(&with_empty_vectors(source), alice));
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
             let v = empty_vectors(1000); \
             let j = 0; while (j < times) { bcs::to_bytes(&v); j = j + 1 } } }";
    chain.publish(alice, compile_example(&with_empty_vectors(source), alice));
    let per = chain.gas_per_pass(alice, "serial", "serialize", |_| ());
    assert!((4_004 + 1_002..4_004 + 1_002 + 100).contains(&per), "{per} gas a serialization");
}

/// `bcs::to_bytes` pays for the layout it serializes with, which the VM copies for each call:
/// an empty `vector<Big>` (Big of 254 fields) is a few bytes, but its layout has 510 nodes.
#[test]
fn serializing_pays_for_the_layout_the_vm_copies() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let fields: Vec<String> = (0..254).map(|field| format!("f{field}: vector<u8>")).collect();
    let source = format!(
        "module example::wide {{ use std::bcs; use std::vector; \
         struct Big has copy, drop, store {{ {} }} \
         public entry fun serialize(times: u64) {{ \
             let v = vector::empty<Big>(); \
             let j = 0; while (j < times) {{ bcs::to_bytes(&v); j = j + 1 }} }} }}",
        fields.join(", ")
    );
    chain.publish(alice, compile_example(&source, alice));
    let per = chain.gas_per_pass(alice, "wide", "serialize", |status| {
        assert_eq!(*status, MoveStatus::Success);
    });
    // 510 nodes at 3 gas: 1 530, besides the call and the loop's instructions.
    assert!((1_530..1_530 + 100).contains(&per), "{per} gas a serialization");
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
             move_to(&account, Hoard {{ empties: empty_vectors(count) }}) }} \
         public entry fun touch(n: u64) {{ if (n > 0) assert!(exists<Hoard>(@{alice}), 0) }} \
         public entry fun touch_at(owner: address) {{ assert!(exists<Hoard>(owner), 0) }} }}"
    );
    chain.publish(alice, compile_example(&with_empty_vectors(&source), alice));
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
    let per = chain.gas_per_pass(alice, "literal", "load", |status| {
        assert_eq!(*status, MoveStatus::Success);
    });
    assert!((2..20).contains(&per), "{per} gas a pass");
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
