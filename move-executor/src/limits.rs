//! Limits on what a published module may declare, checked before the Move VM loads and verifies
//! it.
//!
//! The bytecode verifier and the loader do work that grows faster than a module's size with
//! some of what it declares, and none of it is metered: a generic call's return types are
//! instantiated with its type arguments for every call the verifier simulates (so a signature
//! naming `T` thousands of times, called with a large type, builds millions of type nodes per
//! call), and identifiers up to 64 KiB are copied into every type tag, event and abort location
//! that names them. These bounds keep each of those proportional to what the publish paid for
//! (20 000 + 200 gas per byte), far above what real modules declare:
//!
//! | what | at most |
//! |---|---|
//! | bytes of an identifier (module, struct, function, field name) | [`MAX_IDENTIFIER_BYTES`] |
//! | nodes of one type (`vector<Coin<T>>`: 3) | [`MAX_TYPE_NODES`] |
//! | depth of one type (`vector<vector<u8>>`: 3) | [`MAX_TYPE_DEPTH`] |
//! | nodes of the types the verifier builds for a function's calls, packs, unpacks and field borrows (each: the types' nodes, times its type arguments' nodes if generic; a generic call's type arguments once more), generic global storage instructions (the instantiated struct, twice) and vector instructions (the element type; for `VecPack` and `VecUnpack`, once more per element), summed over the function | [`MAX_INSTANTIATED_NODES`] |
//! | the same, summed over the module | [`MAX_MODULE_INSTANTIATED_NODES`] |
//! | nodes of the type arguments in the module's instantiation tables (the loader builds each entry, used or not) | [`MAX_MODULE_INSTANTIATED_NODES`] |
//! | nodes of the function handles' parameters and returns and of the functions' locals, each counted once per handle or function that names it (the bounds checker and the verifier walk them so) | [`MAX_MODULE_INSTANTIATED_NODES`] |
//! | a function's parameters and locals together (the verifier's reference analysis counts them in a `u8`: 256 made it check none) | [`MAX_LOCALS`] |
//! | instructions of a function (the verifier's control-flow graph asserts fewer than 65 534) | [`MAX_CODE_LENGTH`] |
//! | nesting of loops in a function (`LOOP_MAX_DEPTH_REACHED`) | [`MAX_LOOP_DEPTH`] |
//! | a function's basic blocks (at most: one, two a branch, one a return or abort) times one plus its parameters and locals that are references, times one plus its loops: the reference analysis's work, which carries every reference's borrows through every block, and through a loop until its state settles | [`MAX_REFERENCE_WORK`] |
//! | the same, summed over the module | [`MAX_MODULE_REFERENCE_WORK`] |
//! | elements a `VecPack` or `VecUnpack` packs or unpacks (the verifier loops over them, the VM's operand stack holds 1 024 values) | [`MAX_VECTOR_PACK`] |
//! | type nodes the binary format's bounds checker walks (each signature once per handle, function or instruction naming it), checked before it runs | [`MAX_BOUNDS_CHECK_NODES`] |
//! | modules in a bundle | at least one |
//!
//! A module over any of them is refused with `CONSTRAINT_NOT_SATISFIED`, saying which; the
//! publish pays its fee and changes nothing else.

use move_binary_format::access::ModuleAccess;
use move_binary_format::check_bounds::BoundsChecker;
use move_binary_format::errors::{PartialVMError, PartialVMResult};
use move_binary_format::file_format::{
    Bytecode, CodeUnit, FunctionDefinitionIndex, FunctionHandle, FunctionHandleIndex,
    SignatureIndex, SignatureToken, StructDefinitionIndex, StructFieldInformation,
};
use move_binary_format::CompiledModule;
use move_core_types::vm_status::StatusCode;

