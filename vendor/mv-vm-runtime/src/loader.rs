// Copyright (c) The Diem Core Contributors
// Copyright (c) The Move Contributors
// SPDX-License-Identifier: Apache-2.0

use crate::{
    logging::expect_no_verification_errors,
    native_functions::{NativeFunction, NativeFunctions, UnboxedNativeFunction},
    session::LoadedFunctionInstantiation,
};
use move_binary_format::{
    access::{ModuleAccess, ScriptAccess},
    binary_views::BinaryIndexedView,
    errors::{verification_error, Location, PartialVMError, PartialVMResult, VMResult},
    file_format::{
        AbilitySet, Bytecode, CompiledModule, CompiledScript, Constant, ConstantPoolIndex,
        FieldHandleIndex, FieldInstantiationIndex, FunctionDefinition, FunctionDefinitionIndex,
        FunctionHandleIndex, FunctionInstantiationIndex, Signature, SignatureIndex, SignatureToken,
        StructDefInstantiationIndex, StructDefinition, StructDefinitionIndex,
        StructFieldInformation, TableIndex,
    },
    IndexKind,
};
use move_bytecode_verifier::{self, dependencies, dependencies::Definitions, VerifierConfig};
use move_core_types::{
    account_address::AccountAddress,
    identifier::{IdentStr, Identifier},
    language_storage::{ModuleId, StructTag, TypeTag},
    metadata::Metadata,
    value::{MoveStructLayout, MoveTypeLayout},
    vm_status::StatusCode,
};
use move_vm_types::{
    data_store::DataStore,
    loaded_data::runtime_types::{CachedStructIndex, StructType, Type},
};
use parking_lot::RwLock;
use sha3::{Digest, Sha3_256};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Debug,
    hash::Hash,
    sync::Arc,
};
use tracing::error;

type ScriptHash = [u8; 32];

// A simple cache that offers both a HashMap and a Vector lookup.
// Values are forced into a `Arc` so they can be used from multiple thread.
// Access to this cache is always under a `RwLock`.
struct BinaryCache<K, V> {
    id_map: HashMap<K, usize>,
    binaries: Vec<Arc<V>>,
}

impl<K, V> BinaryCache<K, V>
where
    K: Eq + Hash,
{
    fn new() -> Self {
        Self {
            id_map: HashMap::new(),
            binaries: vec![],
        }
    }

    fn insert(&mut self, key: K, binary: V) -> &Arc<V> {
        self.binaries.push(Arc::new(binary));
        let idx = self.binaries.len() - 1;
        self.id_map.insert(key, idx);
        self.binaries
            .last()
            .expect("BinaryCache: last() after push() impossible failure")
    }

    fn get(&self, key: &K) -> Option<&Arc<V>> {
        self.id_map.get(key).and_then(|idx| self.binaries.get(*idx))
    }
}

// A script cache is a map from the hash value of a script and the `Script` itself.
// Script are added in the cache once verified and so getting a script out the cache
// does not require further verification (except for parameters and type parameters)
struct ScriptCache {
    scripts: BinaryCache<ScriptHash, Script>,
}

impl ScriptCache {
    fn new() -> Self {
        Self {
            scripts: BinaryCache::new(),
        }
    }

    fn get(&self, hash: &ScriptHash) -> Option<(Arc<Function>, Vec<Type>, Vec<Type>)> {
        self.scripts.get(hash).map(|script| {
            (
                script.entry_point(),
                script.parameter_tys.clone(),
                script.return_tys.clone(),
            )
        })
    }

    fn insert(
        &mut self,
        hash: ScriptHash,
        script: Script,
    ) -> (Arc<Function>, Vec<Type>, Vec<Type>) {
        match self.get(&hash) {
            Some(cached) => cached,
            None => {
                let script = self.scripts.insert(hash, script);
                (
                    script.entry_point(),
                    script.parameter_tys.clone(),
                    script.return_tys.clone(),
                )
            }
        }
    }
}

// A ModuleCache is the core structure in the Loader.
// It holds all Modules, Types and Functions loaded.
// Types and Functions are pushed globally to the ModuleCache.
// All accesses to the ModuleCache are under lock (exclusive).
pub struct ModuleCache {
    modules: BinaryCache<ModuleId, Module>,
    structs: Vec<Arc<StructType>>,
    functions: Vec<Arc<Function>>,
}

impl ModuleCache {
    fn new() -> Self {
        Self {
            modules: BinaryCache::new(),
            structs: vec![],
            functions: vec![],
        }
    }

    //
    // Common "get" operations
    //

    // Retrieve a module by `ModuleId`. The module may have not been loaded yet in which
    // case `None` is returned
    fn module_at(&self, id: &ModuleId) -> Option<Arc<Module>> {
        self.modules.get(id).map(Arc::clone)
    }

    // Retrieve a function by index
    fn function_at(&self, idx: usize) -> Arc<Function> {
        Arc::clone(&self.functions[idx])
    }

    // Retrieve a struct by index
    fn struct_at(&self, idx: CachedStructIndex) -> Arc<StructType> {
        Arc::clone(&self.structs[idx.0])
    }

    //
    // Insertion is under lock and it's a pretty heavy operation.
    // The VM is pretty much stopped waiting for this to finish
    //

    fn insert(
        &mut self,
        natives: &NativeFunctions,
        id: ModuleId,
        // Duet: as deserialized once per process (see `DeserializedModules`).
        module: &Deserialized,
        // Duet: its dependency depth (see `MAX_DEPENDENCY_DEPTH`).
        dependency_depth: usize,
    ) -> VMResult<Arc<Module>> {
        if let Some(cached) = self.module_at(&id) {
            return Ok(cached);
        }

        // we need this operation to be transactional, if an error occurs we must
        // leave a clean state
        self.add_module(natives, &module.module)?;
        match Module::new(
            Arc::clone(&module.module),
            Arc::clone(&module.definitions),
            self,
            dependency_depth,
        ) {
            Ok(module) => Ok(Arc::clone(self.modules.insert(id, module))),
            Err((err, module)) => {
                // remove all structs and functions that have been pushed
                let strut_def_count = module.struct_defs().len();
                self.structs.truncate(self.structs.len() - strut_def_count);
                let function_count = module.function_defs().len();
                self.functions
                    .truncate(self.functions.len() - function_count);
                Err(err.finish(Location::Undefined))
            }
        }
    }

    fn add_module(&mut self, natives: &NativeFunctions, module: &CompiledModule) -> VMResult<()> {
        let starting_idx = self.structs.len();
        for (idx, struct_def) in module.struct_defs().iter().enumerate() {
            let st = self.make_struct_type(module, struct_def, StructDefinitionIndex(idx as u16));
            self.structs.push(Arc::new(st));
        }
        self.load_field_types(module, starting_idx).map_err(|err| {
            // clean up the structs that were cached
            self.structs.truncate(starting_idx);
            err.finish(Location::Undefined)
        })?;
        for (idx, func) in module.function_defs().iter().enumerate() {
            let findex = FunctionDefinitionIndex(idx as TableIndex);
            let function = Function::new(natives, findex, func, module);
            self.functions.push(Arc::new(function));
        }
        Ok(())
    }

    fn make_struct_type(
        &self,
        module: &CompiledModule,
        struct_def: &StructDefinition,
        idx: StructDefinitionIndex,
    ) -> StructType {
        let struct_handle = module.struct_handle_at(struct_def.struct_handle);
        let abilities = struct_handle.abilities;
        let name = module.identifier_at(struct_handle.name).to_owned();
        let type_parameters = struct_handle.type_parameters.clone();
        let module = module.self_id();
        StructType {
            fields: vec![],
            abilities,
            type_parameters,
            name,
            module,
            struct_def: idx,
        }
    }

    fn load_field_types(
        &mut self,
        module: &CompiledModule,
        starting_idx: usize,
    ) -> PartialVMResult<()> {
        // Duet: the module's own structs found by name once, not by a scan per type node.
        let own = self.own_structs(&module.self_id());
        let mut field_types = vec![];
        for struct_def in module.struct_defs() {
            let fields = match &struct_def.field_information {
                StructFieldInformation::Native => unreachable!("native structs have been removed"),
                StructFieldInformation::Declared(fields) => fields,
            };

            let mut field_tys = vec![];
            for field in fields {
                let ty = self.make_type_while_loading(module, &field.signature.0, &own)?;
                debug_assert!(field_tys.len() < usize::max_value());
                field_tys.push(ty);
            }

            field_types.push(field_tys);
        }
        drop(own);
        let mut struct_idx = starting_idx;
        for fields in field_types {
            match Arc::get_mut(&mut self.structs[struct_idx]) {
                Some(struct_type) => struct_type.fields = fields,
                None => {
                    // we have pending references to the `Arc` which is impossible,
                    // given the code that adds the `Arc` is above and no reference to
                    // it should exist.
                    // So in the spirit of not crashing we just rewrite the entire `Arc`
                    // over and log the issue.
                    error!("Arc<StructType> cannot have any live reference while publishing");
                    let mut struct_type = (*self.structs[struct_idx]).clone();
                    struct_type.fields = fields;
                    self.structs[struct_idx] = Arc::new(struct_type);
                }
            }
            struct_idx += 1;
        }
        Ok(())
    }

    // `make_type` is the entry point to "translate" a `SignatureToken` to a `Type`
    fn make_type(&self, module: BinaryIndexedView, tok: &SignatureToken) -> PartialVMResult<Type> {
        self.make_type_internal(module, tok, &|struct_name, module_id| {
            Ok(self.resolve_struct_by_name(struct_name, module_id)?.0)
        })
    }

    // Duet: the structs of the module being loaded, by name: the structs at the end of the
    // list that belong to it (added before it is cached). Found once per load: a scan of them
    // for every struct a type names made loading a module of N structs, each type naming one of
    // them, take N times its type nodes (seconds for a 100 KB module, at every cold load).
    fn own_structs(&self, self_id: &ModuleId) -> HashMap<Identifier, CachedStructIndex> {
        let mut own = HashMap::new();
        for (idx, struct_type) in self.structs.iter().enumerate().rev() {
            if &struct_type.module != self_id {
                break;
            }
            // As the scan it replaces: the last one of a name (names are unique in a module).
            own.entry(struct_type.name.clone()).or_insert(CachedStructIndex(idx));
        }
        own
    }

    // Duet: the functions of the module being loaded, by name, as `own_structs`.
    fn own_functions(&self, self_id: &ModuleId) -> HashMap<Identifier, usize> {
        let mut own = HashMap::new();
        for (idx, function) in self.functions.iter().enumerate().rev() {
            if function.module_id() != Some(self_id) {
                break;
            }
            own.entry(function.name.clone()).or_insert(idx);
        }
        own
    }

    // While in the process of loading, and before a `Module` is saved into the cache the loader
    // needs to resolve type references to the module itself (self) "manually"; that is,
    // through the types of the module itself (Duet: `own`, from `own_structs`)
    fn make_type_while_loading(
        &self,
        module: &CompiledModule,
        tok: &SignatureToken,
        own: &HashMap<Identifier, CachedStructIndex>,
    ) -> PartialVMResult<Type> {
        let self_id = module.self_id();
        self.make_type_internal(
            BinaryIndexedView::Module(module),
            tok,
            &|struct_name, module_id| {
                if module_id == &self_id {
                    // module has not been published yet: its types by name
                    match own.get(struct_name) {
                        Some(idx) => Ok(*idx),
                        None => Err(PartialVMError::new(StatusCode::TYPE_RESOLUTION_FAILURE)
                            .with_message(format!(
                                "Cannot find {:?}::{:?} in publishing module",
                                module_id, struct_name
                            ))),
                    }
                } else {
                    Ok(self.resolve_struct_by_name(struct_name, module_id)?.0)
                }
            },
        )
    }

    // `make_type_internal` returns a `Type` given a signature and a resolver which
    // is resonsible to map a local struct index to a global one
    fn make_type_internal<F>(
        &self,
        module: BinaryIndexedView,
        tok: &SignatureToken,
        resolver: &F,
    ) -> PartialVMResult<Type>
    where
        F: Fn(&IdentStr, &ModuleId) -> PartialVMResult<CachedStructIndex>,
    {
        let res = match tok {
            SignatureToken::Bool => Type::Bool,
            SignatureToken::U8 => Type::U8,
            SignatureToken::U64 => Type::U64,
            SignatureToken::U128 => Type::U128,
            SignatureToken::Address => Type::Address,
            SignatureToken::Signer => Type::Signer,
            SignatureToken::TypeParameter(idx) => Type::TyParam(*idx as usize),
            SignatureToken::Vector(inner_tok) => {
                let inner_type = self.make_type_internal(module, inner_tok, resolver)?;
                Type::Vector(Box::new(inner_type))
            }
            SignatureToken::Reference(inner_tok) => {
                let inner_type = self.make_type_internal(module, inner_tok, resolver)?;
                Type::Reference(Box::new(inner_type))
            }
            SignatureToken::MutableReference(inner_tok) => {
                let inner_type = self.make_type_internal(module, inner_tok, resolver)?;
                Type::MutableReference(Box::new(inner_type))
            }
            SignatureToken::Struct(sh_idx) => {
                let struct_handle = module.struct_handle_at(*sh_idx);
                let struct_name = module.identifier_at(struct_handle.name);
                let module_handle = module.module_handle_at(struct_handle.module);
                let module_id = ModuleId::new(
                    *module.address_identifier_at(module_handle.address),
                    module.identifier_at(module_handle.name).to_owned(),
                );
                let def_idx = resolver(struct_name, &module_id)?;
                Type::Struct(def_idx)
            }
            SignatureToken::StructInstantiation(sh_idx, tys) => {
                let type_parameters: Vec<_> = tys
                    .iter()
                    .map(|tok| self.make_type_internal(module, tok, resolver))
                    .collect::<PartialVMResult<_>>()?;
                let struct_handle = module.struct_handle_at(*sh_idx);
                let struct_name = module.identifier_at(struct_handle.name);
                let module_handle = module.module_handle_at(struct_handle.module);
                let module_id = ModuleId::new(
                    *module.address_identifier_at(module_handle.address),
                    module.identifier_at(module_handle.name).to_owned(),
                );
                let def_idx = resolver(struct_name, &module_id)?;
                Type::StructInstantiation(def_idx, type_parameters)
            }
        };
        Ok(res)
    }

