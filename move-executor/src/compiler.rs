//! Compiling Move source with the Move compiler. Also used by the build script, which compiles
//! the framework itself; [`crate::compile_package`] compiles a package against it.

use std::collections::BTreeMap;

use move_compiler::compiled_unit::CompiledUnitEnum;
use move_compiler::diagnostics::report_diagnostics_to_buffer;
use move_compiler::shared::NumericalAddress;
use move_compiler::Compiler;

/// A compiled module: its name and its bytecode.
pub(crate) type CompiledModuleBytes = (String, Vec<u8>);

/// The named addresses of the standard library (`std`) and the framework (`duet`), both `0x1`.
///
/// # Panics
/// Never: `0x1` parses.
#[must_use]
pub(crate) fn framework_named_addresses() -> BTreeMap<String, NumericalAddress> {
    let mut named = move_stdlib::move_stdlib_named_addresses();
    named.insert("duet".to_owned(), NumericalAddress::parse_str("0x1").expect("a valid address"));
    named
}

/// Compiles `targets` (file paths) against `dependencies` (file paths, compiled but not
/// returned), with `named` addresses; returns the targets' modules in dependency order.
///
/// # Errors
/// The compiler's diagnostics, rendered as text.
pub(crate) fn compile(
    targets: Vec<String>,
    dependencies: Vec<String>,
    named: BTreeMap<String, NumericalAddress>,
) -> Result<Vec<CompiledModuleBytes>, String> {
    let (files, result) = Compiler::from_files(targets, dependencies, named)
        .build()
        .map_err(|error| format!("the Move compiler failed: {error:#}"))?;
    let units = match result {
        Ok((units, _warnings)) => units,
        Err(diagnostics) => {
            return Err(String::from_utf8_lossy(&report_diagnostics_to_buffer(&files, diagnostics))
                .into_owned())
        }
    };
    let mut modules = Vec::new();
    for unit in units {
        match unit.into_compiled_unit() {
            CompiledUnitEnum::Module(module) => {
                // Written here rather than by the compiler's unit, which panics on a module the
                // binary format cannot hold (a function of more than 255 locals, say).
                let mut bytes = Vec::new();
                module.module.serialize(&mut bytes).map_err(|error| {
                    format!("module {} cannot be written as bytecode: {error}", module.name)
                })?;
                modules.push((module.name.to_string(), bytes));
            }
            CompiledUnitEnum::Script(script) => {
                return Err(format!("scripts are not supported: {}", script.name));
            }
        }
    }
    Ok(modules)
}