/// The longest identifier, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 255;
/// The most nodes of one type in a module's signatures and fields.
pub const MAX_TYPE_NODES: usize = 64;
/// The deepest type in a module's signatures and fields.
pub const MAX_TYPE_DEPTH: usize = 16;
/// The most type nodes one function's instructions may make the verifier build.
pub const MAX_INSTANTIATED_NODES: usize = 1 << 16;
/// The most type nodes a module's functions may make the verifier build together.
pub const MAX_MODULE_INSTANTIATED_NODES: usize = 1 << 18;
/// The most parameters and locals of one function, together (the verifier's own bound, which
/// it also applies to stored modules).
pub use move_bytecode_verifier::MAX_LOCALS;
/// The most instructions of one function.
pub const MAX_CODE_LENGTH: usize = 65_000;
/// The deepest nesting of loops in a function (refused with the verifier's own
/// `LOOP_MAX_DEPTH_REACHED`): the verifier's analyses run to a fixed point over each loop, and
/// upstream Move's chains set the same bound. Checked when a module is published only, as the
/// other limits: a module stored before keeps loading.
pub const MAX_LOOP_DEPTH: usize = 5;
/// The most reference analysis work in one function: basic blocks times one plus references
/// held in locals (see the [module](self)). About 3 µs a block and reference (a release build):
/// 120 references through 10 000 blocks, a 45 KB module, took the verifier 4 s.
pub const MAX_REFERENCE_WORK: usize = 1 << 15;
/// The most reference analysis work in one module.
pub const MAX_MODULE_REFERENCE_WORK: usize = 1 << 17;
/// The most elements one `VecPack` or `VecUnpack` takes (the verifier's own bound, which it
/// also applies to stored modules): the VM's operand stack holds 1 024 values, so no more can
/// ever run, and the verifier loops (and allocates) once per element of the count, a `u64` of
/// the bytecode.
pub use move_bytecode_verifier::MAX_VECTOR_PACK;

/// The most type nodes the binary format's bounds checker may walk for a module: each function
/// handle's parameters and returns, each function's locals, and each generic or vector
/// instruction's type arguments or element type, once per handle, function or instruction.
/// A module within the limits above walks at most half of it.
pub const MAX_BOUNDS_CHECK_NODES: usize = 1 << 20;

/// The modules of `bundle` to publish, deserialized and checked against the limits above, and
/// their reference analysis work (see [`check_module`]); bytes that do not deserialize are left
/// out, for the VM to report.
///
/// Each module is deserialized without the binary format's bounds check
/// (`CompiledModule::deserialize_no_check_bounds`), whose work is checked first to be within
/// [`MAX_BOUNDS_CHECK_NODES`]: it walks a signature again at every use, so a 64 KB module of
/// 30 000 generic calls, each naming 255 type arguments of 16 nodes, took it 276 ms before any
/// limit here could refuse the module. Indices out of bounds count nothing there: the bounds
/// check that follows refuses them.
///
/// # Errors
/// `CONSTRAINT_NOT_SATISFIED` for a module past a limit.
pub fn check_bundle_modules(bundle: &[Vec<u8>]) -> PartialVMResult<(Vec<CompiledModule>, usize)> {
    let mut modules = Vec::with_capacity(bundle.len());
    let mut work: usize = 0;
    for bytes in bundle {
        let Ok(module) = CompiledModule::deserialize_no_check_bounds(bytes) else { continue };
        let counts = Counts::of(&module);
        check_bounds_work(&module, &counts)?;
        if BoundsChecker::verify_module(&module).is_err() {
            continue;
        }
        work = work.saturating_add(check_counted(&module, &counts)?);
        modules.push(module);
    }
    Ok((modules, work))
}