    // Given a ModuleId::struct_name, retrieve the `StructType` and the index associated.
    // Return and error if the type has not been loaded
    fn resolve_struct_by_name(
        &self,
        struct_name: &IdentStr,
        module_id: &ModuleId,
    ) -> PartialVMResult<(CachedStructIndex, Arc<StructType>)> {
        match self
            .modules
            .get(module_id)
            .and_then(|module| module.struct_map.get(struct_name))
        {
            Some(struct_idx) => Ok((*struct_idx, Arc::clone(&self.structs[struct_idx.0]))),
            None => Err(
                PartialVMError::new(StatusCode::TYPE_RESOLUTION_FAILURE).with_message(format!(
                    "Cannot find {:?}::{:?} in cache",
                    module_id, struct_name
                )),
            ),
        }
    }

    // Given a ModuleId::func_name, retrieve the `StructType` and the index associated.
    // Return and error if the function has not been loaded
    fn resolve_function_by_name(
        &self,
        func_name: &IdentStr,
        module_id: &ModuleId,
    ) -> PartialVMResult<usize> {
        match self
            .modules
            .get(module_id)
            .and_then(|module| module.function_map.get(func_name))
        {
            Some(func_idx) => Ok(*func_idx),
            None => Err(
                PartialVMError::new(StatusCode::FUNCTION_RESOLUTION_FAILURE).with_message(format!(
                    "Cannot find {:?}::{:?} in cache",
                    module_id, func_name
                )),
            ),
        }
    }
}

//
// Loader
//

// A Loader is responsible to load scripts and modules and holds the cache of all loaded
// entities. Each cache is protected by a `RwLock`. Operation in the Loader must be thread safe
// (operating on values on the stack) and when cache needs updating the mutex must be taken.
// The `pub(crate)` API is what a Loader offers to the runtime.
pub(crate) struct Loader {
    scripts: RwLock<ScriptCache>,
    module_cache: RwLock<ModuleCache>,
    type_cache: RwLock<TypeCache>,
    natives: NativeFunctions,

    // The below field supports a hack to workaround well-known issues with the
    // loader cache. This cache is not designed to support module upgrade or deletion.
    // This leads to situations where the cache does not reflect the state of storage:
    //
    // 1. On module upgrade, the upgraded module is in storage, but the old one still in the cache.
    // 2. On an abandoned code publishing transaction, the cache may contain a module which was
    //    never committed to storage by the adapter.
    //
    // The solution is to add a flag to Loader marking it as 'invalidated'. For scenario (1),
    // the VM sets the flag itself. For scenario (2), a public API allows the adapter to set
    // the flag.
    //
    // If the cache is invalidated, it can (and must) still be used until there are no more
    // sessions alive which are derived from a VM with this loader. This is because there are
    // internal data structures derived from the loader which can become inconsistent. Therefore
    // the adapter must explicitly call a function to flush the invalidated loader.
    //
    // This code (the loader) needs a complete refactoring. The new loader should
    //
    // - support upgrade and deletion of modules, while still preserving max cache lookup
    //   performance. This is essential for a cache like this in a multi-tenant execution
    //   environment.
    // - should delegate lifetime ownership to the adapter. Code loading (including verification)
    //   is a major execution bottleneck. We should be able to reuse a cache for the lifetime of
    //   the adapter/node, not just a VM or even session (as effectively today).
    invalidated: RwLock<bool>,

    // Duet: while a publication is checked, the number of modules it has read and verified
    // (see `MAX_MODULES_LOADED_BY_PUBLICATION`).
    publication_loads: RwLock<Option<usize>>,

    // Duet: outside publications, the modules a load found at the head of too deep a chain,
    // each with the least depth it was reached at (it fails at that depth or deeper, whatever
    // the cache holds: its depth is the state's); emptied with the module cache. A failed load
    // caches nothing on its path, so without it every attempt verified those modules again.
    too_deep: RwLock<HashMap<ModuleId, usize>>,

    // Collects the cache hits on module loads. This information can be read and reset by
    // an adapter to reason about read/write conflicts of code publishing transactions and
    // other transactions.
    module_cache_hits: RwLock<BTreeSet<ModuleId>>,

    verifier_config: VerifierConfig,
    // Duet: `verifier_config` as text (its `Debug` form), which the verified modules are
    // keyed by (see `VerifiedModules`): made once.
    verifier_config_text: String,

    // Duet: whether the modules it deserializes are kept for every instance (see
    // `DeserializedModules`).
    pub(crate) keeps_deserialized: bool,
}

impl Loader {
    pub(crate) fn new(natives: NativeFunctions, verifier_config: VerifierConfig) -> Self {
        Self {
            scripts: RwLock::new(ScriptCache::new()),
            module_cache: RwLock::new(ModuleCache::new()),
            type_cache: RwLock::new(TypeCache::new()),
            natives,
            invalidated: RwLock::new(false),
            publication_loads: RwLock::new(None),
            too_deep: RwLock::new(HashMap::new()),
            module_cache_hits: RwLock::new(BTreeSet::new()),
            verifier_config_text: format!("{:?}", verifier_config),
            verifier_config,
            keeps_deserialized: true,
        }
    }

    /// Gets and clears module cache hits. A cache hit may also be caused indirectly by
    /// loading a function or a type. This not only returns the direct hit, but also
    /// indirect ones, that is all dependencies.
    pub(crate) fn get_and_clear_module_cache_hits(&self) -> BTreeSet<ModuleId> {
        let mut result = BTreeSet::new();
        let hits: BTreeSet<ModuleId> = std::mem::take(&mut self.module_cache_hits.write());
        for id in hits {
            self.transitive_dep_closure(&id, &mut result)
        }
        result
    }

    /// Duet: the nodes the cache of instantiated structs holds (see `TYPE_CACHE_NODES_MAX`).
    pub(crate) fn cached_type_nodes(&self) -> usize {
        self.type_cache.read().nodes
    }

    fn transitive_dep_closure(&self, id: &ModuleId, visited: &mut BTreeSet<ModuleId>) {
        if !visited.insert(id.clone()) {
            return;
        }
        let entry = self.module_cache.read();
        for dep in entry
            .modules
            .get(id)
            .unwrap()
            .module
            .immediate_dependencies()
        {
            self.transitive_dep_closure(&dep, visited)
        }
    }

