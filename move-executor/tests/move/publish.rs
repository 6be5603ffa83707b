//! Publishing modules: the verifier, the module limits, upgrades, and chains of dependencies
//! and friends.

use super::*;

#[test]
fn two_mutable_borrows_of_one_local_are_refused_past_the_borrow_graphs_edge_bound() {
    // Twelve branches each set `a = &mut v` for another local: past ten edges between two
    // references the verifier's borrow graph keeps one full borrow of the frame instead, and a
    // mutable borrow of a local was not checked against it. At the join, `&mut v_aliased` and
    // `a` (which is `&mut v_aliased` at run time) both went to `bar`: two live `&mut` to one
    // value, which let a vector's element outlive its pop. Upstream Move fixed it later
    // (aptos-core #17771; this is its test, as bytecode).
    use move_binary_format::file_format::{
        Bytecode, FunctionHandleIndex, Signature, SignatureIndex, SignatureToken,
        StructDefinitionIndex, StructHandleIndex,
    };
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::alias { \
         struct S has copy, drop { x: u8 } \
         public fun bar(a: &mut S, b: &mut S) { a.x = 123; assert!(b.x == 123, 42) } \
         public entry fun foo() { } }";
    let module = edited_module(source, alice, |module| {
        let s = SignatureToken::Struct(StructHandleIndex(0));
        let mutable = SignatureToken::MutableReference(Box::new(s.clone()));
        // a, b: &mut S; vv, v0 … v9, v_aliased: S.
        let mut locals = vec![mutable.clone(), mutable];
        locals.extend(vec![s; 12]);
        let locals = SignatureIndex(position_or_push(&mut module.signatures, Signature(locals)));
        let names: Vec<String> = module
            .function_handles
            .iter()
            .map(|handle| module.identifiers[handle.name.0 as usize].to_string())
            .collect();
        let bar = FunctionHandleIndex(names.iter().position(|name| name == "bar").unwrap() as u16);
        let foo = module
            .function_defs
            .iter()
            .position(|definition| names[definition.function.0 as usize] == "foo")
            .unwrap();
        let (a, vv, v_aliased) = (0u8, 2u8, 13u8);
        let mut body =
            vec![Bytecode::LdU8(0), Bytecode::Pack(StructDefinitionIndex(0)), Bytecode::StLoc(vv)];
        body.extend(std::iter::repeat_n(Bytecode::CopyLoc(vv), 11));
        body.push(Bytecode::StLoc(v_aliased));
        body.extend((3..13).map(Bytecode::StLoc));
        let join = (body.len() + 12 * 4) as u16;
        for target in (3..13).chain([vv, v_aliased]) {
            body.extend([
                Bytecode::MutBorrowLoc(target),
                Bytecode::StLoc(a),
                Bytecode::LdFalse,
                Bytecode::BrTrue(join),
            ]);
        }
        assert_eq!(body.len(), usize::from(join));
        body.extend([
            Bytecode::MutBorrowLoc(v_aliased),
            Bytecode::MoveLoc(a),
            Bytecode::Call(bar),
            Bytecode::Ret,
        ]);
        let code = module.function_defs[foo].code.as_mut().unwrap();
        code.locals = locals;
        code.code = body;
    });
    let nonce = chain.state.nonce(alice);
    let output = chain.publish_output(alice, vec![module]);
    assert_failed(&output, 0, "BORROWLOC_EXISTS_BORROW_ERROR", "");
    assert_eq!(chain.state.nonce(alice), nonce + 1, "the publication pays its fee");
    let key = StateKey::MoveModule { address: alice, name: "alias".into() };
    assert!(!chain.state.0.contains_key(&key), "nothing is published");
}

#[test]
fn an_element_borrowed_immutably_while_it_is_borrowed_mutably_is_refused() {
    // Through a `&mut vector` whose element 0 is mutably borrowed, `vector::borrow` of element
    // 0 gave a `&` beside the `&mut` (the verifier checked only mutable element borrows; a
    // field's borrow was checked both ways). Upstream Move fixed it later (aptos-core #18092).
    use move_binary_format::file_format::{Bytecode, Signature, SignatureIndex, SignatureToken};
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let module =
        edited_module("module example::elements { public entry fun f() { } }", alice, |module| {
            let numbers = SignatureIndex(position_or_push(
                &mut module.signatures,
                Signature(vec![SignatureToken::U64]),
            ));
            let vector = SignatureToken::Vector(Box::new(SignatureToken::U64));
            let locals = vec![
                vector.clone(),
                SignatureToken::MutableReference(Box::new(vector)),
                SignatureToken::MutableReference(Box::new(SignatureToken::U64)),
                SignatureToken::Reference(Box::new(SignatureToken::U64)),
            ];
            let locals =
                SignatureIndex(position_or_push(&mut module.signatures, Signature(locals)));
            let (v, r, e, f) = (0, 1, 2, 3);
            let code = module.function_defs[0].code.as_mut().unwrap();
            code.locals = locals;
            code.code = vec![
                Bytecode::LdU64(7),
                Bytecode::VecPack(numbers, 1),
                Bytecode::StLoc(v),
                Bytecode::MutBorrowLoc(v),
                Bytecode::StLoc(r),
                Bytecode::CopyLoc(r),
                Bytecode::LdU64(0),
                Bytecode::VecMutBorrow(numbers),
                Bytecode::StLoc(e),
                Bytecode::MoveLoc(r),
                Bytecode::LdU64(0),
                Bytecode::VecImmBorrow(numbers),
                Bytecode::StLoc(f),
                Bytecode::LdU64(8),
                Bytecode::MoveLoc(e),
                Bytecode::WriteRef,
                Bytecode::MoveLoc(f),
                Bytecode::Pop,
                Bytecode::Ret,
            ];
        });
    let output = chain.publish_output(alice, vec![module]);
    assert_failed(&output, 0, "VEC_BORROW_ELEMENT_EXISTS_MUTABLE_BORROW_ERROR", "");
    let key = StateKey::MoveModule { address: alice, name: "elements".into() };
    assert!(!chain.state.0.contains_key(&key), "nothing is published");
}