/// The bounds checker's work on `module` (not yet bounds-checked) is within
/// [`MAX_BOUNDS_CHECK_NODES`] (see [`check_bundle_modules`]).
fn check_bounds_work(module: &CompiledModule, counts: &Counts) -> PartialVMResult<()> {
    let instantiation =
        |signature: Option<SignatureIndex>| signature.map_or(0, |s| counts.signature(s));
    let mut work = module.function_handles.iter().fold(0usize, |sum, handle| {
        sum.saturating_add(counts.signature(handle.parameters) + counts.signature(handle.return_))
    });
    for code in module.function_defs.iter().filter_map(|definition| definition.code.as_ref()) {
        work = work.saturating_add(counts.signature(code.locals));
        for instruction in &code.code {
            work = work.saturating_add(match instruction {
                Bytecode::CallGeneric(index) => instantiation(
                    module
                        .function_instantiations
                        .get(usize::from(index.0))
                        .map(|e| e.type_parameters),
                ),
                Bytecode::PackGeneric(index)
                | Bytecode::UnpackGeneric(index)
                | Bytecode::ExistsGeneric(index)
                | Bytecode::ImmBorrowGlobalGeneric(index)
                | Bytecode::MutBorrowGlobalGeneric(index)
                | Bytecode::MoveFromGeneric(index)
                | Bytecode::MoveToGeneric(index) => instantiation(
                    module
                        .struct_def_instantiations
                        .get(usize::from(index.0))
                        .map(|e| e.type_parameters),
                ),
                Bytecode::ImmBorrowFieldGeneric(index) | Bytecode::MutBorrowFieldGeneric(index) => {
                    instantiation(
                        module
                            .field_instantiations
                            .get(usize::from(index.0))
                            .map(|e| e.type_parameters),
                    )
                }
                other => instantiation(vector_element(other)),
            });
            if work > MAX_BOUNDS_CHECK_NODES {
                break;
            }
        }
    }
    if work > MAX_BOUNDS_CHECK_NODES {
        return Err(refused(&format!(
            "checking the module's indices would walk more than {MAX_BOUNDS_CHECK_NODES} type \
             nodes (its signatures, once per handle, function or instruction naming them)"
        )));
    }
    Ok(())
}

/// Checks that a bundle to publish holds a module: an empty one would change nothing, yet, as
/// every publication, empty the Move VM's code caches for the transactions after it.
///
/// # Errors
/// `CONSTRAINT_NOT_SATISFIED` for an empty bundle.
pub fn check_bundle(modules: usize) -> PartialVMResult<()> {
    if modules == 0 {
        return Err(refused("a bundle of no modules"));
    }
    Ok(())
}

/// Checks `module` against the limits (see the [module](self)); returns the verifier's
/// reference analysis work on it (the sum of its functions', see [`MAX_REFERENCE_WORK`]), which
/// a publication pays for ([`crate::gas::VERIFICATION_WORK`]).
///
/// # Errors
/// `CONSTRAINT_NOT_SATISFIED`, saying which limit and where.
pub fn check_module(module: &CompiledModule) -> PartialVMResult<usize> {
    check_counted(module, &Counts::of(module))
}

/// [`check_module`], with the module's type nodes counted.
fn check_counted(module: &CompiledModule, counts: &Counts) -> PartialVMResult<usize> {
    if let Some(long) = module.identifiers().iter().find(|name| name.len() > MAX_IDENTIFIER_BYTES) {
        let start: String = long.as_str().chars().take(32).collect();
        return Err(refused(&format!(
            "an identifier of {} bytes (at most {MAX_IDENTIFIER_BYTES}): {start}…",
            long.len()
        )));
    }
    for signature in module.signatures() {
        signature.0.iter().try_for_each(check_type)?;
    }
    for definition in module.struct_defs() {
        if let StructFieldInformation::Declared(fields) = &definition.field_information {
            fields.iter().try_for_each(|field| check_type(&field.signature.0))?;
        }
    }
    check_signature_totals(module, counts)?;
    let mut in_module: usize = 0;
    let mut in_module_work: usize = 0;
    let loops = move_bytecode_verifier::VerifierConfig { max_loop_depth: Some(MAX_LOOP_DEPTH) };
    for (index, definition) in module.function_defs().iter().enumerate() {
        let Some(code) = &definition.code else { continue };
        // INVARIANT: a module holds fewer than 2^16 function definitions (its table's index).
        let index = FunctionDefinitionIndex(index as u16);
        move_bytecode_verifier::control_flow::verify(&loops, Some(index), code)?;
        let handle = module.function_handle_at(definition.function);
        let name = || module.identifier_at(handle.name);
        let work = check_function_shape(module, handle, code)?;
        in_module_work = in_module_work.saturating_add(work);
        if in_module_work > MAX_MODULE_REFERENCE_WORK {
            return Err(refused(&format!(
                "the module's functions carry references through too many blocks (at most \
                 {MAX_MODULE_REFERENCE_WORK}, up to function {})",
                name()
            )));
        }
        // Summed until past the bound: a refused module costs no more than an accepted one.
        let mut instantiated: usize = 0;
        for instruction in &code.code {
            if let Bytecode::VecPack(_, count) | Bytecode::VecUnpack(_, count) = instruction {
                if *count > MAX_VECTOR_PACK {
                    return Err(refused(&format!(
                        "a vector instruction of {count} elements (at most {MAX_VECTOR_PACK})"
                    )));
                }
            }
            instantiated =
                instantiated.saturating_add(instantiated_nodes(module, counts, instruction));
            if instantiated > MAX_INSTANTIATED_NODES {
                break;
            }
        }
        if instantiated > MAX_INSTANTIATED_NODES {
            return Err(refused(&format!(
                "function {}'s instructions instantiate {instantiated} type nodes \
                 (at most {MAX_INSTANTIATED_NODES})",
                name()
            )));
        }
        in_module = in_module.saturating_add(instantiated);
        if in_module > MAX_MODULE_INSTANTIATED_NODES {
            return Err(refused(&format!(
                "the module's instructions instantiate more than \
                 {MAX_MODULE_INSTANTIATED_NODES} type nodes (up to function {})",
                name()
            )));
        }
    }
    Ok(in_module_work)
}

