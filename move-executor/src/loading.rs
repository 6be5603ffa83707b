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
//! before charging it). The walk goes down at most [`MAX_DEPENDENCY_DEPTH`] levels: the VM
//! loads no module deeper and fails the call.
//!
//! Publishing charges the same for what the VM loads to verify the bundle: the stored modules
//! it depends on, the stored versions of the modules it upgrades (the compatibility check loads
//! them), and the modules its modules name as friends, with their friends in turn, each with
//! what it depends on; up to the [`MAX_MODULES_LOADED_BY_PUBLICATION`] modules the VM loads at
//! most (it refuses a publication that would load more).
//!
//! The framework's modules (at `0x1`) are loaded by every node anyway and are not charged;
//! they depend on no module outside the framework, so the walk stops at them.
//!
//! The walk needs each module's size, dependencies and friends. An instance keeps them
//! ([`Footprints`]) as it keeps the VM's code cache, and both are flushed whenever a block
//! publishes (before and after each publication), so between two flushes, where no code
//! changes, what it holds is what the state holds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use move_binary_format::access::ModuleAccess;
use move_binary_format::CompiledModule;
use move_core_types::language_storage::{ModuleId, TypeTag};
use move_core_types::resolver::ModuleResolver;
use move_vm_runtime::{MAX_DEPENDENCY_DEPTH, MAX_MODULES_LOADED_BY_PUBLICATION};

use crate::gas::{self, DuetGasMeter};
use crate::resolver::ViewResolver;
use crate::{Failure, FRAMEWORK_ADDRESS};

/// What loading one module takes: its size, and the modules it depends on directly and names
/// as friends (those outside the framework).
struct Footprint {
    bytes: u64,
    dependencies: Box<[ModuleId]>,
    friends: Box<[ModuleId]>,
}

/// The footprint of each module outside the framework that calls named, read once per module.
/// Bounded by the modules it names: emptied when full.
#[derive(Default)]
pub(crate) struct Footprints {
    footprints: HashMap<ModuleId, Arc<Footprint>>,
    /// The dependencies and friends the kept footprints name.
    names: usize,
}

impl Footprints {
    /// The most module names (dependencies and friends) kept.
    const CAPACITY: usize = 1 << 16;

    pub(crate) fn clear(&mut self) {
        self.footprints.clear();
        self.names = 0;
    }

    /// `module`'s footprint; `None` if there is no such module or its bytes do not
    /// deserialize (the VM reports either when it loads it).
    fn of(
        &mut self,
        resolver: &ViewResolver<'_>,
        module: &ModuleId,
    ) -> Result<Option<Arc<Footprint>>, Failure> {
        if let Some(footprint) = self.footprints.get(module) {
            return Ok(Some(Arc::clone(footprint)));
        }
        let Some(bytes) = resolver.get_module(module).map_err(|error| Failure::Invalid(error.0))?
        else {
            return Ok(None);
        };
        let Ok(compiled) = CompiledModule::deserialize(&bytes) else { return Ok(None) };
        let outside = |modules: Vec<ModuleId>| -> Box<[ModuleId]> {
            modules.into_iter().filter(|module| !in_framework(module)).collect()
        };
        let footprint = Arc::new(Footprint {
            bytes: bytes.len() as u64,
            dependencies: outside(compiled.immediate_dependencies()),
            friends: outside(compiled.immediate_friends()),
        });
        let names = footprint.dependencies.len() + footprint.friends.len();
        if self.names + names > Self::CAPACITY {
            self.clear();
        }
        self.names += names;
        self.footprints.insert(module.clone(), Arc::clone(&footprint));
        Ok(Some(footprint))
    }
}

fn in_framework(module: &ModuleId) -> bool {
    *module.address() == FRAMEWORK_ADDRESS
}

/// How the walk reached a module, which decides what it follows from there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// As a dependency (or the module called): its dependencies, `depth` levels down.
    Dependency { depth: usize },
    /// As a friend in a publication: its dependencies, and its friends too.
    Friend,
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
    Walk::new(usize::MAX).charge(footprints, resolver, roots, meter)
}