#[test]
fn type_arguments_and_signatures_walked_at_every_use_are_bounded() {
    // The bounds checker and the verifier walk a generic call's type arguments at every call,
    // and a function handle's parameters and returns, or a function's locals, once per handle
    // or function: 30 000 calls of a function without parameters, each with 255 type arguments
    // of 16 nodes (a 64 KB module), took the verifier 4.8 s (release build) and passed the
    // module limits, which counted only the callee's parameters and returns times the type
    // arguments. Each shape, 20 calls or 100 handles, is refused now.
    use move_binary_format::file_format::{
        AbilitySet, Bytecode, FunctionHandleIndex, FunctionInstantiation,
        FunctionInstantiationIndex, Signature, SignatureIndex, SignatureToken,
    };
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::heavy { public fun f<T>() { } public entry fun g() { } }";
    // 255 types of 16 nodes: `vector<…15…<u8>>`.
    let mut deep = SignatureToken::U8;
    for _ in 0..15 {
        deep = SignatureToken::Vector(Box::new(deep));
    }
    let wide = Signature(vec![deep; 255]);
    let module = |calls: usize, handles: usize| {
        let wide = wide.clone();
        edited_module(source, alice, move |module| {
            let names: Vec<String> = module
                .function_handles
                .iter()
                .map(|handle| module.identifiers[handle.name.0 as usize].to_string())
                .collect();
            let f = names.iter().position(|name| name == "f").unwrap();
            let g = module
                .function_defs
                .iter()
                .position(|definition| names[definition.function.0 as usize] == "g")
                .unwrap();
            module.function_handles[f].type_parameters = vec![AbilitySet::EMPTY; 255];
            let wide = SignatureIndex(position_or_push(&mut module.signatures, wide));
            module.function_instantiations.push(FunctionInstantiation {
                handle: FunctionHandleIndex(f as u16),
                type_parameters: wide,
            });
            let call = module.function_instantiations.len() - 1;
            let call = Bytecode::CallGeneric(FunctionInstantiationIndex(call as u16));
            let code = module.function_defs[g].code.as_mut().unwrap();
            code.code = std::iter::repeat_n(call, calls).chain([Bytecode::Ret]).collect();
            // Handles taking the wide signature, as a module's calls of other modules' functions
            // would.
            let mut handle = module.function_handles[f].clone();
            handle.parameters = wide;
            module.function_handles.extend(std::iter::repeat_n(handle, handles));
        })
    };
    let publish = |chain: &mut Chain, module: Vec<u8>, saying: &str| {
        let output = chain.publish_output(alice, vec![module]);
        assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", saying);
        let key = StateKey::MoveModule { address: alice, name: "heavy".into() };
        assert!(!chain.state.0.contains_key(&key), "nothing is published");
    };
    publish(&mut chain, module(20, 0), "function g's instructions instantiate");
    // The measured shape is refused before the bounds checker runs (it took it 276 ms).
    publish(&mut chain, module(30_000, 0), "checking the module's indices would walk more than");
    publish(&mut chain, module(1, 100), "function signatures and locals hold more than");
    // A few such calls are fine.
    assert_eq!(chain.publish_bundle(alice, vec![module(4, 0)]), MoveStatus::Success);
}