/// The type nodes the loader, the bounds checker and the verifier walk once per table entry,
/// function handle or function definition naming a signature, summed over the module: the
/// instantiation tables' type arguments, and the handles' parameters and returns with the
/// definitions' locals, each at most [`MAX_MODULE_INSTANTIATED_NODES`].
fn check_signature_totals(module: &CompiledModule, counts: &Counts) -> PartialVMResult<()> {
    // The loader builds every entry of the instantiation tables, whether code uses it or not,
    // and keeps what it built in each VM instance's cache: bounded as instructions are.
    let tables = module
        .function_instantiations()
        .iter()
        .map(|entry| entry.type_parameters)
        .chain(module.struct_def_instantiations.iter().map(|entry| entry.type_parameters))
        .chain(module.field_instantiations().iter().map(|entry| entry.type_parameters));
    let mut in_tables: usize = 0;
    for signature in tables {
        in_tables = in_tables.saturating_add(counts.signature(signature));
        if in_tables > MAX_MODULE_INSTANTIATED_NODES {
            return Err(refused(&format!(
                "the module's instantiation tables hold more than \
                 {MAX_MODULE_INSTANTIATED_NODES} type nodes"
            )));
        }
    }
    // The bounds checker and the verifier walk each function handle's parameters and returns,
    // and each definition's locals, once per handle or definition: many of them sharing one
    // large signature cost that signature's nodes each time.
    let declared = module
        .function_handles()
        .iter()
        .flat_map(|handle| [handle.parameters, handle.return_])
        .chain(
            module
                .function_defs()
                .iter()
                .filter_map(|definition| definition.code.as_ref().map(|code| code.locals)),
        );
    let mut in_declarations: usize = 0;
    for signature in declared {
        in_declarations = in_declarations.saturating_add(counts.signature(signature));
        if in_declarations > MAX_MODULE_INSTANTIATED_NODES {
            return Err(refused(&format!(
                "the module's function signatures and locals hold more than \
                 {MAX_MODULE_INSTANTIATED_NODES} type nodes"
            )));
        }
    }
    Ok(())
}

/// The element type of a vector instruction.
fn vector_element(instruction: &Bytecode) -> Option<SignatureIndex> {
    match instruction {
        Bytecode::VecPack(element, _)
        | Bytecode::VecLen(element)
        | Bytecode::VecImmBorrow(element)
        | Bytecode::VecMutBorrow(element)
        | Bytecode::VecPushBack(element)
        | Bytecode::VecPopBack(element)
        | Bytecode::VecUnpack(element, _)
        | Bytecode::VecSwap(element) => Some(*element),
        _ => None,
    }
}

/// The type nodes of a module's signatures and of its structs' fields, counted once: the
/// checks below look them up for every instruction.
struct Counts {
    signatures: Vec<usize>,
    /// Each struct definition's fields' nodes, and their sum.
    fields: Vec<(Vec<usize>, usize)>,
    /// By function handle: the resources the function acquires, if the module defines it (the
    /// verifier checks a call's acquires only against the module's own functions).
    acquires: Vec<usize>,
}

