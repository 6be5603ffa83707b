//! Gas for the code a call or a publication loads.
//!
//! Before a call runs, the VM loads (reads, deserializes and verifies) its module and every
//! module that one depends on, directly or not, and the modules of the call's type arguments
//! with theirs. The VM caches what it loaded until a block publishes code, so what loading
//! costs the node depends on what the cache holds, but what a call pays must not: it pays for
//! the whole closure, cached or not, every time: [`gas::MODULE_LOAD`] per module, one per
//! [`gas::MODULE_LOAD_BYTES_PER_GAS`] bytes of its code as stored, and [`gas::MODULE_LINK`] per
//! dependency it names (each is looked up). The closure is walked and charged before the VM
//! loads anything, so a call that cannot pay for it stops, out of gas, before the VM verifies a
//! module of it (each step reads and deserializes one module, within the module size bound,
//! before charging it; a step that only follows a module's names again reads it again if the
//! kept footprints were emptied meanwhile, and charges for the names only, whatever was kept, so
//! that the charge does not depend on it). The walk goes down at most [`MAX_DEPENDENCY_DEPTH`] levels: the VM
//! loads no module deeper and fails the call.
//!
//! Publishing charges the same for what the VM loads: for the compatibility checks, the stored
//! versions of the modules it upgrades with what they depend on; to verify the bundle, the
//! stored modules it depends on and the modules its modules name as friends, with their friends
//! in turn, each with what it depends on (the bundle's own modules come from the bundle). Each
//! of the two up to the [`MAX_MODULES_LOADED_BY_PUBLICATION`] modules the VM loads for it at most
//! (it refuses a publication that would load more); a module the checks loaded is not counted
//! again, as the VM has it cached. The walk goes breadth first and the VM depth first, so a
//! publication that passes the bound may have been charged for other modules than those the VM
//! loaded before refusing it. A module the walk reaches again at a shallower depth, or as a
//! friend, has what it leads to followed again (its names paid for again), not its load.
//!
//! The framework's modules (at `0x1`) are loaded by every node anyway and are not charged;
//! they depend on no module outside the framework, so the walk stops at them.
//!
//! The walk needs each module's size, dependencies and friends. An instance keeps them
//! ([`Footprints`]), with which of the module's functions may be called from outside Move (see
//! `ensure_callable`), as it keeps the VM's code cache, and both are flushed whenever a block
//! publishes (before and after each publication), so between two flushes, where no code
//! changes, what it holds is what the state holds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use move_binary_format::access::ModuleAccess;
use move_binary_format::file_format::Visibility;
use move_binary_format::CompiledModule;
use move_core_types::identifier::Identifier;
use move_core_types::language_storage::{ModuleId, TypeTag};
use move_core_types::resolver::ModuleResolver;
use move_vm_runtime::{MAX_DEPENDENCY_DEPTH, MAX_MODULES_LOADED_BY_PUBLICATION};

use crate::gas::{self, DuetGasMeter};
use crate::resolver::ViewResolver;
use crate::{Failure, FRAMEWORK_ADDRESS};

/// What loading one module takes: its size, and the modules it depends on directly and names
/// as friends (those outside the framework); and whether each of its functions may be called
/// from outside Move.
pub(crate) struct Footprint {
    bytes: u64,
    dependencies: Box<[ModuleId]>,
    friends: Box<[ModuleId]>,
    functions: HashMap<Identifier, Callable>,
}

/// Whether a function may be called from outside Move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Callable {
    Yes,
    /// A native function: the VM runs natives only when Move code calls them.
    Native,
    /// Neither `public` nor `entry`, or no such function.
    No,
}

impl Footprint {
    /// Whether `function` may be called from outside Move.
    pub(crate) fn callable(&self, function: &Identifier) -> Callable {
        self.functions.get(function).copied().unwrap_or(Callable::No)
    }
}

/// The footprint of each module that calls named, read once per module. Bounded by the names
/// it holds: emptied when full.
pub(crate) struct Footprints {
    kept: HashMap<ModuleId, Arc<Footprint>>,
    /// The dependencies, friends and functions the kept footprints name.
    names: usize,
    /// Whether the modules read are kept deserialized for the whole process, as the instance's
    /// VM keeps them.
    keeps_modules: bool,
}

impl Footprints {
    /// The most names (dependencies, friends and functions) kept.
    const CAPACITY: usize = 1 << 16;

    pub(crate) fn new(keeps_modules: bool) -> Self {
        Self { kept: HashMap::new(), names: 0, keeps_modules }
    }

    pub(crate) fn clear(&mut self) {
        self.kept.clear();
        self.names = 0;
    }