#[test]
fn modules_the_verifier_would_check_unsoundly_or_slowly_are_refused() {
    use move_binary_format::file_format::{Bytecode, Signature, SignatureIndex, SignatureToken};
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let publish = |chain: &mut Chain, module: Vec<u8>| {
        let nonce = chain.state.nonce(alice);
        let output = chain.publish_output(alice, vec![module]);
        assert_eq!(chain.state.nonce(alice), nonce + 1, "the publication pays its fee");
        output
    };
    let edited = |edit: &dyn Fn(&mut move_binary_format::CompiledModule)| {
        edited_module("module example::v { public fun f(a: u64): u64 { a } }", alice, edit)
    };
    // 256 parameters and locals: the verifier's reference analysis counts them in a u8, and
    // checked none.
    let many_locals = edited(&|module| {
        let locals = Signature(vec![SignatureToken::U64; 255]);
        let locals = SignatureIndex(position_or_push(&mut module.signatures, locals));
        module.function_defs[0].code.as_mut().unwrap().locals = locals;
    });
    // The verifier refuses it too, as it does for stored modules (published before the limit).
    let compiled = move_binary_format::CompiledModule::deserialize(&many_locals).unwrap();
    let config = move_bytecode_verifier::VerifierConfig::default();
    let refused = move_bytecode_verifier::CodeUnitVerifier::verify_module(&config, &compiled);
    let status = refused.unwrap_err().major_status();
    assert_eq!(status, move_core_types::vm_status::StatusCode::TOO_MANY_LOCALS);
    let output = publish(&mut chain, many_locals);
    assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", "has 256 parameters and locals");
    // 65 002 instructions: the verifier's control-flow graph asserts fewer than 65 534.
    let long = edited(&|module| {
        let code = &mut module.function_defs[0].code.as_mut().unwrap().code;
        code.splice(0..0, std::iter::repeat_n(Bytecode::Nop, 65_000));
    });
    let output = publish(&mut chain, long);
    assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", "has 65002 instructions");
    // Vector instructions of many elements of a large type: the verifier's type pass clones
    // the element type for each value a `VecUnpack` pushes and compares it for each a
    // `VecPack` pops.
    let output = publish(&mut chain, vector_churn(alice, 31, 1));
    assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", "instantiate 129150 type nodes");
    // Loops nested six deep (the verifier's analyses run each to a fixed point).
    let nested =
        (0..6).fold("i = i + 1;".to_owned(), |body, _| format!("while (i < 10) {{ {body} }};"));
    let source = format!("module example::w {{ public fun f() {{ let i = 0; {nested} }} }}");
    let output = publish(&mut chain, compile_example(&source, alice).remove(0));
    match &receipt(&output, 0).status {
        MoveStatus::Failed { status, .. } => assert_eq!(status, "LOOP_MAX_DEPTH_REACHED"),
        other => panic!("six nested loops were published: {other:?}"),
    }
}

#[test]
fn a_module_over_the_limits_is_refused_and_pays_its_fee() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let long_name = format!("R{}", "x".repeat(255));
    let deep = format!("{}u8{}", "vector<".repeat(16), ">".repeat(16));
    let y = "Big<u8, u8, u8, u8>";
    let x = format!("Big<{y}, {y}, {y}, {y}>");
    let wide = format!("Big<{x}, {x}, {x}, {x}>");
    let returns = vec!["T"; 200].join(", ");
    let calls = "g<Big<Big<u8, u8, u8, u8>, Big<u8, u8, u8, u8>, u8, u8>>(); ".repeat(30);
    let modules = [
        format!("module example::a {{ struct {long_name} has drop {{ value: u64 }} }}"),
        format!("module example::b {{ public fun f(_v: {deep}) {{}} }}"),
        format!(
            "module example::c {{ struct Big<A, B, C, D> has drop {{ a: A, b: B, c: C, d: D }} \
             public fun f(_p: {wide}) {{}} }}"
        ),
        format!(
            "module example::d {{ struct Big<A, B, C, D> has drop {{ a: A, b: B, c: C, d: D }} \
             fun g<T: drop>(): ({returns}) {{ abort 0 }} \
             fun h() {{ {calls} }} }}"
        ),
    ];
    let saying = [
        "an identifier of 256 bytes",
        "a type deeper than 16",
        "a type of 85 nodes",
        "instantiate",
        "function h's instructions instantiate",
    ];
    let mut bundles: Vec<Vec<Vec<u8>>> =
        modules.iter().map(|source| compile_example(source, alice)).collect();
    bundles.push(vec![many_exists(alice, &x)]);
    for (index, (bundle, saying)) in bundles.into_iter().zip(saying).enumerate() {
        let before = chain.state.clone();
        let nonce = chain.state.nonce(alice);
        let output = chain.publish_output(alice, bundle);
        assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", saying);
        assert_eq!(
            chain.state.balance(alice),
            before.balance(alice) - fee(receipt(&output, 0)),
            "{index}: only the fee"
        );
        assert_eq!(chain.state.nonce(alice), nonce + 1);
    }

    // An instantiation table no code uses, of 2 000 entries of 255 type arguments each: the
    // loader would build them all. And a bundle of no modules.
    let source = "module example::e { public fun f<T>() {} }";
    let mut module =
        move_binary_format::CompiledModule::deserialize(&compile_example(source, alice)[0])
            .unwrap();
    let wide = move_binary_format::file_format::Signature(vec![
        move_binary_format::file_format::SignatureToken::U8;
        255
    ]);
    module.signatures.push(wide);
    let type_parameters =
        move_binary_format::file_format::SignatureIndex((module.signatures.len() - 1) as u16);
    let handle = module.function_defs[0].function;
    let entry = move_binary_format::file_format::FunctionInstantiation { handle, type_parameters };
    module.function_instantiations.extend(std::iter::repeat_n(entry, 2_000));
    let mut bytes = Vec::new();
    module.serialize(&mut bytes).unwrap();
    for (bundle, saying) in
        [(vec![bytes], "instantiation tables hold more than"), (vec![], "a bundle of no modules")]
    {
        let nonce = chain.state.nonce(alice);
        let output = chain.publish_output(alice, bundle);
        assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", saying);
        assert_eq!(chain.state.nonce(alice), nonce + 1);
    }
}

