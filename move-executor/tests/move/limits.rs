//! Limits on what a transaction can make the VM hold or build: the memory quota, value depth,
//! type and layout sizes, the keys of resources.

use super::*;

#[test]
fn the_heap_a_transactions_values_hold_at_once_is_bounded() {
    // A copy of a vector of 10 000 empty vectors cost 5 000 gas and held about 950 KB: a
    // transaction at the gas cap could hold 1.5 GB (it costs 40 005 gas now while the
    // transaction holds under 4 MiB, a container counting 128). The VM counts the heap each
    // value holds (960 048 bytes for such a copy) and fails the transaction past 16 MiB; what
    // it frees (a copy overwritten, popped, compared, written over, or left in a frame that
    // returns) no longer counts, so churning through far more than 16 MiB in all is fine.
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    let module = compile_example(
        &with_empty_vectors(
            "module example::hoard { \
             use std::vector; \
             fun bytes(length: u64): vector<u8> { \
                 let v = vector::empty<u8>(); let i = 0; \
                 while (i < length) { vector::push_back(&mut v, 7u8); i = i + 1 }; v } \
             fun dropped(_v: vector<u8>) {} \
             struct S has drop { x: u64 } \
             public entry fun stack(rounds: u64) { \
                 let s = vector::empty<S>(); let j = 0; \
                 while (j < rounds) { vector::push_back(&mut s, S { x: j }); \
                     vector::pop_back(&mut s); j = j + 1 } } \
             public entry fun keep(copies: u64) { \
                 let v = empty_vectors(10000); let kept = vector::empty<vector<vector<u8>>>(); \
                 let j = 0; \
                 while (j < copies) { vector::push_back(&mut kept, copy v); j = j + 1 } } \
             public entry fun churn(times: u64) { \
                 let v = bytes(100000); let c = vector::empty<u8>(); let j = 0; \
                 while (j < times) { \
                     c = copy v; copy v; assert!(copy v == c, 0); dropped(copy v); \
                     *&mut c = copy v; j = j + 1 } } }",
        ),
        alice,
    );
    chain.publish(alice, module);
    let mut run = |function: &str, argument: u64| {
        let (balance, nonce) = (chain.state.balance(alice), chain.state.nonce(alice));
        let output = chain.call_output(alice, "hoard", function, vec![bcs(&argument)], 16_000_000);
        let receipt = receipt(&output, 0).clone();
        // Whatever happened, the sender paid for the gas it used and nothing else moved.
        assert_eq!(chain.state.balance(alice), balance - fee(&receipt), "{function}");
        assert_eq!(chain.state.balance(bob), 100 * ONE_ETH);
        assert_eq!(chain.state.nonce(alice), nonce + 1);
        (output, receipt)
    };
    // 15 copies held at once with their source (15.4 MB as counted) fit; 20 (20.2 MB) do not,
    // and pay what they used.
    assert_eq!(run("keep", 15).1.status, MoveStatus::Success);
    let (output, refused) = run("keep", 20);
    assert_failed(&output, 0, duet_move::MEMORY_LIMIT_EXCEEDED, "more than 16 MiB at once");
    assert!(refused.gas_used < 16_000_000, "it pays the gas it used: {}", refused.gas_used);
    assert!(refused.events.is_empty());
    // 400 000 pushes and pops on a vector of one struct at most: each push's slot is freed by
    // its pop (they added up to 19 MB when pops freed none).
    let (_, stacked) = run("stack", 400_000);
    assert_eq!(stacked.status, MoveStatus::Success, "{stacked:?}");
    // 200 rounds of five 100 000-byte copies, each freed: 100 MB in all, about 300 KB at once.
    let (_, churned) = run("churn", 200);
    assert_eq!(churned.status, MoveStatus::Success, "{churned:?}");
    assert!(churned.gas_used > 3_000_000, "the copies were paid for: {}", churned.gas_used);
}