    /// Duet: runs `verify`, a publication's checks, counting the modules it loads (see
    /// `MAX_MODULES_LOADED_BY_PUBLICATION`).
    pub(crate) fn counting_publication_loads<R>(
        &self,
        verify: impl FnOnce() -> VMResult<R>,
    ) -> VMResult<R> {
        /// Ends the counting however `verify` ends, a panic included.
        struct Counting<'a>(&'a RwLock<Option<usize>>);
        impl Drop for Counting<'_> {
            fn drop(&mut self) {
                *self.0.write() = None;
            }
        }
        debug_assert!(self.publication_loads.read().is_none(), "counting is not nested");
        *self.publication_loads.write() = Some(0);
        let _counting = Counting(&self.publication_loads);
        verify()
    }

    /// Duet: whether `err` is the failure of a module heading too deep a chain of dependencies.
    pub(crate) fn is_dependency_chain_too_deep(err: &move_binary_format::errors::VMError) -> bool {
        err.sub_status() == Some(DEPENDENCY_CHAIN_TOO_DEEP)
    }

    /// Duet: whether an upgrade's compatibility check compares the old module as stored after
    /// failing to load it with `err`: it heads too deep a chain, or its closure is too large.
    pub(crate) fn is_tolerated_by_upgrades(err: &move_binary_format::errors::VMError) -> bool {
        matches!(err.sub_status(), Some(DEPENDENCY_CHAIN_TOO_DEEP | PUBLICATION_LOAD_BOUND))
    }

    /// Flush this cache if it is marked as invalidated.
    pub(crate) fn flush_if_invalidated(&self) {
        let mut invalidated = self.invalidated.write();
        if *invalidated {
            *self.scripts.write() = ScriptCache::new();
            *self.module_cache.write() = ModuleCache::new();
            *self.type_cache.write() = TypeCache::new();
            self.too_deep.write().clear();
            *invalidated = false;
        }
    }

    /// Mark this cache as invalidated.
    pub(crate) fn mark_as_invalid(&self) {
        *self.invalidated.write() = true;
    }

    /// Copies metadata out of a modules bytecode if available.
    pub(crate) fn get_metadata(&self, module: ModuleId, key: &[u8]) -> Option<Metadata> {
        let cache = self.module_cache.read();
        cache
            .modules
            .get(&module)
            .and_then(|module| module.module.metadata.iter().find(|md| md.key == key))
            .cloned()
    }

    //
    // Script verification and loading
    //

    // Scripts are verified and dependencies are loaded.
    // Effectively that means modules are cached from leaf to root in the dependency DAG.
    // If a dependency error is found, loading stops and the error is returned.
    // However all modules cached up to that point stay loaded.

    // Entry point for script execution (`MoveVM::execute_script`).
    // Verifies the script if it is not in the cache of scripts loaded.
    // Type parameters are checked as well after every type is loaded.
    pub(crate) fn load_script(
        &self,
        script_blob: &[u8],
        ty_args: &[TypeTag],
        data_store: &impl DataStore,
    ) -> VMResult<(Arc<Function>, LoadedFunctionInstantiation)> {
        // retrieve or load the script
        let mut sha3_256 = Sha3_256::new();
        sha3_256.update(script_blob);
        let hash_value: [u8; 32] = sha3_256.finalize().into();

        let mut scripts = self.scripts.write();
        let (main, parameters, return_) = match scripts.get(&hash_value) {
            Some(cached) => cached,
            None => {
                let ver_script = self.deserialize_and_verify_script(script_blob, data_store)?;
                let script = Script::new(ver_script, &hash_value, &self.module_cache.read())?;
                scripts.insert(hash_value, script)
            }
        };

        // verify type arguments
        let mut type_arguments = vec![];
        for ty in ty_args {
            type_arguments.push(self.load_type(ty, data_store)?);
        }
        self.verify_ty_args(main.type_parameters(), &type_arguments)
            .map_err(|e| e.finish(Location::Script))?;
        let instantiation = LoadedFunctionInstantiation {
            type_arguments,
            parameters,
            return_,
        };
        Ok((main, instantiation))
    }

    // The process of deserialization and verification is not and it must not be under lock.
    // So when publishing modules through the dependency DAG it may happen that a different
    // thread had loaded the module after this process fetched it from storage.
    // Caching will take care of that by asking for each dependency module again under lock.
    fn deserialize_and_verify_script(
        &self,
        script: &[u8],
        data_store: &impl DataStore,
    ) -> VMResult<CompiledScript> {
        let script = match CompiledScript::deserialize(script) {
            Ok(script) => script,
            Err(err) => {
                error!("[VM] deserializer for script returned error: {:?}", err,);
                let msg = format!("Deserialization error: {:?}", err);
                return Err(PartialVMError::new(StatusCode::CODE_DESERIALIZATION_ERROR)
                    .with_message(msg)
                    .finish(Location::Script));
            }
        };

        match self.verify_script(&script) {
            Ok(_) => {
                // verify dependencies
                let loaded_deps = script
                    .immediate_dependencies()
                    .into_iter()
                    .map(|module_id| self.load_module(&module_id, data_store))
                    .collect::<VMResult<_>>()?;
                self.verify_script_dependencies(&script, loaded_deps)?;
                Ok(script)
            }
            Err(err) => {
                error!(
                    "[VM] bytecode verifier returned errors for script: {:?}",
                    err
                );
                Err(err)
            }
        }
    }

    // Script verification steps.
    // See `verify_module()` for module verification steps.
    fn verify_script(&self, script: &CompiledScript) -> VMResult<()> {
        move_bytecode_verifier::verify_script_with_config(&self.verifier_config, script)
    }

    fn verify_script_dependencies(
        &self,
        script: &CompiledScript,
        dependencies: Vec<Arc<Module>>,
    ) -> VMResult<()> {
        let mut deps = vec![];
        for dep in &dependencies {
            deps.push(dep.module());
        }
        dependencies::verify_script(script, deps)
    }

    //
    // Module verification and loading
    //

    // Entry point for function execution (`MoveVM::execute_function`).
    // Loading verifies the module if it was never loaded.
    // Type parameters are checked as well after every type is loaded.
    pub(crate) fn load_function(
        &self,
        module_id: &ModuleId,
        function_name: &IdentStr,
        ty_args: &[TypeTag],
        data_store: &impl DataStore,
    ) -> VMResult<(Arc<Module>, Arc<Function>, LoadedFunctionInstantiation)> {
        let module = self.load_module(module_id, data_store)?;
        let idx = self
            .module_cache
            .read()
            .resolve_function_by_name(function_name, module_id)
            .map_err(|err| err.finish(Location::Undefined))?;
        let func = self.module_cache.read().function_at(idx);

        let parameters = func
            .parameters
            .0
            .iter()
            .map(|tok| {
                self.module_cache
                    .read()
                    .make_type(BinaryIndexedView::Module(module.module()), tok)
            })
            .collect::<PartialVMResult<Vec<_>>>()
            .map_err(|err| err.finish(Location::Undefined))?;

        let return_ = func
            .return_
            .0
            .iter()
            .map(|tok| {
                self.module_cache
                    .read()
                    .make_type(BinaryIndexedView::Module(module.module()), tok)
            })
            .collect::<PartialVMResult<Vec<_>>>()
            .map_err(|err| err.finish(Location::Undefined))?;

        // verify type arguments
        let type_arguments = ty_args
            .iter()
            .map(|ty| self.load_type(ty, data_store))
            .collect::<VMResult<Vec<_>>>()?;
        self.verify_ty_args(func.type_parameters(), &type_arguments)
            .map_err(|e| e.finish(Location::Module(module_id.clone())))?;

        let loaded = LoadedFunctionInstantiation {
            type_arguments,
            parameters,
            return_,
        };
        Ok((module, func, loaded))
    }

    /// Duet: records that each of `blobs` passes the verifier's checks of a module by itself
    /// under this loader's configuration (see `VerifiedModules`), unless this loader keeps
    /// nothing for others (a VM for free calls: a call publishing ever new modules would
    /// empty the set).
    pub(crate) fn remember_verified(&self, blobs: &[Vec<u8>]) {
        if !self.keeps_deserialized {
            return; // Nothing to remember, so no key to hash.
        }
        for blob in blobs {
            VERIFIED_MODULES.insert(VerifiedModules::key(&self.verifier_config_text, blob));
        }
    }

    /// Duet: records the module whose `VerifiedModules::key` is `key` as verified, as
    /// `remember_verified` does (the load path has its key already).
    fn remember_verified_key(&self, key: [u8; 32]) {
        if self.keeps_deserialized {
            VERIFIED_MODULES.insert(key);
        }
    }

    // Entry point for module publishing (`MoveVM::publish_module_bundle`).
    //
    // All modules in the bundle to be published must be loadable. This function performs all
    // verification steps to load these modules without actually loading them into the code cache.
    pub(crate) fn verify_module_bundle_for_publication(
        &self,
        modules: &[Arc<Deserialized>],
        data_store: &mut impl DataStore,
    ) -> VMResult<()> {
        let mut bundle_unverified: BTreeSet<_> = modules.iter().map(|m| m.self_id()).collect();
        let mut bundle_verified = BTreeMap::new();
        for module in modules {
            let module_id = module.self_id();
            bundle_unverified.remove(&module_id);

            let depth = self.verify_module_for_publication(
                module,
                &bundle_verified,
                &bundle_unverified,
                data_store,
            )?;
            // Duet: kept with its dependency depth.
            bundle_verified.insert(module_id.clone(), (Arc::clone(module), depth));
        }
        Ok(())
    }

    // A module to be published must be loadable.
    //
    // This step performs all verification steps to load the module without loading it.
    // The module is not added to the code cache. It is simply published to the data cache.
    // See `verify_script()` for script verification steps.
    //
    // If a module `M` is published together with a bundle of modules (i.e., a vector of modules),
    // - the `bundle_verified` argument tracks the modules that have already been verified in the
    //   bundle. Basically, this represents the modules appears before `M` in the bundle vector.
    // - the `bundle_unverified` argument tracks the modules that have not been verified when `M`
    //   is being verified, i.e., the modules appears after `M` in the bundle vector.
    fn verify_module_for_publication(
        &self,
        module: &CompiledModule,
        bundle_verified: &Bundle,
        bundle_unverified: &BTreeSet<ModuleId>,
        data_store: &impl DataStore,
    ) -> VMResult<usize> {
        // Performs all verification steps to load the module without loading it, i.e., the new
        // module will NOT show up in `module_cache`. In the module republishing case, it means
        // that the old module is still in the `module_cache`, unless a new Loader is created,
        // which means that a new MoveVM instance needs to be created. (Duet: unless it headed too
        // deep a chain or passed the count, and Duet empties the caches after a publication.)
        move_bytecode_verifier::verify_module_with_config(&self.verifier_config, module)?;
        self.check_natives(module)?;

        let mut visited = BTreeSet::new();
        visited.insert(module.self_id());
        // Duet: only the module's own friends (and theirs) are loaded: the cycle checks walk
        // those, and a dependency's friends take no part in them (loading them, as upstream
        // did, let a friend of any dependency fail the publication).
        let friends_discovered: BTreeSet<_> = module.immediate_friends().into_iter().collect();

        // downward exploration of the module's dependency graph. Since we know nothing about this
        // target module, we don't know what the module may specify as its dependencies and hence,
        // we allow the loading of dependencies and the subsequent linking to fail.
        // Duet: and its dependency depth.
        let depth = self.load_and_verify_dependencies(
            module,
            bundle_verified,
            data_store,
            &mut visited,
            /* allow_dependency_loading_failure */ true,
            1,
        )?;

        // upward exploration of the modules's dependency graph. Similar to dependency loading, as
        // we know nothing about this target module, we don't know what the module may specify as
        // its friends and hence, we allow the loading of friends to fail.
        self.load_and_verify_friends(
            friends_discovered,
            bundle_verified,
            bundle_unverified,
            data_store,
            /* allow_friend_loading_failure */ true,
        )?;

        // make sure there is no cyclic dependency
        self.verify_module_cyclic_relations(module, bundle_verified, bundle_unverified)?;
        Ok(depth)
    }

    // Duet: the checks of `cyclic_dependencies::verify_module`, with the closures walked by a
    // loop over a stack instead of a recursion (a chain of thousands of modules overflowed the
    // native stack).
    fn verify_module_cyclic_relations(
        &self,
        module: &CompiledModule,
        bundle_verified: &Bundle,
        bundle_unverified: &BTreeSet<ModuleId>,
    ) -> VMResult<()> {
        let module_cache = self.module_cache.read();
        let find = |module_id: &ModuleId| {
            bundle_verified
                .get(module_id)
                .map(|(module, _)| &*module.module)
                .or_else(|| module_cache.modules.get(module_id).map(|m| m.module()))
                .ok_or_else(|| PartialVMError::new(StatusCode::MISSING_DEPENDENCY))
        };
        let self_id = module.self_id();
        let check = || -> PartialVMResult<()> {
            let all_deps = closure_without(
                &self_id,
                module.immediate_dependencies(),
                |module_id| Ok(find(module_id)?.immediate_dependencies()),
                StatusCode::CYCLIC_MODULE_DEPENDENCY,
            )?;
            let all_friends = closure_without(
                &self_id,
                module.immediate_friends(),
                |module_id| {
                    if bundle_unverified.contains(module_id) {
                        // If the module under verification declares a friend which is also in
                        // the bundle (and positioned after this module in the bundle), we defer
                        // the cyclic relation checking when we verify that module.
                        Ok(vec![])
                    } else {
                        Ok(find(module_id)?.immediate_friends())
                    }
                },
                StatusCode::CYCLIC_MODULE_FRIENDSHIP,
            )?;
            // check that any direct/transitive dependency is neither a direct nor transitive
            // friend
            match all_deps.intersection(&all_friends).next() {
                Some(overlap) => Err(PartialVMError::new(
                    StatusCode::INVALID_FRIEND_DECL_WITH_MODULES_IN_DEPENDENCIES,
                )
                .with_message(format!(
                    "At least one module, {}, appears in both the dependency set and the friend set",
                    overlap
                ))),
                None => Ok(()),
            }
        };
        check().map_err(|e| e.finish(Location::Module(self_id.clone())))
    }

    // All native functions must be known to the loader
    fn check_natives(&self, module: &CompiledModule) -> VMResult<()> {
        fn check_natives_impl(loader: &Loader, module: &CompiledModule) -> PartialVMResult<()> {
            for (idx, native_function) in module
                .function_defs()
                .iter()
                .filter(|fdv| fdv.is_native())
                .enumerate()
            {
                let fh = module.function_handle_at(native_function.function);
                let mh = module.module_handle_at(fh.module);
                loader
                    .natives
                    .resolve(
                        module.address_identifier_at(mh.address),
                        module.identifier_at(mh.name).as_str(),
                        module.identifier_at(fh.name).as_str(),
                    )
                    .ok_or_else(|| {
                        verification_error(
                            StatusCode::MISSING_DEPENDENCY,
                            IndexKind::FunctionHandle,
                            idx as TableIndex,
                        )
                    })?;
            }
            // TODO: fix check and error code if we leave something around for native structs.
            // For now this generates the only error test cases care about...
            for (idx, struct_def) in module.struct_defs().iter().enumerate() {
                if struct_def.field_information == StructFieldInformation::Native {
                    return Err(verification_error(
                        StatusCode::MISSING_DEPENDENCY,
                        IndexKind::FunctionHandle,
                        idx as TableIndex,
                    ));
                }
            }
            Ok(())
        }
        check_natives_impl(self, module).map_err(|e| e.finish(Location::Module(module.self_id())))
    }

    //
    // Helpers for loading and verification
    //

    pub(crate) fn load_type(
        &self,
        type_tag: &TypeTag,
        data_store: &impl DataStore,
    ) -> VMResult<Type> {
        Ok(match type_tag {
            TypeTag::Bool => Type::Bool,
            TypeTag::U8 => Type::U8,
            TypeTag::U64 => Type::U64,
            TypeTag::U128 => Type::U128,
            TypeTag::Address => Type::Address,
            TypeTag::Signer => Type::Signer,
            TypeTag::Vector(tt) => Type::Vector(Box::new(self.load_type(tt, data_store)?)),
            TypeTag::Struct(struct_tag) => {
                let module_id = ModuleId::new(struct_tag.address, struct_tag.module.clone());
                self.load_module(&module_id, data_store)?;
                let (idx, struct_type) = self
                    .module_cache
                    .read()
                    // GOOD module was loaded above
                    .resolve_struct_by_name(&struct_tag.name, &module_id)
                    .map_err(|e| e.finish(Location::Undefined))?;
                if struct_type.type_parameters.is_empty() && struct_tag.type_params.is_empty() {
                    Type::Struct(idx)
                } else {
                    let mut type_params = vec![];
                    for ty_param in &struct_tag.type_params {
                        type_params.push(self.load_type(ty_param, data_store)?);
                    }
                    self.verify_ty_args(struct_type.type_param_constraints(), &type_params)
                        .map_err(|e| e.finish(Location::Undefined))?;
                    Type::StructInstantiation(idx, type_params)
                }
            }
        })
    }

    // The interface for module loading. Aligned with `load_type` and `load_function`, this function
    // verifies that the module is OK instead of expect it.
    pub(crate) fn load_module(
        &self,
        id: &ModuleId,
        data_store: &impl DataStore,
    ) -> VMResult<Arc<Module>> {
        // if the module is already in the code cache, load the cached version
        if let Some(cached) = self.module_cache.read().module_at(id) {
            self.module_cache_hits.write().insert(id.clone());
            return Ok(cached);
        }

        // Duet: otherwise, load the transitive closure of the target module's dependencies,
        // not its friends', and do not check the closure for cycles. Stored code passed those
        // checks when it was published (an upgrade is checked as any publication, and a new
        // cycle must pass through the upgraded module), and a module's code never calls its
        // friends. Both made outcomes depend on the cache: the checks ran only for the module
        // a load started from, not for the dependencies and friends it cached (an upgrade
        // elsewhere can make a friend also a dependency, which they refuse), and a load that
        // failed on a friend left the module cached without it. Now a load of stored code can
        // fail only on the dependency bound (and, within a publication, on its count of
        // modules loaded), and whatever it cached is complete.
        let mut visited = BTreeSet::new();
        self.load_and_verify_module_and_dependencies(
            id,
            &BTreeMap::new(),
            data_store,
            &mut visited,
            /* allow_module_loading_failure */ true,
            1,
        )
    }

    // Load, deserialize, and check the module with the bytecode verifier, without linking
    // Duet: as deserialized once per process (see `DeserializedModules`).
    fn load_and_verify_module(
        &self,
        id: &ModuleId,
        data_store: &impl DataStore,
        allow_loading_failure: bool,
    ) -> VMResult<Arc<Deserialized>> {
        // bytes fetching, allow loading to fail if the flag is set
        let bytes = match data_store.load_module(id) {
            Ok(bytes) => bytes,
            Err(err) if allow_loading_failure => return Err(err),
            Err(err) => {
                error!("[VM] Error fetching module with id {:?}", id);
                return Err(expect_no_verification_errors(err));
            }
        };

        // for bytes obtained from the data store, they should always deserialize and verify.
        // It is an invariant violation if they don't.
        let module = stored_module(&bytes, self.keeps_deserialized)
            .map_err(|err| {
                let msg = format!("Deserialization error: {:?}", err);
                PartialVMError::new(StatusCode::CODE_DESERIALIZATION_ERROR)
                    .with_message(msg)
                    .finish(Location::Module(id.clone()))
            })
            .map_err(expect_no_verification_errors)?;

        // bytecode verifier checks that can be performed with the module itself
        // Duet: once per process for the same bytes (see `DeserializedModules` and
        // `VerifiedModules`).
        let config = &self.verifier_config_text;
        if !module.verified_with(config) {
            let key = VerifiedModules::key(config, &bytes);
            if !VERIFIED_MODULES.contains(&key) {
                move_bytecode_verifier::verify_module_with_config(&self.verifier_config, &module)
                    .map_err(expect_no_verification_errors)?;
                self.remember_verified_key(key);
            }
            module.mark_verified(config);
        }
        self.check_natives(&module)
            .map_err(expect_no_verification_errors)?;
        Ok(module)
    }

    // Everything in `load_and_verify_module` and also recursively load and verify all the
    // dependencies of the target module.
    fn load_and_verify_module_and_dependencies(
        &self,
        id: &ModuleId,
        bundle_verified: &Bundle,
        data_store: &impl DataStore,
        visited: &mut BTreeSet<ModuleId>,
        allow_module_loading_failure: bool,
        depth: usize,
    ) -> VMResult<Arc<Module>> {
        // Duet: a module this far down a chain of dependencies makes the chain too deep (the
        // module it was reached from has a depth of at least this): refused before it recurses
        // further, whatever the cache holds below.
        if depth > MAX_DEPENDENCY_DEPTH {
            return Err(dependency_chain_too_deep().finish(Location::Undefined));
        }
        // Duet: a publication reads and verifies a bounded number of modules (friends'
        // closures included, and those on a failed load's path).
        let publishing = {
            let mut loads = self.publication_loads.write();
            match loads.as_mut() {
                Some(loads) if *loads >= MAX_MODULES_LOADED_BY_PUBLICATION => {
                    return Err(PartialVMError::new(StatusCode::CONSTRAINT_NOT_SATISFIED)
                        .with_sub_status(PUBLICATION_LOAD_BOUND)
                        .with_message(format!(
                            "publishing would load more than {MAX_MODULES_LOADED_BY_PUBLICATION} \
                             modules (the bundle's dependencies and its friends', with theirs)"
                        ))
                        .finish(Location::Undefined));
                }
                Some(loads) => {
                    *loads += 1;
                    true
                }
                None => false,
            }
        };
        // Duet: outside publications, a module found too deep at this depth or less fails at
        // once (see `too_deep`). Only a publication links against a bundle's modules.
        debug_assert!(publishing || bundle_verified.is_empty());
        if !publishing && self.too_deep.read().get(id).is_some_and(|&at| at <= depth) {
            return Err(dependency_chain_too_deep().finish(Location::Undefined));
        }
        let loaded = self.load_and_verify_module_and_its_dependencies(
            id,
            bundle_verified,
            data_store,
            visited,
            allow_module_loading_failure,
            depth,
        );
        if let Err(err) = &loaded {
            if !publishing && Self::is_dependency_chain_too_deep(err) {
                let mut too_deep = self.too_deep.write();
                let at = too_deep.entry(id.clone()).or_insert(depth);
                *at = (*at).min(depth);
            }
        }
        loaded
    }

    // Duet: the body of `load_and_verify_module_and_dependencies`, within its bounds.
    #[allow(clippy::too_many_arguments)]
    fn load_and_verify_module_and_its_dependencies(
        &self,
        id: &ModuleId,
        bundle_verified: &Bundle,
        data_store: &impl DataStore,
        visited: &mut BTreeSet<ModuleId>,
        allow_module_loading_failure: bool,
        depth: usize,
    ) -> VMResult<Arc<Module>> {
        // dependency loading does not permit cycles
        if visited.contains(id) {
            return Err(PartialVMError::new(StatusCode::CYCLIC_MODULE_DEPENDENCY)
                .finish(Location::Undefined));
        }

        // module self-check
        let module = self.load_and_verify_module(id, data_store, allow_module_loading_failure)?;
        visited.insert(id.clone());
        // Duet: its friends are not collected (loading follows dependencies only; a publication
        // follows its own modules' friends).

        // downward exploration of the module's dependency graph. For a module that is loaded from
        // the data_store, we should never allow its dependencies to fail to load.
        let dependency_depth = self.load_and_verify_dependencies(
            &module,
            bundle_verified,
            data_store,
            visited,
            /* allow_dependency_loading_failure */ false,
            depth,
        )?;

        // if linking goes well, insert the module to the code cache
        let mut locked_cache = self.module_cache.write();
        let module_ref =
            locked_cache.insert(&self.natives, id.clone(), &module, dependency_depth)?;
        drop(locked_cache); // explicit unlock

        Ok(module_ref)
    }

    // downward exploration of the module's dependency graph
    fn load_and_verify_dependencies(
        &self,
        module: &CompiledModule,
        bundle_verified: &Bundle,
        data_store: &impl DataStore,
        visited: &mut BTreeSet<ModuleId>,
        allow_dependency_loading_failure: bool,
        // Duet: how far down a chain of dependencies `module` is (1 for the module loaded).
        depth: usize,
    ) -> VMResult<usize> {
        // all immediate dependencies of the module being verified should be in one of the locations
        // - the verified portion of the bundle (e.g., verified before this module)
        // - the code cache (i.e., loaded already)
        // - the data store (i.e., not loaded to code cache yet)
        let mut bundle_deps = vec![];
        let mut cached_deps = vec![];
        // Duet: the deepest chain below `module`. Each dependency's is checked as it is
        // reached, whether it was loaded here, found in the cache or in the bundle, so that a
        // chain too deep fails at the same point whatever the cache holds (and before any
        // other check a later dependency or the linking could fail).
        let mut deepest = 0;
        let mut reach = |dep_depth: usize| {
            if depth + dep_depth > MAX_DEPENDENCY_DEPTH {
                return Err(dependency_chain_too_deep().finish(Location::Undefined));
            }
            deepest = deepest.max(dep_depth);
            Ok(())
        };
        for module_id in module.immediate_dependencies() {
            if let Some((cached, dep_depth)) = bundle_verified.get(&module_id) {
                reach(*dep_depth)?;
                bundle_deps.push((&*cached.module, &*cached.definitions));
            } else {
                let locked_cache = self.module_cache.read();
                let loaded = match locked_cache.module_at(&module_id) {
                    None => {
                        drop(locked_cache); // explicit unlock
                        self.load_and_verify_module_and_dependencies(
                            &module_id,
                            bundle_verified,
                            data_store,
                            visited,
                            allow_dependency_loading_failure,
                            depth + 1,
                        )?
                    }
                    Some(cached) => cached,
                };
                reach(loaded.dependency_depth)?;
                cached_deps.push(loaded);
            }
        }

        // once all dependencies are loaded, do the linking check
        // Duet: with each dependency's definitions by name, built once per module.
        let all_imm_deps = bundle_deps
            .into_iter()
            .chain(cached_deps.iter().map(|m| (m.module(), &*m.definitions)));
        let result = dependencies::verify_module_with_definitions(module, all_imm_deps);

        // if dependencies loading is not allowed to fail, the linking should not fail as well
        if allow_dependency_loading_failure {
            result?
        } else {
            result.map_err(expect_no_verification_errors)?
        }
        Ok(deepest + 1)
    }

    // upward exploration of the module's dependency graph
    //
    // Duet: a loop over a stack of the friends still to load rather than a recursion through
    // each friend's friends (a long chain of friends overflowed the native stack), in the same
    // order; it starts from the published modules' own friends only (upstream also took the
    // friends of every dependency it loaded), and follows cached friends' friends too.
    fn load_and_verify_friends(
        &self,
        friends_discovered: BTreeSet<ModuleId>,
        bundle_verified: &Bundle,
        bundle_unverified: &BTreeSet<ModuleId>,
        data_store: &impl DataStore,
        allow_friend_loading_failure: bool,
    ) -> VMResult<()> {
        // for each new module discovered in the frontier, load them fully and expand the frontier.
        // apply two filters to the new friend modules discovered (Duet: a cached one is not
        // loaded again, but its friends are followed)
        // - `!bundle_verified.contains_key(mid)`
        //   In the case of publishing a bundle, we don't actually put the published module into
        //   code cache. This `bundle_verified` cache is a temporary extension of the code cache
        //   in the bundle publication scenario. If a module is already verified, we don't need to
        //   re-load it again.
        // - `!bundle_unverified.contains(mid)
        //   If the module under verification declares a friend which is also in the bundle (and
        //   positioned after this module in the bundle), we defer the loading of that module when
        //   it is the module's turn in the bundle.
        let mut pending: Vec<(ModuleId, bool)> = friends_discovered
            .into_iter()
            .rev()
            .map(|mid| (mid, allow_friend_loading_failure))
            .collect();
        //
        // Duet: a cached friend's friends are followed too (loading a module no longer loads
        // its friends), each friend once.
        let mut seen = BTreeSet::new();
        while let Some((module_id, allow_loading_failure)) = pending.pop() {
            if bundle_verified.contains_key(&module_id)
                || bundle_unverified.contains(&module_id)
                || !seen.insert(module_id.clone())
            {
                continue;
            }
            let cached = self.module_cache.read().module_at(&module_id);
            let friend = match cached {
                Some(cached) => cached,
                // load the closure of the module in terms of dependency relation
                None => self.load_and_verify_module_and_dependencies(
                    &module_id,
                    bundle_verified,
                    data_store,
                    &mut BTreeSet::new(),
                    allow_loading_failure,
                    1,
                )?,
            };
            // For a module that is loaded from the data_store, we should never allow that its
            // friends fail to load.
            let friends = friend.module().immediate_friends();
            pending.extend(friends.into_iter().rev().map(|mid| (mid, false)));
        }
        Ok(())
    }

    // Verify the kind (constraints) of an instantiation.
    // Both function and script invocation use this function to verify correctness
    // of type arguments provided
    fn verify_ty_args<'a, I>(&self, constraints: I, ty_args: &[Type]) -> PartialVMResult<()>
    where
        I: IntoIterator<Item = &'a AbilitySet>,
        I::IntoIter: ExactSizeIterator,
    {
        let constraints = constraints.into_iter();
        if constraints.len() != ty_args.len() {
            return Err(PartialVMError::new(
                StatusCode::NUMBER_OF_TYPE_ARGUMENTS_MISMATCH,
            ));
        }
        for (ty, expected_k) in ty_args.iter().zip(constraints) {
            if !expected_k.is_subset(self.abilities(ty)?) {
                return Err(PartialVMError::new(StatusCode::CONSTRAINT_NOT_SATISFIED));
            }
        }
        Ok(())
    }

    //
    // Internal helpers
    //

    fn function_at(&self, idx: usize) -> Arc<Function> {
        self.module_cache.read().function_at(idx)
    }

    fn get_module(&self, idx: &ModuleId) -> Arc<Module> {
        Arc::clone(
            self.module_cache
                .read()
                .modules
                .get(idx)
                .expect("ModuleId on Function must exist"),
        )
    }

    fn get_script(&self, hash: &ScriptHash) -> Arc<Script> {
        Arc::clone(
            self.scripts
                .read()
                .scripts
                .get(hash)
                .expect("Script hash on Function must exist"),
        )
    }

    pub(crate) fn get_struct_type(&self, idx: CachedStructIndex) -> Option<Arc<StructType>> {
        self.module_cache.read().structs.get(idx.0).map(Arc::clone)
    }

    pub(crate) fn abilities(&self, ty: &Type) -> PartialVMResult<AbilitySet> {
        match ty {
            Type::Bool | Type::U8 | Type::U64 | Type::U128 | Type::Address => {
                Ok(AbilitySet::PRIMITIVES)
            }

            // Technically unreachable but, no point in erroring if we don't have to
            Type::Reference(_) | Type::MutableReference(_) => Ok(AbilitySet::REFERENCES),
            Type::Signer => Ok(AbilitySet::SIGNER),

            Type::TyParam(_) => Err(PartialVMError::new(StatusCode::UNREACHABLE).with_message(
                "Unexpected TyParam type after translating from TypeTag to Type".to_string(),
            )),

            Type::Vector(ty) => AbilitySet::polymorphic_abilities(
                AbilitySet::VECTOR,
                vec![false],
                vec![self.abilities(ty)?],
            ),
            Type::Struct(idx) => Ok(self.module_cache.read().struct_at(*idx).abilities),
            Type::StructInstantiation(idx, type_args) => {
                let struct_type = self.module_cache.read().struct_at(*idx);
                let declared_phantom_parameters = struct_type
                    .type_parameters
                    .iter()
                    .map(|param| param.is_phantom);
                let type_argument_abilities = type_args
                    .iter()
                    .map(|arg| self.abilities(arg))
                    .collect::<PartialVMResult<Vec<_>>>()?;
                AbilitySet::polymorphic_abilities(
                    struct_type.abilities,
                    declared_phantom_parameters,
                    type_argument_abilities,
                )
            }
        }
    }
}