#[test]
fn upgrades_must_be_compatible() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = |extra: &str| {
        format!(
            "module example::counter {{ struct Counter has key {{ value: u64 }} \
             public entry fun start(account: &signer) {{ move_to(account, Counter {{ value: 7 }}) }} {extra} }}"
        )
    };
    let v1 = compile_example(&source(""), alice);
    let v2 = compile_example(&source("public fun added(): u64 { 2 }"), alice);
    let incompatible = compile_example(
        "module example::counter { struct Counter has key { value: u128 } }",
        alice,
    );
    let output = chain.run(&[
        transaction(alice, 0, MovePayload::ModuleBundle(v1)),
        transaction(alice, 1, call(alice, "counter", "start", &[], vec![])),
        transaction(alice, 2, MovePayload::ModuleBundle(v2.clone())),
        transaction(alice, 3, MovePayload::ModuleBundle(incompatible)),
    ]);
    for index in 0..3 {
        assert!(receipt(&output, index).is_success(), "{index}: {:?}", output.results[index]);
    }
    assert!(
        matches!(&receipt(&output, 3).status, MoveStatus::Failed { status, .. } if status == "BACKWARD_INCOMPATIBLE_MODULE_UPDATE")
    );
    let stored = chain
        .state
        .0
        .get(&StateKey::MoveModule { address: alice, name: "counter".into() })
        .cloned();
    assert_eq!(stored, Some(duet_types::StateValue::Bytes(v2[0].clone().into())));
}

#[test]
fn a_module_may_head_a_chain_of_64_dependencies_and_no_more() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    chain.put_linked_modules(alice, 63, Link::DependsOnPrevious);
    assert_eq!(chain.publish_linked(alice, 63, Link::DependsOnPrevious), MoveStatus::Success);
    let before = chain.state.clone();
    assert_eq!(chain.publish_linked(alice, 64, Link::DependsOnPrevious), too_deep());
    let key = StateKey::MoveModule { address: alice, name: "m64".into() };
    assert!(
        !chain.state.0.contains_key(&key)
            && before.0.contains_key(&StateKey::MoveModule { address: alice, name: "m63".into() })
    );
}

#[test]
fn a_chain_of_thousands_of_modules_is_refused_without_a_crash() {
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    // Loading these recursed once per module and overflowed the native stack.
    chain.put_linked_modules(alice, 20_000, Link::DependsOnPrevious);
    let status = chain.publish_linked(alice, 20_000, Link::DependsOnPrevious);
    assert!(
        matches!(&status, MoveStatus::Failed { status, message }
            if status == "CONSTRAINT_NOT_SATISFIED" && message.contains("deeper than 64")),
        "{status:?}"
    );
    // A chain of friends has no depth bound (friends are not dependencies), but publishing
    // loads at most 1 024 modules: a module naming the last of 20 000 is refused (its friend
    // loading and cycle checks, recursive too, overflowed the stack before), and one naming
    // the last of 1 000 publishes.
    let bob = user(2);
    let mut chain = Chain::new([bob]);
    chain.put_linked_modules(bob, 20_000, Link::FriendOfPrevious);
    let message = "publishing would load more than 1024 modules (the bundle's dependencies and \
                   its friends', with theirs)";
    assert_eq!(
        chain.publish_linked(bob, 20_000, Link::FriendOfPrevious),
        MoveStatus::Failed { status: "CONSTRAINT_NOT_SATISFIED".into(), message: message.into() }
    );
    let carol = user(3);
    let mut chain = Chain::new([carol]);
    chain.put_linked_modules(carol, 1_000, Link::FriendOfPrevious);
    assert_eq!(chain.publish_linked(carol, 1_000, Link::FriendOfPrevious), MoveStatus::Success);
}

/// The failure of a module heading a chain deeper than 64.
fn too_deep() -> MoveStatus {
    let message = "a chain of module dependencies is deeper than 64 modules";
    MoveStatus::Failed { status: "CONSTRAINT_NOT_SATISFIED".into(), message: message.into() }
}

#[test]
fn a_module_runs_and_is_depended_on_whatever_its_friends_head_and_one_too_deep_can_be_upgraded() {
    // `r` heads a chain of 64 (loadable); its friend `f` depends on it, so heads 65: as an
    // upgrade deepening `r`'s chain can leave them. A module's code never calls its friends:
    // loading `r` loads none. (Loading them once made `r` fail on an instance with an empty
    // cache and succeed after, and a failed load left it cached.)
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    chain.put_linked_modules(alice, 63, Link::DependsOnPrevious);
    chain.put_module(alice, "r", module_with_links(alice, "r", &["m62"], &["f"]));
    chain.put_module(alice, "f", module_with_links(alice, "f", &["r"], &[]));
    let output = chain.run_calls(alice, &[("f", "go"), ("r", "go"), ("f", "go"), ("r", "go")]);
    for (index, expected) in
        [too_deep(), MoveStatus::Success, too_deep(), MoveStatus::Success].into_iter().enumerate()
    {
        assert_eq!(receipt(&output, index).status, expected, "call {index}");
    }
    // A publication loads its own friends, not its dependencies': `d`'s friend `g` heads
    // too deep a chain, and a module depending on `d` publishes.
    chain.put_module(alice, "d", module_with_links(alice, "d", &[], &["g"]));
    chain.put_module(alice, "g", module_with_links(alice, "g", &["d", "r"], &[]));
    let x = module_with_links(alice, "x", &["d"], &[]);
    chain.publish(alice, vec![x]);
    // An upgrade of `f` without the dependency brings it back within the bound: its own old
    // version, too deep to load, is compared with the new one as stored.
    let upgrade = module_with_links(alice, "f", &[], &[]);
    chain.publish(alice, vec![upgrade]);
    assert_eq!(chain.call_once(alice, "f", "go", vec![]).0, MoveStatus::Success);
}

