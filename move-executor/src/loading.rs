//! Gas for the code a call loads.
//!
//! Before a call runs, the VM loads (reads, deserializes and verifies) its module and every
//! module that one depends on, directly or not, and the modules of the call's type arguments
//! with theirs. The VM caches what it loaded until a block publishes code, so what loading
//! costs the node depends on what the cache holds, but what a call pays must not: it pays for
//! the whole closure, cached or not, every time ([`gas::MODULE_LOAD`] per module and
//! one per [`gas::MODULE_LOAD_BYTES_PER_GAS`] bytes of its code, as stored). The closure is walked and
//! charged before the VM loads anything, so a call that cannot pay for it stops, out of gas,
//! before the VM verifies a module of it.
//!
//! The framework's modules (at `0x1`) are loaded by every node anyway and are not charged;
//! they depend on no module outside the framework, so the walk stops at them.
//!
//! The walk needs each module's size and direct dependencies. An instance keeps them
//! ([`Footprints`]) as it keeps the VM's code cache, from the committed code, and is flushed with
//! that cache whenever a block publishes, so within the stretch of a block between two
//! publications, where no code changes, what it holds is the state's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use move_binary_format::access::ModuleAccess;
use move_binary_format::CompiledModule;
use move_core_types::language_storage::{ModuleId, TypeTag};
use move_core_types::resolver::ModuleResolver;

use crate::gas::{self, DuetGasMeter};
use crate::resolver::ViewResolver;
use crate::{Failure, FRAMEWORK_ADDRESS};

/// What loading one module takes: its size, and the modules it depends on directly (those
/// outside the framework).
struct Footprint {
    bytes: u64,
    dependencies: Box<[ModuleId]>,
}

/// The footprint of each module outside the framework that calls named, read once per module.
/// Bounded: emptied when full.
#[derive(Default)]
pub(crate) struct Footprints(HashMap<ModuleId, Arc<Footprint>>);

impl Footprints {
    /// The most modules kept.
    const CAPACITY: usize = 4096;

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// `module`'s footprint; `None` if there is no such module or its bytes do not
    /// deserialize (the VM reports either when it loads it).
    fn of(
        &mut self,
        resolver: &ViewResolver<'_>,
        module: &ModuleId,
    ) -> Result<Option<Arc<Footprint>>, Failure> {
        if let Some(footprint) = self.0.get(module) {
            return Ok(Some(Arc::clone(footprint)));
        }
        let Some(bytes) = resolver.get_module(module).map_err(|error| Failure::Invalid(error.0))?
        else {
            return Ok(None);
        };
        let Ok(compiled) = CompiledModule::deserialize(&bytes) else { return Ok(None) };
        let footprint = Arc::new(Footprint {
            bytes: bytes.len() as u64,
            dependencies: compiled
                .immediate_dependencies()
                .into_iter()
                .filter(|dependency| !in_framework(dependency))
                .collect(),
        });
        if self.0.len() >= Self::CAPACITY {
            self.0.clear();
        }
        self.0.insert(module.clone(), Arc::clone(&footprint));
        Ok(Some(footprint))
    }
}

fn in_framework(module: &ModuleId) -> bool {
    *module.address() == FRAMEWORK_ADDRESS
}

/// Charges `meter` for loading `module` and the modules of `type_arguments`, with everything
/// they depend on (see the [module](self)).
///
/// # Errors
/// Out of gas, or the state could not be read.
pub(crate) fn charge_call(
    footprints: &mut Footprints,
    resolver: &ViewResolver<'_>,
    module: &ModuleId,
    type_arguments: &[TypeTag],
    meter: &mut DuetGasMeter,
) -> Result<(), Failure> {
    // Nothing allocated for the usual call, of the framework with primitive type arguments.
    let mut to_load = Vec::new();
    if !in_framework(module) {
        to_load.push(module.clone());
    }
    let mut types: Vec<&TypeTag> = Vec::new();
    let mut next = type_arguments.iter();
    while let Some(type_tag) = types.pop().or_else(|| next.next()) {
        match type_tag {
            TypeTag::Struct(tag) => {
                to_load.push(tag.module_id());
                types.extend(&tag.type_params);
            }
            TypeTag::Vector(element) => types.push(element),
            _ => {}
        }
    }
    if to_load.is_empty() {
        return Ok(());
    }
    charge_closure(footprints, resolver, to_load, usize::MAX, meter)
}

/// Charges `meter` for loading the stored modules that publishing `bundle` loads to verify it:
/// those its modules depend on or name as friends, outside the bundle, with everything they
/// depend on, up to the most a publication loads
/// ([`move_vm_runtime::MAX_MODULES_LOADED_BY_PUBLICATION`]: the VM refuses one that would load
/// more). Modules that do not deserialize are skipped (the VM refuses them).
///
/// # Errors
/// Out of gas, or the state could not be read.
pub(crate) fn charge_publication(
    footprints: &mut Footprints,
    resolver: &ViewResolver<'_>,
    bundle: &[Vec<u8>],
    meter: &mut DuetGasMeter,
) -> Result<(), Failure> {
    let modules: Vec<CompiledModule> =
        bundle.iter().filter_map(|bytes| CompiledModule::deserialize(bytes).ok()).collect();
    let published: HashSet<ModuleId> = modules.iter().map(ModuleAccess::self_id).collect();
    let to_load = modules
        .iter()
        .flat_map(|module| {
            module.immediate_dependencies().into_iter().chain(module.immediate_friends())
        })
        .filter(|module| !published.contains(module))
        .collect();
    let most = move_vm_runtime::MAX_MODULES_LOADED_BY_PUBLICATION;
    charge_closure(footprints, resolver, to_load, most, meter)
}

/// Charges `meter` for loading the modules `to_load` (those outside the framework) and every
/// module they depend on, each once, up to `most` modules.
fn charge_closure(
    footprints: &mut Footprints,
    resolver: &ViewResolver<'_>,
    mut to_load: Vec<ModuleId>,
    most: usize,
    meter: &mut DuetGasMeter,
) -> Result<(), Failure> {
    to_load.retain(|module| !in_framework(module));
    let mut seen = HashSet::new();
    while let Some(module) = to_load.pop() {
        if seen.len() >= most {
            break;
        }
        if !seen.insert(module.clone()) {
            continue;
        }
        let Some(footprint) = footprints.of(resolver, &module)? else { continue };
        meter.charge(
            gas::MODULE_LOAD.saturating_add(footprint.bytes / gas::MODULE_LOAD_BYTES_PER_GAS),
        )?;
        to_load.extend(
            footprint.dependencies.iter().filter(|dependency| !seen.contains(*dependency)).cloned(),
        );
    }
    Ok(())
}