    /// `module`'s footprint; `None` if there is no such module or its bytes do not
    /// deserialize (the VM reports either when it loads it).
    pub(crate) fn of(
        &mut self,
        resolver: &ViewResolver<'_>,
        module: &ModuleId,
    ) -> Result<Option<Arc<Footprint>>, Failure> {
        if let Some(footprint) = self.kept.get(module) {
            return Ok(Some(Arc::clone(footprint)));
        }
        let Some(bytes) = resolver.get_module(module).map_err(|error| Failure::Invalid(error.0))?
        else {
            return Ok(None);
        };
        // As the VM deserializes it: once per process (see `move_vm_runtime::deserialize_module`).
        let deserialized = move_vm_runtime::deserialize_module(&bytes, self.keeps_modules);
        let Ok(compiled) = deserialized else { return Ok(None) };
        let outside = |modules: Vec<ModuleId>| -> Box<[ModuleId]> {
            modules.into_iter().filter(|module| !in_framework(module)).collect()
        };
        let functions = compiled.function_defs().iter().map(|definition| {
            let handle = compiled.function_handle_at(definition.function);
            let callable = if definition.code.is_none() {
                Callable::Native
            } else if definition.visibility == Visibility::Public || definition.is_entry {
                Callable::Yes
            } else {
                Callable::No
            };
            (compiled.identifier_at(handle.name).to_owned(), callable)
        });
        let footprint = Arc::new(Footprint {
            bytes: bytes.len() as u64,
            dependencies: outside(compiled.immediate_dependencies()),
            friends: outside(compiled.immediate_friends()),
            functions: functions.collect(),
        });
        let names =
            footprint.dependencies.len() + footprint.friends.len() + footprint.functions.len();
        if self.names + names > Self::CAPACITY {
            self.clear();
        }
        self.names += names;
        self.kept.insert(module.clone(), Arc::clone(&footprint));
        Ok(Some(footprint))
    }
}

fn in_framework(module: &ModuleId) -> bool {
    *module.address() == FRAMEWORK_ADDRESS
}

/// How the walk reached a module, which decides what it follows from there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// As a dependency (or the module called) `depth` levels down: its dependencies.
    Dependency { depth: usize },
    /// As a friend in a publication (the head of a chain of its own): its dependencies, and its
    /// friends too.
    Friend,
}

impl Reached {
    fn depth(self) -> usize {
        match self {
            Self::Dependency { depth } => depth,
            Self::Friend => 1,
        }
    }
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
    let mut roots = Vec::new();
    if !in_framework(module) {
        roots.push(module.clone());
    }
    let mut types: Vec<&TypeTag> = Vec::new();
    let mut next = type_arguments.iter();
    while let Some(type_tag) = types.pop().or_else(|| next.next()) {
        match type_tag {
            TypeTag::Struct(tag) => {
                roots.push(tag.module_id());
                types.extend(&tag.type_params);
            }
            TypeTag::Vector(element) => types.push(element),
            _ => {}
        }
    }
    if roots.is_empty() {
        return Ok(());
    }
    let roots = roots.into_iter().map(|root| (root, Reached::Dependency { depth: 1 }));
    Walk::new(usize::MAX, HashSet::new()).charge(footprints, resolver, roots, meter)
}

/// Charges `meter` for loading what publishing a bundle of `modules` (those of its modules that
/// deserialize: the VM refuses the others) loads to check and verify it (see the
/// [module](self)).
///
/// # Errors
/// Out of gas, or the state could not be read.
pub(crate) fn charge_publication(
    footprints: &mut Footprints,
    resolver: &ViewResolver<'_>,
    modules: &[CompiledModule],
    meter: &mut DuetGasMeter,
) -> Result<(), Failure> {
    let published: HashSet<ModuleId> = modules.iter().map(ModuleAccess::self_id).collect();
    // The compatibility checks load the stored versions of the modules upgraded, with what they
    // depend on, in the bundle's order (the order decides what is charged at the bound, and so
    // must be the same on every node).
    let stored = modules.iter().map(|module| (module.self_id(), Reached::Dependency { depth: 1 }));
    let mut walk = Walk::new(MAX_MODULES_LOADED_BY_PUBLICATION, HashSet::new());
    walk.charge(footprints, resolver, stored, meter)?;
    // Verifying the bundle loads the stored modules it depends on, the friends it names and
    // theirs, each with what it depends on; the bundle's own modules come from the bundle.
    // Counted apart, as the VM counts its phases; what the checks loaded is cached by then, and
    // neither loaded nor counted again.
    let mut walk = walk.next_phase(MAX_MODULES_LOADED_BY_PUBLICATION, published);
    let mut roots = Vec::new();
    for module in modules {
        let dependencies = module.immediate_dependencies().into_iter();
        roots.extend(dependencies.map(|dependency| (dependency, Reached::Dependency { depth: 2 })));
        let friends = module.immediate_friends().into_iter();
        roots.extend(friends.map(|friend| (friend, Reached::Friend)));
    }
    walk.charge(footprints, resolver, roots, meter)
}