//
// Resolver
//

// A simple wrapper for a `Module` or a `Script` in the `Resolver`
enum BinaryType {
    Module(Arc<Module>),
    Script(Arc<Script>),
}

// A Resolver is a simple and small structure allocated on the stack and used by the
// interpreter. It's the only API known to the interpreter and it's tailored to the interpreter
// needs.
pub(crate) struct Resolver<'a> {
    loader: &'a Loader,
    binary: BinaryType,
}

impl<'a> Resolver<'a> {
    fn for_module(loader: &'a Loader, module: Arc<Module>) -> Self {
        let binary = BinaryType::Module(module);
        Self { loader, binary }
    }

    fn for_script(loader: &'a Loader, script: Arc<Script>) -> Self {
        let binary = BinaryType::Script(script);
        Self { loader, binary }
    }

    //
    // Constant resolution
    //

    pub(crate) fn constant_at(&self, idx: ConstantPoolIndex) -> &Constant {
        match &self.binary {
            BinaryType::Module(module) => module.module.constant_at(idx),
            BinaryType::Script(script) => script.script.constant_at(idx),
        }
    }

    //
    // Function resolution
    //

    pub(crate) fn function_from_handle(&self, idx: FunctionHandleIndex) -> Arc<Function> {
        let idx = match &self.binary {
            BinaryType::Module(module) => module.function_at(idx.0),
            BinaryType::Script(script) => script.function_at(idx.0),
        };
        self.loader.function_at(idx)
    }