#[test]
fn a_friend_that_an_upgrade_made_also_a_dependency_changes_nothing_whatever_was_loaded() {
    // `d` depends on `x` and declares `f` its friend; `x` was upgraded to depend on `f`, so
    // `f` is now both. Publishing refuses that for the module published, but `d` was
    // published before. Loading `d` once checked it only when `d` itself was not cached: it
    // failed from an empty cache and succeeded after `c`, which depends on `d`, was loaded.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    chain.put_module(alice, "f", module_with_links(alice, "f", &[], &[]));
    chain.put_module(alice, "x", module_with_links(alice, "x", &["f"], &[]));
    chain.put_module(alice, "d", module_with_links(alice, "d", &["x"], &["f"]));
    chain.put_module(alice, "c", module_with_links(alice, "c", &["d"], &[]));
    let output = chain.run_calls(alice, &[("d", "go"), ("c", "go"), ("d", "go")]);
    for index in 0..3 {
        assert_eq!(receipt(&output, index).status, MoveStatus::Success, "call {index}");
    }
}

#[test]
fn publishing_on_too_deep_a_chain_fails_the_same_whatever_was_loaded_before() {
    // `m63` heads a chain of 64. A module depending on it and on a module that does not exist
    // fails for the depth first, whether `m63` was loaded by an earlier transaction or not.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    chain.put_linked_modules(alice, 64, Link::DependsOnPrevious);
    let nonce = chain.state.nonce(alice);
    let load = transaction(alice, nonce, call(alice, "m63", "go", &[], vec![]));
    let bundle = vec![module_with_links(alice, "x", &["m63", "missing"], &[])];
    let publish = transaction(alice, nonce + 1, MovePayload::ModuleBundle(bundle.clone()));
    let output = chain.run(&[load, publish]);
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success);
    assert_eq!(receipt(&output, 1).status, too_deep());
    let alone = transaction(alice, nonce + 2, MovePayload::ModuleBundle(bundle));
    assert_eq!(receipt(&chain.run(&[alone]), 0).status, too_deep());
}

#[test]
fn an_upgrade_published_with_a_module_using_a_dependent_of_it_links() {
    // Bob's `mid` calls Alice's `lib`. Alice upgrades `lib` and, in the same bundle, publishes
    // `user`, which calls `mid`: verifying `user` loads `mid`, linked against the new `lib`.
    let (alice, bob) = (user(1), user(2));
    let mut chain = Chain::new([alice, bob]);
    let lib =
        |extra: &str| format!("module {alice}::lib {{ public fun one(): u64 {{ 1 }} {extra} }}");
    let mid =
        format!("module {bob}::mid {{ public fun two(): u64 {{ {alice}::lib::one() + 1 }} }}");
    let first = compile_by_name(&format!("{} {mid}", lib("")));
    chain.publish(alice, vec![first["lib"].clone()]);
    chain.publish(bob, vec![first["mid"].clone()]);
    let user_module = format!(
        "module {alice}::user {{ public entry fun go() {{ assert!({bob}::mid::two() == 2, 1) }} }}"
    );
    let second =
        compile_by_name(&format!("{} {mid} {user_module}", lib("public fun three(): u64 { 3 }")));
    let bundle = vec![second["lib"].clone(), second["user"].clone()];
    chain.publish(alice, bundle);
    assert_eq!(chain.call_once(alice, "user", "go", vec![]).0, MoveStatus::Success);
}

