//! Modules made for the tests: compiled and then edited as bytecode, or built whole, linked to
//! each other as dependencies or friends.

use super::*;

/// The first module of `source`, compiled for `publisher`, changed by `edit` as bytecode.
pub(crate) fn edited_module(
    source: &str,
    publisher: Address,
    edit: impl FnOnce(&mut move_binary_format::CompiledModule),
) -> Vec<u8> {
    let compiled = compile_example(source, publisher).remove(0);
    let mut module = move_binary_format::CompiledModule::deserialize(&compiled).unwrap();
    edit(&mut module);
    let mut bytes = Vec::new();
    module.serialize(&mut bytes).unwrap();
    bytes
}

/// The index of `entry` in a module's `table`, added unless the module has it.
pub(crate) fn position_or_push<T: PartialEq>(table: &mut Vec<T>, entry: T) -> u16 {
    let at = table.iter().position(|e| *e == entry).unwrap_or_else(|| {
        table.push(entry);
        table.len() - 1
    });
    u16::try_from(at).unwrap()
}

/// How [`linked_module`] links its module to another.
#[derive(Clone, Copy)]
pub(crate) enum Link {
    /// `m{index}` depends on `m{index - 1}`.
    DependsOnPrevious,
    /// `m{index}` declares `m{index - 1}` its friend.
    FriendOfPrevious,
}

/// Module `name` under `address` with one function, `public entry fun go() {}`, depending on
/// the modules `dependencies` and declaring `friends` its friends (all under `address`).
pub(crate) fn module_with_links(
    address: Address,
    name: &str,
    dependencies: &[&str],
    friends: &[&str],
) -> Vec<u8> {
    use move_binary_format::file_format::{
        empty_module, AddressIdentifierIndex, Bytecode, CodeUnit, FunctionDefinition,
        FunctionHandle, FunctionHandleIndex, IdentifierIndex, ModuleHandle, ModuleHandleIndex,
        SignatureIndex, Visibility,
    };
    use move_core_types::identifier::Identifier;
    let identifier = |text: &str| Identifier::new(text).expect("an identifier");
    let mut module = empty_module();
    module.address_identifiers[0] = duet_move::to_account_address(address);
    module.identifiers[0] = identifier(name);
    for (other, friend) in dependencies
        .iter()
        .map(|other| (other, false))
        .chain(friends.iter().map(|other| (other, true)))
    {
        // INVARIANT: a test module names a few others.
        let name = IdentifierIndex(module.identifiers.len() as u16);
        module.identifiers.push(identifier(other));
        let handle = ModuleHandle { address: AddressIdentifierIndex(0), name };
        if friend {
            module.friend_decls.push(handle);
        } else {
            module.module_handles.push(handle);
        }
    }
    let go = IdentifierIndex(module.identifiers.len() as u16);
    module.identifiers.push(identifier("go"));
    module.function_handles.push(FunctionHandle {
        module: ModuleHandleIndex(0),
        name: go,
        parameters: SignatureIndex(0),
        return_: SignatureIndex(0),
        type_parameters: vec![],
    });
    module.function_defs.push(FunctionDefinition {
        function: FunctionHandleIndex(0),
        visibility: Visibility::Public,
        is_entry: true,
        acquires_global_resources: vec![],
        code: Some(CodeUnit { locals: SignatureIndex(0), code: vec![Bytecode::Ret] }),
    });
    let mut bytes = Vec::new();
    module.serialize(&mut bytes).expect("the module serializes");
    bytes
}

/// Module `m{index}` under `address` (see [`module_with_links`]), linked by `link` to the
/// module before it (none from `m0`).
pub(crate) fn linked_module(address: Address, index: usize, link: Link) -> Vec<u8> {
    let name = format!("m{index}");
    let Some(previous) = index.checked_sub(1).map(|previous| format!("m{previous}")) else {
        return module_with_links(address, &name, &[], &[]);
    };
    match link {
        Link::DependsOnPrevious => module_with_links(address, &name, &[&previous], &[]),
        Link::FriendOfPrevious => module_with_links(address, &name, &[], &[&previous]),
    }
}

impl Chain {
    /// Puts modules `m0` to `m{count - 1}`, linked by `link`, under `address` in the state, as
    /// upgrades could have left them whatever publishing refuses.
    pub(crate) fn put_linked_modules(&mut self, address: Address, count: usize, link: Link) {
        for index in 0..count {
            self.put_module(address, &format!("m{index}"), linked_module(address, index, link));
        }
    }

    /// Puts module `name` under `address` in the state, as if published.
    pub(crate) fn put_module(&mut self, address: Address, name: &str, bytes: Vec<u8>) {
        let key = StateKey::MoveModule { address, name: name.into() };
        self.state.0.insert(key, duet_types::StateValue::Bytes(bytes.into()));
    }

    /// Publishes `m{index}` linked by `link` as `sender`'s next transaction: its status.
    pub(crate) fn publish_linked(
        &mut self,
        sender: Address,
        index: usize,
        link: Link,
    ) -> MoveStatus {
        self.publish_bundle(sender, vec![linked_module(sender, index, link)])
    }
}

/// The modules of `source` (Move source naming its addresses), compiled, by name.
pub(crate) fn compile_by_name(source: &str) -> std::collections::HashMap<String, Vec<u8>> {
    let directory = tempfile::tempdir().expect("temp is writable");
    let file = directory.path().join("modules.move");
    std::fs::write(&file, source).expect("temp is writable");
    duet_move::compile_package(vec![file.to_string_lossy().into_owned()], &[])
        .unwrap_or_else(|diagnostics| panic!("the source does not compile:\n{diagnostics}"))
        .into_iter()
        .collect()
}

/// A module whose function `h` asks 200 times whether a `Key` of a type of 181 nodes (four
/// arguments of `Big<x, x, u8, u8>`) exists: each makes the verifier build and check the type.
/// Built from one compiled `exists`, copied (compiling 200 of them takes seconds).
pub(crate) fn many_exists(publisher: Address, x: &str) -> Vec<u8> {
    use move_binary_format::file_format::Bytecode;
    let z = format!("Big<{x}, {x}, u8, u8>");
    let source = format!(
        "module example::e {{ struct Big<A, B, C, D> has drop {{ a: A, b: B, c: C, d: D }} \
         struct Key<phantom A, phantom B, phantom C, phantom D> has key {{ value: u64 }} \
         fun h(a: address): bool {{ exists<Key<{z}, {z}, {z}, {z}>>(a) }} }}"
    );
    edited_module(&source, publisher, |module| {
        let code = &mut module.function_defs[0].code.as_mut().unwrap().code;
        let exists = code.iter().find(|op| matches!(op, Bytecode::ExistsGeneric(_)));
        let asks = [Bytecode::CopyLoc(0), exists.unwrap().clone(), Bytecode::Pop];
        code.splice(0..0, asks.iter().cycle().take(3 * 199).cloned());
    })
}