impl Counts {
    fn of(module: &CompiledModule) -> Self {
        let nodes = |token: &SignatureToken| token.preorder_traversal().count();
        let signatures = module
            .signatures()
            .iter()
            .map(|signature| signature.0.iter().map(nodes).sum())
            .collect();
        let fields = module
            .struct_defs()
            .iter()
            .map(|definition| match &definition.field_information {
                StructFieldInformation::Declared(fields) => {
                    let each: Vec<usize> =
                        fields.iter().map(|field| nodes(&field.signature.0)).collect();
                    let sum = each.iter().sum();
                    (each, sum)
                }
                StructFieldInformation::Native => (Vec::new(), 0),
            })
            .collect();
        let mut acquires = vec![0; module.function_handles().len()];
        for definition in module.function_defs() {
            if let Some(count) = acquires.get_mut(usize::from(definition.function.0)) {
                *count = definition.acquires_global_resources.len();
            }
        }
        Self { signatures, fields, acquires }
    }

    /// The nodes of signature `index` (none if the module has no such signature: the bounds
    /// check refuses it, and [`check_bounds_work`] runs before it).
    fn signature(&self, index: SignatureIndex) -> usize {
        self.signatures.get(usize::from(index.0)).copied().unwrap_or(0)
    }
}

/// The type nodes the verifier builds for `instruction`: a call's parameter and return types (and
/// twice the resources it acquires, for a call of the module's own function), a
/// pack's or unpack's field types, a field borrow's field type, each times the nodes of the type
/// arguments if generic (at most: a type parameter may be named more than once), and a generic
/// call's type arguments once more (walked at each call, whatever the callee declares); a generic
/// global storage instruction's struct type, twice; a vector instruction's element type.
fn instantiated_nodes(module: &CompiledModule, counts: &Counts, instruction: &Bytecode) -> usize {
    let field_nodes = |definition: StructDefinitionIndex, only: Option<usize>| -> usize {
        let (each, sum) = &counts.fields[usize::from(definition.0)];
        only.map_or(*sum, |only| each.get(only).copied().unwrap_or(0))
    };
    let times = |nodes: usize, arguments: SignatureIndex| {
        nodes.saturating_mul(counts.signature(arguments).max(1))
    };
    // A call of one of the module's own functions: each resource it acquires, twice (the
    // acquires check and the reference safety pass each build and walk the callee's list at
    // every call: 30 000 calls of a function acquiring 2 500 resources, a 128 KB module, were
    // seconds of verification).
    let acquired = |handle: FunctionHandleIndex| {
        2 * counts.acquires.get(usize::from(handle.0)).copied().unwrap_or(0)
    };
    match instruction {
        Bytecode::Call(index) => {
            let handle = module.function_handle_at(*index);
            counts.signature(handle.parameters)
                + counts.signature(handle.return_)
                + acquired(*index)
        }
        Bytecode::CallGeneric(index) => {
            let instantiation = module.function_instantiation_at(*index);
            let handle = module.function_handle_at(instantiation.handle);
            let callee = counts.signature(handle.parameters) + counts.signature(handle.return_);
            // The type arguments themselves too: the bounds checker and the verifier walk them
            // at every call, though the callee has no parameters or returns to instantiate
            // (30 000 calls of such a function with 255 type arguments of 16 nodes, a 64 KB
            // module, took the verifier 4.8 s).
            times(callee + 1, instantiation.type_parameters) + acquired(instantiation.handle)
        }
        Bytecode::Pack(definition) | Bytecode::Unpack(definition) => field_nodes(*definition, None),
        Bytecode::PackGeneric(index) | Bytecode::UnpackGeneric(index) => {
            let instantiation = module.struct_instantiation_at(*index);
            times(field_nodes(instantiation.def, None), instantiation.type_parameters)
        }
        Bytecode::ImmBorrowFieldGeneric(index) | Bytecode::MutBorrowFieldGeneric(index) => {
            let instantiation = module.field_instantiation_at(*index);
            let handle = module.field_handle_at(instantiation.handle);
            let field = field_nodes(handle.owner, Some(usize::from(handle.field)));
            times(field, instantiation.type_parameters)
        }
        // The instantiated struct, built and compared whole (`move_to` compares it with the
        // value's type).
        Bytecode::ExistsGeneric(index)
        | Bytecode::MoveFromGeneric(index)
        | Bytecode::MoveToGeneric(index)
        | Bytecode::ImmBorrowGlobalGeneric(index)
        | Bytecode::MutBorrowGlobalGeneric(index) => {
            let instantiation = module.struct_instantiation_at(*index);
            2 * (1 + counts.signature(instantiation.type_parameters))
        }
        // The element type, built for every vector instruction, and by the type pass once more
        // for each value a `VecPack` packs (compared) or a `VecUnpack` unpacks (cloned): 520
        // pairs of 1 024 elements of a 63-node struct, a 13 KB function, took the verifier
        // 570 ms when they counted once.
        Bytecode::VecPack(element, values) | Bytecode::VecUnpack(element, values) => {
            let values = usize::try_from(*values).unwrap_or(usize::MAX);
            counts.signature(*element).saturating_mul(values.saturating_add(1))
        }
        other => vector_element(other).map_or(0, |element| counts.signature(element)),
    }
}