#[test]
fn a_native_struct_is_refused_and_pays_its_fee() {
    // The bytecode verifier lets a native struct through: normalizing an upgrade for the
    // compatibility check panicked on it, as loading a new module holding one would, and a
    // panicking transaction paid nothing.
    use move_binary_format::file_format::{
        AbilitySet, CompiledModule, IdentifierIndex, ModuleHandleIndex, StructDefinition,
        StructFieldInformation, StructHandle, StructHandleIndex,
    };
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let original = module_with_links(alice, "m", &[], &[]);
    chain.publish(alice, vec![original.clone()]);
    let mut module = CompiledModule::deserialize(&original).expect("a module");
    let name = IdentifierIndex(module.identifiers.len() as u16);
    module.identifiers.push(move_core_types::identifier::Identifier::new("N").expect("a name"));
    module.struct_handles.push(StructHandle {
        module: ModuleHandleIndex(0),
        name,
        abilities: AbilitySet::EMPTY,
        type_parameters: vec![],
    });
    module.struct_defs.push(StructDefinition {
        struct_handle: StructHandleIndex(0),
        field_information: StructFieldInformation::Native,
    });
    let mut upgrade = Vec::new();
    module.serialize(&mut upgrade).expect("the module serializes");
    // As a new module (under another name) and as an upgrade.
    let mut renamed = module.clone();
    renamed.identifiers[0] = move_core_types::identifier::Identifier::new("n").expect("a name");
    let mut new = Vec::new();
    renamed.serialize(&mut new).expect("the module serializes");
    let message = "a native struct, N: the VM has none";
    let refused =
        MoveStatus::Failed { status: "CONSTRAINT_NOT_SATISFIED".into(), message: message.into() };
    assert_eq!(chain.publish_bundle(alice, vec![new]), refused);
    let before = chain.state.clone();
    let nonce = chain.state.nonce(alice);
    let output = chain.run(&[transaction(alice, nonce, MovePayload::ModuleBundle(vec![upgrade]))]);
    let receipt = receipt(&output, 0);
    assert_eq!(receipt.status, refused);
    assert_eq!(chain.state.balance(alice), before.balance(alice) - fee(receipt));
    assert_eq!(chain.state.nonce(alice), nonce + 1);
    let key = StateKey::MoveModule { address: alice, name: "m".into() };
    assert_eq!(chain.state.0.get(&key), before.0.get(&key));
    assert_eq!(chain.call_once(alice, "m", "go", vec![]).0, MoveStatus::Success);
}

#[test]
fn a_publication_loads_at_most_1024_modules_and_a_module_past_it_can_be_shrunk() {
    // `wide` depends on 1 100 modules (each shallow), as upgrades of others could leave it.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let names: Vec<String> = (0..1_100).map(|index| format!("m{index}")).collect();
    for name in &names {
        chain.put_module(alice, name, module_with_links(alice, name, &[], &[]));
    }
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    chain.put_module(alice, "wide", module_with_links(alice, "wide", &all, &[]));
    // A new module depending on them all is refused.
    let message = "publishing would load more than 1024 modules (the bundle's dependencies and \
                   its friends', with theirs)";
    let refused =
        MoveStatus::Failed { status: "CONSTRAINT_NOT_SATISFIED".into(), message: message.into() };
    let new = module_with_links(alice, "new", &all, &[]);
    assert_eq!(chain.publish_bundle(alice, vec![new]), refused);
    // `wide` itself, compared as stored (its closure is past the bound), can drop them.
    let shrunk = module_with_links(alice, "wide", &all[..10], &[]);
    chain.publish(alice, vec![shrunk]);
    assert_eq!(chain.call_once(alice, "wide", "go", vec![]).0, MoveStatus::Success);
}

#[test]
fn a_module_the_binary_format_cannot_hold_is_a_compile_error_not_a_panic() {
    // A function of 300 locals: the format holds 255 in a signature.
    let locals = (1..300).fold(String::new(), |mut locals, at| {
        use std::fmt::Write;
        writeln!(locals, "        let a{at} = a{} + {at};", at - 1).expect("a String takes it");
        locals
    });
    let source = format!(
        "module 0xe5::wide {{\n    public fun f(a0: u64): u64 {{\n{locals}        a299\n    }}\n}}\n"
    );
    let directory = tempfile::tempdir().expect("temp is writable");
    let file = directory.path().join("wide.move");
    std::fs::write(&file, source).expect("temp is writable");
    let error = duet_move::compile_package(vec![file.to_string_lossy().into_owned()], &[])
        .expect_err("300 locals do not fit");
    assert!(error.starts_with("module wide cannot be written as bytecode: "), "{error}");
}

#[test]
fn a_module_of_2000_functions_publishes_and_its_functions_run() {
    // The verifier built two maps of the module's functions again for every function (N^2
    // insertions; a module of 6 000: 4 s with one of the two fixed, in a release build, 44 ms
    // with both: `vendor/README.md`).
    use move_binary_format::file_format::{FunctionHandleIndex, IdentifierIndex};
    use move_core_types::identifier::Identifier;
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source = "module example::many { public entry fun f0() {} }";
    let module = edited_module(source, alice, |module| {
        let (handle, definition) =
            (module.function_handles[0].clone(), module.function_defs[0].clone());
        for index in 1..2000 {
            module.identifiers.push(Identifier::new(format!("f{index}")).unwrap());
            let name = IdentifierIndex((module.identifiers.len() - 1) as u16);
            module
                .function_handles
                .push(move_binary_format::file_format::FunctionHandle { name, ..handle.clone() });
            let function = FunctionHandleIndex((module.function_handles.len() - 1) as u16);
            module.function_defs.push(move_binary_format::file_format::FunctionDefinition {
                function,
                ..definition.clone()
            });
        }
    });
    chain.publish(alice, vec![module]);
    let output = chain.run_calls(alice, &[("many", "f1999")]);
    assert!(receipt(&output, 0).is_success(), "{:?}", receipt(&output, 0));
}