    pub(crate) fn function_from_instantiation(
        &self,
        idx: FunctionInstantiationIndex,
    ) -> Arc<Function> {
        let func_inst = match &self.binary {
            BinaryType::Module(module) => module.function_instantiation_at(idx.0),
            BinaryType::Script(script) => script.function_instantiation_at(idx.0),
        };
        self.loader.function_at(func_inst.handle)
    }

    pub(crate) fn instantiate_generic_function(
        &self,
        idx: FunctionInstantiationIndex,
        type_params: &[Type],
    ) -> PartialVMResult<Vec<Type>> {
        let func_inst = match &self.binary {
            BinaryType::Module(module) => module.function_instantiation_at(idx.0),
            BinaryType::Script(script) => script.function_instantiation_at(idx.0),
        };
        let mut instantiation = vec![];
        for ty in &func_inst.instantiation {
            instantiation.push(ty.subst(type_params)?);
        }
        Ok(instantiation)
    }

    #[allow(unused)]
    pub(crate) fn type_params_count(&self, idx: FunctionInstantiationIndex) -> usize {
        let func_inst = match &self.binary {
            BinaryType::Module(module) => module.function_instantiation_at(idx.0),
            BinaryType::Script(script) => script.function_instantiation_at(idx.0),
        };
        func_inst.instantiation.len()
    }

    //
    // Type resolution
    //

    pub(crate) fn get_struct_type(&self, idx: StructDefinitionIndex) -> Type {
        let struct_def = match &self.binary {
            BinaryType::Module(module) => module.struct_at(idx),
            BinaryType::Script(_) => unreachable!("Scripts cannot have type instructions"),
        };
        Type::Struct(struct_def)
    }

    pub(crate) fn instantiate_generic_type(
        &self,
        idx: StructDefInstantiationIndex,
        ty_args: &[Type],
    ) -> PartialVMResult<Type> {
        let struct_inst = match &self.binary {
            BinaryType::Module(module) => module.struct_instantiation_at(idx.0),
            BinaryType::Script(_) => unreachable!("Scripts cannot have type instructions"),
        };
        Ok(Type::StructInstantiation(
            struct_inst.def,
            struct_inst
                .instantiation
                .iter()
                .map(|ty| ty.subst(ty_args))
                .collect::<PartialVMResult<_>>()?,
        ))
    }

    fn single_type_at(&self, idx: SignatureIndex) -> &Type {
        match &self.binary {
            BinaryType::Module(module) => module.single_type_at(idx),
            BinaryType::Script(script) => script.single_type_at(idx),
        }
    }

    pub(crate) fn instantiate_single_type(
        &self,
        idx: SignatureIndex,
        ty_args: &[Type],
    ) -> PartialVMResult<Type> {
        let ty = self.single_type_at(idx);
        ty.subst(ty_args)
    }

    //
    // Fields resolution
    //

    pub(crate) fn field_offset(&self, idx: FieldHandleIndex) -> usize {
        match &self.binary {
            BinaryType::Module(module) => module.field_offset(idx),
            BinaryType::Script(_) => unreachable!("Scripts cannot have field instructions"),
        }
    }

    pub(crate) fn field_instantiation_offset(&self, idx: FieldInstantiationIndex) -> usize {
        match &self.binary {
            BinaryType::Module(module) => module.field_instantiation_offset(idx),
            BinaryType::Script(_) => unreachable!("Scripts cannot have field instructions"),
        }
    }

    pub(crate) fn field_count(&self, idx: StructDefinitionIndex) -> u16 {
        match &self.binary {
            BinaryType::Module(module) => module.field_count(idx.0),
            BinaryType::Script(_) => unreachable!("Scripts cannot have type instructions"),
        }
    }

    pub(crate) fn field_instantiation_count(&self, idx: StructDefInstantiationIndex) -> u16 {
        match &self.binary {
            BinaryType::Module(module) => module.field_instantiation_count(idx.0),
            BinaryType::Script(_) => unreachable!("Scripts cannot have type instructions"),
        }
    }

    pub(crate) fn type_to_type_layout(&self, ty: &Type) -> PartialVMResult<MoveTypeLayout> {
        self.loader.type_to_type_layout(ty)
    }

    /// Duet: see `Loader::type_to_type_layout_with_nodes`.
    pub(crate) fn type_to_type_layout_with_nodes(
        &self,
        ty: &Type,
    ) -> PartialVMResult<(MoveTypeLayout, usize)> {
        self.loader.type_to_type_layout_with_nodes(ty)
    }

    // get the loader
    pub(crate) fn loader(&self) -> &Loader {
        self.loader
    }
}

// A Module is very similar to a binary Module but data is "transformed" to a representation
// more appropriate to execution.
// When code executes indexes in instructions are resolved against those runtime structure
// so that any data needed for execution is immediately available
#[derive(Debug)]
pub(crate) struct Module {
    #[allow(dead_code)]
    id: ModuleId,
    // primitive pools
    module: Arc<CompiledModule>,

    //
    // types as indexes into the Loader type list
    //

    // struct references carry the index into the global vector of types.
    // That is effectively an indirection over the ref table:
    // the instruction carries an index into this table which contains the index into the
    // glabal table of types. No instantiation of generic types is saved into the global table.
    #[allow(dead_code)]
    struct_refs: Vec<CachedStructIndex>,
    structs: Vec<StructDef>,
    // materialized instantiations, whether partial or not
    struct_instantiations: Vec<StructInstantiation>,

    // functions as indexes into the Loader function list
    // That is effectively an indirection over the ref table:
    // the instruction carries an index into this table which contains the index into the
    // glabal table of functions. No instantiation of generic functions is saved into
    // the global table.
    function_refs: Vec<usize>,
    // materialized instantiations, whether partial or not
    function_instantiations: Vec<FunctionInstantiation>,

    // fields as a pair of index, first to the type, second to the field position in that type
    field_handles: Vec<FieldHandle>,
    // materialized instantiations, whether partial or not
    field_instantiations: Vec<FieldInstantiation>,

    // function name to index into the Loader function list.
    // This allows a direct access from function name to `Function`
    function_map: HashMap<Identifier, usize>,
    // struct name to index into the Loader type list
    // This allows a direct access from struct name to `Struct`
    struct_map: HashMap<Identifier, CachedStructIndex>,

    // a map of single-token signature indices to type.
    // Single-token signatures are usually indexed by the `SignatureIndex` in bytecode. For example,
    // `VecMutBorrow(SignatureIndex)`, the `SignatureIndex` maps to a single `SignatureToken`, and
    // hence, a single type.
    single_signature_token_map: BTreeMap<SignatureIndex, Type>,

    // Duet: the length of the longest chain of dependencies from this module down, itself
    // included (see `MAX_DEPENDENCY_DEPTH`).
    dependency_depth: usize,

    // Duet: its definitions by name, to link the modules that depend on it.
    definitions: Arc<Definitions>,
}