/// Checks a function's locals, length and reference analysis work against their bounds;
/// returns the work.
fn check_function_shape(
    module: &CompiledModule,
    handle: &FunctionHandle,
    code: &CodeUnit,
) -> PartialVMResult<usize> {
    let name = || module.identifier_at(handle.name);
    let locals =
        module.signature_at(handle.parameters).len() + module.signature_at(code.locals).len();
    if locals > MAX_LOCALS {
        return Err(refused(&format!(
            "function {} has {locals} parameters and locals (at most {MAX_LOCALS})",
            name()
        )));
    }
    if code.code.len() > MAX_CODE_LENGTH {
        return Err(refused(&format!(
            "function {} has {} instructions (at most {MAX_CODE_LENGTH})",
            name(),
            code.code.len()
        )));
    }
    let work = function_reference_work(module, handle.parameters, code);
    if work > MAX_REFERENCE_WORK {
        return Err(refused(&format!(
            "function {} carries references through too many blocks ({work}: blocks times one \
             plus references times one plus loops; at most {MAX_REFERENCE_WORK})",
            name()
        )));
    }
    Ok(work)
}

/// A function's reference analysis work: its basic blocks (at most one, plus two a branch and
/// one a return or abort) times one plus its parameters and locals that are references, times
/// one plus its loops (backward branches).
fn function_reference_work(
    module: &CompiledModule,
    parameters: SignatureIndex,
    code: &CodeUnit,
) -> usize {
    let is_reference = |token: &&SignatureToken| {
        matches!(token, SignatureToken::Reference(_) | SignatureToken::MutableReference(_))
    };
    let references = module.signature_at(parameters).0.iter().filter(is_reference).count()
        + module.signature_at(code.locals).0.iter().filter(is_reference).count();
    // A branch starts up to two blocks (its target and what follows it), a return or an abort
    // one; a backward branch closes a loop, whose body the analysis may run again until its
    // state settles.
    let (mut blocks, mut loops) = (1_usize, 0_usize);
    for (offset, instruction) in code.code.iter().enumerate() {
        match instruction {
            Bytecode::Branch(target) | Bytecode::BrTrue(target) | Bytecode::BrFalse(target) => {
                blocks += 2;
                loops += usize::from(usize::from(*target) <= offset);
            }
            Bytecode::Ret | Bytecode::Abort => blocks += 1,
            _ => {}
        }
    }
    blocks.saturating_mul(1 + references).saturating_mul(1 + loops)
}

fn check_type(token: &SignatureToken) -> PartialVMResult<()> {
    let mut nodes = 0;
    for (_, depth) in token.preorder_traversal_with_depth() {
        nodes += 1;
        if depth > MAX_TYPE_DEPTH {
            return Err(refused(&format!("a type deeper than {MAX_TYPE_DEPTH}")));
        }
    }
    if nodes > MAX_TYPE_NODES {
        return Err(refused(&format!("a type of {nodes} nodes (at most {MAX_TYPE_NODES})")));
    }
    Ok(())
}

fn refused(message: &str) -> PartialVMError {
    PartialVMError::new(StatusCode::CONSTRAINT_NOT_SATISFIED)
        .with_message(format!("module limit: {message}"))
}