/// What the walk knows of a module it reached.
struct Seen {
    /// The shallowest depth it was reached at, whose dependencies are followed.
    depth: usize,
    /// Whether its friends are followed.
    friends: bool,
}

/// What the walk does at a module.
#[derive(Clone, Copy)]
enum Visit {
    /// Charge for loading it, and follow its dependencies `depth` levels down (and its friends).
    Load { depth: usize, friends: bool },
    /// Follow again what a module charged before leads to, reached since at a shallower depth
    /// (its dependencies from there) or as a friend (its friends).
    Follow { depth: Option<usize>, friends: bool },
}

/// A walk over modules, each charged once, up to `most` of them, never reaching those of
/// `excluded`.
struct Walk {
    seen: HashMap<ModuleId, Seen>,
    excluded: HashSet<ModuleId>,
    most: usize,
    queue: std::collections::VecDeque<(ModuleId, Visit)>,
}

impl Walk {
    fn new(most: usize, excluded: HashSet<ModuleId>) -> Self {
        Self { seen: HashMap::new(), excluded, most, queue: std::collections::VecDeque::new() }
    }

    /// A walk that charges up to `most` more modules, never reaching those of `excluded`, and
    /// knows what this one charged.
    fn next_phase(self, most: usize, excluded: HashSet<ModuleId>) -> Self {
        Self { seen: self.seen, excluded, most, queue: std::collections::VecDeque::new() }
    }

    /// Queues what reaching `module` as `reached` calls for: its load the first time; after,
    /// following its dependencies again from a shallower depth, or its friends.
    fn reach(&mut self, module: &ModuleId, reached: Reached) {
        if in_framework(module) || self.excluded.contains(module) {
            return;
        }
        let (depth, friends) = (reached.depth(), reached == Reached::Friend);
        let Some(seen) = self.seen.get_mut(module) else {
            self.seen.insert(module.clone(), Seen { depth, friends });
            self.queue.push_back((module.clone(), Visit::Load { depth, friends }));
            return;
        };
        let shallower = (depth < seen.depth).then_some(depth);
        let new_friends = friends && !seen.friends;
        if shallower.is_some() || new_friends {
            seen.depth = seen.depth.min(depth);
            seen.friends |= friends;
            let visit = Visit::Follow { depth: shallower, friends: new_friends };
            self.queue.push_back((module.clone(), visit));
        }
    }

    /// Charges for `roots` and what they lead to. A module is loaded once and followed again
    /// only when its depth decreases (at most 63 times) or its friends are first followed, and
    /// each name followed is paid for ([`gas::MODULE_LINK`]).
    fn charge(
        &mut self,
        footprints: &mut Footprints,
        resolver: &ViewResolver<'_>,
        roots: impl IntoIterator<Item = (ModuleId, Reached)>,
        meter: &mut DuetGasMeter,
    ) -> Result<(), Failure> {
        for (module, reached) in roots {
            self.reach(&module, reached);
        }
        while let Some((module, visit)) = self.queue.pop_front() {
            let Some(footprint) = footprints.of(resolver, &module)? else { continue };
            let (load, depth, friends) = match visit {
                Visit::Load { depth, friends } => {
                    if self.most == 0 {
                        break;
                    }
                    self.most -= 1;
                    (true, Some(depth), friends)
                }
                Visit::Follow { depth, friends } => (false, depth, friends),
            };
            // Dependencies of a module at the deepest level the VM loads are not loaded.
            let below = depth.filter(|&depth| depth < MAX_DEPENDENCY_DEPTH).map(|depth| depth + 1);
            let links = below_links(&footprint, below.is_some(), friends);
            let loading = if load {
                gas::MODULE_LOAD.saturating_add(footprint.bytes / gas::MODULE_LOAD_BYTES_PER_GAS)
            } else {
                0
            };
            meter.charge(loading.saturating_add(gas::MODULE_LINK.saturating_mul(links)))?;
            if let Some(depth) = below {
                for dependency in &footprint.dependencies {
                    self.reach(dependency, Reached::Dependency { depth });
                }
            }
            if friends {
                for friend in &footprint.friends {
                    self.reach(friend, Reached::Friend);
                }
            }
        }
        Ok(())
    }
}

/// The modules a visit of `footprint` looks up: its dependencies, its friends, or both.
fn below_links(footprint: &Footprint, dependencies: bool, friends: bool) -> u64 {
    let count = |followed: bool, names: &[ModuleId]| if followed { names.len() } else { 0 };
    (count(dependencies, &footprint.dependencies) + count(friends, &footprint.friends)) as u64
}