#[test]
fn events_count_against_the_memory_quota_until_the_transaction_ends() {
    // An event keeps its guid, type and value until the transaction ends: about 870 bytes for
    // an empty vector of a 15-node type, emitted for some 700 gas. With 14.4 MB of copies held,
    // 2 000 of them fit under 16 MiB and 15 000 do not (they would, had the event native's
    // arguments been counted as freed when it returned and what it keeps not counted).
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let deep = format!("{}u8{}", "vector<".repeat(14), ">".repeat(14));
    let source = format!(
        "module example::heavy_events {{ use duet::event; use std::vector; \
         public entry fun hoard_then_emit(events: u64) {{ \
             let v = empty_vectors(10000); \
             let kept = vector::empty<vector<vector<u8>>>(); let j = 0; \
             while (j < 14) {{ vector::push_back(&mut kept, copy v); j = j + 1 }}; \
             let k = 0; \
             while (k < events) {{ event::emit(vector::empty<{deep}>()); k = k + 1 }} }} \
         public entry fun emit_big(length: u64) {{ event::emit(empty_vectors(length)) }} }}"
    );
    chain.publish(alice, compile_example(&with_empty_vectors(&source), alice));
    let mut run = |events: u64| {
        chain.call_output(alice, "heavy_events", "hoard_then_emit", vec![bcs(&events)], 16_000_000)
    };
    let output = run(2_000);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success);
    assert_eq!(receipt(&output, 0).events.len(), 2_000);
    let output = run(15_000);
    assert_failed(&output, 0, duet_move::MEMORY_LIMIT_EXCEEDED, "more than 16 MiB at once");
    assert!(receipt(&output, 0).events.is_empty());
    // An event of 100 000 empty vectors (9.6 MB) is kept: its argument is freed before what
    // the event keeps is counted (counted twice for a moment, it passed the quota).
    let arguments = vec![bcs(&100_000u64)];
    let output = chain.call_output(alice, "heavy_events", "emit_big", arguments, 16_000_000);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success);
    assert_eq!(receipt(&output, 0).events.len(), 1);
}

#[test]
fn vector_natives_called_as_functions_are_refused() {
    // `0x1::vector`'s functions are bytecode instructions, counted by the memory quota; called
    // as natives from hand-written bytecode, `push_back` grew a vector uncounted.
    use move_binary_format::file_format::{
        AbilitySet, AddressIdentifierIndex, Bytecode, FunctionHandle, FunctionHandleIndex,
        FunctionInstantiation, FunctionInstantiationIndex, IdentifierIndex, ModuleHandle,
        ModuleHandleIndex, Signature, SignatureIndex, SignatureToken,
    };
    use move_core_types::identifier::Identifier;
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::raw { use std::vector; \
         public entry fun grow(times: u64) { \
             let v = vector::empty<u8>(); let i = 0; \
             while (i < times) { vector::push_back(&mut v, 1u8); i = i + 1 } } }";
    let module = edited_module(source, alice, |module| {
        let framework = move_core_types::account_address::AccountAddress::from_hex_literal("0x1");
        let address = AddressIdentifierIndex(position_or_push(
            &mut module.address_identifiers,
            framework.unwrap(),
        ));
        let identifier = |name: &str| Identifier::new(name).unwrap();
        let name = IdentifierIndex(position_or_push(&mut module.identifiers, identifier("vector")));
        let vector = ModuleHandleIndex(position_or_push(
            &mut module.module_handles,
            ModuleHandle { address, name },
        ));
        let name =
            IdentifierIndex(position_or_push(&mut module.identifiers, identifier("push_back")));
        let element = SignatureToken::TypeParameter(0);
        let vector_of = SignatureToken::Vector(Box::new(element.clone()));
        let parameters = SignatureIndex(position_or_push(
            &mut module.signatures,
            Signature(vec![SignatureToken::MutableReference(Box::new(vector_of)), element]),
        ));
        let return_ = SignatureIndex(position_or_push(&mut module.signatures, Signature(vec![])));
        let u8s = SignatureIndex(position_or_push(
            &mut module.signatures,
            Signature(vec![SignatureToken::U8]),
        ));
        let push_back = FunctionHandle {
            module: vector,
            name,
            parameters,
            return_,
            type_parameters: vec![AbilitySet::EMPTY],
        };
        let handle = FunctionHandleIndex(position_or_push(&mut module.function_handles, push_back));
        let instantiation = FunctionInstantiation { handle, type_parameters: u8s };
        let call = FunctionInstantiationIndex(position_or_push(
            &mut module.function_instantiations,
            instantiation,
        ));
        let code = &mut module.function_defs[0].code.as_mut().unwrap().code;
        let mut replaced = 0;
        for instruction in code.iter_mut() {
            if matches!(instruction, Bytecode::VecPushBack(_)) {
                *instruction = Bytecode::CallGeneric(call);
                replaced += 1;
            }
        }
        assert_eq!(replaced, 1, "the compiled code pushes with the instruction");
    });
    chain.publish(alice, vec![module]);
    let output = chain.call_output(alice, "raw", "grow", vec![bcs(&3u64)], GAS_LIMIT);
    assert_failed(&output, 0, "FUNCTION_RESOLUTION_FAILURE", "run as bytecode instructions");
}