impl Module {
    fn new(
        module: Arc<CompiledModule>,
        definitions: Arc<Definitions>,
        cache: &ModuleCache,
        dependency_depth: usize,
    ) -> Result<Self, (PartialVMError, Arc<CompiledModule>)> {
        let id = module.self_id();

        let mut struct_refs = vec![];
        let mut structs = vec![];
        let mut struct_instantiations = vec![];
        let mut function_refs = vec![];
        let mut function_instantiations = vec![];
        let mut field_handles = vec![];
        let mut field_instantiations: Vec<FieldInstantiation> = vec![];
        let mut function_map = HashMap::new();
        let mut struct_map = HashMap::new();
        let mut single_signature_token_map = BTreeMap::new();

        let mut create = || {
            // Duet: the module's own structs and functions found by name (`own_structs`).
            let own_structs = cache.own_structs(&id);
            let own_functions = cache.own_functions(&id);
            for struct_handle in module.struct_handles() {
                let struct_name = module.identifier_at(struct_handle.name);
                let module_handle = module.module_handle_at(struct_handle.module);
                let module_id = module.module_id_for_handle(module_handle);
                if module_id == id {
                    // module has not been published yet: at this point all the types of the
                    // module are in the type list but not yet exposed through the module cache,
                    // so any resolution to types of the module being loaded is going to fail.
                    // Duet: found by name in `own_structs`.
                    match own_structs.get(struct_name) {
                        Some(idx) => struct_refs.push(*idx),
                        None => {
                            return Err(PartialVMError::new(StatusCode::TYPE_RESOLUTION_FAILURE)
                                .with_message(format!(
                                    "Cannot find {:?}::{:?} in publishing module",
                                    module_id, struct_name
                                )))
                        }
                    }
                } else {
                    struct_refs.push(cache.resolve_struct_by_name(struct_name, &module_id)?.0);
                }
            }

            for struct_def in module.struct_defs() {
                let idx = struct_refs[struct_def.struct_handle.0 as usize];
                let field_count = cache.structs[idx.0].fields.len() as u16;
                structs.push(StructDef { field_count, idx });
                let name =
                    module.identifier_at(module.struct_handle_at(struct_def.struct_handle).name);
                struct_map.insert(name.to_owned(), idx);
            }

            for struct_inst in module.struct_instantiations() {
                let def = struct_inst.def.0 as usize;
                let struct_def = &structs[def];
                let field_count = struct_def.field_count;
                let mut instantiation = vec![];
                for ty in &module.signature_at(struct_inst.type_parameters).0 {
                    instantiation.push(cache.make_type_while_loading(&module, ty, &own_structs)?);
                }
                struct_instantiations.push(StructInstantiation {
                    field_count,
                    def: struct_def.idx,
                    instantiation,
                });
            }

            for func_handle in module.function_handles() {
                let func_name = module.identifier_at(func_handle.name);
                let module_handle = module.module_handle_at(func_handle.module);
                let module_id = module.module_id_for_handle(module_handle);
                if module_id == id {
                    // module has not been published yet (Duet: its functions by name)
                    match own_functions.get(func_name) {
                        Some(idx) => function_refs.push(*idx),
                        None => {
                            return Err(PartialVMError::new(
                                StatusCode::FUNCTION_RESOLUTION_FAILURE,
                            )
                            .with_message(format!(
                                "Cannot find {:?}::{:?} in publishing module",
                                module_id, func_name
                            )))
                        }
                    }
                } else {
                    function_refs.push(cache.resolve_function_by_name(func_name, &module_id)?);
                }
            }

            for func_def in module.function_defs() {
                let idx = function_refs[func_def.function.0 as usize];
                let name = module.identifier_at(module.function_handle_at(func_def.function).name);
                function_map.insert(name.to_owned(), idx);

                if let Some(code_unit) = &func_def.code {
                    for bc in &code_unit.code {
                        match bc {
                            Bytecode::VecPack(si, _)
                            | Bytecode::VecLen(si)
                            | Bytecode::VecImmBorrow(si)
                            | Bytecode::VecMutBorrow(si)
                            | Bytecode::VecPushBack(si)
                            | Bytecode::VecPopBack(si)
                            | Bytecode::VecUnpack(si, _)
                            | Bytecode::VecSwap(si) => {
                                if !single_signature_token_map.contains_key(si) {
                                    let ty = match module.signature_at(*si).0.get(0) {
                                        None => {
                                            return Err(PartialVMError::new(
                                                StatusCode::VERIFIER_INVARIANT_VIOLATION,
                                            )
                                            .with_message(
                                                "the type argument for vector-related bytecode \
                                                expects one and only one signature token"
                                                    .to_owned(),
                                            ));
                                        }
                                        Some(sig_token) => sig_token,
                                    };
                                    single_signature_token_map
                                        .insert(*si, cache.make_type_while_loading(&module, ty, &own_structs)?);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }

            for func_inst in module.function_instantiations() {
                let handle = function_refs[func_inst.handle.0 as usize];
                let mut instantiation = vec![];
                for ty in &module.signature_at(func_inst.type_parameters).0 {
                    instantiation.push(cache.make_type_while_loading(&module, ty, &own_structs)?);
                }
                function_instantiations.push(FunctionInstantiation {
                    handle,
                    instantiation,
                });
            }

            for f_handle in module.field_handles() {
                let def_idx = f_handle.owner;
                let owner = structs[def_idx.0 as usize].idx;
                let offset = f_handle.field as usize;
                field_handles.push(FieldHandle { offset, owner });
            }

            for f_inst in module.field_instantiations() {
                let fh_idx = f_inst.handle;
                let owner = field_handles[fh_idx.0 as usize].owner;
                let offset = field_handles[fh_idx.0 as usize].offset;
                field_instantiations.push(FieldInstantiation { offset, owner });
            }

            Ok(())
        };

        match create() {
            Ok(_) => Ok(Self {
                id,
                module,
                struct_refs,
                structs,
                struct_instantiations,
                function_refs,
                function_instantiations,
                field_handles,
                field_instantiations,
                function_map,
                struct_map,
                single_signature_token_map,
                dependency_depth,
                definitions,
            }),
            Err(err) => Err((err, module)),
        }
    }

    fn struct_at(&self, idx: StructDefinitionIndex) -> CachedStructIndex {
        self.structs[idx.0 as usize].idx
    }

    fn struct_instantiation_at(&self, idx: u16) -> &StructInstantiation {
        &self.struct_instantiations[idx as usize]
    }

    fn function_at(&self, idx: u16) -> usize {
        self.function_refs[idx as usize]
    }

    fn function_instantiation_at(&self, idx: u16) -> &FunctionInstantiation {
        &self.function_instantiations[idx as usize]
    }

    fn field_count(&self, idx: u16) -> u16 {
        self.structs[idx as usize].field_count
    }

    fn field_instantiation_count(&self, idx: u16) -> u16 {
        self.struct_instantiations[idx as usize].field_count
    }

    pub(crate) fn module(&self) -> &CompiledModule {
        &self.module
    }

    pub(crate) fn arc_module(&self) -> Arc<CompiledModule> {
        self.module.clone()
    }

    fn field_offset(&self, idx: FieldHandleIndex) -> usize {
        self.field_handles[idx.0 as usize].offset
    }

    fn field_instantiation_offset(&self, idx: FieldInstantiationIndex) -> usize {
        self.field_instantiations[idx.0 as usize].offset
    }

    fn single_type_at(&self, idx: SignatureIndex) -> &Type {
        self.single_signature_token_map.get(&idx).unwrap()
    }
}

// A Script is very similar to a `CompiledScript` but data is "transformed" to a representation
// more appropriate to execution.
// When code executes, indexes in instructions are resolved against runtime structures
// (rather then "compiled") to make available data needed for execution
// #[derive(Debug)]
struct Script {
    // primitive pools
    script: CompiledScript,

    // types as indexes into the Loader type list
    // REVIEW: why is this unused?
    #[allow(dead_code)]
    struct_refs: Vec<CachedStructIndex>,

    // functions as indexes into the Loader function list
    function_refs: Vec<usize>,
    // materialized instantiations, whether partial or not
    function_instantiations: Vec<FunctionInstantiation>,

    // entry point
    main: Arc<Function>,

    // parameters of main
    parameter_tys: Vec<Type>,

    // return values
    return_tys: Vec<Type>,

    // a map of single-token signature indices to type
    single_signature_token_map: BTreeMap<SignatureIndex, Type>,
}

impl Script {
    fn new(
        script: CompiledScript,
        script_hash: &ScriptHash,
        cache: &ModuleCache,
    ) -> VMResult<Self> {
        let mut struct_refs = vec![];
        for struct_handle in script.struct_handles() {
            let struct_name = script.identifier_at(struct_handle.name);
            let module_handle = script.module_handle_at(struct_handle.module);
            let module_id = ModuleId::new(
                *script.address_identifier_at(module_handle.address),
                script.identifier_at(module_handle.name).to_owned(),
            );
            struct_refs.push(
                cache
                    .resolve_struct_by_name(struct_name, &module_id)
                    .map_err(|e| e.finish(Location::Script))?
                    .0,
            );
        }

        let mut function_refs = vec![];
        for func_handle in script.function_handles().iter() {
            let func_name = script.identifier_at(func_handle.name);
            let module_handle = script.module_handle_at(func_handle.module);
            let module_id = ModuleId::new(
                *script.address_identifier_at(module_handle.address),
                script.identifier_at(module_handle.name).to_owned(),
            );
            let ref_idx = cache
                .resolve_function_by_name(func_name, &module_id)
                .map_err(|err| err.finish(Location::Undefined))?;
            function_refs.push(ref_idx);
        }

        let mut function_instantiations = vec![];
        for func_inst in script.function_instantiations() {
            let handle = function_refs[func_inst.handle.0 as usize];
            let mut instantiation = vec![];
            for ty in &script.signature_at(func_inst.type_parameters).0 {
                instantiation.push(
                    cache
                        .make_type(BinaryIndexedView::Script(&script), ty)
                        .map_err(|e| e.finish(Location::Script))?,
                );
            }
            function_instantiations.push(FunctionInstantiation {
                handle,
                instantiation,
            });
        }

        let scope = Scope::Script(*script_hash);

        let code: Vec<Bytecode> = script.code.code.clone();
        let parameters = script.signature_at(script.parameters).clone();

        let parameter_tys = parameters
            .0
            .iter()
            .map(|tok| cache.make_type(BinaryIndexedView::Script(&script), tok))
            .collect::<PartialVMResult<Vec<_>>>()
            .map_err(|err| err.finish(Location::Undefined))?;
        let locals = Signature(
            parameters
                .0
                .iter()
                .chain(script.signature_at(script.code.locals).0.iter())
                .cloned()
                .collect(),
        );
        let return_ = Signature(vec![]);
        let return_tys = return_
            .0
            .iter()
            .map(|tok| cache.make_type(BinaryIndexedView::Script(&script), tok))
            .collect::<PartialVMResult<Vec<_>>>()
            .map_err(|err| err.finish(Location::Undefined))?;
        let type_parameters = script.type_parameters.clone();
        // TODO: main does not have a name. Revisit.
        let name = Identifier::new("main").unwrap();
        let native = None; // Script entries cannot be native
        let main: Arc<Function> = Arc::new(Function {
            file_format_version: script.version(),
            index: FunctionDefinitionIndex(0),
            code,
            parameters,
            return_,
            locals,
            type_parameters,
            native,
            scope,
            name,
        });

        let mut single_signature_token_map = BTreeMap::new();
        for bc in &script.code.code {
            match bc {
                Bytecode::VecPack(si, _)
                | Bytecode::VecLen(si)
                | Bytecode::VecImmBorrow(si)
                | Bytecode::VecMutBorrow(si)
                | Bytecode::VecPushBack(si)
                | Bytecode::VecPopBack(si)
                | Bytecode::VecUnpack(si, _)
                | Bytecode::VecSwap(si) => {
                    if !single_signature_token_map.contains_key(si) {
                        let ty = match script.signature_at(*si).0.get(0) {
                            None => {
                                return Err(PartialVMError::new(
                                    StatusCode::VERIFIER_INVARIANT_VIOLATION,
                                )
                                .with_message(
                                    "the type argument for vector-related bytecode \
                                                expects one and only one signature token"
                                        .to_owned(),
                                )
                                .finish(Location::Script));
                            }
                            Some(sig_token) => sig_token,
                        };
                        single_signature_token_map.insert(
                            *si,
                            cache
                                .make_type(BinaryIndexedView::Script(&script), ty)
                                .map_err(|e| e.finish(Location::Script))?,
                        );
                    }
                }
                _ => {}
            }
        }

        Ok(Self {
            script,
            struct_refs,
            function_refs,
            function_instantiations,
            main,
            parameter_tys,
            return_tys,
            single_signature_token_map,
        })
    }

    fn entry_point(&self) -> Arc<Function> {
        self.main.clone()
    }

    fn function_at(&self, idx: u16) -> usize {
        self.function_refs[idx as usize]
    }

    fn function_instantiation_at(&self, idx: u16) -> &FunctionInstantiation {
        &self.function_instantiations[idx as usize]
    }

    fn single_type_at(&self, idx: SignatureIndex) -> &Type {
        self.single_signature_token_map.get(&idx).unwrap()
    }
}

// A simple wrapper for the "owner" of the function (Module or Script)
#[derive(Debug)]
enum Scope {
    Module(ModuleId),
    Script(ScriptHash),
}

// A runtime function
// #[derive(Debug)]
// https://github.com/rust-lang/rust/issues/70263
pub(crate) struct Function {
    #[allow(unused)]
    file_format_version: u32,
    index: FunctionDefinitionIndex,
    code: Vec<Bytecode>,
    parameters: Signature,
    return_: Signature,
    locals: Signature,
    type_parameters: Vec<AbilitySet>,
    native: Option<NativeFunction>,
    scope: Scope,
    name: Identifier,
}

impl Function {
    fn new(
        natives: &NativeFunctions,
        index: FunctionDefinitionIndex,
        def: &FunctionDefinition,
        module: &CompiledModule,
    ) -> Self {
        let handle = module.function_handle_at(def.function);
        let name = module.identifier_at(handle.name).to_owned();
        let module_id = module.self_id();
        let native = if def.is_native() {
            natives.resolve(
                module_id.address(),
                module_id.name().as_str(),
                name.as_str(),
            )
        } else {
            None
        };
        let scope = Scope::Module(module_id);
        let parameters = module.signature_at(handle.parameters).clone();
        // Native functions do not have a code unit
        let (code, locals) = match &def.code {
            Some(code) => (
                code.code.clone(),
                Signature(
                    parameters
                        .0
                        .iter()
                        .chain(module.signature_at(code.locals).0.iter())
                        .cloned()
                        .collect(),
                ),
            ),
            None => (vec![], Signature(vec![])),
        };
        let return_ = module.signature_at(handle.return_).clone();
        let type_parameters = handle.type_parameters.clone();
        Self {
            file_format_version: module.version(),
            index,
            code,
            parameters,
            return_,
            locals,
            type_parameters,
            native,
            scope,
            name,
        }
    }

    #[allow(unused)]
    pub(crate) fn file_format_version(&self) -> u32 {
        self.file_format_version
    }

    pub(crate) fn module_id(&self) -> Option<&ModuleId> {
        match &self.scope {
            Scope::Module(module_id) => Some(module_id),
            Scope::Script(_) => None,
        }
    }

    pub(crate) fn index(&self) -> FunctionDefinitionIndex {
        self.index
    }

    pub(crate) fn get_resolver<'a>(&self, loader: &'a Loader) -> Resolver<'a> {
        match &self.scope {
            Scope::Module(module_id) => {
                let module = loader.get_module(module_id);
                Resolver::for_module(loader, module)
            }
            Scope::Script(script_hash) => {
                let script = loader.get_script(script_hash);
                Resolver::for_script(loader, script)
            }
        }
    }

    pub(crate) fn local_count(&self) -> usize {
        self.locals.len()
    }

    pub(crate) fn arg_count(&self) -> usize {
        self.parameters.len()
    }

    pub(crate) fn name(&self) -> &str {
        self.name.as_str()
    }

    pub(crate) fn code(&self) -> &[Bytecode] {
        &self.code
    }

    pub(crate) fn type_parameters(&self) -> &[AbilitySet] {
        &self.type_parameters
    }

    #[allow(dead_code)]
    pub(crate) fn parameters(&self) -> &Signature {
        &self.parameters
    }

    pub(crate) fn pretty_string(&self) -> String {
        match &self.scope {
            Scope::Script(_) => "Script::main".into(),
            Scope::Module(id) => format!(
                "0x{}::{}::{}",
                id.address(),
                id.name().as_str(),
                self.name.as_str()
            ),
        }
    }

    pub(crate) fn is_native(&self) -> bool {
        self.native.is_some()
    }

    pub(crate) fn get_native(&self) -> PartialVMResult<&UnboxedNativeFunction> {
        self.native.as_deref().map(|f| &*f).ok_or_else(|| {
            PartialVMError::new(StatusCode::UNREACHABLE)
                .with_message("Missing Native Function".to_string())
        })
    }
}

//
// Internal structures that are saved at the proper index in the proper tables to access
// execution information (interpreter).
// The following structs are internal to the loader and never exposed out.
// The `Loader` will create those struct and the proper table when loading a module.
// The `Resolver` uses those structs to return information to the `Interpreter`.
//

// A function instantiation.
#[derive(Debug)]
struct FunctionInstantiation {
    // index to `ModuleCache::functions` global table
    handle: usize,
    instantiation: Vec<Type>,
}

#[derive(Debug)]
struct StructDef {
    // struct field count
    field_count: u16,
    // `ModuelCache::structs` global table index
    idx: CachedStructIndex,
}

#[derive(Debug)]
struct StructInstantiation {
    // struct field count
    field_count: u16,
    // `ModuelCache::structs` global table index. It is the generic type.
    def: CachedStructIndex,
    instantiation: Vec<Type>,
}

// A field handle. The offset is the only used information when operating on a field
#[derive(Debug)]
struct FieldHandle {
    offset: usize,
    // `ModuelCache::structs` global table index. It is the generic type.
    owner: CachedStructIndex,
}

// A field instantiation. The offset is the only used information when operating on a field
#[derive(Debug)]
struct FieldInstantiation {
    offset: usize,
    // `ModuelCache::structs` global table index. It is the generic type.
    #[allow(unused)]
    owner: CachedStructIndex,
}

//
// Cache for data associated to a Struct, used for de/serialization and more
//

struct StructInfo {
    struct_tag: Option<StructTag>,
    /// Duet: with its nodes and its depth.
    struct_layout: Option<(MoveStructLayout, usize, usize)>,
}

impl StructInfo {
    fn new() -> Self {
        Self {
            struct_tag: None,
            struct_layout: None,
        }
    }
}

pub(crate) struct TypeCache {
    structs: HashMap<CachedStructIndex, HashMap<Vec<Type>, StructInfo>>,
    /// Duet: each struct definition's depth formula (see `DepthFormula`).
    depth_formulas: HashMap<CachedStructIndex, DepthFormula>,
    /// Duet: the nodes `structs` holds, about: see `TYPE_CACHE_NODES_MAX`.
    nodes: usize,
}

/// Duet: the most nodes (of type arguments, tags and layouts, counted as they are cached) the
/// cache of instantiated structs holds; it is emptied when one more entry would pass it. Every
/// distinct instantiation a transaction or a free call names stayed cached until a block
/// published modules, so calls alone could grow a node's memory without end. Emptying it
/// changes no result: it holds tags and layouts the loader computes again the same way.
pub const TYPE_CACHE_NODES_MAX: usize = 1 << 16;

impl TypeCache {
    fn new() -> Self {
        Self {
            structs: HashMap::new(),
            depth_formulas: HashMap::new(),
            nodes: 0,
        }
    }

    /// Duet: the entry of `gidx` instantiated with `ty_args`, made if there is none, after
    /// counting `nodes` more held, and the type arguments' nodes if the entry is new (and
    /// emptying the cache first if they do not fit).
    fn entry(&mut self, gidx: CachedStructIndex, ty_args: &[Type], nodes: usize) -> &mut StructInfo {
        let known = self.structs.get(&gidx).is_some_and(|infos| infos.contains_key(ty_args));
        let key_nodes = if known {
            0
        } else {
            ty_args.iter().map(|ty| u64::from(ty.size())).sum::<u64>() as usize
        };
        let nodes = nodes + key_nodes;
        if self.nodes + nodes > TYPE_CACHE_NODES_MAX {
            self.structs.clear();
            self.nodes = 0;
        }
        self.nodes += nodes;
        self.structs
            .entry(gidx)
            .or_insert_with(HashMap::new)
            .entry(ty_args.to_vec())
            .or_insert_with(StructInfo::new)
    }
}

/// Duet: how deep the values of a type are, as a formula of the depths of the type parameters
/// it names: at least `base`, and `through[j] + depth(argument j)` for each parameter `j` it
/// holds (`None`: it does not). Computed once per struct definition, so checking a type costs
/// its own nodes, whatever its instantiations expand to.
#[derive(Clone, Debug)]
struct DepthFormula {
    base: usize,
    through: Vec<Option<usize>>,
}

const VALUE_DEPTH_MAX: usize = 128;

// Duet: how deep values of a type can be, so that no value deeper than `VALUE_DEPTH_MAX` is
// ever built. Only packing makes values deeper, and the recursive functions over values (size,
// copy, equality, drop, serialization) would otherwise overflow the native stack on a value
// nested tens of thousands deep, which a chain of structs (each holding vectors of the next)
// let a transaction build.
impl Loader {
    /// The depth formula of `ty`, a type in a struct with `params` type parameters (`chain`:
    /// how many structs enclose it; past `VALUE_DEPTH_MAX` the values are too deep whatever).
    fn depth_formula(
        &self,
        ty: &Type,
        params: usize,
        chain: usize,
    ) -> PartialVMResult<DepthFormula> {
        let leaf = |base| DepthFormula { base, through: vec![None; params] };
        Ok(match ty {
            Type::TyParam(index) => {
                let mut formula = leaf(0);
                if let Some(slot) = formula.through.get_mut(*index) {
                    *slot = Some(0);
                }
                formula
            }
            Type::Vector(element) => {
                let inner = self.depth_formula(element, params, chain)?;
                DepthFormula {
                    base: inner.base + 1,
                    through: inner.through.iter().map(|d| d.map(|d| d + 1)).collect(),
                }
            }
            Type::Struct(gidx) => leaf(self.struct_depth_formula(*gidx, chain + 1)?.base),
            Type::StructInstantiation(gidx, ty_args) => {
                let definition = self.struct_depth_formula(*gidx, chain + 1)?;
                let mut formula = leaf(definition.base);
                for (argument, offset) in ty_args.iter().zip(&definition.through) {
                    let Some(offset) = offset else { continue };
                    let argument = self.depth_formula(argument, params, chain)?;
                    formula.base = formula.base.max(offset + argument.base);
                    for (slot, depth) in formula.through.iter_mut().zip(&argument.through) {
                        if let Some(depth) = depth {
                            *slot = Some(slot.map_or(offset + depth, |d| d.max(offset + depth)));
                        }
                    }
                }
                formula
            }
            _ => leaf(1),
        })
    }

    /// The depth formula of the struct `gidx`'s values, in its type parameters.
    fn struct_depth_formula(
        &self,
        gidx: CachedStructIndex,
        chain: usize,
    ) -> PartialVMResult<DepthFormula> {
        // Copied out, not shared: a reference count both threads wrote would cost more than
        // the copy (empty, for a struct without type parameters).
        if let Some(formula) = self.type_cache.read().depth_formulas.get(&gidx) {
            return Ok(formula.clone());
        }
        if chain > VALUE_DEPTH_MAX {
            // Each enclosing struct is a level of its values.
            return Err(value_too_deep());
        }
        let struct_type = self.module_cache.read().struct_at(gidx);
        let params = struct_type.type_parameters.len();
        let mut formula = DepthFormula { base: 1, through: vec![None; params] };
        for field in &struct_type.fields {
            let field = self.depth_formula(field, params, chain)?;
            formula.base = formula.base.max(field.base + 1);
            for (slot, depth) in formula.through.iter_mut().zip(&field.through) {
                if let Some(depth) = depth {
                    *slot = Some(slot.map_or(depth + 1, |d| d.max(depth + 1)));
                }
            }
        }
        self.type_cache.write().depth_formulas.insert(gidx, formula.clone());
        Ok(formula)
    }

    /// Fails unless vectors of `element` are at most `VALUE_DEPTH_MAX` deep.
    pub(crate) fn check_vector_depth(&self, element: &Type) -> PartialVMResult<()> {
        self.check_depth(element, VALUE_DEPTH_MAX - 1)
    }

    /// Fails unless values of `ty` are at most `VALUE_DEPTH_MAX` deep.
    pub(crate) fn check_value_depth(&self, ty: &Type) -> PartialVMResult<()> {
        self.check_depth(ty, VALUE_DEPTH_MAX)
    }

    fn check_depth(&self, ty: &Type, budget: usize) -> PartialVMResult<()> {
        // A type the VM instantiated names no type parameter: its depth is the formula's base.
        if self.depth_formula(ty, 0, 0)?.base > budget {
            return Err(value_too_deep());
        }
        Ok(())
    }
}

impl Loader {
    fn struct_gidx_to_type_tag(
        &self,
        gidx: CachedStructIndex,
        ty_args: &[Type],
    ) -> PartialVMResult<StructTag> {
        if let Some(struct_map) = self.type_cache.read().structs.get(&gidx) {
            if let Some(struct_info) = struct_map.get(ty_args) {
                if let Some(struct_tag) = &struct_info.struct_tag {
                    return Ok(struct_tag.clone());
                }
            }
        }

        let ty_arg_tags = ty_args
            .iter()
            .map(|ty| self.type_to_type_tag(ty))
            .collect::<PartialVMResult<Vec<_>>>()?;
        let struct_type = self.module_cache.read().struct_at(gidx);
        let struct_tag = StructTag {
            address: *struct_type.module.address(),
            module: struct_type.module.name().to_owned(),
            name: struct_type.name.clone(),
            type_params: ty_arg_tags,
        };

        // Duet: counted (the tag's nodes, about its type arguments') and bounded.
        self.type_cache
            .write()
            .entry(gidx, ty_args, 1)
            .struct_tag = Some(struct_tag.clone());

        Ok(struct_tag)
    }

    fn type_to_type_tag_impl(&self, ty: &Type) -> PartialVMResult<TypeTag> {
        Ok(match ty {
            Type::Bool => TypeTag::Bool,
            Type::U8 => TypeTag::U8,
            Type::U64 => TypeTag::U64,
            Type::U128 => TypeTag::U128,
            Type::Address => TypeTag::Address,
            Type::Signer => TypeTag::Signer,
            Type::Vector(ty) => TypeTag::Vector(Box::new(self.type_to_type_tag(ty)?)),
            Type::Struct(gidx) => TypeTag::Struct(self.struct_gidx_to_type_tag(*gidx, &[])?),
            Type::StructInstantiation(gidx, ty_args) => {
                TypeTag::Struct(self.struct_gidx_to_type_tag(*gidx, ty_args)?)
            }
            Type::Reference(_) | Type::MutableReference(_) | Type::TyParam(_) => {
                return Err(
                    PartialVMError::new(StatusCode::UNKNOWN_INVARIANT_VIOLATION_ERROR)
                        .with_message(format!("no type tag for {:?}", ty)),
                )
            }
        })
    }

    fn struct_gidx_to_type_layout(
        &self,
        gidx: CachedStructIndex,
        ty_args: &[Type],
        depth: usize,
        nodes: &mut usize,
    ) -> PartialVMResult<MoveStructLayout> {
        if let Some(struct_map) = self.type_cache.read().structs.get(&gidx) {
            if let Some(struct_info) = struct_map.get(ty_args) {
                if let Some((layout, layout_nodes, layout_depth)) = &struct_info.struct_layout {
                    // Duet: a cached layout is copied whole: its nodes count (the struct's own
                    // was counted by the caller), and it must fit below `depth` as a layout
                    // built here would (or whether a type is too deep would depend on what an
                    // earlier transaction cached).
                    count_layout_nodes(nodes, layout_nodes - 1)?;
                    if depth + layout_depth - 1 > VALUE_DEPTH_MAX {
                        return Err(layout_too_large());
                    }
                    return Ok(layout.clone());
                }
            }
        }

        let struct_type = self.module_cache.read().struct_at(gidx);
        let field_tys = struct_type
            .fields
            .iter()
            .map(|ty| ty.subst(ty_args))
            .collect::<PartialVMResult<Vec<_>>>()?;
        let field_layouts = field_tys
            .iter()
            .map(|ty| self.type_to_type_layout_impl(ty, depth + 1, nodes))
            .collect::<PartialVMResult<Vec<_>>>()?;
        let struct_layout = MoveStructLayout::new(field_layouts);
        let (layout_nodes, layout_depth) = struct_layout_size(&struct_layout);
        let mut cache = self.type_cache.write();
        // Duet: counted (the layout's nodes) and bounded.
        let info = cache.entry(gidx, ty_args, layout_nodes);
        info.struct_layout = Some((struct_layout.clone(), layout_nodes, layout_depth));
        drop(cache);

        Ok(struct_layout)
    }

    fn type_to_type_layout_impl(
        &self,
        ty: &Type,
        depth: usize,
        nodes: &mut usize,
    ) -> PartialVMResult<MoveTypeLayout> {
        if depth > VALUE_DEPTH_MAX {
            // Duet: the same error whichever bound a layout exceeds first (see
            // `layout_too_large`).
            return Err(layout_too_large());
        }
        count_layout_nodes(nodes, 1)?;
        Ok(match ty {
            Type::Bool => MoveTypeLayout::Bool,
            Type::U8 => MoveTypeLayout::U8,
            Type::U64 => MoveTypeLayout::U64,
            Type::U128 => MoveTypeLayout::U128,
            Type::Address => MoveTypeLayout::Address,
            Type::Signer => MoveTypeLayout::Signer,
            Type::Vector(ty) => {
                MoveTypeLayout::Vector(Box::new(self.type_to_type_layout_impl(
                    ty,
                    depth + 1,
                    nodes,
                )?))
            }
            Type::Struct(gidx) => {
                MoveTypeLayout::Struct(self.struct_gidx_to_type_layout(*gidx, &[], depth, nodes)?)
            }
            Type::StructInstantiation(gidx, ty_args) => {
                MoveTypeLayout::Struct(
                    self.struct_gidx_to_type_layout(*gidx, ty_args, depth, nodes)?,
                )
            }
            Type::Reference(_) | Type::MutableReference(_) | Type::TyParam(_) => {
                return Err(
                    PartialVMError::new(StatusCode::UNKNOWN_INVARIANT_VIOLATION_ERROR)
                        .with_message(format!("no type layout for {:?}", ty)),
                )
            }
        })
    }

    pub(crate) fn type_to_type_tag(&self, ty: &Type) -> PartialVMResult<TypeTag> {
        self.type_to_type_tag_impl(ty)
    }

    /// Duet: fails if the type tag of `ty` is longer than [`TYPE_TAG_BYTES_MAX`] in BCS,
    /// without building it. A resource's key and an event hold their type's tag, and a type
    /// within the node bounds can still name hundreds of structs with 255-character names:
    /// its tag, built for every resource read or event, could take megabytes.
    pub(crate) fn check_type_tag_size(&self, ty: &Type) -> PartialVMResult<()> {
        let mut bytes = 0;
        self.count_type_tag_bytes(ty, &mut bytes)
    }

    fn count_type_tag_bytes(&self, ty: &Type, bytes: &mut usize) -> PartialVMResult<()> {
        // Each tag starts with its variant's index, one byte.
        *bytes += 1;
        let ty_args: &[Type] = match ty {
            Type::Bool
            | Type::U8
            | Type::U64
            | Type::U128
            | Type::Address
            | Type::Signer => &[],
            Type::Vector(ty) => return self.count_type_tag_bytes(ty, bytes),
            Type::Struct(gidx) | Type::StructInstantiation(gidx, _) => {
                let struct_type = self.module_cache.read().struct_at(*gidx);
                let module = struct_type.module.name().as_str().len();
                let name = struct_type.name.as_str().len();
                let ty_args = match ty {
                    Type::StructInstantiation(_, ty_args) => &ty_args[..],
                    _ => &[],
                };
                *bytes += AccountAddress::LENGTH
                    + uleb_bytes(module)
                    + module
                    + uleb_bytes(name)
                    + name
                    + uleb_bytes(ty_args.len());
                ty_args
            }
            Type::Reference(_) | Type::MutableReference(_) | Type::TyParam(_) => {
                return Err(
                    PartialVMError::new(StatusCode::UNKNOWN_INVARIANT_VIOLATION_ERROR)
                        .with_message(format!("no type tag for {:?}", ty)),
                )
            }
        };
        if *bytes > TYPE_TAG_BYTES_MAX {
            return Err(PartialVMError::new(StatusCode::VALUE_SERIALIZATION_ERROR).with_message(
                format!("a type tag of more than {} bytes", TYPE_TAG_BYTES_MAX),
            ));
        }
        for ty in ty_args {
            self.count_type_tag_bytes(ty, bytes)?;
        }
        Ok(())
    }
    pub(crate) fn type_to_type_layout(&self, ty: &Type) -> PartialVMResult<MoveTypeLayout> {
        self.type_to_type_layout_impl(ty, 1, &mut 0)
    }

    /// Duet: `ty`'s layout and its nodes (a vector, a struct and each primitive one each), as
    /// they were counted against `LAYOUT_NODES_MAX` while it was built or taken from the cache.
    pub(crate) fn type_to_type_layout_with_nodes(
        &self,
        ty: &Type,
    ) -> PartialVMResult<(MoveTypeLayout, usize)> {
        let mut nodes = 0;
        let layout = self.type_to_type_layout_impl(ty, 1, &mut nodes)?;
        Ok((layout, nodes))
    }
}

/// Duet: stored modules as deserialized (bounds checked), with their definitions by name and
/// the verifier configurations whose checks of the module by itself they passed, by their
/// bytes: shared by every instance and kept when an instance's code cache is emptied. Every
/// publication empties every instance's code cache, and each instance loads the stored code
/// it runs again: deserializing it, verifying it, and linking the modules that depend on it
/// against maps of every definition of their dependencies, built anew for each. All of that
/// depends on the bytes only (and the configuration), so doing it once changes no outcome;
/// what a load still does again is link each module against what its dependencies define
/// (the imports it names) and build the instance's own tables for it.
///
/// Only modules read from the state are kept (their bytes were paid for when they were
/// published, at 200 gas a byte), not a publication's, and only by VMs that keep them
/// (`MoveVM::keeps_deserialized_modules`: Duet's VMs for calls, views and traces do not, so
/// that no free call adds to it or empties it). Bounded by a bound of the memory its entries
/// hold ([`entry_memory`]): emptied when full (paid calls loading more than 8 MiB of stored
/// modules' bytes empty it; their verification is remembered apart, see [`VerifiedModules`]).
/// The bytes are hashed and compared outside its lock.
struct DeserializedModules {
    modules: HashMap<u64, Arc<Deserialized>>,
    memory: usize,
}

/// Duet: the most memory (as [`entry_memory`] bounds it) [`DeserializedModules`] holds: 8 MiB of
/// modules' bytes.
const DESERIALIZED_MODULES_MEMORY_MAX: usize = 256 << 20;

/// Duet: at most what an entry of [`DeserializedModules`] holds for a module of `bytes` bytes:
/// its bytes, the module as deserialized (tables of handles, signatures and code, where a byte
/// of code can be an instruction of 32 bytes and a byte of a signature a boxed node of 32), its
/// definitions by name, and the entry itself.
fn entry_memory(bytes: usize) -> usize {
    32 * bytes + 2048
}

static DESERIALIZED_MODULES: once_cell::sync::Lazy<parking_lot::Mutex<DeserializedModules>> =
    once_cell::sync::Lazy::new(|| {
        parking_lot::Mutex::new(DeserializedModules {
            modules: HashMap::new(),
            memory: 0,
        })
    });

/// Duet: the seed of [`DeserializedModules`]' hashes of modules' bytes, random per process.
static MODULE_HASHER: once_cell::sync::Lazy<foldhash::quality::RandomState> =
    once_cell::sync::Lazy::new(Default::default);

/// Duet: a module as deserialized from its bytes (see [`DeserializedModules`]).
pub(crate) struct Deserialized {
    bytes: Box<[u8]>,
    pub(crate) module: Arc<CompiledModule>,
    definitions: Arc<Definitions>,
    /// The verifier configurations (as their `Debug` text) whose checks of the module by
    /// itself it passed.
    verified_with: parking_lot::Mutex<Vec<String>>,
}

impl std::ops::Deref for Deserialized {
    type Target = CompiledModule;

    fn deref(&self) -> &CompiledModule {
        &self.module
    }
}

impl Deserialized {
    fn new(bytes: &[u8]) -> PartialVMResult<Self> {
        let module = CompiledModule::deserialize(bytes)?;
        let definitions = Definitions::of(&module);
        Ok(Self {
            bytes: bytes.into(),
            module: Arc::new(module),
            definitions: Arc::new(definitions),
            verified_with: parking_lot::Mutex::new(Vec::new()),
        })
    }

    fn verified_with(&self, config: &str) -> bool {
        self.verified_with.lock().iter().any(|it| it == config)
    }

    fn mark_verified(&self, config: &str) {
        let mut verified_with = self.verified_with.lock();
        if !verified_with.iter().any(|it| it == config) {
            verified_with.push(config.to_owned());
        }
    }
}

/// Duet: the modules whose bytes passed the bytecode verifier's checks of the module itself, as
/// a publication or a load by a VM that keeps what it deserializes verified them (not a VM of
/// free calls: see `MoveVM::keeps_deserialized_modules`), by a SHA3-256 of the verifier's
/// configuration and the bytes: a module's first load in a process, or its first after
/// [`DeserializedModules`] was emptied, does not verify again what was verified (a module that
/// takes the verifier half a second would cost that at every such load, for the load's gas).
/// Those checks depend on the bytes and the configuration only, so skipping them changes no
/// outcome. Bounded: emptied when full, which takes 65 536 verifications.
struct VerifiedModules(parking_lot::Mutex<std::collections::HashSet<[u8; 32]>>);

/// Duet: the most modules [`VerifiedModules`] remembers (32 bytes each).
const VERIFIED_MODULES_MAX: usize = 1 << 16;

static VERIFIED_MODULES: once_cell::sync::Lazy<VerifiedModules> =
    once_cell::sync::Lazy::new(|| VerifiedModules(parking_lot::Mutex::new(Default::default())));

impl VerifiedModules {
    fn key(config: &str, bytes: &[u8]) -> [u8; 32] {
        // The whole configuration, length-prefixed, then the bytes.
        let mut hasher = Sha3_256::new();
        hasher.update((config.len() as u64).to_le_bytes());
        hasher.update(config.as_bytes());
        hasher.update(bytes);
        hasher.finalize().into()
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.0.lock().contains(key)
    }

    fn insert(&self, key: [u8; 32]) {
        let mut verified = self.0.lock();
        if verified.len() >= VERIFIED_MODULES_MAX {
            verified.clear();
        }
        verified.insert(key);
    }
}

/// Duet: the kept module `bytes` hold, if [`DeserializedModules`] has it.
fn kept_module(bytes: &[u8]) -> (u64, Option<Arc<Deserialized>>) {
    use std::hash::BuildHasher;
    let hash = MODULE_HASHER.hash_one(bytes);
    let kept = DESERIALIZED_MODULES.lock().modules.get(&hash).cloned();
    // Another module's bytes under the same hash (a collision) is a miss.
    (hash, kept.filter(|module| *module.bytes == *bytes))
}

/// Duet: the stored module `bytes` hold, deserialized (and bounds checked) once per process
/// while [`DeserializedModules`] keeps it; kept if it was not and `keep` says so.
pub(crate) fn stored_module(bytes: &[u8], keep: bool) -> PartialVMResult<Arc<Deserialized>> {
    let (hash, kept) = kept_module(bytes);
    if let Some(module) = kept {
        return Ok(module);
    }
    let module = Arc::new(Deserialized::new(bytes)?);
    let memory = entry_memory(bytes.len());
    if keep && memory <= DESERIALIZED_MODULES_MEMORY_MAX {
        let mut kept = DESERIALIZED_MODULES.lock();
        if !kept.modules.contains_key(&hash) {
            if kept.memory + memory > DESERIALIZED_MODULES_MEMORY_MAX {
                kept.modules.clear();
                kept.memory = 0;
            }
            kept.memory += memory;
            kept.modules.insert(hash, Arc::clone(&module));
        }
    }
    Ok(module)
}

/// Duet: whether the module `bytes` hold is kept deserialized for every VM of the process (see
/// [`DeserializedModules`]).
pub fn is_module_kept(bytes: &[u8]) -> bool {
    kept_module(bytes).1.is_some()
}

/// Duet: the stored module `bytes` hold, deserialized and bounds checked, as the VM loads it:
/// once per process while it is kept (see [`DeserializedModules`]); kept if it was not and
/// `keep` says so (as a VM that [`keeps_deserialized_modules`](crate::move_vm::MoveVM::keeps_deserialized_modules) would).
pub fn deserialize_module(bytes: &[u8], keep: bool) -> PartialVMResult<Arc<CompiledModule>> {
    stored_module(bytes, keep).map(|module| Arc::clone(&module.module))
}

/// Duet: the longest type tag of a resource read or written, or of an event, in bytes of BCS:
/// a struct tag of 1 024 bytes (the most a resource's key holds), as a type tag.
pub const TYPE_TAG_BYTES_MAX: usize = 1_025;

/// Duet: the bytes of the ULEB128 length prefix of `length`.
fn uleb_bytes(mut length: usize) -> usize {
    let mut bytes = 1;
    while length >= 0x80 {
        length >>= 7;
        bytes += 1;
    }
    bytes
}

/// Duet: the most nodes a value's layout may have. A struct that names its type parameter twice
/// (`Pair<T> { a: T, b: T }`) doubles the layout at each level of nesting, so a type of a few
/// nodes had a layout of 2^depth under the depth bound alone, built (and cached) before any gas
/// was charged.
const LAYOUT_NODES_MAX: usize = 512;

/// Duet: counts `more` nodes of a layout being built, failing past [`LAYOUT_NODES_MAX`].
fn count_layout_nodes(nodes: &mut usize, more: usize) -> PartialVMResult<()> {
    *nodes += more;
    if *nodes > LAYOUT_NODES_MAX {
        return Err(layout_too_large());
    }
    Ok(())
}

/// Duet: a value that could be deeper than `VALUE_DEPTH_MAX`.
fn value_too_deep() -> PartialVMError {
    PartialVMError::new(StatusCode::VM_MAX_VALUE_DEPTH_REACHED)
        .with_message(format!("a value deeper than {}", VALUE_DEPTH_MAX))
}

/// Duet: a layout over either bound. One error for both, with one message: which bound a layout
/// meets first depends on whether parts of it were cached, and a receipt must not.
fn layout_too_large() -> PartialVMError {
    PartialVMError::new(StatusCode::VM_MAX_VALUE_DEPTH_REACHED).with_message(format!(
        "a type layout of more than {} nodes or {} levels",
        LAYOUT_NODES_MAX, VALUE_DEPTH_MAX
    ))
}

/// Duet: the nodes and the depth of a struct's layout (built within [`LAYOUT_NODES_MAX`] and
/// `VALUE_DEPTH_MAX`).
fn struct_layout_size(layout: &MoveStructLayout) -> (usize, usize) {
    fn size(layout: &MoveTypeLayout) -> (usize, usize) {
        match layout {
            MoveTypeLayout::Vector(element) => {
                let (nodes, depth) = size(element);
                (nodes + 1, depth + 1)
            }
            MoveTypeLayout::Struct(fields) => struct_layout_size(fields),
            _ => (1, 1),
        }
    }
    let (nodes, depth) = layout
        .fields()
        .iter()
        .map(size)
        .fold((0, 0), |(nodes, depth), (more, deeper)| (nodes + more, depth.max(deeper)));
    (nodes + 1, depth + 1)
}

// Public APIs for external uses.
impl Loader {
    pub(crate) fn get_type_layout(
        &self,
        type_tag: &TypeTag,
        move_storage: &impl DataStore,
    ) -> VMResult<MoveTypeLayout> {
        let ty = self.load_type(type_tag, move_storage)?;
        self.type_to_type_layout(&ty)
            .map_err(|e| e.finish(Location::Undefined))
    }
}

/// Duet: the modules of a bundle verified so far, each with its dependency depth.
type Bundle = BTreeMap<ModuleId, (Arc<Deserialized>, usize)>;

/// Duet: the longest chain of dependencies a module may head, itself included. Loading,
/// linking and the cycle checks follow the chains, and a chain of thousands of modules (which
/// upgrades adding dependencies can build from modules each published within the bound)
/// overflowed the native stack. A module at the head of a deeper chain can be neither published
/// nor loaded.
pub const MAX_DEPENDENCY_DEPTH: usize = 64;

/// Duet: the most modules a publication loads for its compatibility checks (the old versions
/// and their dependencies), and again for its verification (the published modules'
/// dependencies with theirs, and their friends with their dependencies and friends). Loading
/// is not charged beyond the publication's fee, and a chain of thousands of friends made every
/// publication that named its last one verify them all. An old version past the bound is
/// compared as stored, not loaded, so that it can be upgraded to a smaller one (as long as the
/// publication does not load it otherwise, through a friend or a stored module that depends on
/// it). Every module read and verified counts, those on a failed load's path too. (Duet empties
/// the cache of the instance that runs a publication before it, so the counts do not depend on
/// what was loaded before.)
pub const MAX_MODULES_LOADED_BY_PUBLICATION: usize = 1024;

/// Duet: the error of a chain of dependencies deeper than [`MAX_DEPENDENCY_DEPTH`]. It names no
/// module: where a load finds it depends on what the cache holds, and the error must not.
fn dependency_chain_too_deep() -> PartialVMError {
    PartialVMError::new(StatusCode::CONSTRAINT_NOT_SATISFIED)
        .with_sub_status(DEPENDENCY_CHAIN_TOO_DEEP)
        .with_message(format!(
            "a chain of module dependencies is deeper than {MAX_DEPENDENCY_DEPTH} modules"
        ))
}

/// Duet: the sub-statuses that tell the loader's bounds apart from other
/// `CONSTRAINT_NOT_SATISFIED` errors.
const DEPENDENCY_CHAIN_TOO_DEEP: u64 = 1;
const PUBLICATION_LOAD_BOUND: u64 = 2;

/// Duet: every module reachable from `starts` through `nexts`, or `error_on_cycle` if `target`
/// is one of them (as `cyclic_dependencies::verify_module` finds them, without recursion).
fn closure_without(
    target: &ModuleId,
    starts: Vec<ModuleId>,
    nexts: impl Fn(&ModuleId) -> PartialVMResult<Vec<ModuleId>>,
    error_on_cycle: StatusCode,
) -> PartialVMResult<BTreeSet<ModuleId>> {
    let mut visited = BTreeSet::new();
    let mut pending: Vec<ModuleId> = starts.into_iter().rev().collect();
    while let Some(module_id) = pending.pop() {
        if &module_id == target {
            return Err(PartialVMError::new(error_on_cycle));
        }
        if visited.insert(module_id.clone()) {
            pending.extend(nexts(&module_id)?.into_iter().rev());
        }
    }
    Ok(visited)
}