/// Charges `meter` for loading what publishing `bundle` loads to verify it (see the
/// [module](self)). Modules of the bundle that do not deserialize are skipped (the VM refuses
/// them).
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
    let mut roots = Vec::new();
    for module in &modules {
        // Its stored version, if it is an upgrade: the compatibility check loads it.
        roots.push((module.self_id(), Reached::Dependency { depth: 1 }));
        let dependencies = module.immediate_dependencies().into_iter();
        roots.extend(
            dependencies
                .filter(|dependency| !published.contains(dependency))
                .map(|dependency| (dependency, Reached::Dependency { depth: 2 })),
        );
        let friends = module.immediate_friends().into_iter();
        roots.extend(
            friends
                .filter(|friend| !published.contains(friend))
                .map(|friend| (friend, Reached::Friend)),
        );
    }
    roots.retain(|(module, _)| !in_framework(module));
    Walk::new(MAX_MODULES_LOADED_BY_PUBLICATION).charge(footprints, resolver, roots, meter)
}

/// A walk over modules, each charged once, up to `most` of them.
struct Walk {
    /// The modules reached, and whether their friends were followed.
    seen: HashMap<ModuleId, bool>,
    most: usize,
}

/// What the walk does at a module.
#[derive(Clone, Copy)]
enum Visit {
    /// Charge for it and go on as it was reached.
    Load(Reached),
    /// Follow the friends of a module charged before, reached then as a dependency only.
    Friends,
}

impl Walk {
    fn new(most: usize) -> Self {
        Self { seen: HashMap::new(), most }
    }

    /// Queues a visit of `module`, reached as `reached`, unless it was visited so already.
    fn reach(
        &mut self,
        queue: &mut std::collections::VecDeque<(ModuleId, Visit)>,
        module: &ModuleId,
        reached: Reached,
    ) {
        let with_friends = reached == Reached::Friend;
        match self.seen.get_mut(module) {
            None => {
                self.seen.insert(module.clone(), with_friends);
                queue.push_back((module.clone(), Visit::Load(reached)));
            }
            Some(followed) if with_friends && !*followed => {
                *followed = true;
                queue.push_back((module.clone(), Visit::Friends));
            }
            Some(_) => {}
        }
    }

    /// Charges for `roots` and what they lead to, breadth first (so that the depth bound cuts
    /// at the shallowest path to a module).
    fn charge(
        mut self,
        footprints: &mut Footprints,
        resolver: &ViewResolver<'_>,
        roots: impl IntoIterator<Item = (ModuleId, Reached)>,
        meter: &mut DuetGasMeter,
    ) -> Result<(), Failure> {
        let mut queue = std::collections::VecDeque::new();
        for (module, reached) in roots {
            if !in_framework(&module) {
                self.reach(&mut queue, &module, reached);
            }
        }
        while let Some((module, visit)) = queue.pop_front() {
            let Some(footprint) = footprints.of(resolver, &module)? else { continue };
            let (charge, dependencies, friends) = match visit {
                Visit::Load(reached) => {
                    if self.most == 0 {
                        break;
                    }
                    self.most -= 1;
                    let friends = reached == Reached::Friend;
                    let depth = match reached {
                        Reached::Friend => 1,
                        Reached::Dependency { depth } => depth,
                    };
                    let below = (depth < MAX_DEPENDENCY_DEPTH)
                        .then_some(Reached::Dependency { depth: depth + 1 });
                    let charge = gas::MODULE_LOAD
                        .saturating_add(footprint.bytes / gas::MODULE_LOAD_BYTES_PER_GAS);
                    (charge, below, friends)
                }
                Visit::Friends => (0, None, true),
            };
            let links = below_links(&footprint, dependencies.is_some(), friends);
            meter.charge(charge.saturating_add(gas::MODULE_LINK.saturating_mul(links)))?;
            if let Some(below) = dependencies {
                for dependency in &footprint.dependencies {
                    self.reach(&mut queue, dependency, below);
                }
            }
            if friends {
                for friend in &footprint.friends {
                    self.reach(&mut queue, friend, Reached::Friend);
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