#[test]
fn a_type_doubled_by_a_chain_of_generic_calls_is_refused_past_512_nodes() {
    // Each call instantiates the next with `Pair<T, T>`: the type doubles at each level, and 26
    // levels built 2^26 nodes under the depth bound alone (34 seconds for 21 600 gas; a few
    // more levels, gigabytes).
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let functions = generic_chain(26, "drop", "", "", "Pair<T, T>", "", "");
    let source = format!(
        "module example::types {{ struct Pair<A, B> has drop {{ a: A, b: B }} {functions} \
         public entry fun deep() {{ f0<u8>() }} \
         public entry fun shallow() {{ f22<u8>() }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let output = chain.run_calls(alice, &[("types", "shallow"), ("types", "deep")]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success, "four levels: 31 nodes");
    assert_failed(&output, 1, "VM_MAX_TYPE_DEPTH_REACHED", "a type of more than 512 nodes");
}

#[test]
fn a_layout_too_deep_fails_whatever_the_cache_holds() {
    // `A<…7…<u8>>` has a layout 113 deep; `W` holds vectors 15 deep of it: 129. Once the first
    // was cached, the second was built from the cache without its depth checked, so it
    // succeeded or failed by what an earlier transaction had cached.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let a7 = format!("{}u8{}", "A<".repeat(7), ">".repeat(7));
    let deep = format!("{}T{}", "vector<".repeat(15), ">".repeat(15));
    let source = format!(
        "module example::cached {{ \
         struct A<T: store> has key, store {{ v: {deep} }} \
         struct W<T: store> has key {{ v: {deep} }} \
         public entry fun shallow() {{ assert!(!exists<{a7}>(@0x1), 1) }} \
         public entry fun deep() {{ assert!(!exists<W<{a7}>>(@0x1), 1) }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    // In one block (the parallel runs see other caches), then alone after it (a warm cache).
    let output = chain.run_calls(alice, &[("cached", "shallow"), ("cached", "deep")]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success);
    assert_failed(&output, 1, "VM_MAX_VALUE_DEPTH_REACHED", "or 128 levels");
    let output = chain.run_calls(alice, &[("cached", "deep")]);
    assert_failed(&output, 0, "VM_MAX_VALUE_DEPTH_REACHED", "or 128 levels");
}

#[test]
fn no_value_deeper_than_128_is_built() {
    // `W0` holds vectors 15 deep of `W1`, which holds vectors of `W2`, …: a value of `W1` would
    // be 130 deep. The VM's functions over values recurse once per level, so a chain of such
    // structs (across modules, without end) once let a transaction overflow the node's stack.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let mut items = String::new();
    for level in 0..10 {
        if level == 9 {
            write!(items, "struct W9 has drop {{ v: u8 }} fun w9(): W9 {{ W9 {{ v: 1 }} }} ")
        } else {
            let next = level + 1;
            let field = format!("{}W{next}{}", "vector<".repeat(15), ">".repeat(15));
            let value = format!("{}w{next}(){}", "vector[".repeat(15), "]".repeat(15));
            write!(
                items,
                "struct W{level} has drop {{ f: {field} }} \
                 fun w{level}(): W{level} {{ W{level} {{ f: {value} }} }} "
            )
        }
        .expect("a string takes it");
    }
    let source = format!(
        "module example::nested {{ {items} \
         public entry fun shallow() {{ w2(); }} \
         public entry fun deep() {{ w0(); }} }}"
    );
    // The compiler recurses once per level: on a thread with room for it.
    let compile = std::thread::Builder::new().stack_size(256 << 20);
    let modules = compile.spawn(move || compile_example(&source, alice)).unwrap().join().unwrap();
    chain.publish(alice, modules);
    let output = chain.run_calls(alice, &[("nested", "shallow"), ("nested", "deep")]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success, "114 deep");
    assert_failed(&output, 1, "VM_MAX_VALUE_DEPTH_REACHED", "a value deeper than 128");
}

#[test]
fn a_value_depth_is_checked_without_expanding_instantiations() {
    // `S_i<T>` holds vectors of `S_{i+1}<W1<T>>` and of `S_{i+1}<W2<T>>`: `S_1<u8>` names 2^29
    // different instantiations of `S_30`. Checking its depth once expanded them all; now each
    // struct's depth is a formula of its type arguments, computed once.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let levels = 30;
    let mut structs = String::new();
    for level in 1..levels {
        let next = level + 1;
        write!(
            structs,
            "struct S{level}<T> has drop {{ a: vector<S{next}<W1<T>>>, b: vector<S{next}<W2<T>>> }} "
        )
        .expect("a string takes it");
    }
    let source = format!(
        "module example::wide {{ \
         struct W1<T> has drop {{ x: T }} struct W2<T> has drop {{ x: T }} \
         struct S{levels}<T> has drop {{ x: T }} {structs} \
         public entry fun pack() {{ \
             let _s = S1<u8> {{ a: vector[], b: vector[] }}; }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let output = chain.run(&[transaction(alice, 1, call(alice, "wide", "pack", &[], vec![]))]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success);
}

#[test]
fn a_layout_doubled_by_nesting_a_struct_is_refused_past_512_nodes() {
    // `Pair<T>` holds two `T`s: nested 25 deep, a type of 26 nodes whose layout (what reading
    // or writing a resource of it needs, built before any gas is charged) has 2^26. (Its tag,
    // 911 bytes, is short enough for a resource's key.)
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let functions =
        generic_chain(25, "store + drop", "", ": bool", "Pair<T>", "", "exists<Holder<T>>(@0x1)");
    let source = format!(
        "module example::layouts {{ \
         struct Pair<T> has store, drop {{ a: T, b: T }} \
         struct Holder<T: store> has key {{ value: T }} {functions} \
         public entry fun deep() {{ f0<u8>(); }} \
         public entry fun shallow() {{ f20<u8>(); }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let output = chain.run_calls(alice, &[("layouts", "shallow"), ("layouts", "deep")]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success, "five levels: 63 nodes");
    assert_failed(&output, 1, "VM_MAX_VALUE_DEPTH_REACHED", "a type layout of more than 512 nodes");
}

#[test]
fn a_resource_or_event_type_too_long_to_keep_fails_and_pays_its_fee() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    // A name of 200 bytes, nested five deep: a type tag of over 1 024 bytes.
    let name = format!("R{}", "x".repeat(199));
    let long = format!("{}u64{}", format!("{name}<").repeat(5), ">".repeat(5));
    let source = format!(
        "module example::long {{ use duet::event; \
         struct {name}<phantom T> has key, store, drop {{ value: u64 }} \
         struct Short has key {{ value: u64 }} \
         public entry fun make(account: &signer) {{ move_to<{long}>(account, {name} {{ value: 1 }}) }} \
         public entry fun emit(_account: &signer) {{ event::emit<{long}>({name} {{ value: 1 }}) }} \
         public entry fun probe(_account: &signer, who: address) {{ assert!(!exists<{long}>(who), 1) }} \
         public entry fun short(account: &signer) {{ move_to(account, Short {{ value: 1 }}) }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let before = chain.state.clone();
    let output = chain.run(&[
        transaction(alice, 1, call(alice, "long", "make", &[], vec![])),
        transaction(alice, 2, call(alice, "long", "emit", &[], vec![])),
        transaction(alice, 3, call(alice, "long", "probe", &[], vec![bcs(&alice.0 .0)])),
        transaction(alice, 4, call(alice, "long", "short", &[], vec![])),
    ]);
    // Refused before the type's tag is built: a resource read or written, an event emitted, of
    // a type whose tag no key or receipt may hold (a type of a few nodes with long names could
    // otherwise build megabytes of tag for every read).
    for index in 0..3 {
        assert_failed(&output, index, "VALUE_SERIALIZATION_ERROR", "a type tag of more than 1025");
        assert!(receipt(&output, index).events.is_empty());
    }
    let short = receipt(&output, 3);
    assert!(short.is_success(), "{short:?}");
    let fees = (0..3).map(|index| fee(receipt(&output, index))).sum::<u128>() + fee(short);
    assert_eq!(chain.state.balance(alice), before.balance(alice) - fees);
    assert!(chain.state.resource(alice, &format!("{alice}::long::Short")).is_some());
    assert_eq!(
        chain.state.0.keys().filter(|key| matches!(key, StateKey::MoveResource { .. })).count(),
        before.0.keys().filter(|key| matches!(key, StateKey::MoveResource { .. })).count() + 1,
        "only the short one was stored"
    );
}

#[test]
fn a_resource_type_of_exactly_1024_bytes_of_key_is_kept_and_one_more_is_refused() {
    // `S<I1, I2, I3, I4>` in module `m` (one letter): its struct tag, as its key holds it, is
    // 20 (address) + 2 (module) + 2 (name) + 1 (argument count) + each argument's type tag,
    // 1 + 20 + 2 + (2 + name) + 1: 129 bytes plus the four names.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let module = |names: [usize; 4]| {
        let mut letters = ['I', 'J', 'K', 'L'].into_iter();
        let names = names
            .map(|length| format!("{}{}", letters.next().unwrap_or('M'), "x".repeat(length - 1)));
        let structs: String = names
            .iter()
            .map(|name| format!("struct {name} {{ value: u64 }}"))
            .collect::<Vec<_>>()
            .join(" ");
        let tag = format!("S<{}>", names.join(", "));
        format!(
            "module example::m {{ {structs} \
             struct S<phantom A, phantom B, phantom C, phantom D> has key {{ value: u64 }} \
             public entry fun make(account: &signer) {{ move_to<{tag}>(account, S {{ value: 7 }}) }} \
             public entry fun check(account: &signer) {{ \
             assert!(exists<{tag}>(std::signer::address_of(account)), 1) }} }}"
        )
    };
    // 129 + 895 = 1 024 bytes: stored and read back.
    chain.publish(alice, compile_example(&module([224, 224, 224, 223]), alice));
    let output = chain.run_calls(alice, &[("m", "make"), ("m", "check")]);
    for index in 0..2 {
        assert!(receipt(&output, index).is_success(), "{:?}", receipt(&output, index));
    }
    // A byte more: refused when read (as `move_to` does first), before its tag is built.
    let bob = user(2);
    let mut chain = Chain::new([bob]);
    chain.publish(bob, compile_example(&module([224, 224, 224, 224]), bob));
    let output = chain.run_calls(bob, &[("m", "make")]);
    assert_failed(&output, 0, "VALUE_SERIALIZATION_ERROR", "a type tag of more than 1025 bytes");
}

/// `example::forge::f`, whose `vector[S { a: victim }]` is rewritten to pack the `S` as a
/// vector of `element` (the signature token), and unpack it `unpacked` times if given.
fn forged_vector(
    publisher: Address,
    element: move_binary_format::file_format::SignatureToken,
    counts: Option<(u64, u64)>,
) -> Vec<u8> {
    use move_binary_format::file_format::{Bytecode, Signature, SignatureIndex};
    let source = "module example::forge { struct S has drop { a: address } \
                  public fun f(victim: address) { let _v = vector[S { a: victim }]; } }";
    edited_module(source, publisher, |module| {
        let forged =
            SignatureIndex(position_or_push(&mut module.signatures, Signature(vec![element])));
        let code = &mut module.function_defs[0].code.as_mut().unwrap().code;
        for instruction in code.iter_mut() {
            if let Bytecode::VecPack(signature, count) = instruction {
                *signature = forged;
                if let Some((packed, _)) = counts {
                    *count = packed;
                }
            }
        }
        if let Some((_, unpacked)) = counts {
            let at = code.iter().position(|op| matches!(op, Bytecode::VecPack(..))).unwrap();
            code.insert(at + 1, Bytecode::VecUnpack(forged, unpacked));
            code.insert(at + 2, Bytecode::VecPack(forged, unpacked));
        }
    })
}

#[test]
fn a_vector_packed_from_values_of_another_type_is_refused() {
    // A `signer` packed from a struct holding the victim's address, then unpacked as one, would
    // sign for anyone: the verifier checks each packed value against the element type.
    use move_binary_format::file_format::SignatureToken;
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let forged = forged_vector(alice, SignatureToken::Signer, None);
    let nonce = chain.state.nonce(alice);
    let output = chain.run(&[transaction(alice, nonce, MovePayload::ModuleBundle(vec![forged]))]);
    assert_failed(&output, 0, "TYPE_MISMATCH", "");
    assert_eq!(chain.state.nonce(alice), nonce + 1);
    // A count of 2^32 elements, which the verifier would loop over and push onto its stack, is
    // refused before it runs.
    let huge = forged_vector(alice, SignatureToken::Address, Some((1, 1 << 32)));
    // The verifier's own passes refuse it too, as they do for stored modules.
    let compiled = move_binary_format::CompiledModule::deserialize(&huge).unwrap();
    let config = move_bytecode_verifier::VerifierConfig::default();
    let refused = move_bytecode_verifier::CodeUnitVerifier::verify_module(&config, &compiled);
    let status = refused.unwrap_err().major_status();
    assert_eq!(status, move_core_types::vm_status::StatusCode::CONSTRAINT_NOT_SATISFIED);
    let nonce = chain.state.nonce(alice);
    let output = chain.run(&[transaction(alice, nonce, MovePayload::ModuleBundle(vec![huge]))]);
    assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", "a vector instruction of 4294967296");
}

/// A resource whose type nests deeper than its state key can encode (BCS takes 500 nested
/// containers; a struct type argument is two) fails the transaction, which pays its fee, instead
/// of stopping the executor.
#[test]
fn a_resource_type_too_deep_for_a_state_key_fails_and_pays_its_fee() {
    // Each function's types are shallow; the chain of calls builds `Box<…250 deep…<u8>>`.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let functions = generic_chain(
        250,
        "store + drop",
        "account: &signer",
        "",
        "Box<T>",
        "account",
        "move_to<Box<T>>(account, Box {})",
    );
    let source = format!(
        "module example::deep {{ struct Box<phantom T> has key, store, drop {{}} {functions} \
         public entry fun store(account: &signer) {{ f0<u8>(account) }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    let before = chain.state.balance(alice);
    let output = chain.run(&[transaction(alice, 1, call(alice, "deep", "store", &[], vec![]))]);
    let failed = receipt(&output, 0);
    assert!(matches!(failed.status, MoveStatus::Failed { .. }), "{failed:?}");
    assert_eq!(chain.state.balance(alice), before - fee(failed), "it pays its fee");
    assert_eq!(chain.state.nonce(alice), 2, "its nonce is used");
}

#[test]
fn the_cache_of_instantiated_types_stays_bounded() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let mut checks = String::new();
    for levels in 1..=12 {
        let wrapped = format!("{}T{}", "H<".repeat(levels), ">".repeat(levels));
        write!(checks, "exists<{wrapped}>(@0x1) || ").expect("a string");
    }
    let source = format!(
        "module example::types {{ struct H<phantom T> has key {{ v: u64 }} \
         struct P<phantom A, phantom B, phantom C, phantom D> {{}} \
         public entry fun probe<T>(_s: &signer) {{ assert!(!({checks}false), 1) }} }}"
    );
    chain.publish(alice, compile_example(&source, alice));
    // Type arguments all different: P<b0, b1, b2, P<b3, b4, b5, b6>> for the base-4 digits of
    // their index, each a primitive type.
    let type_argument = |index: usize| {
        let digit = |at: usize| ["u8", "u64", "u128", "bool"][index >> (2 * at) & 3];
        let inner =
            format!("{alice}::types::P<{}, {}, {}, {}>", digit(3), digit(4), digit(5), digit(6));
        format!("{alice}::types::P<{}, {}, {}, {inner}>", digit(0), digit(1), digit(2))
    };
    let (mut most, mut emptied, mut last) = (0, false, 0);
    for block in 0..4 {
        let first = chain.state.nonce(alice);
        let transactions: Vec<_> = (0..100)
            .map(|offset| {
                let argument = type_argument(block * 100 + offset);
                let payload = call(alice, "types", "probe", &[argument.as_str()], vec![]);
                transaction(alice, first + offset as u64, payload)
            })
            .collect();
        let output = chain.run(&transactions);
        for index in 0..100 {
            assert!(receipt(&output, index).is_success(), "{:?}", receipt(&output, index).status);
        }
        let nodes = chain.sequential_vm.cached_type_nodes();
        emptied |= nodes < last;
        (most, last) = (most.max(nodes), nodes);
    }
    assert!(emptied, "400 calls of 12 new instantiations each fill the cache ({most} nodes)");
    assert!(most <= move_vm_runtime::TYPE_CACHE_NODES_MAX, "{most} nodes");
}

#[test]
fn a_function_carrying_many_references_through_many_blocks_is_refused() {
    // 120 references held in locals through 2 000 branches: 10 KB that took the verifier's
    // reference analysis 0.8 s (release build).
    use move_binary_format::file_format::{Bytecode, Signature, SignatureIndex, SignatureToken};
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let refs: u8 = 120;
    let module = edited_module("module example::r { public entry fun f() { } }", alice, |module| {
        let reference = SignatureToken::Reference(Box::new(SignatureToken::U64));
        let mut locals = vec![SignatureToken::U64; usize::from(refs)];
        locals.extend(vec![reference; usize::from(refs)]);
        let locals = SignatureIndex(position_or_push(&mut module.signatures, Signature(locals)));
        let code = module.function_defs[0].code.as_mut().unwrap();
        code.locals = locals;
        let mut body = Vec::new();
        for local in 0..refs {
            body.extend([Bytecode::LdU64(0), Bytecode::StLoc(local)]);
        }
        for local in 0..refs {
            body.extend([Bytecode::ImmBorrowLoc(local), Bytecode::StLoc(refs + local)]);
        }
        for _ in 0..2_000 {
            let next = body.len() as u16 + 2;
            body.extend([Bytecode::LdTrue, Bytecode::BrTrue(next)]);
        }
        for local in 0..refs {
            body.extend([Bytecode::MoveLoc(refs + local), Bytecode::Pop]);
        }
        body.push(Bytecode::Ret);
        code.code = body;
    });
    let nonce = chain.state.nonce(alice);
    let output = chain.publish_output(alice, vec![module]);
    // 1 + 2 x 2 000 + 1 blocks, times 121.
    let saying = "function f carries references through too many blocks (484242";
    assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", saying);
    assert_eq!(chain.state.nonce(alice), nonce + 1, "the publication pays its fee");
}