/// A module whose function `f(v: vector<E>)` unpacks `v` into 1 024 values and packs them
/// again, `pairs` times; `E` is `S<vector<u8>, …>`, a struct of `parameters` phantom type
/// parameters (`2 * parameters + 1` type nodes).
pub(crate) fn vector_churn(publisher: Address, parameters: usize, pairs: usize) -> Vec<u8> {
    use move_binary_format::file_format::{
        Bytecode, Signature, SignatureIndex, SignatureToken, StructHandleIndex,
    };
    let names: Vec<String> = (0..parameters).map(|n| format!("phantom T{n}")).collect();
    let source = format!(
        "module example::c {{ struct S<{}> has drop {{ b: bool }} \
         public fun f(a: u64): u64 {{ a }} }}",
        names.join(", ")
    );
    edited_module(&source, publisher, |module| {
        let arguments = vec![SignatureToken::Vector(Box::new(SignatureToken::U8)); parameters];
        let element = SignatureToken::StructInstantiation(StructHandleIndex(0), arguments);
        let vector = SignatureToken::Vector(Box::new(element.clone()));
        let mut signature =
            |tokens| SignatureIndex(position_or_push(&mut module.signatures, Signature(tokens)));
        let (element, parameters, none) =
            (signature(vec![element]), signature(vec![vector]), signature(vec![]));
        let handle = module.function_defs[0].function;
        let handle = &mut module.function_handles[handle.0 as usize];
        handle.parameters = parameters;
        handle.return_ = none;
        let code = module.function_defs[0].code.as_mut().unwrap();
        code.locals = none;
        code.code.clear();
        for _ in 0..pairs {
            code.code.extend([
                Bytecode::MoveLoc(0),
                Bytecode::VecUnpack(element, 1024),
                Bytecode::VecPack(element, 1024),
                Bytecode::StLoc(0),
            ]);
        }
        code.code.push(Bytecode::Ret);
    })
}

#[test]
fn calls_of_a_function_acquiring_many_resources_count_toward_the_verifiers_bound() {
    use std::fmt::Write as _;
    // `f` acquires 250 resources; the verifier builds and walks that list at every call of it
    // in the module: `g` calling it 132 times is refused, 10 times published.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let module = |calls: usize| {
        let structs: Vec<String> = (0..250).map(|index| format!("S{index}")).collect();
        let acquires = structs.join(", ");
        let mut source = format!("module {alice}::acquiring {{\n");
        for name in &structs {
            let _ = writeln!(source, "    struct {name} has key {{ b: bool }}");
        }
        let _ = writeln!(source, "    fun f() acquires {acquires} {{");
        for name in &structs {
            let _ = writeln!(source, "        let _ = borrow_global<{name}>(@{alice});");
        }
        let _ = writeln!(source, "    }}\n    public fun g() acquires {acquires} {{");
        source.push_str(&"        f();\n".repeat(calls));
        source.push_str("    }\n}\n");
        crafted::compile_by_name(&source).remove("acquiring").expect("the module compiles")
    };
    let output = chain.publish_output(alice, vec![module(132)]);
    assert_failed(&output, 0, "CONSTRAINT_NOT_SATISFIED", "instantiate 66000 type nodes");
    assert_eq!(chain.publish_bundle(alice, vec![module(10)]), MoveStatus::Success);
}

#[test]
fn an_upgrade_naming_a_generic_struct_without_its_type_arguments_is_refused_before_its_check() {
    // A field of type `Struct(G)` where `G` is generic (a generic struct is named through an
    // instantiation): the compatibility check's normalizer asserts it away (a panic would be
    // `VM_PANIC`, paying all the gas); the bounds check made when the upgrade is read refuses
    // it first, with the verifier's status.
    use move_binary_format::file_format::{SignatureToken, StructFieldInformation};
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let source =
        "module example::shapes { struct G<T> has drop { t: T } struct H has drop { b: bool } }";
    chain.publish(alice, compile_example(source, alice));
    let upgrade = edited_module(source, alice, |module| {
        let generic = module
            .struct_defs
            .iter()
            .map(|definition| definition.struct_handle)
            .find(|handle| !module.struct_handles[usize::from(handle.0)].type_parameters.is_empty())
            .expect("the generic struct");
        for definition in &mut module.struct_defs {
            if let StructFieldInformation::Declared(fields) = &mut definition.field_information {
                for field in fields.iter_mut() {
                    if field.signature.0 == SignatureToken::Bool {
                        field.signature.0 = SignatureToken::Struct(generic);
                    }
                }
            }
        }
    });
    let before = chain.state.clone();
    let nonce = chain.state.nonce(alice);
    let output = chain.run(&[transaction(alice, nonce, MovePayload::ModuleBundle(vec![upgrade]))]);
    let receipt = receipt(&output, 0);
    assert_failed(&output, 0, "NUMBER_OF_TYPE_ARGUMENTS_MISMATCH", "");
    assert!(
        receipt.gas_used < GAS_LIMIT,
        "a verifier error, not all the gas: {}",
        receipt.gas_used
    );
    let key = StateKey::MoveModule { address: alice, name: "shapes".into() };
    assert_eq!(chain.state.0.get(&key), before.0.get(&key));
}

#[test]
fn a_module_links_only_to_what_its_dependencies_offer_it_from_the_state_or_its_bundle() {
    // Each module below is compiled against a `lib` that offers more than the published one
    // does, and refused when published: linking finds what a module imports in what its
    // dependency defines, from the dependency as stored or, for `lib2`, as published in the
    // same bundle. `pal`, a friend, may call the friend function a stranger may not.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let lib = |name: &str, close: &str, hidden: &str, extra: &str, abilities: &str| {
        let friends = if name == "lib" && close != "public" {
            format!("friend {alice}::pal;")
        } else {
            String::new()
        };
        format!(
            "module {alice}::{name} {{ {friends} \
             struct S has {abilities} {{ v: u64 }} \
             public fun open(): u64 {{ 1 }} \
             {close} fun close(): u64 {{ 2 }} \
             {hidden} fun hidden(): u64 {{ 3 }} {extra} }}"
        )
    };
    let pal = format!(
        "module {alice}::pal {{ public entry fun go() {{ assert!({alice}::lib::close() == 2, 1) }} }}"
    );
    let real = compile_by_name(&format!(
        "{} {} {pal}",
        lib("lib", "public(friend)", "", "", "copy, drop"),
        lib("lib2", "public(friend)", "", "", "copy, drop"),
    ));
    let users = |lib: &str| {
        format!(
            "module {alice}::stranger {{ public fun f(): u64 {{ {alice}::{lib}::close() }} }} \
             module {alice}::peek {{ public fun f(): u64 {{ {alice}::{lib}::hidden() }} }} \
             module {alice}::ghost {{ public fun f(): u64 {{ {alice}::{lib}::absent() }} }} \
             module {alice}::wrong {{ public fun f(_s: {alice}::{lib}::S): u64 {{ 0 }} }}"
        )
    };
    // Offers `close` and `hidden` to all, an `absent` function, and `S` with `store`.
    let offering_more = |name: &str| {
        lib(name, "public", "public", "public fun absent(): u64 { 4 }", "copy, drop, store")
    };
    let fake = compile_by_name(&format!("{} {}", offering_more("lib"), users("lib")));
    let fake2 = compile_by_name(&format!("{} {}", offering_more("lib2"), users("lib2")));
    chain.publish(alice, vec![real["lib"].clone(), real["pal"].clone()]);
    assert_eq!(chain.call_once(alice, "pal", "go", vec![]).0, MoveStatus::Success);
    // A friend published in the bundle of the module it calls.
    let together = compile_by_name(&format!(
        "module {alice}::lib3 {{ friend {alice}::pal3; public(friend) fun close(): u64 {{ 2 }} }} \
         module {alice}::pal3 {{ public entry fun go() {{ assert!({alice}::lib3::close() == 2, 1) }} }}"
    ));
    chain.publish(alice, vec![together["lib3"].clone(), together["pal3"].clone()]);
    assert_eq!(chain.call_once(alice, "pal3", "go", vec![]).0, MoveStatus::Success);
    for (name, status) in [
        ("stranger", "LOOKUP_FAILED"),
        ("peek", "LOOKUP_FAILED"),
        ("ghost", "LOOKUP_FAILED"),
        ("wrong", "TYPE_MISMATCH"),
    ] {
        let alone = chain.publish_output(alice, vec![fake[name].clone()]);
        assert_failed(&alone, 0, status, "");
        let with_lib2 =
            chain.publish_output(alice, vec![real["lib2"].clone(), fake2[name].clone()]);
        assert_failed(&with_lib2, 0, status, "");
        for module in [name, "lib2"] {
            let key = StateKey::MoveModule { address: alice, name: module.into() };
            assert!(!chain.state.0.contains_key(&key), "{module} was published");
        }
    }
}

#[test]
fn only_the_vm_blocks_run_on_keeps_the_modules_it_deserializes_for_the_process() {
    // A VM for free calls (`eth_call`, views, traces) reads what the process keeps and adds
    // nothing to it; the VM blocks run on keeps what it loads from the state.
    let alice = user(1);
    let mut chain = Chain::new([alice]);
    let module = compile_example("module example::kept_or_not { public entry fun go() {} }", alice);
    chain.publish(alice, module.clone());
    // Published, not kept: a publication's modules are not.
    assert!(!move_vm_runtime::is_module_kept(&module[0]));
    let nonce = chain.state.nonce(alice);
    let go = transaction(alice, nonce, call(alice, "kept_or_not", "go", &[], vec![]));
    let for_calls = MoveVm::for_calls(FEE_VAULT);
    let output = MoveBlockExecutor::sequential(&for_calls)
        .execute_block(std::slice::from_ref(&go), &chain.state)
        .unwrap();
    assert_eq!(receipt(&output, 0).status, MoveStatus::Success);
    assert!(!move_vm_runtime::is_module_kept(&module[0]), "a call's VM kept it");
    assert_eq!(receipt(&chain.run(&[go]), 0).status, MoveStatus::Success);
    assert!(move_vm_runtime::is_module_kept(&module[0]), "the block's VM did not keep it");
}
